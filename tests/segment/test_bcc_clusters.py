from __future__ import annotations

import numpy as np

from selfseg.segment.bcc_clusters import cluster_names, segment_from_clusters
from selfseg.tag.result import ClusterCaptions, TagResult, rank_nouns


def _tags():
    grid = np.zeros((4, 4), dtype=np.int64)
    grid[:, 2:] = 1
    grid[3, :] = 2
    clusters = [
        ClusterCaptions(0, 6, ["a", "b"], [["dog", "grass"], ["dog"]]),
        ClusterCaptions(1, 6, ["c", "d"], [["grass"], ["sky", "grass"]]),
        ClusterCaptions(2, 4, ["e", "f"], [[], []]),  # nothing named: stays unlabelled
    ]
    return TagResult(source="p.jpg", image_size=(8, 12), nouns=rank_nouns(clusters), tagger="bcc",
                     clusters=clusters, cycles_run=2, cluster_grid=grid)


def test_each_cluster_named_by_its_own_most_frequent_noun():
    assert cluster_names(_tags()) == {0: "dog", 1: "grass"}


def test_cluster_segmentation():
    seg = segment_from_clusters(_tags())
    assert seg.classes == ["dog", "grass"] and seg.labels == ["dog", "grass"]
    assert seg.semantic.shape == (8, 12)
    assert (seg.semantic[:6, :6] == 1).all() and (seg.semantic[:6, 6:] == 2).all() and (seg.semantic[6:] == 0).all()
    assert seg.boxes[0].tolist() == [0, 0, 6, 6] and seg.scores.tolist() == [1.0, 1.0]
