"""The settings of a GANNO environment, as one object built from a config (no JAX, no PyTorch).

:class:`EnvSettings` is what :class:`ganno.env.GannoEnv` is built from, what a saved policy records
about its environment, and what the benchmarks reuse; ``EnvSettings.from_config(cfg)`` reads the
``env`` and ``task`` blocks of a validated config.

How the agents' choices set each layer's learning rate (``action_mode``):

``compound``
    ``lr <- clip(lr x factor, *lr_bounds)``: the factor multiplies the layer's current rate, so
    choices compound over the episode (the paper's design, and the default).
``anchored``
    ``lr(t) = min(base(t) x exp(level_scale x level), lr_bounds[1])`` for every inner step ``t``,
    where ``base`` is a handcrafted schedule from ``lr0`` (``base_schedule``, e.g. ``sgd_cosine``)
    and the agent picks a ``level`` from ``levels`` at each decision. Nothing compounds: level 0
    is the base schedule itself (SOLAR's design).
``anchored_compound``
    ``lr(t) = min(base(t) x s, lr_bounds[1])`` with a per-layer multiplier
    ``s <- clip(s x factor, *scale_bounds)`` that compounds over decisions (factors from
    ``actions``): the base schedule's shape, with a multiplier that can move far from lr0.

Gradient scaling in meta-training (``gradient_scale_range``): ``[low, high]`` multiplies every
minibatch gradient of an episode (the agents' run and its reference run alike) by a factor drawn
log-uniformly from the range when the episode is reset for meta-training, which is the loss scaled
by that factor: the same network with its curvature scaled, so the largest rate it tolerates moves
by the factor. An agent that learned one trajectory of rates for one network then diverges on some
episodes and is too timid on others; it has to read where the network stands from what it observes
(the gradient and update norms, the loss). Evaluation (``reset_with_lr0``) uses factor 1: the
task's own gradients. ``None``: factor 1 always.

What the base schedule scales in both anchored modes (``base_step_size``): ``lr0``, the handcrafted
schedule as its baseline trains it (``base(t) = lr0 x shape(t)``); ``dog``, DoG's step size
(:class:`ganno.optim.DogStepSize`: ``base(t) = eta_t x shape(t)``, ``eta_t`` the largest distance
the weights have moved from their initial values over the root of the summed squared gradient
norms, all weights at once, ``eta_0 = lr0``, the ``dog`` baseline's rule). DoG's step size follows
the network (its distance travelled and its gradients) rather than lr0, so the agents' multiplier
starts from a rate that adapts to each network; with ``sgd_constant`` and multiplier 1 the run is
DoG itself. The PyTorch scheduler and the optax transformation follow ``dog`` as the environment
does (``ganno.torch.DogStepSize``, ``ganno.optax_scheduler``).

In both anchored modes ``lr_bounds[0]`` is not applied (the base schedule may decay to 0; the
multiplier's own bounds keep a layer from being switched off for good).

A network that dies in meta-training (``collapse_check``): with ReLU layers and a rate pushed too
high, a network can end with constant outputs, its validation loss back at ln(classes) and its
accuracy at chance. The divergence test (a loss ``divergence_loss_ratio`` times the initial, or not
finite) does not see it, so such an episode runs on and its penalty is only a poor reward. With
``collapse_check`` a step whose validation accuracy falls to chance (at most ``chance + 0.05 x (1 -
chance)``, chance ``1 / classes``) after the episode's best had reached ``chance + 0.25 x (1 -
chance)`` counts as diverged: the episode ends with ``divergence_penalty``. A network that has not
learned yet (a tiny lr0) is not flagged. Meta-training only: an environment built for evaluation
(``make_env(..., evaluation=True)``) turns it off, so a policy's dead networks are measured as dead
rather than reported at their last live state.

Which steps of an interval the gradient features read (``gradient_window``): ``None``, every step
of the interval (its mean gradient, mean squared gradient norm); ``w``, only its last ``w`` steps
(all of them if the interval is shorter). The training-loss feature always averages the whole
interval. A window keeps the per-step cost of a deployed scheduler to ``w`` steps per interval
(docs/torch.md, "Overhead") and makes the gradient statistics the same size of sample whatever the
interval's length (a user's longer training spreads the decisions over longer intervals).

The guard (``guard``, default off): when a run heads for death (it diverged, its validation loss
is back above where it started, or a layer got no gradient in an interval), the weights, DoG's
state and the optimiser state go back to those of the last decision, every multiplier becomes 1
and the run trains on with the base schedule to the end of its budget (the rule:
:mod:`ganno.protocol`, ``guard_trips``). It needs a base schedule, so it refuses the compound
mode (:func:`check_guard`). Evaluation and deployment only: an environment built for meta-training
(``make_env`` without ``evaluation=True``, ``make_envs``) carries the setting, so a saved policy
records it and the deployed schedulers default to it, but does not apply it; meta-training is
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ganno import schedules
from ganno.schema import block_defaults

ACTION_MODES: tuple[str, ...] = ("compound", "anchored", "anchored_compound")
#: ``collapse_check``: the share of the way from chance to perfect accuracy that the episode's best
#: validation accuracy must have reached, and at or below which a later one counts as a collapse.
COLLAPSE_LEARNED: float = 0.25
COLLAPSE_DEAD: float = 0.05


def share_of_the_way(num_classes: int, share: float) -> float:
    """The accuracy ``share`` of the way from chance (``1 / num_classes``) to perfect: with
    :data:`COLLAPSE_DEAD`, the accuracy at or below which a network counts as at chance (dead),
    in ``collapse_check`` and in the design study's share of runs that end at chance."""
    chance = 1.0 / num_classes
    return chance + share * (1.0 - chance)


