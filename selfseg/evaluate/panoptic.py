"""Panoptic quality (PQ, SQ, RQ) exactly as the COCO panoptic reference (`panopticapi`'s `pq_compute`) computes
it, on COCO panoptic files: PNG segment-id images (id = R + 256 G + 256^2 B, 0 = void) and `segments_info`.

Per image, a predicted and a ground-truth segment of the same category match when their IoU exceeds 0.5 (so
at most one match each); the union leaves out the prediction's pixels on void. Ground truth marked `iscrowd`
is never matched and never a false negative; an unmatched prediction is ignored when more than half of it
lies on void or on a crowd region of its own category. A ground-truth segment's area is the one its JSON
gives, a prediction's is counted in its PNG (as the reference does). Per category PQ = sum IoU / (TP + FP/2 +
FN/2), SQ = sum IoU / TP, RQ = TP / (TP + FP/2 + FN/2); the averages (all, things, stuff) leave out
categories with no TP, FP or FN. Where the reference would divide by zero (no category counted at all),
the average is 0 with n = 0.

Deliberate strictness: a prediction for an image the ground truth lacks is an error here (the reference
ignores it), so mismatched files are noticed; everything the reference rejects (an id in the PNG and not in
the JSON or the other way round, an unknown category, a missing prediction) is a one-line error naming the
file.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..segment.result import rgb2id
from .result import PanopticScores

VOID = 0
_OFFSET = 256 * 256 * 256


@dataclass
class _Stat:
    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


@dataclass
class PanopticQuality:
    """reset / process / evaluate over images, as the semantic metrics are. categories: id -> {"name",
    "isthing"} (COCO panoptic's `categories`)."""

    categories: Mapping[int, Mapping[str, Any]]
    stats: dict[int, _Stat] = field(default_factory=dict)
    images: int = 0

    def reset(self) -> None:
        self.stats = {}
        self.images = 0

    def process(self, gt_ids: np.ndarray, gt_segments: Iterable[Mapping[str, Any]], pred_ids: np.ndarray,
                pred_segments: Iterable[Mapping[str, Any]], where: str = "image") -> None:
        """One image: id maps (H, W) and their `segments_info` lists. `where` names the image in errors."""
        gt_ids = np.asarray(gt_ids, dtype=np.uint64)
        pred_ids = np.asarray(pred_ids, dtype=np.uint64)
        if gt_ids.shape != pred_ids.shape:
            raise DatasetError(f"{where}: expected a prediction of the ground truth's size {gt_ids.shape[::-1]}, "
                               f"got {pred_ids.shape[::-1]}")
        gt = _segments(gt_segments, f"{where} (ground truth)")
        pred = _segments(pred_segments, where)
        if any("area" not in s for s in gt.values()):  # the JSON's area is used where it gives one
            ids, counts = np.unique(gt_ids, return_counts=True)
            counted = dict(zip(ids.tolist(), counts.tolist()))
            for i, s in gt.items():
                s.setdefault("area", counted.get(i, 0))
        ids, counts = np.unique(pred_ids, return_counts=True)
        in_png = {int(i): int(n) for i, n in zip(ids, counts)}
        extra = sorted(i for i in in_png if i != VOID and i not in pred)
        if extra:
            raise DatasetError(f"{where}: segment id {extra[0]} is in the PNG and not in its segments_info")
        missing = sorted(set(pred) - set(in_png))
        if missing:
            raise DatasetError(f"{where}: segment id {missing[0]} is in segments_info and not in the PNG")
        for i, s in pred.items():
            if int(s["category_id"]) not in self.categories:
                raise DatasetError(f"{where}: segment id {i} has category_id {s['category_id']}, which the "
                                   "dataset does not have")
            s["area"] = in_png[i]
        # every (ground truth id, prediction id) pair that overlaps, with its pixel count
        pairs, inter = np.unique(gt_ids * _OFFSET + pred_ids, return_counts=True)
        overlap = {(int(p // _OFFSET), int(p % _OFFSET)): int(n) for p, n in zip(pairs, inter)}
        gt_matched: set[int] = set()
        pred_matched: set[int] = set()
        for (g, p), n in overlap.items():
            if g not in gt or p not in pred or gt[g].get("iscrowd", 0) == 1:
                continue
            cat = int(gt[g]["category_id"])
            if cat != int(pred[p]["category_id"]):
                continue
            union = pred[p]["area"] + gt[g]["area"] - n - overlap.get((VOID, p), 0)
            if union <= 0:
                raise DatasetError(f"{where}: ground-truth segment {g} has area {gt[g]['area']} in its JSON, fewer "
                                   f"pixels than its PNG shows")
            iou = n / union
            if iou > 0.5:
                st = self.stats.setdefault(cat, _Stat())
                st.tp += 1
                st.iou += iou
                gt_matched.add(g)
                pred_matched.add(p)
        crowd: dict[int, int] = {}
        for g, s in gt.items():
            if g in gt_matched:
                continue
            if s.get("iscrowd", 0) == 1:
                crowd[int(s["category_id"])] = g
                continue
            self.stats.setdefault(int(s["category_id"]), _Stat()).fn += 1
        for p, s in pred.items():
            if p in pred_matched:
                continue
            cat = int(s["category_id"])
            ignored = overlap.get((VOID, p), 0) + (overlap.get((crowd[cat], p), 0) if cat in crowd else 0)
            if ignored / s["area"] > 0.5:
                continue
            self.stats.setdefault(cat, _Stat()).fp += 1
        self.images += 1

    def _average(self, isthing: bool | None) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
        total = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
        n = 0
        per: dict[int, dict[str, float]] = {}
        for cat, info in self.categories.items():
            if isthing is not None and (int(info.get("isthing", 0)) == 1) != isthing:
                continue
            st = self.stats.get(cat, _Stat())
            if st.tp + st.fp + st.fn == 0:
                per[cat] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            denom = st.tp + 0.5 * st.fp + 0.5 * st.fn
            per[cat] = {"pq": st.iou / denom, "sq": st.iou / st.tp if st.tp else 0.0, "rq": st.tp / denom}
            for k in total:
                total[k] += per[cat][k]
        return {**{k: v / n if n else 0.0 for k, v in total.items()}, "n": n}, per

    def evaluate(self) -> PanopticScores:
        all_, per = self._average(None)
        things, _ = self._average(True)
        stuff, _ = self._average(False)
        names = {c: str(info.get("name", c)) for c, info in self.categories.items()}
        counted = {c: {**per[c], "tp": self.stats[c].tp, "fp": self.stats[c].fp, "fn": self.stats[c].fn,
                       "name": names[c], "isthing": int(self.categories[c].get("isthing", 0))}
                   for c in self.categories if c in self.stats}
        return PanopticScores(all=all_, things=things, stuff=stuff, per_class=counted, images=self.images)


# ---------------------------------------------------------------------------------------------- files
def _segments(segments: Any, where: str) -> dict[int, dict[str, Any]]:
    """segments_info as id -> segment, each checked: a dict with integer id and category_id."""
    if not isinstance(segments, list):
        raise DatasetError(f"{where}: expected segments_info to be a list, got {type(segments).__name__}")
    out: dict[int, dict[str, Any]] = {}
    for k, seg in enumerate(segments):
        ok = isinstance(seg, dict) and all(isinstance(seg.get(f), int) and not isinstance(seg.get(f), bool)
                                           for f in ("id", "category_id"))
        if not ok:
            raise DatasetError(f"{where}: segments_info[{k}]: expected integer id and category_id, got {seg!r}"[:300])
        out[seg["id"]] = dict(seg)
    return out


def read_panoptic_json(path: str | Path) -> dict[str, Any]:
    """A COCO panoptic JSON (ground truth or predictions); a one-line error when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read it as JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: expected a COCO panoptic JSON with an 'annotations' list")
    seen: set[Any] = set()
    for k, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not {"image_id", "file_name", "segments_info"} <= set(a):
            raise DatasetError(f"{path}: annotations[{k}]: expected image_id, file_name and segments_info")
        if not isinstance(a["image_id"], (int, str)) or not isinstance(a["file_name"], str):
            raise DatasetError(f"{path}: annotations[{k}]: expected an int or str image_id and a str file_name")
        if a["image_id"] in seen:
            raise DatasetError(f"{path}: image_id {a['image_id']!r} has two annotations; expected one per image")
        seen.add(a["image_id"])
    categories = data.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), int)
                                                   for c in categories):
        raise DatasetError(f"{path}: expected categories to be a list of objects with an integer id")
    return data


def read_id_png(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DatasetError(f"{path}: no such PNG (named by its annotation's file_name)")
    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA"):  # a grey or palette PNG would read as other segment ids
                raise DatasetError(f"{path}: expected an RGB PNG of segment ids (id = R + 256 G + 256^2 B), got "
                                   f"mode {im.mode}")
            return rgb2id(np.asarray(im.convert("RGB")))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it as an image ({exc})") from None


@dataclass
class PanopticGroundTruth:
    """A dataset's panoptic ground truth: categories (id -> {"name", "isthing"}), image ids in order, and
    `load(image_id) -> (segment-id map, segments_info)`. COCO panoptic files give one (`from_coco`);
    datasets in other formats convert on the fly (Cityscapes' instanceIds)."""

    categories: dict[int, dict[str, Any]]
    image_ids: list[Any]
    load: Any
    where: str = "ground truth"
    # image id -> the stem of its PNG's name, by which a dataset's image is found in the ground truth
    stems: dict[Any, str] = field(default_factory=dict)

    @classmethod
    def from_coco(cls, json_path: str | Path, png_folder: str | Path) -> PanopticGroundTruth:
        data = read_panoptic_json(json_path)
        categories = {int(c["id"]): c for c in data.get("categories") or []}
        if not categories:
            raise DatasetError(f"{json_path}: expected the dataset's 'categories' (id, name, isthing)")
        by_image = {a["image_id"]: a for a in data["annotations"]}

        def load(image_id: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
            a = by_image[image_id]
            return read_id_png(Path(png_folder) / a["file_name"]), a["segments_info"]

        stems = {i: Path(a["file_name"]).stem for i, a in by_image.items()}
        return cls(categories, list(by_image), load, str(json_path), stems)


def pq_score(gt: PanopticGroundTruth, pred_json: str | Path, pred_folder: str | Path,
             limit: int | None = None) -> PanopticScores:
    """PQ of a prediction file pair against a ground truth, image by image in the ground truth's order;
    `limit`: only its first N images (predictions for the others are checked, not scored)."""
    pred = read_panoptic_json(pred_json)
    by_image = {a["image_id"]: a for a in pred["annotations"]}
    known = set(gt.image_ids)
    unknown = [i for i in by_image if i not in known]
    if unknown:
        raise DatasetError(f"{pred_json}: a prediction for image_id {unknown[0]!r}, which the ground truth lacks")
    metric = PanopticQuality(gt.categories)
    for image_id in gt.image_ids[:limit] if limit else gt.image_ids:
        p = by_image.get(image_id)
        if p is None:
            raise DatasetError(f"{pred_json}: no prediction for image_id {image_id!r}")
        png = Path(pred_folder) / p["file_name"]
        gt_ids, gt_segments = gt.load(image_id)
        metric.process(gt_ids, gt_segments, read_id_png(png), p["segments_info"], where=str(png))
    return metric.evaluate()


def pq_compute(gt_json: str | Path, gt_folder: str | Path, pred_json: str | Path,
               pred_folder: str | Path) -> PanopticScores:
    """PQ of a prediction file pair against a ground-truth file pair (COCO panoptic both); the categories
    are the ground truth's."""
    return pq_score(PanopticGroundTruth.from_coco(gt_json, gt_folder), pred_json, pred_folder)
