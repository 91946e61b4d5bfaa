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


#: Modules whose weights make one layer, one agent: the layers a network's depth counts (a
#: MultiheadAttention's own parameters are its input projection, the fused QKV weight or the
#: separate query, key and value weights; its ``out_proj`` is a Linear of its own; an RNN module
#: is one layer with all its stacked layers).
WEIGHT_LAYERS: tuple[type[torch.nn.Module], ...] = (
    torch.nn.Linear,
    torch.nn.Bilinear,
    torch.nn.modules.conv._ConvNd,  # Conv1d/2d/3d, ConvTranspose1d/2d/3d (and their Lazy forms)
    torch.nn.Embedding,
    torch.nn.EmbeddingBag,
    torch.nn.MultiheadAttention,
    torch.nn.RNNBase,  # RNN, LSTM, GRU
    torch.nn.RNNCellBase,
)
#: Normalisation layers: they join the group of the weight layer before them.
NORM_LAYERS: tuple[type[torch.nn.Module], ...] = (
    torch.nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    torch.nn.LayerNorm,
    torch.nn.GroupNorm,
    *((torch.nn.RMSNorm,) if hasattr(torch.nn, "RMSNorm") else ()),
)
#: How :func:`layerwise_param_groups` makes the groups.
GROUPINGS = ("weight_layer", "module")


def _is_weight_layer(module: torch.nn.Module, params: Sequence[torch.Tensor]) -> bool:
    """A known weight layer, or a module that is not a normalisation layer and owns a matrix
    (a custom layer); norms and modules owning only vectors (scales, biases) are not."""
    if isinstance(module, WEIGHT_LAYERS):
        return True
    return not isinstance(module, NORM_LAYERS) and any(p.ndim >= 2 for p in params)


@torch.no_grad()
def _forward_order(model: torch.nn.Module, example_input: Any) -> dict[int, int]:
    """The position at which a forward pass on ``example_input`` first uses each parameter
    (``{id(parameter): position}``): every torch function's tensor arguments are read as the
    forward calls them (``torch.overrides.TorchFunctionMode``), so weights used outside their
    module's ``forward`` (MultiheadAttention's ``out_proj``) count where they are used. Run in
    eval mode (no BatchNorm statistics change), the modules' modes restored after."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_flatten

    ids = {id(p) for p in model.parameters()}
    order: dict[int, int] = {}

    class FirstUse(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            for arg in tree_flatten((args, kwargs or {}))[0]:
                if isinstance(arg, torch.Tensor) and id(arg) in ids and id(arg) not in order:
                    order[id(arg)] = len(order)
            return func(*args, **(kwargs or {}))

    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with FirstUse():
            inputs = example_input if isinstance(example_input, tuple) else (example_input,)
            model(*inputs)
    finally:
        for module, training in modes.items():
            module.training = training
    return order


def layerwise_param_groups(
    model: torch.nn.Module,
    *,
    by: str = "weight_layer",
    example_input: Any = None,
    **group_options: Any,
) -> list[dict[str, Any]]:
    """Optimiser parameter groups for :class:`ganno.torch.GannoScheduler`, one per layer of
    ``model``, in depth order: each agent of the policy sets one group's rate.

    ``by="weight_layer"`` (default): one group per weight layer (:data:`WEIGHT_LAYERS`: Linear,
    convolutions, embeddings, attention projections, RNNs; a module of another kind that owns a
    matrix), with its bias; every other trainable parameter (normalisation layers, a module's
    loose vectors) joins the group of the weight layer before it, or the first group if no
    weight layer comes before it. A conv-BN-ReLU-conv-BN-linear network gives three groups.
    ``by="module"``: one group per module that owns trainable parameters (a BatchNorm its own).

    The order is the modules' registration order (``model.named_modules()``), which is the
    forward order of most models; given ``example_input`` (a batch, or a tuple of arguments),
    it is the order in which a forward pass on it first uses each parameter, which also places
    a normalisation layer registered out of order (``torch.nn.TransformerEncoderLayer``
    registers ``norm1`` after ``linear2``) after the layer it follows in the computation.

    Each group is ``{"params": [...], "param_names": [...], "name": <its weight layer's path>,
    **group_options}``; a parameter shared by two modules is in the first group only.

    >>> optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.1)
    """
    if by not in GROUPINGS:
        raise ValueError(f"by={by!r}; choose one of {GROUPINGS}")
    owned, seen = [], set()
    for name, module in model.named_modules():
        params = [
            (f"{name}.{n}" if name else n, p)
            for n, p in module.named_parameters(recurse=False)
            if p.requires_grad and id(p) not in seen
        ]
        seen.update(id(p) for _, p in params)
        if params:
            layer = by == "module" or _is_weight_layer(module, [p for _, p in params])
            owned.append((name or "<root>", layer, params))
    if not owned:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    if example_input is not None:
        first_use = _forward_order(model, example_input)
        unused = len(first_use)  # never used: after the rest, in registration order
        owned.sort(key=lambda o: min(first_use.get(id(p), unused) for _, p in o[2]))
    groups: list[dict[str, Any]] = []
    before_first: list[tuple[str, torch.Tensor]] = []  # joins the first group
    for name, layer, params in owned:
        if layer:
            groups.append({"params": [], "param_names": [], "name": name, **group_options})
            params = before_first + params if len(groups) == 1 else params
        target = groups[-1] if groups else None
        if target is None:
            before_first.extend(params)
            continue
        target["params"].extend(p for _, p in params)
        target["param_names"].extend(n for n, _ in params)
    if not groups:  # no weight layer at all: one group
        names = [n for n, _ in before_first]
        groups = [{"params": [p for _, p in before_first], "param_names": names,
                   "name": owned[0][0], **group_options}]  # fmt: skip
    return groups


def describe_param_groups(
    param_groups: Sequence[Mapping[str, Any]], rates: Sequence[float] | None = None
) -> str:
    """One line per group (per agent): its index, name and parameters (names and shapes where
    the group records ``param_names``, shapes otherwise), and its rate if ``rates`` are given."""
    lines = []
    for i, group in enumerate(param_groups):
        params = list(group["params"])
        names = group.get("param_names") or [None] * len(params)
        tensors = ", ".join(
            (f"{n} " if n else "") + str(list(p.shape)) for n, p in zip(names, params, strict=True)
        )
        size = sum(p.numel() for p in params)
        head = f"agent {i}: {group.get('name', f'group {i}')}"
        rate = "" if rates is None else f", lr {rates[i]:.4g}"
        lines.append(f"{head} ({size:,} weights{rate}): {tensors}")
    return "\n".join(lines)
