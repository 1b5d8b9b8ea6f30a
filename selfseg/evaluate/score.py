"""Scoring folders of predictions against a dataset.

Two kinds of prediction folders:
- *evaluation-index* label maps (`score_label_maps`, the `selfseg evaluate` command): `<id>.png` holding the
  dataset's class indices, the dataset's ignore value (255; 65535, in 16-bit maps, for a dataset of more than
  255 classes: ADE20K-847, PASCAL-Context 459, a large folder dataset) meaning "no class";
- *open-vocabulary* predictions (`score_open_vocabulary`, used by `selfseg benchmark`): selfseg's own
  `<id>_labels.png` (0 = unlabelled, i = the i-th name of `classes` in `<id>.json`); their names are mapped
  to dataset classes first, then scored. cmIoU is computed on the unmapped label map: it is class-agnostic.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .datasets import IGNORE, Dataset, Sample, read_label_image
from .mappers.base import LabelMapper, require_relations
from .metrics import (
    ClassAgnosticIoU,
    ImageEval,
    MetricSet,
    SemSegEvaluator,
    TagMetrics,
    lexical_alignment_area,
)
from .result import EvaluationReport


def read_label_map(path: Path) -> np.ndarray:
    """A PNG/TIFF of integer labels (palette, 8- or 16-bit) as int32."""
    return read_label_image(path).astype(np.int32)


# ------------------------------------------------------------------------------ evaluation-index maps


def find_prediction(pred_dir: Path, sample: Sample) -> Path | None:
    for name in (f"{sample.id}.png", f"{sample.id}.tif", f"{sample.id}.tiff"):
        if (pred_dir / name).is_file():
            return pred_dir / name
    return None


def score_label_maps(dataset: Dataset, pred_dir: str | Path, convention: str = "mmseg",
                     cmiou_segments: str = "class", samples: Sequence[Sample] | None = None,
                     progress: Callable[[int], None] | None = None) -> EvaluationReport:
    """Score `<id>.png` label maps in the dataset's class indices (ignore value = no class)."""
    pred_dir = Path(pred_dir)
    samples = list(samples if samples is not None else dataset.samples)
    if not pred_dir.is_dir():
        if pred_dir.exists():
            raise DatasetError(f"predictions {pred_dir} is not a folder (expected a folder of <image stem>.png "
                               f"label maps)")
        raise DatasetError(f"predictions folder {pred_dir} does not exist")
    missing = [s.id for s in samples if find_prediction(pred_dir, s) is None]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(samples)} images have no prediction in {pred_dir} "
                           f"(expected <image stem>.png), e.g. {missing[0]}.png")
    metrics = MetricSet(semseg=SemSegEvaluator(dataset.class_names, convention),
                        cmiou=ClassAgnosticIoU(cmiou_segments))
    for s in samples:
        gt = dataset.read_label(s)
        path = find_prediction(pred_dir, s)
        raw = read_label_image(path)
        if dataset.spec.ignore_value > 255 and raw.dtype == np.uint8:
            # 255 would read as a class (PC-459's monkey), not as "no class"
            raise DatasetError(f"{path}: expected a 16-bit label map for {dataset.spec.title}'s "
                               f"{dataset.num_classes} classes ({dataset.spec.ignore_value} = no class), got an 8-bit "
                               f"one")
        pred = raw.astype(np.int32)
        if pred.shape != gt.shape:
            raise DatasetError(f"{path}: expected a label map of the ground truth's size {gt.shape[::-1]} (W, H), "
                               f"got {pred.shape[::-1]}")
        pred = np.where(pred == dataset.spec.ignore_value, IGNORE, pred)
        bad = (pred != IGNORE) & ((pred < 0) | (pred >= dataset.num_classes))
        if bad.any():
            raise DatasetError(f"{path}: expected class indices 0..{dataset.num_classes - 1} or "
                               f"{dataset.spec.ignore_value} (no class), got {int(pred[bad][0])}")
        metrics.process(ImageEval(gt=gt, pred=pred))
        if progress:
            progress(1)
    result = metrics.evaluate()
    return EvaluationReport(dataset=dataset.name, split=dataset.split, images=len(samples),
                            semseg=result["semseg"], cmiou=result["cmiou"], cmiou_segments=metrics["cmiou"].segments)


