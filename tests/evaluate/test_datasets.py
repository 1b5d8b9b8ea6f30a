"""Dataset loaders on small trees written in each benchmark's real on-disk layout (and on the real ADE20K
sample the repository ships): which samples are found, in what order, how ground truth is decoded, and
what a wrong root or a broken file says."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfseg.errors import ConfigError, DatasetError
from selfseg.evaluate.datasets import (
    ADE_FULL_LAYOUT,
    ADE_LAYOUT,
    CITYSCAPES_LAYOUT,
    CITYSCAPES_TRAIN_IDS,
    COCO_LAYOUT,
    COCO_OBJECT_LAYOUT,
    COCO_STUFF_LAYOUT,
    FOLDER_LAYOUT,
    IGNORE,
    PASCAL_CONTEXT_459_LAYOUT,
    PASCAL_CONTEXT_LAYOUT,
    VOC_LAYOUT,
    class_list,
    load_dataset,
)

REPO = Path(__file__).resolve().parents[2]
ADE_SAMPLE = REPO / "examples" / "ade20k_sample"
OBJECT_INFO = ADE_SAMPLE / "objectInfo150.csv"  # ADE20K's own table of its 150 classes


# ------------------------------------------------------------------------------------------------ writers


def write_image(path: Path, w: int = 4, h: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = (np.arange(h * w * 3).reshape(h, w, 3) % 251).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path)
    return path


def write_palette_png(path: Path, arr) -> Path:
    """A VOC-style SegmentationClass PNG: mode 'P', pixel = palette index = class (255 = boundary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(arr, dtype=np.uint8), "P")
    palette = [(i * 37) % 256 for i in range(256 * 3)]
    palette[255 * 3: 256 * 3] = [224, 224, 192]  # VOC's boundary colour
    im.putpalette(palette)
    im.save(path)
    return path


def write_grey_png(path: Path, arr) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8), "L").save(path)
    return path


def write_uint16_tif(path: Path, arr) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr).astype(np.uint16)).save(path)
    return path


VOC_LABELS = {  # id -> SegmentationClass values (3 x 4), 255 = boundary
    "2007_000033": [[0, 0, 255, 1], [15, 15, 255, 1], [20, 20, 255, 0]],
    "2007_000032": [[0, 0, 0, 0], [255, 255, 255, 255], [7, 7, 7, 7]],
    "2008_000001": [[3, 3, 3, 3], [3, 3, 3, 3], [3, 3, 3, 3]],
}


def make_voc(tmp: Path, val=("2007_000033", "2007_000032"), train=("2008_000001",), labels=VOC_LABELS) -> Path:
    """tmp/VOCdevkit/VOC2012 in the official layout; returns the VOC2012 folder."""
    base = tmp / "VOCdevkit" / "VOC2012"
    for sid, lab in labels.items():
        write_image(base / "JPEGImages" / f"{sid}.jpg")
        write_palette_png(base / "SegmentationClass" / f"{sid}.png", lab)
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(f"{i}\n" for i in val))
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in train))
    return base


def make_ade150(tmp: Path, labels: dict, sub: str = "validation") -> Path:
    base = tmp / "ADEChallengeData2016"
    for sid, lab in labels.items():
        write_image(base / "images" / sub / f"{sid}.jpg")
        write_grey_png(base / "annotations" / sub / f"{sid}.png", lab)
    return base


def make_ade847(tmp: Path, labels: dict) -> Path:
    base = tmp / "ADE20K_2021_17_01"
    for sid, lab in labels.items():
        write_image(base / "images_detectron2" / "validation" / f"{sid}.jpg")
        write_uint16_tif(base / "annotations_detectron2" / "validation" / f"{sid}.tif", lab)
    return base


