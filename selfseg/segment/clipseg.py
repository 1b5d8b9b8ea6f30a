"""CLIPSeg: one dense probability map per tag; instances are connected components per class."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import check
from ..io import LoadedImage
from ..models.spec import ModelConfig
from .base import SEGMENTERS, SegmentPlan, shared_seconds, with_classes
from .result import Instances


@dataclass
class ClipSegConfig:
    # CLIPSeg checkpoint; "tiny-random" builds a tiny random-init model in code.
    model: str = "CIDAS/clipseg-rd64-refined"
    # Pixels whose best class probability is below this stay unlabelled.
    threshold: float = 0.4
    # Connected components smaller than this many pixels are not reported as instances.
    min_area: int = 16
    # Report at most this many instances per image, largest first (noisy maps fragment into thousands).
    max_instances: int = 100
    # Tags decoded and upsampled per decoder call (the image and the tags are encoded once either way).
    # Memory grows with it: 847 tags at once on a 1024-px image peaked at 8 GB RSS. 0: all at once.
    tags_per_call: int = 32

    def __post_init__(self) -> None:
        check(0 <= self.threshold <= 1 and self.min_area >= 0 and self.max_instances >= 0 and self.tags_per_call >= 0,
              "threshold / min_area / max_instances / tags_per_call",
              "threshold in [0, 1], min_area >= 0, max_instances >= 0, tags_per_call >= 0",
              (self.threshold, self.min_area, self.max_instances, self.tags_per_call))


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


def _nothing_found(conf: np.ndarray, threshold: float, min_area: int, max_instances: int) -> str:
    """Why a map gave no instance, in the words of the setting that decided it."""
    if max_instances < 1:
        return "no instance: max_instances is 0"
    if not (conf >= threshold).any():
        return "no pixel above the background threshold"
    return f"no region of pixels above the background threshold reaches min_area ({min_area} pixels)"


def best_to_instances(best: np.ndarray, conf: np.ndarray, threshold: float, min_area: int = 1,
                      max_instances: int = 100):
    """`dense_to_instances` from each pixel's best class and its probability ((H, W) each).

    Inside a component every pixel's best class is the component's class, so its mean probability there
    is the mean of `conf`: the T maps themselves are not needed. Only classes that win some pixel above
    the threshold are labelled, each inside its own bounding box, not all T over the whole frame. `best`
    holds class indices (integers >= 0).
    """
    from scipy import ndimage

    h, w = best.shape
    found = []  # (area, class, component id, slice, label image, slice in the label image)
    above = conf >= threshold
    if above.any() and (best[above].min() < 0 or max_instances < 0):
        raise ValueError(f"expected class indices >= 0 and max_instances >= 0, got a smallest index of "
                         f"{best[above].min()} and max_instances={max_instances}")
    # Each winning class's bounding box, all in one pass: a class is labelled inside its own box only. Its
    # components lie inside that box and are numbered in the same scan order there as in the whole frame.
    boxes_of = ndimage.find_objects(np.where(above, best.astype(np.intp, copy=False) + 1, 0))
    for c, box in enumerate(boxes_of):
        if box is None:
            continue
        lab, _ = ndimage.label((best[box] == c) & above[box], structure=np.ones((3, 3)))
        areas = np.bincount(lab.ravel())
        parts = ndimage.find_objects(lab)
        ids = np.flatnonzero(areas[1:] >= min_area) + 1
        # Only a class's max_instances largest can be among the largest overall (equal areas: the earlier
        # component first, as the sort below keeps them); kept in component order for that sort.
        ids = np.sort(ids[np.argsort(-areas[ids], kind="stable")[:max_instances]])
        for i in ids:
            own = parts[i - 1]
            sl = tuple(slice(b.start + o.start, b.start + o.stop) for b, o in zip(box, own))
            found.append((int(areas[i]), c, int(i), sl, lab, own))
    found.sort(key=lambda f: -f[0])  # stable: equal areas stay in class order, then component order
    found = found[:max_instances]
    masks = np.zeros((len(found), h, w), dtype=bool)
    boxes, scores, classes = [], [], []
    for k, (_, c, i, sl, lab, own) in enumerate(found):
        local = lab[own] == i  # compare inside the component's box only, not the whole frame
        masks[k][sl] = local
        boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
        scores.append(float(conf[sl][local].mean()))
        classes.append(c)
    return masks, np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores), np.asarray(classes, int)


@SEGMENTERS.register("clipseg", config=ClipSegConfig, section="segment.clipseg",
                     checkpoints=lambda block, models: [block.model], takes_prompts=True)
class ClipSegSegmenter:
    name = "clipseg"

    def __init__(self, config: ClipSegConfig, models: ModelConfig, model: Any = None) -> None:
        from ..models.clipseg import ClipSegDenseSegmenter

        self.cfg = config
        self.model = model or ClipSegDenseSegmenter.from_spec(models.spec(config.model))

    def segment(self, image: LoadedImage, plan: SegmentPlan) -> Instances:
        return self.segment_batch([image], [plan])[0]

    def segment_batch(self, images: Sequence[LoadedImage], plans: Sequence[SegmentPlan]) -> list[Instances]:
        """Every image with classes in one `best_batch` call (one vision pass over the images, one text pass
        over their distinct prompts); timings are each image's share of it."""
        out, asked = with_classes(images, plans, "no tags: nothing to segment")
        if not asked:
            return out  # type: ignore[return-value]
        t0 = time.perf_counter()
        # The images and all tags are encoded once; the decoder and the full-size maps go tags_per_call at a
        # time and only each pixel's best tag is kept. An enriched phrase replaces the tag as text, never as
        # label.
        texts = {i: [plans[i].prompts.get(c, c) for c in plans[i].classes] for i in asked}
        maps = self.model.best_batch([images[i].image for i in asked], [texts[i] for i in asked],
                                     tags_per_call=self.cfg.tags_per_call)
        for i, (best, conf) in zip(asked, maps):
            classes = plans[i].classes
            masks, boxes, scores, cls = best_to_instances(best, conf, self.cfg.threshold, self.cfg.min_area,
                                                          self.cfg.max_instances)
            out[i] = found = Instances(masks=masks, boxes=boxes, scores=scores, mask_scores=np.ones(len(cls)),
                                       labels=[classes[c] for c in cls])
            for k, n, limit in self.model.too_long(texts[i]):
                found.notes.append(f"tag {classes[k][:60]!r}: its CLIPSeg prompt is {n} tokens, more than the "
                                   f"text model's {limit}; only the first {limit} were read")
            if not found.labels:
                found.notes.append(_nothing_found(conf, self.cfg.threshold, self.cfg.min_area, self.cfg.max_instances))
        seconds = shared_seconds(time.perf_counter() - t0, len(asked))
        for i in asked:
            out[i].timings["segment"] = seconds
        return out  # type: ignore[return-value]
