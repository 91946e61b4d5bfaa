"""The paper's figures, drawn with seaborn from tidy DataFrames.

Every function takes DataFrames and an output *stem* (a path without suffix) and writes
``<stem>.png``, ``<stem>.pdf`` and ``<stem>.csv``: the CSV holds exactly the numbers drawn (after
any aggregation), so every point of a figure can be traced to a file. Figures are built on
``matplotlib.figure.Figure`` directly (no pyplot state, no display needed) inside seaborn's style
contexts, so importing this module changes no global settings.

Intervals are the stratified-bootstrap confidence intervals of :mod:`ganno.stats`; the curves of
meta-training show the range over seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator

from ganno import schedules, stats
from ganno.agents import is_ganno
from ganno.io import atomic_open, write_csv

DPI = 150
#: GANNO policies are drawn in these colours, thicker and on top of the baselines.
GANNO_COLORS = ("#000000", "#d62728", "#7b2cbf", "#2a9d8f")
#: Baselines: tab10 without its red (GANNO's), then the light tab20 shades.
BASELINE_COLORS = tuple(c for i, c in enumerate(sns.color_palette("tab10").as_hex()) if i != 3) + (
    tuple(sns.color_palette("tab20").as_hex()[1::2])
)
KIND_COLORS = {"schedule": "#1f77b4", "adaptive": "#7f7f7f"}
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "P", "<", ">", "h", "*")
#: Initial rates whose agent schedules :func:`schedule_figure` shows by default.
SCHEDULE_LR0S = (1e-4, 1e-2, 1.0)


class FigurePaths(NamedTuple):
    """The files of one figure."""

    png: Path
    pdf: Path
    csv: Path


# --------------------------------------------------------------------------------------------
# Methods: kinds, order, colours
# --------------------------------------------------------------------------------------------


def method_kind(method: str) -> str:
    """``ganno``; ``schedule`` (a baseline with a fixed rate shape,
    :data:`ganno.schedules.SCHEDULED_METHODS`); or ``adaptive`` (learning-rate-free and
    adaptive)."""
    if is_ganno(method):
        return "ganno"
    return "schedule" if _has_schedule(method) else "adaptive"


def _has_schedule(method: str) -> bool:
    return method in schedules.SCHEDULED_METHODS


def method_order(methods: Iterable[str]) -> list[str]:
    """GANNO methods first, then the baselines in registry order (unknown names last, sorted)."""
    methods = list(dict.fromkeys(methods))
    registry = list(schedules.METHOD_NAMES)

    def key(m: str) -> tuple[int, int, str]:
        if is_ganno(m):
            return (0, 0, m)
        return (1, registry.index(m), m) if m in registry else (2, 0, m)

    return sorted(methods, key=key)


def method_palette(methods: Iterable[str]) -> dict[str, Any]:
    """A colour per method: GANNO methods from :data:`GANNO_COLORS`, baselines in order."""
    ordered = method_order(methods)
    ganno = [m for m in ordered if is_ganno(m)]
    others = [m for m in ordered if not is_ganno(m)]
    palette = {m: GANNO_COLORS[i % len(GANNO_COLORS)] for i, m in enumerate(ganno)}
    palette |= {m: BASELINE_COLORS[i % len(BASELINE_COLORS)] for i, m in enumerate(others)}
    return palette


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


@contextmanager
def _style():
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        yield


def _save(fig: Figure, data: pd.DataFrame, stem: str | Path) -> FigurePaths:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = FigurePaths(*(stem.parent / f"{stem.name}.{ext}" for ext in ("png", "pdf", "csv")))
    write_csv(data, paths.csv)
    with atomic_open(paths.png, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight")
    # No creation date in the PDF: rerunning on the same data gives the same bytes.
    with atomic_open(paths.pdf, "wb") as f:
        fig.savefig(f, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    return paths


def _ci(values: Any, statistic: Any, **ci_kwargs: Any) -> stats.Estimate:
    """``statistic`` of one cell's finite runs with its bootstrap CI (no CI below two runs)."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return stats.Estimate(np.nan, np.nan, np.nan)
    if x.size < 2:
        return stats.Estimate(float(x[0]), float(x[0]), float(x[0]))
    return stats.stratified_bootstrap_ci({"cell": x}, statistic, **ci_kwargs)


def _log_lr_axis(ax: Any, axis: str = "x") -> None:
    getattr(ax, f"set_{axis}scale")("log")
    getattr(ax, f"{axis}axis").set_major_locator(LogLocator(base=10, numticks=20))


