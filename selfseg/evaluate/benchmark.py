"""`selfseg benchmark`: run the pipeline over a dataset, map the nouns, score, report.

Layout of a run folder:
    run.json                 what produced the predictions (config minus evaluation-only settings)
    predictions/<id>.json    per image: classes, tags, instances (written last: its presence = done)
    predictions/<id>_labels.png   open-vocabulary label map at the image's size
    predictions/<id>.error.txt    the one-line reason an image failed (it is retried on a rerun)
    love_cache.json          LLM replies (llm mapper)
    results.json, results.md the scores

Resuming: images are cut into fixed batches in dataset order, which decide the ranks' shares. A rerun
runs only the images without a prediction; an image's result does not depend on its batch neighbours
(each caption draws from its own random stream), so an interrupted run ends with the same files, hence
the same numbers, as an uninterrupted one. Scores are always computed afresh from the files: nothing is
counted twice.

Scale-out: under `torchrun --standalone --nproc-per-node N -m selfseg benchmark ...`, rank r takes batches r, r+N, ...
(gloo on CPU, nccl on GPU, each rank on its own GPU); after a barrier rank 0 maps and scores.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from .. import interrupts
from ..config import Config
from ..errors import ConfigError, DatasetError, SelfSegError
from ..runs import file_stat
from .annotations import task_truth
from .datasets import Dataset, Sample, datasets
from .mappers import check_mapper_model
from .mappers.base import require_relations
from .result import EvaluationReport, pct
from .score import score_open_vocabulary
from .score_segments import score_segments

# Settings that change scores but not predictions: changing them re-scores without re-running the models.
_EVAL_ONLY = {"mapper", "lexical_level", "lexicon", "gt_aware", "llm_model", "llm_batch_size", "llm_max_new_tokens",
              "llm_prompt", "llm_cache", "embedding_model", "embedding_threshold", "hybrid_threshold",
              "miou_convention", "cmiou_segments", "out", "limit", "classes", "tasks"}


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False
    #: Whether this process left a process group it had joined (`close`): see `cli.entry`.
    left: ClassVar[bool] = False

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(rank=int(os.environ.get("RANK", "0")), world=world,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")), active=world > 1)

    def init(self, config: Config) -> None:
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        device = config.model.device
        if device.startswith("cuda:"):
            # Every rank would load its models onto that one GPU (and talk over gloo).
            raise ConfigError(f"model.device is {device!r} under torchrun, where each rank takes "
                              f"cuda:<local rank>: use model.device=cuda (or auto), and CUDA_VISIBLE_DEVICES to "
                              f"choose the GPUs")
        cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        if cuda and self.local_rank >= torch.cuda.device_count():
            # nccl needs one GPU per rank; torch would fail deep inside set_device or the first collective.
            n = torch.cuda.device_count()
            raise ConfigError(f"torchrun started more ranks on this machine than it has CUDA devices ({n}): "
                              f"use --nproc-per-node {n}, or model.device=cpu to shard over CPU processes")
        if cuda:
            torch.cuda.set_device(self.local_rank)
            config.model.device = f"cuda:{self.local_rank}"
        if not dist.is_initialized():
            # A barrier waits for the slowest shard: allow a long benchmark, not the 30-minute default.
            dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=24))

    def gather(self, obj: Any) -> list[Any]:
        """All ranks' objects (also a barrier)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self, together: bool = False) -> None:
        """Leave the process group. `together` (every rank finished its part): wait for all ranks first. A rank
        that tore gloo down while rank 0 was still scoring sometimes aborted at exit ("terminate called without
        an active exception"). After a failure no rank waits: the others may never arrive."""
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                if together:
                    dist.barrier()
                dist.destroy_process_group()
                Dist.left = True


def prediction_fingerprint(config: Config) -> dict[str, Any]:
    """What the predictions depend on: the settings `selfseg segment` counts for a run (result-neutral ones
    such as batch sizes left out, an "auto" chat-model dtype as it resolves here, selfseg's version) and the
    dataset the images come from."""
    from ..runs import run_settings

    d = run_settings(config, "segment")
    ev = {k: v for k, v in config.to_dict()["evaluation"].items() if k not in _EVAL_ONLY}
    # Same image names under another root are other images: the resolved root is part of the identity.
    ev["root"] = str(Path(config.evaluation.root).expanduser().resolve())
    d["config"]["evaluation"] = ev
    return d


def out_dir(config: Config, out: str | Path | None = None) -> Path:
    return Path(out or config.evaluation.out.replace("{name}", config.name))


