"""The lr0 grid study (ganno.grid_study): its table, its config block and its workflow target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganno import grid_study
from ganno.cli import main
from ganno.config import ConfigError, task_config, validate

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [100, 101, 102, 103, 104, 105]
COARSE = [0.01, 0.1, 1.0]  # lr0_exponents [-2, 0], one a decade
FINE_ONLY = [10**-1.5, 10**-0.5]  # two a decade adds these


def _config(**grid):
    return validate(
        {
            "evaluation": {
                "seeds": SEEDS,
                "lr0_exponents": [-2, 0],
                "lr0_per_decade": 1,
                "generalisation_tasks": [{"name": "mlp_depth5", "task": {"network": {"depth": 5}}}],
            },
            "meta_train": {"seeds": [0, 1]},
            "agents": [{"name": "ippo", "algorithm": "ippo"}, {"name": "mappo"}],
            "baselines": {
                "methods": ["sgd_constant", "sgd_cosine", "adam", "dog"],
                "generalisation_methods": ["sgd_constant", "dog"],
                "bootstrap_resamples": 200,
            },
            "grid_study": {
                "lr0_per_decade": 2,
                "tasks": ["train", "mlp_depth5"],
                "methods": ["sgd_constant", "sgd_cosine", "dog"],
                "agent": "ippo",
                **grid,
            },
        }
    )


def _runs(method, task, accuracy, lr0s, meta_seed=-1, noise_seed=0):
    """Runs of ``method`` on ``task``: accuracy(lr0) plus a little seed noise, the validation
    accuracy tracking the test accuracy (so tuning finds the best lr0)."""
    rows = []
    for lr0 in lr0s:
        for seed in SEEDS:  # a run's noise depends on its lr0 and seed only, as a real run's
            rng = np.random.default_rng([noise_seed, round(10 * np.log10(lr0)) + 50, seed])
            acc = accuracy(lr0) + rng.normal(0, 0.003)
            rows.append(
                {
                    "method": method,
                    "task": task,
                    "lr0": lr0,
                    "seed": seed,
                    "meta_seed": meta_seed,
                    "val_loss": 1 - acc,
                    "val_accuracy": acc,
                    "test_loss": 1 - acc,
                    "test_accuracy": acc,
                    "diverged": False,
                    "wall_time_s": 1.0,
                }
            )
    return pd.DataFrame(rows)


def _peak(best_lr0, height):
    """Accuracy peaking at ``best_lr0``, falling by 0.1 a decade."""
    return lambda lr0: height - 0.1 * abs(np.log10(lr0) - np.log10(best_lr0))


def _cosine(lr0):
    """Best at 10**-0.5 (on the fine grid only): 0.70 there, 0.65 at 0.1, the coarse grid's best."""
    near = {10**-0.5: 0.70, 0.1: 0.65, 1.0: 0.60}
    return next((v for k, v in near.items() if np.isclose(lr0, k)), 0.50)


# On the fine grid only, sgd_cosine finds its best lr0. The agent is flat at 0.67 on train (above
# the coarse best, below the fine best) and matches sgd_cosine exactly on mlp_depth5 (level).
ACCURACY = {
    ("train", "sgd_constant"): _peak(0.1, 0.55),
    ("train", "sgd_cosine"): _cosine,
    ("train", "dog"): _peak(0.01, 0.50),
    ("train", "ganno_ippo"): lambda lr0: 0.67,
    ("mlp_depth5", "sgd_constant"): _peak(0.1, 0.55),
    ("mlp_depth5", "sgd_cosine"): _cosine,
    ("mlp_depth5", "dog"): _peak(0.01, 0.50),
    ("mlp_depth5", "ganno_ippo"): _cosine,
}


