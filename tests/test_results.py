from __future__ import annotations

import numpy as np

from selfseg.tag.result import ClusterCaptions, TagResult, rank_nouns, upsample_nearest


def test_rank_nouns_counts_and_orders():
    clusters = [
        ClusterCaptions(0, 10, ["a", "b", "c"], [["dog", "grass"], ["dog"], ["cat"]]),
        ClusterCaptions(1, 5, ["d", "e", "f"], [["grass"], ["dog"], []]),
    ]
    ranked = rank_nouns(clusters)
    assert [(n.noun, n.support, n.cycles, n.clusters) for n in ranked] == [
        ("dog", 3, 2, [0, 1]), ("grass", 2, 1, [0, 1]), ("cat", 1, 1, [0])]
    assert [n.noun for n in rank_nouns(clusters, min_support=2)] == ["dog"]


def test_upsample_nearest():
    g = np.array([[0, 1], [2, 3]])
    up = upsample_nearest(g, (4, 6))
    assert up.shape == (4, 6) and up.dtype == np.uint8
    assert (up[:2, :3] == 0).all() and (up[2:, 3:] == 3).all()


def test_json_round_trip(smoke_seg, ade_images, tmp_path):
    r = smoke_seg.tag(ade_images[0])
    back = TagResult.from_json(r.to_json())
    assert back.tags == r.tags and back.nouns == r.nouns and back.clusters == r.clusters
    assert np.array_equal(back.cluster_grid, r.cluster_grid) and np.array_equal(back.cluster_map, r.cluster_map)
    assert back.intermediates.run_keys == r.intermediates.run_keys
    for a, b in zip(back.intermediates.aligned, r.intermediates.aligned):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(back.intermediates.votes, r.intermediates.votes, atol=1e-6)
    p = tmp_path / "r.json"
    p.write_text(r.to_json(intermediates=False))
    assert TagResult.from_json(p).intermediates is None


def test_results_that_cannot_be_read_are_one_line_value_errors(tmp_path):
    import pytest

    from selfseg.segment.result import Segmentation

    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    cases = [(TagResult, "nothing.json", "nothing.json: cannot read a selfseg tag result from it (No such file"),
             (Segmentation, tmp_path, "cannot read a selfseg segmentation from it (Is a directory)"),
             (Segmentation, binary, "b.json: cannot read a selfseg segmentation from it ('utf-8' codec"),
             (TagResult, "{not json", "the text: not a selfseg tag result (not JSON: ")]
    for cls, source, message in cases:
        with pytest.raises(ValueError) as err:
            cls.from_json(source)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_tags_of_another_image_are_refused(smoke_seg, ade_images):
    import pytest

    tags = smoke_seg.tag(ade_images[0])
    with pytest.raises(ValueError, match=r"tags are of an image of size \(\d+, \d+\)"):
        smoke_seg.segment(ade_images[1], tags=tags)
    assert smoke_seg.segment(ade_images[0], tags=tags).labels is not None
