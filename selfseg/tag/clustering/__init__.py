"""The BCC clustering chain: k-means ensemble -> Hungarian alignment -> votes -> CRF -> mode filter."""
from .align import align_runs, contiguous, match_cost, vote_distribution
from .crf import crf_mean_field
from .ensemble import ClusterMaps, ensemble_cluster, sincos_2d
from .filters import mode_filter, mode_filter_once
from .kmeans import KMeansResult, kmeans

__all__ = [
    "ClusterMaps", "KMeansResult", "align_runs", "contiguous", "crf_mean_field", "ensemble_cluster", "kmeans",
    "match_cost", "mode_filter", "mode_filter_once", "sincos_2d", "vote_distribution",
]
