"""Environment wrappers every system uses: automatic reset and episode-metrics recording.

Both work on any environment that speaks :class:`ganno.types.MarlEnv`. The learner applies them as
``RecordEpisodeMetrics(AutoReset(env))``.

jumanji's ``AutoResetWrapper`` needs a ``key`` field in the environment's state and resets via
``jax.lax.cond``; here the wrapper keeps its own key, so any state works.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from ganno.types import TimeStep

EPISODE_METRICS = "episode_metrics"


class AutoResetState(NamedTuple):
    env_state: Any
    key: chex.PRNGKey


class AutoReset:
    """On ``timestep.last()`` reset with a fresh key; the new episode's first observation replaces
    the final one, while step type, reward, discount and extras stay those of the real last step."""

    def __init__(self, env: Any):
        self.env = env
        self.num_agents = env.num_agents
        self.action_dim = env.action_dim
        self.time_limit = env.time_limit

    def reset(self, key: chex.PRNGKey) -> tuple[AutoResetState, TimeStep]:
        key, reset_key = jax.random.split(key)
        env_state, timestep = self.env.reset(reset_key)
        return AutoResetState(env_state, key), timestep

    def step(self, state: AutoResetState, action: chex.Array) -> tuple[AutoResetState, TimeStep]:
        env_state, timestep = self.env.step(state.env_state, action)
        key, reset_key = jax.random.split(state.key)

        def reset(_: None) -> tuple[Any, Any]:
            new_state, first = self.env.reset(reset_key)
            return new_state, first.observation

        def keep(_: None) -> tuple[Any, Any]:
            return env_state, timestep.observation

        env_state, observation = jax.lax.cond(timestep.last(), reset, keep, None)
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
        # A finished episode starts again from zero (AutoReset has already reset the env).
        new_state = EpisodeStats(
            env_state,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        extras = dict(timestep.extras)
        extras[EPISODE_METRICS] = metrics
        return new_state, timestep.replace(extras=extras)


def wrap(env: Any) -> RecordEpisodeMetrics:
    """The wrappers the learner runs an environment under."""
    return RecordEpisodeMetrics(AutoReset(env))
