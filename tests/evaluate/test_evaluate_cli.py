"""`selfseg evaluate` in-process: scores of label-map folders against the real ADE20K sample and a tiny
hand-computed folder dataset, and the one-line failures (exit 2) for unusable inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfseg.cli import main
from selfseg.evaluate.datasets import ADE_LAYOUT, CITYSCAPES_LAYOUT, IGNORE, VOC_LAYOUT, load_dataset

REPO = Path(__file__).resolve().parents[2]
ADE_SAMPLE = REPO / "examples" / "ade20k_sample"
ADE_IDS = [f"ADE_val_0000000{i}" for i in (1, 2, 3)]


def write_preds(folder: Path, maps: dict, dtype=np.uint8, ignore: int = 255, ext: str = ".png") -> Path:
    """Label maps in evaluation indices (IGNORE -> the dataset's "no class" value)."""
    folder.mkdir(parents=True, exist_ok=True)
    for sid, arr in maps.items():
        arr = np.asarray(arr)
        Image.fromarray(np.where(arr == IGNORE, ignore, arr).astype(dtype)).save(folder / f"{sid}{ext}")
    return folder


def evaluate(capsys, *args: str):
    code = main(["evaluate", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def ade_gt() -> dict:
    ds = load_dataset("ade20k", ADE_SAMPLE)
    return {s.id: ds.read_label(s) for s in ds.samples}


# ------------------------------------------------------------------------------------------------ real ADE sample


@pytest.mark.parametrize("convention", ["detectron2", "mmseg"])
def test_ade_sample_perfect_predictions(tmp_path, capsys, ade_gt, convention):
    pred = write_preds(tmp_path / "pred", ade_gt)
    code, out, err = evaluate(capsys, "--dataset", "ade20k", "--root", ADE_SAMPLE, "--predictions", pred,
                              "--convention", convention)
    assert code == 0, err
    assert f"mIoU ({convention})" in out and "100.00" in out
    assert f"scores written to {pred / 'scores.json'}" in err
    js = json.loads((pred / "scores.json").read_text())
    assert js["dataset"] == "ade20k" and js["split"] == "val" and js["images"] == 3
    assert js["convention"] == convention and js["failed"] == []
    for key in ("mIoU", "mAcc", "pixel_accuracy", "fwIoU", "cmIoU"):
        assert js[key] == pytest.approx(1.0), key
    present = sorted({int(v) for g in ade_gt.values() for v in np.unique(g) if v != IGNORE})
    assert js["cmIoU_segments"] == sum(len(set(np.unique(g).tolist()) - {IGNORE}) for g in ade_gt.values())
    per_class = list(js["per_class"].values())
    assert sum(c["gt_pixels"] for c in per_class) == sum(int((g != IGNORE).sum()) for g in ade_gt.values())
    scored = [c for c in per_class if c["iou"] is not None]
    assert len(scored) == len(present) and all(c["iou"] == pytest.approx(1.0) for c in scored)
    assert all(c["gt_pixels"] == c["pred_pixels"] for c in per_class)


def test_ade_sample_per_class_has_every_class(tmp_path, capsys, ade_gt):
    pred = write_preds(tmp_path / "pred", ade_gt)
    assert evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred)[0] == 0
    assert len(json.loads((pred / "scores.json").read_text())["per_class"]) == 150


def test_ade_sample_no_class_predicted(tmp_path, capsys, ade_gt):
    pred = write_preds(tmp_path / "pred", {k: np.full(g.shape, IGNORE) for k, g in ade_gt.items()})
    out_json = tmp_path / "deep" / "er" / "s.json"
    code, out, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred, "-o", out_json)
    assert code == 0, err
    assert not (pred / "scores.json").exists()  # --out (parents created) instead of the default
    js = json.loads(out_json.read_text())
    assert js["mIoU"] == 0.0 and js["pixel_accuracy"] == 0.0 and js["mAcc"] == 0.0
    assert all(c["pred_pixels"] == 0 for c in js["per_class"].values())
    # cmIoU: "no class" is one predicted segment covering every scored pixel, so each ground-truth
    # segment's best IoU is its size over the image's scored pixels.
    best = [int((g == v).sum()) / int((g != IGNORE).sum())
            for g in ade_gt.values() for v in np.unique(g) if v != IGNORE]
    assert js["cmIoU"] == pytest.approx(np.mean(best)) and js["cmIoU_segments"] == len(best)
    assert "mIoU (mmseg)" in out and " 0.00" in out


def test_ade_sample_limit(tmp_path, capsys, ade_gt):
    # only the first image needs a prediction when --limit 1
    pred = write_preds(tmp_path / "pred", {ADE_IDS[0]: ade_gt[ADE_IDS[0]]})
    code, _, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred, "--limit", "1")
    assert code == 0, err
    js = json.loads((pred / "scores.json").read_text())
    assert js["images"] == 1 and js["mIoU"] == pytest.approx(1.0)
    # 0 means every image, as `benchmark --limit 0` and evaluation.limit do: the others now need predictions
    code, _, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred, "--limit", "0")
    assert code != 0 and ADE_IDS[1] in err


