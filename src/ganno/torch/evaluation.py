"""``ganno torch-eval``: trained policies deployed in plain PyTorch training, against PyTorch SGD
baselines, on the config's training data.

For every network (``mlp``: the config's task MLP; ``cnn``: a small 1-D CNN, the architecture of
the ``cnn1d`` generalisation task; ``cnn_bn``: that CNN with BatchNorm after each convolution;
``transformer``: the twin of the JAX ``transformer`` network), every initial rate of the
``torch_deployment`` grid and every seed, each method trains a fresh PyTorch network for the
environment's budget (``steps_per_decision x num_decisions`` steps of ``batch_size``):

* ``ganno_<agent>`` (one row per policy): ``torch.optim.SGD`` with one parameter group per
  layer, rates set by :class:`~ganno.torch.GannoScheduler`;
* ``sgd_constant``: ``torch.optim.SGD`` at ``lr0``;
* ``sgd_cosine``: SGD with ``CosineAnnealingLR`` from ``lr0`` to 0 over the budget;
* ``schedule_free_sgd``: ``schedulefree.SGDScheduleFree`` (momentum 0.9, 5% warmup, like the JAX
  baseline of the same name), evaluated at its averaged weights (``.eval()``).

Seeds mean what they mean in the JAX evaluation (:func:`ganno.baselines.seed_key`): the same
initial weights (the JAX network's initialisation, copied) and the same minibatch stream
(:meth:`ganno.inner.InnerTask.batch_indices`). Divergence follows the environment's rule, checked
every ``steps_per_decision`` steps: a non-finite loss or weight, or a validation loss above
``divergence_loss_ratio`` x the initial one ends the run, which then reports the last state that
passed the check (its validation metrics, and test metrics of its weights), with ``diverged``.
A policy whose scheduler guards the run (``env.guard``, :class:`ganno.torch.GannoScheduler`)
leaves the check to its guard until the guard trips (it rolls back instead of ending the run).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ganno.deployment import deployment_settings
from ganno.errors import PolicyMismatchError, UsageError
from ganno.io import write_csv
from ganno.torch.networks import from_jax_params, layerwise_param_groups, make_torch_network
from ganno.torch.scheduler import GannoScheduler

NETWORKS = ("mlp", "cnn", "cnn_bn", "transformer")
METHODS = ("ganno", "sgd_constant", "sgd_cosine", "schedule_free_sgd")
TASK_NAMES = {network: f"torch_{network}" for network in NETWORKS}
SCHEDULE_FREE_MOMENTUM = 0.9


@dataclass
class TorchData:
    """The task's splits as tensors (validation already cut to the env's ``val_subset``)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @classmethod
    def from_dataset(cls, dataset: Any, val_subset: int | None = None) -> TorchData:
        def x(a):
            return torch.tensor(np.asarray(a, np.float32))

        def y(a):
            return torch.tensor(np.asarray(a, np.int64))

        cut = slice(None) if val_subset is None else slice(0, int(val_subset))
        return cls(
            x(dataset.x_train),
            y(dataset.y_train),
            x(dataset.x_val)[cut],
            y(dataset.y_val)[cut],
            x(dataset.x_test),
            y(dataset.y_test),
            int(dataset.num_classes),
        )


@dataclass
class Budget:
    """The environment's budget and divergence rule (from the config's ``env`` block)."""

    steps_per_decision: int
    num_decisions: int
    batch_size: int
    divergence_loss_ratio: float = 10.0
    lr_bounds: tuple[float, float] = (1e-6, 10.0)
    actions: tuple[float, ...] | None = None
    #: the guard (``env.guard``), as the JAX evaluation of the same config runs it; None: as the
    #: policy records it
    guard: bool | None = None

    @property
    def num_steps(self) -> int:
        return self.steps_per_decision * self.num_decisions

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Budget:
        env = config["env"]
        return cls(
            int(env["steps_per_decision"]),
            int(env["num_decisions"]),
            int(config["task"]["batch_size"]),
            float(env["divergence_loss_ratio"]),
            (float(env["lr_bounds"][0]), float(env["lr_bounds"][1])),
            tuple(float(a) for a in env["actions"]),
            None if env.get("guard") is None else bool(env["guard"]),
        )


