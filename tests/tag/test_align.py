from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from selfseg.tag.clustering import align_runs, match_cost, vote_distribution


def _grid(seed=0, k=4, size=16):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, k, size=(size, size)))


@pytest.mark.parametrize("cost", ["iou", "mismatch"])
def test_permuted_labelings_align_exactly(cost):
    ref = _grid(k=5)
    perms = [torch.tensor(p) for p in ([4, 3, 2, 1, 0], [1, 2, 3, 4, 0], [0, 1, 2, 3, 4])]
    runs = [ref] + [p[ref] for p in perms]
    aligned, ref_idx = align_runs(runs, cost)
    assert ref_idx == 0
    for a in aligned:
        assert torch.equal(a, ref)


def test_reference_is_the_run_with_most_clusters():
    coarse = torch.zeros(8, 8, dtype=torch.long)
    coarse[:, 4:] = 1
    fine = coarse * 2
    fine[:4] += 1  # 4 clusters: quadrants
    aligned, ref_idx = align_runs([coarse + 7, fine], "iou")  # non-contiguous ids are fine too
    assert ref_idx == 1
    # each coarse half maps to the reference quadrant it overlaps best, distinct labels
    assert len(torch.unique(aligned[0])) == 2
    assert set(torch.unique(aligned[0]).tolist()) <= set(torch.unique(aligned[1]).tolist())


def test_iou_cost_matrix_by_hand():
    a = torch.tensor([[0, 0, 1, 1]])
    b = torch.tensor([[0, 1, 1, 1]])
    c = match_cost(a, b, "iou")
    # IoU(a0,b0)=1/2, IoU(a0,b1)=1/4, IoU(a1,b0)=0, IoU(a1,b1)=2/3
    np.testing.assert_allclose(c, 1 - np.array([[0.5, 0.25], [0.0, 2 / 3]]))
    np.testing.assert_allclose(match_cost(a, b, "mismatch"), [[1, 3], [3, 1]])


def test_votes_are_relative_frequencies():
    runs = [torch.tensor([[0, 1]]), torch.tensor([[0, 0]]), torch.tensor([[1, 1]])]
    v = vote_distribution(runs, 2, eps=0.0)
    np.testing.assert_allclose(v[:, 0, 0].numpy(), [2 / 3, 1 / 3])
    np.testing.assert_allclose(v[:, 0, 1].numpy(), [1 / 3, 2 / 3])
    assert torch.allclose(vote_distribution(runs, 2).sum(0), torch.ones(1, 2))


def _released_alignment(runs):
    """The released code's alignment, read from its description: the reference is the first run with the
    most distinct labels; each other run's labels get the reference labels of a minimum-mismatch matching
    solved on the (reference labels, run labels) cost matrix."""
    ref = runs[int(np.argmax([len(np.unique(r)) for r in runs]))]
    ref_labels = np.unique(ref)
    out = []
    for run in runs:
        if run is ref:
            out.append(run)
            continue
        labels = np.unique(run)
        cost = np.array([[np.sum((run == b) != (ref == a)) for b in labels] for a in ref_labels], dtype=float)
        rows, cols = linear_sum_assignment(cost)
        new = run.copy()
        for old_label, ref_label in zip(labels[cols], ref_labels[rows]):
            new[run == old_label] = ref_label
        out.append(new)
    return out


def _optimal_matchings(cost):
    """How many matchings of every column to a distinct row reach the least total cost."""
    totals = [cost[list(rows), range(cost.shape[1])].sum()
              for rows in itertools.permutations(range(cost.shape[0]), cost.shape[1])]
    return totals.count(min(totals))


def test_ties_are_broken_as_the_released_alignment_breaks_them():
    # Small random maps have many matchings of equal cost; which one the solver returns depends on the
    # orientation of the cost matrix, so the same orientation must give the same maps.
    tied = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        runs = [rng.integers(0, k, size=(6, 6)) for k in rng.integers(2, 7, size=4)]
        runs = [np.unique(r, return_inverse=True)[1].reshape(r.shape) for r in runs]  # contiguous, as k-means
        got, _ = align_runs([torch.from_numpy(r) for r in runs], "mismatch")
        want = _released_alignment(runs)
        for g, w in zip(got, want):
            assert np.array_equal(g.numpy(), w), seed
        ref = runs[int(np.argmax([len(np.unique(r)) for r in runs]))]
        tied += sum(_optimal_matchings(match_cost(torch.from_numpy(ref), torch.from_numpy(r), "mismatch")) > 1
                    for r in runs)
    assert tied > 0  # the cases include ties, where the orientation decides
