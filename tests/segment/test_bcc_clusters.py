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


def test_a_tie_goes_to_the_noun_with_more_support_whatever_the_order_of_the_nouns():
    """A union of taggers orders its nouns by how many taggers found them, not by support."""
    from dataclasses import replace

    tags = _tags()
    tags.clusters[1] = ClusterCaptions(1, 6, ["c", "d"], [["sky"], ["grass"]])
    tags = replace(tags, nouns=rank_nouns(tags.clusters))
    assert [n.noun for n in tags.nouns][:2] == ["dog", "grass"]  # grass: support 2, sky: 1
    reordered = replace(tags, nouns=sorted(tags.nouns, key=lambda n: n.noun != "sky"))
    assert cluster_names(reordered)[1] == "grass"


def test_the_tag_overlay_writes_the_names_the_cluster_segmenter_gives(monkeypatch):
    """Cluster 1 says grass twice and dog once; dog is the image's top noun (cluster 0 says it four
    times): the overlay and the segmenter both call cluster 1 grass."""
    from PIL import Image, ImageDraw

    from selfseg.viz import overlay

    grid = np.zeros((4, 4), dtype=np.int64)
    grid[:, 2:] = 1
    clusters = [ClusterCaptions(0, 8, list("abcd"), [["dog"]] * 4),
                ClusterCaptions(1, 8, list("efg"), [["grass", "dog"], ["grass"], []])]
    tags = TagResult(source="p.jpg", image_size=(8, 12), nouns=rank_nouns(clusters), tagger="bcc",
                     clusters=clusters, cycles_run=4, cluster_grid=grid)
    assert tags.nouns[0].noun == "dog" and cluster_names(tags) == {0: "dog", 1: "grass"}
    written = []
    real = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, *a, **k: written.append(text) or real(self, xy, text, *a, **k))
    overlay(Image.new("RGB", (12, 8)), tags)
    assert written == ["0: dog", "1: grass"]


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
