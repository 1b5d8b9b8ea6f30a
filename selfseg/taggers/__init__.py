"""Taggers: "what is in this image?" -> nouns with provenance. Chosen by name (`tagger:` in the config)."""
from .base import TAGGERS, Tagger, build_tagger

__all__ = ["TAGGERS", "Tagger", "build_tagger"]
