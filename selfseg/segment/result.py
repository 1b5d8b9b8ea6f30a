"""Typed segmentation result: instances, semantic map, panoptic view, and the formats people use."""
from __future__ import annotations

import copy
import dataclasses
import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..tag.result import (
    TagResult,
    ValueEquality,
    array_summary,
    as_boxes,
    as_vector,
    check_schema,
    nearest_rows,
    short_list,
    source_file_name,
    source_stem,
)

# The JSON layout of a Segmentation; from_dict also reads the layout written before it carried a version
# (the same fields, no "schema" key), so earlier benchmark runs stay readable.
SCHEMA_VERSION = 1


def paint_semantic(masks: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 semantic map from instance masks: 0 = unlabelled, class_ids are 1-based.

    Instances are painted in ascending score order, so where masks overlap the most confident wins;
    equal scores: the later instance wins.
    """
    out = np.zeros(size, dtype=np.int32)
    for i in np.argsort(np.asarray(scores), kind="stable"):
        out[masks[i]] = class_ids[i]
    return out


def paint_instances(masks: np.ndarray, scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 segment-id map (0 = none, instance i -> i + 1), same overlap rule as paint_semantic."""
    return paint_semantic(masks, scores, np.arange(1, len(masks) + 1), size)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a COCO panoptic PNG: R + 256 G + 256^2 B (a 2-D array is taken as ids already)."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    if rgb.ndim == 2:
        return rgb
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """The COCO panoptic PNG colours of segment ids (the inverse of `rgb2id`)."""
    ids = np.asarray(ids, dtype=np.uint32)
    return np.stack([ids % 256, ids // 256 % 256, ids // (256 * 256) % 256], axis=-1).astype(np.uint8)


def panoptic_segments(ids: np.ndarray, instance_ids: Sequence[int], categories: Sequence[int | None],
                      stuff: Iterable[int] = ()) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """An instance-id map (0 = none) and each instance's category as COCO panoptic segment ids (uint32) and
    segments_info (id, category_id, iscrowd 0, instances: the instance ids it covers). An instance without a
    category (None) is void; the instances of one `stuff` category are one segment, as the format has one
    segment per stuff category and image."""
    stuff = set(stuff)
    lut = np.zeros(max(int(ids.max(initial=0)), *instance_ids, 0) + 1, np.uint32)
    segments: list[dict[str, Any]] = []
    by_stuff: dict[int, dict[str, Any]] = {}
    for i, cat in zip(instance_ids, categories):
        if cat is None:
            continue
        cat = int(cat)
        seg = by_stuff.get(cat) if cat in stuff else None
        if seg is None:
            seg = {"id": len(segments) + 1, "category_id": cat, "iscrowd": 0, "instances": []}
            segments.append(seg)
            if cat in stuff:
                by_stuff[cat] = seg
        seg["instances"].append(int(i))
        lut[i] = seg["id"]
    return lut[ids], segments


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding of one (H, W) bool mask, counts as a UTF-8 string (JSON-ready)."""
    from pycocotools import mask as mask_utils

    # One full-size copy: the column-major 0/1 bytes pycocotools reads, cast and laid out in the same pass.
    rle = mask_utils.encode(np.array(mask, dtype=np.uint8, order="F"))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The (H, W) bool mask of a COCO RLE: compressed (counts a string) or uncompressed (counts a list of run
    lengths, as COCO writes crowd annotations)."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        if any(not isinstance(c, numbers.Integral) or isinstance(c, bool) or c < 0 for c in counts) \
                or sum(counts) != h * w:
            raise ValueError(f"uncompressed RLE counts must be run lengths (integers >= 0) adding up to "
                             f"{h} x {w} = {h * w} pixels")
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    elif isinstance(counts, (str, bytes)):
        compressed = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise TypeError(f"RLE counts: expected a string or a list of run lengths, got {type(counts).__name__}")
    return mask_utils.decode(compressed).astype(bool)


#: The fields an edit of a built Segmentation must keep consistent with one another.
_INSTANCE_FIELDS = frozenset({"masks", "image_size", "boxes", "scores", "mask_scores", "labels", "classes"})


def _read_only_masks(masks: Any) -> np.ndarray:
    """Bool masks that refuse in-place edits: the painted maps are kept between calls, and an edit that
    bypassed the attribute would leave them stale. A caller's own bool array stays writable (a view)."""
    a = np.asarray(masks, dtype=bool)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _undo_exif() -> dict[int, Any]:
    from PIL import Image

    t = Image.Transpose
    # The inverse of what ImageOps.exif_transpose applies for each EXIF orientation (6 and 8 swap).
    return {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_90,
            7: t.TRANSVERSE, 8: t.ROTATE_270}


@dataclass(eq=False)
class Instances(ValueEquality):
    """What a segmenter returns for one image: masks and their names, nothing about the run around them.

    masks: (N, H, W) bool at the image's size; boxes: (N, 4) xyxy pixels; scores: (N,) locator or map
    confidence; mask_scores: (N,) mask-model scores (1.0 where there is no mask model); labels: N names.
    classes: the names the segmenter itself chose (None: the plan's classes, the usual case; the BCC cluster
    segmenter names clusters with their own nouns). The pipeline turns this into a `Segmentation`.
    """

    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    mask_scores: np.ndarray
    labels: list[str]
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        self.labels = list(self.labels)
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3 or len(self.masks) != n:
            raise ValueError(f"expected masks of shape ({n}, H, W), got {self.masks.shape}")
        self.boxes = as_boxes(self.boxes, n)
        self.scores = as_vector(self.scores, n, "scores")
        self.mask_scores = as_vector(self.mask_scores, n, "mask_scores")

    @classmethod
    def empty(cls, image_size: tuple[int, int], note: str, **timings: Any) -> Instances:
        """No instance, with the one-line reason (no tags, no boxes, ...)."""
        h, w = image_size
        return cls(np.zeros((0, h, w), bool), np.zeros((0, 4)), np.zeros(0), np.zeros(0), [], notes=[note],
                   timings=dict(timings))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"Instances({len(self.labels)} labels={short_list(self.labels)}, masks={array_summary(self.masks)}, "
                f"notes={short_list(self.notes, 2)})")


# What the painted maps (`semantic`, `panoptic`) are made of: assigning any of them drops the maps.
_PAINT_INPUTS = frozenset({"image_size", "masks", "scores", "mask_scores", "labels", "classes"})


@dataclass(eq=False)
class Segmentation(ValueEquality):
    """Named masks for one image.

    masks: (N, H, W) bool instance masks at the image's size. boxes: (N, 4) float32 xyxy pixels.
    scores: (N,) detector scores; mask_scores: (N,) mask-model scores (predicted IoU; 1.0 where the
    segmenter has none). labels: N class names, each one of `classes`. classes: the vocabulary the image
    was segmented with; class i is id i + 1 in `semantic` (0 = unlabelled). tags: the tagger's result
    (None in `given` vocabulary mode). merges: tag clean-up notes. segmenter: registry name.

    `masks` is read-only: `semantic` and `panoptic` are painted once and kept while what they are painted
    from stays the same, so change masks by assigning a new array (`seg.masks = edited`). An assignment keeps
    the instances (the same count, masks of the same size, labels among the classes; a ValueError otherwise):
    `dataclasses.replace` builds a result with other instances. A bool array given to the constructor or
    assigned is viewed, not copied: edit it afterwards and the painted maps may be stale. Equality compares
    every field, arrays by shape and values (not dtype); results are mutable and unhashable.
    """

    image_size: tuple[int, int]
    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    mask_scores: np.ndarray
    labels: list[str]
    classes: list[str]
    segmenter: str
    source: str = ""
    tags: TagResult | None = None
    merges: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # (H, W) of the input photo when the models saw a reduced copy (run.max_image_side); None: same size.
    original_size: tuple[int, int] | None = None
    # Prompt enrichment: the phrase each class was prompted with (classes prompted as themselves absent).
    prompts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.image_size)
        self.image_size = (h, w)
        self.labels, self.classes = list(self.labels), list(self.classes)
        n = len(self.labels)
        if self.masks.size == 0 and n == 0:
            self.masks = self.masks.reshape(0, h, w)
        if self.masks.shape != (n, h, w):
            raise ValueError(f"expected masks of shape {(n, h, w)} (N, H, W), got {self.masks.shape}")
        self.boxes = as_boxes(self.boxes, n)
        self.scores = as_vector(self.scores, n, "scores")
        self.mask_scores = as_vector(self.mask_scores, n, "mask_scores")
        unknown = sorted(set(self.labels) - set(self.classes))
        if unknown:
            raise ValueError(f"expected every label to be one of the classes, got {unknown}")
        object.__setattr__(self, "_built", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_built") and name in _INSTANCE_FIELDS:
            value = self._edited(name, value)
        elif name == "masks":
            value = _read_only_masks(value)
        elif name in ("boxes", "scores", "mask_scores"):
            value = np.asarray(value, dtype=np.float32)
        if name in _PAINT_INPUTS:
            self.__dict__.pop("_painted_maps", None)
        object.__setattr__(self, name, value)

    def _edited(self, name: str, value: Any) -> Any:
        """A new value of a built result's field, made as the constructor makes it, and refused (ValueError,
        one line) where it would no longer fit the other fields: a field of another length or size would fail
        later, deep inside painting or JSON, or drop instances silently."""
        n, h, w = self.masks.shape
        try:
            if name == "masks":
                value = _read_only_masks(value)
                if value.size == 0 and n == 0:
                    value = value.reshape(0, h, w)
                ok, want = value.shape == (n, h, w), f"shape {(n, h, w)} (N, H, W)"
            elif name == "image_size":
                size = tuple(value)
                ok = (len(size) == 2 and all(isinstance(v, numbers.Real) and float(v) == int(v) for v in size)
                      and tuple(map(int, size)) == (h, w))
                value, want = (h, w), f"({h}, {w}), the masks' size"
            elif name == "boxes":
                value, ok, want = as_boxes(value, n), True, ""
            elif name in ("scores", "mask_scores"):
                value, ok, want = as_vector(value, n, name), True, ""
            else:  # labels, classes: lists of names
                if isinstance(value, (str, bytes)):
                    raise TypeError("expected a list of names, got a string")
                value = list(value)
                if name == "classes":
                    missing = sorted(set(self.labels) - set(value))
                    ok, want = not missing, f"every label among them (missing {missing})"
                else:
                    unknown = sorted(set(value) - set(self.classes))
                    ok = len(value) == n and not unknown
                    want = f"{n} labels, each one of the classes" + (f" (not {unknown})" if unknown else "")
        except (TypeError, ValueError, OverflowError) as exc:
            text = str(exc)
            ok = False
            want = text.removeprefix("expected ") if text.startswith("expected ") else \
                f"a value of the field's kind (got {type(value).__name__}: {text})"
        if not ok:
            raise ValueError(f"{name}: expected {want}; this result has {n} instances: build a new Segmentation "
                             "(dataclasses.replace) to change them")
        return value

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # the painted maps are rebuilt on demand; "semantic" and "panoptic": the caches of older pickles
        for cache in ("_painted_maps", "semantic", "panoptic", "_built"):
            state.pop(cache, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            if name not in ("_painted_maps", "semantic", "panoptic", "_built"):
                setattr(self, name, value)  # masks come back read-only
        object.__setattr__(self, "_built", True)

    def __repr__(self) -> str:
        tags = "None" if self.tags is None else f"<{len(self.tags.nouns)} tags by {self.tags.tagger!r}>"
        return (f"Segmentation(source={self.source!r}, image_size={self.image_size}, segmenter={self.segmenter!r}, "
                f"{len(self.labels)} instances labels={short_list(self.labels)}, {len(self.classes)} "
                f"classes={short_list(self.classes)}, masks={array_summary(self.masks)}, tags={tags})")

    @property
    def class_ids(self) -> np.ndarray:
        """(N,) 1-based class id of each instance (index into `classes` + 1)."""
        index = {c: i + 1 for i, c in enumerate(self.classes)}
        return np.asarray([index[lab] for lab in self.labels], dtype=np.int32)

    @property
    def semantic(self) -> np.ndarray:
        """(H, W) int32 label map, 0 = unlabelled; most confident instance wins overlaps. Read-only."""
        return self._painted("semantic", lambda: paint_semantic(self.masks, self._order_scores, self.class_ids,
                                                                 self.image_size))

    @property
    def panoptic(self) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """(segment-id map (H, W) int32, read-only, 0 = none, instance i -> i + 1; segment info per visible id)."""
        ids = self._painted("panoptic", lambda: paint_instances(self.masks, self._order_scores, self.image_size))
        areas = self._painted("areas", lambda: np.bincount(ids.ravel(), minlength=len(self.labels) + 1))
        class_ids = self.class_ids  # once: a property that builds its index on every read
        info = [{"id": i + 1, "label": self.labels[i], "category_id": int(class_ids[i]),
                 "score": float(self.scores[i]), "area": int(areas[i + 1])}
                for i in range(len(self.labels)) if areas[i + 1] > 0]
        return ids, info

    def _painted(self, name: str, paint: Any) -> np.ndarray:
        """A painted map, kept while its inputs stay the same: reassigning one drops it (__setattr__), masks
        refuse in-place edits, and the key catches in-place edits of the small inputs (lists, scores)."""
        key = (tuple(self.labels), tuple(self.classes), self.scores.tobytes(), self.mask_scores.tobytes())
        cache = self.__dict__.setdefault("_painted_maps", {})
        hit = cache.get(name)
        if hit is None or hit[0] != key:
            self._check_in_place_edits()  # an in-place edit changes the key, so it is checked here
            value = paint()
            value.flags.writeable = False  # one array for every caller
            hit = cache[name] = (key, value)
        return hit[1]

    def _check_in_place_edits(self) -> None:
        """The lists and arrays an assignment checks can still be edited in place (`labels.pop()`): caught
        here, before painting or JSON drops an instance or fails deep inside NumPy."""
        n = len(self.masks)
        sizes = {"labels": len(self.labels), "scores": len(self.scores), "mask_scores": len(self.mask_scores),
                 "boxes": len(self.boxes)}
        wrong = [f"{k} has {v}" for k, v in sizes.items() if v != n]
        unknown = sorted(set(self.labels) - set(self.classes))
        if wrong or unknown:
            what = "; ".join(wrong + ([f"labels {unknown} are not among the classes"] if unknown else []))
            raise ValueError(f"this result's fields no longer fit its {n} masks ({what}): edited in place? "
                             "assign whole fields, or build a new Segmentation (dataclasses.replace)")

    @property
    def _order_scores(self) -> np.ndarray:
        # Detector score times mask score orders overlaps: a confident box with a poor mask yields.
        return self.scores * self.mask_scores

    # --------------------------------------------------------------------------------------- exports
    def instances(self) -> list[dict[str, Any]]:
        """One JSON-ready record per instance: label, box xyxy, scores, area, COCO RLE mask (at `image_size`)."""
        return list(self._records(photo=False))

    def _records(self, photo: bool) -> Iterable[dict[str, Any]]:
        """`instances`, or with photo=True at the photo's size: each mask upsampled as it is encoded, so no
        more than one is held at that size."""
        self._check_in_place_edits()
        class_ids = self.class_ids  # built once, not once per instance
        rows, cols, scale = self._photo_grid() if photo else (None, None, None)
        for i in range(len(self.labels)):
            mask, box = self.masks[i], self.boxes[i]
            if scale is not None:
                mask, box = mask.take(rows, axis=0).take(cols, axis=1), box * scale
            yield {"label": self.labels[i], "class_id": int(class_ids[i]), "box_xyxy": [float(v) for v in box],
                   "score": float(self.scores[i]), "mask_score": float(self.mask_scores[i]),
                   "area": int(np.count_nonzero(mask)), "mask_rle": encode_rle(mask)}

    def _photo_grid(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """(rows, cols, box scale) that take the masks and boxes to the photo's size, the nearest-neighbour
        rule the saved label PNG follows; Nones when the models saw the photo at its own size."""
        if self.original_size is None or tuple(self.original_size) == tuple(self.image_size):
            return None, None, None
        (big_h, big_w), (h, w) = self.original_size, self.image_size
        scale = np.array([big_w / w, big_h / h, big_w / w, big_h / h])
        return nearest_rows(big_h, h), nearest_rows(big_w, w), scale

    def at_original_size(self) -> Segmentation:
        """This result at the photo's size where the models saw a reduced copy (`original_size`, set by
        run.max_image_side): masks upsampled as the saved label PNG is, boxes scaled, `original_size` None,
        every other field its own copy; the result itself otherwise. The masks take N x H x W bytes at the
        photo's size."""
        rows, cols, scale = self._photo_grid()
        if scale is None:
            return self
        self._check_in_place_edits()
        return dataclasses.replace(
            self, image_size=tuple(self.original_size), masks=self.masks.take(rows, axis=1).take(cols, axis=2),
            boxes=self.boxes * scale, scores=self.scores.copy(), mask_scores=self.mask_scores.copy(),
            tags=copy.deepcopy(self.tags), original_size=None, merges=copy.deepcopy(self.merges),
            notes=list(self.notes), timings=copy.deepcopy(self.timings), prompts=dict(self.prompts))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the segmentation (masks as COCO RLE): its own copy, so editing it leaves the
        segmentation as it was."""
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION, "source": self.source, "image_size": list(self.image_size),
            "segmenter": self.segmenter,
            "classes": list(self.classes), "instances": self.instances(), "merges": copy.deepcopy(self.merges),
            "notes": list(self.notes), "timings": copy.deepcopy(self.timings),
        }
        if self.prompts:
            d["prompts"] = dict(self.prompts)
        if self.original_size is not None:
            d["original_size"] = list(self.original_size)
        if self.tags is not None:
            d["tags"] = self.tags.to_dict(intermediates=False)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segmentation:
        """The Segmentation a `to_dict` / `save` JSON describes (masks decoded from their RLE). ValueError with
        one line for anything else: another schema, a missing field, a mask of the wrong size."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a selfseg segmentation (a JSON object), got {type(d).__name__}")
        if "tagger" in d and "segmenter" not in d:
            raise ValueError("expected a selfseg segmentation, got a tag result (read it with "
                             "selfseg.TagResult.from_json)")
        check_schema(d, "segmentation", SCHEMA_VERSION, default=SCHEMA_VERSION)
        try:
            h, w = (int(v) for v in d["image_size"])
            inst = d["instances"]
            masks = np.stack([_instance_mask(k, i, (h, w)) for k, i in enumerate(inst)]) if inst else \
                np.zeros((0, h, w), bool)
            tags = TagResult.from_dict(d["tags"]) if d.get("tags") else None
            return cls(
                image_size=(h, w), masks=masks, boxes=[_instance_box(k, i) for k, i in enumerate(inst)],
                scores=[i["score"] for i in inst], mask_scores=[i.get("mask_score", 1.0) for i in inst],
                labels=[i["label"] for i in inst], classes=list(d["classes"]), segmenter=d["segmenter"],
                source=d.get("source", ""), tags=tags, merges=copy.deepcopy(d.get("merges", [])),
                notes=list(d.get("notes", [])), timings=copy.deepcopy(d.get("timings", {})),
                original_size=tuple(d["original_size"]) if d.get("original_size") else None,
                prompts=dict(d.get("prompts", {})),
            )
        except KeyError as exc:
            raise ValueError(f"expected a selfseg segmentation, missing field {exc}") from None
        except (TypeError, AttributeError) as exc:  # AttributeError: an RLE whose counts is no string
            raise ValueError(f"expected a selfseg segmentation, malformed field ({exc})") from None

    def to_json(self) -> str:
        """`to_dict` as JSON text, what `from_json` reads back."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, source: str | bytes | Path) -> Segmentation:
        """From JSON text (str or UTF-8 bytes) or a file (a `<stem>.json` that `save` or `selfseg segment`
        wrote); ValueError, one line, when it cannot be read or is not JSON."""
        from ..tag.result import read_json_result

        return cls.from_dict(read_json_result(source, "segmentation"))

    def to_coco(self, image_id: int = 1, photo_size: bool = True) -> dict[str, Any]:
        """A COCO-style results dict: images, categories (1-based ids) and annotations with RLE masks.

        The image entry names the photo (`source`), so coordinates, masks, height and width are the photo's:
        where the models saw a reduced copy (`original_size`), masks are upsampled as the saved label PNG is
        and boxes scaled, one mask at a time. photo_size=False: those of the analysed image (`image_size`)."""
        photo = photo_size and self.original_size is not None
        h, w = self.original_size if photo else self.image_size
        anns = []
        for i, inst in enumerate(self._records(photo=photo)):
            x1, y1, x2, y2 = inst["box_xyxy"]
            anns.append({"id": i + 1, "image_id": image_id, "category_id": inst["class_id"],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": inst["area"], "score": inst["score"],
                         "segmentation": inst["mask_rle"], "iscrowd": 0})
        return {"images": [{"id": image_id, "file_name": source_file_name(self.source), "height": h, "width": w}],
                "categories": [{"id": i + 1, "name": c} for i, c in enumerate(self.classes)],
                "annotations": anns}

    def to_coco_results(self, image_id: Any, category_ids: Mapping[str, int | None] | None = None,
                        photo_size: bool = True) -> list[dict[str, Any]]:
        """The instances as COCO results (image_id, category_id, segmentation RLE, bbox xywh, score), the
        input of `selfseg evaluate --task instance`. category_ids: label -> the dataset's category id (a
        label mapped to None is left out); default: the label's 1-based index in `classes`. At the photo's
        upright size, as `to_coco`; photo_size=False: at `image_size`. A photo with an EXIF turn is upright
        here, while dataset annotations keep the file's stored pixel order (`selfseg benchmark` turns its
        masks back for that)."""
        ids = category_ids if category_ids is not None else {c: i + 1 for i, c in enumerate(self.classes)}
        out = []
        for i, inst in enumerate(self._records(photo=photo_size)):
            cat = ids.get(self.labels[i])
            if cat is None:
                continue
            x1, y1, x2, y2 = inst["box_xyxy"]
            out.append({"image_id": image_id, "category_id": int(cat), "segmentation": inst["mask_rle"],
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": inst["score"]})
        return out

    def to_coco_panoptic(self, image_id: Any, file_name: str,
                         category_ids: Mapping[str, int | None] | None = None,
                         stuff: Iterable[int] = (), photo_size: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
        """The panoptic view as COCO panoptic: the (H, W, 3) uint8 PNG (segment id = R + 256 G + 256^2 B) and its
        annotation (image_id, file_name, segments_info). category_ids as in `to_coco_results`; a label mapped to
        None leaves its pixels void (0). Segments of a `stuff` category merge into one per image, as the
        format has one segment per stuff category. At the photo's upright size, the segment map upsampled as
        the label PNG is (an EXIF turn is not undone, see `to_coco_results`); photo_size=False: at
        `image_size`."""
        ids, info = self.panoptic
        rows, cols, scale = self._photo_grid() if photo_size else (None, None, None)
        if scale is not None:
            ids = ids.take(rows, axis=0).take(cols, axis=1)
        cats = category_ids if category_ids is not None else {c: i + 1 for i, c in enumerate(self.classes)}
        out, segments = panoptic_segments(ids, [s["id"] for s in info], [cats.get(s["label"]) for s in info], stuff)
        score = {s["id"]: s["score"] for s in info}
        for seg in segments:
            seg["score"] = score[seg.pop("instances")[0]]
            ys, xs = np.nonzero(out == seg["id"])
            seg["area"] = int(len(ys))
            seg["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        return id2rgb(out), {"image_id": image_id, "file_name": file_name, "segments_info": segments}

    def to_supervision(self, photo_size: bool = True) -> Any:
        """`supervision.Detections` (needs `pip install supervision`), at the photo's size as supervision's
        annotators draw on the photo (`at_original_size`); photo_size=False: at the analysed `image_size`."""
        try:
            import supervision as sv
        except ImportError:
            raise ImportError("to_supervision() needs the supervision package: pip install supervision") from None
        seg = self.at_original_size() if photo_size else self
        return sv.Detections(xyxy=seg.boxes.astype(np.float32), mask=seg.masks, confidence=seg.scores,
                             class_id=seg.class_ids - 1, data={"class_name": np.asarray(seg.labels)})

    def save(self, out_dir: str | Path, stem: str | None = None, image: Any = None,
             original_size: tuple[int, int] | None = None, exif_orientation: int = 1,
             extra: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write <stem>_labels.png (palette, 0 = unlabelled), <stem>_overlay.png (given the image) and
        <stem>.json (stem: the source file's name by default), the JSON last (so `--resume` never sees a
        half-written result).
        The JSON names the files written beside it (`files`) and carries `extra` (e.g. the run's key).

        original_size: (H, W) of the input photo when the models saw a reduced copy (run.max_image_side):
        the label map is then upsampled (nearest) to it; masks in the JSON stay at `image_size`.
        exif_orientation: the source file's EXIF orientation (images are analysed upright); the label map is
        turned back to the file's stored pixel order, the one dataset annotations use. 1: as analysed.
        """
        from PIL import Image

        from ..io import atomic_write
        from ..viz import draw_segmentation, palette

        stem = stem or source_stem(self.source)
        original_size = original_size or self.original_size
        out = Path(out_dir)
        # The overlay first: an image that does not fit this result is refused before any file is written.
        overlay = draw_segmentation(image, self) if image is not None else None
        try:
            out.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise NotADirectoryError(f"cannot save into {out}: it, or a folder above it, is a file") from None
        paths = {"labels": out / f"{stem}_labels.png", "json": out / f"{stem}.json"}
        if overlay is not None:
            paths["overlay"] = out / f"{stem}_overlay.png"
        in_the_way = [p for p in paths.values() if p.is_dir()]
        if in_the_way:
            raise IsADirectoryError(f"cannot save {in_the_way[0]}: a folder of that name is in the way")
        sem = self.semantic
        if original_size is not None and tuple(original_size) != tuple(self.image_size):
            from ..tag.result import upsample_nearest

            # upsample_nearest keeps uint8 where labels fit: an int32 copy of a 48-megapixel map is 192 MB.
            sem = upsample_nearest(sem, tuple(original_size))
        if len(self.classes) < 256:
            lab = Image.fromarray(sem.astype(np.uint8, copy=False), mode="P")
            pal = np.zeros((256, 3), dtype=np.uint8)
            pal[1: len(self.classes) + 1] = palette(len(self.classes))
            lab.putpalette(pal.ravel().tolist())
        else:  # more classes than a palette holds: 16-bit grey levels, same ids
            lab = Image.fromarray(sem.astype(np.uint16))
        undo = _undo_exif().get(exif_orientation)
        if undo is not None:
            lab = lab.transpose(undo)
        atomic_write(paths["labels"], lambda f: lab.save(f, format="PNG"))
        if overlay is not None:
            atomic_write(paths["overlay"], lambda f: overlay.save(f, format="PNG"))
        d = self.to_dict()
        d["label_map_size"] = [lab.height, lab.width]  # the PNG's, after the photo's orientation
        d.update(extra or {})
        d["files"] = [p.name for k, p in paths.items() if k != "json"]
        atomic_write(paths["json"], lambda f: f.write(json.dumps(d).encode("utf-8")))
        return paths


def _instance_mask(k: int, inst: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    rle = inst["mask_rle"]
    if [int(v) for v in rle["size"]] != list(size):
        raise ValueError(f"expected masks of shape (N, {size[0]}, {size[1]}) (the image_size), got instance {k}'s "
                         f"mask_rle of size {rle['size']}")
    try:
        return decode_rle(rle)
    except ValueError as exc:  # pycocotools on counts that are no RLE
        raise ValueError(f"expected a selfseg segmentation, instance {k}: unreadable mask_rle ({exc})") from None


def _instance_box(k: int, inst: dict[str, Any]) -> list[float]:
    box = inst["box_xyxy"]
    if not isinstance(box, list) or len(box) != 4:
        raise ValueError(f"expected a selfseg segmentation, instance {k}: box_xyxy must be 4 numbers (xyxy), "
                         f"got {box!r}")
    return box


def write_coco_panoptic(folder: str | Path, items: Iterable[tuple[Any, str, Segmentation]],
                        category_ids: Mapping[str, int | None] | None = None, stuff: Iterable[int] = (),
                        categories: list[dict[str, Any]] | None = None) -> Path:
    """Write `<folder>/panoptic.json` and `<folder>/panoptic/<stem>.png` for (image_id, file stem, Segmentation)
    items: the predictions `selfseg evaluate --task panoptic` reads. stuff: category ids merged to one segment
    per image (default: the `categories` with isthing 0). The PNGs are at the photo's size, where the models saw
    a reduced copy too (see `Segmentation.to_coco_panoptic`). Returns the JSON's path."""
    from PIL import Image

    folder = Path(folder)
    (folder / "panoptic").mkdir(parents=True, exist_ok=True)
    annotations = []
    # the categories say which are stuff when the caller does not
    stuff = set(stuff) or {int(c["id"]) for c in categories or [] if not c.get("isthing", 1)}
    stems: set[str] = set()
    for image_id, stem, seg in items:
        if stem in stems:
            raise ValueError(f"write_coco_panoptic: two images with the file stem {stem!r}; expected one each")
        stems.add(stem)
        rgb, ann = seg.to_coco_panoptic(image_id, f"{stem}.png", category_ids, stuff)
        Image.fromarray(rgb).save(folder / "panoptic" / f"{stem}.png")
        annotations.append(ann)
    path = folder / "panoptic.json"
    path.write_text(json.dumps({"annotations": annotations, "categories": categories or []}), encoding="utf-8")
    return path
