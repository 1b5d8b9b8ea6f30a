"""Mapping into a benchmark that folds another's classes: VOC20 is VOC without its background, COCO-Object is
COCO panoptic with every stuff class folded into background. Their ground truth is the source's, relabelled, so
a description is mapped into the source's classes, with the source's lexicon and prompt, and the class is then
relabelled the same way. "a brick wall" is COCO's wall, hence COCO-Object's background, never the toilet that
WordNet's "room" sense of toilet would make it once no wall class is there to take it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..datasets import ClassInfo
from .base import LabelMapper, LabelMatch, normalize


class FoldedMapper:
    """`inner` maps into `source`'s classes; each of those becomes the class of `classes` with the same name,
    or none (the folded dataset's background where it has one). names: (source, folded) dataset names, for the
    reason of a none."""

    def __init__(self, inner: LabelMapper, source: Sequence[ClassInfo], classes: Sequence[ClassInfo],
                 names: tuple[str, str]) -> None:
        self.inner, self.names = inner, names  # (source dataset, folded dataset)
        self.name, self.levels, self.level, self.relates = inner.name, inner.levels, inner.level, inner.relates
        index = {normalize(c.name): c.index for c in classes}
        self.classes = list(classes)
        self._to = {c.index: index.get(normalize(c.name)) for c in source}

    def __getattr__(self, name: str) -> Any:  # what else the inner mapper offers (the LLM's `asked`, `prompt`)
        if name == "inner":  # not set yet (a copy being built): no recursion through it
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _fold(self, m: LabelMatch) -> LabelMatch:
        if m.index is None:
            return m
        k = self._to[m.index]
        if k is not None:
            return dataclasses.replace(m, cls=self.classes[k].name, index=k)
        # a class the folded dataset leaves out, as a lexicon's left-out word is: no level relates it to a class
        return dataclasses.replace(m, cls=None, index=None, level=None, rule=m.rule and "left out",
                                   reason=f"the {self.names[0]} class {m.cls!r}, which {self.names[1]} does not keep")

    def map(self, descriptions: Sequence[str], level: str | None = None) -> list[LabelMatch]:
        return [self._fold(m) for m in self.inner.map(descriptions, level)]

    def related(self, noun: str, level: str | None = None) -> set[int]:
        return {k for i in self.inner.related(noun, level) if (k := self._to[i]) is not None}
