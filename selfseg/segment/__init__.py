"""Segment: (image, plan) -> masks per class: boxes -> masks, dense maps, or the BCC clusters themselves."""
from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import SEGMENTERS, Segmenter, SegmentPlan

__all__ = ["SEGMENTERS", "SegmentPlan", "Segmenter", "build_segmenter", "segmenters"]


def segmenters() -> Registry[Segmenter]:
    """The segmenter registry, every built-in segmenter registered."""
    # Imported here, not at the top: `import selfseg.segment` stays free of the model libraries.
    from . import bcc_clusters, clipseg, grounded_sam2  # noqa: F401  (importing registers them)

    return SEGMENTERS


def build_segmenter(config: Any, name: str | None = None, **kwargs: Any) -> Segmenter:
    """The segmenter `name` (default: segment.segmenter) from its own block and the shared model section of
    `config` (a whole `selfseg.config.Config`)."""
    return segmenters().build(name or config.segment.segmenter, config, **kwargs)
