"""The co-association consensus (clustering.consensus = "coassoc") against the paper's chain and single runs.

Planted regions (selfseg.tag.clustering.planted, the scenes of benchmarks/bench_consensus.py): on a few
fixed cells and scenes the consensus must beat one k = 8 k-means run and the chain by a margin, and find
about the planted number of clusters. The benchmark's full table is in the README; these cells are a
sample of it (one thread, as there, so the float sums and hence the labels are the same run to run).
"""
from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from selfseg.errors import ConfigError
from selfseg.tag.clustering import (
    ClusteringConfig,
    Consensus,
    align_runs,
    best_overlap,
    best_overlaps,
    coassociation,
    consensus,
    contiguous,
    crf_mean_field,
    dense_runs,
    ensemble_cluster,
    kmeans,
    lifetime_cut,
    mode_filter,
    sincos_2d,
    vote_distribution,
)
from selfseg.tag.clustering.planted import cmiou, planted_scene
from selfseg.tag.result import TagResult

# (regions, noise) -> scenes: three cells of the benchmark's table and two cleaner ones, where positional
# encoding on the runs would cut one uniform region into tiles (as `coassoc_pos_dim: 256` does: 0.09 and
# 0.21 there against about 1.0).
NOISY = {(4, 1.0): (0, 1), (6, 3.0): (0, 1), (8, 3.0): (0, 1)}
CLEAN = {(1, 0.5): (0,), (2, 0.5): (0,)}
CELLS = {**NOISY, **CLEAN}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def single_run(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """One k-means run on the largest grid with the ensemble's positional encoding and settings."""
    h, w, _ = features.shape
    x = torch.cat([torch.as_tensor(features).reshape(h * w, -1), sincos_2d(h, w, 256).reshape(h * w, -1)], 1)
    return kmeans(x, k, seed=seed).labels.reshape(h, w).numpy()


@pytest.fixture(scope="module")
def scores():
    out: dict[str, dict[tuple, list[float]]] = {"coassoc": {}, "chain": {}, "km8": {}, "clusters": {}}
    for cell, scenes in CELLS.items():
        for s in scenes:
            sc = planted_scene(*cell, s)
            co = ensemble_cluster(sc.features, seed=s)
            assert co.consensus == "coassoc"  # the default
            labels = {"coassoc": co.labels, "chain": ensemble_cluster(sc.features, seed=s, consensus="chain").labels,
                      "km8": single_run(sc.features[-1], 8, s)}
            for name, lab in labels.items():
                out[name].setdefault(cell, []).append(cmiou(sc.gt, lab))
            out["clusters"].setdefault(cell, []).append(co.n_clusters)
    return out


def test_beats_one_k8_run_and_the_chain_in_every_cell(scores):
    mean = {m: {c: float(np.mean(v)) for c, v in scores[m].items()} for m in ("coassoc", "chain", "km8")}
    for cell in NOISY:
        assert mean["coassoc"][cell] > mean["km8"][cell] + 0.05, cell
        assert mean["coassoc"][cell] > mean["chain"][cell] + 0.15, cell
    for cell in CLEAN:  # one or two clean regions: the chain's k = 2 run suits them, a k = 8 run over-splits
        assert mean["coassoc"][cell] >= max(0.95, mean["chain"][cell]), cell
        assert mean["coassoc"][cell] > mean["km8"][cell] + 0.3, cell
    overall = {m: np.mean([v[c] for c in NOISY]) for m, v in mean.items()}
    assert overall["coassoc"] > 0.8
    assert overall["coassoc"] > overall["km8"] + 0.12
    assert overall["coassoc"] > overall["chain"] + 0.3


def test_finds_about_the_planted_number_of_clusters(scores):
    for (regions, _), counts in scores["clusters"].items():
        assert abs(np.mean(counts) - regions) <= 1.5, (regions, counts)


def test_same_seed_same_result():
    sc = planted_scene(6, 2.0, 3)
    a, b = ensemble_cluster(sc.features, seed=5), ensemble_cluster(sc.features, seed=5)
    for field in ("labels", "consensus_labels", "votes", "crf", "merge_heights", "lifetimes"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert all(np.array_equal(x, y) for x, y in zip(a.runs, b.runs))


def test_a_setting_only_the_other_consensus_reads_is_an_error_not_silently_unused():
    """The README's `ensemble_cluster(feats, ks=...)` ran the co-association consensus, which never reads ks."""
    sc = planted_scene(4, 1.0, 0)
    with pytest.raises(ValueError, match="ks: read by consensus='chain' only, and this call's consensus is "
                                         "'coassoc'; pass consensus='chain' too"):
        ensemble_cluster(sc.features, ks=[2, 3])
    with pytest.raises(ValueError, match="coassoc_runs: read by consensus='coassoc' only"):
        ensemble_cluster(sc.features, consensus="chain", coassoc_runs=4)
    assert ensemble_cluster(sc.features, consensus="chain", ks=[2, 3]).consensus == "chain"
    import dataclasses

    as_given = dataclasses.asdict(ClusteringConfig())  # every field, none changed: nothing to refuse
    assert ensemble_cluster(sc.features, **as_given).consensus == "coassoc"


def test_chain_is_the_paper_composition_unchanged():
    """consensus "chain" is exactly k-means runs -> align_runs -> vote_distribution -> CRF -> mode filter,
    rebuilt here from the public parts: the same labels and intermediates, bit for bit."""
    sc = planted_scene(6, 2.0, 0)
    cfg = ClusteringConfig(consensus="chain")
    got = ensemble_cluster(sc.features, cfg, seed=7)
    runs = []
    for f in sc.features:
        h, w, _ = f.shape
        x = torch.cat([torch.as_tensor(f).reshape(h * w, -1), sincos_2d(h, w, 256).reshape(h * w, -1)], 1)
        for k in cfg.ks:
            lab = kmeans(x, k, seed=7).labels.reshape(1, 1, h, w).float()
            runs.append(torch.nn.functional.interpolate(lab, size=(32, 32), mode="nearest")[0, 0].long())
    aligned, ref = align_runs(runs, cfg.align_cost)
    votes = vote_distribution(aligned, int(aligned[ref].max()) + 1)
    crf = crf_mean_field(votes[None], cfg.crf_weight, cfg.crf_theta, cfg.crf_iters, cfg.crf_filter_size)[0].argmax(0)
    filtered, passes = mode_filter(crf, cfg.mode_filter_size, cfg.mode_filter_passes)
    assert got.reference == ref and got.filter_passes == passes and got.consensus == "chain"
    assert np.array_equal(got.votes, votes.numpy()) and np.array_equal(got.crf, crf.numpy())
    assert np.array_equal(got.labels, contiguous(filtered).numpy())
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(got.aligned, aligned))
    assert got.consensus_labels is None and got.merge_heights is None


@pytest.mark.parametrize("overrides", [{}, {"coassoc_runs": 15},
                                       {"coassoc_pos_dim": 256, "coassoc_ks": [16, 32, 600]}])
def test_coassoc_runs_are_kmeans_run_by_run(overrides):
    """The batched k-means runs of consensus "coassoc" are the runs kmeans gives one by one: run i (repeat by
    repeat, scale by scale, k by k) seeded from (seed, i), a k not below the patch count skipped."""
    sc = planted_scene(8, 3.0, 1)
    cfg = ClusteringConfig(**overrides)
    got = ensemble_cluster(sc.features, cfg, seed=4)
    per_scale = []
    for f in sc.features:
        h, w, _ = f.shape
        x = torch.as_tensor(f).reshape(h * w, -1)
        if cfg.coassoc_pos_dim:
            x = torch.cat([x, sincos_2d(h, w, cfg.coassoc_pos_dim).reshape(h * w, -1)], 1)
        per_scale.append((x, h, w, [k for k in cfg.coassoc_ks if k < h * w]))
    keys, runs = [], []
    while len(runs) < cfg.coassoc_runs:
        for si, (x, h, w, ks) in enumerate(per_scale):
            for k in ks:
                run_seed = int(np.random.SeedSequence([4, len(runs)]).generate_state(1)[0])
                lab = kmeans(x, k, seed=run_seed).labels.reshape(1, 1, h, w).float()
                runs.append(torch.nn.functional.interpolate(lab, size=(32, 32), mode="nearest")[0, 0].long())
                keys.append((si, k))
    assert got.run_keys == keys
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(got.runs, runs))
    assert np.array_equal(got.votes, ensemble_cluster(sc.features, cfg, seed=4).votes)


