"""The PyTorch deployment's networks from other families: the transformer's twin (same function,
same layers as the JAX network, the scheduler taking the environment's decisions on it), the
1-D CNN with BatchNorm (each norm in its convolution's agent), and `ganno torch-eval` on both."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from conftest import decisive_policy, inner_task  # noqa: E402
from test_torch_scheduler import (  # noqa: E402
    FEATURE_ATOL,
    H,
    K,
    _rates_per_decision,
    _views,
    jax_episode,
    make_policy,
    sgd,
    torch_episode,
)

from ganno.cli import main  # noqa: E402
from ganno.env import GannoEnv  # noqa: E402
from ganno.inner import episode_keys  # noqa: E402
from ganno.networks import layer_keys, make_network  # noqa: E402
from ganno.torch.networks import (  # noqa: E402
    TorchCNN1DBatchNorm,
    TorchTransformer,
    from_jax_params,
    layerwise_param_groups,
    make_torch_network,
    to_jax_params,
)

TINY = {"kind": "transformer", "d_model": 8, "heads": 2, "blocks": 1, "mlp_width": 16}


def _jax_params(spec, seed=0, scale=0.05):
    """A JAX network's initial parameters on 40-point inputs, every leaf moved by noise (so the
    norms' scales and shifts are not ones and zeros)."""
    params = jax.jit(make_network(spec, 10).init)(jax.random.PRNGKey(seed), jnp.zeros((1, 40)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda x: np.asarray(x) + scale * rng.normal(size=x.shape).astype(np.float32),
        params["params"],
    )


def test_the_transformer_twin_computes_the_jax_function_with_the_jax_layers():
    spec = {"kind": "transformer", "blocks": 2}  # two blocks: 10 layers
    params = _jax_params(spec)
    model = from_jax_params(make_torch_network(spec, (40,), 10), params)
    assert isinstance(model, TorchTransformer)
    x = np.random.default_rng(1).normal(size=(8, 40)).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, make_network(spec, 10).apply({"params": params}, x), atol=1e-5)
    back = to_jax_params(model)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)

    # one group per JAX layer, the same parameters (the norms with the layer they feed), in both
    # of layerwise_param_groups' orders
    groups = layerwise_param_groups(model)
    sizes = [sum(p.numel() for p in g["params"]) for g in groups]
    assert sizes == [sum(x.size for x in jax.tree.leaves(params[k])) for k in layer_keys(params)]
    names = [g["name"] for g in groups]
    blocks = [f"blocks.{b}.{m}" for b in (0, 1) for m in ("qkv", "out", "mlp_in", "mlp_out")]
    assert names == ["embed", *blocks, "head"]
    assert groups[0]["param_names"] == ["embed.weight", "embed.bias", "embed.position"]
    assert groups[1]["param_names"] == [f"blocks.0.qkv.{n}" for n in
                                        ("norm_weight", "norm_bias", "weight", "bias")]  # fmt: skip
    traced = layerwise_param_groups(model, example_input=torch.from_numpy(x))
    assert [g["param_names"] for g in traced] == [g["param_names"] for g in groups]

    with pytest.raises(ValueError, match="layer_1: parameters"):
        from_jax_params(
            make_torch_network(spec, (40,), 10), {**params, "layer_1": params["layer_2"]}
        )


def test_the_scheduler_on_the_transformer_takes_the_environments_decisions(dataset):
    """Same initial weights and minibatches: torch SGD + GannoScheduler on the twin and GannoEnv
    on the JAX transformer take the same decisions and see the same observations, whose
    statistics sum each layer's nested parameters (norms and position embeddings included)."""
    task = inner_task(dataset, make_network(TINY, 10))
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    assert env.num_agents == 6
    policy = make_policy(env, seed=0)  # its actions vary here
    key = jax.random.PRNGKey(9)
    _, data_key, _ = episode_keys(key)
    params0, _, views, rates, actions = jax_episode(env, policy, key, 0.1)
    model = from_jax_params(make_torch_network(TINY, (40,), 10), params0)
    sched = torch_episode(task, model, policy, data_key, 0.1, K * H, sgd)
    assert len(set(actions.ravel().tolist())) > 1, "vacuous test"
    np.testing.assert_allclose(_rates_per_decision(sched), rates, rtol=1e-5)
    np.testing.assert_allclose(_views(sched), views, rtol=0, atol=FEATURE_ATOL)


