"""BLIP-Cluster-Caption (Self-Seg Sect. 3.1-3.2): cluster BLIP patch tokens, caption each cluster, keep nouns."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..io import LoadedImage
from ..models.spec import ModelConfig
from ..streams import image_key
from .base import TAGGERS
from .caption import BlipTaggerConfig, blip_checkpoints, load_captioner
from .nouns import NounExtractor
from .result import ClusterCaptions, ClusterMaps, TagResult, rank_nouns

if TYPE_CHECKING:
    import torch

    from ..models.blip import BlipCaptioner


@TAGGERS.register("bcc", config=BlipTaggerConfig, checkpoints=blip_checkpoints)
class BCCTagger:
    name = "bcc"

    def __init__(self, config: BlipTaggerConfig, models: ModelConfig, captioner: BlipCaptioner | None = None) -> None:
        self.config, self.models = config, models
        # Language resources first: a missing WordNet should fail before minutes of model loading.
        self.nouns = NounExtractor(config.nouns)
        self.nouns._load()
        self.blip = captioner or load_captioner(models)
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
            _sync(self.blip.device)
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
            _sync(self.blip.device)
            timings["encode_local"] = time.perf_counter() - t0
            sets = [[torch.cat([lo, gl]) for lo, gl in zip(local[b], sets[b])] for b in range(len(sets))]

        keys = [image_key(im.image) for im in images]
        captions, nouns, cycles_run = self._caption_cycles(sets, keys, timings)

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

    def _caption_cycles(self, sets: list[list[torch.Tensor]], keys: list[int], timings: dict[str, float]):
        """Sample captions for every (image, cluster) `cycles` times; returns captions[b][c][cycle],
        nouns[b][c][cycle] and cycles run per image.

        Each caption draws from its own random stream, named by the seed, the image's pixels (`keys`), the
        cycle and the cluster: an image gets the same captions whatever else is in its batch or call.

        Without adaptive cycles, all images x clusters x cycles go to ONE generate call. With
        `adaptive_cycles = N`, cycles run in blocks of N (each block one call over the still-active
        images); an image stops after N consecutive cycles that found no new noun.
        """
        pc = self.config.captioning
        total, patience = pc.cycles, pc.adaptive_cycles
        block = min(patience, total) if patience else total
        captions = [[[] for _ in s] for s in sets]
        nouns = [[[] for _ in s] for s in sets]
        cycles_run = [0] * len(sets)
        seen: list[set[str]] = [set() for _ in sets]
        quiet = [0] * len(sets)
        active = list(range(len(sets)))
        done = 0
        timings.setdefault("caption", 0.0)
        timings.setdefault("nouns", 0.0)
        while active and done < total:
            n = min(block, total - done)
            # Row order: image, then cycle, then cluster.
            rows = [(b, cyc, c) for b in active for cyc in range(n) for c in range(len(sets[b]))]
            t0 = time.perf_counter()
            texts: list[str] = []
            for chunk in self._chunks(rows, sets):
                texts += self.blip.caption([sets[b][c] for b, _, c in chunk], self.gen, seed=pc.seed,
                                           streams=[(keys[b], done + cyc, c) for b, cyc, c in chunk])
            _sync(self.blip.device)
            timings["caption"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            found = self.nouns(texts, context=pc.prompt)
            timings["nouns"] += time.perf_counter() - t0
            per: dict[tuple[int, int], list[tuple[int, str, list[str]]]] = {}
            for (b, cyc, c), text, ns in zip(rows, texts, found):
                per.setdefault((b, cyc), []).append((c, text, ns))
            still = []
            for b in active:
                stopped = False
                for cyc in range(n):
                    new = False
                    for c, text, ns in per.get((b, cyc), []):
                        captions[b][c].append(text)
                        nouns[b][c].append(ns)
                        new |= bool(set(ns) - seen[b])
                        seen[b] |= set(ns)
                    cycles_run[b] += 1
                    quiet[b] = 0 if new else quiet[b] + 1
                    if patience and quiet[b] >= patience:
                        stopped = True
                        break
                if not stopped:
                    still.append(b)
            active = still
            done += n
        return captions, nouns, cycles_run


    def _chunks(self, rows: list[tuple[int, int, int]], sets: list[list[torch.Tensor]]):
        """Split caption rows into generate calls whose attention state fits `max_cross_attention_gib`.

        Under the budget (the usual case) everything is ONE call. Over it, consecutive rows (image by image,
        cycle by cycle) are packed greedily, so an image's rows stay together whenever they fit.
        """
        pc = self.config.captioning
        budget = pc.max_cross_attention_gib * 2**30
        positions = self.blip.caption_positions(pc)

        def cost(tokens: int, n_rows: int) -> int:
            return self.blip.attention_state_bytes(tokens, n_rows, positions)

        chunk: list[tuple[int, int, int]] = []
        seen: set[tuple[int, int]] = set()
        tokens = 0
        for row in rows:
            key = (row[0], row[2])
            extra = 0 if key in seen else int(sets[row[0]][row[2]].shape[0])
            if chunk and budget > 0 and cost(tokens + extra, len(chunk) + 1) > budget:
                yield chunk
                chunk, seen, tokens, extra = [], set(), 0, int(sets[row[0]][row[2]].shape[0])
            chunk.append(row)
            seen.add(key)
            tokens += extra
        if chunk:
            yield chunk


def _sync(device: torch.device) -> None:
    # Honest stage timings on a GPU: wait for the queued kernels before reading the clock.
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