def make_cityscapes(tmp: Path, frames: dict, split: str = "val") -> Path:
    """frames: '<city>_<seq>_<frame>' -> labelIds array."""
    for frame, lab in frames.items():
        city = frame.split("_")[0]
        write_image(tmp / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png")
        write_grey_png(tmp / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", lab)
    return tmp


def make_folder(root: Path, labels: dict, classes: str = "# my classes\nsky\ngrass;lawn\ncow\n",
                image_ext: str = ".png") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(classes)
    for sid, lab in labels.items():
        write_image(root / "images" / f"{sid}{image_ext}")
        write_grey_png(root / "masks" / f"{sid}.png", lab)
    return root


# ------------------------------------------------------------------------------------------------ VOC


@pytest.mark.parametrize("root_of", [
    pytest.param(lambda tmp, base: tmp, id="parent-of-VOCdevkit"),
    pytest.param(lambda tmp, base: tmp / "VOCdevkit", id="VOCdevkit"),
    pytest.param(lambda tmp, base: base, id="VOC2012-itself"),
])
def test_voc_roots_ids_in_val_txt_order_and_boundary_ignored(tmp_path, root_of):
    base = make_voc(tmp_path)
    ds = load_dataset("voc", root_of(tmp_path, base))
    assert ds.name == "voc" and ds.split == "val" and ds.num_classes == 21
    # val.txt lists 000033 before 000032: that order is kept (not re-sorted); train ids are not included.
    assert [s.id for s in ds.samples] == ["2007_000033", "2007_000032"]
    for s in ds.samples:
        assert s.image == base / "JPEGImages" / f"{s.id}.jpg"
        assert s.label == base / "SegmentationClass" / f"{s.id}.png"
        raw = np.asarray(VOC_LABELS[s.id])
        gt = ds.read_label(s)
        assert gt.dtype == np.int32 and gt.shape == (3, 4)
        np.testing.assert_array_equal(gt, np.where(raw == 255, IGNORE, raw))
    # the palette PNG really is mode P (so this exercises index, not colour, decoding)
    assert Image.open(ds.samples[0].label).mode == "P"


def test_voc_split_reads_its_own_list(tmp_path):
    make_voc(tmp_path)
    ds = load_dataset("voc", tmp_path, split="train")
    assert [s.id for s in ds.samples] == ["2008_000001"]
    np.testing.assert_array_equal(ds.read_label(ds.samples[0]), np.full((3, 4), 3))


def test_voc20_scores_the_20_objects_and_not_background(tmp_path):
    """VOC20 reads VOC's own files; background (0) joins the boundary (255) as not scored, and class k is
    value k + 1, so its indices are VOC's minus one."""
    make_voc(tmp_path)
    ds, voc = load_dataset("voc20", tmp_path), load_dataset("voc", tmp_path)
    assert ds.num_classes == 20 and ds.class_names == voc.class_names[1:]
    assert [s.id for s in ds.samples] == [s.id for s in voc.samples]
    for s in ds.samples:
        raw = np.asarray(VOC_LABELS[s.id])
        np.testing.assert_array_equal(ds.read_label(s), np.where((raw == 0) | (raw == 255), IGNORE, raw - 1))
    assert (ds.read_label(ds.samples[0]) == IGNORE).sum() == 6  # three background and three boundary pixels


# ------------------------------------------------------------------------------------------------ PASCAL-Context

# mmsegmentation's PascalContextDataset classes, in the order of the values its converter writes (0 = background).
MMSEG_CONTEXT_60 = (
    "background aeroplane bag bed bedclothes bench bicycle bird boat book bottle building bus cabinet car cat ceiling "
    "chair cloth computer cow cup curtain dog door fence floor flower food grass ground horse keyboard light motorbike "
    "mountain mouse person plate platform pottedplant road rock sheep shelves sidewalk sign sky snow sofa table track "
    "train tree truck tvmonitor wall water window wood").split()
CONTEXT_LABELS = {"2008_000002": [[0, 1, 59], [37, 37, 0]], "2008_000008": [[56, 56, 56], [0, 0, 28]]}


def make_pascal_context(tmp: Path, labels=CONTEXT_LABELS, layout: str = "mmseg") -> Path:
    """tmp/VOCdevkit/VOC2010 as mmsegmentation's converter leaves it, or with CAT-Seg's pc59_val maps, or ODISE's
    tmp/pascal_ctx_d2; returns VOC2010."""
    base = tmp / "VOCdevkit" / "VOC2010"
    for sid, lab in labels.items():
        d2 = (np.asarray(lab) - 1) % 256  # 0..58, background 255
        if layout == "odise":
            write_image(tmp / "pascal_ctx_d2" / "images" / "validation" / f"{sid}.jpg")
            write_grey_png(tmp / "pascal_ctx_d2" / "annotations_ctx59" / "validation" / f"{sid}.png", d2)
            continue
        write_image(base / "JPEGImages" / f"{sid}.jpg")
        if layout == "cat-seg":
            write_grey_png(base / "annotations_detectron2" / "pc59_val" / f"{sid}.png", d2)
        else:
            write_grey_png(base / "SegmentationClassContext" / f"{sid}.png", lab)
    if layout == "mmseg":
        sets = base / "ImageSets" / "SegmentationContext"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / "val.txt").write_text("".join(f"{i}\n" for i in reversed(list(labels))))
    return base


@pytest.mark.parametrize("layout", ["mmseg", "cat-seg", "odise"])
def test_pascal_context_59_and_60_read_the_same_maps(tmp_path, layout):
    make_pascal_context(tmp_path, layout=layout)
    pc59, pc60 = load_dataset("pascal-context-59", tmp_path), load_dataset("pascal-context-60", tmp_path)
    order = list(reversed(CONTEXT_LABELS)) if layout == "mmseg" else sorted(CONTEXT_LABELS)  # val.txt, else sorted
    assert [s.id for s in pc59.samples] == [s.id for s in pc60.samples] == order
    assert pc60.spec.background == 0 and pc59.spec.background is None
    for s in pc59.samples:
        raw = np.asarray(CONTEXT_LABELS[s.id])
        np.testing.assert_array_equal(pc60.read_label(s), raw)
        np.testing.assert_array_equal(pc59.read_label(s), np.where(raw == 0, IGNORE, raw - 1))
    gt = pc60.read_label(pc60.sample("2008_000002"))
    assert [MMSEG_CONTEXT_60[v] for v in gt.ravel()] == ["background", "aeroplane", "wood", "person", "person",
                                                         "background"]


@pytest.mark.parametrize("name", ["pascal-context-59", "pascal-context-459"])
def test_pascal_context_id_without_its_files_is_one_clear_error(tmp_path, name):
    base = make_pascal_context(tmp_path)
    if name == "pascal-context-459":
        write_uint16_tif(base / "annotations_detectron2" / "pc459_val" / "2008_000002.tif", [[0]])
        write_uint16_tif(base / "annotations_detectron2" / "pc459_val" / "2008_000008.tif", [[0]])
    (base / "JPEGImages" / "2008_000008.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 id\(s\) lack an image in JPEGImages/ or a label file .*'2008_000008'"):
        load_dataset(name, tmp_path)


def test_pascal_context_255_is_ignored_and_other_values_refused(tmp_path):
    """mmsegmentation ignores 255 in both benchmarks (its converter writes none); a value past 59 is an error that
    names the index it reads as."""
    make_pascal_context(tmp_path, labels={"a": [[255, 1, 0]], "b": [[60, 1, 1]]})
    pc59, pc60 = load_dataset("pascal-context-59", tmp_path), load_dataset("pascal-context-60", tmp_path)
    assert pc59.read_label(pc59.sample("a")).tolist() == [[IGNORE, 0, IGNORE]]
    assert pc60.read_label(pc60.sample("a")).tolist() == [[IGNORE, 1, 0]]
    with pytest.raises(DatasetError, match="expected class values 0..58 .* in pascal-context-59's numbering, got 59"):
        pc59.read_label(pc59.sample("b"))


@pytest.mark.parametrize("name,reference", [("pascal-context-59", MMSEG_CONTEXT_60[1:]),
                                            ("pascal-context-60", MMSEG_CONTEXT_60)])
def test_pascal_context_class_lists_follow_mmsegmentations_numbering(name, reference):
    """Class k carries mmsegmentation's name of class k (prediction files and per-class tables line up)."""
    classes = class_list(name)
    assert len(classes) == len(reference)
    assert [ref for c, ref in zip(classes, reference) if ref not in c.names] == []


CONTEXT_459 = {"2008_000002": [[1, 284, 459], [431, 0, 256]], "2008_000008": [[440, 440, 2], [3, 3, 3]]}


@pytest.mark.parametrize("layout", ["detectron2", "odise", "release-mat", "release-mat-cat-seg-list"])
def test_pascal_context_459_reads_label_ids_minus_one(tmp_path, layout):
    """PC-459's class k is label id k + 1 of labels.txt: in CAT-Seg's TIFFs (LabelMap - 1, 16-bit) and in the
    release's .mat files (LabelMap; 0 = unlabelled, ignored). "unknown" (431) is a class like any other."""
    from scipy.io import savemat

    base = tmp_path / "VOCdevkit" / "VOC2010"
    for sid, lab in CONTEXT_459.items():
        lab = np.asarray(lab, np.uint16)
        if layout == "odise":
            write_image(tmp_path / "pascal_ctx_d2" / "images" / "validation" / f"{sid}.jpg")
            write_uint16_tif(tmp_path / "pascal_ctx_d2" / "annotations_ctx459" / "validation" / f"{sid}.tif",
                             lab.astype(np.int32) - 1)
            continue
        write_image(base / "JPEGImages" / f"{sid}.jpg")
        if layout == "detectron2":
            write_uint16_tif(base / "annotations_detectron2" / "pc459_val" / f"{sid}.tif", lab.astype(np.int32) - 1)
        else:
            (base / "trainval").mkdir(parents=True, exist_ok=True)
            savemat(base / "trainval" / f"{sid}.mat", {"LabelMap": lab})
    if layout == "release-mat":
        (base / "ImageSets" / "SegmentationContext").mkdir(parents=True)
        (base / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000008\n2008_000002\n")
    if layout == "release-mat-cat-seg-list":
        (base / "pascalcontext_val.txt").write_text("2008_000002\n")
    ds = load_dataset("pascal-context-459", tmp_path)
    assert ds.num_classes == 459 and ds.spec.ignore_value == 65535
    assert [s.id for s in ds.samples] == {"detectron2": ["2008_000002", "2008_000008"],
                                          "odise": ["2008_000002", "2008_000008"],
                                          "release-mat": ["2008_000008", "2008_000002"],
                                          "release-mat-cat-seg-list": ["2008_000002"]}[layout]
    gt = ds.read_label(ds.sample("2008_000002"))
    names = [ds.class_names[v] if v != IGNORE else None for v in gt.ravel()]
    # unlabelled (0) is ignored: -1 in the .mat reading, 65535 once written to a uint16 TIFF
    assert names == ["accordion", "person", "wool", "unknown", None, "monkey"]


def test_pascal_context_459_tiff_ignores_459_and_65535_only(tmp_path):
    base = tmp_path / "VOC2010"
    write_image(base / "JPEGImages" / "a.jpg")
    write_uint16_tif(base / "annotations_detectron2" / "pc459_val" / "a.tif", [[0, 458, 459, 65535], [1, 1, 1, 1]])
    ds = load_dataset("pascal-context-459", tmp_path)
    assert ds.read_label(ds.sample("a"))[0].tolist() == [0, 458, IGNORE, IGNORE]
    write_uint16_tif(base / "annotations_detectron2" / "pc459_val" / "a.tif", [[460]])
    with pytest.raises(DatasetError, match="got 460"):
        ds.read_label(ds.sample("a"))


def test_pascal_context_459_broken_mat_is_one_clear_error(tmp_path):
    from scipy.io import savemat

    base = tmp_path / "VOC2010"
    write_image(base / "JPEGImages" / "a.jpg")
    write_image(base / "JPEGImages" / "b.jpg")
    (base / "trainval").mkdir()
    savemat(base / "trainval" / "a.mat", {"Other": np.zeros((2, 2))})
    (base / "trainval" / "b.mat").write_bytes(b"not a mat file")
    savemat(base / "trainval" / "c.mat", {"LabelMap": np.arange(1, 401, dtype=np.uint16).reshape(20, 20)},
            do_compression=True)
    damaged = bytearray((base / "trainval" / "c.mat").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # zlib's check fails inside scipy
    (base / "trainval" / "c.mat").write_bytes(bytes(damaged))
    write_image(base / "JPEGImages" / "c.jpg")
    (base / "pascalcontext_val.txt").write_text("a\nb\nc\n")
    ds = load_dataset("pascal-context-459", tmp_path)
    with pytest.raises(DatasetError, match="c.mat: cannot read it as a MATLAB file"):
        ds.read_label(ds.sample("c"))
    with pytest.raises(DatasetError, match="a.mat: expected an integer 2-D LabelMap, got none"):
        ds.read_label(ds.sample("a"))
    with pytest.raises(DatasetError, match="b.mat: cannot read it as a MATLAB file"):
        ds.read_label(ds.sample("b"))


# ------------------------------------------------------------------------------------------------ ADE20K-150


ADE_LABELS = {  # 255 is not in the release, but tools write it for "ignore": it stays ignored, as in mmseg
    "ADE_val_00000002": [[0, 1, 2, 3], [150, 150, 0, 255], [10, 20, 30, 40]],
    "ADE_val_00000001": [[1, 1, 1, 1], [0, 0, 0, 0], [149, 149, 149, 149]],
}


@pytest.mark.parametrize("use_parent", [True, False], ids=["parent-of-ADEChallengeData2016", "ADEChallengeData2016"])
@pytest.mark.parametrize("split", ["val", "validation"])
def test_ade150_reduce_zero_label(tmp_path, use_parent, split):
    base = make_ade150(tmp_path, ADE_LABELS)
    ds = load_dataset("ade20k", tmp_path if use_parent else base, split=split)
    assert [s.id for s in ds.samples] == ["ADE_val_00000001", "ADE_val_00000002"]  # sorted
    assert ds.num_classes == 150
    for s in ds.samples:
        assert s.image.parent == base / "images" / "validation"
        raw = np.asarray(ADE_LABELS[s.id])
        gt = ds.read_label(s)
        assert gt.dtype == np.int32
        # 0 ("other") -> ignore; 1..150 -> 0..149
        np.testing.assert_array_equal(gt, np.where((raw == 0) | (raw == 255), IGNORE, raw - 1))
    assert ds.read_label(ds.sample("ADE_val_00000002"))[1, 0] == 149


def test_ade150_train_split_uses_training_folders(tmp_path):
    make_ade150(tmp_path, ADE_LABELS)
    make_ade150(tmp_path, {"ADE_train_00000009": [[5, 5, 5, 5]] * 3}, sub="training")
    assert [s.id for s in load_dataset("ade20k", tmp_path, split="train").samples] == ["ADE_train_00000009"]


def test_ade150_real_flat_sample():
    ds = load_dataset("ade20k", ADE_SAMPLE)
    assert [s.id for s in ds.samples] == [f"ADE_val_0000000{i}" for i in (1, 2, 3)]
    seen_ignore = False
    for s in ds.samples:
        gt = ds.read_label(s)
        with Image.open(s.image) as im:
            w, h = im.size
        assert gt.shape == (h, w)
        assert gt.min() >= IGNORE and gt.max() <= 149
        raw = np.asarray(Image.open(s.label)).astype(np.int32)
        np.testing.assert_array_equal(gt, raw - 1)
        seen_ignore |= bool((gt == IGNORE).any())
    assert seen_ignore  # the sample does contain "other" pixels
    # it has no split folders: read as val (also spelled "validation"), and another split is refused
    assert len(load_dataset("ade20k", ADE_SAMPLE, "validation").samples) == 3
    with pytest.raises(DatasetError, match="is a flat sample .* read as the val split, not 'train'"):
        load_dataset("ade20k", ADE_SAMPLE, "train")


# ------------------------------------------------------------------------------------------------ ADE20K-847


ADE847_LABELS = {"ADE_val_00000001": [[0, 1, 65535, 846], [255, 256, 65535, 500], [846, 846, 0, 0]]}


@pytest.mark.parametrize("use_parent", [True, False], ids=["parent", "ADE20K_2021_17_01"])
def test_ade847_uint16_tif(tmp_path, use_parent):
    base = make_ade847(tmp_path, ADE847_LABELS)
    ds = load_dataset("ade20k-full", tmp_path if use_parent else base)
    assert [s.id for s in ds.samples] == ["ADE_val_00000001"]
    assert ds.samples[0].label.suffix == ".tif"
    assert Image.open(ds.samples[0].label).mode.startswith("I;16")
    raw = np.asarray(ADE847_LABELS["ADE_val_00000001"])
    gt = ds.read_label(ds.samples[0])
    np.testing.assert_array_equal(gt, np.where(raw == 65535, IGNORE, raw))
    assert ds.num_classes == 847 and gt.max() == 846


# ------------------------------------------------------------------------------------------------ Cityscapes

# cityscapesScripts labels.py, written out independently of the code under test: labelId -> trainId.
OFFICIAL_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                      25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def test_cityscapes_every_label_id_mapped(tmp_path):
    ids = np.arange(34, dtype=np.uint8).reshape(2, 17)  # every labelId 0..33 once
    frames = {"aachen_000000_000019": ids, "frankfurt_000001_000042": np.full((2, 17), 26, np.uint8)}
    make_cityscapes(tmp_path, frames)
    ds = load_dataset("cityscapes", tmp_path)
    assert ds.num_classes == 19
    # the id is the image stem (prediction files are <id>.png)
    assert [s.id for s in ds.samples] == ["aachen_000000_000019_leftImg8bit", "frankfurt_000001_000042_leftImg8bit"]
    s = ds.samples[0]
    assert s.label == tmp_path / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png"
    gt = ds.read_label(s)
    expected = np.array([OFFICIAL_TRAIN_IDS.get(i, IGNORE) for i in range(34)]).reshape(2, 17)
    np.testing.assert_array_equal(gt, expected)
    assert sorted(gt[gt != IGNORE].tolist()) == list(range(19))
    np.testing.assert_array_equal(ds.read_label(ds.samples[1]), np.full((2, 17), 13))  # car
    assert CITYSCAPES_TRAIN_IDS == OFFICIAL_TRAIN_IDS


def test_cityscapes_out_of_table_ids_are_ignored(tmp_path):
    # ids above 33 (e.g. 255 in some exports) are not evaluation classes: ignored, never an error
    make_cityscapes(tmp_path, {"bonn_000000_000001": [[34, 100, 255, 7]]})
    ds = load_dataset("cityscapes", tmp_path)
    np.testing.assert_array_equal(ds.read_label(ds.samples[0]), [[IGNORE, IGNORE, IGNORE, 0]])


# ------------------------------------------------------------------------------------------------ folder


def test_folder_dataset(tmp_path):
    root = make_folder(tmp_path / "ds", {"b": [[0, 1, 2, 255]], "a": [[2, 2, 255, 0]]})
    ds = load_dataset("folder", root)
    assert ds.class_names == ["sky", "grass", "cow"]  # comment skipped, first synonym is the name
    assert ds.classes[1].names == ("grass", "lawn")
    assert [s.id for s in ds.samples] == ["a", "b"]
    np.testing.assert_array_equal(ds.read_label(ds.sample("b")), [[0, 1, 2, IGNORE]])
    np.testing.assert_array_equal(ds.read_label(ds.sample("a")), [[2, 2, IGNORE, 0]])


def test_folder_dataset_images_sharing_a_stem_are_refused(tmp_path):
    """x.jpg and x.png would pair with one mask and write one prediction: scored twice, predicted once."""
    root = make_folder(tmp_path / "ds", {"x": [[0, 1]]}, image_ext=".jpg")
    make_folder(tmp_path / "ds", {"x": [[0, 1]]}, image_ext=".png")
    with pytest.raises(DatasetError, match=r"x\.jpg and x\.png in .* share the stem 'x'"):
        load_dataset("folder", root)


def test_folder_dataset_split_subfolder_jpg_and_classes_override(tmp_path):
    root = tmp_path / "ds"
    make_folder(root / "val", {"x": [[0, 1]]}, image_ext=".jpg")
    (root / "classes.txt").write_text("sky\ngrass\ncow\n")
    other = tmp_path / "names.txt"
    other.write_text("background\nthing\n")
    ds = load_dataset("folder", root, split="val", classes=other)
    assert ds.class_names == ["background", "thing"]
    assert [s.id for s in ds.samples] == ["x"] and ds.samples[0].image.suffix == ".jpg"
    assert ds.samples[0].label == root / "val" / "masks" / "x.png"


def test_folder_dataset_root_with_tilde(tmp_path, monkeypatch):
    make_folder(tmp_path / "ds", {"a": [[0]]})
    monkeypatch.setenv("HOME", str(tmp_path))
    assert [s.id for s in load_dataset("folder", "~/ds").samples] == ["a"]


def _mask2former_semantic(pan_png: Path, segments: list[dict], categories: list[dict]) -> np.ndarray:
    """The semantic map of COCO panoptic benchmarks, written out here as Mask2Former's preparation script
    defines it: every segment (crowd too) takes its category's position in id order, the rest stays 255."""
    rgb = np.asarray(Image.open(pan_png).convert("RGB")).astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    position = {c["id"]: k for k, c in enumerate(sorted(categories, key=lambda c: c["id"]))}
    out = np.full(ids.shape, 255, np.int64)
    for seg in segments:
        out[ids == seg["id"]] = position[seg["category_id"]]
    return out


@pytest.mark.parametrize("holder", [False, True], ids=["coco-root", "folder-holding-coco"])
def test_coco_semantic_maps_are_the_panoptic_segments_classes(tmp_path, coco_tree, holder):
    import json

    root = coco_tree(tmp_path / "coco" if holder else tmp_path, n_images=3)
    ds = load_dataset("coco", tmp_path)
    assert [s.id for s in ds.samples] == ["000000000139", "000000000239", "000000000339"]
    assert ds.samples[0].image.name == "000000000139.jpg" and ds.samples[0].label.parent.name == "panoptic_val2017"
    data = json.loads((root / "annotations" / "panoptic_val2017.json").read_text())
    names = [c.name for c in ds.classes]
    for sample, ann in zip(ds.samples, data["annotations"]):
        got = ds.read_label(sample)
        want = _mask2former_semantic(sample.label, ann["segments_info"], data["categories"])
        np.testing.assert_array_equal(np.where(got == IGNORE, 255, got), want)
        # the crowd of people is person; void (no segment) is ignored
        assert names[got[20, 90]] == "person" and got[20, 50] == IGNORE
        assert {names[c] for c in np.unique(got[got != IGNORE])} == {
            "person", "dog", "sky", "grass", "tree" if sample.id.endswith("139") or sample.id.endswith("339")
            else "dining table"}


def test_coco_with_other_categories_or_a_lost_file_is_one_clear_error(tmp_path, coco_tree, coco_category_list):
    import json

    root = coco_tree(tmp_path, n_images=2)
    js = root / "annotations" / "panoptic_val2017.json"
    data = json.loads(js.read_text())
    (root / "val2017" / "000000000239.jpg").unlink()
    with pytest.raises(DatasetError, match="1 image.*lack an image.*'000000000239'"):
        load_dataset("coco", root)
    data["categories"] = [c for c in data["categories"] if c["name"] != "tree-merged"]
    js.write_text(json.dumps(data))  # read again: the file changed
    with pytest.raises(DatasetError, match="expected the 133 COCO panoptic categories, 1 missing .*'tree'"):
        load_dataset("coco", root)
    good = json.loads(json.dumps({**data, "categories": coco_category_list}))
    (root / "val2017" / "000000000239.jpg").write_bytes((root / "val2017" / "000000000139.jpg").read_bytes())
    for broken, message in [
        (lambda d: d["annotations"][0]["segments_info"][0].update(category_id="sky"),
         r"annotations\[0\]: segments_info\[0\]: expected integer id and category_id"),
        (lambda d: d["annotations"][1]["segments_info"][0].update(category_id=9999),
         r"annotations\[1\]: category_id 9999 is not one of the file's 133 categories"),
        (lambda d: d["annotations"][1].update(file_name=d["annotations"][0]["file_name"]),
         r"annotations\[1\]: file_name '000000000139.png' is another annotation's too"),
        (lambda d: d.update(images=5), "expected 'images' to be a list of objects"),
        (lambda d: d["images"].append(dict(d["images"][0])), "image id 139 is listed twice"),
    ]:
        bad = json.loads(json.dumps(good))
        broken(bad)
        js.write_text(json.dumps(bad))
        with pytest.raises(DatasetError, match=message):
            load_dataset("coco", root)
    # a path of the wrong kind is named as such, not a traceback
    js.write_text(json.dumps(good))
    js.rename(js.with_suffix(".bak"))
    js.mkdir()
    with pytest.raises(DatasetError, match=r"panoptic_val2017.json not a file under"):
        load_dataset("coco", root)


def test_coco_in_detectron2s_layout_and_the_task_aliases(tmp_path, coco_tree):
    """detectron2 keeps the panoptic PNGs in coco/panoptic_val2017/ beside annotations/: the same samples, the
    same maps; a benchmark dataset's name also names its panoptic and instance ground truth."""
    from selfseg.evaluate.annotations import ground_truth

    root = coco_tree(tmp_path / "datasets" / "coco", n_images=2)
    ds = load_dataset("coco", tmp_path / "datasets")
    want = [ds.read_label(x) for x in ds.samples]
    (root / "annotations" / "panoptic_val2017").rename(root / "panoptic_val2017")
    moved = load_dataset("coco", tmp_path / "datasets")
    assert [x.label.parent for x in moved.samples] == [root / "panoptic_val2017"] * 2
    for got, w in zip((moved.read_label(x) for x in moved.samples), want):
        np.testing.assert_array_equal(got, w)
    assert ground_truth("panoptic", "coco", root).image_ids == [139, 239]
    assert ground_truth("instance", "coco", root).name == "instances_val2017.json"


def test_coco_panoptic_and_instance_truth_name_each_class_by_its_category(tmp_path, coco_tree):
    from selfseg.evaluate.annotations import task_truth

    coco_tree(tmp_path / "coco", n_images=2)
    ds = load_dataset("coco", tmp_path)
    truth = task_truth(ds, ["panoptic", "instance"], ds.samples)
    index = {c.name: c.index for c in ds.classes}
    assert truth.image_ids == truth.instance_image_ids == {"000000000139": 139, "000000000239": 239}
    pan, ins = truth.panoptic_category, truth.instance_category
    assert [pan[index[n]] for n in ("person", "dog", "dining table", "toothbrush", "banner", "tree", "rug")] == [
        1, 18, 67, 90, 92, 184, 200]
    assert [ins[index[n]] for n in ("person", "dog", "dining table", "tree", "sky")] == [1, 18, 67, None, None]
    assert sum(c is not None for c in pan) == 133 and sum(c is not None for c in ins) == 80
    assert {a["image_id"] for a in truth.instances["annotations"]} == {139, 239}


def test_coco_class_list_names_every_official_category(coco_category_list):
    """Each class carries its official category name (ground-truth files match by it), in id order."""
    from selfseg.evaluate.datasets import categories_of_classes

    cats = coco_category_list
    ids = categories_of_classes(class_list("coco"), cats)
    assert ids == [c["id"] for c in cats]
    official = {c["id"]: c["name"] for c in cats}
    assert all(official[i] in c.names for i, c in zip(ids, class_list("coco")))


def _stuffthingmap(h: int = 6, w: int = 8) -> np.ndarray:
    """A raw COCO-Stuff map (label id - 1): person, unlabelled, banner, sky-other, wood, unlabelled."""
    raw = np.full((h, w), 255, np.uint8)
    raw[:, :2] = 0      # person (id 1)
    raw[:, 3] = 91      # banner (id 92), the first stuff class
    raw[:, 4:6] = 156   # sky-other (id 157)
    raw[:, 6] = 181     # wood (id 182), the last
    return raw


def _stuff_folders(root: Path, layout: str) -> tuple[Path, Path]:
    """(images, label maps) of a COCO-Stuff layout: the release's maps or detectron2's beside COCO's val2017/,
    else mmsegmentation's images/ and annotations/."""
    return {
        "release-maps": (root / "val2017", root / "stuffthingmaps_trainval2017" / "val2017"),
        "detectron2": (root / "val2017", root / "stuffthingmaps_detectron2" / "val2017"),
    }.get(layout, (root / "images" / "val2017", root / "annotations" / "val2017"))


def _train_ids(raw: np.ndarray, coco_category_list) -> np.ndarray:
    """mmsegmentation's 171-class numbering of a raw map, written out independently: COCO-Stuff's ids 1..182 in
    order, without the thing ids that are not among COCO's 80 categories; unlabelled is IGNORE."""
    things = {c["id"] for c in coco_category_list if c["isthing"]}
    kept = [i for i in range(1, 183) if i in things or i > 91]
    train_id = {i - 1: k for k, i in enumerate(kept)}
    return np.vectorize(lambda v: train_id.get(int(v), IGNORE))(raw)


@pytest.mark.parametrize("layout", ["mmseg-converted", "mmseg-raw", "release-maps", "detectron2", "folder-holding"])
def test_coco_stuff_layouts_read_the_171_classes(tmp_path, coco_category_list, layout):
    raw = _stuffthingmap()
    root = tmp_path / "coco_stuff164k" if layout == "folder-holding" else tmp_path
    images, labels = _stuff_folders(root, layout)
    write_image(images / "000000000139.jpg")
    write_grey_png(labels / "000000000139.png", raw)
    want = _train_ids(raw, coco_category_list)
    if layout == "mmseg-converted":  # the converted map sits beside the raw one and is the one read
        write_grey_png(labels / "000000000139_labelTrainIds.png", np.where(want == IGNORE, 255, want))
        write_grey_png(labels / "000000000139.png", np.zeros_like(raw))
    if layout == "detectron2":  # numbered 0..170 under the raw name
        write_grey_png(labels / "000000000139.png", np.where(want == IGNORE, 255, want))
    ds = load_dataset("coco-stuff", tmp_path)
    assert [s.id for s in ds.samples] == ["000000000139"]
    got = ds.read_label(ds.samples[0])
    np.testing.assert_array_equal(got, want)
    names = [c.name for c in ds.classes]
    assert [names[v] if v != IGNORE else None for v in got[0]] == [
        "person", "person", None, "banner", "sky", "sky", "wood", None]


@pytest.mark.parametrize("layout", ["object-converted", "stuff-converted", "raw", "release-maps", "detectron2"])
def test_coco_object_is_the_80_things_over_background(tmp_path, coco_category_list, layout):
    """COCO-Object as GroupViT's conversion makes it, written out from the category list: a thing of COCO id i
    is its position among the 80 thing ids + 1; stuff and unlabelled pixels are background (0), none ignored."""
    raw = _stuffthingmap()
    raw[1, :3] = 12, 66, 89  # stop sign (id 13), dining table (67), toothbrush (90): after COCO's id gaps
    thing_ids = [c["id"] for c in coco_category_list if c["isthing"]]
    want = np.vectorize(lambda v: thing_ids.index(v + 1) + 1 if v + 1 in thing_ids else 0)(raw)
    images, labels = _stuff_folders(tmp_path, layout)
    write_image(images / "000000000139.jpg")
    write_grey_png(labels / "000000000139.png", raw)
    stuff_ids = _train_ids(raw, coco_category_list)
    if layout == "detectron2":
        write_grey_png(labels / "000000000139.png", np.where(stuff_ids == IGNORE, 255, stuff_ids))
    if layout == "stuff-converted":
        write_grey_png(labels / "000000000139_labelTrainIds.png", np.where(stuff_ids == IGNORE, 255, stuff_ids))
        write_grey_png(labels / "000000000139.png", np.zeros_like(raw))  # the converted map is the one read
    if layout == "object-converted":
        write_grey_png(labels / "000000000139_instanceTrainIds.png", want)
        write_grey_png(labels / "000000000139_labelTrainIds.png", np.zeros_like(raw))
    ds = load_dataset("coco-object", tmp_path)
    assert ds.num_classes == 81 and ds.spec.background == 0
    got = ds.read_label(ds.samples[0])
    np.testing.assert_array_equal(got, want)
    assert [ds.class_names[v] for v in got[0]] == ["person", "person", "background", "background", "background",
                                                   "background", "background", "background"]
    assert [ds.class_names[v] for v in got[1, :3]] == ["stop sign", "dining table", "toothbrush"]
    assert ds.class_names[1:] == [c["name"] for c in coco_category_list if c["isthing"]]


def test_coco_stuff_images_sharing_a_stem_are_refused(tmp_path):
    write_image(tmp_path / "images" / "val2017" / "x.jpg")
    write_image(tmp_path / "images" / "val2017" / "x.png")
    write_grey_png(tmp_path / "annotations" / "val2017" / "x.png", _stuffthingmap())
    with pytest.raises(DatasetError, match="x.jpg and x.png in .* share the stem 'x'"):
        load_dataset("coco-stuff", tmp_path)


def test_coco_stuff_image_without_a_map_and_a_16_bit_map(tmp_path):
    write_image(tmp_path / "images" / "val2017" / "a.jpg")
    write_image(tmp_path / "images" / "val2017" / "b.jpg")
    write_grey_png(tmp_path / "annotations" / "val2017" / "a.png", _stuffthingmap())
    with pytest.raises(DatasetError, match="1 image.*no label map.*'b.jpg'"):
        load_dataset("coco-stuff", tmp_path)
    (tmp_path / "images" / "val2017" / "b.jpg").unlink()
    Image.fromarray(_stuffthingmap().astype(np.uint16) * 200).save(tmp_path / "annotations" / "val2017" / "a.png")
    ds = load_dataset("coco-stuff", tmp_path)
    with pytest.raises(DatasetError, match="expected an 8-bit COCO-Stuff label PNG"):
        ds.read_label(ds.samples[0])
    # a map numbered 0..170 under a raw map's name holds values no raw map has: refused, not misread
    write_grey_png(tmp_path / "annotations" / "val2017" / "a.png", np.full((6, 8), 11, np.uint8))
    with pytest.raises(DatasetError, match="value 11 is in no raw COCO-Stuff map.*_labelTrainIds.png"):
        ds.read_label(ds.samples[0])


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name,layout,in_layout,in_message", [
    ("voc", VOC_LAYOUT, "JPEGImages", "need JPEGImages/ and ImageSets/Segmentation/val.txt"),
    ("voc20", VOC_LAYOUT, "JPEGImages", "need JPEGImages/ and ImageSets/Segmentation/val.txt"),
    ("ade20k", ADE_LAYOUT, "annotations/validation", "no images/validation/ and annotations/validation/"),
    ("ade20k-full", ADE_FULL_LAYOUT, "annotations_detectron2/validation",
     "no images_detectron2/validation/ and annotations_detectron2/validation/"),
    ("cityscapes", CITYSCAPES_LAYOUT, "gtFine/val", "no leftImg8bit/val/ and gtFine/val/"),
    ("coco", COCO_LAYOUT, "annotations/panoptic_val2017.json", "val2017 not found under"),
    ("coco-stuff", COCO_STUFF_LAYOUT, "stuffthingmaps_trainval2017/val2017", "no images/val2017/ and annotations"),
    ("coco-object", COCO_OBJECT_LAYOUT, "_instanceTrainIds.png", "no images/val2017/ and annotations"),
    ("pascal-context-59", PASCAL_CONTEXT_LAYOUT, "SegmentationClassContext", "holds no JPEGImages/"),
    ("pascal-context-459", PASCAL_CONTEXT_459_LAYOUT, "pc459_val", "holds no JPEGImages/"),
], ids=["voc", "voc20", "ade20k", "ade20k-full", "cityscapes", "coco", "coco-stuff", "coco-object", "pc59", "pc459"])
@pytest.mark.parametrize("missing", [False, True], ids=["empty-root", "nonexistent-root"])
def test_wrong_root_names_the_layout(tmp_path, name, layout, in_layout, in_message, missing):
    root = tmp_path / "nope" if missing else tmp_path
    with pytest.raises(DatasetError) as exc:
        load_dataset(name, root)
    msg = str(exc.value)
    assert in_layout in layout
    assert layout in msg and str(root) in msg and msg.endswith(layout)
    # a root that is not there says so; an existing one says which piece is missing
    assert ("not a directory" in msg) == missing
    assert (in_message in msg) == (not missing)


def test_folder_root_without_images_names_the_layout(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match="images/ and masks/") as exc:
        load_dataset("folder", tmp_path)
    assert FOLDER_LAYOUT in str(exc.value)


def test_folder_split_missing_names_the_splits_there(tmp_path):
    """A dataset `selfseg label` wrote with every image in train: --split val names the splits it has."""
    make_folder(tmp_path / "train", {"x": [[0, 1]]})
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match=r"no val/images/ and val/masks/ under .*: its splits are train \("):
        load_dataset("folder", tmp_path, split="val")
    assert [s.id for s in load_dataset("folder", tmp_path, split="train").samples] == ["x"]


