"""`selfseg label` end to end with the tiny random-init models (the nouns and masks are meaningless; these tests
check the run: every format loads, a bad image is listed and skipped, resume after SIGKILL and 2 torchrun
processes give the same dataset as one uninterrupted process, bad --out / ontology are one-line errors)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from selfseg.cli import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Five real photos (the three ADE20K samples, two of them also mirrored) and one file that is not an image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for k, p in enumerate(sorted((REPO / "examples" / "ade20k_sample" / "images").glob("*.jpg"))):
        shutil.copy(p, folder / p.name)
        if k < 2:
            Image.open(p).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / f"mirrored_{p.name}")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _argv(photos: Path, out: Path, *extra: str) -> list[str]:
    return ["label", str(photos), "--config", SMOKE, "--out", str(out), "-q", "run.batch_size=2", *extra]


@pytest.fixture(scope="module")
def baseline(photos, tmp_path_factory) -> Path:
    """An uninterrupted run, in a process of its own with one thread, as the runs it is compared with (float
    sums, hence scores in the files, can differ in the last bits between thread counts)."""
    out = tmp_path_factory.mktemp("labelled") / "dataset"
    r = subprocess.run([sys.executable, "-m", "selfseg", *_argv(photos, out)], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # one image failed
    return out


def _dataset(out: Path) -> dict[str, bytes]:
    """Every file of the dataset that must not depend on how the run went (data.yaml and the review page name
    the dataset's folder; of the build's list, the files it names, not their times)."""
    files = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and not rel.startswith(("predictions/", "review/", ".build/")) and rel not in ("data.yaml",
                                                                                         "dataset.json", "index.html"):
            files[rel] = p.read_bytes()
    if ".selfseg-build.json" in files:
        files[".selfseg-build.json"] = sorted(json.loads(files[".selfseg-build.json"])["files"])
    return files


def test_the_dataset_loads_everywhere_and_the_bad_image_is_listed(baseline, photos):
    failures = (baseline / "failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith(str(photos / "broken.jpg"))
    records = [json.loads(line) for line in (baseline / "labels.jsonl").read_text().splitlines()]
    assert len(records) == 5 and {r["split"] for r in records} <= {"train", "val"}
    vocabulary = json.loads((baseline / "vocabulary.json").read_text())
    names = [c["name"] for c in vocabulary["classes"]]
    assert names and all(i["class"] == names[i["class_id"]] for r in records for i in r["instances"])
    meta = json.loads((baseline / "dataset.json").read_text())
    assert meta["metadata"]["failed"] == 1 and meta["config"]["formats"] == ["coco", "yolo", "semantic"]
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        cocos = {s: COCO(str(baseline / "annotations" / f"instances_{s}.json")) for s in ("train", "val")}
    assert sum(len(c.getImgIds()) for c in cocos.values()) == 5
    assert [c["name"] for c in cocos["train"].loadCats(cocos["train"].getCatIds())] == names
    n_instances = sum(len(r["instances"]) for r in records)
    assert sum(len(c.getAnnIds()) for c in cocos.values()) == n_instances
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # supervision without OpenCV says so on import
        import supervision as sv

        for split in ("train", "val"):
            if not list((baseline / split / "images").iterdir()):
                continue
            ds = sv.DetectionDataset.from_coco(str(baseline / split / "images"),
                                               str(baseline / "annotations" / f"instances_{split}.json"))
            yolo = sv.DetectionDataset.from_yolo(str(baseline / split / "images"), str(baseline / split / "labels"),
                                                 str(baseline / "data.yaml"))
            assert ds.classes == names and yolo.classes == names and len(ds) == len(yolo)
    from selfseg.evaluate.datasets import load_dataset

    semantic = [load_dataset("folder", baseline, s) for s in ("train", "val") if (baseline / s / "masks").is_dir()]
    assert sum(len(d.samples) for d in semantic) == 5 and semantic[0].class_names == names
    page = (baseline / "index.html").read_text()
    assert "review/data.js" in page


def test_a_killed_run_resumes_to_the_same_dataset(baseline, photos, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "selfseg", *_argv(photos, out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if (out / "predictions").is_dir() and [p for p in (out / "predictions").glob("*.json")
                                               if p.name != "selfseg-run.json"]:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up: as a lost machine would
    proc.wait()
    assert not (out / "dataset.json").exists()
    r = subprocess.run(cmd + ["--resume"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # the broken image still fails
    assert "resuming:" in r.stderr
    assert _dataset(out) == _dataset(baseline)


def test_two_torchrun_processes_make_the_same_dataset(baseline, photos, tmp_path):
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "selfseg", *_argv(photos, out)], cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode != 0  # the broken image: exit 1 from rank 0 (torchrun reports the failure)
    assert (out / "failures.txt").read_text().count("\n") == 1
    assert _dataset(out) == _dataset(baseline)


def test_a_missing_mapper_model_stops_every_rank_with_its_error(photos, tmp_path):
    """Rank 0 finds the mapper's model missing before segmenting: the other ranks stop with it (exit 2) rather
    than wait for it. Two ranks started by hand, as a launcher other than torchrun starts them (torchrun would
    end the waiting rank itself once rank 0 failed)."""
    import socket

    ontology = tmp_path / "ontology.yaml"
    ontology.write_text("animal: [cow, dog]\n")
    out = tmp_path / "dist"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "selfseg", *_argv(photos, out, "--ontology", str(ontology), "label.mapper=llm",
                                                    "evaluation.llm_model=owner/not-cached")]
    env = {**_env(), "HF_HUB_OFFLINE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    ranks = [subprocess.Popen(argv, cwd=REPO, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        ends = [p.communicate(timeout=120) for p in ranks]
    finally:
        for p in ranks:
            p.kill()
    assert [p.returncode for p in ranks] == [2, 2], ends
    assert "causal LM checkpoint 'owner/not-cached' is not in the local cache" in ends[0][1]
    assert not out.exists()


def test_ontology_maps_the_nouns_onto_the_users_classes(photos, tmp_path):
    """The tiny models' nouns are noise; an ontology with "other" keeps every kept noun somewhere."""
    ontology = tmp_path / "ontology.yaml"
    ontology.write_text("animal: [cow, giraffe, dog]\nfurniture: [table, chair]\n")
    out = tmp_path / "onto"
    assert main(_argv(photos, out, "--ontology", str(ontology), "label.unmapped=other", "--format", "coco")) == 1
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    assert [c["name"] for c in vocabulary["classes"]] == ["animal", "furniture", "other"]
    assert not (out / "train" / "labels").exists()  # coco only


