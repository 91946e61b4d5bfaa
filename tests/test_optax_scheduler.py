"""``ganno_sgd``, the policy as an optax transformation: on the environment's initial weights and
minibatch stream it takes the environment's decisions, sets its rates, sees its observations and
ends at its weights, in every action mode, over any training length, and when training diverges.

Both sides are JAX float32 with the same operations in the same order up to the observation's
sums, so views agree to ``FEATURE_ATOL`` and weights to ``WEIGHT_RTOL`` (as in
test_torch_scheduler.py); the greedy actions, hence the rates, are identical.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import decisive_policy, inner_task, optax_train_step

import ganno
from ganno.env import GannoEnv
from ganno.errors import UsageError
from ganno.inner import InnerTask, episode_keys
from ganno.networks import MLP, layer_keys
from ganno.optax_scheduler import GannoState, diverged, ganno_sgd
from ganno.policy import Policy

FEATURE_ATOL = 1e-5
WEIGHT_RTOL = 1e-4
K, H = 5, 4


def make_policy(
    env: GannoEnv, seed: int = 0, scale: float = 200.0, normalise=False, gru_size=0
) -> Policy:
    """A decisive random actor of the environment's shapes with its settings recorded."""
    policy = decisive_policy(
        env.num_features, env.action_dim, seed=seed, scale=scale, env=env, gru_size=gru_size
    )
    if not normalise:
        return policy
    rng = np.random.default_rng(seed)
    stats = {
        "mean": rng.normal(size=env.num_features).tolist(),
        "var": rng.uniform(0.5, 2, env.num_features).tolist(),
    }
    return Policy(policy.params, {**policy.config, "observation_normalisation": stats})


@pytest.fixture(scope="module")
def task(dataset):
    return inner_task(dataset, MLP(depth=3, width=32, num_classes=10))


def env_episode(env: GannoEnv, policy: Policy, key, lr0):
    state, ts = jax.jit(env.reset_with_lr0)(key, jnp.float32(lr0))
    step = jax.jit(env.step)
    views, rates, actions = [np.asarray(ts.observation.agents_view)], [], []
    carry = policy.initial_carry(env.num_agents)
    while True:
        carry, action = policy.step(carry, ts.observation)
        state, ts = step(state, action)
        actions.append(np.asarray(action))
        rates.append(np.asarray(state.opt_state.learning_rates))
        views.append(np.asarray(ts.observation.agents_view))
        if bool(ts.last()):
            break
    return state, np.stack(views), np.stack(rates), np.stack(actions)


def optax_episode(task: InnerTask, policy: Policy, key, lr0, num_steps, **kw):
    """Train from the environment's initial weights on its minibatches with ganno_sgd; record the
    observation, actions and rates of every decision (and the last observation)."""
    init_key, data_key, _ = episode_keys(key)
    params = task.init_params(init_key)
    opt = ganno_sgd(
        policy,
        lr0=lr0,
        val_loss_fn=lambda p: task.loss_and_accuracy(p, task.x_val, task.y_val)[0],
        **kw,
    )
    state = opt.init(params)
    train_step = optax_train_step(task, opt, data_key)
    views, rates, actions = [], [], []
    for t in range(num_steps):
        before = state
        params, state = train_step(params, state, jnp.int32(t))
        if int(state.decisions) > int(before.decisions):
            actions.append(np.asarray(state.actions))
            rates.append(np.asarray(state.learning_rates))
        if not np.array_equal(np.asarray(state.agents_view), np.asarray(before.agents_view)):
            views.append(np.asarray(state.agents_view))
    # the last interval's observation is taken at the start of the next update
    if int(state.count) == opt.settings.total_steps and not bool(state.diverged):
        _, state = train_step(params, state, jnp.int32(num_steps))
        views.append(np.asarray(state.agents_view))
    return params, state, np.stack(views), np.stack(rates), np.stack(actions)


def assert_same_weights(params, env_params):
    for k in layer_keys(env_params):
        for n in ("kernel", "bias"):
            a, b = np.asarray(params[k][n]), np.asarray(env_params[k][n])
            assert np.linalg.norm(a - b) <= WEIGHT_RTOL * np.linalg.norm(b) + 1e-7, (k, n)


