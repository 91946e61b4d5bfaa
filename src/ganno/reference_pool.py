"""Reference runs trained once per meta-training run and reused (``meta_train.reference_pool``).

The relative rewards compare the agents' run with a reference run: the base schedule (constant
SGD in the compound mode) from the same initial weights, minibatches, lr0 and gradient factor. It
does not depend on the agents' actions, only on the episode, yet a fresh episode trains it
alongside: 35-50% of meta-training's time in two profiles (``benchmarks/measured/``).
With a pool, each task (each member of a task family) gets ``P`` episodes drawn from the
meta-training seed; their reference curves (:meth:`ganno.env.GannoEnv.reference_curve`) are
trained once, before the first update, and every meta-training episode is one of them, drawn
uniformly, its reward reading the reference's metric from the table. An episode of the pool
plays exactly as the same episode without the pool (tested); what changes is that meta-training
sees ``P`` initial conditions per task instead of a fresh one for every episode.

A reference trained alone costs more per episode than one trained in the agents' compiled step,
so on 2 CPU cores a pool of 128 a member costs about what it saves; the default config has none
(docs/choices.md, "Whether meta-training reuses its reference runs").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ganno.parallel import sharded_vmap

#: the pool's keys: ``fold_in(fold_in(PRNGKey(seed), POOL_STREAM), member)``, a stream of their own
POOL_STREAM = 0x900D
#: episodes whose reference runs train side by side (vmapped, split over the host's devices as
#: meta-training's environments are) while the pool is filled
POOL_BATCH = 64


class ReferencePool(NamedTuple):
    """The episodes of a pool and their reference curves."""

    keys: jax.Array  # [P, 2] the episodes' keys
    metrics: jnp.ndarray  # [P, num_decisions + 1] the reference's validation metric per decision


def fill_pool(env: Any, size: int, key: jax.Array) -> ReferencePool:
    """``size`` episodes of ``env`` drawn from ``key`` and their reference curves, trained
    :data:`POOL_BATCH` at a time over every device."""
    keys = jax.random.split(key, int(size))
    return ReferencePool(keys, sharded_vmap(env.reference_curve, keys, chunk_size=POOL_BATCH))


def with_pool(env: Any, size: int, key: jax.Array) -> Any:
    """A copy of ``env`` that plays the episodes of a pool of ``size`` (``env`` itself where its
    reward has no reference run)."""
    if not env.has_reference_run:
        return env
    pooled = copy.copy(env)
    pooled.reference_pool = fill_pool(env, size, key)
    return pooled


def pooled_envs(env: Any, cfg: Mapping[str, Any], seed: int) -> Any:
    """What meta-training plays: ``env`` (one environment, or a family's list) with the pool of
    ``cfg['meta_train']['reference_pool']`` episodes per member, drawn from ``seed``; ``env``
    unchanged without that key."""
    size = cfg["meta_train"].get("reference_pool")
    if size is None:
        return env
    stream = jax.random.fold_in(jax.random.PRNGKey(int(seed)), POOL_STREAM)
    members = list(env) if isinstance(env, list | tuple) else [env]
    pooled = [with_pool(m, size, jax.random.fold_in(stream, i)) for i, m in enumerate(members)]
    return pooled if isinstance(env, list | tuple) else pooled[0]