def test_folder_nonexistent_root_names_the_layout(tmp_path):
    with pytest.raises(DatasetError) as exc:
        load_dataset("folder", tmp_path / "nope")
    assert "not a directory" in str(exc.value) and FOLDER_LAYOUT in str(exc.value)


def test_folder_without_classes_file(tmp_path):
    make_folder(tmp_path, {"a": [[0]]})
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="classes.txt"):
        load_dataset("folder", tmp_path)


def test_voc_missing_list_or_pieces(tmp_path):
    base = make_voc(tmp_path)
    with pytest.raises(DatasetError, match=r"ImageSets/Segmentation/test\.txt") as exc:
        load_dataset("voc", tmp_path, split="test")
    assert VOC_LAYOUT in str(exc.value)
    (base / "SegmentationClass" / "2007_000032.png").unlink()
    (base / "JPEGImages" / "2007_000033.jpg").unlink()
    with pytest.raises(DatasetError, match=r"2 id\(s\) of val\.txt lack an image or a SegmentationClass PNG"):
        load_dataset("voc", tmp_path)


def test_empty_id_list_is_an_error(tmp_path):
    make_voc(tmp_path, val=())
    with pytest.raises(DatasetError, match="no images found") as exc:
        load_dataset("voc", tmp_path)
    assert VOC_LAYOUT in str(exc.value)


