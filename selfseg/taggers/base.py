"""The tagger protocol and registry: "what is in these images?" -> TagResult per image."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..config import Config
from ..io import LoadedImage
from ..registry import Registry
from ..results import TagResult


class Tagger(Protocol):
    name: str

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        """One TagResult per image, in order. Model calls cover the whole batch."""
        ...


#: Factories take the whole Config; each reads its own sections.
TAGGERS: Registry[Tagger] = Registry("tagger")


def build_tagger(config: Config) -> Tagger:
    return build_tagger_named(config.tagger, config)


def build_tagger_named(name: str, config: Config) -> Tagger:
    from . import bcc, caption, union, vlm, vocabulary  # noqa: F401  (importing registers them)

    return TAGGERS.create(name, config)
