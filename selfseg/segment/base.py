"""The segmenter protocol and registry: (image, plan) -> Instances; the pipeline makes the Segmentation."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import SelfSegError
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
    """segment(image, plan) is the protocol. A segmenter whose models can take several images in one call
    also defines segment_batch(images, plans) -> one Instances per image, each what `segment` gives that
    image (up to float rounding); `segment_all` uses it where it exists."""

    name: str

    def segment(self, image: LoadedImage, plan: SegmentPlan) -> Instances:
        """Masks for the plan's classes in `image`, at the loaded image's size. Every label is one of the
        plan's classes (or of `Instances.classes` when the segmenter names what it finds itself). Segmenters
        that read no text ignore the prompts."""
        ...


def segment_all(segmenter: Segmenter, images: Sequence[LoadedImage], plans: Sequence[SegmentPlan]) -> list[Instances]:
    """One Instances per image: the segmenter's segment_batch where it has one, else segment per image."""
    batch = getattr(segmenter, "segment_batch", None)
    if batch is None:
        return [segmenter.segment(im, plan) for im, plan in zip(images, plans)]
    found = list(batch(images, plans))
    if len(found) != len(images):  # never let results slide onto the wrong images; a wrong segmenter: stop
        raise SelfSegError(f"segmenter {segmenter.name!r} returned {len(found)} results for {len(images)} images")
    return found


def masks_all(masker: MaskModel, images: Sequence[LoadedImage], boxes: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(masks, scores) per image: the mask model's masks_batch where it has one, else masks per image."""
    batch = getattr(masker, "masks_batch", None)
    if batch is None:
        return [masker.masks(im, b) for im, b in zip(images, boxes)]
    found = list(batch(images, boxes))
    if len(found) != len(images):
        raise SelfSegError(f"mask model {masker.name!r} returned {len(found)} results for {len(images)} images")
    return found


def with_classes(images: Sequence[LoadedImage], plans: Sequence[SegmentPlan],
                 note: str) -> tuple[list[Instances | None], list[int]]:
    """For a segmenter's batch: one slot per image, an image without classes already holding its empty
    result (with `note`), and the indices of the images left to segment."""
    out: list[Instances | None] = [None] * len(images)
    asked = []
    for i, (image, plan) in enumerate(zip(images, plans)):
        if plan.classes:
            asked.append(i)
        else:
            out[i] = Instances.empty((image.image.height, image.image.width), note)
    return out, asked


def shared_seconds(seconds: float, n: int) -> float:
    """Each image's share of a call made for n images: per-image timings of a batch add up to its time."""
    return seconds / max(n, 1)


#: Factories take their own config block and the shared model section (`Registry.build`). Implementations
#: register here; `selfseg.segment.segmenters()` imports them.
SEGMENTERS: Registry[Segmenter] = Registry("segmenter")


class MaskModel(Protocol):
    name: str

    def masks(self, image: LoadedImage, boxes: Any) -> tuple[Any, Any]:
        """(masks (N, H, W) bool at the loaded image's size, scores (N,)) for N xyxy boxes of `image`."""
        ...

    # Optional: masks_batch(images, boxes) -> one (masks, scores) per image, in as few model calls as the model
    # allows; `masks_all` uses it where it exists.


#: Box -> mask models, the second half of locate-then-segment.
MASK_MODELS: Registry[MaskModel] = Registry("mask model")
