"""Aggregate statistics of runs: mean and interquartile mean with stratified-bootstrap confidence
intervals, probability of improvement, and the robustness width of an initial-rate curve.

Scores come per task: a mapping ``task -> 1-D array of runs`` (or a sequence of such arrays); tasks
may have different numbers of runs. Aggregates pool all runs of all tasks (the IQM is taken over the
pooled runs, as in Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice").
The *stratified* bootstrap resamples runs with replacement within each task, never across tasks,
so every resample has each task's number of runs; ``scipy.stats.bootstrap`` does exactly this when
given one sample per task (``paired=False``). Every task needs at least two runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

Scores = Mapping[Any, Any] | Sequence[Any]


class Estimate(NamedTuple):
    """A point estimate and its confidence interval."""

    value: float
    low: float
    high: float


#: Where one method stands against another: CIs apart and better, CIs overlapping, apart and worse.
STANDINGS = ("above", "level", "below")


def compare(ours: Estimate, theirs: Estimate, higher_is_better: bool = True) -> str:
    """``"above"`` when the two confidence intervals are apart and ours is the better side,
    ``"below"`` when they are apart and ours is the worse, ``"level"`` when they overlap (touching
    counts as overlapping): a verdict only as sure as its intervals, never from point estimates
    alone. ``higher_is_better=False`` for losses."""
    values = (ours.low, ours.high, theirs.low, theirs.high)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"an interval is not finite: {ours} against {theirs}")
    if ours.low > theirs.high:
        return "above" if higher_is_better else "below"
    if ours.high < theirs.low:
        return "below" if higher_is_better else "above"
    return "level"


def iqm(x: Any, axis: int | None = None) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``, which
    cuts ``floor(n / 4)`` values from each end)."""
    x = np.asarray(x, float)
    if axis is None:
        return sps.trim_mean(x.ravel(), 0.25)
    return sps.trim_mean(x, 0.25, axis=axis)


def _per_task(scores: Scores) -> list[np.ndarray]:
    arrays = list(scores.values()) if isinstance(scores, Mapping) else list(scores)
    arrays = [np.asarray(a, float).ravel() for a in arrays]
    if not arrays:
        raise ValueError("no tasks given")
    for i, a in enumerate(arrays):
        if a.size < 2:
            raise ValueError(f"task {i} has {a.size} run(s); the bootstrap needs at least 2")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"task {i} has non-finite scores: {a}")
    return arrays


def stratified_bootstrap_ci(
    scores: Scores,
    statistic: Callable[..., Any] = np.mean,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "percentile",
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """``statistic`` of the runs pooled over tasks, with a stratified-bootstrap CI.

    ``statistic(x, axis=-1)`` reduces pooled runs (``np.mean``, :func:`iqm`, ...); ``method`` is
    scipy's (``percentile`` as in rliable, ``basic`` or ``BCa``).
    """
    arrays = _per_task(scores)

    def pooled(*samples, axis=-1):
        return statistic(np.concatenate(samples, axis=axis), axis=axis)

    value = float(pooled(*arrays))
    if all(np.ptp(a) == 0 for a in arrays):
        return Estimate(value, value, value)  # no spread within tasks: every resample is the same
    res = sps.bootstrap(
        tuple(arrays),
        pooled,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        paired=False,
        vectorized=True,
        rng=seed,
    )
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high))


def mean_ci(scores: Scores, **kwargs: Any) -> Estimate:
    """Mean of all runs with a stratified-bootstrap CI."""
    return stratified_bootstrap_ci(scores, np.mean, **kwargs)


def iqm_ci(scores: Scores, **kwargs: Any) -> Estimate:
    """Interquartile mean of all runs with a stratified-bootstrap CI."""
    return stratified_bootstrap_ci(scores, iqm, **kwargs)


def _pairs(x: Scores, y: Scores) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if isinstance(x, Mapping) != isinstance(y, Mapping):
        raise ValueError("give both methods' scores as mappings or both as sequences")
    if isinstance(x, Mapping):
        if set(x) != set(y):
            raise ValueError(f"the methods were run on different tasks: {set(x) ^ set(y)}")
        tasks = list(x)
        return _per_task([x[t] for t in tasks]), _per_task([y[t] for t in tasks])
    xs, ys = _per_task(x), _per_task(y)
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} tasks for X but {len(ys)} for Y")
    return xs, ys


