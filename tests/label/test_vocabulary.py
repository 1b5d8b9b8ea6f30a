"""The dataset vocabulary: hand-built noun sets whose classes are known (WordNet 3.0 and the lexical mapper,
both offline)."""
from __future__ import annotations

import json
import random

import pytest

from selfseg.errors import ConfigError, DatasetError
from selfseg.label.vocabulary import (
    VOCABULARY_FILE,
    DatasetVocabulary,
    VocabularyBuilder,
    VocabularyConfig,
    build_vocabulary,
    load_ontology,
)


def classes(v: DatasetVocabulary) -> dict[str, dict[str, int]]:
    return {c.name: c.absorbed for c in v.classes}


def twice(*labels: str) -> list[tuple[str, list[str]]]:
    """Two images holding the labels (so none of them is rare at min_images 2)."""
    return [("a", list(labels)), ("b", list(labels))]


def test_plurals_and_singulars_are_one_class():
    v = build_vocabulary([("a", ["cars", "car"]), ("b", ["car", "Cars", "traffic lights"]), ("c", ["traffic light"])])
    assert classes(v) == {"car": {"Cars": 1, "car": 2, "cars": 1}, "traffic light": {"traffic light": 1,
                                                                                      "traffic lights": 1}}
    assert v.classes[0].instances == 4 and v.classes[0].images == 2


def test_plural_only_nouns_keep_their_form():
    v = build_vocabulary(twice("glasses", "glass"))
    assert sorted(v.names) == ["glass", "glasses"]  # spectacles are not drinking glasses


def test_spelling_variants_are_one_class():
    v = build_vocabulary([("a", ["tyres", "colour", "grey"]), ("b", ["tire", "color", "gray"])])
    assert classes(v) == {"tire": {"tire": 1, "tyres": 1}, "color": {"color": 1, "colour": 1},
                          "gray": {"gray": 1, "grey": 1}}


def test_separators_are_one_spelling():
    v = build_vocabulary([("a", ["fire-hydrants", "t shirt"]), ("b", ["fire_hydrant", "t-shirts"])])
    assert classes(v) == {"fire hydrant": {"fire-hydrants": 1, "fire_hydrant": 1},
                          "t-shirt": {"t shirt": 1, "t-shirts": 1}}


def test_wordnet_synonyms_merge_under_the_most_frequent_form():
    v = build_vocabulary([("a", ["automobile", "car", "car", "couch", "couch"]), ("b", ["car", "sofa"])])
    assert classes(v) == {"car": {"automobile": 1, "car": 3}, "couch": {"couch": 2, "sofa": 1}}
    off = build_vocabulary([("a", ["automobile", "car"]), ("b", ["automobile", "car"])],
                           VocabularyConfig(wordnet_synonyms=False))
    assert sorted(off.names) == ["automobile", "car"]


def test_class_file_synonyms_merge(tmp_path):
    listed = tmp_path / "classes.txt"
    listed.write_text("# a comment\nsidewalk;pavement\nroad\n", encoding="utf-8")
    images = [("a", ["sidewalk", "pavements"]), ("b", ["sidewalk", "pavement", "road"]), ("c", ["road", "sidewalk"])]
    assert sorted(build_vocabulary(images).names) == ["pavement", "road", "sidewalk"]  # WordNet keeps them apart
    v = build_vocabulary(images, VocabularyConfig(synonym_lists=[str(listed)]))
    assert classes(v) == {"sidewalk": {"pavement": 1, "pavements": 1, "sidewalk": 3}, "road": {"road": 2}}
    shipped = build_vocabulary(twice("person", "person", "people"), VocabularyConfig(synonym_lists=["voc"]))
    assert classes(shipped) == {"person": {"people": 2, "person": 4}}


def test_a_rare_noun_folds_into_its_nearest_hypernym_class():
    images = [("a", ["car", "dog"]), ("b", ["car", "dog", "sedan"]), ("c", ["dalmatian"])]
    v = build_vocabulary(images)
    # "dalmatian" is first a person from Dalmatia in WordNet; the dog is the nearer class
    assert classes(v) == {"car": {"car": 2, "sedan": 1}, "dog": {"dalmatian": 1, "dog": 2}}
    assert v.classes[1].images == 3 and not v.dropped


def test_a_rare_noun_without_a_hypernym_class_is_dropped():
    v = build_vocabulary([("a", ["dog", "sedan", "qwzx"]), ("b", ["dog"])])
    assert v.names == ["dog"]
    assert set(v.dropped) == {"sedan", "qwzx"}
    assert "min_images 2" in v.dropped["sedan"].reason and v.dropped["sedan"].instances == 1
    assert "WordNet does not know it" in v.dropped["qwzx"].reason


