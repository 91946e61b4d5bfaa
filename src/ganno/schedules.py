"""The handcrafted schedules' shapes, in one place: their constants, their optax form
(:func:`optax_unit_schedule`: what the baselines train with, and the environment's and
``ganno_sgd``'s base schedule; optax is imported only when asked for) and their NumPy form, with
no JAX (the PyTorch scheduler's base schedule, the report's figures), and the baselines' names.

:func:`unit_schedule` gives the peak-1 shape of a handcrafted SGD schedule at every step of a
budget, as :func:`optax_unit_schedule` computes it: the same float32
operations in the same order, with the cosines and powers taken in float64 and rounded, so a
value is within a few float32 ulps of 1 of optax's (XLA's float32 ``cos`` is not correctly
rounded; ``tests/test_torch_actor.py`` checks every schedule against optax's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

WARMUP_FRACTION = 0.05
STEP_BOUNDARIES = (0.5, 0.75)  # fractions of the budget where the step schedule multiplies by 0.1
STEP_FACTOR = 0.1
EXPONENTIAL_FINAL_FRACTION = 1e-2
_F = np.float32


def _cos(x: np.ndarray) -> np.ndarray:
    return np.cos(x.astype(np.float64)).astype(_F)


def _cosine_decay(count: np.ndarray, decay_steps: int) -> np.ndarray:
    """``optax.cosine_decay_schedule(1.0, decay_steps)``."""
    count = np.minimum(count.astype(_F), _F(decay_steps))
    return _F(0.5) * (_F(1.0) + _cos(_F(np.pi) * count / _F(decay_steps)))


def _step(t: np.ndarray, n: int) -> np.ndarray:
    value = np.ones(t.shape, _F)
    for boundary in sorted({int(f * n) for f in STEP_BOUNDARIES}):  # a dict in optax
        value = np.where(t < boundary, value, _F(STEP_FACTOR) * value)
    return value


def _exponential(t: np.ndarray, n: int) -> np.ndarray:
    power = t.astype(_F) / _F(n)
    rate = np.float64(_F(EXPONENTIAL_FINAL_FRACTION))
    return np.where(t <= 0, _F(1.0), np.power(rate, power.astype(np.float64)).astype(_F))


def _warmup_cosine(t: np.ndarray, n: int) -> np.ndarray:
    warmup = max(1, int(round(WARMUP_FRACTION * n)))
    frac = _F(1.0) - np.clip(t, 0, warmup).astype(_F) / _F(warmup)
    rising = _F(-1.0) * frac + _F(1.0)
    return np.where(t < warmup, rising, _cosine_decay(t - warmup, n - warmup))


def _onecycle(t: np.ndarray, n: int) -> np.ndarray:
    """``optax.cosine_onecycle_schedule(n, 1.0)``: from 1/25 up to 1 over the first 30% of the
    steps, then down to 1/(25 x 1e4), cosine-interpolated."""
    bounds = np.array([0, int(0.3 * n), n])
    values = np.cumprod(np.array([1.0 / 25.0, 25.0, 1.0 / (25.0 * 1e4)], _F), dtype=_F)
    out = np.zeros(t.shape, _F)
    for i in range(2):
        inside = (bounds[i] <= t) & (t < bounds[i + 1])
        pct = (t - bounds[i]).astype(_F) / _F(max(bounds[i + 1] - bounds[i], 1))
        start, end = values[i], values[i + 1]
        interp = end + (start - end) / _F(2.0) * (_cos(_F(np.pi) * pct) + _F(1.0))
        out = np.where(inside, interp, out)
    return np.where(bounds[-1] <= t, values[-1], out).astype(_F)


_SCHEDULES = {
    "sgd_constant": lambda t, n: np.ones(t.shape, _F),
    "sgd_step": _step,
    "sgd_exponential": _exponential,
    "sgd_cosine": lambda t, n: _cosine_decay(t, n),
    "sgd_warmup_cosine": _warmup_cosine,
    "sgd_onecycle": _onecycle,
}
#: The schedules an anchored mode can use as its base (``ganno.env_settings.BASE_SCHEDULES``).
BASE_SCHEDULES = tuple(_SCHEDULES)


def unit_schedule(name: str, total_steps: int, steps: np.ndarray | None = None) -> np.ndarray:
    """The schedule ``name``'s peak-1 value over a budget of ``total_steps`` at ``steps`` (default
    ``0 .. total_steps - 1``), float32."""
    if name not in _SCHEDULES:
        raise ValueError(f"unknown base schedule {name!r}; choose one of {BASE_SCHEDULES}")
    at = np.arange(int(total_steps)) if steps is None else np.asarray(steps)
    return _SCHEDULES[name](at, int(total_steps)).astype(_F)


#: The baselines (``ganno.baselines.METHODS``, trained there with optax), in registry order: the
#: report orders and colours methods by it without importing JAX (a test holds the two equal).
METHOD_NAMES: tuple[str, ...] = (
    "sgd_constant",
    "sgd_step",
    "sgd_exponential",
    "sgd_cosine",
    "sgd_warmup_cosine",
    "sgd_onecycle",
    "adam",
    "adam_cosine",
    "schedule_free_sgd",
    "schedule_free_adamw",
    "prodigy",
    "dadapt_adamw",
    "mechanic",
    "dog",
    "layerwise_dog",
    "cocob",
    "sgd_hd",
)
#: The baselines whose rate is lr0 times a fixed shape (``ganno.baselines.unit_schedule`` not
#: None); the rest are learning-rate-free or adaptive.
SCHEDULED_METHODS: frozenset[str] = frozenset({*BASE_SCHEDULES, "adam", "adam_cosine"})


def warmup_steps(total_steps: int) -> int:
    """The warmup of ``sgd_warmup_cosine`` (and the schedule-free methods): 5% of the budget."""
    return max(1, int(round(WARMUP_FRACTION * total_steps)))


def optax_unit_schedule(method: str, total_steps: int) -> Any:
    """``method``'s peak-1 shape over ``total_steps`` as an optax schedule (traceable), None for
    a method without a fixed shape (not in :data:`SCHEDULED_METHODS`)."""
    import optax

    n = int(total_steps)
    shapes = {
        "sgd_constant": lambda: optax.constant_schedule(1.0),
        "sgd_step": lambda: optax.piecewise_constant_schedule(
            1.0, {int(f * n): STEP_FACTOR for f in STEP_BOUNDARIES}
        ),
        "sgd_exponential": lambda: optax.exponential_decay(1.0, n, EXPONENTIAL_FINAL_FRACTION),
        "sgd_cosine": lambda: optax.cosine_decay_schedule(1.0, n),
        "sgd_warmup_cosine": lambda: optax.warmup_cosine_decay_schedule(
            0.0, 1.0, warmup_steps(n), n
        ),
        "sgd_onecycle": lambda: optax.cosine_onecycle_schedule(n, 1.0),
        "adam": lambda: optax.constant_schedule(1.0),
        "adam_cosine": lambda: optax.cosine_decay_schedule(1.0, n),
    }
    shape = shapes.get(method)
    return None if shape is None else shape()
