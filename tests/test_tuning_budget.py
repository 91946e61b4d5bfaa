"""Expected best accuracy after k runs (issue 39): the exact order-statistics expectation against
brute force over every ordered draw, its limits, the pooled normalisation and the runs-saved
labels, on constructed cases small enough to check by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ganno import tuning_budget as tb
from ganno.tables import CHANCE

# Four candidates, two tied in validation accuracy (ranks 2..3) and one non-finite (the worst).
VAL = np.array([0.7, 0.5, np.nan, 0.7])
TEST = np.array([0.9, 0.4, 0.2, 0.6])


def brute_force(val, test, k, *, among_draws=False):
    """Mean over all n^k equally likely ordered draws of the kept run's test score, a tie in the
    best validation accuracy broken uniformly among the distinct tied candidates drawn (or,
    ``among_draws``, among the draws, counting repeats)."""
    val = np.where(np.isfinite(val), val, -np.inf)
    total = 0.0
    draws = list(itertools.product(range(len(val)), repeat=k))
    for draw in draws:
        best = max(val[i] for i in draw)
        tied = [i for i in draw if val[i] == best]
        tied = tied if among_draws else sorted(set(tied))
        total += np.mean([test[i] for i in tied])
    return total / len(draws)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("among_draws", [False, True])
def test_exact_expectation_matches_brute_force_with_ties(k, among_draws):
    exact = tb.expected_best(VAL, TEST, [k])[0]
    assert exact == pytest.approx(brute_force(VAL, TEST, k, among_draws=among_draws), abs=1e-12)


def test_exact_expectation_matches_brute_force_on_random_grids():
    rng = np.random.default_rng(1)
    for _ in range(20):
        val = rng.integers(0, 3, 4) / 4  # few values: ties in most grids
        test = rng.random(4)
        got = tb.expected_best(val, test, [1, 2, 3])
        want = [brute_force(val, test, k) for k in (1, 2, 3)]
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_one_run_is_the_mean_over_the_grid():
    assert tb.expected_best(VAL, TEST, [1])[0] == pytest.approx(TEST.mean())


def test_many_runs_approach_the_validation_best_candidate():
    val = np.array([0.3, 0.8, 0.5, 0.6])  # a unique best: candidate 1
    test = np.array([0.35, 0.7, 0.9, 0.5])
    curve = tb.expected_best(val, test, [1, 10, 100, 1000])
    assert curve[-1] == pytest.approx(0.7, abs=1e-9)
    assert abs(curve[-2] - 0.7) < abs(curve[1] - 0.7)


def test_curve_rises_with_k_where_validation_and_test_agree():
    rng = np.random.default_rng(0)
    for _ in range(20):
        val = np.round(rng.random(9), 1)  # ties included
        test = 0.1 + 0.8 * val + 0.01 * rng.random(9)  # ranked as val, ties in any order
        curve = tb.expected_best(val, test, np.arange(1, 40))
        assert np.all(np.diff(curve) >= -1e-12)


def test_curve_can_fall_where_validation_misleads():
    # the validation-best run is the worst on test: more draws find it more often
    curve = tb.expected_best([0.1, 0.2, 0.9], [0.8, 0.8, 0.3], [1, 2, 5])
    assert curve[0] > curve[1] > curve[2]


def test_non_finite_test_accuracy_counts_as_chance():
    curve = tb.expected_best([0.2, 0.9], [0.6, np.nan], [1])
    assert curve[0] == pytest.approx((0.6 + CHANCE) / 2)


# --------------------------------------------------------------------------------------------
# Curves from a results table
# --------------------------------------------------------------------------------------------

LR0S = (1e-3, 1e-2, 1e-1)


def runs(method, task, val, test, seed=0, meta_seed=-1):
    """One unit's rows of a results table over :data:`LR0S`."""
    return pd.DataFrame(
        {
            "method": method,
            "task": task,
            "lr0": LR0S[: len(val)],
            "seed": seed,
            "meta_seed": meta_seed,
            "val_loss": 1.0,
            "val_accuracy": val,
            "test_loss": 1.0,
            "test_accuracy": test,
            "diverged": False,
            "wall_time_s": 0.0,
        }
    )


def curve_of(curves, method, task):
    return curves[(curves["method"] == method) & (curves["task"] == task)].sort_values("k")


