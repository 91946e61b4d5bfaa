"""The decision protocol (ganno.protocol) gives the same numbers on every array kind the three
players use: NumPy (the PyTorch scheduler's planned rates), PyTorch and JAX."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from ganno.protocol import after_decision, anchored_rates, gradient_start, interval_end

torch = pytest.importorskip("torch")
KINDS = {"numpy": np.asarray, "torch": torch.tensor, "jax": jnp.asarray}
BOUNDS, SCALE_BOUNDS = (1e-6, 10.0), (1e-3, 1e3)


def _f32(kind, values):
    return KINDS[kind](np.asarray(values, np.float32))


@pytest.mark.parametrize("mode", ["compound", "anchored", "anchored_compound"])
def test_a_decision_moves_rates_or_multipliers_alike_on_every_array_kind(mode):
    factors, rates, scale = [2.0, 0.5, 2.0], [8.0, 1e-6, 0.1], [600.0, 1.0, 1.0]
    out = {
        kind: [
            np.asarray(x)
            for x in after_decision(
                mode, *(_f32(kind, v) for v in (factors, rates, scale)), BOUNDS, SCALE_BOUNDS
            )
        ]
        for kind in KINDS
    }
    for kind in KINDS:
        np.testing.assert_array_equal(out[kind][0], out["numpy"][0])
        np.testing.assert_array_equal(out[kind][1], out["numpy"][1])
    new_rates, new_scale = out["numpy"]
    if mode == "compound":  # the rates compound within lr_bounds; the multiplier stays
        np.testing.assert_allclose(new_rates, [10.0, 1e-6, 0.2], rtol=1e-6)
        np.testing.assert_array_equal(new_scale, scale)
    else:  # the rates wait for the base schedule; the multiplier moves
        np.testing.assert_array_equal(new_rates, np.float32(rates))
        expected = factors if mode == "anchored" else [1000.0, 0.5, 2.0]
        np.testing.assert_array_equal(new_scale, np.float32(expected))


def test_the_anchored_rate_is_capped_and_broadcasts_over_an_interval():
    unit = np.float32([1.0, 0.5])[:, None]  # two steps of the base schedule's shape
    scale = np.float32([1.0, 40.0, 1000.0])[None, :]
    rates = anchored_rates(np.float32(0.1), unit, scale, 10.0)
    np.testing.assert_allclose(rates, [[0.1, 4.0, 10.0], [0.05, 2.0, 10.0]], rtol=1e-6)
    assert rates.dtype == np.float32
    for kind in ("torch", "jax"):
        got = anchored_rates(0.1, _f32(kind, unit), _f32(kind, scale), 10.0)
        np.testing.assert_array_equal(np.asarray(got), rates)


def test_decisions_spread_over_any_training_length():
    assert [interval_end(d, 1000, 40) for d in (0, 1, 39, 40)] == [0, 25, 975, 1000]
    assert gradient_start(2, 1000, 40, None) == 25  # the whole interval
    assert gradient_start(2, 1000, 40, 10) == 40  # its last 10 steps
    assert gradient_start(2, 1000, 40, 100) == 25  # never before the interval starts
    traced = gradient_start(jnp.int32(2), 1000, 40, 10, jnp.maximum)
    assert int(traced) == 40
