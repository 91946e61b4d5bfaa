"""A tiny cooperative test environment: a repeated coordination game with a known optimum.

Each step a random context ``c`` in ``{0, ..., A-1}`` is shown to all agents (one-hot, plus the
episode's progress t/T; each agent also sees its relative position, the global state does not).
The team gets reward 1 (every agent's entry of the ``[N]`` reward) only when *all* agents pick
action ``c``, else 0. An episode lasts ``time_limit`` steps, so the optimal team return is
``time_limit`` while uniformly random agents get ``time_limit / A**N``.

It speaks the protocol of :mod:`ganno.types` and is what the systems' tests learn on.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from ganno.types import ObservationGlobalState, StepType, TimeStep


class CoordinationState(NamedTuple):
    key: chex.PRNGKey
    context: chex.Array  # [] int32, the action every agent must pick this step
    step: chex.Array  # [] int32, steps taken in the episode


class CoordinationGame:
    """``num_agents`` agents, ``num_actions`` actions, episodes of ``time_limit`` steps."""

    name = "coordination_game"

    def __init__(self, num_agents: int = 2, num_actions: int = 3, time_limit: int = 8):
        self.num_agents = num_agents
        self.action_dim = num_actions
        self.time_limit = time_limit

    @property
    def task_name(self) -> str:
        return f"{self.num_agents}ag_{self.action_dim}act_{self.time_limit}t"

    @property
    def optimal_return(self) -> float:
        return float(self.time_limit)

    @property
    def random_return(self) -> float:
        return self.time_limit / self.action_dim**self.num_agents

    def _observation(self, state: CoordinationState) -> ObservationGlobalState:
        n = self.num_agents
        features = jnp.concatenate(
            [
                jax.nn.one_hot(state.context, self.action_dim),
                (state.step / self.time_limit)[None].astype(jnp.float32),
            ]
        )
        shared = jnp.broadcast_to(features, (n, features.shape[0]))
        position = (jnp.arange(n) / max(n - 1, 1)).astype(jnp.float32)[:, None]
        return ObservationGlobalState(
            agents_view=jnp.concatenate([shared, position], axis=-1),
            action_mask=jnp.ones((n, self.action_dim), bool),
            global_state=shared,  # its size does not depend on the number of agents
            step_count=jnp.full((n,), state.step, jnp.int32),
        )

    def reset(self, key: chex.PRNGKey) -> tuple[CoordinationState, TimeStep]:
        key, context_key = jax.random.split(key)
        context = jax.random.randint(context_key, (), 0, self.action_dim)
        state = CoordinationState(key, context, jnp.zeros((), jnp.int32))
        n = self.num_agents
        timestep = TimeStep(
            step_type=StepType.FIRST,
            reward=jnp.zeros((n,), jnp.float32),
            discount=jnp.ones((n,), jnp.float32),
            observation=self._observation(state),
            extras={"agreed": jnp.zeros((), jnp.float32)},
        )
        return state, timestep

    def step(
        self, state: CoordinationState, action: chex.Array
    ) -> tuple[CoordinationState, TimeStep]:
        n = self.num_agents
        agreed = jnp.all(action == state.context)
        reward = jnp.full((n,), agreed, jnp.float32)
        key, context_key = jax.random.split(state.key)
        context = jax.random.randint(context_key, (), 0, self.action_dim)
        state = CoordinationState(key, context, state.step + 1)
        last = state.step >= self.time_limit
        timestep = TimeStep(
            step_type=jnp.where(last, StepType.LAST, StepType.MID),
            reward=reward,
            discount=jnp.where(last, 0.0, 1.0) * jnp.ones((n,), jnp.float32),
            observation=self._observation(state),
            extras={"agreed": agreed.astype(jnp.float32)},
        )
        return state, timestep
