"""k-means in torch, on whatever device the features live on.

Follows scikit-learn's `KMeans(algorithm="lloyd")` step for step so the two agree on the same data:
greedy k-means++ seeding (2 + log k candidate centres per step), Lloyd iterations, the tolerance scaled
by the mean feature variance, a final assignment step, empty clusters moved to the points farthest from
their centres, and the best of `n_init` restarts by inertia.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class KMeansResult:
    labels: torch.Tensor  # (n,) int64
    centers: torch.Tensor  # (k, d)
    inertia: float
    n_iter: int


def _sq_dists(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    # ||x||^2 - 2 x.c + ||c||^2, clamped: the expansion can go slightly negative in float arithmetic.
    return (x_sq[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0)


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator, x_sq: torch.Tensor) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, with sklearn's local trials)."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator, device="cpu").item()
    centers = [x[first]]
    closest = _sq_dists(x, x[first : first + 1], x_sq)[:, 0]
    pot = closest.sum()
    for _ in range(1, k):
        if pot <= 0:  # every point already sits on a centre: pick any remaining point
            cand = torch.randint(n, (trials,), generator=generator, device="cpu").to(x.device)
        else:
            r = torch.rand(trials, generator=generator, device="cpu", dtype=torch.float64).to(x.device) * pot
            cand = torch.searchsorted(torch.cumsum(closest.double(), 0), r.to(torch.float64)).clamp_(max=n - 1)
        d = _sq_dists(x, x[cand], x_sq)  # (n, trials)
        d = torch.minimum(closest[:, None], d)
        pots = d.sum(0)
        best = int(torch.argmin(pots))
        centers.append(x[cand[best]])
        closest, pot = d[:, best], pots[best]
    return torch.stack(centers)


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    init: torch.Tensor | None = None,
) -> KMeansResult:
    """Cluster the rows of `x` (n, d) into `k` groups. `init` (k, d) fixes the starting centres."""
    if x.ndim != 2:
        raise ValueError(f"expected features of shape (n, d), got {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"expected 1 <= k <= n_samples={n}, got k={k}")
    x = x.float()
    x_sq = (x * x).sum(1)
    abs_tol = float(x.var(0, unbiased=False).mean()) * tol
    generator = torch.Generator(device="cpu").manual_seed(seed)
    best: KMeansResult | None = None
    for _ in range(1 if init is not None else n_init):
        c = init.to(x).clone() if init is not None else kmeans_plusplus(x, k, generator, x_sq)
        labels = torch.full((n,), -1, dtype=torch.long, device=x.device)
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            new_labels = _sq_dists(x, c, x_sq).argmin(1)
            new_c = _m_step(x, new_labels, k, c, x_sq)
            shift = float(((new_c - c) ** 2).sum())
            c = new_c
            if torch.equal(new_labels, labels):
                break  # strict convergence: assignments stopped changing
            labels = new_labels
            if shift <= abs_tol:
                break
        d = _sq_dists(x, c, x_sq)
        labels = d.argmin(1)
        inertia = float(d.gather(1, labels[:, None]).sum())
        if best is None or inertia < best.inertia:
            best = KMeansResult(labels=labels, centers=c, inertia=inertia, n_iter=n_iter)
    assert best is not None
    return best


def _m_step(x: torch.Tensor, labels: torch.Tensor, k: int, old: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty):
        # As scikit-learn does: each empty cluster takes over one of the points farthest from their own
        # (previous) centre, and that point leaves the cluster it was in.
        far = _sq_dists(x, old, x_sq).gather(1, labels[:, None])[:, 0]
        movers = torch.argsort(far, descending=True)[: len(empty)]
        donors = labels[movers]
        sums.index_add_(0, donors, -x[movers])
        counts.index_add_(0, donors, -torch.ones_like(donors, dtype=x.dtype))
        sums[empty] = x[movers]
        counts[empty] = 1
    return sums / counts.clamp_min(1)[:, None]
