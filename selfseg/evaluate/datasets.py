"""Benchmark datasets in their standard on-disk layouts: class lists, samples, ground truth read as the
dataset's conventions say.

Every loader yields ground truth as an (H, W) int32 array of evaluation class indices 0..N-1, with
`IGNORE` (-1) where the dataset says "do not score" (VOC boundaries, ADE "other", Cityscapes void classes).
Prediction files for `selfseg evaluate` use the same indices, with the dataset's `ignore_value`
(255, or 65535 for ADE20K-847 and PASCAL-Context 459, whose maps are 16-bit) meaning "no class predicted here".
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DatasetError, check, choices
from ..io import read_text
from ..registry import Registry

#: Ground-truth pixels not scored; prediction pixels with no class.
IGNORE = -1
_CLASS_DIR = Path(__file__).parent / "classes"
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sample:
    """One image and its ground truth. `id` is the image's file stem; prediction files are `<id>.png`."""

    id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class ClassInfo:
    """One evaluation class: its name (the first listed) and every name the dataset gives it."""

    index: int
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]


def read_class_file(path: str | Path) -> list[ClassInfo]:
    """One class per line, names ';'-separated (first = the class's name); '#' lines are comments."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"class-names file {path}: no such file (expected one class per line)")
    out: list[ClassInfo] = []
    for line in read_text(path, "class-names file").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        names = tuple(n.strip() for n in line.split(";") if n.strip())
        out.append(ClassInfo(index=len(out), names=names))
    if not out:
        raise DatasetError(f"class-names file {path}: expected one class per line, got no classes")
    return out


@dataclass
class DatasetSpec:
    """How one benchmark is laid out and read. `find(root, split)` lists samples (raising DatasetError
    with `layout` when the root is wrong); `read_label(path)` returns int32 indices with IGNORE."""

    name: str
    title: str
    class_file: str
    layout: str
    ignore_value: int
    find: Callable[[Path, str], list[Sample]]
    read_label: Callable[[Path], np.ndarray]
    # Index of a class that means "none of the others" and is scored (VOC's background): pixels a
    # segmenter leaves unlabelled, and nouns mapped to nothing, count as this class. None: no such class.
    background: int | None = None
    # The Self-Seg paper's LOVE prompt either lists the classes or relies on the LLM knowing the dataset.
    llm_lists_classes: bool = True
    # Name used in the knowledge-style LOVE prompt ("the ADE20K dataset").
    llm_name: str = ""
    # The dataset whose classes this one folds (its ground truth is that dataset's, relabelled: VOC20 is VOC
    # without background); labels are mapped into that dataset's classes, then folded by class name.
    folds: str = ""


#: Each dataset's factory loads it from its config block (`datasets().build(name, config)`); its spec (layout,
#: readers) is `dataset_spec(name)`. `register_dataset` adds both.
DATASETS: Registry[Dataset] = Registry("dataset")
_SPECS: dict[str, DatasetSpec] = {}


@dataclass(kw_only=True)  # keyword-only: its fields sit beside the label mapper's in the evaluation section
class DatasetConfig:
    """Which dataset a benchmark reads, and where (in a config file: the `evaluation` section)."""

    # Benchmark dataset: "voc", "voc20" (VOC without background), "pascal-context-59", "pascal-context-60" (with
    # background), "pascal-context-459", "ade20k" (150 classes), "ade20k-full" (847), "cityscapes", "coco" (the
    # 133 COCO panoptic classes), "coco-stuff" (171), "coco-object" (COCO's 80 things + background) or "folder".
    dataset: str = "voc"
    # Dataset root in the dataset's standard layout (a wrong root prints the expected layout).
    root: str = "data/VOCdevkit/VOC2012"
    # Split to evaluate.
    split: str = "val"
    # A class-names file (one class per line, ';' between synonyms): required for "folder", optional otherwise.
    classes: str | None = None

    def __post_init__(self) -> None:
        check(self.dataset in dataset_names(), "dataset", choices(dataset_names()), self.dataset)


@dataclass
class Dataset:
    """A dataset found on disk: spec + root + split + its samples, in the order of the split's id list where the
    dataset has one (VOC, PASCAL-Context), else sorted by id."""

    spec: DatasetSpec
    root: Path
    split: str
    classes: list[ClassInfo]
    samples: list[Sample] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def read_label(self, sample: Sample) -> np.ndarray:
        gt = self.spec.read_label(sample.label)
        bad = (gt != IGNORE) & ((gt < 0) | (gt >= self.num_classes))
        if bad.any():
            # the index after the dataset's numbering (VOC20's is the file's value - 1), which the message says
            raise DatasetError(f"{sample.label}: expected class values 0..{self.num_classes - 1} (or ignore) in "
                               f"{self.spec.name}'s numbering, got {int(gt[bad][0])}")
        return gt

    def check_size(self, sample: Sample, gt: np.ndarray) -> None:
        """DatasetError when the ground truth is not the size of its image's stored pixels (what a benchmark's
        label maps are written at): every prediction would be refused as not fitting, and the dataset's fault
        scored as the model's. An image that cannot be opened is left to the run, which reports it."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(sample.image) as im:
                w, h = im.size
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError):
            return  # what load_image refuses too: the run lists the image as failed
        if (h, w) != tuple(gt.shape[:2]):
            raise DatasetError(f"{sample.label}: ground truth {gt.shape[1]}x{gt.shape[0]} (W x H) does not match its "
                               f"image {sample.image} ({w}x{h})")

    @cached_property
    def _by_id(self) -> dict[str, Sample]:
        return {s.id: s for s in self.samples}

    def sample(self, sample_id: str) -> Sample:
        return self._by_id[sample_id]


