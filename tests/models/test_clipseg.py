"""ClipSegDenseSegmenter with the tiny random-init CLIPSeg built in code (and a real CLIP tokenizer with a
tiny byte-level vocabulary). Its maps are meaningless; these tests check shapes, dtypes, batching (image
encoded once, all tags in one text and one decoder pass), agreement with transformers' stock forward, and
checkpoint loading / error messages."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from selfseg.config import TINY_MODEL
from selfseg.errors import ResourceMissingError
from selfseg.models.clipseg import DEFAULT_CLIPSEG, ClipSegDenseSegmenter

H, W = 90, 150  # not square: the processor squashes, the maps must come back at (H, W)
TAGS = ["cat", "traffic light", "sky", "a very long description of a fire hydrant beside a road"]


@pytest.fixture(scope="module")
def seg() -> ClipSegDenseSegmenter:
    return ClipSegDenseSegmenter.tiny(seed=0)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8))


@contextmanager
def spy(**modules):
    """Record (args, kwargs, output) of every forward call of the named modules."""
    calls = {name: [] for name in modules}
    handles = [m.register_forward_hook(lambda _m, a, kw, o, n=name: calls[n].append((a, kw, o)), with_kwargs=True)
               for name, m in modules.items()]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _parts(seg):
    m = seg.model
    return dict(vision=m.clip.vision_model, text=m.clip.text_model, decoder=m.decoder)


def test_shapes_dtype_range(seg, image):
    maps = seg.logits(image, TAGS)
    assert maps.shape == (len(TAGS), H, W) and maps.dtype == np.float32
    assert np.all((maps >= 0) & (maps <= 1))  # sigmoid probabilities


def test_one_vision_one_text_one_decoder_pass(image):
    seg = ClipSegDenseSegmenter.tiny(seed=0)  # its own: a shared one may hold these tags' embeddings
    before = seg.forward_calls
    with spy(**_parts(seg)) as calls:
        seg.logits(image, TAGS)
    assert {k: len(v) for k, v in calls.items()} == {"vision": 1, "text": 1, "decoder": 1}
    assert seg.forward_calls - before == 1
    assert calls["vision"][0][1]["pixel_values"].shape[0] == 1  # the image is encoded once, not per tag
    assert calls["text"][0][1]["input_ids"].shape[0] == len(TAGS)
    assert calls["decoder"][0][2].logits.shape[0] == len(TAGS)


def test_a_repeated_tag_list_is_encoded_once_and_gives_the_same_maps_bit_for_bit(image):
    """A fixed vocabulary over many images: the text tower runs for the first image only, and every image's
    maps are those of a segmenter that never saw another image. Another list is encoded afresh."""
    seg = ClipSegDenseSegmenter.tiny(seed=0)
    other = Image.fromarray(np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8))
    first = seg.logits(image, TAGS)
    with spy(**_parts(seg)) as calls:
        again, second = seg.logits(other, TAGS), seg.best(image, TAGS, tags_per_call=2)
    assert len(calls["text"]) == 0 and len(calls["vision"]) == 2 and seg.text_calls == 1
    alone = ClipSegDenseSegmenter.tiny(seed=0)
    assert np.array_equal(again, alone.logits(other, TAGS))
    assert all(np.array_equal(a, b) for a, b in zip(second, ClipSegDenseSegmenter.tiny(seed=0).best(
        image, TAGS, tags_per_call=2)))
    assert not np.array_equal(again, first)  # two images, two sets of maps: the equalities are not vacuous
    with spy(**_parts(seg)) as calls:
        seg.logits(image, TAGS[:2])
    assert len(calls["text"]) == 1 and seg.text_calls == 2


def test_matches_the_stock_forward_on_a_repeated_image(seg, image):
    """Our split forward (vision once, activations broadcast) gives the logits of transformers' own
    CLIPSegForImageSegmentation.forward with the image repeated once per tag."""
    # (the processor does not truncate by default; the long tag would overflow the text positions)
    inputs = seg.processor(text=TAGS, images=[image] * len(TAGS), padding=True, truncation=True,
                           max_length=seg.model.config.text_config.max_position_embeddings, return_tensors="pt")
    with torch.inference_mode():
        ref = seg.model(**inputs).logits
    with spy(decoder=seg.model.decoder) as calls:
        maps = seg.logits(image, TAGS)
    ours = calls["decoder"][0][2].logits
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)
    expected = torch.sigmoid(F.interpolate(ref[:, None], size=(H, W), mode="bilinear", align_corners=False))[:, 0]
    np.testing.assert_allclose(maps, expected.numpy(), atol=1e-4)


def test_a_tags_map_does_not_depend_on_the_other_tags(seg, image):
    """Padding to the longest tag must not leak: the text tower pools at each tag's own end token."""
    alone = seg.logits(image, ["sky"])
    together = seg.logits(image, TAGS)
    assert alone.shape == (1, H, W)
    np.testing.assert_allclose(alone[0], together[TAGS.index("sky")], atol=1e-4)


