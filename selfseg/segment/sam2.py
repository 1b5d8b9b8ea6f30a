"""SAM 2 as the mask model: one mask per box, the image encoded once."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import check
from ..io import LoadedImage
from ..models.spec import ModelConfig
from .base import MASK_MODELS


@dataclass(kw_only=True)  # keyword-only: its fields sit beside the locator's in one section
class Sam2Config:
    """The SAM 2 mask model's settings (in a config file: the `segment.grounded_sam2` section)."""

    # SAM2 checkpoint (box -> mask); smaller: facebook/sam2.1-hiera-{base-plus,small,tiny}.
    sam: str = "facebook/sam2.1-hiera-large"
    # SAM2 decodes at most this many boxes per mask-decoder call (the image is encoded once either way;
    # the batch size changes float rounding only). Each box costs the decoder a copy of the image
    # features, 30-40 MiB in float32: 100 boxes in one call peaked at 6.9 GB RSS on CPU, 4.2 GB at 32
    # per call. 0: all boxes in one call.
    boxes_per_call: int = 32
    # SAM2's image encoder takes at most this many of a batch's images per call. 0: one at a time on a CPU,
    # where Hiera-L took 1.18x as long for 4 images in one call as in four and 7x the working memory (1.7 GB
    # vs 0.24 GB, float32), and the whole batch (run.batch_size) in one call on a GPU.
    images_per_call: int = 0

    def __post_init__(self) -> None:
        check(self.boxes_per_call >= 0, "boxes_per_call", "an integer >= 0 (0: all boxes in one call)",
              self.boxes_per_call)
        check(self.images_per_call >= 0, "images_per_call",
              "an integer >= 0 (0: one image per call on a CPU, the whole batch on a GPU)", self.images_per_call)


class Sam2MaskModel:
    """sam: a `selfseg.models.sam2.Sam2BoxSegmenter`; boxes_per_call: the decoder's batch (0: all at once);
    images_per_call: the image encoder's (0: by device, see `Sam2Config`)."""

    name = "sam2"

    def __init__(self, sam: Any, boxes_per_call: int = 32, images_per_call: int = 0) -> None:
        self.sam, self.boxes_per_call, self.images_per_call = sam, boxes_per_call, images_per_call

    @property
    def is_tiny(self) -> bool:
        return self.sam.is_tiny

    def masks(self, image: LoadedImage, boxes: Any) -> tuple[Any, Any]:
        return self.masks_batch([image], [boxes])[0]

    def masks_batch(self, images: Sequence[LoadedImage], boxes: Sequence[Any]) -> list[tuple[Any, Any]]:
        """The images with boxes through SAM 2's image encoder `images_per_call` at a time; each image's boxes
        decoded `boxes_per_call` at a time."""
        found = self.sam.segment_batch([im.image for im in images], list(boxes),
                                       max_boxes_per_call=self.boxes_per_call or None,
                                       images_per_call=self.images_per_call or None)
        return [(f.masks, f.scores) for f in found]


@MASK_MODELS.register("sam2", config=Sam2Config, section="segment.grounded_sam2",
                      checkpoints=lambda block, models: [block.sam])
def sam2(config: Sam2Config, models: ModelConfig) -> Sam2MaskModel:
    """The mask model of a config block, on the shared model section's device and dtype."""
    from ..models.sam2 import Sam2BoxSegmenter

    return Sam2MaskModel(Sam2BoxSegmenter.from_spec(models.spec(config.sam)), config.boxes_per_call,
                         config.images_per_call)
