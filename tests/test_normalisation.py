"""Running observation normalisation: the statistics, the learner that keeps them, and the policy
that carries them to wherever it acts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganno.config import load_config
from ganno.coordination_game import CoordinationGame
from ganno.meta_train import meta_train
from ganno.policy import Policy
from ganno.systems import ippo, mappo
from ganno.systems.normalisation import CLIP, initial_stats, normalise, update_stats


def test_running_statistics_equal_those_of_all_rows_seen():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4, 5)).astype(np.float32) for n in (7, 1, 30)]
    stats = initial_stats(jnp.asarray(batches[0]))
    for b in batches[1:]:
        stats = update_stats(stats, jnp.asarray(b))
    rows = np.concatenate([b.reshape(-1, 5) for b in batches])
    np.testing.assert_allclose(stats.mean, rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, rows.var(0), rtol=1e-4)
    assert float(stats.count) == rows.shape[0]
    z = normalise(jnp.asarray(rows), stats)
    np.testing.assert_allclose(np.asarray(z).mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(z).std(0), 1.0, rtol=1e-3)
    outlier = normalise(jnp.full((1, 5), 1e6), stats)
    assert np.all(np.asarray(outlier) == CLIP)


def _config(**meta_train):
    settings = {
        "num_envs": 4,
        "rollout_length": 8,
        "hidden_sizes": [16],
        "actor_lr": 3e-3,
        "critic_lr": 3e-3,
        "total_timesteps": 4 * 8 * 3,
        "updates_per_chunk": 3,
        "checkpoint_every": 3,
    }
    settings.update(meta_train)
    return load_config(overrides={"meta_train": settings})


@pytest.mark.parametrize("system", [ippo, mappo])
def test_learner_keeps_statistics_of_every_observation_it_collected(system):
    env = CoordinationGame(num_agents=2, num_actions=3, time_limit=4)
    init_fn, update_fn = system.make_learner(env, _config(normalise_observations=True))
    state = jax.jit(init_fn)(jax.random.PRNGKey(0))
    first = np.asarray(state.obs.agents_view).reshape(-1, state.obs.agents_view.shape[-1])
    np.testing.assert_allclose(state.obs_norm["agents_view"].mean, first.mean(0), rtol=1e-5)
    step = jax.jit(update_fn)
    for _ in range(2):
        state, _ = step(state)
    stats = state.obs_norm["agents_view"]
    # 4 envs x 2 agents at reset, then 2 updates x 8 steps x 4 envs x 2 agents
    assert float(stats.count) == 4 * 2 + 2 * 8 * 4 * 2
    assert set(state.obs_norm) >= {"agents_view", "global_state"}
    assert np.all(np.asarray(stats.var) >= 0) and np.all(np.isfinite(np.asarray(stats.mean)))
    off_init, _ = system.make_learner(env, _config())
    assert jax.jit(off_init)(jax.random.PRNGKey(0)).obs_norm == {}


def test_saved_policy_carries_the_statistics_and_acts_on_normalised_observations(tmp_path):
    env = CoordinationGame(num_agents=2, num_actions=3, time_limit=4)
    meta_train(env, _config(normalise_observations=True), "ippo", 0, tmp_path, progress=False)
    policy = Policy.load(tmp_path / "policy")
    saved = policy.config["observation_normalisation"]
    assert len(saved["mean"]) == policy.config["network"]["obs_dim"]
    assert saved["count"] == 4 * 2 + 3 * 8 * 4 * 2
    _, ts = env.reset(jax.random.PRNGKey(3))
    obs = ts.observation
    # acting = the bare actor on the normalised view
    bare = Policy(policy.params, {"network": policy.config["network"]})
    expected = bare.distribution(obs._replace(agents_view=normalise(obs.agents_view, saved)))
    np.testing.assert_allclose(policy.distribution(obs).logits, expected.logits, rtol=1e-6)
    # float32 statistics survive the JSON round trip exactly
    again = Policy.load(policy.save(tmp_path / "copy"))
    np.testing.assert_array_equal(again.normaliser["mean"], policy.normaliser["mean"])
    np.testing.assert_array_equal(again.normaliser["var"], policy.normaliser["var"])
    # and a jitted act (a Policy is a pytree) applies them too
    assert jax.jit(lambda p, o: p.act(o))(policy, obs).tolist() == policy.act(obs).tolist()
