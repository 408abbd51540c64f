#!/usr/bin/env bash
# The GPU burst of issue #36 in one command, run from the repository root of a lent GPU machine
# (docs/training.md, "Training on a lent GPU"):
#
#     bash bench/gpu_burst.sh [BUDGET_SECONDS [OUT_DIR]] [bench/gpu_burst.py options]
#
# BUDGET_SECONDS (default 420) bounds everything from here on, this install included; OUT_DIR
# defaults to $OUT (the folder the device tool brings back), else bench_out/gpu_burst.
# This script only installs what is missing, offline (that machine reaches no package registry):
#   - torch: the machine's own, never installed by pip here (pyproject allows >=2.4,<2.15; the
#     device image has 2.11); without torch it stops;
#   - sccodec and its dependencies: `pip install --no-index -e ".[train]"` with the wheels of
#     train_pack/wheels (constriction, which the image lacks: bench/make_training_pack.py downloads
#     it) and what the image has; if pip cannot (an old setuptools, say), the tree on PYTHONPATH.
# The work itself (checks, timings, training, report) is bench/gpu_burst.py's.
# Dry run on a CPU: bash bench/gpu_burst.sh 300 /tmp/burst --device cpu --steps 2 --no-compile --time-sizes 64x48
set -uo pipefail
started=$(date +%s.%N)
cd "$(dirname "$0")/.." || exit 2
budget=420
out=${OUT:-bench_out/gpu_burst}
if [ $# -gt 0 ] && [[ $1 != -* ]]; then budget=$1; shift; fi
if [ $# -gt 0 ] && [[ $1 != -* ]]; then out=$1; shift; fi
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
say() { echo "[gpu_burst.sh] $*"; echo "[gpu_burst.sh] $*" >>"$out/burst.log"; }

if ! "$py" -c 'import torch' 2>/dev/null; then
    say "$py has no torch: this burst uses the machine's own torch and never installs one; stopping"
    exit 2
fi
ready() {  # sccodec from this tree, with what it imports
    "$py" -c 'import sys, sccodec, sccodec_weights, constriction, onnxruntime, safetensors, click, PIL, numpy, threadpoolctl
sys.exit(not sccodec.__file__.startswith(sys.argv[1]))' "$PWD/" 2>/dev/null
}
links=()
for d in train_pack/wheels .whl; do [ -d "$d" ] && links+=(--find-links "$d"); done
if ready; then
    install="already installed"
elif "$py" -m pip install -q --no-index "${links[@]}" --no-build-isolation -e ".[train]" >>"$out/burst.log" 2>&1 && ready; then
    install="pip install --no-index --no-build-isolation -e .[train]"
else
    say "pip install -e failed (see burst.log): using the tree on PYTHONPATH"
    site=$(mktemp -d /tmp/gpu_burst_site.XXXX)
    "$py" -c 'import constriction' 2>/dev/null ||
        "$py" -m pip install -q --no-index --no-deps "${links[@]}" --target "$site" constriction >>"$out/burst.log" 2>&1
    ln -s "$PWD/weights" "$site/sccodec_weights"
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
    install="PYTHONPATH=$PYTHONPATH"
fi
if ! ready; then
    say "sccodec or one of its dependencies does not import (constriction missing? make the pack with its wheels)"
    "$py" -c 'import sccodec, constriction' 2>&1 | tail -3 | tee -a "$out/burst.log"
    exit 2
fi
say "installed: $install ($(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $started}") s)"
export GPU_BURST_INSTALL="$install"
exec "$py" bench/gpu_burst.py --budget "$budget" --out "$out" --started "$started" "$@"
