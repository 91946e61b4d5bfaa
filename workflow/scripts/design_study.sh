#!/usr/bin/env bash
# The design study of the agents (config/study.yaml): every agent of a question meta-trained over
# the meta_train seeds, evaluated on its tasks (the training task and the held-out tasks) over the
# lr0 grid x evaluation seeds, against the baselines; then the study's tables. The commands are
# `ganno design-study`'s (ganno.design_study.study_steps); finished runs are skipped on a rerun and
# an interrupted meta-training run resumes. QUESTION: "design" (the main study) or a follow-up
# (e.g. "recurrence", "family": its agents and the reference agent, table design_study_<question>).
#   bash workflow/scripts/design_study.sh [config/study.yaml] [results/study] [paper/tables] [QUESTION]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec ganno design-study --config "${1:-config/study.yaml}" --results "${2:-results/study}" \
    --out "${3:-paper/tables}" --question "${4:-design}"
