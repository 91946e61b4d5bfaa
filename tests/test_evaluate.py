"""Several policies in one compiled grid play the episodes each plays alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import synthetic_dataset, tiny_inner_task

from ganno.env import GannoEnv
from ganno.evaluate import play_grid, play_policies_grid
from ganno.parallel import sharded_vmap
from ganno.policy import Policy
from ganno.systems.networks import Actor, actor_config

# One worker runs this module, so its module fixtures (the policies it plays) are built once
# (under --dist loadgroup an ungrouped test goes to either worker, which builds its own).
pytestmark = pytest.mark.xdist_group("evaluate")

LR0S, SEEDS = [1e-3, 0.1, 30.0], [0, 1]


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(n_train=128, n_val=64, features=8, classes=3, seed=2)


@pytest.fixture(scope="module")
def env(data):
    return GannoEnv(tiny_inner_task(data), steps_per_decision=5, num_decisions=4)


@pytest.fixture(scope="module")
def policies(env):
    """Two differently initialised actors: different, non-constant choices."""
    config = {"network": actor_config(env.num_features, env.action_dim, [16])}
    actor = Actor(hidden_sizes=(16,), action_dim=env.action_dim)
    _, timestep = env.reset(jax.random.PRNGKey(0))
    return [
        Policy(actor.init(jax.random.PRNGKey(seed), timestep.observation), config)
        for seed in (0, 1)
    ]


def _grid_of_all(env, data, policies, **kwargs):
    shell = {"network": policies[0].config["network"]}
    params = jax.tree.map(lambda *x: jnp.stack(x), *(p.params for p in policies))
    return play_policies_grid(
        env,
        lambda p, obs, key: Policy(p, shell).act(obs, key),
        params,
        LR0S,
        SEEDS,
        data.x_test,
        data.y_test,
        **kwargs,
    )


def _assert_same_episodes(mine, reference):
    for field in reference._fields:
        a, b = np.asarray(getattr(mine, field)), np.asarray(getattr(reference, field))
        if np.issubdtype(b.dtype, np.floating):  # the batch size may move the last bit of a sum
            np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=field)
        else:  # the decisions themselves are identical
            np.testing.assert_array_equal(a, b, field)


def test_each_policy_plays_the_episodes_it_plays_alone(env, data, policies):
    together = _grid_of_all(env, data, policies)
    assert together.learning_rates.shape[:3] == (2, len(LR0S), len(SEEDS))
    alone = [
        play_grid(env, lambda obs, key, p=p: p.act(obs, key), LR0S, SEEDS, data.x_test, data.y_test)
        for p in policies
    ]
    for i, single in enumerate(alone):
        _assert_same_episodes(jax.tree.map(lambda x, i=i: x[i], together), single)
    # The policies do differ, so the check above could have failed.
    assert not np.array_equal(np.asarray(alone[0].actions), np.asarray(alone[1].actions))


def test_chunked_calls_give_the_same_grid(env, data, policies):
    whole = _grid_of_all(env, data, policies)
    # At most 7 episodes per call: the 12 episodes (2 policies x 6) run in 2 calls of one
    # compiled function.
    _assert_same_episodes(_grid_of_all(env, data, policies, max_episodes=7), whole)


def test_sharded_vmap_in_padded_chunks_equals_one_call():
    x = jnp.arange(7.0)
    y = {"a": jnp.arange(7) % 3}

    def fn(v, tree):
        return v * 2.0 + tree["a"]

    expected = np.asarray(x * 2.0 + y["a"])
    for chunk_size in (None, 1, 3, 4, 100):  # 3: 7 = 3 + 3 + 1 padded to 3
        out = sharded_vmap(fn, x, y, chunk_size=chunk_size)
        np.testing.assert_array_equal(np.asarray(out), expected)
