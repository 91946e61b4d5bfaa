"""The GANNO observation computed from PyTorch tensors, definition by definition as
:meth:`ganno.env.GannoEnv._observe` computes it from JAX arrays.

A *layer* is one agent: a list of tensors (a parameter group's weight and bias, say). Every
per-layer statistic is a sum over the layer's tensors, so any number of layers and any tensor
shapes work; the agent axis ``N`` is the number of layers. See :data:`ganno.env.FEATURE_NAMES`
for the meaning and scaling of the ``F = 16`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ganno.feature_names import FEATURE_NAMES

_F = {name: i for i, name in enumerate(FEATURE_NAMES)}
_TINY = 1e-30

#: One layer's tensors (weight, bias, ...); a network is a sequence of layers.
Layer = Sequence[torch.Tensor]


def log_feature(x: torch.Tensor) -> torch.Tensor:
    """Scaled log10 of a positive quantity: ``clip(log10(max(x, 1e-30)), -8, 8) / 4``."""
    return torch.clamp(torch.log10(torch.clamp(x, min=_TINY)), -8.0, 8.0) / 4.0


def log10_loss(loss: torch.Tensor) -> torch.Tensor:
    """``clip(log10(max(loss, 1e-30)), -8, 8)``, the environment's loss features."""
    return torch.clamp(torch.log10(torch.clamp(loss, min=_TINY)), -8.0, 8.0)


def _flat(layers: Sequence[Layer]) -> tuple[list[torch.Tensor], list[int]]:
    """The layers' tensors as float32 in one list, and each tensor's layer index."""
    tensors, owner = [], []
    for i, layer in enumerate(layers):
        for t in layer:
            t = t.detach()
            tensors.append(t if t.dtype == torch.float32 else t.float())
            owner.append(i)
    return tensors, owner


def per_layer(
    values: Sequence[torch.Tensor], owner: Sequence[int], num_layers: int
) -> torch.Tensor:
    """Per-tensor scalars ``values`` summed per layer (``owner[j]``: the layer of tensor ``j``):
    ``[N]`` float32."""
    stacked = torch.stack([v.reshape(()) for v in values]).float().cpu()
    return torch.zeros(num_layers).index_add_(0, torch.as_tensor(owner), stacked)


def squared_norms(layers: Sequence[Layer]) -> torch.Tensor:
    """Every layer's squared L2 norm (summed over its tensors): ``[N]`` float32.

    One fused ``torch._foreach_norm`` over all tensors: no temporary of a tensor's size.
    """
    tensors, owner = _flat(layers)
    norms = torch._foreach_norm(tensors)
    return per_layer(torch._foreach_mul(norms, norms), owner, len(layers))


def dots(layers: Sequence[Layer], others: Sequence[Layer]) -> torch.Tensor:
    """Every layer's inner product with the matching layer of ``others``: ``[N]`` float32."""
    a, owner = _flat(layers)
    b, _ = _flat(others)
    products = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b, strict=True)]
    return per_layer(products, owner, len(layers))


def squared_distances(layers: Sequence[Layer], others: Sequence[Layer]) -> torch.Tensor:
    """Every layer's squared L2 distance to the matching layer of ``others``: ``[N]`` float32
    (from the difference, not ``|a|^2 + |b|^2 - 2 a.b``, which cancels for small updates)."""
    a, owner = _flat(layers)
    b, _ = _flat(others)
    norms = torch._foreach_norm(torch._foreach_sub(a, b))
    return per_layer(torch._foreach_mul(norms, norms), owner, len(layers))


def position_features(num_layers: int) -> torch.Tensor:
    """``[N, 3]``: relative depth ``i / (N - 1)``, is-first and is-last flags."""
    n = int(num_layers)
    index = torch.arange(n)
    depth = index.float() / max(n - 1, 1)
    return torch.stack([depth, (index == 0).float(), (index == n - 1).float()], dim=1)


def _scalar(x: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32).detach().reshape(())


