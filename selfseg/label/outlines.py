"""Masks as polygons for the dataset formats that store outlines: COCO polygons and YOLO segmentation lines.

The two readers fill a polygon differently. pycocotools (COCO) fills by area, with pixel i spanning [i, i + 1):
an outline through pixel centres loses half a pixel all round, and a part one pixel wide loses everything. So
COCO polygons run along the pixel edges, which it fills back exactly. OpenCV's fillPoly (Ultralytics, and
supervision) draws the outline's pixels as well as the inside: there an outline through the centres of a part's
boundary pixels is exact, a part one pixel wide included, so YOLO lines run through pixel centres. Both are
traced from the same pixel-edge outlines.
"""
from __future__ import annotations

import numpy as np


def edge_loops(mask: np.ndarray, connectivity: int = 4) -> list[np.ndarray]:
    """The closed outlines of a bool mask along its pixel edges: (N, 2) integer x, y corner points, the mask on
    the right of each step (clockwise on screen for an outer outline, anticlockwise around a hole). Where two
    pixels touch only at a corner, the outline turns right there with `connectivity` 4, so each outline bounds
    one 4-connected part (or one 8-connected hole), and left with 8, crossing to the other pixel, so each
    bounds one 8-connected part (or one 4-connected hole). Only the corners are kept (no point between two steps
    in one direction)."""
    corners, counts = _loops(mask, connectivity)
    return np.split(corners, np.cumsum(counts)[:-1]) if len(counts) else []


