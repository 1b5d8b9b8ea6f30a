"""Overlay of a cluster map on its image, with each cluster's name written on it."""
from __future__ import annotations

from typing import Any

import numpy as np

from .tag.result import TagResult, cluster_names, upsample_nearest


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
    """RGB PIL image: `image` blended with the result's cluster colours, each cluster's name (its own
    captions' most frequent noun, `cluster_names`) at its centre. `image` is the photo as the models saw it
    (any size of it): one opened with its EXIF orientation still to apply is turned upright first, and one
    of another shape is refused."""
    from PIL import Image, ImageDraw

    img = _as_seen(image, result.image_size)
    if result.cluster_grid is None:
        return img
    grid = result.cluster_grid
    labels = upsample_nearest(grid, (img.height, img.width))
    colours = palette(int(grid.max()) + 1)
    blend = (np.asarray(img, dtype=np.float32) * (1 - alpha) + colours[labels] * alpha).astype(np.uint8)
    out = Image.fromarray(blend)
    draw = ImageDraw.Draw(out)
    by_cluster = cluster_names(result)  # the name the bcc_clusters segmenter gives the same cluster
    for c in range(int(grid.max()) + 1):
        ys, xs = np.nonzero(labels == c)
        if len(ys) == 0:
            continue
        _label(draw, (int(np.median(xs)), int(np.median(ys))), f"{c}: {by_cluster.get(c, '-')}", out.size)
    return out


def _as_seen(image: Any, size: tuple[int, int]) -> Any:
    """`image` as the models saw it, RGB: a photo opened with its EXIF orientation still to apply is turned
    upright, and one whose shape is not the result's (H, W) `size` (up to rounding) is refused rather than
    stretched under the result's maps."""
    from PIL import Image, ImageOps

    h, w = size
    if not isinstance(image, Image.Image):  # a path, an array, a tensor: read as the pipeline reads inputs
        from .io import load_image

        image = load_image(image, max_side=max(h, w)).image
    img = ImageOps.exif_transpose(image).convert("RGB")
    if img.size != (w, h) and abs(img.width / img.height - w / h) > 0.02 * (w / h) + 1 / min(img.height, h):
        raise ValueError(f"the image is {img.width}x{img.height} px but the result is {w}x{h}: not the photo it "
                         f"was made from (or not as the models saw it)")
    return img


def _label(draw: Any, at: tuple[int, int], text: str, size: tuple[int, int]) -> None:
    """`text` in white on black with its top-left at `at`, moved inside the image where it would cross the
    right or bottom edge. A font that cannot encode the text (Pillow's bitmap font, where Pillow lacks
    FreeType) gets it with backslash escapes rather than failing the image's outputs."""
    try:
        box = draw.textbbox(at, text)
    except UnicodeEncodeError:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        box = draw.textbbox(at, text)
    x = max(0, min(at[0], size[0] - (box[2] - box[0]) - 1))
    y = max(0, min(at[1], size[1] - (box[3] - box[1]) - 1))
    draw.rectangle(draw.textbbox((x, y), text), fill=(0, 0, 0))
    draw.text((x, y), text, fill=(255, 255, 255))


def draw_segmentation(image: Any, seg: Any, alpha: float = 0.5) -> Any:
    """RGB PIL image at the segmentation's size: class colours blended in, each visible instance's label
    written at its mask's centre. `image` is the photo as the models saw it: a photo opened with its EXIF
    orientation still to apply is turned upright first, and one of another shape is refused rather than
    stretched under the masks."""
    from PIL import Image, ImageDraw

    h, w = seg.image_size
    img = _as_seen(image, seg.image_size)
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    sem = seg.semantic
    colours = np.zeros((len(seg.classes) + 1, 3), dtype=np.uint8)
    colours[1:] = palette(len(seg.classes))
    base = np.asarray(img, dtype=np.float32)
    painted = np.where(sem[..., None] > 0, base * (1 - alpha) + colours[sem] * alpha, base).astype(np.uint8)
    out = Image.fromarray(painted)
    draw = ImageDraw.Draw(out)
    ids, info = seg.panoptic
    for seg_info in info:
        ys, xs = np.nonzero(ids == seg_info["id"])
        _label(draw, (int(np.median(xs)), int(np.median(ys))), seg_info["label"], out.size)
    return out
