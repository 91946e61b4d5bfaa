"""The report: the paper's claims (C1-C3) and the questions beyond it (Q1, Q2, a design study,
the PyTorch deployment, Q3 what GANNO costs) as peer sections of one README, built from everything
the pipeline wrote.

:func:`build_report` reads the results laid out as :mod:`ganno.layout` says, once, for every
agent; the claims' section is built here, the questions' and the PyTorch deployment's by
:mod:`ganno.extensions_report`; both compute their numbers with :mod:`ganno.tables`. Q3's
section, from the run's benchmark files, is :mod:`ganno.cost`'s. It writes ``figures/`` (PNG, PDF
and the CSV drawn), ``tables/`` (CSV with full-precision numbers, Markdown and LaTeX),
``config.yaml`` and ``README.md`` into the output folder.

Tuned numbers come from :func:`ganno.tables.tune` per (method, task) with the config's
``evaluation.tune_by``, for GANNO's agents as for every baseline. Aggregates are interquartile
means with stratified-bootstrap confidence intervals (:mod:`ganno.stats`), with the config's
``baselines.confidence``, ``baselines.bootstrap_resamples`` and ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

from ganno import agents as registry
from ganno import cost, extensions_report, plots, seed_selection, stats, tuning_budget
from ganno.errors import ResultsError
from ganno.io import atomic_write, read_curve
from ganno.layout import DEFAULT_REPORT_DIR, TRAIN_TASK, result_paths, task_names
from ganno.results import lr0_grid, read_results
from ganno.tables import (  # noqa: F401  (re-exported: the notebooks read them from here)
    ALL_TASKS,
    DEAD_RUNS_PER_SEED_MAX,
    DEAD_SHARE_MAX,
    HELD_OUT,
    POOLING,
    TablePaths,
    ci_kwargs,
    dead_network_check,
    estimate,
    figure_lines,
    fmt,
    fmt_chance,
    fmt_ci,
    fmt_decades,
    fmt_lr,
    generalisation_display,
    generalisation_summary,
    improvement_display,
    improvement_summary,
    read_csv_or_skip,
    robustness_by_task,
    robustness_by_task_display,
    robustness_display,
    robustness_summary,
    schedule_display,
    schedule_summary,
    task_standings,
    tune_by,
    tuned_results,
    write_table,
)

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class ReportData(NamedTuple):
    """What the pipeline wrote, read."""

    results: pd.DataFrame  # baselines and the claims' agents, every task that ran
    schedules: pd.DataFrame  # the claims' agents' per-layer rates on "train"
    curves: pd.DataFrame  # the claims' agents' learning-curve rows, with ``algo`` = agent
    tasks: list[str]  # tasks with results, in config order
    skipped: dict[str, str]  # file (relative to the results folder) -> why it has no rows
    question_results: pd.DataFrame  # the question agents' rows (results schema)
    question_curves: pd.DataFrame  # their learning curves
    torch: pd.DataFrame | None  # the PyTorch deployment's rows, when configured and run
    selection: dict[str, Any] | None  # the shipped agent's seed chosen on the validation tasks


def _read_curves(paths: Mapping[tuple[str, int], Path], root: Path, skipped: dict[str, str]):
    frames = []
    for (agent, seed), path in paths.items():
        rows = read_curve(path)
        if not rows:
            skipped[str(path.relative_to(root))] = "missing or empty learning curve"
            continue
        frames.append(pd.DataFrame(rows).assign(algo=agent, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["algo", "seed", "env_steps", *plots.CURVE_METRICS])
    return pd.concat(frames, ignore_index=True)


def _read_tables(paths: Sequence[Path], root: Path, skipped: dict[str, str]) -> pd.DataFrame:
    frames = [read_csv_or_skip(p, root, skipped, lambda p: read_results([p])) for p in paths]
    frames = [f for f in frames if f is not None]
    results = read_results([]) if not frames else pd.concat(frames, ignore_index=True)
    results["diverged"] = results["diverged"].astype(bool)
    return results


def load_results(results_dir: str | Path, config: Mapping[str, Any]) -> ReportData:
    """Read every file of :func:`ganno.layout.result_paths`; empty CSVs (skipped tasks) are
    noted, not read."""
    root = Path(results_dir)
    paths = result_paths(config, root)
    skipped: dict[str, str] = {}
    claims = {a.name for a in registry.agents(config, question=None)}
    mine = {k: p for k, p in paths.agents.items() if k[1] in claims}
    results = _read_tables([*paths.baselines.values(), *mine.values()], root, skipped)
    others = [p for k, p in paths.agents.items() if k[1] not in claims]
    question_results = _read_tables(others, root, skipped)

    schedule_frames = []
    for (_, seed), path in paths.schedules.items():
        df = read_csv_or_skip(path, root, skipped, pd.read_csv)
        if df is not None:
            schedule_frames.append(df.assign(meta_seed=df.get("meta_seed", seed)))
    schedules = (
        pd.concat(schedule_frames, ignore_index=True)
        if schedule_frames
        else pd.DataFrame(
            columns=["method", "task", "lr0", "seed", "step", "layer", "learning_rate", "meta_seed"]
        )
    )
    curves = _read_curves({k: p for k, p in paths.curves.items() if k[0] in claims}, root, skipped)
    question_curves = _read_curves(
        {k: p for k, p in paths.curves.items() if k[0] not in claims}, root, skipped
    )
    torch = None
    if paths.torch is not None:
        torch = read_csv_or_skip(paths.torch, root, skipped, lambda p: read_results([p]))
        if torch is not None:
            torch["diverged"] = torch["diverged"].astype(bool)
    selection = None
    if paths.selection is not None:
        # The shipped policy's own row: the selected seed's runs, beside its agent's pooled ones.
        selection = seed_selection.read_selection(paths.selection)
        chosen = {selection["method"]: int(selection["seed"])}
        results = pd.concat(
            [results, seed_selection.selected_runs(results, chosen)], ignore_index=True
        )
    present = set(results["task"])
    tasks = [t for t in task_names(config) if t in present]
    return ReportData(
        results,
        schedules,
        curves,
        tasks,
        skipped,
        question_results,
        question_curves,
        torch,
        selection,
    )


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
# The README
# --------------------------------------------------------------------------------------------


class Tables(NamedTuple):
    """The numbers of every table (the CSVs' contents)."""

    robustness: pd.DataFrame
    generalisation: pd.DataFrame
    improvement: pd.DataFrame
    schedules: pd.DataFrame
    robustness_by_task: pd.DataFrame
    #: Per agent and task, :func:`ganno.tables.dead_network_check` (README only, no CSV).
    dead_networks: pd.DataFrame = pd.DataFrame(columns=["method", "task", "passes"])
    #: :func:`ganno.tuning_budget.runs_saved` of every agent (the C2 line for a user).
    runs_saved: pd.DataFrame = pd.DataFrame(columns=["ganno_method", "method", "task"])


class Verdict(NamedTuple):
    """Where one agent stands on one claim and metric against the method it is held against,
    and the two numbers compared: ``above``, ``level`` or ``below`` from their confidence
    intervals (:func:`ganno.stats.compare`); a robust range, a count of decades on the lr0 grid
    without an interval, stands ``wider``, ``as wide`` or ``narrower``
    (:func:`ganno.stats.compare_ranges`)."""

    claim: str  # "C1", "C2", "C3"
    metric: str  # "test accuracy", "test loss" or "robust range"
    standing: str  # one of stats.STANDINGS or stats.RANGE_STANDINGS
    ours: str  # the agent's number with its interval, formatted
    theirs: str  # the number it is held against, formatted
    other: str  # the method that number belongs to


def _verdict(
    claim: str,
    metric: str,
    ours: stats.Estimate,
    theirs: stats.Estimate,
    other: str,
    higher_is_better: bool = True,
) -> Verdict:
    standing = stats.compare(ours, theirs, higher_is_better)
    return Verdict(claim, metric, standing, fmt_ci(*ours), fmt_ci(*theirs), str(other))


def _range(row: pd.Series) -> str:
    """A robust range as the README states it: decades, and whether it reaches the grid's edge."""
    edge = ", at the grid's edge" if row["robust_at_edge"] else ""
    return f"{fmt_decades(row['robust_decades'])} decades{edge}"


def _range_verdict(claim: str, ours: pd.Series, theirs: pd.Series, other: str) -> Verdict:
    standing = stats.compare_ranges(ours["robust_decades"], theirs["robust_decades"])
    return Verdict(claim, "robust range", standing, _range(ours), _range(theirs), str(other))


def stated(v: Verdict) -> str:
    """A verdict as the README states it, e.g. ``**above**: 0.689 [0.687, 0.691] vs 0.681
    [0.679, 0.683] (dog)``."""
    return f"**{v.standing}**: {v.ours} vs {v.theirs} ({v.other})"


def _handcrafted(rob: pd.DataFrame) -> list[str]:
    return [m for m in rob.index if m.startswith("sgd_") and plots.method_kind(m) == "schedule"]


def c1_verdicts(rob: pd.DataFrame, method: str) -> list[Verdict]:
    """C1 (robustness table indexed by method): the agent's tuned test accuracy against the best
    handcrafted SGD schedule's, its tuned test loss against the lowest of theirs."""
    schedules = _handcrafted(rob)
    if not schedules:
        return []
    g, hand = rob.loc[method], rob.loc[schedules]
    best, low = hand["tuned_iqm"].idxmax(), hand["tuned_loss_iqm"].idxmin()
    return [
        _verdict("C1", "test accuracy", estimate(g, "tuned_"), estimate(rob.loc[best], "tuned_"),
                 best),
        _verdict("C1", "test loss", estimate(g, "tuned_loss_"),
                 estimate(rob.loc[low], "tuned_loss_"), low, higher_is_better=False),
    ]  # fmt: skip


def _most_robust(base: pd.DataFrame) -> str:
    return base.sort_values(["robust_decades", "tuned_iqm"], ascending=False).index[0]


def c2_verdicts(rob: pd.DataFrame, method: str) -> list[Verdict]:
    """C2 (robustness table indexed by method): the robust range against the most robust
    baseline's; the IQM test accuracy over every lr0 and run against the best baseline's by it;
    the all-lr0 IQM test loss against the lowest baseline's."""
    base = rob[~rob.index.map(plots.is_ganno)]
    if base.empty:
        return []
    g, robust = rob.loc[method], _most_robust(base)
    best, low = base["all_iqm"].idxmax(), base["all_loss_iqm"].idxmin()
    return [
        _range_verdict("C2", g, base.loc[robust], robust),
        _verdict("C2", "test accuracy", estimate(g, "all_"), estimate(base.loc[best], "all_"),
                 best),
        _verdict("C2", "test loss", estimate(g, "all_loss_"),
                 estimate(base.loc[low], "all_loss_"), low, higher_is_better=False),
    ]  # fmt: skip


def _scope(gen: pd.DataFrame) -> tuple[str, str]:
    """The rows of the generalisation summary that C3 compares (its ``task``) and how the README
    names them: pooled over the held-out tasks (normalised), or, with one, that task's raw row
    labelled single-task (the training task's when no held-out task has results)."""
    tasks = [t for t in dict.fromkeys(gen["task"]) if t not in (ALL_TASKS, HELD_OUT)]
    held = [t for t in tasks if t != TRAIN_TASK]
    members = held or tasks
    if len(members) == 1:
        return members[0], f"on `{members[0]}` (single task)"
    pooled = gen[gen["task"] == (HELD_OUT if held else ALL_TASKS)]
    how = "normalised per task" if pooled["normalised"].all() else "raw: a task has no normaliser"
    return pooled["task"].iloc[
        0
    ], f"pooled over the {len(members)} {pooled['task'].iloc[0]} ({how})"


def c3_verdicts(gen: pd.DataFrame, method: str) -> list[Verdict]:
    """C3 (generalisation summary): the agent's tuned test accuracy pooled over the held-out
    tasks (over all tasks when none has results; normalised per task, :data:`POOLING`; the one
    task's own numbers when there is one, :func:`_scope`) against the best baseline's, its loss
    against the lowest baseline's."""
    scope, _ = _scope(gen)
    mine = gen[(gen["method"] == method) & (gen["task"] == scope)]
    pooled = gen[~gen["method"].map(plots.is_ganno) & (gen["task"] == scope)]
    if mine.empty or pooled.empty:
        return []
    m = mine.iloc[0]
    best = pooled.loc[pooled["iqm"].idxmax()]
    low = pooled.loc[pooled["loss_iqm"].idxmin()]
    return [
        _verdict("C3", "test accuracy", estimate(m), estimate(best), best["method"]),
        _verdict("C3", "test loss", estimate(m, "loss_"), estimate(low, "loss_"), low["method"],
                 higher_is_better=False),
    ]  # fmt: skip


def claim_verdicts(tables: Tables) -> dict[str, list[Verdict]]:
    """Every claim's verdict for every agent of the claims (the comparisons the C1-C3 lines
    state, made once here)."""
    rob = tables.robustness.set_index("method")
    return {
        method: [
            *c1_verdicts(rob, method),
            *c2_verdicts(rob, method),
            *c3_verdicts(tables.generalisation, method),
        ]
        for method in plots.method_order(rob.index)
        if plots.is_ganno(method)
    }


def verdict_table(verdicts: Mapping[str, Sequence[Verdict]]) -> list[str]:
    """A Markdown table: one row per agent, one column per claim and metric, each cell where the
    agent stands with the two numbers compared (:func:`stated`)."""
    columns = list(dict.fromkeys((v.claim, v.metric) for vs in verdicts.values() for v in vs))
    if not columns:
        return []
    lines = [
        "| agent | " + " | ".join(f"{c} {m}" for c, m in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for method, vs in verdicts.items():
        cells = {(v.claim, v.metric): v for v in vs}
        row = [stated(v) if (v := cells.get(c)) else "-" for c in columns]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return lines


def _counts(standings: Mapping[str, Sequence[str]], names: bool = False) -> str:
    """``above on 2 (a, b), level on 1, below on 0``: the three-way standings counted."""
    return ", ".join(
        f"{s} on {len(ts)}" + (f" ({', '.join(f'`{t}`' for t in ts)})" if names and ts else "")
        for s, ts in standings.items()
    )


def _c1_lines(tables: Tables) -> list[str]:
    rob = tables.robustness.set_index("method")
    schedules = _handcrafted(rob)
    lines = []
    for method in [m for m in plots.method_order(rob.index) if plots.is_ganno(m)]:
        g = rob.loc[method]
        lines.append(
            f"- **{method}** on `{TRAIN_TASK}`, tuned (lr0 = {fmt_lr(g['tuned_lr0'])} chosen on "
            f"validation): test accuracy {fmt_ci(g['tuned_iqm'], g['tuned_low'], g['tuned_high'])}."
        )
        if schedules:
            acc, loss = c1_verdicts(rob, method)
            b = rob.loc[acc.other]
            standings: dict[str, list[str]] = {s: [] for s in stats.STANDINGS}
            for m in schedules:
                mine, theirs = estimate(g, "tuned_"), estimate(rob.loc[m], "tuned_")
                standings[stats.compare(mine, theirs)].append(m)
            lines.append(
                f"  Against each of the {len(schedules)} handcrafted SGD schedules, tuned alike "
                f"(CIs apart or overlapping): {_counts(standings)}; the best of them is "
                f"{acc.other} (at lr0 = {fmt_lr(b['tuned_lr0'])})."
            )
            lines.append(
                f"  C1 on test accuracy: {stated(acc)}; on test loss (tuned, against the "
                f"handcrafted schedule lowest on it): {stated(loss)}."
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


def _chance_line(tables: Tables, method: str, held: Sequence[str]) -> str:
    """The agent's share of runs at chance on the training task and the most on a held-out task,
    beside the baselines' range (every lr0 and seed; :func:`ganno.tables.at_chance_shares`)."""
    rob, gen = tables.robustness.set_index("method"), tables.generalisation
    base = rob[~rob.index.map(plots.is_ganno)]
    per_task = gen[gen["task"].isin(held)]
    theirs = per_task[~per_task["method"].map(plots.is_ganno)]

    def most(rows: pd.DataFrame, who: bool = False) -> str:
        top = rows.loc[rows["at_chance"].idxmax()]
        return f"; held out at most {fmt_chance(top['at_chance'])} (`{top['task']}`" + (
            f", {top['method']})" if who else ")"
        )

    mine = per_task[per_task["method"] == method]
    return (
        f"  Runs at chance (every lr0 and seed): {fmt_chance(rob.loc[method, 'at_chance'])} on "
        f"`{TRAIN_TASK}`{most(mine) if not mine.empty else ''}. Baselines: "
        f"{fmt_chance(base['at_chance'].min())} to {fmt_chance(base['at_chance'].max())} on "
        f"`{TRAIN_TASK}`{most(theirs, who=True) if not theirs.empty else ''}."
    )


def _dead_line(tables: Tables, method: str) -> list[str]:
    """Whether the agent has no dead networks by the design rule (:func:`dead_network_check`)."""
    check = tables.dead_networks
    if check.empty or method not in set(check["method"]):
        return []
    mine = check[check["method"] == method].set_index("task")
    worst = mine.loc[mine["worst_seed_runs"].idxmax()]
    shares = ", ".join(f"`{t}` {fmt_chance(r['share'])}" for t, r in mine.iterrows())
    seed = (
        f"{int(worst['worst_seed_runs'])} run(s) at chance, meta-training seed "
        f"{int(worst['worst_seed'])} on `{worst.name}`"
        if worst["worst_seed_runs"]
        else "no run at chance"
    )
    return [
        f"  No dead networks by the rule (at most {fmt_chance(DEAD_SHARE_MAX)} of runs at chance "
        f"per task pooled over meta-training seeds, at most {DEAD_RUNS_PER_SEED_MAX} for any seed "
        f"and task): **{'yes' if mine['passes'].all() else 'no'}** (per task: {shares}; worst "
        f"seed: {seed})."
    ]


def _c2_lines(tables: Tables, tolerance: float) -> list[str]:
    rob = tables.robustness.set_index("method")
    base = rob[~rob.index.map(plots.is_ganno)]
    lines = []
    if base.empty:
        return lines
    gen = tables.generalisation
    held = [t for t in dict.fromkeys(gen["task"]) if t not in (ALL_TASKS, HELD_OUT, TRAIN_TASK)]
    tuned_best = base.sort_values("tuned_iqm", ascending=False).index[0]
    for method in [m for m in plots.method_order(rob.index) if plots.is_ganno(m)]:
        g = rob.loc[method]
        span, acc, loss = c2_verdicts(rob, method)
        r, t = base.loc[span.other], base.loc[tuned_best]
        count = {s: 0 for s in stats.RANGE_STANDINGS}
        for d in base["robust_decades"]:
            count[stats.compare_ranges(g["robust_decades"], d)] += 1
        edge = " (at the grid's edge: the range may be wider)" if g["robust_at_edge"] else ""
        lines.append(
            f"- **{method}** stays within {fmt(tolerance)} of its best seed-mean test accuracy "
            f"({fmt(g['best_mean'])}) over {fmt_decades(g['robust_decades'])} decades of initial "
            f"rate ({fmt_lr(g['robust_low'])} – {fmt_lr(g['robust_high'])}){edge}; the most "
            f"robust baseline, {span.other}, over {_range(r)} ({fmt_lr(r['robust_low'])} – "
            f"{fmt_lr(r['robust_high'])}). On the lr0 grid (a count of decades, no interval) its "
            f"range is wider than {count['wider']}, as wide as {count['as wide']} and narrower "
            f"than {count['narrower']} of the {len(base)} baselines'."
        )
        tuned = stats.compare(estimate(g, "tuned_"), estimate(t, "tuned_"))
        lines.append(
            f"  Tuned, {method} is **{tuned}**: "
            f"{fmt_ci(g['tuned_iqm'], g['tuned_low'], g['tuned_high'])} vs "
            f"{fmt_ci(t['tuned_iqm'], t['tuned_low'], t['tuned_high'])} for the best tuned "
            f"baseline, {tuned_best} (robust over {_range(t)}). "
            f"{fmt(g['diverged_fraction'])} of its runs diverged (baselines: "
            f"{fmt(base['diverged_fraction'].min())} to "
            f"{fmt(base['diverged_fraction'].max())})."
        )
        lines.append(
            f"  C2 on the robust range: {stated(span)}; on test accuracy over every initial "
            f"rate and run (IQM, against the baseline highest on it): {stated(acc)}; on test "
            f"loss over every initial rate and run (against the lowest): {stated(loss)}."
        )
        lines.extend(_held_out_all_lr0_line(gen, method))
        lines.extend(_runs_saved_line(tables.runs_saved, method))
        lines.append(_chance_line(tables, method, held))
    return lines


def _runs_saved_line(saved: pd.DataFrame, method: str) -> list[str]:
    """C2 for a user: what one run of the agent at a random lr0 is worth in tuning runs of the
    best tuned baseline (expected best accuracy after k runs, `tables/tuning_budget`), pooled
    over the held-out tasks when there are some, else on the training task."""
    mine = saved[saved["ganno_method"] == method]
    if mine.empty:
        return []
    task = tuning_budget.POOLED if (mine["task"] == tuning_budget.POOLED).any() else TRAIN_TASK
    if not (mine["task"] == task).any():
        return []
    return [
        f"  Tuning saved (`tables/tuning_budget`; expected best test accuracy after k runs at "
        f"lr0 drawn from the grid, the best by validation kept): "
        f"{tuning_budget.c2_sentence(mine, task)}"
    ]


def _held_out_all_lr0_line(gen: pd.DataFrame, method: str) -> list[str]:
    """C2 held out: the agent's test accuracy over every lr0 and run per held-out task and pooled
    (normalised), against the best baseline's by the pooled number."""
    scope, where = _scope(gen)
    if scope in (TRAIN_TASK, ALL_TASKS):
        return []
    rows = gen[gen["task"] == scope]
    mine = rows[rows["method"] == method]
    base = rows[~rows["method"].map(plots.is_ganno)]
    if mine.empty or base.empty:
        return []
    m, best = mine.iloc[0], base.loc[base["all_iqm"].idxmax()]
    v = _verdict("C2", "held out", estimate(m, "all_"), estimate(best, "all_"), best["method"])
    return [
        f"  Held out, test accuracy over every initial rate and run {where}, against the "
        f"baseline highest on it (per task: `tables/generalisation`): {stated(v)}."
    ]


def _c3_lines(tables: Tables) -> list[str]:
    gen = tables.generalisation
    tasks = [t for t in dict.fromkeys(gen["task"]) if t not in (ALL_TASKS, HELD_OUT)]
    held = [t for t in tasks if t != TRAIN_TASK]
    scope = HELD_OUT if held else ALL_TASKS  # the improvement table's
    rows, where = _scope(gen)
    lines = []
    if not held:
        lines.append(f"- No held-out task has results; the numbers below are on `{TRAIN_TASK}`.")
    ganno = [m for m in plots.method_order(gen["method"].unique()) if plots.is_ganno(m)]
    base = gen[~gen["method"].map(plots.is_ganno)]
    for method in ganno:
        mine = gen[gen["method"] == method].set_index("task")
        shown = held or tasks
        standings = task_standings(gen, method, shown)
        lines.append(
            f"- **{method}**, tuned on validation per task, against the best baseline on each of "
            f"{len(shown)} {'held-out ' if held else ''}task(s) (CIs apart or overlapping): "
            f"{_counts(standings, names=True)}."
        )
        if rows in mine.index and (base["task"] == rows).any():
            acc, loss = c3_verdicts(gen, method)
            lines.append(
                f"  C3 {where}, tuned, against the best baseline: on test accuracy "
                f"{stated(acc)}; on test loss (against the lowest) {stated(loss)}."
            )
        lines.extend(_robust_by_task_line(tables.robustness_by_task, method, held))
        lines.extend(_dead_line(tables, method))
        imp = tables.improvement
        imp = imp[
            (imp["method"] == method) & (imp["scope"] == scope) & (imp["metric"] == "test_accuracy")
        ]
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
                f"  Probability of a higher test accuracy than each of the {len(imp)} baselines "
                f"on the {scope}: "
                f"{spread}; its CI lies above 0.5 against {len(better)} and below 0.5 against "
                f"{len(worse)}."
            )
    return lines


def _robust_by_task_line(table: pd.DataFrame, method: str, held: Sequence[str]) -> list[str]:
    """The agent's robust range on each held-out task against the widest baseline's there."""
    cells = []
    for task in held:
        here = table[table["task"] == task]
        mine = here[here["method"] == method]
        base = here[~here["method"].map(plots.is_ganno)]
        if mine.empty or base.empty:
            continue
        widest = base.loc[base["robust_decades"].idxmax()]
        cells.append(
            f"`{task}` {fmt_decades(mine['robust_decades'].iloc[0])} "
            f"({widest['method']} {fmt_decades(widest['robust_decades'])})"
        )
    if not cells:
        return []
    return [
        "  Robust range on each held-out task, in decades (the widest baseline's in brackets; "
        "`tables/robustness_by_task`): " + "; ".join(cells) + "."
    ]


TUNING = {
    "val_accuracy": "the highest seed-mean final validation accuracy (ties: the lower validation "
    "loss)",
    "val_loss": "the lowest seed-mean final validation loss (ties: the higher validation accuracy)",
}


def grid_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on the lr0 grid every number comes from (the one
    :func:`ganno.results.lr0_grid` builds for every method and task)."""
    grid = lr0_grid(config)
    per = int(config["evaluation"]["lr0_per_decade"])
    return (
        f"Every method runs on every task from the same {len(grid)} initial rates, "
        f"{fmt_lr(grid[0])} to {fmt_lr(grid[-1])}, {per} a decade (`evaluation.lr0_per_decade`; "
        "`tables/grid_study`, made by `snakemake --cores all grid_study`, reruns some methods "
        "on a finer grid)."
    )


def tuning_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on how lr0 is tuned, from the value the code uses
    (``evaluation.tune_by``, passed to :func:`ganno.tables.tune`)."""
    return (
        f"*Tuned* means the lr0 with {TUNING[tune_by(config)]}, then the smaller lr0 "
        f"(`ganno.tables.tune`, `evaluation.tune_by: {tune_by(config)}`), for GANNO as for "
        "every baseline; the test split is never used to choose."
    )


def meta_seeds_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on how many meta-training seeds each GANNO method pools
    (:func:`ganno.agents.meta_seeds`: the agents that set their own seeds are named)."""
    default = len(config["meta_train"]["seeds"])
    own: dict[int, list[str]] = {}
    for agent in registry.agents(config):
        count = len(registry.meta_seeds(config, agent.name))
        if count != default:
            own.setdefault(count, []).append(f"`{agent.name}`")
    exceptions = "; ".join(f"{', '.join(names)}: {n}" for n, names in own.items())
    return f"GANNO methods pool their {default} meta-training seed(s)" + (
        f" ({exceptions})." if exceptions else "."
    )


def selection_statement(selection: Mapping[str, Any] | None) -> str:
    """The README's sentence on the shipped policy's row (``ganno_<agent>_selected``), from the
    selection record the report read (:func:`ganno.seed_selection.select_seed`); empty when the
    config chooses no seed."""
    if selection is None:
        return ""
    scores = ", ".join(
        f"seed {seed} {float(score['value']):.3f}" for seed, score in selection["scores"].items()
    )
    tasks = ", ".join(f"`{t}`" for t in selection["validation_tasks"])
    row = seed_selection.selected_method(selection["method"])
    return (
        f"`{row}` is the policy the pipeline ships: "
        f"the runs of `{selection['agent']}`'s meta-training seed {selection['seed']} alone, "
        f"chosen as {selection['rule']}; the validation tasks are {tasks}, neither meta-trained "
        f"on nor held out (validation scores: {scores})."
    )


def meta_training_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on what the main agents (those of the claims) were meta-trained on:
    the training task alone, or a task family (``meta_train.task_family``, listed), which by
    validation contains no evaluation task."""
    from ganno.config import agent_config, family_configs

    parts = []
    for agent in registry.agents(config, None):
        members = [name for name, _ in family_configs(agent_config(config, agent.name))]
        if len(members) == 1:
            parts.append(f"`{agent.name}` on the training task alone")
        else:
            family = ", ".join(f"`{m}`" for m in members[1:])
            parts.append(f"`{agent.name}` on the training task and its task family ({family})")
    held_out = " (validation refuses a family member that is an evaluation task)"
    has_family = any("family" in p for p in parts)
    return f"Meta-training: {'; '.join(parts)}{held_out if has_family else ''}."


ACTION_MODE_WORDS = {
    "compound": "a factor from {actions} on each layer's current rate, compounding over the "
    "episode",
    "anchored": "a level from {levels} (x{scale:.3g} per level) on the {base} schedule from lr0, "
    "nothing compounding",
    "anchored_compound": "a factor from {actions} on a per-layer multiplier (within {bounds}) of "
    "the {base} schedule from lr0",
}


def agent_design_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on what the main agents choose and are rewarded for, read from the
    settings their environments and learners are built from (:class:`EnvSettings`, the
    ``meta_train`` block of each agent's config)."""
    from ganno.config import agent_config
    from ganno.env_settings import EnvSettings

    def fmt_values(values: Any) -> str:
        return "{" + ", ".join(f"{v:g}" for v in values) + "}"

    parts = []
    for agent in registry.agents(config, None):
        cfg = agent_config(config, agent.name)
        env, mt = EnvSettings.from_config(cfg), cfg["meta_train"]
        actions = ACTION_MODE_WORDS[env.action_mode].format(
            actions=fmt_values(env.actions),
            levels=fmt_values(env.levels),
            scale=math.exp(env.level_scale),
            bounds=f"[{env.scale_bounds[0]:g}, {env.scale_bounds[1]:g}]",
            base=f"`{env.base_schedule}`",
        )
        network = f"a {'GRU' if mt.get('gru_size', 0) else 'feed-forward'} actor"
        norm = "normalised" if mt.get("normalise_observations", False) else "raw"
        window = (
            "every step of an interval"
            if env.gradient_steps == env.steps_per_decision
            else f"the last {env.gradient_steps} of every {env.steps_per_decision} steps"
        )
        parts.append(
            f"`{agent.name}` ({agent.algorithm.upper()}) chooses {actions} "
            f"(`env.action_mode: {env.action_mode}`), is rewarded by `{env.reward}`, with "
            f"{network} on {norm} observations whose gradient features read {window}"
        )
    return f"Agent design: {'; '.join(parts)}."


def claims_lines(
    out_dir: str | Path,
    tables: Tables,
    figures: Mapping[str, plots.FigurePaths],
    config: Mapping[str, Any],
) -> list[str]:
    """The README section of the paper's claims C1-C3 and meta-training (a peer of the sections
    of :mod:`ganno.extensions_report`), every number read from ``tables``."""
    out = Path(out_dir)
    tol = float(config["baselines"]["robustness_tolerance"])
    ci = f"{round(100 * float(config['baselines']['confidence']))}%"
    tasks = [
        t for t in dict.fromkeys(tables.generalisation["task"]) if t not in (ALL_TASKS, HELD_OUT)
    ]

    def figure(name: str, caption: str) -> list[str]:
        return figure_lines(out, figures[name], caption) if name in figures else []

    verdicts = verdict_table(claim_verdicts(tables))
    summary = [
        "## What reproduces",
        "",
        "Each claim of the paper for each agent: where it stands against the method it must "
        "beat, with both numbers and their intervals. **above** / **below**: the two "
        "confidence intervals are apart, the agent's on the better / worse side; **level**: "
        "they overlap. C1: tuned on the training task, against the best handcrafted SGD "
        "schedule; C2: the robust range (a count of decades on the lr0 grid, no interval: "
        "**wider**, **as wide**, **narrower**; at the grid's edge it may be wider) against the "
        "most robust baseline's, and the IQM test accuracy and loss over every initial rate and "
        "run against the best baseline's; C3: tuned, pooled over the held-out tasks "
        "(normalised per task; with one held-out task, on it alone), against the best baseline.",
        "",
        *verdicts,
        "",
    ]
    return [
        *(summary if verdicts else []),
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
        *figure(
            "tuning_budget",
            "Expected best test accuracy after k runs at lr0 drawn at random from the grid, the "
            f"run with the best validation accuracy kept (mean over seeds, {ci} bootstrap band); "
            "the dotted line is a GANNO agent's one run: where a baseline's curve crosses it is "
            "the tuning that agent saves (`tables/tuning_budget`).",
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
        *figure(
            "comparison_loss",
            f"Tuned test loss pooled over all tasks (IQM, {ci} stratified-bootstrap CI; lower is "
            "better).",
        ),
        "## Meta-training",
        "",
        *figure(
            "meta_training",
            "Episode return and episode-end validation loss during meta-training (mean over "
            "seeds, band min-max).",
        ),
    ]


def _table_captions(config: Mapping[str, Any]) -> dict[str, str]:
    captions = {
        "robustness": f"robustness on `{TRAIN_TASK}` (C2): range, all-lr0 and tuned test accuracy "
        "and loss, divergences",
        "generalisation": "tuned test accuracy (and loss) per task (C3)",
        "robustness_by_task": "robust range and all-lr0 test accuracy on every task (C2 beyond "
        "the training task)",
        "improvement": "probability of improvement of GANNO over each baseline, on test accuracy "
        "and on test loss (C3)",
        "schedules": "final and peak learning rates the agents set (C1)",
        "torch_deployment": "the policy in a PyTorch training loop against PyTorch baselines",
        "q3_cost": "Q3, what GANNO costs: meta-training, evaluation runs, deployment",
        "q3_break_even": "Q3, the training problems after which GANNO costs less than tuning "
        "each baseline",
    }
    for question in registry.questions(config):
        title = registry.question_title(config, question)
        captions[question.lower()] = f"{question}, {title}: against the reference agents"
    return captions


def write_paper_readme(
    out_dir: str | Path,
    sections: Sequence[Sequence[str]],
    table_paths: Mapping[str, TablePaths],
    config: Mapping[str, Any],
    skipped: Mapping[str, str],
    skipped_files: Mapping[str, str] | None = None,
    results_dir: str | Path = "results",
    selection: Mapping[str, Any] | None = None,
) -> Path:
    """``out_dir/README.md``: how the numbers were made, the ``sections`` (the claims', then each
    question's and the PyTorch deployment's), the tables, skipped tasks and the config. Paths are
    relative to ``out_dir``; ``selection`` is the shipped policy's seed-selection record, when
    the validation tasks chose it."""
    out = Path(out_dir)
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    cfg = config["baselines"]
    ci = f"{round(100 * float(cfg['confidence']))}%"
    seeds = config["evaluation"]["seeds"]
    lines = [
        "# GANNO: results",
        "",
        f"Built by `ganno.report.build_report` from `{results_dir}`. Every number below is read "
        "from the tables in `tables/` (counts are counted from their rows), computed in the same "
        "run. Scores are final test accuracies, with the final test loss beside them; "
        f"aggregates are interquartile means (IQM) with {ci} stratified-bootstrap confidence "
        f"intervals ({cfg['bootstrap_resamples']} resamples, runs resampled within each task). "
        f"Each (method, task, lr0) cell has {len(seeds)} evaluation seeds; "
        f"{meta_seeds_statement(config)} {grid_statement(config)} {tuning_statement(config)} "
        f"{meta_training_statement(config)} {agent_design_statement(config)} "
        f"Pooled numbers are {POOLING} (per task: `tables/generalisation.csv`, its `normaliser` "
        "columns). A verdict is **above** or **below** only where the two confidence intervals "
        "are apart, else **level**."
        + (f" {selection_statement(selection)}" if selection is not None else ""),
        "",
        *[line for section in sections for line in section],
        "## Tables",
        "",
    ]
    captions = _table_captions(config)
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


def _dead_networks(results: pd.DataFrame) -> pd.DataFrame:
    """:func:`ganno.tables.dead_network_check` of every GANNO method, one frame."""
    methods = [m for m in plots.method_order(results["method"].unique()) if plots.is_ganno(m)]
    frames = [dead_network_check(results, m).reset_index().assign(method=m) for m in methods]
    return (
        pd.concat(frames, ignore_index=True) if frames else Tables._field_defaults["dead_networks"]
    )


def _runs_saved(curves: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """:func:`ganno.tuning_budget.runs_saved` of every agent with curves, in one table."""
    agents = [m for m in plots.method_order(curves["method"].unique()) if plots.is_ganno(m)]
    frames = [tuning_budget.runs_saved(curves, m, confidence) for m in agents]
    if not frames:
        return Tables._field_defaults["runs_saved"]
    return pd.concat(frames, ignore_index=True)


def claims_section(
    out_dir: Path, config: Mapping[str, Any], data: ReportData
) -> tuple[Tables, dict[str, TablePaths], dict[str, plots.FigurePaths]]:
    """The tables and figures of the paper's claims (C1-C3) and of meta-training."""
    out = out_dir
    ci = ci_kwargs(config)
    tol = float(config["baselines"]["robustness_tolerance"])
    by = tune_by(config)
    results = data.results
    train = results[results["task"] == TRAIN_TASK]
    by_task = robustness_by_task(results, data.tasks, tolerance=tol, tune_by=by, **ci)
    on_train = by_task[by_task["task"] == TRAIN_TASK].drop(columns="task")

    tables = Tables(
        robustness=on_train.reset_index(drop=True),
        generalisation=generalisation_summary(results, data.tasks, tune_by=by, **ci),
        improvement=improvement_summary(results, data.tasks, tune_by=by, **ci),
        schedules=schedule_summary(data.schedules),
        robustness_by_task=by_task,
        dead_networks=_dead_networks(results),
        runs_saved=_runs_saved(
            curves := tuning_budget.expected_best_curve(results, **ci), ci["confidence"]
        ),
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
            "Tuned test accuracy, IQM [95% CI] / tuned test loss, IQM / runs at chance (every "
            "lr0 and seed), per task (C3); the pooled columns normalised per task.",
        ),
        "improvement": write_table(
            tables.improvement,
            improvement_display(tables.improvement),
            table_dir / "improvement",
            "Probability of improvement of GANNO over each baseline: a higher tuned test "
            "accuracy, a lower tuned test loss.",
        ),
        "robustness_by_task": write_table(
            tables.robustness_by_task,
            robustness_by_task_display(tables.robustness_by_task, data.tasks),
            table_dir / "robustness_by_task",
            "Robust range (decades; +: at the lr0 grid's edge, may be wider) / all-lr0 test "
            "accuracy IQM / runs at chance of every method on every task.",
        ),
        "schedules": write_table(
            tables.schedules,
            schedule_display(tables.schedules),
            table_dir / "schedules",
            "Learning rates set by the agents on the meta-training task (C1).",
        ),
        "tuning_budget": write_table(
            tables.runs_saved,
            tuning_budget.runs_saved_display(tables.runs_saved),
            table_dir / "tuning_budget",
            "Runs of each baseline (lr0 drawn at random from the grid, the best by validation "
            "accuracy kept) needed for its expected best test accuracy to reach one run of the "
            "GANNO agent (C2), per task and pooled over the held-out tasks (normalised).",
        ),
    }

    fig_dir = out / "figures"
    env = config["env"]
    tuned_lr0 = tables.robustness.set_index("method")["tuned_lr0"].to_dict()
    figures = {"meta_training": plots.meta_training_curves(data.curves, fig_dir / "meta_training")}
    figures["tuning_budget"] = tuning_budget.curves_figure(curves, fig_dir / "tuning_budget")
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
        tuned_results(results, by),
        fig_dir / "comparison",
        title="tuned test accuracy over all tasks",
        **ci,
    )
    figures["comparison_loss"] = plots.comparison_plot(
        tuned_results(results, by),
        fig_dir / "comparison_loss",
        metric="test_loss",
        higher_is_better=False,
        title="tuned test loss over all tasks (lower is better)",
        **ci,
    )
    return tables, table_paths, figures


def build_report(
    results_dir: str | Path, out_dir: str | Path, config: Mapping[str, Any] | str | Path
) -> Report:
    """Read the pipeline's results under ``results_dir`` (layout: :mod:`ganno.layout`) and write
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
    tables, table_paths, figures = claims_section(out, config, data)
    extensions = extensions_report.build_extensions(
        out,
        config,
        extensions_report.ExtensionData(
            data.results, data.curves, data.question_results, data.question_curves, data.torch
        ),
    )
    figures |= extensions.figures
    table_paths |= extensions.tables
    q3 = cost.q3_section(out, config, results_dir, tables.runs_saved)
    table_paths |= q3.tables
    atomic_write(out / "config.yaml", yaml.safe_dump(_plain(config), sort_keys=False))
    readme = write_paper_readme(
        out,
        [claims_lines(out, tables, figures, config), extensions.lines, q3.lines],
        table_paths,
        config,
        skipped_tasks(data, config),
        {**data.skipped, **extensions.skipped},
        results_dir,
        data.selection,
    )
    if out.resolve() == Path(DEFAULT_REPORT_DIR).resolve():  # the default run's, paper/
        update_front_door(Path(FRONT_DOOR), readme)
    return Report(readme, figures, table_paths, tables)


#: The repository's README (the front door), relative to the pipeline's working directory: it
#: quotes the verdict table of the default report between these two lines.
FRONT_DOOR = "README.md"
FRONT_DOOR_BEGIN = (
    "<!-- the verdict table of paper/README.md, copied there by `ganno report`: do not edit -->"
)
FRONT_DOOR_END = "<!-- end of the copied verdict table -->"


def verdict_table_of(report_readme: str) -> list[str]:
    """The verdict table ("What reproduces") of a report's README text: its table lines."""
    lines = report_readme.splitlines()
    if "## What reproduces" not in lines:
        return []
    rest = lines[lines.index("## What reproduces") + 1 :]
    table = []
    for line in rest:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return table


def update_front_door(readme: Path, report_readme: Path) -> bool:
    """Copy the report's verdict table into ``readme`` between :data:`FRONT_DOOR_BEGIN` and
    :data:`FRONT_DOOR_END`; False (nothing written) where ``readme`` lacks them."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    if FRONT_DOOR_BEGIN not in text or FRONT_DOOR_END not in text:
        return False
    head, rest = text.split(FRONT_DOOR_BEGIN, 1)
    _, tail = rest.split(FRONT_DOOR_END, 1)
    table = verdict_table_of(report_readme.read_text(encoding="utf-8"))
    new = head + FRONT_DOOR_BEGIN + "\n" + "\n".join(table) + "\n" + FRONT_DOOR_END + tail
    if new != text:
        atomic_write(readme, new)
    return True
