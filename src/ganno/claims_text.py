"""The claims' section of paper/README.md in words: the lines of C1 (competitive schedules), C2
(robustness to the initial learning rate) and C3 (generalisation), each number read from
:class:`ganno.verdicts.Tables` and each verdict stated as :mod:`ganno.verdicts` decides it, with
the claims' figures and the "What reproduces" table (:func:`claims_lines`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganno import plots, stats, tuning_budget
from ganno.layout import TRAIN_TASK
from ganno.tables import (
    ALL_TASKS,
    DEAD_RUNS_PER_SEED_MAX,
    DEAD_SHARE_MAX,
    HELD_OUT,
    estimate,
    figure_lines,
    fmt,
    fmt_chance,
    fmt_ci,
    fmt_decades,
    fmt_lr,
    task_standings,
)
from ganno.verdicts import (
    Tables,
    _handcrafted,
    _range,
    _scope,
    _verdict,
    c1_verdicts,
    c2_verdicts,
    c3_verdicts,
    claim_verdicts,
    stated,
    verdict_table,
)


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

    def figure(name: str, caption: str) -> list[str]:
        return figure_lines(out, figures[name], caption) if name in figures else []

    return [
        *_what_reproduces(tables),
        "## C1 Competitive schedules",
        "",
        *_c1_lines(tables),
        "",
        *figure(
            "schedules",
            "Per-layer learning rates chosen by the agents from three initial rates (median over "
            "runs, band min-max), beside the handcrafted SGD schedules at their tuned lr0.",
        ),
        *_c2_section(tables, tol, ci, figure),
        *_c3_section(tables, ci, figure),
        "## Meta-training",
        "",
        *figure(
            "meta_training",
            "Episode return and episode-end validation loss during meta-training (mean over "
            "seeds, band min-max).",
        ),
    ]


def _what_reproduces(tables: Tables) -> list[str]:
    """The verdict table of every agent's claims, with how to read it (none without verdicts)."""
    verdicts = verdict_table(claim_verdicts(tables))
    if not verdicts:
        return []
    return [
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


def _c2_section(
    tables: Tables, tol: float, ci: str, figure: Callable[[str, str], list[str]]
) -> list[str]:
    """C2: the robust range's definition, each agent's lines, the robustness and tuning-budget
    figures."""
    return [
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
    ]


def _c3_section(tables: Tables, ci: str, figure: Callable[[str, str], list[str]]) -> list[str]:
    """C3: the tasks with results, each agent's lines, the per-task and pooled figures."""
    tasks = [
        t for t in dict.fromkeys(tables.generalisation["task"]) if t not in (ALL_TASKS, HELD_OUT)
    ]
    return [
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
    ]
