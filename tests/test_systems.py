"""IPPO and MAPPO: networks, wrappers, learning on the coordination game, vmapped seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganno.config import ConfigError, load_config
from ganno.coordination_game import CoordinationGame
from ganno.systems import ippo, mappo
from ganno.systems.anakin import scan_updates
from ganno.systems.networks import Actor, Critic
from ganno.systems.wrappers import EPISODE_METRICS, wrap
from ganno.types import Observation

SYSTEMS = {"ippo": ippo, "mappo": mappo}


def tiny_config(**meta_train):
    settings = {
        "num_envs": 16,
        "rollout_length": 16,
        "hidden_sizes": [32, 32],
        "actor_lr": 3e-3,
        "critic_lr": 3e-3,
    }
    settings.update(meta_train)
    return load_config(overrides={"meta_train": settings})


def _obs(n, f, a, mask=None):
    return Observation(
        agents_view=jax.random.normal(jax.random.PRNGKey(n), (n, f)),
        action_mask=jnp.ones((n, a), bool) if mask is None else mask,
        step_count=jnp.zeros((n,), jnp.int32),
    )


def test_actor_is_shared_over_any_number_of_agents_and_respects_the_mask():
    actor = Actor(hidden_sizes=(16,), action_dim=4)
    params = actor.init(jax.random.PRNGKey(0), _obs(3, 5, 4))
    for n in (1, 3, 7):
        assert actor.apply(params, _obs(n, 5, 4)).logits.shape == (n, 4)
    mask = jnp.array([[True, False, False, True], [False, False, True, False]])
    policy = actor.apply(params, _obs(2, 5, 4, mask))
    samples = policy.sample(seed=jax.random.PRNGKey(1), sample_shape=(500,))
    assert bool(jnp.all(jnp.take_along_axis(mask[None].repeat(500, 0), samples[..., None], -1)))
    assert bool(jnp.all(samples[:, 1] == 2))
    assert bool(jnp.all(jnp.isfinite(policy.entropy())))


def test_centralised_critic_reads_global_state_of_fixed_size():
    env = CoordinationGame(num_agents=3, num_actions=3)
    _, ts = env.reset(jax.random.PRNGKey(0))
    critic = Critic(hidden_sizes=(8,), input_field="global_state")
    params = critic.init(jax.random.PRNGKey(0), ts.observation)
    assert critic.apply(params, ts.observation).shape == (3,)
    _, ts5 = CoordinationGame(num_agents=5, num_actions=3).reset(jax.random.PRNGKey(0))
    assert critic.apply(params, ts5.observation).shape == (5,)  # same params, more agents
    # MAPPO's critic (as the system builds it) reads the global state and nothing else: changing
    # every agent's own view leaves its values unchanged, changing the global state does not.
    mappo_critic = mappo.make_critic(tiny_config())
    params = mappo_critic.init(jax.random.PRNGKey(1), ts.observation)
    values = mappo_critic.apply(params, ts.observation)
    other_view = ts.observation._replace(agents_view=ts.observation.agents_view * -3.0 + 1.0)
    np.testing.assert_array_equal(mappo_critic.apply(params, other_view), values)
    other_state = ts.observation._replace(global_state=ts.observation.global_state + 1.0)
    assert not np.allclose(mappo_critic.apply(params, other_state), values)
    # IPPO's critic is the opposite: its agents' own views
    ippo_critic = ippo.make_critic(tiny_config())
    params = ippo_critic.init(jax.random.PRNGKey(1), ts.observation)
    own = ippo_critic.apply(params, ts.observation)
    assert not np.allclose(ippo_critic.apply(params, other_view), own)


def test_wrappers_reset_automatically_and_record_finished_episodes():
    env = wrap(CoordinationGame(num_agents=2, num_actions=2, time_limit=3), num_envs=2)
    state, ts = env.reset(jax.random.PRNGKey(0))
    assert ts.observation.agents_view.shape[:2] == (2, 2)
    step = jax.jit(env.step)
    total = 0.0
    for t in range(3):
        context = jnp.argmax(ts.observation.agents_view[:, 0, :2], axis=-1)  # [envs]
        action = jnp.repeat(context[:, None], 2, axis=1)
        if t == 1:
            action = action.at[0].set(jnp.array([0, 1]))  # env 0 misses once
        state, ts = step(state, action)
        total += float(ts.reward[0].mean())
    info = ts.extras[EPISODE_METRICS]
    assert bool(ts.last().all()) and bool(info["is_terminal_step"].all())
    assert float(ts.discount[0, 0]) == 0.0 and float(ts.reward[0, 0]) == 1.0  # true last step
    assert float(info["episode_return"][0]) == total == 2.0
    assert float(info["episode_return"][1]) == 3.0
    assert int(info["episode_length"][0]) == 3 and float(info["agreed"][0]) == 1.0
    assert ts.observation.step_count[:, 0].tolist() == [0, 0]  # next episodes' first observation
    state, ts = step(state, jnp.zeros((2, 2), jnp.int32))
    assert not bool(ts.last().any())
    assert ts.extras[EPISODE_METRICS]["episode_length"].tolist() == [1, 1]


def test_only_the_environments_that_ended_restart():
    game = CoordinationGame(num_agents=2, num_actions=2, time_limit=3)
    env = wrap(game, num_envs=2)
    state, _ = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    state, _ = step(state, jnp.zeros((2, 2), jnp.int32))
    # Put environment 1 back at the start of its episode: it is now one step behind env 0.
    fresh, _ = jax.vmap(env.env.reset)(jax.random.split(jax.random.PRNGKey(5), 2))
    lag = jax.tree.map(lambda new, old: old.at[1].set(new[1]), fresh, state.env_state)
    state = state._replace(env_state=lag)
    state, ts = step(state, jnp.zeros((2, 2), jnp.int32))
    state, ts = step(state, jnp.zeros((2, 2), jnp.int32))
    assert ts.last().tolist() == [True, False]
    assert ts.observation.step_count[:, 0].tolist() == [0, 2]  # env 0 restarted, env 1 went on
    lengths = ts.extras[EPISODE_METRICS]["episode_length"].tolist()
    assert lengths == [3, 2]


def _train(system, cfg, num_updates, seed=0, env=None):
    env = env or CoordinationGame(num_agents=3, num_actions=3)
    init_fn, update_fn = system.make_learner(env, cfg)
    run = jax.jit(scan_updates(update_fn, num_updates))
    return run(jax.jit(init_fn)(jax.random.PRNGKey(seed)))


@pytest.mark.parametrize("name", ["ippo", "mappo"])
def test_reaches_near_the_optimum_of_the_coordination_game(name):
    env = CoordinationGame(num_agents=3, num_actions=3, time_limit=8)
    _, metrics = _train(SYSTEMS[name], tiny_config(), 50, env=env)
    sums, counts = metrics["episode_sums"]["episode_return"], metrics["num_episodes"]
    first = float(sums[:5].sum() / counts[:5].sum())
    last = float(sums[-5:].sum() / counts[-5:].sum())
    assert first < 0.5 * env.optimal_return  # it starts far from the optimum (random: 8/27)
    assert last >= 0.95 * env.optimal_return


@pytest.mark.parametrize("name", ["ippo", "mappo"])
def test_vmapped_seeds_equal_separate_runs(name):
    system = SYSTEMS[name]
    cfg = tiny_config(num_envs=4, rollout_length=8)
    env = CoordinationGame(num_agents=2, num_actions=3)
    init_fn, update_fn = system.make_learner(env, cfg)
    run = scan_updates(update_fn, 3)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    both, both_metrics = jax.jit(jax.vmap(run))(jax.jit(jax.vmap(init_fn))(keys))
    init_one, run_one = jax.jit(init_fn), jax.jit(run)
    for i, seed in enumerate((0, 1)):
        alone, alone_metrics = run_one(init_one(jax.random.PRNGKey(seed)))
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(both.params), strict=True):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            alone_metrics["total_loss"], both_metrics["total_loss"][i], rtol=1e-4, atol=1e-6
        )
    assert not np.allclose(both_metrics["total_loss"][0], both_metrics["total_loss"][1])


def test_mappo_needs_a_global_state_and_minibatches_must_divide_the_batch():
    class NoGlobalState(CoordinationGame):
        def reset(self, key):
            state, ts = super().reset(key)
            obs = ts.observation
            return state, ts.replace(
                observation=Observation(obs.agents_view, obs.action_mask, obs.step_count)
            )

    with pytest.raises(ConfigError, match="global state"):
        mappo.make_learner(NoGlobalState(), tiny_config())
    with pytest.raises(ConfigError, match="num_minibatches"):
        ippo.make_learner(CoordinationGame(), tiny_config(num_minibatches=3))