@dataclass
class RunResult:
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    diverged: bool
    wall_time_s: float
    #: each layer's rate at every check (index 0: the start), for schedules and printing
    learning_rates: list[list[float]]
    #: ``ganno``: the step at which its scheduler flagged the network dead, or None
    dead_at_step: int | None = None
    #: ``ganno``: the step at which its scheduler's own divergence check fired (where
    #: ``on_divergence="raise"`` would have raised), or None
    scheduler_diverged_at_step: int | None = None


def network_spec(config: Mapping[str, Any], network: str) -> dict[str, Any]:
    """The ``task.network`` spec of ``mlp`` (the config's MLP), ``cnn`` (a 1-D CNN with the
    config's ``channels`` / ``kernel_size``, as in the ``cnn1d`` generalisation task), ``cnn_bn``
    (that CNN with BatchNorm, ``batch_norm: true``: PyTorch only, its JAX initial weights the plain
    CNN's) or ``transformer`` (the config's transformer keys where it has them, else the
    defaults)."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose from {NETWORKS}")
    base = dict(config["task"]["network"])
    if network == "mlp":
        if base.get("kind", "mlp") != "mlp":
            base = {"kind": "mlp", "depth": 3, "width": 64}
        return {**base, "kind": "mlp"}
    if network == "transformer":
        return {**base, "kind": "transformer"}
    return {**base, "kind": "cnn1d", "batch_norm": network == "cnn_bn"}


def episode_inputs(
    spec: Mapping[str, Any], seed: int, data: TorchData, budget: Budget
) -> tuple[dict[str, Any], torch.Tensor]:
    """(initial JAX parameters, minibatch indices ``[num_steps, batch_size]``) of ``seed``: the
    initial weights and batches the JAX evaluation uses for that seed."""
    import jax
    import jax.numpy as jnp

    from ganno.baselines import seed_key
    from ganno.inner import episode_keys
    from ganno.networks import make_network

    init_key, data_key, _ = episode_keys(seed_key(seed))
    network = make_network(spec, data.num_classes)
    params = network.init(init_key, jnp.asarray(data.x_train[:1].numpy()))["params"]
    indices = _batch_indices(data_key, budget.num_steps, budget.batch_size, data.x_train.shape[0])
    return jax.device_get(params), torch.tensor(np.asarray(indices, np.int64))


@functools.cache
def _indices_fn():
    import jax

    def indices(key, num_steps: int, batch_size: int, n: int):
        def draw(step):  # InnerTask.batch_indices
            return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)

        return jax.vmap(draw)(jax.numpy.arange(num_steps))

    return jax.jit(indices, static_argnums=(1, 2, 3))


def _batch_indices(key, num_steps: int, batch_size: int, n: int):
    """``[num_steps, batch_size]``: the minibatch indices of the episode's data key (what
    :meth:`ganno.inner.InnerTask.batch_indices` draws at every step)."""
    return _indices_fn()(key, int(num_steps), int(batch_size), int(n))


def _params_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@torch.no_grad()
def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Loss and accuracy in eval mode (BatchNorm's running statistics), the mode restored."""
    training = model.training
    model.eval()
    logits = model(x)
    model.train(training)
    loss = F.cross_entropy(logits, y).item()
    return loss, (logits.argmax(-1) == y).float().mean().item()


def _method_optimizer(
    model: torch.nn.Module,
    method: str,
    lr0: float,
    budget: Budget,
    policy: Any,
    greedy: bool,
    gradient_statistics: str,
) -> tuple[torch.optim.Optimizer, Any, GannoScheduler | None]:
    """The optimiser :func:`train_run` trains ``model`` with for ``method`` (one parameter group
    per layer), its learning-rate scheduler (``sgd_cosine``) and the policy's
    :class:`GannoScheduler` (``ganno``), each None where the method has none."""
    lr_scheduler, sched = None, None
    if method == "ganno":
        if policy is None:
            raise ValueError("method 'ganno' needs a policy")
        optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=lr0)
        sched = GannoScheduler(
            optimizer,
            policy,
            steps_per_decision=budget.steps_per_decision,
            num_decisions=budget.num_decisions,
            actions=budget.actions,
            lr_bounds=budget.lr_bounds,
            divergence_loss_ratio=budget.divergence_loss_ratio,
            guard=budget.guard,
            buffers=model.buffers(),  # BatchNorm's statistics roll back with the weights
            greedy=greedy,
            gradient_statistics=gradient_statistics,
            on_divergence="stop",  # train_run's loop applies the same rule and restores
        )
    elif method in ("sgd_constant", "sgd_cosine"):
        optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=lr0)
        if method == "sgd_cosine":
            lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=budget.num_steps
            )
    elif method == "schedule_free_sgd":
        import schedulefree

        from ganno.schedules import warmup_steps

        optimizer = schedulefree.SGDScheduleFree(
            layerwise_param_groups(model),
            lr=lr0,
            momentum=SCHEDULE_FREE_MOMENTUM,
            warmup_steps=warmup_steps(budget.num_steps),
        )
    else:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    return optimizer, lr_scheduler, sched


