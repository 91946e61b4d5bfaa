"""The interval's gradient statistics from the weights' changes, without reading a gradient.

Plain SGD moves every weight by ``-lr_t g_t``, so over steps ``[a, b)`` the weights' change
divided by the layer's summed rate is the mean gradient, weighted by the rates (exact when the
rate is constant). Snapshots of the weights at ``segments`` evenly spaced steps of the span (the
interval, or its gradient window) give each segment's mean gradient; their average, weighted by
the segments' steps, is the span's (within a segment the rates vary less than over the span,
whose cosine base falls to zero in the last interval). The noise of a minibatch gradient comes
from how much consecutive segment means differ: means of ``L`` steps scatter with variance
``sigma^2 / L``, so ``E |m_j - m_{j+1}|^2 = 2 sigma^2 / L`` and ``sigma^2 = L mean_j |m_j -
m_{j+1}|^2 / 2`` (summed over a layer's entries; drift between segments biases it up). The
observation's mean squared minibatch-gradient norm is then ``|mean|^2 + sigma^2 (1 - 1 / k)``
over ``k`` steps, its expectation when the gradients are the mean plus independent noise.

So a step costs nothing, and an interval ``segments`` snapshots of the
weights' sample (:class:`ganno.torch.sampling.GradientSample`, the same entries the gradient
statistics read), from which the observation's weight and update norms come too (no copy of the
whole weights, unless ``on_divergence="restore"`` needs one to roll back to). It holds for
``torch.optim.SGD`` without momentum or weight decay only
(:func:`check_plain_sgd`), and the features it gives are estimates: docs/torch.md ("Gradient
statistics from the weights") measures how far they are from the ones read from the gradients
and how often the policy's decisions agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from ganno.errors import UsageError
from ganno.torch.sampling import GradientSample

#: Snapshots of the weights' sample per interval (or gradient window).
SEGMENTS = 5


class IntervalStatistics(NamedTuple):
    """What an interval's observation needs from the weights, on their sample: per tensor the
    span's mean gradient; per layer ``[N]`` its mean squared minibatch-gradient norm, the weights'
    squared norm now and their change's since the interval began."""

    mean_grad: list[torch.Tensor]
    mean_sq_grad_norm: torch.Tensor
    weight_sq: torch.Tensor
    update_sq: torch.Tensor


def not_plain_sgd(optimizer: torch.optim.Optimizer) -> str | None:
    """Why ``optimizer``'s step is not ``p -= lr * p.grad`` (None when it is)."""
    if not isinstance(optimizer, torch.optim.SGD):
        return f"{type(optimizer).__name__} is not torch.optim.SGD"
    for i, group in enumerate(optimizer.param_groups):
        for key in ("momentum", "weight_decay"):
            if float(group.get(key, 0.0)) != 0.0:
                return f"parameter group {i} has {key}={group[key]}"
        for key in ("nesterov", "maximize"):
            if group.get(key, False):
                return f"parameter group {i} has {key}=True"
    return None


def check_plain_sgd(optimizer: torch.optim.Optimizer) -> None:
    """Refuse (UsageError) an optimiser whose step is not ``p -= lr * p.grad``."""
    why = not_plain_sgd(optimizer)
    if why is not None:
        raise UsageError(
            f"gradient_statistics='weight_changes' reads the gradients off the weights' changes, "
            f"which only plain SGD makes (torch.optim.SGD without momentum or weight decay), and "
            f"{why}: use gradient_statistics='read' (or the default 'auto', which picks it)"
        )