def _write_sweeps(results: Path, coarse_methods: dict[str, list[str]]) -> None:
    """The default run's sweeps (``coarse_methods`` per task: which baselines it ran) and the
    study's, as the workflow lays them out."""
    for task in ("train", "mlp_depth5"):
        for grid, lr0s, methods in (
            ("sweep", COARSE, coarse_methods[task]),
            ("grid_study/sweep", sorted(COARSE + FINE_ONLY), ["sgd_constant", "sgd_cosine", "dog"]),
        ):
            folder = results / grid / task
            folder.mkdir(parents=True, exist_ok=True)
            base = [_runs(m, task, ACCURACY[task, m], lr0s, noise_seed=i)
                    for i, m in enumerate(methods)]  # fmt: skip
            pd.concat(base).to_csv(folder / "baselines.csv", index=False)
            for meta_seed in (0, 1):
                agent = _runs("ganno_ippo", task, ACCURACY[task, "ganno_ippo"], lr0s, meta_seed,
                              noise_seed=10 + meta_seed)  # fmt: skip
                agent.to_csv(folder / f"ippo_seed_{meta_seed}.csv", index=False)


@pytest.fixture
def sweeps(tmp_path):
    results = tmp_path / "results"
    # as the default config does: fewer baselines on the held-out tasks than on train
    _write_sweeps(
        results,
        {"train": ["sgd_constant", "sgd_cosine", "dog"], "mlp_depth5": ["sgd_constant", "dog"]},
    )
    return results


def _table(results: Path, config=None) -> grid_study.GridStudy:
    config = config or _config()
    return grid_study.grid_study_table(config, results / "sweep", results / "grid_study" / "sweep")


def test_a_schedule_gains_on_the_fine_grid_and_the_agents_standing_moves(sweeps):
    study = _table(sweeps)
    table = study.numbers.set_index(["task", "method"])
    assert list(dict.fromkeys(study.numbers["task"])) == ["train", "mlp_depth5"]
    assert list(study.numbers["method"][:4]) == ["sgd_constant", "sgd_cosine", "dog", "ganno_ippo"]
    assert (study.numbers["coarse_lr0s"] == 3).all() and (study.numbers["fine_lr0s"] == 5).all()
    cosine = table.loc["train", "sgd_cosine"]
    assert cosine["coarse_tuned_lr0"] == pytest.approx(0.1)  # the best of the coarse grid
    assert cosine["fine_tuned_lr0"] == pytest.approx(10**-0.5)  # its best, on the fine grid
    assert cosine["coarse_iqm"] == pytest.approx(0.65, abs=0.01)
    assert cosine["fine_iqm"] == pytest.approx(0.70, abs=0.01)
    assert cosine["change"] == pytest.approx(0.05, abs=0.01)
    assert cosine["coarse_low"] <= cosine["coarse_iqm"] <= cosine["coarse_high"]
    assert cosine["coarse_runs"] == cosine["fine_runs"] == len(SEEDS)
    constant = table.loc["train", "sgd_constant"]  # its best is on both grids: no change
    assert constant["change"] == pytest.approx(0, abs=1e-12)
    agent = table.loc["train", "ganno_ippo"]
    assert agent["coarse_runs"] == 2 * len(SEEDS)  # both meta-training seeds pooled
    assert (agent["coarse_standing"], agent["coarse_best"]) == ("above", "sgd_cosine")
    assert (agent["fine_standing"], agent["fine_best"]) == ("below", "sgd_cosine")
    level = table.loc["mlp_depth5", "ganno_ippo"]
    assert level["fine_standing"] == "level" and level["fine_best"] == "sgd_cosine"
    # only the agent's row carries a standing
    assert (table.drop(index="ganno_ippo", level="method")["fine_standing"] == "").all()
    assert "**below** the best handcrafted SGD schedule there, sgd_cosine" in " ".join(study.notes)


