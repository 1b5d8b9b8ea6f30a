"""The label mappers against the development set (tests/evaluate/mapping_dev: descriptions written and labelled
by reading, before any mapper ran on them; RULES.md there says how), and the description-reading rules one by
one. The suite's summary prints agreement per dataset, per category, per style and per deciding rule."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from selfseg.errors import DatasetError
from selfseg.evaluate.datasets import class_list, dataset_spec
from selfseg.evaluate.mappers import build_mapper
from selfseg.evaluate.mappers.agreement import agreement, agreement_by_threshold, read_labelled, within
from selfseg.evaluate.mappers.lexicon import Lexicon, shipped_lexicon

DEV = Path(__file__).parent / "mapping_dev"
# file -> dataset; cityscapes_regions imitates region-level multimodal models' answers; voc_c was written by a
# third VOC writer for the mapper's general faults to be read from (see RULES.md)
DATASETS = {"voc": "voc", "ade20k_150": "ade20k", "cityscapes": "cityscapes", "cityscapes_regions": "cityscapes",
            "coco_panoptic": "coco", "coco_stuff": "coco-stuff", "pascal_context_59": "pascal-context-59",
            "pascal_context_459": "pascal-context-459", "voc_c": "voc"}
# Agreement floors, a point or two under today's figures (README), so a regression shows. The COCO and
# PASCAL-Context files were written apart from their lexicons and nothing in those was fitted to them, hence the
# lower floors; voc_c was read for general rules, no row fitted one by one (brand names, one writer's calls).
FLOOR = {"voc": 0.97, "ade20k_150": 0.95, "cityscapes": 0.98, "cityscapes_regions": 0.98, "coco_panoptic": 0.90,
         "coco_stuff": 0.90, "pascal_context_59": 0.93, "pascal_context_459": 0.92, "voc_c": 0.82}
# Single nouns (BCC tags, the `tag` rows) as a head-noun-only WordNet mapping maps them on this set (85, 88,
# 71, 76%; COCO panoptic 76%, COCO-Stuff 72%, PASCAL-Context 74% and 79%; voc_c 54%: the lexical mapper with an
# empty lexicon, when each file was added): reading whole descriptions must map them at least as well.
TAG_BASELINE = {"voc": 0.85, "ade20k_150": 0.88, "cityscapes": 0.71, "cityscapes_regions": 0.76,
                "coco_panoptic": 0.76, "coco_stuff": 0.72, "pascal_context_59": 0.74, "pascal_context_459": 0.79,
                "voc_c": 0.54}
# ... and nearly all of them, where the lexicons were written with the file's tags in view; voc_c's tags lean on
# brand names and rare words (75%)
TAG_FLOOR = {name: 0.97 for name in DATASETS} | {"voc_c": 0.73}
# Files written by a second writer after the mapper existed, whose first agreement was the estimate for new text
# (README). No entry or rule is written for their rows; floors sit a point or two under the README's figure.
HELD_OUT = {"ade20k_150_b": "ade20k", "voc_b": "voc", "coco_panoptic_b": "coco"}
HELD_OUT_FLOOR = {"ade20k_150_b": 0.76, "voc_b": 0.88, "coco_panoptic_b": 0.83}
# Benchmarks that fold another's classes (their ground truth is the source's, relabelled) -> the development file
# they are measured on, read against their classes (a label they lack is none).
FOLDED = {"voc20": "voc", "coco-object": "coco_panoptic", "pascal-context-60": "pascal_context_59"}


@pytest.fixture(scope="module")
def lexical_mappers():
    return {f: build_mapper("lexical", ds) for f, ds in DATASETS.items()}


def test_the_development_set_is_large_spread_and_well_formed():
    rows = {f: read_labelled(DEV / f"{f}.tsv") for f in DATASETS}
    assert {DATASETS[f] for f in rows} == {"voc", "ade20k", "cityscapes", "coco", "coco-stuff", "pascal-context-59",
                                           "pascal-context-459"}
    assert sum(map(len, rows.values())) >= 400 and all(len(r) >= 100 for r in rows.values())
    assert set(DATASETS) | set(HELD_OUT) == {p.stem for p in DEV.glob("*.tsv")}  # every file is measured
    rows |= {f: read_labelled(DEV / f"{f}.tsv") for f in HELD_OUT}
    for f, rs in rows.items():
        dataset = DATASETS.get(f) or HELD_OUT[f]
        names = {c.name for c in class_list(dataset)}
        assert {r.style for r in rs} == {"tag", "caption", "region"}, f
        assert all(r.label is None or r.label in names for r in rs), f
        assert len({r.description for r in rs}) == len(rs), f"{f}: a description repeats"


@pytest.mark.parametrize("name", list(DATASETS))
def test_lexical_mapping_agrees_with_the_development_set(report, lexical_mappers, name):
    rows = read_labelled(DEV / f"{name}.tsv")
    result = agreement(lexical_mappers[name], rows)
    report(f"lexical mapper on {name} ({result.n} descriptions)", result.table())
    assert result.total >= FLOOR[name], [(r.description, r.label, m.cls, m.rule) for r, m in result.misses]
    assert result.groups["style:tag"][0] >= max(TAG_BASELINE[name], TAG_FLOOR[name])


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_lexical_mapping_on_the_held_out_files(report, name):
    """Reported, and held near the README's figure: a change that helps the in-sample files at the cost of new
    text shows here."""
    rows = read_labelled(DEV / f"{name}.tsv")
    result = agreement(build_mapper("lexical", HELD_OUT[name]), rows)
    report(f"lexical mapper on {name}, held out ({result.n} descriptions)", result.table())
    assert len(rows) >= 180 and result.total >= HELD_OUT_FLOOR[name], result.total
    # no line of an in-sample file of its dataset, nor one but for an article: the mapper was fitted to those
    def bare(text):
        return " ".join(w for w in re.findall(r"[\w']+", text.lower()) if w not in ("a", "an", "the"))

    seen = {bare(r.description) for f, ds in DATASETS.items() if ds == HELD_OUT[name]
            for r in read_labelled(DEV / f"{f}.tsv")}
    assert not [r.description for r in rows if bare(r.description) in seen]


@pytest.mark.parametrize("dataset", list(FOLDED))
def test_a_folded_benchmark_maps_as_its_source_then_folds(report, lexical_mappers, dataset):
    """Row by row, the folded benchmark's class is the source's class folded (same name, or none), so it agrees
    with the relabelled file at least as well as the source with its own."""
    name = FOLDED[dataset]
    rows = read_labelled(DEV / f"{name}.tsv")
    keep = {c.name for c in class_list(dataset)}
    folded = build_mapper("lexical", dataset).map([r.description for r in rows])
    source = lexical_mappers[name].map([r.description for r in rows])
    assert [m.cls for m in folded] == [m.cls if m.cls in keep else None for m in source]
    result = agreement(build_mapper("lexical", dataset), within(rows, sorted(keep)))
    report(f"lexical mapper on {name} read as {dataset} ({result.n} descriptions)", result.table())
    assert result.total >= agreement(lexical_mappers[name], rows).total
    assert result.total >= FLOOR[name]


def test_lexical_beats_the_embedding_mapper_by_25_points_on_cityscapes(report, lexical_mappers):
    pytest.importorskip("sentence_transformers")
    rows = read_labelled(DEV / "cityscapes.tsv") + read_labelled(DEV / "cityscapes_regions.tsv")
    lexical = agreement(lexical_mappers["cityscapes"], rows).total
    embedding = agreement(build_mapper("embedding", "cityscapes"), rows).total
    forced = agreement(build_mapper("embedding", "cityscapes", threshold=-1), rows).total
    hybrid = agreement(build_mapper("hybrid", "cityscapes"), rows).total
    report("cityscapes side by side", f"lexical {lexical:.1%}  hybrid {hybrid:.1%}  "
            f"embedding@0.5 {embedding:.1%}  embedding forced choice {forced:.1%}")
    assert lexical - max(embedding, forced) >= 0.25
    assert hybrid >= lexical - 0.01  # the embedding only fills what nothing relates to


# -------------------------------------------------------------------------------------------- rules
@pytest.mark.parametrize("text, cls, rule, noun", [
    ("a picture of a traffic light", "traffic light", "view", "traffic light"),
    ("a row of trees along the sidewalk", "vegetation", "container", "tree"),
    ("a grassy area next to the road", "terrain", "container", "grass"),
    ("the shadow of a car on the road", "road", "surface", "road"),
    ("an arrow painted on the road", "road", "surface", "road"),
    ("the side mirror of a white car", "car", "part", "car"),
    ("the light on a pole", "pole", "part", "pole"),
    ("a man's jacket", "person", "part", "man"),
    ("the wheel of a bike", "bicycle", "part", "bike"),
    ("leaves of a tree", "vegetation", "part", "tree"),
    ("a man riding a bicycle down the street", "rider", "role", "man"),
    ("a woman on a motorcycle", "rider", "role", "woman"),
    ("a woman pushing a bicycle", "person", "head", "woman"),
    ("a crowd of people", "person", "container", "people"),
    ("people", "person", "head", "people"),  # WordNet: a person is a member of people
    ("there is a car that is parked on the street", "car", "name", "car"),
    ("a street sign", "traffic sign", "name", "street sign"),
    ("a street with cars parked on both sides", "road", "name", "street"),
    ("light", "traffic light", "name", "light"),
    ("a sedan", "car", "name", "sedan"),
    ("a guard rail along the road", None, "left out", "guard rail"),
    ("the wheel of a caravan", None, "left out", "caravan"),
    ("an object", None, "vague", "object"),
    ("the shadow of a tree", None, "surface", "shadow"),
    ("a dog", None, "none", "dog"),
])
def test_cityscapes_rules(lexical_mappers, text, cls, rule, noun):
    (m,) = lexical_mappers["cityscapes"].map([text])
    assert (m.cls, m.rule, m.noun) == (cls, rule, noun)
    assert (m.reason is None) == (cls is not None)


@pytest.mark.parametrize("text, cls, rule, noun", [
    # a compound WordNet files under no sense of its last word is a noun of its own, not its last word
    ("power plant", None, "none", "power plant"),
    ("rocking horse", None, "none", "rocking horse"),
    # ... also after an -ing word or an adjective that only relates to a noun, which classify rather than describe
    ("a rocking horse in the nursery", None, "none", "rocking horse"),
    ("a german shepherd sitting on the grass", "dog", "head", "german shepherd"),
    ("a police dog", "dog", "head", "police dog"),  # a compound filed under its last word is still one
    ("a running horse", "horse", "name", "horse"),  # a horse that runs
    ("double decker", "bus", "name", "double-decker"),  # the name written hyphenated
    # a depiction is not what it depicts: a toy, a model, a soft toy, or a work of art "of" something
    ("toy airplane", None, "depiction", "toy"),
    ("a model train on the shelf", None, "depiction", "scale model"),
    ("stuffed dog", None, "depiction", "stuffed toy"),
    ("a painting of a horse hanging on a wall", None, "depiction", "painting"),
    ("a bronze statue of a man on a horse", None, "depiction", "statue"),
    ("the wheel of a toy car", None, "depiction", "toy"),  # a part of a toy is the toy's
    ("a toy poodle", "dog", "head", "toy poodle"),  # a breed WordNet knows
    ("a model posing for a photo in a studio", "person", "head", "model"),
    ("a picture of a horse", "horse", "view", "horse"),  # a caption's "a picture of" is still about the horse
    # a part around its whole, or on the front (back, side) of it, is attached to it
    ("the collar around the dog's neck", "dog", "part", "dog"),
    ("the basket on the front of the bicycle", "bicycle", "part", "bicycle"),
    ("a dog at the back of the bus", "dog", "name", "dog"),  # a class of its own is no part
    # "potted plant" says what it is: a plant potted, or in a pot, or a pot with one in it
    ("fern in a pot", "potted plant", "name", "fern"),
    ("a cactus in a terracotta pot on a desk", "potted plant", "name", "cactus"),
    ("a pot with a fern in it", "potted plant", "name", "pot"),
    ("the leaves of a potted fern", "potted plant", "part", "fern"),
    ("a pot of soup on the stove", None, "none", "pot"),
    # what a display shows is the display's; a thing on a television may be on top of it
    ("a football game on the television", "tv monitor", "surface", "television"),
    ("a man on a tv screen", "tv monitor", "surface", "tv"),
    ("a cat sitting on the television", "cat", "name", "cat"),
    # what a dish holds is food where it can be: no whole of the dish, and no bird
    ("a plate of chicken and rice", None, "none", "plate"),
    ("a pack of dogs", "dog", "whole", "dog"),
])
def test_voc_rules(lexical_mappers, text, cls, rule, noun):
    (m,) = lexical_mappers["voc"].map([text])
    assert (m.cls, m.rule, m.noun) == (cls, rule, noun)
    assert (m.reason is None) == (cls is not None)


def test_a_depiction_maps_as_what_it_is():
    """COCO labels soft toys teddy bear and PASCAL-Context toys toy, models model and statues sculpture; where the
    dataset has no such class (PASCAL-Context 59, VOC) a depiction is none, never the class of what it depicts."""
    got = {ds: [x.cls for x in build_mapper("lexical", ds).map(texts)] for ds, texts in [
        ("coco", ["stuffed bear", "a stuffed dog", "toy airplane"]),
        ("pascal-context-459", ["a stuffed dog on a bed", "a model airplane on a shelf", "a statue of a horse"]),
        ("pascal-context-59", ["a model airplane on a shelf", "a toy train on the floor"]),
        ("ade20k", ["a statue of a man on a horse"])]}
    assert got == {"coco": ["teddy bear", "teddy bear", None], "pascal-context-459": ["toy", "model", "sculpture"],
                   "pascal-context-59": [None, None], "ade20k": ["sculpture"]}
    # a stuffed bird or fish that can be food is more likely the dish; a plush one is still the toy
    turkey, duck = build_mapper("lexical", "coco").map(["a stuffed turkey on a platter", "a plush duck"])
    assert turkey.cls != "teddy bear" and turkey.rule != "depiction" and duck.cls == "teddy bear"


def test_a_class_named_by_a_participle_names_what_the_participle_means():
    """PASCAL-Context's lexicon leaves a bare plant out (bushes and hedges are other labels), but a plant in a pot
    is its potted plant; ADE20K has no potted plant, and a plant in a pot stays its plant."""
    texts = ["a plant in a pot next to the door", "a pot of red geraniums on the balcony"]
    assert [x.cls for x in build_mapper("lexical", "pascal-context-59").map(texts)] == ["potted plant"] * 2
    assert [x.cls for x in build_mapper("lexical", "ade20k").map(texts[:1])] == ["plant"]


def test_a_compound_filed_under_a_sense_of_its_last_word_keeps_the_last_words_class():
    """COCO's cake and mouse classes are named by the word; a chocolate cake is a kind of cake and a computer
    mouse a sense of "mouse", so the compound is still the class the word names."""
    m = build_mapper("lexical", "coco")
    assert [x.cls for x in m.map(["a chocolate cake", "computer mouse", "a hot dog on a plate"])] == [
        "cake", "mouse", "hot dog"]


@pytest.mark.parametrize("dataset, text, cls", [
    # a participle after a noun, read with or without the parser, is not the head
    ("cityscapes", "a person walking", "person"),
    ("cityscapes", "pedestrians crossing", "person"),
    # ... also after a noun rarer than the -ing word, where that word's first sense is an act, not a thing
    ("coco", "a zebra standing next to a giraffe in a zoo", "zebra"),
    ("pascal-context-459", "a turtle swimming in the water", "turtle"),
    ("cityscapes", "a zebra crossing on the street", "road"),  # a name of its own, its crossing a thing
    ("ade20k", "the staircase landing on the second floor", "stairway"),
    # a noun the tagger made a verb: one WordNet knows only as a noun, or a plural seen far more as a noun
    ("ade20k", "a cast iron oven in the cabin", "oven"),
    ("ade20k", "the office chairs around the table", "chair"),
    ("coco", "the bathroom towels on the rack", "towel"),
    ("coco", "the yellow fire hydrant", "fire hydrant"),  # the hydrant tagged an adverb, hung on the fire
    ("ade20k", "a dog runs across the field", "animal"),  # verbs stay verbs
    ("ade20k", "the boat rests on the shore", "boat"),
    ("coco", "a man fishes from the pier", "person"),  # a doer before the verb is its subject
    ("coco", "the cat beds by the window", "bed"),  # ... unless the plural is almost never a verb
    ("ade20k", "the man bags on the chair", "bag"),
    ("coco", "the ski lifts on the mountain", None),  # a WordNet compound is no subject and its verb
    ("coco", "the teak decking", None),  # a word tagged an adjective before an -ing word must be a doer
    ("coco", "a man paragliding over the hills", "person"),  # an activity after him is no noun of his
    # the noun before a participle the tagger made an adjective ("kitten", "foal"), a verb tagged a plural noun
    ("coco", "a kitten playing with a toy mouse", "cat"),
    ("coco", "a foal trotting beside its mother", "horse"),
    ("coco", "a truck drives down the highway", "truck"),
    ("cityscapes", "tire marks on the road", "road"),  # "marks" is seen as a noun often enough
    # an adjective WordNet also lists as a noun is not a compound ("white" is a person, "small" a body part)
    ("cityscapes", "a white shirt", None),
    ("voc", "a grey wall", None),
    ("voc", "a small wall", None),
    ("ade20k", "a green house", "house"),
    # parts of parts reach the whole
    ("cityscapes", "the tire of the wheel of the bicycle", "bicycle"),
    ("cityscapes", "the window of the door of the car", "car"),
    # near something is not part of it
    ("cityscapes", "a car in front of a train", "car"),
    # a measure "of" something is that thing wherever it lies, even where its own noun is a kind of a listed part
    ("coco", "a pile of carrots on a cutting board", "carrot"),
    ("coco", "a pile of gravel on the side of a road", "gravel"),
    ("coco", "a plate of spaghetti with meatballs", "food"),  # a dish's food is still COCO's food
    ("cityscapes", "a wall in front of a building", "wall"),
    # a name of its own keeps its class where it is attached ("a traffic signal on a pole")
    ("cityscapes", "a traffic signal on a pole", "traffic light"),
    ("cityscapes", "a street sign on a building", "traffic sign"),
    # the rider role needs the vehicle under the person, not beside it
    ("cityscapes", "a woman sitting beside her bicycle", "person"),
    ("cityscapes", "a man leaning against a bicycle", "person"),
    ("cityscapes", "a man balancing a bicycle on his shoulder", "person"),
    ("cityscapes", "a man standing on a skateboard", "rider"),
    # a part of what the dataset leaves out is left out too
    ("cityscapes", "the wheels of a caravan", None),
    ("cityscapes", "the trailer of a truck", "truck"),  # truck includes its trailers; a lone trailer does not
    ("cityscapes", "a trailer", None),
    ("voc", "the screen of a laptop", None),
    ("voc", "the wheel of a truck", None),
    # a compound names the whole even where the head is a name of its own
    ("cityscapes", "a car trunk", "car"),
    ("cityscapes", "a bike light", "bicycle"),
    ("ade20k", "the shade of a lamp", "lamp"),
    # marks take what they are on, even when they name a class of their own ("mud" is terrain)
    ("cityscapes", "mud on the car", "car"),
    ("cityscapes", "white stripes of a pedestrian crossing", "road"),
    ("cityscapes", "It is a shadow cast by a tree on the road.", "road"),
    # region-model answers
    ("cityscapes", "The region shows a person walking.", "person"),
    ("cityscapes", "It is a person. He is riding a bicycle.", "rider"),
    ("cityscapes", "It is a city bus stopped at the curb.", "bus"),
    ("cityscapes", "Road surface", "road"),
    ("cityscapes", "an old office building", "building"),
    ("cityscapes", "a blurry shape", None),
    ("cityscapes", "...", None),
])
def test_reading_cases(dataset, text, cls):
    (m,) = build_mapper("lexical", dataset).map([text])
    assert m.cls == cls, m


@pytest.mark.parametrize("text, words", [
    ("a potted plant on a window sill", ("potted", "plant")),   # parsed: the adjective is part of the name
    ("a wooden floor", ("wooden", "floor")),                     # read without the parser, the same
    ("a hot dog with mustard on a bun", ("hot", "dog")),
    ("the leaves of the potted plant", ("leaf",)),               # the head stays the head
    ("a white car parked on the street", ("car",)),              # a colour makes no name with its noun
    ("a red light on the camera", ("light",)),                   # not even a listed one ("red light")
    ("a black sheep in a field", ("sheep",)),                    # WordNet's collocations are not the dataset's
    ("a big tree", ("tree",)),
    ("two small dogs", ("dog",)),
])
def test_an_adjective_that_makes_a_dataset_name_with_its_noun_is_read_with_it(text, words):
    """Class and lexicon names whose first word is an adjective ("potted plant" beside COCO-Stuff's "plant",
    "wooden floor" beside "floor") are read whole; other adjectives stay modifiers, WordNet's adjective
    collocations included ("black sheep" is a person there, "big tree" a sequoia)."""
    mapper = build_mapper("lexical", "coco-stuff")
    assert mapper.reader([text])[0].words == words
    if words == ("potted", "plant"):
        assert mapper.map([text])[0].cls == "potted plant" and mapper.map(["a small plant"])[0].cls == "plant"


def test_a_name_an_adjective_makes_is_still_a_part_of_its_whole():
    """COCO-Stuff's lexicon names "sliding door" as a door, but the sliding door of a car is the car's, as its
    door is; "red light" names Cityscapes' traffic light, and the red light of a car is still the car's."""
    stuff = build_mapper("lexical", "coco-stuff")
    assert [m.cls for m in stuff.map(["a sliding door", "the sliding door of a car", "the door of a car"])] == [
        "door", "car", "car"]
    city = build_mapper("lexical", "cityscapes")
    assert [m.cls for m in city.map(["a red light", "the red light of a car"])] == ["traffic light", "car"]


def test_a_class_of_its_own_stays_itself_where_the_lexicon_lists_the_wholes_parts_without_it():
    """PASCAL-Context labels a building's windows and doors apart (its lexicon lists other parts of a building);
    Cityscapes' lexicon lists them among the building's parts, and WordNet's part relation still decides where
    a lexicon lists nothing (COCO's car)."""
    pc = build_mapper("lexical", "pascal-context-59")
    assert [m.cls for m in pc.map(["the window of the building", "the door of the house", "the roof of the house",
                                   "the window of a bus"])] == ["window", "door", "building", "bus"]
    city = build_mapper("lexical", "cityscapes")
    assert city.map(["the window of the building"])[0].cls == "building"


def test_a_dataset_name_is_not_left_out_for_its_last_word(tmp_path):
    from selfseg.evaluate.datasets import read_class_file

    (tmp_path / "classes.txt").write_text("potted plant;pottedplant\nlight\n")
    (tmp_path / "lex.yaml").write_text("none:\n  names: [plant, traffic light]\n  why: labels of their own\n")
    m = build_mapper("lexical", "folder", classes=read_class_file(tmp_path / "classes.txt"),
                     lexicon=str(tmp_path / "lex.yaml"))
    got = m.map(["a potted plant", "a plant", "a traffic light", "a light"])
    assert [x.cls for x in got] == ["potted plant", None, None, "light"]
    assert got[1].rule == got[2].rule == "left out"


def test_pascal_context_459_names_the_labels_pc59_leaves_out():
    """Where PC-59 leaves a word out (its pixels carry one of the other 400 labels), PC-459's lexicon names the
    label; what both name by a class stays ("lamp" is light); a car's wheel is still the car (PASCAL-Context
    labels whole objects), a wheel on its own the wheel label."""
    pc459, pc59 = build_mapper("lexical", "pascal-context-459"), build_mapper("lexical", "pascal-context-59")
    texts = ["a lamp on a desk", "a traffic light", "a bush", "a garbage can", "the wheel of a car", "a wheel",
             "a pillow on the sofa"]
    assert [x.cls for x in pc459.map(texts)] == ["light", "signal light", "plant", "trash bin", "car", "wheel",
                                                 "pillow"]
    assert [x.cls for x in pc59.map(texts)] == ["light", None, None, None, "car", None, None]


def test_a_noun_that_is_its_own_member_maps_to_none_instead_of_recursing(tmp_path):
    from selfseg.evaluate.datasets import read_class_file

    (tmp_path / "classes.txt").write_text("road\ncar\n")
    m = build_mapper("lexical", "folder", classes=read_class_file(tmp_path / "classes.txt"))
    assert [x.cls for x in m.map(["a car", "an enemy", "a samurai", "the homeless"])] == ["car", None, None, None]


def test_related_classes_are_cumulative_over_the_levels(lexical_mappers):
    for name, mapper in lexical_mappers.items():
        for r in read_labelled(DEV / f"{name}.tsv"):
            sets = [mapper.related(r.description, level) for level in mapper.levels]
            assert all(a <= b for a, b in zip(sets, sets[1:])), (name, r.description, sets)


def test_levels_still_cut_the_rules(lexical_mappers):
    m = lexical_mappers["cityscapes"]
    # a part needs the meronym level; a role is a kind of its class (hyponym); a lexicon name is a synonym
    assert [x.cls for x in m.map(["the mirror of a car"] * 1, "hyponym")] == [None]
    assert m.map(["a man riding a bike"], "synonym")[0].cls is None  # a man is a kind of person (hyponym)
    assert m.map(["a man riding a bike"], "hyponym")[0].cls == "rider"
    assert m.map(["street"], "exact")[0].cls is None and m.map(["street"], "synonym")[0].cls == "road"


def test_ground_truth_aware_relations_read_the_description(lexical_mappers):
    m = lexical_mappers["cityscapes"]
    names = {c.name: c.index for c in m.classes}
    assert m.related("the wheel of a bike") == {names["bicycle"]}  # the description names the whole
    assert {names["car"], names["bicycle"]} <= m.related("wheel")  # a bare part relates to every whole
    assert m.related("wheel", "hyponym") == set()


def test_rare_senses_do_not_win(lexical_mappers):
    voc, city = lexical_mappers["voc"], lexical_mappers["cityscapes"]
    assert city.map(["lights"])[0].cls == "traffic light"  # never person (a sense of light is a person)
    assert voc.map(["the leaves of a potted plant"])[0].cls == "potted plant"
    assert voc.map(["a large grassy area"])[0].cls is None  # "area" is not a body region of a person


# ------------------------------------------------------------------------------------------ lexicons
@pytest.mark.parametrize("dataset", ["voc", "ade20k", "ade20k-full", "cityscapes", "coco", "coco-stuff",
                                     "pascal-context-59", "pascal-context-459"])
def test_every_shipped_lexicon_loads_strictly_against_its_class_list(dataset):
    path = shipped_lexicon(dataset_spec(dataset).class_file)
    assert path is not None
    classes = class_list(dataset)
    lex = Lexicon.load(path, classes, strict=True)
    assert lex.names and lex.parts
    # every name the lexicon gives a class reaches it through the mapper, and every left-out word maps to none
    mapper = build_mapper("lexical", dataset)
    names = sorted(lex.names)
    got = [m.cls for m in mapper.map(names)]
    assert [n for n, g in zip(names, got) if g != classes[lex.names[n]].name] == []
    assert [m.description for m in mapper.map(sorted(lex.unlabelled)) if m.cls is not None] == []
    # a rare name is read by its own senses, never as the listing class's name
    assert [m.description for m in mapper.map(sorted(lex.rare)) if m.rule == "name"] == []


def test_a_name_the_class_list_gives_only_in_a_rare_sense_is_read_by_its_own_senses():
    """ADE20K lists every lemma of a class's synset: its toilet is also a throne and a can, its car a machine,
    its bus a coach. Those words mean a chair, a tin can, a device and a trainer in descriptions."""
    m = build_mapper("lexical", "ade20k")
    got = [x.cls for x in m.map(["throne", "a throne in the palace hall", "vending machine", "a can of paint",
                                 "a coach giving instructions to the players", "stool", "toilet", "commode",
                                 "a white toilet in the bathroom", "automobile"])]
    assert got == ["chair", "chair", None, None, "person", "stool", "toilet", "toilet", "toilet", "car"]


@pytest.mark.parametrize("dataset", ["ade20k", "cityscapes", "coco-stuff", "pascal-context-59"])
def test_a_room_is_no_part_of_a_building(dataset):
    """BLIP's captions name rooms ("a kitchen with a stove"), and BCC keeps the nouns. A room is seen from
    inside, where no pixel carries a building class (they are the outside of buildings), though WordNet makes a
    room part of a building; a building's kinds (a garage, a church) stay buildings."""
    m = build_mapper("lexical", dataset)
    rooms = ["kitchen", "living room", "bedroom", "bathroom", "classroom", "a kitchen with a stove and a refrigerator",
             "a jail cell", "sun lounge", "steam bath"]  # not the last word's other senses: a sofa, a bathtub
    assert [x.cls for x in m.map(rooms)] == [None] * len(rooms)
    assert [x.cls for x in m.map(["garage", "a church with a tall steeple"])] == ["building", "building"]
    if dataset != "cityscapes":  # a room that is part of a vehicle stays its part
        assert m.map(["the galley of a ship"])[0].cls in ("boat", "ship")


@pytest.mark.parametrize("text, message", [
    ("classes:\n  road:\n    names: [pavement]\n    why: x\n",
     "road.names: 'pavement' is a name of class 'sidewalk' in the class list"),
    ("classes:\n  car:\n    names: [van]\n", "class 'car': expected names / parts lists and a 'why'"),
    ("classes:\n  lorry:\n    names: [van]\n    why: x\n", "classes: expected a class of the list, got 'lorry'"),
    ("roles:\n  - {class: rider, members: person, verbs: [ride], preps: [on], vehicles: [bicycle], why: x}\n",
     r"roles\[0\].preps: expected a list of words \(quote on, yes, no\), got \[True\]"),
    ("classes:\n  car:\n    names: [van]\n    why: x\n  truck:\n    names: [van]\n    why: y\n",
     "name 'van': expected one class, got two"),
    ("things: []\n", "expected a mapping with 'classes', 'none', 'rare' and 'roles'"),
    ("rare:\n  names: [road]\n  why: x\n",
     r"rare: expected names the class list gives a class \(not its first name\), got 'road'"),
    ("rare:\n  names: [lorry]\n  why: x\n", "rare: expected names the class list gives a class"),
    ("rare:\n  names: [pavement]\n", "rare: expected a names list and a 'why'"),
    ("rare:\n  names: [pavement]\n  why: 5\n", "rare: expected a names list and a 'why'"),
    ("classes: [car]\n", "classes: expected a mapping of class name -> entry, got list"),
    ("roles:\n  class: rider\n", "roles: expected a list of roles, got dict"),
    ("none:\n  names: [car]\n  why: x\n", "none: expected names no class has, got 'car'"),
    ("none:\n  names: [bridge]\n", "none: expected a names list and a 'why'"),
    ("classes: {car: [\n", "cannot read it"),
    ("roles:\n  - {class: rider, members: person, verbs: [ride], preps: ['on'], vehicles: [bicycle], why: ''}\n",
     r"roles\[0\]: expected keys"),
])
def test_a_malformed_lexicon_is_one_clear_error(tmp_path, text, message):
    f = tmp_path / "x.lexicon.yaml"
    f.write_text(text)
    with pytest.raises(DatasetError, match=message):
        Lexicon.load(f, class_list("cityscapes"))


def test_a_lexicon_over_a_users_class_list_drops_entries_for_absent_classes():
    classes = [c for c in class_list("cityscapes") if c.name in ("road", "car", "person")]
    classes = [type(c)(index=i, names=c.names) for i, c in enumerate(classes)]
    m = build_mapper("lexical", "cityscapes", classes=classes)
    assert [x.cls for x in m.map(["street", "a van", "a sign"])] == ["road", "car", None]


# ------------------------------------------------------------------------------------------ bad input
def test_map_labels_gives_every_line_a_row_and_a_reason(tmp_path, capsys):
    from selfseg.cli import main

    lines = [b"a man riding a bike", b"", "\U0001F697\U0001F697".encode(), b"ein rotes Auto",
             b"car " * 2500, b"caf\xe9 on the road", b"the mirror of a car"]
    f = tmp_path / "in.txt"
    f.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["map-labels", "--dataset", "cityscapes", str(f)]) == 0  # lexical is the default method
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(lines)
    assert [r["class"] for r in rows] == ["rider", None, None, None, None, None, "car"]
    reasons = [r.get("reason", "") for r in rows]
    assert reasons[1] == "empty line" and "no English noun" in reasons[2] and "no English noun" in reasons[3]
    assert "longer than" in reasons[4] and "not valid UTF-8" in reasons[5]
    assert rows[0]["rule"] == "role" and rows[6]["rule"] == "part"


