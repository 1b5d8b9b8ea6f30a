"""Where panoptic and instance ground truth lies in each dataset's standard layout (COCO panoptic and COCO
instances formats), for `selfseg evaluate --task panoptic | instance`. A wrong root prints the layout expected,
as the semantic loaders do."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def ground_truth(task: str, name: str, root: str | Path, split: str = "val") -> tuple[Path, Path | None]:
    """The ground-truth JSON (and PNG folder) of a dataset for a task; a one-line error listing the datasets
    of the task, or the layout expected when the root does not hold it."""
    table = PANOPTIC if task == "panoptic" else INSTANCES
    if name not in table:
        raise DatasetError(f"--task {task}: dataset: expected one of {choices(table)}, got {name!r}")
    source = table[name]
    js, pngs = source.files(Path(root), split)
    if not js.is_file() or (pngs is not None and not pngs.is_dir()):
        missing = js if not js.is_file() else pngs
        raise DatasetError(f"{name}: {missing} not found under {root}; expected layout:\n{source.layout}")
    return js, pngs