def _prob_greater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over all pairs of the last axes of x [..., n] and y [..., m]."""
    diff = x[..., :, None] - y[..., None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1))


def probability_of_improvement(
    x: Scores,
    y: Scores,
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "percentile",
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """P(X > Y): the chance a run of X beats a run of Y on the same task, averaged over tasks.

    Per task it is the Mann-Whitney U statistic over all pairs of runs divided by their number
    (ties count 1/2); tasks weigh equally. The CI resamples X's and Y's runs independently within
    each task. ``higher_is_better=False`` (losses) compares ``-x`` with ``-y``.
    """
    xs, ys = _pairs(x, y)
    sign = 1.0 if higher_is_better else -1.0
    xs, ys = [sign * a for a in xs], [sign * a for a in ys]
    m = len(xs)

    def statistic(*samples, axis=-1):
        samples = [np.moveaxis(s, axis, -1) for s in samples]
        per_task = [_prob_greater(samples[i], samples[m + i]) for i in range(m)]
        return np.mean(per_task, axis=0)

    value = float(statistic(*xs, *ys))
    if all(np.ptp(a) == 0 for a in xs + ys):
        return Estimate(value, value, value)
    res = sps.bootstrap(
        tuple(xs + ys),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        paired=False,
        vectorized=True,
        rng=seed,
    )
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high))


def rank_correlation_ci(
    x: Any,
    y: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "percentile",
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Spearman's rank correlation of paired observations ``x[i], y[i]``, with a bootstrap CI that
    resamples the pairs. NaN (no interval) with fewer than 3 pairs or no spread in one of them."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"give two 1-D arrays of the same length, not {x.shape} and {y.shape}")
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(np.nan, np.nan, np.nan)

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return 0.0  # a resample of one repeated pair: no ranking to correlate
        return float(sps.spearmanr(a, b).statistic)

    res = sps.bootstrap(
        (x, y),
        rho,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        paired=True,
        vectorized=False,
        rng=seed,
    )
    return Estimate(
        rho(x, y), float(res.confidence_interval.low), float(res.confidence_interval.high)
    )


class RobustRange(NamedTuple):
    """The initial-rate range over which a method stays within tolerance of its best."""

    decades: float  # log10(high / low); 0 when only the best grid point qualifies
    low: float
    high: float
    best_lr0: float
    best_score: float


def robustness_range(lr0s: Any, scores: Any, tolerance: float = 0.02) -> RobustRange:
    """The widest contiguous stretch of the lr0 grid that contains the best score and where every
    grid point scores at least ``best - tolerance`` (absolute; scores are higher-is-better, e.g.
    seed-mean test accuracy).

    Grid handling: points are sorted by lr0; a point that falls short of the tolerance, or whose
    score is NaN (a run missing from the grid), ends the stretch, so ranges never bridge a gap; a
    point outside the stretch that is good again is not counted. The width is measured between the
    grid points at the two ends (one point: 0 decades), never extrapolated to half a step beyond.
    With ties for the best score the widest qualifying stretch is taken.
    """
    lr0s, scores = np.asarray(lr0s, float), np.asarray(scores, float)
    if lr0s.shape != scores.shape or lr0s.ndim != 1 or lr0s.size == 0:
        raise ValueError("lr0s and scores must be 1-D arrays of the same, non-zero length")
    if np.any(lr0s <= 0) or len(np.unique(lr0s)) != lr0s.size:
        raise ValueError("lr0s must be positive and distinct")
    if not np.any(np.isfinite(scores)):
        raise ValueError("no finite score")
    order = np.argsort(lr0s)
    lr0s, scores = lr0s[order], scores[order]
    best = np.nanmax(scores)
    good = np.isfinite(scores) & (scores >= best - tolerance)
    widest: tuple[float, int, int] | None = None
    i = 0
    while i < lr0s.size:
        if not good[i]:
            i += 1
            continue
        j = i
        while j + 1 < lr0s.size and good[j + 1]:
            j += 1
        if np.any(scores[i : j + 1] == best):
            width = float(np.log10(lr0s[j] / lr0s[i]))
            if widest is None or width > widest[0]:
                widest = (width, i, j)
        i = j + 1
    assert widest is not None  # the best point is always good
    width, lo, hi = widest
    best_in = lo + int(np.argmax(scores[lo : hi + 1]))
    return RobustRange(width, float(lr0s[lo]), float(lr0s[hi]), float(lr0s[best_in]), float(best))


#: How one robust range stands against another: a count of decades on the lr0 grid, no interval.
RANGE_STANDINGS = ("wider", "as wide", "narrower")


def compare_ranges(ours: float, theirs: float) -> str:
    """``"wider"``, ``"as wide"`` or ``"narrower"``: robust ranges (decades) measured on the same
    lr0 grid, so equal to the grid's step or not at all (compared to 1e-9 decades)."""
    if ours > theirs + 1e-9:
        return "wider"
    if ours < theirs - 1e-9:
        return "narrower"
    return "as wide"