def test_coassociation_is_the_sum_over_runs():
    """All runs in one product: the same matrix as adding each run's one-hot outer product, whatever the ids."""
    g = torch.Generator().manual_seed(0)
    runs = [torch.randint(-3, 40, (12, 12), generator=g) * 1000 for _ in range(7)] + [torch.zeros(12, 12).long()]
    acc = torch.zeros(144, 144)
    for run in runs:
        onehot = torch.nn.functional.one_hot(contiguous(run).flatten()).float()
        acc += onehot @ onehot.T
    assert torch.equal(coassociation(runs), acc / len(runs))


def test_intermediates_describe_the_consensus():
    sc = planted_scene(4, 1.0, 0)
    m = ensemble_cluster(sc.features, seed=0)
    n_runs = 2 * len(ClusteringConfig().coassoc_ks)
    assert len(m.runs) == len(m.aligned) == len(m.run_keys) == n_runs and m.reference == -1
    assert m.consensus_labels.shape == (32, 32) and m.merge_heights.shape == (32 * 32 - 1,)
    assert np.all(np.diff(m.merge_heights) >= 0) and 0 <= m.merge_heights.min() <= m.merge_heights.max() <= 1
    assert m.votes.shape == (int(m.consensus_labels.max()) + 1, 32, 32)
    np.testing.assert_allclose(m.votes.sum(0), 1, atol=1e-5)
    assert int(np.argmax(m.lifetimes)) + 1 == int(m.consensus_labels.max()) + 1
    assert {"kmeans", "consensus", "align", "crf", "filter"} <= set(m.timings)
    # every aligned run speaks in the consensus's label names
    assert all(a.max() <= m.consensus_labels.max() for a in m.aligned)


