"""The GANNO environment: one episode is one training run of an inner network.

Each parametrised layer of the inner network is an agent. Every ``steps_per_decision`` inner SGD
steps, each agent sees features of its own layer (plus the shared losses and progress) and makes a
learning-rate choice for its layer: a factor on its current rate, or a level on a base schedule
(the action modes of :mod:`ganno.env_settings`). The team shares one reward, by default the drop in
log validation loss over the interval, so an episode's rewards sum to ``log(L_0 / L_T)``; the
rewards are the named functions of :mod:`ganno.rewards`, the observation the named columns of
:mod:`ganno.observation`.

The environment speaks Mava's protocol (see :mod:`ganno.types`): ``reset``/``step`` are pure and
``vmap``-able and return jumanji ``TimeStep``s whose observation is an
:class:`~ganno.types.ObservationGlobalState`. A deeper or wider network changes the number of
agents ``N`` only, never the feature width ``F``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ganno import _import_jumanji_keeping_the_matplotlib_backend

_import_jumanji_keeping_the_matplotlib_backend()
# ruff: noqa: E402 -- jumanji is imported once the call above quieted it
from jumanji import specs
from jumanji.env import Environment
from jumanji.types import StepType, TimeStep

from ganno.env_settings import (
    ACTION_MODES,
    COLLAPSE_DEAD,
    COLLAPSE_LEARNED,
    EnvSettings,
    settings_from,
    share_of_the_way,
)
from ganno.feature_names import FEATURE_NAMES
from ganno.inner import InnerTask, episode_keys, make_task
from ganno.observation import (
    IntervalStats,
    interval_columns,
    log_feature,
    per_layer,
    position_columns,
    stack_columns,
)
from ganno.optim import (
    DogStepSize,
    LayerwiseSGDState,
    dog_step_size_init,
    dog_step_size_update,
    layerwise_sgd,
)
from ganno.protocol import (
    GUARD_MULTIPLIER,
    after_decision,
    anchored_rates,
    guard_trips,
    run_diverged,
)
from ganno.rewards import REWARDS, RewardInputs, validation_error
from ganno.types import ObservationGlobalState

__all__ = [
    "ACTION_MODES",
    "FEATURE_NAMES",
    "REWARDS",
    "EnvSettings",
    "EnvState",
    "GannoEnv",
    "GuardState",
    "PooledReference",
    "log_feature",
    "EVALUATION_REWARD",
    "make_env",
    "per_layer",
]

#: Per-layer features that the centralised critic's global state pools (mean, min, max) over agents.
POOLED_FEATURES: tuple[str, ...] = FEATURE_NAMES[:7] + ("prev_action",)
#: Team-level features appended once to the global state.
GLOBAL_FEATURES: tuple[str, ...] = FEATURE_NAMES[7:12]
#: Features appended (after the position features) when the agents also set their layer's momentum
#: and/or weight decay (Q1): the layer's current value, ``log_feature(wd)`` for weight decay.
HYPERPARAMETER_FEATURES: dict[str, str] = {
    "momentum": "momentum",
    "weight_decay": "log_weight_decay",
}
#: Feature appended in the anchored action modes: ``log_feature`` of the layer's multiplier on the
#: base schedule.
SCALE_FEATURE = "log_lr_scale"

#: (inner step[, DoG's eta_t]) -> [N] learning rates (anchored modes; the base scales lr0 unless
#: DoG's step size is given)
RateFn = Callable[..., jnp.ndarray]


class ReferenceRun(NamedTuple):
    """The run the relative rewards compare with: the base schedule (or constant SGD) from the same
    lr0, initial weights and minibatches, trained alongside the agents' run."""

    params: Any
    opt_state: LayerwiseSGDState
    metric: jnp.ndarray  # [] its validation loss or error rate (``Reward.reference_metric``)
    dog: DogStepSize | tuple  # its own DoG step size (base_step_size dog), else ()


class PooledReference(NamedTuple):
    """The reference of an episode drawn from the environment's reference pool
    (``meta_train.reference_pool``, :mod:`ganno.reference_pool`): read from the pool's table,
    not trained."""

    index: jnp.ndarray  # [] int32, the episode's row of the pool
    metric: jnp.ndarray  # [] the reference's validation metric after the last interval


class GuardState(NamedTuple):
    """The guard's part of an episode (``env.guard``, see :mod:`ganno.protocol`)."""

    initial_grad_sq: jnp.ndarray  # [N] the first minibatch's squared gradient norms (dead layers)
    tripped: jnp.ndarray  # [] bool, the guard tripped: the agents are no longer followed
    step: jnp.ndarray  # [] int32, the inner step at which it tripped (-1: never); not trained on
    best_val_loss: jnp.ndarray  # [] the lowest validation loss at a decision so far (rise rule)
    initial_train_loss: jnp.ndarray  # [] the first minibatch's training loss (rise rule)
    best_train_loss: jnp.ndarray  # [] the lowest interval training loss at a decision so far


class EnvState(NamedTuple):
    """Everything an episode carries from one decision to the next (all arrays, so it vmaps)."""

    params: Any  # the inner network's parameters
    opt_state: LayerwiseSGDState  # per-layer learning rates (and momentum buffers)
    data_key: jax.Array  # the minibatch stream of this episode
    step_count: jnp.ndarray  # [] int32, decisions taken
    prev_mean_grad: Any  # mean gradient of the last interval, like params
    train_loss: jnp.ndarray  # [] mean minibatch loss of the last interval
    val_loss: jnp.ndarray  # []
    val_accuracy: jnp.ndarray  # []
    initial_val_loss: jnp.ndarray  # []
    lr0: jnp.ndarray  # []
    agents_view: jnp.ndarray  # [N, F] the last observation (kept when a step diverges)
    diverged: jnp.ndarray  # [] bool
    best_val_accuracy: jnp.ndarray  # [] the episode's best so far (collapse_check)
    lr_scale: jnp.ndarray  # [N] multiplier on the base schedule (anchored modes; else 1)
    grad_scale: jnp.ndarray  # [] factor on every gradient of the episode (gradient_scale_range)
    dog: DogStepSize | tuple  # DoG's step size of the agents' run (base_step_size dog), else ()
    reference: ReferenceRun | PooledReference | tuple  # () unless the reward has a reference
    guard: GuardState | tuple = ()  # () unless the guard applies (evaluation with env.guard)


