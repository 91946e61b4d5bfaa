#!/usr/bin/env bash
# Meta-trains design-study agents at the paper's budget on a lent GPU (question "scale" of
# config/study.yaml), from the repository root of a machine without network, with the git-ignored
# .whl/ (the other wheels meta-training imports) and data/processed/ carried along, as
# benchmarks/gpu_run.sh (benchmarks/gpu_env.sh). Every agent named runs its meta-training seeds
# side by side (vmapped) in one process; the agents' processes share the GPU, each killed after
# LIMIT seconds (its last checkpoint comes back; RESUME=<folder with that archive>, carried,
# resumes it). Results: $OUT/<agent>.tar.gz (the `ganno meta-train` run folder <agent>/:
# policy/seed_<s>/, learning_curve.jsonl with steps per second; one archive because the device
# returns only shallow folders of few files), $OUT/<agent>.log,
# the GPU's utilisation every 5 s in $OUT/gpu_utilisation.csv. Evaluate them on the CPU with
#   python3 benchmarks/import_study_policies.py $OUT results/study && \
#   ganno design-study --config config/study.yaml --question scale
#   bash benchmarks/gpu_study_meta_train.sh combined_paper_scale family_combined_paper_scale
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
LIMIT=${LIMIT:-420}
SEEDS=${SEEDS:-0,1,2}
CONFIG=${CONFIG:-config/study.yaml}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the agents' processes share the GPU's memory
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 \
    > "$OUT/gpu_utilisation.csv" 2>/dev/null &
monitor=$!
pids=()
for agent in "$@"; do
    (
        start=$(date +%s)
        if [ -n "${RESUME:-}" ] && [ -f "$RESUME/$agent.tar.gz" ]; then
            tar xzf "$RESUME/$agent.tar.gz" -C "$OUT"
        fi
        rc=0
        timeout "$LIMIT" python3 -m ganno.cli meta-train --config "$CONFIG" \
            --agent "$agent" --seeds "$SEEDS" --out "$OUT/$agent" --no-progress \
            > "$OUT/$agent.log" 2>&1 || rc=$?
        echo "$agent: rc $rc, wall $(($(date +%s) - start)) s" | tee -a "$OUT/$agent.log"
        # a finished run needs no checkpoint (the policy and the curve are its results)
        if [ "$rc" = 0 ]; then rm -rf "$OUT/$agent/checkpoints"; fi
        tar czf "$OUT/$agent.tar.gz" -C "$OUT" "$agent" && rm -rf "${OUT:?}/$agent"
    ) &
    pids+=($!)
done
wait "${pids[@]}"
kill "$monitor" 2>/dev/null || true
