"""Majority (mode) filter on a label grid, repeated to a fixed point."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mode_filter_once(labels: torch.Tensor, size: int = 3) -> torch.Tensor:
    """One pass of the size x size mode filter on an (H, W) int grid, edges replicated.

    Ties go to the smallest label, as `argmax` over a histogram does in the released code.
    """
    h, w = labels.shape
    n = int(labels.max()) + 1
    pad = size // 2
    onehot = F.one_hot(labels, n).permute(2, 0, 1).float()[None]  # (1, n, H, W)
    onehot = F.pad(onehot, (pad, pad, pad, pad), mode="replicate")
    counts = F.avg_pool2d(onehot, size, stride=1) * (size * size)
    return counts[0].round().argmax(0)


def mode_filter(labels: torch.Tensor, size: int = 3, max_passes: int = 8) -> tuple[torch.Tensor, int]:
    """Apply the mode filter until nothing changes or `max_passes`; returns (labels, passes applied)."""
    for p in range(max_passes):
        new = mode_filter_once(labels, size)
        if torch.equal(new, labels):
            return labels, p
        labels = new
    return labels, max_passes
