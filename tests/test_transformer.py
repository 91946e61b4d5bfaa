"""The transformer network kind: one layer (one agent) per weight layer with the LayerNorm that
feeds it, the agents' statistics and layerwise SGD over its nested layers, the environment on it,
and a baseline training it on MNIST-1D."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganno import baselines as B
from ganno.config import ConfigError, load_schema, validate
from ganno.data import load, prepare
from ganno.env import FEATURE_NAMES, make_env
from ganno.inner import make_task
from ganno.networks import TRANSFORMER_KEYS, Transformer, layer_keys, make_network
from ganno.observation import log_feature, per_layer
from ganno.optim import layerwise_sgd

#: one block of width 8: six layers, compiled in seconds
TINY = {"kind": "transformer", "d_model": 8, "heads": 2, "blocks": 1, "mlp_width": 16}


def _params(spec, key=0, scale=0.0):
    """Initial parameters on a 40-point input, every leaf moved by ``scale`` x noise (so that
    LayerNorm scales and biases are not all ones and zeros)."""
    init = jax.jit(make_network(spec, 10).init)
    params = init(jax.random.PRNGKey(key), jnp.zeros((1, 40)))["params"]
    rng = np.random.default_rng(key)
    return jax.tree.map(lambda x: x + scale * rng.normal(size=x.shape).astype(np.float32), params)


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist1d")
    prepare("mnist1d", root=root)
    return load("mnist1d", root=root, prepare_if_missing=False)


def test_one_layer_per_weight_layer_with_the_norm_it_feeds():
    """Defaults (d_model 16, 2 heads, 1 block, MLP 32, patches of 4): six layers, the token
    embedding with the position embeddings, per block QKV (one layer, with its LayerNorm),
    attention output, MLP in (with its LayerNorm), MLP out, then the head with the final norm."""
    params = _params({"kind": "transformer"})
    assert layer_keys(params) == [f"layer_{i}" for i in range(6)]
    shapes = jax.tree.map(jnp.shape, params)
    norm = {"scale": (16,), "bias": (16,)}
    assert shapes["layer_0"] == {"dense": {"kernel": (4, 16), "bias": (16,)}, "position": (10, 16)}
    assert shapes["layer_1"] == {"norm": norm, "dense": {"kernel": (16, 48), "bias": (48,)}}
    assert shapes["layer_2"] == {"kernel": (16, 16), "bias": (16,)}
    assert shapes["layer_3"] == {"norm": norm, "dense": {"kernel": (16, 32), "bias": (32,)}}
    assert shapes["layer_4"] == {"kernel": (32, 16), "bias": (16,)}
    assert shapes["layer_5"] == {"norm": norm, "dense": {"kernel": (16, 10), "bias": (10,)}}
    assert sum(x.size for x in jax.tree.leaves(params)) == 2666
    two = _params({"kind": "transformer", "blocks": 2})  # 2 + 4 x blocks
    assert layer_keys(two) == [f"layer_{i}" for i in range(10)]
    assert jax.tree.map(jnp.shape, two)["layer_5"] == shapes["layer_1"]  # the second block's QKV


def test_bad_shapes_and_keys_are_refused():
    x = jnp.zeros((1, 40))
    with pytest.raises(ValueError, match="40 input values do not cut into patches of 3"):
        make_network({"kind": "transformer", "patch_size": 3}, 10).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="d_model 16 is not a multiple of heads 3"):
        make_network({"kind": "transformer", "heads": 3}, 10).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ConfigError, match="task.network.heads"):
        validate({"task": {"network": {"kind": "transformer", "heads": 0}}})


def test_the_schema_states_the_defaults_without_filling_them():
    """No schema default (configs without the keys keep their resolved form and fingerprints);
    each description names the default the network takes."""
    assert not set(TRANSFORMER_KEYS) & set(validate({})["task"]["network"])
    properties = load_schema()["$defs"]["network"]["properties"]
    for key in TRANSFORMER_KEYS:
        assert "default" not in properties[key]
        stated = re.search(r"\(default (\d+)", properties[key]["description"]).group(1)
        assert int(stated) == getattr(Transformer(num_classes=10), key), key


def test_the_output_depends_on_patch_positions_not_on_other_examples():
    """The output depends on where a patch is (position embeddings), and every example is
    classified on its own (no mixing across the batch)."""
    apply = jax.jit(make_network(TINY, 10).apply)
    params = {"params": _params(TINY, scale=0.1)}
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 40))
    out = apply(params, x)
    swapped = x.reshape(4, 10, 4)[:, ::-1].reshape(4, 40)  # the patches in reverse order
    assert not np.allclose(apply(params, swapped), out, atol=1e-4)
    np.testing.assert_allclose(apply(params, x[1:3]), out[1:3], atol=1e-5)


def test_statistics_and_layerwise_sgd_cover_each_nested_layer():
    """per_layer sums every leaf of a layer's subtree (its norm's too), and layer i's rate moves
    every leaf of layer i and nothing else."""
    params = _params(TINY, scale=0.1)
    keys = layer_keys(params)
    expected = [sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(params[k])) for k in keys]
    np.testing.assert_allclose(per_layer(jnp.square, params), expected, rtol=1e-5)

    optimizer = layerwise_sgd(momentum=0.0)
    rates = jnp.arange(1, len(keys) + 1, dtype=jnp.float32) / 10
    state = optimizer.init(params)._replace(learning_rates=rates)
    updates, _ = optimizer.update(jax.tree.map(jnp.ones_like, params), state)
    for key, rate in zip(keys, rates.tolist(), strict=True):
        for leaf in jax.tree.leaves(updates[key]):
            np.testing.assert_allclose(leaf, -rate, rtol=1e-6)
    assert set(updates["layer_1"]) == {"norm", "dense"}


def test_the_environment_resets_and_steps_one_agent_per_weight_layer(mnist1d):
    cfg = validate(
        {
            "task": {"network": TINY, "batch_size": 32},
            "env": {"steps_per_decision": 5, "num_decisions": 3},
        }
    )
    env = make_env(cfg, mnist1d)
    assert env.num_agents == 6 and env.time_limit == 3
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state, ts = reset(jax.random.PRNGKey(0))
    view = np.asarray(ts.observation.agents_view)
    assert view.shape == (6, len(FEATURE_NAMES)) and np.isfinite(view).all()
    weight_norm = np.asarray(log_feature(jnp.sqrt(per_layer(jnp.square, state.params))))
    np.testing.assert_allclose(
        view[:, FEATURE_NAMES.index("log_weight_norm")], weight_norm, rtol=1e-5
    )
    assert len(set(np.round(weight_norm, 4).tolist())) == 6  # six different layers

    actions = jnp.array([0, 4, 2, 2, 4, 0])  # x0.5, x2, keep, keep, x2, x0.5
    steps = []
    while not bool(ts.last()):
        before = np.asarray(state.params["layer_1"]["norm"]["scale"])
        state, ts = step(state, actions)
        steps.append(ts)
        assert not np.allclose(np.asarray(state.params["layer_1"]["norm"]["scale"]), before)
    assert len(steps) == 3 and not bool(state.diverged)
    rates = np.asarray(state.opt_state.learning_rates)
    # the same base rate for every layer, each agent's multiplier after three decisions
    np.testing.assert_allclose(rates / rates[2], [0.125, 8, 1, 1, 8, 0.125], rtol=1e-5)
    for ts in steps:
        assert ts.reward.shape == (6,) and np.isfinite(np.asarray(ts.reward)).all()
        assert np.isfinite(np.asarray(ts.observation.agents_view)).all()


def test_sgd_cosine_trains_a_small_transformer_above_chance_on_mnist1d(mnist1d):
    """300 steps of batch 32 from lr0 0.5 (one block of width 16): well above chance (0.1)."""
    spec = {"kind": "transformer", "d_model": 16, "heads": 2, "blocks": 1, "mlp_width": 32}
    task = make_task(validate({"task": {"network": spec, "batch_size": 32}}), mnist1d)
    df = B.run_grid(
        task,
        "sgd_cosine",
        [0.5],
        [0],
        mnist1d.x_test,
        mnist1d.y_test,
        num_steps=300,
        eval_every=75,
        val_subset=500,
    )
    print(df[["lr0", "val_accuracy", "test_accuracy", "wall_time_s"]])
    assert not df["diverged"].any()
    assert (df["test_accuracy"] > 0.3).all() and (df["val_accuracy"] > 0.3).all()


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "transformer"},
        {"kind": "transformer", "blocks": 3},
        {"kind": "mlp", "depth": 5},
        {"kind": "cnn1d", "channels": [8, 8, 8]},
    ],
)
def test_the_cost_model_counts_the_layers_the_network_has(spec):
    """Q3's cost model (ganno.cost, no JAX) counts a network's agents as the network has them."""
    from ganno.cost import _num_layers

    assert _num_layers(spec) == len(layer_keys(_params(spec)))
