"""`selfseg` command line: tag, resources, download. Failures print one line each and exit non-zero."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from .errors import SelfSegError

_OVERRIDE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*=")


def _resolve_config(name: "str | None") -> "str | None":
    """A path, or a bare name found as configs/<name>.yaml under the working directory."""
    if name is None or Path(name).exists():
        return name
    cand = Path("configs") / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return str(cand) if cand.exists() else name


def _split_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Positional args that look like key.sub=value and are not files are overrides."""
    inputs, overrides = [], []
    for a in args:
        (overrides if _OVERRIDE.match(a) and not Path(a).exists() else inputs).append(a)
    return inputs, overrides


def _output_stems(sources: Sequence[str]) -> dict[str, str]:
    """Output file stem per input, fixed by input order: the same name from two folders gets _1, _2."""
    used: set[str] = set()
    stems = {}
    for src in sources:
        base = Path(src).stem or "image"
        stem, i = base, 1
        while stem in used:
            stem, i = f"{base}_{i}", i + 1
        used.add(stem)
        stems[src] = stem
    return stems


def _run_images(ns: argparse.Namespace, segment: bool) -> int:
    """`tag` and `segment`: expand inputs, skip finished ones (--resume), run in batches, write each
    result as it arrives, one line per image or failure, progress on stderr."""
    from tqdm import tqdm

    from .io import expand_inputs
    from .pipeline import SelfSeg, write_outputs

    inputs, overrides = _split_overrides(ns.inputs)
    seg = SelfSeg.from_config(_resolve_config(ns.config), overrides + (ns.set or []))
    sources = expand_inputs(inputs)
    if not sources:
        print("selfseg: error: no input images given", file=sys.stderr)
        return 2
    if seg.meaningless or (segment and _uses_tiny(seg.config)):
        print("NOTE: this config uses tiny random-init models built in code (no download); the outputs "
              "below are meaningless and only show that everything runs.")
    out = Path(ns.out)
    stems = _output_stems(sources)
    def finished(src: str) -> bool:  # a `tag` run's JSON in the same folder does not count for `segment`
        done = (out / f"{stems[src]}.json").is_file()
        return done and (not segment or (out / f"{stems[src]}_labels.png").is_file())

    todo = [s for s in sources if not (ns.resume and finished(s))]
    if len(todo) < len(sources):
        print(f"resuming: {len(sources) - len(todo)} of {len(sources)} images already have results in {out}/",
              file=sys.stderr)
    failed = 0
    # Progress on stderr (images done, rate, ETA); per-image lines go through tqdm.write so they stay readable.
    bar = tqdm(total=len(todo), unit="img", file=sys.stderr, disable=ns.quiet or None, leave=False)
    items = seg.segment_many(todo, ns.batch_size) if segment else seg.tag_many(todo, ns.batch_size)
    for item in items:
        bar.update(1)
        if not item.ok:
            failed += 1
            tqdm.write(f"error: {item.error}", file=sys.stderr)
            continue
        r = item.result
        try:
            if segment:
                r.save(out, stems[item.source], image=item.loaded.image, original_size=item.loaded.size)
            else:
                write_outputs(item, out, stems[item.source])
        except OSError as exc:
            failed += 1
            tqdm.write(f"error: {item.source}: could not write outputs ({exc})", file=sys.stderr)
            continue
        if segment:
            found = ", ".join(dict.fromkeys(r.labels)) or "(nothing segmented: " + "; ".join(r.notes) + ")"
            tqdm.write(f"{item.source}: {len(r.labels)} instances: {found}", file=sys.stdout)
        else:
            tqdm.write(f"{item.source}: {', '.join(r.tags) or '(no nouns found)'}", file=sys.stdout)
    bar.close()
    done = "segmented" if segment else "tagged"
    print(f"{len(sources) - failed}/{len(sources)} images {done}; outputs in {out}/", file=sys.stderr)
    return 1 if failed else 0


