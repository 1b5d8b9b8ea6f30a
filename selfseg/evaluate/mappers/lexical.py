"""Lexical mapping of free-form descriptions to dataset classes, by the levels of the open-ended
benchmarking protocol (OPAL): exact -> synonym -> hyponym -> meronym, cumulative.

At level L a description may map to a class its noun relates to by any level up to L:
- exact: the singular noun is the class's name;
- synonym: it is one of the names the dataset lists for the class or its lexicon gives it ("street" is road
  in Cityscapes), or shares a WordNet synset with it;
- hyponym: it is a kind of the class ("sedan" -> car): a class synset is among its WordNet hypernyms
  (instance hypernyms included, any depth); a person in a role the lexicon defines ("a man riding a bike")
  is a kind of that role's class (rider);
- meronym: it is a part, substance or member of the class ("wheel" -> bicycle): its WordNet holonyms (of
  the noun or of its direct hypernym, any depth) include a class synset or an ancestor of one, since
  parts of a wheeled vehicle are parts of a bicycle; or the description names the whole it belongs to
  ("the mirror of a car").
The paper builds its word lists with an LLM; selfseg derives the same relations from WordNet plus the
shipped class and lexicon files, so mapping is reproducible, offline and explainable.

Reading. A description is read (`reading.Reader`) into the phrase it is about and what hangs on it (of,
a possessive, on / in / at, a noun compound, the verbs). The rules run in this order; each result names its
rule (`LabelMatch.rule`):
- depiction: a word before the noun that makes the region a depiction of what the noun names ("a toy airplane",
  "a model train", "a stuffed dog") maps it as what it then is (a toy, a scale model, a soft toy: COCO's teddy
  bear), or to none; so does a part of one; a work of art or representation "of" something ("a painting of a
  horse", "a statue of a man") is that work, none where its own noun maps to nothing (after the container rule);
- name (by meaning): a class named by a participle of a verb that puts a thing in a container named like it, and a
  noun ("potted plant": WordNet's to pot is to plant in a pot) is a kind of that noun so qualified or in such a
  container ("a potted fern", "a cactus in a clay pot"), and the container holding one ("a pot of geraniums");
- surface (shown): what a display shows is the display's region, as a mark is its surface's: a doing on a
  television or a screen ("a football game on the television"), anything on a screen ("a man on a tv screen");
- part (lexicon): a part attached to a whole the lexicon lists it for is the whole ("the light of a car",
  "a car trunk", "the trailer of a truck", "the collar around the dog's neck", "the basket on the front of the
  bicycle"); a part of something the dataset leaves out is left out too; a view or a container "of" something
  is never a part ("a pile of carrots on a cutting board" is carrots);
- left out: a noun the dataset's lexicon leaves out of its classes maps to none ("a guard rail");
- vague: a noun that names no kind of thing ("an object", "a blurry shape") maps to none;
- view: "a picture of X" is about X;
- container: "a row of X", "a group of X", "the side of X", and without "of" "a grassy area", are X (a
  measure, a collection or a region of X, not an object of their own);
- surface: a shadow or a mark takes the class of the surface it lies on ("the shadow of a car on the road" is
  road; "the stripes of a crossing" are the crossing's); none when no surface is named;
- part (WordNet): a noun WordNet makes a part of the attached whole's class is the whole when it names no
  class itself at the exact or synonym level (or is attached by "of"); a noun that is only a part of
  something, or maps to nothing, attached by "of" or a possessive takes its whole (rule "whole" for the
  latter); a whole that is itself only part of a class ("the floor of the living room") does not count, nor
  does what a dish holds where it can be food and its class is not ("a plate of chicken" is no bird); a
  room, seen from inside, is no part of its building ("a kitchen" is none, not the building);
- role: a member of a class on one of a lexicon role's vehicles ("a person riding a bicycle", "a man on a
  bike") is the role's class;
- name: a class name or lexicon name, the longest run of words ending at the head first ("traffic light"
  before "light"); a compound WordNet knows and files under no sense of its last word is read as itself
  ("power plant" is a station, not a plant; "rocking horse" a plaything); head: the head noun's WordNet
  relations. A group noun relates as its members do
  ("people", "a herd"; WordNet's member meronyms); none of these: rule "none" with the reason.

Senses. A class's synsets are the physical synsets that hold two of its listed names ("plant;flora": the
organism), else the common physical senses of its name that share the first physical sense's lexicographer
file ("table" is furniture, not a data table; "car" an automobile, not an elevator car); a class name
WordNet lacks ("potted plant") falls back to its first listed name WordNet knows; further listed names
add their senses in the same file ("cattle" for cow). A description's noun keeps its physical,
non-proper-name senses that WordNet's tagged corpus has seen at least a fifth as often as its commonest
one (so "light" is never a person, "leaves" never a page, "area" never a body region); all physical ones
if the corpus saw none.

Choice among related classes: the earliest level, then the noun's most common sense, then the fewest
WordNet hops, then the class order. The ground-truth-aware variant (`related`) lets an evaluator credit a
description with the ground-truth class whenever the reading relates it to that class at any level up to L
(the classes the deciding noun relates to, or the class a part, role or surface rule chose).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ...errors import ConfigError, check, choices
from ..datasets import ClassInfo
from .base import MAPPERS, ClassIndex, LabelMatch, normalize
from .lexicon import Lexicon, Role
from .reading import MAX_CHARS, Phrase, Reader

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


@lru_cache(maxsize=1 << 16)
def _count(s: Any, word: str) -> int:
    """How often WordNet's tagged corpus saw `word` in sense `s` (NLTK reads it from disk on every call)."""
    word = word.replace(" ", "_").lower()
    return sum(lem.count() for lem in s.lemmas() if lem.name().lower() == word)