def test_the_ontology_mapper_takes_the_configs_model_settings(photos, tmp_path, capsys, monkeypatch):
    """`label.mapper` reads its model from the config (evaluation.llm_model, the model section): a model that
    cannot be had stops the run before any image is segmented, and the tiny LLM named there is the one used."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ontology = tmp_path / "ontology.yaml"
    ontology.write_text("animal: [cow, giraffe, dog]\nfurniture: [table, chair]\n")
    out = tmp_path / "missing"
    assert main(_argv(photos, out, "--ontology", str(ontology), "label.mapper=llm",
                      "evaluation.llm_model=owner/not-cached")) == 2
    assert "causal LM checkpoint 'owner/not-cached' is not in the local cache" in capsys.readouterr().err
    assert not out.exists()  # nothing segmented
    out = tmp_path / "tiny"
    assert main(_argv(photos, out, "--ontology", str(ontology), "label.mapper=llm", "label.unmapped=other",
                      "evaluation.llm_model=tiny-random", "evaluation.llm_max_new_tokens=4",
                      "evaluation.llm_cache=" + str(tmp_path / "love.json"))) == 1  # the broken image
    assert json.loads((tmp_path / "love.json").read_text())  # the tiny LLM was asked about the nouns


@pytest.mark.parametrize("problem", ["out_is_a_file", "bad_ontology", "no_inputs", "no_format"])
def test_bad_arguments_are_one_line_errors_before_any_work(photos, tmp_path, capsys, problem):
    out = tmp_path / "out"
    extra: list[str] = []
    if problem == "out_is_a_file":
        out.write_text("x")
    elif problem == "no_format":  # an empty list, not the default formats
        extra = ["--format", ""]
    elif problem == "bad_ontology":
        (tmp_path / "o.yaml").write_text("- car\n- car\n")
        extra = ["--ontology", str(tmp_path / "o.yaml")]
    if problem == "no_inputs":
        (tmp_path / "empty").mkdir()
    argv = _argv(photos, out, *extra) if problem != "no_inputs" else \
        ["label", str(tmp_path / "empty"), "--config", SMOKE, "--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("selfseg: error: ")
    assert not (out / "predictions").exists()


@pytest.mark.parametrize("case", ["under_a_file", "read_only"])
def test_an_out_that_cannot_be_written_is_named_as_the_user_gave_it(photos, tmp_path, capsys, monkeypatch, case):
    """The predictions go in a folder inside --out: the error names --out as given, and that folder in it."""
    import errno
    import tempfile

    if case == "under_a_file":
        (tmp_path / "afile").write_text("a file, not a folder")
        out = tmp_path / "afile" / "ds"
        why = "Not a directory"
    else:  # as root every folder is writable: the refusal a read-only folder gives, made where it is probed
        out = tmp_path / "ds"
        out.mkdir()
        real = tempfile.NamedTemporaryFile

        def probe(*args, **kwargs):
            if Path(kwargs.get("dir", "")).parent == out:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "NamedTemporaryFile", probe)
        why = "Permission denied"
    capsys.readouterr()
    assert main(_argv(photos, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"selfseg: error: --out {out} (its predictions/ folder): cannot write there ({why})"


def test_when_no_image_can_be_read_the_run_says_so_and_lists_them(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "in" / "b 12:30.png").write_bytes(b"")  # a ':' in a name must not split its line
    code = main(["label", str(tmp_path / "in"), "--config", SMOKE, "--out", str(tmp_path / "out"), "-q"])
    assert code == 2 and "no image could be labelled: 2 failed" in capsys.readouterr().err
    assert len((tmp_path / "out" / "failures.txt").read_text().splitlines()) == 2


def test_a_folder_of_the_users_own_files_is_never_taken_as_the_dataset_folder(photos, tmp_path, capsys):
    """A build clears the dataset's files (train/, val/, ...) first: a folder selfseg did not make is refused."""
    out = tmp_path / "mine"
    (out / "train").mkdir(parents=True)
    (out / "train" / "precious.txt").write_text("keep me")
    assert main(_argv(photos, out)) == 2
    assert "no `selfseg label` run wrote" in capsys.readouterr().err
    assert (out / "train" / "precious.txt").read_text() == "keep me"


