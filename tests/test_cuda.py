"""The GPU paths: every stage on a CUDA device, checked against the same stage on the CPU.

Skipped where no CUDA device is visible (CI, laptops). `SELFSEG_TEST_DEVICE` picks the device (default
"cuda"); `SELFSEG_TEST_DEVICE=cpu python -m pytest -m cuda` runs the same checks with the CPU standing in,
which keeps the tests themselves honest on machines without a GPU. On a GPU machine:
`python -m pytest -q -m cuda` (or `bash benchmarks/gpu/run.sh tests`).

The models are the tiny random-init ones built in code: their captions and masks are meaningless; what is
checked is that each stage runs on the device, returns host (numpy) results of the promised shapes and
types, agrees with the CPU where the arithmetic allows, and does not leak device memory across images.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfseg import SelfSeg
from selfseg.io import load_image
from selfseg.tag.clustering.crf import crf_mean_field
from selfseg.tag.clustering.ensemble import ensemble_cluster
from selfseg.tag.clustering.filters import mode_filter
from selfseg.tag.clustering.lloyd import kmeans, kmeans_batch

DEVICE = os.environ.get("SELFSEG_TEST_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="no CUDA device visible"),
]


@pytest.fixture(autouse=True)
def tf32_allowed():
    """TF32 allowed everywhere, for convolutions (torch's default: cuDNN's fp32 precision "tf32") and for
    products (what torch.set_float32_matmul_precision("high") does): selfseg's float32 work keeps its own
    float32 (`exact_float32`), so every comparison with the CPU below holds under a user's settings."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def same_partition(a, b) -> bool:
    """Two label arrays split the points the same way (labels may be renamed)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def blobs(n_per: int = 120, k: int = 5, d: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 10
    return torch.cat([c + torch.randn(n_per, d, generator=g) for c in centres])


def test_kmeans_on_device_matches_cpu():
    x = blobs()
    cpu = kmeans(x, 5, n_init=3, seed=7)
    dev = kmeans(x.to(DEVICE), 5, n_init=3, seed=7)
    assert dev.labels.device.type == torch.device(DEVICE).type
    # The seeding draws its random numbers on the CPU generator on every device, so the same seed picks
    # the same starting centres; on well-separated data the result is then the same clustering.
    assert same_partition(cpu.labels.numpy(), dev.labels.cpu().numpy())
    assert np.isclose(cpu.inertia, dev.inertia, rtol=1e-4)
    # The restarts reach this partition under different label ids, and which restart wins can differ by a
    # float rounding of the inertia: compare each device centre with the CPU centre of the same cluster.
    torch.testing.assert_close(cpu.centers, dev.centers.cpu()[matching(cpu.labels, dev.labels.cpu())],
                               rtol=1e-4, atol=1e-3)


def matching(ref: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """For each label of `ref`, the label of `other` its points carry most often (ties: the lowest)."""
    inter = torch.zeros(int(ref.max()) + 1, int(other.max()) + 1)
    inter.index_put_((ref, other), torch.ones(len(ref)), accumulate=True)
    return inter.argmax(1)


def planted_inputs(regions: int = 4, noise: float = 1.0) -> tuple[list[np.ndarray], torch.Tensor]:
    """A planted scene's two feature maps, and the larger one with its positional encoding as k-means input."""
    from selfseg.tag.clustering.ensemble import sincos_2d
    from selfseg.tag.clustering.planted import planted_scene

    feats = planted_scene(regions, noise, 0).features
    h, w, _ = feats[-1].shape
    x = torch.cat([torch.as_tensor(feats[-1]).reshape(h * w, -1), sincos_2d(h, w, 256).reshape(h * w, -1)], 1)
    return feats, x


def test_kmeans_batch_on_device_matches_cpu():
    """The batched runs (consensus "coassoc"'s k-means) split a planted scene on the device as on the CPU."""
    _, x = planted_inputs()
    ks, seeds = [16, 20, 24, 28, 32], [1, 2, 3, 4, 5]
    cpu = kmeans_batch(x, ks, seeds)
    dev = kmeans_batch(x.to(DEVICE), ks, seeds)
    again = kmeans_batch(x.to(DEVICE), ks, seeds)
    for c, d, a, k in zip(cpu, dev, again, ks):
        assert d.labels.device.type == torch.device(DEVICE).type and d.centers.shape == (k, x.shape[1])
        assert same_partition(c.labels.numpy(), d.labels.cpu().numpy()), k
        assert np.isclose(c.inertia, d.inertia, rtol=1e-4), k
        assert torch.equal(d.labels, a.labels) and torch.equal(d.centers, a.centers), k  # one seed, one answer


