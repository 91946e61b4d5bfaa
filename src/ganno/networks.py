"""Inner networks: the networks whose layers the agents control.

Every parametrised layer is a top-level entry ``layer_{i}`` of the parameters (its kernel and bias
together), so agent ``i`` owns ``params["layer_{i}"]`` whatever the architecture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    """ReLU MLP with ``depth`` parametrised layers: ``depth - 1`` hidden layers of ``width``."""

    depth: int
    width: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [B, *input_shape] -> logits [B, num_classes]."""
        x = x.reshape((x.shape[0], -1))
        for i in range(self.depth - 1):
            x = nn.relu(nn.Dense(self.width, name=f"layer_{i}")(x))
        return nn.Dense(self.num_classes, name=f"layer_{self.depth - 1}")(x)


class Conv1D(nn.Module):
    """1-D convolution, 'SAME' padding, as patches times a kernel (one ``einsum``).

    Same parameters and outputs as ``flax.linen.Conv`` (kernel [k, in, out], bias [out]), but under
    ``vmap`` over parameters (many training runs at once) it batches as a matrix product, where
    ``lax.conv`` becomes a grouped convolution that XLA's CPU backend runs orders of magnitude
    slower (a robustness grid of the 1-D CNN did not finish in 20 minutes).
    """

    features: int
    kernel_size: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [B, L, C] -> [B, ceil(L / stride), features]."""
        k, length = self.kernel_size, x.shape[1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        out_len = -(-length // self.stride)
        pad = max((out_len - 1) * self.stride + k - length, 0)
        x = jnp.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
        index = jnp.arange(out_len)[:, None] * self.stride + jnp.arange(k)[None, :]
        return jnp.einsum("bokc,kcf->bof", x[:, index, :], kernel) + bias


class CNN1D(nn.Module):
    """Small 1-D CNN: strided ReLU convolutions, then a dense classifier head."""

    channels: Sequence[int]
    kernel_size: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [B, L] (or [B, L, C]) -> logits [B, num_classes]."""
        if x.ndim == 2:
            x = x[..., None]
        for i, c in enumerate(self.channels):
            x = nn.relu(Conv1D(c, self.kernel_size, stride=2, name=f"layer_{i}")(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, name=f"layer_{len(self.channels)}")(x)


def make_network(spec: Mapping[str, Any], num_classes: int) -> nn.Module:
    """Build the network a config's ``task.network`` block describes."""
    kind = spec.get("kind", "mlp")
    if kind == "mlp":
        return MLP(
            depth=int(spec.get("depth", 3)),
            width=int(spec.get("width", 64)),
            num_classes=num_classes,
        )
    if kind == "cnn1d":
        return CNN1D(
            channels=tuple(int(c) for c in spec.get("channels", (16, 32))),
            kernel_size=int(spec.get("kernel_size", 5)),
            num_classes=num_classes,
        )
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp' or 'cnn1d'")


def layer_keys(params: Mapping[str, Any]) -> list[str]:
    """The layer names of ``params`` in depth order (``layer_0``, ``layer_1``, ...)."""
    keys = list(params)
    if not all(k.startswith("layer_") and k[6:].isdigit() for k in keys):
        raise ValueError(f"expected top-level parameter names layer_0..layer_N, got {keys}")
    return sorted(keys, key=lambda k: int(k[6:]))
