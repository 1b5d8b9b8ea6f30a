"""`selfseg` command line: tag, segment, map-labels, evaluate, benchmark, resources, download.

Failures print one line each and exit non-zero."""
from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, SelfSegError

if TYPE_CHECKING:
    from .evaluate.result import InstanceScores, PanopticScores

_OVERRIDE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*=")
_KEY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _line(text: str) -> str:
    """One printed line: control characters (a newline in a file name) shown as \\xNN escapes, so that an
    image's line stays one line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


CONFIG_HELP = ("YAML config: a path, or a name under configs/ (bcc_voc, smoke, benchmarks/voc); default: selfseg's "
               "defaults (the co-association consensus; 'base' pins the paper's settings)")


def _overrides(ns: argparse.Namespace, positional: Sequence[str], flags: Sequence[tuple[str, str]] = (),
               checked: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The config overrides a command line gives, in the order they apply: its key=value arguments, its --set
    ones, then `flags`, (spelling, override) pairs of the options that stand for a config field (--device is
    added here). Two that give one field different values are refused, whichever way each is spelled: applied
    in turn, one would win without a word. `checked`: options the command applies itself (tag's --batch-size,
    benchmark's --limit), compared with the others the same way."""
    from .config import check_overrides_agree

    given = [(a, a) for a in positional] + [(f"--set {s}", s) for s in ns.set or []] + list(flags)
    if getattr(ns, "device", None):
        given.append((f"--device {ns.device}", f"model.device={ns.device}"))
    check_overrides_agree(given + list(checked))
    return [item for _, item in given]


def _batch_size_flag(ns: argparse.Namespace) -> list[tuple[str, str]]:
    return [(f"--batch-size {ns.batch_size}", f"run.batch_size={ns.batch_size}")] if ns.batch_size else []


DEVICE_HELP = "where the models run: auto (CUDA when available), cpu, cuda, cuda:N or mps (model.device)"


