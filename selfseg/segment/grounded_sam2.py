"""Grounding DINO boxes per tag -> SAM2 masks per box (TALOS-style locate-then-segment)."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..config import Config
from ..io import LoadedImage
from ..locate.boxes import filter_detections
from ..tag.result import TagResult
from .base import SEGMENTERS, empty_segmentation
from .result import Segmentation

MAX_ASPECT = 4.0


def _pad_to_aspect(img: Any, max_aspect: float = MAX_ASPECT) -> Any:
    """Pad a very thin image (black, right or below) to at most `max_aspect`: 1.

    Grounding DINO resizes so the long side fits 1333 px; a 2000x16 strip then leaves the encoder fewer
    feature tokens than its 900 queries and the model raises. Padding keeps every pixel where it was, so
    boxes need only clipping to the original size.
    """
    from PIL import Image

    w, h = img.size
    if max(w, h) <= max_aspect * min(w, h):
        return img
    canvas = Image.new("RGB", (max(w, int(h / max_aspect) + 1), max(h, int(w / max_aspect) + 1)))
    canvas.paste(img, (0, 0))
    return canvas


@SEGMENTERS.register("grounded_sam2")
class GroundedSam2Segmenter:
    name = "grounded_sam2"

    def __init__(self, config: Config, locator: Any = None, sam: Any = None) -> None:
        from ..models.grounding_dino import GroundingDinoLocator
        from ..models.sam2 import Sam2BoxSegmenter

        self.config = config
        self.cfg = config.segment.grounded_sam2
        # "tiny-random" ids build tiny random-init models in code (outputs meaningless), like model.blip.
        self.locator = locator or GroundingDinoLocator.from_spec(config.model.spec(self.cfg.detector))
        self.sam = sam or Sam2BoxSegmenter.from_spec(config.model.spec(self.cfg.sam))

    def segment(self, image: LoadedImage, classes: list[str], tags: TagResult | None,
                prompts: dict[str, str] | None = None) -> Segmentation:
        if not classes:
            return empty_segmentation(image, classes, self.name, "no tags: nothing to locate", tags)
        h, w = image.image.height, image.image.width
        t0 = time.perf_counter()
        det = self.locator.detect(_pad_to_aspect(image.image), classes, box_threshold=self.cfg.box_threshold,
                                  text_threshold=self.cfg.text_threshold,
                                phrases=[prompts.get(c, c) for c in classes] if prompts else None)
        det.boxes = np.clip(det.boxes, 0, [w, h, w, h]).astype(np.float32)  # padding lies right / below
        t_locate = time.perf_counter() - t0
        notes = list(det.notes)
        det = filter_detections(det, (h, w), nms_iou=self.cfg.nms_iou, max_area_fraction=self.cfg.max_box_area,
                                max_detections=self.cfg.max_detections)
        if len(det) == 0:
            seg = empty_segmentation(image, classes, self.name, "no boxes above the thresholds", tags)
            seg.notes = notes + seg.notes
            seg.timings = {"locate": t_locate}
            return seg
        t0 = time.perf_counter()
        # The image is encoded once; the boxes are decoded in batches of boxes_per_call (memory bound).
        masks, mask_scores = self.sam.segment(image.image, det.boxes,
                                              max_boxes_per_call=self.cfg.boxes_per_call or None)
        t_segment = time.perf_counter() - t0
        return Segmentation(image_size=(h, w), masks=masks, boxes=det.boxes, scores=det.scores,
                            mask_scores=mask_scores, labels=det.labels, classes=list(classes),
                            segmenter=self.name, source=image.source, tags=tags, notes=notes,
                            timings={"locate": t_locate, "segment": t_segment, "locate_passes": det.passes})
