"""The user-facing pipeline: built once from a config, models loaded once, images in, typed results out."""
from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import interrupts
from .config import Config, load_config, uses_tiny
from .errors import ConfigError, DeviceError, SelfSegError
from .io import ImageInput, LoadedImage, atomic_write, input_name, load_image
from .tag.result import TagResult

if TYPE_CHECKING:
    from .segment.base import Segmenter, SegmentPlan
    from .segment.result import Instances, Segmentation
    from .tag.base import Tagger


@dataclass
class BatchItem:
    """One input of a batch run: its result, or the one-line reason it failed."""

    source: str
    result: TagResult | Segmentation | None = None  # TagResult from tag_many, Segmentation from segment_many
    error: str | None = None
    loaded: LoadedImage | None = None  # the image as the models saw it (for overlays)

    @property
    def ok(self) -> bool:
        return self.error is None


class SelfSeg:
    """Self-guided segmentation pipeline: tag an image (what is in it?), then segment what was found or
    the user's own words. Stages are built from the config on first use; models load once.

    >>> seg = SelfSeg.from_config("configs/bcc_voc.yaml")
    >>> result = seg.tag("photo.jpg")
    >>> result.tags, result.cluster_map.shape
    >>> seg.segment("photo.jpg", tags=result).labels
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._tagger: Tagger | None = None
        self._segmenter: Segmenter | None = None
        self._enricher: Any = None

    @classmethod
    def from_config(cls, source: str | Path | dict | Config | None = None,
                    overrides: list[str] | None = None) -> SelfSeg:
        return cls(load_config(source, overrides))

    @property
    def meaningless(self) -> bool:
        """True when the configured tagger uses tiny random-init models (smoke configs)."""
        return uses_tiny(self.config)

    @property
    def tagger(self) -> Tagger:
        if self._tagger is None:
            from .tag import build_tagger

            self._tagger = build_tagger(self.config)
        return self._tagger

    @property
    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            from .segment import build_segmenter

            self._segmenter = build_segmenter(self.config)
        return self._segmenter

    @property
    def enricher(self) -> Any:
        """The prompt enricher (segment.enrich), or None when prompts are the plain tags."""
        if self._enricher is None and self.config.segment.enrich != "none":
            from .segment.enrich import PromptEnricher

            c = self.config
            self._enricher = PromptEnricher(c.segment, c.vlm, c.model)
        return self._enricher

    def segment(self, image: ImageInput, tags: TagResult | None = None) -> Segmentation:
        """Tag (unless the vocabulary is "given", or `tags` from an earlier `tag()` call are passed) and
        segment one image -> `Segmentation`."""
        loaded = load_image(image, self.config.run.max_image_side)
        if tags is None and self.config.segment.vocabulary != "given":
            tags = _with_image_notes(self.tagger.tag_batch([loaded])[0], loaded)
        elif isinstance(tags, TagResult) and self.config.segment.vocabulary != "given" and \
                tuple(tags.image_size) != tuple(loaded.size):
            # another image's tags: its cluster map would be laid over this image
            raise ValueError(f"tags are of an image of size {tuple(tags.image_size)} (H, W) ({tags.source}), "
                             f"not of {loaded.source} {tuple(loaded.size)}")
        item = BatchItem(source=loaded.source, result=tags, loaded=loaded)
        planned = [self._plan(loaded, tags)]
        return self._segment_one(loaded, planned[0], self._enrich([item], planned)[0])

    def segment_many(self, images: Iterable[ImageInput], batch_size: int | None = None) -> Iterator[BatchItem]:
        """Like `tag_many`, with `BatchItem.result` a `Segmentation`. Tagging, prompt enrichment and the
        segmenter's image encoders take a batch at a time; models load once."""
        images = _as_inputs(images)
        # Built up front, so a bad segmenter or enricher config fails before any image is read.
        _ = self.segmenter
        _ = self.enricher
        size = self._batch_size(batch_size)
        if self.config.segment.vocabulary == "given":
            stream: Iterator[BatchItem] = (self._load_item(src) for src in images)
        else:
            stream = self.tag_many(images, batch_size)
        pending: list[BatchItem] = []  # kept in input order, failures included
        for item in stream:
            pending.append(item)
            if sum(i.ok for i in pending) == size:
                yield from self._segment_batch(pending)
                pending = []
        if pending:
            yield from self._segment_batch(pending)

    def _segment_batch(self, items: Sequence[BatchItem]) -> Iterator[BatchItem]:
        interrupts.check()
        ok = [i for i in items if i.ok]
        planned: dict[int, SegmentPlan] = {}
        for item in ok:
            try:
                planned[id(item)] = self._plan(item.loaded, item.result)
            except SelfSegError:
                raise
            except Exception as exc:  # one bad image must not stop the batch
                _stop_if_device_lost(exc, self.config.model.device)
                item.error = f"{item.source}: {type(exc).__name__}: {exc}".splitlines()[0]
        ok = [i for i in ok if i.ok]
        enriched = dict(zip(map(id, ok), self._enrich(ok, [planned[id(i)] for i in ok])))
        prompted = {id(i): _prompted(planned[id(i)], enriched[id(i)]) for i in ok}
        found = dict(zip(map(id, ok), self._find([i.loaded for i in ok], [prompted[id(i)] for i in ok])))
        for item in items:
            if not item.ok:
                yield BatchItem(source=item.source, error=item.error)
                continue
            assert item.loaded is not None
            own = found.pop(id(item))  # let each image's masks go once its result is handed on
            if isinstance(own, str):
                yield BatchItem(source=item.source, error=own)
                continue
            try:
                seg = self._assemble(item.loaded, prompted[id(item)], own, enriched[id(item)])
            except SelfSegError:
                raise
            except Exception as exc:  # one bad image must not stop the batch
                yield BatchItem(source=item.source,
                                error=f"{item.source}: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
            yield BatchItem(source=item.source, result=seg, loaded=item.loaded)

    def _find(self, loaded: Sequence[LoadedImage], plans: Sequence[SegmentPlan]) -> list[Instances | str]:
        """Per image: what the segmenter found, or the one-line reason it failed. The images go to the
        segmenter together; when that fails, one by one, so a single bad image does not take its batch down."""
        from .segment.base import segment_all

        if not loaded:
            return []
        try:
            found: list[Instances | str] = list(segment_all(self.segmenter, loaded, plans))
            for f in found:
                _check_found(self.segmenter, f)
            return found
        except SelfSegError:
            raise
        except Exception as exc:
            _stop_if_device_lost(exc, self.config.model.device)
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        # Retried only once the exception is gone: its traceback holds the failed call's tensors.
        if len(loaded) > 1:
            return [self._find([im], [plan])[0] for im, plan in zip(loaded, plans)]
        return [f"{loaded[0].source}: {error}"]

    def _enrich(self, items: Sequence[BatchItem], planned: Sequence[SegmentPlan]) -> list[Any]:
        """Per item: its Enrichment (None without segment.enrich). One batched model pass for the batch; a
        failed pass leaves the plain tags as prompts, with a note, rather than losing the batch."""
        if self.enricher is None or not items:
            return [None] * len(items)
        from .segment.enrich import Enrichment

        try:
            return self.enricher([i.loaded for i in items], [p.classes for p in planned])
        except SelfSegError:
            raise
        except Exception as exc:
            _stop_if_device_lost(exc, self.config.model.device)
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if len(items) > 1:  # one image the model cannot take must not cost the others their prompts
            return [self._enrich([i], [p])[0] for i, p in zip(items, planned)]
        return [Enrichment(notes=[f"enrich: failed ({error}); prompted with the plain tags"])]

    def _load_item(self, src: ImageInput) -> BatchItem:
        try:
            loaded = load_image(src, self.config.run.max_image_side)
        except SelfSegError as exc:
            return BatchItem(source=input_name(src), error=str(exc))
        return BatchItem(source=loaded.source, loaded=loaded)

    def _plan(self, loaded: LoadedImage, tags: TagResult | None) -> SegmentPlan:
        """The class list an image is segmented with: cleaned self-found tags and/or the user's words."""
        from .segment.base import SegmentPlan
        from .tag.cleanup import clean_tags
        from .tag.vocabulary import tidy_words

        sc = self.config.segment
        if tags is not None and not isinstance(tags, TagResult):
            raise TypeError(f"tags: expected a TagResult from SelfSeg.tag(), got {type(tags).__name__}; "
                            f"for your own words use segment.vocabulary: given and vocabulary: [...]")
        if sc.vocabulary == "given":
            tags = None  # the user's words only, even if tags were passed in
        own = tags.tags if tags is not None else []
        given = list(self.config.vocabulary) if sc.vocabulary != "self" else []
        merges = []
        # Clean only what a model found: the user's own words (the vocabulary tagger's, alone or in a union,
        # or the list) are kept as given, and a found synonym of one is folded into it.
        if own and tags.tagger != "vocabulary" and (sc.merge_synonyms or sc.merge_hypernyms):
            users = {n.noun for n in tags.nouns if "vocabulary" in n.found_by} | set(given)
            own, found = clean_tags(own + given, synonyms=sc.merge_synonyms, hypernyms=sc.merge_hypernyms,
                                    keep=users)
            merges = [vars(m) for m in found]
        # "Dog" and "dog" are one class; the first spelling wins
        return SegmentPlan(classes=tidy_words(own + given), merges=merges, tags=tags)

    def _segment_one(self, loaded: LoadedImage, plan: SegmentPlan, enrichment: Any = None) -> Segmentation:
        """Segment one image with its plan; a failure raises (`segment`, not a batch)."""
        from .segment.base import segment_all

        plan = _prompted(plan, enrichment)
        found = segment_all(self.segmenter, [loaded], [plan])[0]
        _check_found(self.segmenter, found)
        return self._assemble(loaded, plan, found, enrichment)

    def _assemble(self, loaded: LoadedImage, plan: SegmentPlan, found: Instances, enrichment: Any) -> Segmentation:
        """A segmenter's Instances for one plan as a `Segmentation`: the only place one is made."""
        from .segment.result import Segmentation

        labels = found.labels
        classes = list(plan.classes) if found.classes is None else list(found.classes)
        if plan.merges and any(c not in plan.classes for c in classes):
            # bcc_clusters names clusters with their own nouns: fold merged names into the kept ones.
            kept = {m["dropped"]: m["kept"] for m in plan.merges}

            def final(x: str) -> str:  # follow chains: couch -> sofa (synonym), sofa -> loveseat (hypernym)
                seen = {x}
                while x in kept and kept[x] not in seen:
                    x = kept[x]
                    seen.add(x)
                return x

            labels = [final(x) for x in labels]
            classes = list(dict.fromkeys(final(x) for x in classes))
        notes = (list(enrichment.notes) if enrichment is not None else []) + list(found.notes)
        h, w = loaded.image.height, loaded.image.width
        seg = Segmentation(image_size=(h, w), masks=found.masks, boxes=found.boxes, scores=found.scores,
                           mask_scores=found.mask_scores, labels=labels, classes=classes,
                           segmenter=self.segmenter.name, source=loaded.source, tags=plan.tags,
                           merges=plan.merges, notes=notes, timings=dict(found.timings),
                           original_size=loaded.size, prompts=plan.prompts if enrichment is not None else {})
        return _with_image_notes(seg, loaded)

    def tag(self, image: ImageInput) -> TagResult:
        """Tag one image (path, PIL image or array). Raises ImageError for an unusable image."""
        loaded = load_image(image, self.config.run.max_image_side)
        return _with_image_notes(self.tagger.tag_batch([loaded])[0], loaded)

    def tag_many(self, images: Iterable[ImageInput], batch_size: int | None = None) -> Iterator[BatchItem]:
        """Tag images in batches; a bad image yields a BatchItem with `error` and the others go on. One image
        (a path, a PIL image, an (H, W[, C]) array) is taken as a list of one."""
        images = _as_inputs(images)
        size = self._batch_size(batch_size)
        _ = self.tagger  # built once, up front: a config or resource problem stops here with one message
        # Kept in input order, failures included: a caller zips its inputs with what comes back.
        pending: list[LoadedImage | BatchItem] = []
        loaded = 0
        for src in images:
            try:
                pending.append(load_image(src, self.config.run.max_image_side))
                loaded += 1
            except SelfSegError as exc:
                pending.append(BatchItem(source=input_name(src), error=str(exc)))
            if loaded == size:
                yield from self._run_in_order(pending)
                pending, loaded = [], 0
        if pending:
            yield from self._run_in_order(pending)

    def _batch_size(self, batch_size: int | None) -> int:
        size = self.config.run.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ConfigError(f"batch_size: expected an integer >= 1, got {size!r}")
        return int(size)

    def _run_in_order(self, pending: Sequence[LoadedImage | BatchItem]) -> Iterator[BatchItem]:
        """The loaded images of `pending` as one batch, each result in its input's place."""
        batch = [p for p in pending if isinstance(p, LoadedImage)]
        results = self._run(batch) if batch else iter(())
        for p in pending:
            yield p if isinstance(p, BatchItem) else next(results)

    def _run(self, batch: Sequence[LoadedImage]) -> Iterator[BatchItem]:
        interrupts.check()
        error = None
        try:
            results = list(self.tagger.tag_batch(batch))
        except SelfSegError:
            raise  # configuration / resource problems affect every image: stop with the message
        except Exception as exc:  # a failed batch must not lose the rest of the run
            _stop_if_device_lost(exc, self.config.model.device)
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        # Retried only once the exception is gone: its traceback holds the failed call's tensors, and after
        # running out of GPU memory the retries need that memory back.
        if error is not None:
            if len(batch) > 1:  # retry one by one so a single bad input does not take its batch down
                for im in batch:
                    yield from self._run([im])
                return
            yield BatchItem(source=batch[0].source, error=f"{batch[0].source}: {error}")
            return
        if len(results) != len(batch):  # never let results slide onto the wrong images
            raise RuntimeError(f"the {self.config.tagger} tagger returned {len(results)} results for {len(batch)} "
                               f"images")
        for im, res in zip(batch, results):
            yield BatchItem(source=im.source, result=_with_image_notes(res, im), loaded=im)


def _prompted(plan: SegmentPlan, enrichment: Any) -> SegmentPlan:
    """`plan` with the enriched phrase of each of its classes (the plain plan without enrichment)."""
    if enrichment is None:
        return plan
    return dataclasses.replace(plan, prompts={c: p for c, p in enrichment.prompts.items() if c in plan.classes})


def _check_found(segmenter: Segmenter, found: Any) -> None:
    """A wrong segmenter, not a bad image: stop the run once."""
    from .segment.result import Instances

    if not isinstance(found, Instances):
        raise SelfSegError(f"segmenter {segmenter.name!r}: expected Instances from segment() or segment_batch(), "
                           f"got {type(found).__name__}")


def _stop_if_device_lost(exc: Exception, device: str) -> None:
    """Raise a DeviceError when `exc` is an accelerator error (torch's AcceleratorError, torch 2.8 and newer)
    that left `device` unusable: an illegal memory access or a device-side assert poisons the process's
    context, and every later image would fail the same way. Most accelerator errors do not (a launch
    configuration one image's size makes invalid, memory the driver could not give), so the device is
    asked for one small computation: only when that fails too is it lost; otherwise the error is that
    image's or batch's alone."""
    import sys

    torch = sys.modules.get("torch")  # no torch loaded: no accelerator error
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is None or not isinstance(exc, accelerator_error) or _device_answers(torch, device):
        return
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    raise DeviceError(f"the device failed ({why}) and cannot run anything more in this process; the results "
                      f"written so far are kept, and a new run continues from them") from None


def _device_answers(torch: Any, device: str) -> bool:
    from .models.loading import resolve_device

    try:
        dev = resolve_device(device)
        if dev.type == "cpu":
            return True
        probe = torch.ones(1, device=dev) + 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return float(probe.cpu()[0]) == 2.0
    except Exception:
        return False


def _with_image_notes(result: Any, loaded: LoadedImage) -> Any:
    """`result` with what loading its image noted (frames left out, ...) first among its notes. Taggers and
    segmenters do not copy them, so they are added here, once: a note the result already holds (a
    TagResult passed back in to segment) is not repeated."""
    if loaded.notes:
        result.notes = list(loaded.notes) + [n for n in result.notes if n not in loaded.notes]
    return result


def write_outputs(item: BatchItem, out_dir: Path, stem: str, extra: dict[str, Any] | None = None) -> tuple[Path, ...]:
    """Write one successful item's files atomically; returns their paths, the JSON first. A tag result:
    <stem>.png (overlay) and <stem>.json; a `Segmentation`: what `Segmentation.save` writes. The JSON names
    the files written beside it (`files`) and carries `extra` (e.g. the run's key for the input)."""
    import json

    from .segment.result import Segmentation
    from .viz import overlay

    if item.result is None or item.loaded is None:
        raise ValueError(f"expected a successful BatchItem, got error {item.error!r}")
    image = item.loaded.image
    if isinstance(item.result, Segmentation):
        paths = item.result.save(out_dir, stem, image=image, original_size=item.loaded.size, extra=extra)
        return (paths["json"], *(p for k, p in paths.items() if k != "json"))
    out_dir.mkdir(parents=True, exist_ok=True)
    js, png = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    # PNG first: `--resume` looks for the JSON, so the JSON must be the last file to appear.
    atomic_write(png, lambda f: overlay(image, item.result).save(f, format="PNG"))
    record = {**item.result.to_dict(), **(extra or {}), "files": [png.name]}
    atomic_write(js, lambda f: f.write(json.dumps(record).encode("utf-8")))
    return js, png


def _as_inputs(images: Any) -> Iterable[ImageInput]:
    """A list of inputs as given; one input (a path, which iterating would split into characters, a PIL
    image, a numeric (H, W), (H, W, 1|3|4) or (1|3|4, H, W) array or tensor) as a list of one. Anything
    else iterable stays as it is: an (N, H, W[, C]) batch (a stack of 1, 3 or 4 grey images reads as one
    channels-first image: give those as a list), an array of paths."""
    import os

    shape, kind = getattr(images, "shape", None), getattr(getattr(images, "dtype", None), "kind", None)
    numeric = kind in ("b", "u", "i", "f") or (kind is None and shape is not None)  # a torch dtype has no kind
    # (H, W, C), or (C, H, W) as torchvision and transformers lay an image out (as transformers reads it).
    one_array = shape is not None and numeric and (len(shape) == 2 or (len(shape) == 3 and (
        shape[-1] in (1, 3, 4) or shape[0] in (1, 3, 4))))
    if isinstance(images, (str, bytes, os.PathLike)) or hasattr(images, "getexif") or one_array:
        return [images]
    return images
