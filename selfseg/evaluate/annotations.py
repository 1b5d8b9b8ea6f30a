"""Where panoptic and instance ground truth lies in each dataset's standard layout (COCO panoptic and COCO
instances formats), for `selfseg evaluate --task panoptic | instance`. A wrong root prints the layout expected,
as the semantic loaders do."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, choices


@dataclass(frozen=True)
class Source:
    """files(root, split) -> the ground-truth JSON and, for panoptic, the folder of its PNGs."""

    name: str
    layout: str
    files: Callable[[Path, str], tuple[Path, Path | None]]


def _coco_split(split: str) -> str:
    return split if split.endswith("2017") else f"{split}2017"


COCO_PANOPTIC_LAYOUT = """<root>/
  annotations/panoptic_val2017.json      COCO panoptic ground truth (segments_info, categories with isthing)
  annotations/panoptic_val2017/*.png     segment-id PNGs (id = R + 256 G + 256^2 B)
  val2017/*.jpg                          the images"""
ADE20K_PANOPTIC_LAYOUT = """<root> = ADEChallengeData2016/, as detectron2's prepare_ade20k_pan_seg.py leaves it:
  ade20k_panoptic_val.json               COCO panoptic ground truth (150 categories, isthing from ADE20K)
  ade20k_panoptic_val/*.png              segment-id PNGs
  images/validation/*.jpg                the images"""
COCO_INSTANCES_LAYOUT = """<root>/
  annotations/instances_val2017.json     COCO instances ground truth (RLE or polygon masks)
  val2017/*.jpg                          the images"""
ADE20K_INSTANCES_LAYOUT = """<root> = ADEChallengeData2016/, as detectron2's prepare_ade20k_ins_seg.py leaves it:
  ade20k_instance_val.json               COCO instances ground truth (the 100 thing classes)
  images/validation/*.jpg                the images"""

COCO_PANOPTIC = Source("coco-panoptic", COCO_PANOPTIC_LAYOUT, lambda root, split: (
    root / "annotations" / f"panoptic_{_coco_split(split)}.json",
    root / "annotations" / f"panoptic_{_coco_split(split)}"))
ADE20K_PANOPTIC = Source("ade20k-panoptic", ADE20K_PANOPTIC_LAYOUT, lambda root, split: (
    root / f"ade20k_panoptic_{split}.json", root / f"ade20k_panoptic_{split}"))
COCO_INSTANCES = Source("coco", COCO_INSTANCES_LAYOUT, lambda root, split: (
    root / "annotations" / f"instances_{_coco_split(split)}.json", None))
ADE20K_INSTANCES = Source("ade20k-instances", ADE20K_INSTANCES_LAYOUT, lambda root, split: (
    root / f"ade20k_instance_{split}.json", None))

PANOPTIC = {s.name: s for s in (COCO_PANOPTIC, ADE20K_PANOPTIC)}
INSTANCES = {s.name: s for s in (COCO_INSTANCES, ADE20K_INSTANCES)}


def ground_truth(task: str, name: str, root: str | Path, split: str = "val") -> Any:
    """The ground truth of a dataset for a task: a `panoptic.PanopticGroundTruth` (panoptic) or the path of a
    COCO instances JSON or a COCO instances dict (instance). A one-line error lists the datasets of the task;
    a root that does not hold the files prints the layout expected."""
    from .panoptic import PanopticGroundTruth

    table = PANOPTIC if task == "panoptic" else INSTANCES
    if name not in table and name != "cityscapes":
        raise DatasetError(f"--task {task}: dataset: expected one of {choices([*table, 'cityscapes'])}, got {name!r}")
    if name == "cityscapes":
        return cityscapes_panoptic(root, split) if task == "panoptic" else cityscapes_instances(root, split)
    source = table[name]
    js, pngs = source.files(Path(root), split)
    if not js.is_file() or (pngs is not None and not pngs.is_dir()):
        missing = js if not js.is_file() else pngs
        raise DatasetError(f"{name}: {missing} not found under {root}; expected layout:\n{source.layout}")
    return PanopticGroundTruth.from_coco(js, pngs) if task == "panoptic" else js


# ------------------------------------------------------------------------------------------------ Cityscapes
CITYSCAPES_PANOPTIC_LAYOUT = """<root>/
  gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   labelId, or labelId * 1000 + instance for things
  leftImg8bit/val/<city>/<city>_<seq>_<frame>_leftImg8bit.png     the images
predictions: image_id and file stem <city>_<seq>_<frame>; category_id = the class's Cityscapes labelId"""
# cityscapesScripts labels.py: the 19 evaluated classes' labelIds; those with instances are things.
CITYSCAPES_THINGS = frozenset({24, 25, 26, 27, 28, 31, 32, 33})


def cityscapes_categories() -> dict[int, dict[str, Any]]:
    """The 19 evaluation classes as COCO panoptic categories: id = labelId (as cityscapesScripts'
    panoptic conversion numbers them), name, isthing."""
    from .datasets import CITYSCAPES_TRAIN_IDS, class_list

    names = {c.index: c.name for c in class_list("cityscapes")}
    return {label: {"id": label, "name": names[train], "isthing": int(label in CITYSCAPES_THINGS)}
            for label, train in CITYSCAPES_TRAIN_IDS.items()}


def _cityscapes_files(root: Path, split: str) -> dict[str, Path]:
    gts = Path(root) / "gtFine" / split
    files = {f.name[: -len("_gtFine_instanceIds.png")]: f for f in sorted(gts.glob("*/*_gtFine_instanceIds.png"))}
    if not files:
        raise DatasetError(f"cityscapes: no gtFine/{split}/<city>/*_gtFine_instanceIds.png under {root}; "
                           f"expected layout:\n{CITYSCAPES_PANOPTIC_LAYOUT}")
    return files


