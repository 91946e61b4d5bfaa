"""Baselines: every method trains on the environment's batches under its divergence rule, grids
equal single runs, and tuning chooses on validation only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from conftest import synthetic_dataset, tiny_inner_task

from ganno import baselines as B
from ganno import tables
from ganno.config import load_schema, validate
from ganno.env import GannoEnv
from ganno.evaluate import keep_rate, play_grid
from ganno.inner import episode_keys, train_steps

STEPS, EVERY = 20, 10


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(n_train=128, n_val=64, features=8, classes=3, seed=1)


@pytest.fixture(scope="module")
def task(data):
    return tiny_inner_task(data)


@pytest.fixture(scope="module")
def initial_val_loss(task):
    """Validation loss of the initial weights of seeds 0 and 1."""

    def loss(seed):
        params = task.init_params(episode_keys(B.seed_key(seed))[0])
        return float(B.evaluate(task, params, task.x_val, task.y_val)[0])

    return {seed: loss(seed) for seed in (0, 1)}


def test_registry_is_documented_and_in_the_schema():
    assert set(B.LR0_MEANING) == set(B.METHODS)
    enum = load_schema()["properties"]["baselines"]["properties"]["methods"]["items"]["enum"]
    assert enum == list(B.METHODS)
    assert list(validate({})["baselines"]["methods"]) == list(B.METHODS)
    assert B.SCHEDULE_FREE <= set(B.METHODS)


@pytest.mark.parametrize("method", list(B.METHODS))
def test_every_baseline_trains(task, data, initial_val_loss, method):
    df = B.run_grid(
        task,
        method,
        [1e-2, 1e-1],
        [0, 1],
        data.x_test,
        data.y_test,
        num_steps=STEPS,
        eval_every=EVERY,
    )
    assert len(df) == 4 and set(df["method"]) == {method}
    metrics = df[["val_loss", "val_accuracy", "test_loss", "test_accuracy", "wall_time_s"]]
    assert np.isfinite(metrics.to_numpy()).all()
    assert df["diverged"].dtype == bool
    assert ((df["val_accuracy"] >= 0) & (df["val_accuracy"] <= 1)).all()
    # At its better rate every method learns something in 20 steps.
    start = np.mean(list(initial_val_loss.values()))
    assert df.groupby("lr0")["val_loss"].mean().min() < start


def test_huge_rate_diverges_with_finite_numbers_of_the_kept_weights(task, data, initial_val_loss):
    df = B.run_grid(
        task,
        "sgd_constant",
        [1e4],
        [0, 1],
        data.x_test,
        data.y_test,
        num_steps=STEPS,
        eval_every=EVERY,
    )
    assert df["diverged"].all() and (df["diverged_at"] == EVERY).all()
    assert np.isfinite(df[["val_loss", "test_loss", "test_accuracy"]].to_numpy()).all()
    # Divergence at the first check keeps the initial weights.
    for seed, row in zip((0, 1), df.itertuples(), strict=True):
        assert row.val_loss == pytest.approx(initial_val_loss[seed], rel=1e-5)


def test_constant_sgd_equals_the_reference_loop(task):
    key, lr, steps = jax.random.PRNGKey(3), 0.2, 30
    init_key, data_key, _ = episode_keys(key)
    params0 = task.init_params(init_key)
    opt = optax.sgd(lr)
    ref_params, _, losses = jax.jit(lambda p, s: train_steps(task, opt, p, s, data_key, 0, steps))(
        params0, opt.init(params0)
    )
    params, record = jax.jit(lambda k: B.train(task, B.sgd_constant(lr, steps), k, steps, EVERY))(
        key
    )
    assert not bool(record.diverged)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(record.train_loss, losses.reshape(-1, EVERY).mean(1), rtol=1e-6)
    np.testing.assert_allclose(
        record.val_loss[-1], B.evaluate(task, ref_params, task.x_val, task.y_val)[0], rtol=1e-6
    )


def test_constant_sgd_reproduces_the_environments_keep_rate_episodes(task, data):
    env = GannoEnv(task, steps_per_decision=EVERY, num_decisions=3)
    lr0s, seeds = [0.03, 0.3, 300.0], [0, 1]
    t = play_grid(env, keep_rate(env), lr0s, seeds, data.x_test, data.y_test)
    df = B.run_grid(
        task,
        "sgd_constant",
        lr0s,
        seeds,
        data.x_test,
        data.y_test,
        num_steps=3 * EVERY,
        eval_every=EVERY,
    )
    np.testing.assert_array_equal(df["diverged"], np.asarray(t.diverged).ravel())
    assert df["diverged"].any() and not df["diverged"].all()
    np.testing.assert_allclose(df["val_loss"], np.asarray(t.val_loss[..., -1]).ravel(), rtol=1e-5)
    np.testing.assert_allclose(df["test_accuracy"], np.asarray(t.test_accuracy).ravel())


@pytest.mark.parametrize("method", ["schedule_free_sgd", "sgd_hd"])
def test_vmapped_grid_equals_single_runs(task, data, method):
    lr0s, keys = [0.05, 0.5], jnp.stack([B.seed_key(s) for s in (4, 5)])
    eval_params = B.eval_params_of(method)
    xt, yt = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    grid = B.train_grid(
        task,
        B.METHODS[method],
        lr0s,
        keys,
        xt,
        yt,
        num_steps=STEPS,
        eval_every=EVERY,
        eval_params=eval_params,
    )

    @jax.jit
    def single(key, lr0):
        opt = B.METHODS[method](lr0, STEPS)
        params, record = B.train(task, opt, key, STEPS, EVERY, eval_params=eval_params)
        return record, B.evaluate(task, params, xt, yt)

    for i, lr0 in enumerate(lr0s):
        for j in range(2):
            record, (test_loss, test_acc) = single(keys[j], jnp.float32(lr0))
            np.testing.assert_allclose(grid.record.val_loss[i, j], record.val_loss, rtol=1e-5)
            np.testing.assert_allclose(grid.test_loss[i, j], test_loss, rtol=1e-5)
            np.testing.assert_allclose(grid.test_accuracy[i, j], test_acc)
            assert bool(grid.record.diverged[i, j]) == bool(record.diverged)


def test_schedule_free_is_evaluated_at_the_averaged_point(task):
    opt = B.schedule_free_sgd(0.3, STEPS)
    key = jax.random.PRNGKey(0)
    x_params, _ = B.train(
        task, opt, key, STEPS, EVERY, eval_params=B.eval_params_of("schedule_free_sgd")
    )
    y_params, _ = B.train(task, opt, key, STEPS, EVERY, eval_params=None)
    # Without eval_params the training iterate y is returned; with it, the average x differs.
    diff = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(x_params), jax.tree.leaves(y_params), strict=True)
    )
    assert diff > 1e-4


def test_sgd_hd_adapts_its_rate_in_the_right_direction_on_a_quadratic():
    def run(lr0, steps=5, beta=0.01):
        opt = B.hypergradient_sgd(lr0, beta)
        w = jnp.array([1.0, -2.0])
        state = opt.init(w)
        grads = []
        for _ in range(steps):
            g = w  # gradient of |w|^2 / 2
            grads.append(g)
            updates, state = opt.update(g, state)
            w = optax.apply_updates(w, updates)
        return float(state.learning_rate), grads, w

    lr, grads, _ = run(0.1, steps=2)
    # lr_1 = lr_0 (no previous gradient); lr_2 = lr_1 + beta g_2 . g_1
    assert lr == pytest.approx(0.1 + 0.01 * float(grads[1] @ grads[0]), rel=1e-6)
    lr_small, _, w = run(0.1)  # too small: consecutive gradients agree, the rate grows
    assert lr_small > 0.1 and float(jnp.abs(w).max()) < 2.0
    lr_large, _, _ = run(1.9)  # too large: gradients flip sign, the rate shrinks
    assert lr_large < 1.9


def test_methods_from_config_uses_the_configured_beta():
    methods = B.methods_from_config(
        validate({"baselines": {"methods": ["sgd_hd", "dog"], "hypergradient_beta": 0.5}})
    )
    assert list(methods) == ["sgd_hd", "dog"]
    opt = methods["sgd_hd"](0.1, 10)
    w = jnp.ones(2)
    state = opt.init(w)
    _, state = opt.update(w, state)
    _, state = opt.update(w, state)
    assert float(state.learning_rate) == pytest.approx(0.1 + 0.5 * 2.0)


def _fake_grid():
    """Two methods, three rates, four seeds; validation favours lr0 = 0.1 for 'a' and 1.0 for
    'b' while the test metrics are adversarial (best exactly where validation is worst)."""
    rows = []
    val = {"a": {0.01: 1.0, 0.1: 0.5, 1.0: 2.0}, "b": {0.01: 3.0, 0.1: 2.5, 1.0: 0.7}}
    for method, curve in val.items():
        for lr0, v in curve.items():
            for seed in range(4):
                rows.append(
                    {
                        "method": method,
                        "task": "t",
                        "lr0": lr0,
                        "seed": seed,
                        "val_loss": v + 0.01 * seed,
                        "val_accuracy": 1.0 / v,
                        "test_loss": -v,
                        "test_accuracy": v,
                    }
                )
    return pd.DataFrame(rows)


def test_tune_chooses_on_validation_and_never_reads_test():
    df = _fake_grid()
    tuned = tables.tune(df, metric="val_loss")
    picks = tuned.groupby("method")["lr0"].unique().map(list).to_dict()
    assert picks == {"a": [0.1], "b": [1.0]}
    assert len(tuned) == 8 and set(tuned["seed"]) == {0, 1, 2, 3}
    assert tuned.loc[tuned.method == "a", "selection_val_loss"].iloc[0] == pytest.approx(0.515)
    # Scrambling (or deleting) the test columns never changes the choice.
    rng = np.random.default_rng(0)
    for _ in range(5):
        scrambled = df.assign(
            test_loss=rng.permutation(df["test_loss"].to_numpy()),
            test_accuracy=rng.normal(size=len(df)),
        )
        retuned = tables.tune(scrambled, metric="val_loss")
        assert retuned[["method", "lr0", "seed"]].equals(tuned[["method", "lr0", "seed"]])
    no_test = df.drop(columns=["test_loss", "test_accuracy"])
    assert tables.tune(no_test, metric="val_loss")[["method", "lr0"]].equals(
        tuned[["method", "lr0"]]
    )


def test_tune_breaks_ties_on_validation_accuracy_and_ignores_nan():
    df = _fake_grid()
    a = df.method == "a"
    df.loc[a & (df.lr0 == 0.01), "val_loss"] = df.loc[a & (df.lr0 == 0.1), "val_loss"].to_numpy()
    df.loc[a & (df.lr0 == 0.01), "val_accuracy"] = 5.0
    df.loc[(df.method == "b") & (df.lr0 == 1.0) & (df.seed == 0), "val_loss"] = np.nan
    picks = tables.tune(df, metric="val_loss").groupby("method")["lr0"].first().to_dict()
    assert picks == {"a": 0.01, "b": 0.1}


def test_tune_on_accuracy_ignores_a_loss_that_overfitting_inflates():
    # Method "o" overfits at lr0=0.1: best accuracy but a huge loss; at lr0=10 it sits at chance
    # with a moderate loss. Accuracy picks 0.1, loss would pick the chance-level 10.
    rows = []
    for lr0, acc, loss in ((0.1, 0.6, 5.0), (10.0, 0.1, 2.3)):
        for seed in range(3):
            rows.append(
                {
                    "method": "o",
                    "task": "t",
                    "lr0": lr0,
                    "seed": seed,
                    "val_loss": loss,
                    "val_accuracy": acc,
                    "test_loss": 0.0,
                    "test_accuracy": 0.0,
                }
            )
    df = pd.DataFrame(rows)
    assert tables.tune(df)["lr0"].unique().tolist() == [0.1]
    assert tables.tune(df)["selection_val_accuracy"].iloc[0] == pytest.approx(0.6)
    assert tables.tune(df, metric="val_loss")["lr0"].unique().tolist() == [10.0]
    with pytest.raises(ValueError, match="tune metric"):
        tables.tune(df, metric="test_accuracy")
