"""The recurrent (GRU) actor: the learner trains on the hidden states it acted with, and every
place a policy acts (evaluation, run-policy, optax, PyTorch) carries its hidden state."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import decisive_policy, synthetic_dataset, tiny_inner_task
from test_systems import tiny_config

from ganno.config import ConfigError
from ganno.coordination_game import CoordinationGame
from ganno.env import GannoEnv
from ganno.evaluate import play_policies
from ganno.policy import Policy
from ganno.systems import ippo
from ganno.systems.networks import RecurrentActor


def _scaled_head(actor_params, scale=50.0):
    """The actor's output layer scaled up: decisive choices, so that a wrong hidden state would
    change the log-probabilities visibly."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: (
            x * scale
            if "Dense_0" in jax.tree_util.keystr(path) and "MLP" not in jax.tree_util.keystr(path)
            else x
        ),
        actor_params,
    )


def test_the_learner_trains_on_the_hidden_states_it_acted_with():
    """With the actor's learning rate 0, the loss's log-probabilities (the actor unrolled over
    the minibatch's sequences from the rollout's first hidden state, reset at episode ends) must
    be exactly those the rollout's actions were drawn with: approx_kl = 0. Episodes of 5 steps
    straddle rollouts of 6, so later rollouts start mid-episode, from a non-zero hidden state."""
    cfg = tiny_config(num_envs=8, rollout_length=6, num_minibatches=2, gru_size=8, ppo_epochs=2)
    cfg["meta_train"]["actor_lr"] = 0.0  # after validation: the actor must not move
    env = CoordinationGame(num_agents=3, num_actions=3, time_limit=5)
    init_fn, update_fn = ippo.make_learner(env, cfg)  # MAPPO's learner is the same
    state = jax.jit(init_fn)(jax.random.PRNGKey(0))
    assert state.actor_carry.shape == (8, 3, 8)
    state = state._replace(params=state.params._replace(actor=_scaled_head(state.params.actor)))
    update = jax.jit(update_fn)
    starts = []
    for _ in range(3):
        starts.append(np.asarray(state.actor_carry))
        state, metrics = update(state)
        assert abs(float(metrics["approx_kl"])) < 1e-6
        assert np.isfinite(float(metrics["total_loss"]))
    assert np.abs(starts[1]).max() > 0.1 and np.abs(starts[2]).max() > 0.1
    # ... and there the hidden state matters: an actor unrolled from zeros instead would differ
    # from the rollout's by a KL far above the tolerance on approx_kl above
    actor = RecurrentActor((32, 32), 8, 3)
    obs = jax.tree.map(lambda x: x[0], state.obs)
    _, with_memory = actor.apply(state.params.actor, state.actor_carry[0], obs)
    _, from_zeros = actor.apply(state.params.actor, jnp.zeros((3, 8)), obs)
    assert float(with_memory.kl_divergence(from_zeros).mean()) > 1e-4


def test_recurrent_minibatches_must_be_whole_environments():
    cfg = tiny_config(num_envs=6, rollout_length=8, num_minibatches=4, gru_size=8)
    with pytest.raises(ConfigError, match="num_minibatches.*must divide 'num_envs' = 6"):
        ippo.make_learner(CoordinationGame(), cfg)


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(n_train=128, n_val=64, features=8, classes=3, seed=2)


@pytest.fixture(scope="module")
def env(data):
    return GannoEnv(tiny_inner_task(data), steps_per_decision=5, num_decisions=6)


_STEP = jax.jit(Policy.step)


@functools.cache
def _jitted(env):
    return jax.jit(env.reset_with_lr0), jax.jit(env.step)


def _manual_episode(env, policy, lr0, key, forget=False):
    """The actions of an episode played decision by decision in Python (the reference)."""
    (reset, env_step), step = _jitted(env), _STEP
    env_key, _ = jax.random.split(key)
    state, ts = reset(env_key, jnp.float32(lr0))
    carry, actions = policy.initial_carry(env.num_agents), []
    while True:
        if forget:  # a controller that drops its memory at every decision
            carry = policy.initial_carry(env.num_agents)
        carry, action = step(policy, carry, ts.observation)
        actions.append(np.asarray(action))
        state, ts = env_step(state, action)
        if bool(ts.last()):
            return np.stack(actions)


def test_evaluation_carries_the_hidden_state(env, data):
    """play_policies (the sweeps' evaluation) plays a recurrent policy as a Python loop that
    carries the hidden state does, and a controller that forgets it would choose otherwise."""
    policies = [
        decisive_policy(env.num_features, env.action_dim, seed=s, gru_size=8, env=env)
        for s in (0, 1)
    ]
    assert policies[0].recurrent and policies[0].initial_carry(3).shape == (3, 8)
    with pytest.raises(TypeError, match="recurrent.*step"):
        policies[0].act(env.reset(jax.random.PRNGKey(0))[1].observation)
    lr0s, seeds = [0.01, 0.1], [4]
    played = play_policies(env, policies, lr0s, seeds, data.x_test, data.y_test)
    for policy, trajectories in zip(policies, played, strict=True):
        for i, lr0 in enumerate(lr0s):
            manual = _manual_episode(env, policy, lr0, jax.random.PRNGKey(seeds[0]))
            np.testing.assert_array_equal(trajectories.actions[i, 0], manual)
    forgetful = _manual_episode(env, policies[0], 0.01, jax.random.PRNGKey(4), forget=True)
    assert not np.array_equal(forgetful, played[0].actions[0, 0]), "the memory is never used"
