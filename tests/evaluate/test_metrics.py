"""Hand-computed metric cases: ignore pixels, classes absent from the ground truth, both mIoU
conventions, "no class" predictions, cmIoU, tag precision/recall, lexical alignment area; the shared
metric protocol and its composition."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from selfseg.evaluate.metrics import (
    ClassAgnosticIoU,
    ImageEval,
    Metric,
    MetricSet,
    SemSegEvaluator,
    TagMetrics,
    lexical_alignment_area,
)

X = -1  # ignore / no class


def img(pred, gt) -> ImageEval:
    return ImageEval(gt=np.asarray(gt), pred=np.asarray(pred))


def scores(pred, gt, n=3, convention="detectron2"):
    ev = SemSegEvaluator([f"c{i}" for i in range(n)], convention)
    for p, g in zip(pred, gt):
        ev.process(img(p, g))
    return ev.evaluate()


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
        one.process(img(p, g))
        parts[k % 2].process(img(p, g))
    parts[0].merge(parts[1])
    assert (one.conf == parts[0].conf).all()


@pytest.mark.parametrize("pred, gt, match", [
    (np.zeros((2, 3), int), np.zeros((2, 2), int), "shape"),
    (np.array([[3]]), np.array([[0]]), "prediction values"),
    (np.array([[0]]), np.array([[7]]), "ground truth values"),
])
def test_bad_inputs_say_what_was_expected(pred, gt, match):
    with pytest.raises(ValueError, match=match):
        SemSegEvaluator(["a", "b", "c"]).process(img(pred, gt))


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
    best = m.process(img(pred, gt))
    # seg 0 (4 px) vs 7 (5 px valid): inter 4, union 5 -> 0.8
    # seg 1 (3 px) vs 1 (2 px): inter 2, union 3 -> 2/3; vs 7: inter 1, union 7
    # seg 2 (4 px) vs 9 (3 px): 3/4; the ignored pixel (pred 5) is in no segment
    assert best == pytest.approx([0.8, 2 / 3, 0.75])
    assert m.evaluate() == pytest.approx((0.8 + 2 / 3 + 0.75) / 3)


def test_cmiou_mean_over_all_segments_of_the_dataset_not_per_image():
    m = ClassAgnosticIoU()
    m.process(img(np.zeros((2, 2), int), np.zeros((2, 2), int)))  # 1 segment, IoU 1
    gt = np.array([[0, 1, 2]])
    m.process(img(np.zeros((1, 3), int), gt))  # 3 segments, IoU 1/3 each
    assert m.segments == 4
    assert m.evaluate() == pytest.approx((1 + 3 * (1 / 3)) / 4)  # per-image mean would be (1 + 1/3) / 2


def test_cmiou_component_segments_split_disconnected_regions():
    gt = np.array([[0, 1, 0]])  # class 0 in two pieces
    pred = np.array([[4, 5, 6]])
    assert ClassAgnosticIoU("class").process(img(pred, gt)) == pytest.approx([0.5, 1.0])
    assert ClassAgnosticIoU("components").process(img(pred, gt)) == pytest.approx([1.0, 1.0, 1.0])


def test_cmiou_image_fully_ignored_adds_no_segment():
    m = ClassAgnosticIoU()
    assert m.process(img(np.zeros((2, 2), int), np.full((2, 2), X))) == []
    assert m.segments == 0 and math.isnan(m.evaluate())


def _best_iou_by_masks(pred, gt):
    """cmIoU's per-segment best IoU over class segments, one boolean mask pair at a time."""
    valid = gt != X
    out = []
    for g in np.unique(gt[valid]):
        t = valid & (gt == g)
        out.append(max(((t & (pred == q)).sum() / (t | (valid & (pred == q))).sum()) for q in np.unique(pred[valid])))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cmiou_matches_mask_by_mask_ious_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 5, (12, 9))
    gt[rng.random(gt.shape) < 0.2] = X
    pred = rng.integers(0, 7, (12, 9)) * 3 + 100  # ids that are no class index
    assert ClassAgnosticIoU("class").process(img(pred, gt)) == pytest.approx(_best_iou_by_masks(pred, gt))