def _nearest(values: Sequence[float], targets: Sequence[float]) -> list[float]:
    """For every target, the value nearest to it on a log scale (duplicates dropped)."""
    values = np.asarray(sorted(set(values)), float)
    picked = [float(values[np.argmin(np.abs(np.log(values / t)))]) for t in targets]
    return list(dict.fromkeys(picked))


def _fmt_lr(x: float) -> str:
    return f"{x:.3g}"


def _pointrange(
    ax: Any, frame: pd.DataFrame, order: Sequence[str], value: str, low: str, high: str
) -> None:
    """Horizontal point-ranges, one row per method of ``order`` (top to bottom)."""
    y = {m: i for i, m in enumerate(order)}
    colors = _pointrange_colors(order)
    for _, row in frame.iterrows():
        if row["method"] not in y:
            continue
        kind = method_kind(row["method"])
        color = colors[row["method"]]
        big = kind == "ganno"
        yi = y[row["method"]]
        if big:  # a band across the panel at GANNO's interval, to compare every method with it
            ax.axvspan(row[low], row[high], color=color, alpha=0.10, lw=0, zorder=0)
        ax.plot([row[low], row[high]], [yi, yi], color=color, lw=2.6 if big else 1.6, zorder=2)
        ax.plot(row[value], yi, "D" if big else "o", color=color, ms=7 if big else 5, zorder=3)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.5)
    for label in ax.get_yticklabels():
        if is_ganno(label.get_text()):
            label.set_fontweight("bold")
            label.set_color(colors[label.get_text()])


def _pointrange_colors(methods: Iterable[str]) -> dict[str, Any]:
    """GANNO methods in their own colours (:func:`method_palette`), baselines by kind."""
    palette = method_palette(methods)
    return {m: palette[m] if is_ganno(m) else KIND_COLORS[method_kind(m)] for m in palette}


#: The most entries a legend row holds.
LEGEND_COLUMNS = 8


def _kind_legend(fig: Figure, methods: Sequence[str]) -> None:
    names = {"schedule": "scheduled SGD/Adam", "adaptive": "LR-free / adaptive"}
    colors = _pointrange_colors(methods)
    entries = [(m, colors[m], "D") for m in method_order(methods) if is_ganno(m)]
    entries += [
        (names[k], KIND_COLORS[k], "o") for k in names if any(method_kind(m) == k for m in methods)
    ]
    handles = [Line2D([], [], color=c, marker=mk, lw=1.6) for _, c, mk in entries]
    fig.legend(
        handles,
        [name for name, _, _ in entries],
        loc="lower center",
        ncols=min(len(handles), LEGEND_COLUMNS),  # a study's dozens of agents wrap into rows
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
    )


# --------------------------------------------------------------------------------------------
# Meta-training curves
# --------------------------------------------------------------------------------------------

CURVE_METRICS = {
    "episode_return": "episode return",
    "val_loss": "episode-end validation loss",
}


def meta_training_curves(
    curves: pd.DataFrame, stem: str | Path, *, smooth_updates: int = 5
) -> FigurePaths:
    """Episode return and episode-end validation loss against environment steps, one line per
    algorithm: the mean over meta-training seeds, with a band from the lowest to the highest seed.

    ``curves``: the rows of ``learning_curve.jsonl`` files with an ``algo`` column added (columns
    ``algo, seed, env_steps, episode_return, val_loss``). Each seed's curve is first smoothed by a
    trailing mean over ``smooth_updates`` updates (1: no smoothing).
    """
    rows = []
    for (algo, seed), run in curves.sort_values("env_steps").groupby(["algo", "seed"]):
        for metric in CURVE_METRICS:
            smoothed = run[metric].astype(float).rolling(smooth_updates, min_periods=1).mean()
            rows.append(
                pd.DataFrame(
                    {
                        "algo": algo,
                        "seed": seed,
                        "metric": metric,
                        "env_steps": run["env_steps"].to_numpy(),
                        "value": smoothed.to_numpy(),
                    }
                )
            )
    columns = ["algo", "seed", "metric", "env_steps", "value"]
    long = pd.concat([pd.DataFrame(columns=columns), *rows], ignore_index=True)
    long = long.dropna(subset=["value"]).astype({"env_steps": float, "value": float})
    data = (
        long.groupby(["algo", "metric", "env_steps"], sort=True)["value"]
        .agg(mean="mean", low="min", high="max", seeds="count")
        .reset_index()
    )
    data["smooth_updates"] = smooth_updates
    algos = sorted(data["algo"].unique())
    colors = {a: GANNO_COLORS[i % len(GANNO_COLORS)] for i, a in enumerate(algos)}
    with _style():
        fig = Figure(figsize=(11, 4), layout="constrained")
        axes = fig.subplots(1, len(CURVE_METRICS))
        for ax, (metric, label) in zip(axes, CURVE_METRICS.items(), strict=True):
            part = data[data["metric"] == metric]
            for algo in algos:
                line = part[part["algo"] == algo]
                seeds = int(line["seeds"].max())
                ax.fill_between(
                    line["env_steps"], line["low"], line["high"], color=colors[algo], alpha=0.2
                )
                ax.plot(
                    line["env_steps"],
                    line["mean"],
                    color=colors[algo],
                    lw=1.8,
                    label=f"{algo.upper()} ({seeds} seed{'s' if seeds > 1 else ''})",
                )
            ax.set_xlabel("environment steps (agent decisions)")
            ax.set_ylabel(label)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        if algos:
            axes[0].legend(title="mean; band: min-max over seeds", loc="lower right")
        else:
            axes[0].text(0.5, 0.5, "no learning curves", ha="center", transform=axes[0].transAxes)
        fig.suptitle(
            f"Meta-training (trailing mean over {smooth_updates} updates)"
            if smooth_updates > 1
            else "Meta-training"
        )
        return _save(fig, data, stem)


