"""Saved policies: round trip, any number of agents, jit, masks, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganno.policy import PARAMS_FILE, Policy, PolicyLoadError, PolicyNotFoundError
from ganno.systems.networks import Actor, actor_config
from ganno.types import Observation


def _policy(obs_dim=5, action_dim=4, seed=0):
    config = {"network": actor_config(obs_dim, action_dim, [16, 16]), "algo": "ippo"}
    actor = Actor(hidden_sizes=(16, 16), action_dim=action_dim)
    params = actor.init(jax.random.PRNGKey(seed), _obs(2, obs_dim, action_dim))
    return Policy(params, config)


def _obs(n, f=5, a=4, mask=None, seed=0):
    return Observation(
        agents_view=jax.random.normal(jax.random.PRNGKey(seed), (n, f)),
        action_mask=jnp.ones((n, a), bool) if mask is None else mask,
        step_count=jnp.zeros((n,), jnp.int32),
    )


def test_save_load_round_trip_acts_identically(tmp_path):
    policy = _policy()
    policy.save(tmp_path / "p")
    loaded = Policy.load(tmp_path / "p")
    assert loaded.config == policy.config
    for n in (1, 3, 9):  # any number of agents
        obs = _obs(n, seed=n)
        np.testing.assert_array_equal(policy.act(obs), loaded.act(obs))
        assert loaded.act(obs).shape == (n,)


def test_act_is_jittable_greedy_respects_mask_and_sampling_needs_a_key():
    policy = _policy()
    mask = jnp.array([[False, False, True, False], [True, False, False, True]])
    obs = _obs(2, mask=mask)
    greedy = jax.jit(lambda p, o: p.act(o))(policy, obs)
    np.testing.assert_array_equal(greedy, policy.act(obs))
    assert int(greedy[0]) == 2 and int(greedy[1]) in (0, 3)
    sample = jax.jit(policy.act, static_argnames="greedy")
    for i in range(20):
        actions = sample(obs, jax.random.PRNGKey(i), greedy=False)
        assert bool(mask[jnp.arange(2), actions].all())
    with pytest.raises(ValueError, match="key"):
        policy.act(obs, greedy=False)


def test_missing_policy_names_the_path_and_how_to_create_it(tmp_path):
    with pytest.raises(PolicyNotFoundError, match="meta_train") as info:
        Policy.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_corrupt_or_mismatched_policy_is_a_clear_error(tmp_path):
    _policy().save(tmp_path / "p")
    (tmp_path / "p" / PARAMS_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(PolicyLoadError, match=PARAMS_FILE):
        Policy.load(tmp_path / "p")
    _policy().save(tmp_path / "q")
    other = _policy(obs_dim=7)
    (tmp_path / "q" / PARAMS_FILE).write_bytes(
        (other.save(tmp_path / "r") / PARAMS_FILE).read_bytes()
    )
    with pytest.raises(PolicyLoadError, match="do not fit"):
        Policy.load(tmp_path / "q")
    (tmp_path / "q" / "policy.json").write_text("{not json")
    with pytest.raises(PolicyLoadError, match="policy.json"):
        Policy.load(tmp_path / "q")