def _split_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Positional args that look like key.sub=value and are not files are overrides. One that names a config
    field but has no value (`captioning.cycles`), and is no file either, is an error rather than an input."""
    import dataclasses

    from .config import Config

    sections = {f.name for f in dataclasses.fields(Config)}
    inputs, overrides = [], []
    for a in args:
        if _KEY.match(a) and a.split(".")[0] in sections and not _exists(a):
            raise ConfigError(f"{a}: no such file, and a config override needs a value: {a}=VALUE")
        (overrides if _OVERRIDE.match(a) and not _exists(a) else inputs).append(a)
    return inputs, overrides


def _exists(name: str) -> bool:
    try:
        return Path(name).exists()
    except OSError:  # e.g. a long vocabulary override: longer than any file name can be, so not a file
        return False


def _outputs_of(name, segment: bool) -> tuple[str, ...]:
    """The file names one input's results take, JSON first (the outputs log's order)."""
    return (f"{name.name}.json",) + \
        ((f"{name.name}_labels.png", f"{name.name}_overlay.png") if segment else (f"{name.name}.png",))


def _output_overwrites_input(sources: Sequence[str], names: dict, out: Path, segment: bool) -> str | None:
    """A message when an output file this run would write is one of its inputs (`tag photos/x.png --out
    photos` would replace the photo with its cluster map), else None. Checked before any work, by file
    identity (device and inode), so that `X.png` for the input `X.PNG` is caught on a case-insensitive disk."""
    inputs = {}
    for s in sources:
        try:
            st = os.stat(s)
            inputs[(st.st_dev, st.st_ino)] = s
        except OSError:  # missing, a symlink loop, ...: the image loader reports that input on its own
            continue
    for src in sources:
        folder = names[src].folder(out)
        for file in _outputs_of(names[src], segment):
            try:
                st = os.stat(folder / file)
            except OSError:  # nothing there yet (or unreachable): nothing to overwrite
                continue
            if (st.st_dev, st.st_ino) in inputs:
                return (f"the output {file} in {folder}/ would overwrite the input {inputs[(st.st_dev, st.st_ino)]}; "
                        f"choose another --out")
    return None


def _run_images(ns: argparse.Namespace, segment: bool) -> int:
    """`tag` and `segment`: expand inputs, skip finished ones (--resume), run in batches, write each
    result as it arrives, one line per image or failure, progress on stderr."""
    from .evaluate.benchmark import Dist
    from .pipeline import SelfSeg
    from .runs import RunFolder, output_names, run_settings

    inputs, overrides = _split_overrides(ns.inputs)
    # --batch-size goes to the batching call itself (the summary and the torchrun shards read it there)
    seg = SelfSeg.from_config(ns.config, _overrides(ns, overrides, checked=_batch_size_flag(ns)))
    out = Path(ns.out)
    dist = Dist.from_env()
    # Under torchrun, rank 0 alone reads the inputs (a folder can change while ranks start) and shares them.
    dist.init(seg.config)  # each rank's own GPU before any model loads
    _check_device(seg.config)
    problem, sources = _checked_inputs(inputs, seg, out, segment) if dist.rank == 0 else (None, [])
    if dist.active:
        problem, sources = dist.gather((problem, sources))[0]
    if problem:
        dist.close()
        if dist.rank == 0:
            print(f"selfseg: error: {problem}", file=sys.stderr)
        return 2
    names = output_names(sources)
    folder = RunFolder(out, run_settings(seg.config, "segment" if segment else "tag"))
    if dist.active:
        return _run_sharded(ns, seg, sources, names, folder, out, segment, dist)
    folder.start(resume=ns.resume, fresh=ns.fresh)
    try:
        return _run_todo(ns, seg, sources, names, folder, out, segment)
    finally:
        folder.close()


def _checked_inputs(inputs: list[str], seg, out: Path, segment: bool) -> tuple[str | None, list[str]]:
    """The inputs expanded (a path given twice is one input; a folder or glob never yields what selfseg
    wrote there, logged in an outputs log; a file named on the command line is taken as given), or what
    stops the run before any work."""
    from .config import uses_tiny
    from .io import expand_inputs
    from .runs import LOG, output_names, own_outputs

    # One file spelled two ways (photos/a.jpg, ./photos/a.jpg, its absolute path) is one input; a link is
    # another name, and stays one.
    by_path: dict[str, str] = {}
    for s in expand_inputs(inputs):
        by_path.setdefault(os.path.abspath(s), s)
    expanded = list(by_path.values())
    skipped = own_outputs(s for s in expanded if s not in inputs)
    sources = [s for s in expanded if s not in skipped]
    if skipped:
        print(f"note: {len(skipped)} file(s) that selfseg wrote (named in a {LOG}) are not taken as inputs",
              file=sys.stderr)
    if not sources:
        if any(Path(i).is_dir() for i in inputs):
            return ("no input images given: a folder gives the images directly in it; for those in its "
                    "subfolders, give a glob such as 'folder/**/*.jpg'"), []
        return "no input images given", []
    problem = _output_overwrites_input(sources, output_names(sources), out, segment)
    if uses_tiny(seg.config, segment=segment) and not problem:
        _tiny_note("the outputs below are meaningless and only show that everything runs")
    return problem, sources


def _check_device(config) -> None:
    """A device this machine lacks is one error line before any other output (the tiny-model NOTE)."""
    from .models.loading import resolve_device

    resolve_device(config.model.device)


def _tiny_note(what: str) -> None:
    """The NOTE that a run's models are tiny random-init ones: on stderr with the run's other messages
    (stdout holds only the per-image result lines), once under torchrun."""
    if os.environ.get("RANK", "0") == "0":
        print(f"NOTE: this config uses tiny random-init models built in code (no download); {what}.",
              file=sys.stderr)


def _run_sharded(ns: argparse.Namespace, seg, sources: list[str], names: dict, folder, out: Path, segment: bool,
                 dist) -> int:
    """Under torchrun: rank r takes batches r, r + N, ... on its own device; rank 0 checks the folder first
    and reports the whole run."""
    problem = None
    if dist.rank == 0:
        try:
            folder.start(resume=ns.resume, fresh=ns.fresh)
            if ns.resume:
                # Results kept under another key are re-keyed only while no other run works in the folder;
                # the other ranks count as such once they join, so rank 0 re-keys them all before they do.
                folder.done(sources, names)
        except ConfigError as exc:
            problem = str(exc)
    problem = next((p for p in dist.gather(problem) if p), None)  # also: the folder is ready for every rank
    if problem:
        dist.close()
        if dist.rank == 0:
            print(f"selfseg: error: {problem}", file=sys.stderr)
        return 2
    if dist.rank != 0:
        folder.join()
    size = ns.batch_size or seg.config.run.batch_size
    batches = [sources[i : i + size] for i in range(0, len(sources), size)]
    mine = [s for k, b in enumerate(batches) if k % dist.world == dist.rank for s in b]
    finished = False
    try:
        code = _run_todo(ns, seg, mine, names, folder, out, segment, shard=f"rank {dist.rank}/{dist.world}: ",
                         progress=dist.rank == 0)
        codes = dist.gather(code)
        finished = True
    finally:
        folder.close()
        dist.close(together=finished)
    if dist.rank == 0:
        verb = "segmented" if segment else "tagged"
        print(f"all ranks: {verb} with exit codes {codes}; outputs in {out}/", file=sys.stderr)
        return max(codes)
    return 0


# Write failures of the output folder itself rather than of one image's files.
_FOLDER_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _run_todo(ns: argparse.Namespace, seg, sources: list[str], names: dict, folder, out: Path, segment: bool,
              shard: str = "", progress: bool = True) -> int:
    """The work of `_run_images` once the output folder is checked: each input's files are logged as about
    to be written, written (JSON last), then logged as done. `shard` starts the summary lines of one
    torchrun rank's share; `progress`: whether this process draws the progress bar."""
    from tqdm import tqdm

    from .pipeline import write_outputs

    done = folder.done(sources, names) if ns.resume else set()
    todo = [s for s in sources if s not in done]
    if len(todo) < len(sources):
        print(f"{shard}resuming: {len(sources) - len(todo)} of {len(sources)} images already have results in "
              f"{out}/", file=sys.stderr)
    failed = 0
    # An image whose results would go where someone else's file is fails before it is computed.
    refused = folder.refused(todo, lambda s: [names[s].folder(out) / f for f in _outputs_of(names[s], segment)])
    for s, why in refused.items():
        print(_line(f"error: {s}: could not write outputs ({why})"), file=sys.stderr)
    todo = [s for s in todo if s not in refused]
    # Progress on stderr (images done, rate, ETA); per-image lines go through tqdm.write so they stay readable.
    bar = tqdm(total=len(todo), unit="img", file=sys.stderr, disable=ns.quiet or not progress or None,
               leave=False)
    items: Iterator[Any] = iter(())  # nothing left to do builds no model (minutes and gigabytes when real)
    if todo:
        items = seg.segment_many(todo, ns.batch_size) if segment else seg.tag_many(todo, ns.batch_size)
    for item in items:
        bar.update(1)
        if not item.ok:
            failed += 1
            tqdm.write(_line(f"error: {item.error}"), file=sys.stderr)
            continue
        r, name = item.result, names[item.source]
        where, extra = name.folder(out), {"key": name.key}
        try:
            folder.begin(name, item.source, [where / f for f in _outputs_of(name, segment)])
            files = list(write_outputs(item, where, name.name, extra=extra))
            folder.record(name, item.source, files)
        except OSError as exc:
            if exc.errno in _FOLDER_FULL:  # every later image would fail the same way: stop, keep what is done
                bar.close()
                print(f"selfseg: error: {shard}cannot write in {where}/ ({exc.strerror}); the results written so far "
                      f"are kept: make room and continue with --resume", file=sys.stderr)
                return 1
            failed += 1
            tqdm.write(_line(f"error: {item.source}: could not write outputs ({exc})"), file=sys.stderr)
            continue
        except Exception as exc:  # drawing or encoding one image's outputs must not end the run
            failed += 1
            why = str(exc).splitlines()[0] if str(exc) else ""
            tqdm.write(_line(f"error: {item.source}: could not write outputs ({type(exc).__name__}: {why})"),
                       file=sys.stderr)
            continue
        if segment:
            found = ", ".join(dict.fromkeys(r.labels)) or "(nothing segmented: " + "; ".join(r.notes) + ")"
            tqdm.write(_line(f"{item.source}: {len(r.labels)} instances: {found}"), file=sys.stdout)
        else:
            tqdm.write(_line(f"{item.source}: {', '.join(r.tags) or '(no nouns found)'}"), file=sys.stdout)
    bar.close()
    verb = "segmented" if segment else "tagged"
    written = len(todo) - failed
    failed += len(refused)
    where_ = f"; outputs in {out}/" if written or len(todo) + len(refused) < len(sources) else "; nothing written"
    print(f"{shard}{len(sources) - failed}/{len(sources)} images {verb}{where_}", file=sys.stderr)
    return 1 if failed else 0


