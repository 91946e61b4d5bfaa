"""Q3, what GANNO costs: the run's benchmark files and curves read into costs, the break-even
arithmetic (with its "never"), and a section that says what is missing instead of failing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganno import cost, layout
from ganno.config import validate
from ganno.results import COLUMNS

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


@pytest.fixture(scope="module")
def config():
    # A relative reward (a reference run beside the agents': 2 networks a decision) and a task
    # family whose member takes 20 steps a decision: (10 x 2 + 20 x 2) / 2 = 30 inner steps.
    return validate(
        {
            "env": {
                "steps_per_decision": 10,
                "num_decisions": 5,
                "reward": "relative_log_val_error",
            },
            "meta_train": {
                "seeds": [0, 1],
                "total_timesteps": 1000,
                "num_envs": 2,
                "rollout_length": 5,
                "task_family": [
                    {"name": "short", "env": {"num_decisions": 3, "steps_per_decision": 20}}
                ],
            },
            "agents": [{"name": "ippo"}, {"name": "q", "question": "Q1", "tasks": ["train"]}],
            "evaluation": {
                "seeds": [100],
                "lr0_exponents": [-2, 0],
                "lr0_per_decade": 1,
                "generalisation_tasks": [{"name": "wide", "task": {"network": {"width": 128}}}],
            },
            "baselines": {"methods": ["sgd_constant", "dog"]},
            "torch_deployment": {"enabled": False},
        }
    )


def _benchmark(path: Path, wall: float, cpu: float, load: float = 150.0, rows: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{wall}\t0:00:{int(wall):02d}\t100.0\t200.0\t90.0\t95.0\t1.0\t2.0\t{load}\t{cpu}\n"
    path.write_text(HEADER + line * rows)


def _results(path: Path, method: str, task: str, wall: float, meta_seed: int = -1) -> None:
    """Three runs (lr0 1e-2, 1e-1, 1) of ``method``, each with ``wall`` seconds of grid wall."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"method": method, "task": task, "lr0": lr0, "seed": 100, "meta_seed": meta_seed,
         "val_loss": 1.0, "val_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": 0.5,
         "diverged": False, "wall_time_s": wall}
        for lr0 in (1e-2, 1e-1, 1.0)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if path.is_file():
        frame = pd.concat([pd.read_csv(path), frame])
    frame.to_csv(path, index=False)


def _curve(path: Path, env_steps: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"update": i + 1, "env_steps": s, "wall_time": 5.0 * (i + 1)}) + "\n"
                for i, s in enumerate(env_steps))
    )  # fmt: skip


@pytest.fixture
def results(tmp_path, config):
    """The files a run leaves: ippo's two seeds meta-trained (seed 1's benchmark lost), every
    sweep on ``train`` and ``wide`` with its benchmark."""
    root = tmp_path / "results"
    _benchmark(root / "benchmarks/meta_train/ippo_seed_0.tsv", wall=100.0, cpu=180.0, rows=2)
    _curve(root / "meta_train/ippo/seed_0/learning_curve.jsonl", [400, 800])
    _curve(root / "meta_train/ippo/seed_1/learning_curve.jsonl", [400, 800])
    for task, cpu in (("train", 40.0), ("wide", 80.0)):
        base = root / layout.BASELINES_CSV.format(task=task)
        _results(base, "sgd_constant", task, wall=1.0)
        _results(base, "dog", task, wall=3.0)  # 3/4 of the sweep's grid wall time
        _benchmark(root / layout.BASELINES_SWEEP_BENCHMARK.format(task=task), 50.0, cpu)
        for seed in (0, 1):
            csv = root / layout.AGENT_CSV.format(task=task, agent="ippo", seed=seed)
            _results(csv, "ganno_ippo", task, wall=2.0, meta_seed=seed)
        _benchmark(root / layout.AGENT_SWEEP_BENCHMARK.format(task=task, agent="ippo"), 20.0, 12.0)
    return root


