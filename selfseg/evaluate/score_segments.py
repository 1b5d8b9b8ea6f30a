"""Open-ended panoptic and instance scores of selfseg's own predictions (`selfseg benchmark` with
`evaluation.tasks`): each predicted segment carries a free-form name; the label mapper turns it into a dataset
class, the class into the ground truth's category, and the segments are scored as the references score them
(`panoptic.PanopticQuality`, equal to panopticapi; pycocotools' COCOeval for mask and box AP).

Per segment, not per pixel: a segment is one decision. With `gt_aware`, a segment whose name relates (at the
level) to the ground-truth class covering most of its pixels takes that class, as the open-ended protocol
decides per predicted region; other segments keep the mapper's class. The panoptic view is the one
`Segmentation.panoptic` paints (overlaps go to the more confident instance); instances are scored whole, with
the detector's score.

Predictions are brought to the ground truth's frame the way the label map is: masks of a reduced copy are
upsampled (nearest) to the photo's size and the photo's EXIF orientation is undone. An image without a
prediction (it failed) predicts nothing; so does one whose prediction cannot be read or is not of its ground
truth's size, and it is listed as failed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..io import undo_orientation
from ..tag.result import nearest_rows
from .annotations import TaskTruth
from .datasets import IGNORE, Dataset, Sample
from .mappers.base import LabelMapper, require_relations
from .metrics import lexical_alignment_area
from .panoptic import PanopticQuality


def _to_frame(a: np.ndarray, size: tuple[int, int], orientation: int) -> np.ndarray:
    """An analysed-size map of the upright photo at the size (H, W) of the file's pixels (nearest), in the
    file's pixel order."""
    if orientation in (5, 6, 7, 8):  # the upright photo is the file turned a quarter
        size = (size[1], size[0])
    if a.shape != tuple(size):
        a = a[nearest_rows(size[0], a.shape[0])[:, None], nearest_rows(size[1], a.shape[1])[None, :]]
    return undo_orientation(a, orientation)


def _orientation(path: Path) -> int:
    from PIL import Image

    from ..io import exif_orientation

    try:
        with Image.open(path) as im:
            return exif_orientation(im)
    except OSError:
        return 1


