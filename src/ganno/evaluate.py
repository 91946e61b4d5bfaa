"""Run a learning-rate controller (a trained policy, or a fixed rule) through whole episodes.

One compiled function plays an episode from a given initial learning rate and returns its
trajectory (every layer's learning rate at every decision, losses, accuracy) and the final test
metrics; it ``vmap``s over seeds and initial rates, so a whole robustness grid is one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ganno.env import GannoEnv
from ganno.parallel import sharded_vmap

#: ``act(observation, key) -> actions [N]``: how a controller picks every agent's action.
ActFn = Callable[[Any, jax.Array], jnp.ndarray]


class Trajectory(NamedTuple):
    """One episode, decision by decision (index 0 is the reset)."""

    learning_rates: jnp.ndarray  # [H + 1, N]
    train_loss: jnp.ndarray  # [H + 1]
    val_loss: jnp.ndarray  # [H + 1]
    val_accuracy: jnp.ndarray  # [H + 1]
    actions: jnp.ndarray  # [H, N]
    active: jnp.ndarray  # [H + 1] bool, False after the episode ended (diverged)
    diverged: jnp.ndarray  # [] bool
    test_loss: jnp.ndarray  # []
    test_accuracy: jnp.ndarray  # []


def keep_rate(env: GannoEnv) -> ActFn:
    """The neutral controller: every agent always makes the neutral choice (factor 1, or level 0
    on the base schedule): plain SGD at lr0, or the base schedule, in the anchored modes."""
    keep = env.neutral_action
    return lambda observation, key: jnp.full((env.num_agents,), keep, jnp.int32)


def play_episode(
    env: GannoEnv,
    act: ActFn,
    key: jax.Array,
    lr0: jnp.ndarray,
    x_test: jnp.ndarray,
    y_test: jnp.ndarray,
) -> Trajectory:
    """Play one episode from ``lr0`` with ``act`` choosing the actions (pure; jit/vmap it)."""
    env_key, act_key = jax.random.split(key)
    state, timestep = env.reset_with_lr0(env_key, lr0)

    def record(ts):
        return (
            ts.extras["learning_rates"],
            ts.extras["train_loss"],
            ts.extras["val_loss"],
            ts.extras["val_accuracy"],
        )

    def one_decision(carry, step_key):
        state, timestep, done = carry
        action = act(timestep.observation, step_key)
        next_state, next_timestep = env.step(state, action)
        # After the episode ends (divergence) nothing changes any more.
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state, next_state)
        timestep = jax.tree.map(lambda a, b: jnp.where(done, a, b), timestep, next_timestep)
        return (state, timestep, done | timestep.last()), (record(timestep), action, ~done)

    step_keys = jax.random.split(act_key, env.time_limit)
    done0 = jnp.zeros((), bool)
    (state, _, _), (recs, actions, active) = jax.lax.scan(
        one_decision, (state, timestep, done0), step_keys
    )
    first = record(timestep)
    lrs, train, val, acc = (jnp.concatenate([f[None], r]) for f, r in zip(first, recs, strict=True))
    test_loss, test_accuracy = env.task.loss_and_accuracy(state.params, x_test, y_test)
    return Trajectory(
        lrs,
        train,
        val,
        acc,
        actions,
        jnp.concatenate([jnp.ones(1, bool), active]),
        state.diverged,
        test_loss,
        test_accuracy,
    )


def play_grid(
    env: GannoEnv,
    act: ActFn,
    lr0s: Sequence[float],
    seeds: Sequence[int],
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> Trajectory:
    """Every (lr0, seed) pair in one compiled call split over devices: fields get leading axes
    [len(lr0s), len(seeds)]."""
    out = play_policies_grid(
        env,
        lambda _params, observation, key: act(observation, key),
        jnp.zeros((1,)),
        lr0s,
        seeds,
        x_test,
        y_test,
    )
    return jax.tree.map(lambda x: x[0], out)


#: At most this many episodes (but at least one controller's grid) run side by side in one call of
#: :func:`play_policies_grid`: small calls keep each device's episodes in its cache. Six policies
#: on the width-256 MLP task (234 episodes) took 185 s in calls of 40 and 238 s in one call.
MAX_EPISODES_PER_CALL = 64


def play_policies_grid(
    env: GannoEnv,
    act_with: Callable[[Any, Any, jax.Array], jnp.ndarray],
    params: Any,
    lr0s: Sequence[float],
    seeds: Sequence[int],
    x_test: np.ndarray,
    y_test: np.ndarray,
    max_episodes: int = MAX_EPISODES_PER_CALL,
) -> Trajectory:
    """Every (controller, lr0, seed) triple for P controllers that differ only in their
    parameters: ``act_with(params, observation, key)`` with ``params`` stacked on a leading axis
    [P]. The parameters are arguments of the compiled function, not constants in it, so one
    compilation serves all P (run in calls of at most ``max_episodes`` episodes); fields get
    leading axes [P, len(lr0s), len(seeds)]. Controller p plays the episodes
    :func:`play_grid` plays for it alone (up to float rounding: batch shapes may change the last
    bit of a sum)."""
    num = jax.tree.leaves(params)[0].shape[0]
    per_controller = len(lr0s) * len(seeds)
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    xt, yt = jnp.asarray(x_test), jnp.asarray(y_test)
    flat_keys = jnp.tile(keys, (num * len(lr0s), 1))
    flat_lr0 = jnp.tile(jnp.repeat(jnp.asarray(lr0s, jnp.float32), len(seeds)), num)
    flat_params = jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x), per_controller, axis=0), params)

    def episode(p, k, lr):
        return play_episode(env, lambda obs, key: act_with(p, obs, key), k, lr, xt, yt)

    chunk = max(1, max_episodes // per_controller) * per_controller
    out = sharded_vmap(episode, flat_params, flat_keys, flat_lr0, chunk_size=chunk)
    return jax.tree.map(lambda x: x.reshape(num, len(lr0s), len(seeds), *x.shape[1:]), out)


def grid_table(
    trajectories: Trajectory,
    lr0s: Sequence[float],
    seeds: Sequence[int],
    *,
    method: str,
    task: str,
    wall_time_s: float,
) -> pd.DataFrame:
    """The tidy results table (one row per lr0 x seed) of a :func:`play_grid` result."""
    t = jax.tree.map(np.asarray, trajectories)
    rows = []
    per_run = wall_time_s / max(len(lr0s) * len(seeds), 1)
    for i, lr0 in enumerate(lr0s):
        for j, seed in enumerate(seeds):
            last = int(t.active[i, j].sum()) - 1
            rows.append(
                {
                    "method": method,
                    "task": task,
                    "lr0": float(lr0),
                    "seed": int(seed),
                    "val_loss": float(t.val_loss[i, j, last]),
                    "val_accuracy": float(t.val_accuracy[i, j, last]),
                    "test_loss": float(t.test_loss[i, j]),
                    "test_accuracy": float(t.test_accuracy[i, j]),
                    "diverged": bool(t.diverged[i, j]),
                    "wall_time_s": per_run,
                }
            )
    return pd.DataFrame(rows)


def lr_trajectory_table(
    trajectories: Trajectory, lr0s, seeds, *, method: str, task: str, steps_per_decision: int
) -> pd.DataFrame:
    """Long table of each layer's learning rate at every decision (for the schedule figures)."""
    t = jax.tree.map(np.asarray, trajectories)
    rows = []
    for i, lr0 in enumerate(lr0s):
        for j, seed in enumerate(seeds):
            for d in range(t.learning_rates.shape[2]):
                if not t.active[i, j, d]:
                    break
                for layer, lr in enumerate(t.learning_rates[i, j, d]):
                    rows.append(
                        {
                            "method": method,
                            "task": task,
                            "lr0": float(lr0),
                            "seed": int(seed),
                            "decision": d,
                            "step": d * steps_per_decision,
                            "layer": layer,
                            "learning_rate": float(lr),
                            "val_loss": float(t.val_loss[i, j, d]),
                        }
                    )
    return pd.DataFrame(rows)