# ------------------------------------------------------------------ scoring on top of the reading mapper
def test_alignment_curve_and_ground_truth_aware_scoring_read_descriptions(tmp_path):
    import numpy as np
    from PIL import Image

    from selfseg.evaluate.datasets import load_dataset
    from selfseg.evaluate.score import score_open_vocabulary

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("road\ncar\nbicycle;bike\nperson\n")
    Image.fromarray(np.zeros((1, 4, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.array([[0, 1, 2, 3]], np.uint8)).save(root / "masks" / "a.png")
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray(np.array([[1, 2, 3, 4]], np.uint8)).save(pred / "a_labels.png")
    names = ["the shadow of a car on the road", "the side mirror of a car", "wheel", "a woman walking her dog"]
    (pred / "a.json").write_text(json.dumps({"image_size": [1, 4], "instances": [], "classes": names,
                                             "segmenter": "stub"}))
    ds = load_dataset("folder", root)
    mapper = build_mapper("lexical", "folder", classes=ds.classes)
    plain = score_open_vocabulary(ds, ds.samples, pred, mapper, levels=mapper.levels)
    aware = score_open_vocabulary(ds, ds.samples, pred, mapper, levels=mapper.levels, gt_aware=True)
    curve = list(plain.lexical_alignment["mIoU"])
    assert curve == sorted(curve) and curve[0] < curve[-1]  # the levels are cumulative
    # at the meronym level every region is right once the ground truth picks among a bare part's wholes
    assert aware.lexical_alignment["mIoU"][-1] == pytest.approx(1.0)
    assert aware.semseg.miou >= plain.semseg.miou


def test_the_hybrid_fills_gaps_only_at_the_loosest_level_and_keeps_deliberate_nones():
    pytest.importorskip("sentence_transformers")
    h = build_mapper("hybrid", "cityscapes", threshold=-1)  # every gap filled, to see where it may be
    texts = ["a fixture hanging over the street", "a guard rail", "the shadow of a tree", "a car"]
    loose = h.map(texts)
    assert loose[0].rule == "embedding" and loose[0].cls is not None and loose[0].score is not None
    assert [m.cls for m in loose[1:]] == [None, None, "car"] and loose[3].rule == "name"
    strict = h.map(texts, "exact")
    assert strict[0].cls is None and strict[0].rule == "none"
    assert h.related(texts[0], "exact") == set() and h.related(texts[0]) == {loose[0].index}


def test_map_labels_reads_any_stdin_the_same_way_and_prints_ascii(monkeypatch, capsys):
    import io
    import subprocess
    import sys

    from selfseg.cli import main

    text = "\ufeffcar\ncaf\u00e9 on the road\x0cstill one line\u2028same line\r\nlast\r"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))  # a text stdin without a byte buffer
    assert main(["map-labels", "--dataset", "cityscapes", "-"]) == 0
    as_text = capsys.readouterr().out.splitlines()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8"))
    assert main(["map-labels", "--dataset", "cityscapes", "-"]) == 0
    as_bytes = capsys.readouterr().out.splitlines()
    assert as_text == as_bytes and len(as_text) == 3  # lines end at \n, \r\n, \r only
    rows = [json.loads(x) for x in as_text]
    assert rows[0]["description"] == "car" and rows[0]["class"] == "car"  # the byte-order mark is gone
    # accents folded as WordNet spells them: a cafe is a building; the form feed and U+2028 are spaces
    assert rows[1]["class"] == "building" and all(x.isascii() for x in as_text)
    # an ASCII terminal prints every row
    run = subprocess.run([sys.executable, "-m", "selfseg", "map-labels", "--dataset", "cityscapes", "-"],
                         input=text.encode(), capture_output=True, env={**__import__("os").environ,
                                                                       "PYTHONIOENCODING": "ascii"})
    assert run.returncode == 0 and run.stdout.decode().splitlines() == as_text


