"""Instance segmentation and detection scores through pycocotools' `COCOeval` (the library itself): mask AP
("segm") and box AP ("bbox"), its twelve summary numbers under their usual names.

Ground truth is a COCO instances JSON; predictions a COCO results list (image_id, category_id, segmentation
as RLE, score; a bbox is derived from the mask where missing). Mask AP ranks sizes by the mask's area: a
result's box is dropped for it, as detectron2 does, since pycocotools' loadRes would take the box's area. Checked before
COCOeval sees them, each a one-line error naming the file: an image or category the ground truth lacks, a
mask whose size is not its image's, RLE counts that are corrupt or cover another number of pixels, a missing
field. An empty results list is scored by COCOeval as no
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


def rle_pixels(counts: str | bytes) -> int | None:
    """The number of pixels a compressed COCO RLE string covers (the sum of its runs), or None when it is no
    such string: a character outside the format, a run cut short, a negative run or one beyond 32 bits.
    pycocotools takes any string (a corrupt one gives an area of 4294967290 on a 512 x 683 image, a
    truncated one a smaller mask), so a results file is read run by run here first. The format: each run is
    written as 5-bit groups in characters from '0', a set 0x20 bit meaning another group follows and 0x10 in
    the last group the sign; from the fourth run on, a run is stored as its difference from the run two
    before."""
    import numpy as np

    # as pycocotools reads a str (UTF-8): a non-ASCII character is bytes outside the format, never a '?'
    text = counts.encode("utf-8", "surrogatepass") if isinstance(counts, str) else bytes(counts)
    c = np.frombuffer(text, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return 0
    if c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        return None
    last = (c & 0x20) == 0  # the last group of each run
    run = np.concatenate([[0], np.cumsum(last)[:-1]])  # the run each character belongs to
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    place = np.arange(c.size) - starts[run]  # a group's place in its run: bits 5 * place and up
    if place.max() > 6:  # pycocotools writes a run (a 32-bit count, or a difference of two) in at most 7 groups
        return None
    x = np.add.reduceat((c & 0x1F) << (5 * place), starts)
    negative = (c[last] & 0x10) != 0
    x = np.where(negative, x - (1 << (5 * (place[last] + 1))), x)
    runs = x.copy()
    for parity in (0, 1):  # runs 3, 5, 7, ... and 4, 6, 8, ... add the run two before
        first = 3 if parity else 2
        if runs.size > first:
            runs[first::2] = np.cumsum(x[first::2]) + (x[first - 2] if parity else 0)
    if (runs < 0).any() or (runs >= 2**32).any():  # pycocotools keeps each run as a 32-bit count
        return None
    return int(runs.sum())


def _check_results(results: Any, gt: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if not isinstance(results, list):
        raise DatasetError(f"{where}: expected a COCO results list, got {type(results).__name__}")
    images = {im["id"]: im for im in gt["images"]}
    categories = {c["id"] for c in gt["categories"]}
    for k, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "category_id", "segmentation", "score"} <= set(r):
            raise DatasetError(f"{where}: result {k}: expected image_id, category_id, segmentation (RLE) and score")
        if r["image_id"] not in images:
            raise DatasetError(f"{where}: result {k}: image_id {r['image_id']!r} is not in the ground truth")
        if r["category_id"] not in categories:
            raise DatasetError(f"{where}: result {k}: category_id {r['category_id']!r} is not in the ground truth")
        seg, im = r["segmentation"], images[r["image_id"]]
        if not isinstance(seg, dict) or not isinstance(seg.get("counts"), (str, bytes)) or \
                not isinstance(seg.get("size"), list) or len(seg["size"]) != 2:
            raise DatasetError(f"{where}: result {k}: expected a compressed RLE segmentation (size [h, w], counts)")
        if not isinstance(r["score"], (int, float)) or isinstance(r["score"], bool):
            raise DatasetError(f"{where}: result {k}: expected a numeric score, got {r['score']!r}")
        box = r.get("bbox")
        if "bbox" in r and (not isinstance(box, list) or len(box) != 4 or
                            not all(isinstance(v, (int, float)) for v in box)):
            raise DatasetError(f"{where}: result {k}: expected bbox [x, y, w, h], got {box!r}")
        if list(seg["size"]) != [im.get("height"), im.get("width")]:
            raise DatasetError(f"{where}: result {k}: mask size {list(seg['size'])} is not image "
                               f"{r['image_id']!r}'s {[im.get('height'), im.get('width')]}")
        covered = rle_pixels(seg["counts"])
        if covered != im["height"] * im["width"]:
            got = "are corrupt" if covered is None else f"cover {covered} pixels"
            raise DatasetError(f"{where}: result {k}: its RLE counts {got}, not the {im['height']} x {im['width']} "
                               f"= {im['height'] * im['width']} of its mask")
    return results


def _check_ground_truth(gt: Any, where: str) -> None:
    """What COCOeval reads from the ground truth, present and of one kind, so it cannot fail deep inside."""
    if not isinstance(gt, dict) or not all(isinstance(gt.get(k), list) for k in ("images", "annotations",
                                                                                  "categories")):
        raise DatasetError(f"{where}: expected a COCO instances JSON (images, annotations, categories lists)")
    for what, need in (("images", ("id",)), ("categories", ("id",)),
                       ("annotations", ("id", "image_id", "category_id", "segmentation", "area", "iscrowd"))):
        for k, item in enumerate(gt[what]):
            if not isinstance(item, dict) or any(f not in item for f in need):
                raise DatasetError(f"{where}: {what}[{k}]: expected {', '.join(need)}")
    kinds = {type(im["id"]) for im in gt["images"]}
    if len(kinds) > 1:
        mixed = " and ".join(sorted(t.__name__ for t in kinds))
        raise DatasetError(f"{where}: image ids mix {mixed}; expected one kind")


def coco_instance_scores(gt: str | Path | dict[str, Any], results: str | Path | list[dict[str, Any]],
                         iou_types: tuple[str, ...] = IOU_TYPES, limit: int | None = None) -> InstanceScores:
    """COCOeval's summary for each IoU type, fractions in [0, 1]. `limit`: only the first N images of the
    ground truth's images list (every result is still checked; those of other images are not scored)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_where = str(gt) if not isinstance(gt, dict) else "ground truth"
    res_where = str(results) if not isinstance(results, list) else "results"
    gt_data = gt if isinstance(gt, dict) else _read_json(gt, "COCO instances JSON")
    _check_ground_truth(gt_data, gt_where)
    res = _check_results(results if isinstance(results, list) else _read_json(results, "COCO results"),
                         gt_data, res_where)
    if limit:
        kept = {im["id"] for im in gt_data["images"][:limit]}
        gt_data = {**gt_data, "images": gt_data["images"][:limit],
                   "annotations": [a for a in gt_data["annotations"] if a["image_id"] in kept]}
        res = [r for r in res if r["image_id"] in kept]
    quiet = io.StringIO()  # pycocotools prints its progress and summary; the caller prints a table
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt_data))
        coco_gt.createIndex()
        if "bbox" in iou_types:
            _boxes_from_masks(coco_gt, gt_where)
        stats: dict[str, dict[str, float]] = {}
        for iou_type in iou_types:
            if res:
                coco_dt = coco_gt.loadRes(_for(iou_type, res))
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


