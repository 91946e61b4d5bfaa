"""What a trained policy needs to be deployed in a user's training loop, read from its saved config
and checked once for :class:`ganno.torch.GannoScheduler` and :func:`ganno.optax_scheduler.ganno_sgd`
(no JAX, no PyTorch).

A policy records the environment it was meta-trained in (``policy.json``'s ``env`` entry, see
:data:`ganno.policy.ENV_SETTINGS`); :func:`deployment_settings` turns it, plus the user's explicit
arguments, into :class:`DeploymentSettings`, and refuses a policy whose actions or features the
schedulers cannot reproduce (joint momentum/weight-decay actions, another observation).

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
(:func:`run_diverged`, the environment's rule), (b) the validation loss gave back more than half
the progress the run made (:data:`GUARD_RISE`, from its initial value to its best at a decision so
far; back above the initial value while it made none), or (c) a layer got no gradient in this
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ganno.env_settings import check_base_step_size, check_gradient_window, check_guard
from ganno.errors import UsageError
from ganno.feature_names import FEATURE_NAMES

#: The environment's default factors (a policy saved before they were recorded used them).
DEFAULT_ACTIONS: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0)
#: The column the anchored modes append to the observation (``ganno.env.SCALE_FEATURE``).
SCALE_FEATURE = "log_lr_scale"
_FALLBACK = {"lr_bounds": (1e-6, 10.0), "divergence_loss_ratio": 10.0}


@dataclass(frozen=True)
class DeploymentSettings:
    """How a deployed policy's choices become learning rates, and when it chooses."""

    steps_per_decision: int  # the meta-training interval (informational once total_steps is set)
    num_decisions: int
    total_steps: int  # the user's training length, over which the decisions are spread
    lr_bounds: tuple[float, float]
    divergence_loss_ratio: float
    action_mode: str  # compound | anchored | anchored_compound (ganno.env_settings)
    actions: tuple[float, ...]  # the compounding factors (or the levels' factors if anchored)
    lr_multipliers: tuple[float, ...]  # what each action multiplies: the rate, or the base
    base_schedule: str | None = None
    scale_bounds: tuple[float, float] | None = None
    gradient_window: int | None = None  # the interval's last steps the gradient features read
    #: what the anchored base schedule scales: lr0, or DoG's step size (ganno.optim.DogStepSize)
    base_step_size: str = "lr0"
    #: the guard (module doc): roll back and follow the base schedule when the run heads for death
    guard: bool = False

    def gradient_start(self, decisions: int) -> int:
        """The first step whose gradient the observation at ``interval_end(decisions)`` reads
        (``decisions >= 1``): the interval's last ``gradient_window`` steps, or all of it."""
        start = self.interval_end(decisions - 1)
        if self.gradient_window is None:
            return start
        return max(start, self.interval_end(decisions) - self.gradient_window)

    @property
    def anchored(self) -> bool:
        return self.action_mode != "compound"

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The observation's columns: FEATURE_NAMES (and the multiplier if anchored)."""
        return FEATURE_NAMES + ((SCALE_FEATURE,) if self.anchored else ())

    def interval_end(self, decisions: int) -> int:
        """The number of steps after which decision ``decisions`` is taken."""
        return decisions * self.total_steps // self.num_decisions


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
#: of the progress the run made, from where it started to its best decision so far.
GUARD_RISE = 0.5


def guard_trips(
    diverged: Any,
    val_loss: Any,
    initial_val_loss: Any,
    best_val_loss: Any,
    mean_sq_grad_norm: Any,
    initial_grad_sq: Any,
):
    """Whether the guard trips at the end of an interval (the module doc): (a) ``diverged``
    (:func:`run_diverged`), (b) the validation loss rose back more than :data:`GUARD_RISE` of the
    way from its best so far (``best_val_loss``, the lowest at any decision, the initial one
    included) to ``initial_val_loss``, i.e. ``val_loss > best + GUARD_RISE x (initial - best)``:
    above where it started while the run has made no progress, half-way back once it has (a
    network collapsing to one class sits near ``ln(classes)``, which can be under its initial
    loss; a NaN is caught by (a)), or (c) any layer dead in this interval (:func:`dead_layers` of
    the interval's ``mean_sq_grad_norm`` ``[N]`` against the first minibatch's
    ``initial_grad_sq``). The caller asks only while the guard has not tripped. Array-agnostic
    like :func:`dead_layers`: a boolean of the inputs' kind."""
    dead = dead_layers(mean_sq_grad_norm, initial_grad_sq).any()
    limit = best_val_loss + GUARD_RISE * (initial_val_loss - best_val_loss)
    return diverged | (val_loss > limit) | dead


