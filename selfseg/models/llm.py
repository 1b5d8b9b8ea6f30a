"""A chat causal LM through transformers: batched, deterministic (greedy) replies to conversations.

Used by the LOVE label mapper, the describe_extract tagger's keyword extractor and generic prompt
enrichment. "tiny-random" builds a tiny random-init Llama and a real WordPiece tokenizer in code: its
replies are meaningless noise, for testing the plumbing only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..cache import ReplyCache
from .chat import ChatModelBase, ChatRequest, SharedWeights, check_model_type, takes_token_types
from .loading import complete_weights, load_checkpoint, model_call, resolve_device, resolve_dtype
from .spec import TINY_MODEL, ModelSpec
from .tiny import build_tiny_causal_lm

_SHARED = SharedWeights()


class ChatLM(ChatModelBase):
    """Greedy replies from a chat causal LM, `batch_size` conversations per generate call.

    dtype "auto": bfloat16 on a GPU, float32 on a CPU (a 7B model in float32 needs ~28 GB of RAM).
    cache: an optional `ReplyCache`; a cached conversation is never sent to the model again.
    """

    def __init__(self, model_id: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_new_tokens: int = 64, cache_dir: str | None = None, local_files_only: bool = False,
                 cache: ReplyCache | None = None, setting: str = "evaluation.llm_model",
                 revision: str | None = None) -> None:
        super().__init__()
        spec = ModelSpec(model_id, device, dtype, cache_dir, local_files_only, revision)
        self.model_id = spec.name  # in replies' keys and results: the revision too, when one is pinned
        self.device = resolve_device(device)
        self.dtype = (torch.bfloat16 if self.device.type == "cuda" else torch.float32) if dtype == "auto" \
            else resolve_dtype(dtype)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.cache = cache
        self.is_tiny = model_id == TINY_MODEL

        def load() -> tuple[Any, Any]:
            if self.is_tiny:
                model, tokenizer = build_tiny_causal_lm()
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                check_model_type(spec, "causal-lm", setting)

                def load_ckpt(local: bool) -> tuple[Any, Any]:
                    tok = AutoTokenizer.from_pretrained(spec.id, **spec.pretrained_kwargs(local))
                    mdl = AutoModelForCausalLM.from_pretrained(spec.id, dtype=self.dtype, output_loading_info=True,
                                                               **spec.pretrained_kwargs(local))
                    return complete_weights("causal LM", spec.id, mdl), tok

                model, tokenizer = load_checkpoint("causal LM", spec, load_ckpt)
                # from_pretrained chose each weight's dtype, keeping the modules the model names in float32
                # (MoE routers, some norms); a cast of the whole model would undo that.
                return model.to(self.device).eval(), tokenizer
            return model.to(self.device, dtype=self.dtype).eval(), tokenizer

        held = _SHARED.get((spec.id, spec.revision, str(self.device), str(self.dtype)), load)
        self.checkpoint = spec.identity()  # after loading: a checkpoint just downloaded has its commit
        self._held = held  # keeps the shared weights alive as long as this wrapper
        self.model, self.tokenizer = held.model, held.processor
        # Decoder-only batching pads on the left, so every row's reply starts at the same position.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def prompt_text(self, request: ChatRequest) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": r, "content": t} for r, t in request.turns],
                                                      tokenize=False, add_generation_prompt=True)
        # No template (a base LM): the conversation as plain text, the last user turn last.
        return "\n\n".join(t for _, t in request.turns)

    def prompt_key(self, request: ChatRequest) -> dict[str, str]:
        # A rendered template without the tokenizer's BOS is keyed apart from replies made with a BOS added to
        # it (the tokenizer's plain-text default); every other prompt's tokens are the same either way.
        bos = getattr(self.tokenizer, "bos_token", None)
        if bos and getattr(self.tokenizer, "chat_template", None) and not self.prompt_text(request).startswith(bos):
            return {"bos": "as templated"}
        return {}

    @model_call
    def generate_batch(self, requests: Sequence[ChatRequest], **generate_kwargs: Any) -> tuple[int, Any]:
        """ONE greedy generate call for `requests` as left-padded rows: (prompt length, generate's output).
        Extra keywords go to generate (tests ask for output_logits to compare rows step by step)."""
        if any(r.image is not None for r in requests):
            raise ValueError(f"{self.model_id!r} is a text-only language model; it cannot be shown an image")
        texts = [self.prompt_text(r) for r in requests]
        # A rendered chat template is the whole input, as in transformers' tokenizer chat path (which never
        # adds special tokens): a template that writes no BOS (Zephyr's) gets none. Plain text (a base LM)
        # gets the tokenizer's own special tokens, as a plain tokenizer call would.
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not templated).to(self.device)
        if not takes_token_types(self.model):
            enc.pop("token_type_ids", None)
        out = self.model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id, **generate_kwargs)
        return enc["input_ids"].shape[1], out

    def reply(self, prompts: Sequence[str]) -> list[str]:
        """One greedy reply per single-turn prompt, in order."""
        return [r.text for r in self.chat([ChatRequest.ask(p) for p in prompts])]
