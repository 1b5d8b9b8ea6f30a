"""BCC clustering on any multi-scale patch features (BLIP, DINOv2, ...): k-means runs -> one map -> CRF."""
from __future__ import annotations

import dataclasses
import functools
import numbers
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...models.loading import exact_float32
from ..result import ClusterMaps
from .align import align_runs, contiguous, vote_distribution
from .config import READ_BY, ClusteringConfig
from .consensus import best_overlaps, coassociation, consensus_votes, dense_runs, lifetime_cut
from .crf import crf_mean_field
from .filters import mode_filter
from .lloyd import kmeans_batch, kmeans_each


def _now(device: torch.device) -> float:
    """The clock once the device's queued work is done: on a GPU a stage's time is its own kernels', not the
    first later stage that reads a result back."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def sincos_2d(h: int, w: int, dim: int, device: Any = "cpu") -> torch.Tensor:
    """(h, w, dim) 2-D sin-cos positional encoding from the `positional-encodings` library (as the paper)."""
    return _sincos_2d(h, w, dim, torch.device(device)).clone()


@functools.lru_cache(maxsize=16)
def _sincos_2d(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    # Kept: every image of a run has the same grids, and building the encoder module and running it costs
    # about as much as a k-means run on the grid. Callers only read it (the k-means input is a new tensor).
    from positional_encodings.torch_encodings import PositionalEncoding2D

    return PositionalEncoding2D(dim).to(device)(torch.zeros(1, h, w, dim, device=device))[0]


def _as_tensor(f: Any, device: Any) -> torch.Tensor:
    if isinstance(f, torch.Tensor):
        t = f.detach()
    else:
        a = np.asarray(f)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"expected numeric patch features, got an array of {a.dtype}")
        # A native, contiguous, writable copy (torch takes no flipped, byte-swapped or read-only array as it
        # is), float64 kept until the range check below.
        t = torch.from_numpy(np.array(a, dtype=np.float64 if a.dtype.kind == "f" and a.dtype.itemsize > 4
                                      else np.float32))
    if t.dtype == torch.float64 and t.numel() and bool(torch.isfinite(t).all()) \
            and float(t.abs().max()) > _F32_MAX:  # the cast below would make these inf
        raise ValueError(f"expected patch features that fit float32, got values too large (largest "
                         f"{float(t.abs().max()):.3g}); scale them down")
    if t.ndim != 3:
        raise ValueError(f"expected each feature map as (h, w, d), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"expected each feature map as a non-empty (h, w, d), got shape {tuple(t.shape)}")
    t = t.to(device=device if device is not None else t.device, dtype=torch.float32)
    # k-means on a NaN silently assigns garbage (every comparison with it is false), so refuse it here.
    if not bool(torch.isfinite(t).all()):
        raise ValueError("expected finite patch features, got NaN or inf")
    # k-means++ sums squared distances over every patch in float32: past its range they turn to inf, and
    # below it to 0, and either way the starts are drawn blind. The largest squared norm is measured on values
    # scaled to at most 1, so neither hides in the measure itself (and no float64, which MPS lacks).
    peak = float(t.abs().max())
    top = peak * peak * float((t / peak).square().sum(-1).max()) if peak > 0 else 0.0
    n = t.shape[0] * t.shape[1]
    if top * 4 * n > _F32_MAX:
        raise ValueError("expected patch features whose squared distances, summed over the patches, fit "
                         f"float32; got values too large (largest {peak:.3g}); scale them down")
    if 0 < top < _F32_SMALL:
        raise ValueError("expected patch features whose squared norms float32 can tell apart; got values too "
                         f"small (largest {peak:.3g}); scale them up")
    return t


_F32_MAX = float(torch.finfo(torch.float32).max)
# Squared norms below float32's smallest normal number leave squared distances subnormal, or zero.
_F32_SMALL = float(torch.finfo(torch.float32).tiny)


def _to_grid(labels: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(n, h, w) label maps resized to `grid` by nearest neighbour as OpenCV's INTER_NEAREST does (the
    released code's resize): target row y takes source row floor(y * (1 / (H / h))), in double precision.
    torch's "nearest" computes the scale in float32 and picks another row for some sizes (14 -> 18)."""
    rows, cols = (torch.as_tensor(np.minimum(np.floor(np.arange(big) * (1.0 / (big / small))), small - 1),
                                  dtype=torch.long, device=labels.device)
                  for small, big in zip(labels.shape[-2:], grid))
    return labels.index_select(-2, rows).index_select(-1, cols)


