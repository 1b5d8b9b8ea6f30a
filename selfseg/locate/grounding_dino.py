"""Grounding DINO as a locator: class names -> boxes per image, each box labelled with exactly one name.

`GroundingDinoLocator.locate(images, classes, prompts)` is the stage: per image, the names become prompt
chunks, the chunks run through `GroundingDino` (selfseg/models/grounding_dino.py: loading and the batched
forward), every box is scored against the names of its chunk, and the boxes are clipped and filtered
(area, NMS, top-k: selfseg/locate/boxes.py). `detect(image, tags)` is the raw step for one PIL image. Three
things the stock transformers recipe (processor(text=...) -> model -> post_process_grounded_object_detection)
does not do:

- **Any number of tags.** The text encoder reads at most `config.max_text_len` (256) tokens. Longer inputs are
  not truncated gracefully: GroundingDinoModel cuts the text to 256 tokens, but the detection head then masks
  its 256 logits with the uncut attention mask and crashes on the shape mismatch. So the tags are packed into
  prompt chunks of at most 256 tokens each (fewest chunks possible, no tag split across chunks), and the
  chunks of an image run as the rows of batched forwards (`max_chunks_per_forward` rows each, 4 by default)
  over an image preprocessed once.
- **Labels are tags, never phrases.** The stock post-processing labels a box with the decoded tokens whose
  probability exceeds `text_threshold`: that can merge tags ("dog cat"), cut one ("hydrant") or be empty. Here
  each box is scored against each tag of its chunk on the tag's own token span, and takes the best tag.
- **The image backbone runs once per batched forward**, not once per chunk (`GroundingDino.share_backbone`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..errors import check
from ..io import LoadedImage
from ..models.spec import ModelConfig, ModelSpec
from .base import LOCATORS
from .boxes import filter_detections
from .result import Detections

if TYPE_CHECKING:
    import torch

    from ..models.grounding_dino import GroundingDino

# torch and the model load when a locator is built or run, not when its settings are read.

# ------------------------------------------------------------------------------------------------ packing
def pack_greedy(weights: Sequence[int], capacity: int) -> list[range]:
    """Split items 0..n-1, in order, into the fewest contiguous chunks whose weights sum to <= capacity.

    Greedy (close a chunk only when the next item does not fit) is optimal for contiguous chunks.
    Exchange argument: let g_k and o_k be the index one past the last item of the k-th chunk of the greedy
    packing and of any valid packing. g_1 >= o_1 since greedy's first chunk is the longest prefix that fits.
    If g_k >= o_k, the optimum's chunk k+1 holds items o_k..o_{k+1}-1 and fits; greedy's chunk k+1 starts at
    g_k >= o_k, so the items g_k..o_{k+1}-1 are a subset of it and fit too (weights are >= 0), and greedy,
    taking every item that fits, reaches g_{k+1} >= o_{k+1}. By induction greedy has placed every item once
    the optimum has, so it uses no more chunks. Every weight must be <= capacity (callers truncate first).
    """
    chunks: list[range] = []
    start, used = 0, 0
    for i, w in enumerate(weights):
        if w > capacity:
            raise ValueError(f"item {i} weighs {w}, more than the capacity {capacity}")
        if used + w > capacity:
            chunks.append(range(start, i))
            start, used = i, 0
        used += w
    if start < len(weights):
        chunks.append(range(start, len(weights)))
    return chunks


@dataclass(frozen=True)
class PromptChunk:
    """One row of the text batch: `[CLS] tag . tag . ... [SEP]` as token ids.

    tags: indices into the plan's cleaned tag list; spans: [start, end) token positions of each tag's own
    tokens in input_ids (the " ." after it excluded).
    """

    tags: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    input_ids: tuple[int, ...]


@dataclass(frozen=True)
class PromptPlan:
    """Tags as prompted (cleaned, deduplicated), where they came from, and their chunks."""

    tags: list[str]           # cleaned prompt text of each kept tag ("traffic light"), or of its phrase
    labels: list[str]         # the caller's spelling of each kept tag (first of its duplicates)
    chunks: list[PromptChunk]
    notes: list[str]


def _inference_mode(method: Callable) -> Callable:
    """torch.inference_mode around `method`, with torch imported only when it runs."""
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return method(*args, **kwargs)

    return run


def tag_scores(probs: torch.Tensor, chunk: PromptChunk) -> tuple[torch.Tensor, torch.Tensor]:
    """(queries,) best tag score and (queries,) index of that tag within the chunk, from (queries, tokens)
    sigmoid probabilities: a tag's score is the max over its own token span."""
    import torch

    positions = torch.cat([torch.arange(s, e) for s, e in chunk.spans]).to(probs.device)
    owner = torch.cat([torch.full((e - s,), j) for j, (s, e) in enumerate(chunk.spans)]).to(probs.device)
    per_tag = probs.new_full((probs.shape[0], len(chunk.spans)), -1.0)
    per_tag.scatter_reduce_(1, owner.expand(probs.shape[0], -1), probs[:, positions], reduce="amax")
    return per_tag.max(dim=1)  # torch.max returns the first maximal index: ties go to the earlier tag


