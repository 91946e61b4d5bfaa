"""The paper's tables, figures and summary, built from everything the pipeline wrote.

:func:`build_report` reads the results laid out as below (paths relative to the results folder;
the patterns are module constants so the Snakemake rules import the same names)::

    sweep/<task>/baselines.csv                       every baseline, lr0 grid x evaluation seeds
    sweep/<task>/<algo>_seed_<s>.csv                 the policy of meta-training seed s, same grid
    sweep/train/<algo>_seed_<s>.schedules.csv        its per-layer learning rates on "train"
    meta_train/<algo>/seed_<s>/learning_curve.jsonl  its meta-training curve

A task that cannot run here leaves an empty CSV and ``<csv>.skipped`` holding the reason. It writes
``figures/`` (PNG, PDF and the CSV drawn), ``tables/`` (CSV with full-precision numbers, Markdown
and LaTeX) and ``README.md`` into the output folder.

Tuned numbers come from :func:`ganno.baselines.tune` per (method, task): the lr0 with the lowest
seed-mean validation loss, for GANNO methods as for baselines (runs of all policies of a method are
pooled, so a method gets one lr0 per task). Aggregates are interquartile means with 95% stratified-
bootstrap confidence intervals (:mod:`ganno.stats`), with the config's ``baselines.confidence``,
``baselines.bootstrap_resamples`` and ``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

from ganno import baselines, plots, stats
from ganno.config import TRAIN_TASK, task_names
from ganno.errors import ResultsError, ResultsMissingError
from ganno.experiments import read_results
from ganno.io import atomic_write, write_csv
from ganno.meta_train import read_curve

# --------------------------------------------------------------------------------------------
# Layout of the results (relative to the results folder) and of the report
# --------------------------------------------------------------------------------------------

BASELINES_CSV = "sweep/{task}/baselines.csv"
POLICY_CSV = "sweep/{task}/{algo}_seed_{seed}.csv"
SCHEDULES_CSV = "sweep/{task}/{algo}_seed_{seed}.schedules.csv"  # written for task "train"
LEARNING_CURVE = "meta_train/{algo}/seed_{seed}/learning_curve.jsonl"
SKIPPED_SUFFIX = ".skipped"  # beside an empty CSV: why the task could not run

FIGURES = ("meta_training", "schedules", "robustness", "generalisation", "comparison")
TABLES = ("robustness", "generalisation", "improvement", "schedules")
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("png", "pdf", "csv")
ALL_TASKS = "all tasks"
HELD_OUT = "held-out tasks"


def policy_method(algo: str) -> str:
    """The method name of an algorithm's policies in the results tables (``ganno_<algo>``)."""
    return f"{plots.GANNO_PREFIX}{algo}"


def skipped_marker(csv: str | Path) -> Path:
    """The file that says why ``csv`` is empty."""
    return Path(f"{csv}{SKIPPED_SUFFIX}")


class ResultPaths(NamedTuple):
    """Every file :func:`build_report` reads, by role."""

    baselines: dict[str, Path]  # task -> CSV
    policies: dict[tuple[str, str, int], Path]  # (task, algo, meta seed) -> CSV
    schedules: dict[tuple[str, int], Path]  # (algo, meta seed) -> CSV (task "train")
    curves: dict[tuple[str, int], Path]  # (algo, meta seed) -> JSONL


def result_paths(config: Mapping[str, Any], results_dir: str | Path = "results") -> ResultPaths:
    """The files the pipeline writes for ``config`` under ``results_dir``."""
    root = Path(results_dir)
    algos, seeds = config["meta_train"]["algorithms"], config["meta_train"]["seeds"]
    tasks = task_names(config)
    return ResultPaths(
        baselines={t: root / BASELINES_CSV.format(task=t) for t in tasks},
        policies={
            (t, a, s): root / POLICY_CSV.format(task=t, algo=a, seed=s)
            for t in tasks
            for a in algos
            for s in seeds
        },
        schedules={
            (a, s): root / SCHEDULES_CSV.format(task=TRAIN_TASK, algo=a, seed=s)
            for a in algos
            for s in seeds
        },
        curves={(a, s): root / LEARNING_CURVE.format(algo=a, seed=s) for a in algos for s in seeds},
    )