def test_intermediates_survive_json():
    sc = planted_scene(4, 1.0, 0)
    m = ensemble_cluster(sc.features, seed=0)
    r = TagResult(source="planted", image_size=(512, 512), nouns=[], tagger="bcc", cluster_grid=m.labels,
                  intermediates=m)
    back = TagResult.from_json(r.to_json()).intermediates
    assert back.consensus == "coassoc" and back.reference == -1
    assert np.array_equal(back.consensus_labels, m.consensus_labels)
    np.testing.assert_allclose(back.merge_heights, m.merge_heights, atol=1e-6)
    np.testing.assert_allclose(back.lifetimes, m.lifetimes, atol=1e-6)
    chain = ensemble_cluster(sc.features, seed=0, consensus="chain")
    d = json.loads(TagResult(source="p", image_size=(512, 512), nouns=[], tagger="bcc", cluster_grid=chain.labels,
                             intermediates=chain).to_json())
    assert "merge_heights" not in d["intermediates"]
    del d["intermediates"]["consensus"]  # a file written before the field existed reads as the chain
    assert TagResult.from_dict(d).intermediates.consensus == "chain"


# ------------------------------------------------------------------------------------------ the parts


def test_coassociation_counts_shared_clusters():
    runs = [torch.tensor([0, 0, 1, 1]), torch.tensor([5, 5, 5, 2]), torch.tensor([0, 1, 2, 3])]
    c = coassociation(runs)
    assert c.dtype == torch.float32 and c.shape == (4, 4)
    assert torch.equal(c.diagonal(), torch.ones(4))
    assert c[0, 1].item() == pytest.approx(2 / 3) and c[1, 2].item() == pytest.approx(1 / 3)
    assert c[0, 3].item() == 0 and torch.equal(c, c.T)
    with pytest.raises(ValueError, match="one grid"):
        coassociation([torch.zeros(4, dtype=torch.long), torch.zeros(5, dtype=torch.long)])


