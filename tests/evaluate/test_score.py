"""Open-vocabulary scoring through the label-mapper protocol alone: a mapper's levels give the Lexical
Alignment Curve, its relations the ground-truth-aware variant, whatever the mapper is called; hand-computed
on a one-image folder dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from selfseg.errors import ConfigError, DatasetError
from selfseg.evaluate.datasets import load_dataset
from selfseg.evaluate.mappers import LabelMapper, build_mapper
from selfseg.evaluate.mappers.base import LabelMatch, MapperWithoutLevels, check_level
from selfseg.evaluate.score import score_open_vocabulary

CLASSES = ["sky", "grass", "cow"]
# Ground truth sky grass grass cow; the prediction names its four regions:
NAMES = ["sky", "lawn", "field", "calf"]
STRICT = {"sky": 0}
LOOSE = {"sky": 0, "lawn": 1, "calf": 2}  # "field" maps to nothing, but relates to sky and grass
RELATED = {"strict": {"sky": {0}}, "loose": {"sky": {0}, "lawn": {1}, "calf": {2}, "field": {0, 1}}}


def _matches(descriptions, table):
    return [LabelMatch(d, d, CLASSES[table[d]] if d in table else None, table.get(d)) for d in descriptions]


class TwoLevels:
    """A mapper unknown to the registry, with levels of its own."""

    name = "two-levels"
    levels = ("strict", "loose")
    relates = True

    def __init__(self, level: str = "loose") -> None:
        self.level = level

    def map(self, descriptions, level=None):
        return _matches(descriptions, LOOSE if check_level(self, level) == "loose" else STRICT)

    def related(self, noun, level=None):
        return RELATED[check_level(self, level)].get(noun, set())


class OneWay(MapperWithoutLevels):
    name = "one-way"

    def map(self, descriptions, level=None):
        check_level(self, level)
        return _matches(descriptions, LOOSE)


@pytest.fixture
def scored(tmp_path) -> tuple:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    Image.fromarray(np.zeros((1, 4, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.array([[0, 1, 1, 2]], np.uint8)).save(root / "masks" / "a.png")
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray(np.array([[1, 2, 3, 4]], np.uint8)).save(pred / "a_labels.png")
    (pred / "a.json").write_text(json.dumps({"image_size": [1, 4], "instances": [], "classes": NAMES,
                                             "segmenter": "stub"}))
    ds = load_dataset("folder", root)
    return ds, pred


def score(scored, mapper, **kw):
    ds, pred = scored
    return score_open_vocabulary(ds, ds.samples, pred, mapper, **kw)


def test_stub_mappers_follow_the_protocol():
    assert isinstance(TwoLevels(), LabelMapper) and isinstance(OneWay(), LabelMapper)


@pytest.mark.parametrize("gt_aware, curve", [
    # strict: sky only -> sky 1, grass 0, cow 0. loose: sky, lawn, calf -> 1, 1/2, 1. Ground-truth aware at
    # loose, "field" relates to the grass under it -> grass 1.
    (False, [1 / 3, 5 / 6]),
    (True, [1 / 3, 1.0]),
])
def test_levels_and_relations_come_from_the_protocol(scored, gt_aware, curve):
    r = score(scored, TwoLevels(), levels=TwoLevels.levels, gt_aware=gt_aware)
    la = r.lexical_alignment
    assert la["levels"] == ["strict", "loose"] and la["mIoU"] == pytest.approx(curve)
    assert la["area"] == pytest.approx(sum(curve) / 2) and la["gt_aware"] is gt_aware
    assert r.semseg.miou == pytest.approx(curve[1])  # the mapper's own level
    assert r.mapping == {"sky": "sky", "lawn": "grass", "field": None, "calf": "cow"}
    assert r.cmiou == pytest.approx((1 + 1 / 2 + 1) / 3) and r.cmiou_segments == 3  # unmapped regions
    assert (r.tags.precision, r.tags.recall) == (1.0, 1.0)


def test_own_level_is_scored_and_added_to_the_levels_asked_for(scored):
    strict = TwoLevels("strict")
    r = score(scored, strict)
    assert r.lexical_alignment is None and r.semseg.miou == pytest.approx(1 / 3)
    assert (r.tags.precision, r.tags.recall) == (1.0, pytest.approx(1 / 3))
    r = score(scored, strict, levels=["loose"])
    assert r.lexical_alignment["levels"] == ["loose", "strict"] and r.semseg.miou == pytest.approx(1 / 3)


def test_a_mapper_without_levels_scores_at_its_one_way(scored):
    r = score(scored, OneWay())
    assert r.lexical_alignment is None and r.semseg.miou == pytest.approx(5 / 6)
    assert r.to_dict()["mIoU"] == score(scored, TwoLevels()).to_dict()["mIoU"]
    with pytest.raises(ConfigError, match="the one-way label mapper has no levels"):
        score(scored, OneWay(), levels=["loose"])


def test_ground_truth_aware_scoring_with_a_mapper_without_relations_is_one_clear_error(scored, tmp_path):
    llm = build_mapper("llm", "voc", cache=tmp_path / "c.json")  # refused before any LLM is needed
    for mapper in (OneWay(), llm):
        with pytest.raises(ConfigError, match=f"gt_aware: .* the {mapper.name} mapper does not") as err:
            score(scored, mapper, gt_aware=True)
        assert "\n" not in str(err.value)


def test_a_failed_image_scores_nothing_in_cmiou_too(scored):
    """A prediction that failed is no segment at all: each ground-truth segment scores 0, where an
    all-unlabelled map read as one whole-image segment would give each its share of the image (0.25, 0.5,
    0.25 here: cmIoU 1/3 for a crash)."""
    ds, pred = scored
    assert score(scored, OneWay()).cmiou == pytest.approx(5 / 6)  # grass is split in two: 0.5
    (pred / "a.json").write_text("{cut short")
    report = score(scored, OneWay())
    assert [f.split(":")[0] for f in report.failed] == ["a"]
    assert report.cmiou == 0.0 and report.cmiou_segments == 3 and report.semseg.miou == 0.0


def test_ground_truth_not_of_its_images_size_is_the_datasets_error_not_a_failed_prediction(scored):
    """A label map at its image's size against smaller annotations: refused naming both files' sizes, since
    listing it as a failed prediction would score the dataset's fault as the model's (mIoU 0). A map of another
    size than its image (a stale or foreign prediction) is the prediction's failure."""
    ds, pred = scored
    Image.fromarray(np.array([[1, 2]], np.uint8)).save(pred / "a_labels.png")  # not the image's 1x4
    report = score(scored, OneWay())
    assert report.failed == ["a: label map (2, 1) (W, H) does not match the ground truth (4, 1)"]
    Image.fromarray(np.array([[1, 2, 3, 4]], np.uint8)).save(pred / "a_labels.png")  # the image's size again
    Image.fromarray(np.array([[0, 1]], np.uint8)).save(ds.samples[0].label)  # annotations halved
    with pytest.raises(DatasetError, match=r"masks/a.png: ground truth 2x1 \(W x H\) does not match its image "
                                           r".*images/a.png \(4x1\)"):
        score(scored, OneWay())


def test_the_size_check_leaves_an_image_too_large_to_open_to_the_run_and_checks_a_failed_images_truth(
        scored, monkeypatch):
    """An image PIL refuses as too many pixels is the run's failure to report, not a traceback from the
    check; a failed image's ground truth must still be its image's size."""
    from PIL import Image as PILImage

    ds, pred = scored
    gt = ds.read_label(ds.samples[0])
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1)  # makes the 1x4 image a decompression bomb
    assert ds.check_size(ds.samples[0], gt[:, :2]) is None
    monkeypatch.undo()
    (pred / "a.json").unlink()  # the image failed
    assert score(scored, OneWay()).failed == ["a: no prediction"]
    Image.fromarray(np.array([[0, 1]], np.uint8)).save(ds.samples[0].label)
    with pytest.raises(DatasetError, match="does not match its image"):
        score(scored, OneWay())
