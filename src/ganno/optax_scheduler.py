"""``ganno_sgd``: a trained GANNO policy as an optax ``GradientTransformation`` that sets the
learning rate of every layer of any JAX training loop.

It replays the environment's protocol (:class:`ganno.env.GannoEnv`) inside ``update``, jittable::

    policy = ganno.pretrained_policy()
    opt = ganno_sgd(policy, lr0=0.05, total_steps=num_steps, val_loss_fn=val_loss)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params, loss=loss)
        return optax.apply_updates(params, updates), opt_state

**Layers.** A layer (one agent) is a top-level entry of the params dict: for a flax model,
``variables["params"]`` holds one entry per submodule (``Dense_0``, ``Conv_0``, ``layer_1``, ...)
with its kernel and bias, so every submodule is a layer. Their order (the depth the observation's
position features read) is ``layer_0, layer_1, ...`` by number if the names are ``layer_<i>``
(ganno's own networks, :func:`ganno.networks.layer_keys`), else the dict's order, which is the
order flax created the submodules in (the forward order of a sequential model); ``layer_names=``
sets it explicitly.

**Decisions.** Step 0's update takes the first decision from the gradient of the first minibatch
at the initial weights and their validation loss (the environment's ``reset``), so step 0 already
uses the policy's rates. The policy's ``num_decisions`` decisions are spread over ``total_steps``
(:mod:`ganno.protocol`): at the start of update ``interval_end(d)`` (``d x total_steps //
num_decisions``) the interval that ended is observed (the mean gradient and mean squared gradient
norm per layer of its last ``gradient_window`` updates, the policy's recorded window; its mean
minibatch ``loss``, the weights before and after it, the validation loss of
the current ``params``; the columns of :func:`ganno.observation.interval_columns`), checked for
divergence and, while decisions remain, the policy chooses (greedy by default) and the rates
change as in meta-training (the policy's ``action_mode``: compounding factors on the rates, or
levels / a compounding multiplier on the base schedule, which spans ``total_steps``). After
``total_steps`` updates the rates stay where they are.

**DoG as the base's step size** (a policy meta-trained with ``env.base_step_size: dog``): the
base schedule scales DoG's step size instead of lr0, ``eta_t`` over all the weights from this
update's params and raw gradient, ``eta_0 = lr0`` (:class:`ganno.optim.DogStepSize`, as the
environment and the ``dog`` baseline do; one lr0 for every layer), carried in ``state.dog`` with
the initial weights.

**Divergence** (the environment's rule: non-finite interval loss, validation loss or weight, or a
validation loss above ``divergence_loss_ratio`` x the initial one): that update returns the
weights of the last decision (``updates = last_good - params``) and every later update is zero;
``state.diverged`` says so (training has ended, like the environment's episode).

**Dead networks**: a layer that got no gradient for three intervals in a row (its ReLUs died, as
when the policy drives a network's rates to its ceiling) flags the run; :func:`dead_at_step` reads
the flag (the rule: :func:`ganno.protocol.dead_layers`).

**The guard** (``guard=True``, or a policy that records ``env.guard``; anchored modes only; the
rule: :func:`ganno.protocol.guard_trips`): when, at the end of an interval, the run diverged,
its validation and training losses both gave back half the progress they made, or a layer got
no gradient in the interval,
that update returns the weights of the last decision (``updates = last_good - params``; it trains
on nothing, as the environment's rollback step), DoG's state and the ``direction`` state go back
to that decision's, every multiplier becomes 1 and the policy is no longer asked: the rates follow
the base schedule to ``total_steps`` (training goes on). A divergence after that ends training as
without the guard. :func:`guarded_at` reads the update at which it tripped.

**Other optimisers.** ``direction=`` an optax transformation run on the raw gradients before the
per-layer rates scale it: ``optax.trace(0.9)`` is SGD with momentum (PyTorch's), ``optax.adam(1.0)``
Adam whose learning rate per layer the policy sets. The observation always reads the raw
gradients, as the environment does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ganno.deployment import DeploymentSettings, check_one_dog_lr0, deployment_settings
from ganno.errors import UsageError
from ganno.feature_names import FEATURE_NAMES
from ganno.observation import (
    IntervalStats,
    interval_columns,
    log_feature,
    per_layer,
    position_columns,
    stack_columns,
)
from ganno.optim import DogStepSize, dog_step_size_init, dog_step_size_update
from ganno.protocol import (
    DEAD_INTERVALS,
    GUARD_MULTIPLIER,
    after_decision,
    anchored_rates,
    dead_layers,
    gradient_start,
    guard_trips,
    interval_end,
    run_diverged,
)

_COSINE, _NOISE = FEATURE_NAMES.index("grad_cosine"), FEATURE_NAMES.index("log_grad_noise")


class GuardState(NamedTuple):
    """The guard's part of the state (``guard=True``): whether and when it tripped, and what a
    trip returns to (DoG's and the ``direction`` transformation's state at the last decision; the
    weights are ``GannoState.prev_params``)."""

    tripped: jnp.ndarray  # [] bool
    at: jnp.ndarray  # [] int32, the update at which it tripped (-1: never)
    best_val_loss: jnp.ndarray  # [] the lowest validation loss at a decision so far (rise rule)
    initial_train_loss: jnp.ndarray  # [] the first update's training loss (rise rule)
    best_train_loss: jnp.ndarray  # [] the lowest interval training loss at a decision so far
    dog: DogStepSize | tuple  # DoG's state at the last decision (a DoG-base policy), else ()
    direction_state: Any  # the direction transformation's state at the last decision


class GannoState(NamedTuple):
    """The transformation's state (all arrays: it jits, vmaps and checkpoints like any optax
    state). Trees (``grad_sum``, ``prev_mean_grad``, ``prev_params``, ``dog.origin``) are like
    the params."""

    count: jnp.ndarray  # [] int32, updates taken
    decisions: jnp.ndarray  # [] int32, decisions taken
    learning_rates: jnp.ndarray  # [N] the rates of the last update
    lr0: jnp.ndarray  # [N] the initial rates (the base schedule's lr0 if anchored)
    lr_scale: jnp.ndarray  # [N] multiplier on the base schedule (anchored; else 1)
    prev_log2: jnp.ndarray  # [N] log2 of the last choice's multiplier
    actions: jnp.ndarray  # [N] int32, the last decision's actions
    agents_view: jnp.ndarray  # [N, F] the last observation
    grad_sum: Any
    sq_sum: jnp.ndarray  # [N] sum of squared minibatch-gradient norms this interval
    loss_sum: jnp.ndarray  # []
    interval_count: jnp.ndarray  # [] int32, updates accumulated this interval
    grad_count: jnp.ndarray  # [] int32, of them, updates in the gradient window
    prev_mean_grad: Any
    prev_params: Any  # the weights at the last decision (restored on divergence)
    train_loss: jnp.ndarray  # [] the last interval's mean minibatch loss
    val_loss: jnp.ndarray  # []
    initial_val_loss: jnp.ndarray  # []
    diverged: jnp.ndarray  # [] bool
    key: jax.Array
    direction_state: Any
    policy_carry: Any = ()  # a recurrent policy's hidden state [N, H] (() for feed-forward)
    dog: DogStepSize | tuple = ()  # DoG's step size (a DoG-base policy), else ()
    initial_grad_sq: jnp.ndarray | tuple = ()  # [N] the first minibatch's squared grad norms
    dead_count: jnp.ndarray | tuple = ()  # [] int32, intervals in a row a layer got no gradient
    dead_at: jnp.ndarray | tuple = ()  # [] int32, the update at which the run was flagged dead
    guard: GuardState | tuple = ()  # the guard's state (guard=True), else ()


def _layer_order(params: Mapping[str, Any], layer_names: Sequence[str] | None) -> list[str]:
    if not isinstance(params, Mapping):
        raise TypeError(
            f"ganno_sgd needs the params as a dict of layers (flax's variables['params']), got "
            f"{type(params).__name__}"
        )
    keys = list(params)
    if layer_names is not None:
        if sorted(layer_names) != sorted(keys):
            raise ValueError(f"layer_names={list(layer_names)} must name every entry of {keys}")
        return list(layer_names)
    if keys and all(k.startswith("layer_") and k[6:].isdigit() for k in keys):
        return sorted(keys, key=lambda k: int(k[6:]))
    return keys


def ganno_sgd(
    policy: Any,
    *,
    lr0: float | Sequence[float],
    total_steps: int | None = None,
    val_loss_fn: Callable[[Any], jnp.ndarray] | None = None,
    direction: optax.GradientTransformation | None = None,
    layer_names: Sequence[str] | None = None,
    greedy: bool = True,
    seed: int = 0,
    guard: bool | None = None,
    **settings: Any,
) -> optax.GradientTransformationExtraArgs:
    """Per-layer learning rates chosen by ``policy`` (see the module doc).

    Args:
      policy: a :class:`ganno.Policy` (e.g. ``ganno.pretrained_policy()``).
      lr0: the initial rate of every layer (or one per layer); clipped to the policy's
        ``lr_bounds`` in the compound mode, the base schedule's peak if anchored.
      total_steps: the number of updates the user trains for (default: the meta-training
        episode, ``steps_per_decision x num_decisions``).
      val_loss_fn: ``params -> []`` the validation loss, called (under ``lax.cond``) only when an
        interval ends; or leave it out and pass ``val_loss=`` to every ``update``.
      direction: an optax transformation applied to the gradients before the rates (default:
        the gradients themselves, i.e. plain SGD as in meta-training).
      layer_names: the params' top-level entries in depth order (default: see the module doc).
      greedy: the most likely action (default) or a sample drawn with ``seed``.
      guard: roll back and follow the base schedule when the run heads for death (the module
        doc); default: what the policy records (``env.guard``, off if it records none).
      settings: overrides of the policy's saved settings (``num_decisions``, ``lr_bounds``,
        ``divergence_loss_ratio``, ``steps_per_decision``; see
        :func:`ganno.deployment.deployment_settings`).

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update(grads, state, params, *, loss,
      val_loss=None)`` needs the params and this step's minibatch ``loss``.
    """
    cfg = deployment_settings(
        policy, total_steps=total_steps, guard=guard, who="ganno_sgd", **settings
    )
    run = _GannoSgd(
        policy,
        cfg,
        lr0=lr0,
        val_loss_fn=val_loss_fn,
        direction=direction,
        layer_names=layer_names,
        greedy=greedy,
        seed=seed,
    )
    transformation = optax.GradientTransformationExtraArgs(run.init, run.update)
    transformation.settings = cfg  # type: ignore[attr-defined]
    return transformation


class _GannoSgd:
    """:func:`ganno_sgd`'s transformation: its settings, and ``init``/``update`` with the steps of
    an update (the observation and decision at an interval's end, the guard, the step's rates,
    the accumulation of the interval's statistics) as methods. Everything it keeps between
    updates is in the :class:`GannoState`; these attributes are fixed at construction."""

    def __init__(
        self,
        policy: Any,
        cfg: DeploymentSettings,
        *,
        lr0: float | Sequence[float],
        val_loss_fn: Callable[[Any], jnp.ndarray] | None,
        direction: optax.GradientTransformation | None,
        layer_names: Sequence[str] | None,
        greedy: bool,
        seed: int,
    ) -> None:
        self.policy, self.cfg, self.lr0, self.val_loss_fn = policy, cfg, lr0, val_loss_fn
        self.direction = direction if direction is not None else optax.identity()
        self.layer_names, self.greedy, self.seed = layer_names, greedy, seed
        self.factors = jnp.asarray(cfg.lr_multipliers, jnp.float32)
        self.log2_factors = jnp.log2(self.factors)
        self.unit = None
        self.dog_base = cfg.anchored and cfg.base_step_size == "dog"
        if cfg.anchored:
            from ganno.schedules import optax_unit_schedule as unit_schedule

            self.unit = unit_schedule(cfg.base_schedule, cfg.total_steps)

    def rates_at(self, step, lr0_, scale):
        return anchored_rates(
            lr0_,
            self.unit(jnp.minimum(step, self.cfg.total_steps - 1)),
            scale,
            self.cfg.lr_bounds[1],
        )

    def init(self, params) -> GannoState:
        names = _layer_order(params, self.layer_names)
        n = len(names)
        if n == 0:
            raise ValueError("the params have no layers")
        first = jnp.broadcast_to(jnp.asarray(self.lr0, jnp.float32), (n,))
        dog = ()
        if self.dog_base:
            _check_one_dog_lr0(self.lr0)
            dog = dog_step_size_init(params, first[0])
        rates = (
            self.rates_at(0, first, jnp.ones(n))
            if self.cfg.anchored
            else jnp.clip(first, *self.cfg.lr_bounds)
        )
        zeros = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params)
        scalar = jnp.zeros((), jnp.float32)
        return GannoState(
            count=jnp.zeros((), jnp.int32),
            decisions=jnp.zeros((), jnp.int32),
            learning_rates=rates,
            lr0=first,
            lr_scale=jnp.ones(n),
            prev_log2=jnp.zeros(n),
            actions=jnp.zeros(n, jnp.int32),
            agents_view=jnp.zeros((n, len(self.cfg.feature_names)), jnp.float32),
            grad_sum=zeros,
            sq_sum=jnp.zeros(n),
            loss_sum=scalar,
            interval_count=jnp.zeros((), jnp.int32),
            grad_count=jnp.zeros((), jnp.int32),
            prev_mean_grad=zeros,
            prev_params=jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params),
            train_loss=scalar,
            val_loss=scalar,
            initial_val_loss=scalar,
            diverged=jnp.zeros((), bool),
            key=jax.random.PRNGKey(self.seed),
            direction_state=self.direction.init(params),
            policy_carry=self.policy.initial_carry(n),
            dog=dog,
            initial_grad_sq=jnp.zeros(n),
            dead_count=jnp.zeros((), jnp.int32),
            dead_at=jnp.full((), -1, jnp.int32),
            guard=GuardState(
                tripped=jnp.zeros((), bool),
                at=jnp.full((), -1, jnp.int32),
                best_val_loss=jnp.full((), jnp.inf),  # the first observation's until a decision
                initial_train_loss=jnp.full((), jnp.inf),  # likewise
                best_train_loss=jnp.full((), jnp.inf),
                dog=dog,
                direction_state=self.direction.init(params),
            )
            if self.cfg.guard
            else (),
        )

    def update(self, grads, state: GannoState, params=None, *, loss=None, val_loss=None, **extra):
        if params is None or loss is None:
            raise ValueError(
                "ganno_sgd needs the params and the minibatch loss: "
                "opt.update(grads, state, params, loss=loss)"
            )
        names = _layer_order(params, self.layer_names)
        loss = jnp.asarray(loss, jnp.float32)
        first = state.count == 0
        interval_over = (state.decisions > 0) & (
            state.count == _interval_end(self.cfg, state.decisions)
        )
        observe_now = (first | interval_over) & ~state.diverged
        if val_loss is not None:
            val = jnp.asarray(val_loss, jnp.float32)
        elif self.val_loss_fn is not None:
            val = jax.lax.cond(
                observe_now,
                lambda p: jnp.asarray(self.val_loss_fn(p), jnp.float32),
                lambda p: jnp.full((), jnp.nan, jnp.float32),
                params,
            )
        else:
            raise ValueError("ganno_sgd needs val_loss_fn= or update(..., val_loss=...)")

        # OBSERVE AND DECIDE (the first decision, or the end of an interval)
        branch = jnp.where(observe_now, jnp.where(first, 1, 2), 0)
        new = jax.lax.switch(
            branch,
            [
                lambda s: s,
                lambda s: self._first_decision(s, grads, params, loss, val),
                lambda s: self._end_interval(s, params, val),
            ],
            state,
        )
        newly_diverged = new.diverged & ~state.diverged
        rollback = jnp.zeros((), bool)
        if self.cfg.guard:  # a trip returns DoG and the direction to the last decision's states
            new, rollback = self._guard_states(state, new)

        # THIS STEP'S RATES
        if self.cfg.anchored:
            step_size = new.lr0
            if self.dog_base:  # from this update's weights and gradient, before the update; after
                # total_steps the rates stay where they are (and a rollback trains on nothing)
                dog = jax.lax.cond(
                    new.diverged | (new.count >= self.cfg.total_steps) | rollback,
                    lambda d: d,
                    lambda d: dog_step_size_update(d, params, grads),
                    new.dog,
                )
                new, step_size = new._replace(dog=dog), dog.eta
            new = new._replace(learning_rates=self.rates_at(new.count, step_size, new.lr_scale))

        # ACCUMULATE (while the episode runs)
        active = (new.decisions > 0) & (new.count < _interval_end(self.cfg, new.decisions))
        active &= ~new.diverged & ~rollback
        new = jax.lax.cond(active, lambda s: self._accumulate(s, grads, loss), lambda s: s, new)

        # UPDATE
        direction_updates, direction_state = self.direction.update(
            grads, new.direction_state, params
        )
        if self.cfg.guard:  # the rollback's gradient (at the weights that went wrong) moves nothing
            direction_state = _select(rollback, new.direction_state, direction_state)
        scaled = {
            k: jax.tree.map(lambda u, r=new.learning_rates[i]: -r * u, direction_updates[k])
            for i, k in enumerate(names)
        }
        restore = jax.tree.map(lambda q, p: (q - p).astype(p.dtype), new.prev_params, params)
        updates = jax.tree.map(
            lambda u, r: jnp.where(newly_diverged | rollback, r, jnp.where(new.diverged, 0.0, u)),
            type(params)(scaled) if not isinstance(params, dict) else scaled,
            restore,
        )
        new = new._replace(count=new.count + 1, direction_state=direction_state)
        return updates, new

    def _guard_states(self, state: GannoState, new: GannoState) -> tuple[GannoState, jnp.ndarray]:
        """After this update's observation: on a trip, DoG's and the direction's state back to
        the last decision's; at a decision the guard followed, those states kept to return to.
        Returns the state and whether this update is the rollback."""
        rollback = new.guard.tripped & ~state.guard.tripped
        decided = (new.decisions > state.decisions) & ~new.guard.tripped
        kept = new.guard._replace(
            dog=_select(decided, new.dog, new.guard.dog),
            direction_state=_select(decided, new.direction_state, new.guard.direction_state),
        )
        new = new._replace(
            dog=_select(rollback, new.guard.dog, new.dog),
            direction_state=_select(rollback, new.guard.direction_state, new.direction_state),
            guard=kept,
        )
        return new, rollback

    def _observe(self, stats: IntervalStats, lr_scale) -> jnp.ndarray:
        n = stats.learning_rates.shape[0]
        columns = {**interval_columns(stats), **position_columns(n)}
        if self.cfg.anchored:
            columns["log_lr_scale"] = log_feature(lr_scale)
        return stack_columns(columns, self.cfg.feature_names)

    def _decide(self, state: GannoState, view) -> GannoState:
        from ganno.types import Observation

        n = view.shape[0]
        obs = Observation(
            agents_view=view,
            action_mask=jnp.ones((n, self.factors.shape[0]), bool),
            step_count=jnp.full((n,), state.decisions, jnp.int32),
        )
        key, sub = jax.random.split(state.key)
        carry, actions = self.policy.step(
            state.policy_carry, obs, None if self.greedy else sub, self.greedy
        )
        rates, scale = after_decision(
            self.cfg.action_mode,
            self.factors[actions],
            state.learning_rates,
            state.lr_scale,
            self.cfg.lr_bounds,
            self.cfg.scale_bounds,
        )
        return state._replace(
            learning_rates=rates,
            lr_scale=scale,
            prev_log2=self.log2_factors[actions],
            actions=actions.astype(jnp.int32),
            agents_view=view,
            decisions=state.decisions + 1,
            key=key,
            policy_carry=carry,
        )

    def _first_decision(self, state: GannoState, grads, params, loss, val) -> GannoState:
        g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
        p = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
        names = _layer_order(params, self.layer_names)
        as_layers = lambda tree: _relabel(tree, names)  # noqa: E731
        n = state.learning_rates.shape[0]
        stats = IntervalStats(
            learning_rates=state.learning_rates,
            mean_grad=as_layers(g),
            prev_mean_grad=as_layers(g),
            mean_sq_grad_norm=per_layer(jnp.square, as_layers(g)),
            params=as_layers(p),
            prev_params=as_layers(p),
            train_loss=loss,
            val_loss=val,
            prev_train_loss=loss,
            prev_val_loss=val,
            progress=jnp.zeros(()),
            prev_log2_choice=jnp.zeros(n),
        )
        view = self._observe(stats, state.lr_scale).at[:, _COSINE].set(0.0).at[:, _NOISE].set(0.0)
        ready = state._replace(
            prev_mean_grad=g,
            prev_params=p,
            train_loss=loss,
            val_loss=val,
            initial_val_loss=val,
            initial_grad_sq=stats.mean_sq_grad_norm,
            agents_view=view,
        )
        if self.cfg.guard:
            first = dict(best_val_loss=val, initial_train_loss=loss, best_train_loss=loss)
            ready = ready._replace(guard=ready.guard._replace(**first))
        ok = jnp.isfinite(val)
        return jax.lax.cond(
            ok,
            lambda s: self._decide(s, view),
            lambda s: s._replace(diverged=jnp.ones((), bool)),
            ready,
        )

    def _end_interval(self, state: GannoState, params, val) -> GannoState:
        names = _layer_order(params, self.layer_names)
        as_layers = lambda tree: _relabel(tree, names)  # noqa: E731
        k = state.grad_count.astype(jnp.float32)
        mean_grad = jax.tree.map(lambda s: s / k, state.grad_sum)
        p = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
        train_loss = state.loss_sum / state.interval_count.astype(jnp.float32)
        stats = IntervalStats(
            learning_rates=state.learning_rates,
            mean_grad=as_layers(mean_grad),
            prev_mean_grad=as_layers(state.prev_mean_grad),
            mean_sq_grad_norm=state.sq_sum / k,
            params=as_layers(p),
            prev_params=as_layers(state.prev_params),
            train_loss=train_loss,
            val_loss=val,
            prev_train_loss=state.train_loss,
            prev_val_loss=state.val_loss,
            progress=state.decisions / self.cfg.num_decisions,
            prev_log2_choice=state.prev_log2,
        )
        view = self._observe(stats, state.lr_scale)
        diverged = run_diverged(
            val,
            train_loss,
            per_layer(jnp.square, as_layers(p)),
            state.initial_val_loss,
            self.cfg.divergence_loss_ratio,
        )
        zeros = jax.tree.map(jnp.zeros_like, state.grad_sum)
        dead = dead_layers(stats.mean_sq_grad_norm, state.initial_grad_sq).any()
        dead_count = jnp.where(dead, state.dead_count + 1, 0)
        flag = (dead_count >= DEAD_INTERVALS) & (state.dead_at < 0)
        passed = state._replace(
            dead_count=dead_count,
            dead_at=jnp.where(flag, state.count, state.dead_at),
            train_loss=train_loss,
            val_loss=val,
            prev_mean_grad=mean_grad,
            prev_params=p,
            grad_sum=zeros,
            sq_sum=jnp.zeros_like(state.sq_sum),
            loss_sum=jnp.zeros(()),
            interval_count=jnp.zeros((), jnp.int32),
            grad_count=jnp.zeros((), jnp.int32),
            agents_view=view,
        )
        more = state.decisions < self.cfg.num_decisions
        if self.cfg.guard:
            return self._guarded_end(state, passed, diverged, val, stats, view, more)
        return jax.lax.cond(
            diverged,
            lambda s: state._replace(diverged=jnp.ones((), bool)),
            lambda s: jax.lax.cond(more, lambda t: self._decide(t, view), lambda t: t, s),
            passed,
        )

    def _guarded_end(
        self, state: GannoState, passed: GannoState, diverged, val, stats: IntervalStats, view, more
    ) -> GannoState:
        """:meth:`_end_interval` with the guard, from the interval's observed state ``passed``:
        the guard is asked until it trips; a trip rolls back (weights: ``prev_params``, kept) and
        takes this interval's decision for the agents (multiplier 1, the policy not asked)."""
        # the lowest losses at a decision (a trip keeps the old ones)
        best = dict(
            best_val_loss=jnp.minimum(state.guard.best_val_loss, val),
            best_train_loss=jnp.minimum(state.guard.best_train_loss, passed.train_loss),
        )
        passed = passed._replace(guard=passed.guard._replace(**best))
        tripped = state.guard.tripped
        trips = ~tripped & guard_trips(
            diverged,
            val,
            state.initial_val_loss,
            state.guard.best_val_loss,
            stats.mean_sq_grad_norm,
            state.initial_grad_sq,
            train_loss=passed.train_loss,
            initial_train_loss=state.guard.initial_train_loss,
            best_train_loss=state.guard.best_train_loss,
        )
        next_decision = state.decisions + more.astype(jnp.int32)
        rolled = passed._replace(
            train_loss=state.train_loss,
            val_loss=state.val_loss,
            prev_mean_grad=state.prev_mean_grad,
            prev_params=state.prev_params,
            agents_view=state.agents_view,
            lr_scale=jnp.full_like(state.lr_scale, GUARD_MULTIPLIER),
            decisions=next_decision,
            guard=state.guard._replace(tripped=jnp.ones((), bool), at=state.count),
        )
        branch = jnp.where(diverged & tripped, 0, jnp.where(trips, 1, jnp.where(tripped, 2, 3)))
        return jax.lax.switch(
            branch,
            [
                lambda s: state._replace(diverged=jnp.ones((), bool)),  # ends, as unguarded
                lambda s: rolled,
                lambda s: s._replace(decisions=next_decision),  # the base schedule goes on
                lambda s: jax.lax.cond(more, lambda t: self._decide(t, view), lambda t: t, s),
            ],
            passed,
        )

    def _accumulate(self, state: GannoState, grads, loss) -> GannoState:
        names = _layer_order(grads, self.layer_names)
        as_layers = lambda tree: _relabel(tree, names)  # noqa: E731

        def read_gradients(s: GannoState) -> GannoState:
            g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
            return s._replace(
                grad_sum=jax.tree.map(jnp.add, s.grad_sum, g),
                sq_sum=s.sq_sum + per_layer(jnp.square, as_layers(g)),
                grad_count=s.grad_count + 1,
            )

        in_window = state.count >= _gradient_start(self.cfg, state.decisions)
        state = jax.lax.cond(in_window, read_gradients, lambda s: s, state)
        return state._replace(
            loss_sum=state.loss_sum + loss, interval_count=state.interval_count + 1
        )


def _check_one_dog_lr0(lr0: Any) -> None:
    """:func:`ganno.deployment.check_one_dog_lr0` on a concrete lr0; a traced one (lr0 an
    argument of a jitted function) must be a scalar, the one value a DoG base can start from."""
    if not isinstance(lr0, jax.core.Tracer):
        check_one_dog_lr0(np.ravel(np.asarray(lr0, np.float32)), "ganno_sgd(..., lr0=...)")
    elif jnp.ndim(lr0) != 0:
        raise UsageError(
            f"lr0 of shape {jnp.shape(lr0)} under jit: this policy's base schedule scales DoG's "
            "step size, one for all the layers, which starts at lr0; pass one lr0, a scalar"
        )


def _select(when: jnp.ndarray, a: Any, b: Any) -> Any:
    """The tree ``a`` where ``when``, else ``b`` (alike trees)."""
    return jax.tree.map(lambda x, y: jnp.where(when, x, y), a, b)


def _relabel(tree: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The layers of ``tree`` under ganno's names ``layer_0..`` in depth order (what
    :func:`ganno.observation.per_layer` and :func:`interval_columns` read)."""
    return {f"layer_{i}": tree[k] for i, k in enumerate(names)}


def _interval_end(cfg: DeploymentSettings, decisions: jnp.ndarray) -> jnp.ndarray:
    """:func:`ganno.protocol.interval_end` of traced ``decisions`` (int32)."""
    return interval_end(decisions, cfg.total_steps, cfg.num_decisions)


def _gradient_start(cfg: DeploymentSettings, decisions: jnp.ndarray) -> jnp.ndarray:
    """:func:`ganno.protocol.gradient_start` of traced ``decisions`` (int32)."""
    return gradient_start(
        decisions, cfg.total_steps, cfg.num_decisions, cfg.gradient_window, jnp.maximum
    )


def diverged(state: Any) -> jnp.ndarray:
    """Whether the training that ``ganno_sgd``'s state watches diverged (its updates are then zero:
    stop the loop). ``state`` is its :class:`GannoState` or an optax chain's tuple holding one."""
    return _ganno_state(state).diverged


