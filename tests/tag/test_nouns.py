from __future__ import annotations

import pytest

from selfseg.config import NounsConfig
from selfseg.tag.nouns import NounExtractor


@pytest.fixture(scope="module")
def extract():
    return NounExtractor()


@pytest.mark.parametrize(
    "caption, expected",
    [
        # plurals -> singular lemmas, irregular ones too
        ("two dogs and three mice on the grass", ["dog", "mouse", "grass"]),
        ("people walking past tall buildings", ["people", "building"]),
        # compounds WordNet knows are kept whole, even when the small tagger mis-tags the head
        ("a fire hydrant next to a traffic light", ["fire hydrant", "traffic light"]),
        ("a man in a living room", ["man", "living room"]),
        # colour words and picture words are dropped
        ("a close up picture of a red car in front of a white wall", ["car", "wall"]),
        ("a blurry photo of the background", []),
        ("a view of the ocean from a boat", ["ocean", "boat"]),
        # nothing nouny at all: an empty list, not an error
        ("and then", []),
        ("", []),
    ],
)
def test_captions_to_nouns(extract, caption, expected):
    assert extract([caption]) == [expected]


def test_batch_order_and_no_duplicates(extract):
    out = extract(["a dog and a dog", "a cat", "the sky over the sky"])
    assert out == [["dog"], ["cat"], ["sky"]]


def test_settings_change_the_lists():
    ex = NounExtractor(NounsConfig(stopwords=["grass"], colours=[], compounds=False))
    assert ex(["a red fire hydrant on the grass"]) == [["fire", "hydrant"]]


def test_unknown_spacy_pipeline_names_the_fix():
    from selfseg.errors import ResourceMissingError

    with pytest.raises(ResourceMissingError, match="selfseg resources"):
        NounExtractor(NounsConfig(spacy_pipeline="xx_no_such_pipeline"))(["a dog"])
