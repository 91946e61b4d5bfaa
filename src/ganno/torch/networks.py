"""PyTorch twins of :mod:`ganno.networks` (same architecture, same parameter layout up to
transposition) and the one-parameter-group-per-layer helper the scheduler needs.

:func:`from_jax_params` copies a flax parameter tree into a twin, so a PyTorch run can start from
exactly the initial weights of a JAX episode (used by the equivalence tests and by
``ganno torch-eval``, whose seeds then mean the same initial weights as the JAX evaluation's).
:class:`TorchCNN1DBatchNorm` (the 1-D CNN with BatchNorm after each convolution) has no JAX
network of its own: its convolutions and head take the plain CNN's weights, its norms start at
one and zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: flax's truncated LeCun normal draws from +-2 std and divides by this to keep the variance
_TRUNCATION_STD = 0.87962566103423978
#: LayerNorm's epsilon, as in ganno.networks.LAYER_NORM_EPS (flax's default)
LAYER_NORM_EPS = 1e-6


def _lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
    """flax's ``lecun_normal``: truncated at 2 std, variance-corrected, std ``1 / sqrt(fan_in)``."""
    std = math.sqrt(1.0 / fan_in) / _TRUNCATION_STD
    torch.nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _flax_dense_init(lin: torch.nn.Linear) -> None:
    """flax ``Dense`` defaults: LeCun normal (truncated at 2 std, variance-corrected), zero bias."""
    _lecun_normal_(lin.weight, lin.in_features)
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


