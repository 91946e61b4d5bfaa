"""What the benchmarks of the shipped policy in PyTorch share: its runs in the pipeline's
``torch-eval`` loop (``ganno.torch.evaluation.train_run``: the environment's initial weights and
minibatches per seed, the config's budget and divergence rule) on the default config's MLP and 1-D
CNN on MNIST-1D (the policy's training data) and the MLP on sklearn's digits (a dataset it never
saw), over seeds and initial rates; the command line they take; and the ceiling of 1 that the
dead-network warning names as the remedy. Used by ``dead_network_check.py``,
``weight_change_agreement.py`` and ``weight_change_accuracy.py``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ganno.config import load_config
from ganno.data import load
from ganno.errors import GannoWarning
from ganno.torch import evaluation

TASKS = (("mnist1d", "mlp"), ("mnist1d", "cnn"), ("digits", "mlp"))


def parser(description: str, seeds: str, lr0: str) -> argparse.ArgumentParser:
    """The shared options: ``--config``, ``--seeds``, ``--lr0`` (comma-separated), ``--threads``."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--config", default="config/config.yaml")
    out.add_argument("--seeds", default=seeds)
    out.add_argument("--lr0", default=lr0)
    out.add_argument("--threads", type=int, default=2)
    return out


@dataclass
class Setup:
    policy: Any
    config: dict
    budget: evaluation.Budget
    seeds: list[int]
    lr0s: list[float]

    def capped(self, ceiling: float = 1.0) -> evaluation.Budget:
        """The budget with the rates capped at ``ceiling`` (``lr_bounds[1]``)."""
        low = self.budget.lr_bounds[0]
        return evaluation.Budget(**{**vars(self.budget), "lr_bounds": (low, float(ceiling))})


def setup(args: argparse.Namespace, policy: Any = None) -> Setup:
    """Threads set; the shipped policy (or ``policy``), the config and its budget loaded."""
    torch.set_num_threads(args.threads)
    if policy is None:
        from ganno.pretrained import load as load_pretrained

        policy = load_pretrained()
    config = load_config(args.config)
    return Setup(
        policy=policy,
        config=config,
        budget=evaluation.Budget.from_config(config),
        seeds=[int(s) for s in args.seeds.split(",")],
        lr0s=[float(v) for v in args.lr0.split(",")],
    )


@dataclass
class Start:
    """One start of a run: a task, a seed's initial weights and minibatches, and lr0."""

    task: str
    data: evaluation.TorchData
    seed: int
    lr0: float
    batches: torch.Tensor
    model: Callable[[], torch.nn.Module]  # a fresh network at the seed's initial weights

    def at_chance(self, accuracy: float) -> bool:
        """Whether a test ``accuracy`` is at chance: at most 5% of the way from chance to perfect
        (``env.collapse_check``'s level)."""
        chance = 1.0 / self.data.num_classes
        return accuracy <= chance + 0.05 * (1.0 - chance)


def starts(s: Setup) -> Iterator[Start]:
    """Every task x seed x lr0, in that order."""
    for dataset, network in TASKS:
        data = evaluation.TorchData.from_dataset(load(dataset, root=s.config["data"]["root"]))
        spec = evaluation.network_spec(s.config, network)
        shape = data.x_train.shape[1:]
        for seed in s.seeds:
            params0, batches = evaluation.episode_inputs(spec, seed, data, s.budget)

            def model(spec=spec, params0=params0, shape=shape, classes=data.num_classes):
                net = evaluation.make_torch_network(spec, shape, classes)
                return evaluation.from_jax_params(net, params0)

            for lr0 in s.lr0s:
                yield Start(f"{network} on {dataset}", data, seed, lr0, batches, model)


def run(start: Start, s: Setup, budget: evaluation.Budget | None = None, **kw):
    """The shipped policy's run from ``start`` (``train_run``; dead-network warnings silenced:
    the benchmarks count them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GannoWarning)
        return evaluation.train_run(
            start.model(), "ganno", start.lr0, start.batches, start.data,
            s.budget if budget is None else budget, s.policy, **kw,
        )  # fmt: skip
