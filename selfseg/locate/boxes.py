"""Rules between the locator and the mask model: box overlap, suppression, filtering.

Each rule is a plain function on arrays so it can be checked on hand-built cases with known answers.
"""
from __future__ import annotations

import numpy as np

from .result import Detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes a (N, 4) and b (M, 4); 0 where a union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        max_keep: int | None = None) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first (class-agnostic).

    A box is dropped when its IoU with an already kept box is strictly above `iou_threshold`.
    Ties in score keep the earlier box. `max_keep` stops once that many boxes are kept: the first
    `max_keep` of the full result, not an approximation.

    Each kept box is compared with the boxes still in play (O(kept x N) time, O(N) memory), never
    as a full N x N matrix: a large vocabulary gives thousands of raw boxes (900 queries per prompt
    chunk), where the matrix alone took 5 GB at 9,000 boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    limit = len(order) if max_keep is None else max(0, int(max_keep))
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(-1)
    keep: list[int] = []
    while order.size and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        # The same float64 arithmetic as box_iou, one row at a time, so the result equals the matrix form.
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.clip(rb - lt, 0, None).prod(-1)
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def filter_detections(
    det: Detections,
    image_size: tuple[int, int],
    *,
    nms_iou: float = 0.5,
    max_area_fraction: float = 0.95,
    max_detections: int = 100,
) -> Detections:
    """Drop boxes with no area and boxes covering nearly the whole image, then class-agnostic NMS, then
    keep the top scores.

    image_size: (H, W). A box whose area is more than `max_area_fraction` of the image is dropped
    (Grounding DINO often returns the whole frame for scene words); 1.0 keeps every box. A box of zero
    width or height (one that lay outside the image before clipping) is no region: NMS could never suppress
    it, and as a prompt SAM2 would still answer it with a mask.
    """
    if len(det) == 0:
        return det
    h, w = image_size
    wh = np.clip(det.boxes[:, 2:] - det.boxes[:, :2], 0, None)
    frac = wh.prod(1) / float(h * w)
    det = det[(wh > 0).all(1) & (frac <= max_area_fraction)]
    if len(det) == 0:
        return det
    keep = nms(det.boxes, det.scores, nms_iou, max_keep=max_detections)
    return det[keep]