# ------------------------------------------------------------------------------ open-vocabulary maps


@dataclass
class RawPrediction:
    """selfseg's own output for one image: the label map's path (ids into `classes`, 0 = unlabelled),
    read only when scored so a whole dataset's maps are never in memory at once."""

    labels_path: Path | None
    classes: list[str]
    seconds: float | None = None
    error: str | None = None
    # "union" tagger: class -> the taggers whose tags gave it (directly, or merged into it by the clean-up).
    found_by: dict[str, list[str]] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)  # the union's taggers


def read_raw_prediction(pred_dir: Path, sample_id: str) -> RawPrediction:
    js, png = pred_dir / f"{sample_id}.json", pred_dir / f"{sample_id}_labels.png"
    if not (js.is_file() and png.is_file()):
        err = pred_dir / f"{sample_id}.error.txt"
        return RawPrediction(None, [], error=err.read_text(encoding="utf-8").strip() if err.is_file()
                             else "no prediction")
    from ..segment.result import Segmentation

    try:
        seg = Segmentation.from_json(js)
    except (OSError, ValueError) as exc:
        return RawPrediction(None, [], error=f"unreadable prediction JSON ({exc})".splitlines()[0])
    return RawPrediction(png, list(seg.classes), seconds=seg.timings.get("benchmark_seconds"),
                         found_by=_found_by(seg), parts=list(seg.tags.parts) if seg.tags is not None else [])


def _found_by(seg: Any) -> dict[str, list[str]]:
    """class -> taggers that found it, from a union prediction's tags and merges ({} for other taggers)."""
    if seg.tags is None or seg.tags.tagger != "union":
        return {}
    kept = {m.get("dropped"): m.get("kept") for m in seg.merges}
    out: dict[str, list[str]] = {}
    for n in seg.tags.nouns:
        cls, seen = n.noun, {n.noun}
        while cls in kept and kept[cls] not in seen:  # chains: couch -> sofa -> loveseat
            cls = kept[cls]
            seen.add(cls)
        for who in n.found_by:
            out.setdefault(cls, [])
            if who not in out[cls]:
                out[cls].append(who)
    return out