@pytest.mark.parametrize(
    "mode,normalise,gru_size,base_step_size",
    [
        ("compound", False, 0, "lr0"),
        ("anchored", True, 0, "lr0"),
        ("anchored_compound", True, 0, "lr0"),
        ("anchored_compound", False, 0, "dog"),
        ("compound", True, 16, "lr0"),
    ],
)
def test_decisions_and_rates_equal_the_environment(task, mode, normalise, gru_size, base_step_size):
    """... also for a recurrent policy, whose hidden state the transformation's state carries,
    and for a base schedule that scales DoG's step size (whose state it carries too)."""
    env = GannoEnv(
        task, steps_per_decision=K, num_decisions=H, action_mode=mode, base_step_size=base_step_size
    )
    seed = 2 if gru_size else 3  # seeds whose random actors choose varied actions
    policy = make_policy(env, seed=seed, normalise=normalise, gru_size=gru_size)
    key = jax.random.PRNGKey(5)
    state, views, rates, actions = env_episode(env, policy, key, 0.05)
    assert len(set(actions.ravel().tolist())) > 1, "vacuous test"
    params, opt_state, o_views, o_rates, o_actions = optax_episode(task, policy, key, 0.05, K * H)
    np.testing.assert_array_equal(o_actions, actions)
    np.testing.assert_allclose(o_views, views, rtol=0, atol=FEATURE_ATOL)
    if mode == "compound":  # the anchored rates change every step; compare the last ones
        np.testing.assert_allclose(o_rates, rates, rtol=1e-6)
    np.testing.assert_allclose(opt_state.learning_rates, state.opt_state.learning_rates, rtol=1e-5)
    np.testing.assert_allclose(opt_state.lr_scale, state.lr_scale, rtol=1e-6)
    assert_same_weights(params, state.params)
    assert not bool(diverged(opt_state))
    if base_step_size == "dog":  # DoG's step size moved off lr0, and equals the environment's
        assert float(opt_state.dog.eta) != pytest.approx(0.05, rel=0.01)
        np.testing.assert_allclose(opt_state.dog.eta, state.dog.eta, rtol=1e-4)
        np.testing.assert_allclose(opt_state.dog.max_distance, state.dog.max_distance, rtol=1e-4)
        with pytest.raises(ValueError, match="one for all the layers.*give one lr0"):
            ganno_sgd(policy, lr0=[0.01, 0.02, 0.03], val_loss_fn=lambda p: 0.0).init(params)


@pytest.mark.parametrize(
    "mode,window", [("compound", None), ("anchored_compound", None), ("anchored_compound", 2)]
)
def test_any_training_length_spreads_the_decisions(task, mode, window):
    """A policy meta-trained with k = K, given total_steps = 3 K H, decides every 3 K steps with
    progress d / H: exactly the environment with k = 3 K (and a base schedule over 3 K H). With a
    gradient window, both read the last 2 steps of every interval."""
    trained = GannoEnv(
        task, steps_per_decision=K, num_decisions=H, action_mode=mode, gradient_window=window
    )
    policy = make_policy(trained, seed=1)
    longer = GannoEnv(
        task, steps_per_decision=3 * K, num_decisions=H, action_mode=mode, gradient_window=window
    )
    key = jax.random.PRNGKey(2)
    state, views, rates, actions = env_episode(longer, policy, key, 0.05)
    params, opt_state, o_views, _, o_actions = optax_episode(
        task, policy, key, 0.05, 3 * K * H, total_steps=3 * K * H
    )
    assert opt_state.decisions == H and len(o_actions) == H
    np.testing.assert_array_equal(o_actions, actions)
    np.testing.assert_allclose(o_views, views, rtol=0, atol=FEATURE_ATOL)
    assert_same_weights(params, state.params)
    with pytest.raises(ValueError, match="fewer than the policy's 4 decisions"):
        ganno_sgd(policy, lr0=0.1, total_steps=3, val_loss_fn=lambda p: 0.0)


def test_divergence_restores_the_last_decision_and_stops(task):
    """lr0 = 0.9: the environment diverges in the second interval and keeps the weights of the
    first decision; ganno_sgd returns to them and makes no update afterwards."""
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    policy = make_policy(env, seed=1)
    key = jax.random.PRNGKey(5)
    state, _, _, actions = env_episode(env, policy, key, 0.9)
    assert bool(state.diverged) and len(actions) == 2
    params, opt_state, _, _, o_actions = optax_episode(task, policy, key, 0.9, K * H)
    assert bool(diverged(opt_state)) and int(opt_state.decisions) == 2
    np.testing.assert_array_equal(o_actions, actions[:2])
    assert_same_weights(params, state.params)


