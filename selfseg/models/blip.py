"""BLIP through transformers: the only code in the BCC tagger that touches weights.

Why transformers and not salesforce-lavis (the authors' choice): lavis 1.0.2 pins transformers<4.27,
timm==0.4.12 and an old OpenCV, so it cannot live beside transformers 5, which selfseg needs for
Grounding DINO and SAM2. The same BLIP checkpoints are published for transformers
(Salesforce/blip-image-captioning-large / -base).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import TINY_MODEL, CaptioningConfig, ModelConfig
from .loading import load_checkpoint, resolve_device, resolve_dtype


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

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "BlipCaptioner":
        device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
        if cfg.blip == TINY_MODEL:
            model, processor = build_tiny_blip()
            return cls(model, processor, device, dtype, is_tiny=True, model_id=TINY_MODEL)
        from transformers import BlipForConditionalGeneration, BlipProcessor

        def load(local_only: bool) -> tuple[Any, Any]:
            kw = dict(cache_dir=cfg.cache_dir, local_files_only=local_only)
            return (BlipForConditionalGeneration.from_pretrained(cfg.blip, **kw),
                    BlipProcessor.from_pretrained(cfg.blip, **kw))

        model, processor = load_checkpoint("BLIP", cfg.blip, load, cfg.local_files_only)
        return cls(model, processor, device, dtype, is_tiny=False, model_id=cfg.blip)

    # ------------------------------------------------------------------------------------------ encoder
    @torch.inference_mode()
    def encode(self, images: Sequence[Any], size: int) -> torch.Tensor:
        """(B, 1 + (size/16)^2, D) vision tokens (CLS first) for RGB PIL images squashed to size x size."""
        pix = self.processor.image_processor(
            list(images), size={"height": size, "width": size}, return_tensors="pt"
        )["pixel_values"].to(self.device, self.dtype)
        out = self.model.vision_model(pixel_values=pix, interpolate_pos_encoding=True)
        return out.last_hidden_state

    # ------------------------------------------------------------------------------------------ decoder
    def cross_attention_bytes(self, rows: int, tokens: int) -> int:
        """Bytes the decoder's cross-attention cache takes for `rows` captions over `tokens` padded tokens:
        keys and values, every layer, every row (generate keeps them for all decoding steps)."""
        t = self.model.config.text_config
        return rows * tokens * t.num_hidden_layers * 2 * t.hidden_size * torch.finfo(self.dtype).bits // 8

    def prompt_ids(self, prompt: str) -> torch.Tensor:
        """The captioning prompt as BLIP's generate() feeds it: [BOS] + prompt tokens, no [SEP]."""
        ids = self.processor.tokenizer(prompt, return_tensors="pt").input_ids
        ids[:, 0] = self.model.config.text_config.bos_token_id
        return ids[:, :-1]

    @torch.inference_mode()
    def caption(self, token_sets: Sequence[torch.Tensor], settings: CaptioningConfig, seed: int) -> list[str]:
        """One sampled caption per token set, all in ONE generate call.

        token_sets: (n_i, D) encoder tokens each. Sets are right-padded to the longest and masked, so the
        text decoder's cross-attention sees exactly each set's tokens.
        """
        if not token_sets:
            return []
        # Rows repeat their token sets (one per caption cycle): encode each distinct set's cross-attention
        # keys and values once and hand them to generate as a filled cache, instead of letting every row
        # project the same tokens again (at ViT-L, 8 clusters x 20 cycles, that projection is several TFLOPs).
        distinct: dict[int, int] = {}
        row_set = torch.tensor([distinct.setdefault(id(t), len(distinct)) for t in token_sets], device=self.device)
        uniq = list({id(t): t for t in token_sets}.values())
        longest = max(int(t.shape[0]) for t in uniq)
        dim = int(uniq[0].shape[1])
        enc = torch.zeros(len(uniq), longest, dim, device=self.device, dtype=self.dtype)
        mask = torch.zeros(len(uniq), longest, device=self.device, dtype=torch.long)
        for i, t in enumerate(uniq):
            enc[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = 1
        cache = self._cross_attention_cache(enc, row_set)
        rows = len(token_sets)
        ids = self.prompt_ids(settings.prompt).to(self.device).repeat(rows, 1)
        cfg = self.model.config.text_config
        # manual_seed seeds every GPU, so every GPU's state is saved and restored.
        devices = list(range(torch.cuda.device_count())) if self.device.type == "cuda" else []
        # A private RNG stream: the same seed gives the same captions, and the caller's RNG is untouched.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.text_decoder.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                # Only its shape is read once the cache is filled: a broadcast view, no memory.
                encoder_hidden_states=enc[:1, :1].expand(rows, longest, dim),
                encoder_attention_mask=mask[row_set],
                past_key_values=cache,
                do_sample=True,
                top_p=settings.top_p,
                top_k=settings.top_k,
                min_new_tokens=settings.min_new_tokens,
                max_new_tokens=settings.max_new_tokens,
                repetition_penalty=settings.repetition_penalty,
                eos_token_id=cfg.sep_token_id,
                pad_token_id=cfg.pad_token_id,
            )
        self.generate_calls += 1
        return [s.strip() for s in self.processor.tokenizer.batch_decode(out[:, ids.shape[1]:],
                                                                         skip_special_tokens=True)]


    def _cross_attention_cache(self, enc: torch.Tensor, row_set: torch.Tensor) -> Any:
        """An EncoderDecoderCache whose cross-attention part holds every layer's keys and values for each
        row, projected once per distinct token set (enc: (sets, L, D); row_set: set index of each row)."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        cross = DynamicCache()
        for i, layer in enumerate(self.model.text_decoder.bert.encoder.layer):
            att = layer.crossattention.self
            shape = (*enc.shape[:2], -1, att.attention_head_size)
            k = att.key(enc).view(shape).transpose(1, 2)
            v = att.value(enc).view(shape).transpose(1, 2)
            cross.update(k[row_set], v[row_set], i)
        cache = EncoderDecoderCache(DynamicCache(), cross)
        if not all(cache.is_updated.values()):
            # The decoder would otherwise attend to the shape-only encoder view passed to generate().
            raise RuntimeError("transformers did not accept the filled cross-attention cache; please report this")
        return cache


def build_tiny_blip(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-init BLIP captioner and a real BERT WordPiece tokenizer, built in code (no download).

    The tokenizer's vocabulary is a short list of English words shipped with selfseg, so its (random)
    captions are real words and exercise the noun extractor. The outputs carry no meaning.
    """
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    vocab = Path(__file__).with_name("tiny_vocab.txt")
    tokenizer = BertTokenizer(str(vocab), do_lower_case=True, bos_token="[DEC]")
    words = vocab.read_text(encoding="utf-8").split("\n")
    tok = {w: i for i, w in enumerate(words)}
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=384, patch_size=16),
        text_config=dict(vocab_size=len(words), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                         bos_token_id=tok["[DEC]"], pad_token_id=tok["[PAD]"], sep_token_id=tok["[SEP]"],
                         eos_token_id=tok["[SEP]"]),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
                              tokenizer=tokenizer)
    return model, processor
