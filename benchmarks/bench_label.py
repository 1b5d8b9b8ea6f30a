"""`selfseg label` on many small images: peak memory and wall time against `selfseg segment` on the same images.

Memory must not grow with the number of images (results are streamed to disk; the build stage holds one image's
masks at a time), so the figure to read is peak RSS at 100 against 1,000 images, next to the plain `segment`
run's. Each run is a fresh process; its peak RSS comes from the kernel (`os.wait4`'s ru_maxrss).

    python benchmarks/bench_label.py                        # 100 and 1,000 images (a few minutes on 2 cores)
    python benchmarks/bench_label.py --images 50 --repeats 3 --json out/label.json

Each (command, image count) runs --repeats times (default 1: a run at 1,000 images takes about a minute);
the figures printed are medians with n, min and max, and n = 1 is printed as "one run".

The models are the tiny random-init ones built in code (configs/smoke.yaml) with a fixed vocabulary and the
CLIPSeg segmenter, so the run measures selfseg's own work rather than a model's: the photos are 160x120 crops of
the three ADE20K sample images, each with up to `--instances` masks.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    sample = REPO / "examples" / "ade20k_sample" / "images"
    photos = [Image.open(p).convert("RGB") for p in sorted(sample.glob("*.jpg"))]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = photos[i % len(photos)]
        x, y = rng.randrange(im.width - 160), rng.randrange(im.height - 120)
        im.crop((x, y, x + 160, y + 120)).save(folder / f"img_{i:05d}.jpg", quality=90)


def measure(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS (MiB) of one command in a process of its own."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({code}): {stderr.decode()[-800:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}  # Linux: ru_maxrss in KiB


def summarize(runs: list[dict]) -> dict:
    """Median seconds and peak RSS over repeated runs, with n, min and max of each."""
    out: dict = {"n": len(runs), "runs": runs}
    for key in ("seconds", "peak_rss_mib"):
        xs = sorted(r[key] for r in runs)
        mid = len(xs) // 2
        out[key] = xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
        out[f"min_{key}"], out[f"max_{key}"] = xs[0], xs[-1]
    return out


def spread(r: dict, key: str, fmt: str) -> str:
    if r["n"] == 1:
        return f"{format(r[key], fmt)} (one run)"
    return (f"{format(r[key], fmt)} (median of {r['n']}, {format(r['min_' + key], fmt)}-"
            f"{format(r['max_' + key], fmt)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="100,1000", help="image counts, comma-separated (default 100,1000)")
    ap.add_argument("--instances", type=int, default=10, help="most masks per image (default 10)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each command per image count (median)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    counts = [int(n) for n in args.images.split(",")]
    overrides = ["segment.vocabulary=given", "vocabulary=[person, car, tree, building, sky]",
                 "segment.segmenter=clipseg", f"segment.clipseg.max_instances={args.instances}", "run.batch_size=8"]
    config = str(REPO / "configs" / "smoke.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            images = Path(tmp) / f"images_{n}"
            make_images(images, n)
            base_runs, label_runs = [], []
            for r in range(max(1, args.repeats)):
                base_runs.append(measure([sys.executable, "-m", "selfseg", "segment", str(images), "--config", config,
                                          "--out", str(Path(tmp) / f"segment_{n}_{r}"), "-q", *overrides]))
                label_runs.append(measure([sys.executable, "-m", "selfseg", "label", str(images), "--config", config,
                                           "--out", str(Path(tmp) / f"label_{n}_{r}"), "-q", *overrides]))
            base, label = summarize(base_runs), summarize(label_runs)
            meta = json.loads((Path(tmp) / f"label_{n}_0" / "dataset.json").read_text())
            instances = sum(s["instances"] for s in meta["splits"].values())
            rows.append({"images": n, "instances": instances, "segment": base, "label": label})
            ratio_t = label["seconds"] / base["seconds"]
            ratio_m = label["peak_rss_mib"] / base["peak_rss_mib"]
            print(f"{n:6d} images ({instances} instances): segment {spread(base, 'seconds', '.1f')} s, "
                  f"{spread(base, 'peak_rss_mib', '.0f')} MiB peak | label {spread(label, 'seconds', '.1f')} s, "
                  f"{spread(label, 'peak_rss_mib', '.0f')} MiB peak | label / segment of the medians: time "
                  f"{ratio_t:.2f}x, memory {ratio_m:.2f}x", flush=True)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        growth = b["label"]["peak_rss_mib"] - a["label"]["peak_rss_mib"]
        print(f"label peak RSS from {a['images']} to {b['images']} images: {growth:+.0f} MiB "
              f"({growth / (b['images'] - a['images']) * 1024:+.1f} KiB per image)")
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}
    report = {"rows": rows, "overrides": overrides, "machine": machine}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
