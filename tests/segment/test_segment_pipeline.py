"""segment(): vocabulary modes, clean-up merges and empty results, through the bcc_clusters segmenter
(tiny random BLIP: names are meaningless, the bookkeeping is what is checked)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from selfseg import SelfSeg
from selfseg.cli import main
from selfseg.errors import ConfigError
from selfseg.io import load_image
from selfseg.segment.base import SEGMENTERS
from selfseg.segment.result import Instances, Segmentation


@pytest.fixture(scope="module")
def seg_pipeline(smoke_seg):
    cfg = dataclasses.replace(smoke_seg.config, segment=dataclasses.replace(smoke_seg.config.segment,
                                                                            segmenter="bcc_clusters"))
    s = SelfSeg(cfg)
    s._tagger = smoke_seg.tagger  # share the loaded tiny BLIP
    return s


def test_self_vocabulary_with_merges(seg_pipeline, ade_images):
    seg = seg_pipeline.segment(ade_images[0])
    h, w = load_image(ade_images[0]).image.size[::-1]
    assert seg.semantic.shape == (h, w) and seg.tags is not None
    assert set(seg.labels) <= set(seg.classes)
    for m in seg.merges:
        assert m["reason"] in ("synonym", "hypernym") and m["dropped"] in seg.tags.tags
    assert not set(seg.labels) & {m["dropped"] for m in seg.merges}  # cluster names folded into kept tags


def test_given_vocabulary_skips_the_tagger(smoke_seg, ade_images):
    class Spy:
        name = "spy"

        def __init__(self):
            self.classes = None

        def segment(self, image, plan):
            self.classes, self.tags = plan.classes, plan.tags
            return Instances.empty((image.image.height, image.image.width), "spy")

    for mode, expect_tags in (("given", False), ("union", True)):
        cfg = dataclasses.replace(smoke_seg.config, vocabulary=["quokka", "narwhal"],
                                  segment=dataclasses.replace(smoke_seg.config.segment, vocabulary=mode))
        s = SelfSeg(cfg)
        s._tagger, s._segmenter = smoke_seg.tagger, Spy()
        s.segment(ade_images[0])
        assert (s._segmenter.tags is not None) == expect_tags
        assert s._segmenter.classes[-2:] == ["quokka", "narwhal"]
        if mode == "given":
            assert s._segmenter.classes == ["quokka", "narwhal"]


def test_union_vocabulary_folds_found_synonyms_into_the_users_words_and_keeps_them(smoke_seg, ade_images):
    """The user's words take part in the clean-up as words it never drops: a found "couch" is folded into the
    given "sofa" (one prompt, not two), and a given "animal" stays beside a found "dog"."""
    from selfseg import NounSupport, TagResult

    cfg = dataclasses.replace(smoke_seg.config, vocabulary=["sofa", "animal"],
                              segment=dataclasses.replace(smoke_seg.config.segment, vocabulary="union"))
    loaded = load_image(ade_images[0])
    found = TagResult(source=loaded.source, image_size=loaded.size, tagger="bcc",
                      nouns=[NounSupport(noun=n, support=1, cycles=1, clusters=[], found_by=["bcc"])
                             for n in ("couch", "animal", "dog")])
    plan = SelfSeg(cfg)._plan(loaded, found)
    assert plan.classes == ["animal", "dog", "sofa"]
    assert {(m["kept"], m["dropped"], m["reason"]) for m in plan.merges} == {("sofa", "couch", "synonym")}


def test_zero_tags_give_a_valid_empty_result(ade_images, tmp_path):
    loaded = load_image(ade_images[0])
    found = Instances.empty((loaded.image.height, loaded.image.width), "no tags: nothing to locate")
    seg = Segmentation(loaded.size, found.masks, found.boxes, found.scores, found.mask_scores, found.labels, [],
                       "grounded_sam2", notes=found.notes)
    paths = seg.save(tmp_path, "x", image=loaded.image, original_size=loaded.size)
    assert not np.asarray(Image.open(paths["labels"])).any()
    assert Image.open(paths["labels"]).size == loaded.size[::-1]
    assert json.loads(paths["json"].read_text())["notes"] == ["no tags: nothing to locate"]


def test_config_errors():
    with pytest.raises(ConfigError, match="expected one of: bcc_clusters, clipseg, grounded_sam2"):
        _ = SelfSeg.from_config({"segment": {"segmenter": "nope"}}).segmenter
    with pytest.raises(ConfigError, match="non-empty list"):
        SelfSeg.from_config({"segment": {"vocabulary": "given"}})
    assert "bcc_clusters" in SEGMENTERS


def test_cli_segment_bcc_clusters(repo, ade_images, tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    code = main(["segment", str(ade_images[0]), str(bad), "--config", str(repo / "configs" / "smoke.yaml"),
                 "--out", str(out), "segment.segmenter=bcc_clusters", "-q"])
    cap = capsys.readouterr()
    assert code == 1 and "bad.png" in cap.err and "meaningless" in cap.err
    stem = ade_images[0].stem
    lab = Image.open(out / f"{stem}_labels.png")
    assert lab.size == Image.open(ade_images[0]).size  # the photo's own size
    d = json.loads((out / f"{stem}.json").read_text())
    assert d["label_map_size"] == [lab.size[1], lab.size[0]] and d["segmenter"] == "bcc_clusters"
    assert all(inst["label"] in d["classes"] for inst in d["instances"])


@pytest.mark.parametrize("segmenter", ["grounded_sam2", "clipseg"])
def test_model_segmenters_end_to_end(repo, ade_images, tmp_path, segmenter, capsys):
    """CLI with tiny random Grounding DINO + SAM2 / CLIPSeg: files open, RLE decodes to the recorded masks,
    every label is a class, the label map has the photo's size."""
    from selfseg.segment.result import decode_rle

    out = tmp_path / segmenter
    assert main(["segment", str(ade_images[0]), "--config", str(repo / "configs" / "smoke.yaml"), "--out",
                 str(out), f"segment.segmenter={segmenter}", "-q"]) == 0
    stem = ade_images[0].stem
    d = json.loads((out / f"{stem}.json").read_text())
    assert d["segmenter"] == segmenter and d["instances"], d["notes"]
    w, h = Image.open(ade_images[0]).size
    assert Image.open(out / f"{stem}_labels.png").size == (w, h)
    assert Image.open(out / f"{stem}_overlay.png").mode == "RGB"
    for inst in d["instances"][:50]:
        m = decode_rle(inst["mask_rle"])
        assert inst["label"] in d["classes"] and int(m.sum()) == inst["area"]
        x1, y1, x2, y2 = inst["box_xyxy"]
        assert x1 <= x2 and y1 <= y2
    if segmenter == "grounded_sam2":
        assert d["timings"]["locate_passes"] >= 1 and all(0 <= i["mask_score"] <= 1 for i in d["instances"])


