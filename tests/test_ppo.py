"""PPO's pure pieces against numbers computed by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from ganno.systems.ppo import (
    categorical_entropy,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    normalize,
)


def test_gae_matches_hand_computation_with_terminal_in_the_middle():
    # 4 steps, gamma 0.9, lambda 0.8; the episode ends with step 1 (discount 0, done).
    rewards = jnp.array([1.0, 2.0, 3.0, 4.0])
    values = jnp.array([0.5, 1.0, 1.5, 2.0])
    discounts = jnp.array([1.0, 0.0, 1.0, 1.0])
    dones = jnp.array([False, True, False, False])
    advantages, targets = compute_gae(rewards, values, discounts, dones, jnp.array(2.5), 0.9, 0.8)
    # t=3: 4 + .9*2.5 - 2 = 4.25
    # t=2: 3 + .9*2 - 1.5 = 3.3;  3.3 + .72*4.25 = 6.36
    # t=1: 2 - 1 = 1 (terminal: no bootstrap, no carry-over from the next episode)
    # t=0: 1 + .9*1 - .5 = 1.4;   1.4 + .72*1 = 2.12
    np.testing.assert_allclose(advantages, [2.12, 1.0, 6.36, 4.25], rtol=1e-6)
    np.testing.assert_allclose(targets, [2.62, 2.0, 7.86, 6.25], rtol=1e-6)


def test_gae_cuts_at_done_even_with_discount_one_and_keeps_agent_axis():
    # A time-limit end (discount 1 but done) must not bootstrap from the next episode's value.
    rewards = jnp.ones((3, 2))
    values = jnp.zeros((3, 2))
    discounts = jnp.ones((3, 2))
    dones = jnp.array([[False, False], [True, True], [False, False]])
    advantages, _ = compute_gae(rewards, values, discounts, dones, jnp.full((2,), 10.0), 1.0, 1.0)
    np.testing.assert_allclose(advantages, [[2, 2], [1, 1], [11, 11]])


def test_clipped_policy_loss_by_hand():
    clip = 0.2
    ratios = jnp.array([1.5, 0.5, 1.1, 0.5])
    adv = jnp.array([1.0, 1.0, -2.0, -1.0])
    old = jnp.zeros(4)
    # per sample min(r*A, clip(r)*A):
    #   1.5, +1: min(1.5, 1.2) = 1.2   (clipped)
    #   0.5, +1: min(0.5, 0.8) = 0.5   (unclipped)
    #   1.1, -2: min(-2.2, -2.2) = -2.2 (inside the clip range)
    #   0.5, -1: min(-0.5, -0.8) = -0.8 (clipped)
    expected = -(1.2 + 0.5 - 2.2 - 0.8) / 4
    loss = clipped_policy_loss(jnp.log(ratios), old, adv, clip)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_clipped_value_loss_by_hand():
    old = jnp.array([0.0, 1.0])
    new = jnp.array([1.0, 1.1])
    targets = jnp.array([2.0, 0.0])
    # sample 0: (1-2)^2 = 1, clipped value 0.2 -> (0.2-2)^2 = 3.24 -> max 3.24
    # sample 1: (1.1)^2 = 1.21, clipped value 1.1 (inside) -> 1.21
    expected = 0.5 * (3.24 + 1.21) / 2
    assert float(clipped_value_loss(new, old, targets, 0.2)) == pytest.approx(expected, rel=1e-6)


def test_entropy_and_normalize():
    assert float(categorical_entropy(jnp.zeros((3, 4)))) == pytest.approx(np.log(4), rel=1e-6)
    assert float(categorical_entropy(jnp.array([[0.0, -1e9]]))) == pytest.approx(0.0, abs=1e-6)
    z = normalize(jnp.array([1.0, 2.0, 3.0, 6.0]))
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(z.std()) == pytest.approx(1.0, rel=1e-5)