#: The handcrafted SGD schedules an anchored mode can use as its base (:mod:`ganno.schedules`).
BASE_SCHEDULES: tuple[str, ...] = schedules.BASE_SCHEDULES
#: What the anchored modes' base schedule scales: lr0 (constant) or DoG's step size.
BASE_STEP_SIZES: tuple[str, ...] = ("lr0", "dog")
#: The env key that meta-training never applies (the guard: evaluation and deployment only), so
#: it is not part of what a meta-training run is: turning it on keeps meta-training's results.
EVALUATION_ONLY = "guard"


def meta_training_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """A config's ``env`` block as meta-training reads it (:data:`EVALUATION_ONLY` left out)."""
    return {key: value for key, value in env.items() if key != EVALUATION_ONLY}


#: ``optax.contrib.scale_by_dog``'s default epsilon under the square root of DoG's step size.
DOG_EPS = 1e-8


_ENV, _TASK = block_defaults("env"), block_defaults("task")


@dataclass(frozen=True)
class EnvSettings:
    """Everything but the inner task that defines a GANNO environment (see the module doc)."""

    # every default is the schema's (ganno.schema); collapse_check and guard have none there:
    # absent is off
    steps_per_decision: int = _ENV["steps_per_decision"]
    num_decisions: int = _ENV["num_decisions"]
    lr0_range: tuple[float, float] = _ENV["lr0_range"]
    lr_bounds: tuple[float, float] = _ENV["lr_bounds"]
    actions: tuple[float, ...] = _ENV["actions"]
    reward: str = _ENV["reward"]
    reward_clip: float = _ENV["reward_clip"]
    divergence_penalty: float = _ENV["divergence_penalty"]
    divergence_loss_ratio: float = _ENV["divergence_loss_ratio"]
    collapse_check: bool = False
    val_subset: int | None = _ENV["val_subset"]
    momentum: float = _TASK["momentum"]
    weight_decay: float = _TASK["weight_decay"]
    momentum_actions: tuple[float, ...] | None = _ENV["momentum_actions"]
    weight_decay_actions: tuple[float, ...] | None = _ENV["weight_decay_actions"]
    action_mode: str = _ENV["action_mode"]
    base_schedule: str = _ENV["base_schedule"]
    base_step_size: str = _ENV["base_step_size"]
    levels: tuple[float, ...] = _ENV["levels"]
    level_scale: float = _ENV["level_scale"]  # ln(2) / 2: levels +-2 are a factor 2
    scale_bounds: tuple[float, float] = _ENV["scale_bounds"]
    gradient_window: int | None = _ENV["gradient_window"]
    gradient_scale_range: tuple[float, float] | None = _ENV["gradient_scale_range"]
    guard: bool = False

    def __post_init__(self) -> None:
        def floats(value):
            return None if value is None else tuple(float(v) for v in value)

        for name in ("lr0_range", "lr_bounds", "actions", "levels", "scale_bounds"):
            object.__setattr__(self, name, floats(getattr(self, name)))
        for name in ("momentum_actions", "weight_decay_actions", "gradient_scale_range"):
            object.__setattr__(self, name, floats(getattr(self, name)))
        if self.action_mode not in ACTION_MODES:
            raise ValueError(
                f"unknown action_mode {self.action_mode!r}; choose one of {ACTION_MODES}"
            )
        if self.action_mode != "compound" and self.base_schedule not in BASE_SCHEDULES:
            raise ValueError(
                f"unknown base_schedule {self.base_schedule!r}; choose one of {BASE_SCHEDULES}"
            )
        check_base_step_size(self.base_step_size, self.action_mode)
        if self.action_mode == "anchored" and not self.levels:
            raise ValueError("the anchored action mode needs at least one level (env.levels)")
        check_gradient_window(self.gradient_window)
        check_gradient_scale_range(self.gradient_scale_range)
        object.__setattr__(self, "guard", bool(self.guard))
        check_guard(self.guard, self.action_mode)
        if self.action_mode != "anchored" and not self.actions:
            raise ValueError("the action set is empty; give at least one learning-rate factor")

    @property
    def total_steps(self) -> int:
        """Inner steps in one episode (``k x H``): the horizon of the base schedule."""
        return self.steps_per_decision * self.num_decisions

    @property
    def gradient_steps(self) -> int:
        """How many steps of an interval the gradient features read (its last ones)."""
        if self.gradient_window is None:
            return self.steps_per_decision
        return min(int(self.gradient_window), self.steps_per_decision)

    @property
    def lr_multipliers(self) -> tuple[float, ...]:
        """The learning-rate choice of each action: a factor on the current rate (or multiplier)
        in the compounding modes, ``exp(level_scale x level)`` on the base schedule if anchored."""
        if self.action_mode == "anchored":
            return tuple(math.exp(self.level_scale * level) for level in self.levels)
        return self.actions

    @property
    def neutral_lr_choice(self) -> int:
        """The index of the learning-rate choice that changes nothing (factor 1 or level 0)."""
        choices = self.levels if self.action_mode == "anchored" else self.actions
        neutral = 0.0 if self.action_mode == "anchored" else 1.0
        if neutral not in choices:
            raise ValueError(
                f"no neutral choice ({neutral}) in {choices}: a keep action is needed here"
            )
        return choices.index(neutral)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EnvSettings:
        """The settings of a validated config's ``env`` (and ``task`` momentum/weight decay)."""
        env, task = config["env"], config["task"]
        known = {f for f in cls.__dataclass_fields__ if f not in ("momentum", "weight_decay")}
        values = {k: v for k, v in env.items() if k in known}
        return cls(**values, momentum=task["momentum"], weight_decay=task["weight_decay"])

    def replace(self, **changes: Any) -> EnvSettings:
        return EnvSettings(**{**asdict(self), **changes})

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-able values (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def check_gradient_window(window: Any) -> int | None:
    """A ``gradient_window`` value as a step count (None: the whole interval), or a ValueError
    that says what to give."""
    if window is None:
        return None
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise ValueError(
            f"gradient_window={window!r}: give a whole number of steps >= 1 (the last steps of "
            "each interval that the gradient features read), or null for the whole interval"
        )
    return int(window)


def check_gradient_scale_range(scale_range: Any) -> None:
    """A ValueError that says what to give unless ``scale_range`` is None or ``[low, high]``
    with ``0 < low <= high``."""
    if scale_range is not None and not (
        len(scale_range) == 2 and 0 < scale_range[0] <= scale_range[1]
    ):
        raise ValueError(
            f"gradient_scale_range={list(scale_range)}: give [low, high] with 0 < low <= high "
            "(the factor on an episode's gradients is drawn log-uniformly from it), or null"
        )


def check_base_step_size(base_step_size: Any, action_mode: Any) -> None:
    """A ValueError that says what to give unless ``base_step_size`` is one of
    :data:`BASE_STEP_SIZES` and, if not ``lr0``, the action mode is an anchored one."""
    if base_step_size not in BASE_STEP_SIZES:
        raise ValueError(
            f"base_step_size={base_step_size!r}: choose one of {list(BASE_STEP_SIZES)}"
        )
    if base_step_size != "lr0" and action_mode == "compound":
        raise ValueError(
            f"base_step_size={base_step_size!r} scales the base schedule of the anchored action "
            "modes, and action_mode is compound; set action_mode to anchored or "
            "anchored_compound, or base_step_size to lr0"
        )


def check_guard(guard: Any, action_mode: Any) -> None:
    """A ValueError that says what to change if the guard is on in the compound action mode: the
    guard returns every layer to its base schedule (multiplier 1), and the compound mode has
    none (a rate there is the product of all the choices so far)."""
    if guard and action_mode == "compound":
        raise ValueError(
            "guard=true returns every layer to the base schedule (multiplier 1), and "
            "action_mode compound has no base schedule; use anchored or anchored_compound, or "
            "set guard to false"
        )


def settings_from(values: Mapping[str, Any] | EnvSettings | None, **overrides: Any) -> EnvSettings:
    """An :class:`EnvSettings` from another, from a mapping of its fields, or the defaults."""
    if isinstance(values, EnvSettings):
        return values.replace(**overrides) if overrides else values
    return EnvSettings(**{**(dict(values) if values else {}), **overrides})


__all__ = [
    "ACTION_MODES",
    "BASE_SCHEDULES",
    "BASE_STEP_SIZES",
    "EnvSettings",
    "check_base_step_size",
    "check_gradient_scale_range",
    "check_gradient_window",
    "check_guard",
    "settings_from",
]
