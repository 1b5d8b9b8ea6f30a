"""Segment: (image, plan) -> masks per class: boxes -> masks, dense maps, or the BCC clusters themselves."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..registry import Registry
    from .base import MASK_MODELS, SEGMENTERS, MaskModel, Segmenter, SegmentPlan

__all__ = ["MASK_MODELS", "SEGMENTERS", "MaskModel", "SegmentPlan", "Segmenter", "build_segmenter",
           "mask_models", "segmenters"]


def __getattr__(name: str) -> Any:
    # The registry and protocol load on first use: importing this package (as `selfseg.segment.result` does) runs
    # nothing of the stage.
    if name in ("MASK_MODELS", "SEGMENTERS", "MaskModel", "SegmentPlan", "Segmenter"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def segmenters() -> Registry[Segmenter]:
    """The segmenter registry, every built-in segmenter registered."""
    # Imported here, not at the top: `import selfseg.segment` stays free of the model libraries.
    from . import bcc_clusters, clipseg, grounded_sam2  # noqa: F401  (importing registers them)
    from .base import SEGMENTERS

    return SEGMENTERS


def mask_models() -> Registry[MaskModel]:
    """The mask model registry (box -> mask), every built-in one registered."""
    from . import sam2  # noqa: F401  (importing registers it)
    from .base import MASK_MODELS

    return MASK_MODELS


def build_segmenter(config: Any, name: str | None = None, **kwargs: Any) -> Segmenter:
    """The segmenter `name` (default: segment.segmenter) from its own block and the shared model section of
    `config` (a whole `selfseg.config.Config`)."""
    return segmenters().build(name or config.segment.segmenter, config, **kwargs)
