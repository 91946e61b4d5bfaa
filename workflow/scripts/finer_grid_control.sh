#!/usr/bin/env bash
# A control of the design study's lr0 grid (docs/design_study.md, "Choosing the seed by meta-validation"): an
# agent's selected policy (the seed paper/tables/design_study_seeds.csv selects) and the baselines
# that set the targets, evaluated again on a grid of PER_DECADE initial rates a decade instead of
# the study's 2, on the training task and every held-out task, with the same evaluation seeds;
# then the across-tasks table of those runs. The config is the study's with
# evaluation.lr0_per_decade changed (written beside the runs); finished runs are skipped.
#   bash workflow/scripts/finer_grid_control.sh AGENT [PER_DECADE] [config/study.yaml] \
#       [results/study] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
agent=${1:?give the agent whose selected policy to evaluate, e.g. family_combined_dog_2x_collapse}
per_decade=${2:-10}
config=${3:-config/study.yaml}
study=${4:-results/study}
out=${5:-$study/finer_grid}
mkdir -p "$out/sweep" "$out/logs"
fine="$out/config.yaml"
python - "$config" "$per_decade" "$fine" <<'EOF'
import sys

import yaml

from ganno.config import read_config_file, validate

source, per_decade, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = read_config_file(source)
raw.setdefault("evaluation", {})["lr0_per_decade"] = per_decade
validate(raw)
with open(dest, "w") as f:
    f.write(f"# {source} with evaluation.lr0_per_decade: {per_decade} (finer_grid_control.sh)\n")
    yaml.safe_dump(raw, f, sort_keys=False)
EOF
seed=$(python - "$agent" <<'EOF'
import sys

import pandas as pd

table = pd.read_csv("paper/tables/design_study_seeds.csv")
chosen = table[(table["method"] == f"ganno_{sys.argv[1]}") & table["selected"].astype(bool)]
if chosen.empty:
    sys.exit(f"no selected seed of {sys.argv[1]} in paper/tables/design_study_seeds.csv")
print(int(chosen["meta_seed"].iloc[0]))
EOF
)
tasks=$(python -c "
from ganno.config import load_config
from ganno.layout import task_names
print(' '.join(task_names(load_config('$fine'))))")
handcrafted=sgd_constant,sgd_step,sgd_exponential,sgd_cosine,sgd_warmup_cosine,sgd_onecycle
for task in $tasks; do
    mkdir -p "$out/sweep/$task"
    # the training task: every handcrafted SGD schedule (a target's); held out: the baselines
    # with the best held-out tuned accuracy (sgd_cosine) and loss (sgd_constant) on the study grid
    methods=$([ "$task" = train ] && echo "$handcrafted" || echo sgd_cosine,sgd_constant)
    csv="$out/sweep/$task/baselines.csv"
    [ -f "$csv" ] || ganno baselines --config "$fine" --task "$task" --methods "$methods" \
        --out "$csv" > "$out/logs/baselines_$task.log" 2>&1
    csv="$out/sweep/$task/${agent}_seed_${seed}.csv"
    [ -f "$csv" ] || ganno generalise --config "$fine" --task "$task" --agent "$agent" \
        --policy "$study/meta_train/$agent/seed_$seed/policy" --name "ganno_$agent" \
        --meta-seed "$seed" --out "$csv" > "$out/logs/sweep_${task}_$agent.log" 2>&1
    echo "$task done"
done
ganno design-table --config "$fine" --results "$out" --out "$out/tables" --question dog