def _same_padding(length: int, kernel_size: int, stride: int) -> tuple[tuple[int, int], int]:
    """'SAME' padding of a strided 1-D convolution as in :class:`ganno.networks.Conv1D`:
    ((left, right), output length)."""
    out_len = -(-length // stride)
    pad = max((out_len - 1) * stride + kernel_size - length, 0)
    return (pad // 2, pad - pad // 2), out_len


def _flax_conv(c_in: int, c_out: int, kernel_size: int, stride: int) -> torch.nn.Conv1d:
    """A ``Conv1d`` initialised like :class:`ganno.networks.Conv1D` (LeCun normal, zero bias)."""
    conv = torch.nn.Conv1d(c_in, c_out, kernel_size, stride=stride)
    _lecun_normal_(conv.weight, c_in * kernel_size)
    torch.nn.init.zeros_(conv.bias)
    return conv


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` (one channel) or ``[B, L, C]`` (channels last, as in JAX) -> ``[B, C, L]``."""
    return x[:, None, :] if x.ndim == 2 else x.transpose(1, 2)


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
            pad, length = _same_padding(length, self.kernel_size, self.stride)
            self.pads.append(pad)
            self.convs.append(_flax_conv(c_in, int(c), self.kernel_size, self.stride))
            c_in = int(c)
        self.head = torch.nn.Linear(c_in * length, int(num_classes))
        _flax_dense_init(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _channels_first(x)
        for conv, pad in zip(self.convs, self.pads, strict=True):
            x = F.relu(conv(F.pad(x, pad)))
        # flatten length-major, channels fastest, like the JAX network's [B, L, C] reshape
        return self.head(x.transpose(1, 2).reshape(x.shape[0], -1))

    def layers(self) -> list[torch.nn.Module]:
        return [*self.convs, self.head]


class ConvBatchNorm(torch.nn.Module):
    """A 'SAME' strided ``Conv1d`` and the ``BatchNorm1d`` of its output (before the ReLU)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, pad: tuple[int, int]):
        super().__init__()
        self.pad = pad
        self.conv = _flax_conv(c_in, c_out, kernel_size, stride)
        self.norm = torch.nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(F.pad(x, self.pad)))


class TorchCNN1DBatchNorm(torch.nn.Module):
    """:class:`TorchCNN1D` with BatchNorm after each convolution: conv-BN-ReLU blocks, then the
    dense head. Each block registers its norm after its convolution, so
    :func:`layerwise_param_groups` puts the norm's scale and shift in the convolution's group:
    as many agents as the plain CNN (the convolutions and the head)."""

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
        self.blocks = torch.nn.ModuleList()
        c_in, length = int(in_channels), int(length)
        for c in channels:
            pad, length = _same_padding(length, int(kernel_size), int(stride))
            self.blocks.append(ConvBatchNorm(c_in, int(c), int(kernel_size), int(stride), pad))
            c_in = int(c)
        self.head = torch.nn.Linear(c_in * length, int(num_classes))
        _flax_dense_init(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _channels_first(x)
        for block in self.blocks:
            x = F.relu(block(x))
        return self.head(x.transpose(1, 2).reshape(x.shape[0], -1))

    def layers(self) -> list[torch.nn.Module]:
        """The layers the JAX ``CNN1D`` has: the convolutions and the head (not the norms)."""
        return [*(block.conv for block in self.blocks), self.head]


class PatchEmbedding(torch.nn.Module):
    """:class:`ganno.networks.PatchEmbedding`: each patch through a dense map (``weight``
    ``[d_model, patch_size]``, ``bias``) plus a learned ``position`` embedding
    ``[tokens, d_model]``. It owns its parameters itself, so they are one group (one agent)."""

    #: its parameters' paths in the flax layer's subtree
    JAX_LAYOUT = {
        ("dense", "kernel"): "weight",
        ("dense", "bias"): "bias",
        ("position",): "position",
    }

    def __init__(self, patch_size: int, tokens: int, d_model: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(d_model, patch_size))
        self.bias = torch.nn.Parameter(torch.zeros(d_model))
        self.position = torch.nn.Parameter(torch.empty(tokens, d_model))
        _lecun_normal_(self.weight, patch_size)
        torch.nn.init.normal_(self.position, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.linear(tokens, self.weight, self.bias) + self.position


class NormLinear(torch.nn.Module):
    """:class:`ganno.networks.NormDense`: LayerNorm (``norm_weight``, ``norm_bias``), then a linear
    map (``weight`` ``[out, in]``, ``bias``). It owns its parameters itself, so the norm is in the
    group (the agent) of the weights it feeds, in either order of :func:`layerwise_param_groups`."""

    JAX_LAYOUT = {
        ("norm", "scale"): "norm_weight",
        ("norm", "bias"): "norm_bias",
        ("dense", "kernel"): "weight",
        ("dense", "bias"): "bias",
    }

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.norm_weight = torch.nn.Parameter(torch.ones(in_features))
        self.norm_bias = torch.nn.Parameter(torch.zeros(in_features))
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features))
        self.bias = torch.nn.Parameter(torch.zeros(out_features))
        _lecun_normal_(self.weight, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, x.shape[-1:], self.norm_weight, self.norm_bias, LAYER_NORM_EPS)
        return F.linear(x, self.weight, self.bias)


class TransformerBlock(torch.nn.Module):
    """One pre-LayerNorm block of :class:`ganno.networks.Transformer`: four weight layers, ``qkv``
    (the fused query-key-value projection with the attention's norm), ``out`` (the attention's
    output projection), ``mlp_in`` (with the MLP's norm) and ``mlp_out``."""

    def __init__(self, d_model: int, heads: int, mlp_width: int):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}")
        self.heads = heads
        self.qkv = NormLinear(d_model, 3 * d_model)
        self.out = torch.nn.Linear(d_model, d_model)
        self.mlp_in = NormLinear(d_model, mlp_width)
        self.mlp_out = torch.nn.Linear(mlp_width, d_model)
        _flax_dense_init(self.out)
        _flax_dense_init(self.mlp_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = h.shape
        head_dim = d_model // self.heads
        q, k, v = self.qkv(h).reshape(batch, length, 3, self.heads, head_dim).unbind(2)
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
        attended = torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v)
        h = h + self.out(attended.reshape(batch, length, d_model))
        return h + self.mlp_out(F.gelu(self.mlp_in(h)))


class TorchTransformer(torch.nn.Module):
    """The PyTorch twin of :class:`ganno.networks.Transformer`: the flattened input cut into
    patches of ``patch_size`` values, a patch embedding (with position embeddings),
    ``blocks`` pre-LayerNorm blocks, a LayerNorm and the dense head on the mean over tokens.
    Its :func:`layerwise_param_groups` are the JAX network's layers, 2 + 4 x blocks agents."""

    def __init__(
        self,
        input_size: int,
        d_model: int = 16,
        heads: int = 2,
        blocks: int = 1,
        mlp_width: int = 32,
        patch_size: int = 4,
        num_classes: int = 10,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"{input_size} input values do not cut into patches of {patch_size}")
        self.patch_size = int(patch_size)
        self.embed = PatchEmbedding(self.patch_size, input_size // self.patch_size, int(d_model))
        self.blocks = torch.nn.ModuleList(
            TransformerBlock(int(d_model), int(heads), int(mlp_width)) for _ in range(int(blocks))
        )
        self.head = NormLinear(int(d_model), int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.reshape(x.shape[0], -1, self.patch_size))
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(1))

    def layers(self) -> list[torch.nn.Module]:
        """The modules of the JAX network's ``layer_0 .. layer_N``, in order."""
        inner = [m for b in self.blocks for m in (b.qkv, b.out, b.mlp_in, b.mlp_out)]
        return [self.embed, *inner, self.head]


def make_torch_network(
    spec: Mapping[str, Any], input_shape: Sequence[int], num_classes: int
) -> torch.nn.Module:
    """The PyTorch twin of ``ganno.networks.make_network(spec, num_classes)`` for inputs of
    ``input_shape`` (one example, e.g. ``(40,)`` for MNIST-1D). ``batch_norm: true`` in a
    ``cnn1d`` spec (PyTorch only) gives :class:`TorchCNN1DBatchNorm`."""
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
        cnn = TorchCNN1DBatchNorm if spec.get("batch_norm", False) else TorchCNN1D
        return cnn(
            length,
            in_channels,
            tuple(int(c) for c in spec.get("channels", (16, 32))),
            int(spec.get("kernel_size", 5)),
            num_classes,
        )
    if kind == "transformer":  # a key the spec leaves out takes the constructor's default
        keys = ("d_model", "heads", "blocks", "mlp_width", "patch_size")
        sizes = {key: int(spec[key]) for key in keys if key in spec}
        return TorchTransformer(int(np.prod(input_shape)), num_classes=num_classes, **sizes)
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp', 'cnn1d' or 'transformer'")


#: A Linear's or Conv1d's parameters as paths in the flax layer's subtree (``{kernel, bias}``)
_DENSE_LAYOUT = {("kernel",): "weight", ("bias",): "bias"}


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    if isinstance(model, TorchMLP):
        return list(model.layers)
    if isinstance(model, TorchCNN1D | TorchCNN1DBatchNorm | TorchTransformer):
        return model.layers()
    raise TypeError(f"no JAX parameter layout is known for {type(model).__name__}")


def _to_torch(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    """A flax array as its PyTorch parameter: kernels transposed (Dense ``[in, out]`` ->
    ``[out, in]``, Conv1D ``[k, in, out]`` -> ``[out, in, k]``), other arrays as they are."""
    if path[-1] != "kernel":
        return value
    return value.T if value.ndim == 2 else value.transpose(2, 1, 0)


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = set()
    for key, value in tree.items():
        if isinstance(value, Mapping):
            paths |= _leaf_paths(value, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


@torch.no_grad()
def from_jax_params(model: torch.nn.Module, params: Mapping[str, Any]) -> torch.nn.Module:
    """Copy flax parameters (``{layer_i: {kernel, bias}}``, or a transformer's nested layers)
    into a :class:`TorchMLP`, :class:`TorchCNN1D`, :class:`TorchCNN1DBatchNorm` (its convolutions
    and head) or :class:`TorchTransformer`, kernels transposed (:func:`_to_torch`); returns the
    model."""
    from ganno.networks import layer_keys

    keys = layer_keys(params)
    layers = _layers(model)
    if len(keys) != len(layers):
        raise ValueError(f"{len(keys)} JAX layers for a model of {len(layers)} layers")
    for key, layer in zip(keys, layers, strict=True):
        layout = getattr(layer, "JAX_LAYOUT", _DENSE_LAYOUT)
        if _leaf_paths(params[key]) != set(layout):
            raise ValueError(
                f"{key}: parameters {sorted(_leaf_paths(params[key]))} do not fit "
                f"{type(layer).__name__} ({sorted(layout)})"
            )
        for path, name in layout.items():
            value = params[key]
            for part in path:
                value = value[part]
            array = np.array(value, np.float32)
            target = getattr(layer, name)
            weight = _to_torch(path, array)
            if tuple(weight.shape) != tuple(target.shape):
                raise ValueError(
                    f"{key}: {'/'.join(path)} {array.shape} does not fit {tuple(target.shape)}"
                )
            target.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
    return model


def to_jax_params(model: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """The inverse of :func:`from_jax_params`: numpy ``{layer_i: {kernel, bias}}`` (nested like
    the flax layers for the transformer; a BatchNorm CNN's norms are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for i, layer in enumerate(_layers(model)):
        tree: dict[str, Any] = {}
        for path, name in getattr(layer, "JAX_LAYOUT", _DENSE_LAYOUT).items():
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            # the transposes of _to_torch are their own inverses on the reversed shapes
            node[path[-1]] = _to_torch(path, getattr(layer, name).detach().cpu().numpy()).copy()
        out[f"layer_{i}"] = tree
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
