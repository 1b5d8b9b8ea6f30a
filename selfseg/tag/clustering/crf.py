"""Mean-field CRF with a Gaussian spatial kernel, with the semantics of the `crfseg` library.

We own this instead of depending on crfseg because crfseg loops over the batch in Python, pulls in
torchvision, and keeps parameters as nn.Parameters; the maths is the same and a test checks it against
crfseg itself: `filter_size`-tap separable Gaussian whose 1-D kernels have a zero centre tap (so no
message along a patch's own row or column), zero padding, Potts compatibility, and
`x <- unary + weight * smooth(softmax(x))` for `iters` steps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.loading import exact_float32


def _kernel1d(theta: float, size: int, device, dtype) -> torch.Tensor:
    d = torch.arange(-(size // 2), size // 2 + 1, device=device, dtype=dtype)
    k = torch.exp(-((d / theta) ** 2) / 2)
    # crfseg's zero centre tap. The 2-D kernel is the product of two such 1-D kernels, so it is zero on the
    # whole centre row and column: a patch hears its diagonal neighbours (0.21 each at theta 0.8) and those
    # further off both axes, never the four that share an edge with it. Kept, as crfseg and the released
    # code smooth this way.
    k[size // 2] = 0
    return k


def crf_mean_field(
    unary: torch.Tensor, weight: float = 6.0, theta: float = 0.8, iters: int = 5, filter_size: int = 11
) -> torch.Tensor:
    """Refine (B, C, H, W) negative unary potentials (here: vote probabilities); returns logits."""
    if unary.ndim != 4:
        raise ValueError(f"expected (batch, classes, H, W), got shape {tuple(unary.shape)}")
    b, c, h, w = unary.shape
    if c == 1:
        return unary.clone()  # one label: nothing to smooth
    with exact_float32(unary.device, unary.dtype):  # cuDNN would filter float32 in TF32 on a GPU
        return _mean_field(unary, weight, theta, iters, filter_size)


def _mean_field(unary: torch.Tensor, weight: float, theta: float, iters: int, filter_size: int) -> torch.Tensor:
    b, c, h, w = unary.shape
    k = _kernel1d(theta, filter_size, unary.device, unary.dtype)
    kv, kh = k.view(1, 1, -1, 1), k.view(1, 1, 1, -1)
    pad = filter_size // 2
    x = unary
    for _ in range(iters):
        q = F.softmax(x, dim=1).reshape(b * c, 1, h, w)
        q = F.conv2d(F.pad(q, (pad, pad, pad, pad)), kv)
        q = F.conv2d(q, kh).reshape(b, c, h, w)
        # Potts compatibility -(l == l') turns "minus the message" into "plus the message".
        x = unary + weight * q
    return x
