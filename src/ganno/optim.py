"""Layerwise SGD as an optax transformation: a learning rate (momentum, weight decay) per layer.

The per-layer hyperparameters live in the optimiser state, so an agent changes them between steps
with ``state._replace(learning_rates=...)`` and the update stays a pure, jittable function.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ganno.networks import layer_keys


class LayerwiseSGDState(NamedTuple):
    learning_rates: jnp.ndarray  # [N]
    momentum: jnp.ndarray  # [N]
    weight_decay: jnp.ndarray  # [N]
    trace: Any  # momentum buffers shaped like the parameters, or () when momentum is off


def layerwise_sgd(
    learning_rate: float = 1e-2,
    momentum: float | None = None,
    weight_decay: float | None = None,
) -> optax.GradientTransformation:
    """SGD whose step of layer ``i`` is ``-lr[i] * buf[i]``, ``buf = mu[i] * buf + g + wd[i] * w``.

    This is PyTorch's ``torch.optim.SGD`` rule (no dampening, no Nesterov) with one parameter group
    per layer. ``momentum=None`` / ``weight_decay=None`` leave those terms out of the compiled
    update altogether (pass 0.0 to keep them switchable at run time). Parameters must be a mapping
    of ``layer_{i}`` entries, as built by :mod:`ganno.networks`.
    """
    use_momentum = momentum is not None
    use_weight_decay = weight_decay is not None

    def init(params: Any) -> LayerwiseSGDState:
        n = len(layer_keys(params))
        full = lambda v: jnp.full((n,), 0.0 if v is None else v, jnp.float32)  # noqa: E731
        trace = jax.tree.map(jnp.zeros_like, params) if use_momentum else ()
        return LayerwiseSGDState(full(learning_rate), full(momentum), full(weight_decay), trace)

    def update(grads: Any, state: LayerwiseSGDState, params: Any = None):
        if use_weight_decay and params is None:
            raise ValueError("layerwise_sgd with weight decay needs the parameters in update()")
        updates, trace = {}, {}
        for i, key in enumerate(layer_keys(grads)):
            lr, mu, wd = state.learning_rates[i], state.momentum[i], state.weight_decay[i]
            g = grads[key]
            if use_weight_decay:
                g = jax.tree.map(lambda g_, p_, wd=wd: g_ + wd * p_, g, params[key])
            if use_momentum:
                g = jax.tree.map(lambda t_, g_, mu=mu: mu * t_ + g_, state.trace[key], g)
                trace[key] = g
            updates[key] = jax.tree.map(lambda g_, lr=lr: -lr * g_, g)
        return updates, state._replace(trace=trace if use_momentum else ())

    return optax.GradientTransformation(init, update)