# ------------------------------------------------------------------------------------------------ hand-computed

# Folder dataset, classes 0 sky, 1 grass, 2 cow; 255 = ignore. "cow" is never in the ground truth but is
# predicted on 3 pixels, so the two mIoU conventions differ.
X = 255
GT = {
    "a": [[0, 0, 0, 0],
          [0, 0, 0, 0],
          [1, 1, 1, 1],
          [1, 1, X, X]],
    "b": [[1, 1, 1, 1],
          [1, 1, 1, 1],
          [0, 0, 0, 0],
          [0, 0, 0, 0]],
}
PRED = {
    "a": [[0, 0, 0, 0],
          [0, 0, 1, 1],
          [1, 1, 1, 2],
          [1, X, 0, 0]],   # the two 0s sit on ignored ground truth: not counted anywhere
    "b": [[1, 1, 1, 1],
          [1, 1, 2, 2],
          [0, 0, 0, 0],
          [0, 0, 0, X]],
}
# Confusion over scored pixels (a: 14, b: 16):
#   sky:   gt 8+8 = 16; tp 6+7 = 13; predicted 13 (a: the 2 sky->grass are grass's false positives)
#          IoU = 13 / (16 + 13 - 13) = 13/16 = 0.8125, acc = 13/16
#   grass: gt 6+8 = 14; tp 4+6 = 10; predicted 10 + 2 = 12; IoU = 10 / (14 + 12 - 10) = 10/16 = 0.625, acc = 10/14
#   cow:   gt 0; predicted 1+2 = 3; tp 0 -> IoU 0 where it counts
# detectron2 (classes with ground truth only): mIoU = (0.8125 + 0.625) / 2 = 0.71875
# mmseg (classes in ground truth or prediction): mIoU = (0.8125 + 0.625 + 0) / 3 = 0.4791666...
# both: pixel accuracy = 23/30; mAcc = (13/16 + 10/14) / 2; fwIoU = (0.8125*16 + 0.625*14) / 30 = 0.725
# cmIoU (class segments, scored pixels only):
#   a: sky gt (8) best = pred sky (6 px, all inside) 6/8 = 0.75; grass gt (6) best = pred grass (6 px, 4 inside)
#      4/8 = 0.5     b: grass gt (8) vs pred grass (6 inside) 6/8 = 0.75; sky gt (8) vs pred sky (7) 7/8 = 0.875
#   cmIoU = (0.75 + 0.5 + 0.75 + 0.875) / 4 = 0.71875 over 4 segments
EXPECTED = {
    "detectron2": {"mIoU": 0.71875, "cow": None},
    "mmseg": {"mIoU": (0.8125 + 0.625) / 3, "cow": 0.0},
}


def make_hand_dataset(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("sky\ngrass;lawn\ncow\n")
    for sid, gt in GT.items():
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "images" / f"{sid}.png")
        write_preds(root / "masks", {sid: gt})
    pred = write_preds(tmp_path / "pred", PRED)
    return root, pred