def test_zero_boxes_give_an_empty_result_with_a_note(repo, ade_images):
    s = SelfSeg.from_config(repo / "configs" / "smoke.yaml",
                            ["segment.grounded_sam2.box_threshold=1.0", "captioning.cycles=1"])
    seg = s.segment(ade_images[0])
    assert seg.labels == [] and not seg.semantic.any() and seg.classes
    assert any("no boxes" in n for n in seg.notes)


def test_json_has_the_documented_shape(repo, ade_images, tmp_path):
    s = SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["captioning.cycles=1"])
    loaded = load_image(ade_images[0])
    d = json.loads(s.segment(ade_images[0]).save(tmp_path, "x", original_size=loaded.size)["json"].read_text())
    assert {"source", "image_size", "label_map_size", "segmenter", "classes", "instances", "merges", "notes",
            "timings", "tags"} <= set(d)
    for inst in d["instances"]:
        assert set(inst) == {"label", "class_id", "box_xyxy", "score", "mask_score", "area", "mask_rle"}
        assert set(inst["mask_rle"]) == {"size", "counts"} and inst["mask_rle"]["size"] == d["image_size"]
        assert d["classes"][inst["class_id"] - 1] == inst["label"]
    assert {"tags", "nouns", "clusters"} <= set(d["tags"])