# --------------------------------------------------------------------------------------------
# Learning-rate schedules (C1)
# --------------------------------------------------------------------------------------------


def handcrafted_schedules(tuned_lr0: Mapping[str, float], total_steps: int) -> pd.DataFrame:
    """``lr0 x unit_schedule(method)`` at every inner step for each scheduled SGD baseline in
    ``tuned_lr0`` (method -> its tuned lr0); columns method, lr0, step, learning_rate."""
    steps = np.arange(total_steps + 1)
    frames = []
    for method in method_order(tuned_lr0):
        lr0 = tuned_lr0[method]
        if not method.startswith("sgd_") or method_kind(method) != "schedule":
            continue
        rates = schedules.unit_schedule(method, total_steps, steps).astype(float) * float(lr0)
        frames.append(
            pd.DataFrame(
                {"method": method, "lr0": float(lr0), "step": steps, "learning_rate": rates}
            )
        )
    if not frames:
        return pd.DataFrame(columns=["method", "lr0", "step", "learning_rate"])
    return pd.concat(frames, ignore_index=True)


def schedule_figure(
    schedules: pd.DataFrame,
    tuned_lr0: Mapping[str, float],
    stem: str | Path,
    *,
    total_steps: int,
    lr0s: Sequence[float] = SCHEDULE_LR0S,
) -> FigurePaths:
    """Each layer's learning rate as the agents set it, against the inner step, from a few
    initial rates (one row of panels per GANNO method), beside the handcrafted SGD schedules at
    each baseline's tuned lr0.

    ``schedules``: the policies' rate tables (``method, lr0, seed, step, layer, learning_rate``;
    ``meta_seed`` optional). The row at step ``s`` is the rate used on the interval ending at
    ``s`` (step 0: the initial rate), so lines are drawn as steps. Per layer the line is the median
    over evaluation seeds (and policies), the band spans their minimum to maximum. ``lr0s`` are
    matched to the nearest grid values. ``tuned_lr0``: method -> tuned lr0 (baselines; only the
    scheduled SGD ones are drawn).
    """
    methods = method_order(schedules["method"].unique()) if len(schedules) else []
    shown = _nearest(schedules["lr0"].unique(), lr0s) if methods else []
    agent = _rate_bands(schedules[schedules["lr0"].isin(shown)])
    hand = handcrafted_schedules(tuned_lr0, total_steps)
    hand_data = hand.assign(
        source="handcrafted",
        layer=-1,
        median=hand["learning_rate"],
        low=hand["learning_rate"],
        high=hand["learning_rate"],
        runs=1,
    ).drop(columns="learning_rate")
    data = pd.concat([agent, hand_data[agent.columns]], ignore_index=True)

    # The agents' rates set the y range; a schedule decaying to 0 leaves it at the bottom.
    scale = agent if len(agent) else hand_data
    positive = scale.loc[scale["low"] > 0, "low"]
    ymin = 10 ** np.floor(np.log10(positive.min() / 2)) if len(positive) else 1e-6
    ymax = 10 ** np.ceil(np.log10(data["high"].max() * 1.5)) if len(data) else 10.0
    rows, cols = max(len(methods), 1), len(shown) + 1
    with _style():
        fig = Figure(figsize=(3.2 * cols + 1.5, 2.9 * rows + 0.6), layout="constrained")
        grid = fig.add_gridspec(rows, cols)
        layers = sorted(agent["layer"].unique())
        layer_colors = dict(zip(layers, sns.color_palette("Dark2", len(layers)), strict=True))
        first = None
        for r, method in enumerate(methods):
            for c, lr0 in enumerate(shown):
                ax = fig.add_subplot(grid[r, c], sharey=first, sharex=first)
                first = first or ax
                cell = agent[(agent["method"] == method) & (agent["lr0"] == lr0)]
                _agent_rates_panel(ax, cell, layer_colors, lr0)
                ax.set_title(f"{method}, lr0 = {_fmt_lr(lr0)}", fontsize=10)
                ax.set_xlabel("inner step" if r == rows - 1 else "")
                ax.set_ylabel("learning rate" if c == 0 else "")
                if r == 0 and c == 0:
                    ax.legend(
                        fontsize=8, loc="best", title="median; band: min-max", title_fontsize=8
                    )
        ax = fig.add_subplot(grid[:, -1], sharey=first, sharex=first)
        first = first or ax
        _handcrafted_panel(ax, hand)
        _log_lr_axis(first, "y")
        first.set_ylim(ymin, ymax)
        first.set_xlim(0, total_steps)
        fig.suptitle("Learning rates chosen by the agents (per layer) and handcrafted schedules")
        return _save(fig, data, stem)


