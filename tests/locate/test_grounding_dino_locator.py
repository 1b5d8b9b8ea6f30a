"""The Grounding DINO locator with the tiny random-init model built in code (no download): prompt planning and
packing, tag scoring, box geometry, and the locate stage (padding, clipping, filtering, per-image results).

The tiny model's boxes, scores and labels are meaningless noise (its weights are re-drawn so that they depend
on the image and the prompt): these tests check chunking, batching, tag mapping and box geometry, never
detection quality. Thresholds are 0.0 where the random model must return boxes.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from selfseg.io import load_image
from selfseg.locate import LOCATORS
from selfseg.locate.boxes import filter_detections
from selfseg.locate.grounding_dino import (
    GroundingDinoConfig,
    GroundingDinoLocator,
    PromptChunk,
    pack_greedy,
    tag_scores,
)
from selfseg.locate.result import Detections
from selfseg.models.grounding_dino import GroundingDino
from selfseg.models.spec import TINY_MODEL, ModelConfig, ModelSpec

LIMIT = 256


# Tiny models: one intra-op thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


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
    original = loc.detector.model.forward

    def forward(*args, **kwargs):
        calls.append({k: kwargs[k].clone() for k in ("input_ids", "attention_mask", "pixel_values")})
        return original(*args, **kwargs)

    monkeypatch.setattr(loc.detector.model, "forward", forward)
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


def _same(a: Detections, b: Detections) -> None:
    """Exactly the same detections: boxes, scores, labels, passes and notes."""
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert (a.labels, a.passes, a.notes) == (b.labels, b.passes, b.notes)


# --------------------------------------------------------------------------------------------- chunking
def test_many_tags_fill_prompts_within_the_limit_in_fewest_passes(loc, image, many_tags, monkeypatch):
    calls = _spy_forward(monkeypatch, loc)
    det = loc.detect(image, many_tags, box_threshold=0.0, text_threshold=0.0)

    # The minimum, from the model's own tokenizer: each tag's tokens plus its " .", [CLS] + [SEP] per prompt.
    costs = [len(loc.detector.tokenizer.tokenize(t)) + 1 for t in many_tags]
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
    tok = loc.detector.tokenizer
    plan = loc.plan(many_tags)
    assert [plan.tags[i] for c in plan.chunks for i in c.tags] == many_tags  # each tag once, in order
    for chunk in plan.chunks:
        text = " ".join(f"{plan.tags[i]} ." for i in chunk.tags)
        assert list(chunk.input_ids) == tok(text)["input_ids"]
        assert len(chunk.input_ids) <= LIMIT
        for i, (s, e) in zip(chunk.tags, chunk.spans):
            assert chunk.input_ids[s:e] == tuple(tok(plan.tags[i], add_special_tokens=False)["input_ids"])
            assert chunk.input_ids[e] == tok.convert_tokens_to_ids(".")
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
    original = loc.detector.image_processor

    def spy(*args, **kwargs):
        seen.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(loc.detector, "image_processor", spy)
    calls = _spy_forward(monkeypatch, loc)
    monkeypatch.setattr(loc, "max_chunks_per_forward", 2)
    det = loc.detect(image, many_tags, 0.0, 0.0)
    assert len(seen) == 1
    assert len(calls) == -(-det.passes // 2)             # ceil(chunks / 2) forwards, each up to 2 rows
    first = calls[0]["pixel_values"][0]
    assert all(torch.equal(c["pixel_values"][r], first) for c in calls for r in range(len(c["pixel_values"])))


def test_forward_calls_count_batched_forwards(image, many_tags):
    one_row = GroundingDinoLocator.tiny(seed=0, max_chunks_per_forward=1)
    det = one_row.detect(image, many_tags, 0.0, 0.0)
    assert one_row.detector.forward_calls == det.passes >= 3
    with pytest.raises(ValueError, match="max_chunks_per_forward"):
        GroundingDinoLocator(one_row.detector, max_chunks_per_forward=0)


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
    original = loc.detector.model.forward
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

    monkeypatch.setattr(loc.detector.model, "forward", forward)
    det = loc.detect(image, tags, box_threshold=0.5, text_threshold=0.5)

    stock = loc.detector.processor.post_process_grounded_object_detection(
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
    scores, best = tag_scores(probs, chunk)
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


def test_tags_the_tokenizer_reads_alike_are_prompted_once(loc, image):
    # BERT-uncased strips accents: both read [r, ##e, ##s, ...], so every box would tie and go to the first
    plan = loc.plan(["résumé", "dog", "resume", "Résumé"])
    assert plan.labels == ["résumé", "dog"]
    assert "1 tag(s) that tokenize as an earlier tag does prompted once ('resume')" in plan.notes
    assert "1 duplicate tag(s) prompted once" in plan.notes  # "Résumé": the same text once lower-cased
    assert set(loc.detect(image, ["résumé", "resume", "dog"], 0.0, 0.0).labels) <= {"résumé", "dog"}


def test_enriched_phrases_are_prompted_but_scored_on_the_tag_and_labelled_as_it(loc, image):
    tags = ["dog", "fire hydrant", "cat"]
    phrases = ["dog, small brown dog lying down", "fire hydrant, short red metal post. with outlets", "cat"]
    plan = loc.plan(tags, phrases)
    assert plan.labels == tags
    assert plan.tags[1] == "fire hydrant, short red metal post with outlets"  # '.' would split the phrase
    [chunk] = plan.chunks
    tok = loc.detector.tokenizer
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
    assert e - s == len(loc.detector.tokenizer("a brown puppy", add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("size", [(200, 120), (37, 300)])
def test_boxes_are_xyxy_pixels_inside_the_image(loc, size):
    w, h = size
    img = Image.fromarray(np.random.default_rng(w).integers(0, 256, (h, w), dtype=np.uint8))  # greyscale too
    det = loc.detect(img, ["dog", "cat", "sofa"], 0.0, 0.0)
    assert len(det) == loc.detector.model.config.num_queries  # one box per query (its best tag), one chunk
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


def test_detect_refuses_what_is_not_a_pil_image(loc, image):
    with pytest.raises(TypeError, match="PIL image"):
        loc.detect(np.asarray(image), ["dog"])


# --------------------------------------------------------------------------------------------- loading
def test_from_pretrained_loads_a_saved_checkpoint(loc, image, tmp_path):
    loc.detector.model.save_pretrained(tmp_path)
    loc.detector.processor.save_pretrained(tmp_path)
    loaded = GroundingDinoLocator.from_pretrained(str(tmp_path), device="cpu", local_files_only=True)
    assert not loaded.is_tiny and loaded.detector.model_id == str(tmp_path)
    assert loaded.detector.model.model.special_tokens.tolist() == [101, 102, 1012, 1029]
    tags = ["dog", "fire hydrant", "zorblax"]
    a, b = loc.detect(image, tags, 0.0, 0.0), loaded.detect(image, tags, 0.0, 0.0)
    assert a.labels == b.labels
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    assert not any("meaningless" in n for n in b.notes)


def test_from_spec_passes_the_stage_settings_and_the_class_is_registered():
    spec = ModelSpec(TINY_MODEL, device="cpu")
    made = GroundingDinoLocator.from_spec(spec, box_threshold=0.1, text_threshold=0.2, nms_iou=0.3,
                                          max_box_area=0.4, max_detections=5, max_chunks_per_forward=None)
    assert made.is_tiny and isinstance(made.detector, GroundingDino) and made.detector.share_backbone
    assert (made.box_threshold, made.text_threshold, made.nms_iou, made.max_box_area, made.max_detections,
            made.max_chunks_per_forward) == (0.1, 0.2, 0.3, 0.4, 5, None)
    assert not GroundingDinoLocator.from_spec(spec, share_backbone=False).detector.share_backbone
    assert "grounding_dino" in LOCATORS and GroundingDinoLocator.name == "grounding_dino"
    # the registered factory builds the locator from its own config block and the shared model section
    block = GroundingDinoConfig(detector=TINY_MODEL, box_threshold=0.1, nms_iou=0.3, max_detections=5)
    built = LOCATORS.create("grounding_dino", block, ModelConfig(device="cpu"))
    assert isinstance(built, GroundingDinoLocator) and built.is_tiny
    assert (built.box_threshold, built.text_threshold, built.nms_iou, built.max_detections) == (0.1, 0.25, 0.3, 5)
    assert LOCATORS.component("grounding_dino").checkpoints(block, ModelConfig()) == [TINY_MODEL]


# --------------------------------------------------------------------------------------------- locate
def _photo(seed: int, size: tuple[int, int]):
    w, h = size
    return load_image(Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)),
                      max_side=max(size))


@pytest.fixture(scope="module")
def stage() -> GroundingDinoLocator:
    """Thresholds 0 so the random model keeps every query's box, and a small top-k so the filter bites."""
    return GroundingDinoLocator.tiny(seed=0, box_threshold=0.0, text_threshold=0.0, nms_iou=0.5,
                                     max_box_area=0.95, max_detections=6)


