"""PPO's pure pieces: the learner's state, generalised advantage estimation and the losses.

Shapes: ``T`` rollout steps, ``E`` parallel environments, ``N`` agents, ``A`` actions. The agent
axis is a batch axis everywhere: every agent has its own reward, value and advantage.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp


class PPOTransition(NamedTuple):
    """One environment step of a rollout, as the learner stores it (leaves ``[E, N, ...]``)."""

    obs: Any  # Observation / ObservationGlobalState the action was chosen from
    action: chex.Array  # [E, N] int32
    log_prob: chex.Array  # [E, N] log probability of ``action`` under the behaviour policy
    value: chex.Array  # [E, N] critic's value of ``obs``
    reward: chex.Array  # [E, N]
    discount: chex.Array  # [E, N] environment discount (0 at a terminal step)
    done: chex.Array  # [E, N] bool, the episode ended with this step (the env was reset)
    info: dict  # episode metrics of this step (see wrappers.RecordEpisodeMetrics)


class Params(NamedTuple):
    actor: Any
    critic: Any


class OptStates(NamedTuple):
    actor: Any
    critic: Any


class LearnerState(NamedTuple):
    """Everything one update reads and writes; ``vmap`` it over seeds for several runs at once."""

    params: Params
    opt_states: OptStates
    key: chex.PRNGKey
    env_state: Any  # [E, ...] state of the wrapped environments
    obs: Any  # [E, N, ...] the observation the next action is chosen from
    # Running statistics of agents_view (and global_state) when observations are normalised,
    # {field: normalisation.RunningStats}; empty otherwise.
    obs_norm: Any = {}  # never mutated: every update builds a new dict
    # What the actor carries into the next decision: a recurrent actor's hidden state [E, N, H]
    # (zeros at every episode start); () for a feed-forward actor.
    actor_carry: Any = ()


def compute_gae(
    rewards: chex.Array,
    values: chex.Array,
    discounts: chex.Array,
    dones: chex.Array,
    last_value: chex.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[chex.Array, chex.Array]:
    """Generalised advantage estimates and value targets of a rollout.

    ``rewards``, ``values``, ``discounts``, ``dones``: ``[T, ...]``; ``last_value``: ``[...]``,
    the value of the observation after the last step. Step ``t`` bootstraps from ``values[t + 1]``
    unless the episode ended there (``dones[t]``): the next observation then belongs to a new
    episode.
    An episode cut by a time limit is treated as terminal (the observation carries the progress).

    Returns ``(advantages, targets)``, both ``[T, ...]``, with ``targets = advantages + values``.
    """
    not_done = 1.0 - dones.astype(values.dtype)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    continuation = gamma * discounts * not_done
    deltas = rewards + continuation * next_values - values

    def backwards(gae: chex.Array, step: tuple[chex.Array, chex.Array]) -> tuple:
        delta, cont = step
        gae = delta + gae_lambda * cont * gae
        return gae, gae

    _, advantages = jax.lax.scan(
        backwards, jnp.zeros_like(last_value), (deltas, continuation), reverse=True
    )
    return advantages, advantages + values


def normalize(advantages: chex.Array, eps: float = 1e-8) -> chex.Array:
    """Advantages scaled to mean 0 and standard deviation 1 over the whole batch."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_policy_loss(
    log_prob: chex.Array, old_log_prob: chex.Array, advantages: chex.Array, clip_eps: float
) -> chex.Array:
    """PPO's clipped surrogate, as a loss to minimise (scalar; inputs of any equal shape).

    ``-mean(min(r * adv, clip(r, 1 - eps, 1 + eps) * adv))`` with ``r = exp(log_prob - old)``.
    """
    ratio = jnp.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -jnp.minimum(unclipped, clipped).mean()


def clipped_value_loss(
    value: chex.Array, old_value: chex.Array, targets: chex.Array, clip_eps: float
) -> chex.Array:
    """PPO's clipped value loss (scalar): ``0.5 * mean(max((v - y)^2, (v_clipped - y)^2))``.

    ``v_clipped`` keeps the new value within ``clip_eps`` of the value seen in the rollout.
    """
    value_clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    losses = jnp.square(value - targets)
    losses_clipped = jnp.square(value_clipped - targets)
    return 0.5 * jnp.maximum(losses, losses_clipped).mean()


def categorical_entropy(logits: chex.Array) -> chex.Array:
    """Mean entropy of categorical distributions given by ``logits`` ``[..., A]`` (scalar)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -(jnp.exp(log_p) * log_p).sum(-1).mean()
