"""The decision protocol: when a trained policy decides, how its actions become each layer's
learning rate, and the rules that end or rescue a run. One definition for the three places a policy
plays: the environment of meta-training and evaluation (:class:`ganno.env.GannoEnv`, JAX), the
optax transformation (:func:`ganno.optax_scheduler.ganno_sgd`, JAX under ``jit``) and the PyTorch
scheduler (:class:`ganno.torch.GannoScheduler`, NumPy and PyTorch, no JAX). Every function here is
array-agnostic: Python numbers, NumPy, JAX (traceable) or PyTorch arrays in, the same kind out, by
operators and methods (``*``, ``//``, ``|``, ``.clip``, ``.any``) that all four have. The
equivalence tests (tests/test_optax_scheduler.py, tests/test_torch_scheduler.py,
tests/test_guard.py) hold the three players to the same rates and trips.

What an action does (``action_mode``, :mod:`ganno.env_settings`): :func:`after_decision` moves
the rates (compound) or the per-layer multipliers of the base schedule (anchored modes), and
:func:`anchored_rates` is the rate the anchored modes train with at every step: the base
schedule's unit shape (:mod:`ganno.schedules`) times its step size (lr0, or DoG's step size,
:class:`ganno.optim.DogStepSize` in JAX and its PyTorch twin) times the multiplier, capped at
``lr_bounds[1]``.

When it decides: at meta-training's fixed intervals of ``steps_per_decision`` steps, which is
:func:`interval_end` with ``total_steps = steps_per_decision x num_decisions``.

Any training length: the policy's ``num_decisions`` decisions are spread evenly over the user's
``total_steps``; decision ``d`` (0-based) is taken once ``interval_end(d) = d x total_steps //
num_decisions`` optimiser steps were taken. The progress feature (decisions taken /
``num_decisions``) then runs from 0 to 1 over the user's training as it did over a meta-training
episode, and a compounding policy compounds over as many decisions as it learned to (see
docs/torch.md, "Any training length").

The gradient features of the observation taken at ``interval_end(d)`` read the steps from
``gradient_start(d)`` on: the interval's last ``gradient_window`` steps, as in meta-training
(:mod:`ganno.env_settings`; every step of the interval for a policy trained without a window).

A dead network (:func:`dead_layers`): a policy can raise the rates of a network it was not
meta-trained on until it dies: its ReLUs die, a layer's gradient vanishes, and the outputs stay at
chance (README, "What to expect from the shipped policy"). Both deployments flag such a run from
the gradient norms they read anyway.

The guard (``env.guard``; :func:`guard_trips`, :func:`run_diverged`): a structural answer to dead
networks, in the style of SOLAR's rollback and LHOPT's restart. At the end of every interval,
where the observation is taken and before the agents decide, it trips when (a) the run diverged
(:func:`run_diverged`, the environment's rule), (b) the validation loss and the training loss
both gave back more than half the progress the run made (:data:`GUARD_RISE`, each from its
initial value to its best at a decision so far; back above the initial value while it made
none), or (c) a layer got no gradient in this
interval (:func:`dead_layers`; one interval, not :data:`DEAD_INTERVALS`: a dead ReLU layer never
recovers, so waiting costs the run). On a trip the
weights, DoG's state and the optimiser state go back to those of the last decision (the start of
the interval that went wrong), every layer's multiplier becomes 1 (:data:`GUARD_MULTIPLIER`) and
the agents are no longer followed: the run trains on with the base schedule to the end of its
budget instead of ending. The update at which the trip is seen (the first of the next interval)
only restores: its minibatch is not trained on, nor read by the statistics or DoG (an optax
transformation sees the trip only once that update's gradient, at the weights that went wrong,
is taken; the environment and the PyTorch scheduler skip that step too, so all three train the
same steps). It trips at most once; a divergence after it ends the run as without the guard. It
needs a base schedule (the anchored action modes; :func:`ganno.env_settings.check_guard`
refuses the compound mode), and applies in evaluation (:func:`ganno.env.make_env` with
``evaluation=True``) and deployment (``ganno_sgd``, ``GannoScheduler``), never in meta-training.
"""

