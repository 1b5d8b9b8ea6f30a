"""Lexical mapping of nouns to dataset classes, by the levels of the open-ended benchmarking protocol
(OPAL): exact -> synonym -> hyponym -> meronym, cumulative.

At level L a prediction may map to a class it relates to by any level up to L:
- exact: the singular head noun is the class's name;
- synonym: it is one of the names the dataset lists for the class, or shares a WordNet synset with it;
- hyponym: it is a kind of the class ("sedan" -> car): a class synset is among its WordNet hypernyms
  (instance hypernyms included, any depth);
- meronym: it is a part, substance or member of the class ("wheel" -> bicycle): its WordNet holonyms (of
  the noun or of its direct hypernym, any depth) include a class synset or an ancestor of one, since
  parts of a wheeled vehicle are parts of a bicycle.
The paper builds its word lists with an LLM; selfseg derives the same relations from WordNet plus the
shipped synonym lists, so mapping is reproducible and offline.

Senses. A class's synsets are the physical senses of its name that share the first physical sense's
lexicographer file ("table" is furniture, not a data table; "chair" not a chairperson); a class name
WordNet lacks ("potted plant") falls back to its first listed name WordNet knows; further listed names
add their senses in the same file ("cattle" for cow). A prediction keeps its
physical, non-proper-name senses that WordNet's tagged corpus has seen (all physical ones if it saw none),
so "plant" can be flora or a factory, but "grass" is never an informer; the strongest relation decides.

Choice among related classes: the earliest level, then the prediction's most common sense, then the
fewest WordNet hops, then the class order. The ground-truth-aware variant (`related`) lets an evaluator
prefer the ground-truth class whenever the prediction relates to it at all up to L, as the protocol does.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, check, choices
from ..datasets import ClassInfo
from .base import MAPPERS, ClassIndex, HeadNouns, LabelMatch, normalize

LEVELS = ("exact", "synonym", "hyponym", "meronym")
_PHYSICAL = {"noun.Tops", "noun.artifact", "noun.object", "noun.animal", "noun.plant", "noun.person",
             "noun.body", "noun.food", "noun.substance", "noun.location", "noun.phenomenon"}


def level_rank(level: str) -> int:
    if level not in LEVELS:
        raise ConfigError(f"lexical level: expected one of {', '.join(LEVELS)}, got {level!r}")
    return LEVELS.index(level)


@dataclass(frozen=True, order=True)
class Relation:
    """How a noun relates to one class; tuples compare strongest-first."""

    level: int
    sense: int
    hops: int


def _bfs(start: Any, step, max_depth: int = 30) -> dict[Any, int]:
    seen = {start: 0}
    queue = deque([start])
    while queue:
        s = queue.popleft()
        if seen[s] >= max_depth:
            continue
        for t in step(s):
            if t not in seen:
                seen[t] = seen[s] + 1
                queue.append(t)
    return seen


def _up(s: Any) -> list[Any]:
    return s.hypernyms() + s.instance_hypernyms()


def _whole(s: Any) -> list[Any]:
    return s.part_holonyms() + s.substance_holonyms() + s.member_holonyms()


class LexicalMapper:
    name = "lexical"
    levels = LEVELS
    relates = True

    def __init__(self, classes: Sequence[ClassInfo], level: str = "meronym", background: int | None = None,
                 spacy_pipeline: str = "auto", wordnet: Any = None) -> None:
        self.classes = list(classes)
        self.level = level
        self.rank = level_rank(level)
        self.background = background
        self.index = ClassIndex(self.classes)
        self.heads = HeadNouns(spacy_pipeline)
        self._wn = wordnet
        self._built = False
        self._cache: dict[str, dict[int, Relation]] = {}

    # -------------------------------------------------------------------------------------------- setup
    @property
    def wn(self) -> Any:
        if self._wn is None:
            from ...resources import load_wordnet

            self._wn = load_wordnet()
        return self._wn

    def _senses(self, word: str) -> list[Any]:
        return self.wn.synsets(word.replace(" ", "_"), pos=self.wn.NOUN)

    def _noun_senses(self, noun: str) -> list[tuple[int, Any]]:
        """(sense rank, synset) of a predicted noun: its physical senses that are not proper names
        ("Tree", an actor), and of those the ones seen in WordNet's tagged corpus when any were (so "grass"
        is not an informer and "wheel" not a bicycle); no physical sense: the first sense."""
        senses = self._senses(noun) if noun else []
        physical = [(i, s) for i, s in enumerate(senses)
                    if s.lexname() in _PHYSICAL and not s.instance_hypernyms()]
        if not physical:
            return list(enumerate(senses[:1]))
        word = noun.replace(" ", "_")
        counted = [(i, s) for i, s in physical
                   if sum(lem.count() for lem in s.lemmas() if lem.name().lower() == word) > 0]
        return counted or physical

    def _class_senses(self, c: ClassInfo) -> list[Any]:
        """The class's synsets: the physical senses of its first name WordNet knows that share the first
        physical sense's lexicographer file; then, from each further listed name that is not just another
        lemma of a chosen synset, its senses in that same file ("cattle" widens "cow"; ADE20K's
        "car;auto;...;machine" lists lemmas of one synset, so "machine" adds no mechanical devices)."""
        chosen: list[Any] = []
        lexname = None
        for name in c.names:
            senses = self._senses(name)
            if not senses:
                continue
            physical = [s for s in senses if s.lexname() in _PHYSICAL and not s.instance_hypernyms()]
            if lexname is None:
                chosen = [s for s in physical if s.lexname() == physical[0].lexname()] if physical else senses[:1]
                lexname = chosen[0].lexname()
            elif not set(senses) & set(chosen):
                chosen += [s for s in physical if s.lexname() == lexname and s not in chosen]
        return chosen

    def _build(self) -> None:
        if self._built:
            return
        # Inverted indexes: synset -> classes that have it (synonym / hyponym targets), and synset ->
        # (class, hops) for every ancestor of a class synset (meronym targets: parts are inherited).
        self._has: dict[Any, list[int]] = {}
        self._below: dict[Any, list[tuple[int, int]]] = {}
        for c in self.classes:
            if c.index == self.background:
                continue
            for s in self._class_senses(c):
                self._has.setdefault(s, []).append(c.index)
                for a, d in _bfs(s, _up).items():
                    self._below.setdefault(a, []).append((c.index, d))
        self._built = True

    # ------------------------------------------------------------------------------------------- lookup
    def relations(self, noun: str) -> dict[int, Relation]:
        """Every class the (singular) noun relates to at any level, with its strongest relation."""
        key = normalize(noun)
        if key in self._cache:
            return self._cache[key]
        self._build()
        rel: dict[int, Relation] = {}

        def add(c: int, r: Relation) -> None:
            if c != self.background and (c not in rel or r < rel[c]):
                rel[c] = r

        if key in self.index.by_primary:
            add(self.index.by_primary[key], Relation(0, 0, 0))
        if key in self.index.by_name:  # the dataset's own synonym list outranks WordNet's senses
            add(self.index.by_name[key], Relation(1, -1, 0))
        for i, s in self._noun_senses(key):
            for a, d in _bfs(s, _up).items():
                for c in self._has.get(a, ()):
                    add(c, Relation(1 if d == 0 else 2, i, d))
            # Holonyms of the noun and of its direct hypernyms (a kind of wheel is still part of a vehicle).
            starts = {s: 0, **{h: 1 for h in _up(s)}}
            for start, d0 in starts.items():
                for whole, d in _bfs(start, _whole).items():
                    if d == 0:
                        continue
                    for c, dc in self._below.get(whole, ()):
                        add(c, Relation(3, i, d0 + d + dc))
        self._cache[key] = rel
        return rel

    def related(self, noun: str, level: str | None = None) -> set[int]:
        """Classes the noun relates to at `level` or below (the ground-truth-aware protocol's test)."""
        rank = self.rank if level is None else level_rank(level)
        return {c for c, r in self.relations(noun).items() if r.level <= rank}

    def best(self, noun: str, level: str | None = None) -> tuple[int | None, str | None]:
        rank = self.rank if level is None else level_rank(level)
        cands = [(r, c) for c, r in self.relations(noun).items() if r.level <= rank]
        if not cands:
            return None, None
        r, c = min(cands)
        return c, LEVELS[r.level]

    def map(self, descriptions: Sequence[str], level: str | None = None) -> list[LabelMatch]:
        nouns = self.heads(descriptions)
        out = []
        for d, n in zip(descriptions, nouns):
            c, lev = self.best(n, level)
            out.append(LabelMatch(description=d, noun=n, cls=self.index.name(c), index=c, level=lev))
        return out

    def head_nouns(self, descriptions: Iterable[str]) -> list[str]:
        return self.heads(list(descriptions))


@dataclass(kw_only=True)  # keyword-only: its fields sit beside the other mappers' in the evaluation section
class LexicalMapperConfig:
    """The lexical mapper's settings (in a config file: the `evaluation` section)."""

    # Lexical mapping: the highest level accepted (exact, synonym, hyponym, meronym; cumulative).
    lexical_level: str = "meronym"
    # Lexical mapping aware of the ground truth: a noun related to a pixel's true class counts as that class.
    gt_aware: bool = False

    def __post_init__(self) -> None:
        check(self.lexical_level in LEVELS, "lexical_level", choices(LEVELS), self.lexical_level)


@MAPPERS.register("lexical", config=LexicalMapperConfig, section="evaluation")
def lexical(config: LexicalMapperConfig, models: Any, *, classes: Sequence[ClassInfo], background: int | None = None,
            spacy_pipeline: str = "auto", **_: Any) -> LexicalMapper:
    """The mapper of a config block into a dataset's classes (WordNet: no checkpoint, no device)."""
    return LexicalMapper(classes, level=config.lexical_level, background=background, spacy_pipeline=spacy_pipeline)
