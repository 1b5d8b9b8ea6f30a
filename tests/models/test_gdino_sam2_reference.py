"""selfseg's Grounding DINO and SAM 2 calls against transformers' stock recipes, on the same random weights,
with each default checkpoint's own published configuration (tests/fixtures/, see its README).

The checkpoints are far too slow for a CPU test at full size (Swin-B + 6+6 layers at 800x1333 px; Hiera-L at
1024 px), so the models are shrunk copies: fewer and narrower backbone / transformer layers, while everything
the preprocessing and selfseg's code depend on is kept as published: image processor settings (resize rule,
normalisation, padding), max_text_len 256, 900 queries, 4 feature levels, the real bert-base-uncased
WordPiece vocabulary, SAM 2's 1024-px input, 256-px low-res masks and its full-width mask decoder. Weights are
re-drawn by `redraw_weights`, and each test asserts that different inputs give different outputs, so an
equality cannot come from a model that ignores its inputs. Outputs are meaningless.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfseg.locate.grounding_dino import GroundingDinoLocator
from selfseg.models.grounding_dino import GroundingDino
from selfseg.models.loading import redraw_weights
from selfseg.models.sam2 import Sam2BoxSegmenter
from selfseg.models.tiny import TINY_SAM2_GAINS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# Tiny models: one intra-op thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def _fixture(name: str, file: str) -> dict:
    return json.loads((FIXTURES / name / file).read_text(encoding="utf-8"))


def _photo(seed: int, size=(240, 320)) -> Image.Image:
    """A smooth random image (blobs, not per-pixel noise), so that resizing keeps its content."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR)


# ------------------------------------------------------------------------------------------ Grounding DINO
def _gdino(name: str, vocab: Path, seed: int = 0):
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    cfg = {k: v for k, v in _fixture(name, "config.json").items() if k not in ("architectures", "model_type")}
    # Shrink: one block per Swin stage at 16 channels (window size kept), 1 encoder and 2 decoder layers,
    # d_model 32 (GroupNorm(32, d_model) needs a multiple of 32), a one-layer BERT of width 32 over the
    # full 30522-token vocabulary. Kept: queries, feature levels, points, max_text_len, two-stage, heads' sharing.
    cfg["backbone_config"] = dict(cfg["backbone_config"], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])
    cfg["text_config"] = dict(cfg["text_config"], hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64)
    cfg.update(d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(GroundingDinoConfig(**cfg)).eval()
    redraw_weights(model, seed)
    pre = {k: v for k, v in _fixture(name, "preprocessor_config.json").items()
           if k not in ("image_processor_type", "processor_class")}
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(**pre),
                                       tokenizer=BertTokenizer(str(vocab), do_lower_case=True))
    return model, processor


@pytest.fixture(scope="module", params=["grounding_dino_base", "grounding_dino_tiny"])
def gdino(request, bert_vocab):
    model, processor = _gdino(request.param, bert_vocab)
    return GroundingDinoLocator(GroundingDino(model, processor, is_tiny=True))


TAGS = ["dog", "cat", "fire hydrant", "sofa", "traffic light", "kite"]
T_BOX, T_TEXT = 0.3, 0.3


def _stock(loc: GroundingDinoLocator, image: Image.Image, tags: list[str]):
    """transformers' documented recipe: processor(images, text) -> model -> post_process_grounded_object_detection."""
    proc = loc.detector.processor
    inputs = proc(images=image, text=[list(tags)], return_tensors="pt")
    with torch.inference_mode():
        out = loc.detector.model(**inputs)
    res = proc.post_process_grounded_object_detection(out, input_ids=inputs["input_ids"], threshold=T_BOX,
                                                      text_threshold=T_TEXT,
                                                      target_sizes=[(image.height, image.width)])[0]
    return inputs, out, res


def _match(boxes_a: np.ndarray, boxes_b: np.ndarray, atol: float) -> list[int]:
    """For each box of a, the index of the equal box of b (-1 when none)."""
    out = []
    for b in boxes_a:
        d = np.abs(boxes_b - b).max(1) if len(boxes_b) else np.zeros(0)
        out.append(int(d.argmin()) if len(d) and d.min() <= atol else -1)
    return out


def test_gdino_fixture_keeps_the_published_processing(gdino):
    ip, cfg = gdino.detector.image_processor, gdino.detector.model.config
    assert ip.size["shortest_edge"] == 800 and ip.size["longest_edge"] == 1333
    assert list(ip.image_mean) == [0.485, 0.456, 0.406] and list(ip.image_std) == [0.229, 0.224, 0.225]
    assert cfg.max_text_len == 256 and cfg.num_queries == 900 and cfg.num_feature_levels == 4
    tok = gdino.detector.tokenizer
    assert len(tok) == 30522 and tok.tokenize("hydrant")  # the real WordPiece vocab


