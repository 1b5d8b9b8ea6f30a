"""Panoptic quality against the COCO panoptic reference (`panopticapi`'s pq_compute, from the panopticapi-lite
package) on the same files: hand-built cases with known PQ (void, crowd, a category with only false positives,
an empty prediction) and the real ADE20K sample's class maps cut into connected components."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfseg.errors import DatasetError
from selfseg.evaluate.panoptic import PanopticGroundTruth, pq_compute, pq_score
from selfseg.segment.result import id2rgb, rgb2id

CATEGORIES = [{"id": 1, "name": "car", "isthing": 1}, {"id": 2, "name": "road", "isthing": 0},
              {"id": 3, "name": "person", "isthing": 1}]


def write_pair(folder: Path, images: dict[str, tuple[np.ndarray, list[dict]]], categories=CATEGORIES,
               with_area: bool = True) -> tuple[Path, Path]:
    """A COCO panoptic JSON + PNG folder: image name -> (segment-id map, segments_info)."""
    pngs = folder / "panoptic"
    pngs.mkdir(parents=True, exist_ok=True)
    annotations = []
    for name, (ids, segments) in images.items():
        Image.fromarray(id2rgb(ids)).save(pngs / f"{name}.png")
        segs = [dict(s) for s in segments]
        if with_area:
            for s in segs:
                s.setdefault("area", int((ids == s["id"]).sum()))
                s.setdefault("iscrowd", 0)
        annotations.append({"image_id": name, "file_name": f"{name}.png", "segments_info": segs})
    path = folder / "panoptic.json"
    path.write_text(json.dumps({"annotations": annotations, "categories": categories,
                                "images": [{"id": n, "file_name": f"{n}.jpg"} for n in images]}))
    return path, pngs


def reference(gt: tuple[Path, Path], pred: tuple[Path, Path]) -> dict:
    evaluation = pytest.importorskip("panopticapi.evaluation", reason="needs panopticapi-lite (test extra)")
    return evaluation.pq_compute(str(gt[0]), str(pred[0]), gt_folder=str(gt[1]), pred_folder=str(pred[1]))


def ours(gt, pred):
    return pq_compute(gt[0], gt[1], pred[0], pred[1])


def same_as_reference(scores, ref) -> None:
    for group, mine in (("All", scores.all), ("Things", scores.things), ("Stuff", scores.stuff)):
        for k in ("pq", "sq", "rq"):
            assert mine[k] == pytest.approx(ref[group][k], abs=1e-6), (group, k)
        assert mine["n"] == ref[group]["n"]
    for cat, v in scores.per_class.items():
        for k in ("pq", "sq", "rq"):
            assert v[k] == pytest.approx(ref["per_class"][cat][k], abs=1e-6)


def test_rgb_ids_round_trip():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 16777215, 123456]], np.uint32)
    assert (rgb2id(id2rgb(ids)) == ids).all()


# A 4 x 6 image: a car (thing) on the left, road (stuff) on the right, a void column in the middle.
GT_IDS = np.array([[1, 1, 0, 2, 2, 2]] * 4, np.uint32)
GT_SEGS = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}]


@pytest.mark.parametrize("name, pred_ids, pred_segs, expected", [
    # exact: PQ 1 everywhere
    ("exact", GT_IDS, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}], {"all": 1.0, "things": 1.0}),
    # the car spills onto void: the void pixels leave the union, still IoU 1
    ("void", np.array([[1, 1, 1, 2, 2, 2]] * 4, np.uint32), [{"id": 1, "category_id": 1},
                                                             {"id": 2, "category_id": 2}], {"all": 1.0}),
    # road covers 2 of 3 columns: IoU 2/3 > 0.5, matched; PQ stuff 2/3, things 1
    ("partial", np.array([[1, 1, 0, 2, 2, 0]] * 4, np.uint32), [{"id": 1, "category_id": 1},
                                                                {"id": 2, "category_id": 2}],
     {"things": 1.0, "stuff": 2 / 3, "all": (1 + 2 / 3) / 2}),
    # a person nowhere in the ground truth: a category with only a false positive counts with PQ 0
    ("fp only", np.array([[1, 1, 0, 2, 2, 3]] * 4, np.uint32),
     [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}, {"id": 3, "category_id": 3}], None),
    # nothing predicted: every ground-truth segment is a false negative
    ("empty", np.zeros((4, 6), np.uint32), [], {"all": 0.0}),
])
def test_hand_built_cases_equal_the_reference(tmp_path, name, pred_ids, pred_segs, expected):
    gt = write_pair(tmp_path / "gt", {"a": (GT_IDS, GT_SEGS)})
    pred = write_pair(tmp_path / "pred", {"a": (pred_ids, pred_segs)}, with_area=False)
    scores = ours(gt, pred)
    same_as_reference(scores, reference(gt, pred))
    for group, v in (expected or {}).items():
        assert getattr(scores, group)["pq"] == pytest.approx(v)
    if name == "fp only":
        assert scores.per_class[3]["fp"] == 1 and scores.per_class[3]["pq"] == 0 and scores.things["n"] == 2


def test_a_crowd_region_is_never_matched_and_hides_its_own_category(tmp_path):
    # the right half is a crowd of people; a person predicted mostly on it is not a false positive
    gt_ids = np.array([[1, 1, 9, 9, 9, 9]] * 3 + [[2] * 6], np.uint32)
    gt = write_pair(tmp_path / "gt", {"a": (gt_ids, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2},
                                                     {"id": 9, "category_id": 3, "iscrowd": 1}])})
    pred_ids = np.array([[1, 1, 5, 5, 5, 0]] * 3 + [[2] * 6], np.uint32)
    pred = write_pair(tmp_path / "pred", {"a": (pred_ids, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2},
                                                           {"id": 5, "category_id": 3}])}, with_area=False)
    scores = ours(gt, pred)
    same_as_reference(scores, reference(gt, pred))
    assert 3 not in scores.per_class and scores.all["n"] == 2  # the person category is not counted at all


def test_no_category_counted_is_zero_with_n_zero_where_the_reference_divides_by_zero(tmp_path):
    gt = write_pair(tmp_path / "gt", {"a": (np.zeros((2, 2), np.uint32), [])})
    pred = write_pair(tmp_path / "pred", {"a": (np.zeros((2, 2), np.uint32), [])}, with_area=False)
    scores = ours(gt, pred)
    assert scores.all == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}


def _components(labels: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Every class region of a label map cut into 4-connected components, one segment each."""
    from scipy import ndimage

    ids = np.zeros(labels.shape, np.uint32)
    segments = []
    for value in np.unique(labels):
        if value == 0:  # ADE20K's "other": void
            continue
        comp, n = ndimage.label(labels == value)
        for k in range(1, n + 1):
            sid = len(segments) + 1
            ids[comp == k] = sid
            segments.append({"id": sid, "category_id": int(value)})
    return ids, segments