@pytest.mark.parametrize("convention", ["detectron2", "mmseg"])
def test_hand_computed_scores(tmp_path, capsys, convention):
    root, pred = make_hand_dataset(tmp_path)
    code, out, err = evaluate(capsys, "--dataset", "folder", "--root", root, "--predictions", pred,
                              "--convention", convention)
    assert code == 0, err
    js = json.loads((pred / "scores.json").read_text())
    exp = EXPECTED[convention]
    assert js["convention"] == convention and js["images"] == 2 and js["dataset"] == "folder"
    assert js["mIoU"] == pytest.approx(exp["mIoU"])
    assert js["pixel_accuracy"] == pytest.approx(23 / 30)
    assert js["mAcc"] == pytest.approx((13 / 16 + 10 / 14) / 2)
    assert js["fwIoU"] == pytest.approx(0.725)
    assert js["cmIoU"] == pytest.approx(0.71875) and js["cmIoU_segments"] == 4
    pc = js["per_class"]
    assert list(pc) == ["sky", "grass", "cow"]
    assert pc["sky"] == {"index": 0, "iou": pytest.approx(0.8125), "accuracy": pytest.approx(13 / 16), "gt_pixels": 16,
                         "pred_pixels": 13}
    assert pc["grass"] == {"index": 1, "iou": pytest.approx(0.625), "accuracy": pytest.approx(10 / 14), "gt_pixels": 14,
                           "pred_pixels": 12}
    assert pc["cow"] == {"index": 2, "iou": exp["cow"], "accuracy": None, "gt_pixels": 0, "pred_pixels": 3}
    # the table: percent, and only the scored classes listed
    assert f"mIoU ({convention})" in out and "76.67" in out
    cow_rows = [ln.split() for ln in out.splitlines() if ln.split()[:1] == ["cow"]]
    assert cow_rows == ([] if convention == "detectron2" else [["cow", "0.00"]])
    if convention == "mmseg":
        assert "47.92" in out


def test_hand_computed_components_same_as_class_segments_here(tmp_path, capsys):
    # every label region of GT and PRED above is one 8-connected piece on the scored pixels
    root, pred = make_hand_dataset(tmp_path)
    assert evaluate(capsys, "-d", "folder", "-r", root, "-p", pred, "--cmiou-segments", "components")[0] == 0
    js = json.loads((pred / "scores.json").read_text())
    assert js["cmIoU"] == pytest.approx(0.71875) and js["cmIoU_segments"] == 4


def test_components_split_a_class_into_pieces(tmp_path, capsys):
    # one image, ground truth "sky" in two separate blobs; prediction "sky" only on the left blob
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("sky\ngrass\n")
    Image.fromarray(np.zeros((2, 5, 3), np.uint8)).save(root / "images" / "a.png")
    write_preds(root / "masks", {"a": [[0, 1, 1, 1, 0], [0, 1, 1, 1, 0]]})
    pred = write_preds(tmp_path / "pred", {"a": [[0, 1, 1, 1, 1], [0, 1, 1, 1, 1]]})
    assert evaluate(capsys, "-d", "folder", "-r", root, "-p", pred, "--cmiou-segments", "class")[0] == 0
    by_class = json.loads((pred / "scores.json").read_text())
    # class: sky gt (4 px) vs pred sky (2 px inside) 2/4; grass gt (6) vs pred grass (8, 6 inside) 6/8
    assert by_class["cmIoU"] == pytest.approx((0.5 + 0.75) / 2) and by_class["cmIoU_segments"] == 2
    assert evaluate(capsys, "-d", "folder", "-r", root, "-p", pred, "--cmiou-segments", "components")[0] == 0
    by_comp = json.loads((pred / "scores.json").read_text())
    # components: left sky 2/2 = 1; right sky (2) best = pred grass (8, 2 inside) 2/8; grass 6/8
    assert by_comp["cmIoU"] == pytest.approx((1 + 0.25 + 0.75) / 3) and by_comp["cmIoU_segments"] == 3
    assert by_comp["mIoU"] == by_class["mIoU"]  # semantic scores do not depend on the segment mode


