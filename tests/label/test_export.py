"""The dataset writer: hand-built segmentations of the example photos, exported and read back by the libraries
people train with (pycocotools, supervision) and by selfseg's own folder benchmark dataset."""
from __future__ import annotations

import errno
import gc
import json
import shutil
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from selfseg.errors import ConfigError
from selfseg.label.export import DatasetWriter, ExportConfig, split_of
from selfseg.label.vocabulary import build_vocabulary
from selfseg.segment.result import Segmentation

REPO = Path(__file__).resolve().parents[2]
PHOTOS = [REPO / "examples/ade20k_sample/images" / f"ADE_val_0000000{i}.jpg" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def sv():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenCV.*", category=UserWarning)  # its NumPy backend
        import supervision

    return supervision


@pytest.fixture(scope="module")
def vocab():
    # "car" 6, "person" 4, "tree" 2 instances: ids 0, 1, 2; "none" is no noun and is dropped.
    v = build_vocabulary([("a", ["car", "cars", "car", "person", "person", "tree", "none"]),
                          ("b", ["car", "automobile", "car", "person", "person", "tree"])])
    assert v.names == ["car", "person", "tree"] and v.id_of("none") is None
    return v


def photo(tmp_path: Path, name: str, which: int = 0) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    return Path(shutil.copyfile(PHOTOS[which], tmp_path / "src" / name))


def tagged_photo(tmp_path: Path, name: str, orientation: int, which: int = 0, **save) -> tuple[np.ndarray, Path]:
    """A sample photo's pixels, saved as src/<name> with an EXIF orientation tag: (the stored pixels, the path)."""
    from PIL import Image

    stored = np.asarray(Image.open(PHOTOS[which]).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = orientation
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / "src" / name
    Image.fromarray(stored).save(path, exif=exif, **save)
    return stored, path


def size_of(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def ellipse(size, cy, cx, ry, rx) -> np.ndarray:
    yy, xx = np.mgrid[: size[0], : size[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def box(size, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def seg_of(size, instances, original_size=None) -> Segmentation:
    """instances: (label, mask, score, mask score)."""
    labels = [i[0] for i in instances]
    masks = np.stack([i[1] for i in instances]) if instances else np.zeros((0, *size), bool)
    boxes = [[0, 0, 1, 1]] * len(instances)
    return Segmentation(image_size=size, masks=masks, boxes=boxes, scores=[i[2] for i in instances],
                        mask_scores=[i[3] for i in instances], labels=labels, classes=sorted(set(labels)) or ["x"],
                        segmenter="test", original_size=original_size)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def name_in(split: str, seed: int = 0, fraction: float = 0.5, prefix: str = "photo") -> str:
    return next(f"{prefix}{k}.jpg" for k in range(100) if split_of(f"{prefix}{k}.jpg", seed, fraction) == split)


def scene(size) -> list[tuple]:
    h, w = size
    return [("cars", ellipse(size, h * 0.6, w * 0.3, h * 0.15, w * 0.2), 0.9, 0.95),
            ("person", box(size, int(h * 0.1), int(h * 0.7), int(w * 0.6), int(w * 0.75)), 0.8, 0.9),
            # overlaps the person; less confident, so the person keeps the shared pixels
            ("tree", ellipse(size, h * 0.3, w * 0.7, h * 0.2, w * 0.15), 0.5, 0.9),
            ("none", box(size, int(h * 0.85), h, 0, int(w * 0.2)), 0.95, 1.0)]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------ formats


def test_every_format_loads_and_class_ids_agree(tmp_path, vocab, sv):
    from pycocotools.coco import COCO

    from selfseg.evaluate.datasets import load_dataset

    out = tmp_path / "ds"
    config = ExportConfig(val_fraction=0.5)
    names = [name_in("train"), name_in("val"), name_in("train", prefix="other")]
    exported, segs = {}, {}
    with DatasetWriter(out, vocab, config, metadata={"run": "test"}) as writer:
        for which, name in enumerate(names):
            path = photo(tmp_path, name, which)
            segs[name] = seg_of(size_of(path), scene(size_of(path)))
            exported[name] = writer.add(path, segs[name])
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["metadata"] == {"run": "test"} and meta["config"]["val_fraction"] == 0.5
    assert [c["name"] for c in meta["classes"]] == ["car", "person", "tree"]
    assert meta["splits"]["train"]["images"] == 2 and meta["splits"]["val"]["images"] == 1
    assert meta["filters"]["removed"]["vocabulary"] == 3  # the "none" instance of each image
    assert json.loads((out / "vocabulary.json").read_text())["classes"][0]["name"] == "car"
    records = {Path(r["file"]).name: r for r in read_lines(out / "labels.jsonl")}
    assert set(records) == set(names)

    for name in names:
        rec, ex = records[name], exported[name]
        assert rec == ex.record and rec["file"] == f"{rec['split']}/images/{name}"
        assert (out / rec["file"]).read_bytes() == (tmp_path / "src" / name).read_bytes()
        assert [(i["class_id"], i["class"]) for i in rec["instances"]] == [(0, "car"), (1, "person"), (2, "tree")]
        assert ex.masks.shape == (3, rec["height"], rec["width"])
        for inst, m in zip(rec["instances"], ex.masks):
            ys, xs = np.nonzero(m)
            assert inst["area"] == m.sum() and inst["bbox"] == [xs.min(), ys.min(), xs.ptp() + 1, ys.ptp() + 1]

        split, stem = rec["split"], Path(name).stem
        # COCO: pycocotools and supervision read the same masks, exactly (RLE); category id = vocabulary id + 1
        coco = COCO(str(out / f"annotations/instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["car", "person", "tree"]
        image = next(i for i in coco.dataset["images"] if i["file_name"] == name)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert [a["category_id"] - 1 for a in anns] == [i["class_id"] for i in rec["instances"]]
        assert all(a["iscrowd"] == 0 and isinstance(a["segmentation"]["counts"], str) for a in anns)
        assert [a["score"] for a in anns] == [i["score"] for i in rec["instances"]]
        for a, m in zip(anns, ex.masks):
            assert np.array_equal(coco.annToMask(a).astype(bool), m)
        ds = sv.DetectionDataset.from_coco(str(out / split / "images"),
                                           str(out / f"annotations/instances_{split}.json"), force_masks=True)
        assert ds.classes == ["car", "person", "tree"]
        _, _, det = next(d for d in ds if Path(d[0]).name == name)
        assert det.class_id.tolist() == [0, 1, 2] and np.array_equal(det.mask, ex.masks)

        # YOLO: polygons, so approximately; same class ids
        ds = sv.DetectionDataset.from_yolo(str(out / split / "images"), str(out / split / "labels"),
                                           str(out / "data.yaml"), force_masks=True)
        assert ds.classes == ["car", "person", "tree"]
        _, _, det = next(d for d in ds if Path(d[0]).name == name)
        assert det.class_id.tolist() == [0, 1, 2]
        assert all(iou(a, b) > 0.9 for a, b in zip(det.mask, ex.masks))
        lines = (out / split / "labels" / f"{stem}.txt").read_text().splitlines()
        assert [int(line.split()[0]) for line in lines] == [0, 1, 2]

        # semantic: the benchmark's folder dataset reads what Segmentation.semantic paints, in vocabulary ids
        data = load_dataset("folder", out, split)
        assert data.class_names == ["car", "person", "tree"]
        sample = next(s for s in data.samples if s.id == stem)
        lut = np.array([255] + [vocab.id_of(c) if vocab.id_of(c) is not None else 255 for c in segs[name].classes])
        expected = lut[segs[name].semantic]
        got = data.read_label(sample)
        assert np.array_equal(np.where(got == -1, 255, got), expected)
        assert (got == 2).any() and (got == 1).any() and (got == 0).any()

    import yaml

    data_yaml = yaml.safe_load((out / "data.yaml").read_text())
    assert data_yaml == {"path": str(out.resolve()), "train": "train/images", "val": "val/images", "nc": 3,
                         "names": ["car", "person", "tree"]}
    assert (out / "classes.txt").read_text().splitlines() == ["car", "person", "tree"]
    assert not list((out / "annotations").glob(".*"))  # the JSON-lines parts are gone


@pytest.fixture(scope="module")
def link_bound(spanning_length):
    """mask -> the most pixels that joining its 8-connected parts into one YOLO line may add where OpenCV-style
    rasterisers draw its links: twice the length of a minimum spanning tree over the parts' nearest pixels,
    plus two per link (a generous bound: each link is one segment between two outline points, drawn there
    and back over the same pixels)."""
    from scipy import ndimage

    def bound(mask: np.ndarray) -> int:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
        pixels = [np.argwhere(labels == i).astype(float) for i in range(1, count + 1)]
        return int(2 * spanning_length(pixels) + 2 * (count - 1))

    return bound


def yolo_masks(out: Path, split: str, sv) -> tuple[list[str], np.ndarray]:
    """(the image's YOLO lines, their masks as supervision draws them) of a dataset with one image."""
    (labels,) = (out / split / "labels").glob("*.txt")
    ds = sv.DetectionDataset.from_yolo(str(out / split / "images"), str(out / split / "labels"),
                                       str(out / "data.yaml"), force_masks=True)
    _, _, det = next(iter(ds))
    return labels.read_text().splitlines(), det.mask


def test_a_multi_part_mask_with_a_hole_keeps_every_part(tmp_path, vocab, sv, link_bound):
    from pycocotools.coco import COCO

    path = photo(tmp_path, "parts.jpg")
    size = size_of(path)
    ring = ellipse(size, 150, 150, 90, 90) & ~ellipse(size, 150, 150, 40, 40)
    parts = ring | box(size, 100, 300, 400, 600)  # a ring and a block, apart
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(polygons=True, val_fraction=0.0)) as writer:
        ex = writer.add(path, seg_of(size, [("car", parts, 0.9, 0.9)]))
    coco = COCO(str(out / "annotations/instances_train.json"))
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert len(ann["segmentation"]) == 2 and ann["iscrowd"] == 0  # a polygon per part, the hole seamed in
    assert np.array_equal(coco.annToMask(ann).astype(bool), parts)
    # YOLO: one line for the one object; OpenCV-style drawing adds the link between the parts, nothing else
    lines, masks = yolo_masks(out, "train", sv)
    assert len(lines) == 1 and lines[0].startswith("0 ") and len(masks) == 1
    extra = masks[0] & ~parts
    assert (masks[0] >= parts).all() and not masks[0][150, 150]  # the hole stays a hole
    assert 0 < extra.sum() <= link_bound(parts)
    assert np.array_equal(truncated(lines[0], size, sv), masks[0])  # Ultralytics reads the same pixels
    assert np.array_equal(ex.masks[0], parts)


def test_parts_one_pixel_wide_are_read_back(tmp_path, vocab, sv, link_bound):
    """COCO polygons run along pixel edges, so pycocotools fills even a lone pixel back; YOLO outlines run
    through pixel centres, over a line one pixel wide and back, so outline-drawing readers draw every pixel
    again."""
    from pycocotools.coco import COCO

    path = photo(tmp_path, "thin.jpg")
    size = size_of(path)
    mask = box(size, 10, 40, 10, 40) & ~box(size, 20, 25, 20, 25)  # a square with a hole
    mask[60, 10:90] = True                                         # a horizontal line
    mask[70:120, 200] = True                                       # a vertical line
    mask[5, 300] = True                                            # a lone pixel
    for k in range(20):                                            # a diagonal with a bend
        mask[150 + k, 100 + k] = True
        mask[169, 120 + k] = True
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(polygons=True, val_fraction=0.0)) as writer:
        writer.add(path, seg_of(size, [("car", mask, 0.9, 0.9)]))
    coco = COCO(str(out / "annotations/instances_train.json"))
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert isinstance(ann["segmentation"], list) and np.array_equal(coco.annToMask(ann).astype(bool), mask)
    lines, masks = yolo_masks(out, "train", sv)
    assert len(lines) == 1 and (masks[0] >= mask).all()
    assert (masks[0] & ~mask).sum() <= link_bound(mask)


def test_coco_polygons_of_thin_objects_score_ap_1_against_themselves(tmp_path, vocab):
    """Objects one to four pixels wide, a checkerboard and a diagonal chain: pycocotools fills every polygon back
    to its mask, so the export scored against itself is AP 1.0 (an outline through pixel centres would enclose
    no area for a part one pixel wide)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = photo(tmp_path, "thin.jpg")
    size = size_of(path)
    instances = []
    for k, width in enumerate((1, 2, 3, 4)):
        instances.append(("car", box(size, 10, 30, 40 * k + 10, 40 * k + 10 + width), 0.9 - 0.1 * k, 0.9))
    checker = np.zeros(size, bool)
    checker[100:120, 100:120] = (np.add.outer(np.arange(20), np.arange(20)) % 2) == 0
    chain = np.zeros(size, bool)
    chain[np.arange(200, 230), np.arange(300, 330)] = True
    instances += [("person", checker, 0.5, 0.9), ("tree", chain, 0.4, 0.9)]
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(polygons=True, val_fraction=0.0, min_area=1, nms="none",
                                                formats=["coco"])) as writer:
        writer.add(path, seg_of(size, instances))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["images"]["coco_rle_fallbacks"] == 0
    gt = COCO(str(out / "annotations/instances_train.json"))
    anns = gt.loadAnns(gt.getAnnIds())
    assert len(anns) == 6 and all(isinstance(a["segmentation"], list) for a in anns)
    for a, (_, m, _, _) in zip(anns, instances):
        assert np.array_equal(gt.annToMask(a).astype(bool), m)
    ev = COCOeval(gt, gt.loadRes(anns), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == 1.0  # AP at IoU 0.50:0.95, every area, 100 detections


def test_an_object_its_polygons_would_not_fill_back_stays_rle_and_is_counted(tmp_path, vocab, monkeypatch):
    from pycocotools.coco import COCO

    import selfseg.label.export as export

    monkeypatch.setattr(export, "coco_polygons", lambda mask: None)
    path = photo(tmp_path, "rle.jpg")
    size = size_of(path)
    mask = ellipse(size, 100, 100, 30, 50)
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(polygons=True, val_fraction=0.0, formats=["coco"])) as writer:
        writer.add(path, seg_of(size, [("car", mask, 0.9, 0.9)]))
    assert json.loads((out / "dataset.json").read_text())["images"]["coco_rle_fallbacks"] == 1
    coco = COCO(str(out / "annotations/instances_train.json"))
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert isinstance(ann["segmentation"], dict) and np.array_equal(coco.annToMask(ann).astype(bool), mask)


def test_every_hole_of_a_real_mask_stays_a_hole_in_both_formats(tmp_path, vocab, sv):
    """seam_failure_mask.npz: part of a tiny random model's mask of a real photo, one part with holes to which
    supervision's tracer finds no seam (it raises). The YOLO line, read back by supervision (which rounds the
    coordinates) and as Ultralytics reads it (float32, truncated to int32, then OpenCV's fillPoly), and the
    COCO polygons, read back by pycocotools, are all that mask exactly."""
    from pycocotools.coco import COCO

    data = np.load(Path(__file__).with_name("seam_failure_mask.npz"))
    shape = tuple(int(v) for v in data["shape"])
    cut = np.unpackbits(data["packed"])[: shape[0] * shape[1]].reshape(shape).astype(bool)
    path = photo(tmp_path, "seam.jpg")
    size = size_of(path)
    mask = np.zeros(size, bool)
    mask[: shape[0], : shape[1]] = cut
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(polygons=True, val_fraction=0.0)) as writer:
        writer.add(path, seg_of(size, [("car", mask, 0.9, 0.9)]))
    images = json.loads((out / "dataset.json").read_text())["images"]
    assert images["coco_rle_fallbacks"] == 0
    coco = COCO(str(out / "annotations/instances_train.json"))
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert isinstance(ann["segmentation"], list) and np.array_equal(coco.annToMask(ann).astype(bool), mask)
    lines, masks = yolo_masks(out, "train", sv)
    assert len(lines) == 1 and np.array_equal(masks[0], mask)
    assert np.array_equal(truncated(lines[0], size, sv), mask)


def truncated(line: str, size: tuple[int, int], sv) -> np.ndarray:
    """A YOLO line's mask read as Ultralytics reads it: numbers as float32, scaled by the image's size, cast to
    int32 (truncation), drawn by fillPoly (supervision's polygon_to_mask: OpenCV's, or its port of it)."""
    from supervision.detection.utils.converters import polygon_to_mask

    h, w = size
    xy = np.array(line.split()[1:], dtype=np.float32).reshape(-1, 2) * np.array([w, h], dtype=np.float32)
    return polygon_to_mask(xy.astype(np.int32), (w, h)).astype(bool)


def test_yolo_lines_need_no_supervision(tmp_path, vocab, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "supervision" or m.startswith("supervision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "supervision", None)
    path = photo(tmp_path, "plain.jpg")
    size = size_of(path)
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(formats=["yolo"], val_fraction=0.0)) as writer:
        writer.add(path, seg_of(size, [("car", ellipse(size, 100, 100, 30, 50), 0.9, 0.9)]))
    (line,) = (out / "train" / "labels" / "plain.txt").read_text().splitlines()
    assert line.startswith("0 ") and len(line.split()) > 7


def test_an_image_without_detections_stays_with_empty_labels(tmp_path, vocab, sv):
    from pycocotools.coco import COCO

    from selfseg.evaluate.datasets import load_dataset

    path = photo(tmp_path, "empty.jpg")
    size = size_of(path)
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(val_fraction=0.0)) as writer:
        ex = writer.add(path, seg_of(size, [("none", box(size, 0, 50, 0, 50), 0.9, 0.9)]))  # dropped: no class
    assert ex.record["instances"] == [] and ex.masks.shape == (0, *size)
    assert (out / "train/labels/empty.txt").read_text() == ""
    coco = COCO(str(out / "annotations/instances_train.json"))
    assert [i["file_name"] for i in coco.dataset["images"]] == ["empty.jpg"] and coco.dataset["annotations"] == []
    data = load_dataset("folder", out, "train")
    assert (data.read_label(data.samples[0]) == -1).all()
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["splits"]["train"] == {"images": 1, "instances": 0, "empty_images": 1}
    ds = sv.DetectionDataset.from_yolo(str(out / "train/images"), str(out / "train/labels"), str(out / "data.yaml"))
    assert len(ds) == 1 and len(next(iter(ds))[2]) == 0


# ------------------------------------------------------------------------------------------------ splits


def test_the_split_is_a_hash_of_the_name():
    names = [f"img_{k:04d}.jpg" for k in range(200)]
    first = [split_of(n, 0, 0.2) for n in names]
    assert first == [split_of(n, 0, 0.2) for n in names]  # same seed, same split
    assert first != [split_of(n, 1, 0.2) for n in names]  # another seed moves some
    assert 0.12 < first.count("val") / 200 < 0.28
    # per name: what other names there are never matters, and a larger fraction only moves train to val
    assert [split_of(n, 0, 0.2) for n in names[:50]] == first[:50]
    larger = [split_of(n, 0, 0.4) for n in names]
    assert all(b == "val" for a, b in zip(first, larger) if a == "val") and larger.count("val") > first.count("val")
    assert {split_of(n, 0, 0.0) for n in names} == {"train"} and {split_of(n, 0, 1.0) for n in names} == {"val"}


def test_adding_images_moves_none(tmp_path, vocab):
    def export(out: Path, count: int) -> dict[str, str]:
        with DatasetWriter(out, vocab, ExportConfig(formats=["coco"])) as writer:
            for k in range(count):
                path = photo(tmp_path, f"im{k}.jpg", 2)
                writer.add(path, seg_of(size_of(path), []))
        return {Path(r["file"]).name: r["split"] for r in read_lines(out / "labels.jsonl")}

    few, more = export(tmp_path / "a", 12), export(tmp_path / "b", 30)
    assert {k: more[k] for k in few} == few and set(more.values()) == {"train", "val"}


# ------------------------------------------------------------------------------------------------ filters


def test_each_filter_removes_what_it_says_and_is_recorded(tmp_path, vocab):
    path = photo(tmp_path, "filters.jpg")
    size = size_of(path)
    a = box(size, 10, 110, 10, 110)
    instances = [
        ("car", a, 0.9, 0.9),                                  # kept
        ("cars", box(size, 12, 110, 10, 110), 0.8, 0.9),       # same class, IoU 0.98 with the first: NMS
        ("person", box(size, 12, 110, 10, 110), 0.7, 0.9),     # another class on it: kept by per_class NMS
        ("car", box(size, 200, 300, 10, 110), 0.2, 0.9),       # min_score
        ("car", box(size, 200, 300, 200, 300), 0.9, 0.3),      # min_mask_score
        ("tree", box(size, 400, 403, 400, 403), 0.9, 0.9),     # 9 pixels: min_area
        ("tree", box(size, 300, 400, 300, 400), 0.6, 0.9),     # kept
        ("tree", box(size, 300, 400, 450, 550), 0.5, 0.9),     # beyond max_instances 3
        ("none", box(size, 450, 500, 0, 100), 0.9, 0.9),       # the vocabulary drops it
    ]
    config = ExportConfig(min_score=0.3, min_mask_score=0.5, min_area=16, max_instances=3, nms="per_class",
                          nms_iou=0.7, val_fraction=0.0)
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, config) as writer:
        ex = writer.add(path, seg_of(size, instances))
    got = [(i["class"], i["score"]) for i in ex.record["instances"]]
    assert got == [("car", pytest.approx(0.9)), ("person", pytest.approx(0.7)), ("tree", pytest.approx(0.6))]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["filters"]["order"] == ["vocabulary", "min_score", "min_mask_score", "min_area", "nms",
                                        "max_instances"]
    assert meta["filters"]["removed"] == {"vocabulary": 1, "min_score": 1, "min_mask_score": 1, "min_area": 1,
                                          "nms": 1, "max_instances": 1}
    assert meta["filters"]["settings"] == {"min_score": 0.3, "min_mask_score": 0.5, "min_area": 16,
                                           "nms": "per_class", "nms_iou": 0.7, "max_instances": 3}
    assert meta["config"]["nms"] == "per_class"

    # class-agnostic NMS takes the person on the car too; none keeps both cars
    for nms, classes in (("agnostic", ["car", "tree", "tree"]), ("none", ["car", "car", "person"])):
        cfg = ExportConfig(min_score=0.3, min_mask_score=0.5, max_instances=3, nms=nms, val_fraction=0.0)
        with DatasetWriter(tmp_path / nms, vocab, cfg) as writer:
            assert [i["class"] for i in writer.add(path, seg_of(size, instances)).record["instances"]] == classes


def test_the_area_filter_counts_pixels_at_the_photos_size(tmp_path, vocab):
    path = photo(tmp_path, "small.jpg")
    h, w = size_of(path)
    small = (h // 4, w // 4)
    speck = box(small, 10, 12, 10, 12)  # 4 pixels analysed, about 64 in the photo
    seg = seg_of(small, [("car", speck, 0.9, 0.9)], original_size=(h, w))
    with DatasetWriter(tmp_path / "ds", vocab, ExportConfig(min_area=50, val_fraction=0.0)) as writer:
        ex = writer.add(path, seg)
    assert len(ex.record["instances"]) == 1 and ex.record["instances"][0]["area"] == ex.masks[0].sum() >= 50


# ------------------------------------------------------------------------------------------------ frames


def test_a_reduced_copy_is_exported_at_the_photos_size(tmp_path, vocab):
    from pycocotools.coco import COCO

    from selfseg.tag.result import upsample_nearest

    path = photo(tmp_path, "reduced.jpg")
    h, w = size_of(path)
    small = (h // 2 - 3, w // 2 + 1)  # not an exact half: rows and columns repeat unevenly
    mask = ellipse(small, small[0] / 2, small[1] / 2, small[0] / 3, small[1] / 4)
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(val_fraction=0.0)) as writer:
        ex = writer.add(path, seg_of(small, [("car", mask, 0.9, 0.9)], original_size=(h, w)))
    expected = upsample_nearest(mask.astype(np.uint8), (h, w)).astype(bool)  # the label map's rule
    assert (ex.record["height"], ex.record["width"]) == (h, w)
    assert np.array_equal(ex.masks[0], expected) and ex.record["instances"][0]["area"] == expected.sum()
    coco = COCO(str(out / "annotations/instances_train.json"))
    assert np.array_equal(coco.annToMask(coco.loadAnns(coco.getAnnIds())[0]).astype(bool), expected)
    assert coco.dataset["images"][0]["height"] == h and coco.dataset["images"][0]["width"] == w


def test_an_exif_rotated_photo_is_exported_in_the_files_pixel_order(tmp_path, vocab, sv):
    from PIL import Image, ImageOps
    from pycocotools.coco import COCO

    # (512, 683) stored, shown turned a quarter clockwise: upright it is 683 high, 512 wide
    stored, path = tagged_photo(tmp_path, "turned.jpg", 6, quality=95)
    with Image.open(path) as im:
        upright_size = ImageOps.exif_transpose(im).size[::-1]
        file_pixels = np.asarray(im.convert("RGB"))
    assert upright_size == (683, 512)
    # the pipeline's masks: upright, here the top-left quarter of the upright photo
    upright = box(upright_size, 0, 300, 0, 200)
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(val_fraction=0.0)) as writer:
        ex = writer.add(path, seg_of(upright_size, [("car", upright, 0.9, 0.9)]))
    m = ex.masks[0]
    assert m.shape == (512, 683) and (ex.record["height"], ex.record["width"]) == (512, 683)
    # PIL's own rotation of the exported mask, tagged as the photo was, gives back the upright mask
    tagged = Image.fromarray(m.astype(np.uint8) * 255)
    tagged.getexif()[0x0112] = 6
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(tagged)) > 0, upright)
    # the copy: same pixels, orientation 1, so a reader that applies EXIF sees what the labels describe
    copy = out / ex.record["file"]
    with Image.open(copy) as im:
        assert im.getexif().get(0x0112, 1) == 1 and np.array_equal(np.asarray(im.convert("RGB")), file_pixels)
    assert sum(a != b for a, b in zip(copy.read_bytes(), path.read_bytes())) <= 2
    assert path.read_bytes() != copy.read_bytes()  # the source keeps its tag
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["images"]["orientation_reset"] == 1
    coco = COCO(str(out / "annotations/instances_train.json"))
    assert np.array_equal(coco.annToMask(coco.loadAnns(coco.getAnnIds())[0]).astype(bool), m)
    ds = sv.DetectionDataset.from_yolo(str(out / "train/images"), str(out / "train/labels"), str(out / "data.yaml"),
                                       force_masks=True)
    _, image, det = next(iter(ds))
    assert image.shape[:2] == (512, 683) and iou(det.mask[0], m) > 0.95


def test_a_tagged_photo_left_in_place_is_counted(tmp_path, vocab):
    """images: reference keeps the source, tag and all: readers that apply EXIF show it turned against its
    annotations, so dataset.json counts such photos."""
    _, path = tagged_photo(tmp_path, "turned.jpg", 6)
    plain = photo(tmp_path, "plain.jpg", 1)
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(val_fraction=0.0, formats=["coco"], images="reference")) as writer:
        for p in (path, plain):
            size = size_of(p)[::-1] if p == path else size_of(p)  # the pipeline's masks are upright
            writer.add(p, seg_of(size, [("car", box(size, 0, 50, 0, 50), 0.9, 0.9)]))
    images = json.loads((out / "dataset.json").read_text())["images"]
    assert images["tagged_references"] == 1 and images["orientation_reset"] == 0
    assert path.read_bytes()[:2] == b"\xff\xd8" and not (out / "train" / "images").exists()


@pytest.mark.parametrize("form", ["attribute", "element"])
def test_a_jpeg_turned_by_xmp_alone_is_copied_with_one_digit_changed(tmp_path, vocab, form):
    """No EXIF block, the orientation in XMP only (Pillow reads it there): the copy's XMP says 1, and nothing
    else (one byte differs: not the text that mentions the property), and its pixels are the source's."""
    from PIL import Image, ImageOps

    value = ('tiff:Orientation="6"/>' if form == "attribute"
             else '><tiff:Orientation>6</tiff:Orientation></rdf:Description>')
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           # decoys: a value that mentions the property, and another namespace's property of that name
           'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:description="set tiff:Orientation=\'3\' by hand" '
           'xmlns:my="http://example.com/" my:Orientation="8" ' + value +
           '</rdf:RDF></x:xmpmeta>').encode()
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "xmp.jpg"
    Image.open(PHOTOS[0]).convert("RGB").save(path, quality=90, xmp=xmp)
    with Image.open(path) as im:
        assert "exif" not in im.info and im.getexif().get(0x0112) == 6
        upright_size = ImageOps.exif_transpose(im).size[::-1]
        file_pixels = np.asarray(im.convert("RGB"))
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(val_fraction=0.0, formats=["coco"])) as writer:
        ex = writer.add(path, seg_of(upright_size, [("car", box(upright_size, 0, 300, 0, 200), 0.9, 0.9)]))
    copy = out / ex.record["file"]
    source, copied = path.read_bytes(), copy.read_bytes()
    assert len(source) == len(copied) and sum(a != b for a, b in zip(source, copied)) == 1
    with Image.open(copy) as im:
        assert im.getexif().get(0x0112, 1) == 1 and np.array_equal(np.asarray(im.convert("RGB")), file_pixels)
    assert json.loads((out / "dataset.json").read_text())["images"]["orientation_reset"] == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_masks_at_the_files_size_and_the_review_view_follow_the_orientation(orientation):
    """A reduced, upright analysis mapped to the file: the file-size masks are the analysed ones upsampled
    (nearest) and turned back; the review's smaller view picks its pixels straight from the analysed masks,
    and they are the file-size masks' pixels on the view's grid."""
    from PIL import Image

    from selfseg.io import undo_orientation
    from selfseg.label.export import ExportedImage, _Frame

    rng = np.random.default_rng(orientation)
    analysed, upright = (37, 53), (90, 131)  # not a whole multiple: rows and columns repeat unevenly
    height, width = upright[::-1] if orientation >= 5 else upright
    rows = (np.arange(upright[0]) * analysed[0]) // upright[0]
    cols = (np.arange(upright[1]) * analysed[1]) // upright[1]
    frame = _Frame(rows=rows, cols=cols, analysed=analysed, orientation=orientation, height=height, width=width)
    masks = rng.uniform(size=(3, *analysed)) < 0.5
    ex = ExportedImage(record={}, analysed=masks, frame=frame)
    for k in range(3):
        assert np.array_equal(ex.masks[k], undo_orientation(masks[k][rows[:, None], cols[None, :]], orientation))
    view, small = ex.for_view(Image.new("RGB", (width, height)), 50)
    vh, vw = small.shape[1:]
    assert view.size == (vw, vh) and max(vh, vw) == 50
    r, c = (np.arange(vh) * height) // vh, (np.arange(vw) * width) // vw
    assert np.array_equal(small, ex.masks[:, r[:, None], c[None, :]])


def test_a_rotated_png_is_saved_afresh_without_its_tag(tmp_path, vocab):
    from PIL import Image, ImageOps

    stored, path = tagged_photo(tmp_path, "turned.png", 8, which=2)
    h, w = stored.shape[:2]
    with DatasetWriter(tmp_path / "ds", vocab, ExportConfig(images="hardlink", val_fraction=0.0)) as writer:
        ex = writer.add(path, seg_of((w, h), [("car", box((w, h), 0, 50, 0, 100), 0.9, 0.9)]))
    with Image.open(tmp_path / "ds" / ex.record["file"]) as im:
        assert im.getexif().get(0x0112, 1) == 1 and np.array_equal(np.asarray(im.convert("RGB")), stored)
    assert ex.masks.shape == (1, h, w) and ex.masks[0].sum() == 5000
    tagged = Image.fromarray(ex.masks[0].astype(np.uint8) * 255)
    tagged.getexif()[0x0112] = 8
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(tagged)) > 0, box((w, h), 0, 50, 0, 100))


def test_a_rotated_tiff_is_labelled_in_the_pixel_order_its_copy_decodes_to(tmp_path, vocab):
    """Newer Pillow turns a TIFF upright itself (its size is upright before the pixels load, while the header
    still holds the tag); older Pillow leaves that to exif_transpose. Either way the labels must describe
    the copy's pixels as a reader decodes them, which are the pixels the models saw."""
    from PIL import Image

    from selfseg.io import load_image

    stored, path = tagged_photo(tmp_path, "turned.tif", 6)
    seen = np.asarray(load_image(path).image)  # what the models analyse: upright
    assert seen.shape[:2] == stored.shape[:2][::-1]
    upright_size = seen.shape[:2]
    upright = box(upright_size, 0, 300, 0, 200)
    with DatasetWriter(tmp_path / "ds", vocab, ExportConfig(val_fraction=0.0)) as writer:
        ex = writer.add(path, seg_of(upright_size, [("car", upright, 0.9, 0.9)]))
    with Image.open(tmp_path / "ds" / ex.record["file"]) as im:
        assert im.getexif().get(0x0112, 1) == 1  # no tag left: any reader decodes the pixels the labels describe
        copy = np.asarray(im.convert("RGB"))
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["images"]["orientation_reset"] == 1
    assert copy.shape[:2] == ex.masks.shape[1:] == (ex.record["height"], ex.record["width"])
    if copy.shape == seen.shape and np.array_equal(copy, seen):  # the copy holds the upright pixels
        assert np.array_equal(ex.masks[0], upright)
    else:  # the copy holds the stored pixels: the labels are the upright mask turned back
        from selfseg.io import undo_orientation

        assert np.array_equal(copy, stored) and np.array_equal(ex.masks[0], undo_orientation(upright, 6))


def test_a_photo_trainers_cannot_read_is_copied_as_a_png_of_the_same_pixels(tmp_path, vocab, sv):
    from PIL import Image

    from selfseg.evaluate.datasets import _IMAGE_EXTS, load_dataset
    from selfseg.io import IMAGE_SUFFIXES, load_image
    from selfseg.label.export import TRAINABLE_SUFFIXES

    assert TRAINABLE_SUFFIXES == set(_IMAGE_EXTS) and TRAINABLE_SUFFIXES < IMAGE_SUFFIXES
    stored = Image.open(PHOTOS[1]).convert("RGB")
    (tmp_path / "src").mkdir()
    paths = [tmp_path / "src" / "anim.gif", tmp_path / "src" / "grey.pgm", tmp_path / "src" / "plain.ppm",
             tmp_path / "src" / "deep.pgm"]
    stored.quantize(64).save(paths[0], save_all=True, append_images=[stored.rotate(90).quantize(64)])
    stored.convert("L").save(paths[1])
    stored.save(paths[2])
    deep = (np.asarray(stored.convert("L"), np.uint16) * 257).astype(np.uint16)  # 16 bits: maxval 65535
    Image.fromarray(deep).save(paths[3])
    out = tmp_path / "ds"
    with DatasetWriter(out, vocab, ExportConfig(val_fraction=0.0)) as writer:
        for path in paths:
            h, w = size_of(path)
            ex = writer.add(path, seg_of((h, w), [("car", box((h, w), 0, 50, 0, 80), 0.9, 0.9)]))
            copy = out / ex.record["file"]
            assert copy.suffix == ".png"
            with Image.open(copy) as im, Image.open(path) as src:  # the first frame, every value kept
                src.seek(0)
                if src.mode == "P":  # a GIF frame: the same colours through its palette
                    assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(load_image(path).image))
                else:  # grey, RGB, and 16-bit grey values as they are
                    assert np.array_equal(np.asarray(im).astype(np.int64), np.asarray(src).astype(np.int64))
    assert json.loads((out / "dataset.json").read_text())["images"]["saved_as_png"] == 4
    ds = sv.DetectionDataset.from_yolo(str(out / "train/images"), str(out / "train/labels"), str(out / "data.yaml"))
    assert len(ds) == 4
    assert len(load_dataset("folder", out, "train").samples) == 4


def test_photos_with_names_near_the_file_system_limit_get_names_that_fit(tmp_path, vocab):
    """Two 251-character photo names from two folders: the second would become name-2.jpg, 257 bytes."""
    import shutil as _shutil

    out = tmp_path / "ds"
    names = []
    with DatasetWriter(out, vocab, ExportConfig(val_fraction=0.0)) as writer:
        for folder in ("a", "b"):
            (tmp_path / folder).mkdir()
            path = tmp_path / folder / ("a" * 251 + ".jpg")
            _shutil.copy(PHOTOS[0], path)
            h, w = size_of(path)
            names.append(writer.add(path, seg_of((h, w), [("car", box((h, w), 0, 50, 0, 80), 0.9, 0.9)]))
                         .record["file"])
    assert len(set(names)) == 2 and all(len(Path(n).name.encode()) <= 255 for n in names)
    assert all((out / n).is_file() for n in names)
    assert len(list((out / "train" / "labels").iterdir())) == 2


def test_masks_of_the_wrong_size_name_the_image(tmp_path, vocab):
    path = photo(tmp_path, "wrong.jpg")
    h, w = size_of(path)
    with DatasetWriter(tmp_path / "ds", vocab) as writer:
        with pytest.raises(ValueError, match=r"^wrong\.jpg: expected masks of the photo's upright size") as err:
            writer.add(path, seg_of((h, w + 1), [("car", box((h, w + 1), 0, 10, 0, 10), 0.9, 0.9)]))
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match="wrong.jpg"):
            writer.add(path, seg_of((h // 2, w // 2), [], original_size=(h + 2, w)))
        writer.add(path, seg_of((h, w), []))  # nothing was left half-written by the failures
    assert len(read_lines(tmp_path / "ds/labels.jsonl")) == 1


# ------------------------------------------------------------------------------------------------ images


def test_images_are_copied_linked_or_referenced(tmp_path, vocab, monkeypatch):
    from pycocotools.coco import COCO

    path = photo(tmp_path, "pic.jpg")
    seg = seg_of(size_of(path), scene(size_of(path)))
    with DatasetWriter(tmp_path / "copy", vocab, ExportConfig(val_fraction=0.0)) as writer:
        rec = writer.add(path, seg).record
    copied = tmp_path / "copy" / rec["file"]
    assert copied.read_bytes() == path.read_bytes() and not copied.samefile(path)

    with DatasetWriter(tmp_path / "link", vocab, ExportConfig(images="hardlink", val_fraction=0.0)) as writer:
        rec = writer.add(path, seg).record
    assert (tmp_path / "link" / rec["file"]).samefile(path)

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr("os.link", cross_device)
    with DatasetWriter(tmp_path / "far", vocab, ExportConfig(images="hardlink", val_fraction=0.0)) as writer:
        rec = writer.add(path, seg).record
    assert not (tmp_path / "far" / rec["file"]).samefile(path)
    assert (tmp_path / "far" / rec["file"]).read_bytes() == path.read_bytes()
    assert json.loads((tmp_path / "far/dataset.json").read_text())["images"]["hardlink_fallbacks"] == 1
    monkeypatch.undo()

    out = tmp_path / "ref"
    with DatasetWriter(out, vocab, ExportConfig(images="reference", formats=["coco"], val_fraction=0.0)) as writer:
        rec = writer.add(path, seg).record
    assert rec["file"] == str(path.resolve()) and not (out / "train").exists()
    coco = COCO(str(out / "annotations/instances_train.json"))
    assert coco.dataset["images"][0]["file_name"] == str(path.resolve()) and len(coco.getAnnIds()) == 3
    with pytest.raises(ConfigError, match="images: .*reference.* needs formats \\[coco\\]"):
        ExportConfig(images="reference")


def test_names_that_collide_get_a_suffix_and_keep_their_split(tmp_path, vocab):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Path(shutil.copyfile(PHOTOS[0], tmp_path / "one/same.jpg"))
    second = Path(shutil.copyfile(PHOTOS[1], tmp_path / "two/same.jpg"))
    with DatasetWriter(tmp_path / "ds", vocab) as writer:
        a = writer.add(first, seg_of(size_of(first), [])).record
        b = writer.add(second, seg_of(size_of(second), [])).record
        with pytest.raises(ValueError, match="added twice"):
            writer.add(first, seg_of(size_of(first), []))
    assert Path(a["file"]).name == "same.jpg" and Path(b["file"]).name == "same-2.jpg"
    assert a["split"] == b["split"] == split_of("same.jpg", 0, 0.2)
    assert (tmp_path / "ds" / b["file"]).read_bytes() == second.read_bytes()


# ------------------------------------------------------------------------------------------------ memory


def test_memory_does_not_grow_with_the_images(tmp_path, vocab):
    path = photo(tmp_path, "base.jpg")
    size = size_of(path)
    seg = seg_of(size, scene(size))
    writer = DatasetWriter(tmp_path / "ds", vocab, ExportConfig(val_fraction=0.3))
    sources = [Path(shutil.copyfile(path, tmp_path / "src" / f"m{k:02d}.jpg")) for k in range(50)]
    writer.add(sources[0], seg)  # caches, imports and lazily built tables settle
    gc.collect()
    tracemalloc.start()
    try:
        for k in range(1, 10):
            writer.add(sources[k], seg)
        gc.collect()
        after_10 = tracemalloc.get_traced_memory()[0]
        for k in range(10, 50):
            writer.add(sources[k], seg)
        gc.collect()
        after_50 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # one image's masks are 3 x 350 kB; 40 more images may cost their names and counts, not their masks
    assert after_50 - after_10 < 40 * 4000
    assert not [k for k, v in vars(writer).items() if isinstance(v, np.ndarray)]
    writer.close()
    meta = json.loads((tmp_path / "ds/dataset.json").read_text())
    assert meta["splits"]["train"]["images"] + meta["splits"]["val"]["images"] == 50
    assert sum(c["instances"]["train"] + c["instances"]["val"] for c in meta["classes"]) == 150


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_outputs_and_settings_are_one_line(tmp_path, vocab):
    (tmp_path / "file").write_text("x")
    for out, pattern in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", "cannot write to")):
        with pytest.raises(ConfigError, match=f"^out: .*{pattern}") as err:
            DatasetWriter(out, vocab)
        assert "\n" not in str(err.value)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="is not empty"):
        DatasetWriter(tmp_path / "full", vocab)
    for bad, key in ((dict(formats=["coco", "voc"]), "formats"), (dict(formats=[]), "formats"),
                     (dict(val_fraction=1.5), "val_fraction"), (dict(images="move"), "images"),
                     (dict(min_area=0), "min_area"), (dict(nms="soft"), "nms"), (dict(nms_iou=0), "nms_iou"),
                     (dict(max_instances=0), "max_instances"), (dict(polygons="yes"), "polygons"),
                     (dict(min_score=2), "min_score"), (dict(min_score=-0.1), "min_score"),
                     (dict(min_mask_score=1.5), "min_mask_score")):
        with pytest.raises(ConfigError, match=f"^{key}: expected"):
            ExportConfig(**bad)


def test_an_interrupted_export_has_no_dataset_json(tmp_path, vocab):
    path = photo(tmp_path, "a.jpg")
    with pytest.raises(RuntimeError, match="stop"), DatasetWriter(tmp_path / "ds", vocab) as writer:
        writer.add(path, seg_of(size_of(path), []))
        raise RuntimeError("stop")
    assert not (tmp_path / "ds/dataset.json").exists() and (tmp_path / "ds/labels.jsonl").is_file()


def test_more_than_255_classes_write_16_bit_semantic_maps(tmp_path):
    """Open-vocabulary datasets pass 255 classes easily: the maps become 16-bit, 65535 for no class, and the
    benchmark's folder dataset reads them back."""
    from selfseg.evaluate.datasets import load_dataset
    from selfseg.label.vocabulary import VocabularyConfig

    names = [f"thing{k}" for k in range(300)]
    v = build_vocabulary([("a", names), ("b", names)], VocabularyConfig(wordnet_synonyms=False))
    assert len(v.names) == 300
    size = (512, 683)  # the photo's
    last = v.names[-1]
    mask = box(size, 0, 200, 0, 300)
    with DatasetWriter(tmp_path / "ds", v, ExportConfig(formats=["semantic"], val_fraction=0.0)) as w:
        w.add(photo(tmp_path, "p.jpg"), seg_of(size, [(last, mask, 0.9, 1.0)]))
    ds = load_dataset("folder", tmp_path / "ds", "train")
    label = ds.read_label(ds.samples[0])
    assert ds.num_classes == 300
    assert (label[mask] == v.id_of(last)).all() and (label[~mask] < 0).all()  # 65535: ignored, no class
