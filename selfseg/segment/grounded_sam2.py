"""Grounding DINO boxes per class -> SAM2 masks per box (TALOS-style locate-then-segment)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..io import LoadedImage
from ..locate.base import LOCATORS, Locator
from ..locate.grounding_dino import GroundingDinoConfig
from ..models.spec import ModelConfig
from .base import MASK_MODELS, SEGMENTERS, MaskModel, SegmentPlan
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
        size = (image.image.height, image.image.width)
        if not plan.classes:
            return Instances.empty(size, "no tags: nothing to locate")
        t0 = time.perf_counter()
        det = self.locator.locate([image], [plan.classes], [plan.prompts])[0]
        t_locate = time.perf_counter() - t0
        if len(det) == 0:
            out = Instances.empty(size, "no boxes above the thresholds", locate=t_locate)
            out.notes = list(det.notes) + out.notes
            return out
        t0 = time.perf_counter()
        masks, mask_scores = self.masker.masks(image, det.boxes)
        return Instances(masks=masks, boxes=det.boxes, scores=det.scores, mask_scores=mask_scores,
                         labels=det.labels, notes=list(det.notes),
                         timings={"locate": t_locate, "segment": time.perf_counter() - t0,
                                  "locate_passes": det.passes})
