"""A vision-language chat model through transformers (image-text-to-text): batched, greedy replies.

Any checkpoint that `AutoModelForImageTextToText` loads and whose processor has a chat template works
(Qwen2.5-VL, LLaVA, LLaVA-OneVision, Idefics3, SmolVLM, Gemma 3, ...; tests/models/test_chat_fidelity.py holds
each of these to transformers' stock chat path). Requests of one generate call are left-padded rows, each with its
own image, so a batch of images is one call, also when the rows' images split into different numbers of tiles.
"tiny-random" builds a tiny random-init Qwen2.5-VL (same classes, same processor as the real checkpoints) in
code: its replies are meaningless noise, for testing the plumbing only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..cache import ReplyCache
from ..errors import ConfigError
from .chat import ChatModelBase, ChatRequest, SharedWeights, check_model_type, needs_special_tokens, takes_token_types
from .loading import complete_weights, load_checkpoint, model_call, resolve_device, resolve_dtype
from .spec import TINY_MODEL, ModelSpec
from .tiny import build_tiny_vlm

#: Default tagging VLM. Qwen2.5-VL is what TALOS uses for direct tagging; 3B runs on a laptop (about 8 GB
#: in bfloat16), "Qwen/Qwen2.5-VL-7B-Instruct" is stronger.
DEFAULT_VLM = "Qwen/Qwen2.5-VL-3B-Instruct"

_SHARED = SharedWeights()


class VisionChat(ChatModelBase):
    """Greedy replies of an image-text-to-text chat model, `batch_size` conversations per generate call.

    dtype "auto": bfloat16 on a GPU, float32 on a CPU.
    """

    def __init__(self, model_id: str, device: str = "auto", dtype: str = "auto", batch_size: int = 4,
                 max_new_tokens: int = 256, cache: ReplyCache | None = None, cache_dir: str | None = None,
                 local_files_only: bool = False, setting: str = "vlm.model",
                 text_batch_size: int | None = None, revision: str | None = None) -> None:
        super().__init__()
        spec = ModelSpec(model_id, device, dtype, cache_dir, local_files_only, revision)
        self.model_id = spec.name  # in replies' keys and results: the revision too, when one is pinned
        self.device = resolve_device(device)
        self.dtype = (torch.bfloat16 if self.device.type == "cuda" else torch.float32) if dtype == "auto" \
            else resolve_dtype(dtype)
        self.batch_size = batch_size
        self.text_batch_size = text_batch_size
        self.max_new_tokens = max_new_tokens
        self.cache = cache
        self.is_tiny = model_id == TINY_MODEL

        def load() -> tuple[Any, Any]:
            if self.is_tiny:
                model, processor = build_tiny_vlm()
            else:
                from transformers import AutoModelForImageTextToText, AutoProcessor

                check_model_type(spec, "image-text-to-text", setting)

                def load_ckpt(local: bool) -> tuple[Any, Any]:
                    proc = AutoProcessor.from_pretrained(spec.id, **spec.pretrained_kwargs(local))
                    mdl = AutoModelForImageTextToText.from_pretrained(spec.id, dtype=self.dtype,
                                                                      output_loading_info=True,
                                                                      **spec.pretrained_kwargs(local))
                    return complete_weights("vision-language model", spec.id, mdl), proc

                model, processor = load_checkpoint("vision-language model", spec, load_ckpt)
            if getattr(processor, "chat_template", None) is None:
                raise ConfigError(f"{setting}: {model_id!r} has no chat template; expected an instruct / chat "
                                  f"checkpoint")
            # A loaded checkpoint already has from_pretrained's dtypes, float32-kept modules included; a cast
            # of the whole model would undo those. Only the tiny model built in code is cast.
            return (model.to(self.device, dtype=self.dtype) if self.is_tiny else model.to(self.device)).eval(), \
                processor

        held = _SHARED.get((spec.id, spec.revision, str(self.device), str(self.dtype)), load)
        self.checkpoint = spec.identity()  # after loading: a checkpoint just downloaded has its commit
        self._held = held  # keeps the shared weights alive as long as this wrapper
        self.model, self.processor = held.model, held.processor
        tok = getattr(self.processor, "tokenizer", self.processor)
        # Decoder-only batching pads on the left, so every row's reply starts at the same position.
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.tokenizer = tok

    def _messages(self, request: ChatRequest) -> list[dict]:
        msgs = []
        for n, (role, text) in enumerate(request.turns):
            content: list[dict] = []
            if n == 0 and request.image is not None:
                content.append({"type": "image"})
            content.append({"type": "text", "text": text})
            msgs.append({"role": role, "content": content})
        return msgs

    def prompt_text(self, request: ChatRequest) -> str:
        return self.processor.apply_chat_template(self._messages(request), tokenize=False, add_generation_prompt=True)

    @model_call
    def generate_batch(self, requests: Sequence[ChatRequest], **generate_kwargs: Any) -> tuple[int, Any]:
        """ONE greedy generate call for `requests` as left-padded rows: (prompt length, generate's output).
        Extra keywords go to generate (tests ask for output_logits to compare rows step by step)."""
        texts = [self.prompt_text(r) for r in requests]
        # One list per row: Gemma 3's and SmolVLM's processors read a flat list as one prompt's images (SmolVLM
        # then refuses the batch); the others accept either. The chat batches never mix rows with and without an
        # image.
        images = [[r.image if r.image.mode == "RGB" else r.image.convert("RGB")]
                  for r in requests if r.image is not None]
        try:
            enc = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt",
                                 add_special_tokens=needs_special_tokens(self.tokenizer, texts))
        except ValueError as exc:  # the image processor's own limits (Qwen2.5-VL: aspect ratio below 200)
            sizes = ", ".join(f"{im.width}x{im.height}" for [im] in images) or "no image"
            raise ValueError(f"{self.model_id}'s processor refused the request ({sizes}): {exc}") from None
        if not takes_token_types(self.model):
            enc.pop("token_type_ids", None)
        enc = enc.to(self.device)
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
        out = self.model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id, **generate_kwargs)
        return enc["input_ids"].shape[1], out


# ------------------------------------------------------------------------------------------ from a config

def vision_chat(v: Any, m: Any) -> VisionChat:
    """The VLM of a `vlm` config section `v` on the shared model section `m` (weights shared with every
    other user of the same model in the process)."""
    return VisionChat.from_spec(m.spec(v.model, v.dtype), batch_size=v.batch_size,
                                text_batch_size=v.text_batch_size, max_new_tokens=v.max_new_tokens,
                                cache=ReplyCache.open(v.cache), setting="vlm.model")


def _same_checkpoint(a: str, b: str) -> bool:
    """Whether two model settings name one checkpoint: the same id (a folder however spelled) and revision."""
    import os

    sa, sb = ModelSpec(a), ModelSpec(b)
    where = [os.path.realpath(s.id) if os.path.isdir(s.id) else s.id for s in (sa, sb)]
    return where[0] == where[1] and sa.revision == sb.revision


def text_chat(v: Any, m: Any) -> ChatModelBase:
    """The text-only chat model of a `vlm` section's `llm`; the VLM itself (asked without an image) when unset
    or the VLM's own checkpoint (loaded as a causal LM it would be refused, or held in memory twice)."""
    if not v.llm or (v.llm != TINY_MODEL and _same_checkpoint(v.llm, v.model)):  # tiny-random: one of each kind
        return vision_chat(v, m)
    from .llm import ChatLM

    return ChatLM.from_spec(m.spec(v.llm, v.dtype), batch_size=v.text_batch_size,
                            max_new_tokens=v.max_new_tokens, cache=ReplyCache.open(v.cache), setting="vlm.llm")