def _rate_bands(schedules: pd.DataFrame) -> pd.DataFrame:
    """Per method, lr0, layer and step: the median rate over runs (evaluation seeds and
    policies), its minimum and maximum, and the count of runs; ``source`` "agents"."""
    agent = (
        schedules.groupby(["method", "lr0", "layer", "step"], sort=True)["learning_rate"]
        .agg(median="median", low="min", high="max", runs="count")
        .reset_index()
    )
    agent.insert(0, "source", "agents")
    return agent


def _agent_rates_panel(
    ax: Any, cell: pd.DataFrame, layer_colors: Mapping[Any, Any], lr0: float
) -> None:
    """One method's rates from one lr0: a line (the median) and a band (min-max) per layer,
    drawn as steps, and lr0 dotted."""
    for layer, color in layer_colors.items():
        line = cell[cell["layer"] == layer]
        ax.fill_between(
            line["step"], line["low"], line["high"], step="pre", color=color, alpha=0.2, lw=0
        )
        ax.plot(
            line["step"],
            line["median"],
            drawstyle="steps-pre",
            color=color,
            lw=1.6,
            label=f"layer {layer}",
        )
    ax.axhline(lr0, color="0.4", ls=":", lw=1)


def _handcrafted_panel(ax: Any, hand: pd.DataFrame) -> None:
    """The handcrafted SGD schedules at their tuned lr0, one line each (zero rates left out)."""
    palette = method_palette(hand["method"].unique())
    for i, (method, line) in enumerate(hand.groupby("method", sort=False)):
        rates = line["learning_rate"].where(line["learning_rate"] > 0)
        ax.plot(
            line["step"],
            rates,
            color=palette[method],
            lw=1.6,
            ls=LINESTYLES[i % 4],
            label=f"{method} ({_fmt_lr(line['lr0'].iloc[0])})",
        )
    ax.set_title("handcrafted SGD schedules at tuned lr0", fontsize=10)
    ax.set_xlabel("inner step")
    if len(hand):
        ax.legend(fontsize=8, loc="lower left")


# --------------------------------------------------------------------------------------------
# Robustness (C2)
# --------------------------------------------------------------------------------------------


def robustness_curves(
    df: pd.DataFrame, metric: str = "test_accuracy", **ci_kwargs: Any
) -> pd.DataFrame:
    """Per method and lr0: the seed mean of ``metric`` with its bootstrap CI, and the fraction of
    runs that diverged. ``ci_kwargs`` go to :func:`ganno.stats.stratified_bootstrap_ci`."""
    rows = []
    for (method, lr0), cell in df.groupby(["method", "lr0"], sort=True):
        est = _ci(cell[metric], np.mean, **ci_kwargs)
        rows.append(
            {
                "method": method,
                "kind": method_kind(method),
                "lr0": float(lr0),
                "mean": est.value,
                "low": est.low,
                "high": est.high,
                "diverged_fraction": float(cell["diverged"].astype(bool).mean()),
                "runs": len(cell),
            }
        )
    return pd.DataFrame(rows)


