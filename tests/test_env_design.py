"""The environment's design options: anchored action modes and the accuracy/relative rewards."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_env import make, rollout

from ganno.baselines import METHODS
from ganno.config import merge, validate
from ganno.env import EVALUATION_REWARD, GannoEnv, make_env
from ganno.env_settings import EnvSettings
from ganno.inner import episode_keys, train_steps
from ganno.rewards import validation_error


def baseline_params(env, method, key, lr0):
    """The weights the baseline ``method`` (ganno.baselines) reaches on the episode's stream."""
    init_key, data_key, _ = episode_keys(key)
    params = env.task.init_params(init_key)
    opt = METHODS[method](lr0, env.settings.total_steps)
    total = env.settings.total_steps
    ref, _, _ = jax.jit(lambda p: train_steps(env.task, opt, p, opt.init(p), data_key, 0, total))(
        params
    )
    return ref


@pytest.mark.parametrize("base", ["sgd_cosine", "sgd_step"])
def test_anchored_level_zero_is_the_base_schedule(small_config, dataset, base):
    """Level 0 trains like the baseline's optax schedule on the same stream: bitwise at XLA's
    default optimisation; within float rounding (1e-5 relative, 1e-6 absolute on weights of order
    0.1) with the test session's optimisation off (tests/conftest.py), where the two programs'
    machine code differs in its last bits."""
    env = make(small_config, dataset, action_mode="anchored", base_schedule=base)
    key, lr0 = jax.random.PRNGKey(7), 0.05
    zero = env.action_index(level=0)
    assert zero == env.neutral_action == 2
    steps, state = rollout(env, key, lambda t: jnp.full(3, zero), lr0)
    ref = baseline_params(env, base, key, lr0)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the recorded rate is the schedule's at the last step of each interval
    unit = optax.cosine_decay_schedule(1.0, env.settings.total_steps)
    if base == "sgd_cosine":
        k = env.steps_per_decision
        for d, ts in enumerate(steps[1:], start=1):
            expected = lr0 * float(unit(d * k - 1))
            np.testing.assert_allclose(ts.extras["learning_rates"], expected, rtol=1e-6)


