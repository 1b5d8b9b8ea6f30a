"""Every tiny random-init model selfseg builds in code (no download), one per model family: the twins that
"tiny-random" model ids load, for tests and install checks. Their outputs are meaningless, but each is
re-drawn so that its outputs depend on its inputs (a test model that ignores its input proves no wiring).
Sizes are kept to what runs in well under a second on a CPU; everything that the wrappers depend on (the
real tokenizers' behaviour, special tokens, input sizes that the processors accept) is kept real.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .loading import redraw_weights, spread_weights


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's CPU generator seeded for the block, and restored after it. The models are built on the CPU:
    fork_rng's default would also save and restore every GPU's generator (a CUDA context on each GPU, in
    every torchrun rank), and torch.manual_seed would reseed them for the caller."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield

# -------------------------------------------------------------------------------------------- blip

def build_tiny_blip(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-init BLIP captioner and a real BERT WordPiece tokenizer, built in code (no download).

    The tokenizer's vocabulary is a short list of English words shipped with selfseg, so its (random)
    captions are real words and exercise the noun extractor. The outputs carry no meaning, but they depend on
    the image and on which tokens each caption sees (see `sharpen_cross_attention`), so tests of batching,
    masking and caching can tell a right wiring from a wrong one.
    """
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    vocab = Path(__file__).with_name("tiny_vocab.txt")
    tokenizer = BertTokenizer(str(vocab), do_lower_case=True, bos_token="[DEC]")
    words = vocab.read_text(encoding="utf-8").split("\n")
    tok = {w: i for i, w in enumerate(words)}
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=384, patch_size=16,
                           # BlipVisionConfig's default (1e-10) leaves the patch embedding at ~0 and every token
                           # the same; the published checkpoints' configs say 0.02.
                           initializer_range=0.02),
        text_config=dict(vocab_size=len(words), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                         bos_token_id=tok["[DEC]"], pad_token_id=tok["[PAD]"], sep_token_id=tok["[SEP]"],
                         eos_token_id=tok["[SEP]"]),
    )
    with _seeded(seed):
        model = BlipForConditionalGeneration(config)
        sharpen_cross_attention(model)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
                              tokenizer=tokenizer)
    return model, processor


def sharpen_cross_attention(model: Any, std: float = 0.3) -> None:
    """Re-draw the text decoder's cross-attention projections (from the current RNG) with a large std.

    With the stock init (std 0.02) a tiny random BLIP's captions barely depend on the encoder tokens: greedy
    captions come out the same for any image, so no test could see a token set reach the wrong caption.
    Large query/key/value weights give sharp attention over the tokens and large outputs, so a different
    token set changes the logits by whole units.
    """
    with torch.no_grad():
        for layer in model.text_decoder.bert.encoder.layer:
            att = layer.crossattention.self
            for lin in (att.query, att.key, att.value):
                lin.weight.normal_(0.0, std)
            layer.crossattention.output.dense.weight.normal_(0.0, std)


# ----------------------------------------------------------------------------------------- clipseg

def tiny_clip_tokenizer(model_max_length: int = 32) -> Any:
    """A real `CLIPTokenizer` (CLIP's byte-level BPE, lower-casing, <|startoftext|> ... <|endoftext|>)
    with a tiny vocabulary built in memory: the 256 byte symbols, each also with CLIP's end-of-word
    marker "</w>", and no merges, so every word is spelled out byte by byte. Nothing is downloaded."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())  # the byte -> printable-character table CLIP's BPE uses
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def build_tiny_clipseg(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-init `CLIPSegForImageSegmentation` (2-layer 32-wide CLIP towers, 16-px patches on a
    64-px input, the rd64-refined "complex" transposed-convolution head) and a `CLIPSegProcessor` with a
    real CLIP tokenizer (see `tiny_clip_tokenizer`). Outputs carry no meaning.

    The weights are re-drawn at unit scale from `seed` (see `spread_weights`): with transformers' init
    the logits are in the hundreds, so every map saturates the sigmoid and float32 rounding alone is
    ~1e-4 in the logits; at unit scale the logits are O(1), another image or tag moves them by tenths,
    and a row that sees other rows' inputs shows far above the rounding."""
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        ViTImageProcessor,
    )

    tokenizer = tiny_clip_tokenizer(model_max_length=32)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPSegConfig(
        # eos_token_id must be the tokenizer's: the text tower pools at the first end-of-text token.
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=32, pad_token_id=eos,
                         bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=16),
        projection_dim=32, extract_layers=[0, 1], reduce_dim=16, decoder_num_attention_heads=2,
        decoder_intermediate_size=32, use_complex_transposed_convolution=True,
    )
    with _seeded(seed):
        model = CLIPSegForImageSegmentation(config)
    spread_weights(model, seed, head_gain=1.0, gain=1.0)
    # CLIPSeg's preprocessing (squash to a square, bilinear, ImageNet mean/std) at 64 px instead of 352.
    # Only the tiny twin uses these; real checkpoints bring their own processor config.
    image_processor = ViTImageProcessor(size={"height": 64, "width": 64}, resample=2,
                                        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return model, CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)


