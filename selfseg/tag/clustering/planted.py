"""Planted-region patch features: a known partition to score clustering methods against.

A scene is a Voronoi partition of a square grid into R regions, each region a random mean in `dim`
dimensions (N(0, mean_scale^2) per dimension, so two means lie about mean_scale * sqrt(2 dim) apart),
plus i.i.d. Gaussian noise of std `noise` per dimension. The same partition is sampled (nearest) at
every grid size, with independent noise per grid, as `ensemble_cluster` sees one image at two scales.
Scored by class-agnostic mIoU (`cmiou`), the Self-Seg metric for cluster maps.

NumPy only, so the benchmark and the tests build the same scenes without torch.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The planted benchmark's cells: planted region counts and noise std per dimension.
REGIONS = (4, 6, 8)
NOISES = (1.0, 2.0, 3.0)
#: Grid sizes of the two scales (BCC's 384 and 512 px with 16-px patches).
GRIDS = (24, 32)
DIM = 256


@dataclass
class PlantedScene:
    """gt: (G, G) planted region ids on the largest grid; features: one (g, g, dim) float32 map per grid."""

    gt: np.ndarray
    features: list[np.ndarray]
    n_regions: int
    noise: float
    scene: int


def voronoi_regions(n_regions: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) map of the nearest of `n_regions` uniform random sites; redrawn until none is empty."""
    c = np.arange(size) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    while True:
        sites = rng.uniform(0, size, (n_regions, 2))
        d = (yy[..., None] - sites[:, 0]) ** 2 + (xx[..., None] - sites[:, 1]) ** 2
        regions = d.argmin(-1)
        if len(np.unique(regions)) == n_regions:
            return regions


def sample_nearest(regions: np.ndarray, size: int) -> np.ndarray:
    """A square label map sampled at size x size cell centres, nearest neighbour."""
    idx = np.floor((np.arange(size) + 0.5) * regions.shape[0] / size).astype(int)
    return regions[np.ix_(idx, idx)]


def planted_scene(
    n_regions: int,
    noise: float,
    scene: int = 0,
    *,
    dim: int = DIM,
    grids: Sequence[int] = GRIDS,
    mean_scale: float = 1.0,
) -> PlantedScene:
    """One scene; the same (n_regions, noise, scene) always gives the same arrays."""
    if n_regions < 1 or noise < 0 or dim < 1 or not grids:
        raise ValueError(f"expected n_regions >= 1, noise >= 0, dim >= 1 and a grid size, got "
                         f"{n_regions}, {noise}, {dim}, {list(grids)}")
    rng = np.random.default_rng([n_regions, round(noise * 1000), scene])
    top = max(grids)
    gt = voronoi_regions(n_regions, rng, top)
    means = rng.normal(size=(n_regions, dim)) * mean_scale
    feats = []
    for g in grids:
        lab = sample_nearest(gt, g)
        feats.append((means[lab] + rng.normal(size=lab.shape + (dim,)) * noise).astype(np.float32))
    return PlantedScene(gt=gt, features=feats, n_regions=n_regions, noise=noise, scene=scene)


def cmiou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Class-agnostic mIoU: each ground-truth region takes its best IoU over predicted clusters, averaged."""
    gt, pred = np.asarray(gt).ravel(), np.asarray(pred).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"expected maps of one size, got {gt.size} and {pred.size} cells")
    _, g = np.unique(gt, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    inter = np.zeros((g.max() + 1, p.max() + 1))
    np.add.at(inter, (g, p), 1)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    return float((inter / union).max(1).mean())
