"""`selfseg label`: a folder of images in, a training dataset with one vocabulary out.

Two stages, each restartable:

1. **Predict.** The configured pipeline segments every image (batched, progress with ETA), writing each
   result to `DIR/predictions/` as `selfseg segment` does (its outputs log decides what is done, so `--resume`
   runs only the images without a result of the same settings). Under torchrun, rank r takes batches r, r+N, ...
   An image that cannot be read or segmented goes to `DIR/failures.txt` and is left out.
2. **Build.** On one process, from the prediction files alone: the nouns of every image (instances that pass
   the score filters) make the dataset's vocabulary (`vocabulary.py`), then each image is exported in the
   chosen formats (`export.py`) and drawn for the review page (`review.py`), one image at a time. The build
   starts from an empty dataset every time, so an interrupted and resumed run ends with the same dataset as an
   uninterrupted one.

Layout of DIR: `predictions/`, `failures.txt`, `vocabulary.json`, `dataset.json`, `labels.jsonl`, the formats'
files (export.py) and `index.html` + `review/`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DatasetError, ImageError, SelfSegError

PREDICTIONS = "predictions"
FAILURES = "failures.txt"


@dataclass
class LabelSummary:
    """What a `label_images` run made: images given, labelled (in the dataset), failed (with reasons), the
    classes, instances exported, and the dataset folder. On a torchrun rank other than 0: None."""

    out: Path
    images: int
    labelled: int
    failed: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    instances: int = 0


def _check_out(out: Path) -> None:
    """A missing or empty folder, or one an earlier `selfseg label` run made (its builds are replaced): anything
    else is the user's and is refused, since a build clears the dataset's files there first."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    from ..runs import LOCK, MANIFEST

    # A run's lock is there from its start, its manifest only from its first result.
    if not any((out / PREDICTIONS / marker).is_file() for marker in (MANIFEST, LOCK)):
        raise ConfigError(f"--out {out}: holds files that no `selfseg label` run wrote; expected a missing or "
                          f"empty folder, or an earlier `selfseg label` output")


def label_images(config: Any, inputs: Sequence[str], out: str | Path, ontology: str | Path | None = None,
                 resume: bool = False, fresh: bool = False, quiet: bool = False) -> LabelSummary | None:
    """Segment `inputs` (files, folders, globs) with `config` and build the dataset in `out`. Returns the
    summary on rank 0 (None on other torchrun ranks). A bad --out or ontology: ConfigError before any work."""
    from ..evaluate.benchmark import Dist
    from ..evaluate.mappers import check_mapper_model
    from ..io import expand_inputs
    from ..runs import output_names, own_outputs
    from .vocabulary import VocabularyBuilder, load_ontology

    if isinstance(config, (str, os.PathLike)):  # a config file's path, as `SelfSeg.from_config` takes
        from ..config import load_config

        config = load_config(config)
    if isinstance(inputs, (str, os.PathLike)):  # one input, not its characters
        inputs = [inputs]
    inputs = [str(i) for i in inputs]
    out = Path(out)
    dist = Dist.from_env()
    problem = None
    sources: list[str] = []
    classes = None
    mapper = None  # the ontology's label mapper, built once: checked here, used by the build
    if dist.rank == 0:
        try:
            _check_out(out)
            _refuse_edited(out)  # before hours of segmenting: a hand-corrected file would stop the build
            classes = load_ontology(ontology) if ontology else None
            VocabularyBuilder(config.label)._synonym_lists()  # a missing or unreadable list: before any work
            if classes is not None:  # a mapper model that cannot be had: before the images are segmented
                mapper = ontology_mapper(config, classes)
                check_mapper_model(mapper)
            expanded = list(dict.fromkeys(expand_inputs(inputs)))
            skipped = own_outputs(s for s in expanded if s not in inputs)
            sources = [s for s in expanded if s not in skipped]
            if not sources:
                raise ConfigError("no input images given")
            inside = [s for s in sources if out.resolve() in Path(s).resolve().parents]
            if inside:  # a rebuild replaces the dataset's images: they cannot also be its inputs
                raise ConfigError(f"input {inside[0]} lies inside --out {out}; label images from elsewhere")
        except SelfSegError as exc:  # every rank stops with it, not rank 0 alone (the others would wait for it)
            problem = str(exc)
    dist.init(config)
    finished = False
    try:
        shared = dist.gather((problem, sources))[0]
        if shared[0]:
            raise ConfigError(shared[0]) if dist.rank == 0 else SystemExit(2)
        sources = shared[1]
        names = output_names(sources)
        failed = _predict(config, sources, names, out / PREDICTIONS, dist, resume, fresh, quiet)
        everyone = [f for part in dist.gather(failed) for f in part]  # (source, reason) of every rank
        if dist.rank != 0:
            finished = True
            return None
        summary = build_dataset(config, sources, names, out, classes, everyone, quiet,
                                ontology_name=str(ontology) if ontology else None, mapper=mapper)
        finished = True
        return summary
    finally:
        dist.close(together=finished)


