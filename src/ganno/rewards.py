"""The team rewards of the GANNO environment, as a table of named pure functions.

Each reward reads a :class:`RewardInputs` (the validation metrics before and after one decision's
interval, and what the reward needs besides: a reference run's metric, counterfactual losses) and
returns the reward of every agent, ``[N]``. What an episode's rewards sum to (divergence aside):

=================================== ===========================================================
``log_val_loss_drop``               ``log(L_0 / L_T)``: validation loss, dense (the default)
``val_accuracy_gain``               ``A_T - A_0``: validation accuracy, dense
``log_val_error_drop``              ``log(E_0 / E_T)``, ``E = max(1 - A, 1 / (2 n_val))``: the
                                    validation error rate on a log scale, dense (late gains in
                                    accuracy count as much as early ones)
``final_log_val_loss_drop``         ``log(L_0 / L_T)``, all of it at the last decision
``counterfactual_log_val_loss_drop`` per agent: the log loss had it alone kept its rate, minus the
                                    actual one, summed over decisions (difference rewards)
``relative_log_val_loss``           ``clip(log(L_T^ref / L_T))``: the final validation loss
                                    relative to the reference run (the environment's base
                                    schedule, or constant SGD, from the same lr0, initial weights
                                    and minibatch stream), paid densely as its change (LHOPT)
``relative_log_val_error``          the same with the validation error rate
=================================== ===========================================================

``clip`` is ``[-reward_clip, reward_clip]``. A diverged step gets ``-divergence_penalty`` instead
(applied by the environment).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp

_TINY = 1e-30


class RewardInputs(NamedTuple):
    """What any reward may read at the end of one decision's interval (scalars unless noted)."""

    num_agents: int
    prev_val_loss: jnp.ndarray
    val_loss: jnp.ndarray
    prev_val_accuracy: jnp.ndarray
    val_accuracy: jnp.ndarray
    prev_val_error: jnp.ndarray  # validation_error(prev_val_accuracy)
    val_error: jnp.ndarray
    initial_val_loss: jnp.ndarray
    is_last: jnp.ndarray  # bool: the episode's budget is spent
    reward_clip: float
    # The reference run's validation metric (loss or error, see Reward.reference_metric).
    prev_reference: jnp.ndarray | None = None
    reference: jnp.ndarray | None = None
    # [N] validation loss had agent i alone made the neutral choice.
    counterfactual_val_loss: jnp.ndarray | None = None


class Reward(NamedTuple):
    """A named reward: its function and what the environment must compute for it."""

    fn: Callable[[RewardInputs], jnp.ndarray]
    reference_metric: str | None = None  # "loss" or "error": run the reference alongside
    counterfactual: bool = False  # evaluate each agent's neutral-choice counterfactual


def _log(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.log(jnp.maximum(x, _TINY))


def _team(inputs: RewardInputs, value: jnp.ndarray) -> jnp.ndarray:
    return value * jnp.ones((inputs.num_agents,))


def log_val_loss_drop(inputs: RewardInputs) -> jnp.ndarray:
    return _team(inputs, _log(inputs.prev_val_loss) - _log(inputs.val_loss))


def val_accuracy_gain(inputs: RewardInputs) -> jnp.ndarray:
    return _team(inputs, inputs.val_accuracy - inputs.prev_val_accuracy)


def log_val_error_drop(inputs: RewardInputs) -> jnp.ndarray:
    return _team(inputs, _log(inputs.prev_val_error) - _log(inputs.val_error))


def final_log_val_loss_drop(inputs: RewardInputs) -> jnp.ndarray:
    total = _log(inputs.initial_val_loss) - _log(inputs.val_loss)
    return _team(inputs, jnp.where(inputs.is_last, total, 0.0))


def counterfactual_log_val_loss_drop(inputs: RewardInputs) -> jnp.ndarray:
    cf = jnp.nan_to_num(inputs.counterfactual_val_loss, nan=jnp.inf)
    return jnp.clip(_log(cf) - _log(inputs.val_loss), -10.0, 10.0)


def relative_to_reference(inputs: RewardInputs, prev_metric, metric) -> jnp.ndarray:
    """``g_t - g_{t-1}`` with ``g = clip(log(reference / metric))``: sums to ``g_T`` (``g_0 = 0``:
    the reference starts from the same weights)."""

    def gain(reference, value):
        return jnp.clip(_log(reference) - _log(value), -inputs.reward_clip, inputs.reward_clip)

    return _team(inputs, gain(inputs.reference, metric) - gain(inputs.prev_reference, prev_metric))


def relative_log_val_loss(inputs: RewardInputs) -> jnp.ndarray:
    return relative_to_reference(inputs, inputs.prev_val_loss, inputs.val_loss)


def relative_log_val_error(inputs: RewardInputs) -> jnp.ndarray:
    return relative_to_reference(inputs, inputs.prev_val_error, inputs.val_error)


#: Every reward by name (``env.reward`` in a config).
REWARDS: dict[str, Reward] = {
    "log_val_loss_drop": Reward(log_val_loss_drop),
    "val_accuracy_gain": Reward(val_accuracy_gain),
    "log_val_error_drop": Reward(log_val_error_drop),
    "final_log_val_loss_drop": Reward(final_log_val_loss_drop),
    "counterfactual_log_val_loss_drop": Reward(
        counterfactual_log_val_loss_drop, counterfactual=True
    ),
    "relative_log_val_loss": Reward(relative_log_val_loss, reference_metric="loss"),
    "relative_log_val_error": Reward(relative_log_val_error, reference_metric="error"),
}


def validation_error(accuracy: jnp.ndarray, num_examples: int) -> jnp.ndarray:
    """``1 - accuracy``, floored at half an example so that its log stays finite."""
    return jnp.maximum(1.0 - accuracy, 0.5 / num_examples)
