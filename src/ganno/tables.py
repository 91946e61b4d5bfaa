"""The numbers of the report: summaries of the results tables (IQM with stratified-bootstrap CIs,
robust ranges, probabilities of improvement, schedules), their display form, and writing a table
as CSV, Markdown and LaTeX. Every section of the report (the paper's claims in
:mod:`ganno.report`, the questions and the PyTorch deployment in :mod:`ganno.extensions_report`)
computes its tables with these functions.

Tuned numbers come from :func:`tune` per (method, task), with the config's
``evaluation.tune_by`` (validation accuracy or validation loss), for GANNO's agents as for every
baseline (runs of all policies of an agent are pooled, so a method gets one lr0 per task). Both
final test metrics are reported: test accuracy and, beside it, test loss (lower is better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ganno import plots, stats
from ganno.data import NUM_CLASSES
from ganno.env_settings import COLLAPSE_DEAD, share_of_the_way
from ganno.errors import ResultsMissingError
from ganno.io import atomic_write, write_csv
from ganno.layout import TABLE_FORMATS, TRAIN_TASK, skipped_marker

ALL_TASKS = "all tasks"
HELD_OUT = "held-out tasks"
#: The two final test metrics of every table: (column, higher is better).
METRICS = {"test_accuracy": True, "test_loss": False}


def tune(
    df: pd.DataFrame, by: Sequence[str] = ("method", "task"), metric: str = "val_accuracy"
) -> pd.DataFrame:
    """The rows (all seeds) of each method's tuned initial rate, chosen on validation only.

    Per group of ``by`` (columns absent from ``df`` are skipped), the chosen ``lr0`` has the best
    seed-mean final validation ``metric``: by default the highest *validation accuracy*, ties to
    the lower validation loss (the reported metric is test accuracy, and a loss criterion picks
    chance-level rates for methods that overfit: their loss explodes while accuracy stays high);
    with ``metric="val_loss"`` the lowest loss, ties to the higher accuracy. Remaining ties go to
    the smaller lr0. A non-finite value counts as the worst. Test columns are carried along for
    reporting and never read. The result adds ``selection_<metric>`` (the winning mean); the
    full lr0 curve stays in ``df``.
    """
    if metric not in ("val_accuracy", "val_loss"):
        raise ValueError(f"tune metric {metric!r}: choose 'val_accuracy' or 'val_loss'")
    group = [c for c in by if c in df.columns]
    val_loss = df["val_loss"].where(np.isfinite(df["val_loss"]), np.inf)
    val_acc = df["val_accuracy"].where(np.isfinite(df["val_accuracy"]), -np.inf)
    scored = df.assign(_vl=val_loss, _va=val_acc)
    means = (
        scored.groupby([*group, "lr0"], sort=True)
        .agg(_mvl=("_vl", "mean"), _mva=("_va", "mean"))
        .reset_index()
    )
    means["_mvl"] = means["_mvl"].fillna(np.inf)
    means["_mva"] = means["_mva"].fillna(-np.inf)
    if metric == "val_accuracy":  # highest accuracy, then lowest loss, then smallest lr0
        order, ascending = [*group, "_mva", "_mvl", "lr0"], [False, True, True]
    else:  # lowest loss, then highest accuracy, then smallest lr0
        order, ascending = [*group, "_mvl", "_mva", "lr0"], [True, False, True]
    means = means.sort_values(order, ascending=[True] * len(group) + ascending)
    best = means.groupby(group, sort=True).head(1) if group else means.head(1)
    chosen = "_mva" if metric == "val_accuracy" else "_mvl"
    best = best.rename(columns={chosen: f"selection_{metric}"})
    best = best.drop(columns=[c for c in ("_mva", "_mvl") if c in best.columns])
    tuned = df.merge(best, on=[*group, "lr0"], how="inner")
    return tuned.sort_values([*group, "seed"] if "seed" in df else group).reset_index(drop=True)


def tune_by(config: Mapping[str, Any]) -> str:
    """The tuning criterion of the config (``evaluation.tune_by``)."""
    return str(config["evaluation"]["tune_by"])


def read_csv_or_skip(
    path: Path, root: Path, skipped: dict[str, str], reader: Any
) -> pd.DataFrame | None:
    """``reader(path)``, or None with the reason noted in ``skipped`` (keyed by the path relative
    to ``root``) when the file is marked skipped, empty or without rows."""
    name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    marker = skipped_marker(path)
    if marker.is_file():
        reason = marker.read_text().strip().splitlines()
        skipped[name] = reason[0] if reason else "skipped (no reason given)"
        return None
    if not path.is_file():
        raise ResultsMissingError(
            f"{path} is missing (and has no {marker.name} saying why); run the pipeline stage "
            "that writes it (snakemake --cores all)"
        )
    if path.stat().st_size == 0:
        skipped[name] = "empty file"
        return None
    df = reader(path)
    if df.empty:
        skipped[name] = "no rows"
        return None
    return df


def ci_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The bootstrap settings of the config, as keyword arguments of :mod:`ganno.stats`."""
    cfg = config["baselines"]
    return {
        "confidence": float(cfg["confidence"]),
        "n_resamples": int(cfg["bootstrap_resamples"]),
        "seed": int(config.get("seed", 0)),
    }


