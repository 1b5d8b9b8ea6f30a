"""Tag clean-up before locating: merge WordNet synonyms; keep the specific tag over its hypernym."""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..resources import load_wordnet


@dataclass(frozen=True)
class Merge:
    """`dropped` was folded into `kept`. reason: "synonym" (same first noun sense) or "hypernym"
    (`dropped` names a more general kind of `kept`, e.g. animal -> dog)."""

    kept: str
    dropped: str
    reason: str


def _first_sense(wn: Any, tag: str) -> Any:
    # The first (most frequent) noun sense only: every sense would merge "bank" with "depository", etc.
    s = wn.synsets(tag.replace(" ", "_"), pos=wn.NOUN)
    return s[0] if s else None


def clean_tags(tags: Sequence[str], synonyms: bool = True, hypernyms: bool = True,
               wordnet: Any = None, keep: Collection[str] = ()) -> tuple[list[str], list[Merge]]:
    """Return (kept tags in their original order, merges). Tags WordNet does not know are kept as they are.

    Synonyms: a tag whose first noun sense equals an earlier tag's is folded into the earlier one.
    Hypernyms: a tag whose first sense lies on another tag's hypernym path (first sense, instance
    hypernyms included) is dropped in favour of the more specific tag.
    `keep`: tags never dropped (a user's own words); another tag of the same sense is folded into them.
    """
    wn = wordnet or load_wordnet()
    tags = list(dict.fromkeys(t for t in tags if t))
    sense = {t: _first_sense(wn, t) for t in tags}
    merges: list[Merge] = []
    kept: list[str] = []
    if synonyms:
        seen: dict[Any, str] = {}
        for t in tags:  # a kept word's sense is claimed first, wherever the word stands
            if t in keep and sense[t] is not None:
                seen.setdefault(sense[t], t)
        for t in tags:
            s = sense[t]
            if t not in keep and s is not None and s in seen:
                merges.append(Merge(kept=seen[s], dropped=t, reason="synonym"))
                continue
            if s is not None:
                seen.setdefault(s, t)
            kept.append(t)
    else:
        kept = tags
    if hypernyms:
        ancestors = {
            t: set(sense[t].closure(lambda x: x.hypernyms() + x.instance_hypernyms())) if sense[t] else set()
            for t in kept
        }
        general: dict[str, str] = {}
        for t in kept:
            if sense[t] is None or t in keep:
                continue
            # the most specific tag below t wins (deepest first), so the note names a real descendant
            below = [u for u in kept if u != t and sense[t] in ancestors[u]]
            if below:
                general[t] = max(below, key=lambda u: sense[u].max_depth())
        merges += [Merge(kept=v, dropped=k, reason="hypernym") for k, v in general.items()]
        kept = [t for t in kept if t not in general]
    return kept, merges
