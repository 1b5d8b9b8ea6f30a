"""Grounding DINO boxes per class -> SAM2 masks per box (TALOS-style locate-then-segment)."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..io import LoadedImage
from ..locate.base import LOCATORS, Locator
from ..locate.grounding_dino import GroundingDinoConfig
from ..models.spec import ModelConfig
from .base import MASK_MODELS, SEGMENTERS, MaskModel, SegmentPlan, masks_all, shared_seconds, with_classes
from .result import Instances
from .sam2 import Sam2Config


@dataclass(kw_only=True)
class GroundedSam2Config(Sam2Config, GroundingDinoConfig):
    """The `segment.grounded_sam2` section: the locator's settings and the mask model's, side by side."""

    def __post_init__(self) -> None:
        GroundingDinoConfig.__post_init__(self)
        Sam2Config.__post_init__(self)


def _checkpoints(config: GroundedSam2Config, models: ModelConfig) -> list[str]:
    return (LOCATORS.component("grounding_dino").checkpoints(config, models)
            + MASK_MODELS.component("sam2").checkpoints(config, models))


@SEGMENTERS.register("grounded_sam2", config=GroundedSam2Config, section="segment.grounded_sam2",
                     checkpoints=_checkpoints, takes_prompts=True)
class GroundedSam2Segmenter:
    """The grounding_dino locator, then the sam2 mask model on its boxes. locator, masker: built ones to use
    instead (tests, benchmarks)."""

    name = "grounded_sam2"

    def __init__(self, config: GroundedSam2Config, models: ModelConfig, locator: Locator | None = None,
                 masker: MaskModel | None = None) -> None:
        self.locator = locator or LOCATORS.create("grounding_dino", config, models)
        self.masker = masker or MASK_MODELS.create("sam2", config, models)

    def segment(self, image: LoadedImage, plan: SegmentPlan) -> Instances:
        return self.segment_batch([image], [plan])[0]

    def segment_batch(self, images: Sequence[LoadedImage], plans: Sequence[SegmentPlan]) -> list[Instances]:
        """Boxes for every image in one `locate` call, then every image with boxes through SAM 2 at once (its
        image encoder batches; the decoder runs per image). Timings are each image's share of the calls."""
        sizes = [(im.image.height, im.image.width) for im in images]
        out, asked = with_classes(images, plans, "no tags: nothing to locate")
        if not asked:
            return out  # type: ignore[return-value]
        t0 = time.perf_counter()
        found = self.locator.locate([images[i] for i in asked], [plans[i].classes for i in asked],
                                    [plans[i].prompts for i in asked])
        t_locate = shared_seconds(time.perf_counter() - t0, len(asked))
        boxed = []
        for i, det in zip(asked, found):
            if len(det) == 0:
                out[i] = Instances.empty(sizes[i], "no boxes above the thresholds", locate=t_locate,
                                         locate_passes=det.passes)
                out[i].notes = list(det.notes) + out[i].notes
            else:
                boxed.append((i, det))
        if boxed:
            t0 = time.perf_counter()
            masks = masks_all(self.masker, [images[i] for i, _ in boxed], [det.boxes for _, det in boxed])
            t_segment = shared_seconds(time.perf_counter() - t0, len(boxed))
            for (i, det), (m, mask_scores) in zip(boxed, masks):
                out[i] = Instances(masks=m, boxes=det.boxes, scores=det.scores, mask_scores=mask_scores,
                                   labels=det.labels, notes=list(det.notes),
                                   timings={"locate": t_locate, "segment": t_segment, "locate_passes": det.passes})
        return out  # type: ignore[return-value]
