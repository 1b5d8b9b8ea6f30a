#!/usr/bin/env python
"""The nouns stage: captions per second through `NounExtractor`, next to spaCy's tagging alone.

    python benchmarks/bench_nouns.py [--repeats 5] [--cycles 1,5,20] [--json FILE]

The captions are the development files' (tests/tag/nouns_dev.tsv and nouns_hard.tsv, 440 BLIP-style
continuations, read after BLIP's prompt "a picture of "). `--cycles C` feeds each caption C times, as
sampled captions repeat over BCC's cycles (a random-weight BLIP never repeats, so the GPU kit's nouns stage
measures the unique case only). Printed per C: median milliseconds of the extractor and of the plain
baseline (the same spaCy pipeline's `pipe` over the same texts, no WordNet and no rules), their ratio,
and captions per second. spaCy's small pipeline tags on one core.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:  # run from a checkout without `pip install -e .`: use the checkout's package
    import selfseg  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

from selfseg.resources import load_spacy  # noqa: E402
from selfseg.tag.nouns import NounExtractor  # noqa: E402

PROMPT = "a picture of "


def _captions() -> list[str]:
    out = []
    for name in ("nouns_dev.tsv", "nouns_hard.tsv"):
        with open(REPO / "tests" / "tag" / name, encoding="utf-8") as f:
            out += [r["caption"] for r in csv.DictReader(f, delimiter="\t")]
    return out


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cycles", default="1,5,20", help="times each caption is fed (comma-separated)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)
    captions = _captions()
    extract = NounExtractor()
    nlp = load_spacy(extract.config.spacy_pipeline)
    extract(captions[:4], context=PROMPT)  # load spaCy and WordNet outside the timings
    rows = []
    for cycles in [int(c) for c in args.cycles.split(",")]:
        texts = captions * cycles
        ours = _median_ms(lambda texts=texts: extract(texts, context=PROMPT), args.repeats)
        plain = _median_ms(lambda texts=texts: list(nlp.pipe([PROMPT + t.lower() for t in texts])), args.repeats)
        rows.append({"cycles": cycles, "captions": len(texts), "extractor_ms": ours, "spacy_pipe_ms": plain,
                     "ratio": ours / plain, "captions_per_s": len(texts) / ours * 1000})
    print(f"{len(captions)} captions, {args.repeats} repeats, median ms; {platform.processor() or platform.machine()}")
    print(f"{'cycles':>6} {'captions':>9} {'extractor':>10} {'spaCy pipe':>11} {'ratio':>6} {'captions/s':>11}")
    for r in rows:
        print(f"{r['cycles']:>6} {r['captions']:>9} {r['extractor_ms']:>10.1f} {r['spacy_pipe_ms']:>11.1f} "
              f"{r['ratio']:>6.2f} {r['captions_per_s']:>11.0f}")
    result = {"rows": rows, "captions": len(captions), "repeats": args.repeats}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
