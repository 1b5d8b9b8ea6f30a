"""BCC tagger plumbing with the tiny random-init BLIP (smoke config). Captions are meaningless noise;
these tests check shapes, batching, seeding and bookkeeping, never caption quality."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from selfseg import SelfSeg
from selfseg.config import load_config
from selfseg.io import load_image
from selfseg.tag import build_tagger
from selfseg.tag.bcc import BCCTagger


@pytest.fixture(scope="module")
def tagger(smoke_seg):
    return smoke_seg.tagger


@pytest.fixture(scope="module")
def loaded(ade_images):
    return [load_image(p) for p in ade_images]


def _with(tagger, **captioning):
    cfg = dataclasses.replace(tagger.config, captioning=dataclasses.replace(tagger.config.captioning, **captioning))
    return BCCTagger(cfg, tagger.models, captioner=tagger.blip)


def test_one_generate_call_per_image_batch(tagger, loaded):
    before = tagger.blip.generate_calls
    results = tagger.tag_batch(loaded)
    assert tagger.blip.generate_calls - before == 1
    for im, r in zip(loaded, results):
        n = int(r.cluster_grid.max()) + 1
        assert r.cluster_grid.shape == (32, 32)
        assert sorted(np.unique(r.cluster_grid)) == list(range(n))  # contiguous labels
        assert r.cluster_map.shape == im.size
        assert len(r.clusters) == n and all(len(c.captions) == 2 for c in r.clusters)  # smoke: 2 cycles
        assert sum(c.size for c in r.clusters) == 32 * 32
        assert r.cycles_run == 2 and r.batch_size == len(loaded) and r.meaningless
        assert {"encode_384", "encode_512", "kmeans", "align", "crf", "filter", "caption", "nouns"} <= set(r.timings)
        cc = tagger.config.clustering
        assert len(r.intermediates.runs) == 2 * len(cc.ks if cc.consensus == "chain" else cc.coassoc_ks)  # x 2 scales
        # every ranked noun comes from some caption and its counts add up
        for ns in r.nouns:
            produced = sum(ns.noun in cn for c in r.clusters for cn in c.nouns)
            assert ns.support == produced and 1 <= ns.cycles <= 2
        assert [n.support for n in r.nouns] == sorted((n.support for n in r.nouns), reverse=True)


def test_the_coassociation_consensus_drives_the_tagger(tagger, loaded):
    """The smoke config pins the paper's chain (configs/base.yaml); selfseg's default consensus runs through the
    same tagger: its over-segmenting runs, no reference run, one caption set per consensus cluster."""
    cfg = dataclasses.replace(tagger.config, clustering=dataclasses.replace(tagger.config.clustering,
                                                                            consensus="coassoc"))
    r = BCCTagger(cfg, tagger.models, captioner=tagger.blip).tag_batch(loaded[:1])[0]
    maps = r.intermediates
    assert maps.consensus == "coassoc" and maps.reference == -1
    assert len(maps.runs) == max(cfg.clustering.coassoc_runs, 2 * len(cfg.clustering.coassoc_ks))
    n = int(r.cluster_grid.max()) + 1
    assert len(r.clusters) == n and sum(c.size for c in r.clusters) == 32 * 32
    assert "consensus" in r.timings


def test_same_seed_same_captions(tagger, loaded):
    a = tagger.tag_batch(loaded[:1])[0]
    b = tagger.tag_batch(loaded[:1])[0]
    assert [c.captions for c in a.clusters] == [c.captions for c in b.clusters]
    c = _with(tagger, seed=123).tag_batch(loaded[:1])[0]
    assert [x.captions for x in c.clusters] != [x.captions for x in a.clusters]


def test_adaptive_cycles_stop_early_and_record_it(tagger, loaded):
    t = _with(tagger, cycles=40, adaptive_cycles=1)
    before = t.blip.generate_calls
    r = t.tag_batch(loaded[:1])[0]
    assert r.cycles_run >= 1 and r.cycles_run < 40
    assert all(len(c.captions) == r.cycles_run for c in r.clusters)
    # the last cycle found nothing new, so stopping there was the rule
    seen_before = {n for c in r.clusters for cn in c.nouns[: r.cycles_run - 1] for n in cn}
    last = {n for c in r.clusters for n in c.nouns[r.cycles_run - 1]}
    assert last <= seen_before
    assert t.blip.generate_calls - before == r.cycles_run  # blocks of 1 cycle


def test_min_support_drops_rare_nouns(tagger, loaded):
    cfg = dataclasses.replace(tagger.config, nouns=dataclasses.replace(tagger.config.nouns, min_support=2))
    r = BCCTagger(cfg, tagger.models, captioner=tagger.blip).tag_batch(loaded[:1])[0]
    assert all(n.cycles >= 2 for n in r.nouns)


def test_memory_budget_splits_calls_and_keeps_every_caption(tagger, loaded, monkeypatch):
    pc = tagger.config.captioning
    positions = tagger.blip.caption_positions(pc)
    budget = tagger.blip.attention_state_bytes(1024, 5, positions)  # about one image's sets, 5 rows
    t = _with(tagger, max_cross_attention_gib=budget / 2**30)
    calls = []
    real = t.blip.caption

    def spy(sets, *args, **kwargs):
        distinct = {id(s): int(s.shape[0]) for s in sets}
        calls.append(t.blip.attention_state_bytes(sum(distinct.values()), len(sets), positions))
        return real(sets, *args, **kwargs)

    monkeypatch.setattr(t.blip, "caption", spy)
    results = t.tag_batch(loaded)
    assert len(calls) > 1 and all(c <= budget for c in calls)
    for r in results:  # nothing lost: every cluster still has a caption per cycle
        assert all(len(c.captions) == 2 for c in r.clusters)


def test_split_adaptive_cycles_never_replay_a_cycle(tagger, loaded):
    """Adaptive blocks split into several calls by a tiny memory budget: every call draws fresh samples."""
    t = _with(tagger, cycles=4, adaptive_cycles=2, max_cross_attention_gib=1e-9)
    r = t.tag_batch(loaded[:1])[0]
    for c in r.clusters:
        assert len(set(c.captions)) == len(c.captions)


@pytest.mark.parametrize("token_slice", ["patches", "released"])
def test_each_caption_sees_the_tokens_its_cluster_was_made_of(tagger, loaded, token_slice, monkeypatch):
    """"patches": the patch tokens, clustered and captioned. "released": the released code's [:, :-1] slice
    (CLS on the grid as patch 0, the last patch dropped) for clustering AND captions, as it uses them."""
    import torch

    import selfseg.tag.clustering.ensemble as ensemble

    t = _with(tagger, token_slice=token_slice)
    clustered, captioned = [], []
    real_cluster, real_caption = ensemble.ensemble_cluster, t.blip.caption
    monkeypatch.setattr(ensemble, "ensemble_cluster", lambda feats, *a, **k: clustered.append(feats) or
                        real_cluster(feats, *a, **k))
    monkeypatch.setattr(t.blip, "caption", lambda sets, *a, **k: captioned.append(sets) or real_caption(sets, *a, **k))
    r = t.tag_batch(loaded[:1])[0]
    scales = t.config.clustering.scales
    for s, feats in zip(scales, clustered[0]):
        tokens = t.blip.encode([loaded[0].image], s)[0]
        grid = tokens[:-1] if token_slice == "released" else tokens[1:]
        torch.testing.assert_close(feats.reshape(-1, feats.shape[-1]), grid)
    top = t.blip.encode([loaded[0].image], max(scales))[0]
    grid = top[:-1] if token_slice == "released" else top[1:]
    flat = torch.as_tensor(r.cluster_grid.reshape(-1))
    n = len(r.clusters)
    assert n == int(r.cluster_grid.max()) + 1
    for c in range(n):  # the first cycle's rows, in cluster order
        torch.testing.assert_close(captioned[0][c], grid[flat == c])


@pytest.mark.parametrize("token_slice", ["patches", "released"])
def test_concat_attention_captions_the_cluster_encoded_alone_then_its_global_tokens(tagger, loaded, token_slice,
                                                                                     monkeypatch):
    """attention: concat (BBoost's mode in the released pipeline): a cluster's caption reads its patches
    encoded on their own (n + 1 tokens) followed by its n global tokens, patch embeddings indexed by the same
    grid places as the global tokens."""
    import torch

    t = _with(tagger, token_slice=token_slice, attention="concat")
    captioned = []
    real_caption = t.blip.caption
    monkeypatch.setattr(t.blip, "caption", lambda sets, *a, **k: captioned.append(sets) or real_caption(sets, *a, **k))
    r = t.tag_batch(loaded[:1])[0]
    top = max(t.config.clustering.scales)
    tokens = t.blip.encode([loaded[0].image], top)[0]
    grid = tokens[:-1] if token_slice == "released" else tokens[1:]
    flat = torch.as_tensor(r.cluster_grid.reshape(-1))
    places = [torch.nonzero(flat == c).flatten() for c in range(len(r.clusters))]
    local = t.blip.encode_subsets([loaded[0].image], top, [places])[0]
    assert "encode_local" in r.timings
    for c, idx in enumerate(places):
        got = captioned[0][c]
        assert got.shape[0] == 2 * len(idx) + 1
        torch.testing.assert_close(got[: len(idx) + 1], local[c])
        torch.testing.assert_close(got[len(idx) + 1:], grid[idx])
    plain = _with(tagger, token_slice=token_slice).tag_batch(loaded[:1])[0]
    assert np.array_equal(plain.cluster_grid, r.cluster_grid)  # the clusters do not depend on the mode
    assert [c.captions for c in plain.clusters] != [c.captions for c in r.clusters]  # the captions read it


def test_an_unknown_attention_mode_is_one_line():
    from selfseg.config import CaptioningConfig
    from selfseg.errors import ConfigError

    with pytest.raises(ConfigError, match="attention: expected global or concat, got .local."):
        CaptioningConfig(attention="local")


def test_vocabulary_tagger(ade_images):
    seg = SelfSeg.from_config({"tagger": "vocabulary", "vocabulary": ["dog", "cat", "dog", " "]})
    r = seg.tag(ade_images[0])
    assert r.tags == ["dog", "cat"] and r.cluster_grid is None and r.cluster_map is None


def test_unknown_tagger_lists_registered():
    from selfseg.errors import ConfigError

    with pytest.raises(ConfigError, match="expected one of: bcc, caption, describe_extract, union, vlm, vocabulary"):
        _ = SelfSeg.from_config({"tagger": "nope"}).tagger


def test_missing_checkpoint_names_the_fix(monkeypatch):
    from selfseg.errors import ResourceMissingError
    from selfseg.models.blip import BlipCaptioner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config({"model": {"blip": "Salesforce/blip-image-captioning-large", "local_files_only": True}})
    with pytest.raises(ResourceMissingError, match="selfseg download"):
        BlipCaptioner.from_spec(cfg.model.spec(cfg.model.blip))


def test_real_loading_code_on_a_saved_checkpoint(tmp_path, ade_images):
    """`from_pretrained` (the path real checkpoints take) on a tiny random BLIP saved to disk."""
    from selfseg.models.tiny import build_tiny_blip

    model, processor = build_tiny_blip()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    seg = SelfSeg.from_config({"model": {"blip": str(tmp_path), "device": "cpu"}, "captioning": {"cycles": 1}})
    r = seg.tag(ade_images[0])
    assert r.model == str(tmp_path) and not r.meaningless  # loaded like a real checkpoint
    assert len(r.clusters) == int(r.cluster_grid.max()) + 1 and all(len(c.captions) == 1 for c in r.clusters)


def test_whole_image_caption_tagger(smoke_config, tagger, loaded):

    cfg = dataclasses.replace(smoke_config, tagger="caption",
                              captioning=dataclasses.replace(smoke_config.captioning, cycles=3))
    t = build_tagger(cfg, "caption", captioner=tagger.blip)
    before = t.blip.generate_calls
    results = t.tag_batch(loaded)
    assert t.blip.generate_calls - before == 1  # all images x cycles in one call
    for r in results:
        assert r.tagger == "caption" and r.cluster_grid is None and r.cycles_run == 3
        # plain BLIP: the checkpoint's own 384 px (BCC's scales reach 512), all 24 x 24 patches
        assert "encode_384" in r.timings and r.clusters[0].size == 24 * 24
        assert len(r.clusters) == 1 and len(r.clusters[0].captions) == 3
        assert set(r.tags) == {n for ns in r.clusters[0].nouns for n in ns}
    # The memory budget splits its calls as BCC's, and every caption is the one the single call drew.
    pc = cfg.captioning
    budget = t.blip.attention_state_bytes(int(t.blip.encode([loaded[0].image], t.blip.native_size).shape[1]),
                                          2, t.blip.caption_positions(pc))
    tight = dataclasses.replace(cfg, captioning=dataclasses.replace(pc, max_cross_attention_gib=budget / 2**30))
    before = t.blip.generate_calls
    split = build_tagger(tight, "caption", captioner=tagger.blip).tag_batch(loaded)
    assert t.blip.generate_calls - before == 2 * len(loaded)  # an image's 3 rows, 2 to a call
    assert [r.clusters[0].captions for r in split] == [r.clusters[0].captions for r in results]
    # Adaptive cycles stop an image after a cycle with no new noun, as in BCC.
    adaptive = dataclasses.replace(cfg, captioning=dataclasses.replace(pc, cycles=40, adaptive_cycles=1))
    r = build_tagger(adaptive, "caption", captioner=tagger.blip).tag_batch(loaded[:1])[0]
    assert 1 <= r.cycles_run < 40 and len(r.clusters[0].captions) == r.cycles_run
    assert set(r.clusters[0].nouns[-1]) <= {n for ns in r.clusters[0].nouns[:-1] for n in ns}


@pytest.mark.parametrize("tagger_name", ["bcc", "caption"])
def test_a_checkpoint_that_cannot_be_had_fails_before_wordnet_loads(tagger_name, tmp_path, monkeypatch):
    """WordNet and spaCy take seconds to load; a BLIP checkpoint that is neither a folder nor cached, with
    downloads off, is reported without waiting for them. A cached or local one goes on to load them."""
    from selfseg.errors import ResourceMissingError
    from selfseg.tag import nouns as nouns_module

    loads = []
    monkeypatch.setattr(nouns_module.NounExtractor, "_load", lambda self: loads.append(self))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for blip, line in ((str(tmp_path / "missing"), "BLIP checkpoint folder .*missing does not exist"),
                       ("org/blip", "BLIP checkpoint 'org/blip' is not in the local cache and downloads are off")):
        cfg = load_config("smoke", [f"tagger={tagger_name}", f"model.blip={blip}",
                                    f"model.cache_dir={tmp_path / 'hub'}"])
        with pytest.raises(ResourceMissingError, match=line):
            build_tagger(cfg)
    assert loads == []

    # Cached (here only its config, as a first online run can leave it): WordNet loads, then the model's
    # own loading reports what is missing.
    snapshot = tmp_path / "hub" / "models--org--blip" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "blip"}')
    (tmp_path / "hub" / "models--org--blip" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--blip" / "refs" / "main").write_text("0" * 40)
    cfg = load_config("smoke", [f"tagger={tagger_name}", "model.blip=org/blip", f"model.cache_dir={tmp_path / 'hub'}"])
    with pytest.raises(ResourceMissingError, match="'org/blip' is only partly in the local cache"):
        build_tagger(cfg)
    assert len(loads) == 1
