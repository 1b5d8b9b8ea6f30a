"""Output folders of `tag` / `segment` runs: what each input's outputs are called, what a folder holds, and
when an earlier run's result can be kept.

An output folder holds, besides the results:

    selfseg-run.json        the settings (what changes results), command and selfseg version of the latest
                            run that wrote a result
    selfseg-outputs.jsonl   two lines per input: its files as they are about to be written ("writing"), and
                            again once they are in place ("done"): {"key", "source", "path", "stat",
                            "json", "files", "run", "state"}; `run` is the settings fingerprint, `path` and
                            `stat` the input file's resolved path, size and modification time; "done" adds
                            "written", each file's size and modification time as written

An input's key is its path relative to the inputs' common folder (`a/photo.png`, `b/photo.jpg`): it is
recorded with the results. Resuming matches an input by the file itself (resolved path, size, modification
time), so another run's `photo.jpg` from another folder, or a photo replaced since, is never taken as done.

Output names: `<stem>.json` etc. for an input whose stem is its own; inputs sharing a stem mirror their
folders (`a/photo.json`, `b/photo.json`), and inputs of one folder sharing a stem keep their extension
(`photo.png.json`, `photo.jpg.json`); if even that clashes (`Photo.png` and `photo.png` on a
case-insensitive disk) a digest of the key is appended. Files named in an outputs log are selfseg's own
and are never taken as inputs when a folder is expanded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError

MANIFEST = "selfseg-run.json"
LOG = "selfseg-outputs.jsonl"
LOCK = ".selfseg-run.lock"
MANIFEST_VERSION = 1
_TEMPORARY = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")

# Settings that cannot change a result beyond float rounding: where models come from, how many images,
# rows, boxes or tags share a call (results do not depend on their neighbours), where reply caches live.
# Everything else is part of a run's identity. The device is left out, but what it decides is not: an
# "auto" chat-model dtype is recorded as it resolves.
_NEUTRAL: dict[str, Any] = {
    "name": None, "evaluation": None, "label": None,
    "run": {"batch_size"},
    "model": {"device", "cache_dir", "local_files_only"},
    "captioning": {"max_cross_attention_gib"},
    "vlm": {"batch_size", "text_batch_size", "cache"},
    "segment": {"grounded_sam2": {"boxes_per_call", "images_per_call"}, "clipseg": {"tags_per_call"}},
}


@dataclass(frozen=True)
class OutputName:
    """key: the input's path relative to the inputs' common folder (posix). stem: its outputs' path
    relative to the output folder, without suffix (`a/photo` -> a/photo.json, a/photo_labels.png)."""

    key: str
    stem: str

    def folder(self, out: Path) -> Path:
        return out / PurePosixPath(self.stem).parent

    @property
    def name(self) -> str:
        return PurePosixPath(self.stem).name


def output_names(sources: Sequence[str]) -> dict[str, OutputName]:
    """The key and output stem of every input path (duplicates of one path share one entry)."""
    absolute = {s: os.path.abspath(s) for s in sources}
    if not absolute:
        return {}
    parents = {os.path.dirname(a) for a in absolute.values()}
    try:
        root = os.path.commonpath(list(parents))
    except ValueError:  # no common folder (another drive): the key is then the whole path
        root = ""
    keys = {s: Path(os.path.relpath(a, root) if root else a).as_posix() for s, a in absolute.items()}
    # An input whose stem no other input shares keeps the flat name it always had (`out/photo.json`). Inputs
    # that share a stem mirror their folders under the output folder (`out/a/photo.json`, `out/b/photo.json`),
    # and where they share a folder too they keep their extension (`photo.png.json`, `photo.jpg.json`).
    by_stem: dict[str, set[str]] = {}
    for key in set(keys.values()):
        by_stem.setdefault(PurePosixPath(key).stem.casefold(), set()).add(key)
    stems: dict[str, str] = {}
    for key in set(keys.values()):
        p = PurePosixPath(key)
        shared = by_stem[p.stem.casefold()]
        if len(shared) == 1:
            stems[key] = p.stem or "image"
            continue
        same_folder = sum(PurePosixPath(k).parent.as_posix().casefold() == p.parent.as_posix().casefold()
                          for k in shared) > 1
        stems[key] = str(p.parent / (p.name if same_folder else (p.stem or "image")))
    # A stem that still clashes (case only, or `x.png` beside an input whose stem is `x.png`) gets a digest.
    folded: dict[str, list[str]] = {}
    for key, stem in stems.items():
        folded.setdefault(stem.casefold(), []).append(key)
    # The run's manifest is no name for an input's JSON either (`selfseg-run.jpg`).
    reserved = Path(MANIFEST).stem
    for folded_stem, group in folded.items():
        if len(group) > 1 or folded_stem == reserved:
            for key in group:
                stems[key] += "-" + _digest(key)
    return {s: OutputName(key=k, stem=_fits(stems[k].removeprefix("./"), k)) for s, k in keys.items()}


#: Longest output name (bytes, without its ending): a file system takes 255, and the longest ending with the
#: temporary file's is ".<name>_overlay.png.<8 random>.tmp", 27 more.
NAME_BYTES = 200


def _bytes(name: str) -> bytes:
    """A name as the file system stores it: a name that is not UTF-8 reaches Python with its bytes escaped
    (`café` in Latin-1), and goes back to those bytes."""
    return name.encode("utf-8", "surrogateescape")


def _digest(key: str) -> str:
    return hashlib.blake2b(_bytes(key), digest_size=4).hexdigest()


def text_name(name: str) -> str:
    """`name` itself where it is text; where it holds bytes that are not UTF-8, those bytes as "_" and a
    digest of the name, so that files meant to be read as text (a dataset's annotations) can name it."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return f"{_bytes(name).decode('utf-8', 'replace').replace(chr(0xFFFD), '_')}-{_digest(name)}"


def short_name(name: str, key: str) -> str:
    """`name` itself, or, when longer than NAME_BYTES, cut there on a whole character with a digest of `key`
    (what the name stands for) after it: an input whose name fits the file system must not get outputs
    whose names do not."""
    raw = _bytes(name)
    if len(raw) <= NAME_BYTES:
        return name
    cut = raw[: NAME_BYTES - 9].decode("utf-8", errors="ignore")
    return f"{cut}-{_digest(key)}"


def _fits(stem: str, key: str) -> str:
    """The stem with its last part made a `short_name`."""
    p = PurePosixPath(stem)
    return str(p.parent / short_name(p.name, key)) if len(_bytes(p.name)) > NAME_BYTES else stem


def run_settings(config: Any, command: str) -> dict[str, Any]:
    """What a run's results depend on: the config without result-neutral fields (and, for `tag`, without the
    segmenting section), the chat models' dtype as it resolves on this machine, the command, selfseg's
    version."""
    from . import __version__
    from .models.loading import resolve_device

    d = config.to_dict()
    for section, fields in _NEUTRAL.items():
        if fields is None:
            d.pop(section, None)
        elif isinstance(fields, dict):
            d[section] = {k: ({f: x for f, x in v.items() if f not in fields[k]} if k in fields else v)
                          for k, v in d[section].items()}
        else:
            d[section] = {k: v for k, v in d[section].items() if k not in fields}
    if command == "tag":
        d.pop("segment", None)
    if d["vlm"]["dtype"] == "auto":  # bfloat16 on a GPU, float32 on a CPU: not the same results
        d["vlm"]["dtype"] = "bfloat16" if resolve_device(config.model.device).type == "cuda" else "float32"
    return {"command": command, "selfseg": __version__, "config": d}


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """`field: old -> new` for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    if old == new:
        return []
    a, b = json.dumps(old, ensure_ascii=False), json.dumps(new, ensure_ascii=False)
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return [f"{path or 'settings'}: {_brief(a, at)} -> {_brief(b, at)}"]


def _brief(text: str, at: int, width: int = 60) -> str:
    """About `width` characters of a value's JSON around `at`, where it first differs from the other side:
    a changed vocabulary or a whole sub-config on one side would otherwise make the message run over many
    lines, and a cut from the start alone could hide the change."""
    if len(text) <= width:
        return text
    start = max(0, min(at - width // 3, len(text) - width))
    return ("..." if start else "") + text[start:start + width] + ("..." if start + width < len(text) else "")


class RunFolder:
    """One output folder, for one run: its manifest, its outputs log, and which inputs are already done.

    While a run works in a folder it holds a shared lock on `.selfseg-run.lock` there (where the system
    has file locks): clean-up of an earlier run's temporary files happens only when no other run holds it,
    so it never removes a file another run is still writing.
    """

    def __init__(self, out: str | Path, settings: dict[str, Any], named: str | None = None) -> None:
        self.out = Path(out)
        # How messages about the folder name it: the user gave `--out` for it, or for a folder holding it.
        self.named = named or f"--out {self.out}"
        self.settings = settings
        self.run = fingerprint(settings)
        self._lock_fd: int | None = None
        self._manifest_due = False
        self._logged: dict[str, Any] | None = None  # the files the log names (`logged_files`), read when needed
        self._logged_size = 0  # the log's size when read

    def start(self, resume: bool, fresh: bool) -> None:
        """Check the folder against this run, before any work; its manifest is written with the first
        result, so a run that fails before any (a missing model) leaves the folder's run as it was.

        resume: keep earlier results, which must come from the same settings (else a ConfigError with the
        differences). fresh: delete every file an earlier run logged here first. Neither: results are
        recomputed and overwritten. Leftover temporary files of a killed run are removed on resume/fresh.
        """
        if resume and fresh:
            raise ConfigError("--resume and --fresh: expected one of them, got both")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.named}: exists and is not a folder")
        old = self._manifest()
        if resume and old is not None and old.get("run") != self.run:
            changed = [d.removeprefix("config.") for d in differences(old.get("settings"), self.settings)] \
                if isinstance(old.get("settings"), dict) else []
            changed = changed or [f"its {MANIFEST} is unreadable"]
            shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
            raise ConfigError(f"{self.out}/ holds a run with other settings ({shown}); --resume only continues "
                              f"the same run: drop --resume to overwrite, or use --fresh to start over")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.out, prefix=".selfseg-probe.", delete=True)
            probe.close()
        except OSError as exc:  # read-only, not ours, a full disk: before any work, naming the folder
            raise ConfigError(f"{self.named}: cannot write there ({exc.strerror or exc})") from None
        alone = self._lock()
        if fresh:
            # Each file as its latest log entry left it (None: a write a kill cut short, still ours). A file of
            # another size now is someone else's, put in its place since, and not selfseg's to delete; the size
            # alone, as for resuming, since a folder copied or unpacked keeps no times.
            kept = [rel for rel, stat in logged_files(read_log(self.out)).items() if not self._delete(rel, stat)]
            if kept:
                import sys

                print(f"note: --fresh kept {len(kept)} file(s) in {self.out}/ whose size is no longer what selfseg "
                      f"wrote ({', '.join(kept[:3])}{' ...' if len(kept) > 3 else ''}): the images whose outputs "
                      f"they are in the way of will fail until they are moved", file=sys.stderr)
            (self.out / LOG).unlink(missing_ok=True)
        if (resume or fresh) and alone:
            self._drop_temporaries()
        self._manifest_due = old is None or old.get("run") != self.run

    def join(self) -> None:
        """Work in a folder another process of this run has `start`ed (a torchrun rank): hold the shared lock,
        and write the manifest with a first result as `start` would."""
        self._lock()
        old = self._manifest()
        self._manifest_due = old is None or old.get("run") != self.run

    def done(self, sources: Iterable[str], names: Mapping[str, OutputName]) -> set[str]:
        """Those of `sources` whose result from this very run is complete: the latest finished log entry for
        that file (same resolved path, same size and modification time) under this run's output name for it
        (`names`; with other inputs beside it an input can be named otherwise, and its result then lies
        elsewhere) is of this run's settings, no later entry names its JSON file (another input's run wrote
        there since), its JSON parses and carries the entry's key, every file the entry and the JSON name
        exists, and each file the entry names has the size it was written with.

        A result kept under another key (the same file, with inputs from another folder beside it now, so
        that the inputs' common folder moved) gets this run's key, in its JSON and in the log, as a run of
        these inputs would have written it; while another run works in the folder it is computed again
        instead."""
        log = read_log(self.out)
        # Per file and JSON name: one file may be given under two names (a link), each with its own outputs.
        latest = {(e["path"], e["json"]): e for e in log if e.get("state") == "done" and "path" in e}
        # The last entry to name each JSON file: an input's result stands only while no later run (of another
        # input named alike) has written over it.
        last_writer = {e.get("json"): e for e in log}
        finished = set()
        for src in sources:
            ident, json_name = _identity(src), f"{names[src].stem}.json"
            entry = latest.get((ident[0], json_name)) if ident else None
            if entry is None or entry.get("run") != self.run or entry.get("stat") != ident[1]:
                continue
            if last_writer.get(json_name) is not entry:
                continue
            try:
                js = self._inside(json_name)
                record = json.loads(js.read_text(encoding="utf-8"))
                if not (isinstance(record, dict) and record.get("key") == entry["key"]):
                    continue
                files = [self._inside(rel) for rel in entry["files"]]
                named = files + [js.parent / f for f in record.get("files", [])]
            except (OSError, ValueError, TypeError, ConfigError):
                continue
            if not all(p.is_file() for p in named):
                continue
            # A file whose size is not the one written (cut short by a disk that lost a write, another file
            # put in its place) is not done, and not the run's to overwrite either (`foreign`): the input
            # fails until it is moved. Its size alone is compared: a folder copied without its times stays done.
            written = entry.get("written")
            if isinstance(written, list) and not all(as_written(p, w) for p, w in zip(files, written)):
                continue
            if entry["key"] != names[src].key:
                # Rewriting the JSON while another run may write it could put an old copy over its result.
                if not self._alone():
                    continue  # computed again
                try:
                    self._rekey(js, record, names[src], src, files)
                except OSError:
                    continue  # left as it was: computed again
            finished.add(src)
        return finished

    def _rekey(self, js: Path, record: dict[str, Any], name: OutputName, source: str, files: list[Path]) -> None:
        from .io import atomic_write

        record["key"] = name.key
        self.begin(name, source, files)
        atomic_write(js, lambda f: f.write(json.dumps(record).encode("utf-8")))
        self.record(name, source, files)

    def begin(self, name: OutputName, source: str, files: Sequence[Path]) -> None:
        """Log, before writing them, the files one input is about to get (JSON first): a run killed
        mid-write leaves no unlogged output that a later run could take for an input. A file already there that
        is not a run's as it wrote it (`foreign`: the user's, beside the photos or put in a result's place) is
        not overwritten: FileExistsError, for this input alone. A run's file is written over, whatever its
        content: a result cut short by a kill is redone."""
        foreign = self.foreign(files)
        if foreign is not None:
            raise FileExistsError(self.in_the_way(foreign))
        self._append(name, source, files, "writing")

    def in_the_way(self, path: Path) -> str:
        """Why an input's results are not written: a file `foreign` found is where one would go."""
        if self._logged is not None and path.relative_to(self.out).as_posix() in self._logged:
            return (f"{path} is there already and its size is no longer the one a selfseg run in {self.out}/ "
                    f"wrote; move it, or write to another --out")
        return f"{path} is there already and no selfseg run in {self.out}/ wrote it; move it, or write to another --out"

    def refused(self, sources: Iterable[str], files_of: Any) -> dict[str, str]:
        """source -> why its results will not be written, for those of `sources` whose files (`files_of(source)`)
        include a `foreign` one: checked before they are computed."""
        found = ((s, self.foreign(files_of(s))) for s in sources)
        return {s: self.in_the_way(f) for s, f in found if f is not None}

    def foreign(self, files: Sequence[Path]) -> Path | None:
        """The first of `files` that is there already and is not a run's as it wrote it: no run logged it in
        this folder, or its size is not the one the latest entry naming it recorded as written (a file put in
        its place since, kept by --fresh too). One logged before it was written, with no size recorded (a
        write a kill cut short), is a run's. Callers check it before computing an input's results, `begin`
        again before writing them."""
        there = [p for p in files if p.exists() or p.is_symlink()]
        if not there:
            return None
        for attempt in range(2):
            if attempt or self._logged is None:
                self._logged_size = (file_stat(self.out / LOG) or [0])[0]  # before reading: a later line re-reads
                self._logged = logged_files(read_log(self.out))
            logged = self._logged
            theirs = next((p for p in there if (rel := p.relative_to(self.out).as_posix()) not in logged
                           or not as_written(p, logged[rel])), None)
            # Read again only for a file not known as it is, and only when the log has grown by more than this
            # run wrote (another run in the folder logged files, or wrote them again, since).
            if theirs is None or (file_stat(self.out / LOG) or [0])[0] == self._logged_size:
                return theirs
        return theirs

    def record(self, name: OutputName, source: str, files: Sequence[Path]) -> None:
        """Log one finished input; called after all its files are in place, the JSON (files[0]) last."""
        self._append(name, source, files, "done")

    # ---------------------------------------------------------------------------------------- helpers
    def _append(self, name: OutputName, source: str, files: Sequence[Path], state: str) -> None:
        if self._manifest_due:
            from .io import atomic_write

            record = {"selfseg_run": MANIFEST_VERSION, "run": self.run, "settings": self.settings}
            atomic_write(self.out / MANIFEST, lambda f: f.write(json.dumps(record, indent=1).encode("utf-8")))
            self._manifest_due = False
        # One `write` of one short line on a file opened for appending: concurrent runs never interleave
        # within a line. The leading newline ends a line a crash may have cut, so that it cannot swallow
        # this one; empty lines are skipped when read.
        ident = _identity(source)
        rel = [p.relative_to(self.out).as_posix() for p in files]
        entry = {"key": name.key, "source": source, "path": ident[0] if ident else None,
                 "stat": ident[1] if ident else None, "json": rel[0], "files": rel, "run": self.run, "state": state}
        if state == "done":  # each file as written: a file put in its place since is not selfseg's
            entry["written"] = [file_stat(p) for p in files]
        data = ("\n" + json.dumps(entry) + "\n").encode("utf-8")
        fd = os.open(self.out / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        if self._logged is not None:  # what this run logs is known; a log grown by more is read again
            self._logged.update(logged_files([entry]))
            self._logged_size += len(data)

    def _manifest(self) -> dict[str, Any] | None:
        try:
            d = json.loads((self.out / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: matches no run, so --resume refuses and a plain run rewrites it
        return d if isinstance(d, dict) else {}

    def _inside(self, rel: str) -> Path:
        """A logged path, refused when it would leave the output folder (a hand-edited log, a symlinked
        folder inside the output folder that points elsewhere)."""
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or ".." in p.parts or rel in (".", "./"):
            raise ConfigError(f"{self.out / LOG}: names {rel!r}, not a file inside the folder")
        full = self.out / p
        root = self.out.resolve()
        if full.parent.resolve() != root and root not in full.parent.resolve().parents:
            raise ConfigError(f"{self.out / LOG}: names {rel!r}, which lies outside the folder")
        return full

    def _delete(self, rel: str, written: Any = None) -> bool:
        """Remove one logged output, unless its size is no longer as written (`written`: its [size, time] then,
        None when not known); what is not a file inside the folder is left alone. False: a file was kept."""
        try:
            p = self._inside(rel)
            if p.is_symlink() or p.is_file():
                if not as_written(p, written):
                    return False
                p.unlink()
        except (OSError, ConfigError):
            pass
        return True

    def _lock(self) -> bool:
        """Hold a shared lock on the folder for this run; True when no other run held it at the start. The
        lock file is made even where the system has no file locks: it marks the folder as a run's."""
        try:
            self._lock_fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return False
        try:
            import fcntl
        except ImportError:  # no file locks here: assume alone, as runs on one folder are rare
            os.close(self._lock_fd)
            self._lock_fd = None
            return True
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        except OSError:  # a file system without locks (ENOSYS, ENOLCK, EOPNOTSUPP): as where fcntl is missing
            os.close(self._lock_fd)
            self._lock_fd = None
            return True
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # from exclusive to shared: other runs may join now
        return alone

    def _alone(self) -> bool:
        """Whether no other run works in the folder now (this run keeps its shared lock either way)."""
        if self._lock_fd is None:
            return True
        import fcntl

        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        return alone

    def close(self) -> None:
        """Release the folder's lock (also released when the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _drop_temporaries(self) -> None:
        """Remove what atomic_write left of this folder's own files (`.<name>.<8 chars>.tmp` beside a file the
        log names, or the manifest): nothing else under the folder is a selfseg run's to remove."""
        ours: dict[Path, set[str]] = {self.out: {MANIFEST}}
        for entry in read_log(self.out):
            for rel in entry["files"]:
                try:
                    full = self._inside(rel)
                except ConfigError:
                    continue
                ours.setdefault(full.parent, set()).add(full.name)
        for folder, names in ours.items():
            try:
                found = os.listdir(folder)
            except OSError:
                continue
            for f in found:
                m = _TEMPORARY.match(f)
                if m and m.group(1) in names:
                    Path(folder, f).unlink(missing_ok=True)


def _identity(source: str) -> tuple[str, list[int]] | None:
    """(resolved path, [size, modification time in ns]) of an input file: a replaced photo is another input."""
    stat = file_stat(source)
    return (os.path.realpath(source), stat) if stat else None


def file_stat(path: str | Path) -> list[int] | None:
    """[size, modification time in ns] of a file, None when it cannot be read."""
    try:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]
    except (OSError, ValueError):  # ValueError: a path with a NUL in it
        return None


def as_written(path: str | Path, written: Any) -> bool:
    """Whether a logged file still has the size it was written with (`written`: its [size, time] from the log;
    anything else, as for a write a kill cut short, is not known and counts as written). Times are not
    compared: a folder copied or unpacked keeps none."""
    return not (isinstance(written, list) and written) or (file_stat(path) or [None])[0] == written[0]


def logged_files(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Each file the log entries name -> its [size, time] as the latest entry naming it wrote it (None where
    that entry logged it before writing it: its state, not the keys it carries, says which)."""
    files: dict[str, Any] = {}
    for e in entries:
        written = e.get("written") if e.get("state") == "done" and isinstance(e.get("written"), list) else []
        for i, rel in enumerate(e["files"]):
            files[rel] = written[i] if i < len(written) else None
    return files


def read_log(folder: Path) -> list[dict[str, Any]]:
    """The well-formed entries of a folder's outputs log, in order (a line cut short is skipped)."""
    try:
        text = (Path(folder) / LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    entries = []
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("json"), str) \
                and isinstance(e.get("files"), list) and all(isinstance(f, str) for f in e["files"]):
            entries.append(e)
    return entries


def own_outputs(paths: Iterable[str]) -> set[str]:
    """Those of `paths` that an outputs log in their folder or any folder above names as selfseg's output, as
    it was written there (the same size, where the log says: a file of another size put in its place since is
    the user's; times alone are not compared, as a folder copied or unpacked keeps none), and a run folder's
    own manifest and log."""
    # per folder: every file the logs in it and above it name, with its size and time as written (None: not
    # known, as for a write a kill interrupted)
    logged: dict[Path, dict[Path, Any]] = {}

    def files_logged_above(folder: Path) -> dict[Path, Any]:
        if folder not in logged:
            here: dict[Path, Any] = {}
            if (folder / LOG).is_file():
                for f, written in logged_files(read_log(folder)).items():
                    # folder is resolved and logged names never hold "..": normpath, no system calls.
                    here[Path(os.path.normpath(folder / f))] = written
            above = files_logged_above(folder.parent) if folder.parent != folder else {}
            logged[folder] = {**above, **here} if here else above
        return logged[folder]

    out = set()
    for p in paths:
        try:
            full = Path(p).resolve()
        except (OSError, RuntimeError):
            continue
        files = files_logged_above(full.parent)
        if (full in files and as_written(full, files[full])) or \
                (full.name in (LOG, MANIFEST) and (full.parent / MANIFEST).is_file()):
            out.add(p)
    return out
