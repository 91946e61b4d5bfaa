"""Meta-training on a family of tasks: one learner, every member's rollouts in every update;
held-out evaluation tasks refused as members."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from conftest import synthetic_dataset, tiny_inner_task
from test_recurrent import _scaled_head
from test_systems import tiny_config

from ganno.config import ConfigError, family_configs, load_config
from ganno.coordination_game import CoordinationGame
from ganno.env import GannoEnv
from ganno.evaluate import play_policies
from ganno.meta_train import meta_train
from ganno.networks import make_network
from ganno.policy import Policy
from ganno.systems import ippo

# Two members with different numbers of agents and episode lengths.
FAMILY = [
    CoordinationGame(num_agents=2, num_actions=3, time_limit=5),
    CoordinationGame(num_agents=4, num_actions=3, time_limit=3),
]


def test_one_update_learns_from_every_member():
    """Every update rolls out every member; with the actor's learning rate 0 the loss's
    log-probabilities are the rollouts' (approx_kl = 0), so every member's rows (and, for a
    recurrent actor, its sequences and their first hidden states) line up in the batch."""
    cfg = tiny_config(num_envs=4, rollout_length=6, num_minibatches=2, gru_size=8, ppo_epochs=2)
    cfg["meta_train"]["actor_lr"] = 0.0
    init_fn, update_fn = ippo.make_learner(FAMILY, cfg)
    state = jax.jit(init_fn)(jax.random.PRNGKey(0))
    assert [o.agents_view.shape[:2] for o in state.obs] == [(4, 2), (4, 4)]
    state = state._replace(params=state.params._replace(actor=_scaled_head(state.params.actor)))
    update = jax.jit(update_fn)
    for _ in range(3):
        state, metrics = update(state)
        assert abs(float(metrics["approx_kl"])) < 1e-6
        assert np.isfinite(float(metrics["total_loss"]))
    # episodes of both members finished: 3 updates x 6 steps x 4 envs / 5 and / 3 steps
    assert int(metrics["num_episodes"]) == 4 + 8
    assert [h.shape for h in state.actor_carry] == [(4, 2, 8), (4, 4, 8)]


def test_members_must_share_the_observation_and_actions():
    cfg = tiny_config(num_envs=4, rollout_length=6)
    with pytest.raises(ConfigError, match="member .* has 6 features and 4 actions"):
        ippo.make_learner([FAMILY[0], CoordinationGame(num_agents=2, num_actions=4)], cfg)


def test_held_out_tasks_stay_held_out():
    """A member that is an evaluation task (same inner problem and budget, whatever its name) is
    refused, as are repeats and members that change the agents' design."""
    fine = load_config(
        overrides={
            "meta_train": {
                "task_family": [
                    {"name": "mlp_depth2", "task": {"network": {"depth": 2}}},
                    {
                        "name": "digits_short",
                        "task": {"dataset": "digits"},
                        "env": {"num_decisions": 20},
                    },
                ]
            }
        }
    )
    members = family_configs(fine)
    assert [n for n, _ in members] == ["train", "mlp_depth2", "digits_short"]
    assert (
        members[2][1]["task"]["dataset"] == "digits" and members[2][1]["env"]["num_decisions"] == 20
    )
    for family, message in [
        (
            [{"name": "deeper", "task": {"network": {"depth": 8}}}],
            "member 'deeper' is the evaluation task 'mlp_depth8'",
        ),
        (
            [{"name": "long", "env": {"num_decisions": 160}}],
            "member 'long' is the evaluation task 'long_budget'",
        ),
        (
            [{"name": "a", "task": {"batch_size": 64}}, {"name": "b", "task": {"batch_size": 64}}],
            "member 'b' repeats 'a'",
        ),
        ([{"name": "x", "env": {"reward": "log_val_error_drop"}}], "may change only the budget"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(overrides={"meta_train": {"task_family": family}})
    # in an agent's overrides too
    with pytest.raises(ConfigError, match=r"agents.1.*'deeper' is the evaluation task"):
        load_config(
            overrides={
                "agents": [
                    {"name": "ippo"},
                    {
                        "name": "fam",
                        "meta_train": {
                            "task_family": [{"name": "deeper", "task": {"network": {"depth": 8}}}]
                        },
                    },
                ]
            }
        )


def test_a_family_meta_training_run_saves_one_policy_for_every_member(tmp_path):
    """MAPPO with a recurrent actor on two members with different numbers of layers: one policy,
    saved with its family and the config's own task's settings, that plays any of them."""
    data = synthetic_dataset(n_train=128, n_val=64, features=8, classes=3, seed=2)
    shallow = GannoEnv(tiny_inner_task(data), steps_per_decision=5, num_decisions=4)
    deeper_task = dataclasses.replace(
        tiny_inner_task(data), network=make_network({"kind": "mlp", "depth": 3, "width": 8}, 3)
    )
    deeper = GannoEnv(deeper_task, steps_per_decision=5, num_decisions=6)
    shallow.task_name, deeper.task_name = "train", "deeper"
    assert (shallow.num_agents, deeper.num_agents) == (2, 3)
    cfg = tiny_config(
        num_envs=4,
        rollout_length=4,
        num_minibatches=2,
        hidden_sizes=[16],
        gru_size=8,
        total_timesteps=2 * 4 * 4 * 2,
        updates_per_chunk=2,
        checkpoint_every=2,
    )
    summary = meta_train([shallow, deeper], cfg, "mappo", 0, tmp_path, progress=False)
    assert summary["updates"] == 2 and summary["env_steps"] == 64  # 2 members x 4 x 4, twice
    policy = Policy.load(tmp_path / "policy")
    assert policy.config["task_family"] == ["train", "deeper"]
    assert policy.config["env"]["num_decisions"] == 4  # the config's own task's settings
    assert policy.recurrent and policy.config["network"]["gru_size"] == 8
    played = play_policies(deeper, [policy], [0.05], [0], data.x_test, data.y_test)
    assert played[0].actions.shape == (1, 1, 6, 3)
