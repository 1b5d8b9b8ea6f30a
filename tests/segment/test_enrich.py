"""Prompt enrichment: descriptions per tag (scripted replies for the flows and parsing; tiny random-init
models for the pipeline plumbing, whose descriptions and masks are noise). Labels always stay the tags."""
from __future__ import annotations

import pytest

from selfseg import SelfSeg
from selfseg.config import load_config
from selfseg.errors import ConfigError
from selfseg.io import load_image
from selfseg.segment.enrich import PromptEnricher, clean_description


@pytest.fixture(scope="module")
def loaded(ade_images):
    return [load_image(p) for p in ade_images[:2]]


def _sections(cfg):
    return cfg.segment, cfg.vlm, cfg.model


def _cfg(repo, *overrides):
    return load_config(repo / "configs" / "smoke.yaml", list(overrides))


def test_generic_descriptions_are_asked_once_per_tag(repo, loaded, scripted_chat):
    chat = scripted_chat(lambda r: "  Four-legged furry animal. Has a tail and floppy ears, usually brown  ")
    e = PromptEnricher(*_sections(_cfg(repo, "segment.enrich=generic", "segment.enrich_max_words=5")), chat=chat)
    out = e(loaded, [["dog", "grass"], ["dog"]])
    assert len(chat.requests) == 2 and chat.generate_calls == 1  # "dog" asked once, one call
    assert all(r.image is None for r in chat.requests) and "dog" in chat.requests[0].turns[0][1]
    assert out[0].prompts == {"dog": "dog, Four-legged furry animal Has a",
                              "grass": "grass, Four-legged furry animal Has a"}
    assert out[1].phrase("dog") == out[0].phrase("dog") and out[1].phrase("cat") == "cat"
    # A later batch asks only about tags this enricher has not described, reply cache or not.
    later = e(loaded, [["grass", "tree"], ["dog"]])
    assert len(chat.requests) == 3 and "tree" in chat.requests[-1].turns[0][1] and chat.generate_calls == 2
    assert later[0].prompts["grass"] == out[0].prompts["grass"] and later[1].prompts == out[1].prompts
    e(loaded, [["dog", "tree"]])
    assert len(chat.requests) == 3 and chat.generate_calls == 2  # all described: no model call


def test_image_descriptions_come_from_one_json_reply_per_image(repo, loaded, scripted_chat):
    def respond(r):
        assert r.image is not None
        return '```json\n{"Dog": "small brown dog on a lawn", "grass": 3}\n```'

    chat = scripted_chat(respond)
    e = PromptEnricher(*_sections(_cfg(repo, "segment.enrich=image")), chat=chat)
    out = e(loaded, [["dog", "grass"], []])
    assert len(chat.requests) == 1  # an image with no tags asks nothing
    assert out[0].prompts == {"dog": "dog, small brown dog on a lawn"}
    assert any("no description for grass" in n for n in out[0].notes)
    bad = PromptEnricher(*_sections(_cfg(repo, "segment.enrich=image")), chat=scripted_chat(lambda r: "Sure!"))
    bad = bad(loaded[:1], [["dog"]])
    assert bad[0].prompts == {} and any("no JSON object" in n for n in bad[0].notes)


def test_clean_description():
    assert clean_description("dog: A loyal pet.\nSecond line", "dog", 12) == "A loyal pet"
    assert clean_description("<think>hmm</think>\"tall green plant\"", "tree", 12) == "tall green plant"
    assert clean_description(None, "x", 12) == "" and clean_description("", "x", 12) == ""
    # chat models' lead-ins and labels are no description
    assert clean_description("Sure! Here's a description:\n\nA short red metal post.", "fire hydrant", 12) == \
        "A short red metal post"
    assert clean_description("**Description:** short red metal post", "fire hydrant", 12) == "short red metal post"
    assert clean_description("Here is what it looks like:", "fire hydrant", 12) == ""
    assert clean_description("Fire hydrant:\nA short red post.", "fire hydrant", 12) == "A short red post"
    # a header line introduces the lines after it; a description alone that ends in a colon is kept
    assert clean_description("Visual features:\n- red metal post", "fire hydrant", 12) == "red metal post"
    assert clean_description("Here are the features:\n1. red metal post", "fire hydrant", 12) == "red metal post"
    assert clean_description("A fire hydrant typically has:\n- a red metal body", "fire hydrant", 12) == \
        "a red metal body"
    assert clean_description("Short red metal post, as follows:", "fire hydrant", 12) == \
        "Short red metal post, as follows"
    assert clean_description("<think>\nA fire hydrant is", "fire hydrant", 12) == ""  # cut while reasoning


