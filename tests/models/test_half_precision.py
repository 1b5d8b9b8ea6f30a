"""Every model call selfseg makes, in bfloat16 and float16, against transformers' stock path on the same
weights in the same dtype.

Half precision rounds differently from float32, so "equal within 1e-4" (the float32 tests) means nothing
here. Each test measures the stock path's own half-vs-float32 drift on the same inputs and requires
selfseg's difference from stock to be a small fraction of it (on CPU it is exactly 0, except where selfseg
packs into one forward what stock runs apart: `encode_subsets`), and checks that another input moves the
outputs by more than that drift, so the equality is not vacuous.
Users run these models in bfloat16 on GPUs (the chat models' "auto" dtype); the CPU kernels here stand in
for them. Outputs of the random models are meaningless.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from selfseg.config import CaptioningConfig
from selfseg.models.blip import BlipCaptioner
from selfseg.models.chat import ChatRequest
from selfseg.models.clipseg import ClipSegDenseSegmenter
from selfseg.models.grounding_dino import GroundingDino
from selfseg.models.llm import ChatLM
from selfseg.models.loading import spread_weights
from selfseg.models.sam2 import Sam2BoxSegmenter
from selfseg.models.tiny import build_tiny_blip
from selfseg.models.vlm import VisionChat

# Tiny models: one intra-op thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

HALF = [torch.bfloat16, torch.float16]
# selfseg's difference from stock, as a share of stock's own half-vs-float32 drift, that still counts as
# "the same computation" (measured: 0; another rounding, e.g. a fused attention kernel, gives about 1 or more).
SHARE = 0.05


def _photo(seed: int, h: int = 90, w: int = 150) -> Image.Image:
    """A smooth random image (blobs, not per-pixel noise), so that resizing keeps its content."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _half_or_skip(dtype: torch.dtype, call, *args, **kwargs):
    """call(*args, **kwargs), skipping the test where this CPU build of torch lacks a float16 kernel."""
    try:
        return call(*args, **kwargs)
    except (RuntimeError, NotImplementedError) as err:
        if dtype == torch.float16 and "not implemented for 'Half'" in str(err):
            pytest.skip(reason=f"this CPU build of torch has no float16 kernel for an op the model uses: {err}")
        raise


# ------------------------------------------------------------------------------------------------- BLIP
GREEDY = CaptioningConfig(profile="paper", top_k=1, repetition_penalty=1.0, min_length=0, max_length=12)
LOGITS = dict(do_sample=False, output_logits=True, return_dict_in_generate=True)


def _blip(dtype: torch.dtype) -> BlipCaptioner:
    """The tiny BLIP with unit-scale weights: logits of ~15 (the stock init's are ~0.4, where every greedy
    choice is a near tie) and captions that follow the encoder tokens."""
    model, processor = build_tiny_blip()
    spread_weights(model, 0, head_gain=4.0, gain=1.0)
    return BlipCaptioner(model, processor, torch.device("cpu"), dtype, is_tiny=True, model_id="test")


@pytest.fixture(scope="module")
def blip32() -> BlipCaptioner:
    return _blip(torch.float32)


@pytest.fixture(scope="module")
def token_sets() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, 32, generator=g) for n in (3, 40, 700, 300)]


def _logit_diff(a, b, ra: int = 0, rb: int = 0) -> float:
    steps = min(len(a.logits), len(b.logits))
    return max(_max(a.logits[k][ra], b.logits[k][rb]) for k in range(steps))


