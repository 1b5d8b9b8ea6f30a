"""Label mappers: a free-form noun or description -> one dataset class, or none.

Every mapper follows `LabelMapper`: `map(descriptions, level=None) -> list[LabelMatch]`, one match per
description, in order; the levels it can map at (none for most); and whether it can list every class a noun
relates to, which ground-truth-aware scoring needs. `MapperWithoutLevels` gives a mapper with one way of
mapping (no levels, no relations) that part of the protocol.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ...errors import ConfigError
from ...registry import Registry
from ..datasets import ClassInfo


@dataclass(frozen=True)
class LabelMatch:
    """description: the input text. noun: what was looked up (the head noun for lexical and LLM mapping;
    the description itself for embeddings). cls / index: the class's name and index, None for none.
    level: the lexical level of the relation (lexical mapper). score: cosine similarity (embeddings).
    reply: the LLM's raw reply (LLM mapper; None where the noun is a class name and no LLM was asked).
    rule: which rule decided (lexical: name, head, view, container, surface, part, whole, role, none; hybrid
    adds embedding). reason: why a description maps to none, where a mapper can say."""

    description: str
    noun: str
    cls: str | None
    index: int | None
    level: str | None = None
    score: float | None = None
    reply: str | None = None
    rule: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row `map-labels` prints: description, noun, class, and the level, rule, score and reason where
        the mapper gives them."""
        row: dict[str, Any] = {"description": self.description, "noun": self.noun, "class": self.cls}
        for key in ("level", "rule", "score", "reason"):
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        return row


@runtime_checkable
class LabelMapper(Protocol):
    """name: the registry name. levels: the levels the mapper can map at, weakest relation first (each
    accepts what the ones before it do); () for a mapper with one way of mapping. level: its own level, the
    one `map` uses when given none (None without levels). relates: True when `related` lists every class a
    noun relates to at a level, so a scorer may credit a noun with whichever related class the ground truth
    holds; a mapper without relations refuses `related` with a ConfigError."""

    name: str
    levels: tuple[str, ...]
    level: str | None
    relates: bool

    def map(self, descriptions: Sequence[str], level: str | None = None) -> list[LabelMatch]: ...

    def related(self, noun: str, level: str | None = None) -> set[int]: ...


def _no_relations(mapper: LabelMapper) -> ConfigError:
    return ConfigError(f"gt_aware: ground-truth-aware scoring needs a label mapper that relates nouns to classes, "
                       f"and the {mapper.name} mapper does not; turn gt_aware off or use the lexical mapper")


def require_relations(mapper: LabelMapper) -> None:
    """Refuse ground-truth-aware scoring with a mapper that cannot say which classes a noun relates to."""
    if not mapper.relates:
        raise _no_relations(mapper)


def check_level(mapper: LabelMapper, level: str | None) -> str | None:
    """The level to map at: the mapper's own for None, else `level`, which must be one of its levels."""
    if level is None:
        return mapper.level
    if level not in mapper.levels:
        if not mapper.levels:
            raise ConfigError(f"the {mapper.name} label mapper has no levels; got level {level!r}")
        raise ConfigError(f"{mapper.name} level: expected one of {', '.join(mapper.levels)}, got {level!r}")
    return level


class MapperWithoutLevels:
    """The levels and relations part of `LabelMapper` for a mapper with one way of mapping."""

    name: str = ""
    levels: tuple[str, ...] = ()
    level: str | None = None
    relates: bool = False

    def related(self, noun: str, level: str | None = None) -> set[int]:
        raise _no_relations(self)


MAPPERS: Registry[Any] = Registry("label mapper")


def normalize(text: str) -> str:
    """Lower case, '_' and runs of spaces -> one space, surrounding punctuation stripped."""
    text = re.sub(r"[\s_]+", " ", text.casefold()).strip()
    return text.strip(" .,;:!?\"'`()[]{}")


@dataclass
class ClassIndex:
    """Name -> class lookups over a dataset's classes (every listed name of a class counts; a name two
    classes share resolves to the first, as in ADE20K-847 where e.g. "bag" names three classes)."""

    classes: list[ClassInfo]
    by_name: dict[str, int] = field(init=False)
    by_primary: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name, self.by_primary = {}, {}
        for c in self.classes:
            self.by_primary.setdefault(normalize(c.name), c.index)
            for n in c.names:
                self.by_name.setdefault(normalize(n), c.index)

    def name(self, index: int | None) -> str | None:
        return None if index is None else self.classes[index].name


class HeadNouns:
    """The head noun of a description, singular: "two red cars parked on a street" -> "car".

    A text WordNet knows as a noun as a whole ("traffic light", "cars") is its own head. Otherwise the first
    run of nouns spaCy tags gives the head: its longest tail WordNet knows as one noun ("fire hydrant"), else
    its last noun, singularised. With no noun tagged, the last word WordNet knows as a noun, else the text.
    """

    def __init__(self, spacy_pipeline: str = "auto") -> None:
        self.spacy_pipeline = spacy_pipeline
        self._nlp: Any = None
        self._wn: Any = None

    def _wordnet_noun(self, words: Sequence[str]) -> str | None:
        if self._wn is None:
            from ...resources import load_wordnet

            self._wn = load_wordnet()
        base = self._wn.morphy("_".join(words), self._wn.NOUN) if words else None
        return base.replace("_", " ") if base else None

    def __call__(self, descriptions: Sequence[str]) -> list[str]:
        texts = [normalize(d) for d in descriptions]
        out: list[str | None] = [self._wordnet_noun(t.split()) if t else "" for t in texts]
        todo = [i for i, o in enumerate(out) if o is None]
        if todo:
            if self._nlp is None:
                from ...resources import load_spacy

                self._nlp = load_spacy(self.spacy_pipeline)
            for i, doc in zip(todo, self._nlp.pipe([texts[i] for i in todo])):
                out[i] = self._head(doc, texts[i])
        return [o or "" for o in out]

    def _head(self, doc: Any, text: str) -> str:
        toks = list(doc)
        start = next((k for k, t in enumerate(toks) if t.tag_ in ("NN", "NNS", "NNP", "NNPS")), None)
        if start is not None:
            end = start
            while end + 1 < len(toks) and toks[end + 1].tag_ in ("NN", "NNS", "NNP", "NNPS"):
                end += 1
            words = [t.text for t in toks[start : end + 1]]
            for k in range(len(words) - 1):  # longest known compound ending at the head
                found = self._wordnet_noun(words[k:])
                if found and " " in found:
                    return found
            last = toks[end]
            lemma = last.lemma_ if last.tag_ in ("NNS", "NNPS") else last.text  # "men" -> "man"
            return self._wordnet_noun([lemma]) or self._wordnet_noun([last.text]) or lemma
        for t in reversed(toks):
            found = self._wordnet_noun([t.text]) if t.is_alpha else None
            if found:
                return found
        return text