def at_grid_edge(low: float, high: float, lr0s: Any) -> bool:
    """Whether a robust range ``[low, high]`` reaches the smallest or the largest lr0 of the grid
    ``lr0s``: the range may go on past the grid, so its width is a lower bound."""
    grid = np.asarray(lr0s, float)
    return bool(low <= grid.min() * (1 + 1e-9) or high >= grid.max() * (1 - 1e-9))


def robustness_score(lr0s: Any, scores: Any, tolerance: float = 0.02) -> float:
    """Width in decades of :func:`robustness_range`."""
    return robustness_range(lr0s, scores, tolerance).decades


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _scores_by_task(df: pd.DataFrame, metric: str, task_col: str) -> dict[Any, np.ndarray]:
    if task_col not in df:
        return {"all": df[metric].to_numpy(float)}
    return {t: g[metric].to_numpy(float) for t, g in df.groupby(task_col, sort=True)}


def aggregate_table(
    df: pd.DataFrame,
    metric: str = "test_accuracy",
    *,
    by: str = "method",
    task_col: str = "task",
    **kwargs: Any,
) -> pd.DataFrame:
    """Per ``by`` group: mean and IQM of ``metric`` over all runs and tasks, with stratified-
    bootstrap CIs (``kwargs`` go to :func:`stratified_bootstrap_ci`), and the run/task counts."""
    rows = []
    for name, group in df.groupby(by, sort=True):
        scores = _scores_by_task(group, metric, task_col)
        mean, mid = mean_ci(scores, **kwargs), iqm_ci(scores, **kwargs)
        rows.append(
            {
                by: name,
                "metric": metric,
                "mean": mean.value,
                "mean_low": mean.low,
                "mean_high": mean.high,
                "iqm": mid.value,
                "iqm_low": mid.low,
                "iqm_high": mid.high,
                "tasks": len(scores),
                "runs": int(sum(len(v) for v in scores.values())),
            }
        )
    return pd.DataFrame(rows)


def improvement_table(
    df: pd.DataFrame,
    method: str,
    metric: str = "test_accuracy",
    *,
    higher_is_better: bool = True,
    by: str = "method",
    task_col: str = "task",
    **kwargs: Any,
) -> pd.DataFrame:
    """P(``method`` > other) with its CI for every other method, on the tasks both have."""
    mine = df[df[by] == method]
    rows = []
    for other, group in df[df[by] != method].groupby(by, sort=True):
        x, y = _scores_by_task(mine, metric, task_col), _scores_by_task(group, metric, task_col)
        shared = sorted(set(x) & set(y), key=str)
        if not shared:
            continue
        est = probability_of_improvement(
            {t: x[t] for t in shared},
            {t: y[t] for t in shared},
            higher_is_better=higher_is_better,
            **kwargs,
        )
        rows.append(
            {
                "method": method,
                "other": other,
                "metric": metric,
                "probability_of_improvement": est.value,
                "low": est.low,
                "high": est.high,
                "tasks": len(shared),
            }
        )
    return pd.DataFrame(rows)


def robustness_table(
    df: pd.DataFrame,
    metric: str = "test_accuracy",
    *,
    tolerance: float = 0.02,
    by: Sequence[str] = ("method", "task"),
) -> pd.DataFrame:
    """:func:`robustness_range` of the seed-mean ``metric`` curve over lr0, per group of ``by``."""
    group = [c for c in by if c in df.columns]
    curves = df.groupby([*group, "lr0"], sort=True)[metric].mean().reset_index()
    rows = []
    for name, curve in curves.groupby(group, sort=True):
        r = robustness_range(curve["lr0"], curve[metric], tolerance)
        keys = dict(zip(group, name if isinstance(name, tuple) else (name,), strict=True))
        rows.append({**keys, "metric": metric, "tolerance": tolerance, **r._asdict()})
    return pd.DataFrame(rows)