def _labels(pred_dir: Path, sample: Sample) -> list[str]:
    """The instance labels of an image's prediction, read without decoding its masks ([] when unreadable)."""
    import json

    try:
        d = json.loads((pred_dir / f"{sample.id}.json").read_text(encoding="utf-8"))
        return [str(i["label"]) for i in d["instances"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _read(pred_dir: Path, sample: Sample, size: tuple[int, int], orientation: int) -> tuple[Any, str | None]:
    """The image's Segmentation, or (None, why) when it has none or one that does not fit its ground truth."""
    from ..segment.result import Segmentation

    path = pred_dir / f"{sample.id}.json"
    if not path.is_file():
        return None, None  # failed or never run: the semantic scores list it
    try:
        seg = Segmentation.from_json(path)
    except (OSError, ValueError) as exc:
        return None, f"{sample.id}: unreadable prediction JSON ({str(exc).splitlines()[0]})"
    h, w = seg.original_size or seg.image_size
    upright = (w, h) if orientation in (5, 6, 7, 8) else (h, w)
    if upright != tuple(size):
        return None, (f"{sample.id}: prediction of size {upright[::-1]} (W, H) does not match the ground truth "
                      f"{tuple(size)[::-1]}")
    return seg, None


def _majority(gt: np.ndarray, mask: np.ndarray) -> int | None:
    """The ground-truth class covering most of a mask's labelled pixels (None: none labelled)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not rows.size:
        return None
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # a mask is small next to its image
    values = gt[window][mask[window]]
    values = values[values != IGNORE]
    if not values.size:
        return None
    return int(np.bincount(values).argmax())


def _majorities(gt: np.ndarray, ids: np.ndarray, n_classes: int) -> dict[int, int]:
    """segment id -> the ground-truth class under most of its pixels, for every id of a segment map at once."""
    keep = (ids > 0) & (gt != IGNORE)
    top = int(ids.max(initial=0)) + 1
    pairs = np.bincount(ids[keep].astype(np.int64) * n_classes + gt[keep], minlength=top * n_classes)
    table = pairs.reshape(top, n_classes)
    return {int(i): int(table[i].argmax()) for i in np.flatnonzero(table.sum(1))}


def score_segments(dataset: Dataset, samples: Sequence[Sample], pred_dir: str | Path, mapper: LabelMapper,
                   truth: TaskTruth, tasks: Sequence[str], gt_aware: bool = False,
                   levels: Sequence[str] | None = None,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Panoptic and / or instance scores at the mapper's own level, and with more `levels` their Lexical
    Alignment Curves. Returns {"panoptic": PanopticScores, "instance": InstanceScores, "curve": {"levels",
    "PQ", "PQ_area", "AP", "AP_area"}} for the tasks asked, and "failed": the images whose prediction could not
    be used here (scored as predicting nothing), one line each."""
    from ..segment.result import encode_rle, panoptic_segments
    from .instances import coco_instance_scores

    if gt_aware:
        require_relations(mapper)
    pred_dir = Path(pred_dir)
    panoptic, instance = "panoptic" in tasks, "instance" in tasks
    own = mapper.level
    levels = list(levels or [own])
    if own not in levels:
        levels.append(own)
    # names first, masks one image at a time: a whole split's decoded masks would not fit in memory
    names = list(dict.fromkeys(lab for s in samples for lab in _labels(pred_dir, s)))
    classes_at = {lv: {n: m.index for n, m in zip(names, mapper.map(names, lv))} for lv in levels}
    related_at = {lv: {n: mapper.related(n, lv) for n in names} for lv in levels} if gt_aware else {}

    pq = {lv: PanopticQuality(truth.panoptic.categories) for lv in levels} if panoptic else {}
    stuff = {c for c, info in truth.panoptic.categories.items() if not int(info.get("isthing", 0))} \
        if panoptic else set()
    results: dict[str | None, list[dict[str, Any]]] = {lv: [] for lv in levels}
    failed: list[str] = []
    for s in samples:
        gt = dataset.read_label(s)
        size = gt.shape
        orientation = _orientation(s.image)
        seg, why = _read(pred_dir, s, size, orientation)
        if why:
            failed.append(why)
        if panoptic:
            gt_ids, gt_segments = truth.panoptic.load(truth.image_ids[s.id])
            if gt_ids.shape != size:
                raise DatasetError(f"{truth.panoptic.where}: image {s.id}: panoptic ground truth {gt_ids.shape[::-1]} "
                                   f"(W, H) does not match its label map {size[::-1]}")
            if seg is not None:
                ids, info = seg.panoptic
                ids = _to_frame(ids, size, orientation)
                visible = [(i["id"], i["label"], i["score"]) for i in info]
                majority = _majorities(gt, ids, dataset.num_classes) if gt_aware else {}
            else:
                ids, visible, majority = np.zeros(size, np.int32), [], {}
            for lv in levels:
                cats = [_category(lab, i, lv, classes_at, related_at, majority, truth.panoptic_category)
                        for i, lab, _ in visible]
                pred_ids, segments = panoptic_segments(ids, [i for i, _, _ in visible], cats, stuff)
                for x in segments:
                    del x["instances"]
                pq[lv].process(gt_ids, gt_segments, pred_ids, segments, where=f"{pred_dir / s.id}.json")
        if instance and seg is not None:
            image_id = truth.instance_image_ids[s.id]
            for k, lab in enumerate(seg.labels):
                # An empty mask stays a detection: COCOeval counts it as a false positive, as detectron2 does.
                mask = _to_frame(seg.masks[k], size, orientation)
                majority = {k: _majority(gt, mask)} if gt_aware else {}
                rle = None
                for lv in levels:
                    cat = _category(lab, k, lv, classes_at, related_at, majority, truth.instance_category)
                    if cat is None:
                        continue
                    rle = rle or encode_rle(mask)
                    results[lv].append({"image_id": image_id, "category_id": cat, "segmentation": rle,
                                        "score": float(seg.scores[k])})
        if progress:
            progress(1)

    out: dict[str, Any] = {"failed": failed}
    curve: dict[str, Any] = {"levels": list(levels)}
    if panoptic:
        scores = {lv: pq[lv].evaluate() for lv in levels}
        out["panoptic"] = scores[own]
        curve["PQ"] = [scores[lv].all["pq"] for lv in levels]
        curve["PQ_area"] = lexical_alignment_area(curve["PQ"])
    if instance:
        ap = {lv: coco_instance_scores(truth.instances, results[lv]) for lv in levels}
        out["instance"] = ap[own]
        # COCOeval's -1 (no ground truth to average) counts as 0 on the curve
        curve["AP"] = [max(ap[lv].stats["segm"]["AP"], 0.0) for lv in levels]
        curve["AP_area"] = lexical_alignment_area(curve["AP"])
    if len(levels) > 1:
        out["curve"] = curve
    return out


def _category(label: str, key: Any, level: Any, classes_at: dict, related_at: dict, majority: dict,
              category_of_class: list[int | None]) -> int | None:
    """A predicted segment's category: the mapper's class, or (ground-truth aware) the ground-truth class under
    it when its name relates to that class."""
    cls = classes_at[level][label]
    under = majority.get(key)
    if related_at and under is not None and under in related_at[level][label]:
        cls = under
    return category_of_class[cls] if cls is not None and cls < len(category_of_class) else None
