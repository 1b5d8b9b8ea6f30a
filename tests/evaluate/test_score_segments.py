"""Open-ended panoptic and instance scores of selfseg's own predictions: free-form names through the label
mapper, then the references' scoring. Checked against the evaluators fed by the pipeline's writers (and
panopticapi itself), per-segment ground-truth-aware decisions, reduced copies and EXIF-rotated photos, the
Lexical Alignment Curve, and the datasets without such ground truth."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfseg.errors import DatasetError
from selfseg.evaluate.annotations import cityscapes_instances, cityscapes_panoptic, task_truth
from selfseg.evaluate.datasets import CITYSCAPES_TRAIN_IDS, load_dataset
from selfseg.evaluate.mappers import build_mapper
from selfseg.evaluate.score_segments import score_segments
from selfseg.io import undo_orientation
from selfseg.segment.result import Segmentation, write_coco_panoptic

REPO = Path(__file__).resolve().parents[2]
H, W = 16, 24
STEMS = ("aachen_000000_000019", "aachen_000001_000019")


def cityscapes_tree(root: Path, orientation: int = 1) -> dict[str, np.ndarray]:
    """gtFine labelIds + instanceIds and leftImg8bit photos (crops of a real photo) for two frames: road,
    sky, two cars, a crowd of cars without instance ids, a person, and void. Returns stem -> instanceIds."""
    photo = Image.open(sorted((REPO / "examples" / "ade20k_sample" / "images").glob("*.jpg"))[0]).convert("RGB")
    out = {}
    for k, stem in enumerate(STEMS):
        raw = np.full((H, W), 7, np.int32)   # road
        raw[:3, :] = 23                      # sky
        raw[4:8, 1:7] = 26001                # car 1
        raw[4:8, 9:15] = 26002               # car 2
        raw[10:13, 0:5] = 26                 # a group of cars: crowd
        raw[9:15, 17:20] = 24000 + k         # a person
        raw[15, 20:] = 1                     # ego vehicle: void
        city = root / "gtFine" / "val" / "aachen"
        city.mkdir(parents=True, exist_ok=True)
        Image.fromarray(raw.astype(np.uint16)).save(city / f"{stem}_gtFine_instanceIds.png")
        label = np.where(raw >= 1000, raw // 1000, raw).astype(np.uint8)
        Image.fromarray(label).save(city / f"{stem}_gtFine_labelIds.png")
        imgs = root / "leftImg8bit" / "val" / "aachen"
        imgs.mkdir(parents=True, exist_ok=True)
        im = photo.resize((W, H))
        if orientation != 1:  # stored sideways, upright per its EXIF tag
            exif = Image.Exif()
            exif[0x0112] = orientation
            im.save(imgs / f"{stem}_leftImg8bit.png", exif=exif)
        else:
            im.save(imgs / f"{stem}_leftImg8bit.png")
        out[stem] = raw
    return out


def segmentation(raw: np.ndarray, parts: list[tuple[str, np.ndarray, float]], size=None) -> Segmentation:
    """A prediction of named masks (given at the ground truth's size; `size` resamples them, nearest)."""
    masks = np.stack([m for _, m, _ in parts]) if parts else np.zeros((0, *raw.shape), bool)
    original = None
    if size is not None and parts:
        rows = (np.arange(size[0]) * raw.shape[0]) // size[0]
        cols = (np.arange(size[1]) * raw.shape[1]) // size[1]
        masks = masks[:, rows[:, None], cols[None, :]]
        original = raw.shape
    hw = masks.shape[1:] if parts else raw.shape
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if m.any() else [0, 0, 0, 0])
    labels = [n for n, _, _ in parts]
    return Segmentation(image_size=tuple(hw), masks=masks, boxes=boxes, scores=[s for _, _, s in parts],
                        mask_scores=[1.0] * len(parts), labels=labels, classes=list(dict.fromkeys(labels)),
                        segmenter="test", original_size=original)