@pytest.mark.parametrize("name,build,drop", [
    ("ade20k", lambda t: make_ade150(t, {**ADE_LABELS, "ADE_val_00000003": [[1]]}),
     lambda b: [b / "annotations" / "validation" / "ADE_val_00000003.png",
                b / "annotations" / "validation" / "ADE_val_00000001.png"]),
    ("ade20k-full", lambda t: make_ade847(t, {"a": [[1]], "b": [[2]]}),
     lambda b: [b / "annotations_detectron2" / "validation" / "b.tif"]),
    ("cityscapes", lambda t: make_cityscapes(t, {"aachen_000000_000001": [[7]], "ulm_000000_000002": [[7]]}),
     lambda b: [b / "gtFine" / "val" / "ulm" / "ulm_000000_000002_gtFine_labelIds.png"]),
    ("folder", lambda t: make_folder(t, {"a": [[0]], "b": [[1]], "c": [[1]]}), lambda b: [b / "masks" / "c.png"]),
])
def test_image_without_label_file(tmp_path, name, build, drop):
    root = build(tmp_path)
    gone = drop(root)
    for p in gone:
        p.unlink()
    with pytest.raises(DatasetError) as exc:
        load_dataset(name, root)
    msg = str(exc.value)
    assert f"{len(gone)} image(s)" in msg
    assert any(p.name in msg for p in gone)


