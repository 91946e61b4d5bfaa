"""Config validation: every bad value fails at load with a message naming key, value and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganno.cli import main
from ganno.config import ConfigError, load_config, merge, task_config, validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(ROOT / "config" / name)
    assert cfg["task"]["dataset"] == "mnist1d"
    assert cfg["env"]["actions"] == [0.5, 0.8, 1.0, 1.25, 2.0]


def test_paper_config_is_valid_as_snakemake_reads_it():
    """config/paper.yaml extends config/config.yaml (snakemake --configfile merges the two)."""
    import yaml

    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    cfg = validate(merge(base, paper))
    assert cfg["extensions"]["reference"] in [a["name"] for a in cfg["agents"]]


def test_design_study_config_is_valid_and_lists_the_design_agents():
    from ganno.agents import agents

    cfg = load_config(ROOT / "config" / "study.yaml")
    design = agents(cfg, "design")
    assert len(design) >= 6 and all(a.tasks is None for a in design)  # every task (held out too)
    assert cfg["extensions"]["reference"] == design[0].name == "paper_design"
    assert not design[0].overrides  # today's agents, the study's reference


def test_defaults_are_filled_and_match_the_design():
    cfg = validate({})
    assert cfg["task"]["network"] == {
        "kind": "mlp",
        "depth": 3,
        "width": 64,
        "channels": [16, 32],
        "kernel_size": 5,
    }
    assert (cfg["env"]["steps_per_decision"], cfg["env"]["num_decisions"]) == (50, 40)
    assert cfg["env"]["lr0_range"] == [1e-3, 1e-1] and cfg["env"]["lr_bounds"] == [1e-6, 10.0]
    assert cfg["env"]["reward"] == "log_val_loss_drop"
    mt = cfg["meta_train"]
    assert mt["total_timesteps"] == 102400
    assert (mt["num_envs"], mt["ppo_epochs"], mt["num_minibatches"]) == (16, 4, 2)
    assert (mt["gamma"], mt["gae_lambda"], mt["clip_eps"]) == (0.99, 0.95, 0.2)


@pytest.mark.parametrize(
    "bad,expected",
    [
        ({"envv": {}}, "unknown key 'envv' (did you mean 'env'?)"),
        ({"task": {"network": {"widht": 8}}}, "unknown key 'widht' (did you mean 'width'?)"),
        (
            {"env": {"steps_per_decision": "fifty"}},
            "'env.steps_per_decision' = 'fifty' has the wrong",
        ),
        ({"env": {"lr0_range": [-0.1, 0.1]}}, "'env.lr0_range.0' = -0.1 is out of range"),
        ({"env": {"actions": []}}, "'env.actions' = [] has 0 item(s)"),
        ({"env": {"lr0_range": [0.1, 0.001]}}, "'env.lr0_range' = [0.1, 0.001] is an inverted"),
        (
            {"env": {"lr_bounds": [1.0, 1.0]}},
            "'env.lr_bounds' = [1.0, 1.0] is an inverted or empty",
        ),
        (
            {"task": {"network": {"depth": 0}}},
            "'task.network.depth' = 0 is out of range; it must be >= 1",
        ),
        (
            {"task": {"dataset": "cifar10"}},
            "'task.dataset' = 'cifar10' is not allowed; choose one of",
        ),
        ({"env": {"reward": "loss"}}, "'env.reward' = 'loss' is not allowed"),
        (
            {"agents": [{"name": "dqn", "algorithm": "dqn"}]},
            "'agents.0.algorithm' = 'dqn' is not allowed",
        ),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(bad, expected):
    with pytest.raises(ConfigError) as info:
        validate(bad)
    assert expected in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        validate({"task": {"batch_size": 0}, "env": {"num_decisions": -1}})
    message = str(info.value)
    assert "task.batch_size" in message and "env.num_decisions" in message


def test_scientific_notation_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  lr0_range: [1e-4, 1e-2]\n")
    assert load_config(path)["env"]["lr0_range"] == [1e-4, 1e-2]


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_the_file_name_is_in_the_message(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("env:\n  num_decisions: 0\n")
    with pytest.raises(ConfigError, match=r"in .*mine\.yaml"):
        load_config(path)


def test_generalisation_tasks_are_full_valid_configs():
    cfg = validate({})
    deep = task_config(cfg, "mlp_depth8")
    assert deep["task"]["network"]["depth"] == 8 and deep["task"]["network"]["width"] == 64
    assert task_config(cfg, "long_budget")["env"]["num_decisions"] == 160
    with pytest.raises(ConfigError, match="no generalisation or validation task 'nope'"):
        task_config(cfg, "nope")
    with pytest.raises(ConfigError, match="unknown key 'datset'"):
        validate({"evaluation": {"generalisation_tasks": [{"name": "x", "task": {"datset": 1}}]}})


def test_validation_tasks_are_tasks_neither_held_out_nor_meta_trained_on():
    val = [{"name": "val_deep6", "task": {"network": {"depth": 6}}}]
    cfg = validate({"evaluation": {"validation_tasks": val}})
    own = task_config(cfg, "val_deep6")
    assert own["task"]["network"]["depth"] == 6
    assert (
        own["evaluation"]["validation_tasks"] == []
        and own["evaluation"]["generalisation_tasks"] == []
    )
    # a config without the key keeps it absent in its tasks' configs (its fingerprint stays)
    assert "validation_tasks" not in task_config(validate({}), "mlp_depth8")["evaluation"]
    twin = [{"name": "val_deep8", "task": {"network": {"depth": 8}}}]  # mlp_depth8 by another name
    with pytest.raises(ConfigError, match=r"\(val_deep8\) is the held-out task 'mlp_depth8'"):
        validate({"evaluation": {"validation_tasks": twin}})
    with pytest.raises(ConfigError, match=r"\(val_same\) is the meta-training task"):
        validate({"evaluation": {"validation_tasks": [{"name": "val_same"}]}})
    with pytest.raises(ConfigError, match="'mlp_wide' is used twice"):
        validate({"evaluation": {"validation_tasks": [{"name": "mlp_wide"}]}})
    family = [{"name": "deep6", "task": {"network": {"depth": 6}}}]
    with pytest.raises(ConfigError, match="member 'deep6' is the validation task 'val_deep6'"):
        validate({"evaluation": {"validation_tasks": val}, "meta_train": {"task_family": family}})


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  actions: []\n")
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "env.actions" in err and "Traceback" not in err


def test_loading_a_config_validates_each_derived_config_once(monkeypatch):
    """Validating a config validates every agent's and task's config derived from it; each
    distinct one is validated once (config.derive caches them), not once per path to it."""
    import json

    from ganno import config as config_module

    seen = []
    original = config_module.validate

    def counting(cfg):
        seen.append(json.dumps(cfg, sort_keys=True, default=str))
        return original(cfg)

    monkeypatch.setattr(config_module, "validate", counting)
    config_module._validated.cache_clear()
    loaded = config_module.load_config(ROOT / "config" / "config.yaml")
    assert len(seen) == len(set(seen)) > 1
    # a derived config is handed out as a copy: changing one does not change the next
    first = config_module.agent_config(loaded, "lr_only")
    first["env"]["num_decisions"] = -1
    assert config_module.agent_config(loaded, "lr_only")["env"]["num_decisions"] > 0
