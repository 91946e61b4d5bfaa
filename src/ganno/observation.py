"""The agents' observation as named columns, built by pure functions (JAX).

:func:`interval_columns` turns what one decision's interval left behind (:class:`IntervalStats`)
into one ``[N]`` column per feature of :data:`ganno.feature_names.FEATURE_NAMES`; the environment
adds the columns of the extra features it has (Q1 hyperparameters, the anchored multiplier) and
:func:`stack_columns` lays them out in its ``feature_names`` order. :mod:`ganno.torch.features`
computes the same columns from PyTorch tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ganno.networks import layer_keys

_TINY = 1e-30


class IntervalStats(NamedTuple):
    """One interval of inner training, as the observation reads it."""

    learning_rates: jnp.ndarray  # [N] the rates in effect at the end of the interval
    mean_grad: Any  # mean minibatch gradient of the interval, like params
    prev_mean_grad: Any  # that of the interval before
    mean_sq_grad_norm: jnp.ndarray  # [N] mean of each layer's squared minibatch-gradient norm
    params: Any  # weights after the interval
    prev_params: Any  # weights before it
    train_loss: jnp.ndarray  # [] mean minibatch loss of the interval
    val_loss: jnp.ndarray  # []
    prev_train_loss: jnp.ndarray  # []
    prev_val_loss: jnp.ndarray  # []
    progress: jnp.ndarray  # [] decisions taken / decisions per episode
    prev_log2_choice: jnp.ndarray  # [N] log2 of the learning-rate multiplier last chosen


def log_feature(x: jnp.ndarray) -> jnp.ndarray:
    """Scaled log10 of a positive quantity (a norm, a rate, a ratio): about unit scale, finite."""
    return jnp.clip(jnp.log10(jnp.maximum(x, _TINY)), -8.0, 8.0) / 4.0


def log10_loss(loss: jnp.ndarray) -> jnp.ndarray:
    return jnp.clip(jnp.log10(jnp.maximum(loss, _TINY)), -8.0, 8.0)


def per_layer(fn, *trees: Any) -> jnp.ndarray:
    """Apply ``fn`` to every leaf of each layer (top-level entry) and sum per layer: [N]."""
    sums = []
    for key in layer_keys(trees[0]):
        leaves = zip(*(jax.tree.leaves(t[key]) for t in trees), strict=True)
        sums.append(sum(jnp.sum(fn(*leaf)) for leaf in leaves))
    return jnp.stack(sums)


def position_columns(num_agents: int) -> dict[str, jnp.ndarray]:
    """Each agent's place in the network: relative depth ``i / (N - 1)``, first and last flags."""
    index = jnp.arange(num_agents)
    return {
        "relative_depth": index.astype(jnp.float32) / max(num_agents - 1, 1),
        "is_first": (index == 0).astype(jnp.float32),
        "is_last": (index == num_agents - 1).astype(jnp.float32),
    }


def interval_columns(stats: IntervalStats) -> dict[str, jnp.ndarray]:
    """The standard features of every agent, ``{name: [N]}`` (see :data:`FEATURE_NAMES`)."""
    grad_sq = per_layer(jnp.square, stats.mean_grad)
    weight_sq = per_layer(jnp.square, stats.params)
    update_sq = per_layer(lambda p, q: jnp.square(p - q), stats.params, stats.prev_params)
    dot = per_layer(jnp.multiply, stats.mean_grad, stats.prev_mean_grad)
    prev_sq = per_layer(jnp.square, stats.prev_mean_grad)
    noise = jnp.maximum(stats.mean_sq_grad_norm - grad_sq, 0.0)
    cosine = dot / jnp.sqrt(jnp.maximum(grad_sq * prev_sq, _TINY))
    log_train, log_val = log10_loss(stats.train_loss), log10_loss(stats.val_loss)
    ones = jnp.ones(grad_sq.shape)
    return {
        "log_lr": log_feature(stats.learning_rates),
        "log_grad_norm": log_feature(jnp.sqrt(grad_sq)),
        "log_weight_norm": log_feature(jnp.sqrt(weight_sq)),
        "log_update_norm": log_feature(jnp.sqrt(update_sq)),
        "log_update_ratio": log_feature(jnp.sqrt(update_sq / jnp.maximum(weight_sq, _TINY))),
        "grad_cosine": jnp.clip(cosine, -1.0, 1.0),
        "log_grad_noise": log_feature(jnp.sqrt(noise / jnp.maximum(grad_sq, _TINY))),
        "log_train_loss": log_train * ones,
        "log_val_loss": log_val * ones,
        "delta_log_train_loss": jnp.clip(log_train - log10_loss(stats.prev_train_loss), -5, 5)
        * ones,
        "delta_log_val_loss": jnp.clip(log_val - log10_loss(stats.prev_val_loss), -5, 5) * ones,
        "progress": stats.progress * ones,
        "prev_action": stats.prev_log2_choice,
    }


def stack_columns(columns: Mapping[str, jnp.ndarray], names: Sequence[str]) -> jnp.ndarray:
    """``[N, F]`` float32 with the named columns in ``names`` order; non-finite values replaced
    (NaN by 0, infinities by +-8) so nothing non-finite reaches the agents."""
    missing = [name for name in names if name not in columns]
    if missing:
        raise KeyError(f"no column for the features {missing}")
    view = jnp.stack([columns[name] for name in names], axis=1)
    return jnp.nan_to_num(view, nan=0.0, posinf=8.0, neginf=-8.0).astype(jnp.float32)
