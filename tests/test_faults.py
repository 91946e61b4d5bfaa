"""Fault injection: each way a run can be broken gets a one-line error naming the fix, raised before
work where possible, and loses nothing computed (issue 15).

Processes are killed and run concurrently for real (subprocesses of the ``ganno`` command line,
with two host devices as on the pipeline's machines); a full disk is simulated by a failing
``fsync``; an unwritable output is a path below a regular file, which even root cannot write.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

import ganno.io
from ganno import data
from ganno.cli import main
from ganno.config import ConfigError, load_config, merge
from ganno.coordination_game import CoordinationGame
from ganno.errors import (
    CheckpointError,
    DataIntegrityError,
    GannoError,
    GannoWarning,
    OutputError,
    RunLockedError,
)
from ganno.io import RunLock, atomic_write, load_checkpoint, save_checkpoint, write_json
from ganno.meta_train import meta_train, read_curve

# One worker runs this module, so its module fixtures (two meta-training runs) are built once
# (under --dist loadgroup an ungrouped test goes to either worker, which builds its own).
pytestmark = pytest.mark.xdist_group("faults")

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("steps_per_second", "wall_time")
UPDATES = 12


ENV = CoordinationGame(num_agents=2, num_actions=3, time_limit=4)
TINY_META = {
    "meta_train": {
        "num_envs": 4,
        "rollout_length": 8,
        "hidden_sizes": [16],
        "total_timesteps": 4 * 8 * 8,
        "updates_per_chunk": 2,
        "checkpoint_every": 4,
    }
}


def _without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _ganno(*args: str) -> subprocess.Popen:
    """``ganno ARGS`` in a subprocess with two host devices (the environments sharded over them),
    sharing the test session's XLA compilation cache (tests/conftest.py) as the pipeline's jobs
    share theirs."""
    env = {**os.environ, "GANNO_HOST_DEVICES": "2", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "ganno.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """config/test.yaml with its data in a temporary folder; meta-training 12 updates of one
    chunk each, a checkpoint after every one (so a kill lands between checkpoints)."""
    tmp = tmp_path_factory.mktemp("faults")
    cfg = merge(
        yaml.safe_load((ROOT / "config" / "test.yaml").read_text()),
        {
            "data": {"root": str(tmp / "data")},
            "meta_train": {
                "total_timesteps": 4 * 8 * UPDATES,
                "checkpoint_every": 1,
                "updates_per_chunk": 1,
                "task_family": [],  # the training task alone: UPDATES updates of 4 x 8 decisions
            },
        },
    )
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    resolved = load_config(path)
    data.prepare("mnist1d", resolved["data"]["root"])  # once, not by two runs at once
    return path


def _meta_train_args(config: Path, out: Path) -> list[str]:
    return ["meta-train", "--config", str(config), "--algo", "ippo", "--out", str(out)]


@pytest.fixture(scope="module")
def two_runs_at_once(tiny, tmp_path_factory):
    """Two ``ganno meta-train`` into one folder at the same time."""
    out = tmp_path_factory.mktemp("shared") / "ippo"
    args = [*_meta_train_args(tiny, out), "--no-progress"]
    procs = [_ganno(*args), _ganno(*args)]
    results = [_finish(p) for p in procs]
    return out, procs, results


# ----------------------------------------------------------------------------- one writer


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(two_runs_at_once):
    out, procs, results = two_runs_at_once
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = next(p for p, (code, _) in zip(procs, results, strict=True) if code == 0)
    loser_output = next(text for code, text in results if code == 2)
    assert f"ganno: error: {out} is being written by another run (PID {winner.pid} " in (
        loser_output
    )
    assert "Traceback" not in loser_output
    # The winner's run is whole: every update once, a policy, no lock or partial file left.
    assert [r["update"] for r in read_curve(out / "learning_curve.jsonl")] == list(
        range(1, UPDATES + 1)
    )
    assert (out / "policy" / "policy.json").is_file()
    assert not list(out.rglob("*.tmp")) and not (out / ganno.io.LOCK_FILE).exists()


def test_a_lock_is_held_per_folder_and_released(tmp_path):
    with RunLock(tmp_path):
        held = (tmp_path / ganno.io.LOCK_FILE).read_text()
        assert held.startswith(f"PID {os.getpid()} on ")
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()} on"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: free again
        pass


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(ganno.io.fcntl, "flock", no_locks)
    with (
        pytest.warns(GannoWarning, match="cannot lock .* make sure that no other run writes"),
        RunLock(tmp_path),
    ):
        pass


# ----------------------------------------------------------------------------- kill and resume


def test_a_killed_run_resumes_bitwise_identical_to_an_uninterrupted_one(
    tiny, two_runs_at_once, tmp_path
):
    reference = two_runs_at_once[0]
    out = tmp_path / "ippo"
    proc = _ganno(*_meta_train_args(tiny, out), "--no-progress")
    third = out / "checkpoints" / "checkpoint_00000003.msgpack"
    deadline = time.monotonic() + 240
    while not third.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = read_curve(out / "learning_curve.jsonl")
    assert 3 <= len(done) < UPDATES  # killed mid-run, with a stale lock left behind
    assert (out / ganno.io.LOCK_FILE).read_text().startswith(f"PID {proc.pid} ")

    code, text = _finish(_ganno(*_meta_train_args(tiny, out), "--no-progress"))
    assert code == 0, text
    assert f"ganno: warning: taking over the run folder {out}: its last writer (PID {proc.pid}" in (
        text
    )
    rows = read_curve(out / "learning_curve.jsonl")
    assert [r["update"] for r in rows] == list(range(1, UPDATES + 1))
    # Bitwise: every logged number and the final parameters.
    assert _without_timing(rows) == _without_timing(read_curve(reference / "learning_curve.jsonl"))
    for name in ("actor_params.msgpack", "policy.json"):
        assert (out / "policy" / name).read_bytes() == (reference / "policy" / name).read_bytes()
    assert not list(out.rglob("*.tmp"))


def test_every_checkpoint_unreadable_names_the_way_forward(tmp_path):
    state = {"params": np.zeros(3, np.float32), "key": jax.random.key(0)}
    for update in (4, 8):
        (tmp_path / f"checkpoint_{update:08d}.msgpack").write_bytes(b"\x93\x01")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, state)
    message = str(info.value)
    assert "\n" not in message and "checkpoint_00000008.msgpack (" in message
    assert f"Delete {tmp_path} to restart the run from the beginning" in message


# ----------------------------------------------------------------------------- full or unwritable


def _disk_full_after(monkeypatch, calls: int) -> None:
    """``fsync`` fails with ENOSPC from its ``calls + 1``-th call on, as on a disk that filled."""
    real, count = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(ganno.io.os, "fsync", fsync)


def test_a_full_disk_names_the_path_and_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_json(target, {"old": 1})
    _disk_full_after(monkeypatch, 0)
    with pytest.raises(OutputError, match=f"cannot write {target}: the disk is full"):
        write_json(target, {"new": 2})
    assert json.loads(target.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_disk_that_fills_during_meta_training_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(overrides=TINY_META)
    # The writes up to the checkpoint of update 4: curve, config, checkpoint.
    _disk_full_after(monkeypatch, 3)
    with pytest.raises(OutputError) as info:
        meta_train(ENV, cfg, "ippo", 0, tmp_path, progress=False)
    message = str(info.value)
    assert f"cannot write {tmp_path}/checkpoints/checkpoint_00000008.msgpack: the disk is full" in (
        message
    )
    assert message.endswith("rerunning resumes from update 4")
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / ganno.io.LOCK_FILE).exists()
    monkeypatch.undo()  # space freed: the rerun resumes and completes
    meta_train(ENV, cfg, "ippo", 0, tmp_path, progress=False)
    assert [r["update"] for r in read_curve(tmp_path / "learning_curve.jsonl")] == list(range(1, 9))


def _below_a_file(tmp_path: Path, name: str) -> tuple[Path, Path]:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be\n")
    return blocker, blocker / "sub" / name


def _must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the output was checked")


def test_an_unwritable_baselines_output_fails_before_the_grid(tiny, tmp_path, monkeypatch, capsys):
    import ganno.experiments

    monkeypatch.setattr(ganno.experiments, "run_baselines", _must_not_run)
    blocker, out = _below_a_file(tmp_path, "b.csv")
    assert main(["baselines", "--config", str(tiny), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"ganno: error: cannot write {out}: {blocker} is a file, not a folder: choose another "
        "output path (no partial file was left)\n"
    )


def test_an_unwritable_run_policy_output_fails_before_the_policy_runs(
    two_runs_at_once, tmp_path, monkeypatch, capsys
):
    import ganno.policy

    monkeypatch.setattr(ganno.policy.Policy, "load", _must_not_run)
    blocker, out = _below_a_file(tmp_path, "t.json")
    policy = two_runs_at_once[0] / "policy"
    assert main(["run-policy", "--policy", str(policy), "--lr0", "0.1", "--out", str(out)]) == 2
    assert f"cannot write {out}: {blocker} is a file, not a folder" in capsys.readouterr().err


def test_an_unwritable_meta_train_folder_fails_before_data_or_compilation(
    tiny, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(data, "load_from_config", _must_not_run)
    blocker, out = _below_a_file(tmp_path, "run")
    assert main([*_meta_train_args(tiny, out), "--no-progress"]) == 2
    assert f"cannot write {out}: {blocker} is a file, not a folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- policies and lr0


def test_a_policy_with_another_action_set_than_the_config_is_refused(
    two_runs_at_once, tiny, tmp_path, capsys
):
    three = tmp_path / "three_actions.yaml"
    cfg = yaml.safe_load(tiny.read_text())
    three.write_text(yaml.safe_dump(merge(cfg, {"env": {"actions": [0.5, 1.0, 2.0]}})))
    policy = two_runs_at_once[0] / "policy"
    out = tmp_path / "t.json"
    args = ["run-policy", "--policy", str(policy), "--config", str(three), "--lr0", "0.1"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has 5 actions, but task 'train' of this config gives" in err and "3 actions" in err
    assert "pass the config it was trained with" in err and not out.exists()


@pytest.mark.parametrize("lr0", ["-1", "0", "nan", "inf", "-inf", "fast"])
def test_an_impossible_lr0_is_refused_by_the_parser(lr0, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run-policy", "--policy", "p", f"--lr0={lr0}", "--out", "t.json"])
    assert info.value.code == 2
    assert f"argument --lr0: '{lr0}' is not a learning rate; give a positive, finite" in (
        capsys.readouterr().err
    )


def _strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_an_lr0_outside_the_bounds_is_clipped_with_a_warning_and_recorded(
    two_runs_at_once, tmp_path, capsys
):
    policy = two_runs_at_once[0] / "policy"
    out = tmp_path / "t.json"
    args = ["run-policy", "--policy", str(policy), "--controller", "constant", "--lr0", "1000"]
    assert main([*args, "--out", str(out)]) == 0
    warning = (
        "ganno: warning: --lr0 1000 is outside env.lr_bounds [1e-06, 10]: the run starts from 10"
    )
    assert warning in capsys.readouterr().err
    record = _strict_json(out.read_text())
    assert record["lr0"] == 10.0 and record["lr0_requested"] == 1000.0
    assert record["decisions"][0]["learning_rates"] == [10.0, 10.0, 10.0]
    # A constant rate of 10 diverges: its infinite losses are written as null, not Infinity.
    assert record["diverged"] is True and "Infinity" not in out.read_text()


def test_strict_json_writes_null_for_nan_and_infinity(tmp_path):
    path = write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("-inf")], "c": 2})
    assert _strict_json(path.read_text()) == {"a": None, "b": [1.0, None], "c": 2}


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "evaluation:\n  lr0_exponents: [0, -3]\n",
            "'evaluation.lr0_exponents' = [0, -3] is inverted; give [low, high] with low <= high",
        ),
        (
            "meta_train:\n  num_envs: 4\n  rollout_length: 8\n  num_minibatches: 3\n",
            "'meta_train.num_minibatches' = 3 does not divide the batch num_envs x rollout_length "
            "= 4 x 8 = 32; choose one of [1, 2, 4, 8, 16, 32]",
        ),
        (
            "env:\n  reward: counterfactual_log_val_loss_drop\n  actions: [0.5, 2.0]\n",
            "'env.reward' = 'counterfactual_log_val_loss_drop' needs the keep action 1.0 in "
            "'env.actions' = [0.5, 2.0]; add 1.0 or choose another reward",
        ),
        ("", "is empty; write the keys you change (e.g. 'seed: 0')"),
        ("- seed\n", "holds a list, not a mapping of keys to values"),
        (
            "seed: 0\nmeta_train:\n  seeds: [0, 1\n  num_envs: 4\n",
            "line 4, column 11 is not valid YAML (while parsing a flow sequence from line 3, "
            "column 10: expected ',' or ']', but got ':'); fix the file there",
        ),
    ],
)
def test_config_check_catches_what_would_fail_later(tmp_path, capsys, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


def test_snakemake_reports_a_yaml_error_in_the_default_config_with_its_line(tmp_path):
    for name in ("Snakefile", "workflow", "config"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    config = tmp_path / "config" / "config.yaml"
    lines = config.read_text().splitlines()
    config.write_text("\n".join([*lines, "broken: [1, 2", "seed: 0", ""]))
    result = subprocess.run(
        ["snakemake", "-n", "--cores", "1"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert f"config file config/config.yaml, line {len(lines) + 2}, column 5 is not valid YAML" in (
        result.stdout + result.stderr
    )


# ----------------------------------------------------------------------------- data manifests


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"npz_sha256": "\x01"}', "is not valid JSON (Invalid control character"),
        (b"", "is empty"),
        (b"[]", "holds a list"),
        (b'{"npz_sha256": "x"}', "lacks num_classes"),
    ],
)
def test_a_corrupt_manifest_names_the_file_and_the_rebuild(tmp_path, content, problem):
    npz = data.prepare("digits", tmp_path)
    manifest = data.manifest_path(npz)
    manifest.write_bytes(content)
    with pytest.raises(DataIntegrityError) as info:
        data.load("digits", tmp_path)
    message = str(info.value)
    assert message.startswith(f"the dataset manifest {manifest} {problem}")
    assert message.endswith(
        ": it is corrupt. Rebuild the dataset with `ganno data prepare digits --force` "
        "(val_fraction=0.2, split_seed=0)"
    )
    data.prepare("digits", tmp_path)  # a plain prepare rebuilds a corrupt manifest, too
    assert data.load("digits", tmp_path).num_classes == 10


def test_an_unknown_dataset_is_one_line(tmp_path, capsys):
    assert main(["data", "prepare", "cifar10", "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "ganno: error: unknown dataset 'cifar10'; choose one of mnist1d, digits, mnist, "
        "fashion_mnist\n"
    )


# ----------------------------------------------------------------------------- the error classes


def test_ganno_errors_keep_their_builtin_bases():
    from ganno.errors import CheckpointNotFoundError, DatasetMissingError, PolicyNotFoundError

    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, GannoError)
    assert issubclass(DataIntegrityError, ValueError)
    for cls in (CheckpointNotFoundError, DatasetMissingError, PolicyNotFoundError):
        assert issubclass(cls, FileNotFoundError) and issubclass(cls, GannoError)


def test_the_cli_shows_a_traceback_for_bugs_and_with_debug(tiny, monkeypatch, capsys):
    import ganno.cli.config

    def bug(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(ganno.cli.config, "_cmd_config_check", bug)
    with pytest.raises(ValueError, match="a bug"):  # not turned into one line
        main(["config", "check", str(tiny)])
    with pytest.raises(ConfigError, match="does not exist"):
        main(["--debug", "config", "check", "no_such.yaml"])
    assert main(["config", "check", "no_such.yaml"]) == 2
    assert capsys.readouterr().err == (
        "ganno: error: config file no_such.yaml does not exist; check the path\n"
    )


def test_atomic_write_leaves_no_partial_file_when_interrupted(tmp_path):
    target = tmp_path / "table.csv"
    atomic_write(target, "old\n")
    with pytest.raises(KeyboardInterrupt), ganno.io.atomic_open(target) as f:
        f.write("half a ta")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n" and sorted(tmp_path.iterdir()) == [target]


def test_checkpoint_metadata_is_strict_json(tmp_path):
    state = {"w": np.zeros(2, np.float32)}
    save_checkpoint(tmp_path, state, {"update": 1, "loss": float("nan")})
    _, meta = load_checkpoint(tmp_path, state)
    assert meta == {"update": 1, "loss": None}