def test_read_benchmark(tmp_path):
    path = tmp_path / "job.tsv"
    _benchmark(path, wall=273.96, cpu=319.28, load=116.36)
    assert cost.read_benchmark(path) == pytest.approx(
        {"wall_s": 273.96, "cpu_s": 319.28, "mean_load": 116.36, "max_rss_mb": 100.0}
    )
    path.write_text(HEADER + "10.0\t0:00:10\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t12.5\n")  # no psutil data
    read = cost.read_benchmark(path)
    assert read["cpu_s"] == 12.5 and math.isnan(read["mean_load"])
    assert cost.read_benchmark(tmp_path / "absent.tsv") is None
    (tmp_path / "empty.tsv").write_text("")
    assert cost.read_benchmark(tmp_path / "empty.tsv") is None


def test_meta_training_cost_reads_benchmarks_and_curves(results, config):
    meta = cost.meta_training_cost(results, config).set_index("seed")
    assert list(meta["agent"]) == ["ippo", "ippo"]  # the main agents only: no question agent
    assert meta.loc[0, "cpu_s"] == 180.0 and meta.loc[0, "wall_s"] == 100.0
    assert meta.loc[0, "mean_load"] == 150.0
    assert math.isnan(meta.loc[1, "cpu_s"]) and meta.loc[1, "benchmark"] == ""
    assert (meta["decisions"] == 800).all() and (meta["decisions_from"] == "curve").all()
    assert (meta["inner_trainings"] == 2).all()  # the agents' run and the reference run
    assert (meta["inner_steps"] == 800 * 30).all()
    assert meta.loc[0, "curve_wall_s"] == 10.0


def test_inner_steps_without_a_reference_and_planned_decisions(config):
    plain = validate({**config, "env": {**config["env"], "reward": "log_val_loss_drop"}})
    assert cost.inner_trainings_per_decision(plain) == 1
    assert cost.inner_steps_per_decision(plain) == 15.0  # (10 + 20) / 2
    counterfactual = validate(
        {**config, "env": {**config["env"], "reward": "counterfactual_log_val_loss_drop"}}
    )
    assert cost.inner_trainings_per_decision(counterfactual) == 1 + 3  # N = 3 layers
    # 1000 decisions buy 50 updates of 2 envs x 5 steps x 2 members
    assert cost.planned_decisions(config) == 1000
    # a pool of 10 episodes a member: 10 x 5 (train) and 10 x 3 (short) reference intervals
    # trained once, over the 500 decisions each member plays
    pooled = validate({**config, "meta_train": {**config["meta_train"], "reference_pool": 10}})
    assert cost.inner_trainings_per_decision(pooled) == pytest.approx(1 + 50 / 500)
    assert cost.inner_steps_per_decision(pooled) == pytest.approx((10 * 1.1 + 20 * 1.06) / 2)


def test_evaluation_cost_per_run(results, config):
    ev = cost.evaluation_cost(results, config).set_index(["method", "task"])
    # the baselines' sweep shared by grid wall time: sgd_constant 1/4, dog 3/4 of 40 CPU-s
    assert ev.loc[("sgd_constant", "train"), "cpu_s"] == pytest.approx(10.0)
    assert ev.loc[("dog", "train"), "cpu_s_per_run"] == pytest.approx(30.0 / 3)
    assert ev.loc[("dog", "wide"), "cpu_s_per_run"] == pytest.approx(60.0 / 3)
    # the agent's sweep (both meta-training seeds' policies): 12 CPU-s over 6 runs
    assert ev.loc[("ganno_ippo", "train"), "runs"] == 6
    assert ev.loc[("ganno_ippo", "train"), "cpu_s_per_run"] == pytest.approx(2.0)


