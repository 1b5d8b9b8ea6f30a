from __future__ import annotations

import pytest

from selfseg.config import Config, load_config
from selfseg.errors import ConfigError


def test_defaults_are_the_papers():
    c = load_config()
    assert c.clustering.scales == [384, 512] and c.clustering.ks == [2, 8]
    assert (c.clustering.crf_weight, c.clustering.crf_theta, c.clustering.mode_filter_passes) == (6.0, 0.8, 8)
    assert c.clustering.pos_dim == 256
    assert c.captioning.cycles == 1 and c.captioning.profile == "released"
    assert c.model.blip == "Salesforce/blip-image-captioning-large"


def test_caption_profiles_resolve_and_every_field_overrides():
    from selfseg.config import CaptioningConfig

    released = load_config().captioning.sampling()
    # The released code's effective sampling: LAVIS passes 1.1; 4..25 tokens counting the 4 prompt tokens.
    assert (released.repetition_penalty, released.top_p, released.top_k) == (1.1, 1.0, 50)
    assert released.new_token_limits(4) == (0, 21)
    paper = load_config({}, ["captioning.profile=paper"]).captioning.sampling()
    assert (paper.repetition_penalty, paper.new_token_limits(4)) == (100.0, (4, 25))
    mixed = CaptioningConfig(profile="paper", repetition_penalty=2.0, max_length=30, length_counts_prompt=True,
                             top_k=0).sampling()
    assert (mixed.repetition_penalty, mixed.top_k, mixed.new_token_limits(4)) == (2.0, 0, (0, 26))
    with pytest.raises(ConfigError, match="captioning.profile: expected released or paper, got 'lavis'"):
        load_config({"captioning": {"profile": "lavis"}})
    with pytest.raises(ConfigError, match="unknown config key 'captioning.min_new_tokens'"):
        load_config({"captioning": {"min_new_tokens": 4}})


@pytest.mark.parametrize("name, cycles", [("bcc_voc", 1), ("bcc_ade20k", 10), ("bcc_cityscapes", 20), ("smoke", 2)])
def test_shipped_configs_load(repo, name, cycles):
    c = load_config(repo / "configs" / f"{name}.yaml")
    assert c.captioning.cycles == cycles
    assert c.clustering.ks == [2, 8]  # inherited from base.yaml


def test_every_shipped_config_loads(repo):
    """Every YAML under configs/ (benchmarks included) passes the loader's checks as it ships."""
    found = sorted((repo / "configs").rglob("*.yaml"))
    assert len(found) > 20
    for path in found:
        load_config(path)


@pytest.mark.parametrize("source, overrides, message", [
    ({"clustering": {"ks": [2, 3, 4]}}, [],
     "clustering.ks: read by consensus 'chain' only, and consensus is 'coassoc': set consensus: chain in the same "
     "section, or leave ks out"),
    (None, ["clustering.pos_dim=0", "clustering.align_cost=mismatch"], "clustering.pos_dim, align_cost: read by "
     "consensus 'chain' only, and consensus is 'coassoc': set consensus: chain in the same section, or leave "
     "pos_dim and align_cost out"),
    ("bcc_voc", ["clustering.ks=[2, 3]", "clustering.consensus=coassoc"], "clustering.ks: read by consensus 'chain'"),
    ("bcc_voc", ["clustering.coassoc_runs=4"],
     "clustering.coassoc_runs: read by consensus 'coassoc' only, and consensus is 'chain': set consensus: coassoc"),
    ({"clustering": {"consensus": "chain", "coassoc_ks": [8, 12], "coassoc_pos_dim": 64}}, [],
     "clustering.coassoc_ks, coassoc_pos_dim: read by consensus 'coassoc' only"),
])
def test_a_field_only_the_other_consensus_reads_is_refused_when_the_config_loads(source, overrides, message):
    """The tagger hands its whole clustering section to the clustering, so a field the chosen consensus never
    reads would go unused without a word; the loader refuses it before any model is loaded."""
    import re

    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load_config(source, overrides)


def test_the_other_consensus_fields_at_their_defaults_are_no_mistake(repo):
    # base.yaml lists the chain's fields at their defaults: switching to coassoc leaves nothing unread
    c = load_config(repo / "configs" / "bcc_voc.yaml", ["clustering.consensus=coassoc"])
    assert c.clustering.consensus == "coassoc" and c.clustering.ks == [2, 8]
    assert load_config({"clustering": {"ks": [2, 8], "pos_dim": 256, "coassoc_runs": 10}}).clustering.ks == [2, 8]


