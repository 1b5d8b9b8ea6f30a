"""k-means in torch, on whatever device the features live on.

Follows scikit-learn's `KMeans(algorithm="lloyd")` step for step so the two agree on the same data:
features centred first, greedy k-means++ seeding (2 + log k candidate centres per step), Lloyd iterations,
the tolerance scaled by the mean feature variance, a final assignment step, empty clusters moved to the
points farthest from their centres, and the best of `n_init` restarts by inertia.

`kmeans_batch` does several such runs on the same features at once (different k and seed per run); each run
gives what `kmeans` gives it alone, without the device waiting for the host at every step. `kmeans_each` does
them one after the other (one seed, different k), the features prepared once.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class KMeansResult:
    labels: torch.Tensor  # (n,) int64
    centers: torch.Tensor  # (k, d)
    inertia: float
    n_iter: int


def _wide(device: torch.device) -> torch.dtype:
    """The dtype of the k-means++ draws and running sums: float64, or float32 on MPS, which has no float64
    (the draws there differ from the CPU's in their last bits)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _sq_dists(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    # ||x||^2 - 2 x.c + ||c||^2, clamped: the expansion can go slightly negative in float arithmetic.
    return (x_sq[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0)


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float features minus their mean, and the mean: as scikit-learn does before clustering, since the
    distance expansion loses precision to a common offset; distances and labels do not change."""
    if x.ndim != 2:
        raise ValueError(f"expected features of shape (n, d), got {tuple(x.shape)}")
    x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("expected finite features, got NaN or inf")
    mean = x.mean(0)
    return x - mean, mean


@dataclass
class _Prepared:
    """What every run on the same features starts from: the centred features, their mean, the rows' squared
    norms and the mean feature variance (which scales the tolerance)."""

    x: torch.Tensor
    mean: torch.Tensor
    x_sq: torch.Tensor
    var: float


def _prepare(x: torch.Tensor) -> _Prepared:
    x, mean = _centred(x)
    return _Prepared(x, mean, (x * x).sum(1), float(x.var(0, unbiased=False).mean()))


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
            wide = _wide(x.device)
            r = torch.rand(trials, generator=generator, device="cpu", dtype=torch.float64).to(x.device, wide) * pot
            cand = torch.searchsorted(torch.cumsum(closest.to(wide), 0), r.to(wide)).clamp_(max=n - 1)
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
    return _kmeans(_prepare(x), k, n_init=n_init, max_iter=max_iter, tol=tol, seed=seed, init=init)


def kmeans_each(
    x: torch.Tensor, ks: Sequence[int], *, n_init: int = 1, max_iter: int = 300, tol: float = 1e-4, seed: int = 0,
) -> list[KMeansResult]:
    """`kmeans(x, k, seed=seed, ...)` for every k in `ks`, one after the other, with the same results: the
    features are checked, centred and measured (norms, variance) once for all of them, where a `kmeans` call
    per k repeats that work, a sizeable part of a run on a patch grid."""
    prepared = _prepare(x)
    return [_kmeans(prepared, k, n_init=n_init, max_iter=max_iter, tol=tol, seed=seed) for k in ks]


def _kmeans(
    p: _Prepared, k: int, *, n_init: int, max_iter: int, tol: float, seed: int, init: torch.Tensor | None = None,
) -> KMeansResult:
    x, mean, x_sq = p.x, p.mean, p.x_sq
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"expected 1 <= k <= n_samples={n}, got k={k}")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"expected n_init >= 1 and max_iter >= 1, got {n_init} and {max_iter}")
    if init is not None and tuple(init.shape) != (k, x.shape[1]):
        raise ValueError(f"expected init of shape (k, d) = {(k, x.shape[1])}, got {tuple(init.shape)}")
    abs_tol = p.var * tol
    generator = torch.Generator(device="cpu").manual_seed(seed)
    best: KMeansResult | None = None
    for _ in range(1 if init is not None else n_init):
        c = init.to(x) - mean if init is not None else kmeans_plusplus(x, k, generator, x_sq)
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
            best = KMeansResult(labels=labels, centers=c + mean, inertia=inertia, n_iter=n_iter)
    assert best is not None
    return best


def kmeans_plusplus_batch(
    x: torch.Tensor, ks: Sequence[int], generators: Sequence[torch.Generator], x_sq: torch.Tensor
) -> torch.Tensor:
    """`kmeans_plusplus` for several runs on the same points at once: (runs, max k, d) centres, each run's rows
    past its own k zero.

    Run b draws from `generators[b]` with the same calls, in the same order, as `kmeans_plusplus(x, ks[b],
    generators[b], x_sq)`, so it starts from the same centres and leaves its generator in the same state.
    The numbers are drawn before the first step and scaled by the potential on the device, so no step waits
    for the device; a run that meets a zero potential (fewer distinct points than centres) is seeded again
    by `kmeans_plusplus`, whose draws there depend on it.
    """
    n = x.shape[0]
    # Longest runs first: the runs still seeding at a step are then a prefix.
    order = sorted(range(len(ks)), key=lambda b: -ks[b])
    ks = [int(ks[b]) for b in order]
    gens = [generators[b] for b in order]
    kmax = ks[0]
    trials = [2 + int(math.log(k)) for k in ks]
    states = [g.get_state() for g in gens]
    first = [int(torch.randint(n, (1,), generator=g, device="cpu").item()) for g in gens]
    draws = torch.zeros(max(kmax - 1, 0), len(ks), max(trials), dtype=torch.float64)
    for j, (g, k, t) in enumerate(zip(gens, ks, trials)):
        if k > 1:
            draws[: k - 1, j, :t] = torch.stack(
                [torch.rand(t, generator=g, device="cpu", dtype=torch.float64) for _ in range(k - 1)])
    draws = draws.to(x.device, _wide(x.device))
    no_trial = (torch.arange(max(trials))[None, :] >= torch.tensor(trials)[:, None]).to(x.device)

    x2 = 2.0 * x
    idx = torch.zeros(len(ks), kmax, dtype=torch.long, device=x.device)
    idx[:, 0] = torch.tensor(first).to(x.device)
    # One product per run, as `kmeans_plusplus` computes it: a one-column product rounds differently from a
    # wider one, and the draws below compare against sums of these distances.
    closest = torch.stack([_sq_dists(x, x[f : f + 1], x_sq)[:, 0] for f in first])
    pot = closest.sum(1)
    degenerate = torch.zeros(len(ks), dtype=torch.bool, device=x.device)
    for step in range(1, kmax):
        m = sum(k > step for k in ks)
        degenerate[:m] |= pot[:m] <= 0
        r = draws[step - 1, :m] * pot[:m, None]
        cand = torch.searchsorted(torch.cumsum(closest[:m].to(draws.dtype), 1), r).clamp_(max=n - 1)
        c = x[cand]  # (m, trials, d)
        d = (x_sq[:, None] - torch.matmul(x2, c.transpose(1, 2)) + (c * c).sum(2)[:, None, :]).clamp_min_(0)
        d = torch.minimum(closest[:m, :, None], d)
        pots = d.sum(1).masked_fill_(no_trial[:m], math.inf)
        best = pots.argmin(1, keepdim=True)
        idx[:m, step] = cand.gather(1, best)[:, 0]
        closest[:m] = d.gather(2, best[:, None, :].expand(m, n, 1))[:, :, 0]
        pot[:m] = pots.gather(1, best)[:, 0]

    absent = torch.arange(kmax, device=x.device)[None, :] >= torch.tensor(ks, device=x.device)[:, None]
    centers = x[idx].masked_fill_(absent[:, :, None], 0.0)
    if bool(degenerate.any()):
        for j in torch.nonzero(degenerate).flatten().tolist():
            gens[j].set_state(states[j])
            centers[j, : ks[j]] = kmeans_plusplus(x, ks[j], gens[j], x_sq)
    back = torch.tensor(order).argsort().to(x.device)
    return centers[back]


def kmeans_batch(
    x: torch.Tensor,
    ks: Sequence[int],
    seeds: Sequence[int],
    *,
    max_iter: int = 300,
    tol: float = 1e-4,
    n_init: int = 1,
) -> list[KMeansResult]:
    """`kmeans(x, ks[b], seed=seeds[b], ...)` for every b, done together: one result per run, in order.

    Each run follows `kmeans` step for step (its seeding draws, its own stopping rule, sklearn's empty-cluster
    rule, the best of its `n_init` restarts) and agrees with it up to float rounding (on the CPU the products
    and sums are formed as there, and come out the same); a run that has stopped is left as it is while the
    others go on. The device waits for the host once per Lloyd iteration (to
    learn which runs stopped), not at every step of every run.
    """
    p = _prepare(x)
    x, mean, x_sq = p.x, p.mean, p.x_sq
    n = x.shape[0]
    ks = [int(k) for k in ks]
    if not ks or len(ks) != len(seeds):
        raise ValueError(f"expected one seed per k and at least one run, got {len(ks)} ks and {len(seeds)} seeds")
    if not all(1 <= k <= n for k in ks):
        raise ValueError(f"expected 1 <= k <= n_samples={n} for every run, got ks={ks}")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"expected n_init >= 1 and max_iter >= 1, got {n_init} and {max_iter}")
    abs_tol = p.var * tol
    gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    best: list[KMeansResult | None] = [None] * len(ks)
    for _ in range(n_init):
        c, n_iter = _lloyd_batch(x, ks, kmeans_plusplus_batch(x, ks, gens, x_sq), x_sq, max_iter, abs_tol)
        d = _sq_dists_batch(x, c, x_sq, torch.tensor(ks, device=x.device))
        labels = d.argmin(2)
        inertia = d.gather(2, labels[:, :, None])[:, :, 0].T.contiguous().sum(1).tolist()
        labels = labels.T.contiguous()
        for b, k in enumerate(ks):
            if best[b] is None or inertia[b] < best[b].inertia:
                best[b] = KMeansResult(labels=labels[b], centers=c[b, :k] + mean, inertia=inertia[b],
                                       n_iter=n_iter[b])
    return best  # type: ignore[return-value]


def _sq_dists_batch(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """(n, runs, k) `_sq_dists` of every run's centres (runs, k, d), +inf to the centres past a run's k."""
    runs, k, dim = c.shape
    # One product for all runs, in the same expression as `_sq_dists`: each column comes out as it does there.
    d = x_sq[:, None, None] - (2.0 * x @ c.reshape(-1, dim).T).view(-1, runs, k) + (c * c).sum(2)[None]
    absent = torch.arange(k, device=x.device)[None, :] >= ks[:, None]
    return d.clamp_min_(0).masked_fill_(absent[None], math.inf)


def _lloyd_batch(
    x: torch.Tensor, ks: list[int], c: torch.Tensor, x_sq: torch.Tensor, max_iter: int, abs_tol: float
) -> tuple[torch.Tensor, list[int]]:
    """Lloyd iterations of every run from centres `c` (runs, max k, d) until each stops: (centres, iterations)."""
    c = c.clone()
    n = x.shape[0]
    ks_dev = torch.tensor(ks, device=x.device)
    labels = torch.full((len(ks), n), -1, dtype=torch.long, device=x.device)
    n_iter = [0] * len(ks)
    active = list(range(len(ks)))
    sel = torch.arange(len(ks), device=x.device)
    for it in range(1, max_iter + 1):
        kk = max(ks[b] for b in active)
        m = len(active)
        old = c[sel, :kk]
        new_labels = _sq_dists_batch(x, old, x_sq, ks_dev[sel]).argmin(2).T.contiguous()
        if x.device.type == "cpu":
            # Point by point, as `_m_step` adds them: the same sums to the last bit.
            sums = torch.stack([torch.zeros(kk, x.shape[1], dtype=x.dtype).index_add_(0, lab, x) for lab in new_labels])
            counts = torch.stack([torch.bincount(lab, minlength=kk) for lab in new_labels]).to(x.dtype)
        else:
            # index_add_ adds with atomics on a GPU, in an order that changes from call to call, and bincount
            # waits for the host to size its output; a product of one-hot labels does neither.
            onehot = F.one_hot(new_labels, kk).to(x.dtype)
            sums = onehot.transpose(1, 2) @ x
            counts = onehot.sum(1)
        new_c = sums / counts.clamp_min(1)[:, :, None]
        shift = ((new_c - old) ** 2).sum((1, 2))
        empty = ((counts == 0) & (torch.arange(kk, device=x.device)[None, :] < ks_dev[sel][:, None])).any(1)
        same, small, empty = torch.stack([(new_labels == labels[sel]).all(1), shift.to(_wide(x.device)) <= abs_tol,
                                          empty]).tolist()
        for j in [j for j in range(m) if empty[j]]:
            # Rare (k-means++ seeding makes it so): the host-side rule of `kmeans`, run by run.
            k = ks[active[j]]
            _fill_empty(x, new_labels[j], old[j, :k], x_sq, sums[j, :k], counts[j, :k])
            new_c[j] = sums[j] / counts[j].clamp_min(1)[:, None]
            small[j] = float(((new_c[j, :k] - old[j, :k]) ** 2).sum()) <= abs_tol
        c[sel, :kk] = new_c
        labels[sel] = new_labels
        for b in active:
            n_iter[b] = it
        still = [j for j in range(m) if not (same[j] or small[j])]
        if not still:
            break
        if len(still) < m:
            active = [active[j] for j in still]
            sel = torch.tensor(active).to(x.device)
    return c, n_iter


def _m_step(x: torch.Tensor, labels: torch.Tensor, k: int, old: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    _fill_empty(x, labels, old, x_sq, sums, counts)
    return sums / counts.clamp_min(1)[:, None]


def _fill_empty(
    x: torch.Tensor, labels: torch.Tensor, old: torch.Tensor, x_sq: torch.Tensor, sums: torch.Tensor,
    counts: torch.Tensor,
) -> None:
    """Give each empty cluster of `sums` / `counts` (k, d) / (k,) a point, in place."""
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