def test_supervision_conversion_or_a_clear_import_error(monkeypatch):
    from selfseg.segment.result import Segmentation

    m = np.zeros((2, 10, 10), bool)
    m[0, :5] = True
    m[1, 5:] = True
    seg = Segmentation((10, 10), m, [[0, 0, 10, 5], [0, 5, 10, 10]], [0.9, 0.5], [1, 1], ["cat", "dog"],
                       ["dog", "cat"], "t")
    try:
        import supervision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install supervision"):
            seg.to_supervision()
        return
    d = seg.to_supervision()
    assert len(d) == 2 and d.class_id.tolist() == [1, 0] and d.data["class_name"].tolist() == ["cat", "dog"]
    assert np.array_equal(d.mask, m) and d.confidence.tolist() == pytest.approx([0.9, 0.5])
    monkeypatch.setitem(__import__("sys").modules, "supervision", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install supervision"):
        seg.to_supervision()


@pytest.mark.parametrize("mode", ["given", "union"])
def test_cli_vocabulary_modes_with_grounded_sam2(repo, ade_images, tmp_path, mode):
    out = tmp_path / mode
    assert main(["segment", str(ade_images[1]), "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(out),
                 f"segment.vocabulary={mode}", "vocabulary=[quokka, narwhal]", "captioning.cycles=1", "-q"]) == 0
    d = json.loads((out / f"{ade_images[1].stem}.json").read_text())
    if mode == "given":
        assert d["classes"] == ["quokka", "narwhal"] and "tags" not in d  # no tagger run
    else:
        assert d["classes"][-2:] == ["quokka", "narwhal"] and len(d["classes"]) > 2 and d["tags"]["tags"]
    assert all(i["label"] in d["classes"] for i in d["instances"])


def test_save_names_files_after_the_source_by_default(tmp_path):
    from selfseg.segment.result import Segmentation

    s = Segmentation((4, 4), np.zeros((0, 4, 4)), np.zeros((0, 4)), [], [], [], ["dog"], "t",
                     source="/photos/beach day.jpg")
    assert s.save(tmp_path)["json"].name == "beach day.json"


def test_review_cases_vocabulary_words_are_never_cleaned(smoke_seg, ade_images):
    class Spy:
        name = "spy"

        def segment(self, image, plan):
            self.classes = plan.classes
            return Instances.empty((image.image.height, image.image.width), "spy")

    cfg = dataclasses.replace(smoke_seg.config, tagger="vocabulary",
                              vocabulary=["animal", "dog", "car", "automobile", "Dog"])
    s = SelfSeg(cfg)
    s._segmenter = Spy()
    seg = s.segment(ade_images[0])
    assert s._segmenter.classes == ["animal", "dog", "car", "automobile"]  # as given, "Dog" folded into "dog"
    assert seg.merges == [] and seg.original_size == load_image(ade_images[0]).size
    # given mode ignores tags passed in; a plain list is refused with a clear message
    cfg = dataclasses.replace(smoke_seg.config, vocabulary=["quokka"],
                              segment=dataclasses.replace(smoke_seg.config.segment, vocabulary="given"))
    s = SelfSeg(cfg)
    s._segmenter = Spy()
    s.segment(ade_images[0], tags=smoke_seg.tag(ade_images[0]))
    assert s._segmenter.classes == ["quokka"]
    with pytest.raises(TypeError, match="expected a TagResult"):
        s.segment(ade_images[0], tags=["dog"])


def test_square_and_thin_photos_through_the_smoke_config(repo, tmp_path):
    for size in ((300, 300), (2000, 40)):
        p = tmp_path / f"{size[0]}x{size[1]}.jpg"
        Image.effect_noise(size, 60).convert("RGB").save(p)
    assert main(["segment", str(tmp_path), "--config", str(repo / "configs" / "smoke.yaml"), "--out",
                 str(tmp_path / "out"), "captioning.cycles=1", "-q"]) == 0


def test_masks_of_the_wrong_shape_are_refused():
    from selfseg.segment.result import Segmentation

    with pytest.raises(ValueError, match="expected masks of shape"):
        Segmentation((2, 3), np.zeros((1, 3, 2), bool), [[0, 0, 1, 1]], [1], [1], ["a"], ["a"], "t")


def test_clipseg_components_are_capped_largest_first():
    from selfseg.segment.clipseg import dense_to_instances

    probs = np.zeros((2, 10, 10), np.float32)
    probs[0, :5, :5] = 0.9       # 25 px
    probs[0, 8:, 8:] = 0.9       # 4 px
    probs[1, 6:8, :3] = 0.8      # 6 px
    masks, boxes, scores, cls = dense_to_instances(probs, 0.5, min_area=1, max_instances=2)
    assert cls.tolist() == [0, 1] and [int(m.sum()) for m in masks] == [25, 6]
    assert boxes[1].tolist() == [0, 6, 3, 8] and scores[0] == pytest.approx(0.9)


def test_sam2_decodes_boxes_per_call_at_a_time_with_the_same_masks(repo, ade_images):
    """boxes_per_call bounds the decoder's batch (memory); the image is still encoded once and the masks
    do not change (tiny random models: the masks are meaningless, their equality is the point)."""
    import math

    results = {}
    for per_call in (0, 3):
        s = SelfSeg.from_config(repo / "configs" / "smoke.yaml",
                                ["segment.vocabulary=given", "vocabulary=[dog, grass, sky, tree, car]",
                                 f"segment.grounded_sam2.boxes_per_call={per_call}"])
        sam = s.segmenter.masker.sam
        seg = s.segment(ade_images[0])
        n = len(seg.boxes)
        assert n > 3, seg.notes  # threshold 0 in smoke.yaml: a random detector keeps its boxes
        assert sam.encoder_calls == 1
        assert sam.decoder_calls == (1 if per_call == 0 else math.ceil(n / per_call))
        results[per_call] = seg
    a, b = results[0], results[3]
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_allclose(a.mask_scores, b.mask_scores, rtol=1e-5, atol=1e-6)
    assert (a.masks != b.masks).mean() < 1e-3


def test_boxes_per_call_must_not_be_negative(repo):
    with pytest.raises(ConfigError, match="boxes_per_call"):
        SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["segment.grounded_sam2.boxes_per_call=-1"])