def test_the_real_ade20k_sample_cut_into_components_equals_the_reference(tmp_path):
    files = sorted((Path(__file__).parents[2] / "examples" / "ade20k_sample" / "annotations").glob("*.png"))
    assert len(files) == 3  # the repository's copy of three real ADE20K validation annotations
    rng = np.random.default_rng(0)
    gt_images, pred_images = {}, {}
    for f in files:
        labels = np.asarray(Image.open(f))
        ids, segments = _components(labels)
        gt_images[f.stem] = (ids, segments)
        # a prediction: the same components with some relabelled, some dropped, some grown into their neighbour
        pred = ids.copy()
        kept = []
        for s in segments:
            r = rng.random()
            if r < 0.15:
                pred[pred == s["id"]] = 0  # dropped: a false negative
                continue
            cat = s["category_id"] if r > 0.3 else int(rng.integers(1, 151))  # relabelled
            kept.append({"id": s["id"], "category_id": cat})
        pred = np.where(np.roll(pred, 3, axis=1) != 0, np.roll(pred, 3, axis=1), pred)  # shifted: IoU < 1
        present = set(np.unique(pred).tolist())
        pred_images[f.stem] = (pred, [s for s in kept if s["id"] in present])
    categories = [{"id": i, "name": f"c{i}", "isthing": int(i % 3 == 0)} for i in range(1, 151)]
    gt = write_pair(tmp_path / "gt", gt_images, categories)
    pred = write_pair(tmp_path / "pred", pred_images, categories, with_area=False)
    scores = ours(gt, pred)
    same_as_reference(scores, reference(gt, pred))
    assert 0 < scores.all["pq"] < 1 and scores.all["n"] >= 10


