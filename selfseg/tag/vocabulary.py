"""The user's own vocabulary as tags: classic open-vocabulary segmentation, no model run."""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..io import LoadedImage
from .base import TAGGERS
from .result import NounSupport, TagResult


def word_key(word: str) -> str:
    """What makes two spellings one class: case, runs of spaces and Unicode's composed / decomposed forms
    ("café" typed two ways) do not."""
    return unicodedata.normalize("NFC", " ".join(word.split())).casefold()


def tidy_words(words: Iterable[str]) -> list[str]:
    """A user's words as classes: spaces collapsed, composed Unicode, empty ones dropped, one per `word_key`
    (the first spelling wins), order kept."""
    seen: dict[str, str] = {}
    for w in words:
        w = unicodedata.normalize("NFC", " ".join(w.split()))
        if w:
            seen.setdefault(word_key(w), w)
    return list(seen.values())


@dataclass
class VocabularyConfig:
    """The vocabulary tagger's settings: the config file's top-level `vocabulary` list."""

    vocabulary: list[str]


@TAGGERS.register("vocabulary", config=VocabularyConfig)
class VocabularyTagger:
    name = "vocabulary"

    def __init__(self, config: VocabularyConfig, models: Any = None) -> None:
        self.words = tidy_words(config.vocabulary)
        if not self.words:
            raise ConfigError("tagger 'vocabulary': expected a non-empty `vocabulary` list, got none")

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        return [
            TagResult(source=im.source, image_size=im.size, tagger=self.name,
                      nouns=[NounSupport(noun=w, support=0, cycles=0, clusters=[]) for w in self.words])
            for im in images
        ]
