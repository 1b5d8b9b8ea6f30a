"""BLIP through transformers: the only code in the BCC tagger that touches weights.

Why transformers and not salesforce-lavis (the authors' choice): lavis 1.0.2 pins transformers<4.27,
timm==0.4.12 and an old OpenCV, so it cannot live beside transformers 5, which selfseg needs for
Grounding DINO and SAM2. The same BLIP checkpoints are published for transformers
(Salesforce/blip-image-captioning-large / -base).
"""
from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

import torch

from ..errors import ConfigError
from ..streams import stream_uniforms
from .loading import check_model_type, complete_weights, load_checkpoint, model_call, resolve_device, resolve_dtype
from .spec import PAPER_MODEL, TINY_MODEL, CaptionSampling, ModelSpec
from .tiny import build_tiny_blip


class CaptionSettings(Protocol):
    """What a caption call reads from its settings (`selfseg.config.CaptioningConfig` is one)."""

    prompt: str

    def sampling(self) -> CaptionSampling: ...


class BlipCaptioner:
    """A BLIP captioning model split in its two halves: `encode` images, `caption` token subsets."""

    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype, is_tiny: bool,
                 model_id: str) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.is_tiny = is_tiny
        self.model_id = model_id
        self.patch_size = int(model.config.vision_config.patch_size)
        self.generate_calls = 0  # how many batched generate calls ran (tests and benchmarks read it)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_spec(cls, spec: ModelSpec) -> BlipCaptioner:
        device, dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
        if spec.is_tiny:
            model, processor = build_tiny_blip()
            return cls(model, processor, device, dtype, is_tiny=True, model_id=TINY_MODEL)
        from transformers import BlipForConditionalGeneration, BlipProcessor

        check_model_type("BLIP", spec, {"blip"}, f"a BLIP captioning checkpoint such as {PAPER_MODEL!r}")

        def load(local_only: bool) -> tuple[Any, Any]:
            kw = spec.pretrained_kwargs(local_only)
            return (complete_weights("BLIP captioning", spec.id, BlipForConditionalGeneration.from_pretrained(
                        spec.id, output_loading_info=True, **kw)),
                    BlipProcessor.from_pretrained(spec.id, **kw))

        model, processor = load_checkpoint("BLIP", spec, load)
        return cls(model, processor, device, dtype, is_tiny=False, model_id=spec.name)

    @property
    def native_size(self) -> int:
        """The side BLIP's own processor resizes to: the checkpoint's (384 for the published captioners)."""
        size = getattr(self.processor.image_processor, "size", None)
        height = size["height"] if size is not None and "height" in size else None
        return int(height or self.model.config.vision_config.image_size)

    # ------------------------------------------------------------------------------------------ encoder
    @model_call
    def encode(self, images: Sequence[Any], size: int) -> torch.Tensor:
        """(B, 1 + (size/16)^2, D) vision tokens (CLS first) for RGB PIL images squashed to size x size."""
        pix = self.processor.image_processor(
            list(images), size={"height": size, "width": size}, return_tensors="pt"
        )["pixel_values"].to(self.device, self.dtype)
        with self._lock:  # never while encode_subsets has the encoder's attention swapped
            out = self.model.vision_model(pixel_values=pix, interpolate_pos_encoding=True)
        return out.last_hidden_state

    @model_call
    def encode_subsets(self, images: Sequence[Any], size: int,
                       subsets: Sequence[Sequence[torch.Tensor]]) -> list[list[torch.Tensor]]:
        """Each subset of an image's patches encoded on its own: per image, per subset of patch indices (into
        the size x size grid, raster order), the (n + 1, D) vision tokens of [CLS] + those n patch embeddings
        with the position embeddings of places 0..n (the first n patch places, not the patches' own), as
        BBoost's "local" and "concat" attention modes encode a cluster.

        One forward for all subsets of all images: each image's subsets packed into one sequence, every
        attention layer masked to within a subset (transformers' BLIP vision attention takes no mask, so
        `_block_attention` swaps it for the same computation plus the mask during the call). Equal to each
        subset through `vision_model.encoder` alone, within float rounding."""
        vm = self.model.vision_model
        pix = self.processor.image_processor(
            list(images), size={"height": size, "width": size}, return_tensors="pt"
        )["pixel_values"].to(self.device, self.dtype)
        emb = vm.embeddings
        patches = emb.patch_embedding(pix).flatten(2).transpose(1, 2)  # (B, N, D), as the stock embeddings
        cls = emb.class_embedding.to(patches.dtype).reshape(1, -1)
        places = emb.interpolate_pos_encoding(torch.cat([cls.expand(len(images), 1, -1), patches], 1), size,
                                              size)[0].to(patches.dtype)  # (1 + N, D)
        seqs, lengths = [], []
        for b, subs in enumerate(subsets):
            parts = [torch.cat([cls, patches[b, idx.to(patches.device)]]) + places[: len(idx) + 1] for idx in subs]
            seqs.append(torch.cat(parts) if parts else patches.new_zeros((0, patches.shape[-1])))
            lengths.append([len(p) for p in parts])
        width = max((len(q) for q in seqs), default=0)
        if width == 0:
            return [[] for _ in subsets]
        packed = patches.new_zeros((len(seqs), width, patches.shape[-1]))
        block = torch.full((len(seqs), width), -1, dtype=torch.long, device=patches.device)
        for b, (q, ls) in enumerate(zip(seqs, lengths)):
            packed[b, : len(q)] = q
            block[b, : len(q)] = torch.repeat_interleave(torch.arange(len(ls), device=patches.device),
                                                         torch.tensor(ls, device=patches.device))
            block[b, len(q):] = len(ls)  # padding: a block of its own, so no row is left without a key
        allowed = block[:, :, None] == block[:, None, :]
        mask = torch.zeros(allowed.shape, dtype=packed.dtype, device=packed.device)
        mask.masked_fill_(~allowed, torch.finfo(packed.dtype).min)
        with self._lock, _block_attention(vm.encoder, mask[:, None]):  # the swap is shared state, as caption's
            hidden = vm.encoder(inputs_embeds=packed).last_hidden_state
        hidden = vm.post_layernorm(hidden)
        out = []
        for b, ls in enumerate(lengths):
            starts = [0, *torch.tensor(ls).cumsum(0).tolist()]
            out.append([hidden[b, starts[k]: starts[k + 1]] for k in range(len(ls))])
        return out

    # ------------------------------------------------------------------------------------------ decoder
    def attention_state_bytes(self, distinct_tokens: int, rows: int, positions: int) -> int:
        """Bytes one caption call keeps for attention: each distinct set's cross-attention keys and values
        (every layer, projected once per set) plus every row's self-attention cache over `positions`
        (prompt + new tokens, see `caption_positions`)."""
        t = self.model.config.text_config
        per_token = t.num_hidden_layers * 2 * t.hidden_size * torch.finfo(self.dtype).bits // 8
        return (distinct_tokens + rows * positions) * per_token

    def caption_positions(self, settings: CaptionSettings) -> int:
        """Longest caption sequence of these settings: the prompt's tokens plus the most new tokens."""
        return int(self.prompt_ids(settings.prompt).shape[1]) + self.new_token_limits(settings)[1]

    def prompt_ids(self, prompt: str) -> torch.Tensor:
        """The captioning prompt as BLIP's generate() feeds it: [BOS] + prompt tokens, no [SEP]."""
        ids = self.processor.tokenizer(prompt, return_tensors="pt").input_ids
        ids[:, 0] = self.model.config.text_config.bos_token_id
        return ids[:, :-1]

    def new_token_limits(self, settings: CaptionSettings) -> tuple[int, int]:
        """(min_new_tokens, max_new_tokens) of a caption call with these settings and their prompt."""
        prompt_tokens = int(self.prompt_ids(settings.prompt).shape[1])
        sampling = settings.sampling()
        lo, hi = sampling.new_token_limits(prompt_tokens)
        if hi < 1:
            raise ConfigError(f"captioning.max_length: expected room for new tokens after the {prompt_tokens}-token "
                              f"prompt, got max_length {sampling.max_length} counting the prompt")
        return lo, hi

    @model_call
    def caption(self, token_sets: Sequence[torch.Tensor], settings: CaptionSettings, seed: int,
                streams: Sequence[Sequence[int]] | None = None) -> list[str]:
        """One sampled caption per token set, all in ONE generate call.

        token_sets: (n_i, D) encoder tokens each; a row repeated for several caption cycles passes the same
        tensor object again, so its keys and values are projected once. Each caption attends to exactly its
        own set's tokens. A set with no tokens gets the empty caption; non-finite tokens are a ValueError.
        streams: per row, the name of its random stream (non-negative ints, e.g. image key, cycle, cluster);
        a row's caption then depends on the seed, its name and its tokens only, not on the other rows.
        Default: the row's index in this call.
        """
        _check_sets(token_sets, allow_empty=True)
        names = _stream_names(streams, len(token_sets))
        live = [i for i, t in enumerate(token_sets) if int(t.shape[0]) > 0]
        texts = [""] * len(token_sets)
        if not live:
            return texts
        ids = self.prompt_ids(settings.prompt)
        out = self._generate([token_sets[i] for i in live], settings, seed, {}, [names[i] for i in live])
        # Spaces tidied ("a cat's face", not "a cat ' s face"), as transformers 4's decode did by default for
        # the released code and LAVIS; transformers 5 leaves them unless asked, and BLIP's config does not ask.
        decoded = self.processor.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True,
                                                        clean_up_tokenization_spaces=True)
        for i, text in zip(live, decoded):
            texts[i] = text.strip()
        return texts

    @model_call
    def generate(self, token_sets: Sequence[torch.Tensor], settings: CaptionSettings, seed: int,
                 streams: Sequence[Sequence[int]] | None = None, **generate_kwargs: Any) -> Any:
        """BLIP's text decoder over `token_sets` (each non-empty), one row per set, in ONE generate call:
        the prompt ids + generated ids, or transformers' output object when `generate_kwargs` ask for one
        (`return_dict_in_generate=True, output_logits=True`; `do_sample=False` for greedy decoding).
        Cross-attention weights are not returned (`output_attentions` gives none for it). When sampling,
        `output_scores` holds the sampler's pick (0 for the drawn token, -inf elsewhere); `output_logits` the
        model's own logits."""
        _check_sets(token_sets, allow_empty=False)
        return self._generate(token_sets, settings, seed, generate_kwargs, _stream_names(streams, len(token_sets)))

    def sampling_processors(self, settings: CaptionSettings, seed: int, streams: Sequence[Sequence[int]],
                            prompt_length: int, max_new_tokens: int | None = None) -> list[Any]:
        """The logits processors that sample one token per row from its own stream, for a generate call with
        `do_sample=False`: transformers' top-k and top-p warpers (in the order its sampling applies them),
        then `StreamSampler`. Passed to the stock decoder, they reproduce `caption` exactly (tests do)."""
        from transformers.generation import TopKLogitsWarper, TopPLogitsWarper

        sampling = settings.sampling()
        warpers: list[Any] = []
        if sampling.top_k:
            warpers.append(TopKLogitsWarper(top_k=sampling.top_k))
        if sampling.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=sampling.top_p))
        steps = max_new_tokens or self.new_token_limits(settings)[1]
        # MPS has no float64: the pick is made on the CPU there.
        where = self.device if self.device.type != "mps" else torch.device("cpu")
        draws = torch.as_tensor(stream_uniforms(seed, streams, steps), device=where)
        return warpers + [StreamSampler(draws, prompt_length)]

    def _generate(self, token_sets: Sequence[torch.Tensor], settings: CaptionSettings, seed: int,
                  generate_kwargs: dict[str, Any], streams: Sequence[Sequence[int]]) -> Any:
        for key in ("num_beams", "num_return_sequences"):
            if generate_kwargs.get(key, 1) != 1:
                raise ValueError(f"{key}: expected 1 (one row per token set), got {generate_kwargs[key]!r}")
        sampling = settings.sampling()
        sets, row_set = _distinct(token_sets)
        rows = len(token_sets)
        ids = self.prompt_ids(settings.prompt).to(self.device).repeat(rows, 1)
        min_new, max_new = self.new_token_limits(settings)
        cfg = self.model.config.text_config
        kwargs: dict[str, Any] = dict(
            do_sample=True, min_new_tokens=min_new, max_new_tokens=max_new,
            repetition_penalty=sampling.repetition_penalty, eos_token_id=cfg.sep_token_id,
            pad_token_id=cfg.pad_token_id,
        )
        kwargs.update(generate_kwargs)
        if kwargs.pop("do_sample"):
            overridden = sorted({"top_k", "top_p", "temperature", "min_p", "typical_p"} & set(generate_kwargs))
            if overridden:
                raise ValueError(f"{', '.join(overridden)}: set them in the caption settings (captioning.*); "
                                 f"sampling draws from the settings' warpers, which generate(**kwargs) would not reach")
            # Sampling without torch's global generator: each row draws from its own stream (see
            # StreamSampler), picked by processors after the stock ones; generate then takes that pick greedily.
            own = self.sampling_processors(settings, seed, streams, int(ids.shape[1]), kwargs["max_new_tokens"])
            from transformers.generation import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(list(kwargs.get("logits_processor") or []) + own)
        kwargs["do_sample"] = False
        dim = int(sets[0].shape[1])
        # One call at a time per model: the cross-attention swap below is shared state.
        with self._lock, _per_set_cross_attention(self.model.text_decoder, sets, row_set, self.device, self.dtype):
            out = self.model.text_decoder.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                # The decoder layers call their cross-attention only when this is given; the per-set
                # attention installed above reads its own keys and values, so a broadcast stub suffices.
                encoder_hidden_states=torch.zeros(1, 1, dim, device=self.device, dtype=self.dtype).expand(rows, 1, dim),
                **kwargs,
            )
        self.generate_calls += 1
        return out