def test_gdino_one_chunk_prompt_equals_the_stock_recipe(gdino):
    image = _photo(1)
    inputs, out, stock = _stock(gdino, image, TAGS)
    [chunk] = gdino.plan(TAGS).chunks
    # selfseg's prompt is the ids the stock processor makes of the documented text form.
    assert list(chunk.input_ids) == inputs["input_ids"][0].tolist()

    seen = {}
    original = gdino.detector.model.forward

    def spy(*args, **kwargs):
        seen.update({k: kwargs[k] for k in ("pixel_values", "pixel_mask", "input_ids", "attention_mask")})
        return original(*args, **kwargs)

    gdino.detector.model.forward = spy
    try:
        det = gdino.detect(image, TAGS, box_threshold=T_BOX, text_threshold=T_TEXT)
    finally:
        del gdino.detector.model.forward
    for key in seen:  # the model sees exactly the stock inputs
        assert torch.equal(seen[key], inputs[key]), key

    w, h = image.size
    stock_boxes = stock["boxes"].numpy().copy()
    stock_boxes[:, 0::2] = stock_boxes[:, 0::2].clip(0, w)   # selfseg clips to the image; stock does not
    stock_boxes[:, 1::2] = stock_boxes[:, 1::2].clip(0, h)
    stock_scores = stock["scores"].numpy()
    assert 5 <= len(det) <= len(stock_boxes) < 900           # thresholds bite, and some boxes survive

    # Every selfseg box is a stock box (stock scores a box by its max over ALL tokens, selfseg over the tags'
    # own tokens, so stock keeps a superset), with a score no higher; equal where stock's best token is a tag's.
    probs = out.logits[0].sigmoid()
    owner = {t: j for j, (s, e) in enumerate(chunk.spans) for t in range(s, e)}
    query_of_stock = _match(stock["boxes"].numpy(), out.pred_boxes[0].numpy() * [w, h, w, h] @ np.array(
        [[1, 0, 1, 0], [0, 1, 0, 1], [-.5, 0, .5, 0], [0, -.5, 0, .5]], dtype=np.float32), atol=1e-3)
    assert -1 not in query_of_stock
    idx = _match(det.boxes, stock_boxes, atol=1e-3)
    assert -1 not in idx
    equal_score = labelled = 0
    for d, s in enumerate(idx):
        assert det.scores[d] <= stock_scores[s] + 1e-6
        row = probs[query_of_stock[s]]
        best = int(row[: len(chunk.input_ids)].argmax())
        if best in owner:
            assert det.scores[d] == pytest.approx(stock_scores[s], abs=1e-6)
            equal_score += 1
        # Where the stock phrase is exactly one tag (all tokens over text_threshold are that tag's own),
        # selfseg's label is that tag.
        lit = {owner.get(t, -1) for t in (row > T_TEXT).nonzero().flatten().tolist()}
        if len(lit) == 1 and -1 not in lit and stock["text_labels"][s] == TAGS[lit.pop()]:
            assert det.labels[d] == stock["text_labels"][s]
            labelled += 1
    assert equal_score >= 3, equal_score
    # Labels are comparable only where the stock phrase is a whole tag (all of its tokens, and only its, over
    # text_threshold). With this random model that happens for many boxes under transformers 5.24; under
    # 5.17 its text features differ and the lit tokens are partial tags ("##nt"), so there is nothing to
    # compare, and only boxes and scores are checked.
    if any(label in TAGS for label in stock["text_labels"]):
        assert labelled >= 3, labelled


def test_gdino_outputs_follow_image_and_prompt(gdino):
    a = _stock(gdino, _photo(1), TAGS)[1]
    b = _stock(gdino, _photo(2), TAGS)[1]
    c = _stock(gdino, _photo(1), ["zebra", "bicycle", "umbrella", "statue", "giraffe", "crosswalk"])[1]
    again = _stock(gdino, _photo(1), TAGS)[1]
    assert torch.equal(a.logits, again.logits)                        # deterministic: noise floor is 0
    n = 8  # [CLS] + the first tokens, present in every prompt
    assert (a.logits[..., :n] - b.logits[..., :n]).abs().max() > 1.0     # another image
    assert (a.pred_boxes - b.pred_boxes).abs().max() > 0.05
    assert (a.logits[..., :n] - c.logits[..., :n]).abs().max() > 1.0     # another prompt
    assert (a.pred_boxes - c.pred_boxes).abs().max() > 0.05