def test_break_even_arithmetic():
    # 100 once, then 5 a problem, against 3 x 10 a problem: 100 / 25 = 4 problems cost the same,
    # the 5th is the first where GANNO costs less in all (125 < 150)
    assert cost.problems_to_break_even(100.0, 3, 10.0, 5.0) == 5
    assert cost.problems_to_break_even(99.0, 3, 10.0, 5.0) == 4
    assert math.isinf(cost.problems_to_break_even(100.0, 1, 5.0, 10.0))  # no saving: never
    assert math.isinf(cost.problems_to_break_even(100.0, 1, 5.0, 5.0))
    # the baseline needs one run as GANNO does: no tuning saved, whatever one run of each costs
    assert math.isinf(cost.problems_to_break_even(100.0, 1, 10.0, 5.0))
    assert math.isnan(cost.problems_to_break_even(np.nan, 3, 10.0, 5.0))  # not measured
    assert cost.fmt_problems(math.inf) == "never"
    assert cost.fmt_problems(np.nan) == cost.NOT_MEASURED
    assert cost.fmt_problems(5.0) == "5"


def test_break_even_per_task_and_pooled():
    saved = pd.DataFrame(
        [
            # dog needs 3 runs on train; sgd_constant is already there at k = 1; on the held-out
            # tasks dog never reaches GANNO within its grid of n = 4 (k = n + 1 = 5)
            ("ganno_ippo", "dog", "train", 3, "3", 4),
            ("ganno_ippo", "sgd_constant", "train", 1, "already at k = 1", 4),
            ("ganno_ippo", "dog", "wide", 5, "never within the grid", 4),
            ("ganno_ippo", "dog", "deep", 2, "2", 4),
            ("ganno_ippo", "dog", cost.POOLED, 5, "never within the grid", 4),
        ],
        columns=["ganno_method", "method", "task", "k_needed", "label", "n"],
    )
    evaluation = pd.DataFrame(
        [("dog", "train", 10.0), ("sgd_constant", "train", 4.0), ("ganno_ippo", "train", 5.0),
         ("dog", "wide", 20.0), ("ganno_ippo", "wide", 10.0),
         ("dog", "deep", 40.0), ("ganno_ippo", "deep", 30.0)],
        columns=["method", "task", "cpu_s_per_run"],
    )  # fmt: skip
    meta = pd.DataFrame({"method": ["ganno_ippo"] * 2, "cpu_s": [150.0, 50.0]})
    be = cost.break_even(saved, evaluation, meta).set_index(["baseline", "task"])
    assert be.loc[("dog", "train"), "problems"] == 9  # 200 / (30 - 5) = 8: the 9th
    assert be.loc[("dog", "train"), "problems_one_seed"] == 5  # 100 / 25 = 4: the 5th
    assert math.isinf(be.loc[("sgd_constant", "train"), "problems"])  # 4 < 5 per problem: never
    assert be.loc[("dog", "wide"), "problems"] == 3  # 200 / (100 - 10) = 2.2
    pooled = be.loc[("dog", cost.POOLED)]  # costs: the mean over wide and deep
    assert pooled["baseline_cpu_per_run"] == 30.0 and pooled["ganno_cpu_per_run"] == 20.0
    assert pooled["problems"] == 2  # 200 / (5 x 30 - 20) = 1.5
    shown = cost.break_even_display(be.reset_index())
    assert "never" in set(shown["problems to break even (every seed)"])
    assert "5 (never within the grid)" in set(shown["runs of the baseline per problem (k)"])
    # k = n + 1 understates a baseline that never gets there: its count is an upper bound
    assert "at most 2" in set(shown["problems to break even (every seed)"])


def test_velo_ratio_units():
    velo_seconds = 4000 * 30 * 24 * 3600  # the abstract's four thousand TPU-months
    assert cost.velo_ratio(velo_seconds) == pytest.approx(1.0)
    assert cost.velo_ratio(1.0368e3) == pytest.approx(1e-7)