def band_and_line(
    ax: Any,
    x: Any,
    y: Any,
    low: Any,
    high: Any,
    method: str,
    index: int,
    color: Any,
    *,
    band_alpha: float,
    lw: float,
    ms: float,
    label: str | None = None,
) -> None:
    """One method's confidence band and line: a GANNO method thick, unmarked and on top, a
    baseline thin with the ``index``-th marker (the figures' shared convention)."""
    big = is_ganno(method)
    z = 5 if big else 2
    ax.fill_between(
        x, low, high, color=color, alpha=0.18 if big else band_alpha, lw=0, zorder=z - 1
    )
    ax.plot(
        x,
        y,
        color=color,
        lw=lw + (1.5 if big else 0.0),
        zorder=z,
        marker=None if big else MARKERS[index % len(MARKERS)],
        ms=ms,
        label=label,
    )


def robustness_figure(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    metric: str = "test_accuracy",
    train_range: Sequence[float] | None = None,
    title: str | None = None,
    **ci_kwargs: Any,
) -> FigurePaths:
    """Final ``metric`` against the initial learning rate (log x) for every method in ``df`` (one
    task): the mean over runs with its 95% bootstrap CI as a band. Two panels keep 17+ methods
    legible: the scheduled SGD/Adam baselines, and the learning-rate-free / adaptive ones; the
    GANNO methods, thick and on top, are in both. Under each panel a divergence map marks, per
    method, every lr0 where runs diverged (marker size: the fraction that did), since diverged
    runs of many methods pile up at chance accuracy. ``train_range`` shades the lr0 range of
    meta-training. The CSV is :func:`robustness_curves`.
    """
    data = robustness_curves(df, metric, **ci_kwargs)
    methods = method_order(data["method"].unique())
    ganno = [m for m in methods if is_ganno(m)]
    panels = [
        (name, ganno + [m for m in methods if method_kind(m) == kind])
        for name, kind in (("scheduled SGD / Adam", "schedule"), ("LR-free / adaptive", "adaptive"))
        if any(method_kind(m) == kind for m in methods)
    ] or [("GANNO", ganno)]
    rows = max(len(members) for _, members in panels)
    label = metric.replace("_", " ")
    with _style():
        fig = Figure(figsize=(7.2 * len(panels), 7.2 + 0.16 * rows), layout="constrained")
        grid = fig.add_gridspec(
            3, len(panels), height_ratios=[4.6, 0.6 + 0.16 * rows, 0.25 + 0.1 * rows]
        )
        top = None
        for col, (name, members) in enumerate(panels):
            ax = fig.add_subplot(grid[0, col], sharey=top)
            top = top or ax
            _robustness_panel(fig, grid, col, ax, name, members, data, train_range)
        top.set_ylabel(f"final {label} (mean over runs, 95% CI)")
        tasks = sorted(df["task"].unique()) if "task" in df else []
        fig.suptitle(title or f"Robustness to the initial learning rate ({', '.join(tasks)})")
        return _save(fig, data, stem)


def _robustness_panel(
    fig: Figure,
    grid: Any,
    col: int,
    ax: Any,
    name: str,
    members: Sequence[str],
    data: pd.DataFrame,
    train_range: Sequence[float] | None,
) -> None:
    """Column ``col`` of the robustness figure: the methods' curves with their bands on ``ax``,
    their divergence map under it and their legend under that."""
    dmap = fig.add_subplot(grid[1, col], sharex=ax)
    palette = method_palette(members)  # per panel: a method is drawn in one panel only
    for ax_ in (ax, dmap):
        if train_range is not None:
            ax_.axvspan(*train_range, color="0.85", alpha=0.6, lw=0, zorder=0)
    for i, method in enumerate(members):
        line = data[data["method"] == method].sort_values("lr0")
        color = palette[method]
        band_and_line(ax, line["lr0"], line["mean"], line["low"], line["high"], method, i,
                      color, band_alpha=0.08, lw=1.3, ms=3.5, label=method)  # fmt: skip
        bad = line[line["diverged_fraction"] > 0]
        dmap.scatter(
            bad["lr0"],
            np.full(len(bad), i),
            s=8 + 60 * bad["diverged_fraction"],
            marker="X",
            color=color,
            lw=0,
            zorder=3,
        )
    _log_lr_axis(ax)
    lr0s = data["lr0"]
    ax.set_xlim(lr0s.min() / 1.6, lr0s.max() * 1.6)  # the shading must not widen the axis
    ax.set_title(name)
    ax.tick_params(labelbottom=False)
    dmap.set_yticks(range(len(members)), members, fontsize=7)
    dmap.set_ylim(len(members) - 0.5, -0.5)
    dmap.grid(axis="y", lw=0.4)
    for tick, method in zip(dmap.get_yticklabels(), members, strict=True):
        tick.set_color(palette[method])
    dmap.set_xlabel("initial learning rate lr0")
    dmap.set_title(
        "diverged runs (marker size: fraction of the lr0's runs)", fontsize=8, loc="left"
    )
    handles, labels = ax.get_legend_handles_labels()
    if train_range is not None:
        handles.append(Line2D([], [], color="0.85", lw=8))
        labels.append("meta-training lr0 range")
    legend_ax = fig.add_subplot(grid[2, col])
    legend_ax.axis("off")
    legend_ax.legend(handles, labels, loc="upper center", ncols=3, fontsize=8, frameon=False)


