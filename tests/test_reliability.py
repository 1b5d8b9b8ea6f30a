"""The reliability battery: what a hostile but realistic user does to the command line, one row per case,
each with the exit code and the outcome it must have. Bad inputs, outputs that would destroy inputs,
broken configs, interrupted and resumed runs, two runs on one folder, line-oriented commands.

Runs on the smoke config (tiny random-init models built in code, so captions and masks are noise). Cases
that could hang or need a real process (a FIFO, a kill, two concurrent writers, another working directory)
run `python -m selfseg` in a child with a timeout; the rest call `main()` in-process.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from selfseg.cli import main
from selfseg.runs import read_log

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke.yaml")
PHOTO = REPO / "examples" / "images" / "ADE_val_00000001.jpg"
ADE = REPO / "examples" / "ade20k_sample"
FAST = ["clustering.scales=[128]", "captioning.cycles=1"]  # tiny inputs to the tiny models: quick, same code


@dataclass
class Run:
    code: int
    out: str
    err: str
    tmp: Path


@dataclass
class Case:
    """argv(tmp) builds what the case needs under tmp and returns the command line (no `selfseg`);
    check(run) asserts the outcome beyond the exit code; child: run in a subprocess with a timeout."""

    name: str
    argv: Callable[[Path], list[str]]
    code: int
    check: Callable[[Run], None] = lambda run: None
    child: bool = False
    env: dict[str, str] = field(default_factory=dict)


def good(tmp: Path) -> str:
    p = tmp / "good.png"
    if not p.exists():
        im = Image.open(PHOTO).convert("RGB")
        im.thumbnail((160, 160))
        im.save(p)
    return str(p)


def tag(tmp: Path, *inputs: str, out: str | None = None, extra: tuple = ()) -> list[str]:
    return ["tag", *inputs, "--config", SMOKE, "--out", out or str(tmp / "out"), "-q", *FAST, *extra]


def segment(tmp: Path, *inputs: str, out: str | None = None, extra: tuple = ()) -> list[str]:
    return ["segment", *inputs, "--config", SMOKE, "--out", out or str(tmp / "out"), "-q", *FAST, *extra]


def one_error_line(fragment: str) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        lines = [ln for ln in run.err.splitlines() if ln.startswith(("error:", "selfseg: error:"))]
        assert len(lines) == 1 and fragment in lines[0], run.err
        assert "Traceback" not in run.err

    return check


def good_done_and(fragment: str) -> Callable[[Run], None]:
    """The bad input is one error line, and the good image beside it still got its result."""

    def check(run: Run) -> None:
        one_error_line(fragment)(run)
        assert (run.tmp / "out" / "good.json").is_file()

    return check


# ------------------------------------------------------------------------------------------- inputs

def _write(name: str, data: bytes) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        (tmp / name).write_bytes(data)
        return str(tmp / name)

    return make


def _truncated_jpeg(tmp: Path) -> str:
    src = tmp / "full.jpg"
    Image.open(PHOTO).convert("RGB").save(src, quality=90)
    data = src.read_bytes()
    (tmp / "cut.jpg").write_bytes(data[: len(data) // 3])
    src.unlink()
    return str(tmp / "cut.jpg")


def _tiny_image(tmp: Path) -> str:
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp / "tiny.png")
    return str(tmp / "tiny.png")


def _folder_named_jpg(tmp: Path) -> str:
    (tmp / "folder.jpg").mkdir()
    return str(tmp / "folder.jpg")


def _symlink_loop(tmp: Path) -> str:
    os.symlink(tmp / "loop_b.jpg", tmp / "loop_a.jpg")
    os.symlink(tmp / "loop_a.jpg", tmp / "loop_b.jpg")
    return str(tmp / "loop_a.jpg")


def _fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "pipe.jpg")
    return str(tmp / "pipe.jpg")


def _animated_gif(tmp: Path) -> str:
    frames = [Image.new("RGB", (64, 48), (40 * i, 90, 200 - 40 * i)) for i in range(3)]
    frames[0].save(tmp / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    return str(tmp / "anim.gif")


def _bad_input(make: Callable[[Path], str]) -> Callable[[Path], list[str]]:
    return lambda tmp: tag(tmp, good(tmp), make(tmp))


def _gif_noted(run: Run) -> None:
    notes = json.loads((run.tmp / "out" / "anim.json").read_text())["notes"]
    assert any("3 frames" in n and "first frame" in n for n in notes), notes


INPUTS = [
    Case("missing file", _bad_input(lambda tmp: str(tmp / "nope.jpg")), 1, good_done_and("nope.jpg: no such file")),
    Case("text file named .jpg", _bad_input(_write("notes.jpg", b"not an image at all\n")), 1,
         good_done_and("notes.jpg: not an image")),
    Case("empty file", _bad_input(_write("empty.png", b"")), 1, good_done_and("empty.png: an empty file")),
    Case("truncated JPEG", _bad_input(_truncated_jpeg), 1, good_done_and("cut.jpg: corrupt or truncated")),
    Case("image smaller than a patch", _bad_input(_tiny_image), 1, good_done_and("smaller than one 16-px patch")),
    Case("folder named like an image: a folder, expanded", _bad_input(_folder_named_jpg), 0,
         lambda run: (run.tmp / "out" / "good.json").is_file() or pytest.fail(run.err)),
    Case("symlink loop", _bad_input(_symlink_loop), 1, good_done_and("loop_a.jpg: symbolic link loop")),
    Case("FIFO among the inputs", _bad_input(_fifo), 1, good_done_and("pipe.jpg: is a FIFO"), child=True),
    Case("glob matching nothing", lambda tmp: tag(tmp, good(tmp), str(tmp / "none*.jpg")), 1,
         good_done_and("no such file")),
    Case("empty folder", lambda tmp: (tmp / "empty").mkdir() or tag(tmp, str(tmp / "empty")), 2,
         one_error_line("no input images given")),
    Case("animated GIF", lambda tmp: tag(tmp, _animated_gif(tmp)), 0, _gif_noted),
]


# ------------------------------------------------------------------------------------------ outputs

def _photo_in(folder: Path) -> str:
    folder.mkdir(exist_ok=True)
    p = folder / "photo.png"
    Image.open(good(folder.parent)).save(p)
    return str(p)


def _input_untouched(run: Run) -> None:
    one_error_line("would overwrite the input")(run)
    assert Image.open(run.tmp / "photos" / "photo.png").size == Image.open(run.tmp / "good.png").size
    assert not (run.tmp / "photos" / "photo.json").exists()


def _twice_into_the_input_folder(tmp: Path) -> list[str]:
    photo = _photo_in(tmp / "photos")
    assert main(segment(tmp, str(tmp / "photos"), out=str(tmp / "photos"))) == 0
    assert Path(photo).is_file()
    return segment(tmp, str(tmp / "photos"), out=str(tmp / "photos"))


def _only_the_photo_again(run: Run) -> None:
    assert "1/1 images segmented" in run.err and "not taken as inputs" in run.err
    assert not list((run.tmp / "photos").glob("*_labels_labels.png"))


def _output_name_is_the_input_on_this_disk(tmp: Path) -> list[str]:
    """On a case-insensitive disk `X.png` (tag's overlay for `X.PNG`) is the photo itself; a link stands in
    for that here: the check must go by file identity, not by name."""
    photos = tmp / "photos"
    photos.mkdir()
    Image.open(good(tmp)).save(photos / "X.PNG", format="PNG")
    os.symlink(photos / "X.PNG", photos / "X.png")
    return tag(tmp, str(photos / "X.PNG"), out=str(photos))


def _photo_kept(run: Run) -> None:
    one_error_line("would overwrite the input")(run)
    assert Image.open(run.tmp / "photos" / "X.PNG").size == Image.open(run.tmp / "good.png").size


OUTPUTS = [
    Case("an output that is the input under another name", _output_name_is_the_input_on_this_disk, 2, _photo_kept),
    Case("tag output would overwrite the input photo",
         lambda tmp: tag(tmp, _photo_in(tmp / "photos"), out=str(tmp / "photos")), 2, _input_untouched),
    Case("segment twice into the input folder", _twice_into_the_input_folder, 0, _only_the_photo_again),
    Case("--out is a file", lambda tmp: (tmp / "afile").write_text("x") and tag(tmp, good(tmp), out=str(tmp / "afile")),
         2, one_error_line("exists and is not a folder")),
]


# ------------------------------------------------------------------------------------------ configs

def _config_file(text: str) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        (tmp / "c.yaml").write_text(text)
        return ["tag", good(tmp), "--config", str(tmp / "c.yaml"), "--out", str(tmp / "out"), "-q"]

    return argv


def _benchmark_elsewhere(tmp: Path) -> list[str]:
    return ["benchmark", str(REPO / "configs" / "benchmarks" / "smoke.yaml"), "--out", str(tmp / "run"), "-q",
            "--limit", "1"]


def _benchmark_ran(run: Run) -> None:
    assert (run.tmp / "run" / "results.json").is_file(), run.err


CONFIGS = [
    Case("unknown config key", lambda tmp: tag(tmp, good(tmp), extra=("captioning.cycels=3",)), 2,
         one_error_line("cycles")),
    Case("bad config value", lambda tmp: tag(tmp, good(tmp), extra=("captioning.cycles=-1",)), 2,
         one_error_line("captioning.cycles")),
    Case("unknown segmenter", lambda tmp: segment(tmp, good(tmp), extra=("segment.segmenter=magic",)), 2,
         one_error_line("unknown segmenter 'magic'")),
    Case("missing config file", lambda tmp: ["tag", good(tmp), "--config", str(tmp / "no.yaml")], 2,
         one_error_line("no.yaml")),
    Case("YAML syntax error", _config_file("captioning: [unclosed\n"), 2, one_error_line("c.yaml")),
    Case("config base that loops", _config_file("base: c.yaml\n"), 2, one_error_line("loops")),
    Case("benchmark config by absolute path from another folder", _benchmark_elsewhere, 0, _benchmark_ran,
         child=True),
]


# --------------------------------------------------------------------------- interrupted and resumed runs

def _three_photos(tmp: Path) -> list[str]:
    paths = []
    for i, p in enumerate(sorted((ADE / "images").glob("*.jpg"))):
        im = Image.open(p).convert("RGB")
        im.thumbnail((160, 160))
        im.save(tmp / f"p{i}.png")
        paths.append(str(tmp / f"p{i}.png"))
    return paths


def _resume_other_settings(tmp: Path) -> list[str]:
    photos = _three_photos(tmp)
    assert main(segment(tmp, *photos)) == 0
    return segment(tmp, *photos, extra=("--resume", "segment.segmenter=clipseg"))


def _resume_truncated(tmp: Path) -> list[str]:
    photos = _three_photos(tmp)
    assert main(segment(tmp, *photos)) == 0
    js = tmp / "out" / "p1.json"
    js.write_text(js.read_text()[:100])
    return segment(tmp, *photos, extra=("--resume",))


def _kept_the_cut_one(run: Run) -> None:
    """A JSON of another size than it was written with: taken for the user's, as --fresh takes it (a lost
    write cannot be told from a file put in its place), so that image fails with one line and it is kept."""
    js = run.tmp / "out" / "p1.json"
    assert "resuming: 2 of 3" in run.err
    assert f"{js} is there already and its size is no longer the one a selfseg run" in run.err
    assert len(js.read_text()) == 100


def _results(out: Path) -> dict:
    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in ("timings", "batch_size")}
        return [strip(v) for v in d] if isinstance(d, list) else d

    return {e["key"]: (strip(json.loads((out / e["json"]).read_text())),
                       [(out / f).read_bytes() for f in e["files"] if f.endswith(".png")])
            for e in read_log(out) if e["state"] == "done"}


def _finished(out: Path) -> int:
    return sum(e["state"] == "done" for e in read_log(out))


def _killed_then_resumed(tmp: Path) -> list[str]:
    """A real SIGKILL after the first result is logged, then the same command with --resume."""
    photos = _three_photos(tmp)
    assert main(segment(tmp, *photos, out=str(tmp / "whole"), extra=("--batch-size", "1"))) == 0
    cmd = [sys.executable, "-m", "selfseg", *segment(tmp, *photos, extra=("--batch-size", "1"))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        deadline = time.monotonic() + 300
        while not _finished(tmp / "out") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (tmp / "killed_after").write_text(str(_finished(tmp / "out")))
    return segment(tmp, *photos, extra=("--resume", "--batch-size", "2"))


def _same_as_uninterrupted(run: Run) -> None:
    killed_after = int((run.tmp / "killed_after").read_text())
    assert 1 <= killed_after < 3  # killed mid-run
    assert f"resuming: {killed_after} of 3" in run.err
    assert _results(run.tmp / "out") == _results(run.tmp / "whole")


def _same_name_from_another_folder(tmp: Path) -> list[str]:
    for folder, src in (("a", PHOTO), ("b", sorted((ADE / "images").glob("*.jpg"))[1])):
        (tmp / folder).mkdir()
        Image.open(src).convert("RGB").resize((96, 96)).save(tmp / folder / "photo.png")
    assert main(tag(tmp, str(tmp / "a" / "photo.png"))) == 0
    return tag(tmp, str(tmp / "b" / "photo.png"), extra=("--resume",))


def _other_photo_done(run: Run) -> None:
    assert "resuming" not in run.err
    assert json.loads((run.tmp / "out" / "photo.json").read_text())["source"] == str(run.tmp / "b" / "photo.png")


RESUME = [
    Case("resume after a same-named photo from another folder", _same_name_from_another_folder, 0,
         _other_photo_done),
    Case("resume with other settings", _resume_other_settings, 2,
         one_error_line('segment.segmenter: "grounded_sam2" -> "clipseg"')),
    Case("resume and fresh together", lambda tmp: tag(tmp, good(tmp), extra=("--resume", "--fresh")), 2,
         one_error_line("expected one of them")),
    Case("resume keeps a truncated JSON and fails its image", _resume_truncated, 1, _kept_the_cut_one),
    Case("killed by SIGKILL, then resumed", _killed_then_resumed, 0, _same_as_uninterrupted),
]


# -------------------------------------------------------------------------------------------- concurrency

def _two_writers(tmp: Path) -> list[str]:
    """Two runs on the same inputs and output folder at once; this case's own run is a third, after them."""
    photos = _three_photos(tmp)
    cmd = [sys.executable, "-m", "selfseg", *segment(tmp, *photos)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    return segment(tmp, *photos, extra=("--resume",))


def _folder_whole(run: Run) -> None:
    assert "resuming: 3 of 3" in run.err  # every result complete and of this run: nothing torn
    done = [e["key"] for e in read_log(run.tmp / "out") if e["state"] == "done"]
    assert sorted(done) == ["p0.png", "p0.png", "p1.png", "p1.png", "p2.png", "p2.png"]


CONCURRENCY = [Case("two runs writing one folder at once", _two_writers, 0, _folder_whole)]


# ------------------------------------------------------------------------------- line-oriented commands

def _labels_file(tmp: Path) -> list[str]:
    (tmp / "labels.txt").write_bytes(b"dog\n\nsofa \xff couch\n   \ncar\nperson")
    return ["map-labels", str(tmp / "labels.txt"), "--dataset", "voc", "--method", "lexical"]


def _one_row_per_line(run: Run) -> None:
    rows = [json.loads(line) for line in run.out.splitlines()]
    assert len(rows) == 6
    # a line that is not text maps to none with its reason, and the lines around it still map
    assert [r["class"] for r in rows] == ["dog", None, None, None, "car", "person"]
    assert rows[1]["reason"] == rows[3]["reason"] == "empty line" and "UTF-8" in rows[2]["reason"]


def _predictions_file(tmp: Path) -> list[str]:
    (tmp / "preds.txt").write_text("x")
    return ["evaluate", "--dataset", "ade20k", "--root", str(ADE), "--predictions", str(tmp / "preds.txt")]


def _scores_under_a_file(tmp: Path) -> list[str]:
    (tmp / "preds").mkdir()
    (tmp / "afile.txt").write_text("x")
    return ["evaluate", "--dataset", "ade20k", "--root", str(ADE), "--predictions", str(tmp / "preds"),
            "--out", str(tmp / "afile.txt" / "x.json")]


def _nothing_scored(run: Run) -> None:
    one_error_line("afile.txt")(run)
    assert run.out == ""  # refused before scoring, not after printing a table


OTHER_COMMANDS = [
    Case("map-labels with empty lines and a bad byte", _labels_file, 0, _one_row_per_line),
    Case("evaluate with a file as the predictions folder", _predictions_file, 2, one_error_line("not a folder")),
    Case("evaluate --out under a regular file", _scores_under_a_file, 2, _nothing_scored),
    Case("download that cannot reach the hub",
         lambda tmp: ["download", "--config", str(REPO / "configs" / "bcc_voc.yaml")], 2,
         one_error_line("could not be downloaded"), env={"HF_HUB_OFFLINE": "1"}),
]

CASES = INPUTS + OUTPUTS + CONFIGS + RESUME + CONCURRENCY + OTHER_COMMANDS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reliability(case: Case, tmp_path: Path, capsys, monkeypatch) -> None:
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    argv = case.argv(tmp_path)
    capsys.readouterr()
    if case.child:
        env = {**os.environ, **case.env}
        proc = subprocess.run([sys.executable, "-m", "selfseg", *argv], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path, env=env)
        run = Run(proc.returncode, proc.stdout, proc.stderr, tmp_path)
    else:
        monkeypatch.chdir(tmp_path)  # nothing may depend on the working directory
        code = main(argv)
        cap = capsys.readouterr()
        run = Run(code, cap.out, cap.err, tmp_path)
    assert run.code == case.code, run.err[-2000:]
    case.check(run)
    leftovers = [p for p in tmp_path.rglob(".*.tmp")]
    assert not leftovers, leftovers


def test_a_reader_that_leaves_early_costs_no_result(tmp_path: Path) -> None:
    """`selfseg tag photos/ | head -1`: a pipe closed under the result lines must not end the batch at the
    first line that reaches it. The files are the run's product: it goes on to the end and exits as its work
    went, one note saying the rest of the lines are dropped. Unbuffered, the first line meets the closed pipe
    at once, as every line does in a run (each is flushed as it is written)."""
    photos = _three_photos(tmp_path)[:2]
    cmd = [sys.executable, "-m", "selfseg", *tag(tmp_path, *photos, extra=("--batch-size", "1"))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdout.close()  # the reader is gone before the first line
    try:
        err = proc.stderr.read()
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
    assert code == 0, err
    assert "note: standard output was closed (its reader ended)" in err
    assert err.rstrip().endswith("2/2 images tagged; outputs in " + str(tmp_path / "out") + "/")
    assert "Traceback" not in err and "Exception ignored" not in err and "error" not in err
    assert _finished(tmp_path / "out") == 2


def test_sigterm_stops_a_run_as_ctrl_c_does_and_the_run_resumes(tmp_path: Path) -> None:
    """A scheduler's time limit (SIGTERM) in the middle of a run: one line saying how to go on, exit 143, no
    temporary file left, and --resume finishes the rest."""
    photos = _three_photos(tmp_path)
    for k in range(5):  # more images than the run can tag between its first line and the signal
        shutil.copy(photos[k % 3], tmp_path / f"copy{k}.png")
    photos += [str(tmp_path / f"copy{k}.png") for k in range(5)]
    cmd = [sys.executable, "-m", "selfseg", *tag(tmp_path, *photos, extra=("--batch-size", "1"))]
    cmd.remove("-q")  # a line per image: the signal is sent after the first one
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout.readline()  # the first image's result line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    last = err.rstrip().splitlines()[-1]
    assert last == "selfseg: interrupted; finished images are kept: rerun with --resume to go on"
    assert "Traceback" not in err
    assert not list((tmp_path / "out").rglob(".*.tmp"))
    done = _finished(tmp_path / "out")
    assert 1 <= done < 8
    assert main(tag(tmp_path, *photos, extra=("--resume",))) == 0
    assert _finished(tmp_path / "out") == 8
