"""Segmentation metrics computed the way the field computes them.

Every metric follows `Metric` (detectron2's dataset-evaluator shape): `reset()`, `process(image)` once per
image, `evaluate()` for the dataset's result; settings such as the mIoU convention are given to the
constructor. All read the same per-image record, `ImageEval`, each the fields it needs, so `MetricSet` can
drive several named metrics over one pass and return their results by name.

- `SemSegEvaluator`: one dataset-level confusion matrix (detectron2's `SemSegEvaluator` design: reset /
  process / evaluate, ignore pixels in an extra bin), then per-class IoU, mIoU, pixel and mean accuracy
  under either convention:
    * "mmseg" (default): a class is left out of mIoU only when it is neither in the ground truth nor
      predicted; predicted-but-absent classes count IoU 0. mmsegmentation's IoUMetric (the code of the
      training-free papers whose benchmarks selfseg ships) and Self-Seg's released evaluator (a fork of
      X-Decoder keeping detectron2's earlier formula) both compute this.
    * "detectron2" (detectron2's current evaluator): a class with no ground-truth pixel in the whole set is
      left out of mIoU, even when it was predicted.
    Mean accuracy leaves out the classes with no ground truth under both. The two agree whenever every
    class occurs in the ground truth of the images scored.
  Predictions may say "no class" (IGNORE) at a pixel: that pixel is a miss for its ground-truth class and
  a false positive for none.
- `ClassAgnosticIoU`: the Self-Seg paper's cmIoU (Sect. 4.1): every ground-truth segment is matched to the
  predicted segment of highest IoU in its image; cmIoU is the mean of those IoUs over all ground-truth
  segments of the dataset. A segment is, by default, all pixels of one label in one image (a ground-truth
  class region; a predicted label region, whatever its name); with `segments="components"` each 8-connected
  component of a label is its own segment. Ground-truth ignore pixels belong to no segment on either side.
- `TagMetrics`: per-image precision / recall of the mapped tags against the classes present.
- `lexical_alignment_area`: area under the Lexical Alignment Curve (metric over the lexical levels).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .datasets import IGNORE
from .result import SemSegScores, TagScores

CONVENTIONS = ("detectron2", "mmseg")
# cmIoU segments: every predicted / true class region, or each 8-connected component of one.
CMIOU_SEGMENTS = ("class", "components")


@dataclass(frozen=True, eq=False)
class ImageEval:
    """One image as the metrics see it; each metric reads the fields it needs and refuses a record that
    lacks one.

    gt: (H, W) ground-truth class indices, IGNORE where not scored.
    pred: (H, W) predicted class indices, IGNORE for "no class" (mIoU).
    segments: (H, W) the prediction's regions under any ids (cmIoU); None: `pred`. Open-vocabulary
      predictions give their unmapped label map here, since cmIoU must not depend on the label mapping.
    predicted: the classes the image's tags map to, an entry None or IGNORE meaning no class (tag metrics).
    present: the classes in the ground truth, IGNORE allowed (tag metrics); None: those of `gt`.
    failed: the image has no prediction (the model failed on it): `pred` is what predicting nothing means for
      mIoU (no class, or the dataset's background where its unlabelled pixels are that), and cmIoU scores
      each of its ground-truth segments 0 rather than against one whole-image segment.
    """

    gt: np.ndarray | None = None
    pred: np.ndarray | None = None
    segments: np.ndarray | None = None
    predicted: Sequence[int | None] | None = None
    present: Sequence[int] | None = None
    failed: bool = False

    def classes_present(self) -> Sequence[int]:
        if self.present is not None:
            return self.present
        if self.gt is None:
            raise ValueError("expected ImageEval.present or ImageEval.gt to tell the classes present, got neither")
        return np.unique(self.gt).tolist()


def _need(image: ImageEval, name: str, metric: object) -> Any:
    value = getattr(image, name)
    if value is None:
        raise ValueError(f"{type(metric).__name__} needs ImageEval.{name}, got None")
    return value


@runtime_checkable
class Metric(Protocol):
    """A dataset-level metric: `reset` forgets every image, `process` adds one, `evaluate` gives the result
    over the images added since the last reset (and may be called again)."""

    def reset(self) -> None: ...

    def process(self, image: ImageEval) -> Any: ...

    def evaluate(self) -> Any: ...


class MetricSet:
    """Named metrics driven as one: `reset` / `process` / `evaluate` reach each in turn, in the order given,
    and `process` / `evaluate` return {name: that metric's answer}. A MetricSet is itself a `Metric`, so
    sets nest."""

    def __init__(self, metrics: Mapping[str, Metric] | None = None, **named: Metric) -> None:
        self.metrics: dict[str, Metric] = {}
        for name, metric in {**(metrics or {}), **named}.items():
            self.add(name, metric)

    def add(self, name: str, metric: Metric) -> None:
        if name in self.metrics:
            raise ValueError(f"metric {name!r} is already in the set")
        if not isinstance(metric, Metric):
            raise TypeError(f"metric {name!r}: expected reset / process / evaluate, got {type(metric).__name__}")
        self.metrics[name] = metric

    def __getitem__(self, name: str) -> Metric:
        return self.metrics[name]

    def __contains__(self, name: object) -> bool:
        return name in self.metrics

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def reset(self) -> None:
        for m in self.metrics.values():
            m.reset()

    def process(self, image: ImageEval) -> dict[str, Any]:
        return {name: m.process(image) for name, m in self.metrics.items()}

    def evaluate(self) -> dict[str, Any]:
        return {name: m.evaluate() for name, m in self.metrics.items()}


def _check_pair(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"expected a prediction of the ground truth's shape {gt.shape}, got {pred.shape}")
    for name, a in (("prediction", pred), ("ground truth", gt)):
        bad = (a != IGNORE) & ((a < 0) | (a >= num_classes))
        if bad.any():
            raise ValueError(f"expected {name} values in 0..{num_classes - 1} or {IGNORE}, got {int(a[bad][0])}")
    return pred, gt


class SemSegEvaluator:
    """Accumulate a (N+1) x (N+1) confusion matrix over a dataset: rows = prediction (row N: no class),
    columns = ground truth (column N: ignored). Reads `pred` and `gt`; `convention` decides which classes
    mIoU leaves out."""

    def __init__(self, class_names: Sequence[str], convention: str = "mmseg") -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
        self.class_names = list(class_names)
        self.n = len(self.class_names)
        self.convention = convention
        self.reset()

    def reset(self) -> None:
        self.conf = np.zeros((self.n + 1, self.n + 1), dtype=np.int64)

    def process(self, image: ImageEval) -> None:
        """Add one image: (H, W) int arrays of class indices, IGNORE where none / not scored."""
        pred, gt = _check_pair(_need(image, "pred", self), _need(image, "gt", self), self.n)
        p = np.where(pred == IGNORE, self.n, pred).astype(np.int64).ravel()
        g = np.where(gt == IGNORE, self.n, gt).astype(np.int64).ravel()
        self.conf += np.bincount(p * (self.n + 1) + g, minlength=(self.n + 1) ** 2).reshape(self.n + 1, self.n + 1)

    def merge(self, other: SemSegEvaluator) -> None:
        self.conf += other.conf

    def evaluate(self) -> SemSegScores:
        convention, n = self.convention, self.n
        scored = self.conf[:, :n]  # ignored ground truth never counts
        tp = np.diag(scored[:n]).astype(np.float64)
        pos_gt = scored.sum(axis=0).astype(np.float64)  # includes pixels predicted as "no class"
        pos_pred = scored[:n].sum(axis=1).astype(np.float64)
        union = pos_gt + pos_pred - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou_all = tp / union
            acc_all = tp / pos_gt
        if convention == "detectron2":
            iou_ok = pos_gt > 0
        else:
            iou_ok = union > 0
        acc_ok = pos_gt > 0
        iou = np.where(iou_ok, iou_all, np.nan)
        acc = np.where(acc_ok, acc_all, np.nan)
        total = pos_gt.sum()
        miou = float(np.nanmean(iou)) if iou_ok.any() else float("nan")
        macc = float(np.nanmean(acc)) if acc_ok.any() else float("nan")
        pacc = float(tp.sum() / total) if total > 0 else float("nan")
        fw = float(np.nansum(np.where(iou_ok, iou_all, 0) * pos_gt) / total) if total > 0 else float("nan")
        as_list = lambda a: [None if np.isnan(v) else float(v) for v in a]
        return SemSegScores(convention=convention, class_names=self.class_names, iou=as_list(iou),
                            accuracy=as_list(acc), miou=miou, mean_accuracy=macc, pixel_accuracy=pacc,
                            fw_iou=fw, gt_pixels=[int(v) for v in pos_gt], pred_pixels=[int(v) for v in pos_pred])


def _segments(labels: np.ndarray, valid: np.ndarray, components: bool,
              connect_through_invalid: bool = False) -> tuple[np.ndarray, int]:
    """Dense segment ids 0..S-1 over the valid pixels (-1 elsewhere) and S. With
    `connect_through_invalid`, components are found on the whole map and then cut to the valid pixels
    (a predicted blob crossing an ignored ground-truth band stays one segment)."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    if not valid.any():
        return out, 0
    values, inverse = np.unique(labels[valid], return_inverse=True)
    if not components:
        out[valid] = inverse.ravel()
        return out, len(values)
    from scipy import ndimage

    nxt = 0
    eight = np.ones((3, 3), dtype=bool)
    for v in values:
        region = labels == v if connect_through_invalid else valid & (labels == v)
        comp, _ = ndimage.label(region, structure=eight)
        sel = valid & (labels == v)
        used, dense = np.unique(comp[sel], return_inverse=True)  # components that touch a valid pixel
        out[sel] = dense.ravel() + nxt
        nxt += len(used)
    return out, nxt


class ClassAgnosticIoU:
    """cmIoU: mean over all ground-truth segments of the dataset of their best IoU with a predicted segment.

    The prediction may use any labels (open-vocabulary ids, BCC cluster ids, or mapped classes): only which
    pixels share a label matters. Every distinct predicted value is a segment, "unlabelled" included.
    Reads `segments` (else `pred`) and `gt`.
    """

    def __init__(self, segments: str = "class") -> None:
        if segments not in CMIOU_SEGMENTS:
            raise ValueError(f"segments: expected one of {CMIOU_SEGMENTS}, got {segments!r}")
        self.components = segments == "components"
        self.best: list[float] = []

    def reset(self) -> None:
        self.best = []

    def process(self, image: ImageEval) -> list[float]:
        """Add one image; returns the best IoU of each of its ground-truth segments."""
        gt = np.asarray(_need(image, "gt", self))
        if image.failed:  # no prediction at all is no segment: a crash earns nothing
            best = [0.0] * _segments(gt, gt != IGNORE, self.components)[1]
            self.best.extend(best)
            return best
        pred = image.segments if image.segments is not None else _need(image, "pred", self)
        pred = np.asarray(pred)
        if pred.shape != gt.shape:
            raise ValueError(f"expected a prediction of the ground truth's shape {gt.shape}, got {pred.shape}")
        valid = gt != IGNORE
        g, ng = _segments(gt, valid, self.components)
        p, npred = _segments(pred, valid, self.components, connect_through_invalid=True)
        if ng == 0:
            return []
        gv, pv = g[valid], p[valid]
        # Only the (true, predicted) pairs that meet are counted: a dense ng x npred table would take
        # gigabytes for a speckled prediction's hundreds of thousands of components.
        pairs, inter = np.unique(gv * npred + pv, return_counts=True)
        gi, pi = np.divmod(pairs, npred)
        union = np.bincount(gv, minlength=ng)[gi] + np.bincount(pv, minlength=npred)[pi] - inter
        best = np.zeros(ng)
        np.maximum.at(best, gi, inter / union)  # every true segment has a valid pixel, so meets some segment
        self.best.extend(float(b) for b in best)
        return [float(b) for b in best]

    def merge(self, other: ClassAgnosticIoU) -> None:
        self.best.extend(other.best)

    @property
    def segments(self) -> int:
        return len(self.best)

    def evaluate(self) -> float:
        return float(np.mean(self.best)) if self.best else float("nan")


@dataclass
class TagMetrics:
    """Per-image precision and recall of the set of classes the tags map to vs the classes present.

    `exclude` (e.g. VOC's background) is removed from both sides: it is not something a tagger names.
    Precision is undefined for an image with no mapped tag and recall for an image with no class
    present; those images are left out of the macro mean (the micro numbers pool all images).
    Reads `predicted` and the classes present (`present`, else those of `gt`).
    """

    exclude: set[int] = field(default_factory=set)
    per_image: list[tuple[float, float]] = field(default_factory=list)
    tp: int = 0
    npred: int = 0
    ngt: int = 0

    def reset(self) -> None:
        self.per_image, self.tp, self.npred, self.ngt = [], 0, 0, 0

    def process(self, image: ImageEval) -> tuple[float, float]:
        """Add one image; returns its precision and recall (NaN where undefined)."""
        t = {int(c) for c in _need(image, "predicted", self) if c is not None and c != IGNORE} - self.exclude
        g = {int(c) for c in image.classes_present() if c != IGNORE} - self.exclude
        hit = len(t & g)
        prec = hit / len(t) if t else float("nan")
        rec = hit / len(g) if g else float("nan")
        self.per_image.append((prec, rec))
        self.tp, self.npred, self.ngt = self.tp + hit, self.npred + len(t), self.ngt + len(g)
        return prec, rec

    def evaluate(self) -> TagScores:
        arr = np.asarray(self.per_image, dtype=np.float64).reshape(-1, 2)
        mean = lambda col: float(np.nanmean(col)) if np.isfinite(col).any() else float("nan")
        mp = self.tp / self.npred if self.npred else float("nan")
        mr = self.tp / self.ngt if self.ngt else float("nan")
        # Defined when there are both predictions and ground truth; no hit at all is 0, as scikit-learn's F1.
        f1 = (2 * mp * mr / (mp + mr) if mp + mr > 0 else 0.0) if self.npred and self.ngt else float("nan")
        return TagScores(precision=mean(arr[:, 0]), recall=mean(arr[:, 1]), micro_precision=mp, micro_recall=mr,
                         micro_f1=f1, images=len(self.per_image), true_positives=self.tp, predicted=self.npred,
                         present=self.ngt)


def lexical_alignment_area(values: Sequence[float]) -> float:
    """Area under the Lexical Alignment Curve: the metric at each lexical level (exact, synonym, hyponym,
    meronym), levels evenly spaced on [0, 1], trapezoid rule. It lies between the first and the last value;
    for the usual 4 levels it is (v0/2 + v1 + v2 + v3/2) / 3. One level: that value."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("expected at least one level's value, got none")
    if v.size == 1:
        return float(v[0])
    return float(((v[:-1] + v[1:]) / 2).sum() / (v.size - 1))
