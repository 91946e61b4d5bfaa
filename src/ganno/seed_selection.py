"""Choosing a policy among an agent's meta-training seeds by meta-validation.

Meta-training the same design from different seeds gives policies that differ more than their
evaluation runs do (docs/design_study.md, "DoG as the base, meta-trained on the task family": the
networks one seed's policy leaves at chance, another's trains). A practitioner ships one policy, so
which seed to ship is part of the method. Here it is chosen on the config's meta-validation tasks
(``evaluation.validation_tasks``, which the config check keeps apart from the held-out tasks and
from the task family): each seed's *validation score* is its tuned validation-split accuracy pooled
over them (IQM stratified by task; lr0 tuned per task on that seed's runs by
``evaluation.tune_by``), and the seed with the highest is the agent's *selected* policy.

:func:`seeds_table` puts each seed's score beside what it did on the tasks the selection never
saw (tuned test accuracy on the training task and pooled over the held-out tasks, each tuned on
that seed's runs alone, and the share of its runs left at chance per task);
:func:`selection_summary` says whether the score ranks the seeds as the held-out tasks do (a
rank correlation with a bootstrap CI over seeds) and whether the selected seeds are the better
half of their agents'; :func:`selected_runs` makes each agent's selected policy a method of its
own, so the across-tasks table compares it with the baselines like any agent.
:func:`ganno.design_study.write_seeds_table` writes ``design_study_seeds.{csv,md}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ganno import layout, plots, stats, tables
from ganno.agents import agents, get, meta_seeds, method_name
from ganno.errors import ConfigError, ResultsError, ResultsMissingError
from ganno.results import read_results

#: What a selected policy's method name ends with: ``ganno_<agent>_selected`` holds the runs of
#: the agent's selected seed, a row of the across-tasks table of its own.
SELECTED_SUFFIX = "_selected"


def load_validation(
    config: Mapping[str, Any], results: str | Path, methods: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """The runs on the meta-validation tasks under ``results`` of the agents among ``methods``
    that run on them (:func:`ganno.layout.agent_validation_tasks`), and the paths not yet run."""
    root, found, missing = Path(results), [], []
    for agent in agents(config):
        if agent.method not in set(methods):
            continue
        for task in layout.agent_validation_tasks(config, agent):
            for seed in meta_seeds(config, agent.name):
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


def validation_score(
    runs: pd.DataFrame,
    validation_tasks: Sequence[str],
    tune_by: str = "val_accuracy",
    **ci_kwargs: Any,
) -> stats.Estimate:
    """One policy's validation score from its ``runs`` on the validation tasks: its tuned
    validation-split accuracy pooled over ``validation_tasks`` (IQM [CI] stratified by task, lr0
    tuned per task on these runs by ``tune_by``); NaN unless it ran on every one."""
    return _pooled(runs, validation_tasks, "val_accuracy", tune_by, **ci_kwargs)


def best_seed(scores: Mapping[int, float]) -> int | None:
    """The selected seed of ``{seed: validation score}``: the highest score (the smaller seed on
    a tie); None while a seed has no score (NaN) or there is none."""
    if not scores or not all(np.isfinite(v) for v in scores.values()):
        return None
    return max(sorted(scores), key=lambda seed: scores[seed])


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
    ``held_out``, the share of its runs at chance per task, validation tasks included
    (``at_chance_<task>``), and whether it is its agent's selected seed (the highest validation
    score; none while a seed has none)."""
    agent_runs = runs[runs["method"].map(plots.is_ganno)]
    validation = validation[validation["method"].map(plots.is_ganno).astype(bool)]  # may be empty
    tasks = [layout.TRAIN_TASK, *held_out, *validation_tasks]
    rows = []
    for (method, seed), mine in agent_runs.groupby(["method", "meta_seed"], sort=True):
        own_validation = validation[
            (validation["method"] == method) & (validation["meta_seed"] == seed)
        ]
        score = validation_score(own_validation, validation_tasks, tune_by, **ci_kwargs)
        held = _pooled(mine, held_out, "test_accuracy", tune_by, **ci_kwargs)
        train = _pooled(mine, [layout.TRAIN_TASK], "test_accuracy", tune_by, **ci_kwargs)
        shares = tables.at_chance_shares(pd.concat([mine, own_validation], ignore_index=True))
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
        chosen = best_seed(dict(zip(own["meta_seed"], own["validation_score"], strict=True)))
        if chosen is not None:
            table.loc[own.index[own["meta_seed"] == chosen], "selected"] = True
    return table


