#!/usr/bin/env python
"""How BCC's ways of combining k-means runs recover planted regions, next to single k-means runs.

    python benchmarks/bench_consensus.py [--methods coassoc,chain,chain2-8,km8] [--scenes 3]
        [--regions 4,6,8] [--noise 1,2,3] [--threads 1] [--json FILE]

Scenes come from `selfseg.tag.clustering.planted`: R Voronoi regions on a 32x32 grid, each a random
256-d mean (N(0, 1) per dimension), plus i.i.d. Gaussian noise of the given std, sampled at 24x24 and
32x32 (BCC's two scales) with independent noise per scale. A cell is one (R, noise); scene s of a cell
runs every method with k-means seed s + --seed-offset. Score: class-agnostic mIoU (cmIoU), the mean over
planted regions of each region's best IoU with a predicted cluster.

Printed per method: mean cmIoU per cell and over cells, the cells where it is at least the --baseline
method's, the mean final cluster count (per R and overall), and median wall milliseconds per scene of its
k-means runs, of the step that turns runs into one map (chain: alignment and votes; coassoc:
co-association, tree, cut, votes and the runs' relabelling) and of the whole `ensemble_cluster` call.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
try:  # run from a checkout without `pip install -e .`: use the checkout's package
    import selfseg  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

from selfseg.tag.clustering import ClusteringConfig, ensemble_cluster, kmeans, sincos_2d  # noqa: E402
from selfseg.tag.clustering.planted import NOISES, REGIONS, PlantedScene, cmiou, planted_scene  # noqa: E402


@dataclasses.dataclass
class Outcome:
    labels: np.ndarray
    kmeans_s: float
    combine_s: float
    total_s: float


def _ensemble(**overrides: Any) -> Callable[[PlantedScene, int, Any], Outcome]:
    def run(scene: PlantedScene, seed: int, device: Any) -> Outcome:
        t0 = time.perf_counter()
        m = ensemble_cluster(scene.features, seed=seed, device=device, **overrides)
        total = time.perf_counter() - t0
        combine = m.timings.get("align", 0.0) + m.timings.get("consensus", 0.0)
        return Outcome(m.labels, m.timings["kmeans"], combine, total)

    return run


def _raw_cut(**overrides: Any) -> Callable[[PlantedScene, int, Any], Outcome]:
    """The co-association cut itself, before the CRF and the mode filter."""
    def run(scene: PlantedScene, seed: int, device: Any) -> Outcome:
        t0 = time.perf_counter()
        m = ensemble_cluster(scene.features, seed=seed, device=device, consensus="coassoc", **overrides)
        total = time.perf_counter() - t0
        return Outcome(m.consensus_labels, m.timings["kmeans"], m.timings["consensus"] + m.timings["align"], total)

    return run


def _single(k: int | None) -> Callable[[PlantedScene, int, Any], Outcome]:
    """One k-means run (k, or the planted count when None) on the largest grid plus the positional encoding,
    with the ensemble's settings: what one run of the ensemble would say alone."""
    def run(scene: PlantedScene, seed: int, device: Any) -> Outcome:
        cfg = ClusteringConfig()
        f = torch.as_tensor(scene.features[-1], device=device)
        h, w, _ = f.shape
        t0 = time.perf_counter()
        x = torch.cat([f.reshape(h * w, -1), sincos_2d(h, w, cfg.pos_dim, f.device).reshape(h * w, -1)], 1)
        res = kmeans(x, k or scene.n_regions, n_init=cfg.kmeans_n_init, max_iter=cfg.kmeans_max_iter,
                     tol=cfg.kmeans_tol, seed=seed)
        labels = res.labels.reshape(h, w).cpu().numpy()
        spent = time.perf_counter() - t0
        return Outcome(labels, spent, 0.0, spent)

    return run


