"""The policy shipped inside the package: it loads with one call, acts, drives a training loop,
carries the settings its commands need, records where it came from (in paths that mean the same
on every machine), is refreshed from a run folder by ``ganno pretrained refresh``, and is in the
built wheel (so ``pip install ganno`` users have it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ganno
from ganno import pretrained
from ganno.cli import main as cli_main
from ganno.config import load_config, merge
from ganno.errors import PolicyMismatchError
from ganno.policy import Policy, PolicyLoadError
from ganno.types import Observation

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("policy.json", "actor_params.msgpack", "settings.json", "PROVENANCE.json")


def test_the_packaged_policy_loads_and_acts():
    policy = ganno.pretrained_policy()
    assert isinstance(policy, Policy) and "ippo" in pretrained.available()
    net = policy.config["network"]
    n = 4  # any number of layers
    obs = Observation(
        agents_view=jax.random.normal(jax.random.PRNGKey(0), (n, net["obs_dim"])),
        action_mask=jnp.ones((n, net["action_dim"]), bool),
        step_count=jnp.zeros((n,), jnp.int32),
    )
    actions = np.asarray(policy.act(obs))
    assert actions.shape == (n,) and ((0 <= actions) & (actions < net["action_dim"])).all()
    record = pretrained.provenance()
    assert record["commit"] and record["config"]["env"]
    # its numbers: the report's table, or (refreshed before the report) every seed's validation
    assert record["headline"] is not None or record["selection"]["scores"]
    assert record["note"], "the provenance must say what this policy is"
    with pytest.raises(ValueError, match="no pretrained policy 'nope'"):
        pretrained.load("nope")


def test_the_packaged_policy_drives_a_pytorch_loop():
    torch = pytest.importorskip("torch")
    from ganno.torch import GannoScheduler, layerwise_param_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(layerwise_param_groups(model), lr=0.05)
    loss_fn = torch.nn.functional.cross_entropy
    total = 2 * ganno.pretrained_policy().config["env"]["num_decisions"]
    sched = GannoScheduler(
        opt, ganno.pretrained_policy(), val_loss_fn=lambda: loss_fn(model(x), y), total_steps=total
    )
    for _ in range(total):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        sched.observe_gradients(loss)
        opt.step()
        sched.step()
    assert sched.decisions == sched.num_decisions and sched.done


def test_refresh_copies_a_run_with_its_settings_and_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the pipeline runs: the paths recorded are relative to it
    run = tmp_path / "run"
    ganno.pretrained_policy().save(run / "policy")
    (run / "config.yaml").write_text("env: {num_decisions: 40}\n")
    (run / "learning_curve.jsonl").write_text('{"update": 1}\n{"update": 2, "return": 0.5}\n')
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"test_accuracy": 0.9}))
    dest = tmp_path / "shipped"
    assert (
        cli_main(
            [
                "pretrained",
                "refresh",
                "--from",
                str(run / "policy"),
                "--summary",
                str(summary),
                "--name",
                "mine",
                "--note",
                "a test",
                "--dest",
                str(dest),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (dest / "mine").iterdir()) == sorted(SHIPPED)
    record = json.loads((dest / "mine" / "PROVENANCE.json").read_text())
    assert record["headline"] == {"test_accuracy": 0.9} and record["note"] == "a test"
    assert record["config"] == {"env": {"num_decisions": 40}}
    assert record["meta_training_last_update"] == {"update": 2, "return": 0.5}
    assert record["source"] == "run/policy" and record["headline_source"] == "summary.json"
    # the settings: the run's config with defaults filled, the data's root left to the user
    settings = json.loads((dest / "mine" / "settings.json").read_text())
    defaults = load_config()
    assert settings["agent"] is None and settings["algorithm"] == "ippo"
    assert settings["config"]["env"] == {**defaults["env"], "num_decisions": 40}
    assert settings["config"]["task"] == defaults["task"]
    assert settings["config"]["data"] == {"val_fraction": 0.2, "split_seed": 0}
    assert pretrained.settings_config(dest / "mine")["env"]["num_decisions"] == 40
    copied = Policy.load(dest / "mine")
    for a, b in zip(
        jax.tree.leaves(copied.params),
        jax.tree.leaves(ganno.pretrained_policy().params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="summary"):
        pretrained.refresh(run / "policy", summary=tmp_path / "missing.csv", dest=dest)
    (run / "policy" / "actor_params.msgpack").write_bytes(b"garbage")
    with pytest.raises(PolicyLoadError):
        pretrained.refresh(run / "policy", dest=dest, name="broken")
    assert not (dest / "broken").exists()  # nothing copied from a broken run


def test_the_refresh_records_whether_the_shipped_policy_deploys_with_the_guard(tmp_path):
    """The pipeline passes its env.guard: the shipped policy deploys as the report evaluated it
    (deployment_settings' default); without --guard/--no-guard the copy is the run's, byte for
    byte."""
    from ganno.deployment import deployment_settings

    run = tmp_path / "run"
    ganno.pretrained_policy().save(run / "policy")
    original = (run / "policy" / "policy.json").read_bytes()
    for flag, expected in (("--guard", True), ("--no-guard", False)):
        argv = ["pretrained", "refresh", "--from", str(run / "policy"), "--dest", str(tmp_path)]
        assert cli_main([*argv, "--name", flag[2:], flag]) == 0
        assert deployment_settings(Policy.load(tmp_path / flag[2:])).guard is expected
    assert (tmp_path / "no-guard" / "policy.json").read_bytes() == original
    pretrained.refresh(run / "policy", dest=tmp_path, name="as_is")
    assert (tmp_path / "as_is" / "policy.json").read_bytes() == original


def test_the_shipped_settings_are_what_the_refresh_makes_of_its_provenance(tmp_path):
    """settings.json and PROVENANCE.json's paths come from the refresh's own code: restamping a
    copy of the shipped folder whose record holds a developer's absolute path gives the shipped
    files byte for byte (``ganno pretrained refresh --in-place`` made them so)."""
    copy = tmp_path / "ippo"
    shutil.copytree(pretrained.directory(), copy)
    record = json.loads((copy / "PROVENANCE.json").read_text())
    assert not Path(record["source"]).is_absolute()
    record["source"] = "/home/someone/clone/" + record["source"]
    (copy / "PROVENANCE.json").write_text(json.dumps(record, indent=1) + "\n")
    (copy / "settings.json").unlink()
    args = ["pretrained", "refresh", "--in-place", "--dest", str(tmp_path)]
    assert cli_main(args) == 0
    for file in SHIPPED:
        assert (copy / file).read_bytes() == (pretrained.directory() / file).read_bytes(), file
    assert cli_main([*args, "--note", "new"]) == 2  # keeps the recorded note and numbers


def test_the_shipped_settings_agree_with_the_policy_and_guard_a_user_config(tmp_path):
    settings = pretrained.settings()
    record = pretrained.provenance()
    assert settings["agent"] == record["selection"]["agent"] == pretrained.DEFAULT
    shipped = pretrained.settings_config(pretrained.directory())
    # what the policy recorded of its environment is what the settings build
    policy_env = ganno.pretrained_policy().config["env"]
    for name, value in policy_env.items():
        if name in shipped["env"]:
            assert shipped["env"][name] == pytest.approx(value), name
    pretrained.check_config(shipped, pretrained.directory())  # its own settings pass
    longer = merge(shipped, {"env": {"num_decisions": 80}, "task": {"batch_size": 32}})
    pretrained.check_config(longer, pretrained.directory())  # another task and budget: fine
    for name, value in (("actions", [0.5, 1.0, 2.0]), ("gradient_window", 5)):
        other = merge(shipped, {"env": {name: value}})
        with pytest.raises(PolicyMismatchError, match=f"--config sets env.{name} = "):
            pretrained.check_config(other, pretrained.directory())
    # a policy without settings (a run folder) is not checked here: its config.yaml decides
    ganno.pretrained_policy().save(tmp_path / "policy")
    pretrained.check_config(merge(shipped, {"env": {"actions": [1.0]}}), tmp_path / "policy")


def test_paths_are_recorded_as_they_mean_the_same_on_every_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pretrained.portable_path(tmp_path / "results" / "x") == "results/x"
    assert pretrained.portable_path("results/x") == "results/x"  # relative: as given
    # elsewhere: from the results folder on (a clone that no longer exists, another machine)
    elsewhere = "/work/clone/results/meta_train/ippo/seed_2/policy"
    assert pretrained.portable_path(elsewhere) == "results/meta_train/ippo/seed_2/policy"
    assert pretrained.portable_path("/opt/runs/policy") == "/opt/runs/policy"
    # inside another git repository: relative to its top
    repo = tmp_path.parent / f"{tmp_path.name}_repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "runs").mkdir()
    assert pretrained.portable_path(repo / "runs") == "runs"
    assert pretrained._agent_of(elsewhere, None) == "ippo"
    assert pretrained._agent_of("/opt/runs/policy", {"agent": "mappo"}) == "mappo"
    assert pretrained._agent_of("/opt/runs/policy", None) is None


def test_show_describes_a_shipped_policy_readably():
    text = pretrained.describe()
    record = pretrained.provenance()
    assert text.startswith(f"ippo: a policy shipped with ganno {pretrained.package_version()}")
    assert all(len(line) <= 100 for line in text.splitlines())
    headline = "Headline (paper/tables/robustness.csv)" if record["headline"] else "Headline: none"
    for section in ("Provenance", "Design", headline):
        assert f"\n{section}" in text
    for seed, score in record["selection"]["scores"].items():
        assert f"seed {seed}  {score['value']:.4f}" in text
    env = pretrained.settings()["config"]["env"]
    assert f"{env['num_decisions']} decisions x {env['steps_per_decision']} steps" in text
    assert f'action_mode "{env["action_mode"]}"' in " ".join(text.split())  # across a wrap
    if record["headline"]:
        rows = {row["method"]: row for row in record["headline"]}
        ganno_row = rows["ganno_ippo_selected"]
        line = next(line for line in text.splitlines() if "ganno_ippo_selected" in line)
        assert f"{float(ganno_row['tuned_iqm']):.4f}" in line
    # a headline that is not the robustness table: its own columns
    assert pretrained._headline([{"a": 1, "b": "x"}], 100) == ["  a  b", "  1  x"]
    assert pretrained._headline({"acc": 0.9}, 100) == ["  acc: 0.9"]


def test_the_commit_is_dirty_only_with_uncommitted_code_not_the_pipeline_s_outputs(tmp_path):
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True)  # noqa: E731
    git("init", "-q")
    for path in ("src/ganno/model.py", "paper/README.md", "src/ganno/pretrained/ippo/p.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    run = tmp_path / "results" / "meta_train"
    run.mkdir(parents=True)
    # a pipeline run rewrites its report and the shipped policy: the commit is still clean
    (tmp_path / "paper/README.md").write_text("v2\n")
    (tmp_path / "src/ganno/pretrained/ippo/p.json").write_text("v2\n")
    assert pretrained._git_commit(run) == head
    (tmp_path / "src/ganno/model.py").write_text("v2\n")  # uncommitted code: dirty
    assert pretrained._git_commit(run) == head + "+dirty"
    assert pretrained._git_commit(tmp_path.parent / "nowhere") is None


@pytest.mark.slow
def test_the_wheel_ships_the_policy_and_it_loads_from_an_install(tmp_path):
    """Build the wheel from a copy of the project (pip writes build/ into the source tree) and
    install it into a fresh folder; the installed package loads its policy."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project)
    shutil.copy(REPO / "README.md", project)
    shutil.copytree(
        REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "w"),
            str(project),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "w").glob("ganno-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for file in SHIPPED:
        assert f"ganno/pretrained/ippo/{file}" in names
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    code = (
        "import ganno, sys; p = ganno.pretrained_policy(); "
        "print(ganno.__file__, p.config['network']['obs_dim'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PYTHONPATH": str(target),
            "HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "JAX_PLATFORMS": "cpu",
        },
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    # the installed policy is the source tree's: it reads the features its environment recorded
    source = REPO / "src" / "ganno" / "pretrained" / "ippo" / "policy.json"
    shipped = json.loads(source.read_text())
    obs_dim = shipped["network"]["obs_dim"]
    assert obs_dim == len(shipped["env"]["feature_names"])
    assert out.startswith(str(target)) and out.split()[-1] == str(obs_dim)


def test_the_pipeline_refreshes_the_package_only_for_the_default_report():
    from ganno import layout
    from ganno.config import load_config

    assert layout.pretrained_dir(load_config(REPO / "config" / "config.yaml")) == (
        "src/ganno/pretrained"
    )
    assert layout.pretrained_dir({"report": {"dir": "./paper/"}}) == "src/ganno/pretrained"
    # config/test.yaml (and any config publishing elsewhere) refreshes a copy beside its report
    test_config = load_config(REPO / "config" / "test.yaml")
    assert layout.pretrained_dir(test_config) == "results/test_paper/pretrained"
    assert (REPO / layout.PACKAGE_PRETRAINED_DIR / "ippo" / "policy.json").is_file()
    assert set(pretrained.SHIPPED_FILES) == set(SHIPPED)