class Selection(NamedTuple):
    """What :func:`selection_summary` returns."""

    correlation: stats.Estimate  # Spearman's rho of validation score and held-out accuracy
    seeds: int  # the seeds it is over (both numbers finite)
    within_agents: float  # the mean over agents (3 or more such seeds) of each one's own rho
    agents: int  # the agents with a selected seed and every seed's held-out accuracy
    at_or_above_median: int  # of them, those whose selected seed is at or above their median
    selected_rank: dict[str, int]  # agent -> its selected seed's held-out rank (1 = best)


def selection_summary(table: pd.DataFrame, **ci_kwargs: Any) -> Selection:
    """Whether the validation score ranks the seeds as the held-out tasks do, over every seed
    with both numbers (between agents as well as within them) and within each agent, and, per
    agent with a selected seed, where that seed's held-out accuracy stands among its agent's
    seeds."""
    both = table.dropna(subset=["validation_score", "held_out_accuracy"])
    rho = stats.rank_correlation_ci(
        both["validation_score"].to_numpy(float),
        both["held_out_accuracy"].to_numpy(float),
        **ci_kwargs,
    )
    ranks, above, within = {}, 0, []
    for method, own in table.groupby("method", sort=False):
        mine = own.dropna(subset=["validation_score", "held_out_accuracy"])
        if len(mine) >= 3:
            within.append(mine["validation_score"].corr(mine["held_out_accuracy"], "spearman"))
        if not own["selected"].any() or own["held_out_accuracy"].isna().any():
            continue
        chosen = float(own.loc[own["selected"], "held_out_accuracy"].iloc[0])
        ranks[method] = int((own["held_out_accuracy"] > chosen).sum()) + 1
        above += bool(chosen >= own["held_out_accuracy"].median())
    within_agents = float(np.nanmean(within)) if np.isfinite(within).any() else np.nan
    return Selection(rho, len(both), within_agents, len(ranks), above, ranks)


def seeds_display(table: pd.DataFrame) -> pd.DataFrame:
    def ci(prefix: str) -> list[str]:
        return [
            "-" if not np.isfinite(r[prefix])
            else tables.fmt_ci(r[prefix], r[f"{prefix}_low"], r[f"{prefix}_high"])
            for _, r in table.iterrows()
        ]  # fmt: skip

    shown = {
        "method": table["method"],
        "seed": table["meta_seed"],
        "selected": table["selected"].map({True: "yes", False: ""}),
        "validation score": ci("validation_score"),
        "held-out: tuned test accuracy": ci("held_out_accuracy"),
        "train: tuned test accuracy": ci("train_tuned_accuracy"),
    }
    for column in [c for c in table.columns if c.startswith("at_chance_")]:
        shown[f"at chance: {column.removeprefix('at_chance_')}"] = table[column].map(
            tables.fmt_share
        )
    return pd.DataFrame(shown)


def selected_method(method: str) -> str:
    """The method name of ``method``'s selected policy."""
    return f"{method}{SELECTED_SUFFIX}"