def test_cmiou_memory_follows_the_pixels_not_segment_pairs():
    import tracemalloc

    # Every pixel its own predicted segment and 64 true segments: a table of all pairs would hold
    # 64 x 262,144 counts (128 MiB); the pairs that meet are one per pixel.
    gt = np.repeat(np.arange(64), 512 * 512 // 64).reshape(512, 512)
    pred = np.arange(512 * 512).reshape(512, 512)
    tracemalloc.start()
    best = ClassAgnosticIoU("class").process(img(pred, gt))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert best == pytest.approx([1 / 4096] * 64)
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"


# ------------------------------------------------------------------------------------- tag metrics


def test_tag_precision_recall_macro_and_micro():
    t = TagMetrics(exclude={0})  # 0 = background: not something a tagger names
    assert t.process(ImageEval(predicted=[1, 2, None], present=[0, 1, 3, X])) == (0.5, 0.5)  # {1,2} vs {1,3}
    p, r = t.process(ImageEval(predicted=[], present=[0, 4]))  # no tag: precision undefined, recall 0
    assert math.isnan(p) and r == 0.0
    s = t.evaluate()
    assert s.precision == 0.5  # mean over the image where it is defined
    assert s.recall == 0.25
    assert (s.true_positives, s.predicted, s.present) == (1, 2, 3)
    assert s.micro_precision == 0.5 and s.micro_recall == pytest.approx(1 / 3)
    assert s.micro_f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_tag_micro_f1_is_zero_without_a_hit_and_undefined_without_tags():
    from sklearn.metrics import f1_score

    t = TagMetrics()
    t.process(ImageEval(predicted=[1, 2], present=[3]))
    assert t.evaluate().micro_f1 == 0.0 == f1_score([[0, 0, 1]], [[1, 1, 0]], average="micro", zero_division=0)
    none = TagMetrics()
    none.process(ImageEval(predicted=[], present=[3]))
    assert math.isnan(none.evaluate().micro_f1)  # no tag at all: precision undefined, so is F1


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
    assert ClassAgnosticIoU("components").process(img(pred, gt)) == pytest.approx([0.5, 0.5])
    assert ClassAgnosticIoU("class").process(img(pred, gt)) == pytest.approx([0.5, 0.5])


# ------------------------------------------------------------------------------ protocol and composition

# Classes a, b, c. Hand-computed over both images:
#   mIoU: a tp 2, gt 3, pred 2 -> 2/3; b tp 2, gt 2, pred 3 -> 2/3; c tp 1, gt 2, pred 1 -> 1/2.
#   cmIoU: image 1 segments 1/2 and 2/3; image 2 (its ignored pixel in no segment) 1/2 and 1 -> 2/3 over 4.
#   tags: image 1 {a, b} vs {a, b}: 1, 1; image 2 {c, b} vs {a, c}: 1/2, 1/2 -> 3/4 macro and micro.
HAND = [
    (np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 1]]), [0, 1]),
    (np.array([[2, 2, X, 0]]), np.array([[2, X, 2, 0]]), [2, 1]),
]


def hand_images() -> list[ImageEval]:
    return [ImageEval(gt=g, pred=p, predicted=t) for g, p, t in HAND]


def fresh_metrics() -> dict:
    return {"semseg": SemSegEvaluator(["a", "b", "c"]), "cmiou": ClassAgnosticIoU(), "tags": TagMetrics()}


def test_every_metric_follows_the_protocol():
    for m in [*fresh_metrics().values(), MetricSet(fresh_metrics())]:
        assert isinstance(m, Metric), type(m).__name__
        assert list(inspect.signature(m.process).parameters) == ["image"]
        assert list(inspect.signature(m.evaluate).parameters) == []  # settings belong to the constructor
    assert not isinstance(object(), Metric)


def test_metric_set_gives_the_numbers_of_the_metrics_run_one_by_one():
    alone = fresh_metrics()
    for image in hand_images():
        for m in alone.values():
            m.process(image)
    together = MetricSet(fresh_metrics())
    for image in hand_images():
        together.process(image)
    got = together.evaluate()
    assert list(got) == ["semseg", "cmiou", "tags"]
    assert got["semseg"].to_dict() == alone["semseg"].evaluate().to_dict()
    assert got["cmiou"] == alone["cmiou"].evaluate()
    assert together["cmiou"].segments == alone["cmiou"].segments == 4
    assert got["tags"].to_dict() == alone["tags"].evaluate().to_dict()
    s, t = got["semseg"], got["tags"]
    assert s.iou == pytest.approx([2 / 3, 2 / 3, 1 / 2]) and s.miou == pytest.approx(11 / 18)
    assert s.pixel_accuracy == pytest.approx(5 / 7)
    assert got["cmiou"] == pytest.approx(2 / 3)
    assert (t.precision, t.recall, t.micro_precision, t.micro_recall) == pytest.approx((0.75, 0.75, 0.75, 0.75))


def test_metric_set_process_returns_each_metrics_answer_for_the_image():
    out = MetricSet(fresh_metrics()).process(hand_images()[0])
    assert out["semseg"] is None and out["cmiou"] == pytest.approx([0.5, 2 / 3]) and out["tags"] == (1.0, 1.0)