# --------------------------------------------------------------------------------------------
# Generalisation (C3) and generic comparisons
# --------------------------------------------------------------------------------------------


def generalisation_figure(
    summary: pd.DataFrame,
    stem: str | Path,
    *,
    value: str = "iqm",
    low: str = "low",
    high: str = "high",
    xlabel: str = "tuned test accuracy (IQM, 95% CI)",
    col_wrap: int = 4,
    order: Sequence[str] | None = None,
) -> FigurePaths:
    """Per task (one facet each, in the order they appear), every method's tuned score as a
    point-range; GANNO methods highlighted, with their CI shaded across the facet.

    ``summary``: one row per method and task with columns ``method, task, value, low, high``
    (e.g. :func:`ganno.report.generalisation_summary`). Methods are ordered by ``order`` or by
    their mean ``value`` over the facets.
    """
    data = summary.dropna(subset=[value, low, high]).reset_index(drop=True)
    tasks = list(dict.fromkeys(data["task"]))
    if order is None:
        means = data.groupby("method")[value].mean().sort_values(ascending=False)
        order = list(means.index)
    ncols = max(1, min(col_wrap, len(tasks)))
    nrows = int(np.ceil(len(tasks) / ncols))
    with _style():
        fig = Figure(
            figsize=(3.3 * ncols + 1.5, 0.24 * len(order) * nrows + 1.2 * nrows),
            layout="constrained",
        )
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
        for ax, task in zip(axes, tasks, strict=False):
            _pointrange(ax, data[data["task"] == task], order, value, low, high)
            ax.set_title(str(task))
            ax.set_xlabel(xlabel)
        for ax in axes[len(tasks) :]:
            ax.set_visible(False)
        _kind_legend(fig, list(order))
        return _save(fig, data, stem)


def comparison_plot(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    metric: str = "test_accuracy",
    by: str = "method",
    task_col: str = "task",
    title: str | None = None,
    higher_is_better: bool = True,
    **ci_kwargs: Any,
) -> FigurePaths:
    """IQM of ``metric`` per ``by`` group with its 95% stratified-bootstrap CI (runs resampled
    within each task), as sorted point-ranges: for any comparison of variants, e.g. reward
    functions or LR-only against multi-hyperparameter agents (give them distinct ``by`` values).

    ``df``: one row per run (columns ``by``, ``metric`` and, optionally, ``task_col``). The CSV is
    :func:`ganno.stats.aggregate_table`'s output.
    """
    data = stats.aggregate_table(df, metric, by=by, task_col=task_col, **ci_kwargs)
    data = data.sort_values("iqm", ascending=not higher_is_better).reset_index(drop=True)
    order = list(data[by])
    frame = data.rename(columns={by: "method"})
    tasks = df[task_col].nunique() if task_col in df else 1
    with _style():
        fig = Figure(figsize=(6.5, 0.28 * len(order) + 1.4), layout="constrained")
        ax = fig.subplots()
        _pointrange(ax, frame, order, "iqm", "iqm_low", "iqm_high")
        ax.set_xlabel(f"{metric.replace('_', ' ')} (IQM over runs, 95% stratified-bootstrap CI)")
        ax.set_title(title or f"{metric.replace('_', ' ')} over {tasks} task(s)")
        return _save(fig, data, stem)
