"""Segmentations of a folder of photos -> one training dataset in COCO, YOLO and semantic-map formats.

`DatasetWriter(out_dir, vocabulary, config)` takes one image at a time (`add(image_path, segmentation)`) and
writes as it goes; `close()` assembles the COCO files and writes `dataset.json`. Every format shares one image
folder per split, one split per image and one class list, the vocabulary's:

    <out>/
      dataset.json                  what was exported: settings, selfseg version, counts, filters
      labels.jsonl                  one record per image (file, split, size, instances with class id and box)
      vocabulary.json               the dataset vocabulary (class id = position)
      classes.txt                   class names, line i = class id i            (semantic)
      data.yaml                     YOLO: path, train/val image folders, names  (yolo)
      annotations/instances_{train,val}.json                                    (coco)
      {train,val}/images/<file>     the photos (copies, hard links, or nothing with images "reference")
      {train,val}/labels/<stem>.txt YOLO segmentation lines                     (yolo)
      {train,val}/masks/<stem>.png  class ids 0..K-1, 255 = no class            (semantic)

Class ids agree everywhere: vocabulary id k is YOLO class k, semantic value k and COCO category k + 1 (COCO
counts from 1). `<out>` is a `folder` benchmark dataset (`evaluation.root: <out>`, `evaluation.split: train`
or `val`; classes.txt at the root, masks with 65535 for no class when there are more than 255 classes).

Annotations are in the stored pixel order of the file they describe, at the photo's size: masks of a reduced
copy are upsampled (nearest) and the EXIF orientation the pipeline analysed upright is undone. Readers disagree
on EXIF (PIL and pycocotools ignore it; OpenCV, supervision and most trainers apply it), so a copied photo with
an orientation tag gets its tag set to 1 (a 2-byte change in a JPEG, or one XMP digit; pixels untouched), after
which every reader sees the pixels the annotations describe. Hard links share the source's bytes, so a tagged
photo is copied instead; images "reference" leaves the source as it is (its annotations still follow its
stored pixels; dataset.json counts such photos).

Instances pass filters in this order: vocabulary (labels it drops), min_score, min_mask_score, min_area, NMS,
max_instances; dataset.json counts what each removed.

COCO masks are compressed RLE (exact) or, with `polygons`, polygons along the pixel edges, which pycocotools
fills back exactly (an object whose polygons would not fill back is kept as RLE and counted). YOLO has one line
per object: the outline of each part through the centres of its boundary pixels, holes joined to it by seams,
which OpenCV's fillPoly (the trainers' reader) fills back exactly, written a quarter pixel on from each pixel
index so that readers that round and readers that truncate both find it, and several parts joined into one walk
as Ultralytics' converter joins them (see `outlines.py`). supervision's dataset writers are not used: they take a
whole in-memory `DetectionDataset`, and `as_coco` writes a mask with a hole or several parts as iscrowd 1 with
uncompressed RLE.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DatasetError, ImageError, check, choices
from ..tag.result import nearest_rows
from .outlines import centre_polygons, coco_polygons, join_parts

if TYPE_CHECKING:
    from ..segment.result import Segmentation
    from .vocabulary import DatasetVocabulary

#: Layout version of dataset.json.
SCHEMA_VERSION = 2
#: The formats a dataset can be written in (label.formats).
FORMATS = ("coco", "yolo", "semantic")
#: How photos get into the dataset (label.images).
IMAGE_MODES = ("copy", "hardlink", "reference")
#: Which overlapping instances suppress each other (label.nms).
NMS_MODES = ("none", "agnostic", "per_class")
SPLITS = ("train", "val")
#: The filters, in the order they apply.
FILTERS = ("vocabulary", "min_score", "min_mask_score", "min_area", "nms", "max_instances")
METADATA_FILE = "dataset.json"
RECORDS_FILE = "labels.jsonl"
CLASSES_FILE = "classes.txt"
#: Image files that YOLO trainers (Ultralytics' list) and the benchmark's folder dataset read; a photo of
#: another format (GIF, PPM, PGM) is copied into the dataset as a PNG.
TRAINABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DATA_YAML = "data.yaml"
#: Semantic value of a pixel no class covers (up to 255 classes; 65535 above, as the folder dataset reads it).
NO_CLASS = 255
_EXIF_ORIENTATION = 0x0112


@dataclass
class ExportConfig:
    """How segmentations become a training dataset (the config file's `label` section)."""

    # Formats to write: any of "coco", "yolo", "semantic".
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    # Share of images in the val split, decided per file name by a hash, so adding images moves none.
    val_fraction: float = 0.2
    # Seed of the split hash: another seed, another split.
    seed: int = 0
    # "copy", "hardlink" (a copy where a link cannot be made, e.g. across devices) or "reference" (the
    # dataset names the source files; coco only, as YOLO and the folder layout find labels by the image's place).
    images: str = "copy"
    # COCO masks as polygons along the pixel edges (one per part, holes joined by a seam; pycocotools fills
    # them back exactly, an object it would not stays RLE) instead of RLE.
    polygons: bool = False
    # Lowest detector score kept. 0: the locator's own threshold already decided, as `selfseg segment` shows.
    min_score: float = 0.0
    # Lowest mask score kept (1.0 where the segmenter has no mask model).
    min_mask_score: float = 0.0
    # Smallest mask kept, in pixels at the photo's size: specks below 4x4 are upsampling noise, and too small
    # for a polygon.
    min_area: int = 16
    # Most instances kept per image, the most confident first (COCO's maxDets).
    max_instances: int = 100
    # "per_class": an instance whose mask overlaps a more confident one of its class by more than nms_iou is
    # dropped (the vocabulary may merge two prompts' detections of one object into one class); "agnostic":
    # any class; "none".
    nms: str = "per_class"
    # Mask IoU (at the photo's size) above which NMS drops the less confident instance. Masks, not boxes:
    # the masks are what is exported, and a box around a person also holds the bicycle they ride.
    nms_iou: float = 0.7

    def __post_init__(self) -> None:
        check(isinstance(self.formats, list) and bool(self.formats) and all(f in FORMATS for f in self.formats)
              and len(set(self.formats)) == len(self.formats), "formats",
              f"a non-empty list of {choices(FORMATS)}, each once", self.formats)
        check(_number(self.val_fraction) and 0 <= self.val_fraction <= 1, "val_fraction", "a number in [0, 1]",
              self.val_fraction)
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed", "an integer", self.seed)
        check(self.images in IMAGE_MODES, "images", choices(IMAGE_MODES), self.images)
        check(self.images != "reference" or self.formats == ["coco"], "images",
              "\"copy\" or \"hardlink\" with formats yolo or semantic (they find labels by the image's place; "
              "\"reference\" needs formats [coco])", self.images)
        check(isinstance(self.polygons, bool), "polygons", "true or false", self.polygons)
        # Scores are probabilities and predicted IoUs: a threshold above 1 would drop every instance, found
        # only after the whole folder is segmented.
        check(_number(self.min_score) and 0 <= self.min_score <= 1, "min_score", "a number in [0, 1]",
              self.min_score)
        check(_number(self.min_mask_score) and 0 <= self.min_mask_score <= 1, "min_mask_score",
              "a number in [0, 1]", self.min_mask_score)
        check(_integer(self.min_area) and self.min_area >= 1, "min_area", "an integer >= 1 (pixels)", self.min_area)
        check(_integer(self.max_instances) and self.max_instances >= 1, "max_instances", "an integer >= 1",
              self.max_instances)
        check(self.nms in NMS_MODES, "nms", choices(NMS_MODES), self.nms)
        check(_number(self.nms_iou) and 0 < self.nms_iou <= 1, "nms_iou", "a number in (0, 1]", self.nms_iou)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def _integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _json_text(obj: Any) -> str:
    """JSON with its text as written; a path that is not UTF-8 as \\udcXX escapes instead (valid JSON that
    Python reads back to the very path)."""
    text = json.dumps(obj, ensure_ascii=False)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(obj)


def split_of(file_name: str, seed: int, val_fraction: float) -> str:
    """"train" or "val" for a file name: sha256 of f"{seed}:{name}" read as a number in [0, 1), val below
    val_fraction. Per name, not a shuffle, so adding images never moves one; a larger fraction only moves
    train images to val."""
    digest = hashlib.sha256(f"{seed}:{file_name}".encode("utf-8", "surrogateescape")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2.0 ** 64 < val_fraction else "train"


# ------------------------------------------------------------------------------------------------ frames


@dataclass(frozen=True)
class _Frame:
    """How analysed-size masks (upright, maybe reduced) map to the file's pixels: nearest rows and columns
    of the upright photo, then the EXIF orientation undone."""

    rows: np.ndarray
    cols: np.ndarray
    analysed: tuple[int, int]  # (h, w) of the masks
    orientation: int
    height: int  # of the file's stored pixels
    width: int
    # The header's orientation tag is not 1, whether or not Pillow has already applied it (a TIFF): a copy
    # must then be saved without it, so that every reader decodes the pixels the labels describe.
    tagged: bool = False

    @property
    def row_weights(self) -> np.ndarray:
        """Photo rows each analysed row becomes: areas at the photo's size without upsampling."""
        return np.bincount(self.rows, minlength=self.analysed[0]).astype(np.int64)

    @property
    def col_weights(self) -> np.ndarray:
        return np.bincount(self.cols, minlength=self.analysed[1]).astype(np.int64)

    def to_file(self, mask: np.ndarray) -> np.ndarray:
        from ..io import undo_orientation

        # Rows, then columns: two gathers along one axis each cost a fraction of one broadcast (H, W) index.
        return undo_orientation(mask.take(self.rows, axis=0).take(self.cols, axis=1), self.orientation)

    def sampler(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Flat indices into an analysed mask such that `mask.reshape(-1)[sampler(rows, cols)]` is
        `to_file(mask)[rows[:, None], cols[None, :]]`: file pixels picked from the analysed mask directly,
        without the file-size mask in between."""
        from ..io import undo_orientation

        h, w = len(self.rows), len(self.cols)  # the upright photo
        # The upright photo's pixel places, turned as `to_file` turns its masks (views: nothing of photo size
        # is built), tell which upright pixel each picked file pixel shows.
        up_rows = undo_orientation(np.broadcast_to(np.arange(h)[:, None], (h, w)), self.orientation, copy=False)
        up_cols = undo_orientation(np.broadcast_to(np.arange(w)[None, :], (h, w)), self.orientation, copy=False)
        picked = (rows[:, None], cols[None, :])
        return self.rows[up_rows[picked]] * self.analysed[1] + self.cols[up_cols[picked]]


def _frame(seg: Segmentation, path: Path, name: str) -> _Frame:
    from PIL import Image, UnidentifiedImageError

    from ..io import exif_orientation

    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = exif_orientation(im)
            try:
                tagged = im.getexif().get(0x0112, 1) not in (1, None)
            except Exception:  # a malformed EXIF block: as exif_orientation, read as untagged
                tagged = False
    except FileNotFoundError:
        raise ImageError(f"{name}: no such image ({path})") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageError(f"{name}: cannot read the image ({exc})") from None
    upright = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
    h, w = seg.image_size
    target = tuple(seg.original_size) if seg.original_size is not None else (h, w)
    if tuple(target) != upright or seg.masks.shape[1:] != (h, w):
        raise ValueError(f"{name}: expected masks of the photo's upright size {upright} (image_size, or "
                         f"original_size for a reduced copy), got masks {tuple(seg.masks.shape[1:])} with "
                         f"original_size {seg.original_size}")
    rows, cols = nearest_rows(upright[0], h), nearest_rows(upright[1], w)
    return _Frame(rows=rows, cols=cols, analysed=(h, w), orientation=orientation, height=height, width=width,
                  tagged=tagged)


def _extent(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), ends exclusive, of a mask's pixels; None when it is empty."""
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(ys):
        return None
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


# ------------------------------------------------------------------------------------------------ filtering


def _select(seg: Segmentation, ids: list[int | None], frame: _Frame, config: ExportConfig,
            removed: dict[str, int]) -> tuple[list[int], dict[int, int]]:
    """The instances kept, most confident first, with their areas at the photo's size; `removed` counts
    what each filter took."""
    n = len(seg.labels)
    confidence = seg.scores * seg.mask_scores  # the order overlaps are settled in (Segmentation.semantic)
    # most confident first; on a tie the later instance, the one Segmentation.semantic paints on top
    order = [int(i) for i in np.lexsort((-np.arange(n), -confidence))]
    rw, cw = frame.row_weights, frame.col_weights

    def stage(key: str, before: list[int], keep: Iterable[int]) -> list[int]:
        kept = list(keep)
        removed[key] += len(before) - len(kept)
        return kept

    alive = stage("vocabulary", order, (i for i in order if ids[i] is not None))
    alive = stage("min_score", alive, (i for i in alive if seg.scores[i] >= config.min_score))
    alive = stage("min_mask_score", alive, (i for i in alive if seg.mask_scores[i] >= config.min_mask_score))
    areas = {i: int(rw @ (seg.masks[i] @ cw)) for i in alive}
    alive = stage("min_area", alive, (i for i in alive if areas[i] >= config.min_area))
    if config.nms != "none":
        alive = stage("nms", alive, _nms(seg.masks, alive, ids, areas, rw, cw, config))
    alive = stage("max_instances", alive, alive[: config.max_instances])
    return alive, areas


def _nms(masks: np.ndarray, order: list[int], ids: list[int | None], areas: dict[int, int], rw: np.ndarray,
         cw: np.ndarray, config: ExportConfig) -> list[int]:
    """Greedy mask NMS in `order`; intersections weighted to the photo's size, within the boxes' overlap."""
    extents = {i: _extent(masks[i]) for i in order}
    kept: list[int] = []
    for i in order:
        a = extents[i]
        for j in kept:
            b = extents[j]
            if config.nms == "per_class" and ids[i] != ids[j]:
                continue
            y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
            if y0 >= y1 or x0 >= x1:
                continue
            inter = int(rw[y0:y1] @ ((masks[i][y0:y1, x0:x1] & masks[j][y0:y1, x0:x1]) @ cw[x0:x1]))
            if inter / (areas[i] + areas[j] - inter) > config.nms_iou:
                break
        else:
            kept.append(i)
    return kept


# ------------------------------------------------------------------------------------------------ encoders


def _encode_rle(mask: np.ndarray) -> dict[str, Any]:
    from ..segment.result import encode_rle

    return encode_rle(mask)


def _number_text(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".") or "0"


# ------------------------------------------------------------------------------------------------ images


def _reset_jpeg_orientation(data: bytearray) -> bool:
    """Set the orientation of JPEG bytes to 1 in place, in the EXIF tag (its 2 bytes) and in XMP (the digit of
    tiff:Orientation, which Pillow reads where EXIF has none); pixels untouched. False when there is no such
    value to set."""
    if data[:2] != b"\xff\xd8":
        return False
    i, done = 2, False
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no header segment follows
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        end = min(i + 2 + length, len(data))
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\0\0":
            done |= _reset_exif_orientation(data, i + 10, end)
        elif marker == 0xE1 and data[i + 4:i + 4 + len(_XMP_HEADER)] == _XMP_HEADER:
            for found in _XMP_ORIENTATION.finditer(data, i + 4, end):
                if _xmp_markup(data, i + 4, found.start()):
                    data[found.start(1):found.end(1)] = b"1"
                    done = True
        i += 2 + length
    return done


_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\0"
#: tiff:Orientation as an attribute or as an element (not mytiff:Orientation); group 1 is its one digit.
_XMP_ORIENTATION = re.compile(rb"(?:(?<=\s)tiff:Orientation\s*=\s*[\"']|<tiff:Orientation>)\s*([1-8])")


def _xmp_markup(data: bytearray, start: int, at: int) -> bool:
    """Whether XMP bytes at `at` are markup (an element, or an attribute of the tag open there), not text or
    an attribute's value that merely mentions tiff:Orientation."""
    quote = None
    inside = False
    for c in bytes(data[start:at]):
        if quote is not None:
            quote = None if c == quote else quote
        elif c == 0x3C:  # <
            inside = True
        elif c == 0x3E:  # >
            inside = False
        elif inside and c in (0x22, 0x27):  # " '
            quote = c
    return quote is None and (inside or data[at:at + 1] == b"<")


def _reset_exif_orientation(data: bytearray, tiff: int, end: int) -> bool:
    order = "little" if data[tiff:tiff + 2] == b"II" else "big"
    read = lambda at, size, order=order: int.from_bytes(data[at:at + size], order)
    ifd = tiff + read(tiff + 4, 4)
    for k in range(read(ifd, 2)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > end:
            return False
        if read(entry, 2) == _EXIF_ORIENTATION and read(entry + 2, 2) == 3:  # type 3: SHORT
            data[entry + 8:entry + 10] = (1).to_bytes(2, order)
            return True
    return False


def _copy_upright_tag(src: Path, dst: Path) -> None:
    """Copy a photo with its EXIF orientation set to 1, so readers that apply EXIF and readers that do not
    see the same pixels: a JPEG's tag patched, any other format's pixels saved afresh (lossless WebP)."""
    from PIL import Image

    from ..io import exif_orientation

    data = bytearray(src.read_bytes())
    if _reset_jpeg_orientation(data):
        dst.write_bytes(bytes(data))
        with Image.open(dst) as im:
            if exif_orientation(im) == 1:
                return
    with Image.open(src) as im:
        if im.format == "JPEG":  # an EXIF layout the patch does not know: re-encoded with the file's own tables
            exif = im.getexif()
            exif[_EXIF_ORIENTATION] = 1
            im.save(dst, format="JPEG", exif=exif, quality="keep")
            return
        kind, fresh = im.format, im.copy()
    fresh.info.pop("exif", None)  # the other formats' metadata goes with the tag: a fresh file of the pixels
    fresh.save(dst, format=kind, **({"lossless": True} if kind == "WEBP" else {}))


# ------------------------------------------------------------------------------------------------ the writer


@dataclass
class ExportedImage:
    """What `DatasetWriter.add` wrote for one image: its `record` (the line of labels.jsonl) and, on first
    access, `masks`: the kept instances' (N, H, W) bool masks at the photo's size in the file's pixel order,
    in the record's order (built only when asked for: a large photo's masks are large)."""

    record: dict[str, Any]
    analysed: np.ndarray = field(repr=False)
    frame: _Frame = field(repr=False)

    @cached_property
    def masks(self) -> np.ndarray:
        out = np.zeros((len(self.analysed), self.frame.height, self.frame.width), bool)
        for k, m in enumerate(self.analysed):
            out[k] = self.frame.to_file(m)
        return out

    def for_view(self, image: Any, max_side: int) -> tuple[Any, np.ndarray]:
        """The photo (PIL, the file's pixel order) and the kept masks, both shrunk so the longer side is at most
        `max_side`, for drawing. The view's pixels are picked from the analysed masks (`_Frame.sampler`): no
        mask is built at the photo's size, neither all at once (100 masks of a 12-megapixel photo would take
        1.2 GB) nor one at a time (the time goes to pixels the view never shows)."""
        from PIL import Image

        w, h = self.frame.width, self.frame.height
        scale = min(1.0, max_side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != (w, h):
            image = image.resize(size, Image.Resampling.BILINEAR)
        rows, cols = nearest_rows(size[1], h), nearest_rows(size[0], w)
        picks = self.frame.sampler(rows, cols)
        out = np.zeros((len(self.analysed), size[1], size[0]), bool)
        for k, m in enumerate(self.analysed):
            out[k] = m.reshape(-1).take(picks)
        return image, out


class DatasetWriter:
    """Writes a training dataset image by image (layout: the module docstring). Nothing of an image but a few
    counts stays in memory once `add` returns; COCO annotations wait in JSON-lines files per split until
    `close()` joins them. Use as a context manager, or call `close()`: without it there is no dataset.json,
    the mark of a finished dataset. metadata: anything else dataset.json should say (the run's settings)."""

    def __init__(self, out_dir: str | Path, vocabulary: DatasetVocabulary, config: ExportConfig | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.config = config or ExportConfig()
        self.vocabulary = vocabulary
        self.metadata = dict(metadata or {})
        self.out = Path(out_dir).expanduser()
        if not vocabulary.classes:
            raise ValueError("the vocabulary has no classes; expected at least one to label images with")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"out: {self.out} is a file; expected a missing or empty directory")
        if self.out.is_dir() and any(self.out.iterdir()):
            raise ConfigError(f"out: {self.out} is not empty; expected a missing or empty directory (a dataset is "
                              f"written whole)")
        formats = set(self.config.formats)
        self._wide = len(vocabulary.classes) > 255  # the folder dataset reads 16-bit maps then, 65535 = none
        self._classes = vocabulary.names
        self._ids: dict[str, int | None] = {}
        self._stems: set[str] = set()
        self._sources: set[str] = set()
        self._next_image = 1
        self._next_annotation = 1
        self._removed = dict.fromkeys(FILTERS, 0)
        self._counts = {s: {"images": 0, "instances": 0, "empty_images": 0} for s in SPLITS}
        self._per_class = [dict.fromkeys(SPLITS, 0) for _ in self._classes]
        self._images = {"hardlink_fallbacks": 0, "orientation_reset": 0, "coco_rle_fallbacks": 0,
                        "saved_as_png": 0, "tagged_references": 0}
        self._closed = False
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for split in SPLITS:
                if self.config.images != "reference":
                    (self.out / split / "images").mkdir(parents=True, exist_ok=True)
                if "yolo" in formats:
                    (self.out / split / "labels").mkdir(parents=True, exist_ok=True)
                if "semantic" in formats:
                    (self.out / split / "masks").mkdir(parents=True, exist_ok=True)
            if "coco" in formats:
                (self.out / "annotations").mkdir(exist_ok=True)
            self._records = open(self.out / RECORDS_FILE, "w", encoding="utf-8")
            self._coco = {s: (open(self._part(s, "images"), "w", encoding="utf-8"),
                              open(self._part(s, "annotations"), "w", encoding="utf-8"))
                          for s in SPLITS} if "coco" in formats else {}
        except OSError as exc:
            raise ConfigError(f"out: cannot write to {self.out} ({exc.strerror or exc})") from None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        else:  # an interrupted export stays without dataset.json, so nothing takes it for finished
            self._close_files()

    def _part(self, split: str, what: str) -> Path:
        return self.out / "annotations" / f".instances_{split}.{what}.jsonl"

    def _class_id(self, label: str) -> int | None:
        if label not in self._ids:
            self._ids[label] = self.vocabulary.id_of(label)
        return self._ids[label]

    def _name(self, source: Path) -> str:
        """The source's file name, or name-2, name-3 ... when another image took its stem (labels and masks
        are named by stem, and file systems may fold case)."""
        from ..runs import short_name, text_name

        stem, suffix, k = short_name(text_name(source.stem), str(source)), text_name(source.suffix), 1
        if suffix.lower() not in TRAINABLE_SUFFIXES and self.config.images != "reference":
            suffix = ".png"  # a copy trainers and the folder dataset can read (see `_write_image`)
        while (stem if k == 1 else f"{stem}-{k}").casefold() in self._stems:
            k += 1
        stem = stem if k == 1 else f"{stem}-{k}"
        self._stems.add(stem.casefold())
        return stem + suffix

    # ---------------------------------------------------------------------------------------------- add
    def add(self, image_path: str | Path, seg: Segmentation) -> ExportedImage:
        """Export one photo and its segmentation. ValueError naming the image when its masks do not fit the
        photo; ImageError when the photo cannot be read; DatasetError when a file cannot be written."""
        if self._closed:
            raise RuntimeError("DatasetWriter.add after close()")
        source = Path(image_path).expanduser().resolve()
        shown = Path(image_path).name
        if str(source) in self._sources:
            raise ValueError(f"{shown}: added twice ({source}); expected each image once")
        frame = _frame(seg, source, shown)
        ids = [self._class_id(label) for label in seg.labels]
        removed = dict.fromkeys(FILTERS, 0)
        kept, areas = _select(seg, ids, frame, self.config, removed)
        split = split_of(source.name, self.config.seed, self.config.val_fraction)
        reference = self.config.images == "reference"
        formats = set(self.config.formats)
        image_id = self._next_image
        semantic = np.full((frame.height, frame.width), 65535 if self._wide else NO_CLASS,
                           np.uint16 if self._wide else np.uint8) if "semantic" in formats else None
        instances, yolo_lines, annotations = [], [], []
        for i in kept:
            mask = frame.to_file(seg.masks[i])
            y0, y1, x0, x1 = _extent(mask)
            cid = int(ids[i])
            inst = {"class_id": cid, "class": self._classes[cid], "score": float(seg.scores[i]),
                    "mask_score": float(seg.mask_scores[i]), "area": areas[i], "bbox": [x0, y0, x1 - x0, y1 - y0]}
            instances.append(inst)
            if semantic is not None:  # most confident first: a pixel keeps the first class painted on it
                # within the mask's box: the rest of the photo is untouched by it
                box = semantic[y0:y1, x0:x1]
                box[mask[y0:y1, x0:x1] & (box == (65535 if self._wide else NO_CLASS))] = cid
            if "yolo" in formats:
                scale = np.array([frame.width, frame.height], dtype=np.float64)
                # A quarter pixel on from each pixel index: readers that round the coordinates back (supervision)
                # and readers that truncate them (Ultralytics casts to int32 before fillPoly) both land on it.
                walk = (join_parts([p + [x0, y0] for p in centre_polygons(mask[y0:y1, x0:x1])]) + 0.25) / scale
                yolo_lines.append(" ".join([str(cid)] + [_number_text(v) for v in walk.ravel()]))
            if "coco" in formats:
                outlines = coco_polygons(mask[y0:y1, x0:x1]) if self.config.polygons else None
                if outlines:
                    segmentation: Any = [(p + [x0, y0]).ravel().tolist() for p in outlines]
                else:
                    segmentation = _encode_rle(mask)
                    self._images["coco_rle_fallbacks"] += int(self.config.polygons)
                annotations.append({"id": self._next_annotation + len(annotations), "image_id": image_id,
                                    "category_id": cid + 1, "segmentation": segmentation, "area": areas[i],
                                    "bbox": inst["bbox"], "iscrowd": 0, "score": inst["score"],
                                    "mask_score": inst["mask_score"]})
        # Named only now: an image that failed above has taken no name (nor written anything), so the others
        # are named as they would be without it.
        name = self._name(source)
        stem = Path(name).stem
        file = str(source) if reference else f"{split}/images/{name}"
        record = {"file": file, "source": str(source), "split": split, "width": frame.width,
                  "height": frame.height, "instances": instances}
        self._write_image(source, split, name, frame.tagged)
        try:
            if "yolo" in formats:
                (self.out / split / "labels" / f"{stem}.txt").write_text(
                    "".join(line + "\n" for line in yolo_lines), encoding="utf-8")
            if semantic is not None:
                self._write_semantic(semantic, self.out / split / "masks" / f"{stem}.png")
            if "coco" in formats:
                images, anns = self._coco[split]
                images.write(json.dumps({"id": image_id, "file_name": str(source) if reference else name,
                                         "width": frame.width, "height": frame.height}) + "\n")
                anns.writelines(json.dumps(a) + "\n" for a in annotations)
            self._records.write(_json_text(record) + "\n")
            self._records.flush()
        except OSError as exc:
            raise DatasetError(f"{shown}: cannot write its labels under {self.out} ({exc.strerror or exc})") from None
        self._sources.add(str(source))
        self._next_image += 1
        self._next_annotation += len(annotations)
        for key, n in removed.items():
            self._removed[key] += n
        counts = self._counts[split]
        counts["images"] += 1
        counts["instances"] += len(kept)
        counts["empty_images"] += not kept
        for inst in instances:
            self._per_class[inst["class_id"]][split] += 1
        return ExportedImage(record=record, analysed=seg.masks[kept], frame=frame)

    def _write_image(self, source: Path, split: str, name: str, tagged: bool) -> None:
        if self.config.images == "reference":
            # Left as it is, such a photo shows turned in readers that apply EXIF (OpenCV, supervision, most
            # trainers) while its annotations follow the stored pixels: counted in dataset.json.
            self._images["tagged_references"] += int(tagged)
            return
        dst = self.out / split / "images" / name
        try:
            if dst.suffix != source.suffix:  # GIF, PPM, PGM: the frame the models saw, as a lossless PNG
                from PIL import Image

                with Image.open(source) as im:
                    im.seek(0)
                    # a PGM deeper than 8 bits opens as 32-bit "I", which PNG cannot hold; its values fit 16
                    (im.convert("I;16") if im.mode == "I" else im).save(dst, format="PNG")
                self._images["saved_as_png"] += 1
                return
            if tagged:
                _copy_upright_tag(source, dst)
                self._images["orientation_reset"] += 1
                return
            if self.config.images == "hardlink":
                try:
                    os.link(source, dst)
                    return
                except OSError:  # another device, or a file system without hard links
                    self._images["hardlink_fallbacks"] += 1
            shutil.copyfile(source, dst)
        except (OSError, ValueError) as exc:  # ValueError: PIL cannot save a format it read
            raise DatasetError(f"{source.name}: cannot write {dst} ({exc.strerror or exc})") from None

    def _write_semantic(self, semantic: np.ndarray, path: Path) -> None:
        from PIL import Image

        from ..viz import palette

        if self._wide:
            Image.fromarray(semantic).save(path, format="PNG")  # uint16 -> a 16-bit grey PNG
            return
        im = Image.fromarray(semantic, mode="P")
        colours = np.zeros((256, 3), np.uint8)
        colours[: len(self._classes)] = palette(len(self._classes))
        colours[NO_CLASS] = 0  # no class: black, as an unlabelled pixel is in a VOC mask
        im.putpalette(colours.ravel().tolist())
        im.save(path, format="PNG")

    # ---------------------------------------------------------------------------------------------- close
    def _close_files(self) -> None:
        self._records.close()
        for images, anns in self._coco.values():
            images.close()
            anns.close()

    def close(self) -> Path:
        """Write the COCO files, classes.txt, data.yaml, vocabulary.json and dataset.json; returns the path of
        dataset.json. Idempotent."""
        from .. import __version__
        from ..io import atomic_write
        from .vocabulary import VOCABULARY_FILE

        path = self.out / METADATA_FILE
        if self._closed:
            return path
        self._close_files()
        formats = self.config.formats
        files: dict[str, Any] = {"records": RECORDS_FILE, "vocabulary": VOCABULARY_FILE}
        try:
            self.vocabulary.save(self.out / VOCABULARY_FILE)
            if "coco" in formats:
                files["coco"] = {s: f"annotations/instances_{s}.json" for s in SPLITS}
                for split in SPLITS:
                    self._join_coco(split, self.out / files["coco"][split], __version__)
            if "yolo" in formats:
                files["yolo"] = DATA_YAML
                self._write_data_yaml()
            if "semantic" in formats:
                files["semantic"] = {"classes": CLASSES_FILE, "masks": {s: f"{s}/masks" for s in SPLITS},
                                     "no_class": 65535 if self._wide else NO_CLASS}
                # the folder dataset splits lines at ';' (synonyms) and skips '#' lines
                text = "".join(n.replace(";", ",").lstrip("#") + "\n" for n in self._classes)
                atomic_write(self.out / CLASSES_FILE, lambda f: f.write(text.encode("utf-8")))
            meta = {
                "schema": SCHEMA_VERSION, "selfseg": __version__, "config": asdict(self.config), "files": files,
                "classes": [{"id": i, "name": n, "coco_category_id": i + 1, "instances": dict(self._per_class[i])}
                            for i, n in enumerate(self._classes)],
                "splits": {s: dict(c) for s, c in self._counts.items()},
                "filters": {"order": list(FILTERS), "removed": dict(self._removed),
                            "settings": {k: getattr(self.config, k) for k in
                                         ("min_score", "min_mask_score", "min_area", "nms", "nms_iou",
                                          "max_instances")}},
                "images": {"mode": self.config.images, **self._images},
                "metadata": self.metadata,
            }
            text = json.dumps(meta, indent=1, ensure_ascii=False, default=str)
            atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        except OSError as exc:
            raise DatasetError(f"cannot finish the dataset in {self.out} ({exc.strerror or exc})") from None
        self._closed = True
        return path

    def _join_coco(self, split: str, path: Path, version: str) -> None:
        """One COCO file from the split's JSON-lines parts, line by line (no mask is decoded)."""
        from ..io import atomic_write

        categories = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(self._classes)]
        head = json.dumps({"description": "selfseg label", "version": version})

        def write(f: Any) -> None:
            f.write(f'{{"info": {head}, "categories": {json.dumps(categories, ensure_ascii=False)}'.encode())
            for key in ("images", "annotations"):
                f.write(f', "{key}": ['.encode())
                with open(self._part(split, key), encoding="utf-8") as lines:
                    for k, line in enumerate(lines):
                        f.write(((", " if k else "") + line.rstrip("\n")).encode("utf-8"))
                f.write(b"]")
            f.write(b"}\n")

        atomic_write(path, write)
        for key in ("images", "annotations"):
            self._part(split, key).unlink()

    def _write_data_yaml(self) -> None:
        import yaml

        from ..io import atomic_write

        # An absolute path: ultralytics resolves a relative one against its own datasets folder, not the
        # YAML's. Moving the dataset: edit it, or delete the line (the YAML's folder is then the root).
        # No val image (a small folder, val_fraction 0): trainers refuse a val folder that is not there, so
        # val is the train images, as dataset.json's split counts show.
        val = "val/images" if self._counts["val"]["images"] else "train/images"
        data = {"path": str(self.out.resolve()), "train": "train/images", "val": val,
                "nc": len(self._classes), "names": list(self._classes)}
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        atomic_write(self.out / DATA_YAML, lambda f: f.write(text.encode("utf-8")))
