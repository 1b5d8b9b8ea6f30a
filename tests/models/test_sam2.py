"""Sam2BoxSegmenter with the tiny random-init SAM 2 built in code. Its masks and scores are meaningless;
these tests check shapes, dtypes, box coordinates, batching (image encoded once, all boxes in one decoder
call), agreement with transformers' documented SAM 2 recipe, and checkpoint loading / error messages."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from selfseg.config import TINY_MODEL
from selfseg.errors import ResourceMissingError
from selfseg.models.sam2 import DEFAULT_SAM2, BoxMasks, Sam2BoxSegmenter

H, W = 90, 150  # deliberately not square: the processor squashes, the masks must come back at (H, W)
BOXES = np.array([[10, 10, 50, 60], [0, 0, 149, 89], [30, 20, 100, 80], [60, 5, 140, 85], [5, 40, 70, 88]],
                 dtype=np.float32)


# Tiny models: one intra-op thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seg() -> Sam2BoxSegmenter:
    return Sam2BoxSegmenter.tiny(seed=0)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8))


@contextmanager
def spy(**modules):
    """Record (args, kwargs) of every forward call of the named modules."""
    calls = {name: [] for name in modules}
    handles = [m.register_forward_hook(lambda _m, a, kw, _o, n=name: calls[n].append((a, kw)), with_kwargs=True)
               for name, m in modules.items()]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def test_shapes_and_dtypes(seg, image):
    out = seg.segment(image, BOXES)
    assert isinstance(out, BoxMasks)
    masks, scores = out  # unpacks as a pair
    assert masks.shape == (len(BOXES), H, W) and masks.dtype == np.bool_
    assert scores.shape == (len(BOXES),) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))  # SAM 2's IoU head ends in a sigmoid


def test_image_encoded_once_and_all_boxes_in_one_decoder_call(seg, image):
    m = seg.model
    before = (seg.encoder_calls, seg.decoder_calls)
    with spy(encoder=m.vision_encoder, decoder=m.mask_decoder, prompt=m.prompt_encoder) as calls:
        seg.segment(image, BOXES)
    assert len(calls["encoder"]) == 1 and len(calls["decoder"]) == 1
    assert (seg.encoder_calls - before[0], seg.decoder_calls - before[1]) == (1, 1)
    (pixels,), _ = calls["encoder"][0]
    assert pixels.shape[0] == 1  # one image
    _, kw = calls["decoder"][0]
    assert kw["sparse_prompt_embeddings"].shape[:2] == (1, len(BOXES))  # one image, N box prompts
    assert kw["multimask_output"] is False


def test_boxes_reach_the_model_scaled_to_its_square_input(seg, image):
    """xyxy pixels of the (W x H) image -> xyxy pixels of the model's (S x S) input: x * S/W, y * S/H."""
    side = seg.processor.target_size
    with spy(prompt=seg.model.prompt_encoder) as calls:
        seg.segment(image, BOXES)
    _, kw = calls["prompt"][0]
    expected = BOXES * np.array([side / W, side / H, side / W, side / H], dtype=np.float32)
    np.testing.assert_allclose(kw["input_boxes"][0].numpy(), expected, rtol=1e-6)
    assert kw["input_points"] is None  # boxes alone, no padding point prompts


def test_batched_boxes_equal_one_box_at_a_time(seg, image):
    batched = seg.segment(image, BOXES)
    with spy(encoder=seg.model.vision_encoder, decoder=seg.model.mask_decoder) as calls:
        chunked = seg.segment(image, BOXES, max_boxes_per_call=2)
    assert len(calls["encoder"]) == 1 and len(calls["decoder"]) == 3  # embedding still computed once
    singles = [seg.segment(image, b[None]) for b in BOXES]
    for other in (chunked, BoxMasks(np.concatenate([s.masks for s in singles]),
                                    np.concatenate([s.scores for s in singles]))):
        np.testing.assert_allclose(other.scores, batched.scores, rtol=1e-5, atol=1e-6)
        assert (other.masks != batched.masks).mean() < 1e-3  # a float-noise pixel on a boundary at most