def test_instances_from_best_equal_those_from_all_maps():
    from selfseg.segment.clipseg import best_to_instances, dense_to_instances

    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(6, 40, 50)).astype(np.float32)
    probs[2, 5:20, 5:30] = 0.99           # a solid region of class 2
    probs[4, 25:35, 10:45] = 0.97          # and of class 4
    a = dense_to_instances(probs, 0.6, min_area=3, max_instances=20)
    b = best_to_instances(probs.argmax(0), probs.max(0), 0.6, min_area=3, max_instances=20)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert {2, 4} <= set(a[3].tolist())


def _components_over_the_whole_frame(best, conf, threshold, min_area, max_instances):
    """The plain way: every winning class labelled over the whole frame, every component listed, the largest
    kept (equal areas: class order, then component order)."""
    from scipy import ndimage

    above = conf >= threshold
    found = []
    for c in np.unique(best[above]):
        lab, n = ndimage.label((best == c) & above, structure=np.ones((3, 3)))
        for i in range(1, n + 1):
            if (lab == i).sum() >= min_area:
                found.append((int((lab == i).sum()), int(c), lab == i))
    found.sort(key=lambda f: -f[0])
    return found[:max_instances]


# the cut at max_instances falls between two components of equal area, except where it keeps them all
@pytest.mark.parametrize("seed, min_area, max_instances", [(0, 1, 12), (1, 1, 500), (2, 4, 25), (3, 2, 8)])
def test_instances_from_each_class_box_equal_those_from_the_whole_frame(seed, min_area, max_instances):
    """best_to_instances labels each class inside its own bounding box and lists only the components that
    can make the cut: the same masks, boxes, scores and classes, in the same order (equal areas included, at
    the cut too), as labelling every class over the whole frame."""
    from scipy import ndimage

    from selfseg.segment.clipseg import best_to_instances

    rng = np.random.default_rng(seed)
    # blobs of 9 classes, some confined to a corner, over a noisy confidence map
    smooth = ndimage.gaussian_filter(rng.normal(size=(9, 60, 80)), (0, 3, 3))
    smooth[7, :, 30:] = smooth[8, 35:, :] = -9.0
    best = smooth.argmax(0)
    conf = rng.uniform(size=best.shape).astype(np.float32)
    masks, boxes, scores, cls = best_to_instances(best, conf, 0.3, min_area, max_instances)
    every = _components_over_the_whole_frame(best, conf, 0.3, min_area, 10**6)
    ref = every[:max_instances]
    assert len(ref) == len(masks) > 2
    assert len(every) <= max_instances or every[max_instances - 1][0] == every[max_instances][0]
    for k, (area, c, m) in enumerate(ref):
        ys, xs = np.nonzero(m)
        assert np.array_equal(masks[k], m) and cls[k] == c and int(masks[k].sum()) == area
        assert boxes[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert scores[k] == float(conf[m].mean())


def test_the_cut_among_hundreds_of_equal_components_keeps_the_whole_frames_order():
    """400 one-pixel components of one class around one large one: the cut at 37 falls among equal areas,
    where only a stable choice (the earlier component first) gives the whole frame's order; short sorts are
    stable by accident, hundreds of ties are not. Negative indices are refused."""
    from selfseg.segment.clipseg import best_to_instances

    best = np.zeros((60, 60), np.int64)
    best[1::3, 1::3] = 1
    conf = np.ones(best.shape, np.float32)
    masks, _, _, cls = best_to_instances(best, conf, 0.5, 1, 37)
    ref = _components_over_the_whole_frame(best, conf, 0.5, 1, 10**6)[:37]
    assert len(masks) == 37 and cls.tolist() == [c for _, c, _ in ref]
    assert all(np.array_equal(m, r) for m, (_, _, r) in zip(masks, ref))
    with pytest.raises(ValueError, match="expected class indices >= 0"):
        best_to_instances(best - 1, conf, 0.5)


def test_the_last_class_of_a_narrow_index_type_is_found():
    from selfseg.segment.clipseg import best_to_instances

    best = np.full((4, 5), 255, np.uint8)
    best[0, 0] = 3
    masks, _, _, cls = best_to_instances(best, np.ones((4, 5), np.float32), 0.5)
    assert cls.tolist() == [255, 3] and masks[0].sum() == 19


@pytest.mark.parametrize("segmenter", ["grounded_sam2", "clipseg", "bcc_clusters"])
def test_reduced_precision_runs_end_to_end(repo, ade_images, segmenter):
    """model.dtype=bfloat16 (the GPU setting) through tagging and segmenting, here on the CPU: every model
    really holds bfloat16 weights and the numpy stages get float32 they can use (tiny random models)."""
    import torch

    s = SelfSeg.from_config(repo / "configs" / "smoke.yaml",
                            ["model.dtype=bfloat16", f"segment.segmenter={segmenter}", "captioning.cycles=1"])
    seg = s.segment(ade_images[0])
    h, w = load_image(ade_images[0]).image.size[::-1]
    assert seg.semantic.shape == (h, w) and set(seg.labels) <= set(seg.classes) and seg.tags.tags
    assert next(s.tagger.blip.model.parameters()).dtype == torch.bfloat16
    if segmenter == "grounded_sam2":
        assert next(s.segmenter.locator.detector.model.parameters()).dtype == torch.bfloat16
        assert next(s.segmenter.masker.sam.model.parameters()).dtype == torch.bfloat16
        assert seg.masks.dtype == bool and np.isfinite(seg.mask_scores).all()
    if segmenter == "clipseg":
        assert next(s.segmenter.model.model.parameters()).dtype == torch.bfloat16


def test_a_segmenter_that_returns_no_instances_stops_the_run_once(smoke_seg, ade_images):
    from selfseg.errors import SelfSegError

    class Old:
        name = "old"

        def segment(self, image, plan):
            return {"masks": []}

    s = SelfSeg(dataclasses.replace(smoke_seg.config, tagger="vocabulary", vocabulary=["dog"]))
    s._segmenter = Old()
    with pytest.raises(SelfSegError, match="segmenter 'old': expected Instances from segment"):
        list(s.segment_many(ade_images[:2]))


def test_an_overlay_of_a_photo_opened_as_stored_is_drawn_upright_and_another_photo_is_refused(smoke_seg, tmp_path):
    """`result.save(out, image=Image.open(path))` with a photo whose EXIF turns it: the stored pixels were
    stretched under the upright masks. Now they are turned first; a photo of another shape is an error."""
    from selfseg.viz import draw_segmentation

    pixels = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 80, 3), dtype=np.uint8))
    exif = pixels.getexif()
    exif[0x0112] = 6  # stored 80 wide, shown 40 wide
    pixels.save(tmp_path / "turned.png", exif=exif)
    result = smoke_seg.segment(str(tmp_path / "turned.png"))
    assert result.image_size == (80, 40)
    upright = np.asarray(load_image(tmp_path / "turned.png").image)
    drawn = draw_segmentation(Image.open(tmp_path / "turned.png"), result, alpha=0.0)
    assert drawn.size == (40, 80)
    same = (np.asarray(drawn) == upright).all(axis=-1)  # alpha 0: the photo itself, but for the label texts
    assert same.mean() > 0.5  # stretched stored pixels match almost nowhere
    with pytest.raises(ValueError, match="the image is 200x40 px but the result is 40x80"):
        draw_segmentation(pixels.resize((200, 40)), result)
    # The tag overlay too: its cluster map is upright, and it was drawn over the stored pixels.
    from selfseg.viz import overlay

    tags = smoke_seg.tag(str(tmp_path / "turned.png"))
    assert overlay(Image.open(tmp_path / "turned.png"), tags).size == (40, 80)
    # alpha 0: the photo but for the cluster names, which cover much of so small a photo; noise matches nowhere
    assert (np.asarray(overlay(Image.open(tmp_path / "turned.png"), tags, alpha=0.0)) == upright).all(-1).mean() > 0.2
    with pytest.raises(ValueError, match="the image is 200x40 px but the result is 40x80"):
        overlay(pixels.resize((200, 40)), tags)


