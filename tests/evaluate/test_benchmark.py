"""`selfseg benchmark` end to end with the tiny random-init models (scores are meaningless; these tests check
the run: files, resume after a killed run, sharding over 2 torchrun processes, failures, config guard)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfseg.config import load_config
from selfseg.errors import ConfigError, SelfSegError
from selfseg.evaluate.benchmark import run_benchmark

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SCORES = ("mIoU", "mAcc", "pixel_accuracy", "cmIoU", "cmIoU_segments", "per_class", "tags", "mapping",
          "lexical_alignment", "failed", "images", "panoptic", "instance")
TASKS = "evaluation.tasks=[semantic,panoptic,instance]"


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    """A Pascal VOC 2012 tree in its real layout: 5 real photos (ADE samples, some mirrored), palette
    ground truth with background, two classes and the 255 boundary."""
    root = tmp_path_factory.mktemp("voc") / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    photos = sorted((REPO / "examples" / "ade20k_sample" / "images").glob("*.jpg"))
    ids = []
    for k in range(5):
        im = Image.open(photos[k % len(photos)]).convert("RGB")
        if k >= len(photos):
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        sid = f"2007_00{k:04d}"
        im.save(root / "JPEGImages" / f"{sid}.jpg")
        w, h = im.size
        gt = np.zeros((h, w), np.uint8)
        gt[h // 3 :, : w // 2] = 15  # person
        gt[: h // 4, w // 2 :] = 9  # chair
        gt[h // 3, :] = 255  # boundary
        lab = Image.fromarray(gt, mode="P")
        lab.putpalette([0, 0, 0] * 256)
        lab.save(root / "SegmentationClass" / f"{sid}.png")
        ids.append(sid)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory) -> Path:
    """A Cityscapes tree in its real layout for all three tasks: 5 real photos (ADE samples, some mirrored) as
    leftImg8bit, gtFine labelIds and instanceIds with road, sky, two cars, a crowd of cars, a person, void."""
    root = tmp_path_factory.mktemp("cityscapes")
    photos = sorted((REPO / "examples" / "ade20k_sample" / "images").glob("*.jpg"))
    for sub in ("leftImg8bit", "gtFine"):
        (root / sub / "val" / "aachen").mkdir(parents=True)
    for k in range(5):
        im = Image.open(photos[k % len(photos)]).convert("RGB").resize((128, 64))
        if k >= len(photos):
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        stem = f"aachen_{k:06d}_000019"
        im.save(root / "leftImg8bit" / "val" / "aachen" / f"{stem}_leftImg8bit.png")
        raw = np.full((64, 128), 7, np.int32)  # road
        raw[:16] = 23                          # sky
        raw[20:40, 10:40] = 26001              # two cars
        raw[20:40, 50:90] = 26002
        raw[44:56, :30] = 26                   # a crowd of cars
        raw[30:60, 100:115] = 24000            # a person
        raw[60:, 120:] = 1                     # ego vehicle: void
        gt = root / "gtFine" / "val" / "aachen"
        Image.fromarray(raw.astype(np.uint16)).save(gt / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(np.where(raw >= 1000, raw // 1000, raw).astype(np.uint8)).save(
            gt / f"{stem}_gtFine_labelIds.png")
    return root


def _cs_config(root: Path, *extra: str):
    return _config(root, "evaluation.dataset=cityscapes", TASKS, *extra)


def _finished_run(tmp_path_factory, name: str, config) -> Path:
    """A benchmark run of the 5-image tree to compare other runs with."""
    out = tmp_path_factory.mktemp(name)
    report = run_benchmark(config, out=out, quiet=True)
    assert report is not None and report.images == 5
    return out


@pytest.fixture(scope="module")
def cs_baseline(cs_root, tmp_path_factory) -> Path:
    return _finished_run(tmp_path_factory, "cs_baseline", _cs_config(cs_root))


def _config(root: Path, *extra: str):
    """The smoke benchmark on another tree, scoring the semantic task only (VOC has no panoptic ground truth)."""
    return load_config(REPO / "configs" / "benchmarks" / "smoke.yaml",
                       ["evaluation.dataset=voc", f"evaluation.root={root}", "run.batch_size=2",
                        "evaluation.tasks=[semantic]", *extra])


def _scores(run: Path) -> dict:
    d = json.loads((run / "results.json").read_text())
    return {k: d.get(k) for k in SCORES}


@pytest.fixture(scope="module")
def baseline(voc_root, tmp_path_factory) -> Path:
    return _finished_run(tmp_path_factory, "baseline", _config(voc_root))


def _env() -> dict:
    # One thread per process: two ranks on a 2-core machine must not oversubscribe it.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(root: Path, out: Path) -> list[str]:
    """The benchmark command on the Cityscapes tree, scoring all three tasks."""
    return ["-m", "selfseg", "benchmark", str(REPO / "configs" / "benchmarks" / "smoke.yaml"),
            "evaluation.dataset=cityscapes", f"evaluation.root={root}", "run.batch_size=2", TASKS, "--out", str(out),
            "-q"]


def test_benchmark_writes_predictions_and_results(baseline):
    preds = sorted(p.name for p in (baseline / "predictions").iterdir())
    assert len([p for p in preds if p.endswith("_labels.png")]) == 5
    assert len([p for p in preds if p.endswith(".json")]) == 5
    d = json.loads((baseline / "results.json").read_text())
    assert d["dataset"] == "voc" and d["images"] == 5 and d["failed"] == []
    assert 0 <= d["mIoU"] <= 1 and 0 <= d["cmIoU"] <= 1 and d["cmIoU_segments"] == 15  # 3 gt segments x 5
    assert set(d["per_class"]) >= {"background", "person", "chair"}
    assert d["lexical_alignment"]["levels"] == ["exact", "synonym", "hyponym", "meronym"]
    assert d["images_per_second"] > 0 and d["processes"] == 1 and d["images_run_now"] == 5
    assert d["config"]["evaluation"]["dataset"] == "voc"
    md = (baseline / "results.md").read_text()
    assert "| mIoU (mmseg) |" in md and "meaningless" in md and "## Config" in md


def test_all_three_tasks_are_scored_and_reported(cs_baseline):
    d = json.loads((cs_baseline / "results.json").read_text())
    assert d["dataset"] == "cityscapes" and d["images"] == 5 and d["failed"] == []
    assert set(d["panoptic"]) >= {"PQ", "SQ", "RQ", "pq_things", "pq_stuff", "per_class", "n"}
    assert d["panoptic"]["images"] == 5 and 0 <= d["panoptic"]["PQ"] <= 1
    assert set(d["instance"]["segm"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"} and "bbox" in d["instance"]
    la = d["lexical_alignment"]
    assert len(la["PQ"]) == len(la["AP"]) == len(la["mIoU"]) == 4 and {"PQ_area", "AP_area"} <= set(la)
    md = (cs_baseline / "results.md").read_text()
    assert "## Panoptic" in md and "## Instances (COCOeval)" in md and "| level | mIoU | PQ | mask AP |" in md


def test_coco_benchmark_scores_all_three_tasks_from_its_panoptic_and_instance_files(tmp_path, coco_tree):
    """COCO 2017 in its real layout: semantic ground truth from the panoptic PNGs, PQ against them, mask AP
    against instances_val2017.json, every image found in all three."""
    root = coco_tree(tmp_path / "coco", n_images=3)
    out = tmp_path / "run"
    report = run_benchmark(_config(root, "evaluation.dataset=coco", TASKS), out=out, quiet=True)
    assert report is not None and report.images == 3
    d = json.loads((out / "results.json").read_text())
    assert d["dataset"] == "coco" and d["failed"] == [] and len(d["per_class"]) == 133
    assert d["panoptic"]["images"] == 3 and 0 <= d["panoptic"]["PQ"] <= 1
    assert set(d["instance"]["segm"]) >= {"AP", "AP50", "AP75"} and "bbox" in d["instance"]
    assert d["cmIoU_segments"] == 3 * 5  # sky, grass, person (the crowd too), dog, and a tree or a table


def test_adding_tasks_rescores_without_running_the_models(cs_root, cs_baseline, tmp_path):

    out = tmp_path / "semantic_only"
    shutil.copytree(cs_baseline, out)
    report = run_benchmark(_config(cs_root, "evaluation.dataset=cityscapes"), out=out, quiet=True)
    assert report.extra["images_run_now"] == 0 and report.panoptic is None and report.instance is None
    report = run_benchmark(_cs_config(cs_root), out=out, quiet=True)
    assert report.extra["images_run_now"] == 0 and _scores(out) == _scores(cs_baseline)


def test_a_dataset_without_panoptic_ground_truth_stops_before_predicting(voc_root, tmp_path):
    with pytest.raises(ConfigError, match="the voc dataset has no panoptic or instance ground truth"):
        run_benchmark(_config(voc_root, TASKS), out=tmp_path / "run", quiet=True)
    assert not list((tmp_path / "run" / "predictions").glob("*.json"))


def test_rerun_skips_finished_images_and_gives_the_same_numbers(cs_root, cs_baseline, tmp_path):

    out = tmp_path / "run"
    shutil.copytree(cs_baseline, out)
    # Lose one image's prediction (as a crash between images would): only that image is recomputed, in a
    # batch of its own, and the numbers (all three tasks) are those of the uninterrupted run.
    (out / "predictions" / "aachen_000003_000019_leftImg8bit.json").unlink()
    report = run_benchmark(_cs_config(cs_root), out=out, quiet=True)
    assert report.extra["images_run_now"] == 1 and report.extra["images_resumed"] == 4
    assert _scores(out) == _scores(cs_baseline)
    again = run_benchmark(_cs_config(cs_root), out=out, quiet=True)  # nothing left to run: same numbers
    assert again.extra["images_run_now"] == 0 and _scores(out) == _scores(cs_baseline)


def test_killed_run_resumes_to_the_uninterrupted_numbers(cs_root, cs_baseline, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *_cli(cs_root, out)], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list((out / "predictions").glob("*.json")) if (out / "predictions").is_dir() else []:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up, no atexit: as a lost machine would
    proc.wait()
    done_before = len(list((out / "predictions").glob("*.json")))
    assert done_before >= 1
    r = subprocess.run([sys.executable, *_cli(cs_root, out)], cwd=REPO, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _scores(out) == _scores(cs_baseline)
    # a write the kill cut short leaves only a hidden temporary file, removed by the rerun
    assert not list((out / "predictions").glob(".*.tmp"))
    d = json.loads((out / "results.json").read_text())
    assert d["images_run_now"] + d["images_resumed"] == 5 and d["images_resumed"] >= done_before - 1


def test_two_torchrun_processes_equal_one(cs_root, cs_baseline, tmp_path):
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        *_cli(cs_root, out)], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[:1500] + "\n...\n" + r.stderr[-1500:]  # the ranks' own lines come first
    d = json.loads((out / "results.json").read_text())
    assert d["processes"] == 2
    assert _scores(out) == _scores(cs_baseline)


def test_failed_image_is_scored_as_nothing_listed_and_retried(voc_root, tmp_path):

    root = tmp_path / "VOC2012"
    shutil.copytree(voc_root, root)
    bad = root / "JPEGImages" / "2007_000001.jpg"
    good = bad.read_bytes()
    bad.write_bytes(b"not a jpeg")
    report = run_benchmark(_config(root), out=tmp_path / "run", quiet=True)
    assert len(report.failed) == 1 and report.failed[0].startswith("2007_000001:")
    assert (tmp_path / "run" / "predictions" / "2007_000001.error.txt").is_file()
    assert report.images == 5  # still scored: as predicting nothing, not dropped
    bad.write_bytes(good)
    report = run_benchmark(_config(root), out=tmp_path / "run", quiet=True)
    assert report.failed == [] and not (tmp_path / "run" / "predictions" / "2007_000001.error.txt").exists()


def test_predictions_from_another_config_are_refused(voc_root, baseline, tmp_path):

    out = tmp_path / "copy"
    shutil.copytree(baseline, out)
    with pytest.raises(ConfigError, match="captioning.cycles: 2 then, 3 now"):
        run_benchmark(_config(voc_root, "captioning.cycles=3"), out=out, quiet=True)
    # evaluation-only settings re-score the same predictions without running the models
    report = run_benchmark(_config(voc_root, "evaluation.miou_convention=detectron2",
                                   "evaluation.lexical_level=hyponym"), out=out, quiet=True)
    assert report.extra["images_run_now"] == 0 and report.semseg.convention == "detectron2"


def test_settings_that_cannot_change_a_prediction_keep_the_predictions(voc_root, baseline, tmp_path):
    """The batch size a run ran out of memory with, boxes per call, the device: as for `selfseg segment`."""

    out = tmp_path / "copy"
    shutil.copytree(baseline, out)
    report = run_benchmark(_config(voc_root, "run.batch_size=1", "segment.grounded_sam2.boxes_per_call=1",
                                   "model.device=cpu"), out=out, quiet=True)
    assert report.extra["images_run_now"] == 0 and _scores(out) == _scores(baseline)


def test_a_damaged_or_stale_prediction_is_predicted_again(voc_root, baseline, tmp_path):
    """A cut JSON, a cut label PNG, or a photo replaced since: each such image is run again (the others are
    kept), and the numbers are those of a run that never saw the damage."""

    root, out = tmp_path / "VOC2012", tmp_path / "run"
    shutil.copytree(voc_root, root)
    report = run_benchmark(_config(root), out=out, quiet=True)
    assert report.extra["images_run_now"] == 5 and _scores(out) == _scores(baseline)
    pred = out / "predictions"
    (pred / "2007_000001.json").write_text((pred / "2007_000001.json").read_text()[:50])
    labels = (pred / "2007_000002_labels.png").read_bytes()
    (pred / "2007_000002_labels.png").write_bytes(labels[: len(labels) // 2])
    photo = root / "JPEGImages" / "2007_000003.jpg"
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))
    report = run_benchmark(_config(root), out=out, quiet=True)
    assert report.extra["images_run_now"] == 3 and report.failed == [] and _scores(out) == _scores(baseline)
    # a photo replaced by one that cannot be read: failed and scored as nothing, never as the old photo's
    photo.write_bytes(b"not a jpeg")
    report = run_benchmark(_config(root), out=out, quiet=True)
    assert report.extra["images_run_now"] == 1 and [f.split(":")[0] for f in report.failed] == ["2007_000003"]
    assert not (pred / "2007_000003.json").exists() and (pred / "2007_000003.error.txt").is_file()


def test_predictions_without_the_run_json_that_made_them_are_refused(voc_root, baseline, tmp_path):

    out = tmp_path / "copy"
    shutil.copytree(baseline, out)
    (out / "run.json").write_text(json.dumps({"predictions_from": {"captioning": {"cycles": 2}}}))
    with pytest.raises(ConfigError, match="from an earlier selfseg, which recorded settings otherwise.*--fresh"):
        run_benchmark(_config(voc_root), out=out, quiet=True)
    (out / "run.json").unlink()
    with pytest.raises(ConfigError, match="no run.json saying which config made them; use --fresh"):
        run_benchmark(_config(voc_root, "captioning.cycles=3"), out=out, quiet=True)
    (out / "predictions" / "notes.txt").write_text("mine")  # a file no run writes
    (out / "predictions" / ".2007_000000.json.abcd1234.tmp").write_text("{")  # a write a kill cut short
    run_benchmark(_config(voc_root), out=out, fresh=True, quiet=True)
    assert _scores(out) == _scores(baseline)
    # --fresh discards the run's own files only
    assert (out / "predictions" / "notes.txt").read_text() == "mine"
    assert not list((out / "predictions").glob(".*.tmp"))


def test_llm_mapper_benchmark_caches_replies(voc_root, baseline, tmp_path):

    out = tmp_path / "llm"
    shutil.copytree(baseline, out)
    cfg = _config(voc_root, "evaluation.mapper=llm", "evaluation.llm_model=tiny-random",
                  "evaluation.llm_max_new_tokens=4")
    first = run_benchmark(cfg, out=out, quiet=True)
    assert first.extra["llm_asked"] > 0 and (out / "love_cache.json").is_file()
    assert set(first.mapping.values()) <= {c for c in first.semseg.class_names}
    again = run_benchmark(cfg, out=out, quiet=True)
    assert again.extra["llm_asked"] == 0 and again.mapping == first.mapping
    assert again.lexical_alignment is None


def test_a_mapper_model_that_cannot_be_had_stops_the_run_before_it_predicts(voc_root, tmp_path, monkeypatch):
    """The LLM mapper loads its model when it first maps: its missing checkpoint is found before any image is
    predicted, not after all of them; with replies cached the model may not be needed, so no check then."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "missing"
    with pytest.raises(SelfSegError, match="causal LM checkpoint 'owner/not-cached' is not in the local cache"):
        run_benchmark(_config(voc_root, "evaluation.mapper=llm", "evaluation.llm_model=owner/not-cached"),
                      out=out, quiet=True)
    assert not list((out / "predictions").glob("*.json"))


