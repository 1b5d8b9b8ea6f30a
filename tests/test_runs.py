"""Output folders: names keyed by the input, run manifests, resume, and results independent of batching.

The smoke config's tiny random models make every caption and mask noise, but noise that depends on the
image (tests/models/test_blip.py shows it): equal results below mean equal computations, and the checks that
results differ between images keep the equalities from being vacuous.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from selfseg.cli import main
from selfseg.errors import ConfigError
from selfseg.runs import LOG, MANIFEST, OutputName, RunFolder, output_names, own_outputs, read_log

SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")


def _names(*paths):
    return {p: (n.key, n.stem) for p, n in output_names(list(paths)).items()}


def test_keys_are_paths_under_the_common_folder_and_stems_never_clash(tmp_path):
    a, b = str(tmp_path / "a" / "photo.png"), str(tmp_path / "b" / "photo.jpg")
    assert _names(a, b) == {a: ("a/photo.png", "a/photo"), b: ("b/photo.jpg", "b/photo")}
    assert _names(a) == {a: ("photo.png", "photo")}
    # A stem no other input shares keeps its flat name, wherever the inputs come from.
    x = str(tmp_path / "c" / "d" / "other.png")
    assert _names(a, b, x)[x] == ("c/d/other.png", "other")
    # Same folder, same stem: both keep their extension, whatever their order.
    c, d = str(tmp_path / "x" / "photo.png"), str(tmp_path / "x" / "photo.jpg")
    assert _names(c, d) == _names(d, c) == {c: ("photo.png", "photo.png"), d: ("photo.jpg", "photo.jpg")}
    # Case only (one file on a case-insensitive disk): a digest of the key keeps them apart.
    e, f = str(tmp_path / "y" / "Photo.png"), str(tmp_path / "y" / "photo.png")
    stems = {n.stem for n in output_names([e, f]).values()}
    assert len({s.casefold() for s in stems}) == 2 and all(s.startswith(("Photo.png-", "photo.png-")) for s in stems)
    # `photo.png` beside an input whose own stem is `photo.png`
    g, h, i = (str(tmp_path / "z" / n) for n in ("photo.png", "photo.jpg", "photo.png.tif"))
    assert len({n.stem.casefold() for n in output_names([g, h, i]).values()}) == 3
    # Relative inputs: keys relative to their common folder too.
    assert {n.key for n in output_names(["q/r/one.png", "q/two.png"]).values()} == {"r/one.png", "two.png"}
    assert {n.stem for n in output_names(["q/r/one.png", "q/one.jpg"]).values()} == {"r/one", "one"}


def _one_logged_output(tmp_path):
    src = tmp_path / "in" / "x.png"
    src.parent.mkdir()
    Image.new("RGB", (32, 32)).save(src)
    out = tmp_path / "o"
    folder = RunFolder(out, {"config": {"a": 1}})
    folder.start(resume=False, fresh=False)
    name = OutputName("x.png", "x")
    (out / "x.json").write_text(json.dumps({"key": "x.png"}))
    (out / "x.png").write_bytes(b"")
    folder.record(name, str(src), [out / "x.json", out / "x.png"])
    return folder, src, out


def test_outputs_log_names_own_files_and_skips_a_cut_line(tmp_path):
    folder, src, out = _one_logged_output(tmp_path)
    with open(out / LOG, "a") as f:
        f.write('{"key": "cut sho')  # a write a kill interrupted: the next line must survive it
    folder.begin(OutputName("y.png", "y"), str(src), [out / "y.json", out / "y.png"])
    assert [(e["key"], e["state"]) for e in read_log(out)] == [("x.png", "done"), ("y.png", "writing")]
    # Files about to be written are selfseg's too, so a run killed mid-write leaves no new "input".
    assert own_outputs([str(out / "x.png"), str(out / "y.png"), str(out / "z.png")]) == {str(out / "x.png"),
                                                                                         str(out / "y.png")}
    named = {str(src): OutputName("x.png", "x")}
    assert folder.done([str(src)], named) == {str(src)}
    os.utime(out / "x.png", ns=(1, 1))  # copied or unpacked without its times: still selfseg's
    assert own_outputs([str(out / "x.png")]) == {str(out / "x.png")}
    (out / "x.png").write_bytes(b"someone's photo")  # another size: the user's
    assert own_outputs([str(out / "x.png")]) == set()
    (out / "x.png").unlink()
    assert folder.done([str(src)], named) == set()  # a file it names is missing


def test_a_result_is_done_only_for_the_very_same_input_file(tmp_path):
    folder, src, out = _one_logged_output(tmp_path)
    other = tmp_path / "elsewhere" / "x.png"  # same name, same key in a run of its own: another photo
    other.parent.mkdir()
    shutil.copy(src, other)
    named = {str(src): OutputName("x.png", "x"), str(other): OutputName("x.png", "x")}
    assert folder.done([str(src), str(other)], named) == {str(src)}
    # the same file named otherwise in this run (other inputs beside it): its result is not where this run
    # puts it, so it is redone there
    assert folder.done([str(src)], {str(src): OutputName("a/x.png", "a/x")}) == set()
    Image.new("RGB", (40, 32)).save(src)  # the photo replaced since: another input
    assert folder.done([str(src)], named) == set()


def test_fresh_deletes_only_logged_files_inside_the_folder(tmp_path):
    folder, src, out = _one_logged_output(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "keep.png").write_bytes(b"precious")
    (out / "a").symlink_to(photos)  # a folder inside the output folder that points out of it
    with open(out / LOG, "a") as f:
        for rel in ("a/keep.png", "", ".", "../photos/keep.png", "/etc/hostname"):
            f.write(json.dumps({"key": "k", "json": rel or "x.json", "files": [rel]}) + "\n")
    RunFolder(out, {"config": {"a": 2}}).start(resume=False, fresh=True)
    assert (photos / "keep.png").read_bytes() == b"precious"
    assert not (out / "x.json").exists() and not (out / LOG).exists() and (out / "a").is_symlink()


def test_a_result_whose_file_changed_size_since_is_neither_done_nor_written_over(tmp_path):
    """A logged file of another size than the log says it was written with is the user's, as --fresh takes it:
    not done, and refused with one line rather than overwritten; one logged only as about to be written (a
    write a kill cut short) is selfseg's, whatever its size."""
    folder, src, out = _one_logged_output(tmp_path)
    named = {str(src): OutputName("x.png", "x")}
    files = [out / "x.json", out / "x.png"]
    data = (out / "x.png").read_bytes()
    (out / "x.png").write_bytes(b"another file put there")  # not the size it was written with
    assert folder.done([str(src)], named) == set()
    for run in (folder, RunFolder(out, {"config": {"a": 1}})):  # what this run logged, and a later run reading it
        assert run.foreign(files) == out / "x.png"
        assert run.refused([str(src)], lambda s: files) == {str(src): (
            f"{out / 'x.png'} is there already and its size is no longer the one a selfseg run in {out}/ wrote; "
            f"move it, or write to another --out")}
        with pytest.raises(FileExistsError):
            run.begin(named[str(src)], str(src), files)
    (out / "x.png").write_bytes(data)
    os.utime(out / "x.png", ns=(1, 1))  # the same file, copied without its times: still done, and selfseg's
    assert folder.done([str(src)], named) == {str(src)} and folder.foreign(files) is None
    folder.begin(named[str(src)], str(src), files)  # about to be written again, then killed mid-write
    (out / "x.png").write_bytes(b"half a PNG")
    later = RunFolder(out, {"config": {"a": 1}})
    assert later.foreign(files) is None and later.done([str(src)], named) == set()  # redone, in place


