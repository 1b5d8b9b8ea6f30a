from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from selfseg.tag.clustering import kmeans
from selfseg.tag.clustering.lloyd import kmeans_batch, kmeans_each, kmeans_plusplus, kmeans_plusplus_batch


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


@pytest.mark.parametrize("kwargs, msg", [
    ({"n_init": 0}, "n_init >= 1"), ({"max_iter": 0}, "max_iter >= 1"),
    ({"init": torch.zeros(2, 4)}, r"\(k, d\) = \(3, 4\), got \(2, 4\)"),
    ({"init": torch.zeros(3, 5)}, r"got \(3, 5\)"),
])
def test_bad_settings_are_named(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        kmeans(torch.rand(10, 4), 3, **kwargs)


@pytest.mark.parametrize("fn", [lambda x: kmeans(x, 2), lambda x: kmeans_batch(x, [2], [0])])
def test_nan_features_are_refused_not_clustered(fn):
    x = torch.rand(10, 4)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        fn(x)


def test_a_common_offset_changes_nothing_as_in_sklearn():
    """scikit-learn centres the features first; without it, float32 distances to points far from the origin
    lose their small differences, and the partition and inertia drift from sklearn's."""
    x = _blobs(k=5, seed=1, spread=2.0) + np.float32(1000.0)
    init = x[np.random.default_rng(1).choice(len(x), 4, replace=False)]
    ref = KMeans(n_clusters=4, init=init, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x.astype(np.float64))
    ours = kmeans(torch.from_numpy(x), 4, init=torch.from_numpy(init))
    assert np.array_equal(ours.labels.numpy(), ref.labels_)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-4)
    np.testing.assert_allclose(ours.centers.numpy(), ref.cluster_centers_, rtol=1e-5)
    batched = kmeans_batch(torch.from_numpy(x), [4], [0])[0]
    assert batched.inertia == pytest.approx(kmeans(torch.from_numpy(x), 4, seed=0).inertia, rel=1e-6)


# ------------------------------------------------------------------------------------- batched runs


def _planted_x(grid=24, regions=6, noise=3.0):
    from selfseg.tag.clustering import sincos_2d
    from selfseg.tag.clustering.planted import planted_scene

    f = torch.from_numpy(planted_scene(regions, noise, 0, grids=(grid,)).features[0])
    return torch.cat([f.reshape(grid * grid, -1), sincos_2d(grid, grid, 256).reshape(grid * grid, -1)], 1)


def _same_result(a, b):
    return (torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers) and a.inertia == b.inertia
            and a.n_iter == b.n_iter)


def test_batched_seeding_draws_as_each_run_alone():
    """Run b of kmeans_plusplus_batch starts from the centres kmeans_plusplus picks with its generator (hence
    those of kmeans(x, k_b, seed=seed_b)) and leaves the generator where kmeans_plusplus would."""
    x = _planted_x()
    x_sq = (x * x).sum(1)
    ks, seeds = [20, 1, 32, 16, 24, 2], [3, 4, 5, 6, 7, 8]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    got = kmeans_plusplus_batch(x, ks, gens, x_sq)
    assert got.shape == (len(ks), 32, x.shape[1])
    for b, (k, s) in enumerate(zip(ks, seeds)):
        ref_gen = torch.Generator().manual_seed(s)
        assert torch.equal(got[b, :k], kmeans_plusplus(x, k, ref_gen, x_sq)), k
        assert torch.equal(got[b, k:], torch.zeros_like(got[b, k:]))
        assert torch.equal(gens[b].get_state(), ref_gen.get_state())


@pytest.mark.parametrize("n_init", [1, 2])
def test_batched_runs_equal_kmeans_run_by_run(n_init):
    """Labels, centres, inertia and iterations of every batched run are those of kmeans alone, bit for bit
    (the runs stop after different numbers of iterations)."""
    x = _planted_x()
    ks, seeds = [16, 20, 24, 28, 32, 16], [11, 12, 13, 14, 15, 16]
    got = kmeans_batch(x, ks, seeds, n_init=n_init, max_iter=300, tol=1e-4)
    refs = [kmeans(x, k, seed=s, n_init=n_init) for k, s in zip(ks, seeds)]
    assert len({r.n_iter for r in refs}) > 1
    assert all(_same_result(g, r) for g, r in zip(got, refs))