def test_lifetime_cut_finds_blocks_and_numbers_them_by_first_patch():
    blocks = torch.tensor([2, 2, 0, 0, 0, 1, 1])
    c = (blocks[:, None] == blocks[None, :]).float() * 0.9 + 0.05
    c.fill_diagonal_(1.0)
    cons = lifetime_cut(c, 6)
    assert cons.labels.tolist() == [0, 0, 1, 1, 1, 2, 2] and cons.n_clusters == 3
    assert cons.heights.shape == (6,) and cons.lifetimes.shape == (6,)
    # nothing reliably apart: one cluster; everything always apart: one cluster per patch
    assert lifetime_cut(torch.ones(5, 5), 5).n_clusters == 1
    assert lifetime_cut(torch.eye(5), 5).n_clusters == 5
    assert lifetime_cut(torch.ones(1, 1), 3).labels.tolist() == [0]


def test_lifetime_cut_takes_the_first_merges_of_the_tree():
    """The cut is the partition scipy's own flat clustering gives at the chosen cluster count, numbered by
    first patch, on planted scenes' co-associations."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    for regions, noise, scene in [(4, 1.0, 0), (6, 2.0, 1), (8, 3.0, 2)]:
        runs = [torch.as_tensor(r) for r in ensemble_cluster(planted_scene(regions, noise, scene).features).runs]
        c = coassociation(runs)
        cons = lifetime_cut(c, 32)
        tree = linkage(squareform((1 - c).clamp(0, 1).double().numpy(), checks=False), method="average")
        np.testing.assert_array_equal(cons.heights, tree[:, 2])
        flat = fcluster(tree, cons.n_clusters, criterion="maxclust")
        _, first, inv = np.unique(flat, return_index=True, return_inverse=True)
        assert cons.labels.tolist() == np.argsort(np.argsort(first))[inv].tolist()


def test_lifetime_cut_resolves_a_deep_tree():
    """Patches joining one cluster one at a time make a tree as deep as it is wide; two far patches stay out."""
    n = 300
    idx = torch.arange(n, dtype=torch.float64)
    c = 1 - torch.maximum(idx[:, None], idx[None, :]) / (2 * n)
    c[-2:, :] = c[:, -2:] = 0
    c.fill_diagonal_(1)
    cons = lifetime_cut(c, 10)
    assert cons.labels.tolist() == [0] * (n - 2) + [1, 2]
    # float64 and bfloat16 co-associations take the same path to the host
    assert torch.equal(lifetime_cut(c.bfloat16(), 10).labels, cons.labels)


def test_best_overlap_allows_splits_and_merges():
    consensus = torch.tensor([0, 0, 0, 1, 1, 1])
    split = torch.tensor([4, 4, 7, 9, 9, 9])  # consensus cluster 0 split in two
    assert best_overlap(split, consensus).tolist() == [0, 0, 0, 1, 1, 1]
    merged = torch.tensor([3, 3, 3, 3, 3, 3])
    assert best_overlap(merged, consensus).tolist() == [0] * 6


def test_best_overlaps_names_every_run_at_once_as_one_at_a_time(monkeypatch):
    """All runs in one scatter give each cluster the label a plain count over that run alone gives (ties:
    the lowest label), whatever the runs' ids and however many clusters each has."""
    g = torch.Generator().manual_seed(3)
    runs = torch.stack([torch.randint(0, k, (60,), generator=g) * 7 - 5 for k in (1, 2, 5, 9, 60)])
    labels = torch.randint(0, 4, (60,), generator=g)
    got = best_overlaps(runs, labels)
    for run, named in zip(runs.numpy(), got.numpy()):
        for c in np.unique(run):
            counts = np.bincount(labels.numpy()[run == c], minlength=4)
            assert set(named[run == c]) == {int(np.argmax(counts))}
    assert torch.equal(got, torch.stack([best_overlap(r, labels) for r in runs]))
    assert torch.equal(best_overlaps(list(runs.reshape(5, 6, 10)), labels, n_clusters=4), got)
    with pytest.raises(ValueError, match="60 patches"):
        best_overlaps(runs, labels[:59])
    with pytest.raises(ValueError, match="at least one labeling"):
        best_overlaps([], labels)
    # runs too wide to count at once are counted a few at a time, to the same names
    monkeypatch.setattr(consensus, "_COUNT_CELLS", 2 * 60 * 4)
    assert torch.equal(best_overlaps(dense_runs(runs), labels), got)