def test_ade847_uint16_tif_predictions(tmp_path, capsys):
    """ADE20K-847: ground truth and predictions are uint16 with 65535 = ignore / no class; 255 is a class."""
    base = tmp_path / "ADE20K_2021_17_01"
    gt = np.array([[255, 255, 846, 65535], [0, 0, 846, 846]])
    pr = np.array([[255, 255, 846, 0], [0, 65535, 846, 0]])
    (base / "images_detectron2" / "validation").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(base / "images_detectron2" / "validation" / "x.jpg")
    write_preds(base / "annotations_detectron2" / "validation", {"x": gt}, dtype=np.uint16, ext=".tif")
    pred = write_preds(tmp_path / "pred", {"x": pr}, dtype=np.uint16, ext=".tif")
    code, _, err = evaluate(capsys, "-d", "ade20k-full", "-r", tmp_path, "-p", pred)
    assert code == 0, err
    js = json.loads((pred / "scores.json").read_text())
    # 255: 2/2 -> IoU 1; 846: 2 of 3 (one predicted 0) -> IoU 2/3; 0: gt 2, tp 1, pred 2 -> IoU 1/3
    assert js["mIoU"] == pytest.approx((1 + 2 / 3 + 1 / 3) / 3)
    assert js["pixel_accuracy"] == pytest.approx(5 / 7)
    # an 8-bit map cannot say "no class" here (its 255 is a class): refused, not misread
    eight = write_preds(tmp_path / "pred8", {"x": np.where(pr == 65535, 255, pr) % 256}, dtype=np.uint8)
    code, _, err = evaluate(capsys, "-d", "ade20k-full", "-r", tmp_path, "-p", eight)
    assert code == 2 and "expected a 16-bit label map for ADE20K-847's 847 classes (65535 = no class)" in \
        one_error_line(err)


# ------------------------------------------------------------------------------------------------ failures


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("selfseg: error: ")
    return lines[0]


def test_missing_prediction_file(tmp_path, capsys, ade_gt):
    pred = write_preds(tmp_path / "pred", {k: v for k, v in ade_gt.items() if k != ADE_IDS[1]})
    code, out, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "1 of 3 images have no prediction" in line and f"{ADE_IDS[1]}.png" in line
    assert not (pred / "scores.json").exists()


@pytest.mark.parametrize("label,make,needle", [
    ("wrong-size", lambda g: np.zeros((g.shape[0], g.shape[1] + 1)), "expected a label map of the ground truth's size"),
    ("out-of-range", lambda g: np.full(g.shape, 150), "expected class indices 0..149 or 255 (no class), got 150"),
    ("rgb", lambda g: np.zeros((*g.shape, 3)), "single-channel label image (palette, grey or 16-bit), got mode RGB"),
], ids=["wrong-size", "out-of-range", "rgb"])
def test_unusable_prediction_file(tmp_path, capsys, ade_gt, label, make, needle):
    pred = write_preds(tmp_path / "pred", ade_gt)
    bad = pred / f"{ADE_IDS[2]}.png"
    Image.fromarray(make(ade_gt[ADE_IDS[2]]).astype(np.uint8)).save(bad)
    code, out, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert str(bad) in line and needle in line
    if label == "wrong-size":
        h, w = ade_gt[ADE_IDS[2]].shape
        assert f"({w}, {h}) (W, H), got ({w + 1}, {h})" in line
    assert not (pred / "scores.json").exists()


def test_predictions_folder_missing(tmp_path, capsys):
    code, _, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", tmp_path / "nope")
    assert code == 2
    assert "does not exist" in one_error_line(err) and str(tmp_path / "nope") in err


