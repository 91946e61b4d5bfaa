"""The command line end to end on the tiny test config: meta-train, resume, run a policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import ganno
from ganno.cli import main
from ganno.config import agent_config, load_config, merge

# One worker runs this module, so its module fixtures (a meta-training run) are built once
# (under --dist loadgroup an ungrouped test goes to either worker, which builds its own).
pytestmark = pytest.mark.xdist_group("cli")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = merge(
        yaml.safe_load((ROOT / "config" / "test.yaml").read_text()),
        # the training task alone: the family's path is the pipeline's and test_task_family's
        {"data": {"root": str(tmp / "data")}, "meta_train": {"task_family": []}},
    )
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained_run(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ippo"
    assert (
        main(
            [
                "meta-train",
                "--config",
                str(tiny_config),
                "--agent",
                "ippo",
                "--seed",
                "0",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    return out


def test_meta_train_writes_a_complete_run(trained_run, tiny_config):
    for name in ("config.yaml", "learning_curve.jsonl", "metrics.json", "policy/policy.json"):
        assert (trained_run / name).is_file(), name
    rows = [json.loads(line) for line in (trained_run / "learning_curve.jsonl").open()]
    cfg = load_config(tiny_config)
    mt = cfg["meta_train"]
    members = 1 + len(mt.get("task_family", []))  # every member rolls out num_envs episodes
    per_update = mt["num_envs"] * mt["rollout_length"] * members
    assert [r["env_steps"] for r in rows] == [per_update * (i + 1) for i in range(len(rows))]
    assert len(rows) == mt["total_timesteps"] // per_update
    for key in ("episode_return", "val_loss", "val_accuracy", "steps_per_second"):
        assert key in rows[-1]
    # the config the agent was trained with: ippo's (no overrides), its agents bare
    assert load_config(trained_run / "config.yaml") == agent_config(cfg, "ippo")
    assert {k: v for k, v in agent_config(cfg, "ippo").items() if k != "agents"} == {
        k: v for k, v in cfg.items() if k != "agents"
    }


def test_rerunning_a_finished_run_resumes_instead_of_restarting(trained_run, tiny_config):
    before = (trained_run / "learning_curve.jsonl").read_text()
    assert (
        main(
            [
                "meta-train",
                "--config",
                str(tiny_config),
                "--agent",
                "ippo",
                "--seed",
                "0",
                "--out",
                str(trained_run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (trained_run / "learning_curve.jsonl").read_text() == before


def test_run_policy_writes_the_trajectory(trained_run, tmp_path):
    policy = ganno.Policy.load(trained_run / "policy")
    cfg = load_config(trained_run / "config.yaml")
    assert policy.config["network"]["action_dim"] == len(cfg["env"]["actions"])
    out = tmp_path / "traj.json"
    assert (
        main(
            [
                "run-policy",
                "--policy",
                str(trained_run / "policy"),
                "--lr0",
                "0.01",
                "--seed",
                "100",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert len(record["decisions"]) == cfg["env"]["num_decisions"] + 1
    assert all(len(d["learning_rates"]) == 3 for d in record["decisions"])
    assert record["decisions"][0]["learning_rates"] == pytest.approx([0.01] * 3)
    assert record["final_val_loss"] == record["decisions"][-1]["val_loss"]
    # The same episode as the evaluation sweep's (lr0 0.01, seed 100), run by another code path.
    from ganno.experiments import run_policy

    rows, _ = run_policy(cfg, "train", trained_run / "policy", "ganno_ippo")
    row = rows[np.isclose(rows["lr0"], 0.01) & (rows["seed"] == 100)].iloc[0]
    assert record["test_accuracy"] == pytest.approx(row["test_accuracy"], abs=2e-3)
    assert record["test_loss"] == pytest.approx(row["test_loss"], rel=1e-3)
    assert record["diverged"] is bool(row["diverged"])


def test_run_policy_on_a_deeper_network(trained_run, tmp_path):
    out = tmp_path / "deep.json"
    assert (
        main(
            [
                "run-policy",
                "--policy",
                str(trained_run / "policy"),
                "--task",
                "mlp_depth5",
                "--lr0",
                "0.02",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert record["num_agents"] == 5 and record["network"]["depth"] == 5
    assert all(len(d["learning_rates"]) == 5 for d in record["decisions"])
    assert record["decisions"][0]["learning_rates"] == pytest.approx([0.02] * 5)
    # The agents act: some layer's rate leaves lr0 (a policy that ignored its layers would not
    # have five of them, a frozen one would keep 0.02).
    rates = [r for d in record["decisions"] for r in d["learning_rates"]]
    assert len(set(rates)) > 1


def test_constant_controller_keeps_the_rate(trained_run, tmp_path):
    out = tmp_path / "const.json"
    assert (
        main(
            [
                "run-policy",
                "--policy",
                str(trained_run / "policy"),
                "--controller",
                "constant",
                "--lr0",
                "0.05",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    for decision in record["decisions"]:
        assert decision["learning_rates"] == pytest.approx([0.05] * 3)


def test_clear_errors(tmp_path, capsys, tiny_config):
    assert (
        main(
            [
                "run-policy",
                "--policy",
                str(tmp_path / "missing"),
                "--lr0",
                "0.1",
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    assert "no saved policy" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta_train:\n  num_envs: 0\n")
    assert (
        main(["meta-train", "--config", str(bad), "--algo", "ippo", "--out", str(tmp_path / "r")])
        == 2
    )
    assert "meta_train.num_envs" in capsys.readouterr().err
    assert main(["meta-train", "--config", str(tiny_config), "--agent", "nope",
                 "--out", str(tmp_path / "r")]) == 2  # fmt: skip
    assert "no agent 'nope'" in capsys.readouterr().err
    args = ["meta-train", "--config", str(tiny_config), "--out", str(tmp_path / "r")]
    assert main([*args, "--algo", "ippo", "--agent", "mappo"]) == 2
    assert "give --agent NAME only" in capsys.readouterr().err
    assert main(args) == 2
    assert "give --agent NAME" in capsys.readouterr().err


def test_the_old_options_name_an_agent_with_a_note(trained_run, tiny_config, capsys):
    # --algo/--variant still work (a finished run resumes at once) and say how to migrate.
    for flag in ("--algo", "--variant"):
        args = ["meta-train", "--config", str(tiny_config), flag, "ippo", "--seed", "0"]
        assert main([*args, "--out", str(trained_run), "--no-progress"]) == 0
        assert f"{flag} is deprecated; use --agent ippo" in capsys.readouterr().err


def test_generalise_runs_several_policies_as_each_alone(trained_run, tiny_config, tmp_path):
    import jax
    import pandas as pd

    policy = ganno.Policy.load(trained_run / "policy")
    # A second, different policy: the same network with random parameters.
    leaves, treedef = jax.tree.flatten(policy.params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    scrambled = [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    other = ganno.Policy(treedef.unflatten(scrambled), {"network": policy.config["network"]})
    other.save(tmp_path / "other")
    dirs = [trained_run / "policy", tmp_path / "other"]

    def generalise(indices, tag):
        args = ["generalise", "--config", str(tiny_config), "--task", "mlp_depth5"]
        for i in indices:
            args += ["--policy", str(dirs[i]), "--name", f"p{i}", "--meta-seed", str(i)]
            args += ["--out", str(tmp_path / f"{tag}{i}.csv")]
            args += ["--schedules", str(tmp_path / f"{tag}{i}.schedules.csv")]
        assert main(args) == 0

    generalise([0, 1], "together")
    for i in (0, 1):
        generalise([i], "alone")
    numbers = ["lr0", "seed", "meta_seed", "val_loss", "test_loss", "test_accuracy", "diverged"]
    tables = {}
    for i in (0, 1):
        together = pd.read_csv(tmp_path / f"together{i}.csv")
        alone = pd.read_csv(tmp_path / f"alone{i}.csv")
        assert set(together["method"]) == {f"p{i}"} and set(together["meta_seed"]) == {i}
        pd.testing.assert_frame_equal(together[numbers], alone[numbers], rtol=1e-5)
        schedules = pd.read_csv(tmp_path / f"together{i}.schedules.csv")
        reference = pd.read_csv(tmp_path / f"alone{i}.schedules.csv")
        pd.testing.assert_frame_equal(schedules, reference, rtol=1e-5)
        tables[i] = schedules
    assert not tables[0]["learning_rate"].equals(tables[1]["learning_rate"])


def test_generalise_needs_one_out_per_policy(trained_run, tiny_config, tmp_path, capsys):
    policy = str(trained_run / "policy")
    args = ["generalise", "--config", str(tiny_config), "--task", "train"]
    args += ["--policy", policy, "--name", "a", "--policy", policy, "--name", "b"]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 2
    assert "2 --policy but 1 --out" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()


def test_generalise_runs_a_policy_with_the_settings_it_ships_with(
    trained_run, tmp_path, monkeypatch
):
    import pandas as pd

    from ganno import pretrained
    from ganno.results import lr0_grid

    monkeypatch.chdir(tmp_path)  # no config here: the dataset is built in ./data
    shipped = pretrained.refresh(
        trained_run / "policy", dest=tmp_path / "shipped", name="tiny", selection={"agent": "ippo"}
    )
    out = tmp_path / "g.csv"
    args = ["generalise", "--policy", str(shipped), "--task", "mlp_depth5", "--out", str(out)]
    assert main(args) == 0
    table = pd.read_csv(out)
    cfg = load_config(trained_run / "config.yaml")  # what the settings were made from
    assert set(table["method"]) == {"ganno_ippo"} and set(table["task"]) == {"mlp_depth5"}
    assert len(table) == len(lr0_grid(cfg)) * len(cfg["evaluation"]["seeds"])
    assert (tmp_path / "data").is_dir()


# ----------------------------------------------------------------------- the command line itself


def _every_parser(parser, path=("ganno",)):
    """``(command path, parser)`` for the parser and every subcommand's below it."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helped.get(name), f"{' '.join(path)} {name}: a subcommand without help"
                yield from _every_parser(sub, (*path, name))