def test_a_rebuild_changes_only_the_dataset_and_never_the_users_files(baseline, photos, tmp_path, capsys):
    """Settings of the build alone (the split) reuse every prediction; a file the user put among the dataset's
    stops the rebuild before anything is removed, and the previous dataset stays whole."""
    out = tmp_path / "copy"
    shutil.copytree(baseline, out)
    assert main(_argv(photos, out, "--resume", "label.val_fraction=0.6")) == 1
    assert "resuming: 5 of 6 images" in capsys.readouterr().err  # nothing segmented again (1 broken)
    splits = [json.loads(x)["split"] for x in (out / "labels.jsonl").read_text().splitlines()]
    before = [json.loads(x)["split"] for x in (baseline / "labels.jsonl").read_text().splitlines()]
    assert splits.count("val") >= before.count("val") and not (out / ".build").exists()
    notes = out / "train" / "labels" / "my_notes.md"
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text("keep me")
    dataset = _dataset(out)
    assert main(_argv(photos, out, "--resume")) == 2
    assert "my_notes.md is not a file the previous dataset build wrote" in capsys.readouterr().err
    assert notes.read_text() == "keep me" and _dataset(out) == dataset
    notes.unlink()
    # a file the build wrote, corrected by hand since: the user's work now, kept as it is
    corrected = out / "annotations" / "instances_train.json"
    fixed = corrected.read_text().replace('"iscrowd": 0', '"iscrowd": 0 ', 1)
    corrected.write_text(fixed)
    shutil.rmtree(out / ".build")  # the refused build's, kept: this refusal must come before building again
    predicted = {p: p.stat().st_mtime_ns for p in (out / "predictions").rglob("*.json")}
    for extra in (["--resume"], []):  # a plain rerun would segment every image again first
        assert main(_argv(photos, out, *extra)) == 2
        err = capsys.readouterr().err
        assert "1 file(s) of the previous dataset build changed since it wrote them " \
            "(annotations/instances_train.json)" in err
        assert not (out / ".build").exists()  # refused before any work
        assert {p: p.stat().st_mtime_ns for p in (out / "predictions").rglob("*.json")} == predicted
    assert corrected.read_text() == fixed
    corrected.unlink()
    assert main(_argv(photos, out, "--resume")) == 1 and _dataset(out) == _dataset(baseline)


