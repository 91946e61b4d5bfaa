"""``GannoScheduler``: a trained GANNO policy setting the per-layer learning rates of any
``torch.optim`` optimiser while a PyTorch network trains.

Each parameter group of the optimiser is one layer, i.e. one agent, taken as given: build the
groups with :func:`ganno.torch.layerwise_param_groups` (one per weight layer, normalisation
layers in the group of the layer before them) or give your own;
:meth:`GannoScheduler.describe_groups` prints which parameters each agent controls. The scheduler
replays the environment's protocol (:class:`ganno.env.GannoEnv`) on a real training loop::

    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=lr0)
    sched = GannoScheduler(optimizer, TorchPolicy.load(policy_dir), val_loss_fn=val_loss,
                           total_steps=num_steps)
    for x, y in batches:                     # num_steps steps
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        sched.observe_gradients(loss)        # before optimizer.step(): reads p.grad
        optimizer.step()
        sched.step()

* The first ``observe_gradients`` call (step 0) builds the episode's first observation from the
  gradient of the first minibatch at the initial weights and the initial validation loss (like
  ``reset``), and the policy's first decision sets the rates that step 0 already uses.
* The policy's ``num_decisions`` decisions are spread evenly over ``total_steps`` (the user's
  training length; default the budget the policy was meta-trained for, ``steps_per_decision x
  num_decisions``): decision ``d`` is taken after step ``d x total_steps // num_decisions``, so the
  progress feature (decisions taken / ``num_decisions``) reaches 1 at the end of the user's
  training, as it did at the end of a meta-training episode, and the rates compound over as many
  decisions as in meta-training (docs/torch.md says why).
* At the end of every interval, ``step()`` ends it: it takes the validation loss
  (``val_loss_fn()``, or the ``val_loss`` passed to ``step``; :attr:`needs_val_loss` says when),
  builds the ``[N, 16]`` observation with :func:`ganno.torch.features.observe` (mean gradient and
  mean squared gradient norm of the interval's last ``gradient_window`` steps, the policy's
  recorded window: the gradients are read on those steps only, and a tensor of over 100,000
  entries on a fixed random 1/16 of them, see docs/torch.md "Overhead";
  weights before/after the interval, its mean minibatch loss,
  progress, previous action, position), checks for divergence and, while fewer than
  ``num_decisions`` decisions were taken, asks the policy for one choice per layer, applied as in
  meta-training (the policy's recorded ``action_mode``, see :mod:`ganno.env_settings`):
  ``lr <- clip(lr * factor, *lr_bounds)`` in the compound mode; in the anchored modes every step's
  rate is ``min(base(t) x multiplier, lr_bounds[1])``, the base schedule from lr0 at step ``t``
  scaled by the layer's multiplier (a level's ``exp(level_scale x level)``, or a compounding
  factor product within ``scale_bounds``); the base schedule spans ``total_steps``. After
  ``total_steps`` steps the rates stay where they are. A policy meta-trained with
  ``env.base_step_size: dog`` has its base schedule scale DoG's step size instead of lr0 (one
  for all the layers, from this step's weights and gradient before the step, ``eta_0 = lr0``;
  see :class:`DogStepSize`): each step's rates are then set by ``observe_gradients``.

Divergence (the environment's rule): a non-finite minibatch loss, a non-finite validation loss
or weight, or a validation loss above ``divergence_loss_ratio`` x the initial one.
``on_divergence`` chooses what happens then:

* ``"raise"`` (default): :class:`TrainingDivergedError` at once (from ``observe_gradients`` for a
  non-finite minibatch loss, before the optimiser steps on it; else from ``step``).
* ``"restore"``: the environment's semantics. The weights go back to those of the last decision
  (the last state that passed the check) and the rates to the ones they had before it;
  :attr:`diverged` becomes True and the scheduler takes no further decisions (``observe_gradients``
  and ``step`` do nothing). Optimiser buffers (momentum, Adam moments) are not rolled back.
* ``"stop"``: like ``"restore"`` but the weights are left as they are.

Divergence is detected at interval ends, like the environment, except that a non-finite minibatch
loss is caught at once (the interval's mean training loss would be non-finite anyway).

The guard (``guard=True``, or a policy that records ``env.guard``; anchored modes only; the rule:
:func:`ganno.protocol.guard_trips`): when, at the end of an interval, the run diverged, its
validation and training losses both gave back half the progress they made, or a layer got no
gradient in the interval, the
weights, the optimiser's state (momentum, Adam moments) and DoG's state go back to those of the
last decision, every multiplier becomes 1 and the policy is no longer asked: the rates follow
the base schedule to ``total_steps`` and training goes on (``guarded_at_step`` says where). The
next step is the rollback (as in the environment and ``ganno_sgd``, where the update that sees
the trip can only restore): its ``optimizer.step()`` is undone, and its gradient is read by
nothing. Before the trip a non-finite minibatch loss is left to the guard at the interval's end
(the environment's rule); after it, a divergence is handled by ``on_divergence`` as without the
guard. Each decision then keeps a copy of the weights and of the optimiser's state, and of the
``buffers`` given (``model.buffers()``: BatchNorm's running statistics, which the bad interval
moved too; the optimiser does not know them).

The policy's actor runs in PyTorch (:class:`ganno.torch.actor.TorchPolicy`, loaded from the
policy's files or copied from a :class:`ganno.Policy`), so the scheduler needs no JAX;
``actor="jax"`` decides with the JAX :class:`ganno.Policy` instead (arrays then cross between
PyTorch and NumPy/JAX at decisions only).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ganno.deployment import check_one_dog_lr0, dead_network_warning, deployment_settings
from ganno.errors import GannoWarning, UsageError
from ganno.protocol import (
    DEAD_INTERVALS,
    GUARD_MULTIPLIER,
    after_decision,
    anchored_rates,
    dead_layers,
    guard_trips,
    run_diverged,
)
from ganno.schedules import unit_schedule
from ganno.torch import features
from ganno.torch.actor import carry_to_numpy, decider, jax_act, jax_key
from ganno.torch.dog import DogStepSize
from ganno.torch.networks import describe_param_groups
from ganno.torch.sampling import SAMPLE_ABOVE, SAMPLE_FRACTION, GradientSample, WindowSums
from ganno.torch.weight_changes import WeightChangeStatistics, check_plain_sgd, not_plain_sgd

ON_DIVERGENCE = ("raise", "restore", "stop")
#: How the interval's gradient statistics are taken: read from ``p.grad`` every step of the
#: gradient window, or estimated from the weights' changes (plain SGD; ganno.torch.weight_changes)
GRADIENT_STATISTICS = ("auto", "read", "weight_changes")


class TrainingDivergedError(FloatingPointError):
    """The training the scheduler watches diverged (``on_divergence="raise"``)."""


class GannoScheduler:
    """Per-parameter-group learning rates of ``optimizer`` chosen by a trained GANNO ``policy``.

    Settings (``steps_per_decision``, ``num_decisions``, ``actions``, ``lr_bounds``,
    ``divergence_loss_ratio``) are read from the policy's saved config (its ``env`` entry, written
    by meta-training); an explicit argument overrides the saved value, except ``actions``, which
    must equal the policy's own (they define what its outputs mean). ``total_steps``: the number
    of optimiser steps the user trains for, over which the ``num_decisions`` decisions are spread
    (default ``steps_per_decision x num_decisions``, the meta-training episode). A policy saved
    without them needs them as arguments (``actions`` and ``lr_bounds`` then default to the
    environment's defaults). ``lr0``: the initial rate of every group (default: the groups'
    current ``lr``), clipped to ``lr_bounds``. ``greedy``: the most likely action (default) or a
    sample drawn with ``seed``. ``gradient_sample``, ``sample_above``: the gradient statistics of
    a tensor of more than ``sample_above`` entries (default 100,000) are read on a fixed random
    ``gradient_sample`` share of its entries (default 1/16; ``None``: every entry of every tensor),
    the per-step cost on large layers (:mod:`ganno.torch.sampling`; docs/torch.md measures what
    it changes); smaller tensors, as in every network the agents are meta-trained on, are read
    whole, so their features are exactly the environment's.

    ``gradient_statistics``: ``"read"`` reads ``p.grad`` at every step of the gradient window, as
    the environment does; ``"weight_changes"`` (plain ``torch.optim.SGD`` only) reads no gradient
    after the first step and estimates the interval's mean gradient and gradient noise from a few
    snapshots of the weights' sample (:mod:`ganno.torch.weight_changes`): a cheaper step,
    estimated features, the same test accuracy in paired runs (docs/torch.md, "Gradient
    statistics from the weights"). ``"auto"`` (default): ``weight_changes`` for plain SGD on CPU
    tensors (not a DoG-base policy), ``read`` otherwise; ``gradient_statistics`` says which.

    A dead network (:func:`ganno.protocol.dead_layers`: a layer that got no gradient for three
    intervals in a row, as when the policy drives a network's rates to its ceiling and its ReLUs
    die) is flagged once: a :class:`ganno.errors.GannoWarning` naming the remedy, and
    ``dead_at_step``. The scheduler goes on deciding; restarting is the user's call.

    ``guard``: roll back and follow the base schedule when the run heads for death (the module
    doc; default: what the policy records, ``env.guard``, off if it records none);
    ``guarded_at_step`` is the step at which it tripped (None while it has not). ``buffers``:
    tensors the guard rolls back with the weights (pass ``model.buffers()`` for a network with
    BatchNorm, whose running statistics the bad interval moved).

    ``policy``: a :class:`ganno.torch.actor.TorchPolicy` (``ganno.torch.pretrained_policy()``,
    ``TorchPolicy.load(dir)``: no JAX needed) or a :class:`ganno.Policy`. ``actor``: where its
    actor decides: ``"torch"`` (default; a ``ganno.Policy``'s parameters are copied into a
    ``TorchPolicy``, the same decisions up to float32 rounding) or ``"jax"`` (a
    ``ganno.Policy`` only: its jitted ``step``). A sampling scheduler (``greedy=False``) draws
    with a ``torch.Generator`` seeded with ``seed`` in PyTorch, a JAX key in JAX.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        policy: Any,
        *,
        val_loss_fn: Callable[[], float | torch.Tensor] | None = None,
        steps_per_decision: int | None = None,
        num_decisions: int | None = None,
        total_steps: int | None = None,
        actions: Sequence[float] | None = None,
        lr_bounds: Sequence[float] | None = None,
        divergence_loss_ratio: float | None = None,
        lr0: float | Sequence[float] | None = None,
        greedy: bool = True,
        seed: int = 0,
        on_divergence: str = "raise",
        gradient_sample: float | None = SAMPLE_FRACTION,
        sample_above: int = SAMPLE_ABOVE,
        gradient_statistics: str = "auto",
        guard: bool | None = None,
        buffers: Iterable[torch.Tensor] = (),
        actor: str = "torch",
    ) -> None:
        if on_divergence not in ON_DIVERGENCE:
            raise ValueError(f"on_divergence={on_divergence!r}; choose one of {ON_DIVERGENCE}")
        if gradient_statistics not in GRADIENT_STATISTICS:
            raise ValueError(
                f"gradient_statistics={gradient_statistics!r}; choose one of {GRADIENT_STATISTICS}"
            )
        self.optimizer = optimizer
        self.policy = policy
        #: what the guard restores besides the weights (floating-point buffers only; counters such
        #: as BatchNorm's num_batches_tracked are left to run on)
        self._buffers = [b for b in buffers if b.is_floating_point()]
        #: where the policy's actor decides: "torch" or "jax"
        self.actor = actor
        self._decider = decider(policy, actor)
        self.val_loss_fn = val_loss_fn
        self.greedy = bool(greedy)
        self.on_divergence = on_divergence
        self._deploy(
            deployment_settings(
                policy,
                steps_per_decision=steps_per_decision,
                num_decisions=num_decisions,
                total_steps=total_steps,
                actions=actions,
                lr_bounds=lr_bounds,
                divergence_loss_ratio=divergence_loss_ratio,
                guard=guard,
                who="GannoScheduler",
            )
        )
        self._bind_groups(gradient_sample, sample_above, gradient_statistics)
        self._start_rates(lr0)
        self._key = self._generator = None
        if self.actor == "jax":
            self._act = jax_act(policy, self.greedy)
            self._key = None if self.greedy else jax_key(seed)
        elif not self.greedy:
            self._generator = torch.Generator().manual_seed(int(seed))
        self._reset_episode()

    # ------------------------------------------------------------------ construction
    def _deploy(self, settings: Any) -> None:
        """Take the policy's settings as deployed (:class:`ganno.deployment.DeploymentSettings`)."""
        #: the policy's settings as deployed (:class:`ganno.deployment.DeploymentSettings`)
        self.settings = settings
        self.steps_per_decision = settings.steps_per_decision
        self.num_decisions = settings.num_decisions
        #: optimiser steps of the user's training, over which the decisions are spread
        self.total_steps = settings.total_steps
        self.lr_bounds = settings.lr_bounds
        self.divergence_loss_ratio = settings.divergence_loss_ratio
        #: whether the guard watches the run (the module doc)
        self.guard = settings.guard
        self.action_mode = settings.action_mode
        self.actions = settings.actions
        self._factors = torch.tensor(settings.lr_multipliers, dtype=torch.float32)
        self._log2_factors = torch.log2(self._factors)
        if self.anchored:
            self._unit = unit_schedule(settings.base_schedule, self.total_steps)
            self._lr_max = np.float32(settings.lr_bounds[1])
        self._dog_base = self.anchored and settings.base_step_size == "dog"

    def _bind_groups(
        self, gradient_sample: float | None, sample_above: int, gradient_statistics: str
    ) -> None:
        """One layer per parameter group of the optimiser; which entries of its tensors the
        gradient statistics read, and how they are taken."""
        self.num_layers = len(self.optimizer.param_groups)
        if self.num_layers == 0:
            raise ValueError("the optimizer has no parameter groups")
        self._params = [list(g["params"]) for g in self.optimizer.param_groups]
        self._flat = [p for group in self._params for p in group]
        self._group_of = [i for i, group in enumerate(self._params) for _ in group]
        #: which entries of each tensor the gradient statistics read (ganno.torch.sampling)
        self.gradient_sample = GradientSample(
            self._flat, fraction=gradient_sample, above=sample_above
        )
        #: what was asked for ("auto" resolves to one of the two, and may follow a saved state's)
        self.requested_statistics = gradient_statistics
        self._use_statistics(
            self._auto_statistics() if gradient_statistics == "auto" else gradient_statistics
        )

    def _start_rates(self, lr0: float | Sequence[float] | None) -> None:
        """Each layer's initial rate (``lr0``, or its group's ``lr``), checked and clipped to
        ``lr_bounds``; DoG's step size for a DoG-base policy; the first step's rates applied."""
        explicit_lr0 = lr0 is not None
        if lr0 is None:
            lr0 = [float(g["lr"]) for g in self.optimizer.param_groups]
        rates = torch.as_tensor(lr0, dtype=torch.float32).expand(self.num_layers).clone()
        if not bool(torch.all(torch.isfinite(rates) & (rates > 0))):
            raise UsageError(
                f"lr0 {rates.tolist()}: initial learning rates must be positive and finite"
            )
        clipped = torch.clamp(rates, *self.lr_bounds)
        if not self.anchored and not torch.equal(clipped, rates):
            warnings.warn(
                f"lr0 {rates.tolist()} is outside the policy's lr_bounds {list(self.lr_bounds)}: "
                f"the layers start from {clipped.tolist()} (as in meta-training)",
                GannoWarning,
                stacklevel=3,  # the caller of GannoScheduler(...)
            )
        #: each layer's initial rate (the base schedules' lr0 in the anchored modes)
        self.lr0 = rates
        if explicit_lr0:  # else checked when an episode starts (load_state_dict restores lr0)
            self._check_dog_lr0()
        #: DoG's step size the base schedule scales (a DoG-base policy; None otherwise)
        self.dog = DogStepSize(float(rates[0]), self.gradient_sample) if self._dog_base else None
        #: each layer's multiplier on its base schedule (anchored modes; 1 otherwise)
        self.lr_scale = torch.ones(self.num_layers)
        if self.anchored:
            self.learning_rates = self._anchored_rates(0, 1)[0]
        else:
            self.learning_rates = clipped
        self._apply_rates(self.learning_rates)

    # ------------------------------------------------------------------ settings
    def _check_dog_lr0(self) -> None:
        if self._dog_base:
            check_one_dog_lr0(
                self.lr0.tolist(), "GannoScheduler(..., lr0=...) or the same lr in every group"
            )

    def _auto_statistics(self) -> str:
        """``"auto"``: the weights' changes where they record the gradients (plain SGD, CPU
        tensors, not a DoG-base policy, whose step size reads every gradient anyway), else read."""
        on_cpu = all(p.device.type == "cpu" for p in self._flat)
        plain = not_plain_sgd(self.optimizer) is None
        return "weight_changes" if plain and on_cpu and not self._dog_base else "read"

    def _use_statistics(self, mode: str) -> None:
        """Take the gradient statistics the way ``mode`` says (``read`` or ``weight_changes``)."""
        #: how the gradient statistics are taken: "read" or "weight_changes"
        self.gradient_statistics = mode
        #: "read": the gradient window's sums (the interval's mean gradient and squared norms)
        self._window = WindowSums(self.gradient_sample, self._flat) if mode == "read" else None
        #: "weight_changes": the span's statistics from the weights' changes
        self._weight_stats: WeightChangeStatistics | None = None
        if mode == "weight_changes":
            check_plain_sgd(self.optimizer)
            if any(p.device.type != "cpu" for p in self._flat):
                raise UsageError(
                    "gradient_statistics='weight_changes' keeps its snapshots of the weights on "
                    "the CPU and takes CPU tensors only: use 'read' (or the default 'auto') on a "
                    "GPU"
                )
            if self._dog_base:
                raise UsageError(
                    "gradient_statistics='weight_changes' with a DoG-base policy: its step size "
                    "reads every step's gradient norm anyway; use 'read' (or the default 'auto')"
                )
            self._weight_stats = WeightChangeStatistics(
                self.gradient_sample, self._group_of, self.num_layers
            )

    @property
    def anchored(self) -> bool:
        """Whether the rates follow a base schedule (the anchored action modes)."""
        return self.action_mode != "compound"

    def _anchored_rates(self, start: int, end: int) -> torch.Tensor:
        """The rates of inner steps ``start..end - 1``, ``[end - start, N]`` float32:
        ``min(step size x unit(step) x multiplier, lr_bounds[1])`` (the base schedule's last
        value past its horizon; the step size is lr0, or DoG's last one), in float32 NumPy on
        views of the tensors (the same IEEE operations in the same order as torch's, a fraction
        of its per-call cost)."""
        unit = self._unit[np.minimum(np.arange(start, end), len(self._unit) - 1)]
        step_size = self.lr0.numpy() if self.dog is None else np.float32(self.dog.eta)
        scale = self.lr_scale.numpy()[None, :]
        return torch.from_numpy(anchored_rates(step_size, unit[:, None], scale, self._lr_max))

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The observation's columns: ganno's FEATURE_NAMES (and the multiplier if anchored)."""
        return self.settings.feature_names

    def _with_scale(self, view: torch.Tensor) -> torch.Tensor:
        if not self.anchored:
            return view
        return torch.cat([view, features.log_feature(self.lr_scale)[:, None]], dim=1)

    # ------------------------------------------------------------------ state
    def _reset_episode(self) -> None:
        self.steps = 0  # optimiser steps taken (calls to step())
        self.decisions = 0  # policy decisions taken
        self.diverged = False
        self.diverged_at_step: int | None = None
        #: the step at which the run was flagged dead (a GannoWarning says so once;
        #: :func:`ganno.protocol.dead_layers`), None while it is not
        self.dead_at_step: int | None = None
        self._dead_count = 0  # intervals in a row in which a layer got no gradient
        #: the step at which the guard tripped (weights back to the last decision's, the base
        #: schedule from there), None while it has not
        self.guarded_at_step: int | None = None
        self._rollback_at: int | None = None  # the step the trip undoes (trained on by nothing)
        #: what a trip returns to besides the weights: the optimiser's and DoG's states at the
        #: last decision
        self._guard_snapshot: dict[str, Any] | None = None
        self._initial_grad_sq: torch.Tensor | None = None  # [N], the first minibatch's
        self.initial_val_loss: float | None = None
        self.val_loss: float | None = None
        self._best_val_loss = math.inf  # the lowest at a decision so far (the guard's rise rule)
        self._initial_train_loss = math.inf  # the first minibatch's (the rise rule)
        self._best_train_loss = math.inf  # the lowest interval training loss at a decision
        self.train_loss: float | None = None
        self.last_observation: torch.Tensor | None = None
        self.last_actions: np.ndarray | None = None
        #: per decision (and one for the end of the budget): ``{"observation" [N, F], "step",
        #: "decision", "learning_rates" (after it), "actions", "train_loss", "val_loss"}``
        self.history: list[dict[str, Any]] = []
        self._set_interval()
        self._prev_log2 = torch.zeros(self.num_layers)
        self._prev_mean_grad: list[list[torch.Tensor]] | None = None
        self._prev_grad_sq: torch.Tensor | None = None  # its per-layer squared norms
        self._prev_params: list[list[torch.Tensor]] | None = None
        self._prev_rates = self.learning_rates.clone()
        self._observed_this_step = False
        #: a recurrent policy's hidden state, carried from decision to decision (() otherwise)
        self._policy_carry = self._decider.initial_carry(self.num_layers)
        self._zero_accumulators()

    def _zero_accumulators(self) -> None:
        if self._window is not None:
            self._window.reset()
        #: a weights-sized buffer kept for the next snapshot of the weights: reusing buffers
        #: spares a fresh allocation (and its page faults) per decision
        self._spare_params: list[torch.Tensor] | None = None
        self._loss_sum = 0.0
        self._count = 0  # steps of the interval so far (the training loss averages them)
        self._grad_count = 0  # of them, steps whose gradients were read (the gradient window)

    def _set_interval(self) -> None:
        """The bounds of the interval the last decision started, read by every step: it ends
        after step ``_end``; its gradients are read from step ``_grad_start`` on."""
        self._end = self.interval_end(self.decisions)
        self._grad_start = self.settings.gradient_start(self.decisions) if self.decisions else 0
        if self._weight_stats is not None:
            self._weight_stats.start(self.steps, self._grad_start, self._end, self._flat)

    @property
    def guarded(self) -> bool:
        """Whether the guard tripped (the rates follow the base schedule; the policy is not
        asked any more)."""
        return self.guarded_at_step is not None

    @property
    def done(self) -> bool:
        """True once all ``num_decisions`` decisions were taken (or the training diverged)."""
        return self.diverged or self.decisions >= self.num_decisions and self._interval_closed()

    def _interval_closed(self) -> bool:
        return self.steps >= self.interval_end(self.decisions)

    def interval_end(self, decisions: int) -> int:
        """The step count after which decision ``decisions`` is taken (``decisions x total_steps
        // num_decisions``): the end of the interval that decision ``decisions - 1`` started."""
        return self.settings.interval_end(decisions)

    @property
    def needs_val_loss(self) -> bool:
        """Whether the next ``observe_gradients`` (the very first) or ``step`` call needs a
        validation loss (only relevant without ``val_loss_fn``)."""
        if self.diverged:
            return False
        if self.steps == 0 and self.decisions == 0:
            return True  # the first observe_gradients: the initial validation loss
        return self.decisions > 0 and self.steps + 1 == self.interval_end(self.decisions)

    def get_last_lr(self) -> list[float]:
        """Each group's current learning rate (like ``torch.optim.lr_scheduler``)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def describe_groups(self) -> str:
        """Which parameters each agent controls: one line per parameter group of the optimiser
        (one agent each, in the order the position features count them), with its name, its
        parameters' names and shapes (where the group records ``param_names``, as
        :func:`ganno.torch.layerwise_param_groups` makes them) and its current rate."""
        return describe_param_groups(self.optimizer.param_groups, self.get_last_lr())

    def _apply_rates(self, rates: torch.Tensor) -> None:
        for group, lr in zip(self.optimizer.param_groups, rates.tolist(), strict=True):
            group["lr"] = lr

    # ------------------------------------------------------------------ the loop
    def _val_loss(self, val_loss) -> float:
        if val_loss is None:
            if self.val_loss_fn is None:
                raise ValueError(
                    "a validation loss is needed now (an interval ended): pass val_loss_fn to "
                    "GannoScheduler or val_loss= to this call (see needs_val_loss)"
                )
            val_loss = self.val_loss_fn()
        return float(torch.as_tensor(val_loss).detach().float().cpu())

    def _grads(self) -> list[torch.Tensor]:
        # This runs every step, outside torch.no_grad (its context costs more than the rest of
        # the step's bookkeeping): gradients are used as they are, detached only where they
        # carry a graph (backward(create_graph=True)), copied only where not float32.
        grads = []
        for p in self._flat:
            g = p.grad
            if g is None:
                g = torch.zeros_like(p, dtype=torch.float32)
            else:
                if g.requires_grad:
                    g = g.detach()
                if g.dtype != torch.float32:
                    g = g.float()
            grads.append(g)
        return grads

    def _read_grads(self) -> list[torch.Tensor]:
        """The gradients as the statistics read them: whole, or a large tensor's sampled
        entries (:class:`ganno.torch.sampling.GradientSample`)."""
        return self.gradient_sample.read(self._grads())

    def _detached_params(self) -> list[list[torch.Tensor]]:
        """A float32 copy of the weights (into the spare buffer when there is one)."""
        if self._spare_params is None:
            return [[p.detach().float().clone() for p in group] for group in self._params]
        spare, self._spare_params = self._spare_params, None
        torch._foreach_copy_(spare, [p.detach() for p in self._flat])
        return self._by_layer(spare)

    def _by_layer(self, flat: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        out, i = [], 0
        for group in self._params:
            out.append(list(flat[i : i + len(group)]))
            i += len(group)
        return out

    def observe_gradients(self, loss: float | torch.Tensor, val_loss=None) -> None:
        """Record this step's minibatch ``loss`` and, on the steps of the gradient window (the
        interval's last ``gradient_window`` steps), the gradients now in ``p.grad``; call it after
        ``loss.backward()`` and before ``optimizer.step()``, once per step. On the first step it
        also takes the first decision (using ``val_loss`` or ``val_loss_fn`` at the initial
        weights), so step 0 already trains with the policy's rates."""
        if self.diverged:
            return
        if self._observed_this_step:
            raise RuntimeError(
                "observe_gradients was called twice without step() in between (one call per "
                "optimizer step; accumulate gradients before calling it)"
            )
        if self._rollback_at == self.steps:  # the guard's rollback step: read by nothing
            self._observed_this_step = True
            return
        loss_value = loss.item() if isinstance(loss, torch.Tensor) else float(loss)
        # before the guard trips it judges a non-finite loss at the interval's end
        if not math.isfinite(loss_value) and not (self.guard and not self.guarded):
            self._diverge(f"non-finite minibatch loss {loss_value} at step {self.steps}")
            return
        if self.steps == 0 and self.decisions == 0:
            self._check_dog_lr0()
            self._first_decision(self._read_grads(), loss_value, self._val_loss(val_loss))
        staged = False
        if self.dog is not None and not self.diverged and self.steps < self.total_steps:
            # this step's rates from DoG's step size (after total_steps they stay where they are)
            in_window = self.decisions > 0 and self._grad_start <= self.steps < self._end
            if in_window and not self.guarded:
                self._window.add(self._grads())  # the window's sums, and the norms from there
                staged = True
                norms = self._window.staged_norms()
            else:
                norms = torch._foreach_norm(self._read_grads())
            self.dog.update(self._flat, norms)
            self.learning_rates = self._anchored_rates(self.steps, self.steps + 1)[0]
            self._apply_rates(self.learning_rates)
        if self.decisions > 0 and self.steps < self._end:
            if self.guarded:  # no observation after the trip: the loss for the divergence check
                pass
            elif self.steps >= self._grad_start and self._weight_stats is not None:
                self._weight_stats.observe(self.steps, self._flat)
                self._grad_count += 1
            elif self.steps >= self._grad_start:
                # in the gradient window: the gradients and their squares added to the window's
                # sums in a few calls (ganno.torch.sampling.WindowSums; DoG's step staged them)
                if not staged:
                    self._window.add(self._grads())
                self._grad_count += 1
            self._loss_sum += loss_value
            self._count += 1
        self._observed_this_step = True

    @torch.no_grad()
    def _first_decision(self, grads, train_loss: float, val_loss: float) -> None:
        by_layer = self._by_layer(grads)
        params = self._detached_params()
        self.initial_val_loss = self.val_loss = self._best_val_loss = val_loss
        self.train_loss = self._initial_train_loss = self._best_train_loss = train_loss
        if not math.isfinite(val_loss):
            self._diverge(f"non-finite initial validation loss {val_loss}")
            return
        view = features.initial_observation(
            learning_rates=self.learning_rates,
            grads=by_layer,
            params=params,
            train_loss=train_loss,
            val_loss=val_loss,
            num_decisions=self.num_decisions,
        )
        self._prev_mean_grad = [[g.clone() for g in layer] for layer in by_layer]
        self._prev_grad_sq = features.squared_norms(by_layer)
        self._initial_grad_sq = self._prev_grad_sq
        self._prev_params = params if self._keeps_weights else None
        self._decide(self._with_scale(view))

    def step(self, val_loss: float | torch.Tensor | None = None) -> None:
        """Count one optimiser step; at the end of an interval observe, check for divergence and
        (while decisions remain) let the policy rescale every group's rate."""
        if self.diverged:
            return
        if not self._observed_this_step:
            raise RuntimeError(
                "step() without observe_gradients(loss) for this step: call "
                "sched.observe_gradients(loss) after loss.backward() and before optimizer.step()"
            )
        self._observed_this_step = False
        if self._rollback_at == self.steps:  # undo whatever the optimiser did on this step
            self._restore_last_decision()
            self._rollback_at = None
        self.steps += 1
        if self.decisions == 0 or self.steps != self._end:
            if self._rate_rows and self.steps < self._end:  # anchored: the next step's rates
                row = self._rate_rows[self.steps - self._rows_from]
                for group, lr in zip(self.optimizer.param_groups, row, strict=True):
                    group["lr"] = lr
            return
        if self.guarded:
            self._end_guarded_interval(val_loss)
        else:
            self._end_interval(val_loss)

    @property
    def learning_rates(self) -> torch.Tensor:
        """Each layer's rate at the current step, or at the last step taken once the decisions'
        intervals are over (``[N]`` float32)."""
        if self._rate_rows and self.steps > self._rows_from:
            row = min(self.steps, self._end - 1) - self._rows_from
            return torch.tensor(self._rate_rows[row])
        return self._learning_rates

    @learning_rates.setter
    def learning_rates(self, rates: torch.Tensor) -> None:
        """The rates from now on (until :meth:`_plan_rates` plans an anchored interval)."""
        self._learning_rates = rates
        self._rate_rows = []

    @torch.no_grad()
    def _end_interval(self, val_loss) -> None:
        """The divergence check, the interval's observation and (while decisions remain) the
        next decision. Each weights-sized tensor is read as few times as the features allow: the
        weights' squared norms serve the check and the features, the last mean gradient's squared
        norms are kept from the last observation, and the weights' change is taken in place in
        the last snapshot's buffers (recycled anyway)."""
        k = self._grad_count
        train_loss = self._loss_sum / self._count
        val = self._val_loss(val_loss)
        interval = None
        if self._weight_stats is not None:  # every norm from the weights' sample
            interval = self._weight_stats.statistics(self._flat, self._span_rates())
            weight_sq = interval.weight_sq
        # a copy of the whole weights: for the norms, or for on_divergence="restore" to return to
        params = self._detached_params() if self._keeps_weights else None
        if interval is None:
            weight_sq = features.squared_norms(params)
        # a sum of squares is finite iff every entry is (and not overflowing), as in the env
        diverged = bool(
            run_diverged(
                val, train_loss, weight_sq, self.initial_val_loss, self.divergence_loss_ratio
            )
        )
        if diverged and not self.guard:
            self._diverge(self._divergence_message(val, train_loss))
            return
        prev_flat = None
        if self._prev_params is not None:
            prev_flat = [q for layer in self._prev_params for q in layer]
        if interval is not None:
            mean_grad, mean_sq_grad_norm = interval.mean_grad, interval.mean_sq_grad_norm
        else:
            mean_grad, squares = self._window.finish(k)  # the window's mean gradient, in place
            mean_sq_grad_norm = features.per_layer(squares, self._group_of, self.num_layers) / k
        # the guard, before the last decision's weights become their change below
        if self.guard and bool(
            guard_trips(
                diverged,
                val,
                self.initial_val_loss,
                self._best_val_loss,
                mean_sq_grad_norm,
                self._initial_grad_sq,
                train_loss=train_loss,
                initial_train_loss=self._initial_train_loss,
                best_train_loss=self._best_train_loss,
            )
        ):
            self._trip(params)
            return
        if interval is not None:
            update_sq = interval.update_sq
        else:
            torch._foreach_sub_(prev_flat, [p for layer in params for p in layer])  # -(change)
            update_sq = features.squared_norms(self._prev_params)
        self._check_dead(mean_sq_grad_norm)
        mean_grad = self._by_layer(mean_grad)
        view, grad_sq = self._observation(
            mean_grad, mean_sq_grad_norm, weight_sq, update_sq, train_loss, val
        )
        self.train_loss, self.val_loss = train_loss, val
        self._best_val_loss = min(self._best_val_loss, val)
        self._best_train_loss = min(self._best_train_loss, train_loss)
        # The next interval adds into the window's other buffer (the mean gradient just taken
        # stays as the last one), the next snapshot of the weights reuses the last one's (fresh
        # weights-sized tensors each decision cost page faults).
        self._spare_params = prev_flat if params is not None else None
        self._prev_mean_grad, self._prev_grad_sq = mean_grad, grad_sq
        self._prev_params = params
        if self._window is not None:
            self._window.next_interval()
        self._loss_sum, self._count, self._grad_count = 0.0, 0, 0
        if self.decisions < self.num_decisions:
            self._decide(view)
        else:
            self.last_observation = view
            self.history.append(self._record(None, view))

    def _observation(
        self,
        mean_grad: list[list[torch.Tensor]],
        mean_sq_grad_norm: torch.Tensor,
        weight_sq: torch.Tensor,
        update_sq: torch.Tensor,
        train_loss: float,
        val: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The interval's observation ``[N, F]`` (the environment's features, and the multiplier
        if anchored) and each layer's squared mean-gradient norm, kept for the next one."""
        stats = features.layer_statistics(
            mean_grad=mean_grad,
            prev_mean_grad=self._prev_mean_grad,
            prev_grad_sq=self._prev_grad_sq,
            weight_sq=weight_sq,
            update_sq=update_sq,
        )
        view = features.observe_statistics(
            stats,
            learning_rates=self.learning_rates,
            mean_sq_grad_norm=mean_sq_grad_norm,
            train_loss=train_loss,
            val_loss=val,
            prev_train_loss=self.train_loss,
            prev_val_loss=self.val_loss,
            step_count=self.decisions,
            num_decisions=self.num_decisions,
            prev_log2_factor=self._prev_log2,
        )
        return self._with_scale(view), stats["grad_sq"]

    def _divergence_message(self, val: float, train_loss: float) -> str:
        return (
            f"validation loss {val:.4g} (initial {self.initial_val_loss:.4g}, limit "
            f"{self.divergence_loss_ratio:g}x) / training loss {train_loss:.4g} after step "
            f"{self.steps}"
        )

    # ------------------------------------------------------------------ the guard
    def _snapshot(self) -> dict[str, Any]:
        """The optimiser's and DoG's states now (what a trip returns to besides the weights)."""
        index = {id(p): i for i, p in enumerate(self._flat)}
        optimizer = {
            index[id(p)]: {
                k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()
            }
            for p, state in self.optimizer.state.items()
            if id(p) in index
        }
        dog = None if self.dog is None else self.dog.state_dict()
        return {"optimizer": optimizer, "dog": dog, "buffers": [b.clone() for b in self._buffers]}

    @torch.no_grad()
    def _restore_last_decision(self) -> None:
        """The weights, the optimiser's state and DoG's state of the last decision."""
        for group, saved in zip(self._params, self._prev_params, strict=True):
            for p, q in zip(group, saved, strict=True):
                p.copy_(q.to(p.dtype))
        snapshot = self._guard_snapshot
        self.optimizer.state.clear()
        for i, state in snapshot["optimizer"].items():
            self.optimizer.state[self._flat[i]] = {
                k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()
            }
        if self.dog is not None:
            self.dog.load_state_dict(snapshot["dog"])
        for buffer, saved in zip(self._buffers, snapshot.get("buffers", ()), strict=False):
            buffer.copy_(saved)

    def _trip(self, params) -> None:
        """The guard trips at this interval's end: back to the last decision, multiplier 1, the
        base schedule from here (the policy is not asked again); the next step is the rollback.
        ``params`` (the weights now) is recycled."""
        self.guarded_at_step = self.steps
        self._restore_last_decision()
        self._rollback_at = self.steps
        if params is not None:  # a spare buffer for the next copy of the weights
            self._spare_params = [q for layer in params for q in layer]
        if self._window is not None:
            self._window.reset()
        self._loss_sum, self._count, self._grad_count = 0.0, 0, 0
        self.lr_scale = torch.full((self.num_layers,), GUARD_MULTIPLIER)
        self._advance_unguided()

    def _advance_unguided(self) -> None:
        """The decision the agents would take now, taken for them (multiplier 1): the next
        interval's bounds and the base schedule's rates."""
        view = self.last_observation  # (not in a saved state: the history's is the same)
        self.history.append(
            self._record(None, self.history[-1]["observation"] if view is None else view)
        )
        if self.decisions < self.num_decisions:
            self.decisions += 1
            self._set_interval()
        # with DoG each step's rate is set again once its gradient is read (observe_gradients)
        self.learning_rates = self._anchored_rates(self.steps, self.steps + 1)[0]
        self._apply_rates(self.learning_rates)
        self._plan_rates()

    @torch.no_grad()
    def _end_guarded_interval(self, val_loss) -> None:
        """An interval's end after the guard tripped: the divergence check only (no observation;
        the policy is not asked), then the next interval of the base schedule."""
        train_loss = self._loss_sum / max(self._count, 1)  # an interval of one step: its rollback
        val = self._val_loss(val_loss)
        params = self._detached_params()
        weight_sq = features.squared_norms(params)
        if bool(
            run_diverged(
                val, train_loss, weight_sq, self.initial_val_loss, self.divergence_loss_ratio
            )
        ):
            self._diverge(self._divergence_message(val, train_loss))
            return
        self.train_loss, self.val_loss = train_loss, val
        if self._prev_params is not None:
            self._spare_params = [q for layer in self._prev_params for q in layer]
        self._prev_params = params
        self._loss_sum, self._count, self._grad_count = 0.0, 0, 0
        self._advance_unguided()

    def _span_rates(self) -> torch.Tensor:
        """Each step's per-layer rates over the gradient window that just ended (``[steps, N]``):
        the anchored modes' planned rows, else the interval's constant rates."""
        if self._rate_rows:
            rows = self._rate_rows[self._grad_start - self._rows_from : self._end - self._rows_from]
            return torch.tensor(rows)
        return self._learning_rates.expand(self._end - self._grad_start, -1)

    @property
    def _keeps_weights(self) -> bool:
        """Whether each decision copies the whole weights: for their norms (read statistics), or
        for ``on_divergence="restore"`` to roll back to."""
        return self._weight_stats is None or self.on_divergence == "restore" or self.guard

    def _check_dead(self, mean_sq_grad_norm: torch.Tensor) -> None:
        """Count the intervals in a row in which a layer got no gradient; flag the run (and warn)
        once :data:`ganno.protocol.DEAD_INTERVALS` did."""
        if self._initial_grad_sq is None:  # resumed from a state saved before the check
            return
        dead = dead_layers(mean_sq_grad_norm, self._initial_grad_sq)
        if not bool(dead.any()):
            self._dead_count = 0
            return
        self._dead_count += 1
        if self._dead_count >= DEAD_INTERVALS and self.dead_at_step is None:
            self.dead_at_step = self.steps
            peak = max(max(h["learning_rates"]) for h in self.history)
            layers = torch.nonzero(dead).flatten().tolist()
            message = dead_network_warning(
                "GannoScheduler", self.steps, layers, peak, self.lr_bounds[1]
            )
            warnings.warn(message, GannoWarning, stacklevel=5)  # the caller of step()

    def _decide(self, view: torch.Tensor) -> None:
        if self.guard:  # what a trip at the end of this interval returns to (and the weights)
            self._guard_snapshot = self._snapshot()
        actions = self._policy_actions(view)
        self._prev_rates = self.learning_rates.clone()
        idx = torch.as_tensor(actions, dtype=torch.long)
        self.learning_rates, self.lr_scale = after_decision(
            self.action_mode,
            self._factors[idx],
            self.learning_rates,
            self.lr_scale,
            self.lr_bounds,
            self.settings.scale_bounds,
        )
        if self.anchored:
            self.learning_rates = self._anchored_rates(self.steps, self.steps + 1)[0]
        self._prev_log2 = self._log2_factors[idx]
        self._apply_rates(self.learning_rates)
        self.last_observation, self.last_actions = view, actions
        self.history.append(self._record(actions, view))
        self.decisions += 1
        self._set_interval()
        self._plan_rates()

    def _plan_rates(self) -> None:
        """Anchored modes: every step's rates from the last decision to the next, at once (the
        per-step path only reads them); with a DoG base each step's own, in observe_gradients."""
        if not self.anchored or self.decisions == 0 or self.dog is not None:
            return
        start = self.interval_end(self.decisions - 1)
        self._rate_rows, self._rows_from = self._anchored_rates(start, self._end).tolist(), start

    def _record(self, actions, view: torch.Tensor) -> dict[str, Any]:
        return {
            "observation": view.clone(),
            "step": self.steps,
            "decision": self.decisions,
            "learning_rates": self.learning_rates.tolist(),
            "actions": None if actions is None else [int(a) for a in actions],
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
        }

    def _policy_actions(self, view: torch.Tensor) -> np.ndarray:
        if self.actor == "torch":
            self._policy_carry, out = self._decider.step(
                self._policy_carry, view, greedy=self.greedy, generator=self._generator
            )
            return out.numpy()
        import jax

        from ganno.types import Observation

        n, a = view.shape[0], len(self._factors)
        # NumPy inputs: the jitted call transfers them at once (eager jnp constructors would
        # each dispatch an operation)
        obs = Observation(
            agents_view=view.numpy().astype(np.float32, copy=False),
            action_mask=np.ones((n, a), bool),
            step_count=np.full((n,), self.decisions, np.int32),
        )
        if self.greedy:
            self._policy_carry, out = self._act(self.policy, self._policy_carry, obs)
        else:
            self._key, sub = jax.random.split(self._key)
            self._policy_carry, out = self._act(self.policy, self._policy_carry, obs, sub)
        return np.asarray(out, np.int64)

    def _diverge(self, why: str) -> None:
        if self.on_divergence == "raise":
            raise TrainingDivergedError(
                f"training diverged: {why}. GannoScheduler(on_divergence='restore') instead "
                "rolls back to the last decision's weights and stops deciding"
            )
        self.learning_rates = self.learning_rates  # the rates stay where they are now
        self.diverged, self.diverged_at_step = True, self.steps
        self._observed_this_step = False
        if self.on_divergence == "restore" and self._prev_params is not None:
            with torch.no_grad():
                for group, saved in zip(self._params, self._prev_params, strict=True):
                    for p, q in zip(group, saved, strict=True):
                        p.copy_(q.to(p.dtype))
            if self.decisions > 0:
                self.learning_rates = self._prev_rates.clone()
                self._apply_rates(self.learning_rates)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-episode (not the policy, optimizer or model)."""

        def clone(layers):
            return None if layers is None else [[t.clone() for t in layer] for layer in layers]

        if self._window is not None:
            grad_sum, squares = self._window.state()
        else:  # the weights' changes keep their own state (below)
            grad_sum = [torch.zeros(shape) for shape in self.gradient_sample.shapes]
            squares = [torch.zeros(()) for _ in self._flat]
        return {
            "steps": self.steps,
            "decisions": self.decisions,
            "diverged": self.diverged,
            "diverged_at_step": self.diverged_at_step,
            "dead_at_step": self.dead_at_step,
            "dead_count": self._dead_count,
            "guarded_at_step": self.guarded_at_step,
            "best_val_loss": self._best_val_loss,
            "initial_train_loss": self._initial_train_loss,
            "best_train_loss": self._best_train_loss,
            "rollback_at": self._rollback_at,
            "guard_snapshot": None
            if self._guard_snapshot is None
            else {
                "optimizer": {
                    i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}
                    for i, st in self._guard_snapshot["optimizer"].items()
                },
                "dog": self._guard_snapshot["dog"],
                "buffers": [b.clone() for b in self._guard_snapshot.get("buffers", ())],
            },
            "initial_grad_sq": None
            if self._initial_grad_sq is None
            else self._initial_grad_sq.clone(),
            "initial_val_loss": self.initial_val_loss,
            "val_loss": self.val_loss,
            "train_loss": self.train_loss,
            "learning_rates": self.learning_rates.clone(),
            "lr0": self.lr0.clone(),
            "lr_scale": self.lr_scale.clone(),
            "prev_rates": self._prev_rates.clone(),
            "prev_log2": self._prev_log2.clone(),
            "prev_mean_grad": clone(self._prev_mean_grad),
            "prev_params": clone(self._prev_params),
            "grad_sum": grad_sum,
            "sq_sum": features.per_layer(squares, self._group_of, self.num_layers),
            "loss_sum": self._loss_sum,
            "count": self._count,
            "grad_count": self._grad_count,
            "observed_this_step": self._observed_this_step,
            "history": [dict(h) for h in self.history],
            "key": None if self._key is None else np.asarray(self._key).tolist(),
            "generator": None if self._generator is None else self._generator.get_state(),
            "policy_carry": carry_to_numpy(self._policy_carry),
            "dog": None if self.dog is None else self.dog.state_dict(),
            "weight_changes": None
            if self._weight_stats is None
            else self._weight_stats.state_dict(),
            "settings": {
                "steps_per_decision": self.steps_per_decision,
                "num_decisions": self.num_decisions,
                "total_steps": self.total_steps,
                "actions": list(self.actions),
                "action_mode": self.action_mode,
                "base_step_size": self.settings.base_step_size,
                "lr_bounds": list(self.lr_bounds),
                "num_layers": self.num_layers,
                "gradient_sample": self.gradient_sample.fraction,
                "sample_above": self.gradient_sample.above,
                "gradient_statistics": self.gradient_statistics,
                "guard": self.guard,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the settings and the number of groups must match."""
        # a state saved before DoG, or before the weight-change statistics
        settings = {
            "base_step_size": "lr0",
            "gradient_statistics": "read",
            "guard": False,  # a state saved before the guard
            **state["settings"],
        }
        mine = self.state_dict()["settings"]
        saved = settings["gradient_statistics"]
        if self.requested_statistics == "auto":
            mine["gradient_statistics"] = saved  # "auto" resumes the way the state was taken
        if settings != mine:
            raise ValueError(f"scheduler state of another setting {settings} (this one: {mine})")
        if [g.shape for g in state["grad_sum"]] != self.gradient_sample.shapes:
            raise ValueError("scheduler state of another model (parameter shapes differ)")
        if saved != self.gradient_statistics:
            self._use_statistics(saved)
        for name in ("steps", "decisions", "diverged", "diverged_at_step", "initial_val_loss"):
            setattr(self, name, state[name])
        self.val_loss, self.train_loss = state["val_loss"], state["train_loss"]
        # a state saved before the dead-network check: not flagged, and not checked from here
        self.dead_at_step = state.get("dead_at_step")
        self._dead_count = state.get("dead_count", 0)
        self.guarded_at_step = state.get("guarded_at_step")
        # a state saved before the rise rule: its best is unknown, the initial loss is an upper
        # bound (the rule then trips no later than the older one did)
        self._best_val_loss = state.get("best_val_loss", self.initial_val_loss or math.inf)
        # a state saved before the training loss joined the rise rule: its initial training
        # loss is unknown, so the rise rule does not trip on it (divergence and dead layers do)
        self._initial_train_loss = state.get("initial_train_loss", math.inf)
        self._best_train_loss = state.get("best_train_loss", math.inf)
        self._rollback_at = state.get("rollback_at")
        self._guard_snapshot = state.get("guard_snapshot")
        initial = state.get("initial_grad_sq")
        self._initial_grad_sq = None if initial is None else initial.clone()
        self.learning_rates = state["learning_rates"].clone()
        self.lr0, self.lr_scale = state["lr0"].clone(), state["lr_scale"].clone()
        self._prev_rates = state["prev_rates"].clone()
        self._prev_log2 = state["prev_log2"].clone()
        copy = lambda ls: None if ls is None else [[t.clone() for t in layer] for layer in ls]  # noqa: E731
        self._prev_mean_grad = copy(state["prev_mean_grad"])
        if self._prev_mean_grad is not None:
            self._prev_grad_sq = features.squared_norms(self._prev_mean_grad)
        self._prev_params = copy(state["prev_params"])
        # a layer's sum of squares goes to its first tensor's (only the layer sums are read)
        squares = [
            float(state["sq_sum"][layer]) if j == 0 or self._group_of[j - 1] != layer else 0.0
            for j, layer in enumerate(self._group_of)
        ]
        if self._window is not None:
            self._window.load(state["grad_sum"], squares)
        self._loss_sum, self._count = state["loss_sum"], state["count"]
        self._grad_count = state.get("grad_count", state["count"])
        self._observed_this_step = state["observed_this_step"]
        self.history = [dict(h) for h in state["history"]]
        if state["key"] is not None and self.actor == "jax":
            import jax.numpy as jnp

            self._key = jnp.asarray(state["key"], jnp.uint32)
        if state.get("generator") is not None and self._generator is not None:
            self._generator.set_state(state["generator"])
        if state.get("policy_carry") is not None:
            carry = np.asarray(state["policy_carry"], np.float32)
            if self.actor == "jax":
                import jax.numpy as jnp

                self._policy_carry = jnp.asarray(carry)
            else:
                self._policy_carry = torch.from_numpy(carry.copy())
        if self.dog is not None:
            self.dog.load_state_dict(state["dog"])
        self._set_interval()
        if self._weight_stats is not None:
            self._weight_stats.load_state_dict(state["weight_changes"])
        if not self.diverged:
            self._plan_rates()
        self._apply_rates(self.learning_rates)
