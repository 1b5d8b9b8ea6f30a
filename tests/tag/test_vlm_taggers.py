"""The vlm, describe_extract and union taggers on scripted replies (the flows, parsing and provenance)
and with tiny random-init models (the plumbing; their replies are meaningless noise)."""
from __future__ import annotations

import json

import pytest

from selfseg import SelfSeg
from selfseg.cache import ReplyCache
from selfseg.config import load_config
from selfseg.errors import ConfigError
from selfseg.io import load_image
from selfseg.tag import build_tagger
from selfseg.tag.result import TagResult


@pytest.fixture(scope="module")
def loaded(ade_images):
    return [load_image(p) for p in ade_images[:2]]


def _cfg(repo, *overrides):
    return load_config(repo / "configs" / "smoke.yaml", list(overrides))


def test_vlm_tagger_one_batched_call_and_typed_result(repo, loaded, scripted_chat):
    chat = scripted_chat(lambda r: '```json\n["Dogs", "grass", 7]\n```')
    t = build_tagger(_cfg(repo, "tagger=vlm", "vlm.context=a park", "vlm.max_tags=5"), "vlm", chat=chat)
    results = t.tag_batch(loaded)
    assert chat.generate_calls == 1 and len(chat.requests) == len(loaded)  # all images in one call
    # Rows run grouped by size, but each image is asked exactly once.
    assert sorted(map(id, (q.image for q in chat.requests))) == sorted(id(im.image) for im in loaded)
    req = chat.requests[0]
    assert "Context: a park." in req.turns[0][1] and "at most 5" in req.turns[0][1]
    r = results[0]
    assert r.tags == ["dog", "grass"] and r.tagger == "vlm" and r.model == "scripted"
    assert r.nouns[0].support == 1 and r.cycles_run == 1
    assert any("not names dropped" in n for n in r.notes)
    assert r.replies == [{"step": "tags", "model": "scripted", "reply": '```json\n["Dogs", "grass", 7]\n```',
                          "cached": False}]
    back = TagResult.from_json(r.to_json())
    assert back.replies == r.replies and back.tags == r.tags


def test_self_reflection_sees_the_first_answer_and_may_revise(repo, loaded, scripted_chat):
    def respond(req):
        if len(req.turns) == 1:
            return '["dog", "wolf"]'
        # The reflection request carries the whole conversation so far.
        assert req.turns[1] == ("assistant", '["dog", "wolf"]') and req.turns[2][0] == "user"
        return 'Looking again, there is no wolf: ["dog", "bench"]'

    chat = scripted_chat(respond)
    t = build_tagger(_cfg(repo, "tagger=vlm", "vlm.reflection_rounds=1"), "vlm", chat=chat)
    r = t.tag_batch(loaded)[0]
    assert chat.generate_calls == 2  # one batched pass per round, not one per image
    assert r.tags == ["dog", "bench"] and r.cycles_run == 2
    assert {n.noun: n.support for n in r.nouns} == {"dog": 2, "bench": 1}
    assert [x["step"] for x in r.replies] == ["tags", "reflection 1"]


def test_unparsable_reflection_keeps_the_previous_answer(repo, loaded, scripted_chat):
    chat = scripted_chat(lambda req: '["dog"]' if len(req.turns) == 1 else "I am not sure.")
    r = build_tagger(_cfg(repo, "tagger=vlm", "vlm.reflection_rounds=2"), "vlm", chat=chat).tag_batch(loaded)[0]
    assert r.tags == ["dog"]
    assert any("reflection 1: kept the previous answer" in n for n in r.notes)
    assert any("reflection 2: no parsable list" in n for n in r.notes)


def test_empty_description_is_not_sent_to_the_extractor(repo, loaded, scripted_chat):
    vision = scripted_chat(lambda req: "" if req.image is loaded[0].image else "A dog on grass.")
    extractor = scripted_chat(lambda req: '["person", "car"]')
    t = build_tagger(_cfg(repo, "tagger=describe_extract"), "describe_extract", vision=vision, extractor=extractor)
    empty, described = t.tag_batch(loaded)
    assert len(extractor.requests) == 1 and "A dog on grass." in extractor.requests[0].turns[0][1]
    assert empty.tags == [] and any("description is empty" in n for n in empty.notes)
    assert described.tags == ["person", "car"]