def test_a_tokenizer_set_to_pad_on_the_left_gives_the_same_maps(image):
    """A checkpoint (or a tokenizer shared with a chat model) may be set to pad on the left; CLIP pools at a
    row's first end token, so the text pass pads on the right regardless: with left padding every tag
    shorter than the longest would be pooled on padding."""
    seg = ClipSegDenseSegmenter.tiny(seed=0)
    right = seg.logits(image, TAGS)
    seg.processor.tokenizer.padding_side = "left"
    seg._text = None  # encode the tags again
    left = seg.logits(image, TAGS)
    np.testing.assert_allclose(left, right, atol=1e-5)
    assert np.abs(right[0] - right[1]).max() > 1e-2  # another tag gives another map: the equality is not vacuous


def test_zero_tags_no_model_call(seg, image):
    with spy(**_parts(seg)) as calls:
        maps = seg.logits(image, [])
    assert maps.shape == (0, H, W) and maps.dtype == np.float32
    assert all(not v for v in calls.values())


def test_tiny_tokenizer_is_a_real_clip_tokenizer(seg):
    from transformers import CLIPTokenizer

    tok = seg.processor.tokenizer
    assert isinstance(tok, CLIPTokenizer)
    ids = tok("A cat").input_ids  # lower-cased, spelled byte by byte (no merges), end-of-word marker
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "c", "a", "t</w>", "<|endoftext|>"]
    long = tok([TAGS[-1]], truncation=True, max_length=seg.model.config.text_config.max_position_embeddings)
    assert long.input_ids[0][-1] == seg.model.config.text_config.eos_token_id  # truncation keeps the pooled token


def test_missing_checkpoint_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on an air-gapped machine: no hub probe, no retries
    with pytest.raises(ResourceMissingError) as err:
        ClipSegDenseSegmenter.from_pretrained(DEFAULT_CLIPSEG, device="cpu", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "selfseg download" in msg and DEFAULT_CLIPSEG in msg and "\n" not in msg
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ResourceMissingError, match="selfseg download"):
        ClipSegDenseSegmenter.from_pretrained(DEFAULT_CLIPSEG, device="cpu", cache_dir=str(tmp_path),
                                              local_files_only=True)


def test_from_pretrained_loads_a_saved_checkpoint(seg, image, tmp_path):
    seg.model.save_pretrained(tmp_path)
    seg.processor.save_pretrained(tmp_path)  # image processor + tokenizer files
    loaded = ClipSegDenseSegmenter.from_pretrained(str(tmp_path), device="cpu", dtype="float32",
                                                   local_files_only=True)
    assert not loaded.is_tiny and loaded.model_id == str(tmp_path)
    assert loaded.processor.tokenizer("a cat").input_ids == seg.processor.tokenizer("a cat").input_ids
    np.testing.assert_array_equal(loaded.logits(image, TAGS), seg.logits(image, TAGS))


def test_tiny_sentinel_and_seed():
    tiny = ClipSegDenseSegmenter.from_pretrained(TINY_MODEL, device="cpu")
    assert tiny.is_tiny and tiny.model_id == TINY_MODEL
    flat = lambda s: torch.cat([p.flatten() for p in s.model.parameters()])
    assert torch.equal(flat(tiny), flat(ClipSegDenseSegmenter.tiny(seed=0)))
    assert not torch.equal(flat(tiny), flat(ClipSegDenseSegmenter.tiny(seed=1)))


# "cat" twice, in one chunk of two: its two maps are equal, so every pixel it wins is a tie
MANY = ["cat", "cat", "dog", "sky", "road", "tree", "grass", "fire hydrant"]


