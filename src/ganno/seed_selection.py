"""Choosing a policy among an agent's meta-training seeds by meta-validation.

Meta-training the same design from different seeds gives policies that differ more than their
evaluation runs do (README, "DoG as the base, meta-trained on the task family": the networks one
seed's policy leaves at chance, another's trains). A practitioner ships one policy, so which
seed to ship is part of the method. Here it is chosen on the config's meta-validation tasks
(``evaluation.validation_tasks``, which the config check keeps apart from the held-out tasks and
from the task family): each seed's *validation score* is its tuned validation-split accuracy
pooled over them (IQM stratified by task; lr0 tuned per task on that seed's runs by
``evaluation.tune_by``), and the seed with the highest is the agent's *selected* policy.

:func:`seeds_table` puts each seed's score beside what it did on the tasks the selection never
saw (tuned test accuracy on the training task and pooled over the held-out tasks, each tuned on
that seed's runs alone, and the share of its runs left at chance per task);
:func:`selection_summary` says whether the score ranks the seeds as the held-out tasks do (a
rank correlation with a bootstrap CI over seeds) and whether the selected seeds are the better
half of their agents'. :func:`write_seeds_table` writes ``design_study_seeds.{csv,md}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ganno import layout, plots, stats, tables
from ganno.agents import agents
from ganno.design_study import held_out_tasks, load_across_tasks, validation_tasks
from ganno.env_settings import COLLAPSE_DEAD
from ganno.experiments import read_results

#: The table's name (under the study's tables folder).
SEEDS_TABLE = "design_study_seeds"
#: The CSV column that marks rows kept from the table before (as the across-tasks table's).
CARRIED = "carried_over"


def load_validation(
    config: Mapping[str, Any], results: str | Path, methods: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """The runs on the meta-validation tasks under ``results`` of the agents among ``methods``
    that run on them (:func:`ganno.design_study.validation_tasks`), and the paths not yet run."""
    root, found, missing = Path(results), [], []
    for agent in agents(config):
        if agent.method not in set(methods):
            continue
        for task in validation_tasks(config, agent):
            for seed in config["meta_train"]["seeds"]:
                path = root / layout.AGENT_CSV.format(task=task, agent=agent.name, seed=seed)
                if path.is_file():
                    found.append(path)
                else:
                    missing.append(str(path))
    return read_results(found), missing


def _pooled(runs: pd.DataFrame, tasks: Sequence[str], metric: str, tune_by: str,
            **ci_kwargs: Any) -> stats.Estimate:  # fmt: skip
    """The tuned ``metric`` IQM [CI] of one policy's runs pooled over ``tasks`` (stratified by
    task, lr0 tuned per task on these runs); NaN unless it ran on every one."""
    if not tasks or not set(tasks) <= set(runs["task"]):
        return stats.Estimate(np.nan, np.nan, np.nan)
    tuned = tables.tuned_results(runs[runs["task"].isin(tasks)], tune_by)
    return tables.iqm_ci(
        {t: g[metric].to_numpy(float) for t, g in tuned.groupby("task")}, **ci_kwargs
    )


def seeds_table(
    runs: pd.DataFrame,
    validation: pd.DataFrame,
    held_out: Sequence[str],
    validation_tasks: Sequence[str],
    tune_by: str = "val_accuracy",
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """One row per design agent and meta-training seed with runs in ``runs`` (training and
    held-out tasks): its validation score on ``validation`` (the validation tasks' runs; NaN
    unless it ran on every one), its tuned test accuracy on the training task and pooled over
    ``held_out``, the share of its runs at chance per task (``at_chance_<task>``), and whether it
    is its agent's selected seed (the highest validation score; none while a seed has none)."""
    agent_runs = runs[runs["method"].map(plots.is_ganno)]
    validation = validation[validation["method"].map(plots.is_ganno).astype(bool)]  # may be empty
    tasks = [layout.TRAIN_TASK, *held_out]
    rows = []
    for (method, seed), mine in agent_runs.groupby(["method", "meta_seed"], sort=True):
        own_validation = validation[
            (validation["method"] == method) & (validation["meta_seed"] == seed)
        ]
        score = _pooled(own_validation, validation_tasks, "val_accuracy", tune_by, **ci_kwargs)
        held = _pooled(mine, held_out, "test_accuracy", tune_by, **ci_kwargs)
        train = _pooled(mine, [layout.TRAIN_TASK], "test_accuracy", tune_by, **ci_kwargs)
        shares = tables.at_chance_shares(mine)
        rows.append(
            {
                "method": method,
                "meta_seed": int(seed),
                "validation_score": score.value,
                "validation_score_low": score.low,
                "validation_score_high": score.high,
                "held_out_accuracy": held.value,
                "held_out_accuracy_low": held.low,
                "held_out_accuracy_high": held.high,
                "train_tuned_accuracy": train.value,
                "train_tuned_accuracy_low": train.low,
                "train_tuned_accuracy_high": train.high,
                **{f"at_chance_{t}": shares.get((method, t), np.nan) for t in tasks},
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["selected"] = False
    for _, own in table.groupby("method"):
        if own["validation_score"].notna().all():
            table.loc[own["validation_score"].idxmax(), "selected"] = True
    return table


class Selection(NamedTuple):
    """What :func:`selection_summary` returns."""

    correlation: stats.Estimate  # Spearman's rho of validation score and held-out accuracy
    seeds: int  # the seeds it is over (both numbers finite)
    agents: int  # the agents with a selected seed and every seed's held-out accuracy
    at_or_above_median: int  # of them, those whose selected seed is at or above their median
    selected_rank: dict[str, int]  # agent -> its selected seed's held-out rank (1 = best)


def selection_summary(table: pd.DataFrame, **ci_kwargs: Any) -> Selection:
    """Whether the validation score ranks the seeds as the held-out tasks do, over every seed
    with both numbers, and, per agent with a selected seed, where that seed's held-out accuracy
    stands among its agent's seeds."""
    both = table.dropna(subset=["validation_score", "held_out_accuracy"])
    rho = stats.rank_correlation_ci(
        both["validation_score"].to_numpy(float),
        both["held_out_accuracy"].to_numpy(float),
        **ci_kwargs,
    )
    ranks, above = {}, 0
    for method, own in table.groupby("method", sort=False):
        if not own["selected"].any() or own["held_out_accuracy"].isna().any():
            continue
        chosen = float(own.loc[own["selected"], "held_out_accuracy"].iloc[0])
        ranks[method] = int((own["held_out_accuracy"] > chosen).sum()) + 1
        above += bool(chosen >= own["held_out_accuracy"].median())
    return Selection(rho, len(both), len(ranks), above, ranks)


def seeds_display(table: pd.DataFrame, held_out: Sequence[str]) -> pd.DataFrame:
    def ci(prefix: str) -> list[str]:
        return [
            "-" if not np.isfinite(r[prefix])
            else tables.fmt_ci(r[prefix], r[f"{prefix}_low"], r[f"{prefix}_high"])
            for _, r in table.iterrows()
        ]  # fmt: skip

    def pct(x: float) -> str:
        return "-" if not np.isfinite(x) else f"{100 * x:.0f}%"

    shown = {
        "method": table["method"],
        "seed": table["meta_seed"],
        "selected": table["selected"].map({True: "yes", False: ""}),
        "validation score": ci("validation_score"),
        "held-out: tuned test accuracy": ci("held_out_accuracy"),
        "train: tuned test accuracy": ci("train_tuned_accuracy"),
    }
    for task in [layout.TRAIN_TASK, *held_out]:
        column = f"at_chance_{task}"
        if column in table:
            shown[f"at chance: {task}"] = table[column].map(pct)
    return pd.DataFrame(shown)


def write_seeds_table(
    config: Mapping[str, Any],
    results: str | Path,
    out_dir: str | Path,
    *,
    keep_absent: bool = False,
) -> tuple[Path, Path]:
    """Write ``design_study_seeds.{csv,md}`` to ``out_dir`` from the study's runs under
    ``results`` (the training and held-out tasks' as the across-tasks table reads them, and the
    validation tasks'). ``keep_absent``: keep the rows of the agents already in the table there
    that have no runs here (marked in :data:`CARRIED`)."""
    runs, _, _ = load_across_tasks(config, results)
    held_out = held_out_tasks(runs, config)
    ci_kwargs = tables.ci_kwargs(config)
    validation_names = layout.validation_task_names(config)
    validation, missing = load_validation(config, results, list(runs["method"].unique()))
    table = seeds_table(
        runs, validation, held_out, validation_names, tables.tune_by(config), **ci_kwargs
    )
    table[CARRIED] = False
    out = Path(out_dir)
    csv, md = out / f"{SEEDS_TABLE}.csv", out / f"{SEEDS_TABLE}.md"
    carried: list[str] = []
    if keep_absent and csv.is_file():
        before = pd.read_csv(csv)
        absent = before[~before["method"].isin(set(table["method"]))].assign(**{CARRIED: True})
        carried = list(dict.fromkeys(absent["method"]))
        table = pd.concat([table, absent], ignore_index=True) if carried else table
    if not table.empty:
        table = table.sort_values(["method", "meta_seed"]).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    summary = selection_summary(table, **ci_kwargs) if not table.empty else None
    lines = [
        "Design study, seed by seed: every design agent's policy of each meta-training seed. "
        "Validation score: its tuned validation-split accuracy pooled over the meta-validation "
        f"tasks ({', '.join(validation_names) or 'none configured'}; evaluation.validation_tasks, "
        "neither meta-trained on nor held out), IQM [95% stratified-bootstrap CI over evaluation "
        "seeds], lr0 tuned per task on this seed's runs by "
        f"{tables.tune_by(config)}; the seed with the highest is its agent's selected policy "
        "(none while a seed has no score). Beside it, on tasks the selection never saw: tuned "
        "test accuracy pooled over the held-out tasks "
        f"({', '.join(held_out) or 'none run yet'}) and on the training task, each lr0 tuned "
        "on this seed's runs alone (the across-tasks table tunes one lr0 for all seeds), and "
        "the share of its runs (every lr0 and evaluation seed) whose test accuracy ends at most "
        f"{COLLAPSE_DEAD:.0%} of the way from chance to perfect, per task.",
        "",
    ]
    if summary is not None:
        rho = summary.correlation
        rho_text = (
            "not computed (it needs 3 seeds with both numbers, and spread in each)"
            if not np.isfinite(rho.value)
            else f"{tables.fmt_ci(rho.value, rho.low, rho.high)} (95% bootstrap CI resampling "
            "seeds)"
        )
        ranks = ", ".join(f"{m} {r}" for m, r in summary.selected_rank.items()) or "none yet"
        lines += [
            f"Does the validation score rank the seeds as the held-out tasks do? Spearman's rank "
            f"correlation of validation score and held-out tuned accuracy over the {summary.seeds} "
            f"seeds with both: {rho_text}. The selected seed "
            f"is at or above its agent's median seed held out for {summary.at_or_above_median} "
            f"of {summary.agents} agents; its held-out rank among its agent's seeds (1 = best): "
            f"{ranks}.",
            "",
            seeds_display(table, held_out).to_markdown(index=False),
            "",
        ]
    if carried:
        lines += [
            f"Kept from the table before ({CARRIED} in the CSV): {', '.join(carried)}; their "
            f"runs are not in {results}.",
            "",
        ]
    if missing:
        lines += [
            f"Missing (not yet run): {len(missing)} validation tables, e.g. {missing[0]}.",
            "",
        ]
    md.write_text("\n".join(lines))
    return csv, md