def test_the_extractor_reads_the_description_without_its_reasoning(repo, loaded, scripted_chat):
    vision = scripted_chat(lambda req: "<think>A cat or a wolf? Neither: a dog. No horse.</think>\n\nA dog on grass."
                           if req.image is loaded[0].image else "<think>\nIs that a cat or")
    extractor = scripted_chat(lambda req: '["dog", "grass"]')
    t = build_tagger(_cfg(repo, "tagger=describe_extract"), "describe_extract", vision=vision, extractor=extractor)
    described, cut = t.tag_batch(loaded)
    [asked] = [r.turns[0][1] for r in extractor.requests]
    assert "A dog on grass." in asked and "wolf" not in asked and "think" not in asked
    assert described.tags == ["dog", "grass"]
    # cut off while reasoning: nothing to extract, and the note says why
    assert cut.tags == [] and "describe: the reply ended inside <think>; raise vlm.max_new_tokens" in cut.notes
    assert "<think>" in cut.replies[0]["reply"]  # the transcript keeps the reply as the model gave it


def test_a_description_cut_at_max_new_tokens_says_so(repo, loaded, scripted_chat, tmp_path):
    from selfseg.cache import ReplyCache

    cache = ReplyCache(tmp_path / "r.sqlite")
    whole = "A dog on grass."

    def describe(req):
        return whole if req.image is loaded[0].image else ("A dog on grass, a red ball, a wooden", True)

    cfg = _cfg(repo, "tagger=describe_extract")
    for run in range(2):  # the second run is served from the cache, which keeps the cut
        vision = scripted_chat(describe, cache=cache)
        t = build_tagger(cfg, "describe_extract", vision=vision, extractor=scripted_chat(lambda req: '["dog"]'))
        complete, cut = t.tag_batch(loaded)
        assert vision.generate_calls == (1 if run == 0 else 0)
        assert not any("describe:" in n for n in complete.notes)
        assert [n for n in cut.notes if n.startswith("describe:")] == [
            "describe: the description reached vlm.max_new_tokens (64) and was cut; what it would have named "
            "after that is missing (raise it)"]
    assert len(cache) == 2  # the cut's mark is no reply


def test_replies_are_matched_to_their_own_images(repo, loaded, scripted_chat):
    """Rows are reordered for batching (by image size); each result must still get its own image's reply."""
    chat = scripted_chat(lambda req: f'["thing{req.image.size[0]}"]')
    results = build_tagger(_cfg(repo, "tagger=vlm"), "vlm", chat=chat).tag_batch(loaded)
    assert [r.tags for r in results] == [[f"thing{im.image.size[0]}"] for im in loaded]


def test_no_list_at_all_gives_empty_tags_and_a_warning_not_an_error(repo, loaded, scripted_chat):
    tagger = build_tagger(_cfg(repo, "tagger=vlm"), "vlm", chat=scripted_chat(lambda req: "A lovely photo!"))
    r = tagger.tag_batch(loaded)[0]
    assert r.tags == [] and any("no parsable list" in n for n in r.notes)


def test_describe_extract_passes_the_description_to_the_extractor(repo, loaded, scripted_chat):
    vision = scripted_chat(lambda req: "A brown dog lies on green grass next to a wooden bench.", model_id="vlm-x")
    seen = []

    def extract(req):
        seen.append(req)
        assert req.image is None  # the extractor is text-only
        return '<think>dog, grass, bench</think>["dog", "grass", "bench"]'

    extractor = scripted_chat(extract, model_id="llm-y")
    t = build_tagger(_cfg(repo, "tagger=describe_extract", "vlm.reflection_rounds=1"), "describe_extract",
                              vision=vision, extractor=extractor)
    r = t.tag_batch(loaded)[0]
    assert "A brown dog lies on green grass" in seen[0].turns[0][1]
    assert vision.generate_calls == 1 and extractor.generate_calls == 2  # extract + 1 reflection round
    assert r.tags == ["dog", "grass", "bench"] and r.model == "vlm-x + llm-y"
    assert [x["step"] for x in r.replies] == ["describe", "extract", "reflection 1"]