def test_the_batchnorm_cnn_has_the_cnns_agents_and_weights():
    """conv-BN-ReLU blocks then the head: three agents like the plain CNN, each BatchNorm's scale
    and shift with its convolution; the JAX CNN's weights copied in, fresh norms in eval mode
    (running mean 0, variance 1) compute the plain CNN's function up to BatchNorm's epsilon."""
    spec = {"kind": "cnn1d", "channels": [4, 8], "kernel_size": 5}
    model = make_torch_network({**spec, "batch_norm": True}, (40,), 10)
    assert isinstance(model, TorchCNN1DBatchNorm)
    groups = layerwise_param_groups(model)
    assert [(g["name"], g["param_names"]) for g in groups] == [
        *(
            (f"blocks.{i}.conv", [f"blocks.{i}.{n}" for n in
                                  ("conv.weight", "conv.bias", "norm.weight", "norm.bias")])
            for i in (0, 1)
        ),
        ("head", ["head.weight", "head.bias"]),
    ]  # fmt: skip
    traced = layerwise_param_groups(model, example_input=torch.zeros(2, 40))
    assert [g["param_names"] for g in traced] == [g["param_names"] for g in groups]

    params = _jax_params(spec)
    from_jax_params(model, params)
    plain = from_jax_params(make_torch_network(spec, (40,), 10), params)
    x = torch.randn(8, 40)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), plain(x).numpy(), rtol=1e-4, atol=1e-4)
    assert sorted(to_jax_params(model)) == ["layer_0", "layer_1", "layer_2"]  # the norms: torch's


def test_torch_eval_runs_the_batchnorm_cnn_and_the_transformer(tmp_path, monkeypatch, dataset):
    """`ganno torch-eval` with networks [cnn_bn, transformer]: every method on both, rows named
    torch_cnn_bn / torch_transformer, finite metrics, and plain SGD learning at a sane rate."""
    import yaml

    import ganno.data

    monkeypatch.setattr(ganno.data, "load_from_config", lambda config: dataset)
    config = {
        "task": {"network": {**TINY, "channels": [4, 8]}, "batch_size": 32},
        "env": {"steps_per_decision": 5, "num_decisions": 4},
        "torch_deployment": {
            "networks": ["cnn_bn", "transformer"],
            "methods": ["ganno", "sgd_constant", "sgd_cosine"],
            "lr0_exponents": [-1, 0],
            "seeds": [100],
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    from test_torch_eval import ENV_ENTRY  # the test config's env block as a policy records it

    decisive_policy(16, 5, env_entry=ENV_ENTRY).save(tmp_path / "policy")
    out = tmp_path / "deployment.csv"
    argv = ["torch-eval", "--config", str(tmp_path / "config.yaml"), "--quiet"]
    assert main([*argv, "--policy", str(tmp_path / "policy"), "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df["task"]) == {"torch_cnn_bn", "torch_transformer"}
    assert set(df["method"]) == {"ganno_ippo", "sgd_constant", "sgd_cosine"}
    assert len(df) == 2 * 2 * 3  # networks x lr0s (0.1, 1) x methods, one seed
    assert np.isfinite(df[["val_loss", "test_loss", "test_accuracy"]].to_numpy()).all()
    sgd_runs = df[(df["method"] == "sgd_constant") & (df["lr0"] == 0.1)]
    assert (~sgd_runs["diverged"]).all() and (sgd_runs["test_accuracy"] > 0.2).all()