# ---------------------------------------------------------------------------------- grounding_dino

def tiny_vocab() -> dict[str, int]:
    """A WordPiece vocabulary laid out like bert-base-uncased where it matters: [PAD] 0, [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103, ASCII punctuation and digits from 999 ('.' = 1012, '?' = 1029). transformers
    hard-codes those four delimiter ids in GroundingDinoModel (a non-persistent buffer, reset on every load),
    so a tokenizer with other ids would silently make every tag attend to every other.
    Then single letters and ##letters (any unknown word becomes several pieces, as real long words do) and
    selfseg's short English word list (tiny_vocab.txt)."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"[unused{i}]" for i in range(99, 99 + 999 - len(tokens))]
    tokens += [chr(c) for c in range(ord("!"), ord("~") + 1) if not chr(c).isupper()]
    tokens += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    words = Path(__file__).with_name("tiny_vocab.txt").read_text(encoding="utf-8").split("\n")
    vocab = {t: i for i, t in enumerate(tokens)}
    for w in words:
        if w and not (w.startswith("[") and w.endswith("]")):
            vocab.setdefault(w, len(vocab))
    assert (vocab["[CLS]"], vocab["[SEP]"], vocab["."], vocab["?"]) == (101, 102, 1012, 1029)
    return vocab


def build_tiny_grounding_dino(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-init GroundingDinoForObjectDetection and a real GroundingDinoProcessor, built in code.

    Sizes follow transformers' own tiny test config (Swin with embed_dim 8 and one block per stage, BERT text
    encoder), except what the locator depends on: max_text_len stays 256 (the real limit) and the BERT
    position table covers it; d_model is 32 because the input projections use GroupNorm(32, d_model);
    decoder_layers must be >= 2. 20 queries and a 64-96 px image keep a forward well under a second on a CPU.

    The weights are then re-drawn by `redraw_weights` (deterministic in `seed`): with transformers' own
    init the boxes are exactly the encoder's grid proposals and the text-image fusion is scaled by 1e-4, so
    images and prompts could reach the outputs only through the top-k query choice. Outputs stay meaningless:
    they depend on the image and the prompt, but in no learned way.
    """
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    vocab = tiny_vocab()
    tokenizer = BertTokenizer(vocab, do_lower_case=True)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                   image_size=64, out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=16, max_position_embeddings=256),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=20, encoder_n_points=2, decoder_n_points=2,
        max_text_len=256,
    )
    with _seeded(seed):
        model = GroundingDinoForObjectDetection(config)
    redraw_weights(model, seed)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 192}),
        tokenizer=tokenizer,
    )
    return model.eval(), processor


# --------------------------------------------------------------------------------------------- llm

# A minimal Llama-2-style template for the tiny model (real chat checkpoints ship their own).
_TINY_LLM_TEMPLATE = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"


def build_tiny_causal_lm(seed: int = 0) -> tuple[Any, Any]:
    """Tiny random-init LlamaForCausalLM + BERT WordPiece tokenizer (selfseg's short English vocabulary).

    The weights are re-drawn at unit scale from `seed` (see `spread_weights`) so that another prompt
    changes the logits and the greedy reply; the replies are still meaningless."""
    from transformers import BertTokenizer, LlamaConfig, LlamaForCausalLM

    vocab = Path(__file__).with_name("tiny_vocab.txt")
    tokenizer = BertTokenizer(str(vocab), do_lower_case=True, padding_side="left")
    tokenizer.chat_template = _TINY_LLM_TEMPLATE
    words = vocab.read_text(encoding="utf-8").split("\n")
    ids = {w: i for i, w in enumerate(words)}
    config = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=ids["[PAD]"], bos_token_id=ids["[CLS]"], eos_token_id=ids["[SEP]"])
    with _seeded(seed):
        model = LlamaForCausalLM(config)
    return spread_weights(model, seed), tokenizer


