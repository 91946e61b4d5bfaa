"""The meta-training driver: files written, checkpoints, resumption, clear errors."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from ganno.config import ConfigError, load_config
from ganno.coordination_game import CoordinationGame
from ganno.meta_train import (
    CheckpointNotFoundError,
    NonFiniteLossError,
    load_checkpoint,
    meta_train,
    read_curve,
    save_checkpoint,
)
from ganno.policy import Policy
from ganno.systems import ippo

TIMING = ("steps_per_second", "wall_time")


def tiny_config(**meta_train):
    settings = {
        "num_envs": 4,
        "rollout_length": 8,
        "hidden_sizes": [16],
        "actor_lr": 3e-3,
        "critic_lr": 3e-3,
        "total_timesteps": 4 * 8 * 8,  # 8 updates
        "updates_per_chunk": 2,
        "checkpoint_every": 4,
    }
    settings.update(meta_train)
    return load_config(overrides={"meta_train": settings})


ENV = CoordinationGame(num_agents=2, num_actions=3, time_limit=4)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    summary = meta_train(ENV, tiny_config(), "ippo", 0, out, progress=False)
    return out, summary


def _without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_driver_writes_every_file(full_run):
    out, summary = full_run
    assert summary["updates"] == 8 and summary["env_steps"] == 256
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["meta_train"]["num_envs"] == 4 and config["meta_train"]["gamma"] == 0.99
    rows = read_curve(out / "learning_curve.jsonl")
    assert [r["update"] for r in rows] == list(range(1, 9))
    assert [r["env_steps"] for r in rows] == [32 * u for u in range(1, 9)]
    for key in ("episode_return", "episode_length", "agreed", "steps_per_second", "wall_time"):
        assert all(r[key] is not None for r in rows), key
    assert all(r["episode_length"] == 4 for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    run = metrics["coordination_game"][ENV.task_name]["ippo"]["seed_0"]
    assert run["step_0"]["step_count"] == 32 and len(run["step_0"]["episode_return"]) == 1
    assert "episode_return" in run["absolute_metrics"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint_00000004.msgpack",
        "checkpoint_00000008.msgpack",
    ]
    policy = Policy.load(out / "policy")
    assert policy.config["algo"] == "ippo" and policy.config["env_steps"] == 256


def test_checkpoint_round_trip(tmp_path):
    init_fn, _ = ippo.make_learner(ENV, tiny_config())
    state = init_fn(jax.random.PRNGKey(3))
    save_checkpoint(tmp_path, state, {"update": 7, "note": "x"})
    template = init_fn(jax.random.PRNGKey(0))
    restored, meta = load_checkpoint(tmp_path, template)
    assert meta == {"update": 7, "note": "x"}
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_missing_and_corrupt_checkpoints_give_clear_errors(tmp_path):
    init_fn, _ = ippo.make_learner(ENV, tiny_config())
    state = init_fn(jax.random.PRNGKey(0))
    with pytest.raises(CheckpointNotFoundError, match=str(tmp_path)):
        load_checkpoint(tmp_path, state)
    save_checkpoint(tmp_path, state, {"update": 1})
    (tmp_path / "checkpoint_00000002.msgpack").write_bytes(b"not a checkpoint")
    _, meta = load_checkpoint(tmp_path, state)  # falls back to the older, readable one
    assert meta["update"] == 1


@pytest.mark.parametrize("curve_deleted", [False, True])
def test_resume_after_interruption_equals_an_uninterrupted_run(full_run, tmp_path, curve_deleted):
    reference, _ = full_run
    chunks = []

    def interrupt_after_three_chunks(info):
        chunks.append(info["update"])
        if len(chunks) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        meta_train(
            ENV, tiny_config(), "ippo", 0, tmp_path, progress=False,
            callback=interrupt_after_three_chunks,
        )  # fmt: skip
    # Killed at update 6; the last checkpoint is at update 4, the curve runs ahead to 6.
    assert [r["update"] for r in read_curve(tmp_path / "learning_curve.jsonl")] == list(range(1, 7))
    if curve_deleted:  # as Snakemake deletes the outputs of a job it reruns
        (tmp_path / "learning_curve.jsonl").unlink()
    resumed = []
    meta_train(
        ENV, tiny_config(), "ippo", 0, tmp_path, progress=False,
        callback=lambda info: resumed.append(info["update"]),
    )  # fmt: skip
    assert resumed == [6, 8]  # restarted from the checkpoint at update 4
    rows = read_curve(tmp_path / "learning_curve.jsonl")
    assert [r["update"] for r in rows] == list(range(1, 9))  # nothing duplicated
    expected = read_curve(reference / "learning_curve.jsonl")
    assert _without_timing(rows) == _without_timing(expected)
    a = Policy.load(tmp_path / "policy").params
    b = Policy.load(reference / "policy").params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_vmapped_seeds_write_one_run_per_seed(tmp_path):
    meta_train(ENV, tiny_config(), "mappo", 0, tmp_path, seeds_vmapped=[0, 1], progress=False)
    rows = read_curve(tmp_path / "learning_curve.jsonl")
    assert sorted({r["seed"] for r in rows}) == [0, 1] and len(rows) == 16
    runs = json.loads((tmp_path / "metrics.json").read_text())["coordination_game"]
    assert set(runs[ENV.task_name]["mappo"]) == {"seed_0", "seed_1"}
    assert Policy.load(tmp_path / "policy" / "seed_1").config["seed"] == 1


class NaNRewards(CoordinationGame):
    def step(self, state, action):
        state, timestep = super().step(state, action)
        return state, timestep.replace(reward=timestep.reward * jnp.nan)


def test_non_finite_loss_names_the_update_and_keeps_the_last_checkpoint(full_run, tmp_path):
    shutil.copytree(full_run[0], tmp_path, dirs_exist_ok=True)
    env = NaNRewards(num_agents=2, num_actions=3, time_limit=4)
    longer = tiny_config(total_timesteps=4 * 8 * 12)
    with pytest.raises(NonFiniteLossError, match=r"update 9\b.*update 8"):
        meta_train(env, longer, "ippo", 0, tmp_path, progress=False)
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert checkpoints[-1] == "checkpoint_00000008.msgpack"


def test_bad_config_and_mismatched_resume_give_clear_errors(full_run, tmp_path):
    with pytest.raises(ConfigError, match="algo"):
        meta_train(ENV, tiny_config(), "qmix", 0, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="num_envz"):
        meta_train(ENV, {"meta_train": {"num_envz": 3}}, "ippo", 0, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="total_timesteps"):
        meta_train(ENV, tiny_config(total_timesteps=5), "ippo", 0, tmp_path, progress=False)
    shutil.copytree(full_run[0], tmp_path / "copy")
    with pytest.raises(ConfigError, match="another config"):
        meta_train(ENV, tiny_config(gamma=0.5), "ippo", 0, tmp_path / "copy", progress=False)


def test_the_evaluation_only_guard_is_not_part_of_a_runs_identity():
    """``env.guard`` applies in evaluation and deployment only: a run meta-trained without it
    resumes (and the workflow keeps it) when it is turned on; any other env key is identity."""
    from ganno.config import validate
    from ganno.meta_train import _fingerprint

    base = validate(tiny_config())
    base["env"] = {**base["env"], "action_mode": "anchored_compound"}
    guarded = {**base, "env": {**base["env"], "guard": True}}
    assert _fingerprint(guarded, "ippo") == _fingerprint(base, "ippo")
    other = {**base, "env": {**base["env"], "divergence_loss_ratio": 5.0}}
    assert _fingerprint(other, "ippo") != _fingerprint(base, "ippo")
