from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from selfseg.segment.result import Segmentation, decode_rle


def _seg():
    masks = np.zeros((3, 20, 30), dtype=bool)
    masks[0, :10, :15] = True       # dog, score .9 * .5 = .45
    masks[1, 5:, 10:] = True        # grass, score .8 * 1.0 = .8: wins the overlap
    masks[2, 15:, :5] = True        # dog again
    return Segmentation(
        image_size=(20, 30), masks=masks, boxes=[[0, 0, 15, 10], [10, 5, 30, 20], [0, 15, 5, 20]],
        scores=[0.9, 0.8, 0.3], mask_scores=[0.5, 1.0, 0.9], labels=["dog", "grass", "dog"],
        classes=["dog", "grass", "sky"], segmenter="test", source="/x/photo.jpg",
    )


def test_semantic_and_panoptic_views():
    s = _seg()
    assert s.class_ids.tolist() == [1, 2, 1]
    assert s.semantic[7, 12] == 2 and s.semantic[2, 2] == 1 and s.semantic[0, 29] == 0
    ids, info = s.panoptic
    assert ids[7, 12] == 2 and ids[16, 1] == 3
    assert [i["label"] for i in info] == ["dog", "grass", "dog"]
    assert sum(i["area"] for i in info) == int((ids > 0).sum())


def test_labels_must_be_classes():
    with pytest.raises(ValueError, match="one of the classes"):
        Segmentation((2, 2), np.zeros((1, 2, 2)), [[0, 0, 1, 1]], [1], [1], ["cat"], ["dog"], "test")


def test_save_files_open_and_rle_decodes(tmp_path):
    s = _seg()
    paths = s.save(tmp_path, "photo", image=Image.new("RGB", (60, 40), (50, 100, 150)))
    lab = Image.open(paths["labels"])
    assert lab.mode == "P" and lab.size == (30, 20)
    assert np.array_equal(np.asarray(lab), s.semantic)
    assert Image.open(paths["overlay"]).size == (30, 20)
    d = json.loads(paths["json"].read_text())
    assert d["classes"] == ["dog", "grass", "sky"] and len(d["instances"]) == 3
    for inst, m in zip(d["instances"], s.masks):
        assert np.array_equal(decode_rle(inst["mask_rle"]), m) and inst["area"] == int(m.sum())
        assert inst["label"] in d["classes"]


def test_rle_of_any_layout_of_a_mask_is_the_same():
    """Views, Fortran order, 0/1 integers and a bool array over bytes other than 0 and 1 all encode alike."""
    from selfseg.segment.result import encode_rle

    rng = np.random.default_rng(0)
    big = rng.uniform(size=(31, 44)) < 0.3
    mask = big[3:25, 5:40]  # a view that is not contiguous
    ref = encode_rle(np.ascontiguousarray(mask).astype(np.uint8))
    # true stored as bytes 1..255, differing from pixel to pixel (arrays made with .view(bool))
    odd_bytes = (np.ascontiguousarray(mask) * rng.integers(1, 256, mask.shape)).astype(np.uint8).view(bool)
    for same in (mask, np.ascontiguousarray(mask), np.asfortranarray(mask), mask.astype(np.int64), odd_bytes):
        assert encode_rle(same) == ref
    assert np.array_equal(decode_rle(ref), mask)


def test_to_coco_and_empty():
    coco = _seg().to_coco(image_id=7)
    assert coco["images"][0] == {"id": 7, "file_name": "photo.jpg", "height": 20, "width": 30}
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 15.0, 10.0]
    empty = Segmentation((4, 5), np.zeros((0, 4, 5)), np.zeros((0, 4)), [], [], [], ["dog"], "test")
    assert empty.semantic.shape == (4, 5) and not empty.semantic.any() and empty.to_coco()["annotations"] == []