def test_bad_templates_are_one_line_config_errors(repo, scripted_chat):
    with pytest.raises(ConfigError, match="vlm.tag_prompt"):
        build_tagger(_cfg(repo, "tagger=vlm", 'vlm.tag_prompt=List {objects} as JSON'), "vlm", chat=scripted_chat(str))
    with pytest.raises(ConfigError, match="vlm.extract_prompt"):
        load_config(_cfg(repo, "vlm.extract_prompt=no placeholder here"))
    # str.format reads attributes and items of a field: the model was sent "<built-in method strip ...>".
    with pytest.raises(ConfigError, match=r"vlm.tag_prompt: the template names \{context.strip\}; it may use "
                                          r"\{context\}, \{limit\}"):
        _cfg(repo, "vlm.tag_prompt=List objects.{context.strip}")
    # {{description}} is a literal "{description}", so the description never reached the extractor.
    with pytest.raises(ConfigError, match="vlm.extract_prompt: expected a template containing"):
        _cfg(repo, "vlm.extract_prompt=Objects of {{description}} as JSON.")
    with pytest.raises(ConfigError, match="vlm.reflection_prompt: cannot fill the template"):
        _cfg(repo, "vlm.reflection_prompt=Check {")
    assert _cfg(repo, "vlm.tag_prompt=List {{braces}}.{context}{limit}").vlm.tag_prompt.startswith("List")
    for spec in ("{context:{bogus}}", "{context:{limit}}"):  # a field inside a format spec
        with pytest.raises(ConfigError, match=r"vlm.tag_prompt: the template names \{context:\{"):
            _cfg(repo, f"vlm.tag_prompt=List.{spec}")
    with pytest.raises(ConfigError, match="vlm.tag_prompt: cannot fill the template .ValueError: Unknown format"):
        _cfg(repo, "vlm.tag_prompt=List.{context:d}")  # a spec text refuses
    assert _cfg(repo, "vlm.tag_prompt=List.{context!r}{limit:>3}").vlm.tag_prompt.endswith("{limit:>3}")


def test_union_records_who_found_each_tag(repo, loaded, scripted_chat):
    cfg = _cfg(repo, "tagger=union", "union=[vocabulary, vlm]", "vocabulary=[dog, Sky]")
    vlm = build_tagger(cfg, "vlm", chat=scripted_chat(lambda r: '["sky", "tree"]'))
    union = build_tagger(cfg, "union", parts={"vocabulary": build_tagger(cfg, "vocabulary"), "vlm": vlm})
    r = union.tag_batch(loaded)[0]
    assert r.tagger == "union"
    # found by both first, then in order of first appearance; "Sky" and "sky" are one tag
    assert [(n.noun, n.found_by) for n in r.nouns] == [("Sky", ["vocabulary", "vlm"]), ("dog", ["vocabulary"]),
                                                       ("tree", ["vlm"])]
    assert set(r.parts) == {"vocabulary", "vlm"} and r.parts["vlm"].tags == ["sky", "tree"]
    back = TagResult.from_dict(json.loads(r.to_json()))
    assert back.nouns[0].found_by == ["vocabulary", "vlm"] and back.parts["vlm"].tags == ["sky", "tree"]


