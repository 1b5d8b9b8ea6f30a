"""Where panoptic and instance ground truth lies in each dataset's standard layout (COCO panoptic and COCO
instances formats), for `selfseg evaluate --task panoptic | instance`. A wrong root prints the layout expected,
as the semantic loaders do."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, choices
from .datasets import _coco_files, coco_split


@dataclass(frozen=True)
class Source:
    """files(root, split) -> the ground-truth JSON and, for panoptic, the folder of its PNGs."""

    name: str
    layout: str
    files: Callable[[Path, str], tuple[Path, Path | None]]


COCO_PANOPTIC_LAYOUT = """<root>/
  annotations/panoptic_val2017.json      COCO panoptic ground truth (segments_info, categories with isthing)
  annotations/panoptic_val2017/*.png     segment-id PNGs (id = R + 256 G + 256^2 B),
    or panoptic_val2017/*.png            where detectron2's layout keeps them
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

# The JSON and the PNG folder, wherever the benchmark dataset finds them.
COCO_PANOPTIC = Source("coco-panoptic", COCO_PANOPTIC_LAYOUT, lambda root, split: _coco_files(root, split)[1:])
ADE20K_PANOPTIC = Source("ade20k-panoptic", ADE20K_PANOPTIC_LAYOUT, lambda root, split: (
    root / f"ade20k_panoptic_{split}.json", root / f"ade20k_panoptic_{split}"))
COCO_INSTANCES = Source("coco", COCO_INSTANCES_LAYOUT, lambda root, split: (
    root / "annotations" / f"instances_{coco_split(split)}.json", None))
ADE20K_INSTANCES = Source("ade20k-instances", ADE20K_INSTANCES_LAYOUT, lambda root, split: (
    root / f"ade20k_instance_{split}.json", None))

PANOPTIC = {s.name: s for s in (COCO_PANOPTIC, ADE20K_PANOPTIC)}
INSTANCES = {s.name: s for s in (COCO_INSTANCES, ADE20K_INSTANCES)}
# A benchmark dataset's name also names its ground truth of a task.
_ALIASES = {("panoptic", "coco"): "coco-panoptic", ("panoptic", "ade20k"): "ade20k-panoptic",
            ("instance", "ade20k"): "ade20k-instances"}


def ground_truth(task: str, name: str, root: str | Path, split: str = "val") -> Any:
    """The ground truth of a dataset for a task: a `panoptic.PanopticGroundTruth` (panoptic) or the path of a
    COCO instances JSON or a COCO instances dict (instance). A one-line error lists the datasets of the task;
    a root that does not hold the files prints the layout expected."""
    from .panoptic import PanopticGroundTruth

    name = check_ground_truth(task, name, root, split)
    if name == "cityscapes":
        return cityscapes_panoptic(root, split) if task == "panoptic" else cityscapes_instances(root, split)
    js, pngs = (PANOPTIC if task == "panoptic" else INSTANCES)[name].files(Path(root), split)
    return PanopticGroundTruth.from_coco(js, pngs) if task == "panoptic" else js


def check_ground_truth(task: str, name: str, root: str | Path, split: str = "val") -> str:
    """The dataset's name for the task (an alias resolved), once its ground-truth files are found under the
    root; a DatasetError as `ground_truth` gives otherwise. Nothing is read, so it is quick."""
    table = PANOPTIC if task == "panoptic" else INSTANCES
    name = _ALIASES.get((task, name), name)
    if name not in table and name != "cityscapes":
        raise DatasetError(f"--task {task}: dataset: expected one of {choices([*table, 'cityscapes'])}, got {name!r}")
    if name == "cityscapes":
        _cityscapes_files(Path(root), split)
        return name
    source = table[name]
    js, pngs = source.files(Path(root), split)
    if not js.is_file() or (pngs is not None and not pngs.is_dir()):
        missing = js if not js.is_file() else pngs
        raise DatasetError(f"{name}: {missing} not found under {root}; expected layout:\n{source.layout}")
    return name


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


def cityscapes_instances(root: str | Path, split: str = "val", stems: Any = None) -> dict[str, Any]:
    """The gtFine instances as a COCO instances dict (RLE masks; a thing class's pixels without an instance
    as a crowd annotation, which COCOeval ignores matches to). stems: only these images (default: all)."""
    from ..segment.result import encode_rle

    images, annotations = [], []
    files = _cityscapes_files(Path(root), split)
    if stems is not None:
        stems = list(stems)
        missing = [st for st in stems if st not in files]
        if missing:
            raise DatasetError(f"cityscapes: no gtFine/{split}/<city>/{missing[0]}_gtFine_instanceIds.png under "
                               f"{root}")
        files = {st: files[st] for st in stems}
    for stem, path in files.items():
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


# ------------------------------------------------------------------------------------------ benchmark datasets
#: What a benchmark run scores its predictions as (`evaluation.tasks`).
TASKS = ("semantic", "panoptic", "instance")
#: Benchmark datasets (`evaluation.dataset`) with panoptic and instance ground truth.
TASK_DATASETS = ("ade20k", "cityscapes", "coco")


@dataclass
class TaskTruth:
    """A benchmark dataset's panoptic and instance ground truth, found by its samples' ids.

    panoptic / instances: the ground truth of the tasks asked for (None otherwise); image_ids: sample id ->
    the ground truth's image id (panoptic) and instance_image_ids likewise (instance). panoptic_category /
    instance_category: the dataset's class index -> the ground truth's category id (None: the class has no
    category there, e.g. a stuff class in an instance ground truth)."""

    panoptic: Any = None
    instances: dict[str, Any] | None = None
    image_ids: dict[str, Any] = field(default_factory=dict)
    instance_image_ids: dict[str, Any] = field(default_factory=dict)
    panoptic_category: list[int | None] = field(default_factory=list)
    instance_category: list[int | None] = field(default_factory=list)


def task_truth(dataset: Any, tasks: Any, samples: Any) -> TaskTruth:
    """The ground truth of `tasks` ("panoptic", "instance") for these samples of a benchmark dataset. A
    dataset without such ground truth, a root that lacks the files (the layout is printed) or a sample the
    ground truth does not have: one-line DatasetError."""
    tasks = [t for t in tasks if t in ("panoptic", "instance")]
    truth = TaskTruth()
    if not tasks:
        return truth
    if dataset.name not in TASK_DATASETS:
        raise DatasetError(f"evaluation.tasks {', '.join(tasks)}: the {dataset.name} dataset has no panoptic or "
                           f"instance ground truth here; expected one of {choices(TASK_DATASETS)}")
    ids = [s.id for s in samples]
    if dataset.name == "cityscapes":
        from .datasets import CITYSCAPES_TRAIN_IDS

        label_of = {train: label for label, train in CITYSCAPES_TRAIN_IDS.items()}
        stems = {i: i[: -len("_leftImg8bit")] if i.endswith("_leftImg8bit") else i for i in ids}
        if "panoptic" in tasks:
            truth.panoptic = cityscapes_panoptic(dataset.root, dataset.split)
            truth.image_ids = _find(stems, {st: st for st in truth.panoptic.image_ids}, truth.panoptic.where)
            truth.panoptic_category = [label_of.get(c.index) for c in dataset.classes]
        if "instance" in tasks:
            truth.instances = cityscapes_instances(dataset.root, dataset.split, stems.values())
            truth.instance_image_ids = dict(stems)
            things = {c["id"] for c in truth.instances["categories"]}
            truth.instance_category = [label_of.get(c.index) if label_of.get(c.index) in things else None
                                       for c in dataset.classes]
        return truth
    if dataset.name == "coco":
        # The ground truth's own root: a folder holding coco/ resolves to it, as the images' finder does.
        root = _coco_files(dataset.root, dataset.split)[1].parent.parent
        return _coco_format_truth(truth, tasks, dataset, ids, root, dataset.split, "coco-panoptic", "coco")
    # ADE20K: detectron2's prepared files beside the images (in ADEChallengeData2016/, or a flat sample folder)
    root = next((b for b in (dataset.root / "ADEChallengeData2016", dataset.root) if b.is_dir()), dataset.root)
    split = {"validation": "val", "training": "train"}.get(dataset.split, dataset.split)  # the files say val
    return _coco_format_truth(truth, tasks, dataset, ids, root, split, "ade20k-panoptic", "ade20k-instances")


def _coco_format_truth(truth: TaskTruth, tasks: list[str], dataset: Any, ids: list[str], root: Path, split: str,
                       panoptic: str, instances: str) -> TaskTruth:
    """`task_truth` from COCO panoptic and COCO instances files (the `panoptic` and `instances` sources),
    images found by their files' stems."""
    from .datasets import categories_of_classes

    stems = {i: i for i in ids}
    if "panoptic" in tasks:
        gt = ground_truth("panoptic", panoptic, root, split)
        truth.panoptic = gt
        truth.image_ids = _find(stems, {gt.stems.get(i, str(i)): i for i in gt.image_ids}, gt.where)
        truth.panoptic_category = categories_of_classes(dataset.classes, gt.categories.values())
    if "instance" in tasks:
        from .instances import _read_json

        path = ground_truth("instance", instances, root, split)
        data = _read_json(path, "COCO instances JSON")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) and
                                                 all(isinstance(x, dict) for x in data[k])
                                                 for k in ("images", "annotations", "categories")):
            raise DatasetError(f"{path}: expected a COCO instances JSON (images, annotations, categories lists of "
                               f"objects)")
        by_stem = {Path(str(im.get("file_name", im.get("id")))).stem: im.get("id") for im in data["images"]}
        truth.instance_image_ids = _find(stems, by_stem, str(path))
        keep = set(truth.instance_image_ids.values())
        truth.instances = {**data, "images": [im for im in data["images"] if im.get("id") in keep],
                           "annotations": [a for a in data["annotations"] if a.get("image_id") in keep]}
        truth.instance_category = categories_of_classes(dataset.classes, data.get("categories") or [])
    return truth


def _find(stems: dict[str, str], known: dict[str, Any], where: str) -> dict[str, Any]:
    """sample id -> ground-truth image id, every sample found."""
    missing = [i for i, st in stems.items() if st not in known]
    if missing:
        raise DatasetError(f"{where}: no ground truth for image {missing[0]!r} ({len(missing)} of {len(stems)} "
                           f"images missing)")
    return {i: known[st] for i, st in stems.items()}
