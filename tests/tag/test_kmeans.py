from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from selfseg.tag.clustering import kmeans


def _blobs(n_per=60, k=4, d=16, spread=0.5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(k, d))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centres])
    return x.astype(np.float32)


@pytest.mark.parametrize("k, seed", [(2, 0), (4, 1), (8, 2)])
def test_same_start_same_answer_as_sklearn(k, seed):
    """From the same initial centres, our Lloyd iterations reproduce scikit-learn's exactly."""
    x = _blobs(k=5, seed=seed, spread=2.0)  # overlapping blobs: several iterations are needed
    init = x[np.random.default_rng(seed).choice(len(x), k, replace=False)]
    ref = KMeans(n_clusters=k, init=init, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x.astype(np.float64))
    ours = kmeans(torch.from_numpy(x), k, init=torch.from_numpy(init))
    assert np.array_equal(ours.labels.numpy(), ref.labels_)
    np.testing.assert_allclose(ours.centers.numpy(), ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-4)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_kmeanspp_matches_sklearn_quality(k):
    """With k-means++ seeding (different RNGs), the partitions agree and the inertia is as good."""
    x = _blobs(k=k, seed=k)
    ref = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)
    ours = kmeans(torch.from_numpy(x), k, n_init=10, seed=0)
    assert adjusted_rand_score(ref.labels_, ours.labels.numpy()) == pytest.approx(1.0)
    assert ours.inertia <= ref.inertia_ * (1 + 1e-4)


def test_seeded_and_every_cluster_used():
    x = torch.from_numpy(_blobs(k=3, seed=3))
    a, b = kmeans(x, 6, seed=7), kmeans(x, 6, seed=7)
    assert torch.equal(a.labels, b.labels)
    assert len(torch.unique(a.labels)) == 6  # empty clusters are relocated, as in sklearn


def test_duplicate_points_do_not_crash():
    x = torch.zeros(10, 3)
    x[5:] = 1.0
    r = kmeans(x, 4)
    assert set(r.labels.tolist()) <= {0, 1, 2, 3} and r.inertia == pytest.approx(0.0)


@pytest.mark.parametrize("shape, k, msg", [((10,), 2, "shape"), ((5, 3), 6, "k=6"), ((5, 3), 0, "k=0")])
def test_bad_arguments(shape, k, msg):
    with pytest.raises(ValueError, match=msg):
        kmeans(torch.zeros(shape), k)