def _cityscapes_segments(path: Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A gtFine instanceIds PNG as panoptic segments: a thing instance (value >= 1000) is its own segment, a
    stuff class one segment per image, a thing class's pixels without an instance a crowd segment; classes
    outside the 19 are void."""
    from .datasets import CITYSCAPES_TRAIN_IDS, read_label_image

    raw = read_label_image(path).astype(np.int64)
    ids = np.zeros(raw.shape, np.uint32)
    segments = []
    values, counts = np.unique(raw, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist()):
        label = value // 1000 if value >= 1000 else value
        if label not in CITYSCAPES_TRAIN_IDS:
            continue
        ids[raw == value] = value
        segments.append({"id": value, "category_id": label, "area": count,
                         "iscrowd": int(value < 1000 and label in CITYSCAPES_THINGS)})
    return ids, segments


def cityscapes_panoptic(root: str | Path, split: str = "val") -> Any:
    from .panoptic import PanopticGroundTruth

    files = _cityscapes_files(Path(root), split)
    return PanopticGroundTruth(cityscapes_categories(), list(files), lambda stem: _cityscapes_segments(files[stem]),
                               str(Path(root) / "gtFine" / split))


def cityscapes_instances(root: str | Path, split: str = "val") -> dict[str, Any]:
    """The gtFine instances as a COCO instances dict (RLE masks; a thing class's pixels without an instance
    as a crowd annotation, which COCOeval ignores matches to)."""
    from ..segment.result import encode_rle

    images, annotations = [], []
    for stem, path in _cityscapes_files(Path(root), split).items():
        ids, segments = _cityscapes_segments(path)
        h, w = ids.shape
        images.append({"id": stem, "file_name": f"{stem}_leftImg8bit.png", "height": h, "width": w})
        for s in segments:
            if s["category_id"] not in CITYSCAPES_THINGS:
                continue
            mask = ids == s["id"]
            ys, xs = np.nonzero(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": stem, "category_id": s["category_id"],
                                "segmentation": encode_rle(mask), "area": float(s["area"]), "iscrowd": s["iscrowd"],
                                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                         float(ys.max() - ys.min() + 1)]})
    categories = [c for c in cityscapes_categories().values() if c["isthing"]]
    return {"images": images, "annotations": annotations, "categories": categories}