def _features(f: torch.Tensor, pos_dim: int) -> torch.Tensor:
    """(h * w, d [+ pos_dim]) k-means input of one scale: its patch features and their positional encoding."""
    h, w, _ = f.shape
    x = f.reshape(h * w, -1)
    if pos_dim:
        x = torch.cat([x, _sincos_2d(h, w, pos_dim, f.device).reshape(h * w, -1)], 1)
    return x


def _kmeans_runs(
    feats: list[torch.Tensor], ks: Sequence[int], cfg: ClusteringConfig, seed: int, grid: tuple[int, int],
    t: dict[str, float],
) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """One k-means run per (scale, k), resized (nearest) to `grid`, each seeded with `seed`.

    A shared seed makes the k-means++ starts of neighbouring k share their first centres, so their splits
    agree by construction, and agreement is what a consensus counts.
    """
    runs, keys = [], []
    for si, f in enumerate(feats):
        h, w, _ = f.shape
        x = _features(f, cfg.pos_dim)
        t0 = _now(f.device)
        found = kmeans_each(x, [min(int(k), h * w) for k in ks], n_init=cfg.kmeans_n_init,
                            max_iter=cfg.kmeans_max_iter, tol=cfg.kmeans_tol, seed=seed)
        for k, res in zip(ks, found):
            runs.append(_to_grid(res.labels.reshape(h, w), grid))
            keys.append((si, int(k)))
        t["kmeans"] += _now(f.device) - t0
    return runs, keys


