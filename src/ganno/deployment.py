"""What a trained policy needs to be deployed in a user's training loop, read from its saved config
and checked once for :class:`ganno.torch.GannoScheduler` and :func:`ganno.optax_scheduler.ganno_sgd`
(no JAX, no PyTorch).

A policy records the environment it was meta-trained in (``policy.json``'s ``env`` entry, see
:data:`ganno.policy.ENV_SETTINGS`); :func:`deployment_settings` turns it, plus the user's explicit
arguments, into :class:`DeploymentSettings`, and refuses a policy whose actions or features the
schedulers cannot reproduce (joint momentum/weight-decay actions, another observation).

The decision protocol itself (when a decision is taken, how an action becomes each layer's rate,
the divergence, dead-network and guard rules) is :mod:`ganno.protocol`, shared with the
environment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ganno.env_settings import check_base_step_size, check_gradient_window, check_guard
from ganno.errors import UsageError
from ganno.feature_names import FEATURE_NAMES
from ganno.protocol import DEAD_INTERVALS, gradient_start, interval_end

#: The environment's default factors (a policy saved before they were recorded used them).
#: The column the anchored modes append to the observation (``ganno.env.SCALE_FEATURE``).
SCALE_FEATURE = "log_lr_scale"
#: What a policy whose saved ``env`` entry records no such setting was meta-trained with: the
#: environment before the setting existed (fixed history, so not the schema's defaults, which
#: may move).
UNRECORDED: dict[str, Any] = {
    "action_mode": "compound",
    "base_step_size": "lr0",
    "gradient_window": None,
    "actions": (0.5, 0.8, 1.0, 1.25, 2.0),
    "lr_bounds": (1e-6, 10.0),
    "divergence_loss_ratio": 10.0,
}


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
        return gradient_start(decisions, self.total_steps, self.num_decisions, self.gradient_window)

    @property
    def anchored(self) -> bool:
        return self.action_mode != "compound"

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The observation's columns: FEATURE_NAMES (and the multiplier if anchored)."""
        return FEATURE_NAMES + ((SCALE_FEATURE,) if self.anchored else ())

    def interval_end(self, decisions: int) -> int:
        """The number of steps after which decision ``decisions`` is taken."""
        return interval_end(decisions, self.total_steps, self.num_decisions)


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
        elif name in UNRECORDED:
            out[name] = UNRECORDED[name]
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
    mode = str(saved.get("action_mode", UNRECORDED["action_mode"]))
    base_step_size = str(saved.get("base_step_size", UNRECORDED["base_step_size"]))
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
    chosen = tuple(float(a) for a in (actions or recorded or UNRECORDED["actions"]))
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
    "UNRECORDED",
    "SCALE_FEATURE",
    "DeploymentSettings",
    "check_one_dog_lr0",
    "deployment_settings",
    "dead_network_warning",
]
