"""Hand-computed metric cases: ignore pixels, classes absent from the ground truth, both mIoU
conventions, "no class" predictions, cmIoU, tag precision/recall, lexical alignment area."""
from __future__ import annotations

import math

import numpy as np
import pytest

from selfseg.evaluate.metrics import ClassAgnosticIoU, SemSegEvaluator, TagMetrics, lexical_alignment_area

X = -1  # ignore / no class


def scores(pred, gt, n=3, convention="detectron2"):
    ev = SemSegEvaluator([f"c{i}" for i in range(n)])
    for p, g in zip(pred, gt):
        ev.process(np.asarray(p), np.asarray(g))
    return ev.evaluate(convention)


def test_perfect_prediction_is_100_percent():
    gt = np.array([[0, 1], [2, X]])
    s = scores([gt], [gt])
    assert s.miou == 1.0 and s.pixel_accuracy == 1.0 and s.mean_accuracy == 1.0


def test_ignored_ground_truth_is_never_counted():
    # The ignored pixel is predicted as class 2; it must not count as a false positive for 2.
    gt = np.array([[0, 0, 1, X]])
    pred = np.array([[0, 0, 1, 2]])
    s = scores([pred], [gt])
    assert s.iou[:2] == [1.0, 1.0]
    assert s.iou[2] is None  # class 2 absent from gt: left out (detectron2)
    assert s.pred_pixels[2] == 0 and s.miou == 1.0


def test_two_conventions_differ_on_predicted_but_absent_class():
    # gt:   0 0 1 1      pred: 0 2 1 1
    # class 0: tp 1, gt 2, pred 1 -> IoU 1/2. class 1: tp 2, gt 2, pred 2 -> 1.
    # class 2: no gt pixel, 1 predicted -> detectron2 leaves it out; mmseg counts IoU 0.
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 2, 1, 1]])
    d2 = scores([pred], [gt], convention="detectron2")
    mm = scores([pred], [gt], convention="mmseg")
    assert d2.iou == [0.5, 1.0, None]
    assert d2.miou == pytest.approx(0.75)
    assert mm.iou == [0.5, 1.0, 0.0]
    assert mm.miou == pytest.approx(0.5)
    # accuracy is defined over ground-truth pixels in both: class 2 has none
    assert d2.accuracy == mm.accuracy == [0.5, 1.0, None]
    assert d2.pixel_accuracy == pytest.approx(3 / 4)


def test_class_neither_in_gt_nor_predicted_is_left_out_in_both():
    gt = np.array([[0, 1]])
    for conv in ("detectron2", "mmseg"):
        s = scores([gt], [gt], convention=conv)
        assert s.iou[2] is None and s.miou == 1.0


def test_no_class_prediction_is_a_miss_not_a_false_positive():
    # gt 0 0 1 1, pred 0 X 1 X: class 0 IoU 1/2, class 1 IoU 1/2; nothing counts as a false positive.
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, X, 1, X]])
    s = scores([pred], [gt], n=2)
    assert s.iou == [0.5, 0.5]
    assert s.pred_pixels == [1, 1] and s.gt_pixels == [2, 2]
    assert s.pixel_accuracy == 0.5


def test_dataset_level_not_mean_of_images():
    # Image A: class 0 everywhere, predicted right (4 px). Image B: 1 px of class 0 predicted as 1.
    # Dataset-level class 0: tp 4, gt 5, pred 4 -> 4/5 (a per-image mean would give (1 + 0) / 2).
    a_gt = np.zeros((2, 2), int)
    b_gt, b_pred = np.array([[0, 1]]), np.array([[1, 1]])
    s = scores([a_gt, b_pred], [a_gt, b_gt], n=2)
    assert s.iou[0] == pytest.approx(4 / 5)
    assert s.iou[1] == pytest.approx(1 / 2)


def test_merge_equals_one_pass():
    rng = np.random.default_rng(0)
    imgs = [(rng.integers(-1, 3, (5, 6)), rng.integers(-1, 3, (5, 6))) for _ in range(4)]
    one = SemSegEvaluator(["a", "b", "c"])
    parts = [SemSegEvaluator(["a", "b", "c"]) for _ in range(2)]
    for k, (p, g) in enumerate(imgs):
        one.process(p, g)
        parts[k % 2].process(p, g)
    parts[0].merge(parts[1])
    assert (one.conf == parts[0].conf).all()


@pytest.mark.parametrize("pred, gt, match", [
    (np.zeros((2, 3), int), np.zeros((2, 2), int), "shape"),
    (np.array([[3]]), np.array([[0]]), "prediction values"),
    (np.array([[0]]), np.array([[7]]), "ground truth values"),
])
def test_bad_inputs_say_what_was_expected(pred, gt, match):
    with pytest.raises(ValueError, match=match):
        SemSegEvaluator(["a", "b", "c"]).process(pred, gt)