def test_a_users_words_in_a_union_survive_tag_clean_up(repo, loaded, scripted_chat):
    """Clean-up folds synonyms and drops hypernyms of what a model found; the user's own words stay as given,
    also inside a union (animal is a hypernym of dog, automobile a synonym of car), and a model's tag of the
    same sense as a user's word is folded into the user's spelling."""
    words = "[animal, car, automobile, Dogs]"
    cfg = _cfg(repo, "tagger=union", "union=[vocabulary, vlm]", f"vocabulary={words}")
    vlm = build_tagger(cfg, "vlm", chat=scripted_chat(lambda r: '["dog", "car", "grass"]'))
    union = build_tagger(cfg, "union", parts={"vocabulary": build_tagger(cfg, "vocabulary"), "vlm": vlm})
    tags = union.tag_batch(loaded[:1])[0]
    plan = SelfSeg(cfg)._plan(loaded[0], tags)
    assert plan.classes == ["car", "animal", "automobile", "Dogs", "grass"]
    assert plan.merges == [{"kept": "Dogs", "dropped": "dog", "reason": "synonym"}]
    # What a model alone found is still cleaned.
    alone = build_tagger(cfg, "vlm", chat=scripted_chat(lambda r: '["animal", "dog", "car", "automobile"]'))
    assert SelfSeg(cfg)._plan(loaded[0], alone.tag_batch(loaded[:1])[0]).classes == ["dog", "car"]


def test_a_vocabulary_is_one_class_per_word_whatever_its_case_spacing_or_unicode_form(repo, loaded):
    words = ["Dog", "dog", " dog ", "traffic  light", "Traffic Light", "caf\u00e9", "cafe\u0301", "dogs"]
    cfg = load_config(None, ["tagger=vocabulary", f"vocabulary={json.dumps(words)}"])
    assert build_tagger(cfg).tag_batch(loaded[:1])[0].tags == ["Dog", "traffic light", "caf\u00e9", "dogs"]
    given = load_config(None, ["segment.vocabulary=given", f"vocabulary={json.dumps(words)}"])
    assert SelfSeg(given)._plan(loaded[0], None).classes == ["Dog", "traffic light", "caf\u00e9", "dogs"]


def test_union_of_bcc_and_tiny_vlm_keeps_the_cluster_map(smoke_seg, loaded, repo):
    """Tiny random-init BLIP and Qwen2.5-VL: tags are noise; the merge and the cluster map are checked."""
    cfg = _cfg(repo, "tagger=union", "union=[bcc, vlm]")
    union = build_tagger(cfg, "union", parts={"bcc": smoke_seg.tagger, "vlm": build_tagger(cfg, "vlm")})
    r = union.tag_batch(loaded[:1])[0]
    bcc = r.parts["bcc"]
    assert r.cluster_grid is not None and (r.cluster_grid == bcc.cluster_grid).all()
    assert set(r.tags) == set(bcc.tags) | set(r.parts["vlm"].tags)
    assert all(n.found_by for n in r.nouns) and r.meaningless
    assert any(k.startswith("bcc/") for k in r.timings) and any(k.startswith("vlm/") for k in r.timings)


def test_tiny_vlm_taggers_through_the_pipeline_and_cache(repo, ade_images, tmp_path):
    """Tiny random-init Qwen2.5-VL (replies are noise). Batching: 3 images at vlm.batch_size 2 -> 2 calls.
    A second run with the same cache asks the model nothing and gives the same results."""
    over = ["tagger=vlm", "vlm.batch_size=2", "vlm.max_new_tokens=8", f"vlm.cache={tmp_path / 'r.sqlite'}"]
    images = list(ade_images) * 2
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml", over)
    assert seg.meaningless
    first = [i.result for i in seg.tag_many(images[:3], batch_size=3)]
    chat = seg.tagger.chat
    assert chat.generate_calls == 2 and chat.stats.rows_per_call == [2, 1]
    assert all(r.meaningless and r.replies and not r.replies[0]["cached"] for r in first)
    seg2 = SelfSeg.from_config(repo / "configs" / "smoke.yaml", over)
    again = [i.result for i in seg2.tag_many(images[:3], batch_size=3)]
    assert seg2.tagger.chat.generate_calls == 0 and all(r.replies[0]["cached"] for r in again)
    assert [r.replies[0]["reply"] for r in again] == [r.replies[0]["reply"] for r in first]
    assert len(ReplyCache(tmp_path / "r.sqlite")) == len(set(map(str, images[:3])))