def score_open_vocabulary(dataset: Dataset, samples: Sequence[Sample], pred_dir: str | Path, mapper: LabelMapper,
                          convention: str = "mmseg", cmiou_segments: str = "class", gt_aware: bool = False,
                          levels: Sequence[str] | None = None,
                          progress: Callable[[int], None] | None = None) -> EvaluationReport:
    """Map every predicted name to a class with `mapper`, then score.

    Unlabelled pixels and names mapped to nothing become the dataset's background class where it has one
    (VOC), else "no class" (a miss for the true class, a false positive for none). An image with no
    prediction (it failed) is scored as predicting nothing and listed in `failed`.
    `levels` (some of the mapper's levels) adds the Lexical Alignment Curve: mIoU at each level and its area;
    the reported scores are those at the mapper's own level. `gt_aware` (a mapper that relates nouns to
    classes; ConfigError otherwise): a name related to a pixel's ground-truth class at the level counts as
    that class.
    """
    if gt_aware:
        require_relations(mapper)
    pred_dir = Path(pred_dir)
    raws = {s.id: read_raw_prediction(pred_dir, s.id) for s in samples}
    names = list(dict.fromkeys(n for r in raws.values() for n in r.classes))
    none_value = dataset.spec.background if dataset.spec.background is not None else IGNORE
    own = mapper.level
    levels = list(levels or [own])
    if own not in levels:
        levels.append(own)

    # Per level: name -> class index (or none) and, for ground-truth-aware scoring, related classes.
    lut_by_level: dict[str | None, dict[str, int]] = {}
    related_by_level: dict[str | None, dict[str, set[int]]] = {}
    mapping: dict[str, str | None] = {}
    for level in levels:
        matches = mapper.map(names, level)
        lut_by_level[level] = {n: (m.index if m.index is not None else none_value) for n, m in zip(names, matches)}
        if gt_aware:
            # the name itself, not the noun a match used: a description's reading decides what it relates to
            related_by_level[level] = {n: mapper.related(n, level) for n in names}
        if level == own:
            mapping = {n: m.cls for n, m in zip(names, matches)}

    n = dataset.num_classes
    # mIoU at every level; cmIoU (label-map based, the same at every level) and tags at the mapper's own.
    by_level = {level: MetricSet(semseg=SemSegEvaluator(dataset.class_names, convention)) for level in levels}
    exclude = {dataset.spec.background} if dataset.spec.background is not None else set()
    by_level[own].add("cmiou", ClassAgnosticIoU(cmiou_segments))
    by_level[own].add("tags", TagMetrics(exclude=exclude))
    # A union tagger's parts, scored on the classes each one found: who found what, in numbers.
    parts = list(dict.fromkeys(p for r in raws.values() for p in r.parts))
    part_tags = MetricSet({p: TagMetrics(exclude=exclude) for p in parts})
    failed, seconds = [], []
    for s in samples:
        gt = dataset.read_label(s)
        raw = raws[s.id]
        labels = read_label_map(raw.labels_path) if raw.labels_path is not None else None
        if labels is not None and labels.shape != gt.shape:
            raw = RawPrediction(None, [], error=f"label map {labels.shape[::-1]} (W, H) does not match the "
                                                 f"ground truth {gt.shape[::-1]}")
            labels = None
        crashed = labels is None
        if crashed:
            # ground truth not of its image's size is the dataset's fault, whatever the prediction did
            dataset.check_size(s, gt)
            failed.append(f"{s.id}: {raw.error}")
            labels = np.zeros(gt.shape, dtype=np.int32)
        elif raw.seconds is not None:
            seconds.append(raw.seconds)
        if labels.size and labels.max() > len(raw.classes):
            raise DatasetError(f"{pred_dir / (s.id + '_labels.png')}: label {int(labels.max())} but the JSON lists "
                               f"only {len(raw.classes)} classes")
        gt_safe = np.where(gt == IGNORE, 0, gt)
        present = np.unique(gt).tolist()
        for level in levels:
            lut = np.asarray([none_value] + [lut_by_level[level][c] for c in raw.classes], dtype=np.int32)
            pred = lut[labels]
            if level in related_by_level:
                rel = np.zeros((len(raw.classes) + 1, n), dtype=bool)
                for i, c in enumerate(raw.classes):
                    rel[i + 1, sorted(related_by_level[level][c])] = True
                hit = rel[labels, gt_safe] & (gt != IGNORE)
                pred = np.where(hit, gt, pred)
            image = ImageEval(gt=gt, pred=pred, segments=labels, present=present,
                              predicted=[lut_by_level[level][c] for c in raw.classes], failed=crashed)
            by_level[level].process(image)
            if level == own:
                for p in parts:
                    found = [lut_by_level[own][c] for c in raw.classes if p in raw.found_by.get(c, [])]
                    part_tags[p].process(replace(image, predicted=found))
        if progress:
            progress(1)

    results = {level: m.evaluate() for level, m in by_level.items()}
    main = results[own]
    report = EvaluationReport(dataset=dataset.name, split=dataset.split, images=len(samples), semseg=main["semseg"],
                              cmiou=main["cmiou"], cmiou_segments=by_level[own]["cmiou"].segments, tags=main["tags"],
                              failed=failed, mapping=mapping)
    if len(levels) > 1:
        curve = [results[lv]["semseg"].miou for lv in levels]
        report.lexical_alignment = {"levels": list(levels), "mIoU": curve, "area": lexical_alignment_area(curve),
                                    "gt_aware": gt_aware}
    if parts:
        report.extra["tags_by_tagger"] = {p: t.to_dict() for p, t in part_tags.evaluate().items()}
    report.extra["seconds_per_image"] = float(np.median(seconds)) if seconds else None
    report.extra["compute_seconds"] = float(np.sum(seconds)) if seconds else None
    return report
