"""Output folders of `tag` / `segment` runs: what each input's outputs are called, what a folder holds, and
when an earlier run's result can be kept.

An output folder holds, besides the results:

    selfseg-run.json        the latest run's settings (what changes results), command and selfseg version
    selfseg-outputs.jsonl   one line per finished input, appended after its files are in place:
                            {"key", "source", "json", "files", "run"}; `run` is the settings fingerprint

An input's key is its path relative to the inputs' common folder (`a/photo.png`, `b/photo.jpg`): it is
recorded with the results, and resuming matches on it. Output names: `<stem>.json` etc. for an input whose
stem is its own; inputs sharing a stem mirror their folders (`a/photo.json`, `b/photo.json`), and inputs of
one folder sharing a stem keep their extension (`photo.png.json`, `photo.jpg.json`); if even that clashes
(`Photo.png` and `photo.png` on a case-insensitive disk) a digest of the key is appended. Files named in an outputs log are selfseg's own and are never taken as
inputs when a folder is expanded.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from .errors import ConfigError

MANIFEST = "selfseg-run.json"
LOG = "selfseg-outputs.jsonl"
MANIFEST_VERSION = 1

# Settings that cannot change a result: where models come from, how many images or rows share a call
# (every result is independent of its batch neighbours), where reply caches live. Everything else is
# part of a run's identity.
_NEUTRAL = {
    "name": None, "evaluation": None,
    "run": {"batch_size"},
    "model": {"device", "cache_dir", "local_files_only"},
    "captioning": {"max_cross_attention_gib"},
    "vlm": {"batch_size", "text_batch_size", "cache"},
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
    keys = {s: PurePosixPath(Path(os.path.relpath(a, root) if root else a).as_posix()).as_posix()
            for s, a in absolute.items()}
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
    for clash in (keys for keys in folded.values() if len(keys) > 1):
        for key in clash:
            stems[key] += "-" + hashlib.blake2b(key.encode(), digest_size=4).hexdigest()
    return {s: OutputName(key=k, stem=stems[k].removeprefix("./")) for s, k in keys.items()}


def run_settings(config: Any, command: str) -> dict[str, Any]:
    """What a run's results depend on: the config without result-neutral fields, the command, selfseg's version."""
    from . import __version__

    d = config.to_dict()
    for section, fields in _NEUTRAL.items():
        if fields is None:
            d.pop(section, None)
        else:
            d[section] = {k: v for k, v in d[section].items() if k not in fields}
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
    return [] if old == new else [f"{path or 'settings'}: {json.dumps(old)} -> {json.dumps(new)}"]


class RunFolder:
    """One output folder, for one run: its manifest, its outputs log, and which inputs are already done."""

    def __init__(self, out: "str | Path", settings: dict[str, Any]) -> None:
        self.out = Path(out)
        self.settings = settings
        self.run = fingerprint(settings)

    def start(self, resume: bool, fresh: bool) -> None:
        """Check the folder against this run and write its manifest, before any work.

        resume: keep earlier results, which must come from the same settings (else a ConfigError with the
        differences). fresh: delete every file an earlier run logged here first. Neither: results are
        recomputed and overwritten. Leftover temporary files of a killed run are removed on resume/fresh.
        """
        if resume and fresh:
            raise ConfigError("--resume and --fresh: expected one of them, got both")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out}: exists and is not a folder")
        old = self._manifest()
        if resume and old is not None and old.get("run") != self.run:
            changed = [d.removeprefix("config.") for d in differences(old.get("settings"), self.settings)] \
                or ["the run manifest is unreadable"]
            shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
            raise ConfigError(f"{self.out}/ holds a run with other settings ({shown}); --resume only continues "
                              f"the same run: drop --resume to overwrite, or use --fresh to start over")
        if fresh:
            for entry in self._entries():
                for rel in entry["files"]:
                    self._inside(rel).unlink(missing_ok=True)
            (self.out / LOG).unlink(missing_ok=True)
        if resume or fresh:
            self._drop_temporaries()
        self.out.mkdir(parents=True, exist_ok=True)
        from .pipeline import _atomic_write

        record = {"selfseg_run": MANIFEST_VERSION, "run": self.run, "settings": self.settings}
        _atomic_write(self.out / MANIFEST, lambda f: f.write(json.dumps(record, indent=1).encode("utf-8")))

    def done(self, names: Iterable[OutputName]) -> set[str]:
        """Keys of inputs whose result from this very run is complete: logged under this run's fingerprint,
        its JSON parses and names that key, and every file it lists exists."""
        latest = {e["key"]: e for e in self._entries()}
        finished = set()
        for name in names:
            entry = latest.get(name.key)
            if entry is None or entry.get("run") != self.run:
                continue
            try:
                record = json.loads(self._inside(entry["json"]).read_text(encoding="utf-8"))
            except (OSError, ValueError, ConfigError):
                continue
            if not (isinstance(record, dict) and record.get("key") == name.key):
                continue
            folder = self._inside(entry["json"]).parent
            if all(self._inside(rel).is_file() for rel in entry["files"]) and \
                    all((folder / f).is_file() for f in record.get("files", [])):
                finished.add(name.key)
        return finished

    def record(self, name: OutputName, source: str, files: Sequence[Path]) -> None:
        """Log one finished input; called after all its files are in place, the JSON (files[0]) last written.

        One `write` of one short line on a file opened for appending: concurrent runs on one folder never
        interleave within a line, and a line cut by a kill is skipped when read."""
        rel = [p.relative_to(self.out).as_posix() for p in files]
        line = json.dumps({"key": name.key, "source": source, "json": rel[0], "files": rel, "run": self.run})
        fd = os.open(self.out / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)

    # ---------------------------------------------------------------------------------------- helpers
    def _manifest(self) -> "dict[str, Any] | None":
        try:
            d = json.loads((self.out / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: matches no run, so --resume refuses and a plain run rewrites it
        return d if isinstance(d, dict) else {}

    def _entries(self) -> list[dict[str, Any]]:
        return read_log(self.out)

    def _inside(self, rel: str) -> Path:
        """A logged path, refused when it would leave the output folder (a hand-edited log)."""
        p = self.out / rel
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise ConfigError(f"{self.out / LOG}: names {rel!r}, outside the folder")
        return p

    def _drop_temporaries(self) -> None:
        if not self.out.is_dir():
            return
        for root, _, files in os.walk(self.out):
            for f in files:
                if f.startswith(".") and f.endswith(".tmp"):  # _atomic_write's names; never read
                    Path(root, f).unlink(missing_ok=True)


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
    """Those of `paths` that an outputs log in their folder or any folder above names as selfseg's output."""
    logged: dict[Path, set[Path]] = {}

    def files_logged_above(folder: Path) -> set[Path]:
        found: set[Path] = set()
        for d in (folder, *folder.parents):
            if d not in logged:
                # d is resolved already and logged names never hold "..": normpath, no system calls.
                logged[d] = {Path(os.path.normpath(d / f)) for e in read_log(d) for f in e["files"]} \
                    if (d / LOG).is_file() else set()
            found |= logged[d]
        return found

    out = set()
    for p in paths:
        try:
            full = Path(p).resolve()
        except (OSError, RuntimeError):
            continue
        if full in files_logged_above(full.parent):
            out.add(p)
    return out