@contextmanager
def _block_attention(encoder: Any, mask: torch.Tensor) -> Iterator[None]:
    """During the block: every self-attention layer of a BLIP vision encoder computes exactly what
    `BlipAttention.forward` does, with the additive `mask` (B, 1, L, L) added to the scaled scores before the
    softmax."""

    def masked(attn: Any) -> Any:
        def forward(hidden_states: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            bsz, length, dim = hidden_states.shape
            qkv = attn.qkv(hidden_states).reshape(bsz, length, 3, attn.num_heads, dim // attn.num_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * attn.scale + mask, dim=-1)
            context = torch.matmul(attn.dropout(probs), v).permute(0, 2, 1, 3).reshape(bsz, length, dim)
            return attn.projection(context), probs

        return forward

    layers = [layer.self_attn for layer in encoder.layers]
    for attn in layers:
        attn.forward = masked(attn)
    try:
        yield
    finally:
        for attn in layers:
            del attn.forward


class StreamSampler:
    """A logits processor that samples each row's next token by inverse CDF from the row's own pre-drawn
    uniforms (`draws[row, step]`), and returns scores that keep only that token.

    Last in the processor list, after transformers' own penalties and warpers, it draws from the very
    distribution `generate(do_sample=True)` draws from, but torch's global generator, whose draws for a row
    depend on every other row in the batch, is never used.
    """

    def __init__(self, draws: torch.Tensor, prompt_length: int) -> None:
        self.draws = draws  # (rows, max new tokens) float64 in [0, 1)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = min(int(input_ids.shape[1]) - self.prompt_length, self.draws.shape[1] - 1)
        x = scores.to(self.draws.device)
        # After top-k, most of the vocabulary is -inf: sample among the candidates only, kept in vocabulary
        # order. Unnormalised weights exp(x - max) in float64: a token with weight 0 adds exactly nothing to
        # the running sum, so the pick is the same as over the whole vocabulary, whatever the other rows.
        # (torch.topk ranks NaN above every number, so a NaN is among the candidates and caught below.)
        kept = int((x > float("-inf")).sum(-1).max())
        idx = None
        if 0 < kept < x.shape[-1] // 4:
            x, idx = x.topk(kept, dim=-1)
            idx, order = idx.sort(dim=-1)
            x = x.gather(-1, order)
        x = x.to(torch.float64)
        top = x.max(dim=-1, keepdim=True).values
        if not bool(torch.isfinite(top).all()):  # NaN, +inf, or nothing left to draw: multinomial refuses these too
            raise ValueError("caption sampling: the decoder's scores hold NaN or inf, or exclude every token "
                             "(a float16 overflow?)")
        cdf = (x - top).exp_().cumsum_(-1)
        u = self.draws[:, step : step + 1] * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)
        if idx is not None:
            pick = idx.gather(-1, pick)
        return torch.full_like(scores, float("-inf")).scatter_(1, pick.to(scores.device), 0.0)


def _stream_names(streams: Sequence[Sequence[int]] | None, rows: int) -> list[tuple[int, ...]]:
    if streams is None:
        return [(i,) for i in range(rows)]
    names = [tuple(int(x) for x in s) for s in streams]
    if len(names) != rows:
        raise ValueError(f"streams: expected one name per token set ({rows}), got {len(names)}")
    return names


def _check_sets(token_sets: Sequence[torch.Tensor], allow_empty: bool) -> None:
    """One ValueError naming the first bad row (its index in `token_sets`): not (tokens, dim), empty where
    not allowed, or holding NaN/inf. Each distinct tensor is checked once."""
    seen: set[int] = set()
    for r, t in enumerate(token_sets):
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.ndim != 2 or (int(t.shape[0]) == 0 and not allow_empty):
            raise ValueError(f"token set {r}: expected a non-empty (tokens, dim) tensor, got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"token set {r}: expected finite encoder tokens, got NaN or inf (a float16 overflow "
                             f"in the vision model? try model.dtype=bfloat16 or float32)")


def _distinct(token_sets: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """The distinct tensors of `token_sets` (by identity, in first-seen order) and each row's index into them."""
    index: dict[int, int] = {}
    sets: list[torch.Tensor] = []
    row_set = []
    for t in token_sets:
        if id(t) not in index:
            index[id(t)] = len(sets)
            sets.append(t)
        row_set.append(index[id(t)])
    return sets, row_set


def pack_sets(sizes: Sequence[int]) -> list[list[int]]:
    """Set indices packed into groups whose total size is at most the largest set (first fit, largest
    first), so a row attends to at most that many keys and short sets share one key/value tensor."""
    capacity = max(sizes)
    groups: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        g = next((g for g, free in enumerate(room) if free >= sizes[i]), None)
        if g is None:
            groups.append([])
            room.append(capacity)
            g = len(groups) - 1
        groups[g].append(i)
        room[g] -= sizes[i]
    return groups


class _Group(NamedTuple):
    keys: torch.Tensor     # (1, H, L, d): the group's sets' keys, end to end
    values: torch.Tensor   # (1, H, L, d)
    rows: torch.Tensor     # (R,) the batch rows that read this group
    bias: torch.Tensor | None  # (R, L): 0 on each row's own set, -inf elsewhere; None when one set fills it


class _SetCrossAttention(torch.nn.Module):
    """Stands in for one decoder layer's cross-attention core (BlipTextSelfAttention) during a caption call:
    keys and values of every token set projected once, and each row attending to its own set's tokens only.
    Replaces transformers' computation entirely, so it neither needs nor is affected by how a given
    transformers release passes (or drops) `encoder_attention_mask`.

    Sets are packed into groups (`pack_sets`) that share one key/value tensor, and each group's rows run as
    one attention over the group's keys, masked to their own set: no padding per set, no per-row copies of
    keys or values, and a row spans at most the largest set's worth of keys.

    The attention itself is BlipTextSelfAttention's arithmetic, op for op (scores, scaling, softmax and
    weighted sum in the model's dtype), not a fused kernel: a fused kernel keeps the scores in float32, and in
    bfloat16 / float16 that rounding alone moves the logits as far as the stock decoder's own half-vs-float32
    drift and flips greedy tokens that the stock decoder keeps. The scores it holds (heads x rows x the group's
    keys, one layer at a time) are no more than the stock decoder holds for the sets padded to the longest."""

    def __init__(self, base: Any, groups: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]):
        super().__init__()
        self.base = base
        self.heads, self.head_dim = base.num_attention_heads, base.attention_head_size
        self.groups = []
        for enc, rows, bias in groups:  # enc: (L, D) encoder tokens of the group
            shape = (1, enc.shape[0], self.heads, self.head_dim)
            self.groups.append(_Group(base.key(enc).view(shape).transpose(1, 2),
                                      base.value(enc).view(shape).transpose(1, 2), rows, bias))

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        rows, q, _ = hidden_states.shape
        h, d = self.heads, self.head_dim
        query = self.base.query(hidden_states).view(rows, q, h, d)
        context = torch.empty_like(query)
        for g in self.groups:
            n, length = int(g.rows.shape[0]), int(g.keys.shape[2])
            grid = query.index_select(0, g.rows).permute(2, 0, 1, 3).reshape(1, h, n * q, d)
            scores = torch.matmul(grid, g.keys.transpose(-1, -2)) / math.sqrt(d)  # (1, h, n * q, L)
            if g.bias is not None:
                scores = (scores.view(h, n, q, length) + g.bias[:, None, :]).view(1, h, n * q, length)
            out = torch.matmul(torch.softmax(scores, dim=-1), g.values)
            context.index_copy_(0, g.rows, out.view(h, n, q, d).permute(1, 2, 0, 3))
        return context.reshape(rows, q, h * d), None


@contextmanager
def _per_set_cross_attention(decoder: Any, sets: Sequence[torch.Tensor], row_set: Sequence[int],
                             device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Swap every decoder layer's cross-attention core for a `_SetCrossAttention` over `sets` for the
    duration of one generate call (row r reads sets[row_set[r]])."""
    layers = decoder.bert.encoder.layer
    originals = [layer.crossattention.self for layer in layers]
    if any(isinstance(m, _SetCrossAttention) for m in originals):
        raise RuntimeError("BLIP's decoder is already in a caption call; one call at a time per model")
    groups = []
    for members in pack_sets([int(t.shape[0]) for t in sets]):
        enc = torch.cat([sets[i] for i in members]).to(device=device, dtype=dtype)
        starts = dict(zip(members, itertools.accumulate([0] + [int(sets[i].shape[0]) for i in members])))
        rows = [r for r, s in enumerate(row_set) if s in starts]
        bias = None
        if len(members) > 1:
            bias = torch.full((len(rows), enc.shape[0]), float("-inf"), dtype=dtype)
            for k, r in enumerate(rows):
                a = starts[row_set[r]]
                bias[k, a:a + int(sets[row_set[r]].shape[0])] = 0
            bias = bias.to(device)
        groups.append((enc, torch.tensor(rows, device=device), bias))
    try:
        for layer, base in zip(layers, originals):
            layer.crossattention.self = _SetCrossAttention(base, groups)
        del groups
        yield
    finally:
        for layer, base in zip(layers, originals):
            layer.crossattention.self = base