def dead_network_warning(who: str, step: int, layers: Sequence[int], peak: float, ceiling: float):
    """The message both deployments give a run whose ``layers`` got no gradient for
    :data:`DEAD_INTERVALS` intervals up to ``step``, at a highest rate ``peak`` so far."""
    cause = (
        f"its rates reached the ceiling lr_bounds[1] = {ceiling:g}: restart with a lower one "
        "(e.g. lr_bounds=(1e-6, 1.0)), with guard=True (docs/torch.md, 'The guard') or from a "
        "smaller lr0"
        if peak >= ceiling * (1.0 - 1e-6)
        else f"its highest rate so far was {peak:.3g}: restart with guard=True or a smaller lr0"
    )
    return (
        f"{who}: the network looks dead: layer(s) {list(layers)} got no gradient for "
        f"{DEAD_INTERVALS} intervals in a row up to step {step} (their ReLUs died, the outputs no "
        f"longer learn); {cause}"
    )


def check_one_dog_lr0(lr0s: Sequence[float], fix: str) -> None:
    """A DoG-base policy's base schedule scales one DoG step size for all the layers, which
    starts at lr0: refuse several lr0 (a UsageError naming ``fix``, how to give one)."""
    if len({float(v) for v in lr0s}) > 1:
        raise UsageError(
            f"lr0 {[float(v) for v in lr0s]}: this policy's base schedule scales DoG's step "
            f"size, one for all the layers, which starts at lr0; give one lr0 ({fix})"
        )


def deployment_settings(
    policy: Any,
    *,
    steps_per_decision: int | None = None,
    num_decisions: int | None = None,
    total_steps: int | None = None,
    actions: Sequence[float] | None = None,
    lr_bounds: Sequence[float] | None = None,
    divergence_loss_ratio: float | None = None,
    guard: bool | None = None,
    who: str = "this scheduler",
) -> DeploymentSettings:
    """The settings of ``policy`` (its saved ``env`` entry), each overridden by an explicit
    argument except ``actions``, which must equal the policy's own (they define what its outputs
    mean). ``total_steps`` defaults to the meta-training episode, ``steps_per_decision x
    num_decisions``. ``guard`` defaults to the policy's recorded ``env.guard`` (what it was
    evaluated with; off for a policy that records none). ``who`` names the caller in the
    errors."""
    saved = dict(policy.config.get("env") or {})
    explicit = {
        "steps_per_decision": steps_per_decision,
        "num_decisions": num_decisions,
        "lr_bounds": lr_bounds,
        "divergence_loss_ratio": divergence_loss_ratio,
    }
    out, missing = {}, []
    for name, value in explicit.items():
        if value is not None:
            out[name] = value
        elif name in saved:
            out[name] = saved[name]
        elif name in _FALLBACK:
            out[name] = _FALLBACK[name]
        else:
            missing.append(name)
    if missing:
        raise ValueError(
            f"the policy's config does not record {', '.join(missing)} (it predates saving "
            "the environment settings with a policy); pass "
            + ", ".join(f"{m}=..." for m in missing)
            + " as the meta-training config's env block had them"
        )
    k, h = int(out["steps_per_decision"]), int(out["num_decisions"])
    if k < 1 or h < 1:
        raise ValueError("steps_per_decision and num_decisions must be >= 1")
    bounds = (float(out["lr_bounds"][0]), float(out["lr_bounds"][1]))
    if not 0 < bounds[0] < bounds[1]:
        raise ValueError(f"lr_bounds={bounds} must satisfy 0 < low < high")
    mode = str(saved.get("action_mode", "compound"))
    base_step_size = str(saved.get("base_step_size", "lr0"))
    try:
        check_base_step_size(base_step_size, mode)
    except ValueError as exc:
        raise ValueError(f"the policy records an invalid base step size: {exc}") from None
    chosen = _check_actions(policy, saved, actions, mode, who)
    guard = bool(saved.get("guard", False)) if guard is None else bool(guard)
    try:
        check_guard(guard, mode)
    except ValueError as exc:
        raise UsageError(f"{who}: {exc}") from None
    multipliers = chosen
    if mode == "anchored":
        multipliers = tuple(math.exp(saved["level_scale"] * lvl) for lvl in saved["levels"])
    return DeploymentSettings(
        steps_per_decision=k,
        num_decisions=h,
        total_steps=_total_steps(total_steps, k, h),
        lr_bounds=bounds,
        divergence_loss_ratio=float(out["divergence_loss_ratio"]),
        action_mode=mode,
        actions=chosen,
        lr_multipliers=multipliers,
        base_schedule=saved.get("base_schedule") if mode != "compound" else None,
        scale_bounds=tuple(float(b) for b in saved["scale_bounds"]) if mode != "compound" else None,
        gradient_window=check_gradient_window(saved.get("gradient_window")),
        base_step_size=base_step_size,
        guard=guard,
    )


