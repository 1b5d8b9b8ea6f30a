"""Tag clean-up before locating: merge WordNet synonyms; keep the specific tag over its hypernym.

Each tag is read in one WordNet noun sense, its first, with two corrections for what image tags name:
proper names are skipped ("crane" is not Stephen Crane), and a word whose first sense is a person's role but
one of its next senses a thing is read as the thing ("toaster", "speaker", "pitcher", "hot dog": WordNet
lists the person who toasts first). Without them a person beside a toaster would be dropped as its hypernym.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..resources import load_wordnet

# Senses looked at beyond the first: a role's thing, a word's other readings (bike: motorcycle, bicycle).
_NEAR = 3
_THINGS = {"noun.artifact", "noun.food", "noun.animal", "noun.plant", "noun.object"}


@dataclass(frozen=True)
class Merge:
    """`dropped` was folded into `kept`. reason: "synonym" (the same noun sense, or an ambiguous word read as
    the other tag's sense) or "hypernym" (`dropped` names a more general kind of `kept`, e.g. animal -> dog)."""

    kept: str
    dropped: str
    reason: str


def _key(tag: str) -> str:
    return " ".join(tag.lower().split())


def _senses(wn: Any, tag: str) -> list[Any]:
    """A tag's noun senses, proper names left out; a compound WordNet spells closed ("cell phone") too."""
    word = _key(tag).replace(" ", "_")
    found = [s for s in wn.synsets(word, pos=wn.NOUN) if not s.instance_hypernyms()]
    if not found and "_" in word:
        found = [s for s in wn.synsets(word.replace("_", ""), pos=wn.NOUN) if not s.instance_hypernyms()]
    return found


def _reading(senses: list[Any]) -> Any:
    """The sense a tag is read in: the first, unless that is a person's role and a near sense is a thing."""
    if not senses:
        return None
    if senses[0].lexname() == "noun.person":
        thing = next((s for s in senses[1:_NEAR] if s.lexname() in _THINGS), None)
        if thing is not None:
            return thing
    return senses[0]


def _above(wn_sense: Any) -> set[Any]:
    return set(wn_sense.closure(lambda x: x.hypernyms()))


def clean_tags(tags: Sequence[str], synonyms: bool = True, hypernyms: bool = True,
               wordnet: Any = None, keep: Collection[str] = ()) -> tuple[list[str], list[Merge]]:
    """Return (kept tags in their original order and spelling, merges). Tags are compared in lower case with
    single spaces ("Dog" is "dog"); tags WordNet does not know are kept as they are.

    Synonyms: a tag read in the same sense as an earlier tag is folded into it; then an ambiguous tag whose
    near senses hold exactly one other tag's reading is folded into that tag ("bike" beside "bicycle"; beside
    both "bicycle" and "motorcycle" it stays).
    Hypernyms: a tag whose reading lies on another tag's hypernym path is dropped in favour of the more
    specific tag. A person word is dropped only when every person reading of the other tag's near senses lies
    below it ("woman" stays beside "girl", which may be a child; "person" goes beside "man").
    `keep`: tags never dropped (a user's own words); another tag of the same sense is folded into them.
    """
    wn = wordnet or load_wordnet()
    first: dict[str, str] = {}
    for t in tags:
        if t and _key(t):
            first.setdefault(_key(t), t)
    merges = [Merge(kept=first[_key(t)], dropped=t, reason="synonym")
              for t in dict.fromkeys(t for t in tags if t and _key(t)) if first[_key(t)] != t]
    order = list(first)  # keys, first spelling's place
    kept_words = {_key(k) for k in keep if isinstance(k, str)}
    senses = {k: _senses(wn, k) for k in order}
    sense = {k: _reading(senses[k]) for k in order}
    kept: list[str] = []
    if synonyms:
        seen: dict[Any, str] = {}
        for k in order:  # a kept word's sense is claimed first, wherever the word stands
            if k in kept_words and sense[k] is not None:
                seen.setdefault(sense[k], k)
        for k in order:
            s = sense[k]
            if k not in kept_words and s is not None and s in seen and seen[s] != k:
                merges.append(Merge(kept=first[seen[s]], dropped=first[k], reason="synonym"))
                continue
            if s is not None:
                seen.setdefault(s, k)
            kept.append(k)
        read_as: dict[str, str] = {}
        for k in kept:
            if k in kept_words or sense[k] is None:
                continue
            near = set(senses[k][:_NEAR])
            others = [u for u in kept if u != k and u not in read_as and sense[u] in near and sense[u] != sense[k]]
            if len(others) == 1:
                read_as[k] = others[0]
        merges += [Merge(kept=first[u], dropped=first[k], reason="synonym") for k, u in read_as.items()]
        kept = [k for k in kept if k not in read_as]
    else:
        kept = order
    if hypernyms:
        ancestors = {k: _above(sense[k]) if sense[k] is not None else set() for k in kept}

        def below(general: str, specific: str) -> bool:
            g = sense[general]
            if g not in ancestors[specific]:
                return False
            if g.lexname() != "noun.person":
                return True
            people = [s for s in senses[specific][:_NEAR] if s.lexname() == "noun.person"]
            return all(g in _above(s) for s in people)

        general: dict[str, str] = {}
        for k in kept:
            if sense[k] is None or k in kept_words:
                continue
            # the most specific tag below k wins (deepest first), so the note names a real descendant
            under = [u for u in kept if u != k and below(k, u)]
            if under:
                general[k] = max(under, key=lambda u: sense[u].max_depth())
        merges += [Merge(kept=first[v], dropped=first[k], reason="hypernym") for k, v in general.items()]
        kept = [k for k in kept if k not in general]
    return [first[k] for k in kept], merges
