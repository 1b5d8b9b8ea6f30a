"""Hand-built detections with known answers for the rules between locator, mask model and label map."""
from __future__ import annotations

import numpy as np
import pytest

from selfseg.locate.boxes import box_iou, filter_detections, nms
from selfseg.locate.result import Detections
from selfseg.segment.result import paint_instances, paint_semantic


def test_box_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 3]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0, 0.0]])


@pytest.mark.parametrize(
    "boxes, scores, thr, kept",
    [
        # the weaker of two heavily overlapping boxes goes; a distant box stays
        ([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0.9, 0.8, 0.1], 0.5, [0, 2]),
        # IoU exactly at the threshold is kept (strictly above drops)
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 50 / 150, [0, 1]),
        # class-agnostic: labels play no part; highest score first regardless of order
        ([[1, 1, 11, 11], [0, 0, 10, 10]], [0.2, 0.7], 0.5, [1]),
        # equal scores: the earlier box wins
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.5, 0.5], 0.5, [0]),
        ([], [], 0.5, []),
    ],
)
def test_nms_cases(boxes, scores, thr, kept):
    assert nms(np.array(boxes).reshape(-1, 4), np.array(scores), thr).tolist() == kept


def _nms_by_matrix(boxes, scores, thr):
    """The textbook form: full IoU matrix, each box checked against every box kept before it."""
    iou = box_iou(boxes, boxes)
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if all(iou[i, j] <= thr for j in keep):
            keep.append(int(i))
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_equals_matrix_form_and_max_keep_is_a_prefix(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, size=(400, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 60, size=(400, 2))], 1)
    boxes[1::7] = boxes[::7][: len(boxes[1::7])]                     # exact duplicates
    scores = np.round(rng.uniform(size=400), 2)                      # many ties
    for thr in (0.0, 0.3, 0.5, 0.9):
        full = _nms_by_matrix(boxes, scores, thr)
        assert nms(boxes, scores, thr).tolist() == full
        assert nms(boxes, scores, thr, max_keep=5).tolist() == full[:5]
    assert nms(boxes, scores, 0.5, max_keep=0).tolist() == []


def test_whole_image_boxes_nms_and_max_detections():
    det = Detections(
        boxes=[[0, 0, 100, 100], [0, 0, 99, 97], [10, 10, 40, 40], [12, 12, 41, 41], [60, 60, 90, 90], [5, 60, 20, 80]],
        scores=[0.99, 0.9, 0.8, 0.7, 0.6, 0.5],
        labels=["room", "wall", "dog", "dog", "cat", "cup"],
    )
    out = filter_detections(det, (100, 100), nms_iou=0.5, max_area_fraction=0.95, max_detections=2)
    # room (100 %) and wall (97 %) cover the frame; the second dog overlaps the first; top 2 of the rest
    assert out.labels == ["dog", "cat"]
    everything = filter_detections(det, (100, 100), nms_iou=1.0, max_area_fraction=1.0, max_detections=100)
    assert len(everything) == 6
    assert len(filter_detections(Detections.empty(), (10, 10))) == 0


def test_boxes_without_area_are_dropped_even_when_everything_else_is_kept():
    # A box clipped to the image from outside it is a line: NMS cannot suppress it (IoU 0 with anything).
    det = Detections(boxes=[[10, 10, 40, 40], [60, 100, 90, 100], [100, 20, 100, 50], [10, 10, 40, 40.5]],
                     scores=[0.5, 0.99, 0.98, 0.4], labels=["dog", "sofa", "car", "dog"])
    out = filter_detections(det, (100, 100), nms_iou=1.0, max_area_fraction=1.0, max_detections=100)
    assert out.labels == ["dog", "dog"]


def test_painting_order_most_confident_wins():
    m = np.zeros((3, 4, 4), dtype=bool)
    m[0, :, :3] = True   # class 1, low score, left
    m[1, :, 1:] = True   # class 2, high score, right: wins the overlap
    m[2, 0, 0] = True    # class 3, middle score, inside instance 0 only
    sem = paint_semantic(m, np.array([0.2, 0.9, 0.5]), np.array([1, 2, 3]), (4, 4))
    assert sem[:, 1:].tolist() == [[2, 2, 2]] * 4
    assert sem[0, 0] == 3 and sem[1, 0] == 1
    inst = paint_instances(m, np.array([0.2, 0.9, 0.5]), (4, 4))
    assert inst[0, 0] == 3 and inst[3, 3] == 2 and inst[3, 0] == 1
    assert paint_semantic(np.zeros((0, 2, 2), bool), np.zeros(0), np.zeros(0, int), (2, 2)).tolist() == [[0, 0]] * 2


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(boxes=[[0, 0, 1, 1]], scores=[], labels=["a"]), "expected 1 scores and labels"),
     (dict(boxes=[[0, 0, 1, 1]], scores=[0.5], labels=[]), "expected 1 scores and labels")],
)
def test_detections_validate_shapes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Detections(**kwargs)


def test_detections_indexing():
    d = Detections([[0, 0, 1, 1], [1, 1, 2, 2]], [0.1, 0.2], ["a", "b"], passes=2)
    assert d[np.array([False, True])].labels == ["b"] and d[np.array([1])].passes == 2
    assert len(d[np.zeros(2, bool)]) == 0 and d.boxes.dtype == np.float32
