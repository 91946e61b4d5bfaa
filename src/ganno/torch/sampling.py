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

    @property
    def sampled(self) -> int:
        """How many tensors are read on a sample."""
        return sum(b is not None for b in self.blocks)

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
