"""CLIPSeg: one dense probability map per tag; instances are connected components per class."""
from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from ..config import Config
from ..io import LoadedImage
from ..models.loading import resolve_device
from ..results import TagResult
from .base import SEGMENTERS, empty_segmentation
from .result import Segmentation


def dense_to_instances(probs: np.ndarray, threshold: float, min_area: int = 1, max_instances: int = 100):
    """(T, H, W) class probabilities -> (masks, boxes, scores, class indices) of connected components.

    Each pixel takes its most probable class; below `threshold` it stays unlabelled. Every 8-connected
    component of one class is an instance (CLIPSeg has no notion of instances: two touching dogs are one),
    scored by its mean probability. Components under `min_area` pixels are dropped, and only the
    `max_instances` largest are kept (a noisy map can fragment into thousands of specks).
    """
    from scipy import ndimage

    t, h, w = probs.shape
    if t == 0:
        return np.zeros((0, h, w), bool), np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)
    best = probs.argmax(0)
    conf = probs.max(0)
    found = []  # (area, class, component id, slice, label image)
    for c in range(t):
        region = (best == c) & (conf >= threshold)
        lab, _ = ndimage.label(region, structure=np.ones((3, 3)))
        areas = np.bincount(lab.ravel())
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is not None and areas[i] >= min_area:
                found.append((int(areas[i]), c, i, sl, lab))
    found.sort(key=lambda f: -f[0])
    found = found[:max_instances]
    masks = np.zeros((len(found), h, w), dtype=bool)
    boxes, scores, classes = [], [], []
    for k, (_, c, i, sl, lab) in enumerate(found):
        local = lab[sl] == i  # compare inside the component's box only, not the whole frame
        masks[k][sl] = local
        boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
        scores.append(float(probs[c][sl][local].mean()))
        classes.append(c)
    return masks, np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores), np.asarray(classes, int)


@SEGMENTERS.register("clipseg")
class ClipSegSegmenter:
    name = "clipseg"

    def __init__(self, config: Config, model: Any = None) -> None:
        from ..models.clipseg import ClipSegDenseSegmenter

        self.cfg = config.segment.clipseg
        self.model = model or ClipSegDenseSegmenter.from_pretrained(
            self.cfg.model, device=resolve_device(config.model.device), dtype=config.model.dtype,
            cache_dir=config.model.cache_dir, local_files_only=config.model.local_files_only)

    def segment(self, image: LoadedImage, classes: list[str], tags: Optional[TagResult],
                prompts: Optional[dict[str, str]] = None) -> Segmentation:
        if not classes:
            return empty_segmentation(image, classes, self.name, "no tags: nothing to segment", tags)
        h, w = image.image.height, image.image.width
        t0 = time.perf_counter()
        # ONE batched forward for all tags; an enriched phrase replaces the tag as text, never as label.
        probs = self.model.logits(image.image, [prompts.get(c, c) for c in classes] if prompts else classes)
        masks, boxes, scores, cls = dense_to_instances(probs, self.cfg.threshold, self.cfg.min_area,
                                                       self.cfg.max_instances)
        seg = Segmentation(image_size=(h, w), masks=masks, boxes=boxes, scores=scores,
                           mask_scores=np.ones(len(cls)), labels=[classes[c] for c in cls], classes=list(classes),
                           segmenter=self.name, source=image.source, tags=tags,
                           timings={"segment": time.perf_counter() - t0})
        if not seg.labels:
            seg.notes.append("no pixel above the background threshold")
        return seg