def cmd_tag(ns: argparse.Namespace) -> int:
    return _run_images(ns, segment=False)


def cmd_segment(ns: argparse.Namespace) -> int:
    return _run_images(ns, segment=True)


def _uses_tiny(cfg) -> bool:
    from .config import TINY_MODEL

    s = cfg.segment
    return TINY_MODEL in (s.grounded_sam2.detector, s.grounded_sam2.sam, s.clipseg.model)


def cmd_resources(ns: argparse.Namespace) -> int:
    from .resources import setup_resources

    setup_resources(wordnet_dir=ns.wordnet_dir, spacy_pipeline=ns.spacy_pipeline, allow_apt=not ns.no_apt)
    return 0


def cmd_download(ns: argparse.Namespace) -> int:
    from .config import TINY_MODEL, load_config
    from .resources import download_checkpoints

    configs = ns.config or [None]
    ids, cache = [], None
    for c in configs:
        cfg = load_config(_resolve_config(c))
        cache = cfg.model.cache_dir or cache
        wanted = [cfg.model.blip] if cfg.tagger in ("bcc", "caption") else []
        seg = cfg.segment
        wanted += {"grounded_sam2": [seg.grounded_sam2.detector, seg.grounded_sam2.sam],
                   "clipseg": [seg.clipseg.model]}.get(seg.segmenter, [])
        ids += [m for m in wanted if m != TINY_MODEL and m not in ids]
    if not ids:
        print("nothing to download: the configs use only models built in code")
        return 0
    failed = download_checkpoints(ids, cache_dir=cache)
    if failed:
        print(f"selfseg: error: {len(failed)} checkpoint(s) could not be downloaded: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfseg", description="Training-free, self-guided open-vocabulary "
                                "segmentation.")
    sub = p.add_subparsers(dest="command", required=True)

    for name, helptext, func in (
        ("tag", "find what is in images (BLIP-Cluster-Caption by default)", cmd_tag),
        ("segment", "find what is in images and segment it (tags -> boxes -> masks)", cmd_segment),
    ):
        t = sub.add_parser(name, help=helptext)
        t.add_argument("inputs", nargs="+", help="image files, folders or globs; key.sub=value overrides the config")
        t.add_argument("--config", "-c", help="YAML config (path or name under configs/); default: paper settings")
        t.add_argument("--out", "-o", default="out", help="output folder (default: out)")
        t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
        t.add_argument("--batch-size", type=_positive_int, help="images per batch (default: run.batch_size)")
        t.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        t.add_argument("--resume", action="store_true",
                       help="skip images whose result JSON is already in --out (finish an interrupted run)")
        t.set_defaults(func=func)

    r = sub.add_parser("resources", help="make WordNet and a spaCy English pipeline available")
    r.add_argument("--wordnet-dir", help="copy WordNet from this database directory (e.g. /usr/share/wordnet)")
    r.add_argument("--spacy-pipeline", default="auto", help="spaCy pipeline to check (default: auto)")
    r.add_argument("--no-apt", action="store_true", help="never try apt-get for WordNet")
    r.set_defaults(func=cmd_resources)

    d = sub.add_parser("download", help="cache every checkpoint the configs use, for offline machines")
    d.add_argument("--config", "-c", action="append", help="config(s) whose checkpoints to fetch (repeatable)")
    d.set_defaults(func=cmd_download)
    return p


def main(argv: "Sequence[str] | None" = None) -> int:
    parser = build_parser()
    # Inputs and key=value overrides may come after options ("tag a.jpg --config c.yaml x.y=1"), which
    # argparse's plain positional handling refuses: gather the leftovers back into the inputs.
    ns, extra = parser.parse_known_args(argv)
    if extra:
        if ns.command not in ("tag", "segment") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        ns.inputs += extra
    try:
        return ns.func(ns)
    except SelfSegError as exc:
        print(f"selfseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