from __future__ import annotations

import math
from typing import Any


def interval_end(decisions: Any, total_steps: int, num_decisions: int) -> Any:
    """The number of optimiser steps after which decision ``decisions`` (0-based) is taken:
    ``decisions x total_steps // num_decisions`` (an int, or an integer array of its kind)."""
    return decisions * total_steps // num_decisions


def gradient_start(
    decisions: Any,
    total_steps: int,
    num_decisions: int,
    gradient_window: int | None,
    maximum: Any = max,
) -> Any:
    """The first step whose gradient the observation at ``interval_end(decisions)`` reads
    (``decisions >= 1``): the interval's last ``gradient_window`` steps, or all of it.
    ``maximum``: ``max`` for Python ints, ``jnp.maximum`` for traced ones."""
    start = interval_end(decisions - 1, total_steps, num_decisions)
    if gradient_window is None:
        return start
    return maximum(start, interval_end(decisions, total_steps, num_decisions) - gradient_window)


def after_decision(
    action_mode: str,
    multipliers: Any,
    learning_rates: Any,
    lr_scale: Any,
    lr_bounds: tuple[float, float],
    scale_bounds: tuple[float, float] | None,
) -> tuple[Any, Any]:
    """``(learning_rates, lr_scale)`` after the agents chose ``multipliers`` ``[N]`` (each
    action's factor, or its level's factor when anchored). ``compound``: every rate times its
    factor, within ``lr_bounds``; the multiplier stays. ``anchored``: the multiplier is the
    level's factor; ``anchored_compound``: the multiplier times the factor, within
    ``scale_bounds``. In the anchored modes the rates are returned as they were: each step's
    rate is :func:`anchored_rates` of the new multiplier."""
    if action_mode == "compound":
        return (learning_rates * multipliers).clip(*lr_bounds), lr_scale
    if action_mode == "anchored":
        return learning_rates, multipliers
    return learning_rates, (lr_scale * multipliers).clip(*scale_bounds)


def anchored_rates(step_size: Any, unit: Any, lr_scale: Any, upper: float) -> Any:
    """The anchored modes' rate, ``min(step_size x unit x lr_scale, upper)``: the base
    schedule's unit shape at the step (``unit``: :func:`ganno.schedules.optax_unit_schedule` or
    its NumPy form; past the schedule's horizon its last value) times its step size (lr0, or
    DoG's ``eta_t``) times each layer's multiplier, capped at ``lr_bounds[1]``. Broadcasts: the
    PyTorch scheduler passes ``unit`` ``[T, 1]`` and ``lr_scale`` ``[1, N]`` for a whole
    interval at once. The product is taken in this order everywhere (float32 rounding)."""
    return (step_size * unit * lr_scale).clip(max=upper)


#: A deployed run is flagged dead after this many intervals in a row in which a layer got no
#: gradient (:func:`dead_layers`).
DEAD_INTERVALS = 3
#: A layer got no gradient in an interval when the interval's mean squared minibatch-gradient
#: norm is at most this fraction of the first minibatch's (a millionth of its gradient norm).
DEAD_GRADIENT_FRACTION = 1e-12


def dead_layers(mean_sq_grad_norm: Any, initial_grad_sq: Any):
    """Per layer, whether it got no gradient in an interval: the interval's mean squared
    minibatch-gradient norm (``[N]``) at most :data:`DEAD_GRADIENT_FRACTION` of the layer's at
    the first decision (``initial_grad_sq``; a layer that had none then is never called dead).
    NumPy, JAX (traceable under ``jax.jit``) or PyTorch arrays in, a boolean array of their kind
    out. A ReLU layer whose units all died gets exactly none; it never comes back, since its
    weights no longer move. :data:`DEAD_INTERVALS` such intervals in a row flag the run
    (docs/torch.md, "Dead networks", measures the rule on the shipped policy)."""
    return (mean_sq_grad_norm <= DEAD_GRADIENT_FRACTION * initial_grad_sq) & (initial_grad_sq > 0)


