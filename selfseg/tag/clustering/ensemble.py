"""The BCC clustering chain on any multi-scale patch features (BLIP, DINOv2, ...)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..result import ClusterMaps
from .align import align_runs, contiguous, vote_distribution
from .config import ClusteringConfig
from .crf import crf_mean_field
from .filters import mode_filter
from .lloyd import kmeans


def sincos_2d(h: int, w: int, dim: int, device: Any = "cpu") -> torch.Tensor:
    """(h, w, dim) 2-D sin-cos positional encoding from the `positional-encodings` library (as the paper)."""
    from positional_encodings.torch_encodings import PositionalEncoding2D

    return PositionalEncoding2D(dim).to(device)(torch.zeros(1, h, w, dim, device=device))[0]


def _as_tensor(f: Any, device: Any) -> torch.Tensor:
    t = f if isinstance(f, torch.Tensor) else torch.as_tensor(np.asarray(f))
    if t.ndim != 3:
        raise ValueError(f"expected each feature map as (h, w, d), got shape {tuple(t.shape)}")
    return t.to(device=device if device is not None else t.device, dtype=torch.float32)


def ensemble_cluster(
    features: Sequence[Any],
    config: ClusteringConfig | None = None,
    *,
    seed: int = 0,
    device: Any = None,
    **overrides: Any,
) -> ClusterMaps:
    """Cluster patch features given at one or more scales into one label grid.

    features: list of (h, w, d) arrays or tensors, one per scale (d may differ between scales).
    config: clustering settings (paper defaults); any field may also be passed as a keyword, e.g.
    `ensemble_cluster(feats, ks=range(2, 9))`. Returns `ClusterMaps` on the largest grid.
    """
    cfg = dataclasses.replace(config or ClusteringConfig(), **overrides)
    if not features:
        raise ValueError("expected at least one feature map, got none")
    feats = [_as_tensor(f, device) for f in features]
    grid = max((f.shape[0], f.shape[1]) for f in feats)
    t: dict[str, float] = {"kmeans": 0.0}
    runs, keys = [], []
    for si, f in enumerate(feats):
        h, w, _ = f.shape
        x = f.reshape(h * w, -1)
        if cfg.pos_dim:
            x = torch.cat([x, sincos_2d(h, w, cfg.pos_dim, f.device).reshape(h * w, -1)], 1)
        for k in cfg.ks:
            t0 = time.perf_counter()
            res = kmeans(x, min(int(k), h * w), n_init=cfg.kmeans_n_init, max_iter=cfg.kmeans_max_iter,
                         tol=cfg.kmeans_tol, seed=seed)
            lab = res.labels.reshape(1, 1, h, w).float()
            runs.append(F.interpolate(lab, size=grid, mode="nearest")[0, 0].long())
            keys.append((si, int(k)))
            t["kmeans"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    aligned, ref = align_runs(runs, cfg.align_cost)
    n_labels = int(aligned[ref].max()) + 1
    votes = vote_distribution(aligned, n_labels)
    t["align"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    logits = crf_mean_field(votes[None], cfg.crf_weight, cfg.crf_theta, cfg.crf_iters, cfg.crf_filter_size)
    crf = logits[0].argmax(0)
    t["crf"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if cfg.mode_filter_passes > 0:
        filtered, passes = mode_filter(crf, cfg.mode_filter_size, cfg.mode_filter_passes)
    else:
        filtered, passes = crf, 0
    labels = contiguous(filtered)
    t["filter"] = time.perf_counter() - t0

    def np_(x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    return ClusterMaps(
        labels=np_(labels), runs=[np_(r) for r in runs], run_keys=keys, reference=ref,
        aligned=[np_(a) for a in aligned], votes=np_(votes), crf=np_(crf), filtered=np_(filtered),
        filter_passes=passes, timings=t,
    )
