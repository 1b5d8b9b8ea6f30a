"""CLIPSeg: one dense probability map per tag; instances are connected components per class."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..config import Config
from ..io import LoadedImage
from ..tag.result import TagResult
from .base import SEGMENTERS, empty_segmentation
from .result import Segmentation


def dense_to_instances(probs: np.ndarray, threshold: float, min_area: int = 1, max_instances: int = 100):
    """(T, H, W) class probabilities -> (masks, boxes, scores, class indices) of connected components.

    Each pixel takes its most probable class; below `threshold` it stays unlabelled. Every 8-connected
    component of one class is an instance (CLIPSeg has no notion of instances: two touching dogs are one),
    scored by its mean probability. Components under `min_area` pixels are dropped, and only the
    `max_instances` largest are kept (a noisy map can fragment into thousands of specks).
    """
    t, h, w = probs.shape
    if t == 0:
        return np.zeros((0, h, w), bool), np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)
    return best_to_instances(probs.argmax(0), probs.max(0), threshold, min_area, max_instances)


def best_to_instances(best: np.ndarray, conf: np.ndarray, threshold: float, min_area: int = 1,
                      max_instances: int = 100):
    """`dense_to_instances` from each pixel's best class and its probability ((H, W) each).

    Inside a component every pixel's best class is the component's class, so its mean probability there
    is the mean of `conf`: the T maps themselves are not needed. Only classes that win some pixel above
    the threshold are labelled (one pass each), not all T.
    """
    from scipy import ndimage

    h, w = best.shape
    found = []  # (area, class, component id, slice, label image)
    above = conf >= threshold
    for c in np.unique(best[above]):
        region = (best == c) & above
        lab, _ = ndimage.label(region, structure=np.ones((3, 3)))
        areas = np.bincount(lab.ravel())
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is not None and areas[i] >= min_area:
                found.append((int(areas[i]), int(c), i, sl, lab))
    found.sort(key=lambda f: -f[0])  # stable: equal areas stay in class order, then component order
    found = found[:max_instances]
    masks = np.zeros((len(found), h, w), dtype=bool)
    boxes, scores, classes = [], [], []
    for k, (_, c, i, sl, lab) in enumerate(found):
        local = lab[sl] == i  # compare inside the component's box only, not the whole frame
        masks[k][sl] = local
        boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
        scores.append(float(conf[sl][local].mean()))
        classes.append(c)
    return masks, np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores), np.asarray(classes, int)


@SEGMENTERS.register("clipseg")
class ClipSegSegmenter:
    name = "clipseg"

    def __init__(self, config: Config, model: Any = None) -> None:
        from ..models.clipseg import ClipSegDenseSegmenter

        self.cfg = config.segment.clipseg
        self.model = model or ClipSegDenseSegmenter.from_spec(config.model.spec(self.cfg.model))

    def segment(self, image: LoadedImage, classes: list[str], tags: TagResult | None,
                prompts: dict[str, str] | None = None) -> Segmentation:
        if not classes:
            return empty_segmentation(image, classes, self.name, "no tags: nothing to segment", tags)
        h, w = image.image.height, image.image.width
        t0 = time.perf_counter()
        # The image and all tags are encoded once; the decoder and the full-size maps go tags_per_call
        # at a time and only each pixel's best tag is kept. An enriched phrase replaces the tag as text,
        # never as label.
        best, conf = self.model.best(image.image, [prompts.get(c, c) for c in classes] if prompts else classes,
                                     tags_per_call=self.cfg.tags_per_call)
        masks, boxes, scores, cls = best_to_instances(best, conf, self.cfg.threshold, self.cfg.min_area,
                                                      self.cfg.max_instances)
        seg = Segmentation(image_size=(h, w), masks=masks, boxes=boxes, scores=scores,
                           mask_scores=np.ones(len(cls)), labels=[classes[c] for c in cls], classes=list(classes),
                           segmenter=self.name, source=image.source, tags=tags,
                           timings={"segment": time.perf_counter() - t0})
        if not seg.labels:
            seg.notes.append("no pixel above the background threshold")
        return seg
