"""Gradient statistics of large tensors from a fixed random sample of their entries.

Every step of an interval, :class:`ganno.torch.GannoScheduler` adds each gradient to the
interval's sum and accumulates its squared norm; on a CPU that is as much memory traffic as the
SGD update itself, and most of the scheduler's cost (docs/torch.md, "Overhead"). The features read
only sums over a layer's entries (squared norms of the mean gradient and of each minibatch
gradient, the inner product of two consecutive mean gradients), so a tensor of ``n`` entries can
be read on a simple random sample of ``m`` of them, in blocks of :data:`BLOCK` consecutive entries
(memory is read in cache lines), each sum estimated as ``n / m`` times the sample's. The sampled
entries are scaled by ``sqrt(n / m)`` as they are gathered, so every sum over them is already the
estimate and the features are computed as for whole tensors.

The sample is the same at every step (drawn once from a fixed seed), so the mean gradient, the
per-step norms and the cosine between intervals are all over the same entries. Tensors of at most
``sample_above`` entries (every tensor of the networks the agents are meta-trained on) are read
whole: their features are exactly the environment's. What sampling costs in accuracy is measured
in ``tests/test_torch_sampling.py`` and docs/torch.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: Entries per sampled block: 64 float32 = 4 cache lines.
BLOCK = 64
#: Default: tensors above this many entries are sampled.
SAMPLE_ABOVE = 100_000
#: Default fraction of a sampled tensor's blocks read.
SAMPLE_FRACTION = 1.0 / 16.0


class GradientSample:
    """Which entries of each tensor the gradient statistics read (all, or a fixed random sample
    of blocks) and the views that read them.

    ``fraction``: the share of a large tensor's blocks read (``None`` or 1: every tensor whole);
    ``above``: tensors of more entries than this are sampled; ``seed``: the sample's seed.
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        *,
        fraction: float | None = SAMPLE_FRACTION,
        above: int = SAMPLE_ABOVE,
        seed: int = 0,
    ) -> None:
        if fraction is not None and not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"gradient_sample {fraction}: a fraction in (0, 1], or None")
        if int(above) < BLOCK:
            raise ValueError(f"sample_above {above}: at least {BLOCK} entries")
        self.fraction = None if fraction is None or float(fraction) == 1.0 else float(fraction)
        self.above = int(above)
        generator = torch.Generator().manual_seed(int(seed))
        #: per tensor: the sampled blocks' indices (None: read whole) and sqrt(n / m)
        self.blocks: list[torch.Tensor | None] = []
        self.scales: list[float] = []
        #: per tensor: the shape of what :meth:`read` returns
        self.shapes: list[torch.Size] = []
        for t in tensors:
            n = t.numel()
            if self.fraction is None or n <= self.above:
                self.blocks.append(None)
                self.scales.append(1.0)
                self.shapes.append(t.shape)
                continue
            whole = n // BLOCK  # the tail of fewer than BLOCK entries is never sampled
            count = max(1, math.ceil(self.fraction * whole))
            index = torch.randperm(whole, generator=generator)[:count].sort().values
            self.blocks.append(index.to(t.device))
            self.scales.append(math.sqrt(n / (count * BLOCK)))
            self.shapes.append(torch.Size((count, BLOCK)))

        #: the tensors read whole, and those read on a sample (indices)
        self.whole = [j for j, b in enumerate(self.blocks) if b is None]
        self.sampled_tensors = [j for j, b in enumerate(self.blocks) if b is not None]

    @property
    def sampled(self) -> int:
        """How many tensors are read on a sample."""
        return len(self.sampled_tensors)

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor's slice of the 1-D ``flat`` (every read entry, tensor after tensor),
        shaped as :meth:`read` returns it: where :meth:`read_into` writes."""
        out, offset = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(flat[offset : offset + n].view(shape))
            offset += n
        return out

    def entry_scales(self) -> torch.Tensor:
        """``[entries]``: each read entry's ``sqrt(n / m)`` (1 where a tensor is read whole)."""
        return torch.cat(
            [
                torch.full((math.prod(shape),), scale, dtype=torch.float32)
                for shape, scale in zip(self.shapes, self.scales, strict=True)
            ]
        )

    def read_into(self, tensors: Sequence[torch.Tensor], views: Sequence[torch.Tensor]) -> None:
        """Each tensor's read entries, unscaled, into ``views`` (:meth:`views`, float32): one copy
        of the tensors read whole, one gather per sampled tensor into its slice. A handful of
        calls whatever the number of tensors (each call into torch costs tens of microseconds
        in a training loop; docs/torch.md, "Overhead")."""
        if self.whole:
            torch._foreach_copy_([views[j] for j in self.whole], [tensors[j] for j in self.whole])
        for j in self.sampled_tensors:
            t, index, out = tensors[j], self.blocks[j], views[j]
            count = t.numel() // BLOCK  # the tail of fewer than BLOCK entries is never read
            if t.is_contiguous():
                blocks = t.as_strided((count, BLOCK), (BLOCK, 1))
            else:
                blocks = t.reshape(-1)[: count * BLOCK].view(count, BLOCK)
            if t.dtype == out.dtype:
                torch.index_select(blocks, 0, index, out=out)
            else:
                out.copy_(blocks.index_select(0, index))

    def read(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each tensor whole, or its sampled blocks ``[m / BLOCK, BLOCK]`` scaled by ``sqrt(n/m)``
        (a new tensor of the sample's size)."""
        out = []
        for t, index, scale in zip(tensors, self.blocks, self.scales, strict=True):
            if index is None:
                out.append(t)
                continue
            flat = t.reshape(-1)[: (t.numel() // BLOCK) * BLOCK].view(-1, BLOCK)
            out.append(flat.index_select(0, index).mul_(scale))
        return out


class WindowSums:
    """The gradient window's sums, each tensor's gradient (as ``sample`` reads it) and its
    squared entries, added with a handful of calls a step whatever the number of tensors.

    On a CPU the scheduler's per-step cost is mostly calls, not arithmetic: right after the
    backward pass every call into torch pays cold caches, tens of microseconds on the workloads
    of ``benchmarks/torch_scheduler_overhead.py``, and one add, norm and fused square-add per
    tensor cost more than the loop's optimiser step on a 1.33M-parameter MLP. Here each step's
    read entries go into one flat staging row (one copy of the tensors read whole, one gather per
    sampled tensor into its slice), and one ``addcmul_`` over ``[ones; g] x [g; g]`` adds the
    gradients to the sums' row 0 and their squares to row 1. The sampled tensors' sums are kept
    unscaled and scaled at :meth:`finish`, once per interval (``sqrt(n / m)`` and ``n / m``).

    The sums are double-buffered: :meth:`finish` returns the interval's mean gradient as views of
    one buffer, which stay valid (as the scheduler's last mean gradient) while the next interval
    adds into the other (:meth:`next_interval`). Tensors on several devices get a flat buffer per
    device. Memory: six float32 copies of the entries read (the staging row and its row of ones,
    two buffers of sums and squares), 1/16 of a large tensor's by default.
    """

    def __init__(self, sample: GradientSample, tensors: Sequence[torch.Tensor]) -> None:
        self.sample = sample
        sizes = [math.prod(shape) for shape in sample.shapes]
        devices = list(dict.fromkeys(t.device for t in tensors))
        self._offsets: list[tuple[int, int]] = [(0, 0)] * len(tensors)  # (device, offset)
        stages, sums = [], ([], [])
        for d, device in enumerate(devices):
            members = [j for j, t in enumerate(tensors) if t.device == device]
            total, offset = sum(sizes[j] for j in members), 0
            for j in members:
                self._offsets[j] = (d, offset)
                offset += sizes[j]
            stage = torch.empty(2, total, dtype=torch.float32, device=device)
            stage[0] = 1.0
            stages.append(stage)
            for buffers in sums:
                buffers.append(torch.zeros(2, total, dtype=torch.float32, device=device))
        self._stages = stages
        self._sums = sums
        self._current = 0
        #: per tensor: its slice of the staging row, shaped as ``sample`` reads it
        self._staged = [self._view(stages, j, 1) for j in range(len(tensors))]
        self._sampled = sample.sampled_tensors

    def _view(self, buffers: Sequence[torch.Tensor], j: int, row: int) -> torch.Tensor:
        d, offset = self._offsets[j]
        shape = self.sample.shapes[j]
        return buffers[d][row, offset : offset + math.prod(shape)].view(shape)

    def add(self, grads: Sequence[torch.Tensor]) -> None:
        """Stage this step's gradients (one per tensor) and add them to the sums."""
        self.sample.read_into(grads, self._staged)
        for stage, sums in zip(self._stages, self._sums[self._current], strict=True):
            sums.addcmul_(stage, stage[1].expand_as(stage))

    def staged_norms(self) -> list[torch.Tensor]:
        """The staged step's per-tensor gradient norms, as ``sample.read`` would give them."""
        norms = list(torch._foreach_norm(self._staged))  # a tuple in some releases
        for j in self._sampled:
            norms[j] = norms[j] * self.sample.scales[j]
        return norms

    def finish(self, count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The interval's mean gradient over its ``count`` steps read (per tensor, as ``sample``
        reads it: views of the current buffer, scaled) and each tensor's sum of squared
        minibatch-gradient norms (scalars)."""
        sums = self._sums[self._current]
        for buffer in sums:
            buffer[0].div_(float(count))
        for j in self._sampled:
            scale = self.sample.scales[j]
            self._view(sums, j, 0).mul_(scale)
            self._view(sums, j, 1).mul_(scale * scale)
        mean_grad = [self._view(sums, j, 0) for j in range(len(self._staged))]
        return mean_grad, [self._view(sums, j, 1).sum() for j in range(len(self._staged))]

    def next_interval(self) -> None:
        """Add from now on into the other buffer, zeroed (:meth:`finish`'s views stay valid)."""
        self._current = 1 - self._current
        for buffer in self._sums[self._current]:
            buffer.zero_()

    def reset(self) -> None:
        """Both buffers zeroed, as before any step."""
        for buffers in self._sums:
            for buffer in buffers:
                buffer.zero_()

    def state(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The sums so far, scaled as ``sample.read`` reads: each tensor's gradient sum (new
        tensors) and sum of squared norms (scalars)."""
        sums, grad_sum, squares = self._sums[self._current], [], []
        for j, scale in enumerate(self.sample.scales):
            grad_sum.append(self._view(sums, j, 0) * scale)
            squares.append(self._view(sums, j, 1).sum() * (scale * scale))
        return grad_sum, squares

    def load(self, grad_sum: Sequence[torch.Tensor], squares: Sequence[float]) -> None:
        """Restore :meth:`state` into the current buffer (a tensor's sum of squares goes to its
        first entry: only the sums are read)."""
        sums = self._sums[self._current]
        for buffer in sums:
            buffer.zero_()
        for j, (g, scale) in enumerate(zip(grad_sum, self.sample.scales, strict=True)):
            self._view(sums, j, 0).copy_(g).div_(scale)
            self._view(sums, j, 1).view(-1)[:1].fill_(float(squares[j]) / (scale * scale))