def test_folder_dataset_with_an_exif_rotated_photo(tmp_path):
    # A phone photo stored sideways with EXIF orientation 6: annotations follow the stored pixels, the
    # models see it upright. The label map must come back in the stored orientation. The folder's own
    # classes.txt is used for the mapping too (no evaluation.classes needed).
    root = tmp_path / "phone"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nperson\n")
    photo = Image.open(sorted((REPO / "examples" / "ade20k_sample" / "images").glob("*.jpg"))[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(root / "images" / "p.jpg", exif=exif.tobytes())
    w, h = photo.size
    Image.fromarray(np.zeros((h, w), np.uint8)).save(root / "masks" / "p.png")
    cfg = load_config(REPO / "configs" / "benchmarks" / "smoke.yaml",
                      ["evaluation.dataset=folder", f"evaluation.root={root}", "evaluation.mapper=lexical",
                       "evaluation.tasks=[semantic]"])
    report = run_benchmark(cfg, out=tmp_path / "run", quiet=True)
    assert report.failed == []
    stored = np.asarray(Image.open(tmp_path / "run" / "predictions" / "p_labels.png"))
    assert stored.shape == (h, w)


def test_union_benchmark_scores_each_tagger_alone(voc_root, tmp_path):
    """union of the user's words and the tiny random-init VLM (its replies are noise, so it finds nothing):
    results.json scores each tagger's own tags; the vocabulary's 'person' is right in every image."""
    cfg = _config(voc_root, "tagger=union", "union=[vocabulary, vlm]", "vocabulary=[person, dog]",
                  "segment.segmenter=clipseg", "evaluation.mapper=lexical", "vlm.max_new_tokens=4",
                  f"evaluation.out={tmp_path / 'run'}")
    run_benchmark(cfg)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    by = res["tags_by_tagger"]
    assert set(by) == {"vocabulary", "vlm"}
    assert by["vocabulary"]["micro_recall"] == 0.5  # person found, chair missed, in all 5 images
    assert by["vlm"]["predicted"] == 0
    pred = json.loads(next((tmp_path / "run" / "predictions").glob("*.json")).read_text())
    assert {n["noun"]: n["found_by"] for n in pred["tags"]["nouns"]} == {"person": ["vocabulary"],
                                                                         "dog": ["vocabulary"]}
    assert "tag precision / recall, vocabulary alone" in (tmp_path / "run" / "results.md").read_text()


def _gpus(monkeypatch, n: int) -> None:
    """A machine with `n` CUDA devices, as far as Dist.init asks; reaching set_device fails the test."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "set_device", lambda *_: pytest.fail("set_device must not be reached"))


def test_more_ranks_than_gpus_is_a_clear_error(monkeypatch):
    """torchrun with 2 ranks on a 1-GPU machine: one line naming the fix, before torch's set_device fails."""
    from selfseg.evaluate.benchmark import Dist

    _gpus(monkeypatch, 1)
    config = load_config(REPO / "configs" / "smoke.yaml", ["model.device=auto"])
    with pytest.raises(ConfigError, match="--nproc-per-node 1"):
        Dist(rank=1, world=2, local_rank=1, active=True).init(config)


def test_one_named_gpu_under_torchrun_is_a_clear_error(monkeypatch):
    """model.device=cuda:0 with 2 ranks would put both ranks' models on GPU 0: refused, naming the fix."""
    from selfseg.evaluate.benchmark import Dist

    _gpus(monkeypatch, 2)
    config = load_config(REPO / "configs" / "smoke.yaml", ["model.device=cuda:0"])
    with pytest.raises(ConfigError, match="each rank takes cuda:<local rank>: use model.device=cuda"):
        Dist(rank=1, world=2, local_rank=1, active=True).init(config)
    Dist().init(config)  # one process: the GPU it names
    assert config.model.device == "cuda:0"


def test_ground_truth_aware_with_a_mapper_without_relations_stops_before_predicting(voc_root, tmp_path):
    cfg = _config(voc_root, "evaluation.mapper=llm", "evaluation.llm_model=tiny-random", "evaluation.gt_aware=true")
    with pytest.raises(ConfigError, match="gt_aware: .* the llm mapper does not") as err:
        run_benchmark(cfg, out=tmp_path / "run", quiet=True)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "run" / "predictions").glob("*.json"))