def _common(senses: list[Any], word: str) -> list[Any]:
    """The senses WordNet's tagged corpus saw at least a fifth as often as the word's commonest (all when
    it saw none): a class "car" is an automobile, not a railway or elevator car."""
    counts = [_count(s, word) for s in senses]
    top = max(counts, default=0)
    return [s for s, n in zip(senses, counts) if 5 * n >= top and (n > 0 or top == 0)]


def _up(s: Any) -> list[Any]:
    return s.hypernyms() + s.instance_hypernyms()


def _whole(s: Any) -> list[Any]:
    return s.part_holonyms() + s.substance_holonyms() + s.member_holonyms()


# Words whose "of" object is what the region is (see the module docstring); all are WordNet nouns of
# measure, collection, arrangement or region ("row": an arrangement, "patch": a small area).
VIEWS = frozenset({"picture", "photo", "photograph", "image", "view", "closeup", "shot", "snapshot",
                   "scene", "blur", "depiction"})
CONTAINERS = frozenset({
    "row", "line", "group", "bunch", "cluster", "pile", "stack", "heap", "patch", "area", "section", "strip",
    "stretch", "expanse", "pair", "couple", "set", "collection", "number", "lot", "variety", "array", "series",
    "mass", "clump", "piece", "portion", "bit", "layer", "fleet", "queue", "herd", "flock", "crowd", "team",
    "family", "swarm", "bank", "field", "tuft", "mound", "wall", "sea", "column", "plot",
    "sheet", "blanket", "carpet", "canopy", "grove", "stand", "hedge", "mix", "assortment", "kind", "type", "block",
    # regions of a thing: the region is the thing in a semantic map
    "side", "top", "bottom", "front", "back", "rear", "edge", "corner", "end", "part", "middle", "center",
    "centre", "surface", "half", "interior", "exterior", "inside", "outside", "facade", "face", "detail", "rest",
    "remainder", "shape", "outline", "silhouette", "base", "view"})
# Things that lie on a surface without being one: they take the surface's class.
# Marks that belong to what they are on or of: "the stripes of a crossing" are on the crossing.
SURFACE_MARKS = frozenset({"marking", "mark", "line", "stripe", "crack", "stain", "spot", "graffiti", "paint",
                           "puddle", "pothole", "arrow", "writing", "text", "letter", "word", "lettering", "logo",
                           "sticker", "dirt", "mud", "rust", "scratch", "dent", "smudge", "track", "raindrop",
                           "droplet", "drop", "dust", "frost"})
# Effects cast by one thing onto another: "the shadow of a car" is not the car, it lies on the road.
SURFACE_CAST = frozenset({"shadow", "shade", "reflection", "glare", "sunlight", "sunshine"})
SURFACE_EFFECTS = SURFACE_MARKS | SURFACE_CAST
# What a preposition other than "of" points at when it says where, not what holds ("in front of a building").
_SPATIAL = frozenset({"front", "back", "side", "left", "right", "middle", "center", "centre", "rear", "vicinity",
                      "distance", "background", "foreground", "edge", "corner", "end", "direction", "area"})
# The rule of a none the dataset decides (a class it leaves out, or a part of one), not a gap in the lexicon.
LEFT_OUT = "left out"
#: Rules whose none is the mapper's answer: left out by the dataset, a vague noun, a mark on no named surface, a
#: depiction of a class's thing (a toy airplane is no airplane).
DELIBERATE_NONE = (LEFT_OUT, "vague", "surface", "depiction")
# Words before a noun that make the region a depiction of the thing it names: "a toy airplane", "a model train",
# "a stuffed dog". Each maps as the noun of what the region then is: a scale model (a bare "model" is commonly a
# person who poses), a toy, a soft toy (COCO labels them teddy bear, PASCAL-Context toy). They depict animals,
# people and vehicles (conveyances): "a toy store" and "a model home" are no depictions, "stuffed peppers" no toy.
DEPICTING = {"toy": "toy", "model": "scale model", "stuffed": "stuffed toy", "plush": "plush toy"}
_SOFT = frozenset({"stuffed", "plush"})
# Nouns that name no kind of thing: a description about them maps to none.
VAGUE = frozenset({"object", "thing", "something", "shape", "item", "stuff", "blob", "anything", "everything"})
_SURFACE_PREPS = ("on", "in", "onto", "across", "along", "over", "upon", "at")
# Prepositions that attach a part to its whole ("the light on a pole", "the collar around the dog's neck").
_HOLDING = ("on", "in", "at", "around")
# Group nouns WordNet gives no members for; their members' class is the group's ("crowd" of people).
COLLECTIVES = {"crowd": "person", "audience": "person", "team": "person", "couple": "person", "family": "person",
               "group": "person", "foliage": "leaf", "greenery": "plant", "traffic": "car"}


