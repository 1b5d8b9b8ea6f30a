"""Peak memory of tagging one image, small vs huge, each in a fresh process.

    python benchmarks/bench_memory.py --config configs/smoke.yaml [--command tag|segment] [--json FILE]

Issue target: an 8000x6000 photo peaks at <= 1.2x the RSS of a 512x512 one (images are reduced while
decoding). Peak RSS is VmHWM from /proc (Linux): a child's ru_maxrss would start at its parent's peak.
With the smoke config the models are tiny, which makes the ratio harder to meet than with real ones.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# tag: SelfSeg.tag on the image. segment: the whole `selfseg segment` command, writing its outputs (the
# label map at the photo's own size, the overlay, the JSON) as a user's run does.
CHILD = """
import sys, tempfile
config, image, command = sys.argv[1:4]
if command == "tag":
    from selfseg import SelfSeg
    SelfSeg.from_config(config).tag(image)
else:
    from selfseg.cli import main
    with tempfile.TemporaryDirectory() as out:
        if main(["segment", image, "--config", config, "--out", out, "-q"]) != 0:
            sys.exit("selfseg segment failed")
print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])
"""


def peak_kib(config: str, image: Path, command: str = "tag") -> int:
    # The checkout first on the child's path, so the script also runs without `pip install -e .`.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", CHILD, config, str(image), command], capture_output=True, text=True,
                         env=env)
    if out.returncode:
        raise SystemExit(out.stderr.strip().splitlines()[-1])
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "smoke.yaml"))
    ap.add_argument("--command", choices=["tag", "segment"], default="tag",
                    help="tag: SelfSeg.tag; segment: the whole `selfseg segment` command with its outputs")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    from PIL import Image

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rng_img = Image.effect_noise((512, 512), 64).convert("RGB")
        cases = {"512x512 jpeg": ((512, 512), "JPEG"), "8000x6000 jpeg": ((8000, 6000), "JPEG"),
                 "8000x6000 png": ((8000, 6000), "PNG")}
        for name, (size, fmt) in cases.items():
            p = Path(tmp) / f"img.{fmt.lower()}"
            rng_img.resize(size).save(p, format=fmt)
            rows[name] = peak_kib(args.config, p, args.command)
    base = rows["512x512 jpeg"]
    verb = "tagging" if args.command == "tag" else "segmenting (whole command, outputs written)"
    print(f"peak RSS {verb} one image ({args.config}; {platform.machine()}, {platform.python_version()})")
    for name, kib in rows.items():
        print(f"  {name:16s} {kib / 1024:8.1f} MiB   {kib / base:5.2f}x   {(kib - base) / 1024:+7.1f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "command": args.command, "peak_kib": rows,
                                               "ratio_to_512": {k: v / base for k, v in rows.items()},
                                               "growth_mib": {k: (v - base) / 1024 for k, v in rows.items()}},
                                              indent=2))


if __name__ == "__main__":
    main()