def dead_at_step(state: Any) -> int | None:
    """The update at which the network ``ganno_sgd``'s state watches was flagged dead
    (:func:`ganno.protocol.dead_layers`: a layer got no gradient for three intervals in a row,
    as when the policy drives the rates to its ceiling and the ReLUs die; the PyTorch scheduler
    warns), or None. Read it outside ``jit``; the remedy is a lower ceiling (``ganno_sgd(...,
    lr_bounds=(1e-6, 1.0))``) or a smaller lr0."""
    dead_at = int(_ganno_state(state).dead_at)
    return None if dead_at < 0 else dead_at


def guarded_at(state: Any) -> int | None:
    """The update at which the guard of ``ganno_sgd``'s state tripped (that update returned the
    weights of the last decision; from there the rates follow the base schedule), or None: it did
    not, or the transformation has no guard. Read it outside ``jit``."""
    guard = _ganno_state(state).guard
    if not isinstance(guard, GuardState):
        return None
    at = int(guard.at)
    return None if at < 0 else at


def _ganno_state(state: Any) -> GannoState:
    for leaf in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, GannoState)):
        if isinstance(leaf, GannoState):
            return leaf
    raise ValueError("no ganno_sgd state in this optimiser state")


__all__ = ["GannoState", "GuardState", "dead_at_step", "diverged", "ganno_sgd", "guarded_at"]