#: Every layer's multiplier on the base schedule once the guard tripped: the base schedule itself.
GUARD_MULTIPLIER = 1.0


def _not_finite(x: Any):
    # NaN or +-inf, by comparisons that Python floats, NumPy, JAX (traced) and PyTorch all have
    return (x != x) | (abs(x) == math.inf)


def run_diverged(
    val_loss: Any,
    train_loss: Any,
    weight_sq: Any,
    initial_val_loss: Any,
    divergence_loss_ratio: float,
):
    """The divergence rule of the environment and both deployments, at the end of an interval:
    a non-finite validation loss, mean minibatch loss of the interval, or weight (``weight_sq``,
    ``[N]`` or per tensor: the weights' squared norms, non-finite iff a weight is or overflows),
    or a validation loss above ``divergence_loss_ratio x initial_val_loss``. Python floats,
    NumPy, JAX (traceable) or PyTorch values in; a boolean of their kind out (``bool()`` it
    outside ``jit``)."""
    return (
        _not_finite(val_loss)
        | _not_finite(train_loss)
        | _not_finite(weight_sq).any()
        | (val_loss > divergence_loss_ratio * initial_val_loss)
    )


#: The guard's rise rule: it trips once the validation loss has given back more than this share
#: of the progress the run made, from where it started to its best decision so far, and the
#: training loss has given back as much of its own.
GUARD_RISE = 0.5


def guard_trips(
    diverged: Any,
    val_loss: Any,
    initial_val_loss: Any,
    best_val_loss: Any,
    mean_sq_grad_norm: Any,
    initial_grad_sq: Any,
    *,
    train_loss: Any,
    initial_train_loss: Any,
    best_train_loss: Any,
):
    """Whether the guard trips at the end of an interval (the module doc): (a) ``diverged``
    (:func:`run_diverged`), (b) both losses rose back more than :data:`GUARD_RISE` of the way
    from their best so far to where they started: the validation loss, ``val_loss > best +
    GUARD_RISE x (initial - best)`` (``best_val_loss``: the lowest at any decision, the initial
    one included; above where it started while the run has made no progress, half-way back once
    it has: a network collapsing to one class sits near ``ln(classes)``, which can be under its
    initial loss), and the interval's mean training loss likewise against ``initial_train_loss``
    (the first minibatch's, at the initial weights) and ``best_train_loss`` (the lowest interval
    mean at a decision, the initial one included), or (c) any layer dead in this interval
    (:func:`dead_layers` of the interval's ``mean_sq_grad_norm`` ``[N]`` against the first
    minibatch's ``initial_grad_sq``). A NaN is caught by (a). The training loss tells a run
    heading for death (both losses climb back) from a well-trained network whose validation
    loss rises as its predictions grow confident while it still fits its training data
    (docs/choices.md, "Whether evaluation runs the guard"). The caller asks only while the guard
    has not tripped. Array-agnostic like :func:`dead_layers`: a boolean of the inputs' kind."""
    dead = dead_layers(mean_sq_grad_norm, initial_grad_sq).any()
    val_limit = best_val_loss + GUARD_RISE * (initial_val_loss - best_val_loss)
    train_limit = best_train_loss + GUARD_RISE * (initial_train_loss - best_train_loss)
    return diverged | ((val_loss > val_limit) & (train_loss > train_limit)) | dead


__all__ = [
    "DEAD_GRADIENT_FRACTION",
    "DEAD_INTERVALS",
    "GUARD_MULTIPLIER",
    "GUARD_RISE",
    "after_decision",
    "anchored_rates",
    "dead_layers",
    "gradient_start",
    "guard_trips",
    "interval_end",
    "run_diverged",
]