def test_fresh_keeps_a_file_put_in_place_of_an_output(tmp_path, capsys):
    folder, src, out = _one_logged_output(tmp_path)
    (out / "x.png").write_bytes(b"my own notes")  # the user's file now, where selfseg wrote one
    folder.close()
    RunFolder(out, {"config": {"a": 2}}).start(resume=False, fresh=True)
    assert (out / "x.png").read_bytes() == b"my own notes" and not (out / "x.json").exists()
    assert "--fresh kept 1 file(s)" in capsys.readouterr().err


def test_fresh_deletes_its_files_in_a_folder_copied_without_times(tmp_path, capsys):
    folder, src, out = _one_logged_output(tmp_path)
    folder.close()
    for f in ("x.json", "x.png"):
        os.utime(out / f, ns=(1, 1))  # as cp -r or an unpacked archive leaves them
    RunFolder(out, {"config": {"a": 2}}).start(resume=False, fresh=True)
    assert not (out / "x.json").exists() and not (out / "x.png").exists()
    assert "kept" not in capsys.readouterr().err


def test_a_file_system_without_locks_runs_unlocked(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    folder = RunFolder(tmp_path / "o", {"config": {}})
    folder.start(resume=True, fresh=False)  # alone, as where there are no locks at all
    folder.close()


def test_two_runs_writing_over_their_own_files_do_not_reread_the_log_per_image(tmp_path, monkeypatch):
    """A rerun over a folder whose files every run logged, by two processes appending to one log (torchrun
    ranks): the files are known, so the log is not read again for each image; a file no run logged still is
    caught after the other run's lines."""
    import selfseg.runs as runs

    out = tmp_path / "o"
    first, second = RunFolder(out, {"config": {}}), RunFolder(out, {"config": {}})
    first.start(resume=False, fresh=False)
    second.join()
    src = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(src)
    names = [OutputName(f"{k}.png", str(k)) for k in range(40)]
    for k, name in enumerate(names):  # the first pass writes every file
        folder = (first, second)[k % 2]
        folder.begin(name, str(src), [out / f"{k}.json"])
        (out / f"{k}.json").write_text("{}")
        folder.record(name, str(src), [out / f"{k}.json"])
    reads = []
    real = runs.read_log
    monkeypatch.setattr(runs, "read_log", lambda folder: reads.append(1) or real(folder))
    for k, name in enumerate(names):  # the rerun: every file is there, and logged
        folder = (first, second)[k % 2]
        folder.begin(name, str(src), [out / f"{k}.json"])
        folder.record(name, str(src), [out / f"{k}.json"])
    assert len(reads) <= 2
    (out / "theirs.json").write_text("{}")
    with pytest.raises(FileExistsError):
        first.begin(OutputName("t.png", "t"), str(src), [out / "theirs.json"])
    first.close(), second.close()


def test_temporaries_are_cleaned_only_when_no_other_run_holds_the_folder(tmp_path):
    out = tmp_path / "o"
    first = RunFolder(out, {"config": {}})
    first.start(resume=False, fresh=False)  # still working: about to write x.json in out/ and out/sub/
    (out / "sub").mkdir()
    first.begin(OutputName("x.png", "x"), str(tmp_path / "x.png"), [out / "x.json", out / "sub" / "x.json"])
    tmp, tmp_sub = out / ".x.json.ab12cd_9.tmp", out / "sub" / ".x.json.zz12cd_9.tmp"
    manifest_tmp = out / f".{MANIFEST}.q1w2e3r4.tmp"
    for t in (tmp, tmp_sub, manifest_tmp):
        t.write_text("{")
    # not selfseg's to remove: a name its writes never use, and temporaries of files no log here names (the
    # user's own, or another run's in a folder of its own inside this one)
    mine = [out / ".notes.txt.tmp", out / ".draft.Q1w2E3r4.tmp", out / "sub" / ".y.json.ab12cd_9.tmp"]
    for t in mine:
        t.write_text("user's")
    second = RunFolder(out, {"config": {}})
    second.start(resume=True, fresh=False)
    assert tmp.exists()
    first.close(), second.close()
    RunFolder(out, {"config": {}}).start(resume=True, fresh=False)
    assert not tmp.exists() and not tmp_sub.exists() and not manifest_tmp.exists() and all(t.exists() for t in mine)


def test_settings_leave_out_what_cannot_change_a_result():
    from selfseg.config import load_config
    from selfseg.runs import run_settings

    base = run_settings(load_config(SMOKE), "segment")
    same = run_settings(load_config(SMOKE, ["run.batch_size=9", "segment.grounded_sam2.boxes_per_call=2",
                                            "segment.grounded_sam2.images_per_call=4",
                                            "captioning.max_cross_attention_gib=1", "model.cache_dir=/x"]),
                        "segment")
    assert same == base
    assert run_settings(load_config(SMOKE, ["captioning.cycles=3"]), "segment") != base
    tag_settings = run_settings(load_config(SMOKE), "tag")
    assert run_settings(load_config(SMOKE, ["segment.segmenter=clipseg"]), "tag") == tag_settings
    assert base["config"]["vlm"]["dtype"] in ("float32", "bfloat16")  # "auto" as it resolves here


@pytest.fixture(scope="module")
def six(tmp_path_factory, ade_images):
    """Six distinct photos: the three ADE20K images and a mirrored crop of each."""
    d = tmp_path_factory.mktemp("six")
    paths = []
    for i, p in enumerate(ade_images):
        im = Image.open(p).convert("RGB")
        im.thumbnail((256, 256))
        im.save(d / f"p{i}a.png")
        ImageOps.mirror(im).crop((0, 0, im.width * 3 // 4, im.height * 3 // 4)).save(d / f"p{i}b.png")
        paths += [d / f"p{i}a.png", d / f"p{i}b.png"]
    return paths


def _segment(paths, out, *extra):
    return main(["segment", *map(str, paths), "--config", SMOKE, "--out", str(out), "-q", *extra])


def _strip(d):
    """A result without what describes the run rather than the image (wall times, batch size)."""
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in ("timings", "batch_size")}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def _results(out):
    """Every result in a folder: the JSON without run details, and the bytes of every image file."""
    res = {}
    for e in read_log(out):
        if e["state"] != "done":
            continue
        res[e["key"]] = (_strip(json.loads((out / e["json"]).read_text())),
                         {f: (out / f).read_bytes() for f in e["files"] if f.endswith(".png")})
    return res


@pytest.fixture(scope="module")
def uninterrupted(six, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "out"
    assert _segment(six, out, "--batch-size", "2") == 0
    return out, _results(out)


def test_results_do_not_depend_on_batch_size_or_order(six, tmp_path):
    """Tagging: BLIP encodes and captions a batch at once. Batch sizes 1, 2, 4 and 6, three orders: the same
    results. (Segmenting batches its image encoders too: the resume test below segments at batch sizes 2 and 4
    and compares the files byte for byte.)"""
    runs = {}
    for size, order in (("2", six), ("1", six), ("6", six[::-1]), ("4", [six[i] for i in (3, 0, 5, 1, 4, 2)])):
        out = tmp_path / f"bs{size}"
        assert main(["tag", *map(str, order), "--config", SMOKE, "--out", str(out), "-q", "--batch-size", size]) == 0
        runs[size] = _results(out)
    want = runs.pop("2")
    # Not vacuous: the six photos give six different captions.
    assert len(want) == 6 and len({json.dumps(j["clusters"]) for j, _ in want.values()}) == 6
    for size, got in runs.items():
        assert got == want, f"batch size {size}"


def test_a_run_killed_at_any_point_resumes_to_the_uninterrupted_result(six, uninterrupted, tmp_path):
    """A kill after k of 6 images leaves k logged results, maybe the next image's label PNG without its JSON,
    and a temporary file of a write in flight. --resume (another batch size) finishes the same results."""
    whole, want = uninterrupted
    assert len({json.dumps(j["instances"]) for j, _ in want.values()}) == 6  # six photos, six results
    entries = [e for e in read_log(whole) if e["state"] == "done"]
    for k in range(6):
        out = tmp_path / f"killed_after_{k}"
        out.mkdir()
        shutil.copy(whole / MANIFEST, out / MANIFEST)
        for e in entries[:k]:
            for f in e["files"]:
                shutil.copy(whole / f, out / f)
            with open(out / LOG, "a") as log:
                log.write(json.dumps({**e, "state": "writing"}) + "\n" + json.dumps(e) + "\n")
        nxt = entries[k]
        with open(out / LOG, "a") as log:
            log.write(json.dumps({**nxt, "state": "writing"}) + "\n")
        (out / nxt["files"][1]).write_bytes(b"half a PNG")  # label map written, JSON not yet
        (out / f".{nxt['json']}.x1y2z3_4.tmp").write_text("{")
        assert _segment(six, out, "--resume", "--batch-size", "4") == 0
        assert _results(out) == want, f"killed after {k}"
        assert not list(out.glob(".*.tmp"))


def test_a_users_file_where_an_output_would_go_is_kept_and_only_that_image_fails(ade_images, tmp_path, capsys):
    """--out holds the photos and, beside one, the user's own file of an output's name: that image fails with
    one line, the others are segmented, and a rerun over selfseg's own files is no problem."""
    for src in ade_images[:2]:
        shutil.copy(src, tmp_path / src.name)
    stem = ade_images[0].stem
    mine = tmp_path / f"{stem}_overlay.png"
    mine.write_bytes(b"the user's drawing")
    photos = [tmp_path / p.name for p in ade_images[:2]]
    capsys.readouterr()
    assert _segment(photos, tmp_path) == 1
    err = capsys.readouterr().err
    assert "1/2 images segmented" in err  # refused before it was computed, the other written
    assert mine.read_bytes() == b"the user's drawing"
    assert f"{mine} is there already and no selfseg run in {tmp_path}/ wrote it" in err
    assert (tmp_path / f"{ade_images[1].stem}.json").is_file() and not (tmp_path / f"{stem}.json").exists()
    mine.unlink()
    assert _segment(photos, tmp_path) == 0  # the second image's files are selfseg's: written over


def test_an_output_replaced_by_a_file_of_another_size_is_kept_by_every_mode(ade_images, tmp_path, capsys):
    """--resume, a plain run and --fresh agree: an output the user replaced with a file of another size is
    theirs, that image fails with one line, and the other is done."""
    photos = ade_images[:2]
    out = tmp_path / "out"
    assert _segment(photos, out) == 0
    mine = out / f"{photos[0].stem}_overlay.png"
    shutil.copy(out / f"{photos[1].stem}_overlay.png", mine)  # another picture, of another size
    theirs = mine.read_bytes()
    capsys.readouterr()
    for extra in (["--resume"], [], ["--fresh"]):
        assert _segment(photos, out, *extra) == 1, extra
        err = capsys.readouterr().err
        assert f"error: {photos[0]}: could not write outputs ({mine} is there already and " in err, extra
        assert "1/2 images segmented" in err and mine.read_bytes() == theirs, extra
    assert "--fresh kept 1 file(s)" in err


def test_same_stem_in_two_folders_gives_two_results_and_resume_keeps_both(repo, ade_images, tmp_path, capsys):
    a, b = tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.jpg"
    for p, src in ((a, ade_images[0]), (b, ade_images[1])):
        p.parent.mkdir()
        Image.open(src).convert("RGB").save(p)
    out = tmp_path / "out"
    assert _segment([a, b], out) == 0
    ja, jb = json.loads((out / "a" / "photo.json").read_text()), json.loads((out / "b" / "photo.json").read_text())
    assert (ja["key"], ja["source"], jb["key"], jb["source"]) == ("a/photo.png", str(a), "b/photo.jpg", str(b))
    assert ja["instances"] != jb["instances"]
    capsys.readouterr()
    assert _segment([a, b], out, "--resume") == 0
    assert "resuming: 2 of 2" in capsys.readouterr().err
    (out / "a" / "photo_overlay.png").unlink()  # a file its JSON names is gone: only that input is redone
    assert _segment([a, b], out, "--resume") == 0
    cap = capsys.readouterr()
    assert "resuming: 1 of 2" in cap.err and str(a) in cap.out and str(b) not in cap.out


def test_resume_with_other_settings_is_refused_and_fresh_starts_over(repo, ade_images, tmp_path, capsys):
    out = tmp_path / "out"
    one = ade_images[:1]
    assert _segment(one, out) == 0
    capsys.readouterr()
    assert _segment(one, out, "--resume", "segment.segmenter=clipseg") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"selfseg: error: {out}/ holds a run with other settings (segment.segmenter: "
                       f'"grounded_sam2" -> "clipseg"); --resume only continues the same run: drop --resume to '
                       f"overwrite, or use --fresh to start over")
    # The batch size cannot change a result, so it is not part of the run's identity.
    assert _segment(one, out, "--resume", "--batch-size", "3") == 0
    assert "resuming: 1 of 1" in capsys.readouterr().err
    assert _segment(one, out, "--resume", "--fresh") == 2
    assert "expected one of them" in capsys.readouterr().err
    stale = out / f"{ade_images[0].stem}_overlay.png"
    assert _segment(one, out, "--fresh", "segment.segmenter=clipseg") == 0
    assert {e["run"] for e in read_log(out)} == {json.loads((out / MANIFEST).read_text())["run"]}
    assert stale.is_file()  # written again by this run, after --fresh deleted the earlier one
    assert json.loads((out / f"{ade_images[0].stem}.json").read_text())["segmenter"] == "clipseg"


def test_own_outputs_in_an_input_folder_are_not_inputs(repo, ade_images, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in ade_images[:2]:
        Image.open(p).convert("RGB").save(photos / f"{p.stem}.png")
    assert _segment([photos], photos) == 0
    assert main(["tag", str(photos), "--config", SMOKE, "--out", str(photos), "-q"]) == 2
    # tag's overlay would be <stem>.png, the input itself: refused before any work ...
    assert "would overwrite the input" in capsys.readouterr().err
    capsys.readouterr()
    assert _segment([photos], photos) == 0  # ... and segment run again takes only the two photos
    cap = capsys.readouterr()
    assert "note: 4 file(s) that selfseg wrote" in cap.err and "2/2 images segmented" in cap.err
    assert sorted(p.name for p in photos.glob("*_labels*")) == sorted(f"{p.stem}_labels.png" for p in ade_images[:2])
    # A file named on the command line is an input even if selfseg wrote it.
    assert _segment([photos / f"{ade_images[0].stem}_overlay.png"], tmp_path / "o2") == 0
    # A glob over the run folder takes neither its outputs nor its own manifest and log as photos.
    capsys.readouterr()
    assert _segment([str(photos) + "/*"], tmp_path / "o3") == 0
    assert "2/2 images segmented" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^--out .*/file/sub: cannot write there \(Not a directory\)$"):
        RunFolder(tmp_path / "file" / "sub", {"config": {}}).start(resume=False, fresh=False)


def test_an_unreadable_config_is_one_line(tmp_path, monkeypatch):
    from pathlib import Path

    from selfseg.config import load_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("captioning: {cycles: 2}\n")
    real = Path.read_text

    def read_text(self, *a, **k):
        if self == cfg:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(ConfigError, match=r"cfg.yaml: cannot read it \(Permission denied\)"):
        load_config(cfg)


# ------------------------------------------------------------------ names and resumes a user runs into


def test_a_file_name_that_is_not_utf8_is_an_input_like_any_other(six, tmp_path, capsys):
    """A Latin-1 name reaches Python with its byte escaped; names are measured and hashed as its bytes."""
    import os

    photos = tmp_path / "photos"
    photos.mkdir()
    latin1 = photos / os.fsdecode(b"caf\xe9.png")
    shutil.copy(six[0], latin1)
    shutil.copy(six[1], photos / "ok.png")
    out = tmp_path / "out"
    assert main(["tag", str(photos), "--config", SMOKE, "--out", str(out), "-q"]) == 0
    assert {e["key"] for e in read_log(out)} == {latin1.name, "ok.png"}
    assert (out / f"{latin1.stem}.json").is_file()
    long_name = os.fsdecode(b"\xe9" * 240) + ".png"
    stem = output_names([str(photos / long_name)])[str(photos / long_name)].stem
    assert len(os.fsencode(stem)) <= 200
    capsys.readouterr()
    assert main(["tag", str(photos), "--config", SMOKE, "--out", str(out), "-q", "--resume"]) == 0
    assert "resuming: 2 of 2" in capsys.readouterr().err


def test_an_input_named_like_the_run_manifest_does_not_overwrite_it(six, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(six[0], photos / "selfseg-run.png")
    stem = output_names([str(photos / "selfseg-run.png")])[str(photos / "selfseg-run.png")].stem
    assert stem.startswith("selfseg-run-") and stem != "selfseg-run"
    out = tmp_path / "out"
    assert main(["tag", str(photos), "--config", SMOKE, "--out", str(out), "-q"]) == 0
    assert "settings" in json.loads((out / MANIFEST).read_text())
    capsys.readouterr()
    assert main(["tag", str(photos), "--config", SMOKE, "--out", str(out), "-q", "--resume"]) == 0
    assert "resuming: 1 of 1" in capsys.readouterr().err


def test_a_run_that_writes_nothing_leaves_the_folder_to_the_run_before(tmp_path):
    """A run that fails before its first result (a model that cannot load) must not take the folder over:
    the earlier run still resumes."""
    folder, src, out = _one_logged_output(tmp_path)
    manifest = (out / MANIFEST).read_text()
    other = RunFolder(out, {"config": {"a": 99}})
    other.start(resume=False, fresh=False)
    other.close()
    assert (out / MANIFEST).read_text() == manifest
    again = RunFolder(out, {"config": {"a": 1}})
    again.start(resume=True, fresh=False)
    assert again.done([str(src)], {str(src): OutputName("x.png", "x")}) == {str(src)}
    # the first result of a run with other settings makes the folder that run's
    other.start(resume=False, fresh=False)
    other.record(OutputName("x.png", "x"), str(src), [out / "x.json", out / "x.png"])
    assert json.loads((out / MANIFEST).read_text())["settings"] == {"config": {"a": 99}}


def test_a_key_is_rewritten_only_while_no_other_run_works_in_the_folder(tmp_path):
    """Re-keying rewrites the JSON; another run in the folder may be writing it: then the input is redone."""
    folder, src, out = _one_logged_output(tmp_path)
    moved = {str(src): OutputName("in/x.png", "x")}  # same output name, another key
    other = RunFolder(out, {"config": {"a": 1}})
    other.start(resume=True, fresh=False)  # still working
    mine = RunFolder(out, {"config": {"a": 1}})
    mine.start(resume=True, fresh=False)
    assert mine.done([str(src)], moved) == set() and json.loads((out / "x.json").read_text())["key"] == "x.png"
    other.close(), folder.close()
    assert mine.done([str(src)], moved) == {str(src)} and json.loads((out / "x.json").read_text())["key"] == "in/x.png"


def test_the_lock_file_marks_the_folder_where_there_are_no_file_locks(tmp_path, monkeypatch):
    import sys

    from selfseg.runs import LOCK

    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows
    RunFolder(tmp_path / "o", {"config": {}}).start(resume=False, fresh=False)
    assert (tmp_path / "o" / LOCK).is_file()


def test_an_unreadable_manifest_is_named_as_such(tmp_path):
    _, _, out = _one_logged_output(tmp_path)
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(ConfigError, match=rf"holds a run with other settings \(its {MANIFEST} is unreadable\)"):
        RunFolder(out, {"config": {"a": 1}}).start(resume=True, fresh=False)


def test_a_refused_resume_names_long_values_briefly(tmp_path):
    _, _, out = _one_logged_output(tmp_path)
    words = [f"word{i}" for i in range(100)]
    with pytest.raises(ConfigError) as refused:
        RunFolder(out, {"config": {"a": 1, "vocabulary": words}}).start(resume=True, fresh=False)
    message = str(refused.value)
    assert 'a run with other settings (vocabulary: null -> ["word0", "word1", ' in message
    assert "word99" not in message and len(message) - len(str(out)) < 220
    # two long values that differ late: each is shown where they differ
    from selfseg.runs import differences

    [line] = differences({"vocabulary": words}, {"vocabulary": [*words[:90], "changed", *words[91:]]})
    before, after = line.removeprefix("vocabulary: ").split(" -> ")
    assert '"word90"' in before and '"changed"' in after and "word0" not in line and len(line) < 160


def test_one_file_under_two_names_has_two_results_and_both_resume(tmp_path):
    folder, src, out = _one_logged_output(tmp_path)
    link = src.parent / "y.png"
    link.symlink_to(src.name)
    (out / "y.json").write_text(json.dumps({"key": "y.png"}))
    (out / "y.png").write_bytes(b"")
    folder.record(OutputName("y.png", "y"), str(link), [out / "y.json", out / "y.png"])
    named = {str(src): OutputName("x.png", "x"), str(link): OutputName("y.png", "y")}
    assert folder.done([str(src), str(link)], named) == {str(src), str(link)}


def test_adding_an_input_from_another_folder_keeps_the_earlier_results(six, tmp_path, capsys):
    """The inputs' common folder moves, so the earlier inputs' keys change but not their output names: their
    results are kept and carry the key a run of all the inputs gives them."""
    ok, other = tmp_path / "ok", tmp_path / "other"
    ok.mkdir(), other.mkdir()
    for p in six[:2]:
        shutil.copy(p, ok / p.name)
    shutil.copy(six[2], other / "new.png")
    out, whole = tmp_path / "out", tmp_path / "whole"
    assert main(["tag", str(ok), "--config", SMOKE, "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["tag", str(ok), str(other / "new.png"), "--config", SMOKE, "--out", str(out), "-q",
                 "--resume"]) == 0
    assert "resuming: 2 of 3" in capsys.readouterr().err
    assert main(["tag", str(ok), str(other / "new.png"), "--config", SMOKE, "--out", str(whole), "-q"]) == 0
    got, want = _results(out), _results(whole)  # the log still holds the first run's entries too
    assert {"ok/" + six[0].name, "other/new.png"} <= set(want) and {k: got[k] for k in want} == want


def test_a_full_disk_stops_the_run_and_keeps_what_is_written(six, tmp_path, monkeypatch, capsys):
    import errno

    import selfseg.pipeline as pipeline

    out = tmp_path / "out"
    real, calls = pipeline.write_outputs, []

    def write_outputs(item, *a, **k):
        calls.append(item.source)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(item, *a, **k)

    monkeypatch.setattr(pipeline, "write_outputs", write_outputs)
    assert main(["tag", *map(str, six[:4]), "--config", SMOKE, "--out", str(out), "-q", "--batch-size", "1"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "continue with --resume" in err and len(calls) == 2
    monkeypatch.setattr(pipeline, "write_outputs", real)
    assert main(["tag", *map(str, six[:4]), "--config", SMOKE, "--out", str(out), "-q", "--resume"]) == 0
    assert "resuming: 1 of 4" in capsys.readouterr().err


def test_two_torchrun_processes_write_what_one_process_writes(six, tmp_path):
    """Under torchrun each rank takes every N-th batch on its own device; the folder ends as one process
    leaves it, and a resumed sharded run finds every result. One thread per process, in both (float sums,
    hence scores, can differ in the last bits between thread counts)."""
    import os
    import subprocess
    import sys

    def segment(launcher, out):
        return subprocess.run([sys.executable, *launcher, "-m", "selfseg", "segment", *map(str, six), "--config",
                               SMOKE, "--out", str(out), "-q", "--batch-size", "2"], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

    assert segment([], tmp_path / "one").returncode == 0
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    r = segment(torchrun, tmp_path / "dist")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "rank 0/2: 4/4 images segmented" in r.stderr and "rank 1/2: 2/2 images segmented" in r.stderr
    assert r.stderr.count("NOTE: this config uses tiny") == 1 and "NOTE" not in r.stdout
    want = _results(tmp_path / "one")
    assert len({json.dumps(j["instances"]) for j, _ in want.values()}) == 6  # six photos, six results
    assert _results(tmp_path / "dist") == want
    r = subprocess.run([sys.executable, *torchrun, "-m", "selfseg", "segment", *map(str, six), "--config", SMOKE,
                        "--out", str(tmp_path / "dist"), "-q", "--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "rank 0/2: resuming: 4 of 4" in r.stderr and "rank 1/2: resuming: 2 of 2" in r.stderr


def test_a_photo_put_where_selfseg_once_wrote_an_output_is_the_users(six, tmp_path, capsys):
    """The log names a.png as a.jpg's overlay; the user deleted it and saved a photo of that name there: it is
    an input now, and nothing overwrites it."""
    ph = tmp_path / "ph"
    ph.mkdir()
    Image.open(six[0]).save(ph / "a.jpg")
    assert main(["tag", str(ph / "a.jpg"), "--config", SMOKE, "--out", str(ph), "-q"]) == 0
    assert own_outputs([str(ph / "a.png"), str(ph / "a.json")]) == {str(ph / "a.png"), str(ph / "a.json")}
    (ph / "a.png").unlink()
    shutil.copy(six[1], ph / "a.png")
    photo = (ph / "a.png").read_bytes()
    assert own_outputs([str(ph / "a.png"), str(ph / "a.json")]) == {str(ph / "a.json")}
    capsys.readouterr()
    assert main(["tag", str(ph), "--config", SMOKE, "--out", str(ph), "-q"]) == 0
    assert "2/2 images tagged" in capsys.readouterr().err and (ph / "a.png").read_bytes() == photo


def test_a_sharded_resume_keeps_results_that_only_changed_key(six, tmp_path, capsys):
    """As a single-process resume does: adding an input from another folder re-keys the earlier results, even
    though the other ranks work in the folder too once they have joined. Rank 1 is stood in for by a second
    process's view of the folder, joining at the first barrier as a torchrun rank does."""
    import argparse

    from selfseg.cli import _run_sharded
    from selfseg.pipeline import SelfSeg
    from selfseg.runs import RunFolder, output_names, run_settings

    ok, other = tmp_path / "ok", tmp_path / "other"
    ok.mkdir(), other.mkdir()
    for p in six[:2]:
        shutil.copy(p, ok / p.name)
    shutil.copy(six[2], other / "new.png")
    out = tmp_path / "out"
    assert main(["tag", str(ok), "--config", SMOKE, "--out", str(out), "-q"]) == 0
    capsys.readouterr()

    seg = SelfSeg.from_config(SMOKE)
    sources = sorted(str(p) for p in ok.iterdir()) + [str(other / "new.png")]
    names = output_names(sources)
    settings = run_settings(seg.config, "tag")
    rank1 = RunFolder(out, settings)

    class TwoRanks:  # rank 0 of two; the other rank joins the folder at the first barrier
        rank, world = 0, 2

        def gather(self, value):
            if rank1._lock_fd is None:
                rank1.join()
            return [value, None if not isinstance(value, int) else 0]

        def close(self, together=False):
            rank1.close()

    ns = argparse.Namespace(resume=True, fresh=False, batch_size=None, quiet=True)
    code = _run_sharded(ns, seg, sources, names, RunFolder(out, settings), out, False, TwoRanks())
    assert code == 0
    # rank 0's share is batches 0, 2, ... of the default batch size: here every input
    assert "resuming: 2 of 3" in capsys.readouterr().err
    assert {names[s].key for s in sources} == {j["key"] for j, _ in _results(out).values()} \
        == {f"ok/{six[0].name}", f"ok/{six[1].name}", "other/new.png"}