def test_gdino_chunked_prompt_equals_the_stock_recipe_per_chunk(gdino):
    """A prompt forced into several chunks (the text limit lowered to 8 tokens) gives, chunk by chunk, what
    the stock recipe gives for that chunk's text: every chunk is its own query set. It is not the same as the
    unchunked prompt: Grounding DINO's fusion layers and query selection read all of a prompt's tokens, so a
    tag's boxes depend on the tags prompted with it (that is the model, not the chunking)."""
    image = _photo(3)
    chunked = GroundingDinoLocator(GroundingDino(gdino.detector.model, gdino.detector.processor, is_tiny=True),
                                   max_chunks_per_forward=2)
    chunked.detector.max_text_len = 8
    plan = chunked.plan(TAGS)
    assert len(plan.chunks) >= 3
    det = chunked.detect(image, TAGS, box_threshold=T_BOX, text_threshold=T_TEXT)
    assert chunked.detector.forward_calls == -(-len(plan.chunks) // 2)        # chunks really ran as rows together

    w, h = image.size
    expected_boxes, expected_scores, expected_labels = [], [], []
    for chunk in plan.chunks:
        tags = [plan.tags[i] for i in chunk.tags]
        inputs, out, _ = _stock(gdino, image, tags)
        assert list(chunk.input_ids) == inputs["input_ids"][0].tolist()
        probs = out.logits[0].sigmoid()
        own = torch.tensor([t for s, e in chunk.spans for t in range(s, e)])
        score = probs[:, own].max(1).values
        keep = score > T_BOX
        # each box's tag: the one whose own tokens score highest (the first on a tie)
        per_tag = torch.stack([probs[:, s:e].max(1).values for s, e in chunk.spans], 1)
        expected_labels += [tags[j] for j in per_tag[keep].argmax(1).tolist()]
        cx, cy, bw, bh = out.pred_boxes[0][keep].unbind(-1)
        xyxy = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, w)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, h)
        expected_boxes.append(xyxy.numpy())
        expected_scores.append(score[keep].numpy())
    expected_boxes, expected_scores = np.concatenate(expected_boxes), np.concatenate(expected_scores)
    assert len(det) == len(expected_boxes) > 0
    idx = _match(det.boxes, expected_boxes, atol=1e-3)
    assert sorted(idx) == list(range(len(expected_boxes)))
    np.testing.assert_allclose(det.scores, expected_scores[idx], atol=1e-5, rtol=0)
    assert det.labels == [expected_labels[i] for i in idx]
    assert len(set(det.labels)) >= 3  # tags from several chunks: a label taken from the wrong chunk would show

    whole = gdino.detect(image, TAGS, box_threshold=T_BOX, text_threshold=T_TEXT)
    assert len(whole.boxes) != len(det.boxes) or not np.allclose(np.sort(whole.scores), np.sort(det.scores))


