"""What evaluation reports: dataset-level segmentation scores, tag scores, and a benchmark run's report."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SemSegScores:
    """Dataset-level scores. IoU / accuracy values are fractions in [0, 1]; None for a class left out."""

    convention: str
    class_names: list[str]
    iou: list[float | None]
    accuracy: list[float | None]
    miou: float
    mean_accuracy: float
    pixel_accuracy: float
    fw_iou: float
    gt_pixels: list[int]
    pred_pixels: list[int]

    def keys(self) -> list[str]:
        """Unique per-class keys: the class name, with " (index)" where names repeat (ADE20K-847 has
        three classes named "bag")."""
        seen: dict[str, int] = {}
        for n in self.class_names:
            seen[n] = seen.get(n, 0) + 1
        return [n if seen[n] == 1 else f"{n} ({i})" for i, n in enumerate(self.class_names)]

    def to_dict(self) -> dict[str, Any]:
        return _finite({
            "convention": self.convention, "mIoU": self.miou, "mAcc": self.mean_accuracy,
            "pixel_accuracy": self.pixel_accuracy, "fwIoU": self.fw_iou,
            "per_class": {k: {"index": j, "iou": i, "accuracy": a, "gt_pixels": g, "pred_pixels": p}
                          for j, (k, i, a, g, p) in enumerate(zip(self.keys(), self.iou, self.accuracy,
                                                                  self.gt_pixels, self.pred_pixels))},
        })


@dataclass
class PanopticScores:
    """Panoptic quality: `all`, `things`, `stuff` each {"pq", "sq", "rq" in [0, 1], "n": categories counted};
    per_class: category id -> its pq / sq / rq and tp / fp / fn (categories with any of them)."""

    all: dict[str, float]
    things: dict[str, float]
    stuff: dict[str, float]
    per_class: dict[int, dict[str, Any]]
    images: int

    def to_dict(self) -> dict[str, Any]:
        return _finite({"units": "fractions in [0, 1]", "images": self.images,
                **{f"{k}_{group}": v[k] for group, v in (("all", self.all), ("things", self.things),
                                                        ("stuff", self.stuff)) for k in ("pq", "sq", "rq")},
                "PQ": self.all["pq"], "SQ": self.all["sq"], "RQ": self.all["rq"],
                "n": {"all": self.all["n"], "things": self.things["n"], "stuff": self.stuff["n"]},
                "per_class": {str(k): v for k, v in self.per_class.items()}})

    def table(self) -> str:
        lines = [f"{'':8s} {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'n':>4s}"]
        for name, v in (("All", self.all), ("Things", self.things), ("Stuff", self.stuff)):
            lines.append(f"{name:8s} {100 * v['pq']:6.1f} {100 * v['sq']:6.1f} {100 * v['rq']:6.1f} {v['n']:4d}")
        return "\n".join(lines) + f"\n(percent; {self.images} images)"


@dataclass
class InstanceScores:
    """COCOeval's twelve summary numbers per IoU type ("segm" mask AP, "bbox" box AP), fractions in [0, 1]
    (-1 where COCOeval has nothing to average, as it prints)."""

    stats: dict[str, dict[str, float]]
    images: int
    detections: int

    def to_dict(self) -> dict[str, Any]:
        return _finite({"units": "fractions in [0, 1]; -1 where COCOeval has no ground truth to average",
                        "images": self.images, "detections": self.detections, **self.stats})

    def table(self) -> str:
        keys = list(next(iter(self.stats.values()), {}))
        lines = [f"{'':6s} " + " ".join(f"{k:>6s}" for k in keys)]
        for kind, st in self.stats.items():
            lines.append(f"{kind:6s} " + " ".join(f"{100 * st[k]:6.1f}" if st[k] >= 0 else f"{'-':>6s}"
                                                 for k in keys))
        return "\n".join(lines) + f"\n(percent; {self.images} images, {self.detections} detections)"


@dataclass
class TagScores:
    """Macro (mean over images where defined) and micro (pooled counts) precision / recall / F1."""

    precision: float
    recall: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    images: int
    true_positives: int = 0
    predicted: int = 0
    present: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _finite(dict(self.__dict__))


@dataclass
class EvaluationReport:
    """Everything a benchmark run measured. Fractions in [0, 1]; tables print percent."""

    dataset: str
    split: str
    images: int
    semseg: SemSegScores
    cmiou: float
    cmiou_segments: int
    tags: TagScores | None = None
    failed: list[str] = field(default_factory=list)
    mapping: dict[str, str | None] = field(default_factory=dict)
    lexical_alignment: dict[str, Any] | None = None
    # evaluation.tasks beyond semantic: the same predictions scored as panoptic segments and as instances
    panoptic: PanopticScores | None = None
    instance: InstanceScores | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"dataset": self.dataset, "split": self.split, "images": self.images, **self.semseg.to_dict(),
             "cmIoU": self.cmiou, "cmIoU_segments": self.cmiou_segments, "failed": self.failed}
        if self.tags is not None:
            d["tags"] = self.tags.to_dict()
        if self.lexical_alignment is not None:
            d["lexical_alignment"] = self.lexical_alignment
        if self.mapping:
            d["mapping"] = self.mapping
        if self.panoptic is not None:
            d["panoptic"] = self.panoptic.to_dict()
        if self.instance is not None:
            d["instance"] = self.instance.to_dict()
        d.update(self.extra)
        return _finite(d)

    def summary_rows(self) -> list[tuple[str, str]]:
        s = self.semseg
        rows = [("images", str(self.images)), (f"mIoU ({s.convention})", pct(s.miou)), ("mAcc", pct(s.mean_accuracy)),
                ("pixel accuracy", pct(s.pixel_accuracy)), ("cmIoU", pct(self.cmiou))]
        if self.tags is not None:
            rows += [("tag precision", pct(self.tags.precision)), ("tag recall", pct(self.tags.recall))]
        for who, t in self.extra.get("tags_by_tagger", {}).items():
            rows += [(f"tag precision / recall, {who} alone", f"{pct(t['precision'])} / {pct(t['recall'])}")]
        if self.panoptic is not None:
            p = self.panoptic
            rows += [("PQ / SQ / RQ", f"{pct(p.all['pq'])} / {pct(p.all['sq'])} / {pct(p.all['rq'])}"),
                     ("PQ things / stuff", f"{pct(p.things['pq'])} / {pct(p.stuff['pq'])}")]
        if self.instance is not None:
            for kind, what in (("segm", "mask"), ("bbox", "box")):
                st = self.instance.stats.get(kind)
                if st:
                    rows.append((f"{what} AP / AP50 / AP75", " / ".join(pct(max(st[k], 0.0)) if st[k] >= 0 else "-"
                                                                    for k in ("AP", "AP50", "AP75"))))
        la = self.lexical_alignment
        if la is not None:
            rows.append(("lexical alignment (area)", pct(la["area"])))
            rows += [(f"lexical alignment, {k} (area)", pct(la[f"{k}_area"])) for k in ("PQ", "AP")
                     if f"{k}_area" in la]
        if self.failed:
            rows.append(("failed images (scored as no prediction)", str(len(self.failed))))
        return rows

    def table(self, per_class: bool = True) -> str:
        """A plain-text table: the summary, then per-class IoU of every scored class."""
        lines = [f"{self.dataset} {self.split}"]
        width = max(len(k) for k, _ in self.summary_rows())
        lines += [f"  {k:<{width}}  {v:>7}" for k, v in self.summary_rows()]
        if per_class:
            scored = [(n, i) for n, i in zip(self.semseg.class_names, self.semseg.iou) if i is not None]
            if scored:
                w = max(len(n) for n, _ in scored)
                lines.append(f"  {'class':<{w}}  {'IoU':>7}")
                lines += [f"  {n:<{w}}  {pct(i):>7}" for n, i in scored]
        return "\n".join(lines)


def pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _finite(obj: Any) -> Any:
    """NaN and infinities -> None, so the JSON is standard (json.dumps writes NaN and Infinity, which other
    parsers reject)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# The top-level keys of the files `selfseg evaluate` writes, per task: semantic (`EvaluationReport.to_dict` of
