from __future__ import annotations

import numpy as np
import pytest
import torch

from selfseg.tag.clustering import crf_mean_field, mode_filter, mode_filter_once


@pytest.mark.parametrize("classes, size, weight, theta, iters", [(2, (12, 12), 6.0, 0.8, 5), (5, (32, 32), 6.0, 0.8, 5),
                                                                 (3, (20, 9), 1.5, 2.0, 3)])
def test_crf_equals_crfseg_library(classes, size, weight, theta, iters):
    crfseg = pytest.importorskip("crfseg", reason="crfseg is a test extra: pip install -e '.[test]'")
    torch.manual_seed(0)
    x = torch.rand(2, classes, *size)
    ref = crfseg.CRF(n_spatial_dims=2, requires_grad=False, smoothness_weight=weight, smoothness_theta=theta,
                     n_iter=iters)(x)
    ours = crf_mean_field(x, weight, theta, iters)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_crf_removes_isolated_noise():
    p = torch.zeros(1, 2, 16, 16)
    p[0, 0] = 0.9
    p[0, 1] = 0.1
    p[0, :, 8, 8] = torch.tensor([0.2, 0.8])  # one patch disagrees with everything around it
    out = crf_mean_field(p).argmax(1)
    assert int(out.sum()) == 0


def test_mode_filter_by_hand_and_ties():
    g = torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert torch.equal(mode_filter_once(g), torch.zeros(3, 3, dtype=torch.long))
    # replicate padding at the corner: 4 of label 2 vs 5 of label 0 at (0, 0)
    g = torch.tensor([[2, 0], [0, 0]])
    assert int(mode_filter_once(g)[0, 0]) == 0
    # three labels, three votes each at the centre: the tie goes to the smallest label
    g = torch.tensor([[2, 1, 0]] * 3)
    assert int(mode_filter_once(g)[1, 1]) == 0


@pytest.mark.parametrize("seed", range(5))
def test_mode_filter_reaches_a_fixed_point(seed):
    g = torch.from_numpy(np.random.default_rng(seed).integers(0, 4, size=(32, 32)))
    out, passes = mode_filter(g, 3, max_passes=50)
    assert passes < 50
    assert torch.equal(mode_filter_once(out), out)
    capped, p8 = mode_filter(g, 3, max_passes=1)
    assert p8 == 1 and torch.equal(capped, mode_filter_once(g))
