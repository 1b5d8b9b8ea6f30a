"""How often a label mapper agrees with a labelled set of descriptions, overall and per group.

A labelled set is a tab-separated file: style, description, label (a class's first name, or `-` for none),
category; `#` lines are comments (the development set in the tests is one). Agreement is exact: the mapper's
class, or its none, equals the label.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import DatasetError
from .base import LabelMapper, LabelMatch

NONE_LABEL = "-"


@dataclass(frozen=True)
class Labelled:
    style: str
    description: str
    label: str | None
    category: str


def read_labelled(path: str | Path) -> list[Labelled]:
    """The rows of a labelled set; a malformed row is an error naming its line."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 4:
            raise DatasetError(f"{path}:{n}: expected 4 tab-separated columns (style, description, label, "
                               f"category), got {len(cols)}")
        style, text, label, category = (c.strip() for c in cols)
        rows.append(Labelled(style, text, None if label == NONE_LABEL else label, category))
    return rows


def within(rows: Sequence[Labelled], class_names: Sequence[str]) -> list[Labelled]:
    """A labelled set read against a variant of its dataset with fewer classes (VOC without background, COCO's
    80 things): a label the variant lacks becomes none."""
    keep = set(class_names)
    return [r if r.label is None or r.label in keep else Labelled(r.style, r.description, None, r.category)
            for r in rows]


@dataclass(frozen=True)
class Agreement:
    """Agreement overall and per group (per category, style and deciding rule), with the row counts."""

    total: float
    n: int
    groups: dict[str, tuple[float, int]]
    misses: list[tuple[Labelled, LabelMatch]]

    def table(self) -> str:
        lines = [f"{'all':24s} {self.total:6.1%} {self.n:5d}"]
        lines += [f"{k:24s} {v:6.1%} {c:5d}" for k, (v, c) in sorted(self.groups.items())]
        return "\n".join(lines)


def agreement_by_threshold(rows: Sequence[Labelled], filled: Sequence[LabelMatch],
                           thresholds: Sequence[float]) -> list[float]:
    """Agreement of a hybrid mapper at each threshold, from one run that filled every gap (threshold -1):
    an embedding fill counts only where its cosine reaches the threshold, else the row stays none."""
    return [sum((m.cls if m.rule != "embedding" or m.score >= t else None) == r.label
                for r, m in zip(rows, filled)) / len(rows) for t in thresholds]


def agreement(mapper: LabelMapper, rows: Sequence[Labelled], level: str | None = None) -> Agreement:
    matches = mapper.map([r.description for r in rows], level) if rows else []
    hits: dict[str, list[bool]] = defaultdict(list)
    misses = []
    for r, m in zip(rows, matches):
        ok = m.cls == r.label
        for key in (f"category:{r.category}", f"style:{r.style}", f"rule:{m.rule or mapper.name}"):
            hits[key].append(ok)
        if not ok:
            misses.append((r, m))
    n = len(rows)
    total = (n - len(misses)) / n if n else 0.0
    return Agreement(total, n, {k: (sum(v) / len(v), len(v)) for k, v in hits.items()}, misses)
