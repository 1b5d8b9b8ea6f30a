from __future__ import annotations

import numpy as np

from selfseg.segment.bcc_clusters import cluster_instances, cluster_names
from selfseg.segment.result import Segmentation
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
    found = cluster_instances(_tags())
    assert found.classes == ["dog", "grass"] and found.labels == ["dog", "grass"]
    seg = Segmentation((8, 12), found.masks, found.boxes, found.scores, found.mask_scores, found.labels,
                       found.classes, "bcc_clusters")
    assert seg.semantic.shape == (8, 12)
    assert (seg.semantic[:6, :6] == 1).all() and (seg.semantic[:6, 6:] == 2).all() and (seg.semantic[6:] == 0).all()
    assert seg.boxes[0].tolist() == [0, 0, 6, 6] and seg.scores.tolist() == [1.0, 1.0]


def test_cluster_instances_at_another_size():
    """The loaded image may be larger than the tagged grid: masks follow the size asked for."""
    found = cluster_instances(_tags(), (16, 24))
    assert found.masks.shape == (2, 16, 24)
    assert found.masks[0, :12, :12].all() and not found.masks[0, 12:].any() and not found.masks[0, :, 12:].any()
    assert found.boxes[1].tolist() == [12, 0, 24, 12]
