"""Derive panoptic and instance ground truth for the three sample images from their ADE20K-150 class maps, in
the layout detectron2's prepare_ade20k_pan_seg.py / prepare_ade20k_ins_seg.py leave (so the smoke benchmark can
score all three tasks with files in the repository):

    ade20k_panoptic_val.json, ade20k_panoptic_val/*.png   COCO panoptic (150 categories, ids = class index)
    ade20k_instance_val.json                              COCO instances (the 100 thing classes, ids = class
                                                          index as detectron2's files have them, RLE masks)

DERIVED, NOT ADE20K's OWN INSTANCES: a stuff class is one segment per image; a thing class's instances are the
8-connected pieces of its pixels, so touching objects of one class are one instance and an occluded object cut
in two is two. Good enough to exercise the scoring end to end; not a substitute for the official instance
annotations. Run from anywhere: `python examples/ade20k_sample/derive_panoptic.py`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

HERE = Path(__file__).resolve().parent
# ADE20K-150 class indices (0-based) that have instances: the 100 thing classes of the ADE20K panoptic and
# instance benchmarks.
THINGS = frozenset({
    7, 8, 10, 12, 14, 15, 18, 19, 20, 22, 23, 24, 27, 30, 31, 32, 33, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45, 47,
    49, 50, 53, 55, 56, 57, 58, 62, 64, 65, 66, 67, 69, 70, 71, 72, 73, 74, 75, 76, 78, 80, 81, 82, 83, 85, 86, 87,
    88, 89, 90, 92, 93, 95, 97, 98, 102, 103, 104, 107, 108, 110, 111, 112, 115, 116, 118, 119, 120, 121, 123, 124,
    125, 126, 127, 129, 130, 132, 133, 134, 135, 136, 137, 138, 139, 142, 143, 144, 146, 147, 148, 149})


def main() -> None:
    from pycocotools import mask as mask_utils

    from selfseg.evaluate.datasets import class_list
    from selfseg.segment.result import id2rgb

    names = [c.name for c in class_list("ade20k")]
    pan_dir = HERE / "ade20k_panoptic_val"
    pan_dir.mkdir(exist_ok=True)
    images, pan_anns, ins_anns = [], [], []
    for number, path in enumerate(sorted((HERE / "annotations").glob("*.png")), start=1):
        labels = np.asarray(Image.open(path)).astype(np.int64) - 1  # 0 = "other": -1, void
        h, w = labels.shape
        ids = np.zeros((h, w), np.uint32)
        segments = []
        for cls in np.unique(labels[labels >= 0]).tolist():
            pieces, n = ndimage.label(labels == cls, structure=np.ones((3, 3))) if cls in THINGS else \
                ((labels == cls).astype(np.int32), 1)
            for piece in range(1, n + 1):
                mask = pieces == piece
                seg_id = len(segments) + 1
                ids[mask] = seg_id
                ys, xs = np.nonzero(mask)
                box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
                segments.append({"id": seg_id, "category_id": cls, "iscrowd": 0, "area": int(mask.sum()),
                                 "bbox": box})
                if cls in THINGS:
                    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                    ins_anns.append({"id": len(ins_anns) + 1, "image_id": number, "category_id": cls,
                                     "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                                     "area": int(mask.sum()), "bbox": [float(v) for v in box], "iscrowd": 0})
        Image.fromarray(id2rgb(ids)).save(pan_dir / path.name)
        images.append({"id": number, "file_name": f"{path.stem}.jpg", "height": h, "width": w})
        pan_anns.append({"image_id": path.stem, "file_name": path.name, "segments_info": segments})
    pan_categories = [{"id": k, "name": n, "isthing": int(k in THINGS)} for k, n in enumerate(names)]
    (HERE / "ade20k_panoptic_val.json").write_text(json.dumps(
        {"images": [{"id": a["image_id"], "file_name": f"{a['image_id']}.jpg"} for a in pan_anns],
         "annotations": pan_anns, "categories": pan_categories}, indent=None) + "\n")
    ins_categories = [{"id": k, "name": names[k]} for k in sorted(THINGS)]
    (HERE / "ade20k_instance_val.json").write_text(json.dumps(
        {"images": images, "annotations": ins_anns, "categories": ins_categories}) + "\n")


if __name__ == "__main__":
    main()