def test_a_method_the_default_run_did_not_run_takes_the_fine_runs_on_the_coarse_grid(sweeps):
    table = _table(sweeps).numbers.set_index(["task", "method"])
    cosine = table.loc["mlp_depth5", "sgd_cosine"]
    assert cosine["coarse_from"] == grid_study.FROM_FINE
    assert cosine["coarse_tuned_lr0"] == pytest.approx(0.1)  # a coarse lr0 (the fine best is not)
    assert cosine["coarse_runs"] == len(SEEDS)
    assert table.loc["mlp_depth5", "dog"]["coarse_from"] == grid_study.FROM_SWEEP
    # with sgd_cosine on the coarse grid too, the agent is level on both grids there
    assert table.loc["mlp_depth5", "ganno_ippo"]["coarse_standing"] == "level"


def test_the_command_writes_the_table_with_its_command_and_grid_first(sweeps, tmp_path):
    config_path = tmp_path / "config.yaml"
    from ganno.config import dump_config

    dump_config(_config(), config_path)
    out = tmp_path / "paper" / "tables" / "grid_study"
    fine = sweeps / "grid_study" / "sweep"
    assert main(["grid-study", "--config", str(config_path), "--coarse", str(sweeps / "sweep"),
                 "--fine", str(fine), "--out", str(out)]) == 0  # fmt: skip
    markdown = out.with_suffix(".md").read_text().splitlines()
    assert markdown[0].startswith("Made by `snakemake --cores all grid_study`")
    assert "evaluation.lr0_per_decade 1 (3 lr0" in markdown[0]
    assert "grid_study.lr0_per_decade 2 (5 lr0)" in markdown[0]
    assert any("ganno_ippo" in line and "below (sgd_cosine)" in line for line in markdown)
    numbers = pd.read_csv(out.with_suffix(".csv"))
    assert len(numbers) == 2 * 4 and list(numbers.columns) == list(grid_study.COLUMNS)
    # full precision in the CSV, three decimals on display
    assert numbers["fine_iqm"].map(lambda x: len(repr(x)) > 6).any()
    assert "\\begin{table}" in out.with_suffix(".tex").read_text()


def test_a_missing_sweep_names_the_file_and_the_command_that_makes_it(sweeps, tmp_path):
    (sweeps / "grid_study" / "sweep" / "mlp_depth5" / "ippo_seed_1.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"mlp_depth5/ippo_seed_1\.csv is missing; "
                       r"`snakemake --cores all grid_study` makes it"):  # fmt: skip
        _table(sweeps)
    (sweeps / "sweep" / "train" / "baselines.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"sweep/train/baselines\.csv is missing; "
                       r"`snakemake --cores all` makes it"):  # fmt: skip
        _table(sweeps)


def test_a_task_that_could_not_run_is_left_out_with_its_reason(sweeps):
    for grid in ("sweep", "grid_study/sweep"):
        folder = sweeps / grid / "mlp_depth5"
        for csv in folder.glob("*.csv"):
            csv.write_text("")
            Path(f"{csv}.skipped").write_text("its dataset is absent\n")
    study = _table(sweeps)
    assert set(study.numbers["task"]) == {"train"}
    assert any("its dataset is absent" in note for note in study.notes)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"tasks": ["train", "mlp_depth55"]},
         r"'grid_study.tasks.1' = 'mlp_depth55' is not a task of the config \(did you mean "
         r"'mlp_depth5'\?\); choose from \['train', 'mlp_depth5'\]"),
        ({"methods": ["sgd_cosin"]}, r"'grid_study.methods.0' = 'sgd_cosin' is not allowed"),
        ({"methods": ["sgd_step"]},
         r"'grid_study.methods.0' = 'sgd_step' is not among the config's baselines; add it to "
         r"baselines.methods"),
        ({"agent": "ipo"},
         r"'grid_study.agent' = 'ipo' is not an agent of the config \(did you mean 'ippo'\?\); "
         r"choose from \['ippo', 'mappo'\]"),
        ({"lr0_per_decade": 0}, r"'grid_study.lr0_per_decade' = 0 is out of range"),
        ({"task": ["train"]}, r"unknown key 'task' \(did you mean 'tasks'\?\) under 'grid_study'"),
    ],
)  # fmt: skip
def test_a_bad_grid_study_block_is_refused_naming_the_key(grid, message):
    with pytest.raises(ConfigError, match=message) as error:
        _config(**grid)
    assert str(error.value).count("\n  - ") == 1  # said once, not once per derived task config