def _done(pred_dir: Path, s: Sample) -> bool:
    """A prediction counts when its JSON parses and was made from the image as it is now (size and
    modification time), and its label map is a whole PNG; anything else is predicted again."""
    from PIL import Image

    try:
        d = json.loads((pred_dir / f"{s.id}.json").read_text(encoding="utf-8"))
        if not isinstance(d, dict) or d.get("image_stat") != file_stat(s.image):
            return False
        with Image.open(pred_dir / f"{s.id}_labels.png") as im:
            im.load()  # a PNG cut short by a kill fails here, not while scoring
        return True
    except (OSError, ValueError, SyntaxError):
        return False


def _prepare(run: Path, config: Config, fresh: bool, ids: Sequence[str] = ()) -> None:
    """Rank 0: create the run folder; refuse predictions made by a different config. `fresh` discards the
    predictions a run writes for these sample ids (and its unfinished writes), nothing else in the folder."""
    pred = run / "predictions"
    meta = run / "run.json"
    fp = prediction_fingerprint(config)
    if fresh:
        if pred.is_dir():
            names = {n for sid in ids for n in (f"{sid}.json", f"{sid}_labels.png", f"{sid}.error.txt")}
            # one listing of the folder: the files, and the unfinished writes of them (`.<name>.<8 chars>.tmp`)
            for f in pred.iterdir():
                tmp = f.name.startswith(".") and f.name.endswith(".tmp") and f.name[1:-13] in names
                if f.name in names or tmp:
                    f.unlink(missing_ok=True)
        for old_result in ("results.json", "results.md"):  # of predictions that are gone
            (run / old_result).unlink(missing_ok=True)
    if not meta.is_file() and pred.is_dir() and any(pred.glob("*.json")):
        raise ConfigError(f"{run}/ holds predictions but no run.json saying which config made them; use --fresh "
                          f"to discard them, or another --out")
    if meta.is_file() and pred.exists() and any(pred.iterdir()):
        try:
            old = json.loads(meta.read_text(encoding="utf-8")).get("predictions_from")
        except (OSError, ValueError, AttributeError):
            raise ConfigError(f"{meta} is unreadable, so the predictions beside it cannot be trusted; use "
                              f"--fresh to discard them") from None
        if isinstance(old, dict) and "config" not in old:  # the layout before run.json held `segment`'s settings
            raise ConfigError(f"{meta} is from an earlier selfseg, which recorded settings otherwise, so the "
                              f"predictions beside it cannot be checked; use --fresh to make them again")
        if old != fp:
            diff = _first_difference(old, fp).removeprefix("config.")
            raise ConfigError(f"{run}/ holds predictions from a different config ({diff}); use --fresh to "
                              f"discard them, or another --out")
    pred.mkdir(parents=True, exist_ok=True)
    for stale in pred.glob(".*.tmp"):  # a write cut short by a killed run; never read, safe to drop
        stale.unlink(missing_ok=True)
    from ..io import atomic_write

    atomic_write(meta, lambda f: f.write(json.dumps({"predictions_from": fp}, indent=1).encode()))


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path or 'config'}: {a!r} then, {b!r} now"


def _predict(config: Config, dataset: Dataset, samples: list[Sample], pred_dir: Path, dist: Dist,
             quiet: bool) -> tuple[int, int]:
    """Run the pipeline over this rank's batches; returns (images run, images failed)."""
    from tqdm import tqdm

    from ..io import atomic_write
    from ..pipeline import SelfSeg

    size = config.run.batch_size
    batches = [samples[i : i + size] for i in range(0, len(samples), size)]
    mine = [b for k, b in enumerate(batches) if k % dist.world == dist.rank]
    # Per image, not per batch: an image's result does not depend on its batch neighbours (per-image random
    # streams), so a resumed batch runs only the images it lacks and still gives the uninterrupted numbers.
    todo = [left for left in ([s for s in b if not _done(pred_dir, s)] for b in mine) if left]
    skipped = sum(len(b) for b in mine) - sum(len(b) for b in todo)
    if skipped and dist.rank == 0:
        print(f"resuming: {skipped} images already have predictions in {pred_dir}/", file=sys.stderr)
    if not todo:
        return 0, 0
    seg = SelfSeg(config)
    ran = failed = 0
    bar = tqdm(total=sum(len(b) for b in todo), unit="img", file=sys.stderr, leave=False,
               disable=quiet or dist.rank != 0 or None, desc=f"rank {dist.rank}" if dist.active else None)
    for batch in todo:
        t0 = time.perf_counter()
        # Items come back in completion order (an unreadable image is reported before its batch runs):
        # match them to samples by source, never by position.
        by_source = {it.source: it for it in seg.segment_many([str(s.image) for s in batch], len(batch))}
        each = (time.perf_counter() - t0) / len(batch)
        for s in batch:
            item = by_source[str(s.image)]
            err = pred_dir / f"{s.id}.error.txt"
            if item.ok:
                item.result.timings["benchmark_seconds"] = each
                # Annotations follow the file's stored pixels; the models saw the photo upright.
                item.result.save(pred_dir, s.id, original_size=item.loaded.size,
                                 exif_orientation=_exif_orientation(s.image),
                                 extra={"image_stat": file_stat(s.image)})
                err.unlink(missing_ok=True)
            else:
                failed += 1
                # A prediction of the image as it was must not be scored for the image that failed now.
                for stale in (pred_dir / f"{s.id}.json", pred_dir / f"{s.id}_labels.png"):
                    stale.unlink(missing_ok=True)
                atomic_write(err, lambda f, e=item.error: f.write(e.encode("utf-8", "backslashreplace")))
                tqdm.write(f"error: {item.error}", file=sys.stderr)
            ran += 1
        bar.update(len(batch))
    bar.close()
    return ran, failed


