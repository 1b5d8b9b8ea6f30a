"""Label mappers (free-form noun -> dataset class): `lexical` (WordNet levels), `embedding`
(sentence-transformers cosine), `llm` (LOVE). Build one with `build_mapper`."""
from __future__ import annotations

from typing import Any

from .base import MAPPERS, LabelMapper, LabelMatch

METHODS = ("lexical", "embedding", "llm")


def build_mapper(method: str, dataset: str, classes: Any = None, **options: Any) -> Any:
    """A mapper for a dataset's classes (the shipped list unless `classes` is given). Options go to the
    mapper that uses them: level (lexical); model, threshold (embedding); model, batch_size, cache, template,
    dtype, max_new_tokens, cache_dir, local_files_only (llm); device (embedding, llm)."""
    from ..datasets import class_list, dataset_spec
    from . import embedding, lexical, llm  # noqa: F401  (registration)

    spec = dataset_spec(dataset)
    if classes is None:
        classes = class_list(dataset)
    if method == "llm":
        options.setdefault("list_classes", spec.llm_lists_classes)
        options.setdefault("dataset_name", spec.llm_name or spec.title)
    return MAPPERS.create(method, classes, background=spec.background, **options)


__all__ = ["MAPPERS", "METHODS", "LabelMatch", "LabelMapper", "build_mapper"]
