"""DoG's step size over a PyTorch model: the base schedule's step size of a DoG-base policy in
:class:`ganno.torch.GannoScheduler`, as the environment carries it
(:class:`ganno.optim.DogStepSize`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ganno.env_settings import DOG_EPS
from ganno.torch.sampling import FlatRows, GradientSample


class DogStepSize:
    """DoG's step size over a PyTorch model, as the environment carries it
    (:class:`ganno.optim.DogStepSize`): ``eta_t = max_{s<=t} ||x_s - x_0|| / sqrt(sum_{s<=t}
    ||g_s||^2 + eps)`` over all the weights at once, ``eta_0 = lr0``. Its sums read the weights
    as the scheduler's gradient statistics read the gradients (``sample``, a
    :class:`ganno.torch.sampling.GradientSample`): small tensors whole, so exactly the
    environment's step size up to float32 rounding, a large one on its fixed sample of blocks
    (the sums estimated from them, and only the sample of the initial weights kept).

    It runs every step, so it reads in a handful of calls whatever the number of tensors: the
    weights into one flat row, scaled (:class:`ganno.torch.sampling.FlatRows`), their distance
    from the origin's row in one call, and the two sums read into Python."""

    def __init__(self, lr0: float, sample: GradientSample) -> None:
        self._eps = DOG_EPS
        self.lr0 = float(lr0)
        self.sample = sample
        self.eta = self.lr0  # the step size of the last update (lr0 before any)
        self.steps = 0  # updates taken
        self.max_distance = 0.0
        self.grad_sq_sum = 0.0
        # the weights' and (where the scheduler has no staged gradients) the gradients' flat
        # rows, as sample.read reads them, made at the first update (on the tensors' devices)
        self._weights: FlatRows | None = None
        self._grads: FlatRows | None = None
        self._origin: list[torch.Tensor] | None = None  # x_0's rows, taken at the first update
        self._loaded_origin: list[torch.Tensor] | None = None  # per tensor, from a saved state

    def gradient_squared_norm(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """``||g||^2`` over every tensor as ``sample`` reads it (0-d): for a step whose gradients
        the scheduler does not stage itself."""
        if self._grads is None:
            self._grads = FlatRows(self.sample, grads, scaled=True)
        self._grads.read(grads)
        return self._grads.squared_norm()

    def update(self, params: Sequence[torch.Tensor], grad_sq: torch.Tensor | float) -> float:
        """The step size of the step about to be taken from ``params``, whose gradient's squared
        norm over every tensor (as ``sample`` reads it) is ``grad_sq``."""
        if self._weights is None:
            self._weights = FlatRows(self.sample, params, scaled=True)
        self._weights.read([p.detach() for p in params])
        if self._origin is None:
            self._origin = [row.clone() for row in self._weights.rows]
            if self._loaded_origin is not None:
                torch._foreach_copy_(self._weights.views_of(self._origin), self._loaded_origin)
                self._loaded_origin = None
        distance = float(self._weights.distance(self._origin))
        first = self.steps == 0
        self.steps += 1
        self.max_distance = max(self.max_distance, distance)
        self.grad_sq_sum += float(grad_sq)
        self.eta = (
            self.lr0 if first else self.max_distance / math.sqrt(self.grad_sq_sum + self._eps)
        )
        return self.eta

    def state_dict(self) -> dict[str, Any]:
        if self._origin is not None:  # x_0 as sample.read reads it, per tensor (new tensors)
            origin = [view.clone() for view in self._weights.views_of(self._origin)]
        else:
            loaded = self._loaded_origin
            origin = None if loaded is None else [t.clone() for t in loaded]
        return {
            "lr0": self.lr0,
            "eta": self.eta,
            "steps": self.steps,
            "max_distance": self.max_distance,
            "grad_sq_sum": self.grad_sq_sum,
            "origin": origin,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr0, self.eta, self.steps = float(state["lr0"]), float(state["eta"]), state["steps"]
        self.max_distance, self.grad_sq_sum = state["max_distance"], state["grad_sq_sum"]
        origin = state["origin"]
        self._origin = None  # the rows take it at the next update
        self._loaded_origin = None if origin is None else [t.clone() for t in origin]