# ------------------------------------------------------------------------------------------------ locator
@dataclass(kw_only=True)  # keyword-only: its fields sit beside the mask model's in one section
class GroundingDinoConfig:
    """The Grounding DINO locator's settings (in a config file: the `segment.grounded_sam2` section)."""

    # Grounding DINO checkpoint (boxes per tag); "IDEA-Research/grounding-dino-tiny" is lighter.
    # "tiny-random" builds a tiny random-init model in code (outputs meaningless).
    detector: str = "IDEA-Research/grounding-dino-base"
    # Grounding DINO's box confidence threshold: a box's best class must score above it. The box's score
    # is the max over that class's own tokens, where the stock post-processing takes the max over every
    # token of the prompt ([CLS], the " ." separators and other tags included): never higher, so the same
    # threshold (Grounded-SAM's 0.35) keeps the same boxes or fewer.
    box_threshold: float = 0.35
    # Grounding DINO's per-token text threshold: the chosen class needs a token scoring above it.
    text_threshold: float = 0.25
    # Class-agnostic NMS: a box overlapping a better one by more than this IoU is dropped.
    nms_iou: float = 0.5
    # Boxes covering more than this fraction of the image are dropped (scene words grab the whole frame).
    max_box_area: float = 0.95
    # Keep at most this many boxes per image, best first.
    max_detections: int = 100

    def __post_init__(self) -> None:
        check(all(0 <= t <= 1 for t in (self.box_threshold, self.text_threshold, self.nms_iou)),
              "box_threshold / text_threshold / nms_iou", "values in [0, 1]",
              (self.box_threshold, self.text_threshold, self.nms_iou))
        check(0 < self.max_box_area <= 1, "max_box_area", "a fraction in (0, 1]", self.max_box_area)
        check(self.max_detections >= 0, "max_detections", "an integer >= 0", self.max_detections)