@pytest.mark.parametrize("name,layout,needle", [
    ("voc", VOC_LAYOUT, "JPEGImages"),
    ("ade20k", ADE_LAYOUT, "annotations/validation"),
    ("cityscapes", CITYSCAPES_LAYOUT, "gtFine/val"),
], ids=["voc", "ade20k", "cityscapes"])
def test_wrong_root(tmp_path, capsys, name, layout, needle):
    pred = tmp_path / "pred"
    pred.mkdir()
    code, out, err = evaluate(capsys, "-d", name, "-r", tmp_path / "empty", "-p", pred)
    assert code == 2 and out == ""
    assert err.startswith("selfseg: error: ") and str(tmp_path / "empty") in err.splitlines()[0]
    assert needle in err and layout in err  # the expected layout follows the error line
    assert not (pred / "scores.json").exists()


@pytest.mark.parametrize("args", [
    ["--convention", "pascal"],
    ["--limit", "-1"],
    ["--cmiou-segments", "pixels"],
    ["--dataset", "kitti"],
], ids=["convention", "limit", "cmiou-segments", "dataset"])
def test_bad_arguments_are_usage_errors(tmp_path, capsys, args):
    base = ["--dataset", "ade20k", "--root", str(ADE_SAMPLE), "--predictions", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", *base, *args])
    assert exc.value.code == 2
    assert "selfseg evaluate: error:" in capsys.readouterr().err


def test_predictions_that_are_a_file_are_not_a_folder(tmp_path, capsys):
    pred = tmp_path / "preds.txt"
    pred.write_text("not a folder")
    code, out, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "is not a folder" in line and str(pred) in line and "does not exist" not in line


@pytest.mark.parametrize("target", ["afile.txt/x.json", "afile.txt/deeper/x.json", "pred"])
def test_an_unwritable_out_is_refused_before_scoring(tmp_path, capsys, ade_gt, target):
    pred = write_preds(tmp_path / "pred", ade_gt)
    (tmp_path / "afile.txt").write_text("a file, not a folder")
    code, out, err = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred, "--out", tmp_path / target)
    assert code == 2 and out == ""  # no score table before the failure
    line = one_error_line(err)
    assert str(tmp_path / target) in line
    assert ("afile.txt is not a folder" in line) if target != "pred" else ("is a folder" in line)
    assert not (pred / "scores.json").exists()


def test_an_out_that_is_an_input_is_refused(tmp_path, capsys, ade_gt):
    """Scores written over a ground-truth file or a prediction would destroy what is being scored."""
    import shutil

    root = tmp_path / "gt"
    shutil.copytree(ADE_SAMPLE, root)
    pred = write_preds(tmp_path / "pred", ade_gt)
    annotation = sorted((root / "annotations").glob("*.png"))[0]
    before = annotation.read_bytes()
    for target, why in ((annotation, "it is a file of the dataset"),
                        (sorted(pred.glob("*.png"))[0], "it is one of the predictions being scored")):
        code, out, err = evaluate(capsys, "-d", "ade20k", "-r", root, "-p", pred, "--out", target)
        assert code == 2 and out == "" and why in one_error_line(err)
    assert annotation.read_bytes() == before
    (pred / "scores.json").write_text("{}")  # an earlier run's scores: written over, as by default
    code, out, _ = evaluate(capsys, "-d", "ade20k", "-r", root, "-p", pred, "--out", pred / "scores.json")
    assert code == 0 and json.loads((pred / "scores.json").read_text())["images"] == 3


def test_a_rerun_replaces_its_own_scores_inside_the_dataset_root(tmp_path, capsys, ade_gt):
    """Predictions kept under --root: the default scores file lands in the dataset's folder, and a second run
    replaces it (selfseg's own file, told by its content), while any other file there stays refused."""
    import shutil

    root = tmp_path / "ade"
    shutil.copytree(ADE_SAMPLE, root)
    pred = write_preds(root / "preds", ade_gt)
    assert evaluate(capsys, "-d", "ade20k", "-r", root, "-p", pred)[0] == 0
    write_preds(pred, {ADE_IDS[0]: np.full(ade_gt[ADE_IDS[0]].shape, IGNORE)})  # worse predictions, then again
    code, _, err = evaluate(capsys, "-d", "ade20k", "-r", root, "-p", pred)
    assert code == 0, err
    assert json.loads((pred / "scores.json").read_text())["mIoU"] < 1
    for theirs in ('{"mIoU": 0.5}', "notes"):  # JSON that is not selfseg's scores, or no JSON at all
        (pred / "scores.json").write_text(theirs)
        code, out, err = evaluate(capsys, "-d", "ade20k", "-r", root, "-p", pred)
        assert code == 2 and out == "" and "it is a file of the dataset" in one_error_line(err)
        assert (pred / "scores.json").read_text() == theirs