# -------------------------------------------------------------------------------------------- sam2

#: Gains for `redraw_weights` on SAM 2: with unit gain everywhere the masks follow the image and the
#: box, but the IoU token's attention over the image stays nearly uniform and its score barely moves
#: (0.58 +- 0.003 across boxes); sharper query/key projections and a stronger IoU head make the scores move
#: with the box too (about 0.88-0.98 for the test boxes).
TINY_SAM2_GAINS = {"q_proj": 3.0, "k_proj": 3.0, "attn.qkv": 3.0, "iou_prediction_head": 2.0}


def build_tiny_sam2(seed: int = 0) -> tuple[Any, Any]:
    """A tiny random-init `Sam2Model` (Hiera backbone of 5 blocks, 12..96 channels, 128-px input) and its
    processor, built in code. Sizes follow transformers' own SAM 2 model tests.

    The weights are then re-drawn by `redraw_weights` (deterministic in `seed`): with transformers' own
    init (std 0.02 at these widths) the mask logits are ~1e-4 and the IoU scores 0.5001 whatever the image
    or the box. Outputs still carry no meaning: they depend on the image and the box, in no learned way."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    side = 128
    backbone = Sam2HieraDetConfig(hidden_size=12, image_size=side, blocks_per_stage=[1, 1, 2, 1],
                                  embed_dim_per_stage=[12, 24, 48, 96], num_attention_heads_per_stage=[1, 2, 4, 8],
                                  global_attention_blocks=[3])
    # Stride 4, then three 2x poolings: 32, 16, 8 px feature maps; the FPN width must equal the prompt
    # encoder's and mask decoder's hidden size (32).
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[96, 48, 24, 12],
                              backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32)
    prompt = Sam2PromptEncoderConfig(hidden_size=32, image_size=side, patch_size=16, mask_input_channels=8)
    decoder = Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32)
    config = Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    with _seeded(seed):
        model = Sam2Model(config)
    redraw_weights(model, seed, TINY_SAM2_GAINS)
    processor = Sam2Processor(Sam2ImageProcessor(size={"height": side, "width": side},
                                                 mask_size={"height": side // 4, "width": side // 4}))
    return model, processor


# --------------------------------------------------------------------------------------------- vlm

_TINY_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                  "<|video_pad|>"]


# A ChatML template like Qwen's (the real checkpoints ship their own): an image entry becomes the vision
# placeholder the processor expands to one token per merged patch.
_TINY_VLM_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_vlm(seed: int = 0) -> tuple[Any, Any]:
    """Tiny random-init Qwen2_5_VLForConditionalGeneration + a real Qwen2_5_VLProcessor (image processor
    capped at 16 merged patches; selfseg's short English WordPiece vocabulary plus Qwen's special tokens).

    The weights are re-drawn at unit scale from `seed` (see `spread_weights`) so that another image or
    another prompt changes the logits and the greedy reply: tests of batching and caching would otherwise
    pass whatever reached the model. The replies are still meaningless."""
    from transformers import (
        BertTokenizer,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = BertTokenizer(str(Path(__file__).with_name("tiny_vocab.txt")), do_lower_case=True, padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": _TINY_SPECIALS})
    ids = dict(zip(_TINY_SPECIALS, tok.convert_tokens_to_ids(_TINY_SPECIALS)))
    # 28 px = one merged 2x2 block of 14-px patches: 4..16 blocks per image keeps every forward tiny.
    images = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    processor = Qwen2_5_VLProcessor(image_processor=images, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=_TINY_VLM_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                         eos_token_id=ids["<|im_end|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=32, out_hidden_size=32, num_heads=4,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[1],
                           window_size=56),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    with _seeded(seed):
        model = Qwen2_5_VLForConditionalGeneration(config)
    return spread_weights(model, seed), processor
