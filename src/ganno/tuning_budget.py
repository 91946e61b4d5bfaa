"""What tuning does GANNO save? Expected best accuracy after ``k`` training runs (issue 39).

A practitioner with a new network does not know its learning rate: they train a few runs at
different initial rates and keep the one with the best validation accuracy. The question C2 puts
to a method is how much of that search it saves, so the unit here is a *run*, and a method's
score after a budget of ``k`` runs is its *expected best accuracy* (Dodge et al., 2019, "Show Your
Work: Improved Reporting of Experimental Results"): draw ``k`` initial rates uniformly at random
*with replacement* from the lr0 grid, train one run at each, keep the run with the best validation
accuracy and report its test accuracy. The expectation is exact, from order statistics, never
simulated (:func:`expected_best`).

**Seeds.** One run is (lr0, evaluation seed) for a baseline and (lr0, evaluation seed,
meta-training seed) for a GANNO method: a practitioner who ships one policy gets one meta-training
seed, so the spread over meta-training seeds is part of the method's risk. A *unit* is one
``(meta_seed, seed)`` pair (``meta_seed`` is -1 for baselines, so a baseline's units are its
evaluation seeds); the candidates of one draw are that unit's runs over the lr0 grid. The curve of
a (method, task) is the mean over its units of each unit's exact curve, and its confidence
interval is a percentile bootstrap that resamples units with replacement.

**Pooling.** Over the held-out tasks (every task but :data:`ganno.layout.TRAIN_TASK`, or those
given), each task's curve is normalised as the report pools scores (:data:`ganno.tables.POOLING`):
``(score - chance) / (best tuned baseline - chance)``, chance = ``1 / NUM_CLASSES``, where the
*best tuned baseline* of a task is the largest expected best accuracy at ``k = n`` (the whole grid's
size) among the non-GANNO methods: the grid-tuned value, in expectation over the draws. The pooled
curve is the mean of the normalised curves, its bootstrap stratified by task (units resampled
within each task, the normalisers held at their point values).

**Runs saved** (:func:`runs_saved`): the smallest ``k`` at which a baseline's curve reaches a GANNO
method's value at ``k = 1`` (one run at a random lr0, no tuning at all).

Validation accuracy chooses, as in :func:`ganno.tables.tune`; a non-finite validation accuracy
counts as the worst. Unlike ``tune`` (which breaks ties by validation loss, then the smaller lr0)
tied validation accuracies are broken uniformly at random: the expectation is then exact without a
second criterion, and a practitioner reading accuracies alone has no better rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from ganno import plots, tables
from ganno.agents import is_ganno
from ganno.layout import TRAIN_TASK

#: The task label of the pooled curve (normalised per task, so not an accuracy).
POOLED = f"{tables.HELD_OUT} (normalised)"
#: The column of :func:`expected_best_curve` with the curve's value in every bootstrap resample.
BOOTSTRAP = "bootstrap"
#: Labels of :func:`runs_saved` where no number says it.
ALREADY = "already at k = 1"
NEVER = "never within the grid"
#: Curves are exact, so "reaches" may only forgive floating-point rounding.
_TOLERANCE = 1e-12
#: A unit of the bootstrap: one evaluation seed of one meta-training seed (-1 for baselines).
UNIT = ["meta_seed", "seed"]


# --------------------------------------------------------------------------------------------
# The exact expectation
# --------------------------------------------------------------------------------------------


def expected_best(val: Any, test: Any, ks: Any) -> np.ndarray:
    """The expected ``test`` score of the ``val``-best of ``k`` draws with replacement from the
    ``n`` candidates, for every ``k`` of ``ks``.

    Sorted by ``val``, the best of ``k`` draws is at rank ``<= i`` with probability ``(i/n)^k``,
    so at rank ``i`` with ``(i/n)^k - ((i-1)/n)^k``. Candidates tied in ``val`` over ranks
    ``a..b`` hold ``(b/n)^k - ((a-1)/n)^k`` between them, shared equally: the draws are
    exchangeable and a uniformly random tie-break favours no member, so by symmetry each is kept
    equally often (whether the tie is broken among distinct candidates or among draws). A
    non-finite ``val`` is the worst; a non-finite ``test`` (no finite network to score) counts as
    chance, so one lost run cannot blank a whole curve.

    The result need not rise with ``k``: where validation and test disagree, more draws find
    more runs that only look good on validation.
    """
    val = np.asarray(val, float).ravel()
    test = np.asarray(test, float).ravel()
    if val.shape != test.shape or val.size == 0:
        raise ValueError(f"need as many val as test scores, at least one: {val.size}, {test.size}")
    val = np.where(np.isfinite(val), val, -np.inf)
    test = np.where(np.isfinite(test), test, tables.CHANCE)
    order = np.argsort(val, kind="stable")
    _, start, size = np.unique(val[order], return_index=True, return_counts=True)
    group_test = np.add.reduceat(test[order], start) / size
    n = val.size
    k = np.asarray(ks, float)[..., None]
    mass = ((start + size) / n) ** k - (start / n) ** k  # [..., groups]
    return mass @ group_test


# --------------------------------------------------------------------------------------------
# Curves per (method, task), pooled, with bootstrap resamples
# --------------------------------------------------------------------------------------------


def _percentiles(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return low, high


def _unit_curves(cell: pd.DataFrame, select_by: str, metric: str) -> tuple[np.ndarray, int]:
    """Per unit of one (method, task), its exact curve over ``k = 1 .. n``, ``n`` the largest
    unit's grid (a unit missing an lr0 draws from what it has)."""
    units = [u for _, u in cell.groupby(UNIT, sort=True, dropna=False)]
    n = max(len(u) for u in units)
    ks = np.arange(1, n + 1)
    curves = np.stack([expected_best(u[select_by], u[metric], ks) for u in units])
    return curves, n