def _boxes_from_masks(coco_gt: Any, where: str) -> None:
    """Mask-only ground truth (no `bbox`, which mask AP does not read) gets its masks' boxes for box AP, as
    results without one do."""
    from pycocotools import mask as mask_utils

    for k, ann in enumerate(coco_gt.dataset["annotations"]):
        if "bbox" in ann:
            continue
        try:
            ann["bbox"] = [float(v) for v in mask_utils.toBbox(coco_gt.annToRLE(ann))]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DatasetError(f"{where}: annotations[{k}]: no bbox, and none can be read from its mask "
                               f"({type(exc).__name__}: {exc}); expected a bbox, or images with height and width"
                               ) from None


def _for(iou_type: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results as COCOeval should see them. Mask AP: without boxes, so the size ranges (APs/m/l) use the
    mask's area, not the box's (loadRes takes the box's when one is given, as detectron2 notes and avoids).
    Box AP: every result with a box, computed from the mask where missing."""
    from pycocotools import mask as mask_utils

    out = []
    for r in results:
        r = dict(r)
        if iou_type == "segm":
            r.pop("bbox", None)
        elif "bbox" not in r:
            seg = dict(r["segmentation"])
            if isinstance(seg["counts"], str):
                seg["counts"] = seg["counts"].encode("ascii")
            r["bbox"] = [float(v) for v in mask_utils.toBbox(seg)]
        out.append(r)
    return out