def predictions(raw: dict[str, np.ndarray]) -> dict[str, list[tuple[str, np.ndarray, float]]]:
    """Frame 0: road, sky and car 1 right, car 2 as "automobile", a spurious "bus" on the crowd, the person as
    "pedestrian", "kite" (no Cityscapes class). Frame 1: a car as "wheel" (related to car, mapped to bicycle),
    the other car missed, half the road as "street" and half as "asphalt" (stuff: one segment)."""
    a, b = raw[STEMS[0]], raw[STEMS[1]]
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    return {
        STEMS[0]: [("road", a == 7, 0.9), ("sky", a == 23, 0.8), ("car", a == 26001, 0.95),
                   ("automobile", a == 26002, 0.7), ("bus", a == 26, 0.6), ("pedestrian", a == 24000, 0.85),
                   ("kite", (a == 23) & left, 0.5)],
        STEMS[1]: [("wheel", b == 26001, 0.9), ("street", (b == 7) & left, 0.8), ("asphalt", (b == 7) & ~left, 0.7),
                   ("sky", b == 23, 0.6)],
    }


def _setup(tmp_path, orientation=1, size=None, drop=()):
    root = tmp_path / "cityscapes"
    raw = cityscapes_tree(root, orientation)
    pred = tmp_path / "pred"
    pred.mkdir()
    segs = {}
    for stem, parts in predictions(raw).items():
        if stem in drop:
            continue
        if orientation != 1:  # the models saw the photo upright
            parts = [(n, _upright(m, orientation), s) for n, m, s in parts]
            seg = segmentation(_upright(raw[stem], orientation), parts, size)
        else:
            seg = segmentation(raw[stem], parts, size)
        seg.save(pred, f"{stem}_leftImg8bit")
        segs[stem] = seg
    dataset = load_dataset("cityscapes", root, "val")
    return root, dataset, segs


def _upright(a: np.ndarray, orientation: int) -> np.ndarray:
    from PIL import ImageOps

    im = Image.fromarray(a.astype(np.uint8) * 255 if a.dtype == bool else a.astype(np.int32))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    up = np.asarray(ImageOps.exif_transpose(im))
    return up > 127 if a.dtype == bool else up


def test_undo_orientation_inverts_pil_exif_transpose():
    from PIL import ImageOps

    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for orientation in range(1, 9):
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = orientation
        im.info["exif"] = exif.tobytes()
        up = np.asarray(ImageOps.exif_transpose(im))
        assert np.array_equal(undo_orientation(up, orientation), a), orientation


