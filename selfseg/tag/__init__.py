"""Taggers: "what is in this image?" -> nouns with provenance. Chosen by name (`tagger:` in the config)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import TAGGERS, Tagger

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["TAGGERS", "Tagger", "build_tagger", "build_tagger_named"]


def build_tagger(config: Config) -> Tagger:
    return build_tagger_named(config.tagger, config)


def build_tagger_named(name: str, config: Config) -> Tagger:
    # Imported here, not at the top: each implementation loads its models' libraries when first built.
    from . import bcc, caption, union, vlm, vocabulary  # noqa: F401  (importing registers them)

    return TAGGERS.create(name, config)