def _exif_orientation(path: Path) -> int:
    from PIL import Image

    from ..io import exif_orientation

    try:
        with Image.open(path) as im:
            return exif_orientation(im)
    except OSError:  # the image loaded a moment ago; if it cannot be reopened, keep the map as analysed
        return 1


def build_mapper_from_config(config: Config, run: Path, classes: Any = None) -> Any:
    from .mappers import build_run_mapper

    ev = config.evaluation
    if classes is None and ev.classes:
        from .datasets import read_class_file

        classes = read_class_file(ev.classes)
    # The evaluation section is every mapper's block; the reply cache lies beside the run.
    return build_run_mapper(config, ev.mapper, ev, ev.dataset, classes, cache=run / "love_cache.json")


def run_benchmark(config: Config, out: str | Path | None = None, limit: int | None = None,
                  fresh: bool = False, quiet: bool = False) -> EvaluationReport | None:
    """Predict (resumably, sharded over torchrun ranks), then on rank 0 map, score and write results.
    Returns the report on rank 0, None on the other ranks."""
    dist = Dist.from_env()
    dist.init(config)
    finished = False
    try:
        ev = config.evaluation
        try:
            dataset = datasets().build(ev.dataset, config)
        except DatasetError as exc:
            # The shipped benchmark configs name a folder beside the source tree (data/...), which a wheel
            # install, or a dataset kept elsewhere, does not have: say which setting moves it.
            raise DatasetError(str(exc).replace(" is not a directory;", " is not a directory (set "
                                                "evaluation.root=<the dataset's folder>);", 1)) from None
        n = limit if limit is not None else ev.limit
        samples = dataset.samples[:n] if n else list(dataset.samples)
        run = out_dir(config, out)
        pred_dir = run / "predictions"
        problem = None
        mapper = truth = None
        if dist.rank == 0:
            try:
                _prepare(run, config, fresh, [s.id for s in dataset.samples])
                # Built before predicting, so a mapper that cannot score as configured, or ground truth that is
                # not there, stops the run now rather than after every image has been predicted.
                mapper = build_mapper_from_config(config, run, classes=dataset.classes)
                check_mapper_model(mapper)
                if ev.gt_aware:
                    require_relations(mapper)
                truth = task_truth(dataset, ev.tasks, samples)
                if samples:  # the first ground truth's values and size: a wrong class list or resized
                    # annotations show there, before any prediction rather than after all of them
                    dataset.check_size(samples[0], dataset.read_label(samples[0]))
            except SelfSegError as exc:
                problem = str(exc)
            except OSError as exc:  # e.g. --out under a file, or a read-only disk: one line, every rank stops
                problem = f"cannot use {run}/ as the run folder: {exc.strerror or exc}"
        problem = next((p for p in dist.gather(problem) if p), None)
        if problem:
            raise ConfigError(problem) if dist.rank == 0 else SystemExit(2)
        t0 = time.perf_counter()
        ran, failed = _predict(config, dataset, samples, pred_dir, dist, quiet)
        interrupts.check()  # a Ctrl-C lost in a finaliser during the last batch stops before scoring
        wall = time.perf_counter() - t0
        counts = dist.gather((ran, failed, wall))
        if dist.rank != 0:
            finished = True
            return None
        from tqdm import tqdm

        with tqdm(total=len(samples), unit="img", file=sys.stderr, leave=False, disable=quiet or None,
                  desc="scoring") as bar:
            report = score_open_vocabulary(dataset, samples, pred_dir, mapper, convention=ev.miou_convention,
                                           cmiou_segments=ev.cmiou_segments, gt_aware=ev.gt_aware,
                                           levels=mapper.levels, progress=bar.update)
        others = [t for t in ev.tasks if t != "semantic"]
        if others:
            with tqdm(total=len(samples), unit="img", file=sys.stderr, leave=False, disable=quiet or None,
                      desc=" + ".join(others)) as bar:
                scored = score_segments(dataset, samples, pred_dir, mapper, truth, others, gt_aware=ev.gt_aware,
                                        levels=mapper.levels, progress=bar.update)
            report.panoptic, report.instance = scored.get("panoptic"), scored.get("instance")
            listed = {f.split(":")[0] for f in report.failed}
            report.failed += [f for f in scored["failed"] if f.split(":")[0] not in listed]
            if report.lexical_alignment is not None and "curve" in scored:
                report.lexical_alignment.update({k: v for k, v in scored["curve"].items() if k != "levels"})
        ran_all = sum(c[0] for c in counts)
        report.extra.update({
            "config_name": config.name, "mapper": ev.mapper, "processes": dist.world,
            "images_run_now": ran_all, "images_resumed": len(samples) - ran_all,
            "wall_seconds_now": max(c[2] for c in counts),
            "images_per_second": (1.0 / report.extra["seconds_per_image"]) if report.extra.get("seconds_per_image")
            else None,
            "config": config.to_dict(),
        })
        if ev.mapper == "llm":
            report.extra["llm_asked"] = getattr(mapper, "asked", None)
        write_results(run, report)
        finished = True
        return report
    finally:
        dist.close(together=finished)