class WeightChangeStatistics:
    """The gradient statistics of one span of steps (an interval, or its gradient window), from
    ``segments`` snapshots of the weights' ``sample`` and each step's rates. A snapshot is one
    flat vector of every tensor's sampled entries, so the statistics are a few operations on a
    ``[segments + 1, entries]`` matrix, whatever the number of tensors.

    ``group_of[j]``: the layer of tensor ``j``; ``num_layers``: ``N``."""

    def __init__(
        self,
        sample: GradientSample,
        group_of: Sequence[int],
        num_layers: int,
        segments: int = SEGMENTS,
    ) -> None:
        if int(segments) < 2:
            raise ValueError(f"segments={segments}: at least 2 (the noise needs two means)")
        self.sample = sample
        self.num_layers = int(num_layers)
        self.segments = int(segments)
        self.shapes = list(sample.shapes)
        self.sizes = [int(torch.Size(shape).numel()) for shape in self.shapes]
        owners = list(group_of)
        if owners != sorted(owners):
            raise ValueError("the tensors must come layer by layer (a layer's entries contiguous)")
        #: every layer's count of entries in a snapshot (its tensors' are contiguous)
        self.layer_sizes = [
            sum(n for n, owner in zip(self.sizes, owners, strict=True) if owner == layer)
            for layer in range(self.num_layers)
        ]
        # buffers kept from interval to interval: no page faults from fresh multi-megabyte
        # tensors at every decision
        entries = sum(self.sizes)
        self._points = torch.empty(self.segments + 1, entries)  # the snapshots, then the end
        self._means = torch.empty(self.segments, entries)  # each segment's mean gradient
        #: the weights' sample where the interval began (its change is the observation's update)
        self.origin = torch.empty(entries)
        # each buffer (a snapshot's row, or the origin) with the slices a read writes, and the
        # sample's scale of each entry
        self._buffers = [(row, sample.views(row)) for row in self._points]
        self._buffers.append((self.origin, sample.views(self.origin)))
        self._scales = sample.entry_scales()

    def start(self, now: int, first: int, end: int, params: Sequence[torch.Tensor]) -> None:
        """An interval begins after ``now`` steps, at the weights ``params``; its span is steps
        ``first`` to ``end - 1``, with snapshots at ``first + round(j (end - first) /
        segments)``, ``j < segments`` (fewer if the span is shorter)."""
        length = max(int(end) - int(first), 1)
        count = min(self.segments, length)
        self.first = int(first)
        self.cuts = sorted({self.first + round(j * length / count) for j in range(count)})
        self._read_into(params, -1)
        #: snapshots taken so far (rows of the points buffer)
        self.taken = 0
        if first == now:
            self._points[0].copy_(self.origin)
            self.taken = 1

    def observe(self, step: int, params: Sequence[torch.Tensor]) -> None:
        """Step ``step`` of the span is about to be taken from ``params``: a snapshot if a segment
        starts there."""
        if self.taken < len(self.cuts) and step == self.cuts[self.taken]:
            self._read_into(params, self.taken)
            self.taken += 1

    def _read_into(self, params: Sequence[torch.Tensor], row: int) -> None:
        """The weights' sample, as one flat float32 vector scaled as ``sample.read`` scales it,
        into the snapshots' ``row`` (``-1``: the origin)."""
        out, views = self._buffers[row]
        self.sample.read_into([p.detach() for p in params], views)
        out.mul_(self._scales)

    def _per_layer_sq(self, values: torch.Tensor) -> torch.Tensor:
        """``[..., entries]``: each layer's sum of squares ``[..., N]`` (no temporary)."""
        parts = values.split(self.layer_sizes, dim=-1)
        return torch.stack([(part * part).sum(-1) for part in parts], dim=-1)

    def statistics(self, params: Sequence[torch.Tensor], rates: torch.Tensor) -> IntervalStatistics:
        """The interval's statistics at its end, from the weights ``params`` now and each step's
        per-layer ``rates`` over the span (``[steps, N]``; the scheduler planned them)."""
        segments = self.taken
        points = self._points[: segments + 1]
        end = points[segments]
        self._read_into(params, segments)
        rates = rates.to(torch.float32)
        steps = rates.shape[0]
        bounds = [c - self.first for c in self.cuts[:segments]] + [steps]
        segment_rates = torch.stack(
            [rates[lo:hi].sum(0) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        )  # [S, N]
        means = self._means[:segments]  # each segment's mean gradient
        torch.sub(points[:-1], points[1:], out=means)
        for i, part in enumerate(means.split(self.layer_sizes, dim=-1)):
            part.div_(segment_rates[:, i : i + 1])
        # the span's mean: the segments' means weighted by their steps (each segment's mean is
        # weighted by its rates, which vary less within a segment than over the span)
        shares = torch.tensor([hi - lo for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])
        mean = (shares.float() / steps) @ means
        grad_sq = self._per_layer_sq(mean)
        weight_sq = self._per_layer_sq(end)
        update_sq = self._per_layer_sq(self.origin - end)
        mean_sq = grad_sq
        if segments >= 2:  # else a one-step span: its one gradient, no noise
            jumps = means[1:] - means[:-1]
            sigma_sq = self._per_layer_sq(jumps).mean(0) * (steps / segments) / 2.0
            mean_sq = grad_sq + sigma_sq * (1.0 - 1.0 / steps)
        mean_grad = [
            t.view(shape) for t, shape in zip(mean.split(self.sizes), self.shapes, strict=True)
        ]
        return IntervalStatistics(mean_grad, mean_sq, weight_sq, update_sq)

    def state_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "cuts": list(self.cuts),
            "origin": self.origin.clone(),
            "snapshots": self._points[: self.taken].clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first, self.cuts = int(state["first"]), list(state["cuts"])
        self.origin.copy_(state["origin"])
        self.taken = int(state["snapshots"].shape[0])
        self._points[: self.taken].copy_(state["snapshots"])
