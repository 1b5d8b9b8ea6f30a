"""Cross-run consistency: give every k-means run the label names of one reference run (Hungarian)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def contiguous(labels: torch.Tensor) -> torch.Tensor:
    """Relabel to 0..m-1 in ascending order of the original labels."""
    _, inv = torch.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape)


def match_cost(a: torch.Tensor, b: torch.Tensor, cost: str = "iou") -> np.ndarray:
    """Cost matrix (clusters of `a`, clusters of `b`) for two contiguous labelings of the same grid.

    "iou": 1 - IoU of the two clusters (the paper, Eq. 10). "mismatch": patches where exactly one of the
    two clusters is present (the released code's `sum(a != b)` on the two masks).
    """
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    # On the host, in float64 (exact counts; MPS has no float64): the matrix goes to scipy there anyway.
    oa = torch.nn.functional.one_hot(a.flatten().cpu(), ka).double()
    ob = torch.nn.functional.one_hot(b.flatten().cpu(), kb).double()
    inter = oa.T @ ob
    size_a, size_b = oa.sum(0)[:, None], ob.sum(0)[None, :]
    if cost == "iou":
        union = size_a + size_b - inter
        out = 1.0 - inter / union.clamp_min(1)
    elif cost == "mismatch":
        out = size_a + size_b - 2 * inter
    else:
        raise ValueError(f"expected cost 'iou' or 'mismatch', got {cost!r}")
    return out.numpy()


def align_runs(runs: list[torch.Tensor], cost: str = "iou") -> tuple[list[torch.Tensor], int]:
    """Align labelings of one grid to the run with the most non-empty clusters.

    Returns the aligned runs (reference first made contiguous, 0..m-1) and the reference's index. A run
    with fewer clusters than the reference maps each of its clusters to a distinct reference label.
    Ties for the reference go to the earliest run.
    """
    if not runs:
        raise ValueError("expected at least one labeling, got none")
    runs = [contiguous(r) for r in runs]
    counts = [int(r.max()) + 1 for r in runs]
    ref_idx = int(np.argmax(counts))
    ref = runs[ref_idx]
    aligned = []
    for i, run in enumerate(runs):
        if i == ref_idx:
            aligned.append(ref)
            continue
        # (reference, run) as the released code orders the matrix: where two matchings cost the same, the
        # solver's choice depends on the orientation.
        refs, mine = linear_sum_assignment(match_cost(ref, run, cost))
        lut = torch.empty(counts[i], dtype=torch.long)
        lut[torch.as_tensor(mine)] = torch.as_tensor(refs, dtype=torch.long)
        aligned.append(lut.to(run.device)[run])
    return aligned, ref_idx


def vote_distribution(aligned: list[torch.Tensor], n_labels: int, eps: float = 1e-6) -> torch.Tensor:
    """(n_labels, H, W) relative frequency of each label over the runs (Eq. 11), smoothed by `eps`.

    The tiny `eps` (as in the released code) keeps every label possible before the CRF.
    """
    votes = torch.zeros((n_labels,) + tuple(aligned[0].shape), dtype=torch.float32, device=aligned[0].device)
    for run in aligned:
        votes.scatter_add_(0, run[None], torch.ones_like(run[None], dtype=torch.float32))
    votes = votes / len(aligned) + eps
    return votes / votes.sum(0, keepdim=True)