def test_locate_is_detect_then_clip_then_filter(stage):
    img = _photo(3, (200, 120))
    classes = ["dog", "fire hydrant", "cat"]
    prompts = {"dog": "dog, small brown dog"}
    [got] = stage.locate([img], [classes], [prompts])

    h, w = img.image.height, img.image.width
    phrases = ["dog, small brown dog", "fire hydrant", "cat"]
    raw = stage.detect(img.image, classes, 0.0, 0.0, phrases=phrases)
    assert (raw.boxes >= 0).all() and (raw.boxes[:, [0, 2]] <= w).all() and (raw.boxes[:, [1, 3]] <= h).all()
    expected = filter_detections(raw, (h, w), nms_iou=0.5, max_area_fraction=0.95, max_detections=6)
    _same(got, expected)
    assert 0 < len(got) < len(raw)                      # the filter did something, and something is left
    assert got.passes == 1 and any("meaningless" in n for n in got.notes)
    assert set(got.labels) <= set(classes)
    # The prompt map reached the model: without it the (input-sensitive) model gives other boxes.
    [plain] = stage.locate([img], [classes], [None])
    assert not (len(plain) == len(got) and np.allclose(plain.boxes, got.boxes))
    [empty_map] = stage.locate([img], [classes], [{}])
    _same(plain, empty_map)