def report_inputs(config: Mapping[str, Any], results_dir: str | Path = "results") -> list[str]:
    """Every file :func:`build_report` reads (a Snakemake rule's ``input``), the extensions'
    (:mod:`ganno.extensions_report`) included."""
    from ganno.extensions_report import extension_inputs

    paths = result_paths(config, results_dir)
    return [
        str(p)
        for group in (paths.baselines, paths.policies, paths.schedules, paths.curves)
        for p in group.values()
    ] + extension_inputs(config, results_dir)


def figure_names(config: Mapping[str, Any]) -> list[str]:
    """The figures :func:`build_report` writes for ``config``: :data:`FIGURES` and the
    extensions' (Q1, Q2, PyTorch deployment) when configured."""
    from ganno.extensions_report import figure_names as extension_figures

    return [*FIGURES, *extension_figures(config)]


def table_names(config: Mapping[str, Any]) -> list[str]:
    """The tables :func:`build_report` writes for ``config`` (see :func:`figure_names`)."""
    from ganno.extensions_report import table_names as extension_tables

    return [*TABLES, *extension_tables(config)]


def report_outputs(
    out_dir: str | Path = "paper", config: Mapping[str, Any] | None = None
) -> list[str]:
    """Every file :func:`build_report` writes (a Snakemake rule's ``output``); without a config,
    those of the paper's claims only."""
    out = Path(out_dir)
    figures = FIGURES if config is None else figure_names(config)
    tables = TABLES if config is None else table_names(config)
    return (
        [str(out / "README.md"), str(out / "config.yaml")]
        + [str(out / "figures" / f"{f}.{e}") for f in figures for e in FIGURE_FORMATS]
        + [str(out / "tables" / f"{t}.{e}") for t in tables for e in TABLE_FORMATS]
    )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class ReportData(NamedTuple):
    """What the pipeline wrote, read."""

    results: pd.DataFrame  # the results schema, every method and task that ran
    schedules: pd.DataFrame  # the policies' per-layer rates on "train"
    curves: pd.DataFrame  # learning-curve rows with ``algo``
    tasks: list[str]  # tasks with results, in config order
    skipped: dict[str, str]  # file (relative to the results folder) -> why it has no rows


def _read_csv_or_skip(
    path: Path, root: Path, skipped: dict[str, str], reader: Any
) -> pd.DataFrame | None:
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


def load_results(results_dir: str | Path, config: Mapping[str, Any]) -> ReportData:
    """Read every file of :func:`result_paths`; empty CSVs (skipped tasks) are noted, not read."""
    root = Path(results_dir)
    paths = result_paths(config, root)
    skipped: dict[str, str] = {}
    frames = []
    for path in [*paths.baselines.values(), *paths.policies.values()]:
        df = _read_csv_or_skip(path, root, skipped, lambda p: read_results([p]))
        if df is not None:
            frames.append(df)
    results = read_results([]) if not frames else pd.concat(frames, ignore_index=True)
    results["diverged"] = results["diverged"].astype(bool)

    schedule_frames = []
    for (_, seed), path in paths.schedules.items():
        df = _read_csv_or_skip(path, root, skipped, pd.read_csv)
        if df is not None:
            schedule_frames.append(df.assign(meta_seed=df.get("meta_seed", seed)))
    schedules = (
        pd.concat(schedule_frames, ignore_index=True)
        if schedule_frames
        else pd.DataFrame(
            columns=["method", "task", "lr0", "seed", "step", "layer", "learning_rate", "meta_seed"]
        )
    )

    curve_frames = []
    for (algo, seed), path in paths.curves.items():
        rows = read_curve(path)
        if not rows:
            skipped[str(path.relative_to(root))] = "missing or empty learning curve"
            continue
        curve_frames.append(pd.DataFrame(rows).assign(algo=algo, seed=seed))
    curves = (
        pd.concat(curve_frames, ignore_index=True)
        if curve_frames
        else pd.DataFrame(columns=["algo", "seed", "env_steps", *plots.CURVE_METRICS])
    )
    present = set(results["task"])
    tasks = [t for t in task_names(config) if t in present]
    return ReportData(results, schedules, curves, tasks, skipped)