def test_best_equals_argmax_and_max_of_the_maps_chunk_by_chunk(seg, image):
    """best() keeps only each pixel's best tag, tags_per_call maps at a time; it must equal the argmax and
    max over the same T maps, ties included (a repeated tag: exact ties wherever it is best)."""
    maps = seg.logits(image, MANY, tags_per_call=2)  # the same chunks: the same float arithmetic
    before = seg.forward_calls
    with spy(**_parts(seg)) as calls:
        best, conf = seg.best(image, MANY, tags_per_call=2)
    # ceil(8 / 2) decoder calls; the tags' embeddings are those logits() just made
    assert {k: len(v) for k, v in calls.items()} == {"vision": 1, "text": 0, "decoder": 4}
    assert seg.forward_calls - before == 1
    assert best.shape == conf.shape == (H, W) and best.dtype == np.int64 and conf.dtype == np.float32
    assert (maps == maps.max(0)).sum(0).max() > 1, "no ties: the tie rule is untested"
    np.testing.assert_array_equal(best, maps.argmax(0))
    np.testing.assert_array_equal(conf, maps.max(0))
    # Against one decoder call for all tags: the decoder's batch size changes float rounding only.
    whole = seg.logits(image, MANY)
    np.testing.assert_allclose(maps, whole, rtol=1e-3, atol=1e-5)
    best0, conf0 = seg.best(image, MANY, tags_per_call=0)
    np.testing.assert_allclose(conf0, conf, atol=1e-5)
    same_tag = lambda b: np.where(b == 1, 0, b)  # the two "cat" maps may swap their tie by one ulp
    assert (same_tag(best0) != same_tag(best)).mean() < 1e-3


def test_best_without_tags_is_an_error(seg, image):
    with pytest.raises(ValueError, match="no tags"):
        seg.best(image, [])


def test_a_prompt_past_the_text_limit_is_read_to_the_limit_and_the_result_says_so(seg, image):
    from selfseg.io import load_image
    from selfseg.models.spec import ModelConfig
    from selfseg.segment.base import SegmentPlan
    from selfseg.segment.clipseg import ClipSegConfig, ClipSegSegmenter

    limit = seg.model.config.text_config.max_position_embeddings
    tok = seg.processor.tokenizer
    long = " ".join(["a small brown dog on a red sofa"] * 8)
    ids = tok(long)["input_ids"]
    assert len(ids) > limit
    assert seg.too_long(["dog", long]) == [(1, len(ids), limit)]
    cut = tok.decode(ids[1:limit - 1])  # what is read: the first limit tokens, the end-of-text token kept
    assert len(tok(cut)["input_ids"]) == limit
    np.testing.assert_allclose(seg.logits(image, [long]), seg.logits(image, [cut]), atol=1e-5)
    assert not np.allclose(seg.logits(image, [long]), seg.logits(image, ["dog"]), atol=1e-3)  # the text is read
    segmenter = ClipSegSegmenter(ClipSegConfig(model=TINY_MODEL, threshold=0.0), ModelConfig(device="cpu"),
                                 model=seg)
    out = segmenter.segment(load_image(image), SegmentPlan(["dog", "sofa"], prompts={"sofa": long}))
    assert [n for n in out.notes if "CLIPSeg prompt" in n] == [
        f"tag 'sofa': its CLIPSeg prompt is {len(ids)} tokens, more than the text model's {limit}; only the "
        f"first {limit} were read"]
    plain = segmenter.segment(load_image(image), SegmentPlan(["dog", "sofa"]))
    assert not any("CLIPSeg prompt" in n for n in plain.notes)


def test_counting_a_long_prompt_prints_no_tokenizer_warning(capfd):
    # transformers warns once per tokenizer that a long sequence "will result in indexing errors": none
    # follows here (the prompt is read to the limit), so a fresh tokenizer must not print it
    fresh = ClipSegDenseSegmenter.tiny()
    capfd.readouterr()
    assert fresh.too_long(["dog " * 100])
    assert "Token indices" not in capfd.readouterr().err


@pytest.mark.parametrize("setting, note", [
    ({"threshold": 1.0}, "no pixel above the background threshold"),
    ({"threshold": 0.0, "min_area": H * W + 1}, f"reaches min_area ({H * W + 1} pixels)"),
    ({"threshold": 0.0, "max_instances": 0}, "max_instances is 0"),
])
def test_an_empty_result_names_the_setting_that_emptied_it(seg, image, setting, note):
    from selfseg.io import load_image
    from selfseg.models.spec import ModelConfig
    from selfseg.segment.base import SegmentPlan
    from selfseg.segment.clipseg import ClipSegConfig, ClipSegSegmenter

    segmenter = ClipSegSegmenter(ClipSegConfig(model=TINY_MODEL, **setting), ModelConfig(device="cpu"), model=seg)
    out = segmenter.segment(load_image(image), SegmentPlan(["dog", "sofa"]))
    assert out.labels == [] and len(out.notes) == 1 and note in out.notes[0]


