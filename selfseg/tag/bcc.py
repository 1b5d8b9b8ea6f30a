"""BLIP-Cluster-Caption (Self-Seg Sect. 3.1-3.2): cluster BLIP patch tokens, caption each cluster, keep nouns."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..io import LoadedImage
from ..models.spec import ModelConfig
from ..streams import image_key
from .base import TAGGERS
from .caption import BlipTaggerConfig, blip_checkpoints, caption_cycles, load_nouns_then_captioner, sync
from .result import ClusterCaptions, ClusterMaps, TagResult, rank_nouns

if TYPE_CHECKING:
    import torch

    from ..models.blip import BlipCaptioner


@TAGGERS.register("bcc", config=BlipTaggerConfig, checkpoints=blip_checkpoints)
class BCCTagger:
    name = "bcc"

    def __init__(self, config: BlipTaggerConfig, models: ModelConfig, captioner: BlipCaptioner | None = None) -> None:
        self.config, self.models = config, models
        self.nouns, self.blip = load_nouns_then_captioner(config, models, captioner)
        self.gen = config.captioning

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        import torch  # torch and the clustering chain load with the first batch, not with the config

        from .clustering.ensemble import ensemble_cluster

        if not images:
            return []
        cc, pc = self.config.clustering, self.config.captioning
        pils = [im.image for im in images]
        timings: dict[str, float] = {}
        top = max(cc.scales)
        tokens_by_scale = {}
        for s in cc.scales:
            t0 = time.perf_counter()
            tokens_by_scale[s] = self.blip.encode(pils, s)
            sync(self.blip.device)
            timings[f"encode_{s}"] = time.perf_counter() - t0

        # "released": the authors' [:, :-1] slice, for clustering and captions alike: CLS lies on the grid as
        # patch 0, every patch one place on, and the last patch is never used.
        released = pc.token_slice == "released"
        maps: list[ClusterMaps] = []
        for b in range(len(images)):
            feats = []
            for s in cc.scales:
                g = s // self.blip.patch_size
                grid = tokens_by_scale[s][b, :-1] if released else tokens_by_scale[s][b, 1:]
                feats.append(grid.reshape(g, g, -1))
            m = ensemble_cluster(feats, cc, seed=pc.seed, device=self.blip.device)
            maps.append(m)
            for k, v in m.timings.items():
                timings[k] = timings.get(k, 0.0) + v

        # Token subsets of the largest scale, one per (image, cluster).
        top_tokens = tokens_by_scale[top]
        body = top_tokens[:, :-1] if released else top_tokens[:, 1:]
        sets: list[list[torch.Tensor]] = []
        members: list[list[torch.Tensor]] = []  # per image, per cluster: its places on the largest grid
        for b, m in enumerate(maps):
            flat = torch.as_tensor(m.labels.reshape(-1), device=body.device)
            members.append([torch.nonzero(flat == c).flatten() for c in range(m.n_clusters)])
            sets.append([body[b, idx] for idx in members[b]])
        del tokens_by_scale, top_tokens
        if pc.attention == "concat":
            # The cluster's patches encoded on their own, then its global tokens. The released code indexes
            # the patch embeddings with the grid places it also indexes the global tokens with, so with its
            # [:, :-1] slice the two halves are one patch apart, as there.
            t0 = time.perf_counter()
            local = self.blip.encode_subsets(pils, top, members)
            sync(self.blip.device)
            timings["encode_local"] = time.perf_counter() - t0
            sets = [[torch.cat([lo, gl]) for lo, gl in zip(local[b], sets[b])] for b in range(len(sets))]

        keys = [image_key(im.image) for im in images]
        captions, nouns, cycles_run = caption_cycles(self.blip, self.nouns, pc, sets, keys, timings)

        results = []
        for b, (im, m) in enumerate(zip(images, maps)):
            sizes = [int((m.labels == c).sum()) for c in range(m.n_clusters)]
            clusters = [
                ClusterCaptions(cluster=c, size=sizes[c], captions=captions[b][c], nouns=nouns[b][c])
                for c in range(m.n_clusters)
            ]
            results.append(TagResult(
                source=im.source, image_size=im.size, tagger=self.name, model=self.blip.model_id,
                nouns=rank_nouns(clusters, self.config.nouns.min_support), clusters=clusters,
                cycles_run=cycles_run[b], cluster_grid=m.labels, intermediates=m, timings=dict(timings),
                batch_size=len(images), meaningless=self.blip.is_tiny,
            ))
        return results
