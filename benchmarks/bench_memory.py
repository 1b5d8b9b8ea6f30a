"""Peak memory of tagging one image, small vs huge, each in a fresh process.

    python benchmarks/bench_memory.py --config configs/smoke.yaml [--json FILE]

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

CHILD = """
import sys
from selfseg import SelfSeg
seg = SelfSeg.from_config(sys.argv[1])
seg.tag(sys.argv[2])
print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])
"""


def peak_kib(config: str, image: Path) -> int:
    # The checkout first on the child's path, so the script also runs without `pip install -e .`.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", CHILD, config, str(image)], capture_output=True, text=True,
                         env=env)
    if out.returncode:
        raise SystemExit(out.stderr.strip().splitlines()[-1])
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/smoke.yaml")
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
            rows[name] = peak_kib(args.config, p)
    base = rows["512x512 jpeg"]
    print(f"peak RSS tagging one image ({args.config}; {platform.machine()}, {platform.python_version()})")
    for name, kib in rows.items():
        print(f"  {name:16s} {kib / 1024:8.1f} MiB   {kib / base:5.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "peak_kib": rows,
                                               "ratio_to_512": {k: v / base for k, v in rows.items()}}, indent=2))


if __name__ == "__main__":
    main()
