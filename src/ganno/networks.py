"""Inner networks: the networks whose layers the agents control.

Every parametrised layer is a top-level entry ``layer_{i}`` of the parameters (its kernel and bias
together), so agent ``i`` owns ``params["layer_{i}"]`` whatever the architecture. A layer's entry
may be a nested subtree: the transformer's weight layers carry the LayerNorm that normalises their
input (``{"norm": {scale, bias}, "dense": {kernel, bias}}``) and its token embedding the position
embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

#: LayerNorm's epsilon in the transformer (flax's default; the PyTorch twin uses the same).
LAYER_NORM_EPS = 1e-6


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


class PatchEmbedding(nn.Module):
    """Token embedding: each token (a patch of the input) through a dense layer, plus a learned
    position embedding per token (``position``: [tokens, d_model], normal with std 0.02)."""

    d_model: int

    @nn.compact
    def __call__(self, tokens: jnp.ndarray) -> jnp.ndarray:
        """tokens: [B, T, P] -> [B, T, d_model]."""
        position = self.param(
            "position", nn.initializers.normal(0.02), (tokens.shape[1], self.d_model)
        )
        return nn.Dense(self.d_model, name="dense")(tokens) + position


class NormDense(nn.Module):
    """LayerNorm, then a dense layer: one agent's layer, the norm's scale and shift set with the
    weights its output feeds (params ``{"norm": {scale, bias}, "dense": {kernel, bias}}``)."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="norm")(x)
        return nn.Dense(self.features, name="dense")(x)


class Transformer(nn.Module):
    """Small pre-LayerNorm transformer encoder classifier on a sequence cut into patches.

    The input, flattened, is cut into tokens of ``patch_size`` values (MNIST-1D's 40 points, 4 a
    patch: 10 tokens). Layers, one agent each: ``layer_0`` the token embedding (with the position
    embeddings); per block ``b``, ``layer_{1+4b}`` the fused query-key-value projection (with the
    attention's LayerNorm), ``layer_{2+4b}`` the attention's output projection, ``layer_{3+4b}`` the
    MLP's first layer (with its LayerNorm), ``layer_{4+4b}`` its second; last, the head (with the
    final LayerNorm) on the mean over tokens. Each sub-block adds to the residual stream; the MLP
    uses the exact (erf) GELU. Dense ops and ``einsum`` only, so it batches well under ``vmap``.
    """

    num_classes: int
    d_model: int = 16
    heads: int = 2
    blocks: int = 1
    mlp_width: int = 32
    patch_size: int = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [B, *input_shape] -> logits [B, num_classes]."""
        batch = x.shape[0]
        x = x.reshape((batch, -1))
        if x.shape[1] % self.patch_size:
            raise ValueError(
                f"{x.shape[1]} input values do not cut into patches of {self.patch_size}"
            )
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")
        tokens = x.reshape((batch, -1, self.patch_size))
        length, head_dim = tokens.shape[1], self.d_model // self.heads
        h = PatchEmbedding(self.d_model, name="layer_0")(tokens)
        for b in range(self.blocks):
            first = 1 + 4 * b
            qkv = NormDense(3 * self.d_model, name=f"layer_{first}")(h)
            q, k, v = jnp.moveaxis(qkv.reshape(batch, length, 3, self.heads, head_dim), 2, 0)
            logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
            attended = jnp.einsum("bhqk,bkhd->bqhd", nn.softmax(logits, axis=-1), v)
            attended = attended.reshape(batch, length, self.d_model)
            h = h + nn.Dense(self.d_model, name=f"layer_{first + 1}")(attended)
            hidden = NormDense(self.mlp_width, name=f"layer_{first + 2}")(h)
            h = h + nn.Dense(self.d_model, name=f"layer_{first + 3}")(
                nn.gelu(hidden, approximate=False)
            )
        return NormDense(self.num_classes, name=f"layer_{1 + 4 * self.blocks}")(h.mean(axis=1))


#: The transformer's keys of a ``task.network`` block. The schema gives them no default, so that
#: configs without them keep their fingerprints: a key left out takes :class:`Transformer`'s.
TRANSFORMER_KEYS = ("d_model", "heads", "blocks", "mlp_width", "patch_size")


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
    if kind == "transformer":  # a key the spec leaves out takes the field's default
        sizes = {key: int(spec[key]) for key in TRANSFORMER_KEYS if key in spec}
        return Transformer(num_classes=num_classes, **sizes)
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp', 'cnn1d' or 'transformer'")


def layer_keys(params: Mapping[str, Any]) -> list[str]:
    """The layer names of ``params`` in depth order (``layer_0``, ``layer_1``, ...)."""
    keys = list(params)
    if not all(k.startswith("layer_") and k[6:].isdigit() for k in keys):
        raise ValueError(f"expected top-level parameter names layer_0..layer_N, got {keys}")
    return sorted(keys, key=lambda k: int(k[6:]))