def _coassoc_runs(
    feats: list[torch.Tensor], cfg: ClusteringConfig, seed: int, grid: tuple[int, int], t: dict[str, float]
) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """The runs at `coassoc_ks` at every scale, repeated until there are `coassoc_runs`, resized to `grid`.

    Runs are numbered repeat by repeat, scale by scale, k by k, and run i draws its own seed from (seed, i).
    Runs whose k is not below the scale's patch count are left out (every patch alone: no evidence of what
    belongs together). All runs of one scale share their features, so one `kmeans_batch` does them together.
    """
    per_scale = [[int(k) for k in cfg.coassoc_ks if int(k) < f.shape[0] * f.shape[1]] for f in feats]
    per_repeat = sum(len(ks) for ks in per_scale)
    if per_repeat == 0:
        return [], []
    repeats = -(-cfg.coassoc_runs // per_repeat)
    keys = [(si, k) for _ in range(repeats) for si, ks in enumerate(per_scale) for k in ks]
    runs: list[torch.Tensor] = [torch.empty(0)] * len(keys)
    for si, f in enumerate(feats):
        mine = [i for i, (s, _) in enumerate(keys) if s == si]
        if not mine:
            continue
        h, w, _ = f.shape
        x = _features(f, cfg.coassoc_pos_dim)
        t0 = _now(f.device)
        seeds = [_run_seed(seed, i) for i in mine]
        res = kmeans_batch(x, [keys[i][1] for i in mine], seeds, n_init=cfg.kmeans_n_init,
                           max_iter=cfg.kmeans_max_iter, tol=cfg.kmeans_tol)
        for i, run in zip(mine, _to_grid(torch.stack([r.labels for r in res]).reshape(len(res), h, w), grid)):
            runs[i] = run
        t["kmeans"] += _now(f.device) - t0
    return runs, keys


def _run_seed(seed: int, i: int) -> int:
    """Run i's k-means seed. SeedSequence reads [seed, i] as 32-bit words padded with zeros, so a seed of
    2**32 or more is written as two words and a marker: [5 + 7 * 2**32, 0] would read as [5, 7]."""
    words = [seed, i] if seed < 2**32 else [seed & 0xFFFFFFFF, seed >> 32, i, 1]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


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
    config: clustering settings (selfseg's defaults: the co-association consensus); any field may also be
    passed as a keyword, e.g. `ensemble_cluster(feats, consensus="chain", ks=range(2, 9))`. A keyword only
    the other consensus reads is an error rather than silently unused, and so is such a field of `config` set
    away from its default (ClusteringConfig refuses it). Returns `ClusterMaps` on the largest grid.

    `consensus` picks how the k-means runs become one map before the CRF: "chain" (the paper) aligns the
    runs at `ks` to the run with the most clusters and votes; "coassoc" cuts the co-association of the
    runs at `coassoc_ks` where its average-linkage tree is most stable (see `consensus.py`).
    """
    base = config or ClusteringConfig()
    consensus = overrides.get("consensus", base.consensus)
    other = "chain" if consensus != "chain" else "coassoc"
    # A value given only to change nothing (all of a config's fields passed on) is no mistake. Checked before
    # the config's own check of the same rule, so the message speaks of this call's keywords.
    unread = sorted(k for k in set(overrides) & set(READ_BY[other]) if overrides[k] != getattr(base, k))
    if unread:
        hint = "" if "consensus" in overrides else f"; pass consensus={other!r} too"
        raise ValueError(f"{', '.join(unread)}: read by consensus={other!r} only, and this call's consensus is "
                         f"{consensus!r}{hint}")
    cfg = dataclasses.replace(base, **overrides)
    if isinstance(features, (np.ndarray, torch.Tensor)):  # one map, or a batch: not a list of scales
        raise ValueError(f"expected a list of (h, w, d) feature maps, one per scale, got one array of shape "
                         f"{tuple(features.shape)}; pass [features] for one scale")
    if not features:
        raise ValueError("expected at least one feature map, got none")
    feats = [_as_tensor(f, device) for f in features]
    if not (isinstance(seed, numbers.Integral) and 0 <= seed < 2**63):
        raise ValueError(f"expected a seed in 0..2**63-1, got {seed!r}")
    # The grid with the most patches (first on a tie): every map is resized to it.
    grid = max(((f.shape[0], f.shape[1]) for f in feats), key=lambda hw: hw[0] * hw[1])
    # float32 on a GPU as on the CPU: no TF32 in the distances or the CRF's filter (labels are the same).
    with exact_float32(feats[0].device, torch.float32):
        if cfg.consensus == "coassoc":
            return _coassoc_cluster(feats, cfg, seed, grid, {"kmeans": 0.0})
        return _chain_cluster(feats, cfg, seed, grid, {"kmeans": 0.0})


def _chain_cluster(
    feats: list[torch.Tensor], cfg: ClusteringConfig, seed: int, grid: tuple[int, int], t: dict[str, float]
) -> ClusterMaps:
    runs, keys = _kmeans_runs(feats, cfg.ks, cfg, seed, grid, t)

    dev = feats[0].device
    t0 = _now(dev)
    aligned, ref = align_runs(runs, cfg.align_cost)
    n_labels = int(aligned[ref].max()) + 1
    votes = vote_distribution(aligned, n_labels)
    t["align"] = _now(dev) - t0

    crf, filtered, labels, passes = _smooth(votes, cfg, t)
    return ClusterMaps(
        labels=_np(labels), runs=_nps(runs), run_keys=keys, reference=ref,
        aligned=_nps(aligned), votes=_np(votes), crf=_np(crf), filtered=_np(filtered),
        filter_passes=passes, timings=t,
    )


def _uniform(f: torch.Tensor) -> bool:
    """Every patch the same feature vector, to float32 rounding of the largest value."""
    flat = f.reshape(-1, f.shape[-1])
    spread = float((flat - flat[:1]).abs().max())
    return spread <= 1e-6 * max(float(flat.abs().max()), 1e-30)


def _coassoc_cluster(
    feats: list[torch.Tensor], cfg: ClusteringConfig, seed: int, grid: tuple[int, int], t: dict[str, float]
) -> ClusterMaps:
    if all(_uniform(f) for f in feats):
        # No patch differs from another beyond rounding: k-means would split noise, or position, into tiles.
        labels = torch.zeros(grid, dtype=torch.long, device=feats[0].device)
        return _coassoc_maps(labels, [], [], [], torch.ones((1,) + grid, device=labels.device), np.zeros(0),
                             np.ones(1), cfg, t)
    runs, keys = _coassoc_runs(feats, cfg, seed, grid, t)
    if not runs:
        sizes = [f"{f.shape[0]}x{f.shape[1]}" for f in feats]
        raise ValueError(f"expected more patches than the smallest of coassoc_ks={list(cfg.coassoc_ks)}, got "
                         f"grids {', '.join(sizes)}: lower clustering.coassoc_ks or use consensus: chain")

    dev = feats[0].device
    t0 = _now(dev)
    dense = dense_runs(torch.stack(runs).reshape(len(runs), -1))
    coassoc = coassociation(dense)
    cons = lifetime_cut(coassoc, max(int(k) for _, k in keys))
    votes = consensus_votes(coassoc, cons.labels, n_clusters=cons.n_clusters).reshape((-1,) + grid)
    t["consensus"] = _now(dev) - t0

    t0 = _now(dev)
    aligned = list(best_overlaps(dense, cons.labels, cons.n_clusters).reshape((-1,) + grid))
    t["align"] = _now(dev) - t0
    return _coassoc_maps(cons.labels.reshape(grid), runs, keys, aligned, votes, cons.heights, cons.lifetimes,
                         cfg, t)


def _coassoc_maps(
    cut: torch.Tensor, runs: list[torch.Tensor], keys: list[tuple[int, int]], aligned: list[torch.Tensor],
    votes: torch.Tensor, heights: np.ndarray, lifetimes: np.ndarray, cfg: ClusteringConfig, t: dict[str, float],
) -> ClusterMaps:
    t.setdefault("consensus", 0.0)
    t.setdefault("align", 0.0)
    crf, filtered, labels, passes = _smooth(votes, cfg, t)
    return ClusterMaps(
        labels=_np(labels), runs=_nps(runs), run_keys=keys, reference=-1,
        aligned=_nps(aligned), votes=_np(votes), crf=_np(crf), filtered=_np(filtered),
        filter_passes=passes, timings=t, consensus="coassoc", consensus_labels=_np(cut), merge_heights=heights,
        lifetimes=lifetimes,
    )


def _smooth(
    votes: torch.Tensor, cfg: ClusteringConfig, t: dict[str, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """CRF on the (m, H, W) votes, then the mode filter: (crf argmax, filtered, contiguous labels, passes)."""
    t0 = _now(votes.device)
    logits = crf_mean_field(votes[None], cfg.crf_weight, cfg.crf_theta, cfg.crf_iters, cfg.crf_filter_size)
    crf = logits[0].argmax(0)
    t["crf"] = _now(votes.device) - t0

    t0 = time.perf_counter()
    if cfg.mode_filter_passes > 0:
        filtered, passes = mode_filter(crf, cfg.mode_filter_size, cfg.mode_filter_passes)
    else:
        filtered, passes = crf, 0
    labels = contiguous(filtered)
    t["filter"] = _now(votes.device) - t0
    return crf, filtered, labels, passes


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _nps(maps: list[torch.Tensor]) -> list[np.ndarray]:
    """Same-shape maps as arrays, read back from their device in one copy rather than one each."""
    return list(_np(torch.stack(maps))) if maps else []
