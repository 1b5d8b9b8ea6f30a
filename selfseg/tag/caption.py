"""The paper's baseline tagger: nouns of BLIP captions of the WHOLE image (no clustering)."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, check, choices
from ..io import LoadedImage
from ..models.spec import CaptionSampling, ModelConfig
from ..streams import image_key
from .base import TAGGERS
from .clustering.config import ClusteringConfig
from .nouns import NounExtractor, NounsConfig
from .result import ClusterCaptions, TagResult, rank_nouns

if TYPE_CHECKING:
    import torch

    from ..models.blip import BlipCaptioner

#: Which encoder tokens a cluster's caption sees (captioning.token_slice).
TOKEN_SLICES = ("patches", "released")
#: Most caption cycles per cluster (10,000 x 8 clusters: 80,000 captions of one image).
MAX_CYCLES = 10_000
#: What a cluster's caption attends to in BCC (captioning.attention).
ATTENTION_MODES = ("global", "concat")

#: Caption sampling profiles; a CaptioningConfig field left at None takes its profile's value.
#: "released": what the authors' released code effectively ran, the run behind the published numbers. It
#: called LAVIS `generate_from_encoder(use_nucleus_sampling=True, top_p=1, repetition_penalty=100,
#: min_length=4, max_length=25)`, whose nucleus branch passes repetition_penalty=1.1 to generate (the 100 is
#: never used) and whose lengths count the 4 prompt tokens "[DEC] a picture of" (so: no minimum, at most 21
#: new tokens); top-k was transformers 4's generate default, 50.
#: "paper": the values Sect. 4.1 states, read as new tokens: 4..25 new tokens, repetition penalty 100 (with
#: transformers' penalty, which also counts the prompt's tokens, this all but bans "a", "picture", "of" and
#: every word already said).
CAPTION_PROFILES: dict[str, dict[str, Any]] = {
    "released": dict(top_p=1.0, top_k=50, repetition_penalty=1.1, min_length=4, max_length=25,
                     length_counts_prompt=True),
    "paper": dict(top_p=1.0, top_k=50, repetition_penalty=100.0, min_length=4, max_length=25,
                  length_counts_prompt=False),
}


@dataclass
class CaptioningConfig:
    # BLIP's captioning prompt; captions are returned without it.
    prompt: str = "a picture of "
    # Caption samples per cluster (paper: VOC 1, ADE20K 10, Cityscapes 20).
    cycles: int = 1
    # Beyond the paper: stop early once this many consecutive cycles add no new noun (0: off).
    adaptive_cycles: int = 0
    # Sampling profile, "released" or "paper" (see CAPTION_PROFILES and the README's *How BCC runs here*); the
    # fields below, when set, override it.
    profile: str = "released"
    # Nucleus sampling threshold (profiles: 1.0).
    top_p: float | None = None
    # Top-k; 0 turns it off (profiles: 50, transformers 4's generate default, as the released code ran).
    top_k: int | None = None
    # transformers' repetition penalty over every token already in the sequence, the prompt's included
    # (released 1.1, paper 100).
    repetition_penalty: float | None = None
    # Shortest caption in tokens (profiles: 4).
    min_length: int | None = None
    # Longest caption in tokens (profiles: 25).
    max_length: int | None = None
    # Whether min/max_length count the prompt's tokens, as LAVIS did (released: true; paper: false, new tokens
    # only).
    length_counts_prompt: bool | None = None
    # Which encoder tokens a cluster's caption sees. "patches": the cluster's own patch tokens.
    # "released": the released code's slice [:, :-1], which keeps CLS as patch 0 and drops the last patch.
    token_slice: str = "patches"
    # BCC: what a cluster's caption attends to. "global": the cluster's tokens of the whole image's encoding
    # (the paper). "concat": the cluster's patches encoded again on their own (CLS first, with the first n+1
    # position embeddings, as the released code did), followed by those global tokens: BBoost's
    # attention_mode "concat", which the released X-Decoder pipeline sets.
    attention: str = "global"
    # Memory budget (GiB) of one caption call's attention state: the cross-attention keys and values of
    # every distinct token set (projected once per set, every layer) plus each row's self-attention cache.
    # All rows of a batch go to ONE call while they fit; beyond it, calls are split (rows kept in order).
    # 0: no limit. At ViT-L, 8 images x 1024 patches take about 0.6 GiB in float32.
    max_cross_attention_gib: float = 8.0
    # Seed of k-means and of the caption sampling: the same seed and the same image give the same result,
    # whatever the image's batch, shard, order or name (each caption draws from its own stream).
    seed: int = 0

    def __post_init__(self) -> None:
        # The rows of a cycle block are listed up front: a cycle count far past any use (the paper's most is
        # 20) would exhaust memory before the first caption, not fail with a message.
        # Seeds feed both torch's generator (signed 64-bit) and NumPy's SeedSequence (non-negative).
        check(isinstance(self.seed, int) and 0 <= self.seed < 2**63, "seed", "an integer in 0..2**63-1", self.seed)
        check(1 <= self.cycles <= MAX_CYCLES, "cycles", f"an integer in 1..{MAX_CYCLES}", self.cycles)
        check(self.adaptive_cycles >= 0, "adaptive_cycles", "an integer >= 0", self.adaptive_cycles)
        check(self.max_cross_attention_gib >= 0, "max_cross_attention_gib", "a number >= 0 (0: no limit)",
              self.max_cross_attention_gib)
        check(self.token_slice in TOKEN_SLICES, "token_slice", choices(TOKEN_SLICES), self.token_slice)
        check(self.attention in ATTENTION_MODES, "attention", choices(ATTENTION_MODES), self.attention)
        self.sampling()

    def sampling(self) -> CaptionSampling:
        """The profile's values with this config's overrides (checked: one ConfigError line on a bad one)."""
        if self.profile not in CAPTION_PROFILES:
            raise ConfigError(f"profile: expected {choices(CAPTION_PROFILES)}, got {self.profile!r}")
        values = {k: (v if getattr(self, k) is None else getattr(self, k))
                  for k, v in CAPTION_PROFILES[self.profile].items()}
        s = CaptionSampling(**values)
        check(0 < s.top_p <= 1, "top_p", "a value in (0, 1]", s.top_p)
        check(s.top_k >= 0, "top_k", "an integer >= 0 (0: off)", s.top_k)
        check(s.repetition_penalty > 0, "repetition_penalty", "a number > 0 (1: none)",
               s.repetition_penalty)
        check(0 <= s.min_length <= s.max_length and s.max_length >= 1, "min_length / max_length",
               "0 <= min_length <= max_length, max_length >= 1", (s.min_length, s.max_length))
        return s


@dataclass
class BlipTaggerConfig:
    """The settings of the taggers that caption with BLIP (bcc, caption): the config file's `clustering`,
    `captioning` and `nouns` sections; the BLIP checkpoint is the shared `model.blip`."""

    clustering: ClusteringConfig
    captioning: CaptioningConfig
    nouns: NounsConfig


@dataclass
class CaptionTaggerConfig:
    """The whole-image caption tagger's settings: the config file's `captioning` and `nouns` sections (it
    clusters nothing, so `clustering` is not among them)."""

    captioning: CaptioningConfig
    nouns: NounsConfig


def blip_checkpoints(block: BlipTaggerConfig | CaptionTaggerConfig, models: ModelConfig) -> list[str]:
    return [models.blip]


def load_captioner(models: ModelConfig) -> BlipCaptioner:
    """The BLIP captioner of the shared model section (torch and transformers load here, not at import)."""
    from ..models.blip import BlipCaptioner

    return BlipCaptioner.from_spec(models.spec(models.blip))


def load_nouns_then_captioner(config: BlipTaggerConfig | CaptionTaggerConfig, models: ModelConfig,
                              captioner: BlipCaptioner | None) -> tuple[NounExtractor, BlipCaptioner]:
    """The noun extractor, loaded, and the captioner. A checkpoint that cannot be had fails first (a quick
    look at the cache); then WordNet and spaCy (seconds, and a missing one fails before minutes of model
    loading); then the model."""
    if captioner is None:
        from ..models.loading import check_available

        check_available("BLIP", models.spec(models.blip))
    nouns = NounExtractor(config.nouns)
    nouns._load()
    return nouns, captioner or load_captioner(models)


@TAGGERS.register("caption", config=CaptionTaggerConfig, checkpoints=blip_checkpoints)
class CaptionTagger:
    """`captioning.cycles` sampled captions of each whole image as plain BLIP makes them: all encoder tokens,
    CLS included, of the image at the checkpoint's own size (384 for the published captioners, where BCC also
    encodes 512); ONE generate call per image batch. The result has a single pseudo-cluster 0 of all the
    image's patches."""

    name = "caption"

    def __init__(self, config: CaptionTaggerConfig, models: ModelConfig,
                 captioner: BlipCaptioner | None = None) -> None:
        self.config, self.models = config, models
        self.nouns, self.blip = load_nouns_then_captioner(config, models, captioner)

    def tag_batch(self, images: Sequence[LoadedImage]) -> list[TagResult]:
        if not images:
            return []
        pc = self.config.captioning
        size = self.blip.native_size
        t0 = time.perf_counter()
        tokens = self.blip.encode([im.image for im in images], size)
        sync(self.blip.device)
        timings = {f"encode_{size}": time.perf_counter() - t0}
        # Each image is one token set, its captions' streams named by its pixels and the cycle.
        keys = [image_key(im.image) for im in images]
        sets = [[tokens[b]] for b in range(len(images))]
        captions, nouns, cycles_run = caption_cycles(self.blip, self.nouns, pc, sets, keys, timings,
                                                     stream=lambda key, cycle, _: (key, cycle))
        results = []
        for b, im in enumerate(images):
            clusters = [ClusterCaptions(cluster=0, size=int(tokens.shape[1]) - 1, captions=captions[b][0],
                                        nouns=nouns[b][0])]
            results.append(TagResult(
                source=im.source, image_size=im.size, tagger=self.name, model=self.blip.model_id,
                nouns=rank_nouns(clusters, self.config.nouns.min_support), clusters=clusters,
                cycles_run=cycles_run[b], timings=dict(timings), batch_size=len(images),
                meaningless=self.blip.is_tiny,
            ))
        return results