def test_reset_forgets_every_image():
    metrics = MetricSet(fresh_metrics())
    for image in hand_images():
        metrics.process(image)
    before = metrics.evaluate()
    metrics.process(hand_images()[0])
    metrics.reset()
    empty = metrics.evaluate()
    assert math.isnan(empty["semseg"].miou) and sum(empty["semseg"].gt_pixels) == 0
    assert math.isnan(empty["cmiou"]) and metrics["cmiou"].segments == 0
    assert empty["tags"].images == 0 and empty["tags"].predicted == 0 and math.isnan(empty["tags"].precision)
    for image in hand_images():
        metrics.process(image)
    after = metrics.evaluate()
    assert after["semseg"].to_dict() == before["semseg"].to_dict()
    assert after["cmiou"] == before["cmiou"] and after["tags"].to_dict() == before["tags"].to_dict()


def test_metric_sets_nest():
    outer = MetricSet(inner=MetricSet(tags=TagMetrics()), cmiou=ClassAgnosticIoU())
    for image in hand_images():
        outer.process(image)
    got = outer.evaluate()
    assert got["inner"]["tags"].precision == 0.75 and got["cmiou"] == pytest.approx(2 / 3)


def test_metric_set_refuses_a_non_metric_and_a_name_twice():
    with pytest.raises(TypeError, match="'f1'"):
        MetricSet(f1=lambda image: 0)
    metrics = MetricSet(tags=TagMetrics())
    with pytest.raises(ValueError, match="'tags' is already"):
        metrics.add("tags", TagMetrics())


def test_convention_is_a_constructor_setting():
    with pytest.raises(ValueError, match="convention"):
        SemSegEvaluator(["a"], "coco")
    assert SemSegEvaluator(["a"], "mmseg").evaluate().convention == "mmseg"
    assert SemSegEvaluator(["a"]).evaluate().convention == "mmseg"


def test_a_metric_names_the_field_its_image_lacks():
    with pytest.raises(ValueError, match=r"SemSegEvaluator needs ImageEval\.pred"):
        SemSegEvaluator(["a"]).process(ImageEval(gt=np.zeros((1, 1), int)))
    with pytest.raises(ValueError, match=r"ClassAgnosticIoU needs ImageEval\.gt"):
        ClassAgnosticIoU().process(ImageEval(pred=np.zeros((1, 1), int)))
    with pytest.raises(ValueError, match="present or ImageEval.gt"):
        TagMetrics().process(ImageEval(predicted=[0]))
    with pytest.raises(ValueError, match=r"TagMetrics needs ImageEval\.predicted"):
        TagMetrics().process(ImageEval(present=[0]))


def test_cmiou_reads_the_segments_and_tags_default_to_the_ground_truths_classes():
    # cmIoU scores the unmapped regions, not the mapped prediction (which merged them into one class).
    image = ImageEval(gt=np.array([[0, 0, 1, 1]]), pred=np.zeros((1, 4), int), segments=np.array([[5, 5, 9, 9]]),
                      predicted=[1])
    assert ClassAgnosticIoU().process(image) == [1.0, 1.0]
    assert TagMetrics().process(image) == (1.0, 0.5)  # present: {0, 1}, those of the ground truth


def test_every_score_type_writes_standard_json():
    """NaN (a tag score with nothing predicted, an IoU of a class never seen) and infinities become null in
    each score type's dict, as in the report's: json.dumps writes NaN, which other parsers reject."""
    import json

    from selfseg.evaluate.result import InstanceScores, PanopticScores, SemSegScores, TagScores

    nan, inf = float("nan"), float("inf")
    tags = TagScores(precision=nan, recall=0.5, micro_precision=nan, micro_recall=inf, micro_f1=nan, images=1)
    sem = SemSegScores(convention="x", class_names=["a"], iou=[nan], accuracy=[nan], miou=nan, mean_accuracy=nan,
                       pixel_accuracy=1.0, fw_iou=nan, gt_pixels=[0], pred_pixels=[0])
    group = {"pq": nan, "sq": nan, "rq": nan, "n": 0}
    pan = PanopticScores(all=group, things=group, stuff=group, per_class={1: {"pq": nan}}, images=1)
    inst = InstanceScores(stats={"segm": {"AP": nan}}, images=1, detections=0)
    for scores in (tags, sem, pan, inst):
        text = json.dumps(scores.to_dict(), allow_nan=False)
        assert "null" in text, type(scores).__name__
    assert tags.to_dict()["recall"] == 0.5 and tags.to_dict()["micro_recall"] is None