def _total_steps(total_steps: int | None, steps_per_decision: int, num_decisions: int) -> int:
    """The user's training length (default: the meta-training episode's), checked."""
    if total_steps is None:
        return steps_per_decision * num_decisions
    if isinstance(total_steps, bool) or int(total_steps) != total_steps:
        raise ValueError(f"total_steps={total_steps!r} must be a whole number of optimiser steps")
    if total_steps < num_decisions:
        raise ValueError(
            f"total_steps={total_steps} is fewer than the policy's {num_decisions} decisions; "
            "train for at least num_decisions steps, or pass num_decisions= a smaller number"
        )
    return int(total_steps)


def _check_actions(
    policy: Any, saved: dict[str, Any], actions: Sequence[float] | None, mode: str, who: str
) -> tuple[float, ...]:
    net = policy.config["network"]
    if mode not in ("compound", "anchored", "anchored_compound"):
        raise ValueError(f"the policy records an unknown action_mode {mode!r}")
    if saved.get("hyperparameter_actions"):
        raise ValueError(
            "this policy also sets "
            + " and ".join(sorted(saved["hyperparameter_actions"]))
            + f" (its actions are joint choices); {who} drives learning rates only"
        )
    features = FEATURE_NAMES + ((SCALE_FEATURE,) if mode != "compound" else ())
    names = saved.get("feature_names")
    if names is not None and tuple(names) != features:
        raise ValueError(
            f"the policy was trained on the features {names}, but {who} builds {list(features)}"
        )
    recorded = saved.get("actions")
    if actions is not None and recorded is not None:
        if [float(a) for a in actions] != [float(a) for a in recorded]:
            raise ValueError(
                f"actions={list(actions)} differ from the factors the policy was trained "
                f"with ({recorded}); leave actions out to use the policy's"
            )
    chosen = tuple(float(a) for a in (actions or recorded or DEFAULT_ACTIONS))
    if any(not (a > 0 and math.isfinite(a)) for a in chosen):
        raise ValueError(f"learning-rate factors must be positive and finite, got {chosen}")
    num_choices = len(saved["levels"]) if mode == "anchored" else len(chosen)
    if int(net["action_dim"]) != num_choices:
        raise ValueError(
            f"the policy has {net['action_dim']} actions but there are {num_choices} "
            f"learning-rate choices: it controls more than the learning rate "
            f"(or another action set), which {who} cannot drive"
        )
    if int(net["obs_dim"]) != len(features):
        raise ValueError(
            f"the policy reads {net['obs_dim']} features per layer but {who} builds "
            f"the {len(features)} of {list(features)}; it was trained "
            "with another observation (e.g. momentum or weight-decay control)"
        )
    return chosen


__all__ = [
    "DEFAULT_ACTIONS",
    "SCALE_FEATURE",
    "DEAD_GRADIENT_FRACTION",
    "DEAD_INTERVALS",
    "GUARD_MULTIPLIER",
    "DeploymentSettings",
    "deployment_settings",
    "dead_layers",
    "dead_network_warning",
    "GUARD_RISE",
    "guard_trips",
    "run_diverged",
]