def test_inputs_inside_the_dataset_folder_are_refused(baseline, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(baseline, out)
    assert main(["label", str(out / "train" / "images"), "--config", SMOKE, "--out", str(out), "-q"]) == 2
    assert "lies inside --out" in capsys.readouterr().err
    assert (out / "train" / "images").is_dir() and any((out / "train" / "images").iterdir())


def test_a_run_after_one_that_labelled_nothing_replaces_its_failures(photos, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"not a jpeg")
    assert main(["label", str(tmp_path / "bad"), "--config", SMOKE, "--out", str(out), "-q"]) == 2
    assert "a.jpg" in (out / "failures.txt").read_text()
    assert main(_argv(photos, out, "--resume")) == 1
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == 1 and "broken.jpg" in failures[0]


def test_one_photo_labelled_from_python_with_a_config_path(photos, tmp_path):
    """label_images takes a config's path and a single input as given (not the characters of its path), and
    a one-photo run keeps the classes its photo shows (min_images never asks for more images than there are)."""
    from selfseg.label.run import label_images

    photo = str(photos / "ADE_val_00000001.jpg")
    summary = label_images(SMOKE, photo, tmp_path / "one", quiet=True)
    assert summary.images == summary.labelled == 1 and summary.classes
    assert [p.name for p in (tmp_path / "one").glob("*/images/*")] == ["ADE_val_00000001.jpg"]


def test_an_image_that_fails_while_the_dataset_is_built_is_listed_and_the_rest_built(baseline, photos, tmp_path,
                                                                                       capsys):
    """A prediction whose masks do not fit its photo (here: its recorded size altered) stops only that image:
    it goes to failures.txt, the others are exported, and the exit code says something failed."""
    out = tmp_path / "copy"
    shutil.copytree(baseline, out)
    victim = out / "predictions" / "ADE_val_00000002.json"
    d = json.loads(victim.read_text())
    d["image_size"] = [d["image_size"][0] + 1, d["image_size"][1]]
    victim.write_text(json.dumps(d))
    assert main(_argv(photos, out, "--resume")) == 1
    failures = (out / "failures.txt").read_text().splitlines()
    assert any("ADE_val_00000002.jpg: " in line and "expected masks of shape" in line
               for line in failures)
    files = [json.loads(x)["file"] for x in (out / "labels.jsonl").read_text().splitlines()]
    assert "ADE_val_00000002.jpg" not in {Path(f).name for f in files}
    assert len(files) == 4  # 6 inputs: 1 unreadable, 1 failed in the build
    assert json.loads((out / "dataset.json").read_text())["metadata"]["failed"] == 2


@pytest.mark.parametrize("images", ["copy", "reference"])
def test_a_photo_whose_name_is_not_utf8_is_labelled_and_named_as_text(photos, tmp_path, images):
    """Annotations are text: the dataset's copy is named with the odd bytes as "_" and a digest, and a path
    kept in a JSON file reads back as the very path."""
    from pycocotools.coco import COCO

    from selfseg.label.run import label_images

    folder = tmp_path / "in"
    folder.mkdir()
    odd = folder / os.fsdecode(b"caf\xe9.jpg")
    shutil.copy(photos / "ADE_val_00000001.jpg", odd)
    shutil.copy(photos / "mirrored_ADE_val_00000001.jpg", folder / "ok.jpg")
    out = tmp_path / "ds"
    from selfseg.config import load_config

    overrides = [f"label.images={images}", "label.min_images=1"] + (
        ["label.formats=[coco]"] if images == "reference" else [])
    summary = label_images(load_config(SMOKE, overrides), [str(folder)], out, quiet=True)
    assert summary.labelled == 2 and not summary.failed
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["source"] for r in records} == {str(odd), str(folder / "ok.jpg")}
    names = {i["file_name"] for f in (out / "annotations").glob("*.json") for i in COCO(str(f)).imgs.values()}
    if images == "copy":
        odd_name = next(n for n in names if n != "ok.jpg")
        assert odd_name.startswith("caf_-") and odd_name.endswith(".jpg") and odd_name.isascii()
        assert any((out / split / "images" / odd_name).is_file() for split in ("train", "val"))
    else:
        assert names == {str(odd), str(folder / "ok.jpg")}