def skipped_tasks(data: ReportData, config: Mapping[str, Any]) -> dict[str, str]:
    """Tasks of the config without any results -> the reason of their first skipped file."""
    out = {}
    for task in task_names(config):
        if task in data.tasks:
            continue
        reasons = [r for f, r in data.skipped.items() if Path(f).parts[1:2] == (task,)]
        out[task] = reasons[0] if reasons else "no results"
    return out


# --------------------------------------------------------------------------------------------
# Tables (numbers)
# --------------------------------------------------------------------------------------------


def _ci_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = config["baselines"]
    return {
        "confidence": float(cfg["confidence"]),
        "n_resamples": int(cfg["bootstrap_resamples"]),
        "seed": int(config.get("seed", 0)),
    }


def _iqm_ci(scores: Mapping[str, Any], **ci_kwargs: Any) -> stats.Estimate:
    """:func:`ganno.stats.iqm_ci`, tolerating a task with a single run (no interval then)."""
    arrays = {t: np.asarray(v, float) for t, v in scores.items()}
    if min(a.size for a in arrays.values()) < 2:
        value = float(stats.iqm(np.concatenate(list(arrays.values()))))
        return stats.Estimate(value, value, value)
    return stats.iqm_ci(arrays, **ci_kwargs)


def tuned_results(results: pd.DataFrame) -> pd.DataFrame:
    """The runs at each (method, task)'s tuned lr0 (:func:`ganno.baselines.tune`)."""
    return baselines.tune(results, by=("method", "task"))


def robustness_summary(
    results: pd.DataFrame,
    *,
    tolerance: float = 0.02,
    metric: str = "test_accuracy",
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """Per method on one task (C2): the robustness range of the seed-mean ``metric`` curve
    (:func:`ganno.stats.robustness_range`), the IQM of ``metric`` over all lr0 x runs and at the
    tuned lr0 with their CIs, and the fraction of diverged runs; sorted by range, then tuned IQM.
    """
    if results["task"].nunique() != 1:
        raise ValueError(f"one task expected, got {sorted(results['task'].unique())}")
    ranges = stats.robustness_table(results, metric, tolerance=tolerance, by=("method",))
    tuned = tuned_results(results)
    rows = []
    for _, r in ranges.iterrows():
        method = r["method"]
        runs = results[results["method"] == method]
        at = tuned[tuned["method"] == method]
        every = _iqm_ci({"task": runs[metric]}, **ci_kwargs)
        best = _iqm_ci({"task": at[metric]}, **ci_kwargs)
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
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(
        ["robust_decades", "tuned_iqm", "method"], ascending=[False, False, True]
    ).reset_index(drop=True)


def generalisation_summary(
    results: pd.DataFrame, tasks: Sequence[str], metric: str = "test_accuracy", **ci_kwargs: Any
) -> pd.DataFrame:
    """Tuned ``metric`` IQM [CI] per method and task (C3), plus two pooled rows per method
    (stratified over tasks): ``all tasks`` and ``held-out tasks`` (all but ``train``; only when
    there are some, and only for methods run on every such task). Sorted by method, then task.
    """
    tuned = tuned_results(results)
    held_out = [t for t in tasks if t != TRAIN_TASK]
    scopes = [(ALL_TASKS, list(tasks))] + ([(HELD_OUT, held_out)] if held_out else [])
    rows = []
    for method, runs in tuned.groupby("method", sort=True):
        by_task = {t: g for t, g in runs.groupby("task", sort=False)}
        for task in tasks:
            if task not in by_task:
                continue
            est = _iqm_ci({task: by_task[task][metric]}, **ci_kwargs)
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
                }
            )
        for scope, members in scopes:
            if not set(members) <= set(by_task):
                continue
            est = _iqm_ci({t: by_task[t][metric] for t in members}, **ci_kwargs)
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
                }
            )
    out = pd.DataFrame(rows)
    # lr0 is per task; the pooled rows have none (kept as the sentinel 0 so the CSV has no NaN).
    out["lr0"] = out["lr0"].fillna(0.0)
    return out


