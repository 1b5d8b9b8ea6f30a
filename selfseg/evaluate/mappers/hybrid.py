"""Hybrid mapping: the lexical mapper first, the sentence-embedding nearest class only where the description
relates to no class at all, and only at the loosest level (meronym): the embedding relates nothing by a
lexical level.

The lexical mapper's deliberate nones stay none (`lexical.DELIBERATE_NONE`): a class the dataset leaves out
or a part of one, a vague noun, a mark on no named surface. Everywhere else a description the lexical mapper
cannot relate ("a fixture with crystal arms") goes to the embedding mapper, which answers only at or above
`hybrid_threshold`. The default, 0.85, has the best mean agreement over the development files of the tests
(`benchmarks/bench_label_mapping.py --sweep` prints the curve), tied with filling nothing: with a lexicon per
dataset the lexical mapper's nones are mostly right, and lower thresholds fill as many rows wrong as right.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ...errors import check
from ..datasets import ClassInfo
from .base import MAPPERS, LabelMatch
from .embedding import EmbeddingMapper, EmbeddingMapperConfig
from .lexical import DELIBERATE_NONE, LEVELS, LexicalMapper, LexicalMapperConfig, chosen_lexicon, level_rank
from .lexicon import Lexicon


class HybridMapper:
    name = "hybrid"
    levels = LEVELS
    relates = True

    def __init__(self, lexical: LexicalMapper, embedding: EmbeddingMapper, threshold: float) -> None:
        self.lexical = lexical
        self.embedding = embedding
        self.threshold = threshold

    @property
    def level(self) -> str:
        return self.lexical.level

    def check_model(self) -> None:
        self.embedding.check_model()

    def _gaps(self, matches: Sequence[LabelMatch]) -> list[int]:
        return [i for i, m in enumerate(matches) if m.index is None and m.rule not in DELIBERATE_NONE
                and m.description.strip() and m.noun]

    def map(self, descriptions: Sequence[str], level: str | None = None) -> list[LabelMatch]:
        out = self.lexical.map(descriptions, level)
        rank = self.lexical.rank if level is None else level_rank(level)
        # the embedding relates nothing by a lexical level: it fills gaps only at the loosest level
        gaps = self._gaps(out) if rank == len(LEVELS) - 1 else []
        if gaps:  # one batched embedding call for every gap
            for i, e in zip(gaps, self.embedding.map([out[i].description for i in gaps])):
                if e.score is not None and e.score >= self.threshold:
                    out[i] = replace(out[i], cls=e.cls, index=e.index, level=LEVELS[-1], rule="embedding",
                                     score=e.score, reason=None)
                else:
                    out[i] = replace(out[i], score=e.score)
        return out

    def related(self, noun: str, level: str | None = None) -> set[int]:
        """The lexical relations; for a description with none, the embedding's class if it is close enough."""
        rank = self.lexical.rank if level is None else level_rank(level)
        rel = self.lexical.related(noun, LEVELS[rank])
        if rel or rank < len(LEVELS) - 1:
            return rel
        m = self.map([noun], LEVELS[rank])[0]
        return {m.index} if m.index is not None else set()


@dataclass(kw_only=True)  # keyword-only: its fields sit beside the other mappers' in the evaluation section
class HybridMapperConfig:
    """The hybrid mapper's own setting (it also reads the lexical level and the embedding model)."""

    # Hybrid mapping: cosine at or above which the embedding's nearest class fills a description the lexical
    # mapper relates to nothing (0.85: the best mean agreement on the development set in the tests).
    hybrid_threshold: float = 0.85

    def __post_init__(self) -> None:
        check(-1 <= self.hybrid_threshold <= 1, "hybrid_threshold", "a cosine in [-1, 1]", self.hybrid_threshold)


@dataclass(kw_only=True)
class HybridBlock(HybridMapperConfig, EmbeddingMapperConfig, LexicalMapperConfig):
    """Everything the hybrid mapper reads (an evaluation section holds all of it; `build_mapper` builds this)."""


@MAPPERS.register("hybrid", config=HybridMapperConfig, section="evaluation",
                  checkpoints=lambda ev, models: [ev.embedding_model])
def hybrid(config: HybridBlock, models: Any, *, classes: Sequence[ClassInfo], background: int | None = None,
           spacy_pipeline: str = "auto", lexicon: Lexicon | None = None, **_: Any) -> HybridMapper:
    """The lexical mapper with the dataset's lexicon, and the embedding mapper with the model section's device
    and cache."""
    lexical = LexicalMapper(classes, level=config.lexical_level, background=background,
                            spacy_pipeline=spacy_pipeline, lexicon=chosen_lexicon(config, classes, lexicon))
    embedding = EmbeddingMapper(classes, background=background, model=config.embedding_model,
                                threshold=config.hybrid_threshold, device=models.device, cache_dir=models.cache_dir,
                                local_files_only=models.local_files_only)
    return HybridMapper(lexical, embedding, config.hybrid_threshold)
