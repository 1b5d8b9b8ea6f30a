"""Tag clean-up before locating: merge WordNet synonyms; keep the specific tag over its hypernym.

Each tag is read in its first WordNet noun sense that is not a proper name ("crane" is not Stephen Crane). A
person word is dropped beside another tag only when every near reading of that tag is a person below it:
WordNet lists the person who toasts before the toaster and the proctor before the monitor, and a toaster or
a monitor beside a person must not cost the image its person.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..resources import load_wordnet

# A tag's senses looked at (its first and the next two) when a person word would be dropped beside it.
_NEAR = 3


@dataclass(frozen=True)
class Merge:
    """`dropped` was folded into `kept`. reason: "synonym" (the same noun sense, or the same word spelled
    otherwise) or "hypernym" (`dropped` names a more general kind of `kept`, e.g. animal -> dog)."""

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


def _above(sense: Any) -> set[Any]:
    return set(sense.closure(lambda x: x.hypernyms()))


def clean_tags(tags: Sequence[str], synonyms: bool = True, hypernyms: bool = True,
               wordnet: Any = None, keep: Collection[str] = ()) -> tuple[list[str], list[Merge]]:
    """Return (kept tags in their original order, merges). Tags are compared in lower case with single spaces
    ("Dog" is "dog"; a `keep` word's spelling wins, else the first); tags WordNet does not know are kept.

    Synonyms: a tag read in the same sense as an earlier tag is folded into it.
    Hypernyms: a tag whose reading lies on another tag's hypernym path is dropped in favour of the more
    specific tag; a person word only when every near sense of the other tag is a person below it ("person"
    goes beside "man", stays beside "toaster"; "woman" stays beside "girl", who may be a child).
    `keep`: tags never dropped (a user's own words); another tag of the same sense is folded into them.
    """
    wn = wordnet or load_wordnet()
    words = [t for t in dict.fromkeys(t for t in tags if t) if _key(t)]
    kept_spelling = {_key(k): k for k in keep if isinstance(k, str) and _key(k)}
    first: dict[str, str] = {}
    for t in words:
        first.setdefault(_key(t), kept_spelling.get(_key(t), t))
    merges = [Merge(kept=first[_key(t)], dropped=t, reason="synonym") for t in words if first[_key(t)] != t]
    order = list(dict.fromkeys(_key(t) for t in words))
    kept_words = set(kept_spelling)
    senses = {k: _senses(wn, k) for k in order}
    sense = {k: senses[k][0] if senses[k] else None for k in order}
    kept: list[str] = []
    if synonyms:
        seen: dict[Any, str] = {}
        for k in order:  # a kept word's sense is claimed first, wherever the word stands
            if k in kept_words and sense[k] is not None:
                seen.setdefault(sense[k], k)
        for k in order:
            s = sense[k]
            if k not in kept_words and s is not None and s in seen:
                merges.append(Merge(kept=first[seen[s]], dropped=first[k], reason="synonym"))
                continue
            if s is not None:
                seen.setdefault(s, k)
            kept.append(k)
    else:
        kept = order
    if hypernyms:
        ancestors = {k: _above(sense[k]) if sense[k] is not None else set() for k in kept}
        person = wn.synset("person.n.01")  # filed under noun.Tops, its kinds under noun.person

        def below(general: str, specific: str) -> bool:
            g = sense[general]
            if g not in ancestors[specific]:
                return False
            if g != person and g.lexname() != "noun.person":
                return True
            return all(s.lexname() == "noun.person" and g in _above(s) for s in senses[specific][:_NEAR])

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