def train_run(
    model: torch.nn.Module,
    method: str,
    lr0: float,
    batches: torch.Tensor,
    data: TorchData,
    budget: Budget,
    policy: Any = None,
    greedy: bool = True,
    on_decision: Callable[[int, list[float], float], None] | None = None,
    gradient_statistics: str = "read",
) -> RunResult:
    """Train ``model`` in place with ``method`` from ``lr0`` on the minibatches ``batches``
    (indices ``[num_steps, batch_size]``); ``policy`` for ``ganno``. ``on_decision(step, rates,
    val_loss)`` is called at the start and at every check (e.g. to print the schedule).
    ``gradient_statistics``: the scheduler's (``GannoScheduler``); the pipeline reads the
    gradients, as the environment does.

    One sequence, kept whole: the training loop with the environment's divergence check at
    every interval's end, the restore of the last good weights and the test evaluation, in the
    order a reader checks them against the environment's episode."""
    start = time.perf_counter()
    k, num_steps = budget.steps_per_decision, budget.num_steps
    if batches.shape[0] < num_steps:
        raise ValueError(f"{batches.shape[0]} minibatches for a budget of {num_steps} steps")
    schedule_free = method == "schedule_free_sgd"
    optimizer, lr_scheduler, sched = _method_optimizer(
        model, method, lr0, budget, policy, greedy, gradient_statistics
    )

    def rates() -> list[float]:
        return [float(g["lr"]) for g in optimizer.param_groups]

    def snapshot() -> list[torch.Tensor]:  # the weights and buffers (BatchNorm's statistics)
        return [t.detach().clone() for t in (*model.parameters(), *model.buffers())]

    if schedule_free:
        optimizer.eval()
    initial_val_loss, val_accuracy = _evaluate(model, data.x_val, data.y_val)
    val_loss = initial_val_loss
    good = snapshot()  # the last state that passed the divergence check
    diverged = not math.isfinite(initial_val_loss)
    history: list[list[float]] = []
    if schedule_free:
        optimizer.train()

    loss_sum = 0.0
    for step in range(0 if diverged else num_steps):
        idx = batches[step]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        loss_value = loss.item()
        # a policy's guard (env.guard) judges divergence itself until it trips
        leave_to_guard = sched is not None and sched.guard and not sched.guarded
        if not math.isfinite(loss_value) and not leave_to_guard:  # the interval's mean loss is
            diverged = True  # non-finite: diverged
            break
        if sched is not None:
            sched.observe_gradients(loss_value, val_loss=initial_val_loss if step == 0 else None)
        if step == 0:
            history.append(rates())
            if on_decision is not None:
                on_decision(0, history[-1], initial_val_loss)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        loss_sum += loss_value
        if (step + 1) % k:
            if sched is not None:
                sched.step()
            continue
        # CHECK (the environment's divergence rule)
        if schedule_free:
            optimizer.eval()
        new_val_loss, new_val_accuracy = _evaluate(model, data.x_val, data.y_val)
        train_loss, loss_sum = loss_sum / k, 0.0
        ok = math.isfinite(new_val_loss) and math.isfinite(train_loss) and _params_finite(model)
        if (not ok or new_val_loss > budget.divergence_loss_ratio * initial_val_loss) and not (
            leave_to_guard
        ):
            diverged = True
            break
        if sched is not None:
            sched.step(val_loss=new_val_loss)
            if sched.guarded_at_step == step + 1:  # the guard tripped: back at the last decision
                new_val_loss, new_val_accuracy = _evaluate(model, data.x_val, data.y_val)
        val_loss, val_accuracy, good = new_val_loss, new_val_accuracy, snapshot()
        if schedule_free:
            optimizer.train()
        history.append(rates())
        if on_decision is not None:
            on_decision(step + 1, history[-1], new_val_loss)

    with torch.no_grad():  # evaluate the last good weights (the averaged ones if schedule-free)
        for p, q in zip((*model.parameters(), *model.buffers()), good, strict=True):
            p.copy_(q)
    test_loss, test_accuracy = _evaluate(model, data.x_test, data.y_test)
    return RunResult(
        val_loss,
        val_accuracy,
        test_loss,
        test_accuracy,
        bool(diverged),
        time.perf_counter() - start,
        history,
        None if sched is None else sched.dead_at_step,
        None if sched is None else sched.diverged_at_step,
    )