@pytest.mark.parametrize("break_it, message", [
    (lambda ids, segs: (ids, segs[:1]), "segment id 2 is in the PNG and not in its segments_info"),
    (lambda ids, segs: (ids, segs + [{"id": 7, "category_id": 1}]), "segment id 7 is in segments_info and not"),
    (lambda ids, segs: (ids, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 99}]),
     "category_id 99, which the dataset does not have"),
    (lambda ids, segs: (ids[:2], segs), r"expected a prediction of the ground truth's size"),
])
def test_bad_predictions_are_one_line_errors_naming_the_file(tmp_path, break_it, message):
    gt = write_pair(tmp_path / "gt", {"a": (GT_IDS, GT_SEGS)})
    ids, segs = break_it(GT_IDS.copy(), [dict(s) for s in GT_SEGS])
    pred = write_pair(tmp_path / "pred", {"a": (ids, segs)}, with_area=False)
    with pytest.raises(DatasetError, match=message) as err:
        ours(gt, pred)
    assert "a.png" in str(err.value) and "\n" not in str(err.value)


def test_missing_and_unknown_images_and_a_missing_png(tmp_path):
    gt = write_pair(tmp_path / "gt", {"a": (GT_IDS, GT_SEGS), "b": (GT_IDS, GT_SEGS)})
    pred = write_pair(tmp_path / "pred", {"a": (GT_IDS, GT_SEGS)}, with_area=False)
    with pytest.raises(DatasetError, match="no prediction for image_id 'b'"):
        ours(gt, pred)
    pred = write_pair(tmp_path / "pred2", {"a": (GT_IDS, GT_SEGS), "b": (GT_IDS, GT_SEGS),
                                           "z": (GT_IDS, GT_SEGS)}, with_area=False)
    with pytest.raises(DatasetError, match="image_id 'z', which the ground truth lacks"):
        ours(gt, pred)
    (tmp_path / "pred2" / "panoptic" / "b.png").unlink()
    data = json.loads(pred[0].read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != "z"]
    pred[0].write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"b\.png: no such PNG"):
        ours(gt, pred)


def test_limit_scores_the_first_images_of_the_ground_truth(tmp_path):
    gt = PanopticGroundTruth.from_coco(*write_pair(tmp_path / "gt", {"a": (GT_IDS, GT_SEGS), "b": (GT_IDS, GT_SEGS)}))
    pred = write_pair(tmp_path / "pred", {"a": (GT_IDS, GT_SEGS)}, with_area=False)
    with pytest.raises(DatasetError, match="no prediction for image_id 'b'"):
        pq_score(gt, *pred)
    s = pq_score(gt, *pred, limit=1)
    assert s.all["pq"] == pytest.approx(1.0)
    assert sum(v["tp"] for v in s.per_class.values()) == len(GT_SEGS)  # image a's segments, once
    extra = write_pair(tmp_path / "pred2", {"a": (GT_IDS, GT_SEGS), "z": (GT_IDS, GT_SEGS)}, with_area=False)
    with pytest.raises(DatasetError, match="image_id 'z', which the ground truth lacks"):
        pq_score(gt, *extra, limit=1)