def test_rare_drop_and_min_images():
    images = [("a", ["car", "sedan"]), ("b", ["car"])]
    assert set(build_vocabulary(images, VocabularyConfig(rare="drop")).dropped) == {"sedan"}
    assert sorted(build_vocabulary(images, VocabularyConfig(min_images=1)).names) == ["car", "sedan"]
    assert build_vocabulary(images + [("c", ["sedan"])], VocabularyConfig(min_images=3)).names == []
    # never more images than the run has: a class in both of two images is not rare at min_images 3, nor is
    # every noun of a one-image run
    assert build_vocabulary(images, VocabularyConfig(min_images=3)).names == ["car"]
    assert sorted(build_vocabulary([("a", ["car", "sedan"])]).names) == ["car", "sedan"]


def test_the_coarser_level_folds_classes_into_the_most_general_class():
    images = twice("sedan", "car", "vehicle", "poodle", "dog", "object")
    fine = build_vocabulary(images)
    assert sorted(fine.names) == ["car", "dog", "object", "poodle", "sedan", "vehicle"]
    coarse = build_vocabulary(images, VocabularyConfig(coarse=True))
    # "object" is a hypernym of all of them but names no kind of thing: it takes nothing
    assert classes(coarse) == {"vehicle": {"car": 2, "sedan": 2, "vehicle": 2}, "dog": {"dog": 2, "poodle": 2},
                               "object": {"object": 2}}
    assert build_vocabulary(twice("sedan", "car"), VocabularyConfig(coarse=True)).names == ["car"]
    # a noun's common senses decide, as for rare nouns: WordNet's first "dalmatian" is a person from Dalmatia
    dogs = classes(build_vocabulary(twice("dog", "dalmatian", "person"), VocabularyConfig(coarse=True)))
    assert dogs == {"dog": {"dalmatian": 2, "dog": 2}, "person": {"person": 2}}


def test_absorbed_and_dropped_counts_add_up_to_the_instances_seen():
    images = [("a", ["cars", "car", "sedan", "none", "", "dog"]), ("b", ["automobile", "dog", "dog"]),
              ("c", ["qwzx", "dalmatian"])]
    v = build_vocabulary(images)
    total = sum(len(labels) for _, labels in images)
    assert v.instances == total and v.images == 3
    assert all(c.instances == sum(c.absorbed.values()) for c in v.classes)
    assert sum(c.instances for c in v.classes) + sum(d.instances for d in v.dropped.values()) == total
    assert set(v.dropped) == {"", "none", "qwzx"}


def test_the_same_nouns_in_another_order_give_the_same_vocabulary():
    images = [("a", ["cars", "dog", "sofa", "sedan"]), ("b", ["car", "couch", "dogs"]), ("c", ["automobile", "dog"]),
              ("d", ["poodle", "couch", "qwzx"]), ("e", ["car", "tire"]), ("f", ["tyre", "sofa"])]
    first = build_vocabulary(images).to_dict()
    rng = random.Random(0)
    for _ in range(3):
        shuffled = [(i, rng.sample(labels, len(labels))) for i, labels in rng.sample(images, len(images))]
        assert build_vocabulary(shuffled).to_dict() == first
    assert [c["name"] for c in first["classes"]] == ["car", "dog", "sofa", "tire"]  # most instances first
    assert [c["id"] for c in first["classes"]] == [0, 1, 2, 3]


def test_the_builder_takes_images_one_at_a_time():
    builder = VocabularyBuilder()
    builder.add("a", ["car"])
    builder.add("a", ["car"])  # the same image again: more instances, not another image
    builder.add("c", ["dog"])
    assert builder.build().names == []  # each in one image of two: rare
    builder.add("b", iter(["cars"]))
    v = builder.build()
    assert v.names == ["car"] and v.classes[0].images == 2 and v.classes[0].instances == 3


def test_vocabulary_json_round_trip(tmp_path):
    v = build_vocabulary([("a", ["cars", "dog", "sedan"]), ("b", ["car", "automobile", "dog", "qwzx"])])
    path = v.save(tmp_path)
    assert path == tmp_path / VOCABULARY_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == 1 and data["classes"][0] == {
        "id": 0, "name": "car", "instances": 4, "images": 2,
        "absorbed": {"automobile": 1, "car": 1, "cars": 1, "sedan": 1}}
    back = DatasetVocabulary.load(path)
    assert back.to_dict() == v.to_dict()
    assert back.class_of("sedan") == "car" and back.class_of("Automobiles") == "car" and back.id_of("dogs") == 1
    assert back.class_of("qwzx") is None and back.class_of("giraffe") is None