def _stock_padded(cap: BlipCaptioner, rows: list[torch.Tensor], monkeypatch, forward) -> object:
    """The stock batched decoder call: sets right-padded, `encoder_attention_mask` given, and transformers'
    cross-attention made to honour it by `forward` (5.24 drops it; see conftest.py), greedy."""
    from transformers.models.blip import modeling_blip_text as mbt

    longest = max(int(t.shape[0]) for t in rows)
    enc = torch.zeros(len(rows), longest, rows[0].shape[1], dtype=cap.dtype)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, t in enumerate(rows):
        enc[i, : t.shape[0]], mask[i, : t.shape[0]] = t.to(cap.dtype), 1
    ids = cap.prompt_ids(GREEDY.prompt).repeat(len(rows), 1)
    cfg = cap.model.config.text_config
    lo, hi = cap.new_token_limits(GREEDY)
    with monkeypatch.context() as m, torch.inference_mode():
        m.setattr(mbt.BlipTextAttention, "forward", forward)
        return cap.model.text_decoder.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=enc,
            encoder_attention_mask=mask, min_new_tokens=lo, max_new_tokens=hi, repetition_penalty=1.0,
            eos_token_id=cfg.sep_token_id, pad_token_id=cfg.pad_token_id, **LOGITS)


@pytest.mark.parametrize("dtype", HALF)
def test_blip_caption_rows_equal_the_stock_decoder_in_half_precision(dtype, blip32, token_sets, monkeypatch,
                                                                     honouring_forward):
    """Per-set cross-attention (sets sharing one key/value tensor, rows repeating a set) against the stock
    decoder's masked padded batch: same greedy tokens, logits equal to a small share of stock's own drift."""
    cap = _blip(dtype)
    rows = [token_sets[0], token_sets[2], token_sets[1], token_sets[0], token_sets[3]]
    ours = _half_or_skip(dtype, cap.generate, rows, GREEDY, 0, **LOGITS)
    stock = _stock_padded(cap, rows, monkeypatch, honouring_forward)
    full = _stock_padded(blip32, rows, monkeypatch, honouring_forward)
    # Stock's drift at the first new token (later steps may follow other tokens in float32).
    drift = max(_max(stock.logits[0][r], full.logits[0][r]) for r in range(len(rows)))
    assert drift > 0
    for r in range(len(rows)):
        assert torch.equal(ours.sequences[r], stock.sequences[r]), f"row {r}: greedy caption differs from stock"
        assert _logit_diff(ours, stock, r, r) <= SHARE * drift, (r, _logit_diff(ours, stock, r, r), drift)
    # Not vacuous: the rows' sets give other logits, by far more than the drift.
    assert _max(ours.logits[0][0], ours.logits[0][1]) > 20 * drift


@pytest.mark.parametrize("dtype", HALF)
def test_blip_whole_image_caption_equals_blip_generate_in_half_precision(dtype, blip32, ade_images):
    """The caption tagger's path (encode, then caption all of an image's tokens) against
    BlipForConditionalGeneration.generate on the same pixels and prompt."""
    cap = _blip(dtype)
    photos = [Image.open(p).convert("RGB") for p in ade_images[:2]]

    def stock(c: BlipCaptioner, b: int):
        inputs = c.processor(images=photos[b], text=GREEDY.prompt, return_tensors="pt")
        with torch.inference_mode():
            return c.model.generate(pixel_values=inputs.pixel_values.to(c.dtype), input_ids=inputs.input_ids,
                                    do_sample=False, min_new_tokens=0, max_new_tokens=12, repetition_penalty=1.0,
                                    output_logits=True, return_dict_in_generate=True)

    firsts, drifts = [], []
    for b in range(2):
        # One photo per encode call: in float16 the CPU kernels round a batch of two differently.
        tokens = _half_or_skip(dtype, cap.encode, photos[b:b + 1], 384)
        ours = cap.generate([tokens[0]], GREEDY, 0, **LOGITS)
        ref, full = stock(cap, b), stock(blip32, b)
        drifts.append(_max(ref.logits[0], full.logits[0]))
        assert torch.equal(ours.sequences, ref.sequences)
        assert _logit_diff(ours, ref) <= SHARE * drifts[-1], (_logit_diff(ours, ref), drifts[-1])
        firsts.append(ours.logits[0][0])
    assert _max(firsts[0], firsts[1]) > 20 * max(drifts)  # another photo, other logits


