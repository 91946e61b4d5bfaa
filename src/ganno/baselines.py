"""Baselines: handcrafted schedules, Adam and the learning-rate-free optimisers of optax.contrib,
all trained on exactly the environment's minibatch stream and judged by its divergence rule.

Every method is a function ``(lr0, total_steps) -> optax.GradientTransformation`` in
:data:`METHODS`; ``lr0`` is the value the robustness grid (C2) sweeps. For a learning-rate method it
is the initial (or peak) rate; for a learning-rate-free method it is the *initial step size* the
method starts from before it adapts, so that "started from lr0" means the same thing for every
method: the size of the first steps. :data:`LR0_MEANING` says what ``lr0`` sets for each method.

======================  ====================================================================
method                  what ``lr0`` is
======================  ====================================================================
sgd_constant            SGD rate, constant
sgd_step                SGD rate at the start; x0.1 at 50% and again at 75% of the steps
sgd_exponential         SGD rate at the start; decays smoothly to 1e-2 x lr0 at the end
sgd_cosine              SGD rate at the start; cosine decay to 0
sgd_warmup_cosine       peak SGD rate after a linear warmup from 0 over 5% of the steps;
                        cosine decay to 0
sgd_onecycle            peak SGD rate of ``optax.cosine_onecycle_schedule`` (its defaults:
                        30% rise from lr0/25, then down to lr0/(25 x 1e4))
adam                    Adam rate, constant
adam_cosine             Adam rate at the start; cosine decay to 0
schedule_free_sgd       the schedule-free SGD rate (b1 = 0.9, 5% warmup); evaluated at the
                        averaged point ``x``
schedule_free_adamw     the schedule-free AdamW rate (5% warmup); evaluated at ``x``
prodigy                 Prodigy's initial step-size estimate d0 (``estim_lr0``); the
                        multiplier ``learning_rate`` stays 1
dadapt_adamw            D-Adaptation's initial estimate d0 (``estim_lr0``); multiplier 1
mechanic                Mechanic's ``s_init`` around ``sgd(1.0)``: the first step is exactly
                        ``lr0 x gradient`` (sum of the scales starts at s_init)
dog                     DoG's first step size eta_0 (``init_step=("learning_rate", lr0)``);
                        afterwards eta_t = max distance from x0 / sqrt(sum |g|^2)
layerwise_dog           DoG per layer (``multi_transform``, one DoG for each ``layer_i``),
                        every layer's first step size lr0
cocob                   1 / alpha of COCOB-Backprop: its first step moves every coordinate by
                        min(lr0, 1/2) against the gradient sign (optax's default alpha = 100
                        is lr0 = 1e-2)
sgd_hd                  SGD-HD's initial rate alpha_0; hypergradient step beta = 1e-3
======================  ====================================================================

Training (:func:`train`) replays the episode of a key exactly as :class:`ganno.env.GannoEnv`
does: weights ``task.init_params(init_key)``, batches ``task.batch(data_key, step)`` with
``(init_key, data_key, _) = episode_keys(key)``, and every ``eval_every`` steps the divergence
check (validation loss non-finite or above ``divergence_loss_ratio`` x its initial value, or
non-finite training loss or weights). A diverged run keeps its last finite weights for the rest of
the budget and is flagged ``diverged``; its reported numbers are those of the kept weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from optax import contrib

from ganno.inner import InnerTask, episode_keys
from ganno.networks import layer_keys
from ganno.parallel import sharded_vmap
from ganno.schedules import optax_unit_schedule, warmup_steps

#: ``(lr0, total_steps) -> optimizer``: how every baseline is built.
MethodFn = Callable[[Any, int], optax.GradientTransformation]
#: ``(opt_state, params) -> params`` to evaluate (schedule-free methods: the averaged point).
EvalParamsFn = Callable[[Any, Any], Any]

HYPERGRADIENT_BETA = 1e-3  # Baydin et al. (2018) use 1e-3 for SGD-HD on MNIST


# --------------------------------------------------------------------------------------------
# SGD with a hypergradient-adapted rate
# --------------------------------------------------------------------------------------------


class HypergradientSGDState(NamedTuple):
    learning_rate: jnp.ndarray  # [] the rate of the last step
    prev_grad: Any  # the last gradient, like params (zeros before the first step)


def hypergradient_sgd(
    learning_rate: Any, beta: float = HYPERGRADIENT_BETA
) -> optax.GradientTransformation:
    """SGD-HD (Baydin et al., 2018): ``lr_t = lr_{t-1} + beta * g_t . g_{t-1}``, step ``-lr_t g_t``.

    The dot product is over all parameters (one global rate, as in the paper); the rate is not
    clipped, so a rate driven below zero shows up as a diverging run.
    """

    def init(params: Any) -> HypergradientSGDState:
        lr = jnp.asarray(learning_rate, jnp.float32)
        return HypergradientSGDState(lr, jax.tree.map(jnp.zeros_like, params))

    def update(grads: Any, state: HypergradientSGDState, params: Any = None):
        del params
        lr = state.learning_rate + beta * optax.tree.vdot(grads, state.prev_grad)
        updates = jax.tree.map(lambda g: -lr * g, grads)
        return updates, HypergradientSGDState(lr, grads)

    return optax.GradientTransformation(init, update)


def layerwise(make: Callable[[], optax.GradientTransformation]) -> optax.GradientTransformation:
    """One independent copy of ``make()`` per layer ``layer_i`` (``optax.multi_transform``).

    The layer names are read from the parameters, so one builder serves networks of any depth.
    """

    def build(tree: Mapping[str, Any]) -> optax.GradientTransformation:
        keys = layer_keys(tree)
        return optax.multi_transform({k: make() for k in keys}, lambda t: {k: k for k in t})

    def init(params: Any):
        return build(params).init(params)

    def update(grads: Any, state: Any, params: Any = None):
        return build(grads).update(grads, state, params)

    return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


def _scaled(lr0, unit_schedule: optax.Schedule) -> optax.Schedule:
    """``lr0 x`` a schedule whose peak is 1 (optax's schedules branch on a Python peak value,
    so the swept, possibly traced, rate multiplies a fixed shape instead)."""
    return lambda count: lr0 * unit_schedule(count)


def unit_schedule(method: str, total_steps: int) -> optax.Schedule | None:
    """The shape of ``method``'s learning rate over ``total_steps``, scaled so its peak is 1: the
    rate at step t is ``lr0 x unit_schedule(method, total_steps)(t)``.

    None for methods without a fixed schedule: the learning-rate-free and adaptive methods, whose
    step size depends on the gradients (schedule-free methods included: their warmup is fixed but
    the averaging makes the effective step something else). The training of every scheduled
    baseline reads its schedule from here, so a figure of these shapes shows what was trained.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; the baselines are {sorted(METHODS)}")
    return optax_unit_schedule(method, total_steps)


