"""Label mappers (free-form description -> dataset class): `lexical` (reads the description; WordNet levels
and the dataset's lexicon), `embedding` (sentence-transformers cosine), `hybrid` (lexical, then embedding
where nothing relates), `llm` (LOVE). Build one with `build_mapper`; each follows `LabelMapper`."""
from __future__ import annotations

from typing import Any

from ...registry import Registry
from . import embedding, hybrid, lexical, llm  # noqa: F401  (importing registers them; all import light)
from .base import MAPPERS, LabelMapper, LabelMatch, require_relations

#: The registered mapping methods (the registry is the only list of them).
METHODS = tuple(MAPPERS.names())


def mappers() -> Registry[LabelMapper]:
    """The label mapper registry, every built-in mapper registered."""
    return MAPPERS


def build_mapper(method: str, dataset: str, classes: Any = None, **options: Any) -> LabelMapper:
    """A mapper for a dataset's classes (the shipped list unless `classes` is given), from keyword options
    (the `map-labels` flags): level, lexicon (lexical); model, threshold (embedding); level, model, threshold,
    lexicon (hybrid); model, batch_size, template,
    max_new_tokens (llm) fill the mapper's config block; device, cache_dir, local_files_only the model
    section; cache, dtype, spacy_pipeline, llm go to the factory as they are. An option left None (or an
    empty template) takes the block's default."""
    from ...errors import ConfigError
    from ...models.spec import ModelConfig
    from .embedding import EmbeddingMapperConfig
    from .hybrid import HybridBlock
    from .lexical import LexicalMapperConfig
    from .llm import LlmMapperConfig

    fields = {"lexical": (LexicalMapperConfig, {"level": "lexical_level", "lexicon": "lexicon"}),
              "embedding": (EmbeddingMapperConfig, {"model": "embedding_model", "threshold": "embedding_threshold"}),
              "hybrid": (HybridBlock, {"level": "lexical_level", "model": "embedding_model",
                                       "threshold": "hybrid_threshold", "lexicon": "lexicon"}),
              "llm": (LlmMapperConfig, {"model": "llm_model", "batch_size": "llm_batch_size",
                                        "max_new_tokens": "llm_max_new_tokens", "template": "llm_prompt"})}
    comp = mappers().component(method)  # an unknown method: the registry's one-line error
    block_cls, names = fields.get(method, (comp.config, {}))
    given = {names[k]: options.pop(k) for k in list(options) if k in names and options[k] not in (None, "")}
    try:
        block = block_cls(**given) if block_cls is not None else None
    except ConfigError as exc:  # name the option the caller gave, not the config field behind it
        message = str(exc)
        for option, name in names.items():
            message = message.replace(name, option)
        raise ConfigError(message) from None
    model_keys = {k: options.pop(k) for k in ("device", "cache_dir", "local_files_only") if k in options}
    models = ModelConfig(**{k: v for k, v in model_keys.items() if v is not None})
    for k in ("level", "model", "threshold", "batch_size", "max_new_tokens", "template", "lexicon"):
        options.pop(k, None)  # options of another mapper (the CLI passes every flag)
    return build_mapper_from_block(method, block, models, dataset, classes, **options)


def build_mapper_from_block(method: str, block: Any, models: Any, dataset: str, classes: Any = None,
                            **run: Any) -> LabelMapper:
    """The registered factory of `method`: its block (or a whole evaluation section, which is every mapper's
    block), the shared model section, the dataset it maps into (its classes, background and prompt names)
    and what the run adds (cache, dtype, spacy_pipeline, llm; the dataset's shipped lexicon as `lexicon`). A
    dataset that folds another's classes maps into those, then folds (mappers/folded.py)."""
    from ..datasets import class_list, dataset_spec
    from .lexicon import Lexicon, shipped_lexicon

    spec = dataset_spec(dataset)
    # the shipped list, given or not (a benchmark passes the list its dataset loaded)
    shipped = classes is None or bool(spec.class_file) and _same(classes, class_list(dataset))
    if spec.folds and shipped:
        from .folded import FoldedMapper

        inner = build_mapper_from_block(method, block, models, spec.folds, **run)
        return FoldedMapper(inner, class_list(spec.folds), class_list(dataset), (spec.folds, dataset))
    if shipped:
        classes = class_list(dataset)
    path = shipped_lexicon(spec.class_file)
    if path is not None and "lexicon" not in run:  # over a user's class list, entries for absent classes drop
        run["lexicon"] = Lexicon.load(path, classes, strict=shipped)
    if method == "llm":
        run.setdefault("list_classes", spec.llm_lists_classes)
        run.setdefault("dataset_name", spec.llm_name or spec.title)
    return mappers().component(method).factory(block, models, classes=classes, background=spec.background, **run)


def build_run_mapper(config: Any, method: str, block: Any, dataset: str, classes: Any = None,
                     **run: Any) -> LabelMapper:
    """`build_mapper_from_block` with what a run of `config` adds: its model section, the spaCy pipeline of
    its nouns, and its chat models' dtype (vlm.dtype: "auto" is bfloat16 on a GPU, where a 7B model in float32
    needs 28 GB)."""
    return build_mapper_from_block(method, block, config.model, dataset, classes,
                                   spacy_pipeline=config.nouns.spacy_pipeline, dtype=config.vlm.dtype, **run)


def check_mapper_model(mapper: LabelMapper) -> None:
    """Raise now the one-line error that loading `mapper`'s model would raise when it first maps (mappers
    with a model load it lazily): a run checks this before hours of predictions, not after them."""
    check = getattr(mapper, "check_model", None)
    if check is not None:
        check()


def _same(a: Any, b: Any) -> bool:
    return [tuple(c.names) for c in a] == [tuple(c.names) for c in b]


__all__ = ["MAPPERS", "METHODS", "LabelMatch", "LabelMapper", "build_mapper", "build_mapper_from_block",
           "build_run_mapper", "check_mapper_model", "mappers", "require_relations"]