def test_the_readme_example_prints_what_the_readme_says(monkeypatch, capsys):
    import io
    import re

    from selfseg.cli import main

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    found = re.search(r'echo "([^"]+)" \| selfseg map-labels --dataset (\S+) -\n# (\{.*\})', readme)
    assert found, "the README's map-labels example"
    text, dataset, row = found.groups()
    monkeypatch.setattr("sys.stdin", io.StringIO(text + "\n"))
    assert main(["map-labels", "--dataset", dataset, "-"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(row)


def test_the_hybrid_default_threshold_has_the_best_mean_agreement_on_the_development_set():
    pytest.importorskip("sentence_transformers")
    from selfseg.evaluate.mappers.hybrid import HybridMapperConfig

    grid = [x / 20 for x in range(4, 20)]
    per_file = []
    for name, dataset in DATASETS.items():
        rows = read_labelled(DEV / f"{name}.tsv")
        filled = build_mapper("hybrid", dataset, threshold=-1).map([r.description for r in rows])  # every gap
        per_file.append(agreement_by_threshold(rows, filled, grid))
    mean = [sum(col) / len(col) for col in zip(*per_file)]
    default = HybridMapperConfig().hybrid_threshold
    assert mean[grid.index(default)] == pytest.approx(max(mean))


def test_a_lexicon_of_ones_own_for_a_folder_dataset_and_for_map_labels(tmp_path, capsys):
    from selfseg.cli import main
    from selfseg.config import load_config
    from selfseg.evaluate.benchmark import build_mapper_from_config
    from selfseg.evaluate.datasets import read_class_file

    (tmp_path / "classes.txt").write_text("road\nvehicle\nperson\n")
    lexicon = tmp_path / "mine.lexicon.yaml"
    lexicon.write_text("classes:\n  vehicle:\n    names: [lorry, tram]\n    parts: [wheel]\n    why: my classes\n"
                       "  road:\n    names: [piste]\n    why: a piste is a road here\n"
                       "none:\n  names: [tunnel]\n  why: not labelled\n")
    config = load_config({"evaluation": {"dataset": "folder", "root": str(tmp_path), "classes": str(tmp_path /
                                         "classes.txt"), "mapper": "lexical", "lexicon": str(lexicon)}})
    mapper = build_mapper_from_config(config, tmp_path, classes=read_class_file(tmp_path / "classes.txt"))
    got = mapper.map(["a lorry", "the wheel of a tram", "a snowy piste", "a tunnel", "a woman"])
    assert [m.cls for m in got] == ["vehicle", "vehicle", "road", None, "person"]
    # the command line takes one too, in place of the shipped lexicon
    (tmp_path / "in.txt").write_text("a piste\nsign\n")
    assert main(["map-labels", "--dataset", "cityscapes", "--lexicon", str(lexicon), str(tmp_path / "in.txt")]) == 2
    assert "expected a class of the list, got 'vehicle'" in capsys.readouterr().err  # cityscapes has no vehicle
    lexicon.write_text("classes:\n  road:\n    names: [piste]\n    why: a piste is a road here\n")
    assert main(["map-labels", "--dataset", "cityscapes", "--lexicon", str(lexicon), str(tmp_path / "in.txt")]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    # "sign" is a traffic sign only through the shipped lexicon, which this one replaces
    assert [r["class"] for r in rows] == ["road", None]