def test_enrich_config_checks(repo):
    with pytest.raises(ConfigError, match="segment.enrich"):
        _cfg(repo, "segment.enrich=always")
    with pytest.raises(ConfigError, match="segmenters that take phrases: clipseg, grounded_sam2"):
        _cfg(repo, "segment.enrich=generic", "segment.segmenter=bcc_clusters")
    with pytest.raises(ConfigError, match="segment.enrich_prompt"):
        cfg = _cfg(repo, "segment.enrich=generic", "segment.enrich_prompt=describe {thing}")
        PromptEnricher(*_sections(cfg), chat=object())


@pytest.mark.parametrize("segmenter, mode", [("grounded_sam2", "image"), ("clipseg", "generic")])
def test_pipeline_prompts_with_phrases_and_labels_with_tags(repo, ade_images, segmenter, mode, monkeypatch):
    """Tiny random-init BLIP, Qwen2.5-VL, Llama, Grounding DINO / SAM2 / CLIPSeg: all outputs are noise.
    Checked: the segmenter receives the enriched phrases, every label is a plain class, the result records
    the prompts, and enrichment is one batched pass per image batch."""
    over = ["tagger=vocabulary", "vocabulary=[dog, grass, sky]", f"segment.segmenter={segmenter}",
            f"segment.enrich={mode}", "vlm.llm=tiny-random", "vlm.max_new_tokens=6", "vlm.batch_size=8"]
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml", over)
    scripted = {"generic": lambda r: "a plain test description", "image": None}[mode]
    if scripted is None:  # the tiny VLM's noise never parses as JSON: script the one reply per image
        monkeypatch.setattr(type(seg.enricher.chat), "_replies",
                            lambda self, reqs: [('{"dog": "brown dog", "sky": "blue sky"}', False) for _ in reqs])
    else:
        monkeypatch.setattr(type(seg.enricher.chat), "_replies",
                            lambda self, reqs: [(scripted(r), False) for r in reqs])
    seen = []
    real = seg.segmenter.segment_batch

    def spy(images, plans):
        seen.extend(plan.prompts for plan in plans)
        return real(images, plans)

    monkeypatch.setattr(seg.segmenter, "segment_batch", spy)
    items = list(seg.segment_many(ade_images[:2], batch_size=2))
    assert all(i.ok for i in items)
    assert seg.enricher.chat.generate_calls == 1  # both images (or all 3 tags) in one call
    for item, prompts in zip(items, seen):
        s = item.result
        assert set(s.labels) <= {"dog", "grass", "sky"} and s.classes == ["dog", "grass", "sky"]
        assert s.prompts == prompts and prompts["dog"].startswith("dog, ")
        assert s.to_dict()["prompts"] == prompts
    if mode == "image":
        assert "grass" not in seen[0] and any("no description for grass" in n for n in items[0].result.notes)


def test_tiny_models_end_to_end_without_scripting(repo, ade_images):
    """No scripting at all: the tiny VLM's noise replies give no JSON, so tags are prompted as themselves
    with a note, and the run completes."""
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml",
                              ["tagger=vocabulary", "vocabulary=[dog, sky]", "segment.enrich=image"])
    [item] = list(seg.segment_many(ade_images[:1]))
    assert item.ok and set(item.result.labels) <= {"dog", "sky"}
    assert any(n.startswith("enrich:") for n in item.result.notes)


def test_failed_enrichment_falls_back_to_plain_tags(repo, ade_images, monkeypatch):
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml",
                              ["tagger=vocabulary", "vocabulary=[dog]", "segment.segmenter=clipseg",
                               "segment.enrich=generic"])

    def boom(self, reqs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(type(seg.enricher.chat), "_replies", boom)
    items = list(seg.segment_many(ade_images[:2], batch_size=2))
    assert all(i.ok for i in items)  # the batch is not lost
    for i in items:
        assert i.result.prompts == {} and any("enrich: failed (RuntimeError: CUDA out of memory" in n
                                              for n in i.result.notes)


@pytest.mark.parametrize("reply", [
    '[{"name": "Dogs", "description": "small brown dog"}, {"name": "sky", "description": "**clear** blue"}]',
    '<think>the dog is brown</think>{"dogs": "small brown dog", "Sky": "clear blue"}',
])
def test_image_descriptions_in_other_shapes(repo, loaded, scripted_chat, reply):
    e = PromptEnricher(*_sections(_cfg(repo, "segment.enrich=image")), chat=scripted_chat(lambda r: reply))
    [out] = e(loaded[:1], [["dog", "sky"]])
    assert out.prompts["dog"] == "dog, small brown dog" and out.prompts["sky"].startswith("sky, clear blue")