def test_voc20_benchmark_folds_vocs_mapping_and_scores_20_classes(voc_root, tmp_path):
    """A benchmark of VOC20 on VOC's files: nouns are mapped as VOC maps them, VOC's background becomes none,
    and the scores cover the 20 object classes only."""
    cfg = _config(voc_root, "evaluation.dataset=voc20", "tagger=vocabulary", "vocabulary=[person, van, background]",
                  "segment.segmenter=clipseg", "evaluation.mapper=lexical", f"evaluation.out={tmp_path / 'run'}")
    run_benchmark(cfg)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["dataset"] == "voc20" and res["failed"] == []
    assert len(res["per_class"]) == 20 and "background" not in res["per_class"]
    # VOC's lexicon makes a van a car; VOC20's classes alone would make it a train (WordNet's "van" sense)
    assert res["mapping"] == {"person": "person", "van": "car", "background": None}
    # LOVE asks VOC's question (its class list, background included) and the run still counts what it asked
    llm = run_benchmark(_config(voc_root, "evaluation.dataset=voc20", "tagger=vocabulary",
                                "vocabulary=[person, van, background]", "segment.segmenter=clipseg",
                                "evaluation.mapper=llm", "evaluation.llm_model=tiny-random",
                                "evaluation.llm_max_new_tokens=4", f"evaluation.out={tmp_path / 'run'}"), quiet=True)
    assert llm.extra["llm_asked"] == 1  # "van"; person and background are VOC class names
    cache = json.loads((tmp_path / "run" / "love_cache.json").read_text())
    assert [v["dataset"] for v in cache.values()] == ["Pascal VOC 2012"] and llm.mapping["background"] is None


