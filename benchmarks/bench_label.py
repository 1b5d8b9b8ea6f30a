"""`selfseg label` on many small images: peak memory and wall time against `selfseg segment` on the same images.

Memory must not grow with the number of images (results are streamed to disk; the build stage holds one image's
masks at a time), so the figure to read is peak RSS at 100 against 1,000 images, next to the plain `segment`
run's. Each run is a fresh process; its peak RSS comes from the kernel (`os.wait4`'s ru_maxrss).

    python benchmarks/bench_label.py                        # 100 and 1,000 images (about 15 minutes on 2 cores)
    python benchmarks/bench_label.py --images 50 --json out/label.json

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="100,1000", help="image counts, comma-separated (default 100,1000)")
    ap.add_argument("--instances", type=int, default=10, help="most masks per image (default 10)")
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
            base = measure([sys.executable, "-m", "selfseg", "segment", str(images), "--config", config,
                            "--out", str(Path(tmp) / f"segment_{n}"), "-q", *overrides])
            label = measure([sys.executable, "-m", "selfseg", "label", str(images), "--config", config,
                             "--out", str(Path(tmp) / f"label_{n}"), "-q", *overrides])
            meta = json.loads((Path(tmp) / f"label_{n}" / "dataset.json").read_text())
            instances = sum(s["instances"] for s in meta["splits"].values())
            rows.append({"images": n, "instances": instances, "segment": base, "label": label})
            ratio_t = label["seconds"] / base["seconds"]
            ratio_m = label["peak_rss_mib"] / base["peak_rss_mib"]
            print(f"{n:6d} images ({instances} instances): segment {base['seconds']:7.1f} s, "
                  f"{base['peak_rss_mib']:6.0f} MiB peak | label {label['seconds']:7.1f} s, "
                  f"{label['peak_rss_mib']:6.0f} MiB peak | label / segment: time {ratio_t:.2f}x, "
                  f"memory {ratio_m:.2f}x", flush=True)
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