def lr0_grid(block: Mapping[str, Any]) -> list[float]:
    """The initial rates of a ``torch_deployment`` block (as :func:`ganno.results.lr0_grid`)."""
    from ganno.results import lr0_grid as grid

    return grid({"evaluation": dict(block)})


def torch_deployment(
    config: Mapping[str, Any],
    policy_dirs: Sequence[str | Path],
    *,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The ``torch_deployment`` experiment of a validated config: a table with the columns of
    :data:`ganno.results.COLUMNS` (one row per method x network x lr0 x seed [x policy])."""
    from ganno.agents import method_name
    from ganno.data import load_from_config
    from ganno.policy import Policy
    from ganno.results import COLUMNS

    block = config["torch_deployment"]
    methods, networks = list(block["methods"]), list(block["networks"])
    if "ganno" in methods and not policy_dirs:
        raise UsageError(
            "torch_deployment.methods includes 'ganno' but no policy was given (--policy DIR)"
        )
    budget = Budget.from_config(config)
    policies = []
    for i, path in enumerate(policy_dirs if "ganno" in methods else []):
        policy = Policy.load(path)
        try:  # before any training: a policy the scheduler cannot drive
            deployment_settings(policy, actions=budget.actions, who="GannoScheduler")
        except ValueError as exc:
            raise PolicyMismatchError(f"policy {path} does not fit this config: {exc}") from None
        meta_seed = int(policy.config.get("seed", i))
        policies.append((method_name(block["agent"]), meta_seed, policy))
    data = TorchData.from_dataset(load_from_config(config), config["env"]["val_subset"])
    lr0s, seeds = lr0_grid(block), [int(s) for s in block["seeds"]]
    rows = []
    for network in networks:
        spec = network_spec(config, network)
        for seed in seeds:
            params0, batches = episode_inputs(spec, seed, data, budget)
            for lr0 in lr0s:
                runs = [(m, -1, None) for m in methods if m != "ganno"]
                if "ganno" in methods:
                    runs = policies + runs
                for name, meta_seed, policy in runs:
                    model = from_jax_params(
                        make_torch_network(spec, data.x_train.shape[1:], data.num_classes),
                        params0,
                    )
                    method = "ganno" if policy is not None else name
                    result = train_run(model, method, lr0, batches, data, budget, policy)
                    rows.append(
                        {
                            "method": name,
                            "task": TASK_NAMES[network],
                            "lr0": float(lr0),
                            "seed": seed,
                            "meta_seed": meta_seed,
                            "val_loss": result.val_loss,
                            "val_accuracy": result.val_accuracy,
                            "test_loss": result.test_loss,
                            "test_accuracy": result.test_accuracy,
                            "diverged": result.diverged,
                            "wall_time_s": result.wall_time_s,
                        }
                    )
                    if progress is not None:
                        progress(
                            f"{TASK_NAMES[network]} seed {seed} lr0 {lr0:.3g} {name}"
                            f"{'' if meta_seed < 0 else f' (meta seed {meta_seed})'}: test "
                            f"accuracy {result.test_accuracy:.3f}"
                            f"{' (diverged)' if result.diverged else ''}, "
                            f"{result.wall_time_s:.2f} s"
                        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` through a temporary file: a killed run leaves no partial table."""
    return write_csv(df, path)