def test_a_config_changed_after_loading_is_refused_by_validate_and_by_the_clustering():
    import dataclasses

    import numpy as np

    from selfseg.tag.clustering import ensemble_cluster

    c = load_config()
    c.clustering.ks = [2, 3]
    with pytest.raises(ConfigError, match="^clustering.ks: read by consensus 'chain' only"):
        c.validate()
    feats = [np.random.default_rng(0).normal(size=(6, 6, 4)).astype(np.float32)]
    with pytest.raises(ConfigError, match="^ks: read by consensus 'chain' only"):
        ensemble_cluster(feats, c.clustering)
    with pytest.raises(ConfigError, match="^ks: read by consensus 'chain' only"):
        dataclasses.replace(load_config().clustering, ks=[2, 3])


PAPER_CONFIGS = ["bcc_voc", "bcc_ade20k", "bcc_cityscapes", "benchmarks/voc", "benchmarks/ade20k_full",
                 "benchmarks/cityscapes", "benchmarks/voc_bcc_clusters", "benchmarks/voc_caption"]


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_the_papers_configs_locate_every_tag_found(repo, name):
    """The paper's pipeline has no tag clean-up: its dataset and benchmark configs keep road beside street,
    building beside house and person beside man, which the clean-up (on by default) would drop."""
    import dataclasses

    from selfseg import SelfSeg
    from selfseg.io import LoadedImage
    from selfseg.tag.result import NounSupport, TagResult

    config = load_config(repo / "configs" / f"{name}.yaml")
    assert not config.segment.merge_synonyms and not config.segment.merge_hypernyms
    words = ["street", "road", "house", "building", "man", "person"]
    tags = TagResult(source="x", image_size=(8, 8), tagger="bcc",
                     nouns=[NounSupport(w, 1, 1, [0]) for w in words])
    loaded = LoadedImage(image=None, size=(8, 8), source="x")  # the plan reads the tags only
    plan = SelfSeg(config)._plan(loaded, tags)
    assert plan.classes == words and plan.merges == []
    product = dataclasses.replace(config, segment=dataclasses.replace(config.segment, merge_synonyms=True,
                                                                      merge_hypernyms=True))
    assert SelfSeg(product)._plan(loaded, tags).classes == ["street", "house", "man"]


@pytest.mark.parametrize("name", ["base", "smoke", "vlm", "describe_extract", "union_bcc_vlm", "benchmarks/smoke"])
def test_configs_beyond_the_paper_keep_the_tag_clean_up(repo, name):
    config = load_config(repo / "configs" / f"{name}.yaml")
    assert config.segment.merge_synonyms and config.segment.merge_hypernyms


def test_overrides_parse_yaml_values(repo):
    c = load_config(repo / "configs" / "bcc_voc.yaml",
                    ["captioning.cycles=5", "clustering.ks=[2, 3, 4]", "model.dtype=bfloat16", "model.blip=123"])
    assert c.captioning.cycles == 5 and c.clustering.ks == [2, 3, 4]
    assert c.model.dtype == "bfloat16" and c.model.blip == "123"


def test_a_section_given_as_a_mapping_sets_only_the_fields_it_names(repo):
    """`segment.grounded_sam2={box_threshold: 0.3}` over the smoke config keeps its tiny detector and SAM 2: a
    mapping sets its fields as a file's section does over its base, it does not reset the others."""
    smoke = repo / "configs" / "smoke.yaml"
    c = load_config(smoke, ["segment.grounded_sam2={box_threshold: 0.3}", "segment={segmenter: clipseg}"])
    gs = c.segment.grounded_sam2
    assert (gs.box_threshold, gs.detector, gs.sam, gs.text_threshold) == (0.3, "tiny-random", "tiny-random", 0.0)
    assert c.segment.segmenter == "clipseg" and c.segment.clipseg.model == "tiny-random"
    assert c.segment.enrich_max_new_tokens == load_config(smoke).segment.enrich_max_new_tokens
    with pytest.raises(ConfigError, match="unknown config key 'segment.grounded_sam2.nope'"):
        load_config(smoke, ["segment.grounded_sam2={nope: 1}"])


