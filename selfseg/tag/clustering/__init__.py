"""BCC clustering: k-means ensemble -> one map (Hungarian alignment and votes, or a co-association
consensus) -> CRF -> mode filter.

The names below load (with torch) on first use, so reading the chain's settings (`config.py`) does not.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "align_runs": "align", "contiguous": "align", "match_cost": "align", "vote_distribution": "align",
    "crf_mean_field": "crf", "ensemble_cluster": "ensemble", "sincos_2d": "ensemble",
    "ClusterMaps": "selfseg.tag.result",
    "mode_filter": "filters", "mode_filter_once": "filters",
    "KMeansResult": "lloyd", "kmeans": "lloyd", "kmeans_batch": "lloyd", "kmeans_each": "lloyd",
    "ClusteringConfig": "config",
    "Consensus": "consensus", "best_overlap": "consensus", "best_overlaps": "consensus", "coassociation": "consensus",
    "consensus_votes": "consensus", "lifetime_cut": "consensus", "DenseRuns": "consensus",
    "dense_runs": "consensus",
    "PlantedScene": "planted", "cmiou": "planted", "planted_scene": "planted",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        where = _LAZY[name]
        return getattr(importlib.import_module(where if "." in where else f"{__name__}.{where}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
