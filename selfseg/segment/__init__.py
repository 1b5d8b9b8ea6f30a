"""Locate and segment: tags -> boxes -> masks, or tags -> dense maps."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config
    from .base import Segmenter

__all__ = ["build_segmenter"]


def build_segmenter(config: Config) -> Segmenter:
    # Imported here, not at the top: `import selfseg.segment` stays free of the model libraries.
    from . import bcc_clusters, clipseg, grounded_sam2  # noqa: F401  (importing registers them)
    from .base import SEGMENTERS

    return SEGMENTERS.create(config.segment.segmenter, config)
