"""Masks as polygons for the dataset formats that store outlines: COCO polygons and YOLO segmentation lines.

The two readers fill a polygon differently. pycocotools (COCO) fills by area, with pixel i spanning [i, i + 1):
an outline through pixel centres loses half a pixel all round, and a part one pixel wide loses everything. So
COCO polygons run along the pixel edges, which it fills back exactly. OpenCV's fillPoly (Ultralytics, and
supervision) draws the outline's pixels as well as the inside: there an outline through pixel centres is
exact, and YOLO lines keep supervision's tracing.
"""
from __future__ import annotations

import numpy as np


def edge_loops(mask: np.ndarray) -> list[np.ndarray]:
    """The closed outlines of a bool mask along its pixel edges: (N, 2) integer x, y corner points, the mask on
    the right of each step (clockwise on screen for an outer outline, anticlockwise around a hole). Where two
    pixels touch only at a corner, the outline turns right there, so each outline bounds one 4-connected part
    or one hole. Only the corners are kept (no point between two steps in one direction)."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    ends: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def add(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> None:
        for edge in zip(zip(x0.tolist(), y0.tolist()), zip(x1.tolist(), y1.tolist())):
            ends.setdefault(edge[0], []).append(edge[1])

    # In the padded frame, pixel (r, c) spans corners (c, r) .. (c + 1, r + 1).
    r, c = np.nonzero(m[1:] & ~m[:-1])          # inside below, outside above: its top edge, rightwards
    add(c, r + 1, c + 1, r + 1)
    r, c = np.nonzero(m[:-1] & ~m[1:])          # inside above, outside below: its bottom edge, leftwards
    add(c + 1, r + 1, c, r + 1)
    r, c = np.nonzero(m[:, :-1] & ~m[:, 1:])    # inside left, outside right: its right edge, downwards
    add(c + 1, r, c + 1, r + 1)
    r, c = np.nonzero(m[:, 1:] & ~m[:, :-1])    # inside right, outside left: its left edge, upwards
    add(c + 1, r + 1, c + 1, r)

    def step(prev: tuple[int, int], at: tuple[int, int]) -> tuple[int, int]:
        out = ends[at]
        if len(out) == 1:
            return out[0]
        # Two ways on: the pixels meet at this corner only. A right turn (clockwise on screen) stays with the
        # pixel the outline came along.
        dx, dy = at[0] - prev[0], at[1] - prev[1]
        return at[0] - dy, at[1] + dx

    used: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    loops = []
    for start, outs in ends.items():
        for first in outs:
            if (start, first) in used:
                continue
            used.add((start, first))
            points, prev, at = [start], start, first
            while True:
                nxt = step(prev, at)
                if (at, nxt) in used:  # back at the first step
                    break
                used.add((at, nxt))
                points.append(at)
                prev, at = at, nxt
            loop = np.array(points, dtype=np.int64) - 1
            turns = np.diff(np.vstack([loop[-1:], loop, loop[:1]]), axis=0)
            loops.append(loop[np.any(turns[1:] != turns[:-1], axis=1)])
    return loops


def _inside_pixel(loop: np.ndarray) -> tuple[int, int]:
    """(row, col) of the pixel on the right of a loop's first step."""
    (x, y), (x1, y1) = loop[0], loop[1]
    dx, dy = np.sign(x1 - x), np.sign(y1 - y)
    return int(y - (dx < 0 or dy < 0)), int(x - (dy > 0 or dx < 0))