@pytest.mark.parametrize("name,build,bad_value", [
    ("voc", lambda t: make_voc(t, val=("x",), train=(), labels={"x": [[0, 21]]}), 21),
    ("voc", lambda t: make_voc(t, val=("x",), train=(), labels={"x": [[0, 254]]}), 254),
    # ADE-150 annotation 151 -> class 150, one past the end
    ("ade20k", lambda t: make_ade150(t, {"x": [[1, 151]]}), 150),
    ("ade20k-full", lambda t: make_ade847(t, {"x": [[0, 847]]}), 847),
    ("folder", lambda t: make_folder(t / "ds", {"x": [[0, 3]]}), 3),
])
def test_label_value_out_of_range(tmp_path, name, build, bad_value):
    ds = load_dataset(name, build(tmp_path))
    with pytest.raises(DatasetError, match=rf"expected class values 0\.\.{ds.num_classes - 1} .*got {bad_value}$"):
        ds.read_label(ds.samples[0])


@pytest.mark.parametrize("name,build,label_of", [
    ("voc", lambda t: make_voc(t, val=("x",), train=(), labels={"x": [[0]]}),
     lambda r: r / "SegmentationClass" / "x.png"),
    ("ade20k", lambda t: make_ade150(t, {"x": [[1]]}), lambda r: r / "annotations" / "validation" / "x.png"),
    ("cityscapes", lambda t: make_cityscapes(t, {"ulm_000000_000002": [[7]]}),
     lambda r: r / "gtFine" / "val" / "ulm" / "ulm_000000_000002_gtFine_labelIds.png"),
    ("folder", lambda t: make_folder(t / "ds", {"x": [[0]]}), lambda r: r / "masks" / "x.png"),
])
def test_rgb_label_image_is_refused(tmp_path, name, build, label_of):
    root = build(tmp_path)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8), "RGB").save(label_of(root))
    ds = load_dataset(name, root)
    with pytest.raises(DatasetError, match="single-channel.*got mode RGB"):
        ds.read_label(ds.samples[0])