@torch.no_grad()
def layer_statistics(
    *,
    mean_grad: Sequence[Layer],
    prev_mean_grad: Sequence[Layer],
    params: Sequence[Layer] | None = None,
    prev_params: Sequence[Layer] | None = None,
    prev_grad_sq: torch.Tensor | None = None,
    weight_sq: torch.Tensor | None = None,
    update_sq: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The per-layer ``[N]`` sums the observation reads: ``grad_sq`` (squared norm of the mean
    gradient), ``prev_grad_sq`` (of the previous one), ``dot`` (their inner product),
    ``weight_sq`` and ``update_sq`` (squared norms of the weights ``params`` and of their change
    from ``prev_params``). A caller that already has ``prev_grad_sq`` (the last observation's
    ``grad_sq``), ``weight_sq`` or ``update_sq`` passes them instead and spares their pass over
    the tensors."""
    return {
        "grad_sq": squared_norms(mean_grad),
        "prev_grad_sq": squared_norms(prev_mean_grad) if prev_grad_sq is None else prev_grad_sq,
        "dot": dots(mean_grad, prev_mean_grad),
        "weight_sq": squared_norms(params) if weight_sq is None else weight_sq,
        "update_sq": squared_distances(params, prev_params) if update_sq is None else update_sq,
    }


@torch.no_grad()
def observe(
    *,
    mean_grad: Sequence[Layer],
    prev_mean_grad: Sequence[Layer],
    params: Sequence[Layer],
    prev_params: Sequence[Layer],
    **columns,
) -> torch.Tensor:
    """The ``[N, F]`` float32 observation of :meth:`ganno.env.GannoEnv._observe`.

    ``mean_grad``: each layer's mean gradient over the interval; ``params`` / ``prev_params``:
    the weights after / before the interval; ``columns``: the other arguments of
    :func:`observe_statistics` (``learning_rates``, ``mean_sq_grad_norm``, the losses,
    ``step_count``, ``num_decisions``, ``prev_log2_factor``).
    """
    stats = layer_statistics(
        mean_grad=mean_grad, prev_mean_grad=prev_mean_grad, params=params, prev_params=prev_params
    )
    return observe_statistics(stats, **columns)


@torch.no_grad()
def observe_statistics(
    stats: dict[str, torch.Tensor],
    *,
    learning_rates: torch.Tensor,
    mean_sq_grad_norm: torch.Tensor,
    train_loss: torch.Tensor | float,
    val_loss: torch.Tensor | float,
    prev_train_loss: torch.Tensor | float,
    prev_val_loss: torch.Tensor | float,
    step_count: int,
    num_decisions: int,
    prev_log2_factor: torch.Tensor,
) -> torch.Tensor:
    """:func:`observe` from the :func:`layer_statistics` ``stats`` (no pass over the tensors).

    ``mean_sq_grad_norm`` ``[N]``: the interval's mean of each layer's squared minibatch-gradient
    norm; ``train_loss``: the interval's mean minibatch loss; ``step_count``: decisions taken,
    including the one that started the interval; ``prev_log2_factor`` ``[N]``: log2 of the factor
    each layer's rate got at that decision.
    """
    grad_sq, weight_sq, update_sq = stats["grad_sq"], stats["weight_sq"], stats["update_sq"]
    n = grad_sq.shape[0]
    noise = torch.clamp(torch.as_tensor(mean_sq_grad_norm, dtype=torch.float32) - grad_sq, min=0.0)
    cosine = stats["dot"] / torch.sqrt(torch.clamp(grad_sq * stats["prev_grad_sq"], min=_TINY))
    log_train, log_val = log10_loss(_scalar(train_loss)), log10_loss(_scalar(val_loss))
    ones = torch.ones(n)
    lrs = torch.as_tensor(learning_rates, dtype=torch.float32).reshape(n)
    layer = torch.stack(
        [
            log_feature(lrs),
            log_feature(torch.sqrt(grad_sq)),
            log_feature(torch.sqrt(weight_sq)),
            log_feature(torch.sqrt(update_sq)),
            log_feature(torch.sqrt(update_sq / torch.clamp(weight_sq, min=_TINY))),
            torch.clamp(cosine, -1.0, 1.0),
            log_feature(torch.sqrt(noise / torch.clamp(grad_sq, min=_TINY))),
            log_train * ones,
            log_val * ones,
            torch.clamp(log_train - log10_loss(_scalar(prev_train_loss)), -5.0, 5.0) * ones,
            torch.clamp(log_val - log10_loss(_scalar(prev_val_loss)), -5.0, 5.0) * ones,
            (float(step_count) / float(num_decisions)) * ones,
            torch.as_tensor(prev_log2_factor, dtype=torch.float32).reshape(n),
        ],
        dim=1,
    )
    view = torch.cat([layer, position_features(n)], dim=1)
    return torch.nan_to_num(view, nan=0.0, posinf=8.0, neginf=-8.0)


@torch.no_grad()
def initial_observation(
    *,
    learning_rates: torch.Tensor,
    grads: Sequence[Layer],
    params: Sequence[Layer],
    train_loss: torch.Tensor | float,
    val_loss: torch.Tensor | float,
    num_decisions: int,
) -> torch.Tensor:
    """The first observation of an episode (:meth:`ganno.env.GannoEnv.reset_with_lr0`): the
    gradient of the first minibatch at the initial weights, no update yet, cosine and noise 0."""
    n = len(params)
    view = observe(
        learning_rates=learning_rates,
        mean_grad=grads,
        prev_mean_grad=grads,
        mean_sq_grad_norm=squared_norms(grads),
        params=params,
        prev_params=params,
        train_loss=train_loss,
        val_loss=val_loss,
        prev_train_loss=train_loss,
        prev_val_loss=val_loss,
        step_count=0,
        num_decisions=num_decisions,
        prev_log2_factor=torch.zeros(n),
    )
    view[:, _F["grad_cosine"]] = 0.0
    view[:, _F["log_grad_noise"]] = 0.0
    return view