#: Options of src/ganno/torch/cli.py (another change's file) that still lack a help text: the
#: test fails once one of them has one, so that it is taken off this list.
_HELP_TO_COME: set[tuple[str, ...]] = set()


def test_every_option_and_subcommand_has_help():
    import argparse

    from ganno.cli import build_parser

    missing = set()
    for path, parser in _every_parser(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue  # subcommands are checked by _every_parser; hidden: deprecated
            if not (action.help or "").strip():
                missing.add((*path, action.option_strings[-1] if action.option_strings
                             else action.dest))  # fmt: skip
    assert missing == _HELP_TO_COME, f"options without help: {sorted(missing - _HELP_TO_COME)}"


def test_version_prints_the_package_version(capsys):
    from ganno.pretrained import package_version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"ganno {package_version()}\n"
    assert package_version() == ganno.__version__


def test_the_shipped_policy_runs_from_an_empty_folder(tmp_path):
    """As after ``pip install ganno``: no clone, no config file, nothing in the working folder.
    ``run-policy`` plays the shipped policy with the settings it ships with (its dataset built in
    ./data), and ``pretrained show`` reads its record without importing JAX."""
    import subprocess
    import sys

    from ganno import pretrained

    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir(), home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = str(Path(ganno.__file__).parents[1])

    def ganno_cli(*args, code="from ganno.cli import main; sys.exit(main())"):
        return subprocess.run(
            [sys.executable, "-c", f"import sys; {code}", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    run = ganno_cli("run-policy", "--lr0", "0.01", "--out", "t.json")
    assert run.returncode == 0, run.stderr
    assert "test accuracy" in run.stdout and "trajectory written to t.json" in run.stdout
    record = json.loads((work / "t.json").read_text())
    shipped = pretrained.settings()["config"]
    assert record["dataset"] == shipped["task"]["dataset"] == "mnist1d"
    assert len(record["decisions"]) == shipped["env"]["num_decisions"] + 1
    assert record["test_accuracy"] > 0.3  # it learns (chance is 0.1)
    assert sorted(p.name for p in work.iterdir()) == ["data", "t.json"]

    no_jax = "from ganno.cli import main; r = main(); assert 'jax' not in sys.modules; sys.exit(r)"
    show = ganno_cli("pretrained", "show", code=no_jax)
    assert show.returncode == 0, show.stderr
    provenance = pretrained.provenance()
    for text in (
        "Provenance",
        f"source        {provenance['source']}",
        f"commit        {provenance['commit']}",
        "Design",
        "agent         ippo (algorithm ippo)",
        *(
            ("Headline (paper/tables/robustness.csv)", "ganno_ippo_selected")
            if provenance["headline"]
            else ("Headline: none recorded",)
        ),
    ):
        assert text in show.stdout, text
    seed = provenance["selection"]["seed"]
    assert f"seed {seed}  " in show.stdout and "selected" in show.stdout
    as_json = ganno_cli("pretrained", "show", "ippo", "--json")
    assert as_json.returncode == 0, as_json.stderr
    machine = json.loads(as_json.stdout)
    assert machine["provenance"] == provenance and machine["settings"] == pretrained.settings()
    missing = ganno_cli("pretrained", "show", "nope")
    assert missing.returncode == 2 and "no shipped policy 'nope'" in missing.stderr


def test_a_config_that_changes_the_shipped_policy_s_actions_is_refused(tmp_path, capsys):
    from ganno import pretrained

    shipped = pretrained.settings()["config"]
    other = [a for a in ("anchored", "anchored_compound") if a != shipped["env"]["action_mode"]]
    config = tmp_path / "other.yaml"
    config.write_text(
        yaml.safe_dump({**shipped, "env": {**shipped["env"], "action_mode": other[0]}})
    )
    out = tmp_path / "t.json"
    args = ["run-policy", "--policy", "ippo", "--config", str(config), "--lr0", "0.01"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--config sets env.action_mode = {other[0]}" in err
    assert "leave out --config to use the settings it ships with" in err and not out.exists()
