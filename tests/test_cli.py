"""End to end through the `selfseg` command and the Python API, smoke config (tiny random-init BLIP:
captions are meaningless; these tests check files, shapes, failures and exit codes)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import selfseg
from selfseg.cli import main
from selfseg.errors import ConfigError
from selfseg.tag.result import TagResult


def test_tag_real_photos_with_a_bad_one_in_the_middle(repo, ade_images, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not really a jpeg")
    out = tmp_path / "out"
    args = ["tag", str(ade_images[0]), str(bad), str(tmp_path / "missing.png"), *map(str, ade_images[1:]),
            "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(out), "captioning.cycles=1"]
    code = main(args)
    cap = capsys.readouterr()
    assert code == 1  # some inputs failed ...
    assert "meaningless" in cap.err and "meaningless" not in cap.out  # stdout: the result lines only
    errors = [line for line in cap.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "broken.jpg" in errors[0] and "missing.png" in errors[1]
    for p in ade_images:  # ... and every good one was still done
        r = TagResult.from_json((out / f"{p.stem}.json").read_text())
        assert r.cycles_run == 1  # the override took effect
        w, h = Image.open(p).size
        assert r.image_size == (h, w) and r.cluster_map.shape == (h, w)
        assert Image.open(out / f"{p.stem}.png").mode == "RGB"
        assert f"{p}:" in cap.out
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_one_file_spelled_three_ways_is_one_input_and_a_failed_drawing_costs_one_image(repo, ade_images, tmp_path,
                                                                                         capsys, monkeypatch):
    """photos/a.jpg, ./photos/a.jpg and its absolute path were three inputs writing one a.json. Drawing or
    encoding one image's outputs could raise something other than OSError and end the whole run (Pillow's
    bitmap font, where Pillow has no FreeType, cannot encode a non-Latin-1 label)."""
    from PIL import ImageFont

    from selfseg.segment.result import Segmentation

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in ade_images:
        (photos / p.name).write_bytes(p.read_bytes())
    monkeypatch.chdir(tmp_path)
    first = f"photos/{ade_images[0].name}"
    cfg = str(repo / "configs" / "smoke.yaml")
    assert main(["tag", first, f"./{first}", str(tmp_path / first), "--config", cfg, "--out", "out", "-q"]) == 0
    assert capsys.readouterr().err.strip().endswith("1/1 images tagged; outputs in out/")

    monkeypatch.setattr(ImageFont, "load_default", lambda size=None: ImageFont.load_default_imagefont())
    args = ["segment", "photos", "--config", cfg, "--out", "seg", "segment.vocabulary=given", "vocabulary=[猫]"]
    assert main(args) == 0  # the label is drawn escaped
    assert json.loads((tmp_path / "seg" / f"{ade_images[0].stem}.json").read_text())["classes"] == ["猫"]
    real = Segmentation.save

    def save(self, where, name, **kw):
        if name == ade_images[0].stem:
            raise ValueError("cannot draw this one")
        return real(self, where, name, **kw)

    monkeypatch.setattr(Segmentation, "save", save)
    assert main([*args[:5], "seg2", *args[6:]]) == 1
    err = capsys.readouterr().err
    assert f"error: photos/{ade_images[0].name}: could not write outputs (ValueError: cannot draw this one)" in err
    assert (tmp_path / "seg2" / f"{ade_images[1].stem}.json").exists()


def test_python_api_matches_cli_shape(smoke_seg, ade_images):
    r = smoke_seg.tag(str(ade_images[1]))
    arr = np.asarray(Image.open(ade_images[1]))
    r2 = smoke_seg.tag(arr)
    assert r2.image_size == r.image_size == arr.shape[:2]
    assert json.loads(r.to_json())["tags"] == r.tags


def test_tag_many_yields_errors_in_place(smoke_seg, ade_images, tmp_path):
    """Results come back in input order, failures in their inputs' places: a caller zips inputs with them
    (arrays all have one source name). A failed load used to come out at once, ahead of its batch."""
    items = list(smoke_seg.tag_many([ade_images[0], tmp_path / "nope.jpg", ade_images[1]], batch_size=2))
    assert [it.source for it in items] == [str(ade_images[0]), str(tmp_path / "nope.jpg"), str(ade_images[1])]
    assert [it.ok for it in items] == [True, False, True]
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, 40, 3), dtype=np.uint8) for h in (32, 48, 5, 64)]
    for many in (smoke_seg.tag_many, smoke_seg.segment_many):
        got = list(many([*arrays, "/no/such.jpg"], batch_size=2))
        assert [it.result.image_size[0] if it.ok else it.error.split(":")[0] for it in got] == \
            [32, 48, "<ndarray>", 64, "/no/such.jpg"]
    with pytest.raises(ConfigError, match="batch_size: expected an integer >= 1, got 0"):
        next(smoke_seg.tag_many(arrays, batch_size=0))
    assert next(smoke_seg.tag_many(arrays[:1], batch_size=np.int64(1))).ok  # a numpy integer is an integer


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "{cfg}", "clustering.kz=3"], "unknown config key 'clustering.kz'"),
        (["--config", "/no/such.yaml"], "no such file"),
        (["--config", "{cfg}", "tagger=foo"], "unknown tagger 'foo'"),
        (["--config", "{cfg}", "model.device=bogus"], "model.device"),
    ],
)
def test_config_errors_are_one_line(repo, ade_images, argv, message, capsys):
    argv = [a.replace("{cfg}", str(repo / "configs" / "smoke.yaml")) for a in argv]
    assert main(["tag", str(ade_images[0]), *argv]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("NOTE:")]
    assert len(err) == 1 and message in err[0] and err[0].startswith("selfseg: error:")


def test_console_script_runs(repo, ade_images, tmp_path):
    """`python -m selfseg` as a user runs it: exit 0 and the files on disk."""
    proc = subprocess.run([sys.executable, "-m", "selfseg", "tag", str(ade_images[0]), "--config", "smoke",
                           "--out", str(tmp_path)], cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / f"{ade_images[0].stem}.json").is_file()


def test_import_is_cheap():
    code = "import sys, selfseg; assert 'torch' not in sys.modules and 'spacy' not in sys.modules; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"


def test_download_command(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    assert main(["download", "--config", "smoke"]) == 0
    assert "nothing to download" in capsys.readouterr().out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on an air-gapped machine: fails fast, names the model
    assert main(["download", "--config", "bcc_voc"]) == 2  # a resource problem, like every other command
    cap = capsys.readouterr()
    for model in ("Salesforce/blip-image-captioning-large", "IDEA-Research/grounding-dino-base",
                  "facebook/sam2.1-hiera-large"):  # the tagger's and the segmenter's checkpoints
        assert model in cap.err


def test_huge_image_costs_about_as_much_memory_as_a_small_one(tmp_path):
    """Peak RSS of loading an 8000x6000 JPEG vs a 512x512 one, each in a fresh process: the huge one is
    never decoded at full size."""
    if not Path("/proc/self/status").exists():
        pytest.skip(reason="peak RSS is read from /proc (Linux)")
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at the parent's (pytest with torch loaded).
    code = ("import sys; from selfseg.io import load_image; im = load_image(sys.argv[1]);"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    rss = {}
    for name, size in (("small", (512, 512)), ("huge", (8000, 6000))):
        p = tmp_path / f"{name}.jpg"
        Image.new("RGB", size, (30, 90, 150)).save(p, quality=80)
        out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=True)
        rss[name] = int(out.stdout.strip())
    # A full decode alone would add 8000 * 6000 * 3 bytes = 141 MiB; measured here: +21 MiB (34 -> 55 MiB),
    # a draft decode at 1/4 scale. With models loaded (hundreds of MiB) that is well under 1.2x.
    full_decode_kib = 8000 * 6000 * 3 // 1024
    assert rss["huge"] - rss["small"] < 0.25 * full_decode_kib, rss


def test_resume_skips_finished_images(repo, ade_images, tmp_path, capsys):
    cfg = str(repo / "configs" / "smoke.yaml")
    out = tmp_path / "out"
    assert main(["tag", str(ade_images[0]), "--config", cfg, "--out", str(out), "-q"]) == 0
    first = (out / f"{ade_images[0].stem}.json").read_text()
    capsys.readouterr()
    assert main(["tag", *map(str, ade_images), "--config", cfg, "--out", str(out), "--resume", "-q"]) == 0
    cap = capsys.readouterr()
    assert f"resuming: 1 of {len(ade_images)}" in cap.err
    assert str(ade_images[0]) not in cap.out  # not tagged again ...
    assert (out / f"{ade_images[0].stem}.json").read_text() == first  # ... and its result untouched
    assert all((out / f"{p.stem}.json").is_file() for p in ade_images)


def test_resume_redoes_another_inputs_result_and_keeps_a_result_of_another_size(repo, ade_images, tmp_path,
                                                                                 capsys):
    """A result whose JSON holds another input's key is redone. One cut short since it was written (a lost
    write) cannot be told by its size from a file put in its place: it is kept and its image fails with one
    line, as --fresh keeps it; once it is moved, it is redone."""
    cfg = str(repo / "configs" / "smoke.yaml")
    out = tmp_path / "out"
    a, b = ade_images[0], ade_images[1]
    assert main(["tag", str(a), str(b), "--config", cfg, "--out", str(out), "-q"]) == 0
    js_a = out / f"{a.stem}.json"
    js_a.write_text(js_a.read_text()[:100])  # a result cut short
    js_b = out / f"{b.stem}.json"
    other = b.name.replace("2", "9")  # a key of the same length: the file keeps the size it was written with
    assert other != b.name and len(other) == len(b.name)
    js_b.write_text(json.dumps({**json.loads(js_b.read_text()), "key": other}))  # not b's
    capsys.readouterr()
    assert main(["tag", str(a), str(b), "--config", cfg, "--out", str(out), "--resume", "-q"]) == 1
    cap = capsys.readouterr()
    assert f"error: {a}: could not write outputs ({js_a} is there already and its size is no longer" in cap.err
    assert "resuming" not in cap.err and str(a) not in cap.out and str(b) in cap.out  # b done again
    assert len(js_a.read_text()) == 100 and json.loads(js_b.read_text())["source"] == str(b)
    js_a.unlink()
    assert main(["tag", str(a), str(b), "--config", cfg, "--out", str(out), "--resume", "-q"]) == 0
    assert json.loads(js_a.read_text())["source"] == str(a)


def test_resume_with_other_inputs_beside_redoes_what_they_rename(repo, ade_images, tmp_path, capsys):
    """a/photo.jpg alone writes out/photo.json; beside b/photo.jpg it is named a/photo. Resuming then must
    leave what an uninterrupted run of both leaves, not count out/photo.json as a/photo.jpg's result."""
    import shutil

    cfg = str(repo / "configs" / "smoke.yaml")
    a, b = tmp_path / "in" / "a" / "photo.jpg", tmp_path / "in" / "b" / "photo.jpg"
    for dst, src in ((a, ade_images[0]), (b, ade_images[1])):
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
    out, whole = tmp_path / "out", tmp_path / "whole"
    assert main(["tag", str(a), "--config", cfg, "--out", str(out), "-q"]) == 0
    assert json.loads((out / "photo.json").read_text())["key"] == "photo.jpg"
    capsys.readouterr()
    assert main(["tag", str(a), str(b), "--config", cfg, "--out", str(out), "--resume", "-q"]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert main(["tag", str(a), str(b), "--config", cfg, "--out", str(whole), "-q"]) == 0
    for rel, key in (("a/photo.json", "a/photo.jpg"), ("b/photo.json", "b/photo.jpg")):
        got, expected = json.loads((out / rel).read_text()), json.loads((whole / rel).read_text())
        assert got["key"] == expected["key"] == key and got["tags"] == expected["tags"]


def test_resume_never_takes_a_result_another_input_wrote_over(repo, ade_images, tmp_path, capsys):
    """a/photo.jpg alone, then b/photo.jpg alone, both write out/photo.json: resuming a/photo.jpg must redo it,
    though its own log entry still matches its file, settings, key and output name."""
    import shutil

    cfg = str(repo / "configs" / "smoke.yaml")
    a, b = tmp_path / "a" / "photo.jpg", tmp_path / "b" / "photo.jpg"
    for dst, src in ((a, ade_images[0]), (b, ade_images[1])):
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
    out = tmp_path / "out"
    for p in (a, b):
        assert main(["tag", str(p), "--config", cfg, "--out", str(out), "-q"]) == 0
    assert json.loads((out / "photo.json").read_text())["source"] == str(b)
    capsys.readouterr()
    assert main(["tag", str(a), "--config", cfg, "--out", str(out), "--resume", "-q"]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert json.loads((out / "photo.json").read_text())["source"] == str(a)


def test_an_input_with_a_name_near_the_file_system_limit_gets_outputs(repo, ade_images, tmp_path, capsys):
    """A 250-character name fits the file system; its outputs' names (name + "_overlay.png", and the
    temporary files' longer ones) would not: they are cut, with a digest, and a resume finds them."""
    import shutil

    from selfseg.runs import NAME_BYTES

    photo = tmp_path / ("n" * 246 + ".jpg")
    shutil.copy(ade_images[0], photo)
    out = tmp_path / "out"
    cfg = str(repo / "configs" / "smoke.yaml")
    assert main(["segment", str(photo), "--config", cfg, "--out", str(out), "-q"]) == 0
    written = sorted(p.name for p in out.glob("n*"))
    assert written and all(len(p.encode()) <= NAME_BYTES + 27 for p in written)
    assert json.loads(next(out.glob("n*.json")).read_text())["key"] == photo.name
    capsys.readouterr()
    assert main(["segment", str(photo), "--config", cfg, "--out", str(out), "--resume", "-q"]) == 0
    assert "resuming: 1 of 1" in capsys.readouterr().err


def test_quickstart_script_runs_with_the_smoke_config(repo, tmp_path):
    proc = subprocess.run([sys.executable, str(repo / "examples" / "quickstart.py"),
                           str(repo / "configs" / "smoke.yaml"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "instances" in proc.stdout
    for suffix in (".json", "_labels.png", "_overlay.png", "_coco.json"):
        assert (tmp_path / f"ADE_val_00000001{suffix}").is_file()


def test_quickstart_notebook_cells_run(repo, tmp_path, monkeypatch):
    """Every code cell of examples/quickstart.ipynb, in order, in one namespace (no Jupyter needed)."""
    import json as _json

    nb = _json.loads((repo / "examples" / "quickstart.ipynb").read_text())
    monkeypatch.chdir(repo)
    monkeypatch.setenv("QUICKSTART_OUT", str(tmp_path))
    ns: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "quickstart.ipynb", "exec"), ns)
    assert ns["result"].semantic.shape == ns["loaded"].image.size[::-1]
    assert all(p.is_file() for p in ns["paths"].values())


def test_benchmark_rejects_a_negative_limit(capsys):
    from selfseg.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "benchmarks/smoke", "--limit", "-1"])
    assert exc.value.code == 2 and "expected an integer >= 0" in capsys.readouterr().err


def test_download_lists_the_chat_models_a_config_uses(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--config", "describe_extract"]) == 2
    err = capsys.readouterr().err
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in err and "Qwen/Qwen2.5-7B-Instruct" in err
    assert "blip" not in err
    assert main(["download", "--config", "union_bcc_vlm"]) == 2
    err = capsys.readouterr().err
    assert "Salesforce/blip-image-captioning-large" in err and "Qwen/Qwen2.5-VL-3B-Instruct" in err


def test_download_fetches_a_benchmark_configs_label_mapper(repo, capsys, monkeypatch):
    """The LOVE model's missing-checkpoint message says `selfseg download --config ...`: for a benchmark
    config that must fetch it; a config that only tags and segments must not pull the 7B LLM."""
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--config", "configs/benchmarks/voc.yaml"]) == 2
    assert "meta-llama/Llama-2-7b-chat-hf" in capsys.readouterr().err
    assert main(["download", "--config", "bcc_voc"]) == 2
    assert "Llama" not in capsys.readouterr().err


def test_download_takes_the_overrides_a_run_takes(repo, capsys, monkeypatch):
    """A missing checkpoint that an override selects says `selfseg download --config <your config>`: download
    takes the same overrides (key=value or --set), and counts `selfseg label`'s mapper and an evaluation override."""
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--config", "smoke"]) == 0  # only models built in code
    capsys.readouterr()
    assert main(["download", "--config", "smoke", "segment.segmenter=clipseg",
                 "segment.clipseg.model=CIDAS/clipseg-rd64-refined"]) == 2
    assert "CIDAS/clipseg-rd64-refined" in capsys.readouterr().err
    assert main(["download", "--config", "smoke", "--set", "label.mapper=llm"]) == 2
    assert "meta-llama/Llama-2-7b-chat-hf" in capsys.readouterr().err
    assert main(["download", "--config", "smoke", "--set", "label.mapper=embedding",
                 "evaluation.embedding_model=owner/some-embedder"]) == 2
    assert "owner/some-embedder" in capsys.readouterr().err
    assert main(["download", "--config", "smoke", "evaluation.mapper=llm", "evaluation.llm_model=owner/some-llm"]) == 2
    assert "owner/some-llm" in capsys.readouterr().err
    assert main(["download", "--config", "smoke", "photo.jpg"]) == 2
    assert "expected key.sub=value overrides, got 'photo.jpg'" in capsys.readouterr().err
    # an override one of several configs refuses: the error names that config
    assert main(["download", "--config", "smoke", "--config", "bcc_voc", "captioning.cycles=0"]) == 2
    assert capsys.readouterr().err.startswith("selfseg: error: config smoke: captioning.cycles")


def test_tag_command_with_the_tiny_vlm(repo, tmp_path, capsys, ade_images):
    """`selfseg tag` with tagger=vlm on the smoke config (tiny random-init Qwen2.5-VL: replies are noise)."""
    out = tmp_path / "out"
    assert main(["tag", str(ade_images[0]), "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(out),
                 "tagger=vlm", "vlm.max_new_tokens=8"]) == 0
    assert "meaningless" in capsys.readouterr().err
    js = out / f"{ade_images[0].stem}.json"
    import json

    d = json.loads(js.read_text())
    assert d["tagger"] == "vlm" and d["replies"][0]["step"] == "tags"


@pytest.mark.parametrize("command, output", [("tag", "{stem}.png"), ("segment", "{stem}_labels.png")])
def test_an_output_that_would_overwrite_an_input_is_refused_before_any_work(tmp_path, repo, capsys, command,
                                                                            output):
    from PIL import Image

    from selfseg.cli import main

    photo = tmp_path / output.format(stem="photo")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(photo)
    before = photo.read_bytes()
    src = tmp_path / "photo.jpg" if command == "segment" else photo
    if command == "segment":  # photo.jpg's labels would land on photo_labels.png, itself an input
        Image.new("RGB", (64, 48), (10, 30, 200)).save(src)
    inputs = [str(src), str(photo)] if command == "segment" else [str(photo)]
    code = main([command, *inputs, "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(tmp_path), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "would overwrite the input" in err[0]
    assert photo.read_bytes() == before and not list(tmp_path.glob("*.json"))


def test_a_run_that_wrote_nothing_does_not_point_at_outputs(tmp_path, repo, capsys):
    code = main(["tag", str(tmp_path / "missing.jpg"), "--config", str(repo / "configs" / "smoke.yaml"),
                 "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "0/1 images tagged; nothing written" in err and "outputs in" not in err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("proc", [True, False], ids=["proc-status", "set-and-restore"])
def test_outputs_honour_the_umask(tmp_path, monkeypatch, umask, mode, proc):
    import os

    from selfseg import io as selfseg_io

    if not proc:  # a system without /proc: the umask is read by setting and restoring it
        real_open = open

        def no_proc(file, *a, **kw):
            if str(file).startswith("/proc/"):
                raise FileNotFoundError(file)
            return real_open(file, *a, **kw)

        monkeypatch.setattr("builtins.open", no_proc)
    old = os.umask(umask)
    try:
        selfseg_io.atomic_write(tmp_path / "out.json", lambda f: f.write(b"{}"))
        assert os.umask(umask) == umask  # reading it left it as it was
    finally:
        os.umask(old)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "out.json").read_bytes() == b"{}"


def test_tag_and_segment_outputs_are_readable_under_a_usual_umask(repo, ade_images, tmp_path, capsys):
    import os

    old = os.umask(0o022)
    try:
        for command in ("tag", "segment"):
            assert main([command, str(ade_images[0]), "--config", str(repo / "configs" / "smoke.yaml"),
                         "--out", str(tmp_path / command), "-q", "captioning.cycles=1"]) == 0
    finally:
        os.umask(old)
    stem = ade_images[0].stem
    wanted = {("tag", f"{stem}.json"), ("tag", f"{stem}.png"), ("segment", f"{stem}.json"),
              ("segment", f"{stem}_labels.png"), ("segment", f"{stem}_overlay.png")}
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert wanted <= {(f.relative_to(tmp_path).parts[0], f.name) for f in files}
    assert {f.stat().st_mode & 0o777 for f in files} == {0o644}


def _gif(path: Path, frames: int = 3) -> Path:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:])
    return path


def test_a_multi_frame_image_is_noted_in_the_python_results(repo, tmp_path):
    from selfseg import SelfSeg

    gif = _gif(tmp_path / "anim.gif")
    note = "anim.gif: 3 frames; the first frame was used"
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["captioning.cycles=1"])
    assert seg.tag(gif).notes[0] == note
    [item] = seg.tag_many([gif])
    assert item.result.notes.count(note) == 1 and item.result.notes[0] == note
    s = seg.segment(gif)
    assert s.notes.count(note) == 1 and s.notes[0] == note and s.tags.notes.count(note) == 1
    again = seg.segment(gif, tags=s.tags)  # tags from an earlier call already hold the note: said once
    assert again.notes.count(note) == 1 and again.tags.notes.count(note) == 1
    given = SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["segment.vocabulary=given", "vocabulary=[cat]"])
    [item] = given.segment_many([gif])
    assert item.result.notes[0] == note


@pytest.mark.parametrize("command", ["tag", "segment"])
def test_a_multi_frame_image_is_noted_in_the_json(repo, tmp_path, capsys, command):
    gif = _gif(tmp_path / "anim.gif")
    out = tmp_path / "out"
    assert main([command, str(gif), "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(out), "-q",
                 "captioning.cycles=1"]) == 0
    d = json.loads((out / "anim.json").read_text())
    assert d["notes"][0] == "anim.gif: 3 frames; the first frame was used"
    if command == "segment":
        assert d["tags"]["notes"][0] == d["notes"][0] and d["notes"].count(d["notes"][0]) == 1
    assert "Warning" not in capsys.readouterr().err


def test_the_smoke_benchmark_runs_from_any_directory(repo, tmp_path, monkeypatch, capsys):
    """The config names its dataset relative to itself, so an absolute config path works from anywhere."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = main(["benchmark", str(repo / "configs" / "benchmarks" / "smoke.yaml"), "--out", str(out), "-q"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 3 and results["failed"] == []
    # all three tasks, against the sample's derived panoptic and instance ground truth
    assert results["panoptic"]["images"] == 3 and "segm" in results["instance"]
    assert results["config"]["evaluation"]["root"] == str((repo / "examples" / "ade20k_sample").resolve())
    assert not (tmp_path / "runs").exists()  # --out given: nothing under the default run folder


def test_command_line_choices_come_from_the_modules_that_own_the_names():
    """A dataset registered, a mapper method, a lexical level or a metric convention added where it lives
    reaches the command line without a second list to update."""
    from selfseg.cli import build_parser
    from selfseg.evaluate.datasets import dataset_names
    from selfseg.evaluate.mappers import METHODS
    from selfseg.evaluate.mappers.lexical import LEVELS
    from selfseg.evaluate.metrics import CMIOU_SEGMENTS, CONVENTIONS

    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices

    def choices(command, dest):
        return list(next(a for a in subs[command]._actions if a.dest == dest).choices)

    from selfseg.evaluate.annotations import INSTANCES, PANOPTIC

    assert choices("evaluate", "dataset") == list(dict.fromkeys([*dataset_names(), *PANOPTIC, *INSTANCES]))
    assert "voc" in dataset_names() and "coco" in INSTANCES  # a name two tasks share is offered once
    assert choices("map-labels", "dataset") == [d for d in dataset_names() if d != "folder"]
    assert choices("map-labels", "method") == list(METHODS)
    assert choices("map-labels", "level") == list(LEVELS)
    assert choices("evaluate", "convention") == list(CONVENTIONS)
    assert choices("evaluate", "cmiou_segments") == list(CMIOU_SEGMENTS)


def test_config_names_resolve_from_any_folder_and_flags_for_what_users_set_most(repo, ade_images, tmp_path,
                                                                                capsys, monkeypatch):
    """`--config smoke` worked only from the repository root; a missing name now says where it looked.
    --device stands for model.device, and --version prints the version."""
    monkeypatch.chdir(tmp_path)
    photo = str(ade_images[0])
    (tmp_path / "smoke").mkdir()  # an earlier `--out smoke`: a folder is never the config
    assert main(["tag", photo, "--config", "smoke", "--out", "out", "-q", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["tag", photo, "--config", "configs/smoke.yaml", "--out", "out2", "-q"]) == 0  # as the README says
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "mine.yaml").write_text("tagger: vocabulary\nvocabulary: [dog]\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["tag", photo, "--config=~/mine.yaml", "--out", "out3", "-q"]) == 0  # a ~ the shell left
    capsys.readouterr()
    assert main(["tag", photo, "--config", "smokey", "-q"]) == 2
    assert "config smokey: no such file, nor ./configs/smokey.yaml or " in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    assert main(["tag", photo, "--config", "mine", "-q"]) == 2
    assert "config mine: a folder, not a file, nor ./configs/mine.yaml or " in capsys.readouterr().err
    assert main(["tag", photo, "--config", "smoke", "--device", "meta", "-q"]) == 2
    assert "model.device: expected 'auto', 'cpu', 'cuda[:N]' or 'mps', got 'meta'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == f"selfseg {selfseg.__version__}\n"
    import tomllib

    # the package's version is the one it is built and installed under
    assert tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"] == selfseg.__version__


def test_a_resume_with_nothing_left_builds_no_model(repo, ade_images, tmp_path, capsys, monkeypatch):
    """Every image done: the models (minutes and gigabytes for real checkpoints) are not built at all."""
    from selfseg.pipeline import SelfSeg

    cfg = str(repo / "configs" / "smoke.yaml")
    args = ["segment", str(ade_images[0]), "--config", cfg, "--out", str(tmp_path / "out"), "-q"]
    assert main(args) == 0

    def never(self, *a, **k):
        raise AssertionError("a model was built for nothing")

    monkeypatch.setattr(SelfSeg, "segmenter", property(never))
    monkeypatch.setattr(SelfSeg, "tagger", property(never))
    assert main([*args, "--resume"]) == 0
    assert "1/1 images segmented" in capsys.readouterr().err


def test_a_folder_of_subfolders_says_how_to_reach_them(repo, ade_images, tmp_path, capsys):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / ade_images[0].name).write_bytes(ade_images[0].read_bytes())
    cfg = str(repo / "configs" / "smoke.yaml")
    assert main(["tag", str(tmp_path / "photos"), "--config", cfg, "-q"]) == 2
    assert "for those in its subfolders, give a glob such as 'folder/**/*.jpg'" in capsys.readouterr().err
    glob = str(tmp_path / "photos" / "**" / "*.jpg")
    assert main(["tag", glob, "--config", cfg, "--out", str(tmp_path / "out"), "-q"]) == 0


def test_the_readme_table_check_writes_nothing_and_fails_when_stale(repo, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((repo / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    check = [sys.executable, "-m", "selfseg.config", "--check", str(readme)]
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0
    stale = readme.read_text(encoding="utf-8").replace("| `model.dtype` | `float32` |", "| `model.dtype` | `x` |")
    readme.write_text(stale, encoding="utf-8")
    done = subprocess.run(check, capture_output=True, text=True)
    assert done.returncode == 1 and "out of date" in done.stdout and readme.read_text(encoding="utf-8") == stale


@pytest.mark.parametrize("left", [False, True])
def test_the_command_exits_with_mains_code_and_a_worker_that_left_its_group_skips_teardown(left):
    """`selfseg` runs `cli.entry`. A torchrun worker that left its process group ends without the
    interpreter's teardown (where gloo sometimes aborted it after every result was written): its output is
    flushed and its exit code kept, and nothing registered to run at exit runs. Any other process exits
    normally."""
    import subprocess
    import sys

    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('teardown ran'))\n"
            "from selfseg import cli\n"
            "from selfseg.evaluate.benchmark import Dist\n"
            f"Dist.left = {left}\n"
            "cli.main = lambda argv=None: (print('work done', end=''), sys.stderr.write('to stderr'), 3)[-1]\n"
            "cli.entry()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and proc.stderr == "to stderr"
    assert proc.stdout == ("work done" if left else "work done" + "teardown ran\n")


@pytest.mark.parametrize("command", ["tag", "segment", "label", "benchmark"])
def test_a_device_this_machine_lacks_is_the_only_line(command, ade_images, tmp_path, capsys):
    """Refused before anything else is said, the tiny-model NOTE included."""
    args = ["smoke"] if command == "benchmark" else [str(ade_images[0]), "--config", "smoke", "--out",
                                                      str(tmp_path / "out")]
    assert main([command, *args, "--device", "cuda:99", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfseg: error: model.device is 'cuda:99' but ") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["tag", "segment", "label"])
def test_a_config_field_without_a_value_is_an_error_not_an_input(command, ade_images, tmp_path, capsys):
    code = main([command, str(ade_images[0]), "captioning.cycles", "--config", "smoke", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["selfseg: error: captioning.cycles: no such file, and a config override needs a "
                                 "value: captioning.cycles=VALUE"]
    assert not (tmp_path / "o").exists()


def test_a_config_path_that_is_no_regular_file_says_so(capsys):
    assert main(["tag", "x.jpg", "--config", "/dev/null"]) == 2
    assert capsys.readouterr().err.strip() == "selfseg: error: config /dev/null: not a regular file"


@pytest.mark.parametrize("second", ["while_handled", "at_exit"])
def test_a_second_interrupt_while_the_first_winds_down_prints_no_traceback(second):
    """Two Ctrl-Cs in quick succession: the second may come before the first one's handler has run, or while
    the interpreter exits; the command ends with one line and exit 130 either way."""
    code = ("import signal\n"
            "from selfseg import cli\n"
            "def cmd(ns):\n"
            "    try:\n"
            "        raise KeyboardInterrupt\n"
            "    finally:\n"
            + ("        signal.raise_signal(signal.SIGINT)\n" if second == "while_handled" else "        pass\n")
            + "cli.cmd_resources = cmd\n"
            "import atexit\n"
            + ("atexit.register(lambda: signal.raise_signal(signal.SIGINT))\n" if second == "at_exit" else "")
            + "import sys\n"
            "sys.argv = ['selfseg', 'resources']\n"
            "cli.entry()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and proc.stderr == "selfseg: interrupted\n", proc.stderr


def test_main_called_from_python_leaves_the_interrupt_handler_alone(monkeypatch):
    import signal

    import selfseg.cli as cli

    def interrupted(ns):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_resources", interrupted)
    before = signal.getsignal(signal.SIGINT)
    assert main(["resources"]) == 130
    assert signal.getsignal(signal.SIGINT) is before  # a notebook or test session stays interruptible


def test_a_newline_in_a_file_name_keeps_its_line_one_line(ade_images, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "new\nline.jpg").write_bytes(ade_images[0].read_bytes())
    assert main(["tag", str(folder), "--config", "smoke", "--out", str(tmp_path / "o"), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in out if ": " in line] == [str(folder / "new\\x0aline.jpg")]


@pytest.mark.parametrize("command", ["segment", "label", "benchmark"])
def test_an_interrupted_run_says_how_to_go_on(monkeypatch, capsys, tmp_path, command):
    """Ctrl-C keeps what was finished; the last line says how to go on from it."""
    from selfseg import cli

    def interrupted(ns):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    argv = {"segment": ["segment", str(tmp_path)], "label": ["label", str(tmp_path), "--out", str(tmp_path / "d")],
            "benchmark": ["benchmark", "benchmarks/smoke"]}[command]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    if command == "benchmark":
        assert err == "selfseg: interrupted; finished predictions are kept: rerun the same command to go on\n"
    else:
        assert err == "selfseg: interrupted; finished images are kept: rerun with --resume to go on\n"


@pytest.mark.parametrize("command, args, line", [
    ("tag", ["captioning.cycles=1", "--set", "captioning.cycles=2"],
     "captioning.cycles is given two values: `captioning.cycles=1` and `--set captioning.cycles=2`"),
    ("segment", ["--device", "cpu", "--set", "model.device=cuda"],
     "model.device is given two values: `--set model.device=cuda` and `--device cpu`"),
    ("tag", ["--batch-size", "2", "--set", "run.batch_size=3"],
     "run.batch_size is given two values: `--set run.batch_size=3` and `--batch-size 2`"),
    ("segment", ["--set", "segment.grounded_sam2={box_threshold: 0.3}", "segment.grounded_sam2.box_threshold=0.4"],
     "segment.grounded_sam2.box_threshold is given two values: `segment.grounded_sam2.box_threshold=0.4` and "
     "`--set segment.grounded_sam2={box_threshold: 0.3}`"),
    ("label", ["--format", "coco", "--set", "label.formats=[yolo]"],
     "label.formats is given two values: `--set label.formats=[yolo]` and `--format coco`"),
    ("label", ["--val-fraction", "0.5", "label.val_fraction=0.3"],
     "label.val_fraction is given two values: `label.val_fraction=0.3` and `--val-fraction 0.5`"),
    ("label", ["--seed", "1", "--set", "label.seed=2"], "label.seed is given two values: `--set label.seed=2` and "
                                                         "`--seed 1`"),
    ("label", ["--batch-size", "1", "run.batch_size=2"],
     "run.batch_size is given two values: `run.batch_size=2` and `--batch-size 1`"),
    ("benchmark", ["--limit", "1", "--set", "evaluation.limit=2"],
     "evaluation.limit is given two values: `--set evaluation.limit=2` and `--limit 1`"),
    ("benchmark", ["--out", "{tmp}/x", "evaluation.out={tmp}/y"],
     "evaluation.out is given two values: `evaluation.out={tmp}/y` and `--out {tmp}/x`"),
])
def test_a_flag_and_an_override_that_disagree_are_refused(command, args, line, ade_images, tmp_path, capsys,
                                                          monkeypatch):
    """A flag, a key=value argument and a --set that name one field with different values: one of them won
    without a word (--set beat a key=value argument, --device beat --set, tag's --batch-size beat
    run.batch_size)."""
    monkeypatch.chdir(tmp_path)  # the benchmark's run folder, were it to run
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    head = ["benchmark", "benchmarks/smoke"] if command == "benchmark" else \
        [command, str(ade_images[0]), "--config", "smoke", "--out", str(tmp_path / "out")]
    assert main([*head, *args, "-q"]) == 2
    err = capsys.readouterr().err
    assert err == f"selfseg: error: {line.replace('{tmp}', str(tmp_path))}; give it once\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["tag", "label", "benchmark"])
def test_a_flag_and_an_override_that_agree_are_no_conflict(command, ade_images, tmp_path, capsys, monkeypatch):
    """The same value twice is fine: the run goes on (here to the device this machine lacks)."""
    monkeypatch.chdir(tmp_path)
    same = ["captioning.cycles=1", "--set", "captioning.cycles=1", "--batch-size", "2", "run.batch_size=2",
            "--device", "cuda:99", "--set", "model.device=cuda:99"]
    if command == "benchmark":
        head, same = ["benchmark", "benchmarks/smoke"], [*same[:3], *same[6:], "--limit", "1", "evaluation.limit=1"]
    else:
        head = [command, str(ade_images[0]), "--config", "smoke", "--out", str(tmp_path / "out")]
    assert main([*head, *same, "-q"]) == 2
    assert capsys.readouterr().err.startswith("selfseg: error: model.device is 'cuda:99' but ")


def test_benchmarking_a_config_without_an_evaluation_section_names_the_benchmark_configs(tmp_path, capsys,
                                                                                         monkeypatch):
    """`selfseg benchmark smoke` (the tagging config, not benchmarks/smoke) names the benchmark configs in one
    line, also with an override that names no dataset; overrides that name the dataset and its root are an
    evaluation section."""
    monkeypatch.chdir(tmp_path)
    assert main(["benchmark", "smoke", "-q", "evaluation.limit=5"]) == 2
    assert "has no evaluation section" in capsys.readouterr().err
    assert main(["benchmark", "smoke", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "selfseg: error: config smoke has no evaluation section (the dataset to score and where it is); give a "
        "benchmark config: benchmarks/smoke (tiny models on the bundled ADE20K sample) or benchmarks/<name> for a "
        "dataset, <name> one of ade20k, ade20k_full, cityscapes, ")
    assert err.endswith("; or set evaluation.dataset and evaluation.root\n")
    from selfseg.config import benchmark_configs

    assert {"benchmarks/smoke", "benchmarks/voc", "benchmarks/ade20k"} <= set(benchmark_configs())
    assert not list(tmp_path.iterdir())

    # An evaluation section from the command line: the run goes on, to the dataset it names
    assert main(["benchmark", "smoke", "evaluation.dataset=ade20k", f"evaluation.root={tmp_path / 'none'}"]) == 2
    assert "ADE20K-150: root " in capsys.readouterr().err
