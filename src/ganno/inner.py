"""The inner task: a dataset, a network and a minibatch stream, shared by the environment,
the baselines and the benchmarks so that all of them train on exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ganno.networks import layer_keys, make_network


@dataclass(frozen=True, eq=False)
class InnerTask:
    """A classification task to train on; arrays are float32 features and int32 labels."""

    network: nn.Module
    x_train: jnp.ndarray  # [n_train, *input_shape]
    y_train: jnp.ndarray  # [n_train]
    x_val: jnp.ndarray  # [n_val, *input_shape]
    y_val: jnp.ndarray  # [n_val]
    batch_size: int
    num_classes: int

    def init_params(self, key: jax.Array) -> dict[str, Any]:
        return self.network.init(key, self.x_train[:1])["params"]

    def num_layers(self) -> int:
        return len(layer_keys(self.init_params(jax.random.PRNGKey(0))))

    def loss(self, params: Any, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        """Mean cross-entropy of a batch."""
        logits = self.network.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def loss_and_accuracy(self, params: Any, x: jnp.ndarray, y: jnp.ndarray):
        logits = self.network.apply({"params": params}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits.argmax(-1) == y).mean()

    def batch_indices(self, data_key: jax.Array, step: jnp.ndarray) -> jnp.ndarray:
        """Indices of the minibatch of inner step ``step``: drawn with replacement, a pure
        function of the episode's data key and the step, so any method can replay the stream."""
        n = self.x_train.shape[0]
        return jax.random.randint(jax.random.fold_in(data_key, step), (self.batch_size,), 0, n)

    def batch(self, data_key: jax.Array, step: jnp.ndarray):
        idx = self.batch_indices(data_key, step)
        return self.x_train[idx], self.y_train[idx]


def episode_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(init_key, data_key, lr0_key) of an episode: the environment and every baseline split the
    episode key the same way, so the same key means the same initial weights and batches."""
    init_key, data_key, lr0_key = jax.random.split(key, 3)
    return init_key, data_key, lr0_key


def make_task(config: Mapping[str, Any], dataset: Any | None = None) -> InnerTask:
    """Build the inner task of a validated config (loading/preparing its dataset if not given)."""
    if dataset is None:
        from ganno.data import load_from_config

        dataset = load_from_config(config)
    task_cfg = config["task"]
    return InnerTask(
        network=make_network(task_cfg["network"], dataset.num_classes),
        x_train=jnp.asarray(dataset.x_train, jnp.float32),
        y_train=jnp.asarray(dataset.y_train, jnp.int32),
        x_val=jnp.asarray(dataset.x_val, jnp.float32),
        y_val=jnp.asarray(dataset.y_val, jnp.int32),
        batch_size=int(task_cfg["batch_size"]),
        num_classes=int(dataset.num_classes),
    )


def train_steps(
    task: InnerTask,
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    data_key: jax.Array,
    start_step: int | jnp.ndarray,
    num_steps: int,
):
    """``num_steps`` plain optimiser steps on the task's minibatch stream (the reference loop).

    Returns (params, opt_state, losses [num_steps]).
    """
    grad_fn = jax.value_and_grad(task.loss)

    def one_step(carry, step):
        params, opt_state = carry
        x, y = task.batch(data_key, step)
        loss, grads = grad_fn(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    steps = start_step + jnp.arange(num_steps)
    (params, opt_state), losses = jax.lax.scan(one_step, (params, opt_state), steps)
    return params, opt_state, losses