@pytest.mark.parametrize(
    "data, overrides, message",
    [
        ({"clustering": {"kz": [2]}}, [], "unknown config key 'clustering.kz'"),
        ({"bogus": 1}, [], "valid keys: name, tagger"),
        ({}, ["captioning.cycle=3"], "unknown config key 'captioning.cycle'"),
        ({}, ["nope"], "expected key.sub=value"),
        ({"captioning": {"cycles": "many"}}, [], "captioning.cycles: expected an integer"),
        ({"captioning": {"cycles": 0}}, [], "captioning.cycles: expected an integer in 1..10000"),
        ({}, ["captioning.cycles=100000000000"], "captioning.cycles: expected an integer in 1..10000"),
        ({}, ["clustering.crf_weight=.nan"], "clustering.crf_weight: expected a finite number, got nan"),
        ({"clustering": {"crf_weight": float("inf")}}, [], "clustering.crf_weight: expected a finite number"),
        ({}, ["clustering.crf_weight=" + "9" * 400], "clustering.crf_weight: expected a finite number, got 999"),
        ({"clustering": {"scales": [100]}}, [], "multiples of 16"),
        ({"model": {"dtype": "int8"}}, [], "model.dtype"),
        ({"clustering": 3}, [], "clustering: expected a mapping"),
    ],
)
def test_bad_configs_name_the_problem(data, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(data, overrides)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("captioning: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2, column 1: expected ',' or ']'"):
        load_config(bad)
    bad.write_text("model:\n\tblip: x\n")  # a tab where YAML wants spaces: the place is named
    with pytest.raises(ConfigError, match=r"line 2, column 1: found character '\\t' that cannot start any token"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_base_chain_and_loop(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\ncaptioning: {cycles: 3}\n")
    (tmp_path / "b.yaml").write_text("captioning: {cycles: 7, top_p: 0.9}\n")
    c = load_config(tmp_path / "a.yaml")
    assert c.captioning.cycles == 3 and c.captioning.top_p == 0.9
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


def test_round_trip_through_dict():
    c = load_config({"captioning": {"cycles": 4}})
    assert load_config(c.to_dict()) == c
    assert isinstance(load_config(c), Config)


@pytest.mark.parametrize(
    "overrides, check",
    [
        (["clustering.kmeans_tol=1e-5"], lambda c: c.clustering.kmeans_tol == 1e-5),
        (["captioning.prompt=a photo of: x"], lambda c: c.captioning.prompt == "a photo of: x"),
        (["name=2024-01-01"], lambda c: c.name == "2024-01-01"),
        (["model.cache_dir=123"], lambda c: c.model.cache_dir == "123"),
        (["model.cache_dir=null"], lambda c: c.model.cache_dir is None),
    ],
)
def test_override_values_keep_their_field_types(overrides, check):
    assert check(load_config({}, overrides))


@pytest.mark.parametrize(
    "data",
    [{"clustering": {"kmeans_n_init": 0}}, {"clustering": {"mode_filter_size": -1}},
     {"clustering": {"crf_filter_size": 4}}, {"captioning": {"repetition_penalty": 0}},
     {"captioning": {"min_length": 9, "max_length": 5}}, {"captioning": {"top_k": -1}}, {"base": 5}],
)
def test_more_invalid_values(data, tmp_path):
    import yaml

    if "base" in data:
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump(data))
        data = p
    with pytest.raises(ConfigError):
        load_config(data)


def test_a_shipped_benchmark_config_finds_its_dataset_from_any_directory(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config(repo / "configs" / "benchmarks" / "smoke.yaml")
    assert c.evaluation.root == str((repo / "examples" / "ade20k_sample").resolve())
    assert c.evaluation.out == "runs/{name}"  # outputs stay relative to the working directory
    assert c.vlm.cache is None  # null is not a path


def test_shipped_configs_point_where_they_did_from_the_repository(repo, monkeypatch):
    monkeypatch.chdir(repo)
    for name, root in [("voc", "data/VOCdevkit/VOC2012"), ("ade20k", "data/ADEChallengeData2016"),
                       ("ade20k_full", "data/ADE20K_2021_17_01"), ("cityscapes", "data/cityscapes"),
                       ("smoke", "examples/ade20k_sample"), ("voc20", "data/VOCdevkit/VOC2012"),
                       ("coco_object", "data/coco_stuff164k"), ("pascal_context_59", "data/VOCdevkit/VOC2010"),
                       ("pascal_context_60", "data/VOCdevkit/VOC2010"),
                       ("pascal_context_459", "data/VOCdevkit/VOC2010")]:
        c = load_config(f"configs/benchmarks/{name}.yaml")
        assert c.evaluation.root == str((repo / root).resolve()), name


def test_input_paths_are_relative_to_the_file_that_set_them(tmp_path, monkeypatch):
    import os

    (tmp_path / "configs" / "shared").mkdir(parents=True)
    (tmp_path / "configs" / "shared" / "base.yaml").write_text(
        "model: {cache_dir: hf, blip: ./ckpt/blip}\n"
        "vlm: {cache: replies.sqlite, model: Qwen/Qwen2.5-VL-3B-Instruct, llm: ~/models/llm}\n"
        "evaluation: {classes: names.txt, llm_cache: '~/love.json'}\n")
    (tmp_path / "configs" / "run.yaml").write_text(
        "base: shared/base.yaml\nevaluation: {root: ../data/set, out: 'runs/{name}'}\n"
        "segment: {grounded_sam2: {detector: /abs/gdino, sam: ../sam}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    c = load_config(tmp_path / "configs" / "run.yaml")
    shared = tmp_path / "configs" / "shared"
    assert c.evaluation.root == str(tmp_path / "data" / "set")  # this file's folder
    assert c.evaluation.classes == str(shared / "names.txt")  # the base file's folder
    assert c.model.cache_dir == str(shared / "hf") and c.vlm.cache == str(shared / "replies.sqlite")
    assert c.model.blip == str(shared / "ckpt" / "blip")  # "./": a local checkpoint
    assert c.segment.grounded_sam2.sam == str(tmp_path / "sam")
    assert c.vlm.model == "Qwen/Qwen2.5-VL-3B-Instruct"  # a hub id is not a path
    assert c.segment.grounded_sam2.detector == "/abs/gdino"
    assert c.vlm.llm == os.path.expanduser("~/models/llm")
    assert c.evaluation.llm_cache == os.path.expanduser("~/love.json")
    assert c.evaluation.out == "runs/{name}"


def test_paths_from_overrides_and_dicts_stay_relative_to_the_working_directory(tmp_path):
    (tmp_path / "c.yaml").write_text("evaluation: {root: data}\n")
    c = load_config(tmp_path / "c.yaml", ["evaluation.classes=names.txt", "evaluation.root=mine"])
    assert c.evaluation.root == "mine" and c.evaluation.classes == "names.txt"
    d = load_config({"evaluation": {"root": "data", "classes": "names.txt"}, "model": {"cache_dir": "hf"}})
    assert (d.evaluation.root, d.evaluation.classes, d.model.cache_dir) == ("data", "names.txt", "hf")


@pytest.mark.parametrize("value", ["null", "''", "3", "[a, b]"])
def test_odd_path_values_are_left_to_validation(tmp_path, value):
    (tmp_path / "c.yaml").write_text(f"evaluation: {{classes: {value}}}\nvlm: {{cache: {value}}}\n")
    if value in ("3", "[a, b]"):
        with pytest.raises(ConfigError, match="expected"):
            load_config(tmp_path / "c.yaml")
    else:
        c = load_config(tmp_path / "c.yaml")
        assert c.evaluation.classes in (None, "") and c.vlm.cache in (None, "")


def test_readme_config_table_is_generated_from_the_blocks(repo):
    from selfseg.config import README_MARKERS, config_table

    start, end = README_MARKERS
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table.strip() == config_table().strip(), "stale README config table: run python -m selfseg.config README.md"
    # every section names what reads it
    below = table.split("| section | defined in | read by |", 1)[1]
    sections = [line.split("|") for line in below.splitlines() if line.startswith("| `")]
    assert sections and all(cells[3].strip() for cells in sections), [c[1] for c in sections if not c[3].strip()]


def test_every_config_field_is_documented_where_its_block_is_defined():
    import dataclasses

    from selfseg.config import field_notes, sections

    missing = [f"{name}.{f.name}" for name, cls in sections() for f in dataclasses.fields(cls)
               if not dataclasses.is_dataclass(f.type) and not field_notes(cls).get(f.name)
               and f.name not in {s.rsplit(".", 1)[-1] for s, _ in sections() if s}]
    assert not missing, f"fields without a comment above them: {missing}"


def test_field_notes_read_the_comment_lines_above_each_field():
    from selfseg.config import field_notes
    from selfseg.segment.grounded_sam2 import GroundedSam2Config

    notes = field_notes(GroundedSam2Config)
    assert notes["nms_iou"] == "Class-agnostic NMS: a box overlapping a better one by more than this IoU is dropped."
    assert notes["detector"].startswith("Grounding DINO checkpoint") and "tiny-random" in notes["detector"]


def test_each_block_is_defined_by_its_component_and_validates_itself():
    from selfseg.segment.clipseg import ClipSegConfig
    from selfseg.tag.clustering.config import ClusteringConfig

    with pytest.raises(ConfigError, match=r"^threshold / min_area / max_instances / tags_per_call: expected"):
        ClipSegConfig(threshold=2.0)
    with pytest.raises(ConfigError, match=r"^ks: expected a non-empty list"):
        ClusteringConfig(ks=[])
    # the loader says where the block sits, for files and for overrides alike
    with pytest.raises(ConfigError, match=r"^segment\.clipseg\.threshold / min_area"):
        load_config({"segment": {"clipseg": {"threshold": 2.0}}})
    with pytest.raises(ConfigError, match=r"^segment\.grounded_sam2\.max_box_area: expected a fraction in \(0, 1\]"):
        load_config({}, ["segment.grounded_sam2.max_box_area=0"])
    with pytest.raises(ConfigError, match=r"^captioning\.top_p: expected a value in \(0, 1\]"):
        load_config({}, ["captioning.top_p=2"])


def test_names_come_from_the_registries():
    with pytest.raises(ConfigError, match="unknown tagger 'nope'; expected one of: bcc, caption, describe_extract, "
                                          "union, vlm, vocabulary"):
        load_config({"tagger": "nope"})
    with pytest.raises(ConfigError, match="unknown tagger 'clip'"):
        load_config({"tagger": "union", "union": ["bcc", "clip"]})
    with pytest.raises(ConfigError, match="unknown segmenter 'sam'; expected one of: bcc_clusters, clipseg, "
                                          "grounded_sam2"):
        load_config({"segment": {"segmenter": "sam"}})
    with pytest.raises(ConfigError,
                       match="evaluation.mapper: expected embedding, hybrid, lexical or llm, got 'wordnet'"):
        load_config({"evaluation": {"mapper": "wordnet"}})


def test_a_component_block_is_read_from_its_sections():
    from selfseg.segment import segmenters
    from selfseg.tag import taggers

    c = load_config({"captioning": {"cycles": 3}, "vocabulary": ["dog"]})
    bcc = taggers().component("bcc").block(c)
    assert bcc.captioning is c.captioning and bcc.clustering is c.clustering and bcc.nouns is c.nouns
    assert taggers().component("vocabulary").block(c).vocabulary == ["dog"]
    assert segmenters().component("clipseg").block(c) is c.segment.clipseg
    assert segmenters().component("bcc_clusters").block(c) is None


@pytest.mark.parametrize("data, segment, evaluate, expected", [
    ({}, False, False, ["Salesforce/blip-image-captioning-large"]),
    ({}, True, False, ["Salesforce/blip-image-captioning-large", "IDEA-Research/grounding-dino-base",
                       "facebook/sam2.1-hiera-large"]),
    ({"tagger": "union", "union": ["vlm", "bcc"]}, False, False,
     ["Qwen/Qwen2.5-VL-3B-Instruct", "Salesforce/blip-image-captioning-large"]),
    ({"tagger": "describe_extract", "vlm": {"llm": "org/lm"}}, False, False, ["Qwen/Qwen2.5-VL-3B-Instruct", "org/lm"]),
    ({"tagger": "describe_extract"}, False, False, ["Qwen/Qwen2.5-VL-3B-Instruct"]),
    ({"tagger": "vocabulary", "vocabulary": ["a"], "segment": {"segmenter": "clipseg", "enrich": "generic"},
      "vlm": {"llm": "org/lm"}}, True, False, ["CIDAS/clipseg-rd64-refined", "org/lm"]),
    ({"tagger": "vocabulary", "vocabulary": ["a"], "segment": {"segmenter": "bcc_clusters"},
      "evaluation": {"mapper": "embedding"}}, True, True, ["sentence-transformers/all-MiniLM-L6-v2"]),
    ({"tagger": "vocabulary", "vocabulary": ["a"], "evaluation": {"mapper": "lexical"}}, False, True, []),
])
def test_checkpoints_are_what_the_chosen_components_declare(data, segment, evaluate, expected):
    from selfseg.config import checkpoints

    assert checkpoints(load_config(data), segment=segment, evaluate=evaluate) == expected


def test_tiny_models_are_found_through_the_declarations(repo):
    from selfseg.config import uses_tiny

    smoke = load_config(repo / "configs" / "smoke.yaml")
    assert uses_tiny(smoke) and uses_tiny(smoke, segment=True)
    real = load_config({"segment": {"clipseg": {"model": "tiny-random"}, "segmenter": "clipseg"}})
    assert not uses_tiny(real) and uses_tiny(real, segment=True)
    # a given vocabulary runs no tagger: a tiny BLIP then makes nothing meaningless
    given = load_config({"model": {"blip": "tiny-random"}, "vocabulary": ["dog"], "segment": {"vocabulary": "given"}})
    assert uses_tiny(given) and not uses_tiny(given, segment=True)


def test_validate_checks_a_config_changed_after_loading():
    c = load_config({})
    c.run.batch_size = 0
    with pytest.raises(ConfigError, match=r"^run\.batch_size: expected an integer >= 1, got 0"):
        c.validate()
    c = load_config({})
    c.segment.grounded_sam2.nms_iou = None
    with pytest.raises(ConfigError, match=r"^segment\.grounded_sam2\.nms_iou: expected a number, got None"):
        c.validate()


def test_a_section_object_inside_a_mapping_is_refused_on_every_path():
    from selfseg.config import ModelConfig

    for overrides in ([], ["model.dtype=float16"]):
        with pytest.raises(ConfigError, match="model: expected a mapping"):
            load_config({"model": ModelConfig()}, overrides)


def test_registry_build_uses_the_parts_it_is_given_and_builds_the_others():
    from dataclasses import dataclass

    from selfseg.registry import Registry

    built = []

    @dataclass
    class Block:
        parts: list

    reg: Registry = Registry("thing")
    reg.register("leaf")(lambda block, models: built.append("leaf") or "leaf-made")
    reg.register("whole", config=Block, parts=lambda b: b.parts)(lambda block, models, parts: parts)

    class Whole:
        parts = ["leaf"]
        model = None

    assert reg.build("whole", Whole()) == {"leaf": "leaf-made"} and built == ["leaf"]
    assert reg.build("whole", Whole(), parts={"leaf": "given"}) == {"leaf": "given"} and built == ["leaf"]


def test_label_mappers_and_datasets_declare_their_blocks_in_the_evaluation_section():
    from selfseg.config import EvaluationConfig
    from selfseg.evaluate.datasets import DatasetConfig, datasets
    from selfseg.evaluate.mappers import mappers
    from selfseg.evaluate.mappers.lexical import LexicalMapperConfig

    c = load_config({"evaluation": {"mapper": "lexical", "lexical_level": "synonym"}})
    for name in mappers().names():
        comp = mappers().component(name)
        assert comp.section == "evaluation" and isinstance(comp.block(c), comp.config)
    assert all(datasets().component(n).config is DatasetConfig for n in datasets().names())
    assert mappers().component("lexical").block(c).lexical_level == "synonym"
    assert issubclass(EvaluationConfig, (LexicalMapperConfig, DatasetConfig))
    with pytest.raises(ConfigError, match=r"^lexical_level: expected exact, synonym, hyponym or meronym"):
        LexicalMapperConfig(lexical_level="hypernym")
    with pytest.raises(ConfigError, match=r"^evaluation\.embedding_threshold: expected a cosine in \[-1, 1\]"):
        load_config({}, ["evaluation.embedding_threshold=2"])


def test_a_dataset_is_built_from_its_block(repo):
    from selfseg.errors import DatasetError
    from selfseg.evaluate.datasets import datasets

    c = load_config(repo / "configs" / "benchmarks" / "smoke.yaml")
    ds = datasets().build(c.evaluation.dataset, c)
    assert ds.name == c.evaluation.dataset and ds.split == c.evaluation.split and len(ds.samples) >= 1
    assert str(ds.root) == c.evaluation.root
    # each registered dataset loads itself: another name reads its own layout under the block's root
    with pytest.raises(DatasetError, match="Cityscapes"):
        datasets().build("cityscapes", c)