def test_empty_dataset_gives_nan_not_a_crash():
    s = SemSegEvaluator(["a"]).evaluate()
    assert math.isnan(s.miou) and math.isnan(s.pixel_accuracy)


# ------------------------------------------------------------------------------------------ cmIoU


def test_cmiou_hand_computed_with_ignore():
    # gt (3 segments: class 0, class 1, class 2; one ignored pixel):
    #   0 0 1 1
    #   0 0 1 X
    #   2 2 2 2
    # pred labels are arbitrary ids (open vocabulary): 7 covers the 0-region + one px of the 1-region.
    #   7 7 7 1
    #   7 7 1 5
    #   9 9 9 3
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, X], [2, 2, 2, 2]])
    pred = np.array([[7, 7, 7, 1], [7, 7, 1, 5], [9, 9, 9, 3]])
    m = ClassAgnosticIoU()
    best = m.process(pred, gt)
    # seg 0 (4 px) vs 7 (5 px valid): inter 4, union 5 -> 0.8
    # seg 1 (3 px) vs 1 (2 px): inter 2, union 3 -> 2/3; vs 7: inter 1, union 7
    # seg 2 (4 px) vs 9 (3 px): 3/4; the ignored pixel (pred 5) is in no segment
    assert best == pytest.approx([0.8, 2 / 3, 0.75])
    assert m.evaluate() == pytest.approx((0.8 + 2 / 3 + 0.75) / 3)


def test_cmiou_mean_over_all_segments_of_the_dataset_not_per_image():
    m = ClassAgnosticIoU()
    m.process(np.zeros((2, 2), int), np.zeros((2, 2), int))  # 1 segment, IoU 1
    gt = np.array([[0, 1, 2]])
    m.process(np.zeros((1, 3), int), gt)  # 3 segments, IoU 1/3 each
    assert m.segments == 4
    assert m.evaluate() == pytest.approx((1 + 3 * (1 / 3)) / 4)  # per-image mean would be (1 + 1/3) / 2


def test_cmiou_component_segments_split_disconnected_regions():
    gt = np.array([[0, 1, 0]])  # class 0 in two pieces
    pred = np.array([[4, 5, 6]])
    assert ClassAgnosticIoU("class").process(pred, gt) == pytest.approx([0.5, 1.0])
    assert ClassAgnosticIoU("components").process(pred, gt) == pytest.approx([1.0, 1.0, 1.0])


def test_cmiou_image_fully_ignored_adds_no_segment():
    m = ClassAgnosticIoU()
    assert m.process(np.zeros((2, 2), int), np.full((2, 2), X)) == []
    assert m.segments == 0 and math.isnan(m.evaluate())


# ------------------------------------------------------------------------------------- tag metrics


def test_tag_precision_recall_macro_and_micro():
    t = TagMetrics(exclude={0})  # 0 = background: not something a tagger names
    assert t.process([1, 2, None], [0, 1, 3, X]) == (0.5, 0.5)  # {1,2} vs {1,3}
    p, r = t.process([], [0, 4])  # no tag: precision undefined, recall 0
    assert math.isnan(p) and r == 0.0
    s = t.evaluate()
    assert s.precision == 0.5  # mean over the image where it is defined
    assert s.recall == 0.25
    assert (s.true_positives, s.predicted, s.present) == (1, 2, 3)
    assert s.micro_precision == 0.5 and s.micro_recall == pytest.approx(1 / 3)
    assert s.micro_f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


# ------------------------------------------------------------------------------------- LAC area


@pytest.mark.parametrize("values, area", [
    ([0.2, 0.4, 0.4, 0.8], (0.1 + 0.4 + 0.4 + 0.4) / 3),  # trapezoid, x evenly spaced on [0, 1]
    ([0.5, 0.5, 0.5, 0.5], 0.5),
    ([0.3], 0.3),
])
def test_lexical_alignment_area(values, area):
    assert lexical_alignment_area(values) == pytest.approx(area)


def test_lexical_alignment_area_needs_values():
    with pytest.raises(ValueError, match="at least one"):
        lexical_alignment_area([])


def test_cmiou_components_do_not_split_a_prediction_at_ignored_ground_truth():
    # Two objects separated by a void band (VOC's boundaries); one predicted blob covers both. The void
    # band must not cut the prediction into two segments that each match perfectly.
    gt = np.array([[0, X, X, 1]])
    pred = np.array([[5, 5, 5, 5]])
    assert ClassAgnosticIoU("components").process(pred, gt) == pytest.approx([0.5, 0.5])
    assert ClassAgnosticIoU("class").process(pred, gt) == pytest.approx([0.5, 0.5])
