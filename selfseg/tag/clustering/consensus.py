"""Evidence accumulation (Fred & Jain): k-means runs combined by how often they put two patches together.

Every run votes on every pair of patches; the co-association matrix (the fraction of runs that share a
cluster for each pair) is cut by average linkage where its merge heights jump the most (the longest
"lifetime"), so the number of clusters comes from the runs' agreement, not from a fixed k. Runs that
over-segment help here: where they split a region differs from run to run and averages out, while two
regions they keep apart stay apart in every run.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: Most int64 counts (128 MB) `best_overlaps` holds at once; runs with more clusters are counted in chunks.
_COUNT_CELLS = 1 << 24


@dataclass
class Consensus:
    """labels: (n,) int64 consensus clusters 0..m-1, numbered in order of first patch. heights: (n - 1,)
    float64 average-linkage merge heights (1 - co-association), ascending. lifetimes: (k_max,) the gap
    each cluster count 1..k_max survives in the merge heights; the cut takes the longest. n_clusters: m,
    known on the host (the cut's count), so callers need not read it back from the labels' device."""

    labels: torch.Tensor
    heights: np.ndarray
    lifetimes: np.ndarray
    n_clusters: int | None = None

    def __post_init__(self) -> None:
        if self.n_clusters is None:
            self.n_clusters = int(self.labels.max()) + 1


@dataclass
class DenseRuns:
    """Runs numbered 0..m-1 each, in ascending order of their own labels: labels (r, n) int64 on the runs'
    device, width the most clusters any run has. `dense_runs` makes them once for `coassociation` and
    `best_overlaps` both."""

    labels: torch.Tensor
    width: int


def dense_runs(runs: Sequence[Any] | DenseRuns) -> DenseRuns:
    """The runs (label maps as tensors or arrays, e.g. `ClusterMaps.runs`, or one (r, n) tensor) renumbered
    for counting. Sorting and ranking stay on the device; the width is its one read back, where
    `torch.unique` per run would wait for the device to size each output."""
    if isinstance(runs, DenseRuns):
        return runs
    stacked = _stack(runs)
    srt, order = stacked.sort(1)
    starts = torch.ones_like(srt, dtype=torch.bool)
    starts[:, 1:] = srt[:, 1:] != srt[:, :-1]
    ranks = starts.cumsum(1) - 1
    dense = torch.empty_like(ranks).scatter_(1, order, ranks)
    return DenseRuns(dense, int(ranks[:, -1].max()) + 1)


def coassociation(runs: Sequence[Any] | DenseRuns) -> torch.Tensor:
    """(n, n) float32 fraction of runs in which each pair of patches shares a cluster, on the runs' device.
    runs: label maps as tensors or arrays (e.g. `ClusterMaps.runs`), or `dense_runs` of them.

    Each entry is a count of runs over their number, so it is exact in float32 and the same on any device
    and in any summation order.
    """
    dense = dense_runs(runs)
    r, n = dense.labels.shape
    # Numbered 0..m-1 per run, the one-hot columns stay few; the runs' one-hots side by side then make the
    # sum of their outer products a single product.
    onehot = F.one_hot(dense.labels, dense.width).float().transpose(0, 1).reshape(n, -1)
    # A divisor on the device: CUDA multiplies by the reciprocal of a host number, which rounds some counts
    # differently from the CPU's division, and the linkage then breaks its many ties another way.
    return (onehot @ onehot.T) / torch.full((), r, dtype=torch.float32, device=onehot.device)


def _stack(runs: Sequence[Any]) -> torch.Tensor:
    """(r, n) the runs' label maps flattened, one row per run; a 2-D tensor is taken as those rows."""
    if not len(runs) or (isinstance(runs, torch.Tensor) and runs.numel() == 0):
        raise ValueError("expected at least one labeling, got none")
    if isinstance(runs, torch.Tensor) and runs.ndim == 2:
        return runs
    # a copy for a flipped, byte-swapped or read-only array, which torch takes no view of
    runs = [r if isinstance(r, torch.Tensor) else torch.from_numpy(_native(np.asarray(r))) for r in runs]
    n = runs[0].numel()
    bad = [run.numel() for run in runs if run.numel() != n]
    if bad:
        raise ValueError(f"expected labelings of one grid, got {n} and {bad[0]} patches")
    return torch.stack([run.flatten() for run in runs])


def _native(a: np.ndarray) -> np.ndarray:
    return np.array(a, dtype=a.dtype.newbyteorder("="))


def lifetime_cut(coassoc: torch.Tensor, k_max: int) -> Consensus:
    """Average-linkage tree of 1 - `coassoc`, cut at the cluster count (1..k_max) with the longest lifetime.

    Distances lie in [0, 1], so one cluster lives from the last merge up to 1: when no pair of patches is
    reliably apart, the answer is one cluster.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    n = coassoc.shape[0]
    k_max = max(1, min(int(k_max), n))
    if n == 1:
        return Consensus(torch.zeros(1, dtype=torch.long, device=coassoc.device), np.zeros(0), np.ones(1), 1)
    dist = (1.0 - coassoc).clamp_(0.0, 1.0).cpu()
    if dist.dtype not in (torch.float32, torch.float64):
        dist = dist.double()  # NumPy has no bfloat16
    # The tree is built on the CPU (scipy's nearest-neighbour chain); the condensed matrix is its only input.
    # Taking the upper triangle on the host (squareform, then float64) costs a fraction of gathering it through
    # two index tensors of n^2 / 2 entries each, and picks the same values in the same order.
    condensed = squareform(dist.numpy(), checks=False).astype(np.float64)
    tree = linkage(condensed, method="average")
    heights = tree[:, 2]
    # k clusters exist between merge n - k - 1 and merge n - k (0-based); the bounds are 0 below, 1 above.
    padded = np.concatenate([[0.0], heights, [1.0]])
    ks = np.arange(1, k_max + 1)
    lifetimes = padded[n - ks + 1] - padded[n - ks]
    k = int(ks[np.argmax(lifetimes)])  # ties: the fewest clusters
    return Consensus(_cut(tree, n, k).to(coassoc.device), heights, lifetimes, k)


def _cut(tree: np.ndarray, n: int, k: int) -> torch.Tensor:
    """Leaves' clusters after the first n - k merges, numbered in order of first leaf."""
    parent = np.arange(2 * n - 1)
    merged = tree[: n - k, :2].astype(np.int64)
    parent[merged[:, 0]] = parent[merged[:, 1]] = np.arange(n, 2 * n - k)
    # Pointer doubling: a node that points at its pointer's pointer halves its distance to its root, so log2
    # of the tree's depth whole-array passes find every root; a Python step per node costs about a millisecond
    # at 1,024 patches, a sizeable part of the consensus.
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            break
        parent = up
    _, first, inv = np.unique(parent[:n], return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return torch.as_tensor(order[inv], dtype=torch.long)


def consensus_votes(
    coassoc: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6, n_clusters: int | None = None
) -> torch.Tensor:
    """(m, n) each patch's mean co-association with each consensus cluster, normalised over clusters.

    The soft counterpart of `vote_distribution` for the CRF: a patch the runs often put with another
    cluster's patches keeps some belief in it. `eps` keeps every label possible, as there. `n_clusters`
    (m, e.g. `Consensus.n_clusters`) spares reading the largest label back from the device.
    """
    m = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    onehot = F.one_hot(labels, m).float()
    votes = (coassoc @ onehot) / onehot.sum(0)
    votes = votes.T + eps
    return votes / votes.sum(0, keepdim=True)


def best_overlaps(runs: Sequence[Any] | DenseRuns, labels: torch.Tensor, n_clusters: int | None = None
                  ) -> torch.Tensor:
    """(r, n) every run relabelled so each of its clusters takes the consensus label it overlaps most
    (ties: the lowest label). labels: (n,) consensus clusters 0..m-1; n_clusters: m if known (it must be
    at least the largest label + 1), which spares reading it back from the device.

    Many clusters may take one label (a run that split a consensus cluster) and a label may go unused (a run
    that merged two): each run's view in the consensus's label names. The runs are counted in one scatter
    (in chunks of runs when the counts would pass `_COUNT_CELLS`), with no read from the device beyond
    `dense_runs`; the counts are integers, so the result is the same on any device.
    """
    dense = dense_runs(runs)
    d = dense.labels.to(labels.device)
    r, n = d.shape
    labels = labels.flatten()
    if labels.numel() != n:
        raise ValueError(f"expected consensus labels for the runs' {n} patches, got {labels.numel()}")
    m = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    per_run = dense.width * m
    step = max(1, _COUNT_CELLS // per_run)
    out = []
    for lo in range(0, r, step):
        chunk = d[lo: lo + step]
        k = chunk.shape[0]
        cell = (torch.arange(k, device=d.device)[:, None] * dense.width + chunk) * m + labels
        inter = torch.zeros(k * per_run, dtype=torch.int64, device=d.device)
        inter.scatter_add_(0, cell.flatten(), torch.ones(k * n, dtype=torch.int64, device=d.device))
        out.append(inter.reshape(k, dense.width, m).argmax(2).gather(1, chunk))
    return torch.cat(out)


def best_overlap(run: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One run relabelled as `best_overlaps` does it: its clusters named after the consensus's."""
    return best_overlaps([run], labels)[0]