def test_thin_image_is_located_inside_its_own_bounds(monkeypatch):
    stage = GroundingDinoLocator.tiny(seed=0, box_threshold=0.0, text_threshold=0.0, max_box_area=1.0)
    calls = _spy_forward(monkeypatch, stage)
    for size in ((2000, 16), (16, 2000)):
        img = _photo(5, size)
        assert (img.image.width, img.image.height) == size
        [det] = stage.locate([img], [["road", "car"]], [None])
        # the processor's own input: a 2000x16 strip has feature tokens enough for the tiny model's queries
        stock = stage.detector.image_processor(images=img.image, return_tensors="pt")
        torch.testing.assert_close(calls[-1]["pixel_values"][:1], stock["pixel_values"], rtol=0, atol=0)
        w, h = size
        assert len(det) > 0 and det.boxes.dtype == np.float32
        assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= w).all() and (det.boxes[:, [1, 3]] <= h).all()
        assert (det.boxes[:, 0] < det.boxes[:, 2]).all() and (det.boxes[:, 1] < det.boxes[:, 3]).all()


def test_an_image_without_classes_makes_no_model_call(stage, monkeypatch):
    calls = _spy_forward(monkeypatch, stage)
    before = stage.detector.forward_calls
    a, b = stage.locate([_photo(1, (200, 120)), _photo(2, (90, 150))], [[], ()], [None, {"dog": "a dog"}])
    assert calls == [] and stage.detector.forward_calls == before
    for det in (a, b):
        assert len(det) == 0 and det.passes == 0 and det.notes == [] and det.boxes.shape == (0, 4)
    [c], d = stage.locate([_photo(1, (200, 120))], [["dog"]], [None]), stage.locate([], [], [])
    assert len(calls) == 1 and len(c) > 0 and d == []


def test_an_images_detections_do_not_depend_on_its_batch(stage):
    a, b = _photo(7, (200, 120)), _photo(8, (96, 160))
    ca, cb = ["dog", "cat", "sofa"], ["kite", "zebra"]
    [alone] = stage.locate([a], [ca], [None])
    with_other = stage.locate([b, a, b], [cb, ca, ca], [None, None, {"cat": "a black cat"}])
    _same(alone, with_other[1])
    assert len(alone) > 0
    # Its neighbours got their own classes and prompts.
    assert set(with_other[0].labels) <= set(cb) and set(with_other[2].labels) <= set(ca)


def test_locate_wants_one_class_list_and_prompt_map_per_image(stage):
    with pytest.raises(ValueError, match="one class list and one prompt map per image"):
        stage.locate([_photo(1, (200, 120))], [["dog"], ["cat"]], [None])