def test_a_wrong_root_is_told_before_the_scores_file(tmp_path, capsys, ade_gt):
    """A root that holds the predictions but not the dataset: the layout expected, not a word about where the
    scores would go."""
    pred = write_preds(tmp_path / "pred", ade_gt)
    (pred / "scores.json").write_text("notes")
    code, out, err = evaluate(capsys, "-d", "ade20k", "-r", tmp_path, "-p", pred)
    assert code == 2 and out == ""
    assert ADE_LAYOUT in err and "scores" not in err.splitlines()[0]


def test_out_in_folders_still_to_be_made_is_written(tmp_path, capsys, ade_gt):
    pred = write_preds(tmp_path / "pred", ade_gt)
    target = tmp_path / "new" / "deeper" / "scores.json"
    code, out, _ = evaluate(capsys, "-d", "ade20k", "-r", ADE_SAMPLE, "-p", pred, "--out", target)
    assert code == 0 and "mIoU" in out
    assert json.loads(target.read_text())["images"] == 3


def test_coco_perfect_and_shifted_predictions(tmp_path, capsys, coco_tree):
    """COCO's semantic ground truth (the panoptic segments' classes) scored by `selfseg evaluate`: itself gives
    100; the dog predicted as a cat zeroes the dog and leaves the other five classes whole."""
    root = coco_tree(tmp_path / "coco", n_images=2)
    ds = load_dataset("coco", root)
    gt = {s.id: ds.read_label(s) for s in ds.samples}
    code, out, err = evaluate(capsys, "--dataset", "coco", "--root", root, "--predictions",
                              write_preds(tmp_path / "perfect", gt))
    assert code == 0, err
    js = json.loads((tmp_path / "perfect" / "scores.json").read_text())
    assert js["dataset"] == "coco" and js["images"] == 2 and js["mIoU"] == pytest.approx(1.0)
    index = {c.name: c.index for c in ds.classes}
    shifted = {k: np.where(g == index["dog"], index["cat"], g) for k, g in gt.items()}
    code, out, err = evaluate(capsys, "--dataset", "coco", "--root", root, "--predictions",
                              write_preds(tmp_path / "shifted", shifted))
    js = json.loads((tmp_path / "shifted" / "scores.json").read_text())
    assert code == 0 and js["per_class"]["dog"]["iou"] == 0 and js["per_class"]["person"]["iou"] == 1
    # mmseg's convention (the default): the cat, predicted with no ground truth, counts 0
    assert js["per_class"]["cat"]["iou"] == 0 and js["mIoU"] == pytest.approx(5 / 7)
    code, out, err = evaluate(capsys, "--dataset", "coco", "--root", root, "--predictions", tmp_path / "shifted",
                              "--convention", "detectron2")
    js = json.loads((tmp_path / "shifted" / "scores.json").read_text())
    assert js["per_class"]["cat"]["iou"] is None  # detectron2's: no ground truth, not averaged
    assert js["mIoU"] == pytest.approx(5 / 6)  # sky, grass, person, tree, dining table; dog 0