def iqm_ci(scores: Mapping[str, Any], **ci_kwargs: Any) -> stats.Estimate:
    """:func:`ganno.stats.iqm_ci`, tolerating a task with a single run (no interval then)."""
    arrays = {t: np.asarray(v, float) for t, v in scores.items()}
    if min(a.size for a in arrays.values()) < 2:
        value = float(stats.iqm(np.concatenate(list(arrays.values()))))
        return stats.Estimate(value, value, value)
    return stats.iqm_ci(arrays, **ci_kwargs)


def tuned_results(results: pd.DataFrame, tune_by: str = "val_accuracy") -> pd.DataFrame:
    """The runs at each (method, task)'s tuned lr0 (:func:`tune` with
    ``metric=tune_by``), the same rule for every method."""
    return tune(results, by=("method", "task"), metric=tune_by)


def _estimate_columns(prefix: str, est: stats.Estimate) -> dict[str, float]:
    return {f"{prefix}_iqm": est.value, f"{prefix}_low": est.low, f"{prefix}_high": est.high}


def robustness_summary(
    results: pd.DataFrame,
    *,
    tolerance: float = 0.02,
    metric: str = "test_accuracy",
    tune_by: str = "val_accuracy",
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """Per method on one task (C2): the robustness range of the seed-mean ``metric`` curve
    (:func:`ganno.stats.robustness_range`; ``robust_at_edge`` when it reaches the smallest or
    largest lr0 of the method's grid, so the true range may be wider), the IQM of ``metric`` over
    all lr0 x runs and at the tuned lr0 with their CIs, the fraction of diverged runs and the
    share of runs at chance (:func:`at_chance_shares`); sorted by range, then tuned IQM.
    The test loss beside it: ``all_loss_*`` and ``tuned_loss_*`` (IQM, CI).
    """
    if results["task"].nunique() != 1:
        raise ValueError(f"one task expected, got {sorted(results['task'].unique())}")
    ranges = stats.robustness_table(results, metric, tolerance=tolerance, by=("method",))
    tuned = tuned_results(results, tune_by)
    rows = []
    for _, r in ranges.iterrows():
        method = r["method"]
        runs = results[results["method"] == method]
        at = tuned[tuned["method"] == method]
        every = iqm_ci({"task": runs[metric]}, **ci_kwargs)
        best = iqm_ci({"task": at[metric]}, **ci_kwargs)
        rows.append(
            {
                "method": method,
                "kind": plots.method_kind(method),
                "robust_decades": r["decades"],
                "robust_low": r["low"],
                "robust_high": r["high"],
                "robust_at_edge": stats.at_grid_edge(r["low"], r["high"], runs["lr0"]),
                "best_lr0": r["best_lr0"],
                "best_mean": r["best_score"],
                "all_iqm": every.value,
                "all_low": every.low,
                "all_high": every.high,
                "tuned_lr0": float(at["lr0"].iloc[0]),
                "tuned_iqm": best.value,
                "tuned_low": best.low,
                "tuned_high": best.high,
                "diverged_fraction": float(runs["diverged"].mean()),
                "at_chance": float(at_chance(runs["test_accuracy"]).mean()),
                "runs": len(runs),
                "lr0_points": runs["lr0"].nunique(),
                "tolerance": tolerance,
                **_estimate_columns("all_loss", iqm_ci({"task": runs["test_loss"]}, **ci_kwargs)),
                **_estimate_columns("tuned_loss", iqm_ci({"task": at["test_loss"]}, **ci_kwargs)),
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(
        ["robust_decades", "tuned_iqm", "method"], ascending=[False, False, True]
    ).reset_index(drop=True)


def robustness_by_task(
    results: pd.DataFrame,
    tasks: Sequence[str],
    *,
    tolerance: float = 0.02,
    tune_by: str = "val_accuracy",
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """:func:`robustness_summary` on each of ``tasks`` that has results, with a ``task`` column:
    the robust range and the all-lr0 IQM of every method per task (C2 beyond the training task:
    a schedule robust on its training task may not be on another network)."""
    parts = [
        robustness_summary(
            results[results["task"] == task], tolerance=tolerance, tune_by=tune_by, **ci_kwargs
        ).assign(task=task)
        for task in tasks
        if (results["task"] == task).any()
    ]
    if not parts:
        raise ResultsMissingError(f"no results on any of the tasks {list(tasks)}")
    return pd.concat(parts, ignore_index=True)


def at_chance_shares(results: pd.DataFrame) -> pd.Series:
    """Per ``(method, task)``, the share of runs (every lr0 and seed) whose test accuracy ends at
    chance: at or below :data:`~ganno.env_settings.COLLAPSE_DEAD` of the way from chance to
    perfect (0.145 with 10 classes), the level ``env.collapse_check`` calls dead. A baseline's
    share counts the rates too small to learn; an agent's above it counts networks its rates
    killed or never let learn."""
    dead = at_chance(results["test_accuracy"])
    return results.assign(at_chance=dead).groupby(["method", "task"])["at_chance"].mean()


def at_chance(test_accuracy: Any) -> np.ndarray:
    """Per run, whether its test accuracy ends at chance (:func:`at_chance_shares`)."""
    return np.asarray(test_accuracy, float) <= share_of_the_way(NUM_CLASSES, COLLAPSE_DEAD)


#: The design rule on dead networks (config.yaml, the agents' design): per task, at most this
#: share of an agent's runs at chance pooled over its meta-training seeds ...
DEAD_SHARE_MAX = 0.01
#: ... and at most this many runs at chance for any one meta-training seed.
DEAD_RUNS_PER_SEED_MAX = 1


def dead_network_check(results: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per task of ``method``'s runs: the share at chance pooled over meta-training seeds
    (``share``), the most runs at chance of any one meta-training seed (``worst_seed_runs``, that
    seed in ``worst_seed``) and whether both stay within the design rule (``passes``:
    :data:`DEAD_SHARE_MAX`, :data:`DEAD_RUNS_PER_SEED_MAX`). The rule pools seeds because one
    seed's policy can kill networks the others train, and a practitioner ships one policy."""
    runs = results[results["method"] == method]
    rows = []
    for task, part in runs.groupby("task", sort=False):
        dead = part.assign(dead=at_chance(part["test_accuracy"]))
        per_seed = dead.groupby("meta_seed")["dead"].sum()
        share = float(dead["dead"].mean())
        worst = int(per_seed.max())
        rows.append(
            {
                "task": task,
                "share": share,
                "runs": len(part),
                "worst_seed_runs": worst,
                "worst_seed": int(per_seed.idxmax()),
                "passes": share <= DEAD_SHARE_MAX and worst <= DEAD_RUNS_PER_SEED_MAX,
            }
        )
    columns = ["task", "share", "runs", "worst_seed_runs", "worst_seed", "passes"]
    return pd.DataFrame(rows, columns=columns).set_index("task")


#: Chance accuracy, the zero of each task's normalised accuracy.
CHANCE = 1.0 / NUM_CLASSES
#: How pooled scores are made, for the README.
POOLING = (
    "pooled over tasks after normalising each task's scores: (score - chance) / (best tuned "
    f"baseline's IQM on that task - chance), chance = 1/{NUM_CLASSES}, so 0 is chance and 1 the "
    "best tuned baseline there, the same normaliser for every method (test loss: divided by the "
    "lowest tuned baseline's IQM on that task, so 1 is that baseline and lower is better); a raw "
    "IQM over pooled runs would trim away a task whose scores all sit far above the others'"
)


def normalisers(
    results: pd.DataFrame, tasks: Sequence[str], tune_by: str = "val_accuracy"
) -> pd.DataFrame:
    """Per task of ``tasks`` with baseline (non-GANNO) runs, indexed by task: the best tuned
    baseline by test-accuracy IQM (``method``, its IQM ``accuracy``) and the lowest by test-loss
    IQM (``loss_method``, ``loss``), the normalisers of :func:`normalise`. A task whose best
    baseline is at chance has none (nothing to scale by)."""
    base = results[~results["method"].map(plots.is_ganno) & results["task"].isin(tasks)]
    columns = ["task", "method", "accuracy", "loss_method", "loss"]
    if base.empty:
        return pd.DataFrame(columns=columns).set_index("task")
    tuned = tuned_results(base, tune_by)
    rows = []
    for task in tasks:
        here = tuned[tuned["task"] == task]
        if here.empty:
            continue
        acc = here.groupby("method")["test_accuracy"].apply(lambda x: float(stats.iqm(x)))
        loss = here.groupby("method")["test_loss"].apply(lambda x: float(stats.iqm(x)))
        if acc.max() <= CHANCE or loss.min() <= 0:
            continue
        rows.append([task, acc.idxmax(), acc.max(), loss.idxmin(), loss.min()])
    return pd.DataFrame(rows, columns=columns).set_index("task")


def normalise(scores: Any, task: str, norms: pd.DataFrame, metric: str) -> np.ndarray:
    """``scores`` of ``metric`` on ``task``, normalised by the task's row of ``norms``
    (:func:`normalisers`): test accuracy to (score - chance) / (best baseline - chance), test
    loss to score / lowest baseline."""
    x = np.asarray(scores, float)
    if metric == "test_accuracy":
        return (x - CHANCE) / (norms.loc[task, "accuracy"] - CHANCE)
    if metric == "test_loss":
        return x / norms.loc[task, "loss"]
    raise ValueError(f"no normaliser for {metric!r}")


def generalisation_summary(
    results: pd.DataFrame,
    tasks: Sequence[str],
    metric: str = "test_accuracy",
    tune_by: str = "val_accuracy",
    norms: pd.DataFrame | None = None,
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """Tuned ``metric`` IQM [CI] per method and task (C3), plus two pooled rows per method
    (stratified over tasks): ``all tasks`` and ``held-out tasks`` (all but ``train``; only when
    there are some, and only for methods run on every such task). Sorted by method, then task.
    Beside it: the tuned test loss (``loss_iqm``, ``loss_low``, ``loss_high``), the IQM over every
    lr0 and run (``all_iqm``, ``all_low``, ``all_high``) and the share of runs at chance
    (``at_chance``; pooled rows: the mean over their tasks).

    Per-task rows are raw. Pooled rows are normalised per task first (``normalised``;
    :data:`POOLING`, :func:`normalise`) by ``norms`` (:func:`normalisers` of ``results`` unless
    given, e.g. the claims' baselines for agents compared without them); a scope with a task
    without a normaliser is pooled raw (``normalised`` False). Each task's normalisers are its
    rows' ``normaliser`` and ``loss_normaliser`` (the baselines: ``*_method``).
    """
    tuned = tuned_results(results, tune_by)
    if norms is None:
        norms = normalisers(results, tasks, tune_by)
    shares = at_chance_shares(results)
    held_out = [t for t in tasks if t != TRAIN_TASK]
    scopes = [(ALL_TASKS, list(tasks))] + ([(HELD_OUT, held_out)] if held_out else [])
    rows = []
    for method, runs in tuned.groupby("method", sort=True):
        by_task = {t: g for t, g in runs.groupby("task", sort=False)}
        every = results[results["method"] == method]
        all_lr0 = {t: g for t, g in every.groupby("task", sort=False)}
        for task in tasks:
            if task in by_task:
                rows.append(
                    {
                        "method": method,
                        **_task_row(by_task[task], all_lr0[task], task, metric, ci_kwargs),
                        "at_chance": float(shares[(method, task)]),
                        **_task_normalisers(norms, task),
                    }
                )
        for scope, members in scopes:
            if set(members) <= set(by_task):
                normed = set(members) <= set(norms.index)
                scale = norms if normed else None
                rows.append(
                    {
                        "method": method,
                        **_scope_row(by_task, all_lr0, scope, members, metric, scale, ci_kwargs),
                        "at_chance": float(np.mean([shares[(method, t)] for t in members])),
                        **_scope_normalisers(normed),
                    }
                )
    out = pd.DataFrame(rows).rename(columns={"_iqm": "iqm", "_low": "low", "_high": "high"})
    # lr0 and the normalisers are per task; the pooled rows have none (kept as the sentinels 0 and
    # "-" so the CSV has no NaN).
    columns = ["lr0", "normaliser", "loss_normaliser"]
    out[columns] = out[columns].fillna(0.0)
    return out


def _task_row(
    tuned: pd.DataFrame,
    every: pd.DataFrame,
    task: str,
    metric: str,
    ci_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """A method's row of :func:`generalisation_summary` on one task, raw: tuned ``metric`` and
    test loss, ``metric`` over every lr0 and run (``every``), each IQM [CI]."""
    return {
        "task": task,
        **_estimate_columns("", iqm_ci({task: tuned[metric]}, **ci_kwargs)),
        "lr0": float(tuned["lr0"].iloc[0]),
        "runs": len(tuned),
        "tasks": 1,
        **_estimate_columns("loss", iqm_ci({task: tuned["test_loss"]}, **ci_kwargs)),
        **_estimate_columns("all", iqm_ci({task: every[metric]}, **ci_kwargs)),
    }


def _task_normalisers(norms: pd.DataFrame, task: str) -> dict[str, Any]:
    """A task's row's normaliser columns (the pooled rows' scale; NaN and "-" without one)."""
    here = task in norms.index
    return {
        "normalised": False,
        "normaliser": norms.loc[task, "accuracy"] if here else np.nan,
        "normaliser_method": norms.loc[task, "method"] if here else "-",
        "loss_normaliser": norms.loc[task, "loss"] if here else np.nan,
        "loss_normaliser_method": norms.loc[task, "loss_method"] if here else "-",
    }


def _scope_row(
    by_task: Mapping[str, pd.DataFrame],
    all_lr0: Mapping[str, pd.DataFrame],
    scope: str,
    members: Sequence[str],
    metric: str,
    scale: pd.DataFrame | None,
    ci_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """A method's pooled row of :func:`generalisation_summary` over the tasks ``members``,
    normalised per task by ``scale`` (:func:`normalisers`; None: raw)."""
    return {
        "task": scope,
        **_estimate_columns("", _pooled_iqm(by_task, members, metric, scale, **ci_kwargs)),
        "lr0": np.nan,
        "runs": int(sum(len(by_task[t]) for t in members)),
        "tasks": len(members),
        **_estimate_columns("loss", _pooled_iqm(by_task, members, "test_loss", scale, **ci_kwargs)),
        **_estimate_columns("all", _pooled_iqm(all_lr0, members, metric, scale, **ci_kwargs)),
    }


def _scope_normalisers(normed: bool) -> dict[str, Any]:
    """A pooled row's normaliser columns: whether it is normalised, and no normaliser of its
    own."""
    return {
        "normalised": normed,
        "normaliser": np.nan,
        "normaliser_method": "-",
        "loss_normaliser": np.nan,
        "loss_normaliser_method": "-",
    }


def _pooled_iqm(
    frames: Mapping[str, pd.DataFrame],
    members: Sequence[str],
    column: str,
    norms: pd.DataFrame | None,
    **ci_kwargs: Any,
) -> stats.Estimate:
    """IQM [CI] of ``column`` over the runs of ``members`` (stratified by task), each task's runs
    normalised by ``norms`` first (raw when None)."""
    scores = {
        t: frames[t][column] if norms is None else normalise(frames[t][column], t, norms, column)
        for t in members
    }
    return iqm_ci(scores, **ci_kwargs)


def task_standings(
    summary: pd.DataFrame, method: str, tasks: Sequence[str]
) -> dict[str, list[str]]:
    """Of ``tasks`` (rows of :func:`generalisation_summary`), those where ``method``'s tuned IQM
    stands ``above``, ``level`` with or ``below`` the best baseline's there (the baseline with the
    highest tuned IQM; :func:`ganno.stats.compare` of their CIs); tasks without runs of the method
    or of a baseline are in none."""
    mine = summary[summary["method"] == method].set_index("task")
    base = summary[~summary["method"].map(plots.is_ganno)]
    out: dict[str, list[str]] = {s: [] for s in stats.STANDINGS}
    for task in tasks:
        others = base[base["task"] == task]
        if task not in mine.index or others.empty:
            continue
        best = others.loc[others["iqm"].idxmax()]
        out[stats.compare(estimate(mine.loc[task]), estimate(best))].append(task)
    return out


def estimate(row: pd.Series, prefix: str = "") -> stats.Estimate:
    """The :class:`~ganno.stats.Estimate` of a table row's ``<prefix>iqm``, ``<prefix>low`` and
    ``<prefix>high`` (``prefix`` e.g. ``"tuned_"``, ``"loss_"``)."""
    return stats.Estimate(
        float(row[f"{prefix}iqm"]), float(row[f"{prefix}low"]), float(row[f"{prefix}high"])
    )


def improvement_summary(
    results: pd.DataFrame,
    tasks: Sequence[str],
    metrics: Sequence[str] = tuple(METRICS),
    tune_by: str = "val_accuracy",
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """P(GANNO method better than baseline) on each tuned metric of ``metrics`` (higher test
    accuracy, lower test loss) with its CI, stratified by task, for every GANNO method and
    baseline, over ``all tasks`` and (when there are some) the ``held-out tasks``
    (:func:`ganno.stats.improvement_table`); the rows of one metric after another."""
    tuned = tuned_results(results, tune_by)
    held_out = [t for t in tasks if t != TRAIN_TASK]
    scopes = [(ALL_TASKS, list(tasks))] + ([(HELD_OUT, held_out)] if held_out else [])
    ganno = [m for m in plots.method_order(tuned["method"].unique()) if plots.is_ganno(m)]
    frames = []
    for metric in metrics:
        for scope, members in scopes:
            part = tuned[tuned["task"].isin(members)]
            for method in ganno:
                pair = part[(part["method"] == method) | ~part["method"].map(plots.is_ganno)]
                table = stats.improvement_table(
                    pair, method, metric, higher_is_better=METRICS[metric], **ci_kwargs
                )
                if not table.empty:
                    frames.append(table.assign(scope=scope))
    if not frames:
        return pd.DataFrame(
            columns=[
                "scope",
                "method",
                "other",
                "metric",
                "probability_of_improvement",
                "low",
                "high",
                "tasks",
            ]
        )
    out = pd.concat(frames, ignore_index=True)
    return out[["scope", *[c for c in out.columns if c != "scope"]]]


def schedule_summary(schedules: pd.DataFrame) -> pd.DataFrame:
    """Per GANNO method, lr0 and layer, over the runs that finished their budget (a diverged run's
    table stops early): the median, min and max of the last learning rate the agents set and the
    median of the largest (C1). ``runs`` counts all runs, ``completed`` those used; an lr0 where no
    run finished has no row."""
    columns = ["method", "lr0", "layer", "final_median", "final_low", "final_high",
               "peak_median", "completed", "runs"]  # fmt: skip
    if schedules.empty:
        return pd.DataFrame(columns=columns)
    keys = ["method", "meta_seed", "lr0", "seed", "layer"]
    per_run = (
        schedules.sort_values([*keys, "step"])
        .groupby(keys, sort=True)
        .agg(final=("learning_rate", "last"), peak=("learning_rate", "max"), end=("step", "max"))
        .reset_index()
    )
    last_step = per_run.groupby("method")["end"].transform("max")
    per_run["completed"] = per_run["end"] == last_step
    runs = per_run.groupby(["method", "lr0", "layer"], sort=True).size().rename("runs")
    done = per_run[per_run["completed"]]
    out = (
        done.groupby(["method", "lr0", "layer"], sort=True)
        .agg(
            final_median=("final", "median"),
            final_low=("final", "min"),
            final_high=("final", "max"),
            peak_median=("peak", "median"),
            completed=("final", "size"),
        )
        .join(runs)
        .reset_index()
    )
    return out[columns]


# --------------------------------------------------------------------------------------------
# Tables (display) and writing
# --------------------------------------------------------------------------------------------


def fmt(x: float) -> str:
    """A score or probability as the tables and README print it."""
    return f"{x:.3f}"


def fmt_ci(value: float, low: float, high: float) -> str:
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def fmt_lr(x: float) -> str:
    """A learning rate as the tables and README print it."""
    return f"{x:.3g}"


def fmt_decades(x: float) -> str:
    return f"{x:.1f}"


def fmt_share(x: float) -> str:
    """A share of runs in percent ("-" where missing)."""
    return "-" if not np.isfinite(x) else f"{100 * x:.0f}%"


def fmt_chance(x: float) -> str:
    """A share of runs at chance in percent, to a tenth (the design rule's limit is 1%)."""
    return "-" if not np.isfinite(x) else f"{100 * x:.1f}%"


def fmt_range(decades: float, at_edge: bool) -> str:
    """A robust range in decades, marked where it reaches the grid's edge (may be wider)."""
    return f"{fmt_decades(decades)}{'+' if at_edge else ''}"


#: The display's note on :func:`fmt_range`'s mark.
EDGE_NOTE = "+: the range reaches the edge of the lr0 grid, so it may be wider"


def robustness_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": table["method"],
            "robust range (decades)": [
                fmt_range(d, e)
                for d, e in zip(table["robust_decades"], table["robust_at_edge"], strict=True)
            ],
            "range of lr0": [
                f"{fmt_lr(a)} – {fmt_lr(b)}"
                for a, b in zip(table["robust_low"], table["robust_high"], strict=True)
            ],
            "test acc., all lr0 (IQM [CI])": [
                fmt_ci(*r)
                for r in table[["all_iqm", "all_low", "all_high"]].itertuples(index=False)
            ],
            "tuned lr0": table["tuned_lr0"].map(fmt_lr),
            "tuned test acc. (IQM [CI])": [
                fmt_ci(*r)
                for r in table[["tuned_iqm", "tuned_low", "tuned_high"]].itertuples(index=False)
            ],
            "test loss, all lr0 (IQM [CI])": _ci_cells(table, "all_loss"),
            "tuned test loss (IQM [CI])": _ci_cells(table, "tuned_loss"),
            "diverged": table["diverged_fraction"].map(fmt),
            "runs at chance": table["at_chance"].map(fmt_chance),
        }
    )


def _ci_cells(table: pd.DataFrame, prefix: str) -> list[str]:
    """``<prefix>_iqm [<prefix>_low, <prefix>_high]`` per row ("-" where the IQM is missing)."""
    cols = [f"{prefix}_iqm", f"{prefix}_low", f"{prefix}_high"]
    return [fmt_ci(*r) if np.isfinite(r[0]) else "-" for r in table[cols].itertuples(index=False)]


def generalisation_display(table: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Per method, a column per task: tuned test accuracy IQM [CI] / tuned test loss IQM / share
    of runs at chance; the pooled columns say whether they are normalised (:data:`POOLING`)."""
    columns = ["iqm", "low", "high", "loss_iqm", "at_chance"]
    cells = table.assign(
        cell=[
            f"{fmt_ci(i, lo, hi)} / {fmt(loss)} / {fmt_chance(dead)}"
            for i, lo, hi, loss, dead in table[columns].itertuples(index=False)
        ]
    )
    wide = cells.pivot(index="method", columns="task", values="cell")
    shown = [c for c in [*tasks, HELD_OUT, ALL_TASKS] if c in wide.columns]
    rank = table[table["task"] == ALL_TASKS].set_index("method")["iqm"]
    order = sorted(wide.index, key=lambda m: (-rank.get(m, -np.inf), m))
    normed = set(table.loc[table["normalised"].astype(bool), "task"])
    names = {c: f"{c} (normalised)" for c in (HELD_OUT, ALL_TASKS) if c in normed}
    out = wide.loc[order, shown].fillna("–").reset_index().rename_axis(columns=None)
    return out.rename(columns=names)


def robustness_by_task_display(table: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Per method, a column per task: robust range (decades, :func:`fmt_range`) / all-lr0 test
    accuracy IQM / share of runs at chance; methods by their narrowest range over the tasks they
    ran on (widest first)."""
    columns = ["robust_decades", "robust_at_edge", "all_iqm", "at_chance"]
    cells = table.assign(
        cell=[
            f"{fmt_range(d, e)} / {fmt(a)} / {fmt_chance(c)}"
            for d, e, a, c in table[columns].itertuples(index=False)
        ]
    )
    wide = cells.pivot(index="method", columns="task", values="cell")
    columns = [t for t in tasks if t in wide.columns]
    narrowest = table.groupby("method")["robust_decades"].min()
    order = sorted(wide.index, key=lambda m: (-narrowest[m], m))
    return wide.loc[order, columns].fillna("–").reset_index().rename_axis(columns=None)


def improvement_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tasks": table["scope"],
            "metric": table["metric"],
            "GANNO method": table["method"],
            "baseline": table["other"],
            "P(GANNO better) [CI]": [
                fmt_ci(*r)
                for r in table[["probability_of_improvement", "low", "high"]].itertuples(
                    index=False
                )
            ],
            "n tasks": table["tasks"].astype(int),
        }
    )


def schedule_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": table["method"],
            "lr0": table["lr0"].map(fmt_lr),
            "layer": table["layer"].astype(int),
            "final rate (median)": table["final_median"].map(fmt_lr),
            "final rate (min – max)": [
                f"{fmt_lr(a)} – {fmt_lr(b)}"
                for a, b in zip(table["final_low"], table["final_high"], strict=True)
            ],
            "peak rate (median)": table["peak_median"].map(fmt_lr),
            "finished / runs": [
                f"{a} / {b}" for a, b in zip(table["completed"], table["runs"], strict=True)
            ],
        }
    )


class TablePaths(NamedTuple):
    """The files of one table."""

    csv: Path
    md: Path
    tex: Path


def write_table(
    numbers: pd.DataFrame, display: pd.DataFrame, stem: str | Path, caption: str
) -> TablePaths:
    """``numbers`` as CSV (full precision); ``display`` (formatted strings) as Markdown and as a
    LaTeX ``table`` with ``caption``."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = TablePaths(*(stem.parent / f"{stem.name}.{ext}" for ext in TABLE_FORMATS))
    write_csv(numbers, paths.csv)
    atomic_write(paths.md, display.to_markdown(index=False) + "\n")
    latex = display.to_latex(
        index=False, escape=True, caption=caption, label=f"tab:{stem.name}", position="t"
    )
    atomic_write(paths.tex, latex)
    return paths


def figure_lines(out_dir: str | Path, f: plots.FigurePaths, caption: str) -> list[str]:
    """A figure inline in ``out_dir/README.md``, with links to its PDF and data."""
    rel = lambda p: Path(p).relative_to(out_dir).as_posix()  # noqa: E731
    return [
        f"![{caption}]({rel(f.png)})",
        "",
        f"*{caption}* ([PDF]({rel(f.pdf)}), [data]({rel(f.csv)}))",
        "",
    ]