def test_a_reduced_result_exports_at_the_photos_size(tmp_path):
    """Models that saw a reduced copy: COCO and supervision describe the photo the COCO entry names, with the
    masks the saved label PNG has and boxes scaled; photo_size=False keeps the analysed size."""
    import dataclasses
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenCV.*", category=UserWarning)  # its NumPy backend
        import supervision as sv

    small = _seg()
    seg = dataclasses.replace(small, original_size=(50, 90))  # 2.5x taller, 3x wider
    labels = np.asarray(Image.open(seg.save(tmp_path, "photo")["labels"]))
    assert labels.shape == (50, 90)
    coco = seg.to_coco()
    assert coco["images"][0] == {"id": 1, "file_name": "photo.jpg", "height": 50, "width": 90}
    up = seg.at_original_size()
    assert up.image_size == (50, 90) and up.original_size is None and up.masks.shape == (3, 50, 90)
    assert np.array_equal(up.semantic, labels)  # the PNG's pixels, instance by instance
    for ann, mask in zip(coco["annotations"], up.masks):
        assert np.array_equal(decode_rle(ann["segmentation"]), mask) and ann["area"] == int(mask.sum())
    assert coco["annotations"][1]["bbox"] == [30.0, 12.5, 60.0, 37.5]  # [10, 5, 30, 20] xyxy, scaled
    assert np.allclose(up.boxes[1], [30, 12.5, 90, 50])
    det = seg.to_supervision()
    assert isinstance(det, sv.Detections) and det.mask.shape == (3, 50, 90)
    assert np.array_equal(det.mask, up.masks) and np.allclose(det.xyxy, up.boxes)
    # COCO results and panoptic PNGs, what `selfseg evaluate` scores against the photo's ground truth, too
    results = seg.to_coco_results(1)
    assert [decode_rle(r["segmentation"]).shape for r in results] == [(50, 90)] * 3
    assert [r["bbox"] for r in results] == [a["bbox"] for a in coco["annotations"]]
    rgb, ann = seg.to_coco_panoptic(1, "photo.png")
    assert rgb.shape == (50, 90, 3)
    panoptic_ids = rgb[..., 0].astype(int) + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    assert np.array_equal(panoptic_ids > 0, labels > 0)
    assert sum(x["area"] for x in ann["segments_info"]) == int((labels > 0).sum())
    assert seg.to_coco_panoptic(1, "photo.png", photo_size=False)[0].shape == (20, 30, 3)
    assert seg.to_coco_results(1, photo_size=False) == small.to_coco_results(1)
    # the analysed size on request; a result at the photo's own size is itself
    assert seg.to_coco(photo_size=False) == small.to_coco()
    assert seg.to_supervision(photo_size=False).mask.shape == (3, 20, 30)
    assert small.at_original_size() is small and up.at_original_size() is up
    up.scores[1] = 0.01  # its own copy: the result it came from keeps its scores and painted map
    assert seg.scores[1] == pytest.approx(0.8) and seg.semantic[7, 12] == 2


@pytest.mark.parametrize("orientation, shape", [(1, (2, 3)), (3, (2, 3)), (6, (3, 2)), (8, (3, 2))])
def test_save_turns_the_label_map_back_to_the_files_stored_orientation(tmp_path, orientation, shape):
    from PIL import Image, ImageOps

    from selfseg.segment.result import Segmentation

    m = np.zeros((1, 2, 3), bool)
    m[0, 0, 0] = True  # top-left of the upright image
    seg = Segmentation(image_size=(2, 3), masks=m, boxes=[[0, 0, 1, 1]], scores=[1.0], mask_scores=[1.0],
                       labels=["cat"], classes=["cat"], segmenter="test")
    seg.save(tmp_path, "x", exif_orientation=orientation)
    stored = Image.open(tmp_path / "x_labels.png")
    assert np.asarray(stored).shape == shape
    assert json.loads((tmp_path / "x.json").read_text())["label_map_size"] == list(shape)  # the PNG's
    # turning the stored map upright again, as exif_transpose does for the photo, gives the analysed map
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(stored))
    assert (upright == seg.semantic).all()


def test_a_saved_segmentation_reads_back_equal(tmp_path, smoke_seg, ade_images):
    """save -> from_json gives the same masks, boxes, scores, labels, classes and tags; the JSON carries
    its schema version; the layout written before the version field is still read."""
    s = smoke_seg.segment(str(ade_images[0]))
    assert len(s.labels) > 0 and s.tags is not None  # the round trip below has something to carry
    paths = s.save(tmp_path, "x", original_size=(s.image_size[0] * 2, s.image_size[1] * 2))
    d = json.loads(paths["json"].read_text())
    assert d["schema"] == 1
    back = Segmentation.from_json(paths["json"])
    assert np.array_equal(back.masks, s.masks) and np.allclose(back.boxes, s.boxes)
    assert np.allclose(back.scores, s.scores) and np.allclose(back.mask_scores, s.mask_scores)
    assert (back.labels, back.classes, back.segmenter, back.source) == (s.labels, s.classes, s.segmenter, s.source)
    assert back.tags.to_dict(intermediates=False) == s.tags.to_dict(intermediates=False)
    assert np.array_equal(back.semantic, s.semantic)
    d.pop("schema")
    assert Segmentation.from_dict(d).labels == s.labels  # the unversioned layout


@pytest.mark.parametrize("d, message", [
    ({"schema": 2}, "schema 1, got 2"),
    ({"schema": 1, "image_size": [4, 4]}, "missing field 'instances'"),
    ([], "a JSON object"),
    ({"schema": 1, "image_size": [4, 4], "instances": [{"mask_rle": {"size": [4, 4], "counts": 7}}]},
     r"malformed field \("),
    ({"schema": 1, "tagger": "bcc", "cluster_grid": None}, "got a tag result"),
])
def test_what_is_not_a_segmentation_is_one_value_error(d, message):
    with pytest.raises(ValueError, match=message):
        Segmentation.from_dict(d)


@pytest.mark.parametrize("d, message", [
    ({"schema": 1, "segmenter": "clipseg", "instances": []}, "got a segmentation"),
    ({"schema": 1, "tagger": "bcc"}, "missing field 'cluster_grid'"),
    ({"schema": 1, "tagger": "bcc", "cluster_grid": None, "source": "x", "image_size": 5}, "malformed field"),
    ("text", "a JSON object"),
])
def test_what_is_not_a_tag_result_is_one_value_error(d, message):
    from selfseg.tag.result import TagResult

    with pytest.raises(ValueError, match=message):
        TagResult.from_dict(d)