#: name -> (what it is, how to run it on a scene with a seed on a device).
METHODS: dict[str, tuple[str, Callable[[PlantedScene, int, Any], Outcome]]] = {
    "coassoc": ("co-association consensus (default settings), CRF, mode filter", _ensemble(consensus="coassoc")),
    "coassoc-crf": ("the same without the mode filter", _ensemble(consensus="coassoc", mode_filter_passes=0)),
    "coassoc-pos256": ("coassoc with the 256-d positional encoding on its runs too",
                       _ensemble(consensus="coassoc", coassoc_pos_dim=256)),
    "coassoc-cut": ("the co-association cut alone (no CRF, no mode filter)", _raw_cut()),
    "coassoc-16-32s2": ("coassoc with coassoc_ks = 16, 18, ..., 32",
                        _ensemble(consensus="coassoc", coassoc_ks=list(range(16, 33, 2)))),
    "coassoc-8-16": ("coassoc with coassoc_ks = 8..16", _ensemble(consensus="coassoc", coassoc_ks=list(range(8, 17)))),
    "chain": ("the paper's chain, ks = {2, 8}", _ensemble(consensus="chain", ks=[2, 8])),
    "chain2-8": ("the chain with the released code's ks = 2..8", _ensemble(consensus="chain", ks=list(range(2, 9)))),
    "km8": ("one k-means run, k = 8, 32x32 grid + positional encoding", _single(8)),
    "kmR": ("the same with the planted count as k (an oracle)", _single(None)),
}
DEFAULT_METHODS = ("coassoc", "coassoc-crf", "coassoc-cut", "chain", "chain2-8", "km8")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run_table(methods: Sequence[str], regions: Sequence[int], noises: Sequence[float], scenes: Sequence[int],
              seed_offset: int = 0, device: Any = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Every method on every scene; the per-cell means and the summaries the table prints."""
    per: dict[str, dict[str, list]] = {m: {"cmiou": [], "clusters": [], "kmeans_s": [], "combine_s": [],
                                           "total_s": [], "cell": [], "regions": []} for m in methods}
    for r in regions:
        for noise in noises:
            for s in scenes:
                scene = planted_scene(r, noise, s)
                for m in methods:
                    out = METHODS[m][1](scene, s + seed_offset, device)
                    p = per[m]
                    p["cmiou"].append(cmiou(scene.gt, out.labels))
                    p["clusters"].append(len(np.unique(out.labels)))
                    p["kmeans_s"].append(out.kmeans_s)
                    p["combine_s"].append(out.combine_s)
                    p["total_s"].append(out.total_s)
                    p["cell"].append((r, noise))
                    p["regions"].append(r)
            log(f"  R={r} noise={noise:g} done")
    cells = [(r, n) for r in regions for n in noises]
    report: dict[str, Any] = {"cells": [list(c) for c in cells], "methods": {}}
    for m in methods:
        p = per[m]
        cell_means = [float(np.mean([v for v, c in zip(p["cmiou"], p["cell"]) if c == cell])) for cell in cells]
        report["methods"][m] = {
            "description": METHODS[m][0],
            "cell_cmiou": cell_means,
            "mean_cmiou": float(np.mean(cell_means)),
            "mean_clusters": float(np.mean(p["clusters"])),
            "mean_clusters_by_regions": {str(r): float(np.mean([c for c, rr in zip(p["clusters"], p["regions"])
                                                                 if rr == r])) for r in regions},
            "median_kmeans_ms": 1000 * statistics.median(p["kmeans_s"]),
            "median_combine_ms": 1000 * statistics.median(p["combine_s"]),
            "median_total_ms": 1000 * statistics.median(p["total_s"]),
            "scene_cmiou": p["cmiou"],
        }
    return report


def print_table(report: dict, baseline: str | None) -> None:
    methods = list(report["methods"])
    cells = [tuple(c) for c in report["cells"]]
    w = max(9, *(len(m) + 1 for m in methods))
    head = f"{'R':>3} {'noise':>5} " + "".join(f"{m:>{w}}" for m in methods)
    print(head)
    print("-" * len(head))
    for i, (r, noise) in enumerate(cells):
        print(f"{r:>3} {noise:>5g} " + "".join(f"{report['methods'][m]['cell_cmiou'][i]:>{w}.3f}" for m in methods))
    print("-" * len(head))
    row = lambda label, fmt: print(f"{label:<9} " + "".join(f"{fmt(report['methods'][m]):>{w}}" for m in methods))
    row("mean", lambda d: f"{d['mean_cmiou']:.3f}")
    if baseline in report["methods"]:
        base = report["methods"][baseline]["cell_cmiou"]
        report["baseline"] = baseline
        for m in methods:
            d = report["methods"][m]
            d["cells_at_least_baseline"] = sum(a >= b for a, b in zip(d["cell_cmiou"], base))
        row(f">={baseline}", lambda d: f"{d['cells_at_least_baseline']}/{len(cells)}")
    row("#clusters", lambda d: f"{d['mean_clusters']:.1f}")
    for r in sorted({c[0] for c in cells}):
        row(f"  #cl R={r}", lambda d, r=r: f"{d['mean_clusters_by_regions'][str(r)]:.1f}")
    row("kmeans ms", lambda d: f"{d['median_kmeans_ms']:.1f}")
    row("combine ms", lambda d: f"{d['median_combine_ms']:.1f}")
    row("total ms", lambda d: f"{d['median_total_ms']:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help=f"comma-separated, of: {', '.join(METHODS)} (default: %(default)s)")
    ap.add_argument("--scenes", type=int, default=3, help="scenes per cell (default: %(default)s)")
    ap.add_argument("--first-scene", type=int, default=0, help="index of the first scene (default: 0)")
    ap.add_argument("--seed-offset", type=int, default=0, help="k-means seed = scene index + this (default: 0)")
    ap.add_argument("--regions", default=",".join(map(str, REGIONS)),
                    help="planted region counts (default: %(default)s)")
    ap.add_argument("--noise", default=",".join(f"{n:g}" for n in NOISES),
                    help="noise std per dimension (default: %(default)s)")
    ap.add_argument("--baseline", default="km8", help="the method each is compared with per cell (default: km8)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1: the matrices are small, and one thread keeps float "
                         "sums, hence results, the same from run to run)")
    ap.add_argument("--device", default=None, help="torch device for the features (default: cpu)")
    ap.add_argument("--json", default=None, help="write the full report (with every scene's cmIoU) here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        ap.error(f"unknown method(s) {unknown or methods}: choose from {', '.join(METHODS)}")
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    torch.set_num_threads(args.threads)
    scenes = list(range(args.first_scene, args.first_scene + args.scenes))
    regions, noises = _ints(args.regions), _floats(args.noise)
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = run_table(methods, regions, noises, scenes, args.seed_offset, args.device, log)
    report["settings"] = {"methods": methods, "scenes": scenes, "seed_offset": args.seed_offset,
                          "regions": regions, "noise": noises, "threads": args.threads, "device": args.device}
    report["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                         "load_average_before": load}
    print(f"planted regions, {len(scenes)} scene(s) per cell, cmIoU (higher is better); {args.threads} thread(s)")
    print_table(report, args.baseline)
    for m in methods:
        print(f"  {m}: {METHODS[m][0]}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