def _loops(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """edge_loops' outlines in one (N, 2) array, and the number of corners of each."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components, depth_first_order

    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    # Every unit edge between the mask and the rest, with the mask on its right. In the padded frame pixel
    # (r, c) spans corners (c, r) .. (c + 1, r + 1).
    found = [
        (np.nonzero(m[1:] & ~m[:-1]), (0, 1), (1, 0)),         # inside below: its top edge, rightwards
        (np.nonzero(m[:-1] & ~m[1:]), (1, 1), (-1, 0)),        # inside above: its bottom edge, leftwards
        (np.nonzero(m[:, :-1] & ~m[:, 1:]), (1, 0), (0, 1)),   # inside left: its right edge, downwards
        (np.nonzero(m[:, 1:] & ~m[:, :-1]), (1, 1), (0, -1)),  # inside right: its left edge, upwards
    ]
    x = np.concatenate([c + ox for (r, c), (ox, _), _ in found])
    y = np.concatenate([r + oy for (r, c), (_, oy), _ in found])
    if not len(x):
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    dx = np.concatenate([np.full(len(r), d[0]) for (r, _), _, d in found])
    dy = np.concatenate([np.full(len(r), d[1]) for (r, _), _, d in found])
    # The edge that follows each: the one leaving its end corner. Where two leave (two pixels meet at that
    # corner only) a right turn (clockwise on screen) stays with the pixel the outline came along, a left turn
    # crosses to the other.
    across = m.shape[1] + 1
    code = y * across + x
    by_start = np.argsort(code, kind="stable")
    ends = (y + dy) * across + x + dx
    lo = np.searchsorted(code[by_start], ends)
    one, other = by_start[lo], by_start[np.minimum(lo + 1, len(x) - 1)]
    turn = 1 if connectivity == 4 else -1
    turned = (dx[one] == -turn * dy) & (dy[one] == turn * dx)
    two = np.searchsorted(code[by_start], ends, side="right") - lo == 2
    following = np.where(two & ~turned, other, one)
    # Each outline is a cycle of `following`. Cut at its lowest edge and each cycle's last edge pointed at the
    # next cycle's head, they become one path, read in order by one depth-first walk (C speed, unlike a walk
    # per outline in Python).
    # (One edge out of each node: the graphs are built as CSR directly, row i holding its one successor.)
    edges = len(x)
    one_each = np.arange(edges + 1)
    _, cycle = connected_components(csr_matrix((np.ones(edges, np.int8), following, one_each), shape=(edges, edges)),
                                    directed=True, connection="weak")
    head = np.zeros(edges, dtype=bool)
    heads = np.unique(cycle, return_index=True)[1]
    head[heads] = True
    last = np.empty(edges, dtype=np.int64)
    last[following] = np.arange(edges)
    last = last[heads]
    to = following.copy()
    to[last[:-1]] = heads[1:]
    path = one_each.copy()
    path[last[-1] + 1:] -= 1  # the very last edge leads nowhere
    walk = depth_first_order(csr_matrix((np.ones(edges - 1, np.int8), np.delete(to, last[-1]), path),
                                        shape=(edges, edges)), int(heads[0]), directed=True,
                             return_predecessors=False)
    loop = np.cumsum(head[walk]) - 1
    # a corner where the direction changes, the loop's previous edge being its last
    starts = np.flatnonzero(head[walk])
    before = np.arange(len(walk)) - 1
    before[starts] = np.append(starts[1:], len(walk)) - 1
    corner = (dx[walk] != dx[walk[before]]) | (dy[walk] != dy[walk[before]])
    points = np.stack([x[walk][corner], y[walk][corner]], axis=1) - 1
    return points.astype(np.int64), np.bincount(loop[corner], minlength=len(heads))


def _sides(start: np.ndarray, then: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the pixels on the right (inside) and on the left (outside) of steps from `start` to `then`
    ((N, 2) or (2,) x, y corners)."""
    unit = np.sign(then - start)
    right = np.stack([-unit[..., 1], unit[..., 0]], axis=-1)  # on screen
    return (start + (unit + right - 1) // 2)[..., ::-1], (start + (unit - right - 1) // 2)[..., ::-1]


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
        part = int(parts[tuple(_sides(loop[0], loop[1])[0])])
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


def centre_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """One polygon per 8-connected part of `mask`: (N, 2) integer x, y pixel indices through the centres of the
    part's boundary pixels (those with a side on the outside or on a hole), each hole's outline joined by a seam
    straight up a column of the part's pixels, there and back, to the first outline above it (the part's outer
    outline, or another hole's, whose top is higher). OpenCV's fillPoly,
    which draws a polygon's edges and fills its inside, gives back exactly the part from its polygon: every edge
    runs over the part's own pixels (a step to a neighbouring pixel, a straight run, a seam), so a part one pixel
    wide, whose polygon encloses nothing, is drawn whole too. Points in the middle of a straight run are left
    out; a polygon has at least 3 points (a lone pixel's centre three times). [] for an empty mask."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    corners, counts = _loops(mask, 8)
    if not len(counts):
        return []
    parts, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    # The background's 4-connected regions, in the frame padded by one pixel: the outside is region 1.
    regions = ndimage.label(np.pad(~mask, 1, constant_values=True))[0]
    walk, start, size, first_step, area2 = _centres(corners, counts)
    inside, outside = _sides(*first_step)
    # An outline lies between one part and one region, and no two outlines lie between the same two.
    part = parts[inside[:, 0], inside[:, 1]]
    region = regions[outside[:, 0] + 1, outside[:, 1] + 1]
    hole = np.flatnonzero(area2 < 0)
    outer = np.zeros(count + 1, dtype=np.int64)
    outer[part[area2 > 0]] = np.flatnonzero(area2 > 0)

    seams = _seams(regions, part, region, hole, walk, size) if len(hole) else {}

    polygons = []
    for k in outer[1:].tolist():
        if k not in seams:  # no hole: the outline alone
            polygons.append(_at_least_3(_straight(walk[start[k]:start[k] + size[k]])))
            continue
        spans: list[tuple[int, int]] = []  # [lo, hi) of `walk`, in the polygon's order
        # An explicit stack rather than recursion: holes above holes may nest deeper than Python's limit.
        # An outline's item: (outline, where in its walk it starts, whether it closes back there: a hole's does,
        # before the seam back).
        stack: list = [(k, 0, False)]
        while stack:
            item = stack.pop()
            if len(item) == 2:
                spans.append(item)
                continue
            k, j, closes = item
            n, base = int(size[k]), int(start[k])
            todo: list = []
            done = 0
            for at, h, enter_h in sorted(((at - j) % n, h, e) for at, h, e in seams.get(k, [])):
                # the walk to the seam's pixel, the hole's walk round from the seam's end, the seam's pixel again
                todo += [*_span(base, n, j, done, at + 1), (h, enter_h, True), *_span(base, n, j, at, at + 1)]
                done = at + 1
            todo += _span(base, n, j, done, n)
            if closes:
                todo += _span(base, n, j, 0, 1)
            stack += reversed(todo)
        lo, hi = np.array(spans, dtype=np.int64).T
        length = hi - lo
        index = np.repeat(lo - (np.cumsum(length) - length), length) + np.arange(int(length.sum()))
        polygons.append(_at_least_3(_straight(walk[index])))
    return polygons


def _seams(regions: np.ndarray, part: np.ndarray, region: np.ndarray, hole: np.ndarray, walk: np.ndarray,
           size: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    """outline -> (place in its walk, hole outline, place in the hole's walk) of each seam that starts on it.

    Each hole's seam runs from the part's pixel above the hole's top-left pixel straight up to the first pixel
    with a side up, left or right on the background, a side on another region (the outside, or a hole whose top
    is higher: the seams form a tree). The pixels it passes between touch no region: it crosses no outline.
    `regions` labels the background in the frame padded by one pixel; `part` and `region` are each outline's
    two sides, `walk` and `size` the outlines' walks one after another."""
    height, width = regions.shape[0] - 2, regions.shape[1] - 2
    background = regions != 0
    labels = regions.ravel()
    found = np.flatnonzero(labels)
    seen = labels[found]
    new = seen > np.maximum.accumulate(np.concatenate([[0], seen[:-1]]))
    first_pixel = np.zeros(int(labels.max()) + 1, dtype=np.int64)  # labels come in raster order of first pixel
    first_pixel[seen[new]] = found[new]
    top, col = np.divmod(first_pixel[region[hole]], width + 2)
    sides = ~background & (np.roll(background, 1, axis=0) | np.roll(background, 1, axis=1)
                           | np.roll(background, -1, axis=1))
    last_side = np.maximum.accumulate(np.where(sides, np.arange(height + 2)[:, None], 0), axis=0)
    row = last_side[top - 1, col]
    up, left, right = regions[row - 1, col], regions[row, col - 1], regions[row, col + 1]
    beyond = np.where(up != 0, up, np.where(left != 0, left, right))
    code = part.astype(np.int64) * (len(first_pixel)) + region
    order = np.argsort(code)
    parent = order[np.searchsorted(code[order], part[hole].astype(np.int64) * len(first_pixel) + beyond)]
    # each pixel's first place in its outline's walk
    start = np.cumsum(size) - size
    pixel = np.repeat(np.arange(len(size)), size) * (height * width) + walk[:, 1] * width + walk[:, 0]
    by_pixel = np.argsort(pixel, kind="stable")
    place = lambda k, y, x: by_pixel[np.searchsorted(pixel[by_pixel], k * (height * width) + y * width + x)]
    attach = place(parent, row - 1, col - 1) - start[parent]
    enter = place(hole, top - 2, col - 1) - start[hole]
    seams: dict[int, list[tuple[int, int, int]]] = {}
    for k, at, h, j in zip(parent.tolist(), attach.tolist(), hole.tolist(), enter.tolist()):
        seams.setdefault(k, []).append((at, h, j))
    return seams


def _span(base: int, n: int, j: int, a: int, b: int) -> list[tuple[int, int]]:
    """Places a..b-1 of an outline's walk started at its j-th pixel, as [lo, hi) spans of the array holding
    the walk from `base` on (two where they wrap round its end)."""
    if a == b:
        return []
    a, b = a + j, b + j
    if a >= n:
        return [(base + a - n, base + b - n)]
    if b <= n:
        return [(base + a, base + b)]
    return [(base + a, base + n), (base, base + b - n)]


def _at_least_3(polygon: np.ndarray) -> np.ndarray:
    """A polygon of one or two points with its first repeated: YOLO and OpenCV take three or more."""
    return np.vstack([polygon, polygon[:1], polygon[:1]])[:max(3, len(polygon))]


def _centres(corners: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """The loops' walks: the (x, y) pixel on the right of each unit step, in order, without consecutive
    repeats (round a corner of the mask the pixel stays; into a corner the next is a diagonal neighbour; along
    a straight edge each is its neighbour's), all in one array, loop k's at start[k]:start[k] + size[k]. Also
    each loop's first two corners and twice its signed area."""
    loops = len(counts)
    first = np.cumsum(counts) - counts
    loop_of = np.repeat(np.arange(loops), counts)
    nxt = np.arange(len(corners)) + 1
    nxt[first + counts - 1] = first
    step = corners[nxt] - corners
    length = np.abs(step).sum(axis=1)
    unit = step // length[:, None]
    right = np.stack([-unit[:, 1], unit[:, 0]], axis=1)
    begin = corners + (unit + right - 1) // 2  # the pixel on the right of each run's first unit step
    run = np.repeat(np.arange(len(corners)), length)
    along = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    pixels = begin[run] + unit[run] * along[:, None]
    owner = loop_of[run]
    per_loop = np.bincount(owner, minlength=loops)
    start0 = np.cumsum(per_loop) - per_loop
    prev = np.arange(len(pixels)) - 1
    prev[start0] = start0 + per_loop - 1
    keep = np.any(pixels != pixels[prev], axis=1)
    keep[start0[~np.logical_or.reduceat(keep, start0)]] = True  # a lone pixel: its centre once
    size = np.bincount(owner[keep], minlength=loops)
    x, y = corners[:, 0], corners[:, 1]
    area2 = np.add.reduceat(x * y[nxt] - x[nxt] * y, first)
    return pixels[keep], np.cumsum(size) - size, size, (corners[first], corners[first + 1]), area2


def _straight(points: np.ndarray) -> np.ndarray:
    """The polygon without repeated points and without points in the middle of a straight run (a turn, or a
    way back, keeps its point)."""
    new = (points != np.concatenate([points[-1:], points[:-1]])).any(axis=1)
    points = points[new] if new.any() else points[:1]
    if len(points) < 3:
        return points
    step = np.diff(points, axis=0, append=points[:1])  # step[i]: from point i to the next
    before, after = np.concatenate([step[-1:], step[:-1]]), step
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return points[(cross != 0) | ((before * after).sum(axis=1) <= 0)]


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
