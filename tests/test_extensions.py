"""The agent registry (ippo, mappo and the agents of questions such as Q1, Q2) in the config, and
the questions' report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import write_designed_results  # the report tests' designed results

from ganno import agents, extensions_report, layout, report
from ganno.agents import method_name
from ganno.config import ConfigError, agent_config, load_config, merge, validate
from ganno.results import COLUMNS, lr0_grid
from ganno.rewards import REWARDS

# One worker runs this module, so its module fixtures (a built report) are built once
# (under --dist loadgroup an ungrouped test goes to either worker, which builds its own).
pytestmark = pytest.mark.xdist_group("extensions")

ROOT = Path(__file__).resolve().parents[1]
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
            "meta_train": {"seeds": [0]},
            "agents": [{"name": "ippo"}, *VARIANTS],
            "evaluation": {
                "seeds": [0, 1, 2],
                "lr0_exponents": [-2, 0],
                "lr0_per_decade": 2,
                "generalisation_tasks": [{"name": "wide", "task": {"network": {"width": 128}}}],
            },
            "baselines": {"methods": ["sgd_constant", "dog"], "bootstrap_resamples": 200},
            "torch_deployment": {"enabled": True, "networks": ["mlp"]},
        }
    )


def test_agent_configs_apply_their_overrides(config):
    assert [a.name for a in agents.agents(config, "Q2")] == ["reward_final"]
    assert [a.name for a in agents.agents(config, None)] == ["ippo"]  # the claims' agents
    assert agents.get(config, "lr_momentum").algorithm == "ippo"  # the schema's default
    q1 = agent_config(config, "lr_momentum")
    assert q1["env"]["momentum_actions"] == [0.0, 0.9]
    assert q1["env"]["reward"] == config["env"]["reward"]
    q2 = agent_config(config, "reward_final")
    assert q2["env"]["reward"] == "final_log_val_loss_drop"
    assert q2["meta_train"]["total_timesteps"] == 1280
    assert agent_config(config, "ippo")["env"] == config["env"]
    assert layout.agent_tasks(config, agents.get(config, "lr_momentum")) == ["train", "wide"]
    with pytest.raises(ConfigError, match="no agent 'nope'"):
        agent_config(config, "nope")


def test_an_agent_on_the_training_task_only_gets_its_own_table(config):
    design = {"name": "anchored", "question": "design", "tasks": ["train"],
              "env": {"reward": "val_accuracy_gain"}}  # fmt: skip
    cfg = validate({**config, "agents": [*config["agents"], design]})
    assert layout.agent_tasks(cfg, agents.get(cfg, "anchored")) == ["train"]
    assert [a.name for a in layout.agents_on(cfg, "wide")] == [
        "ippo",
        *[v["name"] for v in VARIANTS],
    ]
    assert "design" in layout.table_names(cfg) and "q1" in layout.table_names(cfg)
    assert "design_robustness" in layout.figure_names(cfg)
    assert layout.caption_name("design_robustness") == "question_robustness"
    inputs = layout.report_inputs(cfg, "results")
    assert "results/sweep/train/anchored_seed_0.csv" in inputs
    assert not any("wide/anchored" in p for p in inputs)


def test_an_agent_with_its_own_seeds_is_trained_evaluated_and_reported_over_them(config):
    own = {"name": "cheap", "question": "Q1", "meta_train": {"seeds": [0, 1]}}
    cfg = validate({**config, "agents": [*config["agents"], own]})
    assert agents.meta_seeds(cfg, "cheap") == [0, 1]
    assert agents.meta_seeds(cfg, "ippo") == [0]  # the config's meta_train.seeds
    assert agents.seed_groups(cfg) == {
        (0,): ["ippo", "lr_momentum", "reward_final"],
        (0, 1): ["cheap"],
    }
    inputs = layout.report_inputs(cfg, "results")
    for seed in (0, 1):
        assert f"results/sweep/wide/cheap_seed_{seed}.csv" in inputs
        assert f"results/meta_train/cheap/seed_{seed}/learning_curve.jsonl" in inputs
    assert "results/sweep/wide/ippo_seed_1.csv" not in inputs
    assert report.meta_seeds_statement(cfg) == (
        "GANNO methods pool their 1 meta-training seed(s) (`cheap`: 2)."
    )
    assert (
        report.meta_seeds_statement(config) == "GANNO methods pool their 1 meta-training seed(s)."
    )


def test_the_configs_of_before_the_registry_still_load(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(
        "meta_train: {algorithms: [ippo, mappo], seeds: [0]}\n"
        "extensions:\n  reference: ippo\n  tasks: [train]\n"
        "  variants: [{name: lr_momentum, question: Q1, env: {momentum_actions: [0.0, 0.9]}}]\n"
        "torch_deployment: {algorithm: mappo}\n"
    )
    with pytest.warns(FutureWarning, match="agents") as caught:
        cfg = load_config(old)
    assert "- {name: ippo, algorithm: ippo}" in str(caught[0].message)  # the new form, shown
    assert agents.agent_names(cfg) == ["ippo", "mappo", "lr_momentum"]
    assert agents.get(cfg, "lr_momentum").tasks == ("train",)
    assert cfg["torch_deployment"]["agent"] == "mappo"
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("agents: [{name: ippo}]\nmeta_train: {algorithms: [ippo]}\n")
    with pytest.raises(ConfigError, match="move those into 'agents' entries"):
        load_config(mixed)


def test_the_shipped_configs_use_the_registry():
    for name in ("config", "test", "paper"):
        text = (ROOT / "config" / f"{name}.yaml").read_text()
        assert "algorithms:" not in text and "variants:" not in text, name
        assert "ippo" in agents.agent_names(load_config(ROOT / "config" / f"{name}.yaml"))


@pytest.mark.parametrize(
    "entries,extensions,message",
    [
        ([{"name": "x", "question": "Q 3"}], {}, "'agents.1.question'"),
        ([{"name": "Bad-Name"}], {}, "agents.1.name"),
        ([{"name": "ippo"}], {}, "'agents.1.name' = 'ippo' is used twice"),
        ([{"name": "a", "question": "Q1", "env": {"reward": "r"}}], {}, "env.reward"),
        ([{"name": "a", "question": "Q1", "env": {"momentum_actions": [1.5]}}], {},
         "env.momentum_actions.0"),
        ([{"name": "a", "tasks": ["train", "nowhere"]}], {}, "'agents.1.tasks' names 'nowhere'"),
        ([{"name": "a", "question": "Q1"}], {"reference": "mappo"},
         "'extensions.reference' = 'mappo' is not an agent"),
        ([{"name": "a", "question": "Q2", "env": {
            "reward": "counterfactual_log_val_loss_drop", "momentum_actions": [0.0]}}], {},
         "learning-rate-only"),
    ],
)  # fmt: skip
def test_bad_agents_name_the_key(config, entries, extensions, message):
    base = {k: config[k] for k in ("meta_train", "evaluation")}
    bad = merge(base, {"agents": [{"name": "ippo"}, *entries], "extensions": extensions})
    with pytest.raises(ConfigError) as err:
        validate(bad)
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
    paths = layout.result_paths(config, results)
    write_designed_results(paths, ("train", "wide"), lr0s)
    columns = ["method", "task", "lr0", "seed", "step", "layer", "learning_rate"]
    pd.DataFrame(columns=columns).to_csv(paths.schedules[("ippo", 0)], index=False)
    _curve(paths.curves[("ippo", 0)], 1.5)
    designed = {"lr_momentum": 0.90, "reward_final": 0.60}  # flat over every lr0
    for (task, variant, _), path in paths.agents.items():
        if variant not in designed:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        shift = 0.0 if task == "train" else -0.1
        _variant_table(method_name(variant), task, lr0s, designed[variant] + shift).to_csv(
            path, index=False
        )
    _curve(paths.curves[("lr_momentum", 0)], 1.2)
    _curve(paths.curves[("reward_final", 0)], 1.8)
    torch_rows = []
    for method, acc in (("ganno_ippo", 0.7), ("sgd_constant", 0.6), ("schedule_free_sgd", 0.65)):
        table = _variant_table(method, "torch_mlp", lr0s, acc)
        torch_rows.append(table.assign(meta_seed=0 if method == "ganno_ippo" else -1))
    paths.torch.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(torch_rows).to_csv(paths.torch, index=False)
    return report.build_report(results, out, config), out


def test_extension_outputs_are_declared_and_written(built, config):
    rep, out = built
    assert set(layout.figure_names(config)) == set(layout.CLAIM_FIGURES) | {
        "q1_robustness", "q1_curves", "q2_robustness", "q2_curves", "torch_deployment"
    }  # fmt: skip
    assert set(rep.figures) == set(layout.figure_names(config))
    assert set(rep.tables) == set(layout.table_names(config))
    for path in layout.report_outputs(config, out):
        assert Path(path).is_file(), path
    inputs = layout.report_inputs(config, "results")
    assert "results/sweep/wide/lr_momentum_seed_0.csv" in inputs
    assert "results/meta_train/reward_final/seed_0/learning_curve.jsonl" in inputs
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
    assert q1.loc["ganno_lr_momentum", "tuned_loss_iqm"] == pytest.approx(1.0)
    assert q1.loc["ganno_lr_momentum", "held_out_loss_iqm"] == pytest.approx(1.0)
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
    # 0.90 [...] against the reference's 0.80 [...]: the intervals are apart
    assert (
        "`ganno_lr_momentum`'s tuned test accuracy on `train`: **above** `ganno_ippo`'s, "
        f"{quoted} vs "
    ) in text
    assert "robust range **wider** (a count of decades on the lr0 grid" in text
    # one held-out task: its own numbers, labelled single-task, not "pooled"
    assert "`ganno_lr_momentum`'s tuned test accuracy on `wide` (single task): **above**" in text
    assert re.search(r"Best by tuned test accuracy on `wide` \(single task\) [^`]*"
                     r"`ganno_lr_momentum`", text)  # fmt: skip
    assert q1["held_out_scope"].eq("wide").all() and not q1["held_out_normalised"].any()
    assert "Measured order by tuned test accuracy on `train`" in text
    # the reading of Q2 explains the rewards compared (the reference ippo's and reward_final's)
    why = text.split("Why, as far as these numbers say")[1].split("Measured order")[0]
    assert "`log_val_loss_drop` pays" in why and "`final_log_val_loss_drop` pays" in why
    for absent in ("val_accuracy_gain", "counterfactual", "relative_log_val"):
        assert absent not in why
    assert set(extensions_report.REWARD_CREDIT) == set(REWARDS)  # every reward can be explained
    assert "![Q1" in text and "figures/q2_curves.png" in text and "torch_deployment.png" in text
    assert np.isfinite(q1["tuned_iqm"]).all()


def test_no_questions_means_no_question_outputs():
    cfg = validate({"torch_deployment": {"enabled": False}})
    assert agents.agent_names(cfg) == ["ippo", "mappo"]  # the schema's default registry
    assert layout.figure_names(cfg) == list(layout.CLAIM_FIGURES)
    assert layout.table_names(cfg) == list(layout.CLAIM_TABLES)
    assert not any("torch" in p for p in layout.report_inputs(cfg))
