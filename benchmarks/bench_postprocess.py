#!/usr/bin/env python
"""selfseg's own CPU work after the models: masks -> instances, instances -> JSON, segmentations -> a dataset.

    python benchmarks/bench_postprocess.py [--side 1024] [--photo-side 4000] [--repeats 5] [--json FILE]

No model runs. The ground-truth class maps of the three ADE20K sample photos (examples/ade20k_sample/annotations),
resized (nearest) so the longer side is --side (the image the models see, run.max_image_side), stand in for a
segmenter's output: the layouts of real scenes. Stages, each over the three photos, timed --repeats times (the
median is printed with n, min and max):

- `clipseg_instances`: `best_to_instances`, the CLIPSeg segmenter's step after its model (each pixel's best
  class and its probability -> one instance per connected component of a class, the largest first), with the
  class map as the best class and a fixed-seed random probability (threshold 0.4, min_area 16, at most 100).
- `instances_json`: `Segmentation.instances()` on those instances, what `to_dict` and `save` write for them
  (per instance: box, scores, area and COCO RLE).
- `yolo_trace`, `yolo_join`, `coco_polygons`: the outlines `selfseg label` writes, for one mask per class of
  each map (at --side; "other" left out): real objects' shapes, several parts where a class has several
  regions. The YOLO outlines through pixel centres of each mask (`centre_polygons`, in the mask's box as the
  export traces it), joining a mask's parts into one YOLO line, and the pixel-edge COCO polygons (traced, then
  checked by pycocotools' decode). The instances above are no such shapes: their random confidence leaves
  them full of pinholes.
- `yolo_trace_supervision`, the baseline (when supervision is installed): supervision's tracer over the same
  boxes (`approximate_mask_with_polygons`, no simplification, holes bridged), which outlines the same kind of
  polygons but drops parts under three outline points and finds no seam to some holes (it raises; such a
  mask is counted and its time kept).
- `export`: `DatasetWriter.add` (formats coco and semantic: COCO RLE and the class map, no polygon tracing) of
  each photo upscaled to --photo-side, with those instances as a reduced copy's masks (original_size: the
  photo's), then `ExportedImage.for_view`, the review page's 1024-px view of its masks.

Each stage also prints a digest (sha256) of everything it produced (arrays, JSON, the dataset's files): run the
script under two checkouts (`PYTHONPATH=<checkout> python benchmarks/bench_postprocess.py`) to check that a
change left the outputs as they were, bit for bit. --threads (default 1) keeps the timings steady on a shared
machine; numpy's work here is single-threaded either way.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:  # run from a checkout without `pip install -e .`: use the checkout's package
    import selfseg  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from selfseg.label.export import DatasetWriter, ExportConfig, ExportedImage  # noqa: E402
from selfseg.label.outlines import centre_polygons, coco_polygons, join_parts  # noqa: E402
from selfseg.label.vocabulary import DatasetVocabulary, VocabularyClass  # noqa: E402
from selfseg.segment.clipseg import best_to_instances  # noqa: E402
from selfseg.segment.result import Segmentation  # noqa: E402

SAMPLE = REPO / "examples" / "ade20k_sample"


def class_maps(side: int) -> list[tuple[str, np.ndarray]]:
    """(photo stem, (H, W) int64 class map, longer side `side`) of each sample photo."""
    out = []
    for path in sorted((SAMPLE / "annotations").glob("*.png")):
        with Image.open(path) as im:
            scale = side / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            out.append((path.stem, np.asarray(im.resize(size, Image.Resampling.NEAREST)).astype(np.int64)))
    return out


def supervision_tracer() -> Any:
    """mask -> whether supervision's tracer raised on it (no seam to a hole), or None without supervision."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*OpenCV.*", category=UserWarning)  # its NumPy backend
            from supervision.dataset.utils import approximate_mask_with_polygons
    except ImportError:
        return None

    def trace(mask: np.ndarray) -> bool:
        try:
            approximate_mask_with_polygons(mask=mask, approximation_percentage=0.0, bridge_holes=True)
        except ValueError:
            return True
        return False

    return trace