# label maps alone), panoptic, and instance (with "segm" and "bbox", the IoU types COCOeval scored).
_SEMANTIC_KEYS = frozenset({"dataset", "split", "images", "convention", "mIoU", "mAcc", "pixel_accuracy", "fwIoU",
                            "per_class", "cmIoU", "cmIoU_segments", "failed"})
_PANOPTIC_KEYS = frozenset({"task", "dataset", "units", "images", "PQ", "SQ", "RQ", "n", "per_class",
                            *(f"{k}_{group}" for group in ("all", "things", "stuff") for k in ("pq", "sq", "rq"))})
_INSTANCE_KEYS = frozenset({"task", "dataset", "units", "images", "detections"})


def is_scores_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a file of scores as `selfseg evaluate` writes them, told by its keys: selfseg's own,
    which a later evaluation may replace and which is no part of a dataset."""
    try:
        if os.path.getsize(path) > 64 << 20:  # far beyond any scores file (847 classes take ~100 kB)
            return False
        with open(path, "rb") as f:
            head = f.read(1)  # a JSON object: anything else (an image among a dataset's files) is not read on
            d = json.loads(head + f.read()) if head == b"{" else None
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON (an image), nested past the parser
        return False
    if not isinstance(d, dict):
        return False
    keys, task = set(d), d.get("task")
    if task == "panoptic":
        return keys == _PANOPTIC_KEYS
    if task == "instance":
        return _INSTANCE_KEYS <= keys <= _INSTANCE_KEYS | {"segm", "bbox"}
    return keys == _SEMANTIC_KEYS