def improvement_summary(
    results: pd.DataFrame, tasks: Sequence[str], metric: str = "test_accuracy", **ci_kwargs: Any
) -> pd.DataFrame:
    """P(GANNO method > baseline) on tuned ``metric`` with its CI, stratified by task, for every
    GANNO method and baseline, over ``all tasks`` and (when there are some) the ``held-out
    tasks`` (:func:`ganno.stats.improvement_table`)."""
    tuned = tuned_results(results)
    held_out = [t for t in tasks if t != TRAIN_TASK]
    scopes = [(ALL_TASKS, list(tasks))] + ([(HELD_OUT, held_out)] if held_out else [])
    ganno = [m for m in plots.method_order(tuned["method"].unique()) if plots.is_ganno(m)]
    frames = []
    for scope, members in scopes:
        part = tuned[tuned["task"].isin(members)]
        for method in ganno:
            pair = part[(part["method"] == method) | ~part["method"].map(plots.is_ganno)]
            table = stats.improvement_table(pair, method, metric, **ci_kwargs)
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
            "diverged": table["diverged_fraction"].map(fmt),
        }
    )


def generalisation_display(table: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    cells = table.assign(
        cell=[fmt_ci(*r) for r in table[["iqm", "low", "high"]].itertuples(index=False)]
    )
    wide = cells.pivot(index="method", columns="task", values="cell")
    columns = [c for c in [*tasks, HELD_OUT, ALL_TASKS] if c in wide.columns]
    rank = table[table["task"] == ALL_TASKS].set_index("method")["iqm"]
    order = sorted(wide.index, key=lambda m: (-rank.get(m, -np.inf), m))
    return wide.loc[order, columns].fillna("–").reset_index().rename_axis(columns=None)


def improvement_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tasks": table["scope"],
            "GANNO method": table["method"],
            "baseline": table["other"],
            "P(GANNO > baseline) [CI]": [
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


# --------------------------------------------------------------------------------------------
# The README
# --------------------------------------------------------------------------------------------


class Tables(NamedTuple):
    """The numbers of every table (the CSVs' contents)."""

    robustness: pd.DataFrame
    generalisation: pd.DataFrame
    improvement: pd.DataFrame
    schedules: pd.DataFrame


def _c1_lines(tables: Tables) -> list[str]:
    rob = tables.robustness.set_index("method")
    schedules = [
        m for m in rob.index if m.startswith("sgd_") and plots.method_kind(m) == "schedule"
    ]
    lines = []
    for method in [m for m in plots.method_order(rob.index) if plots.is_ganno(m)]:
        g = rob.loc[method]
        lines.append(
            f"- **{method}** on `{TRAIN_TASK}`, tuned (lr0 = {fmt_lr(g['tuned_lr0'])} chosen on "
            f"validation): test accuracy {fmt_ci(g['tuned_iqm'], g['tuned_low'], g['tuned_high'])}."
        )
        if schedules:
            hand = rob.loc[schedules].sort_values("tuned_iqm", ascending=False)
            best = hand.index[0]
            b = hand.loc[best]
            above = [m for m in schedules if g["tuned_iqm"] > rob.loc[m, "tuned_iqm"]]
            verdict = "above" if g["tuned_iqm"] > hand["tuned_iqm"].iloc[0] else "below"
            lines.append(
                f"  Its IQM is above that of {len(above)} of the {len(schedules)} handcrafted SGD "
                f"schedules, and {verdict} the best of them, {best} "
                f"({fmt_ci(b['tuned_iqm'], b['tuned_low'], b['tuned_high'])} "
                f"at lr0 = {fmt_lr(b['tuned_lr0'])})."
            )
        sched = tables.schedules[tables.schedules["method"] == method]
        full = sched[sched["completed"] == sched["runs"]]
        if not full.empty:
            lo, hi = full["lr0"].min(), full["lr0"].max()
            ends = full.groupby("lr0")["final_median"].median()
            lines.append(
                f"  Its schedules respond to where they start: over the initial rates where every "
                f"run finished its budget, {fmt_lr(lo)} to {fmt_lr(hi)} "
                f"({fmt_decades(np.log10(hi / lo))} decades), the final rates (median over runs, "
                f"then layers) lie between {fmt_lr(ends.min())} and {fmt_lr(ends.max())} "
                f"({fmt_decades(np.log10(ends.max() / ends.min()))} decades); the peak rates "
                f"(median over runs) reach up to {fmt_lr(full['peak_median'].max())}."
            )
        partial = sched[sched["completed"] < sched["runs"]].groupby("lr0").first()
        if not partial.empty:
            cells = [
                f"from lr0 = {fmt_lr(lr0)}, {int(r['completed'])} of {int(r['runs'])} finished"
                for lr0, r in partial.iterrows()
            ]
            lines.append(f"  Some runs diverged: {'; '.join(cells)}.")
    return lines


def _c2_lines(tables: Tables, tolerance: float) -> list[str]:
    rob = tables.robustness.set_index("method")
    base = rob[~rob.index.map(plots.is_ganno)]
    lines = []
    if base.empty:
        return lines
    robust = base.sort_values(["robust_decades", "tuned_iqm"], ascending=False).index[0]
    tuned_best = base.sort_values("tuned_iqm", ascending=False).index[0]
    for method in [m for m in plots.method_order(rob.index) if plots.is_ganno(m)]:
        g = rob.loc[method]
        r, t = base.loc[robust], base.loc[tuned_best]
        wider = int((base["robust_decades"] < g["robust_decades"]).sum())
        lines.append(
            f"- **{method}** stays within {fmt(tolerance)} of its best seed-mean test accuracy "
            f"({fmt(g['best_mean'])}) over {fmt_decades(g['robust_decades'])} decades of initial "
            f"rate ({fmt_lr(g['robust_low'])} – {fmt_lr(g['robust_high'])}); the most robust "
            f"baseline, {robust}, over {fmt_decades(r['robust_decades'])} decades "
            f"({fmt_lr(r['robust_low'])} – {fmt_lr(r['robust_high'])}). GANNO's range is wider "
            f"than that of {wider} of the {len(base)} baselines."
        )
        lines.append(
            f"  Tuned, {method} reaches {fmt_ci(g['tuned_iqm'], g['tuned_low'], g['tuned_high'])}"
            f" against {fmt_ci(t['tuned_iqm'], t['tuned_low'], t['tuned_high'])} for the best "
            f"tuned baseline, {tuned_best} (robust over {fmt_decades(t['robust_decades'])} "
            f"decades). Over all initial rates and runs its IQM test accuracy is "
            f"{fmt_ci(g['all_iqm'], g['all_low'], g['all_high'])}; "
            f"{fmt(g['diverged_fraction'])} of its runs diverged (baselines: "
            f"{fmt(base['diverged_fraction'].min())} to "
            f"{fmt(base['diverged_fraction'].max())})."
        )
    return lines


def _c3_lines(tables: Tables) -> list[str]:
    gen = tables.generalisation
    tasks = [t for t in dict.fromkeys(gen["task"]) if t not in (ALL_TASKS, HELD_OUT)]
    held = [t for t in tasks if t != TRAIN_TASK]
    scope = HELD_OUT if held else ALL_TASKS
    lines = []
    if not held:
        lines.append(f"- No held-out task has results; the numbers below are on `{TRAIN_TASK}`.")
    ganno = [m for m in plots.method_order(gen["method"].unique()) if plots.is_ganno(m)]
    base = gen[~gen["method"].map(plots.is_ganno)]
    for method in ganno:
        mine = gen[gen["method"] == method].set_index("task")
        wins, overlaps, shown = [], [], held or tasks
        for task in shown:
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
        lines.append(
            f"- **{method}**, tuned on validation per task: the highest IQM of all methods on "
            f"{len(wins)} of {len(shown)} {'held-out ' if held else ''}task(s)"
            f"{' (' + ', '.join(wins) + ')' if wins else ''}; below the best baseline but with "
            f"overlapping CIs on {len(overlaps)}; clearly below on "
            f"{len(shown) - len(wins) - len(overlaps)}."
        )
        pooled = base[base["task"] == scope].sort_values("iqm", ascending=False)
        if scope in mine.index and not pooled.empty:
            b = pooled.iloc[0]
            m = mine.loc[scope]
            lines.append(
                f"  Pooled over the {scope} (IQM, stratified bootstrap): "
                f"{fmt_ci(m['iqm'], m['low'], m['high'])} against "
                f"{fmt_ci(b['iqm'], b['low'], b['high'])} for the best baseline, {b['method']}."
            )
        imp = tables.improvement
        imp = imp[(imp["method"] == method) & (imp["scope"] == scope)]
        if not imp.empty:
            better = imp[imp["low"] > 0.5]
            worse = imp[imp["high"] < 0.5]
            lo = imp.loc[imp["probability_of_improvement"].idxmin()]
            hi = imp.loc[imp["probability_of_improvement"].idxmax()]
            p_lo, p_hi = lo["probability_of_improvement"], hi["probability_of_improvement"]
            spread = (
                f"{fmt(p_lo)} against every one"
                if fmt(p_lo) == fmt(p_hi)
                else f"from {fmt(p_lo)} (vs {lo['other']}) to {fmt(p_hi)} (vs {hi['other']})"
            )
            lines.append(
                f"  Probability of improvement over the {len(imp)} baselines on the {scope}: "
                f"{spread}; its CI lies above 0.5 against {len(better)} and below 0.5 against "
                f"{len(worse)}."
            )
    return lines


def figure_lines(out_dir: str | Path, f: plots.FigurePaths, caption: str) -> list[str]:
    """A figure inline in ``out_dir/README.md``, with links to its PDF and data."""
    rel = lambda p: Path(p).relative_to(out_dir).as_posix()  # noqa: E731
    return [
        f"![{caption}]({rel(f.png)})",
        "",
        f"*{caption}* ([PDF]({rel(f.pdf)}), [data]({rel(f.csv)}))",
        "",
    ]


def write_paper_readme(
    out_dir: str | Path,
    tables: Tables,
    figures: Mapping[str, plots.FigurePaths],
    table_paths: Mapping[str, TablePaths],
    config: Mapping[str, Any],
    skipped: Mapping[str, str],
    skipped_files: Mapping[str, str] | None = None,
    results_dir: str | Path = "results",
    extension_lines: Sequence[str] = (),
) -> Path:
    """``out_dir/README.md``: the claims C1-C3 with their key numbers (all read from ``tables``),
    the figures inline, the tables, skipped tasks and the config. Paths are relative to
    ``out_dir``."""
    out = Path(out_dir)
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    cfg = config["baselines"]
    tol = float(cfg["robustness_tolerance"])
    ci = f"{round(100 * float(cfg['confidence']))}%"
    tasks = [
        t for t in dict.fromkeys(tables.generalisation["task"]) if t not in (ALL_TASKS, HELD_OUT)
    ]
    seeds, meta_seeds = config["evaluation"]["seeds"], config["meta_train"]["seeds"]

    def figure(name: str, caption: str) -> list[str]:
        return figure_lines(out, figures[name], caption) if name in figures else []

    lines = [
        "# GANNO: results",
        "",
        f"Built by `ganno.report.build_report` from `{results_dir}`. Every number below is read "
        "from the tables in `tables/`, computed in the same run. Scores are final test accuracies; "
        f"aggregates are interquartile means (IQM) with {ci} stratified-bootstrap confidence "
        f"intervals ({cfg['bootstrap_resamples']} resamples, runs resampled within each task). "
        f"Each (method, task, lr0) cell has {len(seeds)} evaluation seeds; GANNO methods pool "
        f"their {len(meta_seeds)} meta-training seed(s). *Tuned* means the lr0 with the lowest "
        "seed-mean validation loss (`ganno.baselines.tune`), for GANNO as for every baseline; the "
        "test split is never used to choose.",
        "",
        "## C1 Competitive schedules",
        "",
        *_c1_lines(tables),
        "",
        *figure(
            "schedules",
            "Per-layer learning rates chosen by the agents from three initial rates (median over "
            "runs, band min-max), beside the handcrafted SGD schedules at their tuned lr0.",
        ),
        "## C2 Robustness to the initial learning rate",
        "",
        f"Robust range: the widest contiguous stretch of the lr0 grid containing the best lr0 "
        f"where the seed-mean test accuracy stays within {fmt(tol)} of its best "
        "(`baselines.robustness_tolerance`).",
        "",
        *_c2_lines(tables, tol),
        "",
        *figure(
            "robustness",
            f"Final test accuracy against the initial learning rate on `{TRAIN_TASK}` (mean over "
            f"runs, {ci} CI); divergences marked below each panel; grey: meta-training lr0 range.",
        ),
        "## C3 Generalisation to other networks and data",
        "",
        f"Tasks with results: {', '.join(f'`{t}`' for t in tasks)}.",
        "",
        *_c3_lines(tables),
        "",
        *figure(
            "generalisation",
            f"Tuned test accuracy per task (IQM, {ci} stratified-bootstrap CI); GANNO's CI shaded.",
        ),
        *figure(
            "comparison",
            f"Tuned test accuracy pooled over all tasks (IQM, {ci} stratified-bootstrap CI).",
        ),
        "## Meta-training",
        "",
        *figure(
            "meta_training",
            "Episode return and episode-end validation loss during meta-training (mean over "
            "seeds, band min-max).",
        ),
        *extension_lines,
        "## Tables",
        "",
    ]
    captions = {
        "robustness": f"robustness on `{TRAIN_TASK}` (C2): range, all-lr0 and tuned accuracy, "
        "divergences",
        "generalisation": "tuned test accuracy per task (C3)",
        "improvement": "probability of improvement of GANNO over each baseline (C3)",
        "schedules": "final and peak learning rates the agents set (C1)",
        "q1": "Q1: agents that set more than the learning rate, against the reference agents",
        "q2": "Q2: agents trained on different rewards, against the reference agents",
        "torch_deployment": "the policy in a PyTorch training loop against PyTorch baselines",
    }
    for name, paths in table_paths.items():
        links = ", ".join(f"[{p.suffix[1:]}]({rel(p)})" for p in paths)
        lines.append(f"- `{name}`: {captions.get(name, name)} ({links})")
    for name in ("robustness", "generalisation"):
        if name in table_paths:
            lines += ["", f"### {captions[name]}", "", table_paths[name].md.read_text().rstrip()]
    lines += ["", "## Skipped", ""]
    if skipped:
        lines += [f"- task `{t}`: {reason}" for t, reason in skipped.items()]
    extra = {
        f: r
        for f, r in (skipped_files or {}).items()
        if Path(f).parts[1:2] not in [(t,) for t in skipped]
    }
    lines += [f"- file `{f}`: {r}" for f, r in extra.items()]
    if not skipped and not extra:
        lines.append("Nothing was skipped.")
    lines += [
        "",
        "## Config",
        "",
        "The resolved config of the run (also in `config.yaml`):",
        "",
        "<details><summary>config</summary>",
        "",
        "```yaml",
        yaml.safe_dump(_plain(config), sort_keys=False).rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    path = out / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines))
    return path


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


class Report(NamedTuple):
    """What :func:`build_report` wrote."""

    readme: Path
    figures: dict[str, plots.FigurePaths]
    tables: dict[str, TablePaths]
    numbers: Tables


def build_report(
    results_dir: str | Path, out_dir: str | Path, config: Mapping[str, Any] | str | Path
) -> Report:
    """Read the pipeline's results under ``results_dir`` (layout: :func:`result_paths`) and write
    ``out_dir/figures/*``, ``out_dir/tables/*``, ``out_dir/config.yaml`` and ``out_dir/README.md``.

    ``config`` is the resolved config the results were made with (a mapping, or a YAML path that
    :func:`ganno.config.load_config` reads).
    """
    if not isinstance(config, Mapping):
        from ganno.config import load_config

        config = load_config(config)
    out = Path(out_dir)
    data = load_results(results_dir, config)
    if TRAIN_TASK not in data.tasks:
        raise ResultsError(
            f"no results on the task {TRAIN_TASK!r} under {results_dir}; run the pipeline first "
            "or pass --results with the folder that holds them"
        )
    ci = _ci_kwargs(config)
    tol = float(config["baselines"]["robustness_tolerance"])
    results = data.results
    train = results[results["task"] == TRAIN_TASK]

    tables = Tables(
        robustness=robustness_summary(train, tolerance=tol, **ci),
        generalisation=generalisation_summary(results, data.tasks, **ci),
        improvement=improvement_summary(results, data.tasks, **ci),
        schedules=schedule_summary(data.schedules),
    )
    table_dir = out / "tables"
    table_paths = {
        "robustness": write_table(
            tables.robustness,
            robustness_display(tables.robustness),
            table_dir / "robustness",
            f"Robustness to the initial learning rate on {TRAIN_TASK} (C2).",
        ),
        "generalisation": write_table(
            tables.generalisation,
            generalisation_display(tables.generalisation, data.tasks),
            table_dir / "generalisation",
            "Tuned test accuracy, IQM [95% CI], per task (C3).",
        ),
        "improvement": write_table(
            tables.improvement,
            improvement_display(tables.improvement),
            table_dir / "improvement",
            "Probability of improvement of GANNO over each baseline, tuned test accuracy.",
        ),
        "schedules": write_table(
            tables.schedules,
            schedule_display(tables.schedules),
            table_dir / "schedules",
            "Learning rates set by the agents on the meta-training task (C1).",
        ),
    }

    fig_dir = out / "figures"
    env = config["env"]
    tuned_lr0 = tables.robustness.set_index("method")["tuned_lr0"].to_dict()
    figures = {"meta_training": plots.meta_training_curves(data.curves, fig_dir / "meta_training")}
    figures["schedules"] = plots.schedule_figure(
        data.schedules,
        tuned_lr0,
        fig_dir / "schedules",
        total_steps=int(env["steps_per_decision"] * env["num_decisions"]),
    )
    figures["robustness"] = plots.robustness_figure(
        train, fig_dir / "robustness", train_range=env["lr0_range"], **ci
    )
    per_task = tables.generalisation[tables.generalisation["task"].isin(data.tasks)]
    figures["generalisation"] = plots.generalisation_figure(per_task, fig_dir / "generalisation")
    figures["comparison"] = plots.comparison_plot(
        tuned_results(results),
        fig_dir / "comparison",
        title="tuned test accuracy over all tasks",
        **ci,
    )
    from ganno.extensions_report import build_extensions

    extensions = build_extensions(results_dir, out, config, data)
    figures |= extensions.figures
    table_paths |= extensions.tables
    atomic_write(out / "config.yaml", yaml.safe_dump(_plain(config), sort_keys=False))
    readme = write_paper_readme(
        out,
        tables,
        figures,
        table_paths,
        config,
        skipped_tasks(data, config),
        {**data.skipped, **extensions.skipped},
        results_dir,
        extensions.lines,
    )
    return Report(readme, figures, table_paths, tables)