def _bootstrap_means(
    unit_curves: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``[n_resamples, K]`` means of units resampled with replacement (every resample the point
    value where there is a single unit: no spread to resample)."""
    units = unit_curves.shape[0]
    if units < 2:
        return np.repeat(unit_curves.mean(axis=0)[None], n_resamples, axis=0)
    idx = rng.integers(0, units, size=(n_resamples, units))
    return unit_curves[idx].mean(axis=1)


def _rows(
    method: str,
    task: str,
    expected: np.ndarray,
    boot: np.ndarray,
    n: int,
    units: int,
    confidence: float,
) -> pd.DataFrame:
    low, high = _percentiles(boot, confidence)
    k = np.arange(1, expected.size + 1)
    return pd.DataFrame(
        {
            "method": method,
            "task": task,
            "k": k,
            "expected": expected,
            "low": low,
            "high": high,
            "n": n,
            "units": units,
            BOOTSTRAP: list(boot.T),
        }
    )


def held_out_tasks(results: pd.DataFrame) -> list[str]:
    """Every task of ``results`` but the meta-training task, in order of appearance."""
    return [t for t in dict.fromkeys(results["task"]) if t != TRAIN_TASK]


def normalisers(curves: pd.DataFrame, tasks: Sequence[str]) -> pd.Series:
    """Per task of ``tasks``: the best tuned baseline's score, the largest value at ``k = n``
    among the non-GANNO methods (the grid-tuned value in expectation). A task with no baseline,
    or whose best baseline is at chance, has none (nothing to scale by)."""
    at_n = curves[
        (curves["k"] == curves["n"])
        & ~curves["method"].map(is_ganno).astype(bool)
        & curves["task"].isin(tasks)
    ]
    best = at_n.groupby("task", sort=False)["expected"].max()
    return best[best > tables.CHANCE].reindex([t for t in tasks if t in best.index]).dropna()


def _pooled(curves: pd.DataFrame, tasks: Sequence[str], confidence: float) -> pd.DataFrame:
    """Each method's mean over ``tasks`` of its normalised curves, for ``k`` up to its smallest
    grid among them; a method without a curve on every normalisable task gets no pooled row (its
    mean would be over other tasks than the baselines')."""
    norms = normalisers(curves, tasks)
    if norms.empty:
        return curves.iloc[:0]
    frames = []
    for method, mine in curves[curves["task"].isin(norms.index)].groupby("method", sort=False):
        per_task = dict(tuple(mine.groupby("task", sort=False)))
        if set(per_task) != set(norms.index):
            continue
        n = min(int(c["n"].iloc[0]) for c in per_task.values())
        expected, boot = [], []
        for task, cell in per_task.items():
            cell = cell.sort_values("k").iloc[:n]
            scale = norms[task] - tables.CHANCE
            expected.append((cell["expected"].to_numpy() - tables.CHANCE) / scale)
            boot.append((np.stack(cell[BOOTSTRAP].to_list(), axis=1) - tables.CHANCE) / scale)
        units = int(sum(c["units"].iloc[0] for c in per_task.values()))
        frames.append(
            _rows(
                method,
                POOLED,
                np.mean(expected, axis=0),
                np.mean(boot, axis=0),  # tasks resampled independently: a stratified bootstrap
                n,
                units,
                confidence,
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else curves.iloc[:0]


def expected_best_curve(
    results: pd.DataFrame,
    *,
    tasks: Sequence[str] | None = None,
    select_by: str = "val_accuracy",
    metric: str = "test_accuracy",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Expected best ``metric`` after ``k = 1 .. n`` runs, per method and task, and pooled.

    ``results``: a results table (:data:`ganno.results.COLUMNS`). ``tasks``: the tasks pooled
    into the :data:`POOLED` rows (default :func:`held_out_tasks`). ``confidence``,
    ``n_resamples`` and ``seed`` as in :func:`ganno.stats.stratified_bootstrap_ci` (so
    :func:`ganno.tables.ci_kwargs` fits).

    Columns: ``method, task, k, expected, low, high`` (the mean over units and its percentile
    bootstrap interval), ``n`` (the grid size, so ``k = n`` is the tuned value; pooled: the
    smallest over the tasks), ``units`` (the units resampled) and :data:`BOOTSTRAP` (per row, the
    value in each resample; resample ``b`` of every row of one method and task is the same draw
    of units, which :func:`runs_saved` relies on). Drop :data:`BOOTSTRAP` before writing a CSV.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for (method, task), cell in results.groupby(["method", "task"], sort=True):
        unit_curves, n = _unit_curves(cell, select_by, metric)
        boot = _bootstrap_means(unit_curves, n_resamples, rng)
        frames.append(
            _rows(method, task, unit_curves.mean(axis=0), boot, n, len(unit_curves), confidence)
        )
    if not frames:
        columns = ["method", "task", "k", "expected", "low", "high", "n", "units", BOOTSTRAP]
        return pd.DataFrame(columns=columns)
    curves = pd.concat(frames, ignore_index=True)
    pooled = _pooled(curves, held_out_tasks(results) if tasks is None else tasks, confidence)
    return pd.concat([curves, pooled], ignore_index=True)


# --------------------------------------------------------------------------------------------
# Runs saved
# --------------------------------------------------------------------------------------------


def first_reach(curve: np.ndarray, target: Any) -> np.ndarray:
    """The smallest ``k`` (1-based) at which ``curve[..., k - 1] >= target``; ``K + 1`` (one past
    the curve's ``K`` points) where it never does, so "never" orders after every ``k`` and a
    percentile of resamples stays a number."""
    curve = np.asarray(curve, float)
    reached = curve >= np.asarray(target, float)[..., None] - _TOLERANCE
    k = np.argmax(reached, axis=-1) + 1
    return np.where(reached.any(axis=-1), k, curve.shape[-1] + 1)


def _label(k: int, n: int) -> str:
    if k == 1:
        return ALREADY
    if k > n:
        return NEVER
    return str(int(k))


def runs_saved(curves: pd.DataFrame, ganno_method: str, confidence: float = 0.95) -> pd.DataFrame:
    """For every baseline (non-GANNO method) and every task ``ganno_method`` has a curve on: the
    smallest ``k`` at which the baseline's expected best reaches ``ganno_method``'s at ``k = 1``.

    Columns: ``method`` (the baseline), ``task``, ``k_needed``, ``low``, ``high``, ``label``
    (:data:`ALREADY` where ``k_needed`` is 1, :data:`NEVER` where the baseline stays below up to
    its grid's ``n``, else the number), ``n``, ``ganno_method``, ``ganno_k1`` (the target) and
    ``tuned`` (the baseline at ``k = n``). *Never* is ``k_needed = n + 1``: one run past the grid,
    so it sorts after every reachable ``k``. ``low``/``high`` are the lower/upper
    ``confidence`` percentiles of the ``k`` found in each bootstrap resample (resample ``b`` of
    the baseline against resample ``b`` of GANNO, drawn independently; both whole numbers, a
    bound of ``n + 1`` meaning never); NaN where ``curves`` has no :data:`BOOTSTRAP` column.
    """
    ours = curves[curves["method"] == ganno_method]
    if ours.empty:
        raise ValueError(f"no curve of {ganno_method!r}; methods: {sorted(set(curves['method']))}")
    alpha = 100 * (1.0 - confidence) / 2
    rows = []
    for task, mine in ours.groupby("task", sort=False):
        start = mine[mine["k"] == 1].iloc[0]
        here = curves[(curves["task"] == task) & ~curves["method"].map(is_ganno).astype(bool)]
        for method, cell in here.groupby("method", sort=False):
            cell = cell.sort_values("k")
            n = int(cell["n"].iloc[0])
            curve = cell["expected"].to_numpy()[:n]
            k = int(first_reach(curve, start["expected"]))
            low = high = np.nan
            if BOOTSTRAP in cell:
                boot = np.stack(cell[BOOTSTRAP].to_list()[:n], axis=1)  # [resamples, n]
                ks = first_reach(boot, np.asarray(start[BOOTSTRAP]))
                low = float(np.percentile(ks, alpha, method="lower"))
                high = float(np.percentile(ks, 100 - alpha, method="higher"))
            rows.append(
                {
                    "method": method,
                    "task": task,
                    "k_needed": k,
                    "low": low,
                    "high": high,
                    "label": _label(k, n),
                    "n": n,
                    "ganno_method": ganno_method,
                    "ganno_k1": float(start["expected"]),
                    "tuned": float(curve[-1]),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Display and the C2 sentence
# --------------------------------------------------------------------------------------------


def task_order(tasks: Any) -> list[str]:
    """The meta-training task first, the others as they come, the pooled row last: the order a
    reader compares them in (trained on, transferred to, overall)."""
    tasks = list(dict.fromkeys(tasks))
    first = [TRAIN_TASK] if TRAIN_TASK in tasks else []
    last = [POOLED] if POOLED in tasks else []
    return first + [t for t in tasks if t not in (TRAIN_TASK, POOLED)] + last


def _fmt_k(k: float, n: int) -> str:
    if not np.isfinite(k):
        return "-"
    return "never" if k > n else str(int(k))


def fmt_runs(row: pd.Series) -> str:
    """``4 [3, 6]``; ``already at k = 1 [1, 2]``; ``never within the grid (n = 12) [9, never]``."""
    point = row["label"] if row["label"] != NEVER else f"{NEVER} (n = {int(row['n'])})"
    if not np.isfinite(row["low"]):
        return point
    return f"{point} [{_fmt_k(row['low'], row['n'])}, {_fmt_k(row['high'], row['n'])}]"


def runs_saved_display(saved: pd.DataFrame) -> pd.DataFrame:
    """:func:`runs_saved` as strings (``DataFrame.to_markdown`` or
    :func:`ganno.tables.write_table` ready), baselines ordered by their tuned score."""
    rank = {t: i for i, t in enumerate(task_order(saved["task"]))}
    shown = saved.assign(_task=saved["task"].map(rank)).sort_values(
        ["ganno_method", "_task", "tuned"], ascending=[True, True, False], kind="stable"
    )
    return pd.DataFrame(
        {
            "GANNO method": shown["ganno_method"],
            "task": shown["task"],
            "baseline": shown["method"],
            "runs it needs to match GANNO's one run [95% CI]": shown.apply(fmt_runs, axis=1),
            "GANNO at k = 1": shown["ganno_k1"].map(tables.fmt),
            "baseline tuned (k = n)": shown["tuned"].map(tables.fmt),
        }
    ).reset_index(drop=True)


def _where(task: str) -> str:
    return "over the held-out tasks (normalised)" if task == POOLED else f"on {task}"


def c2_sentence(saved: pd.DataFrame, task: str = POOLED, baseline: str | None = None) -> str:
    """What one untuned GANNO run is worth, in runs of ``baseline`` (default: the best tuned
    baseline on ``task``, the one a practitioner would otherwise tune), and which baselines
    match it from their own first run. ``saved``: one GANNO method's :func:`runs_saved`."""
    here = saved[saved["task"] == task]
    if here.empty:
        raise ValueError(f"no runs-saved rows on {task!r}; tasks: {sorted(set(saved['task']))}")
    ganno = here["ganno_method"].iloc[0]
    name = here.loc[here["tuned"].idxmax(), "method"] if baseline is None else baseline
    if name not in set(here["method"]):
        raise ValueError(f"no baseline {name!r} on {task!r}; baselines: {sorted(here['method'])}")
    ref = here[here["method"] == name].iloc[0]
    n = int(ref["n"])
    interval = (
        ""
        if not np.isfinite(ref["low"])
        else f" [{_fmt_k(ref['low'], n)}, {_fmt_k(ref['high'], n)}]"
    )
    where = _where(task)
    if ref["label"] == NEVER:
        head = (
            f"From one run at any lr0, {ganno} is worth more than all {n} runs of tuned {name} "
            f"{where} (never reached within the grid{interval})"
        )
    else:
        runs = "run" if ref["k_needed"] == 1 else "runs"
        head = (
            f"From one run at any lr0, {ganno} is worth k = {int(ref['k_needed'])}{interval} "
            f"{runs} of tuned {name} {where}"
        )
    early = [m for m in here.loc[here["label"] == ALREADY, "method"] if m != name]
    if early:
        verb = "reaches" if len(early) == 1 else "reach"
        tail = f"; {', '.join(early)} {verb} it at k = 1"
    else:
        tail = "; no other baseline reaches it at k = 1"
    return head + tail + "."


# --------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------


def curves_figure(
    curves: pd.DataFrame, stem: str | Path, *, col_wrap: int = 4, title: str | None = None
) -> plots.FigurePaths:
    """Expected best test accuracy against the budget ``k`` (log x), one panel per task and the
    pooled one last, each method's mean over units with its bootstrap band; GANNO methods thick
    and on top, each with a dotted line at its ``k = 1`` value, so where a baseline's curve
    crosses it is read off as the runs it needs (:func:`runs_saved`). The CSV is ``curves``
    without :data:`BOOTSTRAP`."""
    data = curves.drop(columns=[BOOTSTRAP], errors="ignore").reset_index(drop=True)
    tasks = task_order(data["task"])
    methods = plots.method_order(data["method"].unique())
    palette = plots.method_palette(methods)
    ncols = max(1, min(col_wrap, len(tasks)))
    nrows = int(np.ceil(len(tasks) / ncols))
    kmax = int(data["k"].max())
    ticks = [k for k in (1, 2, 3, 5, 10, 20, 50, 100) if k <= kmax] + [kmax]
    with plots._style():
        fig = Figure(figsize=(3.6 * ncols + 0.5, 3.0 * nrows + 0.8), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, task in zip(axes, tasks, strict=False):
            panel = data[data["task"] == task]
            for i, method in enumerate(methods):
                line = panel[panel["method"] == method].sort_values("k")
                if line.empty:
                    continue
                big = is_ganno(method)
                color = palette[method]
                z = 5 if big else 2
                plots.band_and_line(ax, line["k"], line["expected"], line["low"], line["high"],
                                    method, i, color, band_alpha=0.06, lw=1.1, ms=3)  # fmt: skip
                if big:
                    ax.axhline(line["expected"].iloc[0], color=color, lw=1, ls=":", zorder=z)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(sorted(set(ticks))))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([str(k) for k in sorted(set(ticks))])
            ax.set_xlim(0.9, kmax * 1.1)
            ax.set_title(str(task), fontweight="bold" if task == POOLED else None)
            ax.set_xlabel("runs k (lr0 drawn from the grid)")
            ax.set_ylabel(
                "normalised (1 = best tuned baseline)"
                if task == POOLED
                else "expected best test acc."
            )
        for ax in axes[len(tasks) :]:
            ax.set_visible(False)
        handles = [
            Line2D(
                [],
                [],
                color=palette[m],
                lw=2.6 if is_ganno(m) else 1.1,
                marker=None if is_ganno(m) else plots.MARKERS[i % len(plots.MARKERS)],
                ms=3,
            )
            for i, m in enumerate(methods)
        ]
        fig.legend(
            handles,
            methods,
            loc="outside lower center",
            frameon=False,
            ncols=min(len(methods), plots.LEGEND_COLUMNS),
            fontsize=8,
        )
        fig.suptitle(
            title or "Expected best test accuracy after k runs (95% bootstrap CI over seeds)"
        )
        return plots._save(fig, data, stem)
