"""Run a learning-rate controller (a trained policy, or a fixed rule) through whole episodes.

One compiled function plays an episode from a given initial learning rate and returns its
trajectory (every layer's learning rate at every decision, losses, accuracy) and the final test
metrics; it ``vmap``s over seeds and initial rates, so a whole robustness grid is one call.
"""

from __future__ import annotations

import json
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
#: ``step(carry, observation, key) -> (carry, actions [N])``: a controller with a memory (a
#: recurrent policy's hidden state), passed on from one decision of the episode to the next.
StepFn = Callable[[Any, Any, jax.Array], tuple[Any, jnp.ndarray]]


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
    lr_scale: jnp.ndarray  # [H + 1, N] each layer's multiplier on the base schedule (1: compound)
    guard_step: jnp.ndarray  # [] int32, the inner step at which the guard tripped (-1: never)


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
    *,
    carry: Any = None,
) -> Trajectory:
    """Play one episode from ``lr0`` with ``act`` choosing the actions (pure; jit/vmap it).

    With ``carry`` (e.g. ``policy.initial_carry(env.num_agents)``), ``act`` is a :data:`StepFn`
    whose carry starts there and goes from each decision to the next. With the guard
    (``env.guarded``, ``env.guard`` in an environment built for evaluation) the episode runs on
    after a trip with the agents' actions ignored; ``guard_step`` says where it tripped."""
    if carry is None:
        stateless = act
        act, carry = (lambda c, observation, k: (c, stateless(observation, k))), ()
    env_key, act_key = jax.random.split(key)
    state, timestep = env.reset_with_lr0(env_key, lr0)

    def record(ts):
        return (
            ts.extras["learning_rates"],
            ts.extras["train_loss"],
            ts.extras["val_loss"],
            ts.extras["val_accuracy"],
        )

    def one_decision(episode, step_key):
        state, timestep, done, memory = episode
        memory, action = act(memory, timestep.observation, step_key)
        next_state, next_timestep = env.step(state, action)
        # After the episode ends (divergence) nothing changes any more.
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state, next_state)
        timestep = jax.tree.map(lambda a, b: jnp.where(done, a, b), timestep, next_timestep)
        episode = (state, timestep, done | timestep.last(), memory)
        return episode, (record(timestep), state.lr_scale, action, ~done)

    step_keys = jax.random.split(act_key, env.time_limit)
    done0 = jnp.zeros((), bool)
    first, first_scale = record(timestep), state.lr_scale
    (state, _, _, _), (recs, scales, actions, active) = jax.lax.scan(
        one_decision, (state, timestep, done0, carry), step_keys
    )
    lrs, train, val, acc = (jnp.concatenate([f[None], r]) for f, r in zip(first, recs, strict=True))
    test_loss, test_accuracy = env.task.loss_and_accuracy(state.params, x_test, y_test)
    guard = getattr(state, "guard", ())
    guard_step = guard.step if guard else jnp.full((), -1, jnp.int32)
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
        jnp.concatenate([first_scale[None], scales]),
        guard_step,
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
    *,
    carry: Any = None,
) -> Trajectory:
    """Every (controller, lr0, seed) triple for P controllers that differ only in their
    parameters: ``act_with(params, observation, key)`` with ``params`` stacked on a leading axis
    [P]. The parameters are arguments of the compiled function, not constants in it, so one
    compilation serves all P (run in calls of at most ``max_episodes`` episodes); fields get
    leading axes [P, len(lr0s), len(seeds)]. Controller p plays the episodes
    :func:`play_grid` plays for it alone (up to float rounding: batch shapes may change the last
    bit of a sum). With ``carry`` (every episode's initial carry), ``act_with(params, carry,
    observation, key) -> (carry, actions)`` (see :func:`play_episode`)."""
    num = jax.tree.leaves(params)[0].shape[0]
    per_controller = len(lr0s) * len(seeds)
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    xt, yt = jnp.asarray(x_test), jnp.asarray(y_test)
    flat_keys = jnp.tile(keys, (num * len(lr0s), 1))
    flat_lr0 = jnp.tile(jnp.repeat(jnp.asarray(lr0s, jnp.float32), len(seeds)), num)
    flat_params = jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x), per_controller, axis=0), params)

    def episode(p, k, lr):
        if carry is None:
            return play_episode(env, lambda obs, key: act_with(p, obs, key), k, lr, xt, yt)
        step = lambda c, obs, key: act_with(p, c, obs, key)  # noqa: E731
        return play_episode(env, step, k, lr, xt, yt, carry=carry)

    chunk = max(1, max_episodes // per_controller) * per_controller
    out = sharded_vmap(episode, flat_params, flat_keys, flat_lr0, chunk_size=chunk)
    return jax.tree.map(lambda x: x.reshape(num, len(lr0s), len(seeds), *x.shape[1:]), out)


def play_policies(
    env: GannoEnv,
    policies: Sequence[Any],
    lr0s: Sequence[float],
    seeds: Sequence[int],
    x_test: np.ndarray,
    y_test: np.ndarray,
    greedy: bool = True,
) -> list[Trajectory]:
    """Trained policies (:class:`ganno.policy.Policy`) over the (lr0, seed) grid, each with its
    fields on leading axes [len(lr0s), len(seeds)], in the order given.

    Policies with the same actor network (and normalisation or none) play together: their
    parameters are stacked and passed to one compiled function (:func:`play_policies_grid`), so
    they cost one compilation, and each plays the episodes it would play alone (up to float
    rounding). A recurrent policy's hidden state starts at zeros in every episode and goes from
    each decision to the next."""
    from ganno.policy import Policy

    groups: dict[str, list[int]] = {}
    for i, policy in enumerate(policies):
        kind = {"network": policy.config["network"], "normalised": policy.normaliser is not None}
        groups.setdefault(json.dumps(kind, sort_keys=True), []).append(i)

    out: list[Trajectory | None] = [None] * len(policies)
    for kind_json, members in groups.items():
        shell = {"network": json.loads(kind_json)["network"]}

        def act_with(inputs, carry, observation, key, shell=shell):
            # a policy's inputs: its actor parameters and its observation statistics (or None)
            params, normaliser = inputs
            policy = Policy(params, shell, normaliser)
            return policy.step(carry, observation, key, greedy=greedy)

        params = jax.tree.map(
            lambda *x: jnp.stack(x),
            *((policies[i].params, policies[i].normaliser) for i in members),
        )
        carry = policies[members[0]].initial_carry(env.num_agents)
        trajectories = play_policies_grid(
            env, act_with, params, lr0s, seeds, x_test, y_test, carry=carry
        )
        trajectories = jax.tree.map(np.asarray, trajectories)  # to the host once
        for j, i in enumerate(members):
            out[i] = jax.tree.map(lambda x, j=j: x[j], trajectories)
    return out


def grid_table(
    trajectories: Trajectory,
    lr0s: Sequence[float],
    seeds: Sequence[int],
    *,
    method: str,
    task: str,
    wall_time_s: float,
) -> pd.DataFrame:
    """The tidy results table (one row per lr0 x seed) of a :func:`play_grid` result;
    ``guard_step``: the inner step at which the guard tripped (-1: never, or no guard)."""
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
                    "guard_step": int(t.guard_step[i, j]),
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