def test_a_dog_step_size_base_is_dog_and_the_agents_scale_it(small_config, dataset):
    """``base_step_size: dog``: level 0 on a constant base trains exactly like the ``dog``
    baseline (optax.contrib.dog from eta_0 = lr0) on the same stream; a compounding multiplier
    scales DoG's step size of the agents' own run; the relative reward's reference is DoG on the
    base schedule (cosine DoG here), so keeping the multiplier earns nothing; compound mode with a
    DoG base is refused, naming the setting; deployment carries the setting (the PyTorch scheduler
    and the optax transformation follow DoG as the environment does: test_torch_scheduler.py,
    test_optax_scheduler.py)."""
    key, lr0 = jax.random.PRNGKey(5), 0.03
    env = make(
        small_config,
        dataset,
        action_mode="anchored",
        base_schedule="sgd_constant",
        base_step_size="dog",
    )
    steps, state = rollout(env, key, lambda t: jnp.full(3, env.action_index(level=0)), lr0)
    ref = baseline_params(env, "dog", key, lr0)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert not np.allclose(steps[-1].extras["learning_rates"], lr0)  # eta_t moved from lr0
    assert float(state.dog.eta) == pytest.approx(float(steps[-1].extras["learning_rates"][0]))

    design = {
        "action_mode": "anchored_compound",
        "base_step_size": "dog",
        "reward": "relative_log_val_error",
        "scale_bounds": [0.25, 8.0],
    }
    env = make(small_config, dataset, **design)
    up, keep, down = env.action_index(2.0), env.action_index(1.0), env.action_index(0.5)
    _, state = rollout(env, key, lambda t: jnp.array([up, keep, down]), lr0)
    unit = optax.cosine_decay_schedule(1.0, env.settings.total_steps)
    eta = float(state.dog.eta) * float(unit(env.settings.total_steps - 1))
    np.testing.assert_allclose(
        state.opt_state.learning_rates, eta * np.array([8.0, 1.0, 0.25]), rtol=1e-5
    )
    assert float(state.dog.eta) != pytest.approx(float(state.reference.dog.eta))  # own runs
    steps, state = rollout(env, key, lambda t: jnp.full(3, keep), lr0)
    np.testing.assert_allclose([float(ts.reward[0]) for ts in steps[1:]], 0.0, atol=1e-6)
    for a, b in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(state.reference.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    with pytest.raises(ValueError, match="base_step_size='dog'.*action_mode to anchored"):
        validate(merge(small_config, {"env": {"base_step_size": "dog"}}))
    with pytest.raises(ValueError, match="base_step_size"):
        EnvSettings(action_mode="anchored", base_step_size="adam")

    from ganno.deployment import deployment_settings
    from ganno.policy import env_settings

    saved = env_settings(env)
    assert saved["base_step_size"] == "dog"

    class Saved:
        config = {"env": saved, "network": {"action_dim": env.action_dim, "obs_dim": 17}}

    assert deployment_settings(Saved()).base_step_size == "dog"
    saved["action_mode"] = "compound"
    with pytest.raises(ValueError, match="invalid base step size.*action_mode to anchored"):
        deployment_settings(Saved())


def test_anchored_levels_scale_the_base_schedule_without_compounding(small_config, dataset):
    env = make(small_config, dataset, action_mode="anchored", levels=[-2, 0, 2], level_scale=0.5)
    lr0 = 0.02
    # agent 0 always level 2, agent 1 level 0, agent 2 level -2: a constant multiple each
    actions = jnp.array([2, 1, 0])
    steps, state = rollout(env, jax.random.PRNGKey(0), lambda t: actions, lr0)
    unit = optax.cosine_decay_schedule(1.0, env.settings.total_steps)
    last = env.settings.total_steps - 1
    expected = lr0 * float(unit(last)) * np.exp(0.5 * np.array([2.0, 0.0, -2.0]))
    np.testing.assert_allclose(state.opt_state.learning_rates, expected, rtol=1e-5)
    view = steps[-1].observation.agents_view
    scale_col = env.feature_names.index("log_lr_scale")
    np.testing.assert_allclose(
        view[:, scale_col], np.log10(np.exp([1.0, 0.0, -1.0])) / 4, rtol=1e-5
    )
    prev = view[:, env.feature_names.index("prev_action")]
    np.testing.assert_allclose(prev, np.log2(np.exp([1.0, 0.0, -1.0])), rtol=1e-5)


def test_anchored_compound_multiplier_compounds_within_its_bounds(small_config, dataset):
    env = make(
        small_config,
        dataset,
        action_mode="anchored_compound",
        base_schedule="sgd_constant",
        scale_bounds=[0.25, 8.0],
    )
    lr0 = 0.01
    up, keep, down = env.action_index(2.0), env.action_index(1.0), env.action_index(0.5)
    _, state = rollout(env, jax.random.PRNGKey(0), lambda t: jnp.array([up, keep, down]), lr0)
    # 5 decisions: x2^5 = 32 -> clipped to 8; x0.5^5 -> clipped to 0.25
    np.testing.assert_allclose(state.lr_scale, [8.0, 1.0, 0.25])
    np.testing.assert_allclose(
        state.opt_state.learning_rates, lr0 * np.array([8.0, 1.0, 0.25]), rtol=1e-6
    )


def test_anchored_rates_never_exceed_the_upper_bound(small_config, dataset):
    env = make(small_config, dataset, action_mode="anchored_compound", lr_bounds=[1e-6, 0.1])
    up = env.action_index(2.0)
    _, state = rollout(env, jax.random.PRNGKey(0), lambda t: jnp.full(3, up), 0.05)
    assert float(state.opt_state.learning_rates.max()) <= 0.1


def test_log_val_error_reward_telescopes(small_config, dataset):
    env = make(small_config, dataset, reward="log_val_error_drop")
    rng = np.random.default_rng(0)
    steps, state = rollout(
        env, jax.random.PRNGKey(2), lambda t: jnp.asarray(rng.integers(1, 4, 3)), 0.05
    )
    assert not bool(state.diverged)
    n_val = dataset.x_val.shape[0]
    e0 = float(validation_error(steps[0].extras["val_accuracy"], n_val))
    et = float(validation_error(steps[-1].extras["val_accuracy"], n_val))
    total = sum(float(ts.reward[0]) for ts in steps[1:])
    np.testing.assert_allclose(total, np.log(e0 / et), rtol=1e-4, atol=1e-5)
    assert et < e0


@pytest.mark.parametrize("metric", ["loss", "error"])
def test_relative_rewards_sum_to_the_final_log_ratio_against_the_base_schedule(
    small_config, dataset, metric
):
    design = {
        "reward": f"relative_log_val_{metric}",
        "action_mode": "anchored_compound",
        "reward_clip": 5.0,
    }
    env = make(small_config, dataset, **design)
    key, lr0 = jax.random.PRNGKey(3), 0.02
    up = env.action_index(2.0)
    steps, state = rollout(env, key, lambda t: jnp.full(3, up), lr0)
    assert not bool(state.diverged)
    # the reference is the base schedule (cosine SGD from lr0) on the same stream
    ref = baseline_params(env, "sgd_cosine", key, lr0)
    x_val, y_val = env.task.x_val, env.task.y_val
    ref_loss, ref_acc = env.task.loss_and_accuracy(ref, x_val, y_val)
    loss, acc = float(steps[-1].extras["val_loss"]), float(steps[-1].extras["val_accuracy"])
    n = x_val.shape[0]
    if metric == "loss":
        expected = np.log(float(ref_loss)) - np.log(loss)
    else:
        expected = np.log(float(validation_error(ref_acc, n))) - np.log(
            float(validation_error(acc, n))
        )
    total = sum(float(ts.reward[0]) for ts in steps[1:])
    np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-5)
    # doing nothing earns nothing: the neutral action is the reference itself
    keep = lambda t: jnp.full(3, env.neutral_action)  # noqa: E731
    steps, _ = rollout(env, key, keep, lr0)
    np.testing.assert_allclose([float(ts.reward[0]) for ts in steps[1:]], 0.0, atol=1e-6)
    # an environment built to play policies skips the reference run and plays the same episode
    cfg = validate(merge(small_config, {"env": design}))
    played = make_env(cfg, dataset, evaluation=True)
    assert played.settings == env.settings.replace(reward=EVALUATION_REWARD)
    steps_played, state_played = rollout(played, key, keep, lr0)
    assert state_played.reference == ()
    for name in ("val_loss", "val_accuracy", "learning_rates"):
        np.testing.assert_array_equal(steps_played[-1].extras[name], steps[-1].extras[name])


