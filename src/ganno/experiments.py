"""The evaluation experiments: every method on every task from every initial learning rate.

One function per kind of method writes the same tidy table (one row per task x method x lr0 x
seed), so the robustness sweep (C2, the meta-training task) and the generalisation evaluation (C3,
the configured bigger/harder tasks) are the same experiment on different tasks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from ganno import baselines
from ganno.config import TRAIN_TASK, task_config
from ganno.data import load_from_config
from ganno.env import make_env
from ganno.evaluate import grid_table, lr_trajectory_table
from ganno.inner import make_task
from ganno.results import COLUMNS, OPTIONAL_COLUMNS, lr0_grid


def _tidy(df: pd.DataFrame, meta_seed: int = -1) -> pd.DataFrame:
    df = df.copy()
    df["meta_seed"] = meta_seed
    return df[list(COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in df.columns]]


def run_baselines(
    config: Mapping[str, Any], task: str, methods: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every configured baseline on ``task`` over the lr0 grid and the evaluation seeds."""
    cfg = task_config(config, task)
    dataset = load_from_config(cfg)
    inner = make_task(cfg, dataset)
    env_cfg = cfg["env"]
    registry = baselines.methods_from_config(cfg)
    frames = []
    if methods is None:
        methods = cfg["baselines"]["methods"]
        if task != TRAIN_TASK and cfg["baselines"]["generalisation_methods"] is not None:
            methods = cfg["baselines"]["generalisation_methods"]
    for name in methods:
        frames.append(
            baselines.run_grid(
                inner,
                registry[name],
                lr0_grid(cfg),
                list(cfg["evaluation"]["seeds"]),
                dataset.x_test,
                dataset.y_test,
                num_steps=env_cfg["steps_per_decision"] * env_cfg["num_decisions"],
                eval_every=env_cfg["steps_per_decision"],
                divergence_loss_ratio=env_cfg["divergence_loss_ratio"],
                val_subset=env_cfg["val_subset"],
                task_name=task,
                method_name=name,
            )
        )
    return _tidy(pd.concat(frames, ignore_index=True))


class PolicyRun(NamedTuple):
    """A trained policy to evaluate and the names its rows get in the results table."""

    policy_dir: str | Path
    method: str
    meta_seed: int = -1


def run_policies(
    config: Mapping[str, Any],
    task: str,
    runs: Sequence[PolicyRun],
    greedy: bool = True,
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Trained policies, unchanged, on ``task`` over the lr0 grid and the evaluation seeds.

    Policies with the same actor network are evaluated together (:func:`ganno.evaluate.
    play_policies`). Returns, per run in order, (results table, each layer's learning rate at
    every decision).
    """
    from ganno.evaluate import play_policies
    from ganno.policy import Policy, check_policy_fits

    cfg = task_config(config, task)
    dataset = load_from_config(cfg)
    env = make_env(cfg, dataset, evaluation=True)
    policies = [Policy.load(run.policy_dir) for run in runs]
    for run, policy in zip(runs, policies, strict=True):
        check_policy_fits(policy, env, run.policy_dir, task)
    lr0s, seeds = lr0_grid(cfg), list(cfg["evaluation"]["seeds"])
    start = time.perf_counter()
    played = play_policies(env, policies, lr0s, seeds, dataset.x_test, dataset.y_test, greedy)
    wall = (time.perf_counter() - start) / len(runs)
    out = []
    for run, trajectories in zip(runs, played, strict=True):
        results = grid_table(
            trajectories, lr0s, seeds, method=run.method, task=task, wall_time_s=wall
        )
        schedules = lr_trajectory_table(
            trajectories,
            lr0s,
            seeds,
            method=run.method,
            task=task,
            steps_per_decision=env.steps_per_decision,
        )
        schedules["meta_seed"] = run.meta_seed
        out.append((_tidy(results, run.meta_seed), schedules))
    return out


def run_policy(
    config: Mapping[str, Any],
    task: str,
    policy_dir: str | Path,
    method: str,
    meta_seed: int = -1,
    greedy: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One trained policy on ``task`` (see :func:`run_policies`): (results, schedules)."""
    return run_policies(config, task, [PolicyRun(policy_dir, method, meta_seed)], greedy)[0]
