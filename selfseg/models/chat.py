"""What the chat-model wrappers share: requests, replies, batching by length, and the reply cache.

A request is a short conversation (user / assistant turns, optionally with one image on the first user
turn); a reply is the model's next assistant turn. Decoding is greedy, so a reply is a pure function of
(checkpoint, image, turns, max_new_tokens, dtype): with a `ReplyCache`, a rerun never calls the model again.
"""
from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cache import ReplyCache, image_digest, reply_key
from .spec import ModelSpec


@dataclass
class ChatRequest:
    """turns: (role, text) pairs, roles alternating "user" / "assistant", first and last "user".
    image: a PIL image shown with the first user turn (None: a text-only request)."""

    turns: list[tuple[str, str]]
    image: Any = None

    @classmethod
    def ask(cls, prompt: str, image: Any = None) -> ChatRequest:
        return cls([("user", prompt)], image)

    def then(self, reply: str, prompt: str) -> ChatRequest:
        """This conversation with the model's `reply` and a follow-up `prompt` appended."""
        return ChatRequest(self.turns + [("assistant", reply), ("user", prompt)], self.image)


@dataclass
class ChatReply:
    text: str
    cached: bool = False
    # The reply reached max_new_tokens before the model ended it: the text is cut short.
    truncated: bool = False


#: Part of every reply's cache key: how a stored reply was made from the model's tokens (a <think> the
#: template opened given back to it, the mark of a reply cut at max_new_tokens). Replies stored another way
#: are asked again rather than read as if they had been made this way.
REPLY_FORMAT = 2

# The end of a prompt whose chat template opened the reasoning block itself (DeepSeek-R1's, some Qwen3
# templates): the model then generates only the closing tag, and its reply is given the opening one back.
_OPENS_THINK = re.compile(r"<think>\s*$", re.I)


@dataclass
class ChatStats:
    generate_calls: int = 0
    rows: int = 0
    cached: int = 0
    rows_per_call: list[int] = field(default_factory=list)


class ChatModelBase:
    """Subclasses set model_id, batch_size, max_new_tokens, cache and implement `generate_batch(requests)`
    (ONE greedy generate call over at most `batch_size` requests as left-padded rows: the prompt length and
    generate's output; `text_batch_size` for requests without an image, when set: they are far shorter than
    rows carrying an image's tokens) with `prompt_text(request)`, or `_replies(requests)` directly (each
    reply and whether max_new_tokens cut it)."""

    model_id: str
    batch_size: int
    text_batch_size: int | None = None
    max_new_tokens: int
    cache: ReplyCache | None
    is_tiny: bool = False
    dtype: Any = None  # part of the cache key: float16 and bfloat16 may answer differently
    # Part of the cache key: the files behind model_id (a snapshot's commit, a folder's files), so a new
    # snapshot or a changed generation config or chat template is asked again.
    checkpoint: str = ""

    @classmethod
    def from_spec(cls, spec: ModelSpec, **options: Any) -> ChatModelBase:
        """The chat model of `spec` (its id, revision, device, dtype, cache and offline settings); `options`
        are the wrapper's own (batch sizes, max_new_tokens, the reply cache, the setting named in errors)."""
        return cls(spec.id, device=spec.device, dtype=spec.dtype, cache_dir=spec.cache_dir,
                   local_files_only=spec.local_files_only, revision=spec.revision, **options)
    tokenizer: Any = None

    def __init__(self) -> None:
        self.stats = ChatStats()

    @property
    def generate_calls(self) -> int:
        return self.stats.generate_calls

    def generate_batch(self, requests: Sequence[ChatRequest], **generate_kwargs: Any) -> tuple[int, Any]:
        raise NotImplementedError  # pragma: no cover - abstract

    def prompt_key(self, request: ChatRequest) -> dict[str, str]:
        """More of a reply's cache key, where a model's prompt tokens for `request` are made in a way replies
        stored under the same key were not."""
        return {}

    def prompt_text(self, request: ChatRequest) -> str:
        """The text the model is given for `request` (its chat template applied), up to where it replies; a
        wrapper that does not say gives "" (a <think> its template opens is then not seen)."""
        return ""

    def _replies(self, requests: Sequence[ChatRequest]) -> list[tuple[str, bool]]:
        """(reply, cut at max_new_tokens) per request, from ONE generate call."""
        start, out = self.generate_batch(requests)
        new = out[:, start:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        # A template that opened <think> leaves the model only "</think>" to write, and a reply cut while
        # reasoning would show no tag at all.
        texts = ["<think>\n" + t if _OPENS_THINK.search(self.prompt_text(r)) else t for t, r in zip(texts, requests)]
        ends = self._end_ids()
        full = new.shape[1] >= self.max_new_tokens  # a shorter output: every row ended before the limit
        cut = [full and bool(ends) and not ends.intersection(row) for row in new.tolist()]
        return list(zip(texts, cut))

    def _end_ids(self) -> set[int]:
        """The token ids that end a reply: the generation config's, else the tokenizer's end of sequence."""
        ids = getattr(getattr(getattr(self, "model", None), "generation_config", None), "eos_token_id", None)
        if ids is None:
            ids = getattr(self.tokenizer, "eos_token_id", None)
        return {int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids]) if i is not None}

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        """One reply per request, in order. Cached replies are served from the cache; the rest run in
        generate calls of `batch_size` rows (`text_batch_size` without an image), grouped by length so
        little padding is wasted; rows with and without an image never share a call."""
        out: list[ChatReply | None] = [None] * len(requests)
        keys: list[str | None] = [None] * len(requests)
        if self.cache is not None:
            digests: dict[int, str] = {}
            for i, r in enumerate(requests):
                img = None
                if r.image is not None:
                    if id(r.image) not in digests:  # one hash per picture, however many rows show it
                        digests[id(r.image)] = image_digest(r.image)
                    img = digests[id(r.image)]
                keys[i] = reply_key(model=self.model_id, checkpoint=self.checkpoint, image=img,
                                    turns=[list(t) for t in r.turns], max_new_tokens=self.max_new_tokens,
                                    dtype=str(self.dtype), decoding="greedy", format=REPLY_FORMAT,
                                    **self.prompt_key(r))
                hit = self.cache.get(keys[i])
                if hit is not None:
                    out[i] = ChatReply(hit, cached=True, truncated=self.cache.marked(_cut(keys[i])))
                    self.stats.cached += 1
        todo = [i for i in range(len(requests)) if out[i] is None]
        # Similar lengths share a call (less padding); for VLM rows the image's token count dominates.
        todo.sort(key=lambda i: (requests[i].image is None,
                                 requests[i].image.size[0] * requests[i].image.size[1] if requests[i].image else 0,
                                 sum(len(t) for _, t in requests[i].turns)))
        with_image = [i for i in todo if requests[i].image is not None]
        text_only = [i for i in todo if requests[i].image is None]
        batches = [with_image[s:s + self.batch_size] for s in range(0, len(with_image), self.batch_size)]
        step = self.text_batch_size or self.batch_size
        batches += [text_only[s:s + step] for s in range(0, len(text_only), step)]
        for rows in batches:
            replies = self._replies([requests[i] for i in rows])
            if len(replies) != len(rows):  # never let replies slide onto the wrong request
                raise RuntimeError(f"{self.model_id}: {len(replies)} replies for {len(rows)} requests")
            self.stats.generate_calls += 1
            self.stats.rows += len(rows)
            self.stats.rows_per_call.append(len(rows))
            for i, (text, cut) in zip(rows, replies):
                out[i] = ChatReply(text.strip(), truncated=cut)
                if self.cache is not None and keys[i] is not None:
                    # The mark first: a reply stored without it would read as whole on a rerun. A whole
                    # reply clears a mark another writer left (its own reply was cut, this one was not).
                    if cut:
                        self.cache.mark(_cut(keys[i]))
                    elif self.cache.marked(_cut(keys[i])):  # a read: no write for the usual reply
                        self.cache.unmark(_cut(keys[i]))
                    self.cache.put(keys[i], out[i].text)
        return [r for r in out if r is not None]