def test_write_outputs_takes_what_segment_many_and_tag_many_yield(smoke_seg, ade_images, tmp_path):
    """`write_outputs` is how the CLI writes either kind of item; a Segmentation item failed inside the tag
    overlay (it has no cluster grid)."""
    from selfseg.pipeline import write_outputs

    (seg_item,) = smoke_seg.segment_many([ade_images[0]])
    files = write_outputs(seg_item, tmp_path / "seg", "photo")
    assert [f.name for f in files] == ["photo.json", "photo_labels.png", "photo_overlay.png"]
    assert all(f.is_file() for f in files)
    assert Segmentation.from_json(files[0]).labels == seg_item.result.labels
    (tag_item,) = smoke_seg.tag_many([ade_images[0]])
    assert [f.name for f in write_outputs(tag_item, tmp_path / "tag", "photo")] == ["photo.json", "photo.png"]


@pytest.mark.parametrize("segmenter", ["grounded_sam2", "clipseg"])
def test_a_batch_of_images_goes_through_the_image_encoder_once_and_each_equals_its_image_alone(
        smoke_seg, ade_images, segmenter):
    """segment_many over three photos in one batch: SAM 2's image encoder (grounded_sam2) or CLIPSeg's vision
    tower runs ONE call for the three, and each photo's masks, labels and scores are those of `segment` on
    it alone (tiny random-init models, made to depend on their input: the outputs are noise, the equality
    is what is checked). The fixed vocabulary's text is encoded once."""
    segment = dataclasses.replace(smoke_seg.config.segment, vocabulary="given", segmenter=segmenter,
                                  grounded_sam2=dataclasses.replace(smoke_seg.config.segment.grounded_sam2,
                                                                    images_per_call=3))  # a CPU's default is 1
    cfg = dataclasses.replace(smoke_seg.config, vocabulary=["wall", "floor", "sky", "tree"], segment=segment)
    s = SelfSeg(cfg)
    model = s.segmenter.masker.sam if segmenter == "grounded_sam2" else s.segmenter.model
    before = model.encoder_calls if segmenter == "grounded_sam2" else model.forward_calls
    items = list(s.segment_many(ade_images, batch_size=3))
    calls = (model.encoder_calls if segmenter == "grounded_sam2" else model.forward_calls) - before
    assert [i.ok for i in items] == [True] * 3 and calls == 1
    alone = [SelfSeg(cfg).segment(p) for p in ade_images]
    for item, ref in zip(items, alone):
        got = item.result
        assert len(got.labels) > 0 and got.labels == ref.labels and got.masks.shape == ref.masks.shape
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)
        np.testing.assert_allclose(got.mask_scores, ref.mask_scores, atol=1e-5)
        assert (got.masks != ref.masks).mean() < 1e-3
    if segmenter == "clipseg":
        assert model.text_calls == 1  # the given vocabulary, once for the batch
    # not vacuous: the three photos' results differ in more than their size
    assert len({tuple(np.round(i.result.scores, 4)) for i in items}) == 3


def test_a_segmenter_that_returns_too_few_results_stops_the_run(smoke_seg, ade_images):
    """A wrong segmenter, not a bad image: one SelfSegError, not a failed line for every image."""
    from selfseg.errors import SelfSegError

    class Short:
        name = "short"

        def segment(self, image, plan):
            raise AssertionError("segment_batch is there: segment is not called")

        def segment_batch(self, images, plans):
            return []

    cfg = dataclasses.replace(smoke_seg.config, vocabulary=["wall"],
                              segment=dataclasses.replace(smoke_seg.config.segment, vocabulary="given"))
    s = SelfSeg(cfg)
    s._segmenter = Short()
    with pytest.raises(SelfSegError, match="segmenter 'short' returned 0 results for 2 images"):
        list(s.segment_many(ade_images[:2], batch_size=2))
