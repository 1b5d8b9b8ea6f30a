"""Grounding DINO through transformers: tags -> boxes.

`GroundingDinoLocator.detect(image, tags)` prompts Grounding DINO with the tags ("dog . traffic light . ...")
and returns `Detections` whose labels are always exactly one of the tags. Three things the stock
transformers recipe (processor(text=...) -> model -> post_process_grounded_object_detection) does not do:

- **Any number of tags.** The text encoder reads at most `config.max_text_len` (256) tokens. Longer inputs are
  not truncated gracefully: GroundingDinoModel cuts the text to 256 tokens, but the detection head then masks
  its 256 logits with the uncut attention mask and crashes on the shape mismatch. So the tags are packed into
  prompt chunks of at most 256 tokens each (fewest chunks possible, no tag split across chunks), and the
  chunks of an image run as the rows of batched forwards (`max_chunks_per_forward` rows each, 4 by default)
  over an image preprocessed once.
- **Labels are tags, never phrases.** The stock post-processing labels a box with the decoded tokens whose
  probability exceeds `text_threshold`: that can merge tags ("dog cat"), cut one ("hydrant") or be empty. Here
  each box is scored against each tag of its chunk on the tag's own token span, and takes the best tag.
- **The image backbone runs once per batched forward**, not once per chunk (see `_shared_backbone`).

Weights come from `from_pretrained` (the Hugging Face cache first, the hub only when needed, a one-line
`ResourceMissingError` when neither has them) or from `tiny()`, a tiny random-init model built in code for
tests and install checks, whose boxes, scores and labels are meaningless.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..locate.result import Detections
from .loading import load_checkpoint, resolve_device, resolve_dtype
from .spec import TINY_MODEL, ModelSpec
from .tiny import build_tiny_grounding_dino

#: The locator's default checkpoint: Swin-B backbone, the stronger of the two released in transformers format.
DEFAULT_MODEL = "IDEA-Research/grounding-dino-base"
#: The Swin-T checkpoint: about half the compute of -base, somewhat weaker boxes.
TINY_CHECKPOINT = "IDEA-Research/grounding-dino-tiny"


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

    tags: indices into the locator's cleaned tag list; spans: [start, end) token positions of each tag's own
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


# ------------------------------------------------------------------------------------------------ locator
class GroundingDinoLocator:
    """Open-vocabulary boxes for a list of tags, from a transformers `GroundingDinoForObjectDetection`.

    max_chunks_per_forward: prompt chunks (rows) per batched forward; None: every chunk in one call. All
    chunks of an image share one preprocessed image and, by default, one backbone pass, but each row has its
    own encoder, text-image fusion and decoder activations: with the -base architecture at 800x1333 px in
    float32, peak memory grew by about 1.7 GB per row (measured on CPU, 1 vs 4 rows). The default, 4 rows
    (about 7 GB, half that in float16), holds some 250-500 one- or two-word tags per call.
    share_backbone: run the image backbone (Swin) once per forward and broadcast its features to every row
    instead of once per row. The rows hold the same image, so results are the same up to float rounding;
    for -base at 800x1333 px the backbone is about a third of a one-row forward (6.6 of 20 s on 2 CPU cores).
    """

    def __init__(self, model: Any, processor: Any, device: str | torch.device = "cpu",
                 dtype: torch.dtype | str = torch.float32, model_id: str = DEFAULT_MODEL,
                 is_tiny: bool = False, max_chunks_per_forward: int | None = 4,
                 share_backbone: bool = True) -> None:
        dtype = resolve_dtype(dtype)
        device = resolve_device(str(device))
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.device, self.dtype = device, dtype
        self.model_id, self.is_tiny = model_id, is_tiny
        if max_chunks_per_forward is not None and max_chunks_per_forward < 1:
            raise ValueError(f"max_chunks_per_forward must be >= 1 or None, got {max_chunks_per_forward}")
        self.max_chunks_per_forward = max_chunks_per_forward
        self.share_backbone = share_backbone
        self.forward_calls = 0  # batched model calls so far (tests and benchmarks read it)
        self.max_text_len = int(model.config.max_text_len)

        tok = self.tokenizer
        self._cls, self._sep, self._pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
        self._dot = tok.convert_tokens_to_ids(".")
        # The model splits its text into phrases at these ids (hard-coded in transformers as bert-base-uncased's
        # [CLS] [SEP] . ?). Our prompt must use the same ids, or every tag would attend to every other tag.
        self._delimiters = _phrase_delimiters(model)
        # Their text ('.', '?'), removed from tags: a tag "st. bernard" would otherwise be two phrases.
        self._delimiter_marks = [t for t in tok.convert_ids_to_tokens(sorted(self._delimiters))
                                 if t not in (tok.cls_token, tok.sep_token)]
        missing = {self._cls, self._sep, self._dot} - self._delimiters
        if missing:
            raise ValueError(f"the tokenizer's [CLS]/[SEP]/'.' ids {sorted(missing)} are not among the model's "
                             f"phrase delimiters {sorted(self._delimiters)}; tokenizer and model do not match")

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_MODEL, device: str | torch.device = "auto",
                        dtype: torch.dtype | str = "float32", cache_dir: str | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        **kwargs: Any) -> GroundingDinoLocator:
        """Load a checkpoint: a Hugging Face id (DEFAULT_MODEL, TINY_CHECKPOINT, ...) or a local folder
        written by save_pretrained. "tiny-random" builds the tiny random-init model (see `tiny`).

        The local cache is tried first, so a cached checkpoint costs no network round trip; a missing one
        raises ResourceMissingError naming `selfseg download`. kwargs go to the constructor.
        """
        return cls.from_spec(ModelSpec(model_id, device, dtype, cache_dir, local_files_only, revision), **kwargs)

    @classmethod
    def from_spec(cls, spec: ModelSpec, **kwargs: Any) -> GroundingDinoLocator:
        device, torch_dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
        if spec.is_tiny:
            return cls.tiny(device=device, dtype=torch_dtype, **kwargs)
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        def load(local_only: bool) -> tuple[Any, Any]:
            kw = spec.pretrained_kwargs(local_only)
            return (GroundingDinoForObjectDetection.from_pretrained(spec.id, dtype=torch_dtype, **kw),
                    AutoProcessor.from_pretrained(spec.id, **kw))

        model, processor = load_checkpoint("Grounding DINO", spec.id, load, spec.local_files_only)
        return cls(model, processor, device, torch_dtype, model_id=spec.id, **kwargs)

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device = "cpu",
             dtype: torch.dtype | str = torch.float32, **kwargs: Any) -> GroundingDinoLocator:
        """A tiny random-init Grounding DINO with a real processor, built in code (no download).

        For tests and install checks only: its boxes, scores and labels change with the image and the tags
        but are meaningless. Everything the locator relies on is real: the 256-token text limit, the BERT
        WordPiece tokenizer (multi-token words included), phrase delimiters at bert-base-uncased's ids, the
        image processor's resizing.
        """
        model, processor = build_tiny_grounding_dino(seed)
        return cls(model, processor, device, dtype, model_id=TINY_MODEL, is_tiny=True, **kwargs)

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
            for mark in self._delimiter_marks:
                text = text.replace(mark, " ")
            return " ".join(text.split())

        for n, tag in enumerate(tags):
            text = clean(tag)
            split += any(m in str(tag) for m in self._delimiter_marks)
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
            notes.append(f"{split} tag(s) held {' or '.join(map(repr, self._delimiter_marks))}, which split phrases "
                         f"for Grounding DINO; prompted without them")
        if blank:
            notes.append(f"{blank} blank tag(s) skipped")
        if duplicates:
            notes.append(f"{duplicates} duplicate tag(s) prompted once")

        # One tokenizer call for all tags. Counting each tag on its own is exact because BERT's
        # pre-tokenizer splits at whitespace and punctuation: "a . b ." tokenizes as a, ., b, . and the
        # prompt ids below are built by concatenation, so the counts are the ids the model sees.
        ids_per_tag = self.tokenizer(prompted, add_special_tokens=False)["input_ids"] if prompted else []
        # Scored span: the tag's own tokens when the phrase starts with the tag (same pre-tokenization).
        span_len = [None] * len(prompted)
        if phrases is not None and prompted:
            own = self.tokenizer(cleaned, add_special_tokens=False)["input_ids"]
            span_len = [len(o) if p.startswith(c) and list(i[:len(o)]) == list(o) else None
                        for p, c, i, o in zip(prompted, cleaned, ids_per_tag, own)]
        capacity = self.max_text_len - 2          # [CLS] and [SEP]
        longest = capacity - 1                    # a tag alone still needs its " ."
        kept_tags, kept_labels, kept_ids, kept_spans = [], [], [], []
        for text, label, ids, own_len in zip(prompted, labels, ids_per_tag, span_len):
            ids = [int(i) for i in ids]
            # Safety net: the text no longer holds the delimiter characters, but a tokenizer could still map
            # something else onto a delimiter id.
            clean_ids = [i for i in ids if i not in self._delimiters]
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

        chunks = []
        for rng in pack_greedy([len(ids) + 1 for ids in kept_ids], capacity):
            row, spans = [self._cls], []
            for t in rng:
                spans.append((len(row), len(row) + kept_spans[t]))
                row += kept_ids[t] + [self._dot]
            row.append(self._sep)
            chunks.append(PromptChunk(tuple(rng), tuple(spans), tuple(row)))
        return PromptPlan(kept_tags, kept_labels, chunks, notes)

    # ------------------------------------------------------------------------------------------ detect
    @torch.inference_mode()
    def detect(self, image: Any, tags: Sequence[str], box_threshold: float = 0.35,
               text_threshold: float = 0.25, phrases: Sequence[str] | None = None) -> Detections:
        """Boxes of the tags in one image, most confident first.

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
        passes: the number of prompt chunks (text rows); `forward_calls` counts batched model calls.
        phrases: optional prompt text per tag (see `plan`); labels are still the tags.
        """
        plan = self.plan(tags, phrases)
        notes = list(plan.notes)
        if self.is_tiny:
            notes.append("tiny random-init Grounding DINO: boxes, scores and labels are meaningless")
        if not plan.chunks:
            out = Detections.empty()
            out.notes = notes
            return out

        from PIL import Image

        if not isinstance(image, Image.Image):
            raise TypeError(f"detect expects a PIL image, got {type(image).__name__}")
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        # The image is preprocessed once; every row of every forward views the same tensor.
        pix = self.image_processor(images=image, return_tensors="pt")
        pixel_values = pix["pixel_values"].to(self.device, self.dtype)
        pixel_mask = pix["pixel_mask"].to(self.device) if "pixel_mask" in pix else None

        step = self.max_chunks_per_forward or len(plan.chunks)
        all_boxes, all_scores, all_labels = [], [], []
        for first in range(0, len(plan.chunks), step):
            chunks = plan.chunks[first:first + step]
            logits, boxes = self._forward(pixel_values, pixel_mask, chunks)
            for r, chunk in enumerate(chunks):
                scores, best = _tag_scores(logits[r], chunk)
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

    def _forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None,
                 chunks: Sequence[PromptChunk]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched forward: the chunks right-padded to the longest, the image repeated (as a view).

        Padding is safe: the text encoder attends only within a phrase (its mask is built from the delimiter
        ids, so a padding token sees only itself and no real token sees it) and the fusion layers and logits
        mask padding by attention_mask. Returns (rows, queries, longest) logits and (rows, queries, 4)
        cxcywh boxes, both relative to the image.
        """
        rows, longest = len(chunks), max(len(c.input_ids) for c in chunks)
        assert longest <= self.max_text_len, "a chunk exceeds the text limit; packing is broken"
        ids = torch.full((rows, longest), self._pad, dtype=torch.long)
        mask = torch.zeros((rows, longest), dtype=torch.long)
        for r, c in enumerate(chunks):
            ids[r, : len(c.input_ids)] = torch.tensor(c.input_ids)
            mask[r, : len(c.input_ids)] = 1
        inputs = dict(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            token_type_ids=torch.zeros_like(ids).to(self.device),
            pixel_values=pixel_values.expand(rows, *pixel_values.shape[1:]),
        )
        if pixel_mask is not None:
            inputs["pixel_mask"] = pixel_mask.expand(rows, *pixel_mask.shape[1:])
        with self._shared_backbone(rows):
            out = self.model(**inputs)
        self.forward_calls += 1
        return out.logits[:, :, :longest].float().sigmoid(), out.pred_boxes.float()

    @contextmanager
    def _shared_backbone(self, rows: int) -> Iterator[None]:
        """Within the block, the model's image backbone sees only the first row and its features are
        broadcast (expanded views, no copies) to all `rows`: every row holds the same image, and the backbone
        (Swin-B at 800x1333 px: a third of a forward) would otherwise run once per chunk. Hooks, not a
        replaced submodule, so the model's structure and state dict stay those of the checkpoint."""
        if not self.share_backbone or rows == 1:
            yield
            return
        backbone = self.model.model.backbone

        def first_row(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            return tuple(a[:1] if torch.is_tensor(a) else a for a in args), \
                {k: v[:1] if torch.is_tensor(v) else v for k, v in kwargs.items()}

        def broadcast(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            try:
                maps, pos = output
                return ([(f.expand(rows, *f.shape[1:]), m.expand(rows, *m.shape[1:])) for f, m in maps],
                        [p.expand(rows, *p.shape[1:]) for p in pos])
            except (TypeError, ValueError):
                raise RuntimeError("transformers changed Grounding DINO's backbone outputs; construct the "
                                   "locator with share_backbone=False and please report this") from None

        handles = [backbone.register_forward_pre_hook(first_row, with_kwargs=True),
                   backbone.register_forward_hook(broadcast, with_kwargs=True)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def _phrase_delimiters(model: Any) -> set[int]:
    """The token ids at which the model splits its text into phrases (a buffer of the model since
    transformers 5.23, selfseg's floor)."""
    ids = getattr(getattr(model, "model", None), "special_tokens", None)
    if ids is None:
        raise RuntimeError("expected Grounding DINO's phrase delimiter ids in model.model.special_tokens "
                           "(transformers >= 5.23), got none; upgrade transformers")
    return {int(i) for i in ids.tolist()}


def _tag_scores(probs: torch.Tensor, chunk: PromptChunk) -> tuple[torch.Tensor, torch.Tensor]:
    """(queries,) best tag score and (queries,) index of that tag within the chunk, from (queries, tokens)
    sigmoid probabilities: a tag's score is the max over its own token span."""
    positions = torch.cat([torch.arange(s, e) for s, e in chunk.spans]).to(probs.device)
    owner = torch.cat([torch.full((e - s,), j) for j, (s, e) in enumerate(chunk.spans)]).to(probs.device)
    per_tag = probs.new_full((probs.shape[0], len(chunk.spans)), -1.0)
    per_tag.scatter_reduce_(1, owner.expand(probs.shape[0], -1), probs[:, positions], reduce="amax")
    return per_tag.max(dim=1)  # torch.max returns the first maximal index: ties go to the earlier tag