def test_the_defaults_apply_without_a_block_and_derived_configs_stay_valid():
    config = validate({})  # the default config: every default task and baseline is there
    assert "grid_study" not in config  # absent stays absent: its fingerprint is unchanged
    assert grid_study.settings(config) == {
        "lr0_per_decade": 10,
        "tasks": ["train", "mlp_depth8", "cnn1d"],
        "methods": ["sgd_constant", "sgd_step", "sgd_exponential", "sgd_cosine",
                    "sgd_warmup_cosine", "sgd_onecycle", "dog"],
        "agent": "ippo",
    }  # fmt: skip
    small = _config()
    del small["grid_study"]
    with pytest.raises(ConfigError, match=r"(?s)the defaults.*'grid_study.tasks.1' = 'mlp_depth8'"):
        grid_study.settings(validate(small))
    # a task's own config has no evaluation tasks, so the study there is on train only
    assert task_config(_config(), "mlp_depth5")["grid_study"]["tasks"] == ["train"]
    fine = grid_study.fine_config(_config(), grid_study.settings(_config()))
    assert fine["evaluation"]["lr0_per_decade"] == 2


def _dry_run(work: Path, *targets: str, configfile: str = "config/test.yaml") -> str:
    from test_pipeline import _snakemake

    result = _snakemake(work, "--cores", "2", "-n", *targets, "--configfile", configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _job_counts(out: str) -> dict[str, int]:
    stats = out[out.index("Job stats:") :].splitlines()[3:]
    counts = {}
    for line in stats:
        if line.startswith("total"):
            break
        name, count = line.split()
        counts[name] = int(count)
    return counts


def test_the_target_plans_the_grid_jobs_and_all_does_not(tmp_path):
    from test_pipeline import _copy_workflow

    _copy_workflow(tmp_path)
    out = _dry_run(tmp_path, "grid_study")
    jobs = _job_counts(out)
    # per study task (the test config's: train): a baselines sweep and an agent sweep on the fine
    # grid, and the default run's sweeps of them on the coarse grid
    assert jobs["grid_study"] == 1
    assert jobs["grid_study_baselines"] == jobs["grid_study_agent"] == 1
    assert jobs["sweep_baselines"] == jobs["sweep_agent"] == 1
    assert "report" not in jobs  # the table needs the sweeps, not the report
    assert "--methods sgd_constant,dog" in out
    assert "results/grid_study/config.yaml" in out
    assert "--out results/test_paper/tables/grid_study" in out
    fine = (tmp_path / "results" / "grid_study" / "config.yaml").read_text()
    assert "lr0_per_decade: 2" in fine
    everything = _job_counts(_dry_run(tmp_path))
    assert not [job for job in everything if job.startswith("grid_study")]


def test_defaults_that_do_not_fit_the_config_fail_the_target_only(tmp_path):
    from test_pipeline import _copy_workflow, _snakemake

    _copy_workflow(tmp_path)
    test_config = (tmp_path / "config" / "test.yaml").read_text()
    (tmp_path / "config" / "no_grid.yaml").write_text(test_config.split("\ngrid_study:")[0] + "\n")
    assert "torch_deployment:" in (tmp_path / "config" / "no_grid.yaml").read_text()
    _dry_run(tmp_path, configfile="config/no_grid.yaml")  # the pipeline plans as before
    args = ("--cores", "2", "-n", "grid_study", "--configfile", "config/no_grid.yaml")
    result = _snakemake(tmp_path, *args)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "the config has no grid_study block" in out
    assert "'grid_study.tasks.1' = 'mlp_depth8' is not a task of the config" in out