def cmd_tag(ns: argparse.Namespace) -> int:
    return _run_images(ns, segment=False)


def cmd_segment(ns: argparse.Namespace) -> int:
    return _run_images(ns, segment=True)


def cmd_label(ns: argparse.Namespace) -> int:
    """A folder of images in, a training dataset out (selfseg/label/run.py)."""
    from .config import load_config, uses_tiny
    from .label.run import label_images

    inputs, overrides = _split_overrides(ns.inputs)
    flags = [(f"--format {ns.format}", f"label.formats=[{ns.format}]")] if ns.format is not None else []
    flags += [(f"--{k.replace('_', '-')} {v}", f"label.{k}={v}")
              for k, v in (("val_fraction", ns.val_fraction), ("seed", ns.seed)) if v is not None]
    cfg = load_config(ns.config, _overrides(ns, overrides, flags + _batch_size_flag(ns)))
    _check_device(cfg)
    if uses_tiny(cfg, segment=True):
        _tiny_note("the dataset is meaningless and only shows that everything runs")
    summary = label_images(cfg, inputs, ns.out, ontology=ns.ontology, resume=ns.resume, fresh=ns.fresh,
                           quiet=ns.quiet)
    if summary is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(f"{summary.labelled}/{summary.images} images labelled: {summary.instances} instances of "
          f"{len(summary.classes)} classes; dataset in {summary.out}/ (review: {summary.out}/index.html)")
    if summary.failed:
        print(f"{len(summary.failed)} image(s) failed: listed in {summary.out}/failures.txt", file=sys.stderr)
    return 1 if summary.failed else 0


def cmd_resources(ns: argparse.Namespace) -> int:
    from .resources import setup_resources

    setup_resources(wordnet_dir=ns.wordnet_dir, spacy_pipeline=ns.spacy_pipeline, allow_apt=not ns.no_apt)
    return 0