def test_two_photos_that_share_no_noun_say_which_setting_keeps_them(tmp_path, capsys):
    """Two different photos rarely share a noun, and label.min_images is 2: the error named only "the label
    section's filters". With the setting it names, the dataset is built; with no photo in val, data.yaml's val
    is the train images (trainers refuse a val folder that is not there)."""
    import yaml

    photos = [str(p) for p in sorted((REPO / "examples" / "images").glob("*.jpg"))]
    args = ["label", *photos, "--config", SMOKE, "--out", str(tmp_path / "d"), "-q"]
    assert main(args) == 2
    assert "were seen in fewer than label.min_images=2 images: `--set label.min_images=1` keeps them" in \
        capsys.readouterr().err
    assert main([*args, "--resume", "--set", "label.min_images=1", "--val-fraction", "0"]) == 0
    data = yaml.safe_load((tmp_path / "d" / "data.yaml").read_text())
    assert data["val"] == "train/images" and not (tmp_path / "d" / "val").exists()
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["splits"]["val"]["images"] == 0


def test_only_files_whose_content_changed_count_as_edited(tmp_path):
    """The build list's stamps: a file only touched, or a dataset copied without its times, is the build's
    still; a same-size edit is the user's; photos are copies of the inputs, made again, never checked."""
    import os

    from selfseg.errors import ConfigError
    from selfseg.label.run import _move_into_place, _refuse_edited

    out, stage = tmp_path / "ds", tmp_path / "ds" / ".build"
    files = {"annotations/instances_train.json": b'{"a": 1}', "train/labels/x.txt": b"0 0.1 0.2 0.3",
             "train/images/x.jpg": b"jpeg", "failures.txt": b"", "classes.txt": b"cat"}
    for rel, data in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes(data)
    _move_into_place(stage, out)
    _refuse_edited(out)
    for rel in files:  # touched: new times, same bytes
        os.utime(out / rel, ns=(1, 1))
    (out / "train/images/x.jpg").write_bytes(b"JPEG!")  # the photo's source was edited, and it a hard link
    (out / "failures.txt").write_text("x.jpg: unreadable")
    _refuse_edited(out)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, copy_function=shutil.copyfile)  # a copy that keeps no times
    _refuse_edited(moved)
    (moved / "annotations/instances_train.json").write_bytes(b'{"a": 2}')  # same size, other bytes
    (moved / "classes.txt").write_bytes(b"dog cat")
    with pytest.raises(ConfigError, match=r"^2 file\(s\) .* \(annotations/instances_train.json, classes.txt\)"):
        _refuse_edited(moved)