@pytest.mark.parametrize("dtype", HALF)
def test_blip_encoders_equal_the_stock_vision_model_in_half_precision(dtype, blip32, ade_images):
    """`encode` against the stock vision model, and `encode_subsets` (every subset in one packed forward, its
    attention masked with the dtype's most negative number) against each subset through the stock encoder
    alone: no inf or NaN from the mask, and the stock rounding."""
    cap = _blip(dtype)
    photos = [Image.open(p).convert("RGB") for p in ade_images[:2]]
    vm = cap.model.vision_model
    pixels32 = cap.processor.image_processor(photos, return_tensors="pt").pixel_values
    pixels = pixels32.to(dtype)
    tokens = _half_or_skip(dtype, cap.encode, photos, 384)
    with torch.inference_mode():
        stock = vm(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        full = blip32.model.vision_model(pixel_values=pixels32).last_hidden_state
    drift = _max(stock, full)
    assert _max(tokens, stock) <= SHARE * drift
    assert _max(tokens[0], tokens[1]) > 20 * drift

    n = (384 // 16) ** 2
    g = torch.Generator().manual_seed(0)
    order = [torch.randperm(n, generator=g) for _ in photos]
    subsets = [[order[0][:3], order[0][3:300], order[0][300:]], [order[1][: n // 2], order[1][n // 2:]]]
    ours = cap.encode_subsets(photos, 384, subsets)
    ours32 = blip32.encode_subsets(photos, 384, subsets)  # float32: stock's within 1e-5 (test_blip.py)
    with torch.inference_mode():
        emb = vm.embeddings
        patches = emb.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = emb.class_embedding.reshape(1, -1)
        places = emb.interpolate_pos_encoding(torch.cat([cls.expand(2, 1, -1), patches], 1), 384, 384)[0]
        for b, subs in enumerate(subsets):
            for idx, got, got32 in zip(subs, ours[b], ours32[b]):
                seq = torch.cat([cls, patches[b, idx]]) + places[: len(idx) + 1]
                alone = vm.post_layernorm(vm.encoder(inputs_embeds=seq[None]).last_hidden_state)[0]
                assert torch.isfinite(got).all()
                # Packed, a softmax row sums the same terms in another order, so a few elements round one
                # unit apart: a small share of the drift on average (measured: at most 0.04 of it in bfloat16,
                # 0.08 in float16), never more than the drift at most.
                diff, own_drift = (got - alone).float().abs(), (alone.float() - got32).abs()
                assert float(diff.mean()) <= 0.25 * float(own_drift.mean())
                assert float(diff.max()) <= float(own_drift.max())
    assert _max(ours[1][0][0], ours[1][1][0]) > 0.1  # a subset's CLS token depends on its patches


# --------------------------------------------------------------------------------------- Grounding DINO
@pytest.mark.parametrize("dtype", HALF)
def test_grounding_dino_rows_equal_the_stock_forward_in_half_precision(dtype):
    """GroundingDino.forward (token rows, one shared backbone pass) against the stock processor + model call:
    a row alone equals the stock one-prompt call, and rows batched together equal the stock batch of the same
    prompts (in half precision a row's rounding depends on the batch in stock transformers too)."""
    half, full = GroundingDino.tiny(seed=0, dtype=dtype), GroundingDino.tiny(seed=0)
    image = _photo(1, 120, 200)
    prompts = ["dog . cat . fire hydrant .", "sofa . traffic light . kite . umbrella ."]

    def stock(gd: GroundingDino, texts: list[str]):
        inputs = gd.processor(images=[image] * len(texts), text=texts, padding=True, return_tensors="pt")
        inputs["pixel_values"] = inputs["pixel_values"].to(gd.dtype)
        with torch.inference_mode():
            out = gd.model(**inputs)
        return out.logits.float().sigmoid(), out.pred_boxes.float()

    pv, pm = half.preprocess(image)
    rows = [half.tokenizer(p)["input_ids"] for p in prompts]
    together = _half_or_skip(dtype, half.forward, pv, pm, rows)
    batch = stock(half, prompts)
    for r, prompt in enumerate(prompts):
        n = len(rows[r])
        alone = half.forward(pv, pm, [rows[r]])
        ref, ref32 = stock(half, [prompt]), stock(full, [prompt])
        drift = (_max(ref[0][0, :, :n], ref32[0][0, :, :n]), _max(ref[1], ref32[1]))
        assert _max(alone[0][0, :, :n], ref[0][0, :, :n]) <= SHARE * drift[0]
        assert _max(alone[1][0], ref[1][0]) <= SHARE * drift[1]
        assert _max(together[0][r, :, :n], batch[0][r, :, :n]) <= SHARE * drift[0]
        assert _max(together[1][r], batch[1][r]) <= SHARE * drift[1]
        assert torch.isfinite(together[0]).all() and torch.isfinite(together[1]).all()
    other = half.forward(*half.preprocess(_photo(2, 120, 200)), rows[:1])
    assert _max(other[1][0], together[1][0]) > 0.1  # another image moves the boxes


# ------------------------------------------------------------------------------------------------ SAM 2
@pytest.mark.parametrize("dtype", HALF)
def test_sam2_masks_equal_the_stock_recipe_in_half_precision(dtype):
    """Sam2BoxSegmenter.segment against Sam2Processor -> Sam2Model(pixel_values, input_boxes) ->
    post_process_masks. The boxes stay float32 in both (the prompt encoder normalises them before its own
    cast, so they lose nothing to the half dtype); selfseg upsamples the mask logits in float32."""
    half, full = Sam2BoxSegmenter.tiny(seed=0, dtype=dtype), Sam2BoxSegmenter.tiny(seed=0)
    image = _photo(1)
    boxes = np.array([[10, 10, 50, 60], [0, 0, 149, 89], [30, 20, 100, 80], [60, 5, 140, 85]], dtype=np.float32)

    def stock(seg: Sam2BoxSegmenter, img: Image.Image):
        inputs = seg.processor(images=img, input_boxes=[boxes.tolist()], return_tensors="pt")
        with torch.inference_mode():
            return seg.model(pixel_values=inputs["pixel_values"].to(seg.dtype), input_boxes=inputs["input_boxes"],
                             multimask_output=False), inputs["original_sizes"]

    calls = []
    handle = half.model.register_forward_hook(lambda _m, _a, out: calls.append((out.pred_masks, out.iou_scores)))
    try:
        ours = _half_or_skip(dtype, half.segment, image, boxes)
    finally:
        handle.remove()
    [(masks, scores)] = calls
    (ref, sizes), (ref32, _) = stock(half, image), stock(full, image)
    assert _max(masks, ref.pred_masks) <= SHARE * _max(ref.pred_masks, ref32.pred_masks)
    assert _max(scores, ref.iou_scores) <= SHARE * _max(ref.iou_scores, ref32.iou_scores)
    expected = half.processor.post_process_masks(ref.pred_masks.float(), sizes)[0][:, 0].numpy()
    assert np.array_equal(ours.masks, expected) and np.isfinite(ours.scores).all()
    other = half.segment(_photo(2), boxes)
    assert (other.masks != ours.masks).mean() > 0.05  # another image, other masks


# ---------------------------------------------------------------------------------------------- CLIPSeg
@pytest.mark.parametrize("dtype", HALF)
def test_clipseg_maps_equal_the_stock_forward_in_half_precision(dtype):
    """The image encoded once and broadcast to every tag, against the stock forward on a repeated image."""
    half, full = ClipSegDenseSegmenter.tiny(seed=0, dtype=dtype), ClipSegDenseSegmenter.tiny(seed=0)
    image = _photo(1)
    tags = ["cat", "traffic light", "sky", "a fire hydrant beside the road"]

    def stock(seg: ClipSegDenseSegmenter, img: Image.Image):
        inputs = seg.processor(text=tags, images=[img] * len(tags), padding=True, return_tensors="pt")
        inputs["pixel_values"] = inputs["pixel_values"].to(seg.dtype)
        with torch.inference_mode():
            return seg.model(**inputs).logits

    got = []
    handle = half.model.decoder.register_forward_hook(lambda _m, _a, out: got.append(out.logits))
    try:
        maps = _half_or_skip(dtype, half.logits, image, tags, tags_per_call=3)
    finally:
        handle.remove()
    ours = torch.cat([g.reshape(-1, *g.shape[-2:]) for g in got])
    ref = stock(half, image)
    drift = _max(ref, stock(full, image))
    assert _max(ours, ref) <= SHARE * drift
    expected = torch.sigmoid(F.interpolate(ref.float()[:, None], size=maps.shape[1:], mode="bilinear",
                                           align_corners=False))[:, 0]
    assert np.abs(maps - expected.numpy()).max() <= SHARE * drift
    assert _max(stock(half, _photo(2)), ref) > 20 * drift  # another image, other logits


# ------------------------------------------------------------------------------------------ chat models
STEPS = 8


def _stock_reply(chat, request: ChatRequest):
    """transformers' chat path for one request: template -> processor / tokenizer -> generate (greedy).
    The tiny models' BERT tokenizer has no BOS and would add [CLS]/[SEP] to plain text; a templated prompt
    gets no special tokens from selfseg (a processor adds them only where the template left out a BOS, which
    a tokenizer without one never has), so the stock call is made without them."""
    if isinstance(chat, VisionChat):
        messages = [{**m, "content": [{**c, "image": request.image} if c["type"] == "image" else c
                                      for c in m["content"]]} for m in chat._messages(request)]
        text = chat.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = chat.processor(text=[text], images=[[request.image]] if request.image is not None else None,
                                return_tensors="pt", add_special_tokens=False)
    else:
        text = chat.tokenizer.apply_chat_template([{"role": r, "content": t} for r, t in request.turns],
                                                  tokenize=False, add_generation_prompt=True)
        inputs = chat.tokenizer(text, return_tensors="pt", add_special_tokens=False)
    inputs.pop("token_type_ids", None)
    with torch.inference_mode():
        out = chat.model.generate(**inputs, do_sample=False, max_new_tokens=STEPS, output_logits=True,
                                  return_dict_in_generate=True, pad_token_id=chat.tokenizer.pad_token_id)
    return out.sequences[0, inputs["input_ids"].shape[1]:], torch.stack(out.logits, 1)[0]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("cls", [VisionChat, ChatLM])
def test_chat_replies_equal_the_stock_chat_path_in_half_precision(cls, dtype):
    """A request (with an image for the VLM) through selfseg's chat wrapper against the stock chat path on
    the same weights and dtype. Batched left-padded rows are not compared: in half precision their rounding
    depends on the batch in stock transformers as well (test_chat_fidelity.py holds them to rows alone in
    float32)."""
    half = cls("tiny-random", device="cpu", dtype=dtype, batch_size=4, max_new_tokens=STEPS)
    full = cls("tiny-random", device="cpu", dtype="float32", batch_size=4, max_new_tokens=STEPS)
    image = _photo(3, 56, 84) if cls is VisionChat else None
    requests = [ChatRequest.ask("list the objects in the picture", image),
                ChatRequest.ask("name the animals near the road", image)]
    firsts = []
    for request in requests:
        start, out = _half_or_skip(dtype, half.generate_batch, [request], output_logits=True,
                                   return_dict_in_generate=True)
        ids, logits = out.sequences[0, start:], torch.stack(out.logits, 1)[0]
        ref_ids, ref = _stock_reply(half, request)
        _, ref32 = _stock_reply(full, request)
        drift = _max(ref[0], ref32[0])
        assert torch.equal(ids, ref_ids)
        assert _max(logits, ref) <= SHARE * drift, (_max(logits, ref), drift)
        firsts.append(logits[0])
    assert _max(firsts[0], firsts[1]) > 2 * drift  # another prompt moves the logits by more than the drift