def test_coassoc_consensus_on_device_matches_cpu():
    feats, _ = planted_inputs()
    cpu = ensemble_cluster(feats, seed=3, consensus="coassoc")
    dev = ensemble_cluster(feats, seed=3, consensus="coassoc", device=DEVICE)
    assert all(same_partition(a, b) for a, b in zip(cpu.runs, dev.runs))
    assert same_partition(cpu.consensus_labels, dev.consensus_labels) and same_partition(cpu.labels, dev.labels)
    again = ensemble_cluster(feats, seed=3, consensus="coassoc", device=DEVICE)
    assert np.array_equal(dev.labels, again.labels) and np.array_equal(dev.votes, again.votes)


def test_crf_and_mode_filter_on_device_match_cpu():
    g = torch.Generator().manual_seed(0)
    votes = torch.rand(2, 6, 24, 24, generator=g)
    votes /= votes.sum(1, keepdim=True)
    cpu = crf_mean_field(votes, 6.0, 0.8, 5, 11)
    dev = crf_mean_field(votes.to(DEVICE), 6.0, 0.8, 5, 11)
    torch.testing.assert_close(cpu, dev.cpu(), rtol=1e-5, atol=1e-5)
    labels = torch.randint(0, 5, (32, 32), generator=g)
    lc, pc = mode_filter(labels, 3, 8)
    ld, pd = mode_filter(labels.to(DEVICE), 3, 8)
    assert pc == pd and torch.equal(lc, ld.cpu())


