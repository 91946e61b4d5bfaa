"""DoG's step size over a PyTorch model: the base schedule's step size of a DoG-base policy in
:class:`ganno.torch.GannoScheduler`, as the environment carries it
(:class:`ganno.optim.DogStepSize`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ganno.env_settings import DOG_EPS
from ganno.torch.sampling import GradientSample


class DogStepSize:
    """DoG's step size over a PyTorch model, as the environment carries it
    (:class:`ganno.optim.DogStepSize`): ``eta_t = max_{s<=t} ||x_s - x_0|| / sqrt(sum_{s<=t}
    ||g_s||^2 + eps)`` over all the weights at once, ``eta_0 = lr0``. Its sums read the weights
    as the scheduler's gradient statistics read the gradients (``sample``, a
    :class:`ganno.torch.sampling.GradientSample`): small tensors whole, so exactly the
    environment's step size, a large one on its fixed sample of blocks (the sums estimated from
    them, and only the sample of the initial weights kept)."""

    def __init__(self, lr0: float, sample: GradientSample) -> None:
        self._eps = DOG_EPS
        self.lr0 = float(lr0)
        self.sample = sample
        self.eta = self.lr0  # the step size of the last update (lr0 before any)
        self.steps = 0  # updates taken
        self.max_distance = 0.0
        self.grad_sq_sum = 0.0
        self._origin: list[torch.Tensor] | None = None  # x_0 as read, taken at the first update

    def update(self, params: Sequence[torch.Tensor], grad_norms: Sequence[torch.Tensor]) -> float:
        """The step size of the step about to be taken from ``params``, whose gradient's
        per-tensor norms (as ``sample`` reads it) are ``grad_norms``."""
        weights = self.sample.read([p.detach().float() for p in params])
        if self._origin is None:
            self._origin = [w.clone() for w in weights]
        distance = torch._foreach_norm(torch._foreach_sub(weights, self._origin))
        distance = float(torch.linalg.vector_norm(torch.stack(distance)))
        grad_sq = float(torch.stack(list(grad_norms)).square().sum())
        first = self.steps == 0
        self.steps += 1
        self.max_distance = max(self.max_distance, distance)
        self.grad_sq_sum += grad_sq
        self.eta = (
            self.lr0 if first else self.max_distance / math.sqrt(self.grad_sq_sum + self._eps)
        )
        return self.eta

    def state_dict(self) -> dict[str, Any]:
        return {
            "lr0": self.lr0,
            "eta": self.eta,
            "steps": self.steps,
            "max_distance": self.max_distance,
            "grad_sq_sum": self.grad_sq_sum,
            "origin": None if self._origin is None else [t.clone() for t in self._origin],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr0, self.eta, self.steps = float(state["lr0"]), float(state["eta"]), state["steps"]
        self.max_distance, self.grad_sq_sum = state["max_distance"], state["grad_sq_sum"]
        origin = state["origin"]
        self._origin = None if origin is None else [t.clone() for t in origin]