@dataclass(frozen=True)
class Decision:
    """What a description maps to: the class (None: none), the relation's level, the noun that decided,
    the rule (see the module docstring), the classes that noun relates to up to the level (ground-truth-aware
    scoring), and why a description maps to none."""

    cls: int | None
    level: str | None
    noun: str
    rule: str
    related: frozenset[int] = frozenset()
    reason: str | None = None


class LexicalMapper:
    name = "lexical"
    levels = LEVELS
    relates = True

    def __init__(self, classes: Sequence[ClassInfo], level: str = "meronym", background: int | None = None,
                 spacy_pipeline: str = "auto", wordnet: Any = None, lexicon: Lexicon | None = None) -> None:
        self.classes = list(classes)
        self.level = level
        self.rank = level_rank(level)
        self.background = background
        self.index = ClassIndex(self.classes)
        self.lexicon = lexicon or Lexicon()
        self.reader = Reader(spacy_pipeline, wordnet,
                             vocabulary=frozenset(self.index.by_name) | frozenset(self.lexicon.names)
                             | self.lexicon.unlabelled)
        self._wn = wordnet
        self._built = False
        self._cache: dict[str, dict[int, Relation]] = {}
        self._decided: dict[tuple[str, int], Decision] = {}

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
        ("Tree", an actor), and of those the ones WordNet's tagged corpus has seen at least a fifth as often
        as the commonest (so "grass" is not an informer, "light" not a person, "leaves" not pages); no
        physical sense: the first sense."""
        senses = self._senses(noun) if noun else []
        physical = [(i, s) for i, s in enumerate(senses)
                    if s.lexname() in _PHYSICAL and not s.instance_hypernyms()]
        if not physical:
            return list(enumerate(senses[:1]))
        counts = [_count(s, noun) for _, s in physical]
        top = max(counts)
        if top == 0:
            return physical
        return [p for p, n in zip(physical, counts) if n > 0 and 5 * n >= top]

    def _class_senses(self, c: ClassInfo) -> list[Any]:
        """The class's synsets: the physical synsets that hold two of its listed names, if any; else the
        physical senses of its first name WordNet knows that share the first
        physical sense's lexicographer file and that the tagged corpus saw at least a fifth as often as the
        commonest of them; then, from each further listed name that is not just another
        lemma of a chosen synset, its senses in that same file ("cattle" widens "cow"; ADE20K's
        "car;auto;...;machine" lists lemmas of one synset, so "machine" adds no mechanical devices)."""
        # A synset that holds two of the class's names is the sense the dataset means ("plant;flora": the
        # organism, not the factory).
        per_name = [set(self._senses(n)) for n in c.names]
        shared = [s for s in dict.fromkeys(x for ss in per_name for x in ss)
                  if sum(s in ss for ss in per_name) >= 2 and s.lexname() in _PHYSICAL]
        if shared:
            return shared
        chosen: list[Any] = []
        lexname = None
        for name in c.names:
            senses = self._senses(name)
            if not senses:
                continue
            physical = [s for s in senses if s.lexname() in _PHYSICAL and not s.instance_hypernyms()]
            if lexname is None:
                chosen = [s for s in physical if s.lexname() == physical[0].lexname()] if physical else senses[:1]
                chosen = _common(chosen, name)
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
        self._person = self.wn.synset("person.n.01")
        self._room = self.wn.synset("room.n.01")
        self._structure = self.wn.synset("structure.n.01")
        self._conveyance = self.wn.synset("conveyance.n.03")
        self._bird, self._fish = self.wn.synset("bird.n.01"), self.wn.synset("fish.n.01")
        self._container = self.wn.synset("container.n.01")
        self._display = self.wn.synset("display.n.06")
        self._tableware = self.wn.synset("tableware.n.01")
        self._receiver = self.wn.synset("television_receiver.n.01")
        self._participles = [h for c in self.classes if c.index != self.background for h in self._held_in(c)]
        self._renderings = {self.wn.synset("representation.n.02"), self.wn.synset("art.n.01")}
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
        """Every class a (singular) noun relates to at any level, with its strongest relation: the class
        list's and the lexicon's names, then WordNet. A group noun relates as its members do."""
        key = normalize(noun)
        if key in self._cache:
            return self._cache[key]
        self._build()
        rel: dict[int, Relation] = {}
        self._cache[key] = rel  # filled below; a noun that is its own member ("enemy") finds it and stops

        def add(c: int, r: Relation) -> None:
            if c != self.background and (c not in rel or r < rel[c]):
                rel[c] = r

        if key in self.index.by_primary:
            add(self.index.by_primary[key], Relation(0, 0, 0))
        if self._listed(key):  # the dataset's own names outrank WordNet's senses
            add(self.index.by_name[key], Relation(1, -1, 0))
        if key in self.lexicon.names:
            add(self.lexicon.names[key], Relation(1, -1, 0))
        for i, s in self._noun_senses(key):
            self._wordnet_relations(s, i, add)
        # a group of members ("people", "a herd"): WordNet's member meronyms, else the list; not a room that
        # relates to nothing (a vestry is the church's room, not its elected committee)
        if not rel and not self._is_room(key):
            groups = [s for s in _common(self._senses(key), key) if s.lexname() == "noun.group"]
            members = [m for s in groups for m in s.member_meronyms()]
            for m in members:
                for c, r in self.relations(m.lemmas()[0].name()).items():
                    add(c, Relation(max(r.level, 1), r.sense, r.hops + 1))
            if not rel and key in COLLECTIVES:
                for c, r in self.relations(COLLECTIVES[key]).items():
                    add(c, Relation(max(r.level, 1), r.sense, r.hops + 1))
        self._cache[key] = rel
        return rel

    def _listed(self, key: str) -> bool:
        """Whether the class list names a class by this word, in the sense it means (not one of the lexicon's
        rare names: "throne" is one of ADE20K's names for a toilet, and a chair in any description)."""
        return key in self.index.by_name and key not in self.lexicon.rare

    def _wordnet_relations(self, s: Any, i: int, add: Any) -> None:
        up = _bfs(s, _up)
        for a, d in up.items():
            for c in self._has.get(a, ()):
                add(c, Relation(1 if d == 0 else 2, i, d))
        # WordNet files every noun denoting people under noun.person, though some ("driver", an operator)
        # reach person only through "causal agent": they are kinds of person all the same.
        if s.lexname() == "noun.person":
            for c in self._has.get(self._person, ()):
                add(c, Relation(2, i, max(up.values(), default=0) + 1))
        # A room is seen from inside, where no pixel is its building's: every dataset's building and house class
        # is the outside of one, so "a kitchen" is no part of a building, a house or any other construction (a
        # ship's galley is still part of the ship).
        room = self._room in up
        # Holonyms of the noun and of its direct hypernyms (a kind of wheel is still part of a vehicle).
        starts = {s: 0, **{h: 1 for h in _up(s)}}
        for start, d0 in starts.items():
            for whole, d in _bfs(start, _whole).items():
                if d == 0 or (room and self._structure in _bfs(whole, _up)):
                    continue
                for c, dc in self._below.get(whole, ()):
                    add(c, Relation(3, i, d0 + d + dc))

    def _is_colour(self, word: str) -> bool:
        """Whether a word names a colour ("white" in "a white line"; WordNet also makes it a person)."""
        return self.reader.colour(word)

    def _is_kind(self, noun: str, entries: frozenset[str]) -> bool:
        """Whether a noun is one of the words, or a WordNet kind of one ("shirt" of "garment")."""
        if noun in entries:
            return True
        targets = {s for e in entries for s in self._senses(e)}
        return any(a in targets for _, s in self._noun_senses(noun) for a in _bfs(s, _up))

    def related(self, noun: str, level: str | None = None) -> set[int]:
        """Classes a noun or description relates to at `level` or below (the ground-truth-aware protocol's
        test): those of the noun its reading decides by, or the class a part, role or surface rule chose."""
        rank = self.rank if level is None else level_rank(level)
        # every level up to `rank`: a rule that decides at a higher level ("a man riding a bike" is a rider
        # from hyponym on) adds its class to what the lower levels related, so the levels stay cumulative
        return set().union(*(self.decide([noun], r)[0].related for r in range(rank + 1)))

    def best(self, noun: str, level: str | None = None) -> tuple[int | None, str | None]:
        rank = self.rank if level is None else level_rank(level)
        return self._best(self.relations(noun), rank)

    @staticmethod
    def _best(rel: dict[int, Relation], rank: int) -> tuple[int | None, str | None]:
        cands = [(r, c) for c, r in rel.items() if r.level <= rank]
        if not cands:
            return None, None
        r, c = min(cands)
        return c, LEVELS[r.level]

    # ------------------------------------------------------------------------------------------ reading
    def map(self, descriptions: Sequence[str], level: str | None = None) -> list[LabelMatch]:
        rank = self.rank if level is None else level_rank(level)
        return [LabelMatch(description=d, noun=x.noun, cls=self.index.name(x.cls), index=x.cls, level=x.level,
                           rule=x.rule, reason=x.reason)
                for d, x in zip(descriptions, self.decide(descriptions, rank))]

    def decide(self, descriptions: Sequence[str], rank: int) -> list[Decision]:
        phrases = self.reader(descriptions)
        out = []
        for d, p in zip(descriptions, phrases):
            key = (normalize(d), rank)
            if key not in self._decided:
                self._decided[key] = self._decide_text(d, p, rank)
            out.append(self._decided[key])
        return out

    def _decide_text(self, text: str, p: Phrase | None, rank: int) -> Decision:
        if p is None:
            t = normalize(text)
            why = ("the description is longer than " f"{MAX_CHARS} characters" if len(text) > MAX_CHARS else
                   "the description is empty" if not t else "no English noun found")
            return Decision(None, None, "", "none", reason=why)
        found = self._phrase(p, rank, 0)
        if found is not None:
            return found
        if not self.reader.noun(p.head):
            return Decision(None, None, p.head, "none", reason=f"no English noun found ({p.head!r} is not one)")
        noun = self._name(p, rank)[0]  # a compound of its own ("power plant") is the noun that relates to nothing
        return Decision(None, None, noun, "none", reason=f"no class relates to {noun!r} up to {LEVELS[rank]}")

    def _name(self, p: Phrase, rank: int) -> tuple[str, dict[int, Relation], str]:
        """The noun a phrase names and its relations: the longest run of words ending at the head that maps
        to a class up to `rank` ("traffic light" before "light"), else the head."""
        for tail in p.tails():
            # a compound is also written closed or hyphenated ("street light", "streetlight", "double-decker")
            forms = [self.reader.noun(tail) or tail, self.reader.noun(tail.replace(" ", "")) or "",
                     self.reader.noun(tail.replace(" ", "-")) or ""] if " " in tail else [tail]
            for noun in forms:
                rel = self.relations(noun) if noun else {}
                if self._best(rel, rank)[0] is not None:
                    named = self._listed(noun) or noun in self.lexicon.names
                    return noun, rel, "name" if named else "head"
            # a compound WordNet knows and files under no sense of its last word is a noun of its own: a power
            # plant is no plant, a rocking horse no horse; nor is a room ("sun lounge", "steam bath",
            # "cable car") its last word. Where it relates to no class it maps to none ("a chocolate cake" is still a
            # cake, "a computer mouse" a mouse)
            last = tail.split()[-1]
            known = next((n for n in forms if " " in tail and n and (self._own_noun(n, last) or self._is_room(n))),
                         None)
            if known is not None:
                return known, self.relations(known), "head"
        return p.head, self.relations(p.head), "head"

    def _own_noun(self, compound: str, last: str) -> bool:
        """Whether WordNet knows a compound as a noun none of whose senses is its last word's sense or a kind of
        one ("power plant": a station; "rocking horse": a plaything)."""
        senses = self._senses(compound)
        word = last.replace(" ", "_")
        return bool(senses) and not any(lem.name().lower() == word for s in senses for a in _bfs(s, _up)
                                        for lem in a.lemmas())

    def _is_room(self, noun: str) -> bool:
        return any(self._room in _bfs(s, _up) for _, s in self._noun_senses(noun))

    def _relate(self, rel: dict[int, Relation], rank: int) -> frozenset[int]:
        return frozenset(c for c, r in rel.items() if r.level <= rank)

    def _phrase(self, p: Phrase, rank: int, depth: int) -> Decision | None:
        """The decision for one phrase (the rules of the module docstring, in order), None for none."""
        if depth > 6:  # descriptions nest a few phrases deep; the reader stops at four
            return None
        noun, rel, rule = self._name(p, rank)  # builds the indexes the rules below read
        found = self._depicted(p, noun, rank) or self._in_container(p, noun, rank) or self._shown(p, noun, rank, depth)
        if found is not None:
            return found
        c, lev = self._best(rel, rank)
        wholes = p.attached_by("of")
        named = c is not None and rule == "name" and lev in ("exact", "synonym")
        # "traffic light", "street sign": a name of several words is not its last word attached to its first
        compound_name = named and " " in noun
        holders = [(prep, w) for prep, w in p.attached
                   if prep == "of" or prep in _HOLDING and w.head not in _SPATIAL]
        # "on the front of the bicycle" is on the bicycle ("in front of" it is only near it)
        holders += [(prep, q) for prep, w in p.attached if prep in ("on", "at") and w.head in _SPATIAL
                    for q in w.attached_by("of")]
        if not compound_name:
            holders += [("compound", Phrase(words=(w,))) for w in p.words[p.adjectives:-1]]
        decided: list[tuple[str, Decision | None]] = []
        if rank >= 3 and holders:
            decided = [(prep, self._phrase(w, rank, depth + 1)) for prep, w in holders]
            for prep, whole in decided:
                # a part of something the dataset leaves out is left out with it ("the wheel of a caravan")
                if prep in ("of", "compound") and whole is not None and whole.rule == LEFT_OUT:
                    return Decision(None, None, whole.noun, LEFT_OUT, reason=f"a part of {whole.noun!r}, which the "
                                    "dataset leaves out of its classes")
                if prep in ("of", "compound") and whole is not None and whole.rule == "depiction" and whole.cls is None:
                    return Decision(None, None, whole.noun, "depiction", reason=f"a part of a {whole.noun}, a "
                                    "depiction of a thing, not the thing")
                # a measure or a view "of" something is that thing, wherever it lies ("a pile of gravel on the side
                # of the road"): the view and container rules below decide
                if not _stands_for_whole(whole) or p.head in VIEWS | CONTAINERS and wholes:
                    continue
                # the lexicon's parts decide first: "the light of a car", "a car trunk", "the trailer of a truck";
                # a name an adjective makes is still its noun there ("the red light of a car")
                listed = self.lexicon.parts.get(whole.cls)
                loose = not named or p.adjectives > 0
                if listed and (noun in listed or loose and (p.head in listed or self._is_kind(noun, listed))):
                    return Decision(whole.cls, "meronym", whole.noun, "part", frozenset({whole.cls}))
        # a name of the dataset's is more specific than its own last words ("potted plant" where "plant" is left
        # out), not than a longer name ending with it ("traffic light" where "light" is a class)
        tails = [t for t in p.tails() if not named or len(t) >= len(noun)]
        left_out = next((t for t in (noun, *tails) if t in self.lexicon.unlabelled), None)
        if left_out is not None:
            return Decision(None, None, left_out, LEFT_OUT,
                            reason=f"the dataset leaves {left_out!r} out of its classes")
        if p.words == (p.head,) and p.head in VAGUE and not wholes:
            return Decision(None, None, p.head, "vague", reason=f"{p.head!r} names no kind of thing")
        # view and container: the "of" object is the region, even where the head is a class ("picture", "base")
        if p.head in VIEWS | CONTAINERS and wholes:
            inner = self._first(wholes, rank, depth)
            if _stands_for_whole(inner):
                return _as(inner, "view" if p.head in VIEWS else "container")
        # surface effects take the surface's class (at the meronym level: they lie on it, not in it)
        if p.head in SURFACE_EFFECTS and rank >= 3 and not compound_name:
            surfaces = p.attached_by(*_SURFACE_PREPS) + [q for w in wholes for q in w.attached_by(*_SURFACE_PREPS)]
            surfaces += [q for v in p.verbs for prep, q in v.objects if prep in _SURFACE_PREPS]
            # "a shadow cast by a tree on the road": the surface hangs on the verb's agent
            surfaces += [r for v in p.verbs for _, q in v.objects for r in q.attached_by(*_SURFACE_PREPS)]
            if p.head in SURFACE_MARKS:
                surfaces += wholes
            inner = self._first(surfaces, rank, depth)
            if inner is not None:
                return Decision(inner.cls, "meronym", inner.noun, "surface", frozenset({inner.cls}))
            if c is None:
                return Decision(None, None, p.head, "surface", reason=f"a {p.head} takes the class of the surface "
                                "it lies on, and none is named")
        # a container without an "of": a noun compound or adjective says what it holds ("a grassy area")
        if p.head in CONTAINERS and not named:
            held = [w for w in (*p.words[p.adjectives:-1], *p.modifiers) if not self._is_colour(w)]
            inner = self._first([Phrase(words=(w,)) for w in held], rank, depth)
            if inner is not None:
                return _as(inner, "container")
        # a painting, a statue, a drawing "of" something depicts it: the region is the depiction, which the "of"
        # object is no whole of ("a statue of a man" is no part of a man)
        if c is None and wholes and p.head not in VIEWS and self._depicts(noun):
            return Decision(None, None, noun, "depiction", reason=f"a {noun} depicts what it is of without being it, "
                            "and no class relates to it")
        # parts attached to their whole by WordNet's part-whole relations; an unknown noun "of" a whole. Where the
        # lexicon lists the whole's parts and a class's own name is not among them (nor a kind of one), that
        # class keeps it: the dataset labels it apart ("the window of a building" is PASCAL-Context's window).
        for prep, whole in decided:
            if not _stands_for_whole(whole) or lev == "exact" and self._apart(p, noun, whole.cls):
                continue
            r = rel.get(whole.cls)
            if r is not None and r.level == 3 and (prep == "of" or lev in (None, "hyponym", "meronym")):
                return Decision(whole.cls, "meronym", whole.noun, "part", frozenset({whole.cls}))
            if prep == "of" and lev == "meronym":  # a part of something, named with its whole
                return Decision(whole.cls, "meronym", whole.noun, "part", frozenset({whole.cls}))
            if prep == "of" and c is None and not self._served(noun, whole):
                return Decision(whole.cls, "meronym", whole.noun, "whole", frozenset({whole.cls}))
        # roles: a member doing what makes it another class
        if c is not None:
            for role in self.lexicon.roles:
                member = rel.get(role.members)
                if rank >= 2 and member is not None and member.level <= 2 and self._plays(p, role, rank, depth):
                    return Decision(role.cls, "hyponym", noun, "role", frozenset({role.cls}))
            return Decision(c, lev, noun, rule, self._relate(rel, rank))
        return None

    def _held_in(self, c: ClassInfo) -> list[tuple[int, str, frozenset[Any], frozenset[Any]]]:
        """(class, participle, containers, kinds) for a class named by a participle of a verb that means putting
        something in a container named like the verb, and a noun: "potted plant" (WordNet: to pot is to plant in
        a pot, its noun a flowerpot) is a plant in a pot. The kinds are the noun's senses above the class's own
        (a houseplant is a plant, not a factory), all its physical senses where WordNet lacks the class."""
        for name in c.names:
            words = name.split()
            verb = self.wn.morphy(words[0], self.wn.VERB) if len(words) == 2 and words[0].endswith("ed") else None
            if not verb or verb == words[0]:
                continue
            containers = frozenset(d.synset() for v in self.wn.synsets(verb, pos=self.wn.VERB) for lem in v.lemmas()
                                   if lem.name() == verb for d in lem.derivationally_related_forms()
                                   if d.name() == verb and self._container in _bfs(d.synset(), _up))
            own = {a for s in self._class_senses(c) for a in _bfs(s, _up)}
            physical = [s for s in self._senses(words[1]) if s.lexname() in _PHYSICAL]
            kinds = frozenset(s for s in physical if s in own) or frozenset(physical)
            if containers and kinds:
                return [(c.index, words[0], containers, kinds)]
        return []

    def _in_container(self, p: Phrase, noun: str, rank: int) -> Decision | None:
        """A phrase that a class named "<participle> <noun>" names by what it means: a kind of the noun that is
        so qualified ("a potted fern") or in such a container ("a cactus in a clay pot"), or the container with
        one in it ("a pot of geraniums", "a pot with a fern in it")."""
        if rank < 2 or not self._participles:
            return None
        for cls, participle, containers, kinds in self._participles:
            if self._best(self.relations(noun), rank)[0] == cls:
                continue  # named as it is ("a plant in a pot" in VOC, where a plant is a potted plant)
            if self._kind_of(noun, kinds):
                inside = p.attached_by("in", "inside", "within")
                if participle in (*p.qualifiers, *p.words[:-1]) or any(self._holds(q.head, containers) for q in inside):
                    return Decision(cls, "hyponym", noun, "name", frozenset({cls}))
            elif self._holds(p.head, containers) and any(self._kind_of(q.head, kinds)
                                                          for q in p.attached_by("of", "with")):
                return Decision(cls, "hyponym", p.head, "name", frozenset({cls}))
        return None

    def _kind_of(self, noun: str, kinds: frozenset[Any]) -> bool:
        return any(kinds & set(_bfs(s, _up)) for _, s in self._noun_senses(noun))

    def _holds(self, noun: str, containers: frozenset[Any]) -> bool:
        """Whether any sense of a noun is one of the containers or a kind of one ("pot", "flowerpot")."""
        return any(containers & set(_bfs(s, _up)) for s in self._senses(noun))

    def _depicted(self, p: Phrase, noun: str, rank: int) -> Decision | None:
        """A phrase that a word before its noun makes a depiction ("a toy airplane", "a stuffed dog"): the class
        of what it then is (COCO's teddy bear for a stuffed toy), else none. None where no such word qualifies
        it, where the noun's name includes the word ("toy poodle", PASCAL-Context's "toy car"), or where the noun
        names nothing such words depict."""
        named = set(noun.split())
        word = next((w for w in (*p.qualifiers, *p.words[:-1]) if w in DEPICTING and w not in named), None)
        if word is None or not self._depictable(noun, animate_only=word in _SOFT):
            return None
        if word == "stuffed" and self._fare(noun):  # a dish (or a mounted trophy), read as the other rules read it
            return None
        made = DEPICTING[word]
        rel = self.relations(made)
        c, lev = self._best(rel, rank)
        if c is not None:
            return Decision(c, lev, made, "depiction", self._relate(rel, rank))
        return Decision(None, None, made, "depiction", reason=f"{word!r} makes the {noun} a depiction of one, and no "
                        f"class relates to {made!r}")

    def _depictable(self, noun: str, animate_only: bool) -> bool:
        """Whether a noun names an animal or a person, or (not `animate_only`) a vehicle: what toys and models
        depict."""
        for _, s in self._noun_senses(noun):
            if s.lexname() in ("noun.animal", "noun.person") or not animate_only and self._conveyance in _bfs(s, _up):
                return True
        return False

    def _fare(self, noun: str) -> bool:
        """Whether a stuffed one is more likely a dish than a soft toy: a bird or a fish that WordNet also knows
        as food ("a stuffed turkey", "stuffed trout"); a stuffed dog or rabbit is read as the toy."""
        senses = self._senses(noun)
        return any(s.lexname() == "noun.food" for s in senses) and any(
            s.lexname() == "noun.animal" and ({self._bird, self._fish} & set(_bfs(s, _up))) for s in senses)

    def _shown(self, p: Phrase, noun: str, rank: int, depth: int) -> Decision | None:
        """What a display shows is the display's region, as a mark is its surface's: a programme, a game or any
        other doing on a television or a screen ("a football game on the television"), and anything on a screen,
        a display's face ("a man on a tv screen"; a cat on a television may sit on top of it)."""
        if rank < 3:
            return None
        senses = self._senses(noun)
        doing = bool(senses) and senses[0].lexname() not in _PHYSICAL  # its commonest sense: "game" is a contest
        for q in p.attached_by("on"):
            kinds = {a for _, s in self._noun_senses(self._name(q, rank)[0]) for a in _bfs(s, _up)}
            if self._display in kinds or doing and self._receiver in kinds:
                d = self._phrase(q, rank, depth + 1)
                if d is not None and d.cls is not None:
                    return Decision(d.cls, "meronym", d.noun, "surface", frozenset({d.cls}))
        return None

    def _served(self, dish: str, held: Decision) -> bool:
        """Whether what a dish holds is food the whole's class is not ("a plate of chicken": chicken's food
        sense, not the bird; a plate of spaghetti is still COCO's food)."""
        if not any(self._tableware in _bfs(s, _up) for _, s in self._noun_senses(dish)):
            return False
        food = [(i, s) for i, s in self._noun_senses(held.noun) if s.lexname() == "noun.food"]
        if not food:
            return False
        rel: dict[int, Relation] = {}
        for i, s in food:
            self._wordnet_relations(s, i, lambda c, r: rel.setdefault(c, r))
        return held.cls not in rel

    def _depicts(self, noun: str) -> bool:
        """Whether every common sense of a noun is a work of art or a representation ("painting", "statue",
        "drawing", "figurine"; not "model", also a person who poses)."""
        senses = self._noun_senses(noun)
        return bool(senses) and all(self._renderings & set(_bfs(s, _up)) for _, s in senses)

    def _apart(self, p: Phrase, noun: str, whole: int) -> bool:
        listed = self.lexicon.parts.get(whole)
        return bool(listed) and not (noun in listed or p.head in listed or self._is_kind(noun, listed))

    def _first(self, phrases: Sequence[Phrase], rank: int, depth: int) -> Decision | None:
        for q in phrases:
            d = self._phrase(q, rank, depth + 1)
            if d is not None and d.cls is not None:
                return d
        return None

    def _plays(self, p: Phrase, role: Role, rank: int, depth: int) -> bool:
        """Whether a phrase is on one of the role's vehicles: attached to it by one of the role's prepositions
        ("a man on a bike", "a man standing on a skateboard"), or the object of one of its verbs ("a woman
        riding a motorcycle"); a verb's other prepositions ("sitting beside her bicycle") do not count."""
        objects = [q for prep, q in p.attached if prep in role.preps]
        objects += [q for v in p.verbs for prep, q in v.objects
                    if prep in role.preps or prep == "obj" and v.lemma in role.verbs]
        for q in objects:
            if q.head in role.vehicle_words or any(t in role.vehicle_words for t in q.tails()):
                return True
            d = self._phrase(q, rank, depth + 1)
            if d is not None and d.cls in role.vehicles:
                return True
        return False


def _stands_for_whole(d: Decision | None) -> bool:
    """Whether a decision can stand for a whole: it has a class, and not only because its own noun is a
    part of that class ("the floor of the living room": a room is part of a building, and names where the
    floor is, not what it belongs to)."""
    return d is not None and d.cls is not None and not (d.level == "meronym" and d.rule in ("head", "name"))


def _as(d: Decision, rule: str) -> Decision:
    return Decision(d.cls, d.level, d.noun, rule, d.related, d.reason)


@dataclass(kw_only=True)  # keyword-only: its fields sit beside the other mappers' in the evaluation section
class LexicalMapperConfig:
    """The lexical mapper's settings (in a config file: the `evaluation` section)."""

    # Lexical mapping: the highest level accepted (exact, synonym, hyponym, meronym; cumulative).
    lexical_level: str = "meronym"
    # Lexical mapping aware of the ground truth: a noun related to a pixel's true class counts as that class.
    gt_aware: bool = False
    # Lexical mapping: a lexicon file for the dataset's classes (names, parts, left-out and rare words, roles; the
    # format in selfseg/evaluate/mappers/lexicon.py), in place of the one shipped with the dataset (null: that one).
    lexicon: str | None = None

    def __post_init__(self) -> None:
        check(self.lexical_level in LEVELS, "lexical_level", choices(LEVELS), self.lexical_level)
        check(self.lexicon is None or (isinstance(self.lexicon, str) and bool(self.lexicon.strip())), "lexicon",
              "a lexicon file's path or null", self.lexicon)


def chosen_lexicon(config: LexicalMapperConfig, classes: Sequence[ClassInfo],
                   shipped: Lexicon | None) -> Lexicon | None:
    """The block's own lexicon file, read against the classes (every class it names must be one), or the
    dataset's shipped lexicon."""
    if config.lexicon:
        return Lexicon.load(config.lexicon, classes, strict=True)
    return shipped


@MAPPERS.register("lexical", config=LexicalMapperConfig, section="evaluation")
def lexical(config: LexicalMapperConfig, models: Any, *, classes: Sequence[ClassInfo], background: int | None = None,
            spacy_pipeline: str = "auto", lexicon: Lexicon | None = None, **_: Any) -> LexicalMapper:
    """The mapper of a config block into a dataset's classes, with the dataset's lexicon (WordNet and spaCy:
    no checkpoint, no device)."""
    return LexicalMapper(classes, level=config.lexical_level, background=background, spacy_pipeline=spacy_pipeline,
                         lexicon=chosen_lexicon(config, classes, lexicon))