def ontology_mapper(config: Any, ontology: Any) -> Any:
    """The `label.mapper` onto an ontology's classes (`load_ontology`), with the config's settings for it: the
    evaluation section's mapper settings (its models, thresholds, prompt; not a benchmark's lexicon, which is
    its dataset's), `label.mapper_level` as the lexical level, and the model section's device and cache."""
    import dataclasses

    from ..evaluate.mappers import build_run_mapper
    from .vocabulary import ontology_classes

    block = dataclasses.replace(config.evaluation, lexical_level=config.label.mapper_level, lexicon=None)
    return build_run_mapper(config, config.label.mapper, block, "folder", ontology_classes(ontology))


def _predict(config: Any, sources: list[str], names: dict, pred: Path, dist: Any, resume: bool, fresh: bool,
             quiet: bool) -> list[tuple[str, str]]:
    """This rank's share of the images through the pipeline; returns its failures as (source, one line)."""
    from tqdm import tqdm

    from ..pipeline import SelfSeg
    from ..runs import RunFolder, run_settings

    folder = RunFolder(pred, run_settings(config, "segment"),
                       named=f"--out {pred.parent} (its {PREDICTIONS}/ folder)")
    if dist.rank == 0:
        folder.start(resume=resume, fresh=fresh)
    dist.gather(None)  # the folder exists, checked, before any rank writes into it
    if dist.rank != 0:
        folder.join()
    size = config.run.batch_size
    batches = [sources[i: i + size] for i in range(0, len(sources), size)]
    mine = [s for k, b in enumerate(batches) if k % dist.world == dist.rank for s in b]
    done = folder.done(mine, names) if resume else set()
    todo = [s for s in mine if s not in done]
    if done and dist.rank == 0:
        print(f"resuming: {len(done)} of {len(mine)} images already have predictions in {pred}/", file=sys.stderr)
    failed: list[tuple[str, str]] = []

    def outputs(s: str) -> list[Path]:
        where = names[s].folder(pred)
        return [where / f"{names[s].name}.json", where / f"{names[s].name}_labels.png"]

    # An image whose prediction would go where someone else's file is fails before it is computed.
    refused = folder.refused(todo, outputs)
    for s, why in refused.items():
        failed.append((s, f"{s}: {why}"))
        print(f"error: {s}: {why}", file=sys.stderr)
    todo = [s for s in todo if s not in refused]
    if not todo:
        return failed
    seg = SelfSeg(config)
    bar = tqdm(total=len(todo), unit="img", file=sys.stderr, leave=False, disable=quiet or dist.rank != 0 or None,
               desc="segmenting")
    try:
        for item in seg.segment_many(todo, size):
            bar.update(1)
            if not item.ok:
                failed.append((item.source, item.error))
                tqdm.write(f"error: {item.error}", file=sys.stderr)
                continue
            name = names[item.source]
            where = name.folder(pred)
            try:
                folder.begin(name, item.source, outputs(item.source))
            except FileExistsError as exc:  # put there while this run computed it
                failed.append((item.source, f"{item.source}: {exc}"))
                tqdm.write(f"error: {item.source}: {exc}", file=sys.stderr)
                continue
            paths = item.result.save(where, name.name, original_size=item.loaded.size, extra={"key": name.key})
            folder.record(name, item.source, [paths["json"], paths["labels"]])
    finally:
        bar.close()
    return failed


def _prediction_path(names: dict, pred: Path, source: str) -> Path:
    name = names[source]
    return name.folder(pred) / f"{name.name}.json"


def build_dataset(config: Any, sources: list[str], names: dict, out: Path, ontology: Any,
                  failed: list[tuple[str, str]], quiet: bool = False, ontology_name: str | None = None,
                  mapper: Any = None) -> LabelSummary:
    """Stage 2, from the prediction files: vocabulary, formats, review page, failures.txt. ontology: the user's
    classes (`load_ontology`) or None; mapper: its label mapper (None: `ontology_mapper`). failed: (source,
    reason) of the images the pipeline could not run on.

    The dataset is built in `DIR/.build/` and moved into place only when complete, so a build that fails or is
    killed before then leaves the previous dataset as it was; moving it in removes exactly the files the
    previous build listed (`.selfseg-build.json`), after checking that nothing else lies among them. The list
    names the incoming files before the move starts, so a move cut short is finished by the next run's build.
    One build at a time in DIR: another run's build waits for this one (a file lock, where the system has
    them)."""
    with _build_lock(out):
        return _build(config, sources, names, out, ontology, failed, quiet, ontology_name, mapper)