def test_tiny_describe_extract_with_the_vlm_as_extractor(repo, ade_images):
    """vlm.llm unset: the tiny VLM describes (with the image) and extracts (text only). Noise replies."""
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["tagger=describe_extract", "vlm.max_new_tokens=8"])
    [item] = list(seg.tag_many(ade_images[:1]))
    assert item.ok and item.result.tagger == "describe_extract" and item.result.meaningless
    assert seg.tagger.vision is not None and seg.tagger.extractor.model is seg.tagger.vision.model  # shared weights


def test_vlm_llm_naming_the_vlm_is_the_vlm_itself(repo, ade_images, tmp_path):
    """A VLM checkpoint asked as the extractor too is loaded once, as the VLM (as a causal LM it would be
    refused, or a second copy held)."""
    from selfseg.models.tiny import build_tiny_vlm

    model, processor = build_tiny_vlm()
    model.save_pretrained(tmp_path / "vlm")
    processor.save_pretrained(tmp_path / "vlm")
    folder = str(tmp_path / "vlm")
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["tagger=describe_extract", f"vlm.model={folder}",
                                                                f"vlm.llm={folder}", "vlm.max_new_tokens=4"])
    t = seg.tagger
    assert type(t.extractor).__name__ == "VisionChat" and t.extractor.model is t.vision.model


def test_tiny_describe_extract_with_a_separate_causal_lm(repo, ade_images):
    """Tiny random-init Qwen2.5-VL describes, a tiny random-init Llama extracts (both reply with noise):
    the text LM gets the description as text, one batched call per step."""
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml", ["tagger=describe_extract", "vlm.llm=tiny-random",
                                                                "vlm.max_new_tokens=6", "vlm.reflection_rounds=1"])
    items = list(seg.tag_many(ade_images[:2], batch_size=2))
    assert all(i.ok for i in items)
    t = seg.tagger
    assert type(t.extractor).__name__ == "ChatLM" and t.vision.generate_calls == 1
    assert t.extractor.generate_calls == 2  # extract + one reflection round, both images per call
    r = items[0].result
    assert [x["step"] for x in r.replies] == ["describe", "extract", "reflection 1"]
    assert r.model == "tiny-random" and r.meaningless


def test_union_credit_follows_chained_merges():
    """bcc found couch, vlm found sofa and loveseat; clean-up merged couch -> sofa -> loveseat."""
    import numpy as np

    from selfseg import NounSupport, Segmentation, TagResult
    from selfseg.evaluate.score import _found_by

    nouns = [NounSupport(noun=n, support=1, cycles=1, clusters=[], found_by=[who])
             for n, who in (("couch", "bcc"), ("sofa", "vlm"), ("loveseat", "vlm"))]
    tags = TagResult(source="x", image_size=(4, 4), nouns=nouns, tagger="union")
    seg = Segmentation(image_size=(4, 4), masks=np.zeros((0, 4, 4), bool), boxes=[], scores=[], mask_scores=[],
                       labels=[], classes=["loveseat"], segmenter="test", tags=tags,
                       merges=[{"kept": "sofa", "dropped": "couch"}, {"kept": "loveseat", "dropped": "sofa"}])
    assert _found_by(seg) == {"loveseat": ["bcc", "vlm"]}
    # read back from its JSON, as the benchmark reads predictions
    assert _found_by(Segmentation.from_dict(seg.to_dict())) == {"loveseat": ["bcc", "vlm"]}


def test_the_same_checkpoint_however_spelled_is_one(tmp_path):
    from selfseg.models.vlm import _same_checkpoint

    (tmp_path / "vlm").mkdir()
    assert _same_checkpoint(str(tmp_path / "vlm"), str(tmp_path / "." / "vlm"))
    assert _same_checkpoint("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct")
    assert not _same_checkpoint("Qwen/Qwen2.5-VL-3B-Instruct@abc", "Qwen/Qwen2.5-VL-3B-Instruct")
    assert not _same_checkpoint("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-7B-Instruct")
