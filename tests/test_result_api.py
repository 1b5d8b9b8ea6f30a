"""The result types as an API: independent copies in and out of dicts, equality, painted maps that follow
their masks, JSON for every type, file names for in-memory images, lenient reading within a schema, short
reprs and shape checks. No model runs here."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from selfseg.errors import ImageError
from selfseg.locate.result import Detections
from selfseg.segment.result import Instances, Segmentation, encode_rle
from selfseg.tag.result import ClusterCaptions, ClusterMaps, NounSupport, TagResult


def _tags(grid: bool = True) -> TagResult:
    nouns = [NounSupport("dog", 2, 1, [0]), NounSupport("cat", 1, 1, [1])]
    return TagResult(source="a.jpg", image_size=(8, 10), nouns=nouns, tagger="bcc", model="m",
                     clusters=[ClusterCaptions(0, 40, ["a dog"], [["dog"]])],
                     cluster_grid=np.arange(4).reshape(2, 2) if grid else None, notes=["n1"], timings={"t": 1.0},
                     replies=[{"step": "first", "reply": "dog"}])


def _seg(n: int = 2, size: tuple[int, int] = (8, 10), source: str = "p.jpg") -> Segmentation:
    h, w = size
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        masks[i, i % h:, : (i % w) + 1] = True
    classes = ["dog", "cat"]
    return Segmentation(image_size=size, masks=masks, boxes=[[0, i % h, (i % w) + 1, h] for i in range(n)],
                        scores=np.linspace(0.9, 0.5, n), mask_scores=np.ones(n),
                        labels=[classes[i % 2] for i in range(n)], classes=classes, segmenter="x", source=source,
                        tags=_tags(), merges=[{"from": "puppy", "to": "dog"}], notes=["s1"], timings={"segment": 0.5},
                        prompts={"dog": "a dog"})


# ---------------------------------------------------------------------------------- independent copies
def test_to_dict_hands_out_copies_of_the_tag_result():
    r = _tags(grid=False)
    d = r.to_dict()
    d["nouns"][0]["noun"] = "EDITED"
    d["nouns"][0]["clusters"].append(9)
    d["nouns"][0]["score"] = 0.9  # a key the result does not have
    d["clusters"][0]["captions"].append("x")
    d["notes"].append("x")
    d["timings"]["t"] = 2.0
    d["replies"][0]["reply"] = "x"
    assert r == _tags(grid=False)
    assert not hasattr(r.nouns[0], "score")
    assert TagResult.from_dict(r.to_dict()) == r


def test_from_dict_shares_nothing_with_the_dict():
    d = _tags(grid=False).to_dict()
    a, b = TagResult.from_dict(d), TagResult.from_dict(d)
    a.notes.append("only a")
    a.nouns[0].clusters.append(99)
    a.clusters[0].nouns[0].append("x")
    a.replies[0]["reply"] = "x"
    a.timings["t"] = 5.0
    assert b == _tags(grid=False) and TagResult.from_dict(d) == _tags(grid=False)


def test_segmentation_dicts_are_copies_both_ways():
    s = _seg()
    d = s.to_dict()
    d["classes"].append("bird")
    d["notes"].append("x")
    d["merges"][0]["to"] = "x"
    d["timings"]["segment"] = 9.0
    d["prompts"]["dog"] = "x"
    assert s.to_dict() == _seg().to_dict()
    back = Segmentation.from_dict(d)
    back.merges[0]["from"] = "y"
    back.notes.append("y")
    assert d["merges"][0]["from"] == "puppy" and d["notes"][-1] == "x"


# ---------------------------------------------------------------------------------------------- equality
def test_results_with_arrays_compare_by_value():
    s = _seg()
    assert s == Segmentation.from_json(s.to_json()) == pickle.loads(pickle.dumps(s)) == copy.deepcopy(s)
    other = s.masks.copy()
    other[0, 0, 0] = not other[0, 0, 0]
    assert s != Segmentation(s.image_size, other, s.boxes, s.scores, s.mask_scores, s.labels, s.classes, s.segmenter,
                             s.source, s.tags, s.merges, s.notes, s.timings, prompts=s.prompts)
    t = _tags()
    assert t == TagResult.from_json(t.to_json())
    t32 = _tags()
    t32.cluster_grid = t32.cluster_grid.astype(np.int32)
    assert t32 == t  # values, not dtypes: a JSON round trip widens ints
    t32.cluster_grid = np.zeros((2, 2), int)
    assert t32 != t
    d = Detections([[0, 0, 1, 1], [1, 1, 2, 2]], [0.1, 0.2], ["a", "b"])
    assert d == Detections([[0, 0, 1, 1], [1, 1, 2, 2]], [0.1, 0.2], ["a", "b"]) != d[np.array([0])]
    inst = Instances(np.ones((1, 2, 2)), [[0, 0, 2, 2]], [0.5], [1.0], ["a"])
    assert inst == Instances(np.ones((1, 2, 2)), [[0, 0, 2, 2]], [0.5], [1.0], ["a"])
    grid = np.zeros((2, 2), np.int64)
    maps = ClusterMaps(grid, [grid], [(0, 2)], 0, [grid], np.full((1, 2, 2), np.nan), grid, grid, 1)
    assert maps == copy.deepcopy(maps)  # NaN equals NaN: a result equals its copy
    assert s != "p.jpg" and t != None  # noqa: E711
    for result in (s, t, d, inst, maps, t.nouns[0]):
        with pytest.raises(TypeError, match="unhashable"):
            hash(result)


def test_edited_masks_must_keep_the_instances():
    """A mask, label or score fewer or more, masks of another size, a label outside the classes: refused when
    assigned, in one line; painting and JSON would otherwise fail deep inside NumPy, or drop instances
    silently."""
    s = _seg(3)
    n, h, w = s.masks.shape
    wrong = [("masks", s.masks[:-1]), ("masks", np.concatenate([s.masks, s.masks[:1]])),
             ("masks", np.zeros((n, 2 * h, 2 * w), bool)), ("labels", s.labels[:2]), ("labels", s.labels + ["a"]),
             ("labels", ["zebra"] * n), ("labels", "dog"), ("labels", None), ("scores", s.scores[:2]),
             ("scores", np.ones((n, 3))), ("scores", 0.5), ("mask_scores", np.ones(n + 1)),
             ("mask_scores", np.ones((n, 1))), ("mask_scores", None), ("boxes", s.boxes[:1]), ("image_size", (4, 4)),
             ("image_size", (h + 0.7, w)), ("image_size", None), ("image_size", (float("inf"), w)),
             ("image_size", (str(h), str(w))), ("labels", [["dog"]] * n), ("classes", ["zebra"])]
    for name, value in wrong:
        with pytest.raises(ValueError, match=rf"^{name}: expected .*; this result has {n} instances"):
            setattr(s, name, value)
    assert s.masks.shape == (n, h, w) and len(Segmentation.from_json(s.to_json()).labels) == n
    s.labels = tuple(reversed(s.labels))  # the same count, among the classes: fine, kept as a list
    s.classes = s.classes + ["zebra"]
    s.scores = np.linspace(0.1, 0.9, n).tolist()
    s.image_size = np.array([h, w])
    assert isinstance(s.labels, list) and s.scores.dtype == np.float32 and s.image_size == (h, w)
    assert type(s.image_size[0]) is int
    empty = dataclasses.replace(s, masks=np.zeros((0, h, w), bool), boxes=np.zeros((0, 4)), scores=[],
                                mask_scores=[], labels=[])
    empty.masks = np.zeros(0, bool)  # no instance: any empty array, as the constructor takes it
    assert empty.masks.shape == (0, h, w)
    s.labels.pop()  # in place: no assignment to check it, so painting and JSON do
    for use in (lambda: s.semantic, s.to_json):
        with pytest.raises(ValueError, match=r"no longer fit its 3 masks \(labels has 2\): edited in place"):
            use()
    again = pickle.loads(pickle.dumps(s))  # unpickling sets the masks before the labels: no check then
    assert again == s
    fewer = dataclasses.replace(s, masks=s.masks[:1], boxes=s.boxes[:1], scores=s.scores[:1],
                                mask_scores=s.mask_scores[:1], labels=s.labels[:1])
    assert len(fewer.to_dict()["instances"]) == 1


def test_save_writes_nothing_when_it_refuses(tmp_path):
    s = _seg(3, size=(24, 32))  # an image the pipeline takes (16 px at least)
    h, w = s.image_size
    with pytest.raises(ValueError, match="not the photo it was made from"):
        s.save(tmp_path / "out", "x", image=Image.new("RGB", (w + 5, h)))
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("")
    for target in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(NotADirectoryError, match="is a file"):
            s.save(target, "x")
    assert sorted(p.name for p in s.save(tmp_path / "out", "x", image=Image.new("RGB", (w, h))).values()) == [
        "x.json", "x_labels.png", "x_overlay.png"]
    (tmp_path / "y.json").mkdir()  # a folder where a file goes
    with pytest.raises(IsADirectoryError, match="y.json: a folder of that name is in the way"):
        s.save(tmp_path, "y")
    assert not (tmp_path / "y_labels.png").exists()
    # the image as the pipeline takes inputs: an array, a path (read, turned upright, as the models saw it)
    pixels = np.full((h, w, 3), 90, np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    drawn = np.asarray(Image.open(s.save(tmp_path / "out", "pil", image=Image.fromarray(pixels))["overlay"]))
    for given, stem in ((pixels, "array"), (tmp_path / "photo.png", "path"), (str(tmp_path / "photo.png"), "str")):
        paths = s.save(tmp_path / "out", stem, image=given)
        assert np.array_equal(np.asarray(Image.open(paths["overlay"])), drawn)
    with pytest.raises(ImageError, match="nothing.png"):
        s.save(tmp_path / "out", "missing", image=tmp_path / "nothing.png")


# ------------------------------------------------------------------------------------------ painted maps
def test_painted_maps_follow_the_masks(tmp_path):
    s = _seg(3)
    before = s.semantic.copy()
    with pytest.raises(ValueError, match="read-only"):
        s.masks[1:] = False  # the maps were painted from these masks
    with pytest.raises(ValueError, match="read-only"):
        s.semantic[0, 0] = 7
    edited = s.masks.copy()
    edited[1:] = False
    s.masks = edited
    assert s.masks is not edited and not s.masks.flags.writeable and edited.flags.writeable
    assert not np.array_equal(s.semantic, before) and np.array_equal(s.semantic > 0, edited[0])
    ids, info = s.panoptic
    assert set(np.unique(ids)) == {0, 1} and [i["id"] for i in info] == [1]
    paths = s.save(tmp_path, "e")
    png = np.asarray(Image.open(paths["labels"]))
    assert np.array_equal(png, Segmentation.from_json(paths["json"]).semantic) and np.array_equal(png, s.semantic)
    s.labels[0] = "cat"  # an in-place edit of a list the map is painted from
    assert s.semantic.max() == 2
    assert not pickle.loads(pickle.dumps(s)).masks.flags.writeable
    overlapping = _seg(3)  # instances 0 (dog) and 1 (cat) share column 0 below row 0
    before = overlapping.semantic.copy()
    overlapping.scores[0] = 0.0  # in place, the scores that order overlaps: the map is painted again
    after = overlapping.semantic.copy()
    assert not np.array_equal(after, before)
    overlapping.scores[0] = 0.9
    assert np.array_equal(overlapping.semantic, before)
    overlapping.mask_scores[0] = 0.0  # and the mask scores that order them too
    assert np.array_equal(overlapping.semantic, after)
    t = _tags()
    first = t.cluster_map.copy()
    t.cluster_grid[0, 0] = 3
    assert not np.array_equal(t.cluster_map, first) and t.cluster_map[0, 0] == 3


# ------------------------------------------------------------------------------------------- JSON round trips
def test_every_result_reads_back_its_json(tmp_path):
    s = _seg()
    assert Segmentation.from_json(s.to_json()) == s and json.loads(s.to_json())["schema"] == 1
    assert Segmentation.from_json(s.to_json().encode("utf-8")) == s
    d = Detections([[0, 0, 1.25, 1], [1, 1, 2, 2.5]], np.float32([0.1, 0.7]), ["a", "b"], passes=2, notes=["n"])
    assert Detections.from_dict(d.to_dict()) == d and Detections.from_json(d.to_json()) == d
    (tmp_path / "d.json").write_text(d.to_json())
    assert Detections.from_json(tmp_path / "d.json") == d and Detections.from_json(b'{"schema": 1, "boxes": [], '
                                                                                   b'"scores": [], "labels": []}') \
        == Detections.empty()
    assert d.to_dict()["schema"] == 1 and np.array_equal(Detections.from_json(d.to_json()).scores, d.scores)
    for bad, message in [({"schema": 2, "boxes": [], "scores": [], "labels": []}, "newer selfseg"),
                         ({"schema": 1, "boxes": []}, "missing field 'scores'"),
                         (s.to_dict(), "got a segmentation"), ([], "a JSON object")]:
        with pytest.raises(ValueError, match=message):
            Detections.from_dict(bad)
    assert TagResult.from_json(_tags().to_json().encode()) == _tags()


# --------------------------------------------------------------------------------------- in-memory sources
def test_an_in_memory_image_saves_under_a_plain_name(tmp_path):
    s = _seg(source="<ndarray>")
    assert sorted(p.name for p in s.save(tmp_path).values()) == ["image.json", "image_labels.png"]
    assert s.to_coco()["images"][0]["file_name"] == "image"
    assert _seg(source="<Image>").save(tmp_path / "b")["json"].name == "image.json"
    assert _seg(source="/x/<weird>.jpg").save(tmp_path / "c")["json"].name == "<weird>.json"  # a real file's name


# ------------------------------------------------------------------------------------------- reading leniently
def test_reading_ignores_new_fields_and_explains_what_it_cannot_read():
    d = _tags().to_dict()
    d["nouns"][0]["score"] = 0.9  # a newer selfseg's field, same schema
    d["clusters"][0]["area"] = 3
    assert TagResult.from_dict(d) == _tags()
    for cls, d in ((TagResult, _tags().to_dict()), (Segmentation, _seg().to_dict())):
        d["schema"] = 2
        with pytest.raises(ValueError, match="schema 1, got 2: written by a newer selfseg; upgrading selfseg"):
            cls.from_dict(d)
        d["schema"] = True
        with pytest.raises(ValueError, match="schema 1, got True"):
            cls.from_dict(d)
    with pytest.raises(ValueError, match="a JSON object"):
        TagResult.from_json("[1, 2]")
    with pytest.raises(ValueError, match="not UTF-8"):
        TagResult.from_json(b"\xff{")


def test_uncompressed_rle_and_short_boxes_in_a_segmentation_json():
    s = _seg(1, (2, 3))
    d = s.to_dict()
    inst = d["instances"][0]
    column_major = s.masks[0].ravel(order="F")
    runs, value, count = [], False, 0
    for px in column_major:
        if px != value:
            runs.append(count)
            value, count = px, 0
        count += 1
    runs.append(count)
    inst["mask_rle"] = {"size": [2, 3], "counts": [int(r) for r in runs]}
    assert np.array_equal(Segmentation.from_dict(d).masks, s.masks)
    inst["mask_rle"] = {"size": [2, 3], "counts": [1, 2]}
    with pytest.raises(ValueError, match=r"instance 0: unreadable mask_rle \(.*adding up to 2 x 3 = 6 pixels"):
        Segmentation.from_dict(d)
    inst["mask_rle"] = encode_rle(s.masks[0])
    inst["box_xyxy"] = [1, 2]
    with pytest.raises(ValueError, match=r"instance 0: box_xyxy must be 4 numbers \(xyxy\), got \[1, 2\]"):
        Segmentation.from_dict(d)


# --------------------------------------------------------------------------------------------------- reprs
def test_reprs_are_short_and_give_shapes():
    s = _seg(30, (64, 80))
    for result, shape in ((s, "(30, 64, 80)"), (s.tags, "(2, 2)"),
                          (Detections(np.tile([0, 0, 1, 1], (50, 1)), np.ones(50), ["a"] * 50), "(50, 4)"),
                          (Instances(s.masks, s.boxes, s.scores, s.mask_scores, s.labels), "(30, 64, 80)")):
        text = repr(result)
        assert len(text) < 500 and shape in text and "\n" not in text, text
    assert "30 instances" in repr(s) and "2 tags" in repr(s.tags)


# ---------------------------------------------------------------------------------------------- shape checks
@pytest.mark.parametrize("make, message", [
    (lambda: Detections(np.arange(12).reshape(2, 6), [0.1, 0.2, 0.3], ["a", "b", "c"]),
     r"expected \(N, 4\) boxes \(xyxy\), got shape \(2, 6\)"),
    (lambda: Detections([[0, 0, 1, 1]], [[0.5]], ["a"]), r"expected \(N,\) scores, got shape \(1, 1\)"),
    (lambda: Segmentation((2, 2), np.ones((3, 2, 2)), np.arange(12).reshape(2, 6), [1] * 3, [1] * 3, ["a"] * 3,
                          ["a"], "t"), r"expected \(3, 4\) boxes \(xyxy\), got shape \(2, 6\)"),
    (lambda: Segmentation((2, 2), np.ones((1, 2, 2)), [[0, 0, 1, 1]], [[1.0]], [1], ["a"], ["a"], "t"),
     r"expected \(1,\) scores, got shape \(1, 1\)"),
    (lambda: Segmentation((2, 2), np.zeros((0, 2, 2)), [], [], [], ["a"], ["a"], "t"),
     r"expected masks of shape \(1, 2, 2\)"),
    (lambda: Instances(np.ones((2, 2, 2)), np.arange(8), [1, 1], [1, 1], ["a", "b"]),
     r"expected \(2, 4\) boxes \(xyxy\), got shape \(8,\)"),
])
def test_shapes_are_checked_before_any_reshape(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_nan_fields_numpy_rle_counts_and_kept_panoptic_areas():
    s = _seg()
    s.timings["never"] = float("nan")
    assert s == copy.deepcopy(s)  # NaN equals NaN in a result's fields, as in its arrays
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    counts = np.asarray([int(c) for c in _column_runs(mask)], dtype=np.int64)  # numpy ints, as a reader may hold
    from selfseg.segment.result import decode_rle

    assert np.array_equal(decode_rle({"size": [4, 5], "counts": list(counts)}), mask)
    ids, info = s.panoptic
    assert s.panoptic[0] is ids and [x["area"] for x in s.panoptic[1]] == [x["area"] for x in info]


def _column_runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of 0s."""
    flat, runs, value, n = mask.T.ravel(), [], False, 0
    for v in flat:
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    return runs + [n]