def sgd_constant(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.sgd(lr0)


def sgd_step(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.sgd(_scaled(lr0, unit_schedule("sgd_step", total_steps)))


def sgd_exponential(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.sgd(_scaled(lr0, unit_schedule("sgd_exponential", total_steps)))


def sgd_cosine(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.sgd(_scaled(lr0, unit_schedule("sgd_cosine", total_steps)))


def sgd_warmup_cosine(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.sgd(_scaled(lr0, unit_schedule("sgd_warmup_cosine", total_steps)))


def sgd_onecycle(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.sgd(_scaled(lr0, unit_schedule("sgd_onecycle", total_steps)))


def adam(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.adam(lr0)


def adam_cosine(lr0, total_steps: int) -> optax.GradientTransformation:
    return optax.adam(_scaled(lr0, unit_schedule("adam_cosine", total_steps)))


def schedule_free_sgd(lr0, total_steps: int) -> optax.GradientTransformation:
    return contrib.schedule_free_sgd(lr0, warmup_steps=warmup_steps(total_steps))


def schedule_free_adamw(lr0, total_steps: int) -> optax.GradientTransformation:
    return contrib.schedule_free_adamw(lr0, warmup_steps=warmup_steps(total_steps))


def prodigy(lr0, total_steps: int) -> optax.GradientTransformation:
    return contrib.prodigy(learning_rate=1.0, estim_lr0=lr0)


def dadapt_adamw(lr0, total_steps: int) -> optax.GradientTransformation:
    return contrib.dadapt_adamw(learning_rate=1.0, estim_lr0=lr0)


def mechanic(lr0, total_steps: int) -> optax.GradientTransformation:
    return contrib.mechanize(optax.sgd(1.0), s_init=lr0)


def dog(lr0, total_steps: int) -> optax.GradientTransformation:
    return contrib.dog(init_step=("learning_rate", lr0))


def layerwise_dog(lr0, total_steps: int) -> optax.GradientTransformation:
    return layerwise(lambda: contrib.dog(init_step=("learning_rate", lr0)))


def cocob(lr0, total_steps: int) -> optax.GradientTransformation:
    return contrib.cocob(alpha=1.0 / lr0)


def sgd_hd(lr0, total_steps: int) -> optax.GradientTransformation:
    return hypergradient_sgd(lr0, HYPERGRADIENT_BETA)


METHODS: dict[str, MethodFn] = {
    "sgd_constant": sgd_constant,
    "sgd_step": sgd_step,
    "sgd_exponential": sgd_exponential,
    "sgd_cosine": sgd_cosine,
    "sgd_warmup_cosine": sgd_warmup_cosine,
    "sgd_onecycle": sgd_onecycle,
    "adam": adam,
    "adam_cosine": adam_cosine,
    "schedule_free_sgd": schedule_free_sgd,
    "schedule_free_adamw": schedule_free_adamw,
    "prodigy": prodigy,
    "dadapt_adamw": dadapt_adamw,
    "mechanic": mechanic,
    "dog": dog,
    "layerwise_dog": layerwise_dog,
    "cocob": cocob,
    "sgd_hd": sgd_hd,
}

LR0_MEANING: dict[str, str] = {
    "sgd_constant": "SGD rate (constant)",
    "sgd_step": "initial SGD rate; x0.1 at 50% and at 75% of the budget",
    "sgd_exponential": "initial SGD rate; smooth decay to 1e-2 x lr0 at the end",
    "sgd_cosine": "initial SGD rate; cosine decay to 0",
    "sgd_warmup_cosine": "peak SGD rate after 5% linear warmup from 0; cosine decay to 0",
    "sgd_onecycle": "peak SGD rate of optax.cosine_onecycle_schedule (defaults)",
    "adam": "Adam rate (constant)",
    "adam_cosine": "initial Adam rate; cosine decay to 0",
    "schedule_free_sgd": "schedule-free SGD rate (5% warmup), evaluated at the average",
    "schedule_free_adamw": "schedule-free AdamW rate (5% warmup), evaluated at the average",
    "prodigy": "initial step-size estimate d0 (estim_lr0); multiplier 1",
    "dadapt_adamw": "initial step-size estimate d0 (estim_lr0); multiplier 1",
    "mechanic": "s_init around sgd(1.0): the first step is lr0 x gradient",
    "dog": "first step size eta_0 (init_step=('learning_rate', lr0))",
    "layerwise_dog": "every layer's first DoG step size eta_0",
    "cocob": "1/alpha: the first step moves each coordinate by min(lr0, 1/2)",
    "sgd_hd": "initial SGD-HD rate alpha_0 (beta = 1e-3)",
}

#: Methods whose training iterate is not the point to evaluate (see ``schedule_free_eval_params``).
SCHEDULE_FREE: frozenset[str] = frozenset({"schedule_free_sgd", "schedule_free_adamw"})


def eval_params_of(method: str) -> EvalParamsFn | None:
    """How to get a method's evaluation weights from its state (None: the weights themselves)."""
    return contrib.schedule_free_eval_params if method in SCHEDULE_FREE else None


def methods_from_config(config: Mapping[str, Any]) -> dict[str, MethodFn]:
    """The registry restricted to ``baselines.methods``, with ``baselines.hypergradient_beta``."""
    cfg = config["baselines"]
    beta = float(cfg["hypergradient_beta"])
    chosen = {name: METHODS[name] for name in cfg["methods"]}
    if "sgd_hd" in chosen:
        chosen["sgd_hd"] = lambda lr0, total_steps: hypergradient_sgd(lr0, beta)
    return chosen


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


class TrainRecord(NamedTuple):
    """One run, check by check (index 0 is before the first step; I = num_steps / eval_every).

    After a divergence every entry repeats the last finite value, so index -1 is what is reported.
    """

    train_loss: jnp.ndarray  # [I] mean minibatch loss of each interval
    val_loss: jnp.ndarray  # [I + 1]
    val_accuracy: jnp.ndarray  # [I + 1]
    active: jnp.ndarray  # [I + 1] bool: the run was still training when this check was made
    diverged: jnp.ndarray  # [] bool
    diverged_at: jnp.ndarray  # [] int32: the inner step whose check found divergence, -1 if none


def evaluate(task: InnerTask, params: Any, x: jnp.ndarray, y: jnp.ndarray):
    """(mean cross-entropy, accuracy) of ``params`` on ``x`` [n, *input_shape], ``y`` [n]."""
    return task.loss_and_accuracy(params, x, y)


def _all_finite(tree: Any) -> jnp.ndarray:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def train(
    task: InnerTask,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    num_steps: int,
    eval_every: int,
    divergence_loss_ratio: float = 10.0,
    *,
    eval_params: EvalParamsFn | None = None,
    val_subset: int | None = None,
):
    """Train from the episode of ``key`` for ``num_steps`` steps; returns (params, TrainRecord).

    Pure and traceable: ``jax.jit`` it with the task, optimizer and integers static, or ``vmap``
    it over keys and over rates (build the optimizer inside the mapped function, as
    :func:`run_grid` does). ``params`` are the evaluation weights (``eval_params(opt_state, w)``
    for schedule-free methods) of the last finite state. ``eval_every`` must divide ``num_steps``;
    ``val_subset`` takes the first examples of the validation set, like the environment's.

    One sequence on purpose (Mava style, like the environment's interval): the step and interval
    functions close over this episode's task, optimiser, data key and initial validation loss,
    and read top to bottom as the loop they trace to.
    """
    if num_steps % eval_every:
        raise ValueError(f"eval_every={eval_every} must divide num_steps={num_steps}")
    init_key, data_key, _ = episode_keys(key)
    x_val = task.x_val if val_subset is None else task.x_val[:val_subset]
    y_val = task.y_val if val_subset is None else task.y_val[:val_subset]
    to_eval = (lambda state, p: p) if eval_params is None else eval_params
    grad_fn = jax.value_and_grad(task.loss)

    def one_step(carry, step):
        params, opt_state, loss_sum = carry
        x, y = task.batch(data_key, step)
        loss, grads = grad_fn(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, loss_sum + loss), None

    def one_interval(carry, start):
        params, opt_state, val_loss, val_accuracy, train_loss, diverged, diverged_at = carry
        steps = start + jnp.arange(eval_every)
        (new_params, new_opt_state, loss_sum), _ = jax.lax.scan(
            one_step, (params, opt_state, jnp.zeros(())), steps
        )
        new_train_loss = loss_sum / eval_every
        new_val_loss, new_val_accuracy = task.loss_and_accuracy(
            to_eval(new_opt_state, new_params), x_val, y_val
        )
        # THE ENVIRONMENT'S DIVERGENCE RULE
        finite = jnp.isfinite(new_val_loss) & jnp.isfinite(new_train_loss)
        finite &= _all_finite(new_params)
        now = ~finite | (new_val_loss > divergence_loss_ratio * initial_val_loss)
        keep = diverged | now  # keep the last finite state from the first divergence on
        pick = lambda old, new: jnp.where(keep, old, new)  # noqa: E731
        out = (
            jax.tree.map(pick, params, new_params),
            jax.tree.map(pick, opt_state, new_opt_state),
            pick(val_loss, new_val_loss),
            pick(val_accuracy, new_val_accuracy),
            pick(train_loss, new_train_loss),
            keep,
            jnp.where(now & ~diverged, start + eval_every, diverged_at),
        )
        return out, (out[4], out[2], out[3], ~diverged)

    params = task.init_params(init_key)
    opt_state = optimizer.init(params)
    initial_val_loss, initial_val_accuracy = task.loss_and_accuracy(
        to_eval(opt_state, params), x_val, y_val
    )
    carry = (
        params,
        opt_state,
        initial_val_loss,
        initial_val_accuracy,
        jnp.full((), jnp.nan),
        jnp.zeros((), bool),
        jnp.full((), -1, jnp.int32),
    )
    starts = jnp.arange(0, num_steps, eval_every)
    carry, (train_loss, val_loss, val_accuracy, active) = jax.lax.scan(one_interval, carry, starts)
    params, opt_state, *_, diverged, diverged_at = carry
    record = TrainRecord(
        train_loss=train_loss,
        val_loss=jnp.concatenate([initial_val_loss[None], val_loss]),
        val_accuracy=jnp.concatenate([initial_val_accuracy[None], val_accuracy]),
        active=jnp.concatenate([jnp.ones(1, bool), active]),
        diverged=diverged,
        diverged_at=diverged_at,
    )
    return to_eval(opt_state, params), record


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def seed_key(seed: int) -> jax.Array:
    """The episode key :func:`ganno.evaluate.play_episode` uses for seed ``seed`` (its first
    split of ``PRNGKey(seed)``), so a baseline and an agent with the same seed start from the same
    weights and see the same batches."""
    return jax.random.split(jax.random.PRNGKey(int(seed)))[0]


class GridResult(NamedTuple):
    """Every run of a grid; leading axes [len(lr0s), len(keys)]."""

    record: TrainRecord
    val_loss: jnp.ndarray
    val_accuracy: jnp.ndarray
    test_loss: jnp.ndarray
    test_accuracy: jnp.ndarray


def train_grid(
    task: InnerTask,
    method: MethodFn,
    lr0s: Sequence[float],
    keys: jax.Array,
    x_test: jnp.ndarray,
    y_test: jnp.ndarray,
    *,
    num_steps: int,
    eval_every: int,
    divergence_loss_ratio: float = 10.0,
    eval_params: EvalParamsFn | None = None,
    val_subset: int | None = None,
) -> GridResult:
    """Every (lr0, key) run of one method in one jitted, vmapped call, split over devices;
    fields get leading axes [len(lr0s), len(keys)]."""
    x_val = task.x_val if val_subset is None else task.x_val[:val_subset]
    y_val = task.y_val if val_subset is None else task.y_val[:val_subset]

    def one(key, lr0):
        params, record = train(
            task,
            method(lr0, num_steps),
            key,
            num_steps,
            eval_every,
            divergence_loss_ratio,
            eval_params=eval_params,
            val_subset=val_subset,
        )
        val = evaluate(task, params, x_val, y_val)
        test = evaluate(task, params, x_test, y_test)
        return GridResult(record, *val, *test)

    num_lr0, num_keys = len(lr0s), keys.shape[0]
    flat_keys = jnp.tile(keys, (num_lr0, 1))
    flat_lr0 = jnp.repeat(jnp.asarray(lr0s, jnp.float32), num_keys)
    out = sharded_vmap(one, flat_keys, flat_lr0)
    return jax.tree.map(lambda x: x.reshape(num_lr0, num_keys, *x.shape[1:]), out)


def _as_keys(keys: Any) -> tuple[jax.Array, list[int]]:
    """Integer seeds -> (their :func:`seed_key` s, the seeds); a key array -> (it, 0..S-1)."""
    if isinstance(keys, Sequence) and all(isinstance(k, int | np.integer) for k in keys):
        return jnp.stack([seed_key(s) for s in keys]), [int(s) for s in keys]
    keys = jnp.asarray(keys)
    return keys, list(range(keys.shape[0]))


def run_grid(
    task: InnerTask,
    method: str | MethodFn,
    lr0s: Sequence[float],
    keys: Sequence[int] | jax.Array,
    x_test: Any,
    y_test: Any,
    *,
    num_steps: int,
    eval_every: int,
    divergence_loss_ratio: float = 10.0,
    val_subset: int | None = None,
    task_name: str = "task",
    method_name: str | None = None,
) -> pd.DataFrame:
    """One row per (lr0, seed) of ``method`` trained from every initial rate and seed.

    ``method`` is a registry name or a :data:`MethodFn` (then name it with ``method_name``);
    ``keys`` are integer seeds (run as :func:`seed_key`) or a key array [S, 2] (seed = index).
    Columns: method, task, lr0, seed, val_loss, val_accuracy (final, whole validation set),
    test_loss, test_accuracy, diverged, diverged_at, wall_time_s. The test split is only
    evaluated, never used for anything else. ``wall_time_s`` is the whole grid's wall time
    (compilation included) divided evenly over its runs; ``grid_wall_time_s`` is the total.
    """
    name = method if isinstance(method, str) else (method_name or method.__name__)
    fn = METHODS[method] if isinstance(method, str) else method
    key_array, seeds = _as_keys(keys)
    start = time.perf_counter()
    out = train_grid(
        task,
        fn,
        lr0s,
        key_array,
        jnp.asarray(x_test, jnp.float32),
        jnp.asarray(y_test, jnp.int32),
        num_steps=num_steps,
        eval_every=eval_every,
        divergence_loss_ratio=divergence_loss_ratio,
        eval_params=eval_params_of(name),
        val_subset=val_subset,
    )
    out = jax.block_until_ready(out)
    wall = time.perf_counter() - start
    r = jax.tree.map(np.asarray, out)
    rows = []
    for i, lr0 in enumerate(lr0s):
        for j, seed in enumerate(seeds):
            rows.append(
                {
                    "method": name,
                    "task": task_name,
                    "lr0": float(lr0),
                    "seed": seed,
                    "val_loss": float(r.val_loss[i, j]),
                    "val_accuracy": float(r.val_accuracy[i, j]),
                    "test_loss": float(r.test_loss[i, j]),
                    "test_accuracy": float(r.test_accuracy[i, j]),
                    "diverged": bool(r.record.diverged[i, j]),
                    "diverged_at": int(r.record.diverged_at[i, j]),
                    "wall_time_s": wall / max(len(lr0s) * len(seeds), 1),
                    "grid_wall_time_s": wall,
                }
            )
    return pd.DataFrame(rows)