def _build(config: Any, sources: list[str], names: dict, out: Path, ontology: Any, failed: list[tuple[str, str]],
           quiet: bool, ontology_name: str | None, mapper: Any = None) -> LabelSummary:
    from tqdm import tqdm

    from ..runs import RunFolder, run_settings
    from ..segment.result import Segmentation
    from .export import DatasetWriter
    from .review import ReviewWriter
    from .vocabulary import VocabularyBuilder

    pred = out / PREDICTIONS
    label = config.label
    _refuse_edited(out)  # checked before segmenting too (label_images), and again when the new build moves in
    done = RunFolder(pred, run_settings(config, "segment")).done(sources, names)
    kept = [s for s in sources if s in done]
    reasons = dict(failed)
    lines = [reasons.get(s) or f"{s}: no prediction (the run stopped before this image)"
             for s in sources if s not in done]
    if not kept:
        _write_failures(out, lines)
        raise DatasetError(f"no image could be labelled: {len(lines)} failed (listed in {out / FAILURES})")
    if mapper is None and ontology is not None:
        mapper = ontology_mapper(config, ontology)
    builder = VocabularyBuilder(label, ontology=ontology, mapper=mapper)
    for s in tqdm(kept, unit="img", file=sys.stderr, leave=False, disable=quiet or None, desc="vocabulary"):
        builder.add(names[s].key, _labels(_prediction_path(names, pred, s), label))
    vocabulary = builder.build()
    if not vocabulary.classes:
        rare = sum("fewer than min_images" in d.reason for d in vocabulary.dropped.values())
        hint = (f"; {rare} noun(s) were seen in fewer than label.min_images={label.min_images} images: "
                f"`--set label.min_images=1` keeps them (a small folder rarely repeats a noun)"
                if rare else f" (see {pred}/ and the label section's filters)")
        raise ConfigError(f"no class to label with: the {len(kept)} images' predictions hold no noun the "
                          f"vocabulary keeps{hint}")

    stage = out / STAGE
    if stage.exists():  # a build cut short: only ever ours
        shutil.rmtree(stage)
    for left in out.glob(f".{BUILD_LIST}.*.tmp"):  # the list's temporary file of a run killed while writing it
        left.unlink(missing_ok=True)
    metadata = {"config": config.to_dict(), "inputs": len(sources), "failed": len(lines),
                "ontology": ontology_name}
    writer = DatasetWriter(stage, vocabulary, label, metadata=metadata)
    review = ReviewWriter(stage)
    instances = built = 0
    with writer:
        for s in tqdm(kept, unit="img", file=sys.stderr, leave=False, disable=quiet or None,
                      desc="writing dataset"):
            try:
                exported = writer.add(s, Segmentation.from_json(_prediction_path(names, pred, s)))
            except DatasetError:
                raise  # a file could not be written: the disk or the folder, not this image
            except (ValueError, ImageError) as exc:  # this image only (nothing of it written): listed, go on
                lines.append(f"{s}: {str(exc).splitlines()[0]}")
                continue
            built += 1
            instances += len(exported.record["instances"])
            image = _stored_pixels(s)
            image, masks = exported.for_view(image, review.view_size)
            review.add(exported.record, image, masks)
        metadata["failed"] = writer.metadata["failed"] = len(lines)
    if not built:
        _write_failures(out, lines)
        raise DatasetError(f"no image could be labelled: {len(lines)} failed (listed in {out / FAILURES})")
    review.close(vocabulary.names, title=f"selfseg dataset: {out.name}", metadata=metadata)
    _write_failures(stage, lines)
    _move_into_place(stage, out)
    return LabelSummary(out=out, images=len(sources), labelled=built, failed=lines,
                        classes=list(vocabulary.names), instances=instances)


def _write_failures(folder: Path, lines: Sequence[str]) -> None:
    """failures.txt: one line per image; a name that is not UTF-8 with its odd bytes escaped."""
    from ..io import atomic_write

    text = "".join(f"{x}\n" for x in lines).encode("utf-8", "backslashreplace")
    atomic_write(folder / FAILURES, lambda f: f.write(text))


