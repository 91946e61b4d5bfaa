"""Running observation normalisation (as in LHOPT and common PPO practice): every feature shifted
by its running mean, divided by its running standard deviation and clipped.

The statistics are per feature, pooled over every row an update collects (time x environments x
agents), combined with the parallel update of Chan et al.; they are part of the learner's state
(checkpointed with it) and saved with the policy, so that acting after meta-training
(:class:`ganno.policy.Policy`, ``run-policy``, :class:`ganno.torch.GannoScheduler`) normalises
exactly as the agents saw their observations in meta-training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

#: Normalised features are clipped to +- this (as in LHOPT and common PPO implementations).
CLIP = 5.0
_EPS = 1e-8


class RunningStats(NamedTuple):
    """Running mean and variance of the rows seen so far (``[F]`` each) and their count."""

    mean: jnp.ndarray
    var: jnp.ndarray
    count: jnp.ndarray  # [] float32


def initial_stats(rows: jnp.ndarray) -> RunningStats:
    """The statistics of ``rows`` (``[..., F]``)."""
    flat = rows.reshape(-1, rows.shape[-1])
    return RunningStats(flat.mean(0), flat.var(0), jnp.asarray(flat.shape[0], jnp.float32))


def update_stats(stats: RunningStats, rows: jnp.ndarray) -> RunningStats:
    """``stats`` combined with those of ``rows`` (``[..., F]``): the statistics of all rows."""
    batch = initial_stats(rows)
    total = stats.count + batch.count
    delta = batch.mean - stats.mean
    mean = stats.mean + delta * batch.count / total
    m2 = stats.var * stats.count + batch.var * batch.count
    var = (m2 + jnp.square(delta) * stats.count * batch.count / total) / total
    return RunningStats(mean, var, total)


def normalise(rows: jnp.ndarray, stats: RunningStats | Mapping[str, Any]) -> jnp.ndarray:
    """``clip((rows - mean) / sqrt(var + 1e-8), -5, 5)`` with ``stats`` (or a saved mapping with
    ``mean`` and ``var``)."""
    mean, var = (
        (stats.mean, stats.var)
        if isinstance(stats, RunningStats)
        else (
            jnp.asarray(stats["mean"], jnp.float32),
            jnp.asarray(stats["var"], jnp.float32),
        )
    )
    return jnp.clip((rows - mean) / jnp.sqrt(var + _EPS), -CLIP, CLIP).astype(rows.dtype)


def to_json(stats: RunningStats) -> dict[str, Any]:
    """The statistics as plain lists (saved with a policy: float32 values round-trip exactly)."""
    return {
        "mean": [float(v) for v in jnp.asarray(stats.mean)],
        "var": [float(v) for v in jnp.asarray(stats.var)],
        "count": float(stats.count),
        "clip": CLIP,
    }