@pytest.mark.parametrize("dataset, gt_json, gt_pngs", [
    ("coco-panoptic", "annotations/panoptic_val2017.json", "annotations/panoptic_val2017"),
    ("ade20k-panoptic", "ade20k_panoptic_val.json", "ade20k_panoptic_val"),
])
def test_evaluate_task_panoptic_on_the_datasets_layouts(tmp_path, capsys, dataset, gt_json, gt_pngs):
    from selfseg.cli import main

    root = tmp_path / "root"
    gt = write_pair(tmp_path / "staging", {"a": (GT_IDS, GT_SEGS)})
    (root / gt_json).parent.mkdir(parents=True, exist_ok=True)
    gt[0].rename(root / gt_json)
    gt[1].rename(root / gt_pngs)
    pred = write_pair(tmp_path / "pred", {"a": (np.array([[1, 1, 0, 2, 2, 0]] * 4, np.uint32), GT_SEGS)},
                      with_area=False)
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--task", "panoptic", "--dataset", dataset, "--root", str(root),
                 "--predictions", str(pred[0].parent), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "PQ" in table and "Things" in table and "83.3" in table  # (1 + 2/3) / 2 in percent
    written = json.loads(out.read_text())
    assert written["task"] == "panoptic" and written["PQ"] == pytest.approx((1 + 2 / 3) / 2)
    assert written["pq_things"] == pytest.approx(1.0) and written["units"].startswith("fractions")
    # a wrong root prints the layout expected
    assert main(["evaluate", "--task", "panoptic", "--dataset", dataset, "--root", str(tmp_path / "nope"),
                 "--predictions", str(pred[0].parent)]) == 2
    err = capsys.readouterr().err
    assert "expected layout" in err and gt_json.split("/")[-1] in err
    # a dataset of another task is named as such
    assert main(["evaluate", "--task", "panoptic", "--dataset", "voc", "--root", str(root),
                 "--predictions", str(pred[0].parent)]) == 2
    assert "expected one of coco-panoptic, ade20k-panoptic or cityscapes" in capsys.readouterr().err


def test_panoptic_scores_inside_the_dataset_root_are_replaced_by_a_rerun(tmp_path, capsys):
    """Predictions kept under --root: the default panoptic_scores.json is selfseg's own (told by its content)
    and a second run replaces it; a root without the ground truth gives the layout before anything about
    the scores file."""
    from selfseg.cli import main
    from selfseg.evaluate.result import is_scores_file

    root = tmp_path / "root"
    gt = write_pair(tmp_path / "staging", {"a": (GT_IDS, GT_SEGS)})
    root.mkdir()
    gt[0].rename(root / "ade20k_panoptic_val.json")
    gt[1].rename(root / "ade20k_panoptic_val")
    pred = write_pair(root / "pred", {"a": (GT_IDS, GT_SEGS)}, with_area=False)[0].parent
    args = ["evaluate", "--task", "panoptic", "--dataset", "ade20k-panoptic", "--predictions", str(pred)]
    for _ in range(2):
        assert main([*args, "--root", str(root)]) == 0, capsys.readouterr().err
        assert is_scores_file(pred / "panoptic_scores.json")
    assert main([*args, "--root", str(tmp_path)]) == 2  # holds the predictions, not the dataset
    err = capsys.readouterr().err
    assert "expected layout" in err and "cannot write the scores" not in err