def test_coco_stuff_raw_maps_scored_as_171_classes(tmp_path, capsys):
    """COCO-Stuff's raw maps (label id - 1) scored by `selfseg evaluate`: trainId predictions equal to them give
    100; 255 counts nowhere."""
    raw = np.full((6, 8), 255, np.uint8)
    raw[:, :3], raw[:, 3:5] = 0, 156  # person, sky-other
    (tmp_path / "images" / "val2017").mkdir(parents=True)
    (tmp_path / "annotations" / "val2017").mkdir(parents=True)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "images" / "val2017" / "000000000139.jpg")
    Image.fromarray(raw).save(tmp_path / "annotations" / "val2017" / "000000000139.png")
    sky = next(c.index for c in load_dataset("coco-stuff", tmp_path).classes if c.name == "sky")
    pred = np.where(raw == 0, 0, np.where(raw == 156, sky, IGNORE))
    code, out, err = evaluate(capsys, "--dataset", "coco-stuff", "--root", tmp_path, "--predictions",
                              write_preds(tmp_path / "pred", {"000000000139": pred}))
    js = json.loads((tmp_path / "pred" / "scores.json").read_text())
    assert code == 0, err
    assert js["mIoU"] == pytest.approx(1.0) and js["per_class"]["sky"]["gt_pixels"] == 12
    assert sum(c["gt_pixels"] for c in js["per_class"].values()) == 18 + 12


def test_voc20_does_not_score_background_pixels(tmp_path, capsys):
    """One VOC image, "person" predicted everywhere. VOC20 leaves background and boundary out: person's IoU is
    2 of 6 scored pixels; VOC21 counts the 3 background pixels as false positives too (2 of 9)."""
    gt = np.array([[0, 0, 255, 1], [15, 15, 255, 1], [20, 20, 255, 0]], np.uint8)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (tmp_path / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "JPEGImages" / "2007_000033.jpg")
    Image.fromarray(gt).save(tmp_path / "SegmentationClass" / "2007_000033.png")
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n")
    scores = {}
    for name, person in (("voc20", 14), ("voc", 15)):
        pred = write_preds(tmp_path / name, {"2007_000033": np.full((3, 4), person)})
        code, out, err = evaluate(capsys, "--dataset", name, "--root", tmp_path, "--predictions", pred)
        assert code == 0, err
        scores[name] = json.loads((pred / "scores.json").read_text())
    voc20, voc = scores["voc20"], scores["voc"]
    assert voc20["per_class"]["person"]["iou"] == pytest.approx(2 / 6)
    assert voc["per_class"]["person"]["iou"] == pytest.approx(2 / 9)
    assert "background" not in voc20["per_class"] and voc["per_class"]["background"]["iou"] == 0
    assert voc20["mIoU"] == pytest.approx((2 / 6) / 3)  # person, aeroplane, tv monitor have ground truth


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_text_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, capsys, encoding):
    classes = tmp_path / "classes.txt"
    classes.write_text("café\nroad\n", encoding=encoding)
    pred = tmp_path / "pred"
    pred.mkdir()
    code, _, err = evaluate(capsys, "-d", "folder", "-r", tmp_path, "-p", pred, "--classes", classes)
    assert code == 2 and f"class-names file {classes}: not UTF-8 text" in one_error_line(err)
    lexicon = tmp_path / "lexicon.yaml"
    lexicon.write_text("classes: {car: {names: [café]}}\n", encoding=encoding)
    import io
    import sys

    stdin = sys.stdin
    try:
        sys.stdin = io.StringIO("a dog\n")
        assert main(["map-labels", "--dataset", "voc", "--lexicon", str(lexicon), "-"]) == 2
    finally:
        sys.stdin = stdin
    assert f"lexicon {lexicon}: not UTF-8 text" in one_error_line(capsys.readouterr().err)


def test_a_utf8_file_with_a_byte_order_mark_reads_as_utf8(tmp_path):
    from selfseg.evaluate.datasets import read_class_file

    classes = tmp_path / "classes.txt"
    classes.write_text("road;street\nsky\n", encoding="utf-8-sig")
    assert [c.names for c in read_class_file(classes)] == [("road", "street"), ("sky",)]


def test_an_unreadable_instance_results_file_is_named_once(tmp_path, capsys):
    repo = Path(__file__).resolve().parents[2]
    results = tmp_path / "r1.json"
    results.write_text("not json")
    code = main(["evaluate", "--task", "instance", "-d", "ade20k-instances", "-r", str(repo / "examples/ade20k_sample"),
                 "-p", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].count("r1.json") == 1
    assert err[0].startswith(f"selfseg: error: {results}: cannot read the COCO results")
