"""The shared actor and the critics of IPPO and MAPPO (flax.linen).

Every network maps per-agent rows to per-agent outputs and treats the agent axis as just another
batch axis, so the same parameters run on any number of agents (any depth of the inner network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
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


class RecurrentActor(nn.Module):
    """Shared recurrent policy (Mava's rec_ippo actor): an MLP torso, a GRU cell, a linear head.

    ``(carry [..., N, H], obs) -> (carry, categorical over [..., N, A])``: every agent keeps its own
    hidden state (the agent axis is a batch axis), carried from one decision of an episode to the
    next, so an agent can act on what it saw earlier in the episode, not only on this interval.
    The carry starts at zeros (:meth:`initial_carry`) at every episode start.
    """

    hidden_sizes: Sequence[int]
    gru_size: int
    action_dim: int

    @nn.compact
    def __call__(self, carry: jax.Array, obs: Any) -> tuple[jax.Array, distrax.Categorical]:
        x = MLP(self.hidden_sizes)(obs.agents_view)
        carry, x = nn.GRUCell(features=self.gru_size, name="gru")(carry, x)
        logits = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(x)
        logits = jnp.where(obs.action_mask, logits, MASKED_LOGIT)
        return carry, distrax.Categorical(logits=logits)

    def initial_carry(self, batch_shape: Sequence[int]) -> jax.Array:
        """The hidden state at an episode's start, ``[*batch_shape, gru_size]`` zeros."""
        return jnp.zeros((*batch_shape, self.gru_size), jnp.float32)


ActorNetwork = Actor | RecurrentActor


def initial_carry(network: ActorNetwork, batch_shape: Sequence[int]) -> Any:
    """What the actor carries between decisions at an episode's start: zeros for a recurrent
    actor, ``()`` (nothing) for a feed-forward one. ``batch_shape`` ends with the agent axis."""
    if isinstance(network, RecurrentActor):
        return network.initial_carry(batch_shape)
    return ()


def actor_step(
    network: ActorNetwork, params: Any, carry: Any, obs: Any
) -> tuple[Any, distrax.Categorical]:
    """One decision of either actor: ``(carry, obs) -> (next carry, action distribution)``; a
    feed-forward actor passes its empty carry through."""
    if isinstance(network, RecurrentActor):
        return network.apply(params, carry, obs)
    return carry, network.apply(params, obs)


def reset_carry(carry: Any, done: jax.Array) -> Any:
    """``carry`` with the hidden state of every agent whose episode just ended (``done``
    ``[..., N]``) back at zeros, so the next episode starts afresh; ``()`` stays ``()``."""
    return jax.tree.map(lambda h: jnp.where(done[..., None], jnp.zeros_like(h), h), carry)


def init_actor(network: ActorNetwork, key: chex.PRNGKey, obs: Any) -> Any:
    """The actor's initial parameters for observations shaped like ``obs`` (``[N, ...]``)."""
    if isinstance(network, RecurrentActor):
        return network.init(key, initial_carry(network, obs.agents_view.shape[:-1]), obs)
    return network.init(key, obs)


#: The actor kinds a policy can be saved with (``actor_config(...)["kind"]``).
ACTOR_KINDS = ("mlp_categorical", "gru_categorical")


def actor_config(
    obs_dim: int, action_dim: int, hidden_sizes: Sequence[int], gru_size: int = 0
) -> dict[str, Any]:
    """What :func:`make_actor` needs to rebuild an actor (saved with every policy); ``gru_size``
    > 0 makes it recurrent (:class:`RecurrentActor`)."""
    config = {
        "kind": "gru_categorical" if gru_size else "mlp_categorical",
        "obs_dim": int(obs_dim),
        "action_dim": int(action_dim),
        "hidden_sizes": [int(h) for h in hidden_sizes],
    }
    if gru_size:
        config["gru_size"] = int(gru_size)
    return config


def make_actor(config: dict[str, Any]) -> ActorNetwork:
    """The actor described by an :func:`actor_config` dictionary."""
    kind = config.get("kind")
    if kind not in ACTOR_KINDS:
        raise ValueError(f"unknown actor kind {kind!r}; expected one of {ACTOR_KINDS}")
    hidden = tuple(config["hidden_sizes"])
    if kind == "gru_categorical":
        return RecurrentActor(hidden, int(config["gru_size"]), config["action_dim"])
    return Actor(hidden_sizes=hidden, action_dim=config["action_dim"])
