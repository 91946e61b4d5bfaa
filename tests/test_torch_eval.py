"""`ganno torch-eval` (ganno.torch.evaluation), its config block and the PyTorch example."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from ganno.cli import main  # noqa: E402
from ganno.config import ConfigError, load_config, validate  # noqa: E402
from ganno.results import COLUMNS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_torch_scheduler import make_policy  # noqa: E402

ENV_ENTRY = {
    "steps_per_decision": 5,
    "num_decisions": 4,
    "actions": [0.5, 0.8, 1.0, 1.25, 2.0],
    "lr_bounds": [1e-6, 10.0],
    "lr0_range": [1e-3, 0.1],
    "divergence_loss_ratio": 10.0,
}


# ------------------------------------------------------------------------------------ config
def test_shipped_configs_have_the_block_and_defaults_are_filled():
    block = validate({})["torch_deployment"]
    assert block["agent"] == "ippo" and block["networks"] == ["mlp", "cnn"]
    assert block["methods"] == ["ganno", "sgd_constant", "sgd_cosine", "schedule_free_sgd"]
    for name in ("config.yaml", "test.yaml"):
        cfg = load_config(ROOT / "config" / name)
        assert set(cfg["torch_deployment"]) == set(block)


@pytest.mark.parametrize(
    "bad,expected",
    [
        ({"enabled": True, "agent": "sac"}, "'torch_deployment.agent' = 'sac' is not an agent"),
        ({"networks": ["resnet"]}, "'torch_deployment.networks.0' = 'resnet' is not allowed"),
        ({"networks": []}, "'torch_deployment.networks' = [] has 0 item(s)"),
        ({"methods": ["adam"]}, "'torch_deployment.methods.0' = 'adam' is not allowed"),
        ({"lr0_exponents": [0]}, "'torch_deployment.lr0_exponents' = [0] has 1 item(s)"),
        ({"lr0_exponents": [1, -2]}, "'torch_deployment.lr0_exponents' = [1, -2] is inverted"),
        ({"lr0_per_decade": 0}, "'torch_deployment.lr0_per_decade' = 0 is out of range"),
        ({"seeds": [-1]}, "'torch_deployment.seeds.0' = -1 is out of range"),
        ({"sedes": [1]}, "unknown key 'sedes' (did you mean 'seeds'?)"),
    ],
)
def test_bad_values_of_the_block_name_key_and_value(bad, expected):
    with pytest.raises(ConfigError) as info:
        validate({"torch_deployment": bad})
    assert expected in str(info.value)


# ------------------------------------------------------------------------------------ torch-eval
def _tiny_config(tmp_path, **block):
    cfg = {
        "task": {
            "network": {"kind": "mlp", "depth": 3, "width": 16, "channels": [4, 8]},
            "batch_size": 32,
        },
        "env": {"steps_per_decision": 5, "num_decisions": 4},
        "torch_deployment": {
            "lr0_exponents": [-2, 2],
            "lr0_per_decade": 1,
            "seeds": [100, 101],
            **block,
        },
    }
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def synthetic_data(monkeypatch, dataset):
    import ganno.data
    import ganno.experiments

    monkeypatch.setattr(ganno.data, "load_from_config", lambda config: dataset)
    monkeypatch.setattr(ganno.experiments, "load_from_config", lambda config: dataset)
    return dataset


def test_torch_eval_writes_the_results_table(tmp_path, synthetic_data, capsys):
    config = _tiny_config(tmp_path)
    for seed in (0, 1):
        policy = make_policy(seed=seed, env_entry=ENV_ENTRY)
        policy = type(policy)(policy.params, {**policy.config, "seed": seed})
        policy.save(tmp_path / f"p{seed}")
    out = tmp_path / "results" / "torch" / "deployment.csv"
    code = main(
        [
            "torch-eval",
            "--config",
            str(config),
            "--policy",
            str(tmp_path / "p0"),
            "--policy",
            str(tmp_path / "p1"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    df = pd.read_csv(out)
    assert tuple(df.columns) == COLUMNS
    assert not list(out.parent.glob("*.tmp"))
    assert set(df["task"]) == {"torch_mlp", "torch_cnn"}
    methods = {"ganno_ippo", "sgd_constant", "sgd_cosine", "schedule_free_sgd"}
    assert set(df["method"]) == methods
    lr0s = [0.01, 0.1, 1.0, 10.0, 100.0]
    # 2 networks x 5 lr0s x 2 seeds x (2 policies + 3 baselines)
    assert len(df) == 2 * len(lr0s) * 2 * 5
    assert sorted(df["lr0"].unique()) == pytest.approx(lr0s)
    assert sorted(df.loc[df["method"] == "ganno_ippo", "meta_seed"].unique()) == [0, 1]
    assert set(df.loc[df["method"] != "ganno_ippo", "meta_seed"]) == {-1}
    # lr0 = 100 diverges for plain SGD; a diverged run still reports finite (last good) metrics
    big = df[(df["lr0"] == 100.0) & (df["method"] == "sgd_constant")]
    assert big["diverged"].all()
    assert np.isfinite(df[["val_loss", "test_loss", "test_accuracy"]].to_numpy()).all()
    small = df[(df["lr0"] == 0.1) & (df["method"] == "sgd_constant")]
    assert not small["diverged"].any() and (df["wall_time_s"] > 0).all()
    assert "runs" in capsys.readouterr().out


def test_seeds_mean_the_jax_evaluation_seeds(tmp_path, synthetic_data):
    """The torch_mlp row of a policy equals the JAX evaluation of the same policy (same initial
    weights, minibatches and decisions) up to float32 differences."""
    from ganno.experiments import run_policy
    from ganno.torch.evaluation import torch_deployment

    cfg = load_config(
        _tiny_config(
            tmp_path, networks=["mlp"], methods=["ganno"], lr0_exponents=[-1, 0], seeds=[100]
        )
    )
    cfg["evaluation"].update(lr0_exponents=[-1, 0], lr0_per_decade=1, seeds=[100])
    make_policy(seed=3, env_entry=ENV_ENTRY).save(tmp_path / "p")
    torch_rows = torch_deployment(cfg, [tmp_path / "p"])
    jax_rows, _ = run_policy(cfg, "train", tmp_path / "p", "ganno_ippo")
    merged = torch_rows.merge(jax_rows, on=["lr0", "seed"], suffixes=("_torch", "_jax"))
    assert len(merged) == 2
    for col in ("val_loss", "test_loss", "val_accuracy", "test_accuracy"):
        np.testing.assert_allclose(merged[f"{col}_torch"], merged[f"{col}_jax"], atol=1e-4)


def test_torch_eval_errors(tmp_path, synthetic_data, capsys):
    config = _tiny_config(tmp_path)
    out = tmp_path / "out.csv"
    assert main(["torch-eval", "--config", str(config), "--out", str(out)]) == 2
    assert "no policy was given" in capsys.readouterr().err
    assert (
        main(
            [
                "torch-eval",
                "--config",
                str(config),
                "--policy",
                str(tmp_path / "none"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "no saved policy" in capsys.readouterr().err
    make_policy(seed=0, action_dim=4, env_entry={**ENV_ENTRY, "actions": [0.5, 1, 2, 4]}).save(
        tmp_path / "other"
    )
    assert (
        main(
            [
                "torch-eval",
                "--config",
                str(config),
                "--policy",
                str(tmp_path / "other"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "differ from the factors" in capsys.readouterr().err
    assert not out.exists()
    baselines_only = _tiny_config(
        tmp_path, methods=["sgd_constant"], networks=["cnn"], lr0_exponents=[-1, -1], seeds=[100]
    )
    assert main(["torch-eval", "--config", str(baselines_only), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 1


# ------------------------------------------------------------------------------------ example
def test_the_example_runs_on_tiny_settings(tmp_path, dataset, capsys):
    path = ROOT / "examples" / "torch_training_loop.py"
    spec = importlib.util.spec_from_file_location("ganno_example_torch_loop", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    make_policy(seed=1, env_entry=ENV_ENTRY).save(tmp_path / "p")
    results = example.main(
        ["--policy", str(tmp_path / "p"), "--batch-size", "16", "--width", "16", "--lr0", "0.1"],
        dataset=dataset,
    )
    assert [r["network"] for r in results] == ["mlp", "cnn"]
    printed = capsys.readouterr().out
    n_test = len(dataset.y_test)
    factors = np.asarray(ENV_ENTRY["actions"])
    low, high = ENV_ENTRY["lr_bounds"]
    for r in results:
        # a fraction of the test examples, and the one the example printed
        assert r["test_accuracy"] * n_test == pytest.approx(round(r["test_accuracy"] * n_test))
        assert f"final test accuracy {r['test_accuracy']:.4f}" in printed
        rates = np.asarray(r["learning_rates"])
        assert len(rates) == ENV_ENTRY["num_decisions"] + 1
        # from --lr0, each decision multiplies a layer's rate by one of the policy's factors
        # (within the bounds), the first one included
        rates = np.vstack([np.full(rates.shape[1], 0.1), rates])
        ratios = rates[1:] / rates[:-1]
        inside = (rates[1:] > low) & (rates[1:] < high)
        nearest = factors[np.abs(ratios[..., None] - factors).argmin(-1)]
        np.testing.assert_allclose(ratios[inside], nearest[inside], rtol=1e-5)
        assert not np.allclose(ratios, 1.0)  # the (decisive) policy does change the rates
        assert r["dead_at_step"] is None  # a live network: no flag, no advice printed
    assert "rates [" in printed and "flagged the network dead" not in printed
    for r in results:  # the comparison each network is printed beside
        assert 0.0 <= r["baseline_test_accuracy"] <= 1.0
        assert "cosine SGD from the same lr0 0.1" in printed
        assert f"test accuracy {r['baseline_test_accuracy']:.4f}" in printed
    assert f"rate ceiling {high:g}" in printed  # the policy's own by default
    # the default "auto" takes plain SGD's gradient statistics from the weights' changes
    assert "gradient statistics weight_changes" in printed

    # --ceiling overrides the policy's highest rate
    capped = example.main(
        [
            "--policy",
            str(tmp_path / "p"),
            "--batch-size",
            "16",
            "--width",
            "16",
            "--lr0",
            "0.1",
            "--networks",
            "mlp",
            "--ceiling",
            "0.15",
        ],
        dataset=dataset,
    )
    assert "rate ceiling 0.15" in capsys.readouterr().out
    assert np.max(capped[0]["learning_rates"]) == pytest.approx(0.15)