class GannoEnv(Environment):
    """Cooperative multi-agent learning-rate control of an inner network (a jumanji Environment).

    Built from an inner task and :class:`~ganno.env_settings.EnvSettings` (``settings=``), or from
    keyword arguments naming its fields (``GannoEnv(task, num_decisions=5)``).

    The guard (``settings.guard``; the rule in :mod:`ganno.protocol`) applies unless
    ``apply_guard=False``, which :func:`make_env` passes for meta-training: such an environment
    records the setting (a saved policy carries it) and plays as without it. On a trip
    (checked at the end of :meth:`step`, before the agents' next choice) the episode goes back to
    the weights, optimiser state and DoG state of the last decision, the multipliers become 1, and
    from then on the agents' actions are ignored (the base schedule; momentum and weight decay at
    the task's values); the next interval's first step is the rollback, trained on by nothing.
    A divergence after the trip ends the episode as without the guard.
    """

    def __init__(
        self,
        task: InnerTask,
        settings: EnvSettings | None = None,
        *,
        apply_guard: bool = True,
        **overrides: Any,
    ) -> None:
        settings = settings_from(settings, **overrides)
        if settings.reward not in REWARDS:
            raise ValueError(f"unknown reward {settings.reward!r}; choose one of {tuple(REWARDS)}")
        self.settings = settings
        self._reward = REWARDS[settings.reward]
        if self._reward.counterfactual:
            settings.neutral_lr_choice  # noqa: B018 - raises if there is no keep action
        extra = {
            "momentum": settings.momentum_actions,
            "weight_decay": settings.weight_decay_actions,
        }
        self.hyperparameter_actions = {k: vs for k, vs in extra.items() if vs is not None}
        for name, values in self.hyperparameter_actions.items():
            if not values:
                raise ValueError(f"{name}_actions is empty; give at least one {name} value or null")
        if self.hyperparameter_actions and self._reward.counterfactual:
            raise ValueError(
                "counterfactual rewards are defined for learning-rate-only agents; set "
                "momentum_actions and weight_decay_actions to null or choose another reward"
            )
        self.task = task
        self._x_val = (
            task.x_val if settings.val_subset is None else task.x_val[: settings.val_subset]
        )
        self._y_val = (
            task.y_val if settings.val_subset is None else task.y_val[: settings.val_subset]
        )
        controls = self.hyperparameter_actions
        self.optimizer = layerwise_sgd(
            learning_rate=self.lr0_range[0],
            momentum=settings.momentum if settings.momentum > 0 or "momentum" in controls else None,
            weight_decay=settings.weight_decay
            if settings.weight_decay > 0 or "weight_decay" in controls
            else None,
        )
        # The reference run of the relative rewards trains with the task's fixed momentum and
        # weight decay, whatever the agents set.
        self._reference_optimizer = layerwise_sgd(
            learning_rate=self.lr0_range[0],
            momentum=settings.momentum if settings.momentum > 0 else None,
            weight_decay=settings.weight_decay if settings.weight_decay > 0 else None,
        )
        # The joint action of one agent is a flat index into the product of its choice sets:
        # learning-rate choice (slowest), then momentum, then weight decay (fastest).
        choice_sets = [settings.lr_multipliers, *controls.values()]
        grids = jnp.meshgrid(*[jnp.asarray(c, jnp.float32) for c in choice_sets], indexing="ij")
        table = jnp.stack([g.reshape(-1) for g in grids], axis=1)  # [A, 1 + len(controls)]
        self._factors = table[:, 0]
        self._log2_factors = jnp.log2(self._factors)
        self._controlled = {name: table[:, 1 + i] for i, name in enumerate(controls)}
        self._num_agents = task.num_layers()
        self._position = position_columns(self._num_agents)
        if self.anchored:
            from ganno.schedules import optax_unit_schedule as unit_schedule

            self._unit_schedule = unit_schedule(settings.base_schedule, settings.total_steps)
        #: the anchored base schedule scales DoG's step size (env.base_step_size dog), not lr0
        self._dog = self.anchored and settings.base_step_size == "dog"
        #: whether the guard applies in this environment (env.guard, not built for meta-training)
        self.guarded = bool(settings.guard and apply_guard)
        #: the pool meta-training draws episodes from (:func:`ganno.reference_pool.with_pool`),
        #: None: every episode fresh, its reference run trained alongside
        self.reference_pool: Any = None
        super().__init__()

    # ------------------------------------------------------------------ settings
    def __getattr__(self, name: str) -> Any:
        # The settings' fields read as attributes (env.num_decisions, env.actions, ...).
        settings = self.__dict__.get("settings")
        if settings is not None and name in EnvSettings.__dataclass_fields__:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def reward_name(self) -> str:
        return self.settings.reward

    @property
    def has_reference_run(self) -> bool:
        """Whether the reward compares with a reference run trained alongside (the relative
        rewards): what a reference pool (:mod:`ganno.reference_pool`) can store."""
        return self._reward.reference_metric is not None

    @property
    def anchored(self) -> bool:
        """Whether rates follow a base schedule (the anchored action modes)."""
        return self.settings.action_mode != "compound"

    # ------------------------------------------------------------------ protocol attributes
    @property
    def num_agents(self) -> int:
        return self._num_agents

    @property
    def action_dim(self) -> int:
        return int(self._factors.shape[0])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The names of the observation's columns: :data:`FEATURE_NAMES`, then one per extra
        hyperparameter the agents control, then the multiplier in the anchored modes."""
        extra = tuple(HYPERPARAMETER_FEATURES[k] for k in self.hyperparameter_actions)
        return FEATURE_NAMES + extra + ((SCALE_FEATURE,) if self.anchored else ())

    def action_index(
        self,
        factor: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        *,
        level: float | None = None,
    ) -> int:
        """The flat action that makes the given learning-rate choice (``factor`` in the
        compounding modes, ``level`` if anchored; the neutral choice if left out) and sets the given
        momentum and weight decay (each must be in its action set; leave out those the agents do
        not set)."""
        if self.settings.action_mode == "anchored":
            if factor is not None:
                raise ValueError("anchored agents choose a level, not a factor")
            index = (
                self.settings.neutral_lr_choice
                if level is None
                else self.settings.levels.index(float(level))
            )
        else:
            if level is not None:
                raise ValueError(f"{self.settings.action_mode} agents choose a factor, not a level")
            index = self.actions.index(1.0 if factor is None else float(factor))
        for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
            if name not in self.hyperparameter_actions:
                if value is not None:
                    raise ValueError(f"these agents do not set {name}")
                continue
            values = self.hyperparameter_actions[name]
            value = getattr(self.settings, name) if value is None else float(value)
            if value not in values:
                raise ValueError(f"{name} {value} is not one of the {name} actions {values}")
            index = index * len(values) + values.index(value)
        return index

    @property
    def neutral_action(self) -> int:
        """The action that keeps everything as it is (factor 1 or level 0, other settings at
        the task's values)."""
        return self.action_index()

    @property
    def time_limit(self) -> int:
        return self.num_decisions

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def global_state_dim(self) -> int:
        return 3 * len(self._pooled_features) + len(GLOBAL_FEATURES)

    @cached_property
    def _pooled_features(self) -> tuple[str, ...]:
        return POOLED_FEATURES + self.feature_names[len(FEATURE_NAMES) :]

    def __repr__(self) -> str:
        extra = "".join(f", {k}_actions={v}" for k, v in self.hyperparameter_actions.items())
        mode = "" if not self.anchored else f", mode={self.action_mode}({self.base_schedule})"
        return (
            f"GannoEnv(agents={self.num_agents}, actions={self.settings.lr_multipliers}{extra}"
            f"{mode}, k={self.steps_per_decision}, H={self.num_decisions}, "
            f"reward={self.reward_name})"
        )

    @cached_property
    def observation_spec(self) -> specs.Spec:
        n, a = self._num_agents, self.action_dim
        return specs.Spec(
            ObservationGlobalState,
            "ObservationSpec",
            agents_view=specs.Array((n, self.num_features), jnp.float32, "agents_view"),
            action_mask=specs.BoundedArray((n, a), bool, False, True, "action_mask"),
            global_state=specs.Array((n, self.global_state_dim), jnp.float32, "global_state"),
            step_count=specs.BoundedArray((n,), jnp.int32, 0, self.num_decisions, "step_count"),
        )

    @cached_property
    def action_spec(self) -> specs.MultiDiscreteArray:
        return specs.MultiDiscreteArray(
            num_values=jnp.full((self._num_agents,), self.action_dim, jnp.int32), name="action"
        )

    @cached_property
    def reward_spec(self) -> specs.Array:
        return specs.Array((self._num_agents,), jnp.float32, "reward")

    @cached_property
    def discount_spec(self) -> specs.BoundedArray:
        return specs.BoundedArray((self._num_agents,), jnp.float32, 0.0, 1.0, "discount")

    # ------------------------------------------------------------------ learning rates
    def base_rate(self, step_size: jnp.ndarray, step: jnp.ndarray) -> jnp.ndarray:
        """The base schedule's rate at inner ``step`` (anchored modes): ``step_size x`` the
        baseline's peak-1 shape, the very expression :mod:`ganno.baselines` trains that schedule
        with; ``step_size`` is lr0, or DoG's ``eta_t`` (``base_step_size``)."""
        return step_size * self._unit_schedule(step)

    def _anchored_rates(self, lr0: jnp.ndarray, lr_scale: jnp.ndarray) -> RateFn:
        upper = self.lr_bounds[1]
        return lambda step, eta=lr0: anchored_rates(eta, self._unit_schedule(step), lr_scale, upper)

    def _choose(self, state: EnvState, multipliers: jnp.ndarray) -> tuple[jnp.ndarray, Any]:
        """``(lr_scale, rates)`` after the agents' learning-rate choices ``multipliers`` [N]:
        ``rates`` is a constant [N] in the compound mode, a :data:`RateFn` if anchored."""
        rates, scale = after_decision(
            self.settings.action_mode,
            multipliers,
            state.opt_state.learning_rates,
            state.lr_scale,
            self.lr_bounds,
            self.settings.scale_bounds,
        )
        return scale, self._anchored_rates(state.lr0, scale) if self.anchored else rates

    # ------------------------------------------------------------------ inner training
    def _val_metrics(self, params: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
        return self.task.loss_and_accuracy(params, self._x_val, self._y_val)

    def _train_interval(
        self,
        params: Any,
        opt_state: LayerwiseSGDState,
        data_key,
        start_step,
        rate_fn: RateFn | None = None,
        grad_scale: jnp.ndarray | float = 1.0,
        dog: DogStepSize | tuple = (),
        skip_step: jnp.ndarray | None = None,
    ):
        """``steps_per_decision`` SGD steps, accumulating what the observation needs: the mean
        minibatch loss of every step, the mean gradient and mean squared gradient norm of the last
        ``settings.gradient_steps`` (``gradient_window``, see :mod:`ganno.env_settings`); the rates
        in ``opt_state`` throughout, or ``rate_fn(step)`` at every step if given (with a DoG state
        ``dog``, ``rate_fn(step, eta_t)``, DoG updated first from the step's weights and
        gradient); every gradient multiplied by ``grad_scale`` (the episode's,
        ``gradient_scale_range``). ``skip_step`` (the guard's rollback step): that step changes
        nothing (weights, optimiser and DoG state) and the means leave it out. Returns the weights,
        optimiser state, mean gradient, mean squared gradient norms, mean loss and the DoG state
        after it."""
        if skip_step is not None:
            return self._train_interval_skipping(
                params, opt_state, data_key, start_step, rate_fn, grad_scale, dog, skip_step
            )
        grad_fn = self._scaled_value_and_grad(grad_scale)
        k, window = self.steps_per_decision, self.settings.gradient_steps

        def one_step(carry, step):
            params, opt_state, grad_sum, sq_norm_sum, loss_sum, dog = carry
            x, y = self.task.batch(data_key, step)
            loss, grads = grad_fn(params, x, y)
            if rate_fn is not None:
                opt_state, dog = self._set_rates(opt_state, rate_fn, step, dog, params, grads)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            params = jax.tree.map(jnp.add, params, updates)
            if window < k:  # the gradient features read the interval's last `window` steps
                counts = (step - start_step >= k - window).astype(jnp.float32)
                grads = jax.tree.map(lambda g: g * counts, grads)
            grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
            sq_norm_sum = sq_norm_sum + per_layer(jnp.square, grads)
            return (params, opt_state, grad_sum, sq_norm_sum, loss_sum + loss, dog), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        init = (params, opt_state, zeros, jnp.zeros(self._num_agents), jnp.zeros(()), dog)
        steps = start_step + jnp.arange(k)
        (params, opt_state, grad_sum, sq_norm_sum, loss_sum, dog), _ = jax.lax.scan(
            one_step, init, steps
        )
        mean_grad = jax.tree.map(lambda g: g / window, grad_sum)
        return params, opt_state, mean_grad, sq_norm_sum / window, loss_sum / k, dog

    def _train_interval_skipping(
        self, params, opt_state, data_key, start_step, rate_fn, grad_scale, dog, skip_step
    ):
        """:meth:`_train_interval` in which step ``skip_step`` (if in the interval) is the guard's
        rollback: it changes nothing and is left out of the means (a separate function, so that
        an environment without the guard runs exactly the operations it always did)."""
        grad_fn = self._scaled_value_and_grad(grad_scale)
        k, window = self.steps_per_decision, self.settings.gradient_steps

        def one_step(carry, step):
            params, opt_state, grad_sum, sq_norm_sum, loss_sum, dog, counted, grad_counted = carry
            live = step != skip_step
            x, y = self.task.batch(data_key, step)
            loss, grads = grad_fn(params, x, y)
            new_opt, new_dog = opt_state, dog
            if rate_fn is not None:
                new_opt, new_dog = self._set_rates(opt_state, rate_fn, step, dog, params, grads)
            updates, new_opt = self.optimizer.update(grads, new_opt, params)
            new_params = jax.tree.map(jnp.add, params, updates)
            keep = lambda new, old: jnp.where(live, new, old)  # noqa: E731
            params = jax.tree.map(keep, new_params, params)
            opt_state = jax.tree.map(keep, new_opt, opt_state)
            dog = jax.tree.map(keep, new_dog, dog)
            weight = live.astype(jnp.float32)
            if window < k:  # the gradient features read the interval's last `window` steps
                weight = weight * (step - start_step >= k - window).astype(jnp.float32)
            grads = jax.tree.map(lambda g: g * weight, grads)
            grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
            sq_norm_sum = sq_norm_sum + per_layer(jnp.square, grads)
            loss_sum = loss_sum + jnp.where(live, loss, 0.0)
            carry = (
                params,
                opt_state,
                grad_sum,
                sq_norm_sum,
                loss_sum,
                dog,
                counted + live.astype(jnp.float32),
                grad_counted + weight,
            )
            return carry, None

        zeros = jax.tree.map(jnp.zeros_like, params)
        scalar = jnp.zeros(())
        init = (params, opt_state, zeros, jnp.zeros(self._num_agents), scalar, dog, scalar, scalar)
        steps = start_step + jnp.arange(k)
        (params, opt_state, grad_sum, sq_norm_sum, loss_sum, dog, counted, grad_counted), _ = (
            jax.lax.scan(one_step, init, steps)
        )
        grad_counted = jnp.maximum(grad_counted, 1.0)  # an interval of one step: all skipped
        mean_grad = jax.tree.map(lambda g: g / grad_counted, grad_sum)
        mean_loss = loss_sum / jnp.maximum(counted, 1.0)
        return params, opt_state, mean_grad, sq_norm_sum / grad_counted, mean_loss, dog

    def _agents_interval(self, state: EnvState, opt_state, rate_fn: RateFn | None):
        """:meth:`_train_interval` of the agents' run from ``state`` (its weights, minibatches,
        gradient factor and DoG state) with ``opt_state`` and ``rate_fn``."""
        return self._train_interval(
            state.params,
            opt_state,
            state.data_key,
            state.step_count * self.steps_per_decision,
            rate_fn,
            state.grad_scale,
            state.dog,
            state.guard.step if self.guarded else None,
        )

    @staticmethod
    def _set_rates(opt_state, rate_fn: RateFn, step, dog: DogStepSize | tuple, params, grads):
        """The optimiser state with the rates of inner ``step`` (anchored modes), and the DoG
        state after it (updated from the step's weights and gradient; () without DoG)."""
        if isinstance(dog, DogStepSize):
            dog = dog_step_size_update(dog, params, grads)
            return opt_state._replace(learning_rates=rate_fn(step, dog.eta)), dog
        return opt_state._replace(learning_rates=rate_fn(step)), dog

    def _scaled_value_and_grad(self, grad_scale: jnp.ndarray | float):
        """``(params, x, y) -> (loss, grads)`` with the gradients multiplied by ``grad_scale``
        (the loss itself unscaled: what the observation and the divergence test read); without a
        ``gradient_scale_range`` the gradients as they are (no multiplication in the inner loop)."""
        value_and_grad = jax.value_and_grad(self.task.loss)
        if self.settings.gradient_scale_range is None:
            return value_and_grad

        def scaled(params, x, y):
            loss, grads = value_and_grad(params, x, y)
            return loss, jax.tree.map(lambda g: g * grad_scale, grads)

        return scaled

    def sample_grad_scale(self, key: jax.Array) -> jnp.ndarray:
        """A meta-training episode's gradient factor: log-uniform in ``gradient_scale_range``
        (1 when it is None)."""
        scale_range = self.settings.gradient_scale_range
        if scale_range is None:
            return jnp.ones((), jnp.float32)
        low, high = jnp.log(scale_range[0]), jnp.log(scale_range[1])
        return jnp.exp(jax.random.uniform(key, (), minval=low, maxval=high))

    def _sgd_interval(
        self,
        optimizer,
        params,
        opt_state,
        data_key,
        start_step,
        rate_fn=None,
        grad_scale=1.0,
        dog: DogStepSize | tuple = (),
    ):
        """The interval's plain SGD steps, without what the observation needs (the reference
        run): the weights, optimiser state and DoG state after it."""
        value_and_grad = self._scaled_value_and_grad(grad_scale)
        grad_fn = lambda params, x, y: value_and_grad(params, x, y)[1]  # noqa: E731

        def one_step(carry, step):
            params, opt_state, dog = carry
            grads = grad_fn(params, *self.task.batch(data_key, step))
            if rate_fn is not None:
                opt_state, dog = self._set_rates(opt_state, rate_fn, step, dog, params, grads)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (jax.tree.map(jnp.add, params, updates), opt_state, dog), None

        steps = start_step + jnp.arange(self.steps_per_decision)
        (params, opt_state, dog), _ = jax.lax.scan(one_step, (params, opt_state, dog), steps)
        return params, opt_state, dog

    # ------------------------------------------------------------------ observations
    def _observe(self, stats: IntervalStats, opt_state: LayerwiseSGDState, lr_scale) -> jnp.ndarray:
        """[N, F]: the named columns of :mod:`ganno.observation` plus this environment's extras."""
        columns = {**interval_columns(stats), **self._position}
        if "momentum" in self.hyperparameter_actions:
            columns["momentum"] = opt_state.momentum
        if "weight_decay" in self.hyperparameter_actions:
            columns["log_weight_decay"] = log_feature(opt_state.weight_decay)
        if self.anchored:
            columns[SCALE_FEATURE] = log_feature(lr_scale)
        return stack_columns(columns, self.feature_names)

    def global_state(self, agents_view: jnp.ndarray) -> jnp.ndarray:
        """[N, F] -> [N, G]: per-layer features pooled over agents plus the team features, the
        same for every agent and of a size that does not depend on N."""
        index = {name: i for i, name in enumerate(self.feature_names)}
        pooled = agents_view[:, jnp.array([index[f] for f in self._pooled_features])]
        team = agents_view[0, jnp.array([index[f] for f in GLOBAL_FEATURES])]
        row = jnp.concatenate([pooled.mean(0), pooled.min(0), pooled.max(0), team])
        return jnp.broadcast_to(row, (self._num_agents, row.shape[0]))

    def _timestep(self, state: EnvState, reward, step_type, discount) -> TimeStep:
        n = self._num_agents
        observation = ObservationGlobalState(
            agents_view=state.agents_view,
            action_mask=jnp.ones((n, self.action_dim), bool),
            global_state=self.global_state(state.agents_view),
            step_count=jnp.full((n,), state.step_count, jnp.int32),
        )
        extras = {
            "train_loss": state.train_loss,
            "val_loss": state.val_loss,
            "val_accuracy": state.val_accuracy,
            "diverged": state.diverged,
            "learning_rates": state.opt_state.learning_rates,
            "momentum": state.opt_state.momentum,
            "weight_decay": state.opt_state.weight_decay,
            "lr0": state.lr0,
        }
        return TimeStep(
            step_type=step_type,
            reward=reward,
            discount=discount,
            observation=observation,
            extras=extras,
        )

    # ------------------------------------------------------------------ protocol
    def sample_lr0(self, key: jax.Array) -> jnp.ndarray:
        """An initial learning rate drawn log-uniformly from ``lr0_range``."""
        low, high = jnp.log(self.lr0_range[0]), jnp.log(self.lr0_range[1])
        return jnp.exp(jax.random.uniform(key, (), minval=low, maxval=high))

    def reset(self, key: jax.Array) -> tuple[EnvState, TimeStep]:
        """A new meta-training episode: its initial learning rate drawn from ``lr0_range``, its
        gradient factor from ``gradient_scale_range`` (1 when that is None). With a reference
        pool, the episode is one of the pool's, drawn uniformly by ``key``: the same as
        ``reset(pool.keys[i])`` without the pool, but its reference is read, not trained."""
        pool, index = self.reference_pool, None
        if pool is not None:
            index = jax.random.randint(key, (), 0, pool.metrics.shape[0])
            key = pool.keys[index]
        lr0, grad_scale = self._episode_draws(key)
        return self._reset(key, lr0, grad_scale, pool_index=index)

    def _episode_draws(self, key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(lr0, gradient factor) of the meta-training episode of ``key``."""
        lr0_key = episode_keys(key)[2]
        grad_scale = self.sample_grad_scale(jax.random.fold_in(lr0_key, 1))
        return self.sample_lr0(lr0_key), grad_scale

    def reference_curve(self, key: jax.Array) -> jnp.ndarray:
        """[num_decisions + 1]: the reference run's validation metric at the start and after
        each interval of the meta-training episode of ``key`` (what a reference pool stores;
        only for a reward with a reference run)."""
        if not self.has_reference_run:
            raise ValueError(f"reward {self.settings.reward!r} has no reference run")
        lr0, grad_scale = self._episode_draws(key)
        state, _ = self._reset(key, lr0, grad_scale)

        def interval(state: EnvState, _: None) -> tuple[EnvState, jnp.ndarray]:
            reference = self._step_reference(state)
            return state._replace(reference=reference, step_count=state.step_count + 1), (
                reference.metric
            )

        _, metrics = jax.lax.scan(interval, state, None, length=self.num_decisions)
        return jnp.concatenate([state.reference.metric[None], metrics])

    def _initial_rates(self, lr0: jnp.ndarray) -> jnp.ndarray:
        n = self._num_agents
        if self.anchored:
            # DoG's first step size is lr0 too
            return self._anchored_rates(lr0, jnp.ones((n,)))(jnp.zeros((), jnp.int32))
        return jnp.clip(jnp.full((n,), lr0), *self.lr_bounds)

    def reset_with_lr0(
        self, key: jax.Array, lr0: float | jnp.ndarray, *, grad_scale: float | jnp.ndarray = 1.0
    ) -> tuple[EnvState, TimeStep]:
        """A new episode whose layers all start at the given learning rate (for evaluation: the
        task's own gradients, ``grad_scale`` 1; another factor applies in an environment with a
        ``gradient_scale_range``)."""
        if self.reference_pool is not None:
            raise ValueError(
                "an environment with a reference pool plays the pool's episodes only (reset); "
                "use one without it (make_env) to choose lr0"
            )
        return self._reset(key, lr0, grad_scale)

    def _reset(self, key, lr0, grad_scale, *, pool_index=None) -> tuple[EnvState, TimeStep]:
        init_key, data_key, _ = episode_keys(key)
        lr0 = jnp.asarray(lr0, jnp.float32)
        grad_scale = jnp.asarray(grad_scale, jnp.float32)
        n = self._num_agents
        params = self.task.init_params(init_key)
        opt_state = self.optimizer.init(params)._replace(
            learning_rates=self._initial_rates(lr0),
            momentum=jnp.full((n,), self.settings.momentum),
            weight_decay=jnp.full((n,), self.settings.weight_decay),
        )
        # The first observation reads the gradient of the first minibatch without taking a step.
        x, y = self.task.batch(data_key, jnp.zeros((), jnp.int32))
        train_loss, grads = self._scaled_value_and_grad(grad_scale)(params, x, y)
        val_loss, val_accuracy = self._val_metrics(params)
        lr_scale = jnp.ones((n,))
        stats = IntervalStats(
            learning_rates=opt_state.learning_rates,
            mean_grad=grads,
            prev_mean_grad=grads,
            mean_sq_grad_norm=per_layer(jnp.square, grads),
            params=params,
            prev_params=params,
            train_loss=train_loss,
            val_loss=val_loss,
            prev_train_loss=train_loss,
            prev_val_loss=val_loss,
            progress=jnp.zeros(()),
            prev_log2_choice=jnp.zeros((n,)),
        )
        view = self._observe(stats, opt_state, lr_scale)
        cosine, noise = FEATURE_NAMES.index("grad_cosine"), FEATURE_NAMES.index("log_grad_noise")
        view = view.at[:, cosine].set(0.0).at[:, noise].set(0.0)
        state = EnvState(
            params=params,
            opt_state=opt_state,
            data_key=data_key,
            step_count=jnp.zeros((), jnp.int32),
            prev_mean_grad=grads,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            initial_val_loss=val_loss,
            lr0=lr0,
            agents_view=view,
            diverged=jnp.zeros((), bool),
            best_val_accuracy=val_accuracy,
            lr_scale=lr_scale,
            grad_scale=grad_scale,
            dog=dog_step_size_init(params, lr0) if self._dog else (),
            reference=self._reset_reference(params, lr0, val_loss, val_accuracy, pool_index),
            guard=GuardState(
                initial_grad_sq=stats.mean_sq_grad_norm,
                tripped=jnp.zeros((), bool),
                step=jnp.full((), -1, jnp.int32),
                best_val_loss=val_loss,
                initial_train_loss=train_loss,
                best_train_loss=train_loss,
            )
            if self.guarded
            else (),
        )
        timestep = self._timestep(
            state,
            jnp.zeros((n,), jnp.float32),
            jnp.asarray(StepType.FIRST, jnp.int8),
            jnp.ones((n,), jnp.float32),
        )
        return state, timestep

    def step(self, state: EnvState, action: jnp.ndarray) -> tuple[EnvState, TimeStep]:
        """Apply each agent's choice to its layer's rate, train one interval, observe, reward
        (and, with the guard, roll back and follow the base schedule when the run heads for
        death; see the class doc).

        One sequence on purpose: the decision's rates, the interval, the observation, the
        divergence and guard checks, the reward and the rollback read in the order they happen,
        and each piece is a method already (``_choose``, ``_agents_interval``, ``_observe``,
        ``_team_reward``, ``_guard_restored_opt_state``); what is left is their wiring."""
        n = self._num_agents
        lr_scale, rates = self._choose(state, self._factors[action])
        if self.guarded:  # once the guard tripped the agents are no longer followed
            lr_scale = jnp.where(state.guard.tripped, GUARD_MULTIPLIER, lr_scale)
            rates = self._anchored_rates(state.lr0, lr_scale)
        rate_fn = rates if callable(rates) else None
        opt_state = self._apply_hyperparameters(
            state.opt_state, action, state.opt_state.learning_rates if rate_fn else rates
        )
        if self.guarded:
            opt_state = self._task_hyperparameters(opt_state, state.guard.tripped)
        params, opt_state, mean_grad, mean_sq, train_loss, dog = self._agents_interval(
            state, opt_state, rate_fn
        )
        val_loss, val_accuracy = self._val_metrics(params)
        step_count = state.step_count + 1
        stats = IntervalStats(
            learning_rates=opt_state.learning_rates,
            mean_grad=mean_grad,
            prev_mean_grad=state.prev_mean_grad,
            mean_sq_grad_norm=mean_sq,
            params=params,
            prev_params=state.params,
            train_loss=train_loss,
            val_loss=val_loss,
            prev_train_loss=state.train_loss,
            prev_val_loss=state.val_loss,
            progress=step_count / self.num_decisions,
            prev_log2_choice=self._log2_factors[action],
        )
        view = self._observe(stats, opt_state, lr_scale)
        diverged_now = run_diverged(
            val_loss,
            train_loss,
            per_layer(jnp.square, params),
            state.initial_val_loss,
            self.divergence_loss_ratio,
        )
        if self.settings.collapse_check:
            diverged_now |= self._collapsed(val_accuracy, state.best_val_accuracy)
        # A diverged step keeps the last finite weights and observation: nothing non-finite
        # leaves; the guard's trip rolls back the same way, and the episode goes on.
        rollback, diverged, guard = diverged_now, diverged_now, state.guard
        if self.guarded:
            trips = ~state.guard.tripped & guard_trips(
                diverged_now,
                val_loss,
                state.initial_val_loss,
                state.guard.best_val_loss,
                mean_sq,
                state.guard.initial_grad_sq,
                train_loss=train_loss,
                initial_train_loss=state.guard.initial_train_loss,
                best_train_loss=state.guard.best_train_loss,
            )
            rollback = diverged_now | trips
            diverged = diverged_now & state.guard.tripped  # before the trip the guard answers
            guard = state.guard._replace(
                tripped=state.guard.tripped | trips,
                step=jnp.where(trips, step_count * self.steps_per_decision, state.guard.step),
                best_val_loss=jnp.where(
                    rollback,
                    state.guard.best_val_loss,
                    jnp.minimum(state.guard.best_val_loss, val_loss),
                ),
                best_train_loss=jnp.where(
                    rollback,
                    state.guard.best_train_loss,
                    jnp.minimum(state.guard.best_train_loss, train_loss),
                ),
            )
        done = diverged | (step_count >= self.num_decisions)

        reference = self._step_reference(state)
        reward = self._team_reward(state, action, val_loss, val_accuracy, reference, diverged_now)

        keep_old = lambda old, new: jnp.where(rollback, old, new)  # noqa: E731
        new_opt_state = jax.tree.map(keep_old, state.opt_state, opt_state)
        new_lr_scale = keep_old(state.lr_scale, lr_scale)
        if self.guarded:
            restored = self._guard_restored_opt_state(state, step_count)
            new_opt_state = jax.tree.map(
                lambda a, b: jnp.where(trips, a, b), restored, new_opt_state
            )
            new_lr_scale = jnp.where(trips, GUARD_MULTIPLIER, new_lr_scale)
        new_state = EnvState(
            params=jax.tree.map(keep_old, state.params, params),
            opt_state=new_opt_state,
            data_key=state.data_key,
            step_count=step_count,
            prev_mean_grad=jax.tree.map(keep_old, state.prev_mean_grad, mean_grad),
            train_loss=keep_old(state.train_loss, train_loss),
            val_loss=keep_old(state.val_loss, val_loss),
            val_accuracy=keep_old(state.val_accuracy, val_accuracy),
            initial_val_loss=state.initial_val_loss,
            lr0=state.lr0,
            agents_view=keep_old(state.agents_view, view),
            diverged=diverged,
            best_val_accuracy=jnp.maximum(state.best_val_accuracy, keep_old(0.0, val_accuracy)),
            lr_scale=new_lr_scale,
            grad_scale=state.grad_scale,
            dog=jax.tree.map(keep_old, state.dog, dog),
            reference=reference,
            guard=guard,
        )
        step_type = jnp.where(done, StepType.LAST, StepType.MID).astype(jnp.int8)
        discount = jnp.where(done, 0.0, 1.0) * jnp.ones((n,), jnp.float32)
        return new_state, self._timestep(new_state, reward, step_type, discount)

    def _task_hyperparameters(self, opt_state: LayerwiseSGDState, when) -> LayerwiseSGDState:
        """``opt_state`` with the momentum and weight decay the agents set (Q1 agents) back at
        the task's values ``when`` (the guard's base for them); unchanged for other agents."""
        changes = {
            name: jnp.where(when, getattr(self.settings, name), getattr(opt_state, name))
            for name in self._controlled
        }
        return opt_state._replace(**changes) if changes else opt_state

    def _guard_restored_opt_state(self, state: EnvState, step_count) -> LayerwiseSGDState:
        """The optimiser state a trip at the end of this step returns to: the last decision's,
        with the base schedule's rate at the rollback step (multiplier 1, from the restored DoG
        step size; the schedule's last value past its horizon, as the deployments clamp it) and
        the task's momentum and weight decay."""
        step = jnp.minimum(step_count * self.steps_per_decision, self.settings.total_steps - 1)
        ones = jnp.full((self._num_agents,), GUARD_MULTIPLIER)
        eta = state.dog.eta if self._dog else state.lr0
        rates = self._anchored_rates(state.lr0, ones)(step, eta)
        restored = state.opt_state._replace(learning_rates=rates)
        return self._task_hyperparameters(restored, True)

    def _collapsed(self, val_accuracy: jnp.ndarray, best: jnp.ndarray) -> jnp.ndarray:
        """``collapse_check``: back at chance accuracy after the episode had learned (see
        :mod:`ganno.env_settings`)."""
        learned = best >= share_of_the_way(self.task.num_classes, COLLAPSE_LEARNED)
        return learned & (val_accuracy <= share_of_the_way(self.task.num_classes, COLLAPSE_DEAD))

    def _apply_hyperparameters(self, opt_state: LayerwiseSGDState, action, learning_rates):
        """The optimiser state with the new rates and, for Q1 agents, momentum / weight decay."""
        changes = {"learning_rates": learning_rates}
        for name, values in self._controlled.items():
            changes[name] = values[action]
        return opt_state._replace(**changes)

    # ------------------------------------------------------------------ rewards
    def _val_error(self, accuracy: jnp.ndarray) -> jnp.ndarray:
        return validation_error(accuracy, int(self._y_val.shape[0]))

    def _reference_metric(self, params: Any) -> jnp.ndarray:
        loss, accuracy = self._val_metrics(params)
        if self._reward.reference_metric == "loss":
            return jnp.nan_to_num(loss, nan=jnp.inf)
        return jnp.where(jnp.isfinite(loss), self._val_error(accuracy), 1.0)

    def _reset_reference(
        self, params, lr0, val_loss, val_accuracy, pool_index=None
    ) -> ReferenceRun | PooledReference | tuple:
        if self._reward.reference_metric is None:
            return ()
        if pool_index is not None:
            return PooledReference(pool_index, self.reference_pool.metrics[pool_index, 0])
        opt_state = self._reference_optimizer.init(params)._replace(
            learning_rates=self._initial_rates(lr0)
        )
        metric = (
            val_loss if self._reward.reference_metric == "loss" else self._val_error(val_accuracy)
        )
        dog = dog_step_size_init(params, lr0) if self._dog else ()
        return ReferenceRun(params, opt_state, metric, dog)

    def _step_reference(self, state: EnvState) -> ReferenceRun | PooledReference | tuple:
        """One interval of the reference run: the base schedule at multiplier 1 in the anchored
        modes, constant SGD at lr0 (every agent keeping its rate) in the compound mode."""
        if self._reward.reference_metric is None:
            return ()
        if isinstance(state.reference, PooledReference):
            index = state.reference.index
            metric = self.reference_pool.metrics[index, state.step_count + 1]
            return PooledReference(index, metric)
        n = self._num_agents
        rate_fn = self._anchored_rates(state.lr0, jnp.ones((n,))) if self.anchored else None
        params, opt_state, dog = self._sgd_interval(
            self._reference_optimizer,
            state.reference.params,
            state.reference.opt_state,
            state.data_key,
            state.step_count * self.steps_per_decision,
            rate_fn,
            state.grad_scale,
            state.reference.dog,
        )
        return ReferenceRun(params, opt_state, self._reference_metric(params), dog)

    def _team_reward(self, state, action, val_loss, val_accuracy, reference, diverged):
        n = self._num_agents
        inputs = RewardInputs(
            num_agents=n,
            prev_val_loss=state.val_loss,
            val_loss=val_loss,
            prev_val_accuracy=state.val_accuracy,
            val_accuracy=val_accuracy,
            prev_val_error=self._val_error(state.val_accuracy),
            val_error=self._val_error(val_accuracy),
            initial_val_loss=state.initial_val_loss,
            is_last=state.step_count + 1 >= self.num_decisions,
            reward_clip=self.settings.reward_clip,
            prev_reference=state.reference.metric if reference else None,
            reference=reference.metric if reference else None,
            counterfactual_val_loss=(
                self._counterfactual_val_loss(state, action)
                if self._reward.counterfactual
                else None
            ),
        )
        team = self._reward.fn(inputs)
        penalty = -self.divergence_penalty * jnp.ones((n,))
        return jnp.where(diverged, penalty, jnp.nan_to_num(team)).astype(jnp.float32)

    def _counterfactual_val_loss(self, state: EnvState, action) -> jnp.ndarray:
        """[N]: the validation loss after the interval had agent i alone made the neutral choice
        (difference rewards)."""
        n = self._num_agents
        neutral = jnp.full((n,), self.neutral_action)
        joint = jnp.where(jnp.eye(n, dtype=bool), neutral[None, :], action[None, :])  # [N, N]

        def loss_with(agent_actions):
            _, rates = self._choose(state, self._factors[agent_actions])
            rate_fn = rates if callable(rates) else None
            lrs = state.opt_state.learning_rates if rate_fn else rates
            opt_state = state.opt_state._replace(learning_rates=lrs)
            params, *_ = self._agents_interval(state, opt_state, rate_fn)
            return self._val_metrics(params)[0]

        return jax.vmap(loss_with)(joint)


#: The reward of an environment built for evaluation (``make_env(..., evaluation=True)``).
EVALUATION_REWARD = "log_val_loss_drop"


def make_env(
    config: Mapping[str, Any],
    dataset: Any | None = None,
    task: InnerTask | None = None,
    *,
    evaluation: bool = False,
) -> GannoEnv:
    """The environment a validated config describes (``task`` and ``env`` blocks).

    ``evaluation=True``: an environment to play policies in, not to learn from. Playing reads
    learning rates, losses and accuracies but never rewards, and the observation does not depend
    on the reward, so a reward that needs extra inner training (the relative rewards' reference
    run, the counterfactual rewards' N trainings per decision) is replaced by
    :data:`EVALUATION_REWARD`: the same trajectories at a fraction of the cost; and the
    meta-training ``collapse_check`` is off, so a network that dies plays on and is measured
    dead. ``env.guard`` applies in evaluation only (an environment for meta-training records it
    and plays as without it)."""
    task = task if task is not None else make_task(config, dataset)
    settings = EnvSettings.from_config(config)
    reward = REWARDS.get(settings.reward)  # an unknown name is GannoEnv's error to raise
    if evaluation and reward is not None and (reward.reference_metric or reward.counterfactual):
        settings = settings.replace(reward=EVALUATION_REWARD)
    if evaluation:  # a dead network is measured as dead, not ended at its last live state
        settings = settings.replace(collapse_check=False)
    # the guard (env.guard) in evaluation only: meta-training's environment records it unapplied
    return GannoEnv(task, settings, apply_guard=evaluation)


def make_envs(config: Mapping[str, Any]) -> GannoEnv | list[GannoEnv]:
    """What an agent is meta-trained on: the environment of the config's task, or, with a task
    family (``meta_train.task_family``), one environment per member (the config's own task first),
    each with its dataset; members on the same dataset share it."""
    from ganno.config import family_configs
    from ganno.data import load_from_config

    members = family_configs(config)
    datasets: dict[str, Any] = {}
    envs = []
    for _, cfg in members:
        dataset = cfg["task"]["dataset"]
        if dataset not in datasets:
            datasets[dataset] = load_from_config(cfg)
        envs.append(make_env(cfg, datasets[dataset]))
    if len(envs) == 1:
        return envs[0]
    for (name, _), env in zip(members, envs, strict=True):
        env.task_name = name  # names the members in the saved policy
    return envs