def test_relative_reward_is_clipped(small_config, dataset):
    env = make(small_config, dataset, reward="relative_log_val_loss", reward_clip=0.01)
    up = env.action_index(2.0)
    steps, _ = rollout(env, jax.random.PRNGKey(3), lambda t: jnp.full(3, up), 1e-3)
    total = sum(float(ts.reward[0]) for ts in steps[1:])
    assert total == pytest.approx(0.01, abs=1e-6)  # far better than constant SGD at 1e-3


def test_counterfactual_reward_in_anchored_mode_uses_level_zero(small_config, dataset):
    env = make(
        small_config, dataset, action_mode="anchored", reward="counterfactual_log_val_loss_drop"
    )
    state, _ = env.reset_with_lr0(jax.random.PRNGKey(0), 0.05)
    zero = env.neutral_action
    _, ts = jax.jit(env.step)(state, jnp.array([zero, 4, 0]))
    np.testing.assert_allclose(ts.reward[0], 0.0, atol=1e-5)
    cf_state, _ = jax.jit(env.step)(state, jnp.array([zero, 4, zero]))
    expected = np.log(float(cf_state.val_loss)) - np.log(float(ts.extras["val_loss"]))
    np.testing.assert_allclose(ts.reward[2], expected, rtol=1e-4, atol=1e-6)


def test_settings_object_is_built_from_the_config_and_rejects_bad_values(small_config, dataset):
    cfg = validate(merge(small_config, {"env": {"action_mode": "anchored", "levels": [-1, 0, 1]}}))
    settings = EnvSettings.from_config(cfg)
    assert settings.action_mode == "anchored" and settings.levels == (-1.0, 0.0, 1.0)
    assert settings.total_steps == 50
    env = make_env(cfg, dataset)
    assert env.settings == settings and env.action_dim == 3
    assert env.num_features == len(env.feature_names) == 17
    with pytest.raises(ValueError, match="action_mode"):
        EnvSettings(action_mode="absolute")
    with pytest.raises(ValueError, match="base_schedule"):
        EnvSettings(action_mode="anchored", base_schedule="adam")
    with pytest.raises(ValueError, match="neutral"):
        GannoEnv(
            env.task, settings.replace(levels=(1.0, 2.0), reward="counterfactual_log_val_loss_drop")
        )
    with pytest.raises(ValueError, match="level"):
        env.action_index(2.0)
