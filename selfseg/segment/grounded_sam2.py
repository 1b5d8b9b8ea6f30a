"""Grounding DINO boxes per class -> SAM2 masks per box (TALOS-style locate-then-segment)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import check
from ..io import LoadedImage
from ..models.spec import ModelConfig
from .base import SEGMENTERS, SegmentPlan
from .result import Instances


@dataclass
class GroundedSam2Config:
    # Grounding DINO checkpoint (boxes per tag); "IDEA-Research/grounding-dino-tiny" is lighter.
    # "tiny-random" builds a tiny random-init model in code (outputs meaningless).
    detector: str = "IDEA-Research/grounding-dino-base"
    # SAM2 checkpoint (box -> mask); smaller: facebook/sam2.1-hiera-{base-plus,small,tiny}.
    sam: str = "facebook/sam2.1-hiera-large"
    # Grounding DINO's box confidence threshold: a box's best class must score above it.
    box_threshold: float = 0.35
    # Grounding DINO's per-token text threshold: the chosen class needs a token scoring above it.
    text_threshold: float = 0.25
    # Class-agnostic NMS: a box overlapping a better one by more than this IoU is dropped.
    nms_iou: float = 0.5
    # Boxes covering more than this fraction of the image are dropped (scene words grab the whole frame).
    max_box_area: float = 0.95
    # Keep at most this many boxes per image, best first.
    max_detections: int = 100
    # SAM2 decodes at most this many boxes per mask-decoder call (the image is encoded once either way;
    # the batch size changes float rounding only). Each box costs the decoder a copy of the image
    # features, 30-40 MiB in float32: 100 boxes in one call peaked at 6.9 GB RSS on CPU, 4.2 GB at 32
    # per call. 0: all boxes in one call.
    boxes_per_call: int = 32

    def __post_init__(self) -> None:
        check(all(0 <= t <= 1 for t in (self.box_threshold, self.text_threshold, self.nms_iou)),
              "box_threshold / text_threshold / nms_iou", "values in [0, 1]",
              (self.box_threshold, self.text_threshold, self.nms_iou))
        check(0 < self.max_box_area <= 1, "max_box_area", "a fraction in (0, 1]", self.max_box_area)
        check(self.max_detections >= 0, "max_detections", "an integer >= 0", self.max_detections)
        check(self.boxes_per_call >= 0, "boxes_per_call", "an integer >= 0 (0: all boxes in one call)",
              self.boxes_per_call)


@SEGMENTERS.register("grounded_sam2", config=GroundedSam2Config, section="segment.grounded_sam2",
                     checkpoints=lambda block, models: [block.detector, block.sam], takes_prompts=True)
class GroundedSam2Segmenter:
    name = "grounded_sam2"

    def __init__(self, config: GroundedSam2Config, models: ModelConfig, locator: Any = None, sam: Any = None) -> None:
        from ..locate.grounding_dino import GroundingDinoLocator
        from ..models.sam2 import Sam2BoxSegmenter

        self.cfg = cfg = config
        # "tiny-random" ids build tiny random-init models in code (outputs meaningless), like model.blip.
        self.locator = locator or GroundingDinoLocator.from_spec(
            models.spec(cfg.detector), box_threshold=cfg.box_threshold, text_threshold=cfg.text_threshold,
            nms_iou=cfg.nms_iou, max_box_area=cfg.max_box_area, max_detections=cfg.max_detections)
        self.sam = sam or Sam2BoxSegmenter.from_spec(models.spec(cfg.sam))

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
        # The image is encoded once; the boxes are decoded in batches of boxes_per_call (memory bound).
        masks, mask_scores = self.sam.segment(image.image, det.boxes,
                                              max_boxes_per_call=self.cfg.boxes_per_call or None)
        return Instances(masks=masks, boxes=det.boxes, scores=det.scores, mask_scores=mask_scores,
                         labels=det.labels, notes=list(det.notes),
                         timings={"locate": t_locate, "segment": time.perf_counter() - t0,
                                  "locate_passes": det.passes})
