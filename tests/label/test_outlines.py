"""Masks as outlines: the pixel-edge outlines against a plain walk over the edges, COCO's pixel-edge polygons
filled back by pycocotools itself, the YOLO outlines through pixel centres filled back by supervision's
rasteriser (OpenCV's fillPoly, or supervision's port of it where OpenCV is not installed), and the walk that
joins an object's parts into one YOLO line checked against a spanning tree built by brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from selfseg.label.outlines import centre_polygons, coco_polygons, edge_loops, join_parts


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


def plain_edge_loops(mask: np.ndarray, connectivity: int) -> list[list[tuple[int, int]]]:
    """The outlines by a walk in Python over a dict of unit edges, one step at a time (mask on the right; at a
    corner two pixels share, a right turn for 4-connectivity, a left one for 8), corners only."""
    m = np.pad(mask, 1)
    ends: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            if not m[r, c]:
                continue
            if not m[r - 1, c]:
                ends.setdefault((c, r), []).append((c + 1, r))
            if not m[r + 1, c]:
                ends.setdefault((c + 1, r + 1), []).append((c, r + 1))
            if not m[r, c + 1]:
                ends.setdefault((c + 1, r), []).append((c + 1, r + 1))
            if not m[r, c - 1]:
                ends.setdefault((c, r + 1), []).append((c, r))
    turn = 1 if connectivity == 4 else -1
    used, loops = set(), []
    for start, outs in ends.items():
        for first in outs:
            if (start, first) in used:
                continue
            points, prev, at = [start], start, first
            used.add((start, first))
            while True:
                if len(ends[at]) == 1:
                    nxt = ends[at][0]
                else:
                    dx, dy = at[0] - prev[0], at[1] - prev[1]
                    nxt = (at[0] - turn * dy, at[1] + turn * dx)
                if (at, nxt) in used:
                    break
                used.add((at, nxt))
                points.append(at)
                prev, at = at, nxt
            n = len(points)
            step = [(points[(i + 1) % n][0] - points[i][0], points[(i + 1) % n][1] - points[i][1]) for i in range(n)]
            loops.append([(x - 1, y - 1) for i, (x, y) in enumerate(points) if step[i] != step[i - 1]])
    return loops


def canonical(loops) -> list[tuple]:
    """Each loop from its least rotation, the loops sorted: equal for the same outlines in any order."""
    out = []
    for loop in loops:
        t = [tuple(int(v) for v in p) for p in loop]
        out.append(min(tuple(t[i:] + t[:i]) for i in range(len(t))))
    return sorted(out)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_outlines_are_those_of_a_plain_walk_over_the_edges(connectivity):
    for m in random_masks(150, seed=connectivity):
        assert canonical(edge_loops(m, connectivity)) == canonical(plain_edge_loops(m, connectivity))


def test_pixels_touching_at_a_corner_share_an_outline_with_8_connectivity():
    m = np.zeros((4, 4), bool)
    m[1, 1] = m[2, 2] = True
    assert len(edge_loops(m, 4)) == 2 and len(edge_loops(m, 8)) == 1
    with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
        edge_loops(m, 6)


def fill_centres(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenCV.*", category=UserWarning)  # its NumPy backend
        from supervision.detection.utils.converters import polygon_to_mask

    return polygon_to_mask(polygon, (shape[1], shape[0])).astype(bool)


def structured_masks():
    yy, xx = np.mgrid[:61, :61]
    rings = (np.hypot(yy - 30, xx - 30).astype(int) // 4) % 2 == 0  # parts in holes in parts, to the edge
    stacked = np.ones((3 * 1200 + 3, 3), bool)
    stacked[1:-1:3, 1] = False  # 1,200 holes, each seamed to the one above: deeper than Python's recursion limit
    checker = np.add.outer(np.arange(9), np.arange(12)) % 2 == 0  # one 8-connected part, every hole a pixel
    lines = np.zeros((12, 12), bool)
    lines[2, 1:11] = lines[4:11, 3] = lines[6, 6] = True  # one pixel wide, and a lone pixel
    lines[np.arange(5, 11), np.arange(5, 11)] = True     # a diagonal touching the lone pixel at a corner
    comb = np.ones((8, 15), bool)
    comb[1:7, 1:14:2] = False  # holes side by side, each seam straight up to the outside
    comb[7, 1:14:4] = False
    return [rings, stacked, checker, lines, comb, np.ones((1, 1), bool), np.ones((1, 7), bool)]


def test_centre_polygons_fill_back_exactly_where_outlines_are_drawn():
    from scipy import ndimage

    checked = 0
    for m in [*random_masks(200, seed=5), *structured_masks()]:
        polygons = centre_polygons(m)
        parts, count = ndimage.label(m, structure=np.ones((3, 3), bool))
        assert len(polygons) == count  # one per 8-connected part, its holes seamed in
        for k, polygon in enumerate(polygons, start=1):
            assert polygon.dtype.kind == "i" and len(polygon) >= 3
            assert np.array_equal(fill_centres(polygon, m.shape), parts == k)
            # no point in the middle of a straight run
            before, after = polygon - np.roll(polygon, 1, axis=0), np.roll(polygon, -1, axis=0) - polygon
            straight = (before[:, 0] * after[:, 1] == before[:, 1] * after[:, 0]) & ((before * after).sum(1) > 0)
            assert not straight.any()
        checked += count > 0
    assert checked > 150


def test_a_polygon_of_a_part_one_pixel_wide_runs_over_it_and_back():
    m = np.zeros((3, 6), bool)
    m[1, 1:5] = True
    (line,) = centre_polygons(m)
    assert len(line) == 3 and line[0].tolist() == line[2].tolist() and sorted(line[:2].tolist()) == [[1, 1], [4, 1]]
    (dot,) = centre_polygons(np.ones((1, 1), bool))
    assert dot.tolist() == [[0, 0]] * 3
    assert centre_polygons(np.zeros((4, 4), bool)) == []


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
