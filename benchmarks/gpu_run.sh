#!/usr/bin/env bash
# The GPU throughput check of issue 13 item 5, run from the repository root on a lent GPU machine
# (no network; jax, flax, optax, chex, numpy, ... preinstalled) with the git-ignored .whl/ (the
# other wheels meta-training imports) and data/processed/ (the prepared mnist1d) carried along.
# ganno need not be installed: PYTHONPATH=src. Results: $OUT/gpu_meta_train.{json,csv}, log
# $OUT/gpu_log.txt. Arguments go on to gpu_meta_train.py. CPU reference: gpu_meta_train.py --quick
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
rm -rf /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl
export PYTHONPATH=/tmp/site:src
python3 -c 'import jax; print(jax.__version__, jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 timeout 420 python3 benchmarks/gpu_meta_train.py \
    --out "$OUT/gpu_meta_train.json" "$@" 2>&1 | tee "$OUT/gpu_log.txt"
