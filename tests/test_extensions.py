"""The extensions beyond the paper: agent variants (Q1, Q2) in the config, and their report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import write_designed_results  # the report tests' designed results

from ganno import extensions_report, report
from ganno.config import ConfigError, merge, validate
from ganno.experiments import COLUMNS, lr0_grid
from ganno.variants import method_name, variant_config, variant_tasks, variants

VARIANTS = [
    {"name": "lr_momentum", "question": "Q1", "description": "lr x momentum",
     "env": {"momentum_actions": [0.0, 0.9]}},
    {"name": "reward_final", "question": "Q2", "description": "final-only reward",
     "env": {"reward": "final_log_val_loss_drop"}, "meta_train": {"total_timesteps": 1280}},
]  # fmt: skip


@pytest.fixture(scope="module")
def config():
    return validate(
        {
            "env": {"steps_per_decision": 10, "num_decisions": 5},
            "meta_train": {"algorithms": ["ippo"], "seeds": [0]},
            "evaluation": {
                "seeds": [0, 1, 2],
                "lr0_exponents": [-2, 0],
                "lr0_per_decade": 2,
                "generalisation_tasks": [{"name": "wide", "task": {"network": {"width": 128}}}],
            },
            "extensions": {"variants": VARIANTS},
            "baselines": {"methods": ["sgd_constant", "dog"], "bootstrap_resamples": 200},
            "torch_deployment": {"enabled": True, "networks": ["mlp"]},
        }
    )


def test_variant_configs_apply_their_overrides_and_algorithm(config):
    assert [v["name"] for v in variants(config, "Q2")] == ["reward_final"]
    assert variants(config)[0]["algorithm"] == "ippo"  # the reference by default
    q1 = variant_config(config, "lr_momentum")
    assert q1["env"]["momentum_actions"] == [0.0, 0.9]
    assert q1["env"]["reward"] == config["env"]["reward"]
    q2 = variant_config(config, "reward_final")
    assert q2["env"]["reward"] == "final_log_val_loss_drop"
    assert q2["meta_train"]["total_timesteps"] == 1280
    assert q2["meta_train"]["algorithms"] == ["ippo"]
    assert variant_tasks(config) == ["train", "wide"]
    with pytest.raises(ConfigError, match="no variant 'nope'"):
        variant_config(config, "nope")


@pytest.mark.parametrize(
    "extensions,message",
    [
        ({"variants": [{"name": "x", "question": "Q3"}]}, "'extensions.variants.0.question'"),
        ({"variants": [{"name": "Bad-Name", "question": "Q1"}]}, "extensions.variants.0.name"),
        ({"variants": [{"name": "a", "question": "Q1"}] * 2}, "used twice"),
        ({"variants": [{"name": "a", "question": "Q1", "env": {"reward": "r"}}]}, "env.reward"),
        ({"variants": [{"name": "a", "question": "Q1", "env": {"momentum_actions": [1.5]}}]},
         "env.momentum_actions.0"),
        ({"tasks": ["train", "nowhere"]}, "'extensions.tasks' names 'nowhere'"),
        ({"reference": "mappo", "variants": [{"name": "a", "question": "Q1"}]},
         "'extensions.reference' = 'mappo' is not meta-trained"),
        ({"variants": [{"name": "a", "question": "Q2", "env": {
            "reward": "counterfactual_log_val_loss_drop", "momentum_actions": [0.0]}}]},
         "learning-rate-only"),
    ],
)  # fmt: skip
def test_bad_extensions_name_the_key(config, extensions, message):
    base = {k: config[k] for k in ("meta_train", "evaluation")}
    with pytest.raises(ConfigError) as err:
        validate(merge(base, {"extensions": extensions}))
    assert message in str(err.value)


def _variant_table(method: str, task: str, lr0s: list[float], acc: float) -> pd.DataFrame:
    """A variant flat at ``acc`` (seed offsets -0.01, 0, 0.01) with its best val loss at 1e-2."""
    rows = [
        {"method": method, "task": task, "lr0": lr0, "seed": seed, "meta_seed": 0,
         "val_loss": 1.0 + 0.1 * i, "val_accuracy": acc, "test_loss": 1.0,
         "test_accuracy": acc + off, "diverged": False, "wall_time_s": 0.1}
        for i, lr0 in enumerate(lr0s)
        for seed, off in zip((0, 1, 2), (-0.01, 0.0, 0.01), strict=True)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _curve(path, start: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"seed": 0, "update": u, "env_steps": 640 * u, "episode_return": 0.1 * u,
         "val_loss": start - 0.01 * u}
        for u in range(1, 11)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def built(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("extensions")
    results, out = root / "results", root / "paper"
    lr0s = lr0_grid(config)
    paths = report.result_paths(config, results)
    write_designed_results(paths, ("train", "wide"), lr0s)
    columns = ["method", "task", "lr0", "seed", "step", "layer", "learning_rate"]
    pd.DataFrame(columns=columns).to_csv(paths.schedules[("ippo", 0)], index=False)
    _curve(paths.curves[("ippo", 0)], 1.5)
    ext = extensions_report.extension_paths(config, results)
    designed = {"lr_momentum": 0.90, "reward_final": 0.60}  # flat over every lr0
    for (task, variant, _), path in ext.results.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shift = 0.0 if task == "train" else -0.1
        _variant_table(method_name(variant), task, lr0s, designed[variant] + shift).to_csv(
            path, index=False
        )
    _curve(ext.curves[("lr_momentum", 0)], 1.2)
    _curve(ext.curves[("reward_final", 0)], 1.8)
    torch_rows = []
    for method, acc in (("ganno_ippo", 0.7), ("sgd_constant", 0.6), ("schedule_free_sgd", 0.65)):
        table = _variant_table(method, "torch_mlp", lr0s, acc)
        torch_rows.append(table.assign(meta_seed=0 if method == "ganno_ippo" else -1))
    ext.torch.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(torch_rows).to_csv(ext.torch, index=False)
    return report.build_report(results, out, config), out


def test_extension_outputs_are_declared_and_written(built, config):
    rep, out = built
    assert set(report.figure_names(config)) == set(report.FIGURES) | {
        "q1_robustness", "q1_curves", "q2_robustness", "q2_curves", "torch_deployment"
    }  # fmt: skip
    assert set(rep.figures) == set(report.figure_names(config))
    assert set(rep.tables) == set(report.table_names(config))
    for path in report.report_outputs(out, config):
        assert Path(path).is_file(), path
    inputs = report.report_inputs(config, "results")
    assert "results/sweep/wide/variants/lr_momentum_seed_0.csv" in inputs
    assert "results/meta_train/variants/reward_final/seed_0/learning_curve.jsonl" in inputs
    assert "results/torch/deployment.csv" in inputs


def test_question_tables_hold_the_designed_numbers(built):
    rep, _ = built
    q1 = pd.read_csv(rep.tables["q1"].csv).set_index("method")
    assert list(q1.index) == ["ganno_ippo", "ganno_lr_momentum"]
    # Flat at 0.90 on train (seed offsets cancel in the IQM of 3 x 5 runs) and 0.80 held out.
    assert q1.loc["ganno_lr_momentum", "tuned_iqm"] == pytest.approx(0.90)
    assert q1.loc["ganno_lr_momentum", "all_iqm"] == pytest.approx(0.90)
    assert q1.loc["ganno_lr_momentum", "held_out_iqm"] == pytest.approx(0.80)
    assert q1.loc["ganno_lr_momentum", "robust_decades"] == pytest.approx(2.0)
    # Mean episode-end validation loss over the last 10% of env steps: updates 9 and 10.
    assert q1.loc["ganno_lr_momentum", "meta_train_val_loss"] == pytest.approx(1.2 - 0.095)
    # The reference: tuned at 1e-1 (lowest validation loss) where it scores 0.80.
    assert q1.loc["ganno_ippo", "tuned_iqm"] == pytest.approx(0.80)
    assert q1.loc["ganno_ippo", "robust_decades"] == pytest.approx(1.5)
    q2 = pd.read_csv(rep.tables["q2"].csv).set_index("method")
    assert list(q2.index) == ["ganno_ippo", "ganno_reward_final"]
    assert q2.loc["ganno_reward_final", "tuned_iqm"] == pytest.approx(0.60)
    torch = pd.read_csv(rep.tables["torch_deployment"].csv)
    assert set(torch["method"]) == {"ganno_ippo", "sgd_constant", "schedule_free_sgd"}
    assert set(torch["task"]) == {"torch_mlp"}
    for name in ("q1", "q2", "torch_deployment"):
        assert not pd.read_csv(rep.tables[name].csv).isna().any().any(), name


def test_readme_reports_each_question_from_its_table(built):
    rep, _ = built
    text = rep.readme.read_text()
    q1 = pd.read_csv(rep.tables["q1"].csv).set_index("method")
    for heading in ("## Q1", "## Q2", "## PyTorch deployment"):
        assert heading in text
    lr = q1.loc["ganno_lr_momentum"]
    quoted = report.fmt_ci(lr["tuned_iqm"], lr["tuned_low"], lr["tuned_high"])
    assert f"`ganno_lr_momentum` reaches a tuned test accuracy on `train` of {quoted}" in text
    assert "higher than `ganno_ippo`" in text
    assert re.search(r"Best by tuned test accuracy pooled over the held-out tasks: "
                     r"`ganno_lr_momentum`", text)  # fmt: skip
    assert "Measured order by tuned test accuracy on `train`" in text
    assert "![Q1" in text and "figures/q2_curves.png" in text and "torch_deployment.png" in text
    assert np.isfinite(q1["tuned_iqm"]).all()


def test_no_extensions_means_no_extension_outputs():
    cfg = validate({})
    assert report.figure_names(cfg) == list(report.FIGURES)
    assert report.table_names(cfg) == list(report.TABLES)
    assert extensions_report.extension_inputs(cfg) == []