def test_unreadable_label_file(tmp_path):
    root = make_folder(tmp_path / "ds", {"x": [[0]]})
    (root / "masks" / "x.png").write_bytes(b"not a png")
    ds = load_dataset("folder", root)
    with pytest.raises(DatasetError, match="cannot read label image"):
        ds.read_label(ds.samples[0])


def test_cityscapes_16bit_label_is_refused(tmp_path):
    make_cityscapes(tmp_path, {"ulm_000000_000002": [[7]]})
    lab = tmp_path / "gtFine" / "val" / "ulm" / "ulm_000000_000002_gtFine_labelIds.png"
    Image.fromarray(np.array([[7, 8]], np.uint16)).save(lab)
    ds = load_dataset("cityscapes", tmp_path)
    with pytest.raises(DatasetError, match="8-bit"):
        ds.read_label(ds.samples[0])


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'pascal-context'.*ade20k.*voc"):
        load_dataset("pascal-context", tmp_path)


# ------------------------------------------------------------------------------------------------ class lists


@pytest.mark.parametrize("name,count,checks", [
    ("voc", 21, {0: "background", 1: "aeroplane", 15: "person", 20: "tv monitor"}),
    ("voc20", 20, {0: "aeroplane", 14: "person", 19: "tv monitor"}),
    ("cityscapes", 19, {0: "road", 11: "person", 13: "car", 18: "bicycle"}),
    ("ade20k", 150, {0: "wall", 2: "sky", 149: "flag"}),
    ("ade20k-full", 847, {0: "wall", 1: "building", 2: "sky", 846: "adding machine"}),
    ("coco", 133, {0: "person", 60: "dining table", 79: "toothbrush", 80: "banner", 116: "tree", 132: "rug"}),
    ("coco-stuff", 171, {0: "person", 79: "toothbrush", 80: "banner", 85: "bush", 145: "sky", 170: "wood"}),
    ("coco-object", 81, {0: "background", 1: "person", 61: "dining table", 80: "toothbrush"}),
    ("pascal-context-59", 59, {0: "aeroplane", 36: "person", 39: "potted plant", 49: "table", 58: "wood"}),
    ("pascal-context-60", 60, {0: "background", 1: "aeroplane", 37: "person", 59: "wood"}),
    ("pascal-context-459", 459, {0: "accordion", 1: "aeroplane", 2: "air conditioner", 283: "person", 430: "unknown",
                                 458: "wool"}),
])
def test_class_lists(name, count, checks):
    classes = class_list(name)
    assert len(classes) == count
    assert [c.index for c in classes] == list(range(count))
    for i, n in checks.items():
        assert classes[i].name == n
    assert all(c.names and all(c.names) for c in classes)


