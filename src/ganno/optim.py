"""Layerwise SGD as an optax transformation: a learning rate (momentum, weight decay) per layer.

The per-layer hyperparameters live in the optimiser state, so an agent changes them between steps
with ``state._replace(learning_rates=...)`` and the update stays a pure, jittable function.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ganno.env_settings import DOG_EPS
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


class DogStepSize(NamedTuple):
    """DoG's step size ("Distance over Gradients", Ivgi et al. 2023) as a state carried through an
    inner run: ``eta_t = max_{s<=t} ||x_s - x_0|| / sqrt(sum_{s<=t} ||g_s||^2)`` over all weights
    at once, with ``eta_0 = lr0`` (``optax.contrib.dog``'s ``init_step=("learning_rate", lr0)``,
    the ``dog`` baseline's rule). The anchored action modes scale it instead of lr0 when
    ``env.base_step_size`` is ``dog``."""

    origin: Any  # x_0, like the parameters
    max_distance: jnp.ndarray  # []
    grad_sq_sum: jnp.ndarray  # []
    first: jnp.ndarray  # [] bool: the next update is the run's first
    lr0: jnp.ndarray  # [] the first step size
    eta: jnp.ndarray  # [] the step size of the last update (lr0 before any)


def dog_step_size_init(params: Any, lr0: jnp.ndarray) -> DogStepSize:
    lr0 = jnp.asarray(lr0, jnp.float32)
    zero = jnp.zeros((), jnp.float32)
    return DogStepSize(params, zero, zero, jnp.ones((), bool), lr0, lr0)


def dog_step_size_update(state: DogStepSize, params: Any, grads: Any) -> DogStepSize:
    """The step size of the update about to be taken from ``params`` with gradient ``grads``."""
    distance = optax.tree.norm(jax.tree.map(jnp.subtract, state.origin, params))
    max_distance = jnp.maximum(state.max_distance, distance)
    grad_sq_sum = state.grad_sq_sum + optax.tree.norm(grads, squared=True)
    eta = jnp.where(state.first, state.lr0, max_distance / jnp.sqrt(grad_sq_sum + DOG_EPS))
    return DogStepSize(state.origin, max_distance, grad_sq_sum, jnp.zeros((), bool), state.lr0, eta)