# ------------------------------------------------------------------------------------------ SAM 2
def _sam2_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A shrunk copy of facebook/sam2.1-hiera-large written as the hub checkpoint is: its config.json
    (model_type sam2_video, as published), processor_config.json and preprocessor_config.json, and weights."""
    from transformers import Sam2Config, Sam2Model

    cfg = copy.deepcopy(_fixture("sam2.1_hiera_large", "config.json"))
    # Shrink the Hiera trunk only (1/1/2/1 blocks at 16..128 channels, one global-attention block); keep the
    # 1024-px input, the 256/128/64 px feature maps, the 256-wide FPN, prompt encoder and mask decoder.
    cfg["vision_config"]["backbone_config"].update(
        blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128], hidden_size=16,
        num_attention_heads=1, num_attention_heads_per_stage=[1, 1, 2, 2], global_attention_blocks=[3])
    cfg["vision_config"]["backbone_channel_list"] = [128, 64, 32, 16]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Sam2Model(Sam2Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}))
    redraw_weights(model, seed, TINY_SAM2_GAINS)
    model.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    for name in ("processor_config.json", "preprocessor_config.json"):
        shutil.copy(FIXTURES / "sam2.1_hiera_large" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def sam(tmp_path_factory) -> Sam2BoxSegmenter:
    folder = _sam2_checkpoint(tmp_path_factory.mktemp("sam2.1-hiera-large-shrunk"))
    # selfseg's own loading code, on files laid out as the hub's.
    return Sam2BoxSegmenter.from_pretrained(str(folder), device="cpu", dtype="float32", local_files_only=True)


SAM_IMAGE_HW = (300, 420)  # not square: the processor squashes to 1024 x 1024, masks come back at 300 x 420
SAM_BOXES = np.array([[20, 30, 200, 260], [0, 0, 419, 299], [150, 40, 400, 200], [60, 120, 330, 290],
                      [300, 10, 410, 110]], dtype=np.float32)


def _capture(seg: Sam2BoxSegmenter):
    """Record (pred_masks, iou_scores) of each Sam2Model call."""
    calls = []
    handle = seg.model.register_forward_hook(
        lambda _m, _a, out: calls.append((out.pred_masks.detach().clone(), out.iou_scores.detach().clone())))
    return calls, handle


def test_sam2_fixture_keeps_the_published_processing(sam):
    ip, cfg = sam.processor.image_processor, sam.model.config
    assert sam.processor.target_size == 1024
    assert ip.size == {"height": 1024, "width": 1024} and ip.mask_size == {"height": 256, "width": 256}
    assert list(ip.image_mean) == [0.485, 0.456, 0.406] and list(ip.image_std) == [0.229, 0.224, 0.225]
    assert cfg.mask_decoder_config.hidden_size == 256 and cfg.prompt_encoder_config.image_size == 1024


def test_sam2_masks_and_scores_equal_the_stock_recipe(sam):
    """Stock: Sam2Processor(images, input_boxes) -> Sam2Model(pixel_values, input_boxes) -> post_process_masks.
    Deliberate difference: selfseg asks for one mask per box (multimask_output=False, as SAM 2's own
    predictor does for a box prompt); the stock call is made with the same flag (its default, 3 masks per
    box, would be a different output, not a different computation)."""
    image = _photo(4, SAM_IMAGE_HW)
    inputs = sam.processor(images=image, input_boxes=[SAM_BOXES.tolist()], return_tensors="pt")
    with torch.inference_mode():
        out = sam.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"],
                        multimask_output=False)
    stock_masks = sam.processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][:, 0].numpy()
    stock_logits = sam.processor.post_process_masks(out.pred_masks, inputs["original_sizes"],
                                                    binarize=False)[0][:, 0]

    calls, handle = _capture(sam)
    try:
        ours = sam.segment(image, SAM_BOXES)
    finally:
        handle.remove()
    [(masks, scores)] = calls
    assert (masks - out.pred_masks).abs().max() < 1e-4
    assert (scores - out.iou_scores).abs().max() < 1e-4
    np.testing.assert_allclose(ours.scores, out.iou_scores[0, :, 0].numpy(), atol=1e-4, rtol=0)
    # Identical after thresholding wherever the stock logit is farther from 0 than the logits differ (the
    # bilinear upsampling is a convex combination, so it cannot widen a 1e-4 difference).
    sure = stock_logits.abs().numpy() > 1e-4
    assert np.array_equal(ours.masks[sure], stock_masks[sure])
    assert (~sure).mean() < 1e-4

    # Not vacuous: the masks and scores differ from box to box and from image to image.
    assert min((stock_masks[i] != stock_masks[j]).mean() for i in range(5) for j in range(i)) > 0.02
    assert np.ptp(ours.scores) > 0.01
    other = sam.segment(_photo(5, SAM_IMAGE_HW), SAM_BOXES)
    assert (other.masks != ours.masks).mean() > 0.02 and np.abs(other.scores - ours.scores).max() > 1e-3


def _rows(seg: Sam2BoxSegmenter, image: Image.Image):
    """(mask logits, IoU scores) of all boxes in one decoder call, 2 per call, and one box per call."""
    calls, handle = _capture(seg)
    try:
        seg.segment(image, SAM_BOXES)
        seg.segment(image, SAM_BOXES, max_boxes_per_call=2)
        for box in SAM_BOXES:
            seg.segment(image, box[None])
    finally:
        handle.remove()
    assert len(calls) == 1 + 3 + len(SAM_BOXES)
    return calls[0], [torch.cat(t, 1) for t in zip(*calls[1:4])], [torch.cat(t, 1) for t in zip(*calls[4:])]


def test_sam2_boxes_per_call_rows_equal_each_box_alone(sam):
    """A box's mask logits and IoU score do not depend on the other boxes decoded with it.

    In float64 the rows agree to ~1e-13: nothing leaks between boxes. In float32 they agree to ~2e-5 of the
    logits' scale (measured up to 3.1e-4 on logits of magnitude 17 with this full-width decoder): the CPU
    kernels round differently for another batch size, so the float32 bound is relative to that scale."""
    image = _photo(6, SAM_IMAGE_HW)
    together, chunked, alone = _rows(sam, image)
    scale = float(together[0].abs().max())
    assert scale > 5.0
    for other in (chunked, alone):
        assert (other[0] - together[0]).abs().max() <= 1e-4 * scale    # mask logits
        assert (other[1] - together[1]).abs().max() < 1e-4              # IoU scores
    assert (together[0][0, 0] - together[0][0, 1]).abs().max() > 1.0  # rows differ: equality is not trivial

    exact = Sam2BoxSegmenter(copy.deepcopy(sam.model), sam.processor, torch.device("cpu"), torch.float64,
                             is_tiny=False, model_id="float64 copy")
    together, chunked, alone = _rows(exact, image)
    for other in (chunked, alone):
        assert (other[0] - together[0]).abs().max() < 1e-9
        assert (other[1] - together[1]).abs().max() < 1e-9