class GroundingDinoLocator:
    """Open-vocabulary boxes for a list of tags, from a `GroundingDino`.

    max_chunks_per_forward: prompt chunks (rows) per batched forward; None: every chunk in one call. All
    chunks of an image share one preprocessed image and, by default, one backbone pass, but each row has its
    own encoder, text-image fusion and decoder activations: with the -base architecture at 800x1333 px in
    float32, peak memory grew by about 1.7 GB per row (measured on CPU, 1 vs 4 rows). The default, 4 rows
    (about 7 GB, half that in float16), holds some 250-500 one- or two-word tags per call.
    box_threshold, text_threshold: `locate`'s thresholds (see `detect`). nms_iou, max_box_area (a fraction of
    the image), max_detections: `locate`'s filter of the raw boxes (see `filter_detections`).
    """

    name = "grounding_dino"

    def __init__(self, detector: GroundingDino, max_chunks_per_forward: int | None = 4,
                 box_threshold: float = 0.35, text_threshold: float = 0.25, nms_iou: float = 0.5,
                 max_box_area: float = 0.95, max_detections: int = 100) -> None:
        if max_chunks_per_forward is not None and max_chunks_per_forward < 1:
            raise ValueError(f"max_chunks_per_forward must be >= 1 or None, got {max_chunks_per_forward}")
        self.detector = detector
        self.max_chunks_per_forward = max_chunks_per_forward
        self.box_threshold, self.text_threshold = box_threshold, text_threshold
        self.nms_iou, self.max_box_area, self.max_detections = nms_iou, max_box_area, max_detections

    @property
    def is_tiny(self) -> bool:
        return self.detector.is_tiny

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_spec(cls, spec: ModelSpec, share_backbone: bool = True, **kwargs: Any) -> GroundingDinoLocator:
        """The detector of `spec` ("tiny-random": the tiny random-init model); kwargs go to the constructor."""
        from ..models.grounding_dino import GroundingDino

        return cls(GroundingDino.from_spec(spec, share_backbone=share_backbone), **kwargs)

    @classmethod
    def from_pretrained(cls, model_id: str | None = None, device: str | torch.device = "auto",
                        dtype: torch.dtype | str = "float32", cache_dir: str | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        share_backbone: bool = True, **kwargs: Any) -> GroundingDinoLocator:
        """A checkpoint (see `GroundingDino.from_pretrained`; None: its default); kwargs go to the constructor."""
        from ..models.grounding_dino import DEFAULT_MODEL

        model_id = DEFAULT_MODEL if model_id is None else model_id
        spec = ModelSpec(model_id, device, dtype, cache_dir, local_files_only, revision)
        return cls.from_spec(spec, share_backbone=share_backbone, **kwargs)

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype | str = "float32",
             share_backbone: bool = True, **kwargs: Any) -> GroundingDinoLocator:
        """Over the tiny random-init Grounding DINO (`GroundingDino.tiny`): boxes, scores and labels change
        with the image and the tags but are meaningless. kwargs go to the constructor."""
        from ..models.grounding_dino import GroundingDino

        return cls(GroundingDino.tiny(seed, device, dtype, share_backbone=share_backbone), **kwargs)

    # ------------------------------------------------------------------------------------------ prompt
    def plan(self, tags: Sequence[str], phrases: Sequence[str] | None = None) -> PromptPlan:
        """Clean, deduplicate, tokenize and pack the tags into prompt chunks (no model call).

        A tag is lower-cased, the characters the model reads as phrase delimiters ('.', '?') are replaced by
        spaces (they would split it in two phrases), and its whitespace is collapsed; tags equal after that
        are prompted once (the label is the first spelling). A tag that alone exceeds one prompt is truncated
        to its first tokens, with a note. A single string is one tag.

        phrases: optional text to prompt for each tag instead of the tag (prompt enrichment: "dog, small
        brown dog"), cleaned the same way. The label stays the tag, and when the phrase starts with the tag
        the box is scored on the tag's own tokens only: the description shapes the text features, but a
        description that mentions grass cannot make a box of grass a "dog".
        """
        det = self.detector
        if isinstance(tags, str):  # one tag, not its characters
            tags = [tags]
        if phrases is not None and len(phrases) != len(tags):
            raise ValueError(f"expected one phrase per tag, got {len(phrases)} phrases for {len(tags)} tags")
        notes: list[str] = []
        cleaned: list[str] = []
        prompted: list[str] = []
        labels: list[str] = []
        seen: dict[str, int] = {}
        blank = duplicates = 0
        split = 0

        def clean(raw: str) -> str:
            text = str(raw).lower()
            for mark in det.delimiter_marks:
                text = text.replace(mark, " ")
            return " ".join(text.split())

        for n, tag in enumerate(tags):
            text = clean(tag)
            split += any(m in str(tag) for m in det.delimiter_marks)
            if not text:
                blank += 1
            elif text in seen:
                duplicates += 1
            else:
                seen[text] = len(cleaned)
                cleaned.append(text)
                prompted.append((clean(phrases[n]) or text) if phrases is not None else text)
                labels.append(str(tag))
        if split:
            notes.append(f"{split} tag(s) held {' or '.join(map(repr, det.delimiter_marks))}, which split phrases "
                         f"for Grounding DINO; prompted without them")
        if blank:
            notes.append(f"{blank} blank tag(s) skipped")
        if duplicates:
            notes.append(f"{duplicates} duplicate tag(s) prompted once")

        # One tokenizer call for all tags. Counting each tag on its own is exact because BERT's
        # pre-tokenizer splits at whitespace and punctuation: "a . b ." tokenizes as a, ., b, . and the
        # prompt ids below are built by concatenation, so the counts are the ids the model sees.
        ids_per_tag = det.tokenizer(prompted, add_special_tokens=False)["input_ids"] if prompted else []
        # Scored span: the tag's own tokens when the phrase starts with the tag (same pre-tokenization).
        span_len = [None] * len(prompted)
        if phrases is not None and prompted:
            own = det.tokenizer(cleaned, add_special_tokens=False)["input_ids"]
            span_len = [len(o) if p.startswith(c) and list(i[:len(o)]) == list(o) else None
                        for p, c, i, o in zip(prompted, cleaned, ids_per_tag, own)]
        capacity = det.max_text_len - 2           # [CLS] and [SEP]
        longest = capacity - 1                    # a tag alone still needs its " ."
        kept_tags, kept_labels, kept_ids, kept_spans = [], [], [], []
        same_tokens: list[str] = []
        seen_ids: set[tuple[int, ...]] = set()
        for text, label, ids, own_len in zip(prompted, labels, ids_per_tag, span_len):
            ids = [int(i) for i in ids]
            # Text that differs only where the tokenizer normalises ("résumé", "resume" for an uncased BERT)
            # reads the same to the model: every box would tie and go to the first, so the second never could.
            if tuple(ids) in seen_ids:
                same_tokens.append(label)
                continue
            seen_ids.add(tuple(ids))
            # Safety net: the text no longer holds the delimiter characters, but a tokenizer could still map
            # something else onto a delimiter id.
            clean_ids = [i for i in ids if i not in det.delimiters]
            if len(clean_ids) < len(ids):
                notes.append(f"tag {label!r}: tokens that split phrases for Grounding DINO dropped from its prompt")
                own_len = None
            if not clean_ids:
                notes.append(f"tag {label!r} has no tokens left; skipped")
                continue
            if len(clean_ids) > longest:
                msg = (f"tag {label[:60]!r}{'...' if len(label) > 60 else ''} is {len(clean_ids)} tokens, more than "
                       f"one Grounding DINO prompt holds ({longest} + ' .'); truncated to its first {longest}")
                notes.append(msg)  # about one image's tag: its result says so, the run's stderr does not
                clean_ids = clean_ids[:longest]
            kept_tags.append(text)
            kept_labels.append(label)
            kept_ids.append(clean_ids)
            kept_spans.append(min(own_len or len(clean_ids), len(clean_ids)))

        if same_tokens:
            notes.append(f"{len(same_tokens)} tag(s) that tokenize as an earlier tag does prompted once "
                         f"({', '.join(map(repr, same_tokens[:3]))}{', ...' if len(same_tokens) > 3 else ''})")
        chunks = []
        for rng in pack_greedy([len(ids) + 1 for ids in kept_ids], capacity):
            row, spans = [det.cls_id], []
            for t in rng:
                spans.append((len(row), len(row) + kept_spans[t]))
                row += kept_ids[t] + [det.dot_id]
            row.append(det.sep_id)
            chunks.append(PromptChunk(tuple(rng), tuple(spans), tuple(row)))
        return PromptPlan(kept_tags, kept_labels, chunks, notes)

    # ------------------------------------------------------------------------------------------ detect
    @_inference_mode
    def detect(self, image: Any, tags: Sequence[str], box_threshold: float = 0.35,
               text_threshold: float = 0.25, phrases: Sequence[str] | None = None) -> Detections:
        """Boxes of the tags in one PIL image, most confident first (raw: no area filter, no NMS).

        Label rule: each of Grounding DINO's query boxes in a chunk's forward is scored against every tag of
        that chunk by the MAX sigmoid probability over the tag's own tokens (the " ." and [CLS]/[SEP] never
        count); the box takes the best tag (ties: the earlier tag) and that tag's score. Max, as in
        Grounding DINO's own box score (a max over tokens), so a one-word tag and a three-word tag are judged
        alike, and a box that lights up only "hydrant" of "fire hydrant" still counts as a fire hydrant.
        A box is kept when that score exceeds box_threshold and text_threshold: the second is Grounding DINO's
        rule for a token to join the box's phrase, i.e. the chosen tag must have at least one such token
        (implied whenever text_threshold <= box_threshold, as with the defaults).

        Boxes: xyxy pixels of `image`, clipped to it. Every chunk is its own query set, so one object may be
        boxed once per chunk (under the same or another tag); no cross-chunk suppression is done here.
        passes: the number of prompt chunks (text rows); the detector's `forward_calls` counts batched calls.
        phrases: optional prompt text per tag (see `plan`); labels are still the tags.
        """
        import torch

        plan = self.plan(tags, phrases)
        notes = list(plan.notes)
        if self.is_tiny:
            notes.append("tiny random-init Grounding DINO: boxes, scores and labels are meaningless")
        if not plan.chunks:
            out = Detections.empty()
            out.notes = notes
            return out

        if not isinstance(image, Image.Image):
            raise TypeError(f"detect expects a PIL image, got {type(image).__name__}")
        width, height = image.size
        # The image is preprocessed once; every row of every forward views the same tensor.
        pixel_values, pixel_mask = self.detector.preprocess(image)

        step = self.max_chunks_per_forward or len(plan.chunks)
        all_boxes, all_scores, all_labels = [], [], []
        for first in range(0, len(plan.chunks), step):
            chunks = plan.chunks[first:first + step]
            probs, boxes = self.detector.forward(pixel_values, pixel_mask, [c.input_ids for c in chunks])
            for r, chunk in enumerate(chunks):
                scores, best = tag_scores(probs[r], chunk)
                keep = (scores > box_threshold) & (scores > text_threshold)
                all_boxes.append(boxes[r][keep])
                all_scores.append(scores[keep])
                all_labels += [plan.labels[chunk.tags[j]] for j in best[keep].tolist()]

        boxes = torch.cat(all_boxes).float()
        scores = torch.cat(all_scores).float()
        cx, cy, w, h = boxes.unbind(-1)
        xyxy = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height,
                            (cx + w / 2) * width, (cy + h / 2) * height], -1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        return Detections(xyxy[order].cpu().numpy(), scores[order].cpu().numpy(),
                          [all_labels[i] for i in order], passes=len(plan.chunks), notes=notes)

    # ------------------------------------------------------------------------------------------ locate
    def locate(self, images: Sequence[LoadedImage], classes: Sequence[Sequence[str]],
               prompts: Sequence[Mapping[str, str] | None]) -> list[Detections]:
        """Per image: its classes' boxes in pixels of the loaded image, with `detect`'s labels, scores, notes
        and passes, after the area filter, class-agnostic NMS and top `max_detections` (`filter_detections`).
        prompts: per image, the phrase to prompt for a class instead of the class (see `plan`); labels stay
        the classes. An image with no classes gets empty detections and no model call.

        Each image runs its own forward(s), never rows of a forward shared with another image: images of
        different sizes would have to be padded to a common size, which changes the model's input and so
        one image's boxes would depend on its batch neighbours (selfseg guarantees an image's result does
        not depend on its batch); and each image has its own prompt chunks anyway.
        """
        if not len(images) == len(classes) == len(prompts):
            raise ValueError(f"expected one class list and one prompt map per image, got {len(images)} images, "
                             f"{len(classes)} class lists and {len(prompts)} prompt maps")
        return [self._locate_one(im, c, p) for im, c, p in zip(images, classes, prompts)]

    def _locate_one(self, image: LoadedImage, classes: Sequence[str],
                    prompts: Mapping[str, str] | None) -> Detections:
        if not classes:
            return Detections.empty()
        h, w = image.image.height, image.image.width
        det = self.detect(image.image, classes, box_threshold=self.box_threshold,
                          text_threshold=self.text_threshold,
                          phrases=[prompts.get(c, c) for c in classes] if prompts else None)
        return filter_detections(det, (h, w), nms_iou=self.nms_iou, max_area_fraction=self.max_box_area,
                                 max_detections=self.max_detections)


@LOCATORS.register("grounding_dino", config=GroundingDinoConfig, section="segment.grounded_sam2",
                   checkpoints=lambda block, models: [block.detector])
def grounding_dino(config: GroundingDinoConfig, models: ModelConfig) -> GroundingDinoLocator:
    """The locator of a config block, on the shared model section's device and dtype."""
    return GroundingDinoLocator.from_spec(
        models.spec(config.detector), box_threshold=config.box_threshold, text_threshold=config.text_threshold,
        nms_iou=config.nms_iou, max_box_area=config.max_box_area, max_detections=config.max_detections)