def write_results(run: Path, report: EvaluationReport) -> None:
    from ..io import atomic_write

    d = report.to_dict()
    atomic_write(run / "results.json", lambda f: f.write(json.dumps(d, indent=1).encode("utf-8")))
    atomic_write(run / "results.md", lambda f: f.write(results_markdown(report).encode("utf-8")))


def results_markdown(report: EvaluationReport) -> str:
    import yaml

    x = report.extra
    lines = [f"# {x.get('config_name', 'benchmark')}: {report.dataset} {report.split}", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.summary_rows()]
    if report.tags is not None:
        t = report.tags
        lines.append(f"| tag precision / recall (micro) | {pct(t.micro_precision)} / {pct(t.micro_recall)} |")
    if x.get("images_per_second"):
        lines.append(f"| images/s per process (median image) | {x['images_per_second']:.3f} |")
    lines.append(f"| label mapper | {x.get('mapper', '?')} |")
    if "tiny-random" in json.dumps(x.get("config", {})):
        lines += ["", "**This run used tiny random-init models built in code: the numbers are meaningless; "
                  "they only show that the benchmark runs end to end.**"]
    lines += ["", "Percent. mIoU convention: " + report.semseg.convention + "; failed images are scored as "
              "predicting nothing."]
    la = report.lexical_alignment
    if la:
        cols = ["mIoU"] + [k for k in ("PQ", "AP") if k in la]
        areas = [la["area"]] + [la[f"{k}_area"] for k in cols[1:]]
        lines += ["", "## Lexical alignment curve" + (" (ground-truth aware)" if la["gt_aware"] else ""), "",
                  "| level | " + " | ".join("mask AP" if c == "AP" else c for c in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        lines += [f"| {lv} | " + " | ".join(pct(la[c][k]) for c in cols) + " |" for k, lv in enumerate(la["levels"])]
        lines.append("| area | " + " | ".join(pct(a) for a in areas) + " |")
    if report.panoptic is not None:
        p = report.panoptic
        lines += ["", "## Panoptic", "", "| | PQ | SQ | RQ | categories |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {pct(v['pq'])} | {pct(v['sq'])} | {pct(v['rq'])} | {v['n']} |"
                  for name, v in (("all", p.all), ("things", p.things), ("stuff", p.stuff))]
    if report.instance is not None:
        from .instances import STAT_NAMES

        lines += ["", "## Instances (COCOeval)", "", "| | " + " | ".join(STAT_NAMES) + " |",
                  "|---|" + "---|" * len(STAT_NAMES)]
        lines += [f"| {'mask' if kind == 'segm' else 'box'} | " +
                  " | ".join(pct(st[k]) if st[k] >= 0 else "-" for k in STAT_NAMES) + " |"
                  for kind, st in report.instance.stats.items()]
    lines += ["", "## Per class", "", "| class | IoU | accuracy |", "|---|---|---|"]
    s = report.semseg
    lines += [f"| {n} | {pct(i)} | {pct(a)} |" for n, i, a in zip(s.class_names, s.iou, s.accuracy) if i is not None]
    if report.failed:
        lines += ["", "## Failed images", ""] + [f"- {f}" for f in report.failed]
    if "config" in x:
        lines += ["", "## Config", "", "```yaml", yaml.safe_dump(x["config"], sort_keys=False).rstrip(), "```"]
    return "\n".join(lines) + "\n"