def cmd_download(ns: argparse.Namespace) -> int:
    from .config import TINY_MODEL, checkpoints, declared_sections, load_config, override_fields
    from .resources import download_checkpoints

    inputs, overrides = _split_overrides(ns.overrides)
    if inputs:
        print(f"selfseg: error: expected key.sub=value overrides, got {inputs[0]!r}", file=sys.stderr)
        return 2
    overrides = _overrides(ns, overrides)
    configs = ns.config or [None]
    wanted: dict[str, str | None] = {}  # id -> the cache it goes to: each config's own
    for c in configs:
        try:
            cfg = load_config(c, overrides)  # the same overrides as the run that will load them
        except ConfigError as exc:
            raise ConfigError(f"config {c or 'defaults'}: {exc}") if len(configs) > 1 else exc from None
        # A benchmark config (one that sets its evaluation section, or an override of it) also needs its label
        # mapper's model; a config only for tagging and segmenting does not pull a 7B LLM it never uses.
        # `selfseg label`'s mapper (label.mapper, lexical by default) needs one only where a config sets it so.
        evaluate = "evaluation" in declared_sections(c) or any(
            key.startswith("evaluation.") for o in overrides for key in override_fields(o))
        for m in checkpoints(cfg, segment=True, evaluate=evaluate, label=True):
            if m != TINY_MODEL:
                wanted.setdefault(m, cfg.model.cache_dir)
    if not wanted:
        print("nothing to download: the configs use only models built in code")
        return 0
    failed = []
    for cache in dict.fromkeys(wanted.values()):
        failed += download_checkpoints([m for m, c in wanted.items() if c == cache], cache_dir=cache)
    if failed:
        print(f"selfseg: error: {len(failed)} checkpoint(s) could not be downloaded: {', '.join(failed)}",
              file=sys.stderr)
        return 2  # a resource problem, as for every other command
    return 0


def cmd_map_labels(ns: argparse.Namespace) -> int:
    """One description per input line -> one JSON object per output line."""
    import json
    import re

    from .evaluate.mappers import build_mapper

    opts: dict = {"device": ns.device}
    if ns.method == "lexical":
        opts.update(level=ns.level, lexicon=ns.lexicon)
    elif ns.method == "embedding":
        opts.update(model=ns.model, threshold=ns.threshold)
    elif ns.method == "hybrid":
        opts.update(level=ns.level, model=ns.model, threshold=ns.threshold, lexicon=ns.lexicon)
    else:
        opts.update(model=ns.model, batch_size=ns.batch_size, cache=ns.cache, dtype=ns.dtype,
                    max_new_tokens=ns.max_new_tokens, cache_dir=ns.cache_dir, local_files_only=ns.local_files_only)
    # One output row per input line, in order, so rows pair with lines: a line that cannot be read as text
    # (invalid UTF-8) or is empty gets a row with a null class and the reason, and never stops the others.
    if ns.file == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    else:
        try:
            data = Path(ns.file).read_bytes()
        except OSError as exc:
            print(f"selfseg: error: cannot read {ns.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    if isinstance(data, str):  # a text stdin (no byte buffer): split it as bytes too, the same way
        data = data.encode("utf-8", "surrogateescape")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not part of the first line
    # lines end at \n, \r\n or \r only (str.splitlines would also split at form feeds and U+2028)
    raw = re.split(rb"\r\n|\r|\n", data)
    if raw and raw[-1] == b"":
        raw.pop()
    lines: list[tuple[str, str | None]] = []  # (text, reason it is not mapped)
    for b in raw:
        try:
            text = b.decode("utf-8").strip()
        except UnicodeDecodeError:
            lines.append((b.decode("utf-8", errors="replace").strip(), "the line is not valid UTF-8"))
            continue
        lines.append((text, None if text else "empty line"))
    todo = [t for t, why in lines if why is None]
    mapper = build_mapper(ns.method, ns.dataset, **opts)
    matches = iter(mapper.map(todo) if todo else [])
    for text, why in lines:
        row = next(matches).to_dict() if why is None else {"description": text, "noun": "", "class": None,
                                                          "rule": "none", "reason": why}
        # ASCII JSON: any terminal encoding can print it, and no character inside a row ends a line
        print(json.dumps(row))
    return 0


def cmd_evaluate(ns: argparse.Namespace) -> int:
    import json

    from .evaluate.datasets import dataset_names, load_dataset
    from .evaluate.score import score_label_maps
    from .io import atomic_write

    if ns.task != "semantic":
        return _evaluate_coco(ns)
    if ns.dataset not in dataset_names():
        print(f"selfseg: error: --task semantic: dataset: expected one of {', '.join(dataset_names())}, "
              f"got {ns.dataset!r}", file=sys.stderr)
        return 2
    # A wrong root is told with the layout expected, before anything about where the scores go.
    dataset = load_dataset(ns.dataset, ns.root, ns.split, classes=ns.classes)
    out = Path(ns.out) if ns.out else Path(ns.predictions) / "scores.json"
    # Checked before scoring, which can take minutes: a table followed by a failure to save it is wasted work.
    # Without --out the target lies in the predictions folder, which scoring checks with its own message.
    problem = (_unwritable_file(out) or _an_input(out, ns)) if ns.out or Path(ns.predictions).is_dir() else None
    if problem:
        print(f"selfseg: error: cannot write the scores to {out}: {problem}", file=sys.stderr)
        return 2
    samples = dataset.samples[: ns.limit] if ns.limit else dataset.samples
    report = score_label_maps(dataset, ns.predictions, convention=ns.convention,
                              cmiou_segments=ns.cmiou_segments, samples=samples)
    print(report.table())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(json.dumps(report.to_dict(), indent=1).encode("utf-8")))
    print(f"scores written to {out}", file=sys.stderr)
    return 0


