#!/usr/bin/env python
"""Benchmark harness for the clipseg segmenter: time and peak memory against the vocabulary size.

    python benchmarks/bench_clipseg.py [--size full|tiny] [--tags 20,150,847] [--per-call 32,0]
        [--vocabulary new|fixed] [--side 1024] [--repeats 3] [--image-batch N] [--device D] [--dtype DT]
        [--json FILE]

For each number of tags T and each `segment.clipseg.tags_per_call` P, ONE fresh process builds the model,
then runs `ClipSegSegmenter.segment` (image and tags encoded once; decoder and full-size maps P tags at a
time, only each pixel's best tag kept; P = 0: all T at once, the plain way) on a --side px photo after one
untimed warm-up call. It reports the median seconds over --repeats calls (with n, min and max), the peak
RSS above the RSS after loading (the segmenter's own working memory; the peak is reset after the warm-up
through /proc/self/clear_refs), the peak CUDA memory on a GPU, and the decoder and text-tower calls. A fresh
process per case, because a process's peak RSS never goes down. --vocabulary new (default): every timed call
has a tag list not seen before (the same tags, rotated), so the text tower runs every call, as for self-found
tags (with one tag there is no other order, so the list repeats); fixed: every call has the same list, as a run
with one vocabulary for every image, which encodes it once.

--image-batch N adds two more fresh processes, on the first --tags and --per-call: N photos through ONE
`ClipSegSegmenter.segment_batch` call per timed repeat (one vision pass over the N) against one `segment` call
per photo; the tag list repeats within a call, so its text is encoded once either way.

`--size full` builds the architecture of CIDAS/clipseg-rd64-refined (CLIP ViT-B/16 at 352 px, CLIP text
tower, reduce_dim 64 decoder with the "refined" transposed convolutions) with RANDOM weights: timings and
memory are representative, maps meaningless. `--size tiny` uses selfseg's tiny random CLIPSeg (for tests).
Tags are synthetic words ("class17"). The tokenizer built in code spells every word out byte by byte (no
BPE merges), so each tag is 9 tokens with the start and end tokens, where CLIP's real BPE gives 3-4 for a
short class name: the text tower encodes longer rows than it would with real names (it runs once per call,
and the image-side decoder dominates at these sizes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CHILD = r"""
import json, statistics, sys, time
import numpy as np, torch
from PIL import Image
from selfseg.config import Config
from selfseg.io import load_image
from selfseg.models.clipseg import ClipSegDenseSegmenter
from selfseg.models.tiny import tiny_clip_tokenizer
from selfseg.models.loading import resolve_device, resolve_dtype
from selfseg.segment.clipseg import ClipSegSegmenter
from selfseg.segment.base import SegmentPlan

size, n_tags, per_call, side, repeats, device, dtype, vocabulary, n_images, way = sys.argv[1:11]
n_tags, per_call, side, repeats, n_images = int(n_tags), int(per_call), int(side), int(repeats), int(n_images)
dev, dt = resolve_device(device), resolve_dtype(dtype)

def rss_mib():
    return int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0]) / 1024

def peak_mib():
    return int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]) / 1024

if size == "tiny":
    model = ClipSegDenseSegmenter.tiny(device=dev, dtype=dt)
else:
    # CIDAS/clipseg-rd64-refined: transformers' CLIPSeg defaults (ViT-B, CLIP text tower, extract_layers
    # 3/6/9, reduce_dim 64, 4 decoder heads) with 16-px patches and the refined transposed convolutions;
    # the processor feeds 352 px (position embeddings interpolated from 224, as the checkpoint does).
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor
    cfg = CLIPSegConfig(vision_config=dict(patch_size=16, image_size=224), extract_layers=[3, 6, 9],
                        reduce_dim=64, use_complex_transposed_convolution=True)
    torch.manual_seed(0)
    net = CLIPSegForImageSegmentation(cfg)
    proc = CLIPSegProcessor(image_processor=ViTImageProcessor(size={"height": 352, "width": 352}, resample=2,
                            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
                            tokenizer=tiny_clip_tokenizer(77))
    model = ClipSegDenseSegmenter(net, proc, dev, dt, is_tiny=False, model_id="random CIDAS/clipseg-rd64-refined")
config = Config()
config.segment.clipseg.tags_per_call = per_call
seg = ClipSegSegmenter(config.segment.clipseg, config.model, model=model)
rng = np.random.default_rng(0)
images = [load_image(Image.fromarray(rng.integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)), max_side=side)
          for _ in range(n_images)]
image = images[0]
tags = [f"class{i}" for i in range(n_tags)]
seg.segment(image, SegmentPlan(["warm0", "warm1"]))  # warm-up (allocator, kernels), a list never timed
base = rss_mib()
try:  # reset the peak (VmHWM) to the current RSS, so building the model cannot be the peak reported
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    reset = True
except OSError:
    reset = False
if dev.type == "cuda":
    torch.cuda.synchronize(dev); torch.cuda.reset_peak_memory_stats(dev)