def test_a_consensus_built_by_hand_counts_its_clusters():
    cons = Consensus(torch.tensor([0, 2, 1, 2]), np.zeros(3), np.ones(3))
    assert cons.n_clusters == 3


def test_config_checks_the_name():
    assert ClusteringConfig().consensus == "coassoc"
    with pytest.raises(ConfigError, match="consensus: expected coassoc or chain, got 'vote'"):
        ClusteringConfig(consensus="vote")
    with pytest.raises(ConfigError, match="coassoc_ks"):
        ClusteringConfig(coassoc_ks=[1, 8])


# ----------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("consensus", ["coassoc", "chain"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_are_refused(consensus, bad):
    f = planted_scene(4, 1.0, 0).features
    f[1][3, 4, 5] = bad
    with pytest.raises(ValueError, match="finite"):
        ensemble_cluster(f, seed=0, consensus=consensus)


@pytest.mark.parametrize("consensus", ["coassoc", "chain"])
def test_one_scale_is_enough(consensus):
    sc = planted_scene(4, 1.0, 0)
    m = ensemble_cluster(sc.features[1:], seed=0, consensus=consensus)
    assert m.labels.shape == (32, 32) and all(k[0] == 0 for k in m.run_keys)
    if consensus == "coassoc":
        assert abs(m.n_clusters - 4) <= 1 and cmiou(sc.gt, m.labels) > 0.8 and len(m.runs) == 10


