"""Helpers the label tests share."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def spanning_length():
    """groups of (N, 2) points -> the length of a minimum spanning tree over the groups, each pair of groups
    linked by their closest points (Euclidean), compared pair by pair: the brute force the outline code's
    triangulation must match."""
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial.distance import cdist

    def length(groups: list[np.ndarray]) -> float:
        count = len(groups)
        dist = np.zeros((count, count))
        for i in range(count):
            for j in range(i + 1, count):
                dist[i, j] = cdist(groups[i], groups[j]).min() + 1.0  # +1: a zero would read as no link
        return float(minimum_spanning_tree(dist).sum()) - (count - 1)

    return length
