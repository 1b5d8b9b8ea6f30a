"""Masks as outlines: COCO's pixel-edge polygons filled back by pycocotools itself, and the walk that joins an
object's parts into one YOLO line checked against a spanning tree built by brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from selfseg.label.outlines import coco_polygons, edge_loops, join_parts


def fill_back(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    from pycocotools import mask as coco_mask

    rles = coco_mask.frPyObjects([p.ravel().astype(float).tolist() for p in polygons], *shape)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def random_masks(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for t in range(count):
        h, w = (int(v) for v in rng.integers(2, 50, 2))
        m = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        if t % 3 == 1:  # blobs with specks
            m = ndimage.binary_opening(m) | (rng.random((h, w)) < 0.03)
        elif t % 3 == 2:  # smooth shapes, often with holes
            m = ndimage.binary_closing(ndimage.binary_opening(m, iterations=2))
        yield m


def test_pixel_edge_polygons_fill_back_exactly_in_pycocotools():
    checked = 0
    for m in random_masks(240, seed=0):
        polygons = coco_polygons(m)
        assert polygons is not None
        if not m.any():
            assert polygons == []
            continue
        _, parts = ndimage.label(m)
        assert len(polygons) == parts  # one per 4-connected part, holes inside it
        assert all(len(p) >= 4 and p.dtype.kind == "i" for p in polygons)
        assert np.array_equal(fill_back(polygons, m.shape), m)
        checked += 1
    assert checked > 150


def test_outlines_run_clockwise_round_parts_and_anticlockwise_round_holes():
    m = np.zeros((9, 12), bool)
    m[1:8, 1:8] = True
    m[3:5, 3:5] = False      # a hole
    m[1, 10] = True          # a lone pixel
    m[8, 8] = True           # touches the square at a corner only: its own outline
    loops = edge_loops(m)
    area2 = sorted(int(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) for x, y in (lp.T for lp in loops))
    assert area2 == [-8, 2, 2, 98]  # twice the areas: hole 2x2, two single pixels, the 7x7 square
    square = max(loops, key=len)
    assert {tuple(p) for p in square} == {(1, 1), (8, 1), (8, 8), (1, 8)}  # corners only


def test_an_empty_mask_has_no_polygons():
    assert coco_polygons(np.zeros((5, 5), bool)) == [] and edge_loops(np.zeros((0, 0), bool)) == []


def perimeter(points: np.ndarray) -> float:
    return float(np.hypot(*np.diff(points, axis=0).T).sum())


@pytest.mark.parametrize("kind", ["scattered", "one_line", "shared_points"])
def test_joined_parts_visit_every_vertex_over_the_shortest_links(kind, spanning_length):
    rng = np.random.default_rng({"scattered": 1, "one_line": 2, "shared_points": 3}[kind])
    for _ in range(60):
        count = int(rng.integers(2, 10))
        if kind == "one_line":  # no triangulation exists
            parts = [np.c_[rng.integers(0, 40, 3), np.full(3, 7)].astype(float) for _ in range(count)]
        else:
            parts = [rng.integers(0, 25, (int(rng.integers(1, 6)), 2)).astype(float) for _ in range(count)]
        if kind == "shared_points":
            parts[1][0] = parts[0][0]
        walk = join_parts(parts)
        assert np.array_equal(walk[0], walk[-1])
        seen = {tuple(p) for p in walk}
        assert all(tuple(p) in seen for part in parts for p in part)
        # each part closed once, each link crossed there and back: the walk is the parts' perimeters plus twice
        # the links, and the links are a minimum spanning tree of the parts' closest points
        own = sum(perimeter(np.vstack([p, p[:1]])) for p in parts)
        assert (perimeter(walk) - own) / 2 == pytest.approx(spanning_length(parts), abs=1e-9)
        assert len(walk) == sum(len(p) + 1 for p in parts) + count - 1


def test_thousands_of_parts_in_a_chain_join_without_recursion():
    parts = [np.array([[3.0 * i, 0.0], [3.0 * i + 1, 0.0], [3.0 * i + 1, 1.0]]) for i in range(3000)]
    walk = join_parts(parts)
    assert len(walk) == 3000 * 4 + 2999
    assert (perimeter(walk) - sum(perimeter(np.vstack([p, p[:1]])) for p in parts)) / 2 == pytest.approx(2.0 * 2999)


def test_one_part_is_its_own_walk_and_empty_parts_are_left_out():
    part = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 3.0]])
    empty = np.zeros((0, 2))
    assert join_parts([part]) is part and join_parts([empty, part, empty]) is part
    assert join_parts([empty]).shape == (0, 2)
    other = part + 10
    assert len(join_parts([empty, part, empty, other])) == len(join_parts([part, other])) == 3 + 1 + 3 + 1 + 1


@pytest.mark.parametrize("guard", ["both", "coplanar_links_only", "connecting_only"])
def test_points_qhull_leaves_out_of_every_triangle_are_still_joined(guard, monkeypatch, spanning_length):
    """A part a hair from another's vertex (Qhull lists it as coplanar) and points off one line by a rounding
    error at large coordinates: every part is still in the walk. Each of the two guards (the coplanar points'
    links, and links added while the parts stay in several groups) does it alone."""
    import selfseg.label.outlines as outlines

    if guard == "coplanar_links_only":
        monkeypatch.setattr(outlines, "_connect", lambda points, owner, a, b: (a, b))
    cases = [[np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]), np.array([[10.0, 1e-13]]),
              np.array([[20.0, 5.0], [25.0, 5.0], [25.0, 9.0]])]]
    if guard != "coplanar_links_only":  # Qhull records no point as coplanar here
        cases.append([np.array([[1e7 + k, 2e7 + 2 * k + (k == 3) * 1e-3]]) for k in range(6)])
    if guard == "connecting_only":  # no triangulation's links at all: every link from the guard
        monkeypatch.setattr(outlines, "_near_pairs", lambda points: (np.zeros(0, int), np.zeros(0, int)))
    for parts in cases:
        walk = join_parts(parts)
        seen = {tuple(p) for p in walk}
        assert all(tuple(p) in seen for part in parts for p in part)
        assert len(walk) == sum(len(p) + 1 for p in parts) + len(parts) - 1
        if parts is cases[0] or guard == "connecting_only":  # Qhull's triangulation of the near-line is
            own = sum(perimeter(np.vstack([p, p[:1]])) for p in parts)  # approximate: no shortest tree promised
            assert (perimeter(walk) - own) / 2 == pytest.approx(spanning_length(parts), rel=1e-9)


def test_the_links_added_while_parts_stay_apart_make_a_shortest_tree(monkeypatch, spanning_length):
    import selfseg.label.outlines as outlines

    monkeypatch.setattr(outlines, "_near_pairs", lambda points: (np.zeros(0, int), np.zeros(0, int)))
    rng = np.random.default_rng(7)
    for _ in range(40):
        count = int(rng.integers(2, 8))
        parts = [rng.integers(0, 30, (int(rng.integers(1, 5)), 2)).astype(float) for _ in range(count)]
        walk = join_parts(parts)
        own = sum(perimeter(np.vstack([p, p[:1]])) for p in parts)
        assert (perimeter(walk) - own) / 2 == pytest.approx(spanning_length(parts), abs=1e-9)


def test_polygons_that_would_not_fill_back_are_refused(monkeypatch):
    """The decode check itself: outlines with their holes left out fill the holes, so no polygons."""
    import selfseg.label.outlines as outlines

    ring = np.ones((9, 9), bool)
    ring[3:6, 3:6] = False
    assert coco_polygons(ring) is not None
    monkeypatch.setattr(outlines, "_with_holes", lambda outline, holes: outline)
    assert coco_polygons(ring) is None
