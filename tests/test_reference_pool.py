"""Reference runs trained once and reused (``meta_train.reference_pool``): a pooled episode plays
exactly as the same episode without the pool; the pool comes from the seed, one per member."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import synthetic_dataset, tiny_inner_task
from test_systems import tiny_config

from ganno.env import GannoEnv, PooledReference, ReferenceRun
from ganno.meta_train import _fingerprint, meta_train
from ganno.networks import make_network
from ganno.reference_pool import pooled_envs, with_pool

DESIGN = {
    "action_mode": "anchored_compound",
    "base_schedule": "sgd_cosine",
    "base_step_size": "dog",
    "reward": "relative_log_val_loss",  # (the default's error rate moves in steps of 1/64 here)
    "steps_per_decision": 5,
    "num_decisions": 4,
    "lr0_range": [1e-3, 1e-1],
    "gradient_scale_range": [0.1, 10.0],  # the pool must carry every draw of the episode
}


@pytest.fixture(scope="module")
def env():
    data = synthetic_dataset(n_train=128, n_val=64, features=8, classes=3, seed=3)
    return GannoEnv(tiny_inner_task(data), **DESIGN)


def _play(env, state, actions):
    step = jax.jit(env.step)
    rewards, states = [], []
    for action in actions:
        state, ts = step(state, action)
        rewards.append(np.asarray(ts.reward))
        states.append(state)
    return np.array(rewards), states


def test_a_pooled_episode_plays_as_the_same_episode_without_the_pool(env):
    """Drawn from the pool by a key, the episode is ``reset(pool.keys[i])`` of the environment
    without the pool: the same weights, lr0 and gradient factor, and, for the same actions,
    the same rewards (read from the table there, trained alongside here) and the same run."""
    pooled = with_pool(env, 6, jax.random.PRNGKey(11))
    assert pooled is not env and env.reference_pool is None
    assert pooled.reference_pool.metrics.shape == (6, env.num_decisions + 1)
    rng = np.random.default_rng(0)
    seen = set()
    for draw in range(4):
        state_p, _ = jax.jit(pooled.reset)(jax.random.PRNGKey(100 + draw))
        assert isinstance(state_p.reference, PooledReference)
        i = int(state_p.reference.index)
        seen.add(i)
        state_f, _ = jax.jit(env.reset)(pooled.reference_pool.keys[i])
        assert isinstance(state_f.reference, ReferenceRun)
        assert float(state_p.lr0) == float(state_f.lr0)
        assert float(state_p.grad_scale) == float(state_f.grad_scale)
        for a, b in zip(
            jax.tree.leaves(state_p.params), jax.tree.leaves(state_f.params), strict=True
        ):
            np.testing.assert_array_equal(a, b)
        actions = [jnp.asarray(rng.integers(0, env.action_dim, env.num_agents)) for _ in range(4)]
        rewards_p, states_p = _play(pooled, state_p, actions)
        rewards_f, states_f = _play(env, state_f, actions)
        assert np.any(rewards_f != 0.0)  # the relative reward sees the actions
        np.testing.assert_allclose(rewards_p, rewards_f, rtol=1e-5, atol=1e-6)
        for sp, sf in zip(states_p, states_f, strict=True):
            np.testing.assert_allclose(sp.reference.metric, sf.reference.metric, rtol=1e-6)
            np.testing.assert_allclose(sp.val_loss, sf.val_loss, rtol=1e-6)
    assert len(seen) > 1  # different keys draw different episodes


def test_the_pool_comes_from_the_seed_one_per_member_and_only_where_it_is_asked_for(env):
    """Without ``reference_pool`` meta-training plays the environment itself; with it, each
    member of a family gets its own pool (its own table, its own episodes), the same for the same
    seed and another for another seed; a reward without a reference run has nothing to pool; a
    pooled environment refuses to be reset at a chosen lr0."""
    assert pooled_envs(env, tiny_config(), 0) is env
    cfg = tiny_config(reference_pool=2)
    deeper = dataclasses.replace(
        env.task, network=make_network({"kind": "mlp", "depth": 3, "width": 8}, 3)
    )
    family = pooled_envs([env, GannoEnv(deeper, **DESIGN)], cfg, 0)
    alone = pooled_envs(env, cfg, 0)  # the family's first member, the same pool
    np.testing.assert_array_equal(family[0].reference_pool.keys, alone.reference_pool.keys)
    np.testing.assert_array_equal(family[0].reference_pool.metrics, alone.reference_pool.metrics)
    assert family[1].reference_pool.metrics.shape == (2, env.num_decisions + 1)
    assert not np.array_equal(family[0].reference_pool.keys, family[1].reference_pool.keys)
    other_seed = pooled_envs(env, cfg, 1)
    assert not np.array_equal(alone.reference_pool.keys, other_seed.reference_pool.keys)
    plain = GannoEnv(env.task, **{**DESIGN, "reward": "log_val_loss_drop"})
    assert pooled_envs(plain, cfg, 0) is plain
    with pytest.raises(ValueError, match="reference pool plays the pool's episodes only"):
        alone.reset_with_lr0(jax.random.PRNGKey(0), 0.01)
    with pytest.raises(ValueError, match="has no reference run"):
        plain.reference_curve(jax.random.PRNGKey(0))


def test_meta_training_with_a_pool_is_another_run(env, tmp_path):
    """The pool is part of a run's identity (its fingerprint), and a pooled meta-training run
    trains and saves its policy; its episodes' rewards are those of the pool's episodes."""
    cfg = tiny_config(
        num_envs=2,
        rollout_length=4,
        num_minibatches=2,
        hidden_sizes=[8],
        total_timesteps=2 * 2 * 4,
        updates_per_chunk=1,
        checkpoint_every=1,
        reference_pool=4,
    )
    assert _fingerprint(cfg, "ippo") != _fingerprint(tiny_config(**{
        k: v for k, v in cfg["meta_train"].items() if k != "reference_pool"
    }), "ippo")  # fmt: skip
    summary = meta_train(env, cfg, "ippo", 0, tmp_path, progress=False)
    assert summary["updates"] == 2 and np.isfinite(summary["final_return"])
    assert (tmp_path / "policy").is_dir()