def test_matches_transformers_recipe(seg, image):
    """Same result as the documented processor -> Sam2Model(pixel_values, input_boxes) -> post_process_masks."""
    inputs = seg.processor(images=image, input_boxes=BOXES[None].tolist(), return_tensors="pt")
    with torch.inference_mode():
        out = seg.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"],
                        multimask_output=False)
    ref = seg.processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][:, 0].numpy()
    ours = seg.segment(image, BOXES)
    np.testing.assert_allclose(ours.scores, out.iou_scores[0, :, 0].numpy(), rtol=1e-5, atol=1e-6)
    assert (ours.masks != ref).mean() < 1e-3


@pytest.mark.parametrize("boxes", [np.zeros((0, 4), np.float32), [], np.zeros(0)])
def test_zero_boxes_no_model_call(seg, image, boxes):
    with spy(encoder=seg.model.vision_encoder, decoder=seg.model.mask_decoder) as calls:
        masks, scores = seg.segment(image, boxes)
    assert masks.shape == (0, H, W) and masks.dtype == np.bool_
    assert scores.shape == (0,) and scores.dtype == np.float32
    assert calls == {"encoder": [], "decoder": []}


def test_bad_boxes(seg, image):
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        seg.segment(image, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        seg.segment(image, np.array([[0, 0, np.nan, 5]]))


def test_non_rgb_image(seg):
    gray = Image.new("L", (W, H), 128)
    assert seg.segment(gray, BOXES[:2]).masks.shape == (2, H, W)


def test_missing_checkpoint_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on an air-gapped machine: no hub probe, no retries
    with pytest.raises(ResourceMissingError) as err:
        Sam2BoxSegmenter.from_pretrained(DEFAULT_SAM2, device="cpu", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "selfseg download" in msg and DEFAULT_SAM2 in msg and "\n" not in msg
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ResourceMissingError, match="selfseg download"):
        Sam2BoxSegmenter.from_pretrained(DEFAULT_SAM2, device="cpu", cache_dir=str(tmp_path),
                                         local_files_only=True)


def test_unreadable_local_folder(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ResourceMissingError, match="could not be read"):
        Sam2BoxSegmenter.from_pretrained(str(tmp_path), device="cpu", local_files_only=True)


def test_from_pretrained_loads_a_saved_checkpoint(seg, image, tmp_path):
    seg.model.save_pretrained(tmp_path)
    seg.processor.save_pretrained(tmp_path)
    loaded = Sam2BoxSegmenter.from_pretrained(str(tmp_path), device="cpu", dtype="float32", local_files_only=True)
    assert not loaded.is_tiny and loaded.model_id == str(tmp_path)
    assert loaded.processor.target_size == seg.processor.target_size
    a, b = seg.segment(image, BOXES), loaded.segment(image, BOXES)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_tiny_sentinel_and_seed():
    tiny = Sam2BoxSegmenter.from_pretrained(TINY_MODEL, device="cpu")
    assert tiny.is_tiny and tiny.model_id == TINY_MODEL
    flat = lambda s: torch.cat([p.flatten() for p in s.model.parameters()])
    assert torch.equal(flat(tiny), flat(Sam2BoxSegmenter.tiny(seed=0)))
    assert not torch.equal(flat(tiny), flat(Sam2BoxSegmenter.tiny(seed=1)))


def _decoder_outputs(seg, image, boxes, **kw):
    """(mask logits, IoU scores) of every Sam2Model call made by one segment()."""
    calls = []
    handle = seg.model.register_forward_hook(
        lambda _m, _a, out: calls.append((out.pred_masks.detach().clone(), out.iou_scores.detach().clone())))
    try:
        seg.segment(image, boxes, **kw)
    finally:
        handle.remove()
    return torch.cat([c[0] for c in calls], 1), torch.cat([c[1] for c in calls], 1)


def test_tiny_model_outputs_follow_the_image_and_the_box(seg, image):
    """The tiny model's weights are re-drawn so that its outputs depend on its inputs; with transformers'
    init its mask logits were ~1e-4 and its IoU scores 0.5001 for any image or box."""
    other_image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8))
    logits, scores = _decoder_outputs(seg, image, BOXES)
    again = _decoder_outputs(seg, image, BOXES)
    assert torch.equal(logits, again[0]) and torch.equal(scores, again[1])   # the float noise floor is 0
    other_logits, other_scores = _decoder_outputs(seg, other_image, BOXES)
    assert (logits - other_logits).abs().max() > 1.0                          # another image
    assert (scores - other_scores).abs().max() > 1e-3
    assert min((logits[0, i] - logits[0, j]).abs().max() for i in range(5) for j in range(i)) > 1.0  # boxes
    assert float(scores.max() - scores.min()) > 0.01
    masks = seg.segment(image, BOXES).masks
    assert min((masks[i] != masks[j]).mean() for i in range(5) for j in range(i)) > 0.02


