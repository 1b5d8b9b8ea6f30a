"""Several taggers on the same images, their tags merged with provenance: who found what.

`tagger: union` with `union: [bcc, vlm]` runs every listed tagger on each batch (each batches its own model
calls) and merges their tags. Each merged `NounSupport.found_by` names the taggers that found the tag, in
the `union` order; tags found by more taggers come first, then in order of first appearance. Each part's
own result stays available in `TagResult.parts` (and in the JSON), and the BCC cluster map, if a part has
one, is the union's cluster map, so `segment.segmenter: bcc_clusters` still works.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import check
from ..io import LoadedImage
from .base import TAGGERS
from .result import NounSupport, TagResult
from .vocabulary import word_key


def merge_results(parts: dict[str, TagResult]) -> TagResult:
    """One image's part results -> the union's result (see the module docstring for the rules)."""
    first = next(iter(parts.values()))
    merged: dict[str, dict[str, Any]] = {}
    for name, res in parts.items():
        for n in res.nouns:
            key = word_key(n.noun)  # "Dog" and "dog" are one tag; the first spelling wins
            m = merged.setdefault(key, {"noun": n.noun, "support": 0, "cycles": 0, "clusters": set(),
                                        "found_by": [], "order": len(merged)})
            m["support"] += n.support
            m["cycles"] = max(m["cycles"], n.cycles)
            m["clusters"].update(n.clusters)
            if name not in m["found_by"]:
                m["found_by"].append(name)
    ranked = sorted(merged.values(), key=lambda m: (-len(m["found_by"]), m["order"]))
    nouns = [NounSupport(noun=m["noun"], support=m["support"], cycles=m["cycles"], clusters=sorted(m["clusters"]),
                         found_by=m["found_by"]) for m in ranked]
    with_grid = next((r for r in parts.values() if r.cluster_grid is not None), None)
    return TagResult(
        source=first.source, image_size=first.image_size, tagger="union", nouns=nouns,
        model="; ".join(f"{k}: {r.model}" for k, r in parts.items() if r.model),
        clusters=with_grid.clusters if with_grid else [],
        cycles_run=max(r.cycles_run for r in parts.values()),
        cluster_grid=with_grid.cluster_grid if with_grid else None,
        intermediates=with_grid.intermediates if with_grid else None,
        timings={f"{k}/{stage}": t for k, r in parts.items() for stage, t in r.timings.items()},
        batch_size=first.batch_size, meaningless=any(r.meaningless for r in parts.values()),
        notes=[f"{k}: {note}" for k, r in parts.items() for note in r.notes],
        replies=[dict(rep, tagger=k) for k, r in parts.items() for rep in r.replies],
        parts=dict(parts),
    )


@dataclass
class UnionConfig:
    """The union tagger's settings: the config file's top-level `union` list, the taggers it runs."""

    union: list[str]

    def __post_init__(self) -> None:
        check(bool(self.union) and "union" not in self.union and len(set(self.union)) == len(self.union), "union",
              "a non-empty list of distinct tagger names other than 'union'", self.union)


@TAGGERS.register("union", config=UnionConfig, parts=lambda block: block.union)
class UnionTagger:
    """parts: the built taggers, by name, in the `union` order (the registry builds them)."""

    name = "union"

    def __init__(self, config: UnionConfig | None, models: Any = None, parts: dict[str, Any] | None = None) -> None:
        self.taggers = dict(parts or {})
        if not self.taggers:
            raise ValueError("the union tagger needs its parts: build it with selfseg.tag.build_tagger")

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        if not images:
            return []
        per_tagger = {name: t.tag_batch(images) for name, t in self.taggers.items()}
        return [merge_results({name: res[i] for name, res in per_tagger.items()}) for i in range(len(images))]
