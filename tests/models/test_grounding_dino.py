"""Grounding DINO locator plumbing with the tiny random-init model built in code (no download).

The tiny model's boxes, scores and labels are meaningless noise: these tests check prompt chunking, batching,
tag mapping, box geometry, loading and error messages, never detection quality. Thresholds are 0.0 so the
random model returns boxes.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from selfseg.errors import ResourceMissingError
from selfseg.models.grounding_dino import DEFAULT_MODEL, GroundingDinoLocator, PromptChunk, _tag_scores, pack_greedy

LIMIT = 256


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny model's ops are far too small to gain from intra-op threads, and on a busy 2-core machine
    torch's spinning OpenMP threads made these forwards up to 50x slower (0.06 s -> 3 s each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loc() -> GroundingDinoLocator:
    return GroundingDinoLocator.tiny(seed=0)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def many_tags() -> list[str]:
    """340 distinct tags of 1 to ~30 tokens: known words, compounds, made-up words that WordPiece splits into
    many pieces, hyphenated words, and a few long descriptions."""
    rng = random.Random(0)
    known = ["dog", "cat", "fire hydrant", "traffic light", "t-shirt", "living room", "sofa", "umbrella",
             "bicycle", "zebra", "giraffe", "surfboard", "crosswalk", "refrigerator", "statue", "kite"]
    syllables = ["zor", "bla", "x", "qui", "mpt", "ra", "ven", "oo", "th", "ly", "gar", "n", "dle", "pho"]
    tags = list(known)
    while len(tags) < 330:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
        tag = word if rng.random() < 0.7 else f"{rng.choice(known)} {word}"
        if tag not in tags:
            tags.append(tag)
    for n in (12, 25, 40, 60):  # long descriptions make the packing non-trivial
        tags.append(" ".join(rng.choice(known) for _ in range(n // 2)) + f" number{n}")
    return tags


def _spy_forward(monkeypatch, loc) -> list[dict]:
    calls: list[dict] = []
    original = loc.model.forward

    def forward(*args, **kwargs):
        calls.append({k: kwargs[k].clone() for k in ("input_ids", "attention_mask", "pixel_values")})
        return original(*args, **kwargs)

    monkeypatch.setattr(loc.model, "forward", forward)
    return calls


def _min_contiguous_chunks(costs: list[int], capacity: int) -> int:
    """Fewest contiguous chunks, by dynamic programming over every split (independent of the greedy rule)."""
    best = [0] + [10**9] * len(costs)
    for end in range(1, len(costs) + 1):
        total = 0
        for start in range(end - 1, -1, -1):
            total += costs[start]
            if total > capacity:
                break
            best[end] = min(best[end], best[start] + 1)
    return best[-1]


# --------------------------------------------------------------------------------------------- chunking
def test_many_tags_fill_prompts_within_the_limit_in_fewest_passes(loc, image, many_tags, monkeypatch):
    calls = _spy_forward(monkeypatch, loc)
    det = loc.detect(image, many_tags, box_threshold=0.0, text_threshold=0.0)

    # The minimum, from the model's own tokenizer: each tag's tokens plus its " .", [CLS] + [SEP] per prompt.
    costs = [len(loc.tokenizer.tokenize(t)) + 1 for t in many_tags]
    assert max(costs) > 20 and min(costs) == 2          # the list mixes short and long tags
    expected = _min_contiguous_chunks(costs, LIMIT - 2)
    assert det.passes == expected
    assert expected < len(many_tags) // 20               # packed, not one tag per pass
    assert sum(c["input_ids"].shape[0] for c in calls) == expected
    for c in calls:
        assert c["input_ids"].shape[1] <= LIMIT
        assert int(c["attention_mask"].sum(1).max()) <= LIMIT
    assert len(calls) == -(-expected // loc.max_chunks_per_forward)  # batched forwards of up to 4 rows

    assert len(det) > 0
    assert set(det.labels) <= set(many_tags)


def test_prompt_rows_are_what_the_tokenizer_makes_of_the_prompt_text(loc, many_tags):
    plan = loc.plan(many_tags)
    assert [plan.tags[i] for c in plan.chunks for i in c.tags] == many_tags  # each tag once, in order
    for chunk in plan.chunks:
        text = " ".join(f"{plan.tags[i]} ." for i in chunk.tags)
        assert list(chunk.input_ids) == loc.tokenizer(text)["input_ids"]
        assert len(chunk.input_ids) <= LIMIT
        for i, (s, e) in zip(chunk.tags, chunk.spans):
            assert chunk.input_ids[s:e] == tuple(loc.tokenizer(plan.tags[i], add_special_tokens=False)["input_ids"])
            assert chunk.input_ids[e] == loc.tokenizer.convert_tokens_to_ids(".")
    # Greedy: no chunk could have taken the next chunk's first tag.
    for chunk, nxt in zip(plan.chunks, plan.chunks[1:]):
        first = nxt.spans[0]
        assert len(chunk.input_ids) + (first[1] - first[0]) + 1 > LIMIT


def test_greedy_packing_is_minimal_and_valid():
    rng = random.Random(1)
    for _ in range(300):
        capacity = rng.randint(1, 30)
        weights = [rng.randint(0, capacity) for _ in range(rng.randint(0, 14))]
        chunks = pack_greedy(weights, capacity)
        assert [i for c in chunks for i in c] == list(range(len(weights)))
        assert all(sum(weights[i] for i in c) <= capacity for c in chunks)
        assert len(chunks) == _min_contiguous_chunks(weights, capacity)
    with pytest.raises(ValueError):
        pack_greedy([3, 9], 8)


def test_image_preprocessed_once_and_rows_batched(loc, image, many_tags, monkeypatch):
    seen = []
    original = loc.image_processor

    def spy(*args, **kwargs):
        seen.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(loc, "image_processor", spy)
    calls = _spy_forward(monkeypatch, loc)
    monkeypatch.setattr(loc, "max_chunks_per_forward", 2)
    det = loc.detect(image, many_tags, 0.0, 0.0)
    assert len(seen) == 1
    assert len(calls) == -(-det.passes // 2)             # ceil(chunks / 2) forwards, each up to 2 rows
    first = calls[0]["pixel_values"][0]
    assert all(torch.equal(c["pixel_values"][r], first) for c in calls for r in range(len(c["pixel_values"])))


def _raw_outputs(loc) -> list:
    """Start recording the raw outputs (logits before the sigmoid, pred_boxes) of every model call."""
    calls: list = []
    handle = loc.model.register_forward_hook(
        lambda _m, _a, out: calls.append((out.logits.detach().clone(), out.pred_boxes.detach().clone())))
    return calls, handle


def test_padding_batching_and_shared_backbone_do_not_change_results(loc, image, many_tags):
    """Each chunk alone (no padding, its own backbone pass) gives the same float32 logits (before the
    sigmoid, which would hide differences in saturated scores) and boxes within 1e-4 as all chunks padded
    into one batch over one shared backbone pass."""
    chunks = loc.plan(many_tags).chunks
    assert len(chunks) >= 3
    pix = loc.image_processor(images=image, return_tensors="pt")
    pv, pm = pix["pixel_values"], pix["pixel_mask"]
    reference = GroundingDinoLocator(loc.model, loc.processor, share_backbone=False, is_tiny=True)
    calls, handle = _raw_outputs(loc)
    try:
        with torch.inference_mode():
            probs, _ = loc._forward(pv, pm, chunks)
            for chunk in chunks:
                reference._forward(pv, pm, [chunk])
    finally:
        handle.remove()
    (logits, boxes), alone = calls[0], calls[1:]
    for r, chunk in enumerate(chunks):
        n = len(chunk.input_ids)  # raw logits are max_text_len wide; a chunk's own tokens come first
        assert (logits[r, :, :n] - alone[r][0][0, :, :n]).abs().max() < 1e-4
        assert (boxes[r] - alone[r][1][0]).abs().max() < 1e-4
        assert (probs[r, :, n:] == 0).all()  # padding: -inf logits, never a tag token
    # Rows hold different tags, so equal rows could not come from a model that ignores its text.
    n = min(len(c.input_ids) for c in chunks)
    assert (logits[0, :, :n] - logits[1, :, :n]).abs().max() > 1.0
    assert (boxes[0] - boxes[1]).abs().max() > 0.05


def test_tiny_model_outputs_follow_the_image_and_the_prompt(loc, image):
    """The tiny model's weights are re-drawn so that its outputs depend on its inputs: with transformers'
    init its boxes were exactly the encoder's grid proposals (the box head starts at zero) and the
    text-image fusion was scaled by 1e-4."""
    other = Image.fromarray(np.random.default_rng(7).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    tags, other_tags = ["dog", "cat", "sofa"], ["zebra", "kite", "statue"]
    calls, handle = _raw_outputs(loc)
    try:
        for im, t in ((image, tags), (image, tags), (other, tags), (image, other_tags)):
            loc.detect(im, t, 0.0, 0.0)
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


def test_images_as_rows_of_one_forward_equal_each_image_alone(loc):
    """The locator batches prompt chunks of ONE image; two different images (same size, so no padding) as
    two rows of one Grounding DINO forward give each image's own logits and boxes within 1e-4, so nothing
    leaks between rows through the backbone, encoder, query selection or decoder either."""
    ims = [Image.fromarray(np.random.default_rng(s).integers(0, 256, (120, 200, 3), dtype=np.uint8))
           for s in (11, 12)]
    [chunk] = loc.plan(["dog", "fire hydrant", "cat"]).chunks
    ids = torch.tensor([chunk.input_ids])
    pix = [loc.image_processor(images=im, return_tensors="pt") for im in ims]

    def run(pixel_values, pixel_mask, rows):
        with torch.inference_mode():
            out = loc.model(pixel_values=pixel_values, pixel_mask=pixel_mask, input_ids=ids.expand(rows, -1),
                            attention_mask=torch.ones_like(ids).expand(rows, -1),
                            token_type_ids=torch.zeros_like(ids).expand(rows, -1))
        return out.logits, out.pred_boxes

    n = len(chunk.input_ids)  # beyond the prompt the logits are -inf in every row
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
    assert next(half.model.parameters()).dtype == dtype
    try:
        det = half.detect(image, ["dog", "cat", "fire hydrant"], 0.0, 0.0)
    except RuntimeError as err:
        if dtype == torch.float16 and "not implemented for 'Half'" in str(err):
            pytest.skip(reason=f"this CPU build of torch has no float16 kernel for an op Grounding DINO uses: {err}")
        raise
    full = GroundingDinoLocator.tiny(seed=0).detect(image, ["dog", "cat", "fire hydrant"], 0.0, 0.0)
    assert len(det) == len(full) == half.model.config.num_queries
    assert np.isfinite(det.scores).all() and np.isfinite(det.boxes).all()
    w, h = image.size
    assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= w).all() and (det.boxes[:, [1, 3]] <= h).all()
    # The same model in half precision: the sorted scores stay near float32's (bfloat16 keeps 8 mantissa
    # bits, and its rounding can change which proposals the top-k query selection keeps; measured 0.065).
    assert np.abs(np.sort(det.scores) - np.sort(full.scores)).mean() < 0.15


# --------------------------------------------------------------------------------------------- labels
def test_each_box_takes_the_best_tag_by_its_token_span(loc, image, monkeypatch):
    """Planted logits show what the stock post-processing makes of them (merged, partial, empty phrases, a
    bare '.') and that detect() labels each box with exactly one tag instead."""
    tags = ["dog", "cat", "fire hydrant"]
    chunk = loc.plan(tags).chunks[0]
    (dog, dog_end), (cat, _), (_, hydrant_end) = chunk.spans
    hydrant, dot = hydrant_end - 1, dog_end
    planted = {0: {dog: 3.0, cat: 2.0},   # two tags lit: stock merges them
               1: {hydrant: 3.0},         # one token of a two-token tag: stock keeps half the tag
               2: {0: 5.0},               # only [CLS]: stock keeps the box with an empty phrase
               3: {dot: 5.0},             # only a separator: stock labels the box "."
               4: {cat: 1.0, dog: 1.0}}   # a tie between two tags
    original = loc.model.forward
    captured = {}

    def forward(*args, **kwargs):
        out = original(*args, **kwargs)
        logits = torch.full_like(out.logits, -9.0)
        logits[..., len(chunk.input_ids):] = float("-inf")
        for q, tokens in planted.items():
            for t, v in tokens.items():
                logits[0, q, t] = v
        out.logits = logits
        captured["out"] = out
        return out

    monkeypatch.setattr(loc.model, "forward", forward)
    det = loc.detect(image, tags, box_threshold=0.5, text_threshold=0.5)

    stock = loc.processor.post_process_grounded_object_detection(
        captured["out"], input_ids=torch.tensor([chunk.input_ids]), threshold=0.5, text_threshold=0.5)[0]
    assert stock["text_labels"] == ["dog cat", "hydrant", "", ".", "dog cat"]

    s3, s1 = torch.sigmoid(torch.tensor([3.0, 1.0])).tolist()
    # Queries 0 and 1 (score sigmoid(3)), then 4 (the tie goes to the earlier tag); 2 and 3 name no tag.
    assert det.labels == ["dog", "fire hydrant", "dog"]
    np.testing.assert_allclose(det.scores, [s3, s3, s1], rtol=1e-6)
    assert set(det.labels) <= set(tags)


def test_tag_scores_rule():
    chunk = PromptChunk(tags=(0, 1, 2), spans=((1, 2), (3, 5), (6, 7)), input_ids=tuple(range(8)))
    probs = torch.zeros(4, 8)
    probs[0, [1, 3]] = torch.tensor([0.9, 0.8])      # two tags lit: the higher wins
    probs[1, 4] = 0.7                                 # second token of tag 1 alone
    probs[2, [0, 2, 7]] = 0.99                        # only [CLS], '.', [SEP]: no tag scores
    probs[3, [3, 6]] = 0.6                            # tie: the earlier tag
    scores, best = _tag_scores(probs, chunk)
    assert best.tolist() == [0, 1, 0, 1]
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.0, 0.6])


def test_long_tag_is_truncated_with_a_note(loc, image, monkeypatch):
    calls = _spy_forward(monkeypatch, loc)
    long_tag = " ".join(["giraffe"] * 300)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the note says it; no warning reaches the run's stderr
        det = loc.detect(image, ["dog", long_tag, "cat"], 0.0, 0.0)
    assert any("truncated" in n for n in det.notes)
    assert all(c["input_ids"].shape[1] <= LIMIT for c in calls)
    assert det.passes == 3                     # dog | long tag (fills a prompt) | cat
    assert set(det.labels) <= {"dog", long_tag, "cat"}


def test_zero_tags_and_blank_tags_give_empty_detections(loc, image, monkeypatch):
    calls = _spy_forward(monkeypatch, loc)
    for tags in ([], ["", "   "], ["?", "..."]):
        det = loc.detect(image, tags)
        assert len(det) == 0 and det.passes == 0
        assert det.boxes.shape == (0, 4)
    assert calls == []


def test_duplicates_and_delimiters_in_tags(loc, image):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = loc.plan(["Dog", "dog", " DOG ", "st. bernard", "cat?", "St Bernard"])
    assert plan.tags == ["dog", "st bernard", "cat"] and plan.labels == ["Dog", "st. bernard", "cat?"]
    assert any("3 duplicate" in n for n in plan.notes) and any("2 tag(s) held" in n for n in plan.notes)
    assert len(plan.chunks) == 1
    assert loc.plan("fire hydrant").tags == ["fire hydrant"]  # a string is one tag, not its letters
    det = loc.detect(image, ["Dog", "dog", "st. bernard", "cat?"], 0.0, 0.0)
    assert set(det.labels) <= {"Dog", "st. bernard", "cat?"}


# --------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("size", [(200, 120), (37, 300)])
def test_boxes_are_xyxy_pixels_inside_the_image(loc, size):
    w, h = size
    img = Image.fromarray(np.random.default_rng(w).integers(0, 256, (h, w), dtype=np.uint8))  # greyscale too
    det = loc.detect(img, ["dog", "cat", "sofa"], 0.0, 0.0)
    assert len(det) == loc.model.config.num_queries  # one box per query (its best tag), one chunk, thresholds 0
    b = det.boxes
    assert b.dtype == np.float32 and b.shape == (len(det), 4)
    assert (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
    assert (b >= 0).all() and (b[:, [0, 2]] <= w).all() and (b[:, [1, 3]] <= h).all()
    assert ((det.scores >= 0) & (det.scores <= 1)).all()
    assert (np.diff(det.scores) <= 0).all()  # most confident first
    assert any("meaningless" in n for n in det.notes)


def test_real_photo(loc, ade_images):
    with Image.open(ade_images[0]) as im:
        im.load()
        det = loc.detect(im, ["wall", "floor", "ceiling"], 0.0, 0.0)
        w, h = im.size
    assert len(det) > 0 and (det.boxes[:, [0, 2]] <= w).all() and (det.boxes[:, [1, 3]] <= h).all()


# --------------------------------------------------------------------------------------------- loading
def test_missing_checkpoint_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceMissingError) as err:
        GroundingDinoLocator.from_pretrained(DEFAULT_MODEL, cache_dir=str(tmp_path), local_files_only=True)
    msg = str(err.value)
    assert "\n" not in msg and DEFAULT_MODEL in msg and "selfseg download --config" in msg

    (tmp_path / "broken").mkdir()
    with pytest.raises(ResourceMissingError, match="could not be read"):
        GroundingDinoLocator.from_pretrained(str(tmp_path / "broken"))


def test_from_pretrained_loads_a_saved_checkpoint(loc, image, tmp_path):
    loc.model.save_pretrained(tmp_path)
    loc.processor.save_pretrained(tmp_path)
    loaded = GroundingDinoLocator.from_pretrained(str(tmp_path), device="cpu", local_files_only=True)
    assert not loaded.is_tiny and loaded.model_id == str(tmp_path)
    assert loaded.model.model.special_tokens.tolist() == [101, 102, 1012, 1029]
    tags = ["dog", "fire hydrant", "zorblax"]
    a, b = loc.detect(image, tags, 0.0, 0.0), loaded.detect(image, tags, 0.0, 0.0)
    assert a.labels == b.labels
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    assert not any("meaningless" in n for n in b.notes)


def test_enriched_phrases_are_prompted_but_scored_on_the_tag_and_labelled_as_it(loc, image):
    tags = ["dog", "fire hydrant", "cat"]
    phrases = ["dog, small brown dog lying down", "fire hydrant, short red metal post. with outlets", "cat"]
    plan = loc.plan(tags, phrases)
    assert plan.labels == tags
    assert plan.tags[1] == "fire hydrant, short red metal post with outlets"  # '.' would split the phrase
    [chunk] = plan.chunks
    tok = loc.tokenizer
    for t, (s, e) in zip(tags, chunk.spans):
        # The scored span is exactly the tag's own tokens at the start of its phrase.
        assert list(chunk.input_ids[s:e]) == tok(t, add_special_tokens=False)["input_ids"]
    assert plan.tags[0] in tok.decode(chunk.input_ids)  # the description itself is in the prompt
    det = loc.detect(image, tags, box_threshold=0.0, text_threshold=0.0, phrases=phrases)
    assert set(det.labels) <= set(tags) and len(det) > 0
    with pytest.raises(ValueError, match="one phrase per tag"):
        loc.plan(tags, phrases[:2])


def test_phrase_not_starting_with_its_tag_is_scored_whole(loc):
    plan = loc.plan(["dog"], ["a brown puppy"])
    [chunk] = plan.chunks
    (s, e), = chunk.spans
    assert e - s == len(loc.tokenizer("a brown puppy", add_special_tokens=False)["input_ids"])