@pytest.mark.parametrize("name", ["voc", "voc20", "cityscapes", "coco", "coco-stuff", "coco-object",
                                  "pascal-context-59", "pascal-context-60", "pascal-context-459"])
def test_class_names_unique(name):
    names = [c.name for c in class_list(name)]
    assert len(set(names)) == len(names)


def test_ade150_class_names_unique_and_multiword_names_restored():
    classes = class_list("ade20k")
    names = [c.name for c in classes]
    assert len(set(names)) == len(names) == 150
    # the CSV copy writes "screen;door;screen" for "screen door, screen": the shipped list has the real names
    assert classes[58].names == ("screen door", "screen") and classes[141].name == "crt screen"


def test_ade847_repeated_names_get_unique_score_keys():
    from selfseg.evaluate.metrics import SemSegEvaluator

    names = [c.name for c in class_list("ade20k-full")]
    assert names.count("bag") == 3  # the dataset's own list repeats some names
    keys = SemSegEvaluator(names).evaluate().keys()
    assert len(set(keys)) == 847 and "bag (114)" in keys and "wall" in keys


def test_folder_has_no_shipped_class_list():
    with pytest.raises(DatasetError, match="no shipped class list"):
        class_list("folder")


def test_ade150_class_list_matches_object_info():
    with OBJECT_INFO.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["Idx"]) for r in rows] == list(range(1, 151))
    # Same words in the same order; the CSV also turns the spaces inside names into ';'.
    words = lambda names: [w for n in names for w in n.split()]
    assert [words(c.names) for c in class_list("ade20k")] == [r["Name"].split(";") for r in rows]


def test_folder_dataset_with_more_than_255_classes_uses_16_bit_ignore(tmp_path):
    root = tmp_path / "big"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(f"c{i}" for i in range(300)) + "\n")
    Image.new("RGB", (2, 1)).save(root / "images" / "a.png")
    Image.fromarray(np.array([[255, 65535]], dtype=np.uint16)).save(root / "masks" / "a.png")
    ds = load_dataset("folder", root)
    assert ds.spec.ignore_value == 65535
    assert ds.read_label(ds.samples[0]).tolist() == [[255, -1]]  # 255 is a class here
