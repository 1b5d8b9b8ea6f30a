"""The paper's baseline tagger: nouns of BLIP captions of the WHOLE image (no clustering)."""
from __future__ import annotations

import time
from collections.abc import Sequence

from ..config import Config
from ..io import LoadedImage
from ..models.blip import BlipCaptioner
from ..streams import image_key
from .base import TAGGERS
from .nouns import NounExtractor
from .result import ClusterCaptions, TagResult, rank_nouns


@TAGGERS.register("caption")
class CaptionTagger:
    """`captioning.cycles` sampled captions of each whole image (all encoder tokens, CLS included, as
    BLIP's own generate does), at the largest of `clustering.scales`; ONE generate call per image batch.
    The result has a single pseudo-cluster 0 covering the image."""

    name = "caption"

    def __init__(self, config: Config, captioner: BlipCaptioner | None = None) -> None:
        self.config = config
        self.nouns = NounExtractor(config.nouns)
        self.nouns._load()
        self.blip = captioner or BlipCaptioner.from_spec(config.model.spec(config.model.blip))

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        if not images:
            return []
        pc = self.config.captioning
        size = max(self.config.clustering.scales)
        t0 = time.perf_counter()
        tokens = self.blip.encode([im.image for im in images], size)
        timings = {f"encode_{size}": time.perf_counter() - t0}
        sets = [tokens[b] for b in range(len(images))]
        t0 = time.perf_counter()
        # Row order: cycle, then image. Rows of one image share its tensor, so the captioner projects its
        # keys and values once.
        # Each caption draws from its own stream (the image's pixels, the cycle): batch neighbours change nothing.
        keys = [image_key(im.image) for im in images]
        texts = self.blip.caption([s for _ in range(pc.cycles) for s in sets], pc, seed=pc.seed,
                                  streams=[(keys[b], cyc) for cyc in range(pc.cycles) for b in range(len(images))])
        timings["caption"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = self.nouns(texts)
        timings["nouns"] = time.perf_counter() - t0
        results = []
        for b, im in enumerate(images):
            rows = range(b, len(texts), len(images))
            clusters = [ClusterCaptions(cluster=0, size=0, captions=[texts[i] for i in rows],
                                        nouns=[found[i] for i in rows])]
            results.append(TagResult(
                source=im.source, image_size=im.size, tagger=self.name, model=self.blip.model_id,
                nouns=rank_nouns(clusters, self.config.nouns.min_support), clusters=clusters,
                cycles_run=pc.cycles, timings=dict(timings), batch_size=len(images),
                meaningless=self.blip.is_tiny,
            ))
        return results