def selected_runs(runs: pd.DataFrame, chosen: pd.DataFrame | Mapping[str, int]) -> pd.DataFrame:
    """The runs of each agent's selected seed, renamed :func:`selected_method` (their
    ``meta_seed`` kept). ``chosen`` is a :func:`seeds_table` (its ``selected`` rows) or a mapping
    from method to seed (a selection record's ``method`` and ``seed``)."""
    if isinstance(chosen, pd.DataFrame):
        picked = chosen.loc[chosen["selected"].astype(bool), ["method", "meta_seed"]]
        chosen = dict(picked.itertuples(index=False))
    parts = [
        runs[(runs["method"] == method) & (runs["meta_seed"] == seed)].assign(
            method=selected_method(method)
        )
        for method, seed in chosen.items()
    ]
    return pd.concat(parts, ignore_index=True) if parts else runs.iloc[:0]


def read_selection(path: str | Path) -> dict[str, Any]:
    """A selection record that :func:`select_seed` wrote (``ganno pretrained select``): a
    :class:`ResultsMissingError` when it is absent, a :class:`ResultsError` naming the file when
    it is not a record."""
    path = Path(path)
    if not path.is_file():
        raise ResultsMissingError(
            f"{path} does not exist: choose the seed first (ganno pretrained select --config C "
            f"--agent A --results R --out {path})"
        )
    try:
        record = json.loads(path.read_text())
        for key in ("agent", "method", "policy", "rule", "validation_tasks", "scores"):
            record[key]  # noqa: B018
        int(record["seed"])
    except (ValueError, KeyError, TypeError) as err:
        raise ResultsError(
            f"{path} is not a seed-selection record ({type(err).__name__}: {err}): delete it and "
            "rerun ganno pretrained select"
        ) from err
    return record


#: How the pipeline chooses the shipped policy's seed, as its selection record states it.
SELECTION_RULE = (
    "the meta-training seed whose policy has the highest tuned validation-split accuracy pooled "
    "over the validation tasks (IQM stratified by task, lr0 tuned per task on that seed's runs; "
    "the smaller seed on a tie)"
)


def select_seed(config: Mapping[str, Any], agent: str, results: str | Path) -> dict[str, Any]:
    """The selection record of ``agent``'s meta-training seeds from their runs on the validation
    tasks under ``results`` (``ganno pretrained select``): every seed's validation score, the
    selected seed (:func:`best_seed`) and its policy folder. A :class:`ConfigError` when the
    agent runs on no validation task, a :class:`ResultsMissingError` naming a missing results
    table, a :class:`ResultsError` when a seed has no score."""
    tasks = layout.agent_validation_tasks(config, get(config, agent))
    if not tasks:
        raise ConfigError(
            f"agent {agent!r} runs on no validation task (evaluation.validation_tasks is empty, or "
            "the agent's `tasks` restricts it): add validation tasks to the config, or ship a seed "
            "without choosing (ganno pretrained refresh --from DIR)"
        )
    runs, missing = load_validation(config, results, [method_name(agent)])
    if missing:
        raise ResultsMissingError(
            f"{missing[0]} does not exist: run the seed's policy on the validation task first "
            f"(ganno generalise --task TASK --agent {agent} ...; {len(missing)} tables missing)"
        )
    root, tune_by = Path(results), tables.tune_by(config)
    scores = {
        seed: validation_score(
            runs[runs["meta_seed"] == seed], tasks, tune_by, **tables.ci_kwargs(config)
        )
        for seed in meta_seeds(config, agent)
    }
    chosen = best_seed({seed: est.value for seed, est in scores.items()})
    if chosen is None:
        bad = [seed for seed, est in scores.items() if not np.isfinite(est.value)]
        raise ResultsError(
            f"seeds {bad} of agent {agent!r} have no validation score (a validation task without "
            "runs, e.g. its dataset absent, or non-finite accuracies): rerun their validation "
            "runs or remove the task from evaluation.validation_tasks"
        )
    return {
        "agent": agent,
        "method": method_name(agent),
        "seed": chosen,
        "policy": str(root / layout.META_TRAIN_DIR.format(agent=agent, seed=chosen) / "policy"),
        "rule": SELECTION_RULE,
        "validation_tasks": list(tasks),
        "tune_by": tune_by,
        "scores": {
            str(seed): {"value": est.value, "low": est.low, "high": est.high}
            for seed, est in scores.items()
        },
    }