def test_boxes_per_call_rows_equal_each_box_alone_in_logits(seg, image):
    """A box's float32 mask logits and IoU score are those of the box decoded alone (within 1e-4), whether
    it shares the decoder call with all other boxes or with one."""
    logits, scores = _decoder_outputs(seg, image, BOXES)
    chunked = _decoder_outputs(seg, image, BOXES, max_boxes_per_call=2)
    alone = [_decoder_outputs(seg, image, b[None]) for b in BOXES]
    alone = (torch.cat([a[0] for a in alone], 1), torch.cat([a[1] for a in alone], 1))
    for other in (chunked, alone):
        assert (other[0] - logits).abs().max() < 1e-4
        assert (other[1] - scores).abs().max() < 1e-4


def _other_image(seed: int, size=(H, W)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def test_images_of_a_batch_are_encoded_in_one_call_and_each_equals_its_image_alone(seg, image):
    """Three images of different sizes (one with no boxes): ONE encoder call over the two with boxes, one
    decoder call per image, and each image's masks and scores those of `segment` on it alone."""
    images = [image, _other_image(1, (64, 40)), _other_image(2, (120, 100))]
    boxes = [BOXES, np.zeros((0, 4)), BOXES[1:4] * 0.5]
    with spy(encoder=seg.model.vision_encoder, decoder=seg.model.mask_decoder) as calls:
        batch = seg.segment_batch(images, boxes, images_per_call=3)
    assert len(calls["encoder"]) == 1 and calls["encoder"][0][0][0].shape[0] == 2
    assert len(calls["decoder"]) == 2
    # by default a CPU encodes one image per call (faster there), with the same results
    with spy(encoder=seg.model.vision_encoder) as calls:
        default = seg.segment_batch(images, boxes)
    assert [c[0][0].shape[0] for c in calls["encoder"]] == [1, 1]
    for got, ref in zip(default, batch):
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5, atol=1e-5)
    alone = [seg.segment(im, b) for im, b in zip(images, boxes)]
    assert batch[1].masks.shape == (0, 64, 40) and batch[1].scores.shape == (0,)
    for got, ref in zip(batch, alone):
        assert got.masks.shape == ref.masks.shape
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5, atol=1e-5)
        assert got.masks.size == 0 or (got.masks != ref.masks).mean() < 1e-3
    # not vacuous: the same boxes on another image of the same size give other scores
    assert np.abs(seg.segment(_other_image(7), BOXES).scores - batch[0].scores).max() > 1e-3


@pytest.mark.parametrize("size", [(H, W), (120, 70)], ids=["same size", "another size"])
def test_a_batch_matches_the_stock_batched_recipe(seg, image, size):
    """Two images with as many boxes each go through transformers' own batched recipe (processor over both,
    one Sam2Model call, post_process_masks): the same scores and masks as segment_batch, also when the second
    image has another size and orientation (each box scaled by its own image's size, each mask upsampled to
    it)."""
    images = [image, _other_image(3, size)]
    boxes = [BOXES[:3], np.minimum(BOXES[2:], [size[1] - 1, size[0] - 1] * 2)]
    inputs = seg.processor(images=images, input_boxes=[b.tolist() for b in boxes], return_tensors="pt")
    with torch.inference_mode():
        out = seg.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=False)
    refs = seg.processor.post_process_masks(out.pred_masks, inputs["original_sizes"])
    ours = seg.segment_batch(images, boxes, images_per_call=2)
    for k in range(2):
        assert ours[k].masks.shape[1:] == images[k].size[::-1]
        np.testing.assert_allclose(ours[k].scores, out.iou_scores[k, :, 0].numpy(), rtol=1e-5, atol=1e-5)
        assert (ours[k].masks != refs[k][:, 0].numpy()).mean() < 1e-3
    # not vacuous: the first image's boxes on another image of its size give other scores
    assert np.abs(seg.segment(_other_image(3), boxes[0]).scores - ours[0].scores).max() > 1e-3


def test_a_batch_needs_one_box_array_per_image(seg, image):
    with pytest.raises(ValueError, match="one box array per image"):
        seg.segment_batch([image, image], [BOXES])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        seg.segment_batch([image, image], [BOXES, np.zeros((2, 3))])