def _area2(loop: np.ndarray) -> int:
    """Twice the signed area (positive: clockwise on screen, an outer outline)."""
    x, y = loop[:, 0], loop[:, 1]
    return int(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def coco_polygons(mask: np.ndarray) -> list[np.ndarray] | None:
    """One polygon per 4-connected part of `mask`, each hole joined to its part's outline by a zero-width seam
    (there and back along one segment, at their closest corners): (N, 2) integer x, y pixel-edge corners that
    pycocotools fills back to exactly `mask`. None when it would not (checked by decoding them), so the caller
    keeps the exact RLE; [] for an empty mask."""
    from pycocotools import mask as coco_mask
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    loops = edge_loops(mask)
    if not loops:
        return []
    parts, n = ndimage.label(mask)  # 4-connected, as the outlines are
    outer: dict[int, np.ndarray] = {}
    holes: dict[int, list[np.ndarray]] = {}
    for loop in loops:
        part = int(parts[_inside_pixel(loop)])
        if _area2(loop) > 0:
            outer[part] = loop
        else:
            holes.setdefault(part, []).append(loop)
    if set(outer) != set(range(1, n + 1)) or not set(holes) <= set(outer):
        return None
    polygons = [_with_holes(outer[p], holes.get(p, [])) for p in range(1, n + 1)]
    # Each part checked in its own box: pycocotools merges RLEs one at a time over the whole frame, which
    # grows with the square of the part count (minutes for a speckled photo-size mask).
    for part, (rows, cols), polygon in zip(range(1, n + 1), ndimage.find_objects(parts), polygons):
        shifted = polygon - [cols.start, rows.start]
        rle = coco_mask.frPyObjects([shifted.ravel().astype(np.float64).tolist()], rows.stop - rows.start,
                                    cols.stop - cols.start)
        if not np.array_equal(coco_mask.decode(rle)[:, :, 0].astype(bool), parts[rows, cols] == part):
            return None
    return polygons


def _with_holes(outline: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """The outline with a detour at each hole's closest corner: over the seam, round the hole, and back."""
    if not holes:
        return outline
    from scipy.spatial import cKDTree

    tree = cKDTree(outline)
    at: dict[int, list[np.ndarray]] = {}
    for hole in holes:
        d, k = tree.query(hole)
        j = int(np.argmin(d))
        at.setdefault(int(k[j]), []).append(np.vstack([np.roll(hole, -j, axis=0), hole[j:j + 1]]))
    pieces = []
    for i, point in enumerate(outline):
        pieces.append(point[None])
        for detour in at.get(i, []):
            pieces += [detour, point[None]]
    return np.vstack(pieces)


def join_parts(parts: list[np.ndarray]) -> np.ndarray:
    """One closed walk over several (N, 2) polygons, as one YOLO line holds one object: the parts linked by a
    minimum spanning tree of their closest vertices, each link crossed there and back. The tree's links are
    among the Delaunay triangulation's edges (a shortest link between two groups of points always is), so
    thousands of parts cost a triangulation, not a comparison of every pair. Pixel coordinates triangulate
    exactly; for float points near a line Qhull's triangulation is approximate, and the walk still holds
    every part. Ultralytics' converter also
    links parts at their closest points, there and back (in list order, not over a spanning tree); a reader
    that draws outlines (OpenCV's fillPoly) adds the links' pixels, a line one pixel wide between parts."""
    parts = [p for p in parts if len(p)]
    if len(parts) <= 1:
        return parts[0] if parts else np.zeros((0, 2))
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    count = len(parts)
    sizes = np.array([len(p) for p in parts])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    points = np.vstack(parts)
    owner = np.repeat(np.arange(count), sizes)
    a, b = _near_pairs(points)
    a, b = a[owner[a] != owner[b]], b[owner[a] != owner[b]]
    a, b = _connect(points, owner, a, b)
    # +1: the spanning tree reads a zero as no link, and two parts' outlines may share a point
    weight = np.hypot(*(points[a] - points[b]).T) + 1.0
    lo, hi = np.minimum(owner[a], owner[b]), np.maximum(owner[a], owner[b])
    keep = np.lexsort((weight, hi, lo))  # each pair of parts: its shortest link first
    lo, hi, a, b, weight = lo[keep], hi[keep], a[keep], b[keep], weight[keep]
    first = np.ones(len(lo), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    lo, hi, a, b, weight = lo[first], hi[first], a[first], b[first], weight[first]
    anchor: dict[tuple[int, int], tuple[int, int]] = {}
    for i, j, va, vb in zip(lo.tolist(), hi.tolist(), a.tolist(), b.tolist()):
        if owner[va] != i:
            va, vb = vb, va
        anchor[i, j] = (va - int(offsets[i]), vb - int(offsets[j]))
        anchor[j, i] = anchor[i, j][::-1]
    dist = coo_matrix((weight, (lo, hi)), shape=(count, count)).tocsr()
    tree = minimum_spanning_tree(dist)
    order, parent = breadth_first_order(tree, 0, directed=False)
    # Each part's walk starts and ends at the vertex its parent links to; children hang off their own vertices.
    start = {0: 0}
    hang: dict[int, dict[int, list[int]]] = {i: {} for i in range(count)}
    for child in order[1:]:
        p = int(parent[child])
        at_parent, at_child = anchor[p, int(child)]
        start[int(child)] = at_child
        hang[p].setdefault(at_parent, []).append(int(child))
    walk: list[np.ndarray] = []
    # An explicit stack rather than recursion: a chain of many parts would pass Python's recursion limit.
    # ("walk", part, s): the part's s-th vertex from its start on; ("back", part, v): its vertex v again, the
    # way back over a link once the child's walk is done.
    stack = [("walk", 0, 0)]
    while stack:
        kind, part, s = stack.pop()
        if kind == "back":
            walk.append(parts[part][s])
            continue
        n = len(parts[part])
        v = (start[part] + s) % n
        walk.append(parts[part][v])
        if s == n:
            continue
        stack.append(("walk", part, s + 1))
        for child in reversed(hang[part].get(v, [])):
            stack.append(("back", part, v))
            stack.append(("walk", child, 0))
    return np.array(walk)


def _near_pairs(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of `points` that hold every pair a minimum spanning tree may link: the Delaunay triangulation's
    edges, plus every pair of equal points (the triangulation keeps one of them); points on one line, which
    have no triangulation, as neighbours along it."""
    from scipy.spatial import Delaunay, QhullError

    unique, first, inverse = np.unique(points, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    same = np.nonzero(first[inverse] != np.arange(len(points)))[0]
    pairs = [np.stack([same, first[inverse[same]]])]
    try:
        if len(unique) < 3:
            raise QhullError("too few points")
        found = Delaunay(unique)
        tri = found.simplices
        # a point Qhull kept out of every triangle (coplanar) is linked to the vertex it recorded as nearest
        edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [0, 2]], found.coplanar[:, [0, 2]]])
    except QhullError:  # all on one line
        order = np.lexsort((unique[:, 1], unique[:, 0]))
        edges = np.stack([order[:-1], order[1:]], axis=1)
    pairs.append(first[edges].T)
    a, b = np.concatenate(pairs, axis=1)
    return a, b


def _connect(points: np.ndarray, owner: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate links (a, b) plus, while they leave the parts in several groups (a point Qhull kept out
    of every triangle and did not record), the shortest link out of part 0's group, so that every part is
    joined. The tree is then short but not always the shortest: the candidates may have joined some groups
    by longer links than that."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    count = int(owner.max()) + 1
    while True:
        graph = coo_matrix((np.ones(len(a)), (owner[a], owner[b])), shape=(count, count))
        groups, group = connected_components(graph, directed=False)
        if groups == 1:
            return a, b
        inside = group[owner] == group[0]
        near = cKDTree(points[~inside])
        d, k = near.query(points[inside])
        i = int(np.argmin(d))
        a = np.append(a, np.nonzero(inside)[0][i])
        b = np.append(b, np.nonzero(~inside)[0][int(k[i])])
