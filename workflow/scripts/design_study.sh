#!/usr/bin/env bash
# The design study of the agents (config/study.yaml): every design agent meta-trained over the
# meta_train seeds, evaluated on the training task over the lr0 grid x evaluation seeds, against
# every baseline; then the study tables. Seed by seed, so an interrupted study keeps whole rounds;
# finished runs are skipped on a rerun (an interrupted meta-training run resumes). QUESTION: the
# agents' question, "design" (the main study) or a follow-up (e.g. "recurrence": its agents and the
# reference agent, table design_study_<question>).
#   bash workflow/scripts/design_study.sh [config/study.yaml] [results/study] [paper/tables] [QUESTION]
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${1:-config/study.yaml}
OUT=${2:-results/study}
TABLES=${3:-paper/tables}
QUESTION=${4:-design}
mkdir -p "$OUT/logs" "$OUT/sweep"
agents=$(python3 -c "import sys; from ganno.config import load_config; from ganno.design_study import study_agents; print(' '.join(a.name for a in study_agents(load_config(sys.argv[1]), sys.argv[2])))" "$CONFIG" "$QUESTION")
seeds=$(python3 -c "import sys; from ganno.config import load_config; print(' '.join(map(str, load_config(sys.argv[1])['meta_train']['seeds'])))" "$CONFIG")

ganno data prepare mnist1d --config "$CONFIG" > "$OUT/logs/data.log" 2>&1
[ -f "$OUT/sweep/baselines.csv" ] || ganno baselines --config "$CONFIG" --task train \
    --out "$OUT/sweep/baselines.csv" > "$OUT/logs/baselines.log" 2>&1
for seed in $seeds; do
  for v in $agents; do
    run="$OUT/meta_train/$v/seed_$seed"
    if [ ! -f "$run/policy/policy.json" ]; then
      start=$(date +%s)
      ganno meta-train --config "$CONFIG" --agent "$v" --seed "$seed" --out "$run" \
          --no-progress > "$OUT/logs/meta_train_${v}_seed_$seed.log" 2>&1
      echo "$v seed $seed: $(( $(date +%s) - start )) s" >> "$OUT/logs/meta_train_times.txt"
    fi
    csv="$OUT/sweep/${v}_seed_$seed.csv"
    [ -f "$csv" ] || ganno generalise --config "$CONFIG" --task train --agent "$v" \
        --policy "$run/policy" --name "ganno_$v" --meta-seed "$seed" --out "$csv" \
        --schedules "$OUT/sweep/${v}_seed_$seed.schedules.csv" \
        > "$OUT/logs/sweep_${v}_seed_$seed.log" 2>&1
  done
done
ganno design-table --config "$CONFIG" --results "$OUT" --out "$TABLES" --question "$QUESTION"