times = []
calls0, text0 = model.decoder_calls, model.text_calls
for r in range(repeats):
    shift = 0 if vocabulary == "fixed" else r % n_tags
    plan = SegmentPlan(tags[shift:] + tags[:shift])
    t0 = time.perf_counter()
    if way == "batched":  # the images in one call: one vision pass, one text pass
        out = seg.segment_batch(images, [plan] * n_images)[0]
    else:  # one call per image (the list repeats within the call: its text is encoded once either way)
        out = [seg.segment(im, plan) for im in images][0]
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    times.append(time.perf_counter() - t0)
print(json.dumps(dict(
    tags=n_tags, tags_per_call=per_call, seconds=statistics.median(times), seconds_all=times, rss_after_load_mib=base,
    peak_rss_mib=peak_mib(), working_mib=peak_mib() - base, peak_reset=reset,
    cuda_peak_mib=torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    decoder_calls=(model.decoder_calls - calls0) // repeats, text_calls=model.text_calls - text0,
    vocabulary=vocabulary, instances=len(out.labels), images=n_images, way=way,
    params_m=sum(p.numel() for p in model.model.parameters()) / 1e6, device=str(dev), dtype=str(dt),
)))
"""


def run_case(size: str, tags: int, per_call: int, side: int, repeats: int, device: str, dtype: str,
             vocabulary: str = "new", images: int = 1, way: str = "per_image") -> dict:
    # The checkout first on the child's path, so the script also runs without `pip install -e .`.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", CHILD, size, str(tags), str(per_call), str(side), str(repeats),
                           device, dtype, vocabulary, str(images), way], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"case T={tags} P={per_call} failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["full", "tiny"], default="full")
    ap.add_argument("--tags", default="20,150,847", help="comma-separated vocabulary sizes (VOC, ADE-150, ADE-847)")
    ap.add_argument("--per-call", default="32,0", help="tags_per_call values; 0 = all tags at once (the plain way)")
    ap.add_argument("--vocabulary", choices=["new", "fixed"], default="new",
                    help="new: each timed call's tag list unseen (text tower every call); fixed: one list")
    ap.add_argument("--side", type=int, default=1024, help="photo width in px (4:3), the loader's max side")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per case (median, with min and max)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--image-batch", type=int, default=0,
                    help="also time N photos through one segment_batch call against one segment call per photo "
                         "(the first --tags and --per-call; a fresh process each way); 0 or 1 skips it")
    ap.add_argument("--json", default=None, help="write the report here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(t) for t in args.tags.split(",") if t.strip()]
    per_calls = [int(p) for p in args.per_call.split(",") if p.strip()]
    rows = []
    for t in sizes:
        for p in per_calls:
            rows.append(run_case(args.size, t, p, args.side, args.repeats, args.device, args.dtype,
                                 args.vocabulary))
            if not args.quiet:
                print(f"  done T={t} P={p}", file=sys.stderr, flush=True)
    batch_rows = []
    if args.image_batch > 1:
        for way in ("batched", "per_image"):
            batch_rows.append(run_case(args.size, sizes[0], per_calls[0], args.side, args.repeats, args.device,
                                       args.dtype, args.vocabulary, args.image_batch, way))
            if not args.quiet:
                print(f"  done {args.image_batch} images, {way}", file=sys.stderr, flush=True)
    sys.path.insert(0, str(HERE))
    from bench_bcc import machine_info  # also puts the checkout on sys.path when selfseg is not installed

    import selfseg.models.loading as loading
    report = dict(size=args.size, random_weights=True, side=args.side, repeats=args.repeats, vocabulary=args.vocabulary,
                  machine=machine_info(loading.resolve_device(args.device)), rows=rows, image_batch=batch_rows)
    print(f"clipseg segmenter, {args.size} architecture with RANDOM weights ({rows[0]['params_m']:.1f}M params), "
          f"{args.side}x{args.side * 3 // 4} photo, {rows[0]['device']}, {rows[0]['dtype']}, "
          f"{args.vocabulary} vocabulary per call")
    print(f"{'tags':>6} {'per call':>9} {'decoder calls':>14} {'text calls':>11} {'seconds':>9} {'n':>3} {'min':>7} "
          f"{'max':>7} {'working MiB':>12} {'peak RSS MiB':>13}"
          + (" cuda peak MiB" if rows[0]["cuda_peak_mib"] is not None else ""))
    for r in rows:
        per = "all" if r["tags_per_call"] == 0 else str(r["tags_per_call"])
        xs = r["seconds_all"]
        line = (f"{r['tags']:>6} {per:>9} {r['decoder_calls']:>14} {r['text_calls']:>11} {r['seconds']:>9.2f} "
                f"{len(xs):>3} {min(xs):>7.2f} {max(xs):>7.2f} {r['working_mib']:>12.0f} {r['peak_rss_mib']:>13.0f}")
        if r["cuda_peak_mib"] is not None:
            line += f" {r['cuda_peak_mib']:>13.0f}"
        print(line)
    print("seconds: median of n timed calls" + (" (n = 1: one run, no spread)" if args.repeats == 1 else "")
          + "; working MiB: peak RSS above the RSS after the model was built and warmed up"
          + ("" if all(r["peak_reset"] for r in rows) else
             " (peak could not be reset: it may be the build's peak)") + ".")
    if batch_rows:
        b, one = batch_rows
        print(f"{args.image_batch} photos, {b['tags']} tags each: one segment_batch call {b['seconds']:.2f} s "
              f"(min {min(b['seconds_all']):.2f}, max {max(b['seconds_all']):.2f}, "
              f"working {b['working_mib']:.0f} MiB); "
              f"one segment call per photo {one['seconds']:.2f} s (min {min(one['seconds_all']):.2f}, max "
              f"{max(one['seconds_all']):.2f}, working {one['working_mib']:.0f} MiB); ratio "
              f"{one['seconds'] / b['seconds']:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