def dataset_spec(name: str) -> DatasetSpec:
    _register_builtin()
    DATASETS.component(name)  # an unknown name: the registry's one-line error listing the valid ones
    if name not in _SPECS:
        raise ConfigError(f"dataset {name!r} has no spec: register datasets with register_dataset")
    return _SPECS[name]


def register_dataset(spec: DatasetSpec) -> None:
    """Register a dataset: its spec, and a factory that loads it from its config block (the `evaluation`
    section's dataset, root, split and classes)."""
    def load(config: DatasetConfig, models: Any = None) -> Dataset:
        return load_dataset(spec.name, config.root, config.split, classes=config.classes)

    DATASETS.register(spec.name, config=DatasetConfig, section="evaluation")(load)
    _SPECS[spec.name] = spec


def datasets() -> Registry[Dataset]:
    """The dataset registry, every shipped dataset registered."""
    _register_builtin()
    return DATASETS


def dataset_names() -> list[str]:
    """Every registered dataset's name (the shipped ones and any registered since)."""
    _register_builtin()
    return DATASETS.names()


def load_dataset(name: str, root: str | Path, split: str = "val", classes: str | Path | None = None) -> Dataset:
    """Find a dataset under `root`. `classes` (a class-names file) overrides the shipped list; the
    `folder` dataset reads `<root>/classes.txt` by default."""
    spec = dataset_spec(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{spec.title}: root {root} is not a directory; expected layout:\n{spec.layout}")
    if name == "folder" and classes is None:
        classes = root / "classes.txt"
    class_list = read_class_file(Path(classes).expanduser() if classes else _CLASS_DIR / spec.class_file)
    if name == "folder" and len(class_list) > 255:
        # 255 is a class index here: 16-bit masks, 65535 = ignored (as ADE20K-847 does).
        spec = dataclasses.replace(spec, ignore_value=65535, read_label=_plain_reader(65535),
                                   layout=spec.layout.replace("255 = ignored", "65535 = ignored (> 255 classes)"))
    samples = spec.find(root, split)
    if not samples:
        raise DatasetError(f"{spec.title}: no images found under {root} for split {split!r}; expected layout:\n"
                           f"{spec.layout}")
    return Dataset(spec=spec, root=root, split=split, classes=class_list, samples=samples)


def class_list(name: str) -> list[ClassInfo]:
    """The shipped class list of a dataset (no data needed)."""
    spec = dataset_spec(name)
    if not spec.class_file:
        raise DatasetError(f"dataset {name!r} has no shipped class list; give a class-names file")
    return read_class_file(_CLASS_DIR / spec.class_file)


def categories_of_classes(classes: Any, categories: Any) -> list[int | None]:
    """class index -> category id. detectron2's ADE20K files number categories by class index (the panoptic
    file all 150, the instance file its 100 thing classes): ids below the class count whose first
    comma-separated name is one of that class's names are taken as indices. Otherwise each category goes to
    one class by name: a class's first name first, then its other names."""
    cats = [c for c in categories if isinstance(c, dict) and isinstance(c.get("id"), int)]

    def first(c: dict[str, Any]) -> str:
        return str(c.get("name", "")).split(",")[0].strip().lower()

    by_index = {c["id"]: c for c in cats if 0 <= c["id"] < len(classes)}
    if len(by_index) == len(cats) and all(first(c) in {n.lower() for n in classes[i].names}
                                          for i, c in by_index.items()):
        return [c.index if c.index in by_index else None for c in classes]
    out: list[int | None] = [None] * len(classes)
    taken: set[int] = set()
    for names_of in (lambda c: c.names[:1], lambda c: c.names[1:]):  # first names win over synonyms
        wanted = {}
        for c in classes:
            for n in names_of(c):
                wanted.setdefault(n.lower(), c.index)
        for cat in cats:
            k = wanted.get(first(cat))
            if k is not None and out[k] is None and cat["id"] not in taken:
                out[k] = cat["id"]
                taken.add(cat["id"])
    return out


# ------------------------------------------------------------------------------------------------ readers


def read_label_image(path: Path) -> np.ndarray:
    """A single-channel label image (palette, 8- or 16-bit PNG/TIFF) as stored; DatasetError otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            # Palette PNGs (VOC) hold class indices: np.asarray of mode "P" gives the indices, not colours.
            if im.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                raise DatasetError(f"{path}: expected a single-channel label image (palette, grey or 16-bit), "
                                   f"got mode {im.mode}")
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: cannot read label image ({exc})") from None
    return arr


def _plain_reader(ignore_value: int) -> Callable[[Path], np.ndarray]:
    def read(path: Path) -> np.ndarray:
        a = read_label_image(path).astype(np.int32)
        a[a == ignore_value] = IGNORE
        return a

    return read


def _read_ade150(path: Path) -> np.ndarray:
    # 0 = "other" (not scored); 1..150 -> 0..149, the "reduce zero label" convention, under which 255 (not in
    # the release, but written by tools that mark ignored pixels) stays ignored, as in mmseg.
    a = read_label_image(path).astype(np.int32)
    out = a - 1
    out[a == 255] = IGNORE
    return out


# cityscapesScripts labels.py: labelId -> trainId for the 19 evaluated classes; every other id is ignored.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                        25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_CITYSCAPES_LUT = np.full(256, IGNORE, dtype=np.int32)
for _id, _train in CITYSCAPES_TRAIN_IDS.items():
    _CITYSCAPES_LUT[_id] = _train


def _read_cityscapes(path: Path) -> np.ndarray:
    a = read_label_image(path)
    if a.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit gtFine labelIds PNG, got {a.dtype}")
    return _CITYSCAPES_LUT[a]


# ------------------------------------------------------------------------------------------------ finders


# A split's folder name where detectron2-style layouts spell it out (ADE20K, PASCAL-Context's pascal_ctx_d2).
_SPLIT_FOLDERS = {"val": "validation", "validation": "validation", "train": "training", "training": "training"}


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def _one_per_stem(images: Iterable[Path]) -> list[Path]:
    """The images in name order; two of one stem (x.jpg, x.png) are refused: both would pair with one label
    file, and their predictions would share a name."""
    seen: dict[str, Path] = {}
    for img in sorted(images):
        if img.stem in seen:
            raise DatasetError(f"{seen[img.stem].name} and {img.name} in {img.parent} share the stem {img.stem!r}, "
                               f"which names an image's label file and its prediction; expected one image per stem")
        seen[img.stem] = img
    return list(seen.values())


def _pair(images: Path, labels: Path, label_ext: str, image_exts=(".jpg",)) -> list[Sample]:
    """Images in a folder paired with same-stem label files; an image without one is an error."""
    out, missing = [], []
    for img in _one_per_stem(p for p in images.iterdir() if p.suffix.lower() in image_exts):
        lab = labels / f"{img.stem}{label_ext}"
        (out.append(Sample(img.stem, img, lab)) if lab.is_file() else missing.append(lab))
    if missing:
        raise DatasetError(f"{len(missing)} image(s) in {images} have no label file, e.g. {missing[0]}")
    return out


VOC_LAYOUT = """  <root>/                       (VOC2012, or a folder holding VOCdevkit/VOC2012)
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png   (palette indices 0..20, 255 = boundary)
    ImageSets/Segmentation/<split>.txt"""


def _find_voc(root: Path, split: str) -> list[Sample]:
    base = _first_dir([root / "VOCdevkit" / "VOC2012", root / "VOC2012", root])
    ids_file = base / "ImageSets" / "Segmentation" / f"{split}.txt" if base else None
    if base is None or not (base / "JPEGImages").is_dir() or not ids_file.is_file():
        raise DatasetError(f"Pascal VOC 2012: {root} does not look like VOC2012 (need JPEGImages/ and "
                           f"ImageSets/Segmentation/{split}.txt); expected layout:\n{VOC_LAYOUT}")
    out, missing = [], []
    for line in read_text(ids_file, "image list").split():
        img, lab = base / "JPEGImages" / f"{line}.jpg", base / "SegmentationClass" / f"{line}.png"
        (out.append(Sample(line, img, lab)) if img.is_file() and lab.is_file() else missing.append(line))
    if missing:
        raise DatasetError(f"Pascal VOC 2012: {len(missing)} id(s) of {ids_file.name} lack an image or a "
                           f"SegmentationClass PNG, e.g. {missing[0]!r}")
    return out


def _read_voc20(path: Path) -> np.ndarray:
    # VOC's 20 object classes without background: 0 (background) and 255 (boundary) are not scored, 1..20 ->
    # 0..19, the "reduce zero label" convention of the VOC20 benchmark.
    a = read_label_image(path).astype(np.int32)
    out = a - 1
    out[(a == 0) | (a == 255)] = IGNORE
    return out


PASCAL_CONTEXT_LAYOUT = """  <root>/                       (VOC2010, or a folder holding VOCdevkit/VOC2010)
    JPEGImages/<id>.jpg
    SegmentationClassContext/<id>.png  (mmsegmentation's conversion: 0 = background, 1..59 = the classes)
    ImageSets/SegmentationContext/<split>.txt
  or, where detectron2-based code prepared it (0..58, 255 = background):
    annotations_detectron2/pc59_val/<id>.png  (CAT-Seg, beside JPEGImages/)
    pascal_ctx_d2/images/validation/<id>.jpg + pascal_ctx_d2/annotations_ctx59/validation/<id>.png  (ODISE, FC-CLIP)"""


def _pascal_ctx_d2(root: Path) -> Path | None:
    """ODISE's and FC-CLIP's PASCAL-Context folder: pascal_ctx_d2/ under the root, or the root itself."""
    return next((d for d in (root / "pascal_ctx_d2", root) if (d / "images").is_dir() and (
        (d / "annotations_ctx59").is_dir() or (d / "annotations_ctx459").is_dir())), None)


def _find_pascal_context(root: Path, split: str) -> list[Sample]:
    base = _first_dir([root / "VOCdevkit" / "VOC2010", root / "VOC2010"]) or root
    images, ids_file = base / "JPEGImages", base / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    mmseg, detectron2 = base / "SegmentationClassContext", base / "annotations_detectron2" / f"pc59_{split}"
    d2 = _pascal_ctx_d2(root)
    sub = _SPLIT_FOLDERS.get(split, split)
    if images.is_dir() and mmseg.is_dir() and ids_file.is_file():
        labels, ids = mmseg, read_text(ids_file, "image list").split()
    elif images.is_dir() and detectron2.is_dir():
        labels, ids = detectron2, sorted(p.stem for p in detectron2.glob("*.png"))
    elif d2 is not None and (d2 / "images" / sub).is_dir() and (d2 / "annotations_ctx59" / sub).is_dir():
        images, labels = d2 / "images" / sub, d2 / "annotations_ctx59" / sub
        ids = sorted(p.stem for p in labels.glob("*.png"))
    else:
        raise DatasetError(f"PASCAL-Context: {base} holds no JPEGImages/ with SegmentationClassContext/ and "
                           f"ImageSets/SegmentationContext/{split}.txt (nor annotations_detectron2/pc59_{split}/, "
                           f"nor pascal_ctx_d2/); expected layout:\n{PASCAL_CONTEXT_LAYOUT}")
    return _listed("PASCAL-Context", ids, images, labels, ".png")


def _listed(title: str, ids: list[str], images: Path, labels: Path, label_ext: str) -> list[Sample]:
    """The samples of a list of ids, in its order: `<id>.jpg` in `images`, `<id><label_ext>` in `labels`; an id
    without either is an error."""
    out, missing = [], []
    for i in ids:
        img, lab = images / f"{i}.jpg", labels / f"{i}{label_ext}"
        (out.append(Sample(i, img, lab)) if img.is_file() and lab.is_file() else missing.append(i))
    if missing:
        raise DatasetError(f"{title}: {len(missing)} id(s) lack an image in {images.name}/ or a label file in "
                           f"{labels.name}/, e.g. {missing[0]!r}")
    return out


def _pascal_context_values(path: Path) -> np.ndarray:
    """A PASCAL-Context label PNG as PC-60 values: 0 = background (every label but the 59), 1..59, 255 ignored
    (mmsegmentation's converter writes none). The detectron2 maps (pc59_*/, annotations_ctx59/: 0..58, 255 =
    background) are shifted up into the same numbering."""
    a = read_label_image(path)
    if a.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit PASCAL-Context label PNG, got {a.dtype}")
    if path.parent.name.startswith("pc59_") or path.parent.parent.name == "annotations_ctx59":
        return np.where(a == 255, 0, a.astype(np.int32) + 1)
    return np.where(a == 255, IGNORE, a.astype(np.int32))


def _read_pascal_context_60(path: Path) -> np.ndarray:
    # Background is a class here (index 0), as mmsegmentation's PascalContextDataset scores it.
    return _pascal_context_values(path)


def _read_pascal_context_59(path: Path) -> np.ndarray:
    # The 59 classes only: background is not scored, 1..59 -> 0..58 (mmsegmentation's PascalContextDataset59).
    v = _pascal_context_values(path)
    return np.where(v == IGNORE, IGNORE, v - 1)


PASCAL_CONTEXT_459_LAYOUT = """  <root>/                       (VOC2010, or a folder holding VOCdevkit/VOC2010)
    JPEGImages/<id>.jpg
    annotations_detectron2/pc459_val/<id>.tif  (uint16: label id - 1, 0..458, as CAT-Seg and ov-seg prepare it)
  or pascal_ctx_d2/images/validation/<id>.jpg + pascal_ctx_d2/annotations_ctx459/validation/<id>.tif (ODISE)
  or the release's label maps with a list of the split's ids:
    trainval/<id>.mat                          (LabelMap: label ids 1..459, 0 = unlabelled)
    ImageSets/SegmentationContext/<split>.txt  (or pascalcontext_<split>.txt)"""


def _find_pascal_context_459(root: Path, split: str) -> list[Sample]:
    base = _first_dir([root / "VOCdevkit" / "VOC2010", root / "VOC2010"]) or root
    images, tifs, mats = base / "JPEGImages", base / "annotations_detectron2" / f"pc459_{split}", base / "trainval"
    ids_file = next((f for f in (base / "ImageSets" / "SegmentationContext" / f"{split}.txt",
                                 base / f"pascalcontext_{split}.txt") if f.is_file()), None)
    d2 = _pascal_ctx_d2(root)
    sub = _SPLIT_FOLDERS.get(split, split)
    if images.is_dir() and tifs.is_dir():
        labels, ext, ids = tifs, ".tif", sorted(p.stem for p in tifs.glob("*.tif"))
    elif images.is_dir() and mats.is_dir() and ids_file is not None:
        labels, ext, ids = mats, ".mat", read_text(ids_file, "image list").split()
    elif d2 is not None and (d2 / "images" / sub).is_dir() and (d2 / "annotations_ctx459" / sub).is_dir():
        images, labels, ext = d2 / "images" / sub, d2 / "annotations_ctx459" / sub, ".tif"
        ids = sorted(p.stem for p in labels.glob("*.tif"))
    else:
        raise DatasetError(f"PASCAL-Context 459: {base} holds no JPEGImages/ with annotations_detectron2/"
                           f"pc459_{split}/ (nor trainval/ and a list of the {split} ids, nor pascal_ctx_d2/); "
                           f"expected layout:\n{PASCAL_CONTEXT_459_LAYOUT}")
    return _listed("PASCAL-Context 459", ids, images, labels, ext)


def _read_pascal_context_459(path: Path) -> np.ndarray:
    """Label id - 1: a pc459 TIFF as it is (459 and 65535, the values CAT-Seg and ODISE ignore, are ignored), or
    a release .mat's LabelMap - 1 (0, unlabelled, becomes IGNORE)."""
    if path.suffix == ".mat":
        from scipy.io import loadmat

        try:
            labels = loadmat(str(path), variable_names=["LabelMap"]).get("LabelMap")
        except Exception as exc:  # a damaged file fails anywhere in scipy (zlib, an HDF5 v7.3 file, a bad header)
            raise DatasetError(f"{path}: cannot read it as a MATLAB file ({type(exc).__name__}: {exc})") from None
        if labels is None or labels.ndim != 2 or labels.dtype.kind not in "iu":
            raise DatasetError(f"{path}: expected an integer 2-D LabelMap, got "
                               f"{'none' if labels is None else f'{labels.dtype} {labels.shape}'}")
        return labels.astype(np.int32) - 1
    a = read_label_image(path).astype(np.int32)
    a[(a == 459) | (a == 65535)] = IGNORE
    return a


ADE_LAYOUT = """  <root>/                       (ADEChallengeData2016, or a folder holding it)
    images/validation/<id>.jpg      (split "train": images/training/)
    annotations/validation/<id>.png (uint8: 0 = other, 1..150 = classes)
  or a flat sample: <root>/images/<id>.jpg + <root>/annotations/<id>.png"""


def _find_ade150(root: Path, split: str) -> list[Sample]:
    sub = _SPLIT_FOLDERS.get(split, split)
    for base in (root / "ADEChallengeData2016", root):
        if (base / "images" / sub).is_dir() and (base / "annotations" / sub).is_dir():
            return _pair(base / "images" / sub, base / "annotations" / sub, ".png")
    if (root / "images").is_dir() and (root / "annotations").is_dir():  # a flat sample folder
        if sub != _SPLIT_FOLDERS["val"]:  # it has no splits: read as the validation split it samples
            raise DatasetError(f"ADE20K-150: {root} is a flat sample (images/ and annotations/, no split folders); "
                               f"it is read as the val split, not {split!r}")
        return _pair(root / "images", root / "annotations", ".png")
    raise DatasetError(f"ADE20K-150: no images/{sub}/ and annotations/{sub}/ under {root}; expected layout:\n"
                       f"{ADE_LAYOUT}")


ADE_FULL_LAYOUT = """  <root>/                       (ADE20K_2021_17_01 prepared for detectron2, or a folder holding it)
    images_detectron2/validation/<id>.jpg
    annotations_detectron2/validation/<id>.tif  (uint16: 0..846, 65535 = ignored)"""


def _find_ade847(root: Path, split: str) -> list[Sample]:
    sub = _SPLIT_FOLDERS.get(split, split)
    for base in (root / "ADE20K_2021_17_01", root):
        imgs, anns = base / "images_detectron2" / sub, base / "annotations_detectron2" / sub
        if imgs.is_dir() and anns.is_dir():
            return _pair(imgs, anns, ".tif")
    raise DatasetError(f"ADE20K-847: no images_detectron2/{sub}/ and annotations_detectron2/{sub}/ under "
                       f"{root}; expected layout:\n{ADE_FULL_LAYOUT}")


CITYSCAPES_LAYOUT = """  <root>/
    leftImg8bit/val/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"""


def _find_cityscapes(root: Path, split: str) -> list[Sample]:
    imgs, gts = root / "leftImg8bit" / split, root / "gtFine" / split
    if not imgs.is_dir() or not gts.is_dir():
        raise DatasetError(f"Cityscapes: no leftImg8bit/{split}/ and gtFine/{split}/ under {root}; expected "
                           f"layout:\n{CITYSCAPES_LAYOUT}")
    out, missing = [], []
    for img in sorted(imgs.glob("*/*_leftImg8bit.png")):
        frame = img.name[: -len("_leftImg8bit.png")]
        lab = gts / img.parent.name / f"{frame}_gtFine_labelIds.png"
        (out.append(Sample(img.stem, img, lab)) if lab.is_file() else missing.append(lab))
    if missing:
        raise DatasetError(f"Cityscapes: {len(missing)} image(s) have no gtFine labelIds PNG, e.g. {missing[0]}")
    return out


COCO_LAYOUT = """  <root>/                                 (COCO 2017, or a folder holding coco/)
    val2017/<id>.jpg                          (split "train": train2017/)
    annotations/panoptic_val2017.json         (COCO panoptic: segments_info per image, the 133 categories)
    annotations/panoptic_val2017/<id>.png     (segment ids, id = R + 256 G + 256^2 B; the official
                                               annotations zip holds them as annotations/panoptic_val2017.zip)
      or panoptic_val2017/<id>.png            (where detectron2's layout keeps them)"""


def coco_split(split: str) -> str:
    """COCO's folder name of a split: "val" -> "val2017"."""
    return split if split.endswith("2017") else f"{split}2017"


def _coco_files(root: Path, split: str) -> tuple[Path, Path, Path]:
    """(images folder, panoptic JSON, panoptic PNG folder) of a COCO root, or a folder holding coco/. The PNGs
    may lie in annotations/ (the official archives) or beside it (detectron2)."""
    sub = coco_split(split)
    base = next((b for b in (root, root / "coco") if (b / "annotations").is_dir()), root)
    pngs = next((d for d in (base / "annotations" / f"panoptic_{sub}", base / f"panoptic_{sub}") if d.is_dir()),
                base / "annotations" / f"panoptic_{sub}")
    return base / sub, base / "annotations" / f"panoptic_{sub}.json", pngs


def _coco_json_of(pngs: Path) -> Path:
    """The panoptic JSON of a folder of panoptic PNGs, in either place `_coco_files` finds them."""
    name = f"{pngs.name}.json"
    return next((j for j in (pngs.parent / name, pngs.parent / "annotations" / name) if j.is_file()),
                pngs.parent / name)


def _coco_panoptic_index(json_path: Path) -> tuple[dict[str, list[tuple[int, int]]], dict[int, int], dict[str, str]]:
    """A COCO panoptic JSON read once per process (again if the file changes): PNG name -> [(segment id, class
    index)], category id -> class index (by name against the shipped list), PNG stem -> image file name."""
    try:
        st = json_path.stat()
    except OSError:
        raise DatasetError(f"{json_path}: no such file (the COCO panoptic JSON)") from None
    return _read_coco_panoptic_index(json_path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=2)
def _read_coco_panoptic_index(json_path: Path, _mtime: int, _size: int) -> tuple[dict, dict, dict]:
    from .panoptic import _segments, read_panoptic_json

    data = read_panoptic_json(json_path)
    classes = class_list("coco")
    ids = categories_of_classes(classes, data.get("categories") or [])
    missing = [c.name for c, i in zip(classes, ids) if i is None]
    if missing:
        raise DatasetError(f"{json_path}: expected the 133 COCO panoptic categories, {len(missing)} missing "
                           f"(e.g. {missing[0]!r}); a COCO-format dataset of other classes is a 'folder' dataset")
    index_of = {cat: k for k, cat in enumerate(ids)}
    listed = data.get("images", [])
    if not isinstance(listed, list) or not all(isinstance(im, dict) and isinstance(im.get("id"), (int, str))
                                               and isinstance(im.get("file_name", ""), str) for im in listed):
        raise DatasetError(f"{json_path}: expected 'images' to be a list of objects with an int or str id and a "
                           f"file_name")
    images: dict[Any, str] = {}
    for im in listed:
        if im["id"] in images:
            raise DatasetError(f"{json_path}: image id {im['id']!r} is listed twice")
        images[im["id"]] = im.get("file_name", "")
    segments, image_names = {}, {}
    for k, a in enumerate(data["annotations"]):
        where = f"{json_path}: annotations[{k}]"
        segs = _segments(a["segments_info"], where)
        unknown = [seg["category_id"] for seg in segs.values() if seg["category_id"] not in index_of]
        if unknown:
            raise DatasetError(f"{where}: category_id {unknown[0]} is not one of the file's 133 categories")
        stem = Path(a["file_name"]).stem
        if a["file_name"] in segments or stem in image_names:
            raise DatasetError(f"{where}: file_name {a['file_name']!r} is another annotation's too")
        segments[a["file_name"]] = [(i, index_of[seg["category_id"]]) for i, seg in segs.items()]
        image_names[stem] = images.get(a["image_id"]) or f"{stem}.jpg"
    return segments, index_of, image_names


def _find_coco(root: Path, split: str) -> list[Sample]:
    images, js, pngs = _coco_files(root, split)
    for path, ok, what in ((images, images.is_dir(), "folder"), (js, js.is_file(), "file"),
                           (pngs, pngs.is_dir(), "folder")):
        if not ok:
            state = "not found" if not path.exists() else f"not a {what}"
            raise DatasetError(f"COCO: {path} {state} under {root}; expected layout:\n{COCO_LAYOUT}")
    _, _, image_names = _coco_panoptic_index(js)
    out, missing_files = [], []
    for stem, name in sorted(image_names.items()):
        img, lab = images / name, pngs / f"{stem}.png"
        (out.append(Sample(stem, img, lab)) if img.is_file() and lab.is_file() else missing_files.append(stem))
    if missing_files:
        raise DatasetError(f"COCO: {len(missing_files)} image(s) of {js.name} lack an image in {images.name}/ or "
                           f"a PNG in {pngs.name}/, e.g. {missing_files[0]!r}")
    return out


def _read_coco(path: Path) -> np.ndarray:
    """A panoptic PNG as class indices: each segment takes its category's index, crowd regions included;
    pixels of no segment (void) are ignored. The rule of Mask2Former's semantic maps made from COCO panoptic
    (`prepare_coco_semantic_annos_from_panoptic_annos.py`), the semantic ground truth of COCO panoptic
    benchmarks."""
    from .panoptic import read_id_png

    js = _coco_json_of(path.parent)
    segments, _, _ = _coco_panoptic_index(js)
    if path.name not in segments:
        raise DatasetError(f"{path}: not an annotation of {js}")
    ids = read_id_png(path)
    out = np.full(ids.shape, IGNORE, dtype=np.int32)
    for seg_id, cls in segments[path.name]:
        out[ids == seg_id] = cls
    return out


COCO_STUFF_LAYOUT = """  <root>/                                 (COCO-Stuff 164k as mmsegmentation lays it out)
    images/val2017/<id>.jpg                   (split "train": train2017/)
    annotations/val2017/<id>_labelTrainIds.png  (0..170, 255 ignored; or, not converted, the release's
                                               stuffthingmaps <id>.png: label id - 1, 0..181, 255 unlabelled)
  or COCO's val2017/<id>.jpg beside one of
    stuffthingmaps_trainval2017/val2017/<id>.png  (the release's maps, unzipped into a folder of that name)
    stuffthingmaps_detectron2/val2017/<id>.png    (maps already numbered 0..170, as detectron2-based code keeps them)"""

# Raw stuffthingmaps value (label id - 1) -> trainId: the 182 ids without the 11 thing ids COCO never
# annotated (street sign, hat, shoe, eye glasses, plate, mirror, window, desk, door, blender, hair brush),
# as mmsegmentation's conversion numbers them.
_COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
_COCO_STUFF_LUT = np.full(256, IGNORE, dtype=np.int32)
_COCO_STUFF_LUT[[i - 1 for i in range(1, 183) if i not in _COCO_UNUSED_IDS]] = np.arange(171)


def _coco_stuff_finder(title: str, suffixes: tuple[str, ...], layout: str) -> Callable[[Path, str], list[Sample]]:
    """COCO-Stuff's layouts, each image paired with the first of its label files by `suffixes`."""
    def find(root: Path, split: str) -> list[Sample]:
        sub = coco_split(split)
        for base in (root, root / "coco_stuff164k", root / "coco"):
            for images, labels in ((base / "images" / sub, base / "annotations" / sub),
                                   (base / sub, base / "stuffthingmaps_trainval2017" / sub),
                                   (base / sub, base / "stuffthingmaps_detectron2" / sub)):
                if images.is_dir() and labels.is_dir():
                    return _pair_coco_stuff(title, images, labels, suffixes)
        raise DatasetError(f"{title}: no images/{sub}/ and annotations/{sub}/ (or {sub}/ and "
                           f"stuffthingmaps_trainval2017/{sub}/) under {root}; expected layout:\n{layout}")

    return find


def _pair_coco_stuff(title: str, images: Path, labels: Path, suffixes: tuple[str, ...]) -> list[Sample]:
    out, missing = [], []
    for img in _one_per_stem(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                             and p.is_file()):
        lab = next((p for p in (labels / f"{img.stem}{x}" for x in suffixes) if p.is_file()), None)
        (out.append(Sample(img.stem, img, lab)) if lab is not None else missing.append(img.name))
    if missing:
        raise DatasetError(f"{title}: {len(missing)} image(s) in {images} have no label map in {labels}, e.g. "
                           f"{missing[0]!r}")
    return out


def _read_coco_stuff(path: Path) -> np.ndarray:
    """A converted map (`*_labelTrainIds.png` or one in stuffthingmaps_detectron2/: the class index, 255
    ignored) or a raw stuffthingmap (label id - 1, mapped to the class index; 255 unlabelled). A raw map with a
    value no raw map holds (a never-annotated id, or 182..254) is most likely a converted one under a raw
    name, which would be read with the wrong numbering: it is refused."""
    a = read_label_image(path)
    if a.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit COCO-Stuff label PNG, got {a.dtype}")
    if path.name.endswith("_labelTrainIds.png") or path.parent.parent.name == "stuffthingmaps_detectron2":
        out = a.astype(np.int32)
        out[a == 255] = IGNORE
        return out
    out = _COCO_STUFF_LUT[a]
    odd = (out == IGNORE) & (a != 255)
    if odd.any():
        raise DatasetError(f"{path}: value {int(a[odd][0])} is in no raw COCO-Stuff map (label id - 1, 0..181 "
                           f"without the never-annotated ids); a map numbered 0..170 should be named "
                           f"<id>_labelTrainIds.png")
    return out


COCO_OBJECT_LAYOUT = """  <root>/                                 (COCO-Stuff 164k, as for coco-stuff)
    images/val2017/<id>.jpg                   (split "train": train2017/)
    annotations/val2017/<id>_instanceTrainIds.png  (0 = background, 1..80 = the things, as GroupViT's
                                               convert_coco_object.py writes them; or coco-stuff's maps:
                                               <id>_labelTrainIds.png, or the release's raw <id>.png)
  or COCO's val2017/<id>.jpg beside one of
    stuffthingmaps_trainval2017/val2017/<id>.png  (the release's maps, unzipped into a folder of that name)
    stuffthingmaps_detectron2/val2017/<id>.png    (maps already numbered 0..170, as detectron2-based code keeps them)"""


def _read_coco_object(path: Path) -> np.ndarray:
    """COCO-Object: the 80 things of a COCO-Stuff map as 1..80 and everything else, stuff and unlabelled
    alike, as background 0 (GroupViT's conversion, which every training-free benchmark of COCO-Object reads;
    it leaves nothing unlabelled). Its own `*_instanceTrainIds.png` are read as they are, a 255 there ignored as
    mmsegmentation does."""
    if path.name.endswith("_instanceTrainIds.png"):
        a = read_label_image(path)
        if a.dtype != np.uint8:
            raise DatasetError(f"{path}: expected an 8-bit COCO-Object label PNG, got {a.dtype}")
        out = a.astype(np.int32)
        out[a == 255] = IGNORE
        return out
    stuff = _read_coco_stuff(path)  # the 171 classes, things first (0..79)
    return np.where((stuff >= 0) & (stuff < 80), stuff + 1, 0).astype(np.int32)


FOLDER_LAYOUT = """  <root>/
    classes.txt          (one class per line, index = line number; ';' separates synonyms)
    images/<id>.<jpg|png|...>
    masks/<id>.png       (class indices; 255 = ignored)
  or, split by split (as `selfseg label` writes a dataset), <root>/<split>/images/ and <root>/<split>/masks/"""


def _find_folder(root: Path, split: str) -> list[Sample]:
    imgs = root / split / "images" if (root / split / "images").is_dir() else root / "images"
    masks = imgs.parent / "masks"
    if not imgs.is_dir() or not masks.is_dir():
        splits = sorted(p.parent.name for p in root.glob("*/images") if (p.parent / "masks").is_dir())
        if splits:  # split by split, without this one ("selfseg label" put every image in train)
            raise DatasetError(f"folder dataset: no {split}/images/ and {split}/masks/ under {root}: its splits are "
                               f"{', '.join(splits)} (--split / evaluation.split)")
        raise DatasetError(f"folder dataset: no images/ and masks/ under {root}; expected layout:\n{FOLDER_LAYOUT}")
    return _pair(imgs, masks, ".png", image_exts=_IMAGE_EXTS)


_registered = False


def _register_builtin() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    for spec in (
        DatasetSpec("voc", "Pascal VOC 2012", "voc.txt", VOC_LAYOUT, 255, _find_voc, _plain_reader(255),
                    background=0),
        DatasetSpec("voc20", "Pascal VOC 2012, 20 classes (background not scored)", "voc20.txt", VOC_LAYOUT, 255,
                    _find_voc, _read_voc20, folds="voc"),
        DatasetSpec("pascal-context-59", "PASCAL-Context 59", "pascal_context_59.txt", PASCAL_CONTEXT_LAYOUT, 255,
                    _find_pascal_context, _read_pascal_context_59, llm_name="PASCAL-Context"),
        DatasetSpec("pascal-context-60", "PASCAL-Context 60 (with background)", "pascal_context_60.txt",
                    PASCAL_CONTEXT_LAYOUT, 255, _find_pascal_context, _read_pascal_context_60, background=0,
                    llm_name="PASCAL-Context", folds="pascal-context-59"),
        DatasetSpec("pascal-context-459", "PASCAL-Context 459", "pascal_context_459.txt", PASCAL_CONTEXT_459_LAYOUT,
                    65535, _find_pascal_context_459, _read_pascal_context_459, llm_lists_classes=False,
                    llm_name="PASCAL-Context-459"),
        DatasetSpec("ade20k", "ADE20K-150", "ade20k_150.txt", ADE_LAYOUT, 255, _find_ade150, _read_ade150,
                    llm_lists_classes=False, llm_name="ADE20K"),
        DatasetSpec("ade20k-full", "ADE20K-847", "ade20k_847.txt", ADE_FULL_LAYOUT, 65535, _find_ade847,
                    _plain_reader(65535), llm_lists_classes=False, llm_name="ADE20K-847"),
        DatasetSpec("cityscapes", "Cityscapes", "cityscapes.txt", CITYSCAPES_LAYOUT, 255, _find_cityscapes,
                    _read_cityscapes),
        DatasetSpec("coco", "COCO panoptic (133 classes)", "coco_panoptic.txt", COCO_LAYOUT, 255, _find_coco,
                    _read_coco, llm_lists_classes=True, llm_name="COCO"),
        DatasetSpec("coco-stuff", "COCO-Stuff (171 classes)", "coco_stuff.txt", COCO_STUFF_LAYOUT, 255,
                    _coco_stuff_finder("COCO-Stuff", ("_labelTrainIds.png", ".png"), COCO_STUFF_LAYOUT),
                    _read_coco_stuff, llm_lists_classes=True, llm_name="COCO-Stuff"),
        DatasetSpec("coco-object", "COCO-Object (80 things + background)", "coco_object.txt", COCO_OBJECT_LAYOUT,
                    255, _coco_stuff_finder("COCO-Object", ("_instanceTrainIds.png", "_labelTrainIds.png", ".png"),
                                            COCO_OBJECT_LAYOUT),
                    _read_coco_object, background=0, llm_name="COCO", folds="coco"),
        DatasetSpec("folder", "folder dataset", "", FOLDER_LAYOUT, 255, _find_folder, _plain_reader(255)),
    ):
        register_dataset(spec)