@pytest.mark.parametrize("case", ["file_now_a_folder", "folder_now_a_file", "folder_not_writable"])
def test_what_stops_the_move_stops_it_before_anything_goes(tmp_path, monkeypatch, case):
    """The new build has no val/ (every name in train): the previous build's val/labels/x.txt must go, and
    something stands in its way; the previous dataset stays whole, with one line."""
    import os

    import selfseg.label.run as run
    from selfseg.errors import ConfigError
    from selfseg.label.run import BUILD_LIST, _move_into_place

    out, stage = tmp_path / "ds", tmp_path / "ds" / ".build"
    for rel in ("annotations/a.json", "classes.txt", "val/labels/x.txt"):
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(rel)
    _move_into_place(stage, out)
    if case == "file_now_a_folder":
        (out / "val/labels/x.txt").unlink()
        (out / "val/labels/x.txt").mkdir()  # someone's folder where the build had a file
        pattern = "x.txt is not a file the previous dataset build wrote"
    elif case == "folder_now_a_file":
        shutil.rmtree(out / "val/labels")
        (out / "val/labels").write_text("someone's file where the build had a folder")
        pattern = "labels is not a file the previous dataset build wrote"
    else:  # as root every folder is writable: the permission is what os.access says
        locked = out / "val/labels"
        real = os.access
        monkeypatch.setattr(run.os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
        pattern = "cannot remove the previous dataset build's files in .*labels"
    (stage / "classes.txt").parent.mkdir(parents=True)
    (stage / "classes.txt").write_text("new")
    with pytest.raises(ConfigError, match=pattern):
        _move_into_place(stage, out)
    assert (out / "annotations/a.json").read_text() == "annotations/a.json"  # the previous dataset whole
    assert (out / "classes.txt").read_text() == "classes.txt"
    assert sorted(json.loads((out / BUILD_LIST).read_text())["files"]) == [
        "annotations/a.json", "classes.txt", "val/labels/x.txt"]


def test_scores_selfseg_evaluate_wrote_among_the_dataset_stay_through_a_rebuild(tmp_path, capsys):
    """`selfseg evaluate --predictions DIR/train/masks` writes its scores there by default: a rebuild leaves
    that file where it is, while a file of the user's there still stops it."""
    from selfseg.errors import ConfigError
    from selfseg.label.run import _move_into_place

    out, stage = tmp_path / "ds", tmp_path / "ds" / ".build"

    def build(label: int) -> None:
        from PIL import Image

        for folder in ("train/images", "train/masks"):
            (stage / folder).mkdir(parents=True, exist_ok=True)
        (stage / "classes.txt").write_text("cat\ndog\n")
        Image.new("RGB", (2, 2)).save(stage / "train/images/a.png")
        Image.new("L", (2, 2), label).save(stage / "train/masks/a.png")
        _move_into_place(stage, out)

    build(0)
    assert main(["evaluate", "-d", "folder", "-r", str(out), "--split", "train", "-p", str(out / "train/masks")]) == 0
    scores = (out / "train/masks/scores.json").read_text()
    build(1)
    assert (out / "train/masks/scores.json").read_text() == scores
    from PIL import Image

    assert Image.open(out / "train/masks/a.png").getpixel((0, 0)) == 1  # the new build's
    (out / "train/masks/notes.json").write_text('{"mIoU": 0.5}')
    with pytest.raises(ConfigError, match="notes.json is not a file the previous dataset build wrote"):
        build(0)


def test_a_build_list_of_names_alone_is_still_read(tmp_path):
    """A list of names alone, no stamps: its files are the build's to replace, edited or not."""
    from selfseg.label.run import BUILD_LIST, _move_into_place, _refuse_edited

    out, stage = tmp_path / "ds", tmp_path / "ds" / ".build"
    (out / "old").mkdir(parents=True)
    (out / "old" / "gone.txt").write_text("edited or not")
    (out / BUILD_LIST).write_text(json.dumps(["old/gone.txt"]))
    _refuse_edited(out)
    (stage / "new").mkdir(parents=True)
    (stage / "new" / "a.txt").write_text("a")
    _move_into_place(stage, out)
    assert not (out / "old").exists() and (out / "new" / "a.txt").read_text() == "a"


@pytest.mark.parametrize("cut_after", [0, 1, 2, 3])
def test_a_move_cut_short_is_finished_by_the_next_build(tmp_path, monkeypatch, cut_after):
    """The new build moves in by renames; a run killed after some of them leaves a folder of both builds'
    files. The build list names the incoming files before the first rename, so the next build takes every
    file for its own: nothing is called edited, and its move leaves exactly its dataset."""
    from selfseg.label.run import BUILD_LIST, _move_into_place, _refuse_edited

    out, stage = tmp_path / "ds", tmp_path / "ds" / ".build"

    def staged(files: dict[str, str]) -> None:
        for rel, text in files.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_text(text)

    staged({"annotations/a.json": "old a", "classes.txt": "old", "train/labels/x.txt": "old x",
            "data.yaml": f"path: {stage.resolve()}\n"})
    _move_into_place(stage, out)
    newer = {"annotations/a.json": "new a, longer", "classes.txt": "new", "val/labels/y.txt": "new y",
             "data.yaml": f"path: {stage.resolve()}\n"}
    staged(newer)
    real, calls = Path.replace, []

    def replace(self, target):
        if len(calls) == cut_after:
            raise KeyboardInterrupt  # the process dies here
        calls.append(self)
        return real(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        _move_into_place(stage, out)
    monkeypatch.undo()
    _refuse_edited(out)  # the next run starts: its own files, moved or not, are no edits
    shutil.rmtree(stage)  # the next build stages again from the predictions
    staged(newer)
    _move_into_place(stage, out)
    got = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*")
           if p.is_file() and p.name != BUILD_LIST}
    assert got == {**newer, "data.yaml": f"path: {out.resolve()}\n"}
    assert sorted(json.loads((out / BUILD_LIST).read_text())) == ["files"]


def test_an_edit_during_a_move_cut_short_is_still_refused(tmp_path, monkeypatch):
    from selfseg.errors import ConfigError
    from selfseg.label.run import _move_into_place, _refuse_edited

    out, stage = tmp_path / "ds", tmp_path / "ds" / ".build"
    for files in ({"a.json": "old", "b.json": "old b"}, {"a.json": "new!", "b.json": "new b!"}):
        for rel, text in files.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_text(text)
        if files["a.json"] == "old":
            _move_into_place(stage, out)
    real = Path.replace
    monkeypatch.setattr(Path, "replace", lambda self, target: (_ for _ in ()).throw(KeyboardInterrupt)
                        if self.name == "b.json" else real(self, target))
    with pytest.raises(KeyboardInterrupt):
        _move_into_place(stage, out)
    monkeypatch.undo()
    (out / "a.json").write_text("corrected by hand")  # moved in, then edited: the user's now
    with pytest.raises(ConfigError, match=r"^1 file\(s\) .* \(a.json\)"):
        _refuse_edited(out)


def test_a_build_on_a_file_system_without_locks_goes_on_unlocked(tmp_path, capsys, monkeypatch):
    import errno
    import fcntl

    from selfseg.label.run import _build_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with _build_lock(tmp_path):
        pass
    assert "waiting" not in capsys.readouterr().err


def test_a_second_build_in_the_folder_waits_for_the_first(tmp_path, capsys):
    import threading

    from selfseg.label.run import _build_lock

    entered = threading.Event()

    def second() -> None:
        with _build_lock(tmp_path):
            entered.set()

    with _build_lock(tmp_path):
        worker = threading.Thread(target=second)
        worker.start()
        assert not entered.wait(0.5)  # the first build still holds the folder
    assert entered.wait(10)
    worker.join()
    assert "waiting for another selfseg label run to finish building the dataset" in capsys.readouterr().err


def test_a_run_killed_while_its_dataset_moves_in_resumes_to_the_same_dataset(baseline, photos, tmp_path,
                                                                              monkeypatch):
    out = tmp_path / "moving"
    shutil.copytree(baseline, out)
    real, calls = Path.replace, []

    def replace(self, target):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed with two of the build's folders moved in
        calls.append(self)
        return real(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    # another split of the same predictions: the files moved in differ from those they replace
    assert main(_argv(photos, out, "--resume", "label.val_fraction=0.5")) == 130
    monkeypatch.undo()
    assert len(calls) == 2 and (out / ".build").is_dir()
    assert main(_argv(photos, out, "--resume")) == 1  # the broken image still fails
    assert _dataset(out) == _dataset(baseline) and not (out / ".build").exists()


def test_a_users_file_among_the_predictions_fails_that_image_only(baseline, photos, tmp_path, capsys):
    """--fresh keeps a file someone put in a prediction's place (another size); that image then fails with one
    line, listed in failures.txt, and the rest are labelled."""
    out = tmp_path / "kept"
    shutil.copytree(baseline, out)
    (theirs,) = (out / "predictions").glob("ADE_val_00000001_labels.png")
    theirs.write_bytes(b"someone's own label map")
    capsys.readouterr()
    assert main(_argv(photos, out, "--fresh")) == 1
    err = capsys.readouterr().err
    assert "--fresh kept 1 file(s)" in err and "is there already and no selfseg run" in err
    assert theirs.read_bytes() == b"someone's own label map"
    failures = (out / "failures.txt").read_text()
    assert "ADE_val_00000001.jpg" in failures and "broken.jpg" in failures
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(records) == 4  # five photos, one refused
