"""The claims' verdicts: where each agent of the claims stands on C1, C2 and C3 against the method
it is held against (``above``, ``level`` or ``below`` from two confidence intervals,
:func:`ganno.stats.compare`; a robust range ``wider``, ``as wide`` or ``narrower``,
:func:`ganno.stats.compare_ranges`), and the table of them that paper/README.md opens with ("What
reproduces") and the repository's README quotes (:mod:`ganno.front_door`).

The numbers come from :class:`Tables`, the claims' tables that :func:`ganno.report.claims_section`
computes; the prose around the verdicts is :mod:`ganno.claims_text`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import pandas as pd

from ganno import plots, stats
from ganno.layout import TRAIN_TASK
from ganno.tables import ALL_TASKS, HELD_OUT, estimate, fmt_ci, fmt_decades


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
