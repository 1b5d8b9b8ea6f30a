from __future__ import annotations

import pytest

from selfseg.tag.cleanup import Merge, clean_tags


@pytest.mark.parametrize(
    "tags, kept, merges",
    [
        (["animal", "dog", "grass"], ["dog", "grass"], [Merge("dog", "animal", "hypernym")]),
        (["car", "automobile", "road"], ["car", "road"], [Merge("car", "automobile", "synonym")]),
        (["sofa", "couch", "furniture"], ["sofa"], [Merge("sofa", "couch", "synonym"),
                                                    Merge("sofa", "furniture", "hypernym")]),
        (["vehicle", "car", "bus"], ["car", "bus"], [Merge("car", "vehicle", "hypernym")]),
        (["dog", "cat", "tree"], ["dog", "cat", "tree"], []),
        (["qwzx", "dog", "qwzx"], ["qwzx", "dog"], []),  # unknown words pass through, deduplicated
        ([], [], []),
    ],
)
def test_hand_picked_noun_sets(tags, kept, merges):
    got_kept, got_merges = clean_tags(tags)
    assert got_kept == kept
    assert sorted(got_merges, key=str) == sorted(merges, key=str)


def test_a_general_tag_above_several_names_the_most_specific():
    kept, merges = clean_tags(["dog", "animal", "poodle"])
    assert kept == ["poodle"]  # dog is itself a hypernym of poodle
    assert set(merges) == {Merge("poodle", "dog", "hypernym"), Merge("poodle", "animal", "hypernym")}


def test_switches():
    assert clean_tags(["animal", "dog"], hypernyms=False) == (["animal", "dog"], [])
    assert clean_tags(["car", "automobile"], synonyms=False, hypernyms=False)[0] == ["car", "automobile"]
