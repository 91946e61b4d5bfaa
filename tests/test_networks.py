"""Inner networks: layer naming and the 1-D convolution against flax's own."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganno.networks import CNN1D, MLP, Conv1D, layer_keys, make_network


@pytest.mark.parametrize("length,kernel,stride", [(40, 5, 2), (20, 5, 2), (9, 3, 1), (10, 4, 3)])
def test_conv1d_equals_flax_conv_same_padding(length, kernel, stride):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, length, 2))
    ours = Conv1D(4, kernel, stride=stride)
    params = ours.init(jax.random.PRNGKey(1), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero bias too
    theirs = nn.Conv(4, (kernel,), strides=(stride,), padding="SAME")
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-5)


def test_layers_are_named_in_depth_order():
    x = jnp.zeros((1, 40))
    mlp = MLP(depth=5, width=8, num_classes=10).init(jax.random.PRNGKey(0), x)["params"]
    assert layer_keys(mlp) == [f"layer_{i}" for i in range(5)]
    cnn = CNN1D(channels=(4, 8), kernel_size=5, num_classes=10).init(jax.random.PRNGKey(0), x)
    assert layer_keys(cnn["params"]) == ["layer_0", "layer_1", "layer_2"]
    assert cnn["params"]["layer_0"]["kernel"].shape == (5, 1, 4)
    with pytest.raises(ValueError, match="layer_0..layer_N"):
        layer_keys({"dense": {}})
    with pytest.raises(ValueError, match="unknown network kind"):
        make_network({"kind": "resnet"}, 10)
