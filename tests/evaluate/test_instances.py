"""Mask and box AP through pycocotools' COCOeval on hand-built COCO files with known answers, and the checks
that keep bad results files from reaching it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from selfseg.errors import DatasetError
from selfseg.evaluate.instances import STAT_NAMES, coco_instance_scores


def rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(x) for x in r["size"]], "counts": r["counts"].decode("ascii")}


def square(y: int, x: int, s: int, shape=(64, 64)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y:y + s, x:x + s] = True
    return m


def gt_file(tmp_path, masks: list[tuple[np.ndarray, int]]):
    anns = []
    for k, (m, cat) in enumerate(masks, 1):
        box = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))
        anns.append({"id": k, "image_id": 1, "category_id": cat, "segmentation": rle(m), "iscrowd": 0,
                     "area": float(m.sum()), "bbox": [float(v) for v in box]})
    data = {"images": [{"id": 1, "height": 64, "width": 64, "file_name": "a.jpg"}], "annotations": anns,
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_an_exact_detection_scores_ap_1_and_a_wrong_category_0(tmp_path):
    gt = gt_file(tmp_path, [(square(4, 4, 10), 1), (square(20, 20, 40), 2)])  # small car (100 px), medium person
    exact = [{"image_id": 1, "category_id": 1, "segmentation": rle(square(4, 4, 10)), "score": 0.9},
             {"image_id": 1, "category_id": 2, "segmentation": rle(square(20, 20, 40)), "score": 0.8}]
    s = coco_instance_scores(gt, exact)
    for kind in ("segm", "bbox"):
        st = s.stats[kind]
        assert list(st) == list(STAT_NAMES)
        assert st["AP"] == pytest.approx(1.0) and st["AP50"] == pytest.approx(1.0) and st["APs"] == pytest.approx(1.0)
        assert st["APm"] == pytest.approx(1.0)
        assert st["APl"] == -1  # no large ground truth (over 96^2 pixels): COCOeval has nothing to average
    wrong = [{**exact[0], "category_id": 2}]
    s = coco_instance_scores(gt, wrong)
    assert s.stats["segm"]["AP"] == pytest.approx(0.0) and s.detections == 1


def test_a_half_overlapping_mask_counts_at_iou_50_but_not_75(tmp_path):
    gt = gt_file(tmp_path, [(square(0, 0, 20), 1)])
    shifted = square(0, 0, 20)
    shifted[:, :6] = False  # IoU 14/20 = 0.7
    s = coco_instance_scores(gt, [{"image_id": 1, "category_id": 1, "segmentation": rle(shifted), "score": 1.0}])
    assert s.stats["segm"]["AP50"] == pytest.approx(1.0) and s.stats["segm"]["AP75"] == pytest.approx(0.0)


def test_an_empty_results_list_is_no_detection_at_all(tmp_path):
    gt = gt_file(tmp_path, [(square(4, 4, 10), 1)])
    results = tmp_path / "results.json"
    results.write_text("[]")
    s = coco_instance_scores(gt, results)
    assert s.stats["segm"]["AP"] == pytest.approx(0.0) and s.detections == 0


@pytest.mark.parametrize("result, message", [
    ({"image_id": 7, "category_id": 1, "score": 1.0}, "image_id 7 is not in the ground truth"),
    ({"image_id": 1, "category_id": 9, "score": 1.0}, "category_id 9 is not in the ground truth"),
    ({"image_id": 1, "category_id": 1, "score": 1.0, "segmentation": rle(square(0, 0, 4, (8, 8)))},
     r"mask size \[8, 8\] is not image 1's \[64, 64\]"),
    ({"image_id": 1, "category_id": 1}, "expected image_id, category_id, segmentation"),
])
def test_bad_results_are_one_line_errors_naming_the_file(tmp_path, result, message):
    gt = gt_file(tmp_path, [(square(4, 4, 10), 1)])
    result = {"segmentation": rle(square(4, 4, 10)), **result}
    if "score" not in result:
        result.pop("segmentation")
    path = tmp_path / "results.json"
    path.write_text(json.dumps([result]))
    with pytest.raises(DatasetError, match=message) as err:
        coco_instance_scores(gt, path)
    assert "results.json" in str(err.value)


def test_evaluate_task_instance_on_the_coco_layout(tmp_path, capsys):
    from selfseg.cli import main

    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    gt_file(tmp_path, [(square(4, 4, 10), 1)]).rename(root / "annotations" / "instances_val2017.json")
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "segmentation": rle(square(4, 4, 10)),
                                    "score": 0.5}]))
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--task", "instance", "--dataset", "coco", "--root", str(root),
                 "--predictions", str(results), "--out", str(out)]) == 0
    assert "segm" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["segm"]["AP"] == pytest.approx(1.0) and written["bbox"]["AP"] == pytest.approx(1.0)
    from selfseg.evaluate.result import is_scores_file

    assert is_scores_file(out)  # selfseg's own, which a later evaluation may replace
    results.write_text(json.dumps([{"image_id": 5, "category_id": 1, "segmentation": rle(square(4, 4, 10)),
                                    "score": 0.5}]))
    assert main(["evaluate", "--task", "instance", "--dataset", "coco", "--root", str(root),
                 "--predictions", str(results)]) == 2
    err = capsys.readouterr().err
    assert "image_id 5 is not in the ground truth" in err and len(err.strip().splitlines()) == 1


def test_mask_ap_sizes_objects_by_their_mask_not_their_box(tmp_path):
    # a 30 x 30 car found exactly, and a false positive whose mask is small but whose box is large: by mask
    # area the false positive is small too (APs 0.5); by its box it would leave the small range (APs 1.0)
    gt = gt_file(tmp_path, [(square(0, 0, 30), 1)])
    fp = square(34, 20, 30) & ~square(35, 21, 28)  # a thin ring: 116 px inside a 30 x 30 box
    results = [{"image_id": 1, "category_id": 1, "segmentation": rle(square(0, 0, 30)), "score": 0.5,
                "bbox": [0.0, 0.0, 30.0, 30.0]},
               {"image_id": 1, "category_id": 1, "segmentation": rle(fp), "score": 0.9,
                "bbox": [10.0, 24.0, 40.0, 40.0]}]
    st = coco_instance_scores(gt, results).stats
    assert st["segm"]["APs"] == pytest.approx(st["segm"]["AP"])  # both objects are small: no size shift
    # the same results with one box missing: box AP computes it from the mask instead of failing
    results[0].pop("bbox")
    assert coco_instance_scores(gt, results).stats["bbox"]["AP"] >= 0


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(score="high"), "expected a numeric score"),
    (lambda r: r.update(bbox=None), r"expected bbox \[x, y, w, h\]"),
    (lambda r: r["segmentation"].update(counts=5), "expected a compressed RLE segmentation"),
    # pycocotools reads any string: a corrupt one as a mask of 4294967290 pixels, a cut one as a smaller mask
    (lambda r: r["segmentation"].update(counts="garbage!!"), "its RLE counts are corrupt"),
    (lambda r: r["segmentation"].update(counts=rle(square(4, 4, 10, (64, 32)))["counts"]),
     r"its RLE counts cover 2048 pixels, not the 64 x 64 = 4096"),
    (lambda r: r["segmentation"].update(counts=""), "cover 0 pixels"),
])
def test_malformed_result_fields_are_one_line_errors(tmp_path, change, message):
    gt = gt_file(tmp_path, [(square(4, 4, 10), 1)])
    result = {"image_id": 1, "category_id": 1, "segmentation": rle(square(4, 4, 10)), "score": 1.0}
    change(result)
    with pytest.raises(DatasetError, match=message):
        coco_instance_scores(gt, [result])


def test_rle_pixels_reads_pycocotools_strings_run_by_run():
    from selfseg.evaluate.instances import rle_pixels

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        m = rng.random((h, w)) < rng.random()
        assert rle_pixels(rle(m)["counts"]) == h * w
        assert rle_pixels(rle(m)["counts"].encode()) == h * w
    assert rle_pixels("garbage!!") is None and rle_pixels("P" * 7 + "0") is None  # 8 groups: no run of 32 bits
    valid = rle(np.ones((64, 64), bool))["counts"]
    assert rle_pixels(valid) == 4096 and rle_pixels(valid[:-1] + "\u00e9") is None  # non-ASCII is no '?'
    assert rle_pixels("0\ud800") is None  # a lone surrogate (JSON allows one): bytes outside the format
    assert rle_pixels("oooooo?") is None  # one run of about 2**34 pixels: beyond pycocotools' 32-bit counts


def test_malformed_ground_truth_is_one_line_error(tmp_path):
    gt = json.loads(gt_file(tmp_path, [(square(4, 4, 10), 1)]).read_text())
    del gt["annotations"][0]["iscrowd"]
    with pytest.raises(DatasetError, match=r"annotations\[0\]: expected id, image_id, category_id"):
        coco_instance_scores(gt, [])
    gt = json.loads(gt_file(tmp_path, [(square(4, 4, 10), 1)]).read_text())
    gt["images"].append({"id": "b", "height": 64, "width": 64})
    with pytest.raises(DatasetError, match="image ids mix int and str"):
        coco_instance_scores(gt, [])


def test_limit_scores_the_first_images_of_the_ground_truth_and_still_checks_every_result(tmp_path, capsys):
    from selfseg.cli import main

    data = json.loads(gt_file(tmp_path, [(square(4, 4, 10), 1)]).read_text())
    second = {**data["annotations"][0], "id": 2, "image_id": 2}
    data["images"].append({"id": 2, "height": 64, "width": 64, "file_name": "b.jpg"})
    data["annotations"].append(second)
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "segmentation": rle(square(4, 4, 10)),
                                    "score": 0.5}]))  # image 2's car is missed
    out = tmp_path / "scores.json"
    args = ["evaluate", "--task", "instance", "--dataset", "coco", "--root", str(root), "--predictions",
            str(results), "--out", str(out)]
    assert main(args) == 0
    both = json.loads(out.read_text())
    assert both["images"] == 2 and both["segm"]["AP"] == pytest.approx(0.5, abs=0.01)
    assert main([*args, "--limit", "1"]) == 0
    first = json.loads(out.read_text())
    assert first["images"] == 1 and first["segm"]["AP"] == pytest.approx(1.0)
    results.write_text(json.dumps([{"image_id": 2, "category_id": 9, "segmentation": rle(square(4, 4, 10)),
                                    "score": 0.5}]))
    capsys.readouterr()
    assert main([*args, "--limit", "1"]) == 2
    assert "category_id 9 is not in the ground truth" in capsys.readouterr().err


def test_mask_only_ground_truth_gets_its_masks_boxes_for_box_ap(tmp_path):
    """A ground-truth object without a bbox (mask AP does not read one) is scored for box AP on its mask's box,
    as a result without one is; one whose mask cannot be read for a box is a one-line error."""
    gt = json.loads(gt_file(tmp_path, [(square(4, 4, 10), 1), (square(20, 20, 40), 2)]).read_text())
    for ann in gt["annotations"]:
        del ann["bbox"]
    exact = [{"image_id": 1, "category_id": 1, "segmentation": rle(square(4, 4, 10)), "score": 0.9},
             {"image_id": 1, "category_id": 2, "segmentation": rle(square(20, 20, 40)), "score": 0.8}]
    s = coco_instance_scores(gt, exact)
    assert s.stats["segm"]["AP"] == pytest.approx(1.0) and s.stats["bbox"]["AP"] == pytest.approx(1.0)
    off = [{**exact[0], "bbox": [30.0, 30.0, 10.0, 10.0]}, exact[1]]  # a box the mask does not have
    assert coco_instance_scores(gt, off).stats["bbox"]["AP"] < 1.0
    polygon = {**gt["annotations"][0], "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]]}
    del gt["images"][0]["height"]
    with pytest.raises(DatasetError, match=r"annotations\[0\]: no bbox, and none can be read from its mask"):
        coco_instance_scores({**gt, "annotations": [polygon]}, [])