def _cut(key: str) -> str:
    """The cache's mark that the reply stored under `key` was cut at max_new_tokens."""
    return key + ":cut"


class SharedWeights:
    """Loaded (model, processor) pairs shared by every wrapper in the process with the same key, so a VLM
    used by a tagger and by prompt enrichment is loaded once. Weakly held: dropped with their last user."""

    def __init__(self) -> None:
        self._items: weakref.WeakValueDictionary[tuple, _Holder] = weakref.WeakValueDictionary()

    def get(self, key: tuple, load: Callable[[], tuple[Any, Any]]) -> _Holder:
        holder = self._items.get(key)
        if holder is None:
            holder = _Holder(*load())
            self._items[key] = holder
        return holder


class _Holder:
    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor


def check_model_type(spec: ModelSpec, kind: str, setting: str) -> None:
    """Read only the checkpoint's config and raise one clear ConfigError when it is not `kind`
    ("image-text-to-text" or "causal-lm"): before gigabytes of the wrong weights are loaded."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    from . import loading  # torch: only when a chat model is checked, not when imported

    vision = kind == "image-text-to-text"
    what = ("an image-text-to-text (vision-language chat) model such as 'Qwen/Qwen2.5-VL-3B-Instruct'" if vision
            else "a causal (decoder-only) chat language model such as 'Qwen/Qwen2.5-7B-Instruct'")
    known = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES if vision else MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    loading.check_model_type("vision-language model" if vision else "causal LM", spec, known, what, setting)


def takes_token_types(model: Any) -> bool:
    """Whether `model` reads the processor's token_type_ids: Gemma 3 marks its image tokens with them, which
    attend to each other both ways while it generates. BERT-style tokenizers (the tiny models') add them for
    causal LMs that take none, and generate() refuses keywords a model does not take."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def needs_special_tokens(tokenizer: Any, texts: Sequence[str]) -> bool:
    """Whether a processor should add its tokenizer's special tokens to chat-templated texts: only when the
    tokenizer has a BOS token that the template did not write (LLaVA-1.5's template starts with "USER:"), as
    transformers' processor chat path decides. Its tokenizer chat path, which `ChatLM` follows, never adds
    them."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and not all(t.startswith(bos) for t in texts)
