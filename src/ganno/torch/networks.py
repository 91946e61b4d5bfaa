"""PyTorch twins of :mod:`ganno.networks` (same architecture, same parameter layout up to
transposition) and the one-parameter-group-per-layer helper the scheduler needs.

:func:`from_jax_params` copies a flax parameter tree into a twin, so a PyTorch run can start from
exactly the initial weights of a JAX episode (used by the equivalence tests and by
``ganno torch-eval``, whose seeds then mean the same initial weights as the JAX evaluation's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _flax_dense_init(lin: torch.nn.Linear) -> None:
    """flax ``Dense`` defaults: LeCun normal (truncated at 2 std, variance-corrected), zero bias."""
    std = math.sqrt(1.0 / lin.in_features) / 0.87962566103423978
    torch.nn.init.trunc_normal_(lin.weight, std=std, a=-2 * std, b=2 * std)
    torch.nn.init.zeros_(lin.bias)


class TorchMLP(torch.nn.Module):
    """ReLU MLP like :class:`ganno.networks.MLP`: ``depth`` Linear layers, ``depth - 1`` hidden
    layers of ``width`` units; inputs are flattened."""

    def __init__(self, in_features: int, depth: int, width: int, num_classes: int):
        super().__init__()
        sizes = [int(in_features)] + [int(width)] * (int(depth) - 1) + [int(num_classes)]
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        for lin in self.layers:
            _flax_dense_init(lin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for lin in self.layers[:-1]:
            x = F.relu(lin(x))
        return self.layers[-1](x)


class TorchCNN1D(torch.nn.Module):
    """Small 1-D CNN like :class:`ganno.networks.CNN1D`: stride-2 'SAME' ReLU convolutions, then
    a dense head. Inputs ``[B, L]`` (one channel) or ``[B, L, C]`` (channels last, as in JAX)."""

    def __init__(
        self,
        length: int,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 5,
        num_classes: int = 10,
        stride: int = 2,
    ):
        super().__init__()
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.convs = torch.nn.ModuleList()
        self.pads: list[tuple[int, int]] = []
        c_in, length = int(in_channels), int(length)
        for c in channels:
            out_len = -(-length // self.stride)
            pad = max((out_len - 1) * self.stride + self.kernel_size - length, 0)
            self.pads.append((pad // 2, pad - pad // 2))
            conv = torch.nn.Conv1d(c_in, int(c), self.kernel_size, stride=self.stride)
            std = math.sqrt(1.0 / (c_in * self.kernel_size))  # lecun_normal, fan_in = k * c_in
            torch.nn.init.trunc_normal_(
                conv.weight,
                std=std / 0.87962566103423978,
                a=-2 * std / 0.87962566103423978,
                b=2 * std / 0.87962566103423978,
            )
            torch.nn.init.zeros_(conv.bias)
            self.convs.append(conv)
            c_in, length = int(c), out_len
        self.head = torch.nn.Linear(c_in * length, int(num_classes))
        _flax_dense_init(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x[:, None, :]
        else:  # [B, L, C] -> [B, C, L]
            x = x.transpose(1, 2)
        for conv, pad in zip(self.convs, self.pads, strict=True):
            x = F.relu(conv(F.pad(x, pad)))
        # flatten length-major, channels fastest, like the JAX network's [B, L, C] reshape
        return self.head(x.transpose(1, 2).reshape(x.shape[0], -1))

    def layers(self) -> list[torch.nn.Module]:
        return [*self.convs, self.head]


def make_torch_network(
    spec: Mapping[str, Any], input_shape: Sequence[int], num_classes: int
) -> torch.nn.Module:
    """The PyTorch twin of ``ganno.networks.make_network(spec, num_classes)`` for inputs of
    ``input_shape`` (one example, e.g. ``(40,)`` for MNIST-1D)."""
    kind = spec.get("kind", "mlp")
    if kind == "mlp":
        return TorchMLP(
            int(np.prod(input_shape)),
            int(spec.get("depth", 3)),
            int(spec.get("width", 64)),
            num_classes,
        )
    if kind == "cnn1d":
        length = int(input_shape[0])
        in_channels = int(input_shape[1]) if len(input_shape) > 1 else 1
        return TorchCNN1D(
            length,
            in_channels,
            tuple(int(c) for c in spec.get("channels", (16, 32))),
            int(spec.get("kernel_size", 5)),
            num_classes,
        )
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp' or 'cnn1d'")


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    if isinstance(model, TorchMLP):
        return list(model.layers)
    if isinstance(model, TorchCNN1D):
        return model.layers()
    raise TypeError(f"no JAX parameter layout is known for {type(model).__name__}")


@torch.no_grad()
def from_jax_params(model: torch.nn.Module, params: Mapping[str, Any]) -> torch.nn.Module:
    """Copy flax parameters ``{layer_i: {kernel, bias}}`` into a :class:`TorchMLP` or
    :class:`TorchCNN1D` (Dense kernels ``[in, out]`` -> ``[out, in]``; Conv1D kernels
    ``[k, in, out]`` -> ``[out, in, k]``); returns the model."""
    from ganno.networks import layer_keys

    keys = layer_keys(params)
    layers = _layers(model)
    if len(keys) != len(layers):
        raise ValueError(f"{len(keys)} JAX layers for a model of {len(layers)} layers")
    for key, layer in zip(keys, layers, strict=True):
        kernel = np.array(params[key]["kernel"], np.float32)
        weight = kernel.T if kernel.ndim == 2 else kernel.transpose(2, 1, 0)
        if tuple(weight.shape) != tuple(layer.weight.shape):
            raise ValueError(
                f"{key}: kernel {kernel.shape} does not fit {tuple(layer.weight.shape)}"
            )
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        layer.bias.copy_(torch.from_numpy(np.array(params[key]["bias"], np.float32)))
    return model


def to_jax_params(model: torch.nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of :func:`from_jax_params`: numpy ``{layer_i: {kernel, bias}}``."""
    out = {}
    for i, layer in enumerate(_layers(model)):
        w = layer.weight.detach().cpu().numpy()
        kernel = w.T if w.ndim == 2 else w.transpose(2, 1, 0)
        out[f"layer_{i}"] = {"kernel": kernel.copy(), "bias": layer.bias.detach().cpu().numpy()}
    return out


def layerwise_param_groups(model: torch.nn.Module, **group_options: Any) -> list[dict[str, Any]]:
    """One optimiser parameter group per parametrised layer of ``model``, in depth (registration)
    order: every module that owns trainable parameters directly (a Linear's or Conv's weight and
    bias together) gives one group ``{"params": [...], "name": <module path>, **group_options}``.

    >>> optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.1)
    """
    groups = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            groups.append({"params": params, "name": name or "<root>", **group_options})
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return groups