def _evaluate_coco(ns: argparse.Namespace) -> int:
    """--task panoptic / instance: the COCO formats, scored as their references score them."""
    import json

    from .evaluate.annotations import check_ground_truth
    from .io import atomic_write

    check_ground_truth(ns.task, ns.dataset, ns.root, ns.split)  # a wrong root: the layout expected, first
    pred = Path(ns.predictions)
    default = (pred if pred.is_dir() else pred.parent) / f"{ns.task}_scores.json"
    out = Path(ns.out) if ns.out else default
    problem = _unwritable_file(out) or _an_input(out, ns)
    if problem:
        print(f"selfseg: error: cannot write the scores to {out}: {problem}", file=sys.stderr)
        return 2
    try:
        scores = _score_coco(ns, pred)
    except SelfSegError:
        raise  # its message names the file and what is wrong already
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        # what the checks before scoring did not foresee in a malformed file: one line, not a traceback
        print(f"selfseg: error: {pred}: cannot score it ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    if scores is None:
        return 2
    print(scores.table())
    out.parent.mkdir(parents=True, exist_ok=True)
    row = {"task": ns.task, "dataset": ns.dataset, **scores.to_dict()}
    atomic_write(out, lambda f: f.write(json.dumps(row, indent=1).encode("utf-8")))
    print(f"scores written to {out}", file=sys.stderr)
    return 0


def _score_coco(ns: argparse.Namespace, pred: Path) -> PanopticScores | InstanceScores | None:
    from .evaluate.annotations import ground_truth

    gt = ground_truth(ns.task, ns.dataset, ns.root, ns.split)
    if ns.task == "panoptic":
        from .evaluate.panoptic import pq_score

        if not (pred / "panoptic.json").is_file() or not (pred / "panoptic").is_dir():
            print(f"selfseg: error: {pred}: expected a folder holding panoptic.json and panoptic/ (the PNGs)",
                  file=sys.stderr)
            return None
        scores = pq_score(gt, pred / "panoptic.json", pred / "panoptic", limit=ns.limit)
    else:
        from .evaluate.instances import coco_instance_scores

        if not pred.is_file():
            print(f"selfseg: error: {pred}: expected a COCO results JSON file", file=sys.stderr)
            return None
        scores = coco_instance_scores(gt, pred, limit=ns.limit)
    return scores


def _an_input(out: Path, ns: argparse.Namespace) -> str | None:
    """Why writing the scores to an existing `out` would destroy what is being scored, or None: a file of the
    dataset, the predictions (the results file itself, or an image among them). Scores an earlier evaluation
    wrote are replaced wherever they lie, so that a run can be repeated as it was given."""
    from .evaluate.result import is_scores_file
    from .io import IMAGE_SUFFIXES

    if not out.is_file() or is_scores_file(out):
        return None
    target = out.resolve()
    root, pred = Path(ns.root).resolve(), Path(ns.predictions).resolve()
    if root == target or root in target.parents:
        return f"it is a file of the dataset under {ns.root}"
    if target == pred or (pred in target.parents and target.suffix.lower() in IMAGE_SUFFIXES):
        return "it is one of the predictions being scored"
    return None


def _unwritable_file(path: Path) -> str | None:
    """Why a file could not be written at `path` (its folder created as needed), or None. Decided from the
    existing part of the path alone: nothing is created."""
    if path.is_dir():
        return "it is a folder; expected a file name"
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: mkdir would fail on it
            return f"{parent} is a broken symbolic link"
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the folder {parent} is not writable"
    return None


def cmd_benchmark(ns: argparse.Namespace) -> int:
    from .config import load_config, uses_tiny
    from .evaluate.benchmark import out_dir, run_benchmark

    inputs, overrides = _split_overrides(ns.overrides)
    if inputs:
        print(f"selfseg: error: expected key.sub=value overrides after the config, got {inputs[0]!r}",
              file=sys.stderr)
        return 2
    # --limit and --out go to run_benchmark as they are (an --out is a folder name, with no {name} to fill in)
    checked = [(f"--limit {ns.limit}", f"evaluation.limit={ns.limit}")] if ns.limit is not None else []
    checked += [(f"--out {ns.out}", f"evaluation.out={ns.out}")] if ns.out else []
    given = _overrides(ns, overrides, checked=checked)
    cfg = load_config(ns.config, given)
    _check_device(cfg)
    problem = _no_evaluation_section(ns.config, given)
    if problem:
        print(f"selfseg: error: {problem}", file=sys.stderr)
        return 2
    if uses_tiny(cfg, segment=True):
        _tiny_note("the scores are meaningless and only show that the benchmark runs end to end")
    report = run_benchmark(cfg, out=ns.out, limit=ns.limit, fresh=ns.fresh, quiet=ns.quiet)
    if report is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(report.table(per_class=False))
    run = out_dir(cfg, ns.out)
    print(f"results in {run}/results.json and {run}/results.md", file=sys.stderr)
    return 1 if report.failed else 0


def _no_evaluation_section(config: str, overrides: Sequence[str]) -> str | None:
    """Why `config` cannot be benchmarked as given, or None. With no evaluation section (in the file or its
    base chain) and no override naming the dataset or its root, the defaults' dataset would be looked for at
    its default folder, and that folder's layout error would not say that a config for tagging (smoke,
    bcc_voc) is no benchmark config. (`overrides` have been checked by load_config.)"""
    from .config import benchmark_configs, declared_sections, override_fields

    if "evaluation" in declared_sections(config) or {"evaluation.dataset", "evaluation.root"} & {
            key for o in overrides for key in override_fields(o)}:
        return None
    others = [n.removeprefix("benchmarks/") for n in benchmark_configs() if n != "benchmarks/smoke"]
    return (f"config {config} has no evaluation section (the dataset to score and where it is); give a benchmark "
            f"config: benchmarks/smoke (tiny models on the bundled ADE20K sample)"
            + (f" or benchmarks/<name> for a dataset, <name> one of {', '.join(others)}" if others else "")
            + "; or set evaluation.dataset and evaluation.root")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfseg", description="Training-free, self-guided open-vocabulary "
                                "segmentation.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"selfseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    for name, helptext, func in (
        ("tag", "find what is in images (BLIP-Cluster-Caption by default)", cmd_tag),
        ("segment", "find what is in images and segment it (tags -> boxes -> masks)", cmd_segment),
    ):
        t = sub.add_parser(name, help=helptext)
        t.add_argument("inputs", nargs="+", help="image files, folders or globs; key.sub=value overrides the config")
        t.add_argument("--config", "-c", help=CONFIG_HELP)
        t.add_argument("--out", "-o", default="out", help="output folder (default: out)")
        t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
        t.add_argument("--batch-size", type=_positive_int, help="images per batch (default: run.batch_size)")
        t.add_argument("--device", help=DEVICE_HELP)
        t.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        t.add_argument("--resume", action="store_true",
                       help="keep results an interrupted run with the same settings finished in --out")
        t.add_argument("--fresh", action="store_true",
                       help="first delete every file earlier runs wrote in --out (their outputs log says which)")
        t.set_defaults(func=func)

    lab = sub.add_parser("label", help="label a folder of images into a training dataset (COCO, YOLO, semantic) "
                                       "with one self-discovered vocabulary (resumable; torchrun-shardable)")
    lab.add_argument("inputs", nargs="+", help="image files, folders or globs; key.sub=value overrides the config")
    lab.add_argument("--config", "-c", help=CONFIG_HELP)
    lab.add_argument("--out", "-o", required=True, help="dataset folder")
    lab.add_argument("--format", help="comma-separated formats: coco, yolo, semantic (default: label.formats)")
    lab.add_argument("--ontology", help="YAML: a mapping class -> list of phrases, or a list of classes; the "
                                        "nouns are mapped onto these classes")
    lab.add_argument("--val-fraction", type=float, help="share of images in the val split (default 0.2)")
    lab.add_argument("--seed", type=int, help="seed of the split (default 0)")
    lab.add_argument("--resume", action="store_true",
                     help="keep the predictions an interrupted run with the same settings made in --out")
    lab.add_argument("--fresh", action="store_true", help="first delete the predictions earlier runs made in --out")
    lab.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    lab.add_argument("--batch-size", type=_positive_int, help="images per batch (default: run.batch_size)")
    lab.add_argument("--device", help=DEVICE_HELP)
    lab.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    lab.set_defaults(func=cmd_label)

    r = sub.add_parser("resources", help="make WordNet and a spaCy English pipeline available")
    r.add_argument("--wordnet-dir", help="copy WordNet from this database directory (e.g. /usr/share/wordnet)")
    r.add_argument("--spacy-pipeline", default="auto", help="spaCy pipeline to check (default: auto)")
    r.add_argument("--no-apt", action="store_true", help="never try apt-get for WordNet")
    r.set_defaults(func=cmd_resources)

    d = sub.add_parser("download", help="cache every checkpoint the configs use, for offline machines",
                       description="Fetch every checkpoint the configs use into the Hugging Face cache (each "
                                   "config's model.cache_dir), to copy to a machine without network. Gated "
                                   "models (Llama 2) need their licence accepted and HF_TOKEN set.")
    d.add_argument("--config", "-c", action="append",
                   help="config(s) whose checkpoints to fetch (repeatable; default: selfseg's defaults)")
    d.add_argument("overrides", nargs="*", help="key.sub=value overrides, applied to each config as a run would")
    d.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    d.set_defaults(func=cmd_download)
    # Names come from the modules that own them (a registry or the module's own tuple), never from a copy.
    from .evaluate.datasets import dataset_names
    from .evaluate.mappers import METHODS
    from .evaluate.mappers.lexical import LEVELS
    from .evaluate.metrics import CMIOU_SEGMENTS, CONVENTIONS
    from .models.spec import DTYPE_NAMES

    datasets = dataset_names()
    m = sub.add_parser("map-labels", help="map free-form descriptions (one per line) to a dataset's classes",
                       description="One JSON row per input line: the class (or null), the level, the noun used, "
                                   "the rule that decided, and a reason where the class is null.")
    m.add_argument("file", help="text file with one description per line, or - for stdin")
    m.add_argument("--dataset", "-d", required=True, choices=[d for d in datasets if d != "folder"])
    m.add_argument("--method", "-m", default="lexical", choices=list(METHODS))
    m.add_argument("--level", default="meronym", choices=list(LEVELS),
                   help="lexical / hybrid: highest level accepted (cumulative; default meronym)")
    m.add_argument("--lexicon", help="lexical / hybrid: a lexicon file for the dataset's classes, in place of the "
                                     "shipped one (format: selfseg/evaluate/mappers/lexicon.py)")
    m.add_argument("--model", help="embedding / hybrid: sentence-transformers model; llm: causal LM id")
    m.add_argument("--threshold", type=float,
                   help="embedding: cosine below which -> null (default 0.5); hybrid: cosine from which the "
                        "embedding fills a description nothing relates to (default 0.85)")
    m.add_argument("--batch-size", type=_positive_int, default=8, help="llm: prompts per generate call")
    m.add_argument("--cache", help="llm: reply cache JSON (default under ~/.cache/selfseg/love)")
    m.add_argument("--device", default="auto", help="embedding / llm: torch device (default auto)")
    m.add_argument("--dtype", default="auto", choices=["auto", *DTYPE_NAMES],
                   help="llm: weights' dtype (auto: bfloat16 on a GPU, float32 on the CPU)")
    m.add_argument("--max-new-tokens", type=_positive_int, default=512,
                   help="llm: longest reply (default 512, as the released LAVE code)")
    m.add_argument("--cache-dir", help="llm: Hugging Face cache directory (default: HF_HOME)")
    m.add_argument("--local-files-only", action="store_true", help="llm: never touch the network")
    m.set_defaults(func=cmd_map_labels)

    from .evaluate.annotations import INSTANCES, PANOPTIC

    e = sub.add_parser("evaluate", help="score predictions against a dataset: semantic label maps, COCO panoptic "
                                        "PNGs + JSON, or COCO instance results",
                       description="Score predictions already made (by selfseg or anything else) against a "
                                   "dataset's ground truth; `selfseg benchmark` predicts, maps nouns and scores "
                                   "in one run.")
    e.add_argument("--task", default="semantic", choices=["semantic", "panoptic", "instance"],
                   help="semantic: label-map PNGs (mIoU, cmIoU); panoptic: PQ / SQ / RQ; instance: mask and box "
                        "AP (COCOeval)")
    e.add_argument("--dataset", "-d", required=True, choices=list(dict.fromkeys([*datasets, *PANOPTIC, *INSTANCES])),
                   help=f"semantic: {', '.join(datasets)}; panoptic: {', '.join(PANOPTIC)}, cityscapes; "
                        f"instance: {', '.join(INSTANCES)}, cityscapes")
    e.add_argument("--root", "-r", required=True, help="dataset root in its standard layout")
    e.add_argument("--predictions", "-p", required=True,
                   help="semantic: folder of <image stem>.png label maps; panoptic: folder with panoptic.json "
                        "and panoptic/*.png; instance: COCO results JSON file")
    e.add_argument("--split", default="val", help="the dataset's split (default val)")
    e.add_argument("--classes", help="class-names file (folder datasets; overrides a shipped list)")
    e.add_argument("--convention", default="mmseg", choices=list(CONVENTIONS),
                   help="mIoU convention (default mmseg)")
    e.add_argument("--cmiou-segments", default="class", choices=list(CMIOU_SEGMENTS),
                   help="cmIoU segments: class (all pixels of one label in an image, default) or components "
                        "(8-connected pieces)")
    e.add_argument("--limit", type=_non_negative_int,
                   help="score only the first N images, the ground truth's first (0: all, as in benchmark)")
    e.add_argument("--out", "-o", help="JSON output (default: semantic <predictions>/scores.json; panoptic "
                                       "<predictions>/panoptic_scores.json; instance instance_scores.json beside "
                                       "the results file)")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("benchmark", help="run the pipeline over a dataset, map nouns, score (resumable; "
                                         "torchrun-shardable)")
    b.add_argument("config", help="benchmark YAML (path or name under configs/, e.g. benchmarks/voc)")
    b.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    b.add_argument("--limit", type=_non_negative_int, help="only the first N images (0: all; default: "
                                                             "evaluation.limit)")
    b.add_argument("--out", "-o", help="run folder (default: evaluation.out)")
    b.add_argument("--fresh", action="store_true", help="discard earlier predictions in the run folder")
    b.add_argument("--device", help=DEVICE_HELP)
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_benchmark)
    return p


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """While a command runs, a Python warning that reaches the user is one `warning: <message>` line on stderr,
    once per distinct message, instead of a file:line report with source code. Warnings about one image
    are notes in its result; what remains is about the run (a reply cache gone bad, ...)."""
    import warnings

    shown: set[str] = set()
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip()
        text = text.splitlines()[0] if text else category.__name__
        if text in shown:
            return
        shown.add(text)
        _note_line(f"warning: {text}", sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


class _ReaderMayLeave:
    """Standard output or error whose reader may leave before the command ends (`selfseg tag photos/ | head
    -1`). The files a run writes are its product and the lines on these streams a report of them, so a
    closed pipe must not stop the run: once a write finds it closed, everything meant for the stream is
    dropped (its descriptor is pointed at the null device, so that what Python still holds in its buffer, and
    its flush at exit, go nowhere instead of raising again), one note says so on the other stream, and the
    command goes on to the exit code of its work. Each line is flushed as it is written: a pipe gets an
    image's line when the image is done, not a buffer's worth at a time."""

    def __init__(self, stream: Any, other: str) -> None:
        self._stream = stream
        self._other = other  # "stdout" or "stderr": where the note goes
        self.gone = False

    def write(self, text: str) -> int:
        if self.gone:
            return len(text)
        try:
            written = self._stream.write(text)
            if "\n" in text:
                self._stream.flush()
            return written
        except OSError as exc:
            if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
                raise
            self._leave()
            return len(text)

    def flush(self) -> None:
        if self.gone:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
                raise
            self._leave()

    def _leave(self) -> None:
        self.gone = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError):  # no descriptor (a stream in memory): dropping is enough
            pass
        name = "standard output" if self._other == "stderr" else "standard error"
        other = getattr(sys, self._other)
        if not getattr(other, "gone", False):
            try:
                _note_line(f"note: {name} was closed (its reader ended); what is left to print there is "
                           f"dropped, and the command goes on", other)
            except OSError:  # that reader has left too, unseen so far
                pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