def test_scores_equal_the_writers_fed_to_the_evaluators_and_the_reference(tmp_path):
    """Mapped names -> category ids -> `write_coco_panoptic` / `to_coco_results` -> `pq_score` / COCOeval (and
    panopticapi on the same files): the open-ended scorer gives the same numbers."""
    root, dataset, segs = _setup(tmp_path)
    mapper = build_mapper("lexical", "cityscapes")
    truth = task_truth(dataset, ["panoptic", "instance"], dataset.samples)
    out = score_segments(dataset, dataset.samples, tmp_path / "pred", mapper, truth, ["panoptic", "instance"])
    names = sorted({n for s in segs.values() for n in s.labels})
    cls = {n: m.index for n, m in zip(names, mapper.map(names))}
    label_of = {train: label for label, train in CITYSCAPES_TRAIN_IDS.items()}
    cats = {n: (label_of[c] if c is not None else None) for n, c in cls.items()}
    assert cats["automobile"] == 26 and cats["pedestrian"] == 24 and cats["kite"] is None and cats["wheel"] == 33
    gt = cityscapes_panoptic(root)
    pred_json = write_coco_panoptic(tmp_path / "written", [(st, st, segs[st]) for st in STEMS], cats,
                                    categories=list(gt.categories.values()))
    from selfseg.evaluate.panoptic import pq_score

    expected = pq_score(gt, pred_json, tmp_path / "written" / "panoptic")
    p = out["panoptic"]
    assert p.all == pytest.approx(expected.all, abs=1e-9) and p.per_class == expected.per_class
    # car, automobile: 2 cars found; frame 1's cars: one named "wheel" (a bicycle, a false positive), one missed
    assert p.per_class[26]["tp"] == 2 and p.per_class[26]["fn"] == 2 and p.per_class[33]["fp"] == 1
    assert p.per_class[28]["fp"] == 1  # a crowd of cars hides only cars: the bus on it counts
    assert p.per_class[7]["tp"] == 2  # street + asphalt: one road segment
    # the reference, on the ground truth written as COCO panoptic files
    pytest.importorskip("panopticapi")
    from panopticapi.evaluation import pq_compute

    from selfseg.segment.result import id2rgb

    gt_dir = tmp_path / "gt_png"
    gt_dir.mkdir()
    anns = []
    for st in STEMS:
        ids, segments = gt.load(st)
        Image.fromarray(id2rgb(ids)).save(gt_dir / f"{st}.png")
        anns.append({"image_id": st, "file_name": f"{st}.png", "segments_info": segments})
    (tmp_path / "gt.json").write_text(json.dumps({"annotations": anns, "categories": list(gt.categories.values()),
                                                  "images": [{"id": st, "file_name": st} for st in STEMS]}))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ref = pq_compute(str(tmp_path / "gt.json"), str(pred_json), str(gt_dir), str(tmp_path / "written" / "panoptic"))
    assert p.all["pq"] == pytest.approx(ref["All"]["pq"], abs=1e-6)
    assert p.things["pq"] == pytest.approx(ref["Things"]["pq"], abs=1e-6)
    assert p.stuff["pq"] == pytest.approx(ref["Stuff"]["pq"], abs=1e-6)
    # instances: the same as COCOeval on the segmentations' own COCO results
    from selfseg.evaluate.instances import coco_instance_scores

    things = {c: v for c, v in cats.items() if v in {24, 25, 26, 27, 28, 31, 32, 33}}
    results = [r for st in STEMS for r in segs[st].to_coco_results(st, things)]
    ap = coco_instance_scores(cityscapes_instances(root), results)
    for kind in ("segm", "bbox"):
        assert out["instance"].stats[kind] == pytest.approx(ap.stats[kind])
    assert 0 < out["instance"].stats["segm"]["AP"] < 1


def test_ground_truth_aware_decides_per_segment(tmp_path):
    """"wheel" (mapped to bicycle at the meronym level, related to car) lies on a car: ground-truth aware, that
    segment is a car; "kite" on the sky relates to nothing and stays void."""
    _, dataset, _ = _setup(tmp_path)
    mapper = build_mapper("lexical", "cityscapes")
    truth = task_truth(dataset, ["panoptic", "instance"], dataset.samples)
    plain = score_segments(dataset, dataset.samples, tmp_path / "pred", mapper, truth, ["panoptic", "instance"])
    aware = score_segments(dataset, dataset.samples, tmp_path / "pred", mapper, truth, ["panoptic", "instance"],
                           gt_aware=True)
    assert plain["panoptic"].per_class[33]["fp"] == 1 and 33 not in aware["panoptic"].per_class
    assert aware["panoptic"].per_class[26]["tp"] == plain["panoptic"].per_class[26]["tp"] + 1
    assert aware["panoptic"].all["pq"] > plain["panoptic"].all["pq"]
    assert aware["instance"].stats["segm"]["AP"] > plain["instance"].stats["segm"]["AP"]


def test_lexical_alignment_curve_for_pq_and_ap(tmp_path):
    _, dataset, _ = _setup(tmp_path)
    mapper = build_mapper("lexical", "cityscapes")
    truth = task_truth(dataset, ["panoptic", "instance"], dataset.samples)
    out = score_segments(dataset, dataset.samples, tmp_path / "pred", mapper, truth, ["panoptic", "instance"],
                         levels=mapper.levels)
    curve = out["curve"]
    assert curve["levels"] == ["exact", "synonym", "hyponym", "meronym"]
    # exact: only the classes' own names count; synonyms add "automobile", "pedestrian", "street" ...
    assert curve["PQ"][0] < curve["PQ"][1] and curve["AP"][0] < curve["AP"][1]
    assert min(curve["PQ"]) <= curve["PQ_area"] <= max(curve["PQ"])
    assert curve["PQ"][-1] == pytest.approx(out["panoptic"].all["pq"])
    assert curve["AP"][-1] == pytest.approx(out["instance"].stats["segm"]["AP"])