@pytest.mark.parametrize("n_init", [1, 2])
def test_runs_sharing_their_features_equal_kmeans_run_by_run(n_init):
    """kmeans_each checks, centres and measures the features once for all its ks (the chain's runs at one
    scale); every run is still the one kmeans makes alone, bit for bit, including its stopping point."""
    x = _planted_x()
    ks = [2, 5, 8, 32]
    got = kmeans_each(x, ks, seed=3, n_init=n_init)
    refs = [kmeans(x, k, seed=3, n_init=n_init) for k in ks]
    assert len({r.n_iter for r in refs}) > 1
    assert len(got) == len(ks) and all(_same_result(g, r) for g, r in zip(got, refs))
    with pytest.raises(ValueError, match="expected 1 <= k"):
        kmeans_each(x, [2, x.shape[0] + 1])


def test_the_positional_encoding_is_the_libraries_and_each_caller_gets_its_own():
    """sincos_2d keeps the encoding of a grid between calls; a caller editing what it got changes nothing
    for the next one."""
    from positional_encodings.torch_encodings import PositionalEncoding2D

    from selfseg.tag.clustering import sincos_2d

    first = sincos_2d(6, 5, 8)
    first.fill_(7.0)
    again = sincos_2d(6, 5, 8)
    assert torch.equal(again, PositionalEncoding2D(8)(torch.zeros(1, 6, 5, 8))[0])
    assert again.shape == (6, 5, 8) and not torch.equal(again, first)


def test_batched_runs_stop_at_max_iter_like_kmeans():
    x = _planted_x()
    got = kmeans_batch(x, [8, 32], [0, 1], max_iter=2, tol=0.0)
    refs = [kmeans(x, 8, seed=0, max_iter=2, tol=0.0), kmeans(x, 32, seed=1, max_iter=2, tol=0.0)]
    assert [g.n_iter for g in got] == [2, 2] and all(_same_result(g, r) for g, r in zip(got, refs))


def test_batched_duplicates_take_the_host_paths(monkeypatch):
    """Fewer distinct points than centres: a zero seeding potential and empty clusters, handled as kmeans does."""
    from selfseg.tag.clustering import lloyd

    empties, reseeded = [], []
    fill, seed_one = lloyd._fill_empty, lloyd.kmeans_plusplus
    monkeypatch.setattr(lloyd, "_fill_empty", lambda *a: empties.append(int((a[5] == 0).sum())) or fill(*a))
    monkeypatch.setattr(lloyd, "kmeans_plusplus", lambda *a: reseeded.append(a[1]) or seed_one(*a))
    x = torch.zeros(10, 3)
    x[5:] = 1.0
    ks, seeds = [4, 2, 3], [0, 1, 2]
    got = kmeans_batch(x, ks, seeds)
    assert any(empties) and sorted(reseeded) == [3, 4]  # two distinct points: k = 3 and 4 run out of them
    refs = [kmeans(x, k, seed=s) for k, s in zip(ks, seeds)]
    assert all(_same_result(g, r) for g, r in zip(got, refs))


def test_batched_runs_are_deterministic():
    x = _planted_x(regions=8)
    a, b = kmeans_batch(x, [16, 32], [5, 6]), kmeans_batch(x, [16, 32], [5, 6])
    assert all(_same_result(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("shape, ks, seeds, msg", [
    ((10,), [2], [0], "shape"), ((5, 3), [2, 6], [0, 1], "ks=\\[2, 6\\]"), ((5, 3), [2], [0, 1], "one seed per k"),
    ((5, 3), [], [], "at least one run"),
])
def test_batched_bad_arguments(shape, ks, seeds, msg):
    with pytest.raises(ValueError, match=msg):
        kmeans_batch(torch.zeros(shape), ks, seeds)
