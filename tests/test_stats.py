"""Statistics: IQM, stratified-bootstrap intervals, probability of improvement, robustness width,
each checked by hand or against a known distribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ganno import stats as S


def test_iqm_by_hand():
    assert S.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert S.iqm([100, 0, 1, 100, 2, 0, 3, 100]) == pytest.approx((1 + 2 + 3 + 100) / 4)
    x = np.arange(10.0)  # floor(10 / 4) = 2 cut from each end
    assert S.iqm(x) == pytest.approx(np.mean(x[2:8]))
    np.testing.assert_allclose(S.iqm(np.stack([x, 2 * x]), axis=1), [4.5, 9.0])


def test_estimates_pool_runs_over_tasks():
    scores = {"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 20.0]}
    mean = S.mean_ci(scores, n_resamples=500)
    assert mean.value == pytest.approx(40 / 6) and mean.low <= mean.value <= mean.high
    iqm = S.iqm_ci(list(scores.values()), n_resamples=500)
    assert iqm.value == pytest.approx(S.iqm([1, 2, 3, 4, 10, 20]))


def test_bootstrap_is_stratified_by_task():
    # Resampling within tasks keeps five runs of each: the pooled mean stays in [5, 5.5].
    scores = [[0, 0, 0, 0, 1], [10, 10, 10, 10, 11]]
    est = S.mean_ci(scores, n_resamples=2000)
    assert est.value == pytest.approx(5.2)
    assert 5.0 <= est.low < est.value < est.high <= 5.5
    assert S.mean_ci([[3.0, 3.0], [5.0, 5.0]]) == (4.0, 4.0, 4.0)


def test_bootstrap_cis_cover_the_true_value_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    reps = 200
    covered_mean = covered_iqm = 0
    for r in range(reps):
        tasks = [rng.normal(0.0, 1.0, 40), rng.normal(2.0, 1.0, 40)]  # pooled true mean 1
        est = S.mean_ci(tasks, n_resamples=1000, seed=r)
        covered_mean += est.low <= 1.0 <= est.high
        one = rng.normal(3.0, 1.0, 40)  # symmetric, so the true IQM is 3
        est = S.iqm_ci([one], n_resamples=1000, seed=r)
        covered_iqm += est.low <= 3.0 <= est.high
    assert 0.9 <= covered_mean / reps <= 0.99
    assert 0.9 <= covered_iqm / reps <= 0.99


def test_probability_of_improvement_by_hand():
    x = {"t1": [1, 2, 3], "t2": [0, 0]}
    y = {"t1": [2, 2], "t2": [0, 1]}
    # t1: (1,2) 0 0, (2,2) 1/2 1/2, (3,2) 1 1 -> 3/6; t2: (0,0) 1/2 1/2, (0,1) 0 0 -> 1/4.
    est = S.probability_of_improvement(x, y, n_resamples=500)
    assert est.value == pytest.approx((0.5 + 0.25) / 2)
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    reverse = S.probability_of_improvement(y, x, n_resamples=500)
    assert est.value + reverse.value == pytest.approx(1.0)
    lower = S.probability_of_improvement(x, y, higher_is_better=False, n_resamples=500)
    assert lower.value == pytest.approx((3 / 6 + 3 / 4) / 2)


def test_probability_of_improvement_ci_separates_a_clearly_better_method():
    rng = np.random.default_rng(1)
    x = [rng.normal(1.0, 0.3, 10), rng.normal(5.0, 0.3, 10)]
    y = [rng.normal(0.0, 0.3, 10), rng.normal(4.0, 0.3, 10)]
    est = S.probability_of_improvement(x, y)
    assert est.value > 0.9 and est.low > 0.5
    with pytest.raises(ValueError, match="different tasks"):
        S.probability_of_improvement({"a": [1, 2]}, {"b": [1, 2]})


def test_bootstrap_needs_two_runs_per_task():
    with pytest.raises(ValueError, match="at least 2"):
        S.mean_ci([[1.0, 2.0], [3.0]])


GRID = 10.0 ** np.arange(-5, 1.01, 0.5)  # 1e-5 .. 10 in half decades (13 points)


def test_robustness_score_by_hand():
    acc = np.full(GRID.size, 0.1)
    i = {round(float(np.log10(v)) * 2): k for k, v in enumerate(GRID)}  # half-decade index
    acc[i[-6]], acc[i[-5]], acc[i[-4]], acc[i[-3]], acc[i[-2]] = 0.875, 0.89, 0.90, 0.885, 0.879
    acc[i[-1]], acc[i[0]] = 0.5, 0.895  # a gap, then good again: not counted
    r = S.robustness_range(GRID, acc)
    assert r.best_lr0 == pytest.approx(1e-2) and r.best_score == pytest.approx(0.90)
    assert (r.low, r.high) == (pytest.approx(10**-2.5), pytest.approx(10**-1.5))
    assert r.decades == pytest.approx(1.0)
    assert S.robustness_score(GRID, acc, tolerance=0.03) == pytest.approx(2.0)  # 1e-3 .. 1e-1
    assert S.robustness_score(GRID, acc, tolerance=0.0) == 0.0
    # Order does not matter; a missing run (NaN) breaks the range like a bad one.
    perm = np.random.default_rng(0).permutation(GRID.size)
    assert S.robustness_score(GRID[perm], acc[perm]) == pytest.approx(1.0)
    acc[i[-3]] = np.nan
    assert S.robustness_score(GRID, acc) == pytest.approx(0.5)


def test_robustness_takes_the_widest_stretch_among_tied_bests():
    acc = np.array([0.9, 0.2, 0.9, 0.9, 0.89, 0.2])
    lr0 = 10.0 ** np.arange(6)
    r = S.robustness_range(lr0, acc, tolerance=0.02)
    assert (r.low, r.high, r.decades) == (100.0, 10000.0, pytest.approx(2.0))


def test_tables():
    rng = np.random.default_rng(2)
    rows = []
    for method, shift in (("ganno", 0.1), ("sgd", 0.0)):
        for task in ("t1", "t2"):
            for lr0 in (1e-3, 1e-2, 1e-1):
                for seed in range(5):
                    acc = 0.8 + shift - 0.05 * abs(np.log10(lr0) + 2) + 0.01 * rng.normal()
                    rows.append(
                        dict(method=method, task=task, lr0=lr0, seed=seed, test_accuracy=acc)
                    )
    df = pd.DataFrame(rows)
    agg = S.aggregate_table(df[df.lr0 == 1e-2], n_resamples=500)
    assert list(agg["method"]) == ["ganno", "sgd"] and (agg["runs"] == 10).all()
    assert (agg["iqm_low"] <= agg["iqm"]).all() and (agg["iqm"] <= agg["iqm_high"]).all()
    pi = S.improvement_table(df[df.lr0 == 1e-2], "ganno", n_resamples=500)
    assert list(pi["other"]) == ["sgd"] and pi["probability_of_improvement"].iloc[0] > 0.9
    rob = S.robustness_table(df, tolerance=0.02)
    assert len(rob) == 4 and (rob["decades"] == 0.0).all() and (rob["best_lr0"] == 1e-2).all()
    assert (S.robustness_table(df, tolerance=0.1)["decades"] == 2.0).all()


@pytest.mark.parametrize(
    "ours,theirs,higher,standing",
    [
        ((0.70, 0.69, 0.71), (0.60, 0.59, 0.61), True, "above"),  # apart, ours higher
        ((0.70, 0.69, 0.71), (0.60, 0.59, 0.61), False, "below"),  # a loss: higher is worse
        ((0.60, 0.59, 0.61), (0.70, 0.69, 0.71), True, "below"),
        ((1.20, 1.10, 1.30), (1.60, 1.50, 1.70), False, "above"),  # the lower loss, apart
        ((0.70, 0.60, 0.80), (0.65, 0.64, 0.66), True, "level"),  # overlapping
        ((0.70, 0.60, 0.80), (0.65, 0.64, 0.66), False, "level"),
        ((0.70, 0.65, 0.75), (0.60, 0.55, 0.65), True, "level"),  # touching counts as overlap
    ],
)
def test_compare_says_above_only_when_the_intervals_are_apart(ours, theirs, higher, standing):
    assert S.compare(S.Estimate(*ours), S.Estimate(*theirs), higher) == standing


def test_compare_refuses_a_missing_interval():
    with pytest.raises(ValueError, match="not finite"):
        S.compare(S.Estimate(0.7, np.nan, np.nan), S.Estimate(0.6, 0.5, 0.7))


def test_robust_ranges_compare_as_grid_counts_and_know_the_grid_s_edge():
    assert S.compare_ranges(2.0, 1.5) == "wider"
    assert S.compare_ranges(1.5, 1.5 + 1e-12) == "as wide"  # the same count of grid steps
    assert S.compare_ranges(0.5, 1.0) == "narrower"
    grid = np.logspace(-3, 1, 9)  # 1e-3 ... 10, two points a decade
    assert S.at_grid_edge(1e-3, 0.1, grid)  # reaches the smallest lr0: may go on below it
    assert S.at_grid_edge(0.1, 10.0, grid)  # reaches the largest
    assert not S.at_grid_edge(10**-2.5, 1.0, grid)  # inside: its width is measured
    r = S.robustness_range(grid, np.where(grid >= 1.0, 0.9, 0.5))
    assert r.decades == pytest.approx(1.0) and S.at_grid_edge(r.low, r.high, grid)