def test_ensemble_cluster_on_device_matches_cpu():
    # Two scales of features over four quadrant regions with distinct means: a clear answer on any device.
    g = torch.Generator().manual_seed(1)
    means = torch.randn(4, 32, generator=g) * 6

    def scale(n: int) -> torch.Tensor:
        yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        region = (yy >= n // 2).long() * 2 + (xx >= n // 2).long()
        return means[region] + torch.randn(n, n, 32, generator=g)

    feats = [scale(12), scale(16)]
    cpu = ensemble_cluster(feats, seed=0, consensus="chain", ks=range(2, 6))
    dev = ensemble_cluster([f.to(DEVICE) for f in feats], seed=0, consensus="chain", ks=range(2, 6))
    assert isinstance(dev.labels, np.ndarray) and dev.labels.shape == (16, 16)
    assert same_partition(cpu.labels, dev.labels)
    assert {"kmeans", "align", "crf", "filter"} <= set(dev.timings)


@pytest.fixture(scope="module")
def photo():
    imgs = sorted((REPO / "examples" / "images").glob("*.jpg"))
    assert imgs, "examples/images is empty"
    return imgs[0]


def pipeline(*overrides: str) -> SelfSeg:
    return SelfSeg.from_config(REPO / "configs" / "smoke.yaml",
                               [f"model.device={DEVICE}", "captioning.cycles=2", *overrides])


def test_blip_encoder_on_device_matches_cpu(photo):
    """The same tiny BLIP weights give the same patch tokens on the device as on the CPU (float32)."""
    dev = pipeline()
    blip = dev.tagger.blip
    assert next(blip.model.parameters()).device.type == torch.device(DEVICE).type
    cpu_model = SelfSeg.from_config(REPO / "configs" / "smoke.yaml", ["model.device=cpu"]).tagger.blip
    cpu_model.model.load_state_dict({k: v.cpu() for k, v in blip.model.state_dict().items()})
    img = load_image(photo).image
    size = max(dev.config.clustering.scales)
    a = cpu_model.encode([img], size)
    b = blip.encode([img], size)
    assert b.device.type == torch.device(DEVICE).type
    # float32 rounding apart, not TF32's 10-bit inputs (about 1e-3 relative)
    torch.testing.assert_close(a, b.cpu(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("consensus", ["coassoc", "chain"])
def test_tagger_clusters_on_device_equal_the_cpus(photo, consensus):
    """The co-association cut picks among close lifetimes: features a TF32 convolution moved by 3e-4 gave
    another map on 70% of the patches. In float32 the device's clusters are the CPU's."""
    dev = pipeline(f"clustering.consensus={consensus}")
    cpu = SelfSeg.from_config(REPO / "configs" / "smoke.yaml", ["model.device=cpu", "captioning.cycles=2",
                                                                f"clustering.consensus={consensus}"])
    cpu.tagger.blip.model.load_state_dict({k: v.cpu() for k, v in dev.tagger.blip.model.state_dict().items()})
    a, b = cpu.tag(photo), dev.tag(photo)
    assert same_partition(a.cluster_grid, b.cluster_grid)


def test_clusters_encoded_alone_on_device_match_cpu(photo):
    """captioning.attention: concat's packed, block-masked encoder forward on the device, against the CPU."""
    dev = pipeline()
    blip = dev.tagger.blip
    cpu_model = SelfSeg.from_config(REPO / "configs" / "smoke.yaml", ["model.device=cpu"]).tagger.blip
    cpu_model.model.load_state_dict({k: v.cpu() for k, v in blip.model.state_dict().items()})
    img = load_image(photo).image
    size = max(dev.config.clustering.scales)
    n = (size // blip.patch_size) ** 2
    subsets = [[torch.arange(0, n, 3), torch.arange(1, n, 3), torch.arange(2, n, 3)]]
    a = cpu_model.encode_subsets([img], size, subsets)[0]
    b = blip.encode_subsets([img], size, subsets)[0]
    for x, y in zip(a, b):
        assert y.device.type == torch.device(DEVICE).type
        torch.testing.assert_close(x, y.cpu(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tagger_on_device(photo, dtype):
    s = pipeline(f"model.dtype={dtype}")
    p = next(s.tagger.blip.model.parameters())
    assert p.device.type == torch.device(DEVICE).type and str(p.dtype) == f"torch.{dtype}"
    items = list(s.tag_many([photo, photo], batch_size=2))  # one batch of two: the batched encode path
    assert [it.error for it in items] == [None, None]
    for it in items:
        r = it.result
        assert isinstance(r.cluster_grid, np.ndarray) and r.cluster_grid.ndim == 2
        assert r.batch_size == 2 and r.cycles_run == 2
        assert all(len(c.captions) == 2 for c in r.clusters)
    # Same image twice in one batch: the clustering (before any sampling) is the same for both.
    np.testing.assert_array_equal(items[0].result.cluster_grid, items[1].result.cluster_grid)


@pytest.mark.parametrize("segmenter", ["grounded_sam2", "clipseg", "bcc_clusters"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_segmenters_on_device(photo, segmenter, dtype):
    s = pipeline(f"model.dtype={dtype}", f"segment.segmenter={segmenter}")
    seg = s.segment(photo)
    h, w = load_image(photo).image.size[::-1]
    assert isinstance(seg.semantic, np.ndarray) and seg.semantic.shape == (h, w)
    assert set(seg.labels) <= set(seg.classes) and seg.tags.tags
    assert seg.masks.dtype == bool and seg.masks.shape[1:] == (h, w)
    assert np.isfinite(seg.mask_scores).all()
    wrappers = {"grounded_sam2": lambda m: [m.locator.detector, m.masker.sam], "clipseg": lambda m: [m.model],
                "bcc_clusters": lambda m: []}[segmenter](s.segmenter)
    for wrapper in wrappers:
        p = next(wrapper.model.parameters())
        assert p.device.type == torch.device(DEVICE).type and str(p.dtype) == f"torch.{dtype}"


@pytest.mark.parametrize("segmenter", ["grounded_sam2", "clipseg"])
def test_a_batch_of_images_on_device_equals_each_image_alone(segmenter):
    """SAM 2's and CLIPSeg's image encoders take a pipeline batch in one call on the device too: each photo's
    float32 result equals it segmented alone (the device's batched kernels may round otherwise: labels equal,
    scores within 1e-4, at most one mask pixel in a thousand)."""
    photos = sorted((REPO / "examples" / "images").glob("*.jpg"))[:2]
    over = ["tagger=vocabulary", "vocabulary=[wall, sky, tree]", "segment.vocabulary=given",
            f"segment.segmenter={segmenter}"]
    s = pipeline(*over)
    items = list(s.segment_many(photos, batch_size=2))
    assert [i.error for i in items] == [None, None]
    for item, photo in zip(items, photos):
        alone = pipeline(*over).segment(photo)
        got = item.result
        assert got.labels == alone.labels and len(got.labels) > 0
        np.testing.assert_allclose(got.scores, alone.scores, atol=1e-4)
        assert (got.masks != alone.masks).mean() < 1e-3


@pytest.mark.skipif(not ON_CUDA, reason="device memory is a CUDA measure")
def test_no_device_memory_growth_across_images(photo):
    """A second image leaves as much CUDA memory allocated as the first: nothing per-image is kept."""
    s = pipeline("segment.segmenter=grounded_sam2")
    s.segment(photo)
    torch.cuda.synchronize()
    after_one = torch.cuda.memory_allocated()
    s.segment(photo)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - after_one < 2**20


def test_bench_bcc_reports_the_device(tmp_path):
    out = tmp_path / "bcc.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "benchmarks/bench_bcc.py", "--config", "configs/smoke.yaml",
                           "--size", "tiny", "--images", "2", "--warmup", "1", "--repeats", "1",
                           "--device", DEVICE, "--dtype", "bfloat16", "--json", str(out), "--quiet"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["tagger"]["images"] == 2 and rep["tagger"]["images_per_second"] > 0
    if ON_CUDA:
        assert not rep["machine"]["device_name"].startswith("CPU") and rep["machine"]["cuda_available"] is True
        assert rep["memory"]["cuda_max_allocated_mib_tagger"] > 0
