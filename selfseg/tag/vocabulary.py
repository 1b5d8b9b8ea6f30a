"""The user's own vocabulary as tags: classic open-vocabulary segmentation, no model run."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..io import LoadedImage
from .base import TAGGERS
from .result import NounSupport, TagResult


@dataclass
class VocabularyConfig:
    """The vocabulary tagger's settings: the config file's top-level `vocabulary` list."""

    vocabulary: list[str]


@TAGGERS.register("vocabulary", config=VocabularyConfig)
class VocabularyTagger:
    name = "vocabulary"

    def __init__(self, config: VocabularyConfig, models: Any = None) -> None:
        words = [w.strip() for w in config.vocabulary if w.strip()]
        if not words:
            raise ConfigError("tagger 'vocabulary': expected a non-empty `vocabulary` list, got none")
        self.words = list(dict.fromkeys(words))  # deduplicated, order kept

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        return [
            TagResult(source=im.source, image_size=im.size, tagger=self.name,
                      nouns=[NounSupport(noun=w, support=0, cycles=0, clusters=[]) for w in self.words])
            for im in images
        ]