class FlaxNet(nn.Module):
    """A user's flax model: submodules named by flax (Conv_0, Dense_0, Dense_1)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (5,))(x[..., None]))
        x = nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def test_a_flax_model_in_an_optax_chain(task, dataset):
    """Any flax model: each submodule is a layer in creation order, decisions at the spread
    boundaries, the rates scale the direction of an optax chain (momentum), and the state works
    under jit; the policy's rates are the rates the updates use."""
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    policy = make_policy(env, seed=2)
    model = FlaxNet()
    x, y = jnp.asarray(dataset.x_train[:64]), jnp.asarray(dataset.y_train[:64])
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    assert list(params) == ["Conv_0", "Dense_0", "Dense_1"]

    def loss_fn(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(
            model.apply({"params": p}, x), y
        ).mean()

    total = 30
    opt = ganno_sgd(
        policy,
        lr0=0.02,
        total_steps=total,
        direction=optax.trace(0.0),
        val_loss_fn=lambda p: loss_fn(p, x, y),
    )
    state = opt.init(params)
    update = jax.jit(lambda g, s, p, loss: opt.update(g, s, p, loss=loss))
    seen = []
    for t in range(total + 2):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, new_state = update(grads, state, params, loss)
        if int(new_state.decisions) > int(state.decisions):
            seen.append(t)
        # plain SGD through trace(0): update = -rate x gradient, layer by layer
        for i, k in enumerate(params):
            np.testing.assert_allclose(
                updates[k]["kernel"],
                -new_state.learning_rates[i] * grads[k]["kernel"],
                rtol=1e-6,
                atol=1e-12,
            )
        params, state = optax.apply_updates(params, updates), new_state
    assert seen == [0, 7, 15, 22]  # d x 30 // 4
    assert np.asarray(state.agents_view)[:, -3].tolist() == [0.0, 0.5, 1.0]  # relative depth
    assert isinstance(state, GannoState) and float(loss) < float(
        loss_fn(model.init(jax.random.PRNGKey(0), x)["params"], x, y)
    )


def test_errors_name_the_fix(task):
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    policy = make_policy(env)
    params = task.init_params(jax.random.PRNGKey(0))
    opt = ganno_sgd(policy, lr0=0.1)
    state = opt.init(params)
    grads = jax.tree.map(jnp.zeros_like, params)
    with pytest.raises(ValueError, match="loss=loss"):
        opt.update(grads, state, params)
    with pytest.raises(ValueError, match="val_loss_fn"):
        opt.update(grads, state, params, loss=1.0)
    updates, state = opt.update(grads, state, params, loss=1.0, val_loss=2.0)  # or passed in
    assert int(state.decisions) == 1
    with pytest.raises(ValueError, match="layer_names"):
        ganno_sgd(policy, lr0=0.1, layer_names=["layer_0"]).init(params)
    with pytest.raises(TypeError, match="dict of layers"):
        opt.init([params["layer_0"]])
    other = GannoEnv(task, steps_per_decision=K, num_decisions=H, momentum_actions=(0.0, 0.9))
    with pytest.raises(ValueError, match="momentum"):
        ganno_sgd(make_policy(other), lr0=0.1)


def test_the_example_runs(dataset, capsys, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "optax_training_loop.py"
    spec = importlib.util.spec_from_file_location("ganno_example_optax_loop", path)
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # flax modules are dataclasses
    spec.loader.exec_module(example)
    result = example.main(["--total-steps", "60", "--batch-size", "16", "--width", "16"], dataset)
    assert result["steps"] == 60 and 0.0 <= result["test_accuracy"] <= 1.0
    decisions = ganno.pretrained_policy().config["env"]["num_decisions"]
    printed = capsys.readouterr().out
    assert "final test accuracy" in printed and "rates [" in printed
    # the baseline it is compared with, from the same lr0, weights and minibatches
    assert 0.0 <= result["baseline_test_accuracy"] <= 1.0
    assert "cosine SGD from the same lr0 0.05, weights and minibatches: test accuracy " in printed
    assert f"{result['baseline_test_accuracy']:.4f}" in printed
    # every decision of the pretrained policy, or as many as came before a divergence
    if result["diverged"]:
        assert "diverged" in printed and 1 <= len(result["learning_rates"]) < decisions
    else:
        assert len(result["learning_rates"]) == decisions


def test_a_dog_base_policy_takes_a_traced_lr0(task):
    """lr0 as an argument of a jitted training run (one compilation for every lr0, as the
    tutorial does): a DoG-base policy's one step size starts from the traced scalar; several
    traced lr0 are refused with the fix."""
    env = GannoEnv(
        task,
        steps_per_decision=K,
        num_decisions=H,
        action_mode="anchored_compound",
        base_step_size="dog",
    )
    policy = make_policy(env, seed=3)
    params = task.init_params(jax.random.PRNGKey(0))

    @jax.jit
    def first_rates(lr0):
        return ganno_sgd(policy, lr0=lr0).init(params).learning_rates

    concrete = ganno_sgd(policy, lr0=0.05).init(params).learning_rates
    np.testing.assert_allclose(first_rates(jnp.float32(0.05)), concrete, rtol=1e-6)
    with pytest.raises(UsageError, match="a scalar"):
        jax.jit(lambda lr0: ganno_sgd(policy, lr0=lr0).init(params))(jnp.full(3, 0.05))
