"""The segmenter protocol and registry: (image, class names) -> Segmentation."""
from __future__ import annotations

from typing import Protocol

from ..io import LoadedImage
from ..registry import Registry
from ..tag.result import TagResult
from .result import Segmentation


class Segmenter(Protocol):
    name: str

    def segment(self, image: LoadedImage, classes: list[str], tags: TagResult | None,
                prompts: dict[str, str] | None = None) -> Segmentation:
        """Masks for `classes` in `image` (at the loaded image's size); every label is one of `classes`.
        prompts: optional phrase per class to prompt with instead of the class name (prompt enrichment);
        segmenters that read no text ignore it."""
        ...


#: Factories take the whole Config and read their own block (config.segment.<name>). Implementations
#: register here; `selfseg.segment.build_segmenter` imports them.
SEGMENTERS: Registry[Segmenter] = Registry("segmenter")


def empty_segmentation(image: LoadedImage, classes: list[str], segmenter: str, note: str,
                       tags: TagResult | None = None) -> Segmentation:
    """A valid all-unlabelled result with a note saying why (no tags, no boxes, ...)."""
    import numpy as np

    h, w = image.image.height, image.image.width
    return Segmentation(image_size=(h, w), masks=np.zeros((0, h, w), bool), boxes=np.zeros((0, 4)),
                        scores=np.zeros(0), mask_scores=np.zeros(0), labels=[], classes=list(classes),
                        segmenter=segmenter, source=image.source, tags=tags, notes=[note])
