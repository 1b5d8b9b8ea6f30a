"""Instance segmentation and detection scores through pycocotools' `COCOeval` (the library itself): mask AP
("segm") and box AP ("bbox"), its twelve summary numbers under their usual names.

Ground truth is a COCO instances JSON; predictions a COCO results list (image_id, category_id, segmentation
as RLE, score; a bbox is derived from the mask where missing, as pycocotools' loadRes does). Checked before
COCOeval sees them, each a one-line error naming the file: an image or category the ground truth lacks, a
mask whose size is not its image's, a missing field. An empty results list is scored by COCOeval as no
detection at all (AP 0 where there is ground truth), where `loadRes` itself would fail on it.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .result import InstanceScores

#: COCOeval's `stats`, in order, under the names COCO reports them by.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("segm", "bbox")


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the {what} ({str(exc).splitlines()[0]})") from None


def _check_results(results: Any, gt: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if not isinstance(results, list):
        raise DatasetError(f"{where}: expected a COCO results list, got {type(results).__name__}")
    images = {im["id"]: im for im in gt.get("images", [])}
    categories = {c["id"] for c in gt.get("categories", [])}
    for k, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "category_id", "segmentation", "score"} <= set(r):
            raise DatasetError(f"{where}: result {k}: expected image_id, category_id, segmentation (RLE) and score")
        if r["image_id"] not in images:
            raise DatasetError(f"{where}: result {k}: image_id {r['image_id']!r} is not in the ground truth")
        if r["category_id"] not in categories:
            raise DatasetError(f"{where}: result {k}: category_id {r['category_id']!r} is not in the ground truth")
        seg, im = r["segmentation"], images[r["image_id"]]
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            raise DatasetError(f"{where}: result {k}: expected an RLE segmentation (size, counts)")
        if list(seg["size"]) != [im.get("height"), im.get("width")]:
            raise DatasetError(f"{where}: result {k}: mask size {list(seg['size'])} is not image "
                               f"{r['image_id']!r}'s {[im.get('height'), im.get('width')]}")
    return results


def coco_instance_scores(gt: str | Path | dict[str, Any], results: str | Path | list[dict[str, Any]],
                         iou_types: tuple[str, ...] = IOU_TYPES) -> InstanceScores:
    """COCOeval's summary for each IoU type, fractions in [0, 1]."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_where = str(gt) if not isinstance(gt, dict) else "ground truth"
    res_where = str(results) if not isinstance(results, list) else "results"
    gt_data = gt if isinstance(gt, dict) else _read_json(gt, "COCO instances JSON")
    if not isinstance(gt_data, dict) or not {"images", "annotations", "categories"} <= set(gt_data):
        raise DatasetError(f"{gt_where}: expected a COCO instances JSON (images, annotations, categories)")
    res = _check_results(results if isinstance(results, list) else _read_json(results, "COCO results"),
                         gt_data, res_where)
    quiet = io.StringIO()  # pycocotools prints its progress and summary; the caller prints a table
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt_data))
        coco_gt.createIndex()
        stats: dict[str, dict[str, float]] = {}
        for iou_type in iou_types:
            if res:
                coco_dt = coco_gt.loadRes([dict(r) for r in res])
            else:  # loadRes cannot take an empty list: an empty result set of the same images and categories
                coco_dt = COCO()
                coco_dt.dataset = {"images": gt_data["images"], "categories": gt_data["categories"],
                                   "annotations": []}
                coco_dt.createIndex()
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats[iou_type] = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
    return InstanceScores(stats=stats, images=len(gt_data["images"]), detections=len(res))