def test_a_missing_dataset_folder_names_the_setting_that_moves_it(tmp_path):
    """The shipped benchmark configs point at data/ beside the source tree; elsewhere (a wheel install, data
    kept on another disk) the error says which setting to give."""
    from selfseg.errors import DatasetError

    with pytest.raises(DatasetError, match=r"root .*nowhere is not a directory \(set evaluation.root=<the "
                                           r"dataset's folder>\); expected layout"):
        run_benchmark(_config(tmp_path / "nowhere"), out=tmp_path / "run", quiet=True)


@pytest.mark.parametrize("problem", ["classes", "size"])
def test_a_wrong_class_list_or_resized_annotations_stop_before_predicting(voc_root, tmp_path, problem):
    """Found in the first ground truth before any image runs, not after every image has been predicted."""
    if problem == "classes":
        (tmp_path / "few.txt").write_text("background\naeroplane\n")
        extra, match = (f"evaluation.classes={tmp_path / 'few.txt'}",), r"expected class values 0\.\.1"
    else:
        root = tmp_path / "VOC2012"
        shutil.copytree(voc_root, root)
        first = sorted((root / "SegmentationClass").glob("*.png"))[0]
        with Image.open(first) as im:
            im.resize((im.width // 2, im.height // 2), Image.Resampling.NEAREST).save(first)
        voc_root, extra, match = root, (), r"ground truth \d+x\d+ \(W x H\) does not match its image"
    with pytest.raises(ConfigError, match=match):
        run_benchmark(_config(voc_root, *extra), out=tmp_path / "run", quiet=True)
    assert not list((tmp_path / "run" / "predictions").glob("*.json"))
