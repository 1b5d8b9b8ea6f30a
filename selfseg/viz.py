"""Overlay of a cluster map on its image, with each cluster's top noun written on it."""
from __future__ import annotations

from typing import Any

import numpy as np

from .results import TagResult, upsample_nearest


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours (the VOC bit-interleaving palette, minus black)."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, lab = 0, i + 1
        r = g = b = 0
        while lab:
            r |= ((lab >> 0) & 1) << (7 - c)
            g |= ((lab >> 1) & 1) << (7 - c)
            b |= ((lab >> 2) & 1) << (7 - c)
            c, lab = c + 1, lab >> 3
        out[i] = (r, g, b)
    return out


def overlay(image: Any, result: TagResult, alpha: float = 0.5) -> Any:
    """RGB PIL image: `image` blended with the result's cluster colours, top noun at each cluster's centre."""
    from PIL import Image, ImageDraw

    img = image.convert("RGB")
    if result.cluster_grid is None:
        return img
    grid = result.cluster_grid
    labels = upsample_nearest(grid, (img.height, img.width))
    colours = palette(int(grid.max()) + 1)
    blend = (np.asarray(img, dtype=np.float32) * (1 - alpha) + colours[labels] * alpha).astype(np.uint8)
    out = Image.fromarray(blend)
    draw = ImageDraw.Draw(out)
    by_cluster: dict[int, str] = {}
    for n in result.nouns:  # nouns are ordered by support: the first seen per cluster is its best
        for c in n.clusters:
            by_cluster.setdefault(c, n.noun)
    for c in range(int(grid.max()) + 1):
        ys, xs = np.nonzero(labels == c)
        if len(ys) == 0:
            continue
        text = f"{c}: {by_cluster.get(c, '-')}"
        x, y = int(np.median(xs)), int(np.median(ys))
        draw.rectangle(draw.textbbox((x, y), text), fill=(0, 0, 0))
        draw.text((x, y), text, fill=(255, 255, 255))
    return out