def test_a_segmentation_writes_what_the_evaluators_read(tmp_path):
    """The pipeline's own output feeds `--task panoptic` and `--task instance` without glue code: scored
    against ground truth made of the same masks, PQ and AP are 1; open-vocabulary labels go through a
    label -> category mapping, unmapped ones leave void, and stuff merges to one segment per category."""
    from selfseg.evaluate.instances import coco_instance_scores
    from selfseg.segment.result import Segmentation, encode_rle, write_coco_panoptic

    masks = np.zeros((4, 8, 8), bool)
    masks[0, :4, :4] = True   # a sedan -> car (thing)
    masks[1, 4:, :] = True    # street -> road (stuff)
    masks[2, :4, 4:6] = True  # asphalt -> road too: merges with the street
    masks[3, :4, 6:] = True   # a cloud -> nothing in this dataset: void
    seg = Segmentation(image_size=(8, 8), masks=masks, boxes=[[0, 0, 4, 4], [0, 4, 8, 8], [4, 0, 6, 4], [6, 0, 8, 4]],
                       scores=[0.9, 0.8, 0.7, 0.6], mask_scores=[1, 1, 1, 1],
                       labels=["sedan", "street", "asphalt", "cloud"], classes=["sedan", "street", "asphalt", "cloud"],
                       segmenter="test")
    mapping = {"sedan": 1, "street": 2, "asphalt": 2, "cloud": None}
    pred_json = write_coco_panoptic(tmp_path / "pred", [("a", "a", seg)], mapping, stuff=[2])
    written = json.loads(pred_json.read_text())["annotations"][0]["segments_info"]
    assert [(s["category_id"], s["area"]) for s in written] == [(1, 16), (2, 40)]
    gt_ids = np.zeros((8, 8), np.uint32)
    gt_ids[:4, :4] = 1
    gt_ids[4:, :] = 2
    gt_ids[:4, 4:6] = 2
    gt = write_pair(tmp_path / "gt", {"a": (gt_ids, GT_SEGS)})
    scores = pq_compute(gt[0], gt[1], pred_json, tmp_path / "pred" / "panoptic")
    assert scores.all["pq"] == pytest.approx(1.0) and scores.all["n"] == 2
    # instances: the COCO results of the same segmentation against ground truth of the same masks
    gt_instances = {"images": [{"id": 1, "height": 8, "width": 8}], "categories": [{"id": 1, "name": "car"}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 16.0,
                                     "bbox": [0.0, 0.0, 4.0, 4.0], "segmentation": encode_rle(masks[0])}]}
    results = seg.to_coco_results(1, {"sedan": 1})
    assert len(results) == 1 and results[0]["category_id"] == 1
    assert coco_instance_scores(gt_instances, results).stats["segm"]["AP"] == pytest.approx(1.0)


def _cityscapes_tree(root: Path) -> np.ndarray:
    """gtFine/val/aachen/aachen_000000_000019_gtFine_instanceIds.png: road, sky, two cars, a group of cars
    without instance ids (crowd), a person, and void (unlabeled 0, ego vehicle 1)."""
    raw = np.full((8, 12), 7, np.int32)  # road
    raw[0, :] = 23                       # sky
    raw[1:3, 0:3] = 26001                # car 1
    raw[1:3, 4:7] = 26002                # car 2
    raw[4:6, 0:4] = 26                   # a car group: crowd
    raw[4:7, 8:10] = 24000               # a person
    raw[7, 10:] = 1                      # ego vehicle: outside the 19
    raw[3, 11] = 0                       # unlabeled
    folder = root / "gtFine" / "val" / "aachen"
    folder.mkdir(parents=True)
    Image.fromarray(raw.astype(np.uint16)).save(folder / "aachen_000000_000019_gtFine_instanceIds.png")
    return raw