def test_a_rotated_photo_scores_as_the_upright_prediction(tmp_path):
    """Photos stored sideways (EXIF orientation 6) were analysed upright: the masks are turned back to the
    file's pixel order, the ground truth's, and score as the same prediction made on unrotated files."""
    tasks = ["panoptic", "instance"]
    mapper = build_mapper("lexical", "cityscapes")
    scores = []
    for orientation in (1, 6):
        _, dataset, _ = _setup(tmp_path / str(orientation), orientation=orientation)
        scores.append(score_segments(dataset, dataset.samples, tmp_path / str(orientation) / "pred", mapper,
                                     task_truth(dataset, tasks, dataset.samples), tasks))
    assert scores[1]["panoptic"].all == pytest.approx(scores[0]["panoptic"].all)
    assert scores[1]["panoptic"].per_class == scores[0]["panoptic"].per_class
    assert scores[1]["instance"].stats["segm"] == pytest.approx(scores[0]["instance"].stats["segm"])


def test_a_reduced_copy_scores_as_its_masks_upsampled_to_the_photo(tmp_path):
    """run.max_image_side: masks at half the photo's size are upsampled (nearest) as the label map is."""
    tasks = ["panoptic", "instance"]
    mapper = build_mapper("lexical", "cityscapes")
    _, dataset, segs = _setup(tmp_path, size=(H // 2, W // 2))
    full = tmp_path / "full"
    rows, cols = (np.arange(H) * (H // 2)) // H, (np.arange(W) * (W // 2)) // W
    for stem, seg in segs.items():
        assert seg.original_size == (H, W) and seg.image_size == (H // 2, W // 2)
        up = dataclasses.replace(seg, masks=seg.masks[:, rows[:, None], cols[None, :]], image_size=(H, W),
                                 original_size=None)
        up.save(full, f"{stem}_leftImg8bit")
    truth = task_truth(dataset, tasks, dataset.samples)
    reduced = score_segments(dataset, dataset.samples, tmp_path / "pred", mapper, truth, tasks)
    expected = score_segments(dataset, dataset.samples, full, mapper, truth, tasks)
    assert reduced["panoptic"].per_class == expected["panoptic"].per_class
    assert reduced["instance"].stats["segm"] == pytest.approx(expected["instance"].stats["segm"])


def test_an_empty_mask_is_a_false_positive_as_cocoeval_counts_it(tmp_path):
    """A segmenter may return an empty mask; COCOeval (and detectron2, which keeps every instance) counts it as a
    detection matching nothing, so a confident empty "car" lowers the cars' AP."""
    from selfseg.evaluate.instances import coco_instance_scores

    root = tmp_path / "cityscapes"
    raw = cityscapes_tree(root)
    mapper = build_mapper("lexical", "cityscapes")
    dataset = load_dataset("cityscapes", root, "val")
    truth = task_truth(dataset, ["instance"], dataset.samples)
    aps, results = [], []
    for name, extra in (("plain", []), ("empty", [("car", np.zeros((H, W), bool), 0.99)])):
        pred = tmp_path / name
        segs = {}
        for stem, parts in predictions(raw).items():
            segs[stem] = segmentation(raw[stem], parts + extra)
            segs[stem].save(pred, f"{stem}_leftImg8bit")
        out = score_segments(dataset, dataset.samples, pred, mapper, truth, ["instance"])
        aps.append(out["instance"])
        cats = {"car": 26, "automobile": 26, "pedestrian": 24, "bus": 28, "wheel": 33}
        results.append([r for st in STEMS for r in segs[st].to_coco_results(st, cats)])
    plain, empty = aps
    assert empty.detections == plain.detections + 2
    assert empty.stats["segm"]["AP"] < plain.stats["segm"]["AP"]
    reference = coco_instance_scores(cityscapes_instances(root), results[1])
    assert empty.stats["segm"] == pytest.approx(reference.stats["segm"])


def test_a_failed_image_predicts_nothing(tmp_path):
    _, dataset, _ = _setup(tmp_path, drop=(STEMS[1],))
    (tmp_path / "pred" / f"{STEMS[1]}_leftImg8bit.error.txt").write_text("unreadable image")
    mapper = build_mapper("lexical", "cityscapes")
    truth = task_truth(dataset, ["panoptic", "instance"], dataset.samples)
    out = score_segments(dataset, dataset.samples, tmp_path / "pred", mapper, truth, ["panoptic", "instance"])
    assert out["panoptic"].images == 2
    assert out["panoptic"].per_class[24]["fn"] == 1  # the second frame's person, unpredicted


def test_datasets_without_such_ground_truth_and_missing_files_are_one_line_errors(tmp_path):
    root, dataset, _ = _setup(tmp_path)
    with pytest.raises(DatasetError, match="the voc dataset has no panoptic or instance ground truth"):
        task_truth(type("D", (), {"name": "voc"})(), ["panoptic"], [])
    assert task_truth(dataset, ["semantic"], dataset.samples).panoptic is None
    (root / "gtFine" / "val" / "aachen" / f"{STEMS[1]}_gtFine_instanceIds.png").unlink()
    with pytest.raises(DatasetError, match="no ground truth for image 'aachen_000001_000019_leftImg8bit'"):
        task_truth(dataset, ["panoptic"], dataset.samples)
    with pytest.raises(DatasetError, match="aachen_000001_000019_gtFine_instanceIds.png"):
        task_truth(dataset, ["instance"], dataset.samples)


def test_an_unreadable_or_wrong_size_prediction_is_listed_and_predicts_nothing(tmp_path):
    _, dataset, _ = _setup(tmp_path)
    mapper = build_mapper("lexical", "cityscapes")
    truth = task_truth(dataset, ["panoptic", "instance"], dataset.samples)
    first, second = (tmp_path / "pred" / f"{st}_leftImg8bit.json" for st in STEMS)
    d = json.loads(first.read_text())
    d["instances"][0]["mask_rle"]["counts"] = 7  # not an RLE string
    first.write_text(json.dumps(d))
    d = json.loads(second.read_text())
    d["image_size"] = [H, W + 1]  # masks of another image's size
    d["instances"] = []
    second.write_text(json.dumps(d))
    out = score_segments(dataset, dataset.samples, tmp_path / "pred", mapper, truth, ["panoptic", "instance"])
    assert [f.split(":")[0] for f in out["failed"]] == [f"{st}_leftImg8bit" for st in STEMS]
    assert "unreadable prediction JSON" in out["failed"][0] and "does not match the ground truth" in out["failed"][1]
    assert out["panoptic"].per_class[24]["fn"] == 2 and out["instance"].detections == 0


def test_ade20k_categories_follow_detectron2s_numbering_and_otherwise_names():
    """detectron2's ADE20K instance file numbers its 100 thing categories by class index: "screen" (130, a
    crt screen's class is another) is not the stuff class "blind;screen", "counter" (45) not "buffet;counter".
    Renumbered, the categories go by name, a class's first name before its synonyms."""
    from selfseg.evaluate.datasets import categories_of_classes, class_list

    classes = class_list("ade20k")
    derived = json.loads((REPO / "examples" / "ade20k_sample" / "ade20k_instance_val.json").read_text())
    by_index = categories_of_classes(classes, derived["categories"])
    renumbered = [{"id": 1000 + c["id"], "name": c["name"]} for c in derived["categories"]]
    by_name = categories_of_classes(classes, renumbered)
    for mapping, offset in ((by_index, 0), (by_name, 1000)):
        assert sum(m is not None for m in mapping) == 100
        assert mapping[63] is None and mapping[99] is None  # blind;screen and buffet;counter are stuff
        assert mapping[130] == 130 + offset and mapping[45] == 45 + offset and mapping[12] == 12 + offset
