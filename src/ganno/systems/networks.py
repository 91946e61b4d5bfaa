"""The shared actor and the critics of IPPO and MAPPO (flax.linen).

Every network maps per-agent rows to per-agent outputs and treats the agent axis as just another
batch axis, so the same parameters run on any number of agents (any depth of the inner network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Logit given to masked actions: exp(-1e9 - max) is exactly 0 in float32 without producing NaNs.
MASKED_LOGIT = -1e9


class MLP(nn.Module):
    """ReLU MLP with orthogonal initialisation (as in Mava's and PureJaxRL's PPO)."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)))(x)
            x = nn.relu(x)
        return x


class Actor(nn.Module):
    """Shared policy: ``agents_view`` ``[..., N, F]`` -> categorical over ``[..., N, A]`` actions.

    Actions with ``action_mask == False`` get logit :data:`MASKED_LOGIT`, so they are never sampled.
    """

    hidden_sizes: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, obs: Any) -> distrax.Categorical:
        x = MLP(self.hidden_sizes)(obs.agents_view)
        logits = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(x)
        logits = jnp.where(obs.action_mask, logits, MASKED_LOGIT)
        return distrax.Categorical(logits=logits)


class Critic(nn.Module):
    """State value per agent, ``[..., N]``, read from ``obs.<input_field>`` ``[..., N, F]``.

    IPPO's critic reads ``agents_view`` (each agent its own view); MAPPO's centralised critic reads
    ``global_state``, whose size does not depend on the number of agents.
    """

    hidden_sizes: Sequence[int]
    input_field: str = "agents_view"

    @nn.compact
    def __call__(self, obs: Any) -> jax.Array:
        x = MLP(self.hidden_sizes)(getattr(obs, self.input_field))
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(x)
        return value[..., 0]


def actor_config(obs_dim: int, action_dim: int, hidden_sizes: Sequence[int]) -> dict[str, Any]:
    """What :func:`make_actor` needs to rebuild an actor (saved with every policy)."""
    return {
        "kind": "mlp_categorical",
        "obs_dim": int(obs_dim),
        "action_dim": int(action_dim),
        "hidden_sizes": [int(h) for h in hidden_sizes],
    }


def make_actor(config: dict[str, Any]) -> Actor:
    """The actor described by an :func:`actor_config` dictionary."""
    if config.get("kind") != "mlp_categorical":
        raise ValueError(f"unknown actor kind {config.get('kind')!r}; expected 'mlp_categorical'")
    return Actor(hidden_sizes=tuple(config["hidden_sizes"]), action_dim=config["action_dim"])
