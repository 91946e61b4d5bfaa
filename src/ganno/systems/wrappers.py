"""Environment wrappers every system uses: automatic reset and episode-metrics recording.

Both work on any environment that speaks :class:`ganno.types.MarlEnv`. The learner applies them as
``AutoReset(RecordEpisodeMetrics(env), num_envs)``: metrics per environment, resets per batch.

jumanji's ``AutoResetWrapper`` needs a ``key`` field in the environment's state and decides per
environment; here the wrapper keeps its own key, so any state works, and decides per batch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from ganno.types import TimeStep

EPISODE_METRICS = "episode_metrics"


class AutoResetState(NamedTuple):
    env_state: Any  # the batch of environment states, leading axis [num_envs]
    key: chex.PRNGKey


class AutoReset:
    """A batch of ``num_envs`` environments stepped together; those whose episode ended restart.

    The new episode's first observation replaces the final one, while step type, reward, discount
    and extras stay those of the real last step. Resets are decided for the whole batch with one
    ``lax.cond``: a per-environment ``cond`` under ``vmap`` turns into a ``select`` that computes
    a full reset of every environment at every step (8% of the environment's time, measured).
    """

    def __init__(self, env: Any, num_envs: int):
        self.env = env
        self.num_envs = int(num_envs)
        self.num_agents = env.num_agents
        self.action_dim = env.action_dim
        self.time_limit = env.time_limit

    def _reset_batch(self, key: chex.PRNGKey) -> tuple[Any, TimeStep]:
        return jax.vmap(self.env.reset)(jax.random.split(key, self.num_envs))

    def reset(self, key: chex.PRNGKey) -> tuple[AutoResetState, TimeStep]:
        """``num_envs`` fresh episodes; timestep fields get a leading ``[num_envs]`` axis."""
        key, reset_key = jax.random.split(key)
        env_state, timestep = self._reset_batch(reset_key)
        return AutoResetState(env_state, key), timestep

    def step(self, state: AutoResetState, action: chex.Array) -> tuple[AutoResetState, TimeStep]:
        """``action`` [num_envs, N]: step every environment, restart those that ended."""
        env_state, timestep = jax.vmap(self.env.step)(state.env_state, action)
        key, reset_key = jax.random.split(state.key)
        done = timestep.last()  # [num_envs]

        def restart_ended(carry: tuple[Any, Any]) -> tuple[Any, Any]:
            env_state, observation = carry
            fresh_state, fresh = self._reset_batch(reset_key)

            def pick(new: chex.Array, old: chex.Array) -> chex.Array:
                return jnp.where(done.reshape(done.shape + (1,) * (old.ndim - 1)), new, old)

            return (
                jax.tree.map(pick, fresh_state, env_state),
                jax.tree.map(pick, fresh.observation, observation),
            )

        env_state, observation = jax.lax.cond(
            jnp.any(done), restart_ended, lambda carry: carry, (env_state, timestep.observation)
        )
        return AutoResetState(env_state, key), timestep.replace(observation=observation)


class EpisodeStats(NamedTuple):
    env_state: Any
    episode_return: chex.Array  # [] team return so far (mean over agents of summed rewards)
    episode_length: chex.Array  # [] int32


class RecordEpisodeMetrics:
    """Adds ``extras["episode_metrics"]`` to every timestep.

    It holds ``episode_return`` (team return: mean over agents of the summed rewards),
    ``episode_length``, ``is_terminal_step`` and the scalar values of the wrapped environment's
    ``extras`` at this step. Only entries with ``is_terminal_step`` describe a finished episode.
    """

    def __init__(self, env: Any):
        self.env = env
        self.num_agents = env.num_agents
        self.action_dim = env.action_dim
        self.time_limit = env.time_limit

    def reset(self, key: chex.PRNGKey) -> tuple[EpisodeStats, TimeStep]:
        env_state, timestep = self.env.reset(key)
        state = EpisodeStats(env_state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        return state, timestep

    def step(self, state: EpisodeStats, action: chex.Array) -> tuple[EpisodeStats, TimeStep]:
        env_state, timestep = self.env.step(state.env_state, action)
        episode_return = state.episode_return + jnp.mean(timestep.reward).astype(jnp.float32)
        episode_length = state.episode_length + 1
        done = timestep.last()
        metrics = {
            name: jnp.asarray(value, jnp.float32)
            for name, value in timestep.extras.items()
            if name != EPISODE_METRICS and jnp.ndim(value) == 0
        }
        metrics.update(
            episode_return=episode_return,
            episode_length=episode_length,
            is_terminal_step=done,
        )
        # A finished episode starts again from zero (AutoReset then resets the env itself).
        new_state = EpisodeStats(
            env_state,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        extras = dict(timestep.extras)
        extras[EPISODE_METRICS] = metrics
        return new_state, timestep.replace(extras=extras)


def wrap(env: Any, num_envs: int) -> AutoReset:
    """The wrappers the learner runs ``num_envs`` environments under (batched reset and step)."""
    return AutoReset(RecordEpisodeMetrics(env), num_envs)