def _labels(path: Path, label: Any) -> list[str]:
    """The labels of a prediction's instances that pass the score and area filters, read without decoding
    masks (an area counted at the analysed size, scaled to the photo's). NMS and max_instances need the
    classes, so they apply after the vocabulary: a class can end up with fewer instances than it counted."""
    d = json.loads(path.read_text(encoding="utf-8"))
    h, w = d["image_size"]
    oh, ow = d.get("original_size") or (h, w)
    scale = (oh * ow) / max(1, h * w)
    return [str(i["label"]) for i in d["instances"]
            if i["score"] >= label.min_score and i.get("mask_score", 1.0) >= label.min_mask_score
            and i["area"] * scale >= label.min_area]


def _stored_pixels(source: str) -> Any:
    """The photo as its file stores it (no EXIF rotation): the annotations follow the file's pixels."""
    from PIL import Image

    with Image.open(source) as im:
        return im.convert("RGB")


#: Where a build is made before it replaces the previous one.
STAGE = ".build"
#: The files the dataset in DIR consists of (relative paths), written when it is moved into place.
BUILD_LIST = ".selfseg-build.json"
#: Held by the run that builds the dataset in DIR.
BUILD_LOCK = ".selfseg-build.lock"


def _move_into_place(stage: Path, out: Path) -> None:
    """Replace the previous build's files with the staged build's. Refuses, before touching anything, when a
    folder the build occupies holds a file the previous build did not write (a user's notes in train/, a
    corrected annotation file): that is never deleted. Scores `selfseg evaluate` wrote there (by default
    beside the label maps it scored, such as train/masks/) are no part of the dataset and stay where they are."""
    from ..evaluate.result import is_scores_file
    from ..io import atomic_write

    new = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
    previous = _previous_build(out)
    old = set(previous)
    _refuse_edited(out, f" (the new dataset is complete in {stage}/)")
    tops = {rel.split("/")[0] for rel in new}
    strangers = [p for top in sorted(tops - {FAILURES})
                 for p in ([out / top] if (out / top).is_file() else
                           sorted((out / top).rglob("*")) if (out / top).is_dir() else [])
                 if p.is_file() and p.relative_to(out).as_posix() not in old and not is_scores_file(p)]
    # Nothing of the previous dataset may go before every listed file can: a listed file that is a folder
    # now, or a folder on its way that is a file now, or one that cannot be written in, is in the way.
    blocked = [p for p in (_in_the_way(out, rel) for rel in sorted(old)) if p is not None]
    locked = [p for p in blocked if p.is_dir() and not p.is_symlink() and not os.access(p, os.W_OK | os.X_OK)]
    if locked:
        raise ConfigError(f"cannot remove the previous dataset build's files in {locked[0]} (no permission to "
                          f"change that folder); nothing was removed (the new dataset is complete in {stage}/)")
    strangers += blocked
    if strangers:
        raise ConfigError(f"{strangers[0]} is not a file the previous dataset build wrote; move it out of {out}/ "
                          f"(the new dataset is complete in {stage}/)")
    staged_yaml = stage / "data.yaml"
    if staged_yaml.is_file():  # it names the dataset's folder, which is the stage while it is written
        text = staged_yaml.read_text(encoding="utf-8").replace(str(stage.resolve()), str(out.resolve()), 1)
        atomic_write(staged_yaml, lambda f: f.write(text.encode("utf-8")))
    # A rename keeps a file's size, time and bytes: the stamps taken here hold for the files once moved. Listed
    # with the previous build's before anything moves, so that every file in DIR is known for ours whenever
    # the move stops.
    stamps = {rel: None if _a_photo(rel) else _stamp(stage / rel) for rel in new}
    atomic_write(out / BUILD_LIST, lambda f: f.write(json.dumps({"files": previous, "incoming": stamps}).encode()))
    for rel in sorted(old):
        (out / rel).unlink(missing_ok=True)
    for top in sorted(tops | {rel.split("/")[0] for rel in old}):  # emptied folders, deepest first
        if (out / top).is_dir() and not (out / top).is_symlink():
            for d in sorted((p for p in (out / top).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _rmdir_if_empty(d)
            _rmdir_if_empty(out / top)
    for top in sorted(tops):
        if (stage / top).is_file():  # a file of the dataset's own (failures.txt of a run that labelled nothing)
            (stage / top).replace(out / top)
        elif (out / top).exists():  # a folder that still holds what the user put in it: merge file by file
            for p in sorted((stage / top).rglob("*")):
                if p.is_file():
                    (out / p.relative_to(stage)).parent.mkdir(parents=True, exist_ok=True)
                    p.replace(out / p.relative_to(stage))
        else:
            (stage / top).replace(out / top)
    atomic_write(out / BUILD_LIST, lambda f: f.write(json.dumps({"files": stamps}).encode("utf-8")))
    shutil.rmtree(stage, ignore_errors=True)


class _build_lock:
    """An exclusive lock on DIR/.selfseg-build.lock while a build stages and moves its dataset: a second run's
    build would clear the stage the first is writing. It waits, saying so once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.fd: int | None = None

    def __enter__(self) -> _build_lock:
        try:
            import fcntl
        except ImportError:  # no file locks here: builds in one folder at once are the user's to avoid
            return self
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.out / BUILD_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise DatasetError(f"cannot write in {self.out} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another run
            print(f"waiting for another selfseg label run to finish building the dataset in {self.out}/",
                  file=sys.stderr)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (ENOSYS, ENOLCK, EOPNOTSUPP): build unlocked
            pass
        return self

    def __exit__(self, *_: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None


def _in_the_way(out: Path, rel: str) -> Path | None:
    """What stops the listed file `rel` from being removed (None when nothing does, or it is gone)."""
    path = out / rel
    for parent in reversed(path.relative_to(out).parents[:-1]):  # its folders, from the top down
        folder = out / parent
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            return folder
        if not folder.exists():
            return None
    if path.is_dir() and not path.is_symlink():
        return path
    if (path.exists() or path.is_symlink()) and not os.access(path.parent, os.W_OK | os.X_OK):
        return path.parent
    return None


def _a_photo(rel: str) -> bool:
    """A photo of the dataset ({split}/images/...): a copy or link of an input, made again from it."""
    from .export import SPLITS

    parts = rel.split("/")
    return len(parts) >= 3 and parts[0] in SPLITS and parts[1] == "images"


def _stamp(path: Path) -> list[Any]:
    """[size, modification time in ns, sha256]: the size and time spare reading a file left as written; the
    digest tells an edit from a file only touched or copied without its times."""
    from ..runs import file_stat

    return [*file_stat(path), _sha256(path)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _refuse_edited(out: Path, after: str = "") -> None:
    """ConfigError listing the previous build's files whose content changed since it wrote them (a
    hand-corrected annotation file is the user's work now); photos and failures.txt are made again."""
    edited = []
    for rel, stamp in _previous_build(out).items():
        path = out / rel
        if stamp is None or rel == FAILURES or _a_photo(rel):
            continue
        try:
            if path.is_file() and not _holds(path, stamp):
                edited.append(rel)
        except OSError as exc:
            raise ConfigError(f"cannot read {path} to tell whether it was edited since the previous dataset "
                              f"build ({exc.strerror or exc})") from None
    if edited:
        shown = ", ".join(edited[:3]) + (f" and {len(edited) - 3} more" if len(edited) > 3 else "")
        raise ConfigError(f"{len(edited)} file(s) of the previous dataset build changed since it wrote them "
                          f"({shown}); move them out of {out}/ to keep them, or delete them{after}")


def _previous_build(out: Path) -> dict[str, list[Any] | None]:
    """The previous build's files and their stamps (None: not stamped, e.g. a list of names alone). Where a
    move was cut short, the files of both builds, each with the stamp of the build its file now holds."""
    try:
        listed = json.loads((out / BUILD_LIST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if isinstance(listed, dict):
        files = _stamps(listed.get("files"))
        incoming = _stamps(listed.get("incoming"))
    else:
        files, incoming = _stamps({p: None for p in listed} if isinstance(listed, list) else None), {}
    for rel, stamp in incoming.items():
        if files.get(rel) is not None and stamp is not None:
            try:
                if not ((out / rel).is_file() and _holds(out / rel, stamp)):
                    continue  # still the previous build's file
            except OSError:  # unreadable: the previous build's stamp, which the edit check then reports
                continue
        files[rel] = stamp
    return files


def _stamps(files: Any) -> dict[str, list[Any] | None]:
    """A build list's {relative path: stamp}, without paths that would leave DIR."""
    items = files.items() if isinstance(files, dict) else []
    return {p: (stamp if isinstance(stamp, list) and len(stamp) == 3 else None) for p, stamp in items
            if isinstance(p, str) and ".." not in p.split("/") and not p.startswith("/")}


def _holds(path: Path, stamp: list[Any]) -> bool:
    """Whether the file holds what the stamp records: the same size and time, or else the same bytes (a file
    only touched, or copied without its times). OSError when it cannot be read."""
    from ..runs import file_stat

    return file_stat(path) == stamp[:2] or _sha256(path) == stamp[2]


def _rmdir_if_empty(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:  # not empty: someone's file is in it
        pass
