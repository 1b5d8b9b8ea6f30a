"""The segmenter protocol and registry: (image, plan) -> Instances; the pipeline makes the Segmentation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..io import LoadedImage
from ..registry import Registry
from ..tag.result import TagResult
from .result import Instances


@dataclass
class SegmentPlan:
    """What one image is segmented with.

    classes: the names to find (cleaned self-found tags and/or the user's words); prompts: the phrase to
    prompt with instead of a class (prompt enrichment; classes prompted as themselves absent); merges: the
    tag clean-up that produced `classes`; tags: the tagger's result (None in "given" vocabulary mode).
    """

    classes: list[str]
    prompts: dict[str, str] = field(default_factory=dict)
    merges: list[dict[str, str]] = field(default_factory=list)
    tags: TagResult | None = None


class Segmenter(Protocol):
    name: str

    def segment(self, image: LoadedImage, plan: SegmentPlan) -> Instances:
        """Masks for the plan's classes in `image`, at the loaded image's size. Every label is one of the
        plan's classes (or of `Instances.classes` when the segmenter names what it finds itself). Segmenters
        that read no text ignore the prompts."""
        ...


#: Factories take their own config block and the shared model section (`Registry.build`). Implementations
#: register here; `selfseg.segment.segmenters()` imports them.
SEGMENTERS: Registry[Segmenter] = Registry("segmenter")


class MaskModel(Protocol):
    name: str

    def masks(self, image: LoadedImage, boxes: Any) -> tuple[Any, Any]:
        """(masks (N, H, W) bool at the loaded image's size, scores (N,)) for N xyxy boxes of `image`."""
        ...


#: Box -> mask models, the second half of locate-then-segment.
MASK_MODELS: Registry[MaskModel] = Registry("mask model")
