"""The Grounding DINO wrapper with the tiny random-init model built in code (no download): preprocessing, the
batched forward over token rows (padding, the shared backbone, half precision), loading and its error messages.

The tiny model's outputs are meaningless noise: these tests check plumbing, never detection quality. Prompt
planning, tag scoring and the locate stage are tested in tests/locate/.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from selfseg.errors import ResourceMissingError
from selfseg.locate.grounding_dino import GroundingDinoLocator
from selfseg.models.grounding_dino import DEFAULT_MODEL, GroundingDino

LIMIT = 256
KNOWN = ["dog", "cat", "fire hydrant", "traffic light", "t-shirt", "living room", "sofa", "umbrella",
         "bicycle", "zebra", "giraffe", "surfboard", "crosswalk", "refrigerator", "statue", "kite"]


# Tiny models: one intra-op thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gd() -> GroundingDino:
    return GroundingDino.tiny(seed=0)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8))


def _prompt(gd: GroundingDino, tags: list[str]) -> list[int]:
    """The token row of the documented text form "tag . tag . ..." ([CLS] and [SEP] included)."""
    return gd.tokenizer(" ".join(f"{t} ." for t in tags))["input_ids"]


def _raw_outputs(gd) -> list:
    """Start recording the raw outputs (logits before the sigmoid, pred_boxes) of every model call."""
    calls: list = []
    handle = gd.model.register_forward_hook(
        lambda _m, _a, out: calls.append((out.logits.detach().clone(), out.pred_boxes.detach().clone())))
    return calls, handle


def test_special_ids_are_the_models_phrase_delimiters(gd):
    assert (gd.cls_id, gd.sep_id, gd.dot_id, gd.pad_id) == (101, 102, 1012, 0)
    assert gd.delimiters == {101, 102, 1012, 1029} and gd.delimiter_marks == [".", "?"]
    assert gd.max_text_len == LIMIT and gd.share_backbone is True


def test_preprocess_converts_to_rgb_on_the_models_device_and_dtype(gd, image):
    pv, pm = gd.preprocess(image)
    grey_pv, _ = gd.preprocess(image.convert("L"))
    assert pv.shape[:2] == (1, 3) and pv.dtype == gd.dtype and pv.device.type == gd.device.type
    assert pm is not None and pm.shape == (1, *pv.shape[2:])
    assert grey_pv.shape == pv.shape


def test_feature_tokens_count_what_the_encoder_receives(gd):
    seen = []
    hook = gd.model.model.encoder.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["vision_features"].shape[1]), with_kwargs=True)
    try:
        for h, w in ((8, 192), (24, 192), (3, 192), (192, 5), (128, 190), (57, 133), (100, 7)):
            gd.forward(torch.randn(1, 3, h, w), torch.ones(1, h, w, dtype=torch.long), [_prompt(gd, ["dog"])])
            assert seen.pop() == gd.feature_tokens(h, w), (h, w)
    finally:
        hook.remove()


def test_a_thin_image_is_padded_as_the_processor_pads_a_batch_only_when_the_model_needs_it(gd):
    """Stock input for every image the model can take; an image with fewer feature tokens than queries (the
    model raises on it) gets zero padding marked 0 in the pixel mask, as the processor pads a smaller image
    of a batch, and just enough of it."""
    queries = gd.model.config.num_queries
    for size in ((400, 300), (300, 40), (192, 8)):
        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        stock = gd.image_processor(images=img, return_tensors="pt")
        pv, pm = gd.preprocess(img)
        h, w = stock["pixel_values"].shape[-2:]
        assert gd.feature_tokens(h, w) >= queries
        torch.testing.assert_close(pv, stock["pixel_values"], rtol=0, atol=0)
        torch.testing.assert_close(pm, stock["pixel_mask"], rtol=0, atol=0)
    # With the tiny processor's 192-px long side no image is too thin for 20 queries; at 72 px one is (as a
    # 60:1 strip is for -base's 900 queries at 1333 px).
    processor = copy.deepcopy(gd.processor)
    processor.image_processor.size = {"shortest_edge": 16, "longest_edge": 72}
    gd = GroundingDino(gd.model, processor, is_tiny=True)
    thin = Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 2000, 3), dtype=np.uint8))
    stock = gd.image_processor(images=thin, return_tensors="pt")
    h, w = stock["pixel_values"].shape[-2:]
    assert gd.feature_tokens(h, w) < queries
    with pytest.raises(RuntimeError):  # what the model does with the processor's output alone
        gd.forward(stock["pixel_values"], stock["pixel_mask"], [_prompt(gd, ["dog"])])
    pv, pm = gd.preprocess(thin)
    ph, pw = pv.shape[-2:]
    assert pw == w and ph > h and gd.feature_tokens(ph, pw) >= queries > gd.feature_tokens(ph - 8, pw)
    torch.testing.assert_close(pv[..., :h, :], stock["pixel_values"], rtol=0, atol=0)
    assert (pv[..., h:, :] == 0).all() and (pm[:, h:] == 0).all() and (pm[:, :h] == 1).all()
    probs, boxes = gd.forward(pv, pm, [_prompt(gd, ["dog"])])
    assert torch.isfinite(probs).all()


def test_padding_batching_and_shared_backbone_do_not_change_results(gd, image):
    """Each row alone (no padding, its own backbone pass) gives the same float32 logits (before the
    sigmoid, which would hide differences in saturated scores) and boxes within 1e-4 as all rows padded
    into one batch over one shared backbone pass."""
    rows = [_prompt(gd, KNOWN * 6), _prompt(gd, KNOWN[::-1][:5]), _prompt(gd, KNOWN[::-1] * 2)]
    assert len(rows[0]) > 250 and len({len(r) for r in rows}) == 3 and max(map(len, rows)) <= LIMIT
    pv, pm = gd.preprocess(image)
    reference = GroundingDino(gd.model, gd.processor, share_backbone=False, is_tiny=True)
    calls, handle = _raw_outputs(gd)
    try:
        calls_before = gd.forward_calls
        probs, _ = gd.forward(pv, pm, rows)
        assert gd.forward_calls == calls_before + 1
        for row in rows:
            reference.forward(pv, pm, [row])
    finally:
        handle.remove()
    (logits, boxes), alone = calls[0], calls[1:]
    assert probs.shape == (len(rows), gd.model.config.num_queries, len(rows[0]))
    for r, row in enumerate(rows):
        n = len(row)  # raw logits are max_text_len wide; a row's own tokens come first
        assert (logits[r, :, :n] - alone[r][0][0, :, :n]).abs().max() < 1e-4
        assert (boxes[r] - alone[r][1][0]).abs().max() < 1e-4
        assert (probs[r, :, n:] == 0).all()  # padding: -inf logits, never a tag token
    # Rows hold different tags, so equal rows could not come from a model that ignores its text.
    n = min(len(r) for r in rows)
    assert (logits[0, :, :n] - logits[1, :, :n]).abs().max() > 1.0
    assert (boxes[0] - boxes[1]).abs().max() > 0.05


def test_a_row_over_the_text_limit_is_refused(gd, image):
    pv, pm = gd.preprocess(image)
    with pytest.raises(ValueError, match="text limit"):
        gd.forward(pv, pm, [[gd.cls_id] + [gd.dot_id] * LIMIT + [gd.sep_id]])


def test_tiny_model_outputs_follow_the_image_and_the_prompt(gd, image):
    """The tiny model's weights are re-drawn so that its outputs depend on its inputs: with transformers'
    init its boxes were exactly the encoder's grid proposals (the box head starts at zero) and the
    text-image fusion was scaled by 1e-4."""
    other = Image.fromarray(np.random.default_rng(7).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    tags, other_tags = ["dog", "cat", "sofa"], ["zebra", "kite", "statue"]
    calls, handle = _raw_outputs(gd)
    try:
        for im, t in ((image, tags), (image, tags), (other, tags), (image, other_tags)):
            gd.forward(*gd.preprocess(im), [_prompt(gd, t)])
    finally:
        handle.remove()
    (a, a_box), (again, again_box), (b, b_box), (c, c_box) = calls
    assert torch.equal(a, again) and torch.equal(a_box, again_box)       # the float noise floor is 0
    n = 8  # [CLS] w . w . w . [SEP]: every prompt here is 8 tokens
    assert (a[..., :n] - b[..., :n]).abs().max() > 1.0 and (a_box - b_box).abs().max() > 0.05   # image
    assert (a[..., :n] - c[..., :n]).abs().max() > 1.0 and (a_box - c_box).abs().max() > 0.05   # prompt
    # Boxes are regressed, not the grid proposals: widths are not just the proposals' 0.05 * 2^level.
    widths = a_box[0, :, 2]
    grid = torch.tensor([0.05 * 2 ** k for k in range(4)])
    assert (widths[:, None] - grid).abs().min(1).values.max() > 1e-3


def test_images_as_rows_of_one_forward_equal_each_image_alone(gd):
    """The locator batches prompt chunks of ONE image; two different images (same size, so no padding) as
    two rows of one Grounding DINO forward give each image's own logits and boxes within 1e-4, so nothing
    leaks between rows through the backbone, encoder, query selection or decoder either."""
    ims = [Image.fromarray(np.random.default_rng(s).integers(0, 256, (120, 200, 3), dtype=np.uint8))
           for s in (11, 12)]
    row = _prompt(gd, ["dog", "fire hydrant", "cat"])
    ids = torch.tensor([row])
    pix = [gd.image_processor(images=im, return_tensors="pt") for im in ims]

    def run(pixel_values, pixel_mask, rows):
        with torch.inference_mode():
            out = gd.model(pixel_values=pixel_values, pixel_mask=pixel_mask, input_ids=ids.expand(rows, -1),
                           attention_mask=torch.ones_like(ids).expand(rows, -1),
                           token_type_ids=torch.zeros_like(ids).expand(rows, -1))
        return out.logits, out.pred_boxes

    n = len(row)  # beyond the prompt the logits are -inf in every row
    both = run(torch.cat([p["pixel_values"] for p in pix]), torch.cat([p["pixel_mask"] for p in pix]), 2)
    for r, p in enumerate(pix):
        logits, boxes = run(p["pixel_values"], p["pixel_mask"], 1)
        assert (both[0][r, :, :n] - logits[0, :, :n]).abs().max() < 1e-4
        assert (both[1][r] - boxes[0]).abs().max() < 1e-4
    assert (both[0][0, :, :n] - both[0][1, :, :n]).abs().max() > 1.0   # the two images do differ


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_through_the_locator(image, dtype):
    """Grounding DINO in bfloat16 / float16 runs through selfseg's locator. transformers 5.0-5.16 crashed
    here ("expected scalar type BFloat16 but found Float": valid ratios and reference grids were built in
    float32); 5.17 builds them in the model's dtype. selfseg needs 5.23 or later for other reasons (the
    phrase-delimiter buffer), so this test guards the half-precision path within that range."""
    half = GroundingDinoLocator.tiny(seed=0, dtype=dtype)
    assert next(half.detector.model.parameters()).dtype == dtype
    try:
        det = half.detect(image, ["dog", "cat", "fire hydrant"], 0.0, 0.0)
    except RuntimeError as err:
        if dtype == torch.float16 and "not implemented for 'Half'" in str(err):
            pytest.skip(reason=f"this CPU build of torch has no float16 kernel for an op Grounding DINO uses: {err}")
        raise
    full = GroundingDinoLocator.tiny(seed=0).detect(image, ["dog", "cat", "fire hydrant"], 0.0, 0.0)
    assert len(det) == len(full) == half.detector.model.config.num_queries
    assert np.isfinite(det.scores).all() and np.isfinite(det.boxes).all()
    w, h = image.size
    assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= w).all() and (det.boxes[:, [1, 3]] <= h).all()
    # The same model in half precision: the sorted scores stay near float32's (bfloat16 keeps 8 mantissa
    # bits, and its rounding can change which proposals the top-k query selection keeps; measured 0.065).
    assert np.abs(np.sort(det.scores) - np.sort(full.scores)).mean() < 0.15


# --------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("cls", [GroundingDino, GroundingDinoLocator])
def test_missing_checkpoint_names_the_download_command(tmp_path, monkeypatch, cls):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceMissingError) as err:
        cls.from_pretrained(DEFAULT_MODEL, cache_dir=str(tmp_path), local_files_only=True)
    msg = str(err.value)
    assert "\n" not in msg and DEFAULT_MODEL in msg and "selfseg download --config" in msg

    (tmp_path / "broken").mkdir()
    with pytest.raises(ResourceMissingError, match="could not be read"):
        cls.from_pretrained(str(tmp_path / "broken"))


def test_from_pretrained_loads_a_saved_checkpoint(gd, image, tmp_path):
    gd.model.save_pretrained(tmp_path)
    gd.processor.save_pretrained(tmp_path)
    loaded = GroundingDino.from_pretrained(str(tmp_path), device="cpu", local_files_only=True,
                                           share_backbone=False)
    assert not loaded.is_tiny and loaded.model_id == str(tmp_path) and not loaded.share_backbone
    assert loaded.model.model.special_tokens.tolist() == [101, 102, 1012, 1029]
    row = _prompt(gd, ["dog", "fire hydrant", "zorblax"])
    (pa, ba), (pb, bb) = gd.forward(*gd.preprocess(image), [row]), loaded.forward(*loaded.preprocess(image), [row])
    assert torch.allclose(pa, pb, atol=1e-6) and torch.allclose(ba, bb, atol=1e-6)
