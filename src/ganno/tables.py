"""The numbers of the report: summaries of the results tables (IQM with stratified-bootstrap CIs,
robust ranges, probabilities of improvement, schedules), their display form, and writing a table
as CSV, Markdown and LaTeX. Every section of the report (the paper's claims in
:mod:`ganno.report`, the questions and the PyTorch deployment in :mod:`ganno.extensions_report`)
computes its tables with these functions.

Tuned numbers come from :func:`ganno.baselines.tune` per (method, task), with the config's
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

from ganno import baselines, plots, stats
from ganno.data import NUM_CLASSES
from ganno.env_settings import COLLAPSE_DEAD, share_of_the_way
from ganno.errors import ResultsMissingError
from ganno.io import atomic_write, write_csv
from ganno.layout import TABLE_FORMATS, TRAIN_TASK, skipped_marker

ALL_TASKS = "all tasks"
HELD_OUT = "held-out tasks"
#: The two final test metrics of every table: (column, higher is better).
METRICS = {"test_accuracy": True, "test_loss": False}


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
    """The runs at each (method, task)'s tuned lr0 (:func:`ganno.baselines.tune` with
    ``metric=tune_by``), the same rule for every method."""
    return baselines.tune(results, by=("method", "task"), metric=tune_by)


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
    (:func:`ganno.stats.robustness_range`), the IQM of ``metric`` over all lr0 x runs and at the
    tuned lr0 with their CIs, and the fraction of diverged runs; sorted by range, then tuned IQM.
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
    dead = share_of_the_way(NUM_CLASSES, COLLAPSE_DEAD)
    at_chance = results["test_accuracy"].to_numpy(float) <= dead
    return results.assign(at_chance=at_chance).groupby(["method", "task"])["at_chance"].mean()


def generalisation_summary(
    results: pd.DataFrame,
    tasks: Sequence[str],
    metric: str = "test_accuracy",
    tune_by: str = "val_accuracy",
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """Tuned ``metric`` IQM [CI] per method and task (C3), plus two pooled rows per method
    (stratified over tasks): ``all tasks`` and ``held-out tasks`` (all but ``train``; only when
    there are some, and only for methods run on every such task). Sorted by method, then task.
    The tuned test loss beside it: ``loss_iqm``, ``loss_low``, ``loss_high``.
    """
    tuned = tuned_results(results, tune_by)
    held_out = [t for t in tasks if t != TRAIN_TASK]
    scopes = [(ALL_TASKS, list(tasks))] + ([(HELD_OUT, held_out)] if held_out else [])
    rows = []
    for method, runs in tuned.groupby("method", sort=True):
        by_task = {t: g for t, g in runs.groupby("task", sort=False)}
        for task in tasks:
            if task not in by_task:
                continue
            est = iqm_ci({task: by_task[task][metric]}, **ci_kwargs)
            rows.append(
                {
                    "method": method,
                    "task": task,
                    "iqm": est.value,
                    "low": est.low,
                    "high": est.high,
                    "lr0": float(by_task[task]["lr0"].iloc[0]),
                    "runs": len(by_task[task]),
                    "tasks": 1,
                    **_estimate_columns(
                        "loss", iqm_ci({task: by_task[task]["test_loss"]}, **ci_kwargs)
                    ),
                }
            )
        for scope, members in scopes:
            if not set(members) <= set(by_task):
                continue
            est = iqm_ci({t: by_task[t][metric] for t in members}, **ci_kwargs)
            rows.append(
                {
                    "method": method,
                    "task": scope,
                    "iqm": est.value,
                    "low": est.low,
                    "high": est.high,
                    "lr0": np.nan,
                    "runs": int(sum(len(by_task[t]) for t in members)),
                    "tasks": len(members),
                    **_estimate_columns(
                        "loss", iqm_ci({t: by_task[t]["test_loss"] for t in members}, **ci_kwargs)
                    ),
                }
            )
    out = pd.DataFrame(rows)
    # lr0 is per task; the pooled rows have none (kept as the sentinel 0 so the CSV has no NaN).
    out["lr0"] = out["lr0"].fillna(0.0)
    return out


def task_wins(
    summary: pd.DataFrame, method: str, tasks: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Of ``tasks`` (rows of :func:`generalisation_summary`), those where ``method``'s tuned IQM
    is above every baseline's, and those where it is below the best but with overlapping CIs;
    tasks without runs of the method or of a baseline are neither."""
    mine = summary[summary["method"] == method].set_index("task")
    base = summary[~summary["method"].map(plots.is_ganno)]
    wins, overlaps = [], []
    for task in tasks:
        if task not in mine.index:
            continue
        others = base[base["task"] == task].sort_values("iqm", ascending=False)
        if others.empty:
            continue
        best = others.iloc[0]
        if mine.loc[task, "iqm"] > best["iqm"]:
            wins.append(task)
        elif mine.loc[task, "high"] >= best["low"]:
            overlaps.append(task)
    return wins, overlaps


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


def robustness_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": table["method"],
            "robust range (decades)": table["robust_decades"].map(fmt_decades),
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
        }
    )


def _ci_cells(table: pd.DataFrame, prefix: str) -> list[str]:
    """``<prefix>_iqm [<prefix>_low, <prefix>_high]`` per row ("-" where the IQM is missing)."""
    cols = [f"{prefix}_iqm", f"{prefix}_low", f"{prefix}_high"]
    return [fmt_ci(*r) if np.isfinite(r[0]) else "-" for r in table[cols].itertuples(index=False)]


def generalisation_display(table: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Per method, a column per task: tuned test accuracy IQM [CI] / tuned test loss IQM."""
    cells = table.assign(
        cell=[
            f"{fmt_ci(i, lo, hi)} / {fmt(loss)}"
            for i, lo, hi, loss in table[["iqm", "low", "high", "loss_iqm"]].itertuples(index=False)
        ]
    )
    wide = cells.pivot(index="method", columns="task", values="cell")
    columns = [c for c in [*tasks, HELD_OUT, ALL_TASKS] if c in wide.columns]
    rank = table[table["task"] == ALL_TASKS].set_index("method")["iqm"]
    order = sorted(wide.index, key=lambda m: (-rank.get(m, -np.inf), m))
    return wide.loc[order, columns].fillna("–").reset_index().rename_axis(columns=None)


def robustness_by_task_display(table: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Per method, a column per task: robust range (decades) / all-lr0 test accuracy IQM; methods
    by their narrowest range over the tasks they ran on (widest first)."""
    cells = table.assign(
        cell=[
            f"{fmt_decades(d)} / {fmt(a)}"
            for d, a in zip(table["robust_decades"], table["all_iqm"], strict=True)
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
