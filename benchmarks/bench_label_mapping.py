#!/usr/bin/env python
"""Label mappers on the development set: agreement side by side, the hybrid threshold curve, and the lexical
mapper's throughput.

    python benchmarks/bench_label_mapping.py [--sweep] [--repeat 6] [--json FILE]

1. Agreement with the development set (tests/evaluate/mapping_dev, labelled by reading) per dataset for the
   lexical mapper, the embedding mapper at its default threshold and as a forced choice, and the hybrid; also
   on the held-out files (a second writer's, no entry or rule written for their rows; not in 3 and 4).
2. The benchmarks that fold another's classes (VOC20, COCO-Object, PASCAL-Context 60) on their sources' files,
   read against their classes.
3. --sweep: the hybrid's agreement per threshold, from which its default was chosen.
4. Throughput of the lexical mapper, descriptions per second, after start-up (pipelines loaded, one
   untimed pass): every development description made unique --repeat times over (a determiner or adjective
   in front, so the reading cache never answers), median of 3 runs, each on a fresh mapper that shares the
   loaded spaCy and WordNet. Cold: the first run, which also builds the WordNet relations of every noun;
   warm: the same descriptions on the mapper that has seen their nouns (the steady state of a long run).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfseg.evaluate.datasets import class_list  # noqa: E402
from selfseg.evaluate.mappers import build_mapper  # noqa: E402
from selfseg.evaluate.mappers.agreement import agreement, agreement_by_threshold, read_labelled, within  # noqa: E402

DEV = ROOT / "tests" / "evaluate" / "mapping_dev"
DATASETS = {"voc": "voc", "ade20k_150": "ade20k", "cityscapes": "cityscapes", "cityscapes_regions": "cityscapes",
            "coco_panoptic": "coco", "coco_stuff": "coco-stuff", "pascal_context_59": "pascal-context-59",
            "pascal_context_459": "pascal-context-459", "voc_c": "voc"}
# Files of other writers with no entry or rule written for their rows: agreement only (no sweep, no throughput)
HELD_OUT = {"ade20k_150_b": "ade20k", "voc_b": "voc", "coco_panoptic_b": "coco"}
# Benchmarks that fold another's classes -> the source's development file, read against their classes.
FOLDED = {"voc20": "voc", "coco-object": "coco_panoptic", "pascal-context-60": "pascal_context_59"}
PREFIXES = ["a", "the", "one", "an old", "a small", "a large", "a distant", "a dark", "a bright", "a wet"]


def side_by_side() -> dict:
    out = {}
    for f, ds in {**DATASETS, **HELD_OUT}.items():
        rows = read_labelled(DEV / f"{f}.tsv")
        out[f] = {"n": len(rows),
                  "lexical": agreement(build_mapper("lexical", ds), rows).total,
                  "embedding@0.5": agreement(build_mapper("embedding", ds), rows).total,
                  "embedding forced": agreement(build_mapper("embedding", ds, threshold=-1), rows).total,
                  "hybrid": agreement(build_mapper("hybrid", ds), rows).total}
    return out


def folded() -> dict:
    out = {}
    for ds, f in FOLDED.items():
        rows = within(read_labelled(DEV / f"{f}.tsv"), [c.name for c in class_list(ds)])
        out[ds] = {"file": f, "n": len(rows), "lexical": agreement(build_mapper("lexical", ds), rows).total}
    return out


def sweep() -> dict:
    grid = [x / 20 for x in range(4, 20)]
    curves = {}
    for f, ds in DATASETS.items():
        rows = read_labelled(DEV / f"{f}.tsv")
        filled = build_mapper("hybrid", ds, threshold=-1).map([r.description for r in rows])  # every gap filled
        curves[f] = agreement_by_threshold(rows, filled, grid)
    rows = {f"{t:.2f}": {f: c[k] for f, c in curves.items()} for k, t in enumerate(grid)}
    return {t: {**row, "mean": statistics.fmean(row.values())} for t, row in rows.items()}


def throughput(repeat: int) -> dict:
    texts = [r.description for f in DATASETS for r in read_labelled(DEV / f"{f}.tsv")]
    unique = [f"{p} {t}" for p in PREFIXES[:repeat] for t in texts]
    build_mapper("lexical", "cityscapes").map(texts)  # start-up: spaCy, WordNet, lexicon loaded
    cold, warm = [], []
    for _ in range(3):
        m = build_mapper("lexical", "cityscapes")
        t0 = time.perf_counter()
        m.map(unique)
        cold.append(len(unique) / (time.perf_counter() - t0))
        m.reader._cache.clear()
        m._decided.clear()
        t0 = time.perf_counter()
        m.map(unique)
        warm.append(len(unique) / (time.perf_counter() - t0))
    return {"descriptions": len(unique), "cold_per_s": statistics.median(cold),
            "warm_per_s": statistics.median(warm)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--repeat", type=int, default=6, help="prefixes per description for the throughput run")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    res = {"agreement": side_by_side()}
    print(f"{'dataset':12s} {'n':>4s} " + " ".join(f"{k:>17s}" for k in next(iter(res['agreement'].values()))
                                                  if k != "n"))
    for f, row in res["agreement"].items():
        print(f"{f:12s} {row['n']:4d} " + " ".join(f"{v:17.1%}" for k, v in row.items() if k != "n"))
    res["folded"] = folded()
    for ds, row in res["folded"].items():
        print(f"{ds} on {row['file']} read as its classes ({row['n']}): lexical {row['lexical']:.1%}")
    if args.sweep:
        res["sweep"] = sweep()
        print("\nhybrid threshold: agreement per dataset and mean")
        for t, row in res["sweep"].items():
            print(f"  {t}  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    res["throughput"] = throughput(args.repeat)
    tp = res["throughput"]
    print(f"\nlexical throughput on {tp['descriptions']} unique descriptions: {tp['cold_per_s']:.0f}/s cold, "
          f"{tp['warm_per_s']:.0f}/s warm (median of 3)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