def caption_cycles(blip: BlipCaptioner, extract: NounExtractor, pc: CaptioningConfig,
                   sets: list[list[torch.Tensor]], keys: list[int], timings: dict[str, float],
                   stream: Callable[[int, int, int], tuple[int, ...]] = lambda *name: name,
                   ) -> tuple[list[list[list[str]]], list[list[list[list[str]]]], list[int]]:
    """Sample a caption of every token set `sets[b][c]` (image b, cluster c) `pc.cycles` times; returns
    captions[b][c][cycle], nouns[b][c][cycle] and the cycles run per image.

    Each caption draws from its own random stream, `stream(keys[b], cycle, c)` under the seed: an image gets
    the same captions whatever else is in its batch or call.

    Without adaptive cycles, all images x sets x cycles go to ONE generate call, split only where the
    attention state would pass `max_cross_attention_gib`. With `adaptive_cycles = N`, cycles run in blocks of
    N (each block one call over the still-active images); an image stops after N consecutive cycles that
    found no new noun.
    """
    total, patience = pc.cycles, pc.adaptive_cycles
    block = min(patience, total) if patience else total
    captions: list[list[list[str]]] = [[[] for _ in s] for s in sets]
    nouns: list[list[list[list[str]]]] = [[[] for _ in s] for s in sets]
    cycles_run = [0] * len(sets)
    seen: list[set[str]] = [set() for _ in sets]
    quiet = [0] * len(sets)
    active = list(range(len(sets)))
    done = 0
    timings.setdefault("caption", 0.0)
    timings.setdefault("nouns", 0.0)
    while active and done < total:
        n = min(block, total - done)
        # Row order: image, then cycle, then set.
        rows = [(b, cyc, c) for b in active for cyc in range(n) for c in range(len(sets[b]))]
        t0 = time.perf_counter()
        texts: list[str] = []
        for chunk in _chunks(blip, pc, rows, sets):
            texts += blip.caption([sets[b][c] for b, _, c in chunk], pc, seed=pc.seed,
                                  streams=[stream(keys[b], done + cyc, c) for b, cyc, c in chunk])
        sync(blip.device)
        timings["caption"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        found = extract(texts, context=pc.prompt)
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


def _chunks(blip: BlipCaptioner, pc: CaptioningConfig, rows: list[tuple[int, int, int]],
            sets: list[list[torch.Tensor]]):
    """Split caption rows into generate calls whose attention state fits `max_cross_attention_gib`.

    Under the budget (the usual case) everything is ONE call. Over it, consecutive rows (image by image,
    cycle by cycle) are packed greedily, so an image's rows stay together whenever they fit.
    """
    budget = pc.max_cross_attention_gib * 2**30
    positions = blip.caption_positions(pc)
    chunk: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int]] = set()
    tokens = 0
    for row in rows:
        key = (row[0], row[2])
        extra = 0 if key in seen else int(sets[row[0]][row[2]].shape[0])
        if chunk and budget > 0 and blip.attention_state_bytes(tokens + extra, len(chunk) + 1, positions) > budget:
            yield chunk
            chunk, seen, tokens, extra = [], set(), 0, int(sets[row[0]][row[2]].shape[0])
        chunk.append(row)
        seen.add(key)
        tokens += extra
    if chunk:
        yield chunk


def sync(device: torch.device) -> None:
    # Honest stage timings on a GPU: wait for the queued kernels before reading the clock.
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