def test_section_on_a_run(results, config, tmp_path):
    profile = tmp_path / "profile.csv"
    pd.DataFrame(
        {"part": list(cost.PROFILE_PARTS), "seconds": [10.0, 0.0, 50.0, 30.0, 10.0],
         "share": [0.1, 0.0, 0.5, 0.3, 0.1], "machine": "x86_64, 2 CPUs", "config": "config.yaml"}
    ).to_csv(profile, index=False)  # fmt: skip
    saved = pd.DataFrame(
        [("ganno_ippo", "dog", "train", 3, "3", 4)],
        columns=["ganno_method", "method", "task", "k_needed", "label", "n"],
    )
    out = tmp_path / "paper"
    section = cost.q3_section(out, config, results, saved, profile_paths=[profile])
    for name in ("q3_cost", "q3_break_even"):
        assert section.tables[name].csv.is_file() and section.tables[name].md.is_file()
    text = "\n".join(section.lines)
    assert text.startswith("## Q3 What GANNO costs")
    assert "reference run 30% (30 s)" in text
    # seed 1's benchmark is missing: the total is not measured, and the section says which file
    assert "`benchmarks/meta_train/ippo_seed_1.tsv`" in text
    assert section.missing == ["`benchmarks/meta_train/ippo_seed_1.tsv`"]
    assert "not measured in this run" in text  # the break-even needs every seed's cost
    table = pd.read_csv(section.tables["q3_cost"].csv).set_index(["method", "quantity"])
    assert table.loc[("ganno_ippo", "meta-training CPU time per seed (mean)"), "value"] == 180.0
    assert table.loc[("ganno_ippo", "inner SGD steps per seed"), "value"] == 24000
    assert table.loc[("dog", "evaluation CPU time per run, train"), "value"] == 10.0
    overhead = table.loc[("ganno (PyTorch scheduler)", "scheduler overhead benchmark")]
    assert overhead["source"].startswith(cost.NOT_MEASURED)


def test_section_with_every_file_missing(tmp_path, config):
    empty = tmp_path / "results"
    empty.mkdir()
    no_saved = pd.DataFrame(columns=["ganno_method", "method", "task"])
    section = cost.q3_section(tmp_path / "paper", config, empty, no_saved, profile_paths=[])
    text = "\n".join(section.lines)
    assert "## Q3 What GANNO costs" in text
    assert "Where the time goes: not measured in this run" in text
    assert "Break-even: not measured in this run" in text
    assert "`benchmarks/meta_train/ippo_seed_0.tsv`" in text
    assert section.break_even.empty
    assert pd.read_csv(section.tables["q3_cost"].csv)["value"].isna().any()


def test_the_reference_pool_line_reads_both_profiles_and_the_runs_config(config, tmp_path):
    """The Q3 line on the reference pool states the measured verdict both ways, from the two
    profiles' numbers, and whether this run's agents used a pool (from the config)."""
    path = tmp_path / "pool.csv"

    def write(pooled_run: float) -> None:
        rows = []
        for pool, run, fill, ref in ((None, 100.0, 0.0, 30.0), (8, pooled_run, 12.0, 1.0)):
            for part, seconds in (("reference pool", fill), ("reference run", ref), ("PPO", 5.0)):
                rows.append({"part": part, "seconds": seconds, "reference_pool": pool,
                             "run_seconds_estimate": run, "config": "c.yaml"})  # fmt: skip
        pd.DataFrame(rows).to_csv(path, index=False)

    assert cost.reference_pool_lines(tmp_path / "absent.csv", config) == []
    write(120.0)
    (line,) = cost.reference_pool_lines(path, config)
    assert "a pool of 8 episodes per task" in line and "Filling the pool took 12 s" in line
    assert "against 30 s trained alongside; a run 120 s against 100 s" in line
    assert "it does not make meta-training cheaper here" in line
    assert line.endswith("This run's agents meta-trained without a pool.")
    write(75.0)
    pooled = validate({**config, "meta_train": {**config["meta_train"], "reference_pool": 4}})
    (line,) = cost.reference_pool_lines(path, pooled)
    assert "it makes meta-training 25% cheaper here" in line
    assert line.endswith("This run's agents meta-trained with pools of 4 episodes per task.")
