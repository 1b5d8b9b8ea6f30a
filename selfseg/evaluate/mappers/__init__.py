"""Label mappers (free-form noun -> dataset class): `lexical` (WordNet levels), `embedding`
(sentence-transformers cosine), `llm` (LOVE). Build one with `build_mapper`; each follows `LabelMapper`."""
from __future__ import annotations

from typing import Any

from ...registry import Registry
from . import embedding, lexical, llm  # noqa: F401  (importing registers them; all three import light)
from .base import MAPPERS, LabelMapper, LabelMatch, require_relations

#: The registered mapping methods (the registry is the only list of them).
METHODS = tuple(MAPPERS.names())


def mappers() -> Registry[LabelMapper]:
    """The label mapper registry, every built-in mapper registered."""
    return MAPPERS


def build_mapper(method: str, dataset: str, classes: Any = None, **options: Any) -> LabelMapper:
    """A mapper for a dataset's classes (the shipped list unless `classes` is given). Options go to the
    mapper that uses them: level (lexical); model, threshold (embedding); model, batch_size, cache, template,
    dtype, max_new_tokens, cache_dir, local_files_only (llm); device (embedding, llm)."""
    from ..datasets import class_list, dataset_spec

    spec = dataset_spec(dataset)
    if classes is None:
        classes = class_list(dataset)
    if method == "llm":
        options.setdefault("list_classes", spec.llm_lists_classes)
        options.setdefault("dataset_name", spec.llm_name or spec.title)
    return MAPPERS.create(method, classes, background=spec.background, **options)


__all__ = ["MAPPERS", "METHODS", "LabelMatch", "LabelMapper", "build_mapper", "mappers", "require_relations"]
