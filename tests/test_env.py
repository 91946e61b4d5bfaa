"""The GANNO environment: protocol, observations, rewards, divergence, equivalences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ganno.config import merge, validate
from ganno.env import FEATURE_NAMES, GannoEnv, make_env
from ganno.inner import episode_keys, make_task, train_steps
from ganno.types import MarlEnv, ObservationGlobalState

KEEP = 2  # index of the x1 factor in the default action set


def make(config, dataset, **env_overrides):
    cfg = validate(merge(config, {"env": env_overrides})) if env_overrides else config
    return make_env(cfg, dataset)


def rollout(env, key, actions_fn, lr0=None):
    """Run one episode; return the list of timesteps and the final state."""
    reset = jax.jit(env.reset) if lr0 is None else jax.jit(lambda k: env.reset_with_lr0(k, lr0))
    step = jax.jit(env.step)
    state, ts = reset(key)
    steps = [ts]
    for t in range(env.time_limit):
        state, ts = step(state, actions_fn(t))
        steps.append(ts)
        if bool(ts.last()):
            break
    return steps, state


def test_protocol_and_specs(small_config, dataset):
    env = make(small_config, dataset)
    assert isinstance(env, MarlEnv)
    assert (env.num_agents, env.action_dim, env.time_limit) == (3, 5, 5)
    state, ts = env.reset(jax.random.PRNGKey(0))
    assert isinstance(ts.observation, ObservationGlobalState)
    env.observation_spec.validate(ts.observation)
    assert ts.first() and ts.reward.shape == (3,) and ts.discount.shape == (3,)
    assert env.action_spec.num_values.tolist() == [5, 5, 5]


def test_observations_are_finite_with_fixed_shapes(small_config, dataset):
    env = make(small_config, dataset)
    rng = np.random.default_rng(0)
    steps, _ = rollout(env, jax.random.PRNGKey(1), lambda t: jnp.asarray(rng.integers(0, 5, 3)))
    assert len(steps) == env.time_limit + 1
    for t, ts in enumerate(steps):
        obs = ts.observation
        assert obs.agents_view.shape == (3, len(FEATURE_NAMES))
        assert obs.agents_view.dtype == jnp.float32
        assert obs.global_state.shape == (3, env.global_state_dim)
        assert obs.action_mask.shape == (3, 5) and obs.action_mask.dtype == jnp.bool_
        assert obs.step_count.tolist() == [t] * 3
        assert np.all(np.isfinite(obs.agents_view)) and np.all(np.isfinite(obs.global_state))
        # Unit scale: every feature within a few units of zero.
        assert np.abs(np.asarray(obs.agents_view)).max() <= 8.0
        progress = obs.agents_view[:, FEATURE_NAMES.index("progress")]
        np.testing.assert_allclose(progress, t / env.time_limit, rtol=1e-6)
    assert steps[-1].last() and np.all(steps[-1].discount == 0)
    assert all(np.all(ts.discount == 1) for ts in steps[1:-1])


def test_log_lr_feature_tracks_the_rates(small_config, dataset):
    env = make(small_config, dataset)
    steps, state = rollout(env, jax.random.PRNGKey(0), lambda t: jnp.array([4, 2, 0]), lr0=0.01)
    lrs = np.asarray(state.opt_state.learning_rates)
    np.testing.assert_allclose(lrs, [0.01 * 2**5, 0.01, 0.01 * 0.5**5], rtol=1e-5)
    view = steps[-1].observation.agents_view
    np.testing.assert_allclose(view[:, FEATURE_NAMES.index("log_lr")], np.log10(lrs) / 4, rtol=1e-5)
    np.testing.assert_allclose(view[:, FEATURE_NAMES.index("prev_action")], [1.0, 0.0, -1.0])


def test_rates_are_clipped_to_bounds(small_config, dataset):
    env = make(small_config, dataset, lr_bounds=[1e-3, 0.05])
    _, state = rollout(env, jax.random.PRNGKey(0), lambda t: jnp.array([4, 0, 2]), lr0=0.01)
    np.testing.assert_allclose(state.opt_state.learning_rates, [0.05, 1e-3, 0.01], rtol=1e-6)


def test_rewards_telescope_to_log_ratio_of_validation_losses(small_config, dataset):
    env = make(small_config, dataset)
    rng = np.random.default_rng(3)
    steps, state = rollout(
        env, jax.random.PRNGKey(2), lambda t: jnp.asarray(rng.integers(1, 4, 3)), lr0=0.05
    )
    assert not bool(state.diverged)
    rewards = np.stack([np.asarray(ts.reward) for ts in steps[1:]])
    assert np.all(rewards == rewards[:, :1])  # shared by the team
    l0, lt = float(steps[0].extras["val_loss"]), float(steps[-1].extras["val_loss"])
    np.testing.assert_allclose(rewards[:, 0].sum(), np.log(l0 / lt), rtol=1e-4, atol=1e-5)
    assert lt < l0  # the task is learnable: training at a sane rate lowers the loss


def test_final_only_and_accuracy_rewards(small_config, dataset):
    final_env = make(small_config, dataset, reward="final_log_val_loss_drop")
    steps, _ = rollout(final_env, jax.random.PRNGKey(2), lambda t: jnp.full(3, KEEP), lr0=0.05)
    rewards = np.stack([np.asarray(ts.reward) for ts in steps[1:]])
    assert np.all(rewards[:-1] == 0)
    l0, lt = float(steps[0].extras["val_loss"]), float(steps[-1].extras["val_loss"])
    np.testing.assert_allclose(rewards[-1], np.log(l0 / lt), rtol=1e-4)

    acc_env = make(small_config, dataset, reward="val_accuracy_gain")
    steps, _ = rollout(acc_env, jax.random.PRNGKey(2), lambda t: jnp.full(3, KEEP), lr0=0.05)
    total = sum(float(ts.reward[0]) for ts in steps[1:])
    gain = float(steps[-1].extras["val_accuracy"] - steps[0].extras["val_accuracy"])
    np.testing.assert_allclose(total, gain, atol=1e-5)


def test_counterfactual_rewards_are_per_agent(small_config, dataset):
    env = make(small_config, dataset, reward="counterfactual_log_val_loss_drop")
    state, _ = env.reset_with_lr0(jax.random.PRNGKey(0), 0.05)
    # Agent 0 keeps its rate, so its counterfactual is the actual run: reward 0.
    # Agent 2 halves its rate; its reward is the loss of (agent 2 keeps) against the actual loss.
    _, ts = jax.jit(env.step)(state, jnp.array([KEEP, 4, 0]))
    assert ts.reward.shape == (3,)
    np.testing.assert_allclose(ts.reward[0], 0.0, atol=1e-5)
    cf_state, _ = jax.jit(env.step)(state, jnp.array([KEEP, 4, KEEP]))
    expected = np.log(float(cf_state.val_loss)) - np.log(float(ts.extras["val_loss"]))
    np.testing.assert_allclose(ts.reward[2], expected, rtol=1e-4, atol=1e-6)
    assert abs(float(ts.reward[1])) > 0


def test_keep_actions_reproduce_constant_sgd_exactly(small_config, dataset):
    env = make(small_config, dataset)
    key, lr0 = jax.random.PRNGKey(7), 0.03
    _, state = rollout(env, key, lambda t: jnp.full(3, KEEP), lr0=lr0)

    task = env.task
    init_key, data_key, _ = episode_keys(key)
    params = task.init_params(init_key)
    sgd = optax.sgd(lr0)
    total = env.steps_per_decision * env.time_limit
    ref, _, _ = jax.jit(lambda p: train_steps(task, sgd, p, sgd.init(p), data_key, 0, total))(
        params
    )
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _assert_constant_action_is_optax_sgd(env, action: int, momentum: float) -> None:
    """Playing ``action`` at every decision trains exactly like ``optax.sgd(lr0, momentum)``."""
    key, lr0 = jax.random.PRNGKey(7), 0.01
    _, state = rollout(env, key, lambda t: jnp.full(3, action), lr0=lr0)
    init_key, data_key, _ = episode_keys(key)
    params = env.task.init_params(init_key)
    sgd = optax.sgd(lr0, momentum=momentum)
    total = env.steps_per_decision * env.time_limit
    ref, _, _ = jax.jit(lambda p: train_steps(env.task, sgd, p, sgd.init(p), data_key, 0, total))(
        params
    )
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keep_actions_with_momentum_match_optax_sgd_momentum(small_config, dataset):
    env = make_env(validate(merge(small_config, {"task": {"momentum": 0.9}})), dataset)
    _assert_constant_action_is_optax_sgd(env, KEEP, momentum=0.9)


def _assert_all_finite(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
            assert np.all(np.isfinite(leaf)), "a non-finite value left the environment"


def test_huge_initial_rate_ends_the_episode_cleanly(small_config, dataset):
    # Bounds wide enough that a rate of 1e3 is really used: the inner training blows up.
    env = make(small_config, dataset, lr_bounds=[1e-6, 1e4])
    steps, state = rollout(env, jax.random.PRNGKey(0), lambda t: jnp.full(3, KEEP), lr0=1e3)
    last = steps[-1]
    assert last.last() and len(steps) == 2  # terminated on the first decision
    assert bool(last.extras["diverged"]) and bool(state.diverged)
    np.testing.assert_allclose(last.reward, -env.divergence_penalty)
    assert np.all(last.discount == 0)
    _assert_all_finite((state, last))
    # The kept state is the last finite one: the initial weights and observation.
    np.testing.assert_array_equal(last.observation.agents_view, steps[0].observation.agents_view)


def test_a_network_that_dies_after_learning_ends_the_episode_with_collapse_check(
    small_config, dataset
):
    """``collapse_check``: a step back at chance accuracy after the episode had learned counts as
    diverged (penalty, last step); not without the setting, not for a network that never learned,
    and not in an environment built for evaluation, which measures the dead network."""
    key = jax.random.PRNGKey(0)
    checked = make(small_config, dataset, collapse_check=True)
    plain = make(small_config, dataset)
    chance = 1.0 / dataset.num_classes

    def kill(state):  # every weight 0 (constant outputs), rates at the floor: it stays dead
        rates = jnp.full_like(state.opt_state.learning_rates, 1e-6)
        return state._replace(
            params=jax.tree.map(jnp.zeros_like, state.params),
            opt_state=state.opt_state._replace(learning_rates=rates),
        )

    def one_step(env, state):
        return jax.jit(env.step)(state, jnp.full(3, KEEP))

    learned, _ = one_step(checked, jax.jit(lambda k: checked.reset_with_lr0(k, 0.5))(key)[0])
    assert float(learned.best_val_accuracy) >= chance + 0.25 * (1 - chance)  # it has learned
    assert not bool(learned.diverged)
    alive, ts = one_step(plain, kill(learned))  # without the check the dead network plays on
    assert float(alive.val_accuracy) <= chance + 0.05 * (1 - chance)  # back at chance
    assert not bool(alive.diverged) and not ts.last()
    dead, ts = one_step(checked, kill(learned))  # with it, the same step ends the episode
    assert bool(dead.diverged) and ts.last()
    np.testing.assert_allclose(ts.reward, -checked.divergence_penalty)
    # like any divergence, the kept state is the last one that passed (the best stays learned's)
    assert float(dead.best_val_accuracy) == float(learned.best_val_accuracy)

    fresh, _ = jax.jit(lambda k: checked.reset_with_lr0(k, 1e-6))(key)  # never learned
    never, ts = one_step(checked, kill(fresh))
    assert float(never.val_accuracy) <= chance + 0.05 * (1 - chance)
    assert not bool(never.diverged) and not ts.last()

    config = validate(merge(small_config, {"env": {"collapse_check": True}}))
    assert make_env(config, dataset).settings.collapse_check
    assert not make_env(config, dataset, evaluation=True).settings.collapse_check


def test_initial_rate_outside_the_bounds_is_clipped_and_stays_finite(small_config, dataset):
    env = make(small_config, dataset)  # default bounds: 1e-6 .. 10
    steps, state = rollout(env, jax.random.PRNGKey(0), lambda t: jnp.full(3, 4), lr0=1e3)
    np.testing.assert_allclose(steps[0].extras["learning_rates"], 10.0)
    assert steps[-1].last()
    _assert_all_finite((state, steps))


def test_vmap_over_envs_equals_single_runs(small_config, dataset):
    env = make(small_config, dataset)
    keys = jax.random.split(jax.random.PRNGKey(11), 8)
    actions = jax.random.randint(jax.random.PRNGKey(12), (env.time_limit, 8, 3), 0, 5)

    def episode(key, acts):
        state, ts = env.reset(key)

        def body(state, a):
            state, ts = env.step(state, a)
            return state, (ts.reward, ts.observation.agents_view)

        return jax.lax.scan(body, state, acts)

    batched_state, (batched_r, batched_obs) = jax.jit(jax.vmap(episode, in_axes=(0, 1)))(
        keys, actions
    )
    for i in range(8):  # each alone, step by step (rollout's programs, compiled once a session)
        steps, state = rollout(env, keys[i], lambda t, i=i: actions[t, i])
        r = np.stack([ts.reward for ts in steps[1:]])
        obs = np.stack([ts.observation.agents_view for ts in steps[1:]])
        np.testing.assert_allclose(batched_r[i], r, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(batched_obs[i], obs, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(batched_state.val_loss[i], state.val_loss, rtol=1e-5)


@pytest.mark.parametrize(
    "network,agents",
    [
        ({"kind": "mlp", "depth": 5, "width": 32}, 5),
        ({"kind": "mlp", "depth": 8, "width": 16}, 8),
        ({"kind": "mlp", "depth": 3, "width": 128}, 3),
        ({"kind": "cnn1d", "channels": [8, 8], "kernel_size": 5}, 3),
    ],
)
def test_bigger_networks_change_agent_count_not_feature_width(
    small_config, dataset, network, agents
):
    cfg = validate(merge(small_config, {"task": {"network": network}}))
    env = make_env(cfg, dataset)
    small = make(small_config, dataset)
    assert env.num_agents == agents
    state, ts = env.reset(jax.random.PRNGKey(0))
    _, ts = jax.jit(env.step)(state, jnp.full(agents, KEEP))
    assert ts.observation.agents_view.shape == (agents, small.num_features)
    assert ts.observation.global_state.shape == (agents, small.global_state_dim)
    depth = ts.observation.agents_view[:, FEATURE_NAMES.index("relative_depth")]
    np.testing.assert_allclose(depth, np.linspace(0, 1, agents), rtol=1e-6)


def test_initial_rates_are_drawn_log_uniformly_from_the_training_range(small_config, dataset):
    """``reset`` draws lr0 with ``sample_lr0`` from its episode key (checked on a few episodes);
    the draws on many keys are log-uniform over the range."""
    env = make(small_config, dataset)
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    lr0 = jax.vmap(lambda k: env.sample_lr0(episode_keys(k)[2]))(keys)
    reset = jax.jit(env.reset)  # the program rollout() compiles: one compilation per session
    for i in range(3):
        np.testing.assert_allclose(reset(keys[i])[0].lr0, lr0[i], rtol=1e-6)
    lr0 = np.log10(np.asarray(lr0))
    assert lr0.min() >= -3 - 1e-6 and lr0.max() <= -1 + 1e-6
    assert abs(lr0.mean() - (-2.0)) < 0.05  # log-uniform: the mean of log10 is the midpoint


def test_bad_environment_arguments_are_rejected(small_config, dataset):
    task = make_task(small_config, dataset)
    with pytest.raises(ValueError, match="unknown reward"):
        GannoEnv(task, reward="accuracy")
    with pytest.raises(ValueError, match="empty"):
        GannoEnv(task, actions=())
    with pytest.raises(ValueError, match="keep action"):
        GannoEnv(task, actions=(0.5, 2.0), reward="counterfactual_log_val_loss_drop")


# ----------------------------------------------------------------------------- Q1: several
# hyperparameters per layer (learning-rate factor x momentum x weight decay, one flat action)

Q1_ENV = {"momentum_actions": [0.0, 0.5, 0.9], "weight_decay_actions": [0.0, 1e-3]}


def test_q1_action_space_is_the_product_and_features_grow_by_one_per_hyperparameter(
    small_config, dataset
):
    env = make(small_config, dataset, **Q1_ENV)
    lr_only = make(small_config, dataset)
    assert env.action_dim == 5 * 3 * 2
    assert env.feature_names == FEATURE_NAMES + ("momentum", "log_weight_decay")
    assert env.num_features == lr_only.num_features + 2
    assert env.global_state_dim == lr_only.global_state_dim + 2 * 3  # mean, min, max
    # The flat index decodes learning-rate factor (slowest), momentum, weight decay (fastest).
    index = env.action_index(2.0, momentum=0.5, weight_decay=1e-3)
    assert index == (4 * 3 + 1) * 2 + 1
    assert float(env._factors[index]) == 2.0
    assert float(env._controlled["momentum"][index]) == 0.5
    assert float(env._controlled["weight_decay"][index]) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="not one of the momentum actions"):
        env.action_index(1.0, momentum=0.7)
    with pytest.raises(ValueError, match="do not set momentum"):
        lr_only.action_index(1.0, momentum=0.5)

    state, ts = env.reset(jax.random.PRNGKey(0))
    env.observation_spec.validate(ts.observation)
    actions = jnp.array([env.action_index(1.0, 0.9, 0.0), index, env.action_index(0.5, 0.0, 1e-3)])
    _, ts = jax.jit(env.step)(state, actions)
    env.observation_spec.validate(ts.observation)
    view = np.asarray(ts.observation.agents_view)
    assert np.isfinite(view).all()
    np.testing.assert_allclose(view[:, -2], [0.9, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(view[:, -1], np.log10([1e-30, 1e-3, 1e-3]).clip(-8) / 4, rtol=1e-5)
    np.testing.assert_allclose(ts.extras["momentum"], [0.9, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(view[:, FEATURE_NAMES.index("prev_action")], [0.0, 1.0, -1.0])


def test_q1_constant_momentum_action_equals_optax_sgd_with_momentum(small_config, dataset):
    """Choosing (x1, momentum 0.9) at every decision is SGD with momentum 0.9 from the start."""
    env = make(small_config, dataset, momentum_actions=[0.0, 0.9])
    _assert_constant_action_is_optax_sgd(env, env.action_index(1.0, momentum=0.9), momentum=0.9)


def test_q1_feature_width_does_not_depend_on_depth(small_config, dataset):
    cfg = validate(
        merge(small_config, {"task": {"network": {"depth": 6, "width": 16}}, "env": Q1_ENV})
    )
    deep = make_env(cfg, dataset)
    shallow = make(small_config, dataset, **Q1_ENV)
    state, ts = deep.reset(jax.random.PRNGKey(1))
    assert ts.observation.agents_view.shape == (6, shallow.num_features)
    assert ts.observation.global_state.shape == (6, shallow.global_state_dim)


def test_q1_rejects_empty_sets_and_counterfactual_rewards(small_config, dataset):
    task = make_task(small_config, dataset)
    with pytest.raises(ValueError, match="momentum_actions is empty"):
        GannoEnv(task, momentum_actions=())
    with pytest.raises(ValueError, match="learning-rate-only"):
        GannoEnv(task, momentum_actions=(0.0, 0.9), reward="counterfactual_log_val_loss_drop")
    with pytest.raises(Exception, match="momentum_actions"):
        validate(merge(small_config, {"env": {"momentum_actions": [0.5, 1.5]}}))


def test_gradient_window_reads_the_intervals_last_steps(small_config, dataset):
    """``gradient_window = w``: the interval's mean gradient and mean squared gradient norm are
    those of its last ``w`` minibatch gradients (recomputed here step by step from the same weights
    and minibatches), while the training loss and the weights are the whole interval's, as without
    a window; a window of at least ``k`` steps is the whole interval; a window that is not a step
    count >= 1 is refused with the fix."""
    from ganno.env_settings import EnvSettings
    from ganno.observation import per_layer

    windowed, whole = make(small_config, dataset, gradient_window=3), make(small_config, dataset)
    assert windowed.settings.gradient_steps == 3 and whole.settings.gradient_steps == 10
    assert make(small_config, dataset, gradient_window=50).settings.gradient_steps == 10
    init_key, data_key, _ = episode_keys(jax.random.PRNGKey(0))
    params = whole.task.init_params(init_key)
    opt_state = whole.optimizer.init(params)._replace(learning_rates=jnp.full((3,), 0.05))
    start = jnp.asarray(20, jnp.int32)  # the third interval's minibatches
    got = jax.jit(windowed._train_interval)(params, opt_state, data_key, start)
    ref = jax.jit(whole._train_interval)(params, opt_state, data_key, start)

    grads, losses, p, s = [], [], params, opt_state
    for step in range(20, 30):
        loss, g = jax.value_and_grad(whole.task.loss)(p, *whole.task.batch(data_key, step))
        updates, s = whole.optimizer.update(g, s, p)
        p = jax.tree.map(jnp.add, p, updates)
        grads.append(g)
        losses.append(loss)

    def mean(trees):
        return jax.tree.map(lambda *xs: sum(xs) / len(xs), *trees)

    def mean_sq(trees):
        return sum(per_layer(jnp.square, g) for g in trees) / len(trees)

    for out, last in ((got, grads[-3:]), (ref, grads)):
        new_params, _, mean_grad, sq, train_loss, _ = out
        close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)  # noqa: E731
        jax.tree.map(close, mean_grad, mean(last))
        close(sq, mean_sq(last))
        close(train_loss, np.mean(losses))
        jax.tree.map(close, new_params, p)
    # not vacuous: the window's statistics are not the interval's
    assert not np.allclose(got[3], ref[3], rtol=1e-3)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="gradient_window=.*whole number of steps >= 1"):
            EnvSettings(gradient_window=bad)
    with pytest.raises(Exception, match="gradient_window"):
        validate(merge(small_config, {"env": {"gradient_window": 0}}))


def test_gradient_scaling_is_the_rate_scaled_in_meta_training_only(small_config, dataset):
    """``gradient_scale_range``: a meta-training episode (``reset``) draws its gradient factor
    log-uniformly from the range; with factor c, keep actions from lr0 train exactly like the task's
    own gradients from lr0 x c (plain SGD: the factor moves the rate a network tolerates), and the
    relative reward's reference run sees the same factor; evaluation (``reset_with_lr0``) trains
    on the task's own gradients. Inverted ranges are refused with the fix."""
    from ganno.env_settings import EnvSettings

    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    plain = make(small_config, dataset)
    scaled = make(small_config, dataset, gradient_scale_range=[1.0, 100.0])
    episode = jax.jit(jax.vmap(lambda k: scaled.reset(k)[0]))(keys[:8])
    assert np.all(np.asarray(jax.vmap(plain.sample_grad_scale)(keys[:8])) == 1.0)
    # reset draws an episode's factor and lr0 from one key as below: test the draws on many keys
    lr0_keys = jax.vmap(lambda k: episode_keys(k)[2])(keys)
    draws = jax.vmap(lambda k: scaled.sample_grad_scale(jax.random.fold_in(k, 1)))(lr0_keys)
    lr0s = jax.vmap(scaled.sample_lr0)(lr0_keys)
    np.testing.assert_allclose(episode.grad_scale, draws[:8], rtol=1e-6)
    np.testing.assert_allclose(episode.lr0, lr0s[:8], rtol=1e-6)
    draws, lr0s = np.log10(np.asarray(draws)), np.log10(np.asarray(lr0s))
    assert draws.min() >= -1e-6 and draws.max() <= 2 + 1e-6
    assert abs(draws.mean() - 1.0) < 0.05  # log-uniform over two decades
    assert abs(np.corrcoef(draws, lr0s)[0, 1]) < 0.1  # drawn independently of lr0
    assert float(scaled.reset_with_lr0(keys[0], 0.01)[0].grad_scale) == 1.0

    relative = {"reward": "relative_log_val_error", "action_mode": "anchored_compound"}
    fixed = make(small_config, dataset, gradient_scale_range=[4.0, 4.0], **relative)
    own = make(small_config, dataset, **relative)
    key, lr0 = jax.random.PRNGKey(3), 0.005
    assert float(fixed.sample_grad_scale(key)) == 4.0
    state_c, _ = fixed.reset_with_lr0(key, lr0, grad_scale=4.0)
    state_1, _ = own.reset_with_lr0(key, 4.0 * lr0)
    keep = jnp.full(3, KEEP)
    step_fixed, step_own = jax.jit(fixed.step), jax.jit(own.step)
    for _ in range(3):
        state_c, ts_c = step_fixed(state_c, keep)
        state_1, ts_1 = step_own(state_1, keep)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)  # noqa: E731
    jax.tree.map(close, state_c.params, state_1.params)
    jax.tree.map(close, state_c.reference.params, state_1.reference.params)
    close(ts_c.extras["val_loss"], ts_1.extras["val_loss"])
    # not vacuous: the same lr0 without the factor trains otherwise
    state_u, _ = own.reset_with_lr0(key, lr0)
    state_u, _ = step_own(state_u, keep)
    state_c1, _ = fixed.reset_with_lr0(key, lr0, grad_scale=4.0)
    state_c1, _ = step_fixed(state_c1, keep)
    assert not np.allclose(
        jax.tree.leaves(state_u.params)[0], jax.tree.leaves(state_c1.params)[0], rtol=1e-3
    )
    with pytest.raises(ValueError, match="gradient_scale_range=.*0 < low <= high"):
        EnvSettings(gradient_scale_range=(10.0, 1.0))
    with pytest.raises(Exception, match="gradient_scale_range"):
        validate(merge(small_config, {"env": {"gradient_scale_range": [10.0, 1.0]}}))