def test_fewer_patches_than_k():
    f = np.random.default_rng(0).normal(size=(3, 3, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="more patches than the smallest of coassoc_ks"):
        ensemble_cluster([f], seed=0)
    # runs whose k reaches a scale's patch count carry no evidence and are skipped
    m = ensemble_cluster([f[:2, :2], f], seed=0, coassoc_ks=[2, 4, 8])
    assert m.labels.shape == (3, 3) and {k for s, k in m.run_keys if s == 0} == {2}
    assert np.isfinite(m.votes).all()
    # the chain caps k at the patch count, as it always has
    assert ensemble_cluster([f], seed=0, pos_dim=0, consensus="chain").labels.shape == (3, 3)


@pytest.mark.parametrize("jitter", [0.0, 1e-9])
@pytest.mark.parametrize("pos_dim", [0, 256])
def test_identical_features_give_one_cluster(pos_dim, jitter):
    """Every patch the same (to float rounding: a blank wall's features are never exactly equal): one cluster
    whose votes are a distribution, whatever positional encoding the runs would have had."""
    rng = np.random.default_rng(0)
    f = [np.ones((n, n, 16), np.float32) + jitter * rng.random((n, n, 16), np.float32) for n in (24, 32)]
    m = ensemble_cluster(f, seed=0, coassoc_pos_dim=pos_dim)
    assert m.n_clusters == 1 and m.labels.shape == (32, 32) and m.runs == []
    assert np.allclose(m.votes.sum(0), 1.0)
    # the chain runs as it always has: k-means splits the positional encoding's tiles there
    chain = ensemble_cluster(f, seed=0, pos_dim=pos_dim, consensus="chain")
    assert chain.labels.shape == (32, 32) and np.isfinite(chain.votes).all()


@pytest.mark.parametrize("consensus", ["coassoc", "chain"])
def test_features_beyond_float32_distances_are_refused(consensus):
    # 1e17: each squared norm fits float32, but k-means++'s sum over the patches does not (the cut had
    # been 6 clusters at cmIoU 0.45); 1e-25: the squares vanish and every patch looked the same.
    scene = planted_scene(4, 1.0, 0)
    for scale, word in [(1e19, "too large"), (1e17, "too large"), (1e-25, "too small")]:
        with pytest.raises(ValueError, match=word):
            ensemble_cluster([x * scale for x in scene.features], consensus=consensus)
    # float64 values float32 cannot hold: refused as too large, not cast to inf and called "NaN or inf"
    for big in (np.full((6, 6, 4), 1e39), torch.full((6, 6, 4), 1e39, dtype=torch.float64)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow warning from a cast
            with pytest.raises(ValueError, match="fit float32, got values too large"):
                ensemble_cluster([big], consensus=consensus)
    # within the range, the scale changes nothing (k-means and the cut are scale-free without the encoding)
    plain = ensemble_cluster(scene.features, seed=0, coassoc_pos_dim=0)
    for scale in (1e-18, 1e-12, 1e12):  # 1e-18: squared norms near 1e-34, still normal float32 numbers
        scaled = ensemble_cluster([x * scale for x in scene.features], seed=0, coassoc_pos_dim=0)
        assert np.array_equal(scaled.labels, plain.labels), scale


def test_features_in_any_numpy_layout_or_tracking_gradients_cluster_alike():
    f = planted_scene(4, 1.0, 0).features
    want = ensemble_cluster(f, seed=0).labels
    flipped = [np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1] for x in f]  # negative strides
    swapped = [x.astype(">f4") for x in f]  # byte-swapped
    frozen = []
    for x in f:
        y = x.copy()
        y.flags.writeable = False
        frozen.append(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of a read-only array and of a tensor that needs grad
        for feats in (flipped, swapped, frozen, [torch.tensor(x, requires_grad=True) for x in f]):
            assert np.array_equal(ensemble_cluster(feats, seed=0).labels, want)


def test_runs_in_any_numpy_layout_give_the_same_coassociation():
    from selfseg.tag.clustering import coassociation

    runs = [np.random.default_rng(i).integers(0, 3, (6, 6)) for i in range(3)]
    want = coassociation(runs)
    # negative strides (equal values), byte-swapped
    for layout in ([np.ascontiguousarray(r[::-1])[::-1] for r in runs], [r.astype(">i8") for r in runs]):
        assert torch.equal(coassociation(layout), want)


@pytest.mark.parametrize("features", [np.zeros((8, 8, 4), np.float32), np.zeros((2, 8, 8, 4), np.float32),
                                      torch.zeros(8, 8, 4)])
def test_one_array_instead_of_a_list_of_scales_is_one_line(features):
    with pytest.raises(ValueError, match=r"expected a list of \(h, w, d\) feature maps, one per scale"):
        ensemble_cluster(features)


def test_text_features_are_refused():
    with pytest.raises(ValueError, match="expected numeric patch features"):
        ensemble_cluster([np.full((4, 4, 2), "a")])


def test_large_seeds_give_their_runs_seeds_no_smaller_seed_gives():
    from selfseg.tag.clustering.ensemble import _run_seed

    # SeedSequence pads [seed, i] with zeros, so 5 + 7 * 2**32 with run 0 read as 5 with run 7
    assert _run_seed(5, 7) != _run_seed(5 + 7 * 2**32, 0)
    assert len({_run_seed(s, i) for s in (0, 1, 2**32, 2**32 + 1, 2**63 - 1) for i in range(20)}) == 100


@pytest.mark.parametrize("consensus", ["coassoc", "chain"])
@pytest.mark.parametrize("seed", [-1, 2**64, 1.5])
def test_a_seed_numpy_or_torch_cannot_take_is_refused(consensus, seed):
    with pytest.raises(ValueError, match="seed in 0..2"):
        ensemble_cluster(planted_scene(4, 1.0, 0).features, seed=seed, consensus=consensus)


def test_a_seed_outside_the_range_is_a_config_error():
    from selfseg.config import ConfigError
    from selfseg.tag.caption import CaptioningConfig

    for seed in (-1, 2**63):
        with pytest.raises(ConfigError, match="seed"):
            CaptioningConfig(seed=seed)
    assert CaptioningConfig(seed=2**63 - 1).seed == 2**63 - 1


@pytest.mark.parametrize("consensus", ["coassoc", "chain"])
def test_the_output_grid_is_the_one_with_the_most_patches(consensus):
    rng = np.random.default_rng(0)
    f = [rng.normal(size=(30, 10, 8)).astype(np.float32), rng.normal(size=(20, 40, 8)).astype(np.float32)]
    assert ensemble_cluster(f, seed=0, consensus=consensus).labels.shape == (20, 40)


def test_empty_feature_map_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        ensemble_cluster([np.zeros((0, 4, 8), np.float32)])


# ------------------------------------------------------------------------------------------ benchmark


def test_benchmark_table_runs(capsys):
    REPO = Path(__file__).resolve().parents[2]  # not `from conftest`: several test folders have one

    spec = importlib.util.spec_from_file_location("bench_consensus", REPO / "benchmarks" / "bench_consensus.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_consensus"] = bench  # dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules["bench_consensus"]
    report = bench.run_table(["coassoc", "km8"], regions=[4], noises=[1.0], scenes=[0])
    bench.print_table(report, "km8")
    out = capsys.readouterr().out
    assert ">=km8" in out and "combine ms" in out
    d = report["methods"]["coassoc"]
    assert len(d["cell_cmiou"]) == 1 and d["cells_at_least_baseline"] == 1 and d["mean_clusters"] >= 1
    assert d["median_combine_ms"] > 0 and report["methods"]["km8"]["median_combine_ms"] == 0


def test_stage_clocks_wait_for_the_gpu_they_time(monkeypatch):
    """Clustering's stage timings read the clock after that device's queued kernels (a GPU runs them
    asynchronously; unsynchronised, one stage's time lands on the first later stage that reads back)."""
    import torch

    from selfseg.tag.clustering import ensemble

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(str(device)))
    ensemble._now(torch.device("cpu"))
    ensemble._now(torch.device("cuda:1"))
    assert waited == ["cuda:1"]


def test_runs_are_resized_as_opencv_inter_nearest_resizes():
    from selfseg.tag.clustering.ensemble import _to_grid

    def rows(small, big):
        grid = torch.arange(small).reshape(small, 1).expand(small, 3)
        return _to_grid(grid[None], (big, 3))[0, :, 0].tolist()

    # the default scales: floor(y * 24 / 32)
    assert rows(24, 32) == [y * 24 // 32 for y in range(32)]
    # OpenCV computes y * (1 / (18 / 14)) in double: 6.9999999999999991 for y = 9, so row 6, where the exact
    # floor(9 * 14 / 18) is 7 (torch's float32 "nearest" gave 7 as well)
    assert rows(14, 18)[9] == 6
    assert rows(5, 5) == list(range(5)) and rows(1, 4) == [0] * 4