def test_a_vocabulary_of_another_schema_is_refused(tmp_path):
    path = tmp_path / VOCABULARY_FILE
    path.write_text(json.dumps({"schema": 99, "classes": []}), encoding="utf-8")
    with pytest.raises(DatasetError, match="schema 1, got 99"):
        DatasetVocabulary.load(path)


@pytest.mark.parametrize("unmapped", ["drop", "other"])
def test_ontology_mapping(tmp_path, unmapped):
    onto = tmp_path / "ontology.yaml"
    onto.write_text("vehicle: [car, truck]\nanimal:\n  - dog\n  - pet\nperson: null\n", encoding="utf-8")
    images = [("a", ["cars", "sedan", "road", "lorry"]), ("b", ["poodle", "man", "kitten", "qwzx"])]
    v = build_vocabulary(images, VocabularyConfig(unmapped=unmapped), ontology=onto)
    expected = {"vehicle": {"cars": 1, "lorry": 1, "sedan": 1}, "animal": {"kitten": 1, "poodle": 1},
                "person": {"man": 1}}
    if unmapped == "other":
        assert classes(v) == {**expected, "other": {"qwzx": 1, "road": 1}}
        assert not v.dropped
    else:
        assert classes(v) == expected
        assert set(v.dropped) == {"qwzx", "road"} and "no ontology class" in v.dropped["road"].reason
    assert v.names[:3] == ["vehicle", "animal", "person"]  # the user's order, not instance counts
    assert v.ontology == str(onto)


def test_a_plain_class_list_ontology(tmp_path):
    onto = tmp_path / "ontology.yaml"
    onto.write_text("- car\n- dog\n- other\n", encoding="utf-8")
    assert [c.names for c in load_ontology(onto)] == [("car",), ("dog",), ("other",)]
    v = build_vocabulary(twice("automobiles", "poodle", "kitten"), VocabularyConfig(unmapped="other"), ontology=onto)
    # the ontology's own "other" takes the unmapped nouns; no second one is added
    assert classes(v) == {"car": {"automobiles": 2}, "dog": {"poodle": 2}, "other": {"kitten": 2}}


def test_ontology_phrases_name_their_class(tmp_path):
    onto = tmp_path / "ontology.yaml"
    onto.write_text("vegetation: [tree, hedge]\nground: [grass]\n", encoding="utf-8")
    v = build_vocabulary(twice("trees", "grass", "hedges"), ontology=onto)
    assert classes(v) == {"vegetation": {"hedges": 2, "trees": 2}, "ground": {"grass": 2}}


@pytest.mark.parametrize("text, message", [
    ("vehicle: [car\n", "not valid YAML"),
    ("", "got an empty file"),
    ("[]\n", "got []"),
    ("just a class\n", "got a str"),
    ("- car\n- 3\n", "got 3"),
    ("- car\n- Car\n", "'Car' is given twice"),
    ("car: []\ncar: [auto]\n", "'car' is given twice"),
    ("car: automobile\n", "expected a list of phrases"),
    ("car: [auto, 7]\n", "got 7"),
    ("car: [auto]\ntruck: [auto]\n", "phrase 'auto' of class 'truck' also names class 'car'"),
    ("car: [truck]\ntruck: []\n", "class 'truck' is also a phrase of class 'car'"),
    ("? [a, b]\n: [c]\n", "not valid YAML"),
    ("null: [c]\n", "got None"),
    # each class is one line of classes.txt: no line break, no ';' (its name separator), no leading '#'
    ('"bath\\nroom": [bathroom]\n', "class 'bath\\nroom': expected no ';', line break or leading '#'"),
    ("car: [auto; motor]\n", "class 'car': phrase 'auto; motor': expected no ';'"),
    ('"#1": []\n', "class '#1': expected no"),
])
def test_a_malformed_ontology_is_a_one_line_error(tmp_path, text, message):
    onto = tmp_path / "ontology.yaml"
    onto.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_ontology(onto)
    assert message in str(err.value)
    assert str(err.value).startswith(f"ontology {onto}: ") and "\n" not in str(err.value)


def test_a_missing_ontology_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file \(expected a YAML mapping"):
        VocabularyBuilder(ontology=tmp_path / "absent.yaml")


@pytest.mark.parametrize("field, value", [("min_images", 0), ("rare", "keep"), ("unmapped", "skip"),
                                          ("mapper", "oracle"), ("mapper_level", "holonym"),
                                          ("synonym_lists", "voc")])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"^{field}: expected"):
        VocabularyConfig(**{field: value})