def test_images_of_a_batch_share_one_vision_and_one_text_pass_and_each_equals_its_image_alone(image):
    """Three images of different sizes with their own, overlapping tag lists: ONE vision forward over the
    three, ONE text forward over the five distinct tags, and each image's best tag and probability those of
    `best` on it alone."""
    seg = ClipSegDenseSegmenter.tiny(seed=0)
    images = [image, Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 64, 3), dtype=np.uint8)),
              Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 70, 3), dtype=np.uint8)).convert("L")]
    tag_lists = [["cat", "sky", "road"], ["road", "dog"], ["sky", "cat", "fire hydrant"]]
    with spy(**_parts(seg)) as calls:
        batch = seg.best_batch(images, tag_lists, tags_per_call=2)
    assert len(calls["vision"]) == 1 and calls["vision"][0][1]["pixel_values"].shape[0] == 3
    assert len(calls["text"]) == 1 and calls["text"][0][1]["input_ids"].shape[0] == 5
    assert len(calls["decoder"]) == 2 + 1 + 2  # each image's own chunks of two tags
    for im, tags, (best, conf) in zip(images, tag_lists, batch):
        ref_best, ref_conf = ClipSegDenseSegmenter.tiny(seed=0).best(im, tags, tags_per_call=2)
        assert best.shape == (im.height, im.width) and best.max() < len(tags)
        np.testing.assert_allclose(conf, ref_conf, atol=1e-5)
        assert (best != ref_best).mean() < 1e-3
    # not vacuous: the same tags on another image of the same size give another map
    other = Image.fromarray(np.random.default_rng(9).integers(0, 256, (H, W, 3), dtype=np.uint8))
    assert np.abs(batch[0][1] - seg.best(other, tag_lists[0])[1]).max() > 1e-2


def test_a_long_prompt_list_goes_through_the_text_tower_in_bounded_calls(image, monkeypatch):
    """More distinct prompts than TEXT_ROWS_PER_CALL: the text tower runs ceil(T / rows) times, and every map
    is the one of a single text pass."""
    import selfseg.models.clipseg as clipseg

    tags = ["cat", "sky", "road", "dog", "fire hydrant"]
    whole = ClipSegDenseSegmenter.tiny(seed=0).logits(image, tags)
    monkeypatch.setattr(clipseg, "TEXT_ROWS_PER_CALL", 2)
    seg = ClipSegDenseSegmenter.tiny(seed=0)
    with spy(**_parts(seg)) as calls:
        chunked = seg.logits(image, tags)
    assert len(calls["text"]) == 3 and seg.text_calls == 3
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_a_batch_matches_the_stock_forward_with_each_image_repeated_per_tag(seg, image):
    """transformers' own forward over (image, tag) pairs of two images with their own tags gives the same
    per-pixel best tag and probability as best_batch."""
    other = Image.fromarray(np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8))
    tag_lists = [["cat", "sky"], ["dog", "road", "cat"]]
    pairs = [(im, t) for im, tags in zip([image, other], tag_lists) for t in tags]
    inputs = seg.processor(text=[t for _, t in pairs], images=[im for im, _ in pairs], padding=True,
                           return_tensors="pt")
    with torch.inference_mode():
        ref = seg.model(**inputs).logits
    maps = torch.sigmoid(F.interpolate(ref[:, None], size=(H, W), mode="bilinear", align_corners=False))[:, 0]
    ours = seg.best_batch([image, other], tag_lists, tags_per_call=0)
    for (best, conf), rows in zip(ours, (maps[:2], maps[2:])):
        np.testing.assert_allclose(conf, rows.max(0).values.numpy(), atol=1e-4)
        assert (best != rows.argmax(0).numpy()).mean() < 1e-3
    # not vacuous: the first image's tags on the second image (same size) give another map
    assert np.abs(ours[0][1] - seg.best(other, tag_lists[0])[1]).max() > 1e-2


def test_a_batch_needs_one_tag_list_per_image_and_tags_for_each(seg, image):
    with pytest.raises(ValueError, match="one tag list per image"):
        seg.best_batch([image, image], [["cat"]])
    with pytest.raises(ValueError, match="no tags"):
        seg.best_batch([image, image], [["cat"], []])
    assert seg.best_batch([], []) == []