def test_curve_averages_units_and_bootstraps_them():
    results = pd.concat(
        [
            runs("sgd", "train", [0.2, 0.5, 0.4], [0.3, 0.6, 0.5], seed=0),
            runs("sgd", "train", [0.6, 0.5, 0.1], [0.7, 0.4, 0.2], seed=1),
            runs("ganno_a", "train", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], seed=0, meta_seed=0),
            runs("ganno_a", "train", [0.3, 0.3, 0.3], [0.3, 0.3, 0.3], seed=0, meta_seed=1),
        ],
        ignore_index=True,
    )
    curves = tb.expected_best_curve(results, n_resamples=300)
    sgd = curve_of(curves, "sgd", "train")
    assert list(sgd["k"]) == [1, 2, 3] and set(sgd["n"]) == {3} and set(sgd["units"]) == {2}
    assert sgd["expected"].iloc[0] == pytest.approx(np.mean([0.3, 0.6, 0.5, 0.7, 0.4, 0.2]))
    units = (([0.2, 0.5, 0.4], [0.3, 0.6, 0.5]), ([0.6, 0.5, 0.1], [0.7, 0.4, 0.2]))
    want = np.mean([tb.expected_best(v, t, [3])[0] for v, t in units])
    assert sgd["expected"].iloc[-1] == pytest.approx(want)
    assert np.all(sgd["low"] <= sgd["expected"] + 1e-12) and np.all(sgd["expected"] <= sgd["high"])
    ganno = curve_of(curves, "ganno_a", "train")  # units are the (meta_seed, seed) pairs
    assert set(ganno["units"]) == {2} and ganno["expected"].iloc[0] == pytest.approx(0.4)
    assert ganno["low"].iloc[0] == pytest.approx(0.3) and ganno["high"].iloc[0] == pytest.approx(
        0.5
    )
    assert not (curves["task"] == tb.POOLED).any()  # no held-out task


def test_pooled_normalisation_on_two_tasks():
    results = pd.concat(
        [
            runs("sgd", "train", [0.9, 0.1], [0.9, 0.1]),  # the training task is not pooled
            runs("sgd", "a", [0.2, 0.6], [0.3, 0.5]),  # k=1: 0.4, k=2: 0.25*0.3 + 0.75*0.5
            runs("adam", "a", [0.5, 0.5], [0.6, 0.2]),  # tie: 0.4 at every k
            runs("sgd", "b", [0.8, 0.4], [0.7, 0.1]),  # k=1: 0.4, k=2: 0.55
            runs("ganno_a", "a", [0.4, 0.3], [0.45, 0.35], meta_seed=0),
            runs("ganno_a", "b", [0.4, 0.3], [0.4, 0.2], meta_seed=0),
        ],
        ignore_index=True,
    )
    curves = tb.expected_best_curve(results, n_resamples=50)
    norm = {"a": 0.25 * 0.3 + 0.75 * 0.5, "b": 0.55}  # best baseline at k = n = 2
    np.testing.assert_allclose(tb.normalisers(curves, ["a", "b"]), [norm["a"], norm["b"]])

    def scaled(task, x):
        return (x - CHANCE) / (norm[task] - CHANCE)

    ganno = curve_of(curves, "ganno_a", tb.POOLED)["expected"].to_numpy()
    want_k1 = (scaled("a", 0.40) + scaled("b", 0.30)) / 2
    want_k2 = (scaled("a", 0.25 * 0.35 + 0.75 * 0.45) + scaled("b", 0.25 * 0.2 + 0.75 * 0.4)) / 2
    np.testing.assert_allclose(ganno, [want_k1, want_k2])
    sgd = curve_of(curves, "sgd", tb.POOLED)["expected"].to_numpy()
    np.testing.assert_allclose(sgd, [(scaled("a", 0.4) + scaled("b", 0.4)) / 2, 1.0])
    # adam has no curve on b: a mean over other tasks than the rest's would mislead
    assert curve_of(curves, "adam", tb.POOLED).empty
    # given tasks: pooled over a alone, where adam is pooled too
    only_a = tb.expected_best_curve(results, tasks=["a"], n_resamples=50)
    np.testing.assert_allclose(curve_of(only_a, "adam", tb.POOLED)["expected"], scaled("a", 0.4))


# --------------------------------------------------------------------------------------------
# Runs saved, the display and the C2 sentence
# --------------------------------------------------------------------------------------------


def constructed_curves(ganno_k1=0.5):
    """Curves over k = 1..4 (no bootstrap): one GANNO method, three baselines."""
    values = {
        "ganno_a": [ganno_k1, 0.55, 0.58, 0.6],
        "dog": [0.52, 0.53, 0.54, 0.55],  # at or above from the start
        "sgd": [0.3, 0.45, 0.5, 0.62],  # reaches it at k = 3 (exactly equal counts)
        "adam": [0.2, 0.3, 0.4, 0.45],  # never
    }
    rows = [
        {"method": m, "task": "t", "k": k, "expected": v, "low": v, "high": v, "n": 4}
        for m, vs in values.items()
        for k, v in enumerate(vs, start=1)
    ]
    return pd.DataFrame(rows)