def timed(fn: Any, repeats: int) -> tuple[dict[str, Any], Any]:
    """(median, n, min, max seconds of `repeats` calls, the last call's result)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "n": len(times), "min_s": min(times), "max_s": max(times)}, result


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True).encode())
    return h.hexdigest()[:16]


def segmentations(maps: list[tuple[str, np.ndarray]], photo_sizes: dict[str, tuple[int, int]]
                  ) -> tuple[list[Segmentation], list[tuple[np.ndarray, ...]]]:
    rng = np.random.default_rng(0)
    found, segs = [], []
    for stem, best in maps:
        conf = rng.uniform(0.2, 1.0, best.shape).astype(np.float32)
        masks, boxes, scores, classes = best_to_instances(best, conf, 0.4, 16, 100)
        found.append((masks, boxes, scores, classes))
        labels = [f"class{int(c)}" for c in classes]
        segs.append(Segmentation(image_size=best.shape, masks=masks, boxes=boxes, scores=scores,
                                 mask_scores=np.ones(len(labels)), labels=labels,
                                 classes=sorted(set(labels)) or ["none"], segmenter="clipseg", source=stem,
                                 original_size=photo_sizes.get(stem)))
    return segs, found


def export(segs: list[Segmentation], photos: dict[str, Path], vocabulary: DatasetVocabulary, work: Path,
           keep: bool) -> tuple[float, float, list[Any]]:
    """Seconds in `add` and in `for_view` over the photos, and (when keep) what they made, for the digest."""
    out = Path(tempfile.mkdtemp(dir=work)) / "dataset"
    t_add = t_view = 0.0
    made: list[Any] = []
    with DatasetWriter(out, vocabulary, ExportConfig(formats=["coco", "semantic"], val_fraction=0.5)) as writer:
        for seg in segs:
            t0 = time.perf_counter()
            ex: ExportedImage = writer.add(photos[seg.source], seg)
            t_add += time.perf_counter() - t0
            with Image.open(photos[seg.source]) as im:
                im.load()
                t0 = time.perf_counter()
                _, view = ex.for_view(im, 1024)
                t_view += time.perf_counter() - t0
            if keep:
                record = {k: v for k, v in ex.record.items() if k != "source"}  # the temporary folder's path
                made += [record, ex.masks, view]
    if keep:  # every file of the dataset but labels.jsonl (its records, without their path, are above)
        made += [(str(p.relative_to(out)), p.read_bytes()) for p in sorted(out.rglob("*"))
                 if p.is_file() and p.name != "labels.jsonl"]
    shutil.rmtree(out.parent)
    return t_add, t_view, made


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=1024, help="longer side of the analysed image (default 1024)")
    ap.add_argument("--photo-side", type=int, default=4000,
                    help="longer side of the photo the export writes at (default 4000, a 12-megapixel photo)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--quiet", action="store_true", help="print only the table")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    maps = class_maps(args.side)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos, photo_sizes = {}, {}
        for stem, best in maps:  # each sample photo upscaled to --photo-side (untimed)
            with Image.open(SAMPLE / "images" / f"{stem}.jpg") as im:
                scale = args.photo_side / max(im.size)
                big = im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)),
                                               Image.Resampling.BICUBIC)
            photos[stem] = work / f"{stem}.jpg"
            big.save(photos[stem], quality=90)
            photo_sizes[stem] = (big.height, big.width)
            if not args.quiet:
                print(f"{stem}: class map {best.shape[1]}x{best.shape[0]}, {len(np.unique(best))} classes; "
                      f"photo {big.width}x{big.height}", flush=True)

        stat, (segs, found) = timed(lambda: segmentations(maps, photo_sizes), args.repeats)
        rows["clipseg_instances"] = {**stat, "instances": sum(len(f[0]) for f in found),
                                     "digest": digest(*[a for f in found for a in f])}
        stat, records = timed(lambda: [s.instances() for s in segs], args.repeats)
        rows["instances_json"] = {**stat, "instances": sum(len(r) for r in records), "digest": digest(records)}

        masks = [best == c for _, best in maps for c in np.unique(best) if c]
        # each mask's box (y0, y1, x0, x1), as the export crops it before tracing
        boxes = [(int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1)
                 for ys, xs in ((np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))) for m in masks)]
        stat, traced = timed(lambda: [[p + [x0, y0] for p in centre_polygons(m[y0:y1, x0:x1])]
                                      for m, (y0, y1, x0, x1) in zip(masks, boxes)], args.repeats)
        rows["yolo_trace"] = {**stat, "instances": len(masks), "digest": digest(*[p for t in traced for p in t])}
        baseline = supervision_tracer()
        if baseline is not None:
            stat, raised = timed(lambda: [baseline(m[y0:y1, x0:x1]) for m, (y0, y1, x0, x1) in zip(masks, boxes)],
                                 args.repeats)
            rows["yolo_trace_supervision"] = {**stat, "instances": len(masks), "raised": sum(raised),
                                              "digest": "(baseline)"}
        stat, walks = timed(lambda: [join_parts(p) for p in traced if p], args.repeats)
        rows["yolo_join"] = {**stat, "instances": len(walks), "digest": digest(*walks)}
        stat, outlines = timed(lambda: [coco_polygons(m[y0:y1, x0:x1]) for m, (y0, y1, x0, x1) in zip(masks, boxes)],
                               args.repeats)
        rows["coco_polygons"] = {**stat, "instances": len(masks),
                                 "digest": digest(*[p for o in outlines for p in (o or [])])}

        names = sorted({label for s in segs for label in s.labels})
        # one dataset class per class of the maps (the label step's vocabulary, without its WordNet rules)
        vocabulary = DatasetVocabulary([VocabularyClass(i, n, {n: 1}, 1, 1) for i, n in enumerate(names)], {},
                                       len(segs), len(names), {})
        adds, views, made = [], [], []
        for r in range(args.repeats):
            t_add, t_view, kept = export(segs, photos, vocabulary, work, keep=r == 0)
            adds.append(t_add)
            views.append(t_view)
            made = made or kept
        for name, times in (("export_add", adds), ("export_for_view", views)):
            rows[name] = {"median_s": statistics.median(times), "n": len(times), "min_s": min(times),
                          "max_s": max(times), "instances": sum(len(s.labels) for s in segs)}
        rows["export_add"]["digest"] = digest(*[m for m in made if not isinstance(m, tuple)],
                                              *[p for m in made if isinstance(m, tuple) for p in m])

    print(f"selfseg post-processing, no model; {len(maps)} sample photos, analysed at {args.side} px, exported at "
          f"{args.photo_side} px; median of {args.repeats} (min-max), {args.threads} torch thread(s)")
    print(f"{'stage':<24}{'seconds':>10}{'min':>10}{'max':>10}{'instances':>11}  digest")
    for name, row in rows.items():
        print(f"{name:<24}{row['median_s']:>10.4f}{row['min_s']:>10.4f}{row['max_s']:>10.4f}{row['instances']:>11}  "
              f"{row.get('digest', '(with export_add)')}")
    report = {"rows": rows, "settings": vars(args),
              "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__,
                          "platform": platform.platform(), "load_average": os.getloadavg()}}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