@contextmanager
def _readers_may_leave() -> Iterator[None]:
    """While a command runs, sys.stdout and sys.stderr are `_ReaderMayLeave` streams; afterwards, the streams
    they were again."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ReaderMayLeave(saved[0], "stderr"), _ReaderMayLeave(saved[1], "stdout")
    try:
        yield
    finally:
        try:
            for guard in (sys.stdout, sys.stderr):
                if isinstance(guard, _ReaderMayLeave):
                    guard.flush()
        finally:
            sys.stdout, sys.stderr = saved


def _note_line(text: str, file: Any) -> None:
    """One line on `file`; above a progress bar there, not through it."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        tqdm.tqdm.write(text, file=file)
    else:
        print(text, file=file)


def _printable_file_names() -> None:
    """A file name that is not UTF-8 reaches Python with its bytes escaped; the lines that name it show
    the escape (`caf\\udce9.jpg`) instead of failing on it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a text stream that can be reconfigured
            pass


def main(argv: Sequence[str] | None = None) -> int:
    _printable_file_names()
    with _readers_may_leave():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    # Inputs and key=value overrides may come after options ("tag a.jpg --config c.yaml x.y=1"), which
    # argparse's plain positional handling refuses: gather the leftovers back into the inputs.
    ns, extra = parser.parse_known_args(argv)
    if extra:
        if ns.command not in ("tag", "segment", "label", "benchmark", "download") or any(
                a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if ns.command in ("benchmark", "download"):
            ns.overrides += extra
        else:
            ns.inputs += extra
    try:
        with _warnings_as_lines():
            return ns.func(ns)
    except SelfSegError as exc:
        print(f"selfseg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable output folder, a full disk: say so in one line
        print(f"selfseg: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from . import interrupts

        print(_interrupted(ns.command), file=sys.stderr)
        return interrupts.exit_code()


def _interrupted(command: str | None) -> str:
    """The line an interrupted command ends with: how to go on from the results it kept."""
    if command in ("tag", "segment", "label"):
        return "selfseg: interrupted; finished images are kept: rerun with --resume to go on"
    if command == "benchmark":
        return "selfseg: interrupted; finished predictions are kept: rerun the same command to go on"
    return "selfseg: interrupted"


def entry() -> None:
    """The `selfseg` command (and `python -m selfseg`): `main`, then exit with its code.

    A torchrun worker that left its gloo process group, with every result written, sometimes aborted while
    the interpreter shut down ("terminate called without an active exception", no Python frame left on
    the stack), and torchrun then killed the other ranks and reported the run as failed. Such a process
    flushes its output and ends without the interpreter's teardown."""
    import signal

    from . import interrupts

    interrupts.install()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    try:
        code = main()
        if interrupts.interrupted() and code != interrupts.exit_code():
            print(_interrupted(command), file=sys.stderr)  # lost in a finaliser after the last check: said anyway
            code = interrupts.exit_code()
    except KeyboardInterrupt:  # a second signal before the first one's line was printed
        print(_interrupted(command), file=sys.stderr)
        code = interrupts.exit_code()
    if interrupts.interrupted() or code == 130:
        # The command is over: a further signal while the interpreter exits would print a traceback. Only here,
        # in the process the command owns: `main` called from Python leaves the caller's handlers alone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    benchmark = sys.modules.get("selfseg.evaluate.benchmark")
    if benchmark is not None and benchmark.Dist.left:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
