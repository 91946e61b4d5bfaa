#!/usr/bin/env bash
# The GPU throughput check of issue 13 item 5, run from the repository root on a lent GPU machine
# (no network; jax, flax, optax, chex, numpy, ... preinstalled) with the git-ignored .whl/ (the
# other wheels meta-training imports) and data/processed/ (the prepared mnist1d) carried along.
# ganno need not be installed: PYTHONPATH=src. Results: $OUT/gpu_meta_train.{json,csv}, log
# $OUT/gpu_log.txt. Arguments go on to gpu_meta_train.py. CPU reference: gpu_meta_train.py --quick
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
timeout 420 python3 benchmarks/gpu_meta_train.py \
    --out "$OUT/gpu_meta_train.json" "$@" 2>&1 | tee "$OUT/gpu_log.txt"