def test_runs_saved_labels_on_constructed_curves():
    saved = tb.runs_saved(constructed_curves(), "ganno_a").set_index("method")
    assert saved.loc["dog", "label"] == tb.ALREADY and saved.loc["dog", "k_needed"] == 1
    assert saved.loc["sgd", "label"] == "3" and saved.loc["sgd", "k_needed"] == 3
    assert saved.loc["adam", "label"] == tb.NEVER and saved.loc["adam", "k_needed"] == 5
    assert saved["low"].isna().all()  # no bootstrap resamples given: no interval
    assert saved.loc["sgd", "tuned"] == pytest.approx(0.62)
    assert saved.loc["sgd", "ganno_k1"] == pytest.approx(0.5)
    shown = tb.runs_saved_display(saved.reset_index())
    assert list(shown["baseline"]) == ["sgd", "dog", "adam"]  # by tuned score
    assert shown.iloc[2, 3] == f"{tb.NEVER} (n = 4)"


def test_first_reach_counts_never_as_one_past_the_grid():
    curve = np.array([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.1, 0.1, 0.1]])
    np.testing.assert_array_equal(tb.first_reach(curve, [0.25, 0.4, 0.5]), [3, 1, 4])


def test_c2_sentence_names_the_best_tuned_baseline_and_who_matches_at_once():
    saved = tb.runs_saved(constructed_curves(), "ganno_a")
    sentence = tb.c2_sentence(saved, task="t")
    assert sentence == (
        "From one run at any lr0, ganno_a is worth k = 3 runs of tuned sgd on t; "
        "dog reaches it at k = 1."
    )
    never = tb.c2_sentence(saved, task="t", baseline="adam")
    assert "more than all 4 runs of tuned adam" in never
    with pytest.raises(ValueError, match="no baseline"):
        tb.c2_sentence(saved, task="t", baseline="nope")


def test_runs_saved_intervals_from_the_bootstrap():
    rng = np.random.default_rng(0)
    parts = []
    for seed in range(6):
        parts.append(runs("ganno_a", "t", [0.5, 0.5, 0.5], 0.55 + 0.02 * rng.random(3), seed, 0))
        parts.append(runs("sgd", "t", [0.2, 0.4, 0.6], [0.2, 0.4, 0.7 + 0.02 * rng.random()], seed))
        parts.append(runs("dog", "t", [0.6, 0.6, 0.6], [0.6, 0.6, 0.6], seed))
        parts.append(runs("adam", "t", [0.3, 0.3, 0.3], [0.3, 0.3, 0.3], seed))
    curves = tb.expected_best_curve(pd.concat(parts, ignore_index=True), n_resamples=200)
    saved = tb.runs_saved(curves, "ganno_a")
    assert set(saved["task"]) == {"t", tb.POOLED}  # t is held out: pooled alone
    saved = saved[saved["task"] == "t"].set_index("method")
    # GANNO's one run: 0.55..0.57; sgd: k = 2 gives (0.2 + 3 * 0.4 + 5 * 0.7..0.72) / 9 < 0.55,
    # k = 3 gives (0.2 + 7 * 0.4 + 19 * 0.7..0.72) / 27 > 0.6 in every resample
    assert saved.loc["sgd", "label"] == "3"
    assert saved.loc["sgd", "low"] <= 3 <= saved.loc["sgd", "high"] <= 4
    assert (saved.loc["dog", "label"], saved.loc["dog", "low"], saved.loc["dog", "high"]) == (
        tb.ALREADY,
        1,
        1,
    )
    assert saved.loc["adam", "label"] == tb.NEVER and saved.loc["adam", "low"] == 4
    assert tb.fmt_runs(saved.reset_index().iloc[list(saved.index).index("adam")]) == (
        f"{tb.NEVER} (n = 3) [never, never]"
    )


def test_curves_figure_writes_png_pdf_and_its_data(tmp_path):
    results = pd.concat(
        [
            runs("sgd", "a", [0.2, 0.6, 0.4], [0.3, 0.5, 0.4]),
            runs("sgd", "a", [0.3, 0.5, 0.4], [0.3, 0.5, 0.4], seed=1),
            runs("ganno_a", "a", [0.4, 0.3, 0.5], [0.45, 0.35, 0.4], meta_seed=0),
        ],
        ignore_index=True,
    )
    curves = tb.expected_best_curve(results, n_resamples=50)
    paths = tb.curves_figure(curves, tmp_path / "budget")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    written = pd.read_csv(paths.csv)
    assert tb.BOOTSTRAP not in written and set(written["task"]) == {"a", tb.POOLED}


def test_tasks_are_shown_trained_on_then_held_out_then_pooled():
    order = tb.task_order([tb.POOLED, "cnn", "train", "mlp", "cnn"])
    assert order == ["train", "cnn", "mlp", tb.POOLED]