def test_cityscapes_instance_ids_become_panoptic_segments_scored_as_the_reference(tmp_path, capsys):
    from selfseg.cli import main
    from selfseg.evaluate.annotations import cityscapes_panoptic
    from selfseg.evaluate.panoptic import pq_score

    raw = _cityscapes_tree(tmp_path / "cs")
    gt = cityscapes_panoptic(tmp_path / "cs")
    assert gt.image_ids == ["aachen_000000_000019"] and len(gt.categories) == 19
    ids, segments = gt.load("aachen_000000_000019")
    by_id = {s["id"]: s for s in segments}
    assert by_id[26]["iscrowd"] == 1 and by_id[26001]["iscrowd"] == 0 and by_id[7]["iscrowd"] == 0
    assert 1 not in by_id and (ids[raw == 1] == 0).all()  # the ego vehicle is void
    # a prediction: road and sky exact, car 1 exact, car 2 missed, a person found, a spurious bus on the crowd
    pred_ids = np.zeros(raw.shape, np.uint32)
    pred_ids[raw == 7] = 1
    pred_ids[raw == 23] = 2
    pred_ids[raw == 26001] = 3
    pred_ids[raw == 24000] = 4
    pred_ids[4:6, 0:4] = 5
    pred_segs = [{"id": 1, "category_id": 7}, {"id": 2, "category_id": 23}, {"id": 3, "category_id": 26},
                 {"id": 4, "category_id": 24}, {"id": 5, "category_id": 28}]
    pred = write_pair(tmp_path / "pred", {"aachen_000000_000019": (pred_ids, pred_segs)}, with_area=False)
    scores = pq_score(gt, pred[0], pred[1])
    # the same ground truth written as COCO panoptic files, scored by the reference
    categories = list(gt.categories.values())
    ref_gt = write_pair(tmp_path / "gt", {"aachen_000000_000019": (ids, segments)}, categories)
    same_as_reference(scores, reference(ref_gt, pred))
    assert scores.per_class[26]["tp"] == 1 and scores.per_class[26]["fn"] == 1 and scores.per_class[28]["fp"] == 1
    out = tmp_path / "pq.json"
    assert main(["evaluate", "--task", "panoptic", "--dataset", "cityscapes", "--root", str(tmp_path / "cs"),
                 "--predictions", str(pred[0].parent), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["PQ"] == pytest.approx(scores.all["pq"])


def test_cityscapes_instances_for_coco_eval(tmp_path):
    from selfseg.evaluate.annotations import cityscapes_instances
    from selfseg.evaluate.instances import coco_instance_scores
    from selfseg.segment.result import encode_rle

    raw = _cityscapes_tree(tmp_path / "cs")
    gt = cityscapes_instances(tmp_path / "cs")
    assert {c["id"] for c in gt["categories"]} == {24, 25, 26, 27, 28, 31, 32, 33}
    assert sorted((a["category_id"], a["iscrowd"]) for a in gt["annotations"]) == [(24, 0), (26, 0), (26, 0),
                                                                                     (26, 1)]
    results = [{"image_id": "aachen_000000_000019", "category_id": cat, "segmentation": encode_rle(raw == v),
                "score": 0.9} for v, cat in ((26001, 26), (26002, 26), (24000, 24))]
    stats = coco_instance_scores(gt, results).stats["segm"]
    assert stats["AP"] == pytest.approx(1.0)


def test_malformed_panoptic_files_are_one_line_errors(tmp_path):
    gt = write_pair(tmp_path / "gt", {"a": (GT_IDS, GT_SEGS)})
    pred = write_pair(tmp_path / "pred", {"a": (GT_IDS, GT_SEGS)}, with_area=False)
    data = json.loads(pred[0].read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = "car"
    pred[0].write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"segments_info\[0\]: expected integer id and category_id"):
        ours(gt, pred)
    # a grey PNG would read as other segment ids
    Image.fromarray(GT_IDS.astype(np.uint8)).save(pred[1] / "a.png")
    data["annotations"][0]["segments_info"][0]["category_id"] = 1
    pred[0].write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="expected an RGB PNG of segment ids"):
        ours(gt, pred)
    # two ground-truth annotations of one image
    gdata = json.loads(gt[0].read_text())
    gdata["annotations"].append(dict(gdata["annotations"][0]))
    gt[0].write_text(json.dumps(gdata))
    with pytest.raises(DatasetError, match="image_id 'a' has two annotations"):
        ours(gt, pred)


def test_write_coco_panoptic_takes_stuff_from_the_categories_and_refuses_a_repeated_stem(tmp_path):
    from selfseg.segment.result import Segmentation, write_coco_panoptic

    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True
    masks[1, 2:] = True
    seg = Segmentation(image_size=(4, 4), masks=masks, boxes=[[0, 0, 4, 2], [0, 2, 4, 4]], scores=[1, 1],
                       mask_scores=[1, 1], labels=["road", "street"], classes=["road", "street"], segmenter="t")
    path = write_coco_panoptic(tmp_path, [("a", "a", seg)], {"road": 2, "street": 2}, categories=CATEGORIES)
    segments = json.loads(path.read_text())["annotations"][0]["segments_info"]
    assert [(s["category_id"], s["area"]) for s in segments] == [(2, 16)]  # road is stuff: one segment
    with pytest.raises(ValueError, match="two images with the file stem 'a'"):
        write_coco_panoptic(tmp_path / "b", [("a", "a", seg), ("b", "a", seg)])
