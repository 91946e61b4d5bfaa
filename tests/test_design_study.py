"""The design study's table: read from the runs the study script writes, tuned like every table."""

import re

import numpy as np
import pandas as pd
import pytest

from ganno import tables
from ganno.config import load_config
from ganno.design_study import (
    Step,
    run_study,
    study_steps,
    study_table,
    write_across_tasks,
    write_study,
)
from ganno.errors import ResultsMissingError, StepFailedError, UsageError
from ganno.results import COLUMNS


def _runs(method, lr0s, acc_at, seeds, meta_seed=-1, task="train"):
    rows = []
    for lr0 in lr0s:
        for s in seeds:
            acc = acc_at(lr0) + 0.001 * (s - 100)
            rows.append(
                {
                    "method": method,
                    "task": task,
                    "lr0": lr0,
                    "seed": s,
                    "meta_seed": meta_seed,
                    "val_loss": 2.0 - acc,
                    "val_accuracy": acc,
                    "test_loss": 3.0 - acc,
                    "test_accuracy": acc,
                    "diverged": False,
                    "wall_time_s": 1.0,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


@pytest.fixture()
def study(tmp_path):
    cfg = load_config(
        overrides={
            "agents": [
                {"name": "plain", "question": "design", "tasks": ["train"]},
                {
                    "name": "better",
                    "question": "design",
                    "tasks": ["train"],
                    "description": "the better one",
                    "env": {"reward": "log_val_error_drop"},
                },
            ],
            "extensions": {"reference": "plain"},
            "meta_train": {"seeds": [0, 1]},
            "torch_deployment": {"enabled": False},
            "baselines": {"bootstrap_resamples": 200},
        }
    )
    lr0s = [1e-3, 1e-2, 1e-1, 1.0]
    sweep = tmp_path / "sweep" / "train"  # the pipeline's layout (ganno.layout)
    sweep.mkdir(parents=True)
    pd.concat(
        [
            _runs("sgd_step", lr0s, lambda lr: 0.6 if lr == 1.0 else 0.3, [100, 101, 102]),
            _runs("sgd_cosine", lr0s, lambda lr: 0.55 if lr == 1.0 else 0.3, [100, 101, 102]),
            _runs("dog", lr0s, lambda lr: 0.58, [100, 101, 102]),
        ]
    ).to_csv(sweep / "baselines.csv", index=False)
    for seed in (0, 1):
        _runs("ganno_plain", lr0s, lambda lr: 0.5, [100, 101, 102], seed).to_csv(
            sweep / f"plain_seed_{seed}.csv", index=False
        )
        _runs(
            "ganno_better", lr0s, lambda lr: 0.7 if lr == 1e-2 else 0.65, [100, 101, 102], seed
        ).to_csv(sweep / f"better_seed_{seed}.csv", index=False)
    return cfg, tmp_path


def test_table_rows_tuning_and_probability_of_improvement(study):
    cfg, results = study
    csv, md = write_study(cfg, results, results / "tables")
    table = pd.read_csv(csv)
    assert list(table["method"][:2]) == ["ganno_better", "ganno_plain"]  # design agents first
    better = table.set_index("method").loc["ganno_better"]
    assert better["tuned_lr0"] == pytest.approx(1e-2)  # tuned on validation accuracy
    assert better["tuned_accuracy"] == pytest.approx(0.701, abs=2e-3)
    assert better["tuned_loss"] == pytest.approx(3.0 - 0.701, abs=2e-3)
    assert better["vs"] == "sgd_step" and better["p_improvement"] == 1.0
    assert table.set_index("method").loc["ganno_plain", "p_improvement"] == 0.0
    assert np.isnan(table.set_index("method").loc["dog", "p_improvement"])
    assert better["setting"] == "the better one" and better["runs_per_lr0"] == 6
    text = md.read_text()
    assert "evaluation.tune_by: val_accuracy" in text and "| ganno_better" in text


def test_tuning_by_validation_loss_is_applied_to_every_method(study):
    cfg, results = study
    from ganno.design_study import load_study

    df, missing = load_study(cfg, results)
    assert not missing
    by_loss = study_table(
        df, {**cfg, "evaluation": {**cfg["evaluation"], "tune_by": "val_loss"}}, n_resamples=50
    )
    assert set(by_loss["tune_by"]) == {"val_loss"}


def test_missing_runs_are_listed_and_no_runs_is_an_error(study, tmp_path):
    cfg, results = study
    (results / "sweep" / "train" / "better_seed_1.csv").unlink()
    _, md = write_study(cfg, results, results / "tables")
    assert "Missing (not yet run): 1 tables" in md.read_text()
    with pytest.raises(FileNotFoundError, match="design_study.sh"):
        write_study(cfg, tmp_path / "nothing", tmp_path / "out")


def test_a_follow_up_question_gets_its_own_table_beside_the_reference(study):
    """Agents of another question (a follow-up study) are tabled with the reference agent and the
    baselines, in design_study_<question>.*; the main study's table leaves them out."""
    cfg, results = study
    cfg["agents"].append(
        {
            "name": "memory",
            "question": "recurrence",
            "tasks": ["train"],
            "meta_train": {"gru_size": 8},
        }
    )
    for seed in (0, 1):
        _runs(
            "ganno_memory", [1e-3, 1e-2, 1e-1, 1.0], lambda lr: 0.62, [100, 101, 102], seed
        ).to_csv(results / "sweep" / "train" / f"memory_seed_{seed}.csv", index=False)
    csv, md = write_study(cfg, results, results / "tables", question="recurrence")
    assert csv.name == "design_study_recurrence.csv" and md.name == "design_study_recurrence.md"
    table = pd.read_csv(csv).set_index("method")
    agents = table[table["kind"] == "design agent"].index.tolist()
    assert agents == ["ganno_memory", "ganno_plain"]  # by tuned accuracy; the reference included
    assert table.loc["ganno_memory", "tuned_accuracy"] == pytest.approx(0.62, abs=0.002)
    assert "sgd_step" in table.index and "ganno_better" not in table.index
    assert "(recurrence:" in md.read_text()
    main, _ = write_study(cfg, results, results / "tables")
    assert "ganno_memory" not in set(pd.read_csv(main)["method"])


def test_the_study_steps_meta_train_every_agent_then_evaluate_it_on_every_task(tmp_path):
    """The study as commands: datasets (a family member's too), meta-training seed by seed,
    baselines per task, then each agent's seeds in one process per task; done steps drop out."""
    cfg = load_config(
        overrides={
            "agents": [
                {"name": "plain", "question": "design"},
                {"name": "trainonly", "question": "design", "tasks": ["train"]},
                {
                    "name": "fam",
                    "question": "family",
                    "meta_train": {
                        "task_family": [{"name": "on_digits", "task": {"dataset": "digits"}}]
                    },
                },
            ],
            "extensions": {"reference": "plain"},
            "meta_train": {"seeds": [0, 1]},
            "evaluation": {
                "generalisation_tasks": [{"name": "deep", "task": {"network": {"depth": 5}}}]
            },
            "torch_deployment": {"enabled": False},
        }
    )
    steps = study_steps("study.yaml", cfg, tmp_path, "design")
    commands = [
        f"{s.argv[0]} {s.argv[s.argv.index('--task') + 1]}"
        if "--task" in s.argv
        else " ".join(s.argv[:3])
        for s in steps
    ]
    assert commands == [
        "data prepare mnist1d",
        "meta-train --config study.yaml",
        "meta-train --config study.yaml",  # seed 0: 2 agents
        "meta-train --config study.yaml",
        "meta-train --config study.yaml",  # seed 1
        "baselines train",
        "baselines deep",
        "generalise train",
        "generalise deep",  # plain: every task
        "generalise train",  # trainonly: its tasks
    ]
    assert [s.timed for s in steps[1:5]] == [
        "plain seed 0",
        "trainonly seed 0",
        "plain seed 1",
        "trainonly seed 1",
    ]
    deep = steps[8]
    assert deep.argv.count("--policy") == 2 and deep.argv.count("--meta-seed") == 2
    assert deep.outputs == (
        tmp_path / "sweep/deep/plain_seed_0.csv",
        tmp_path / "sweep/deep/plain_seed_1.csv",
    )
    family = study_steps("study.yaml", cfg, tmp_path, "family")
    assert [" ".join(s.argv[:3]) for s in family[:2]] == [
        "data prepare mnist1d",
        "data prepare digits",  # the member's dataset
    ]
    only = study_steps("study.yaml", cfg, tmp_path, "design", only=["trainonly"])
    assert [s.argv[0] for s in only] == ["data", "meta-train", "meta-train", "baselines"] + [
        "generalise"
    ]
    with pytest.raises(UsageError, match=r"--only names \['nobody'\].*'plain', 'trainonly'"):
        study_steps("study.yaml", cfg, tmp_path, "design", only=["nobody"])
    deep.outputs[0].parent.mkdir(parents=True)
    deep.outputs[0].write_text("")
    assert not deep.done()  # done when every seed's table is written
    deep.outputs[1].write_text("")
    assert deep.done()


def test_a_failing_step_stops_the_study_naming_its_log_and_keeps_what_ran(tmp_path, monkeypatch):
    done = tmp_path / "first.txt"
    steps = [
        Step("ok.log", ("--help",), (tmp_path / "never.txt",)),
        Step("bad.log", ("no-such-command",), (tmp_path / "never2.txt",)),
        Step("after.log", ("--help",), (tmp_path / "never3.txt",)),
    ]
    monkeypatch.setattr("ganno.design_study.study_steps", lambda *a, **k: steps)
    monkeypatch.setattr("ganno.config.load_config", lambda path: {})
    printed = []
    with pytest.raises(StepFailedError, match=r"no-such-command failed .*bad\.log"):
        run_study("study.yaml", tmp_path, echo=printed.append)
    assert (tmp_path / "logs" / "ok.log").read_text().startswith("usage: ganno")
    assert "invalid choice" in (tmp_path / "logs" / "bad.log").read_text()
    assert not (tmp_path / "logs" / "after.log").exists() and not done.exists()
    assert len(printed) == 2
    assert run_study("study.yaml", tmp_path, dry_run=True, echo=printed.append) == steps


def test_across_tasks_pools_the_held_out_tasks_against_the_best_baseline(study):
    """Agents are tabled on the training task and pooled over the held-out tasks that ran (a
    task whose data is absent is skipped, not pooled); P and tasks won against the baselines."""
    cfg, results = study
    cfg["agents"] = [{"name": n, "question": "design"} for n in ("plain", "better")]
    cfg["evaluation"]["generalisation_tasks"] = [
        {"name": "deep", "task": {"network": {"depth": 5}}},
        {"name": "wide", "task": {"network": {"width": 256}}},
        {"name": "absent", "task": {"network": {"width": 8}}},
    ]
    lr0s = [1e-3, 1e-2, 1e-1, 1.0]
    for task, best in (("deep", 0.8), ("wide", 0.6)):
        folder = results / "sweep" / task
        folder.mkdir(parents=True)
        _runs("sgd_cosine", lr0s, lambda lr: 0.7, [100, 101, 102], task=task).to_csv(
            folder / "baselines.csv", index=False
        )
        for seed in (0, 1):
            _runs("ganno_better", lr0s, lambda lr, b=best: b, [100, 101, 102], seed, task).to_csv(
                folder / f"better_seed_{seed}.csv", index=False
            )
            if task == "deep":  # plain ran on one held-out task only: not pooled
                _runs("ganno_plain", lr0s, lambda lr: 0.1, [100, 101, 102], seed, task).to_csv(
                    folder / f"plain_seed_{seed}.csv", index=False
                )
    absent = results / "sweep" / "absent"
    absent.mkdir()
    (absent / "baselines.csv").write_text(",".join(COLUMNS) + "\n")
    (absent / "baselines.csv.skipped").write_text("dataset files absent\n")
    csv, md, *_ = write_across_tasks(cfg, results, results / "tables")
    table = pd.read_csv(csv).set_index("method")
    better = table.loc["ganno_better"]
    # normalised per task by sgd_cosine's 0.7: (0.8 - 0.1) / 0.6 on deep, (0.6 - 0.1) / 0.6 on wide
    assert better["held_out_accuracy"] == pytest.approx(1.0, abs=0.01)
    assert better["held_out_tasks"] == 2 and better["tasks_won"] == 1  # deep yes, wide no
    assert better["vs_accuracy"] == "sgd_cosine" and better["p_accuracy"] == pytest.approx(0.5)
    assert better["train_tuned_accuracy"] == pytest.approx(0.701, abs=2e-3)
    # C2 on the held-out tasks: flat curves over the 3-decade grid, pooled all-lr0 accuracy
    assert better["held_out_robust_decades"] == pytest.approx(3.0)
    assert better["held_out_all_accuracy"] == pytest.approx(1.0, abs=0.01)  # normalised too
    assert np.isnan(table.loc["ganno_plain", "held_out_robust_decades"])  # one task of two
    meets = [c for c in table.columns if c.startswith("meets_")]
    assert (
        len(meets) == 5
        and (table[meets].sum(axis=1) == table["targets_met"])
        .loc[["ganno_better", "ganno_plain"]]
        .all()
    )
    assert better["meets_train_accuracy"] == 1 and better["meets_all_lr0"] == 1  # vs sgd_step, dog
    assert better["standing_held_out_accuracy"] in ("above", "level", "below")
    assert better["standing_robust_range"] in ("wider", "as wide", "narrower")
    assert table.loc["ganno_plain", ["meets_train_accuracy", "meets_all_lr0"]].sum() == 0
    assert table.loc["ganno_plain", "meets_held_out_accuracy"] == 0  # no pooled runs: not met
    assert table.loc["sgd_cosine", meets + ["targets_met"]].isna().all()
    plain = table.loc["ganno_plain"]
    assert np.isnan(plain["held_out_accuracy"]) and plain["tasks_won"] == 0
    assert list(table.index[:2]) == ["ganno_better", "ganno_plain"]
    assert np.isnan(table.loc["sgd_step", "held_out_accuracy"])  # ran on train only
    # runs that end at chance (plain's 0.10 on deep; no one's on train, at 0.3 and above)
    assert (table["train_at_chance"] == 0).all()
    assert better["held_out_at_chance"] == 0 and better["held_out_at_chance_worst"] == 0
    assert np.isnan(plain["held_out_at_chance"])  # one held-out task of two: not averaged
    assert (
        plain["held_out_at_chance_worst"] == 1 and plain["held_out_at_chance_worst_task"] == "deep"
    )
    text = md.read_text()
    assert "0% / - / 100% (deep)" in text and "0% / 0% / 0% " in text  # no task: none at chance
    assert "(deep, wide)" in text and "Skipped: 1 tables" in text
    assert "Missing (not yet run): 6" in text  # plain on wide; both agents on absent
    assert (results / "tables" / "design_study_across_tasks_figure.png").is_file()

    # a study run over several sessions: better's runs are not in this results folder any more;
    # with keep_absent its row (and its points of the figure) are kept, marked
    for path in results.glob("sweep/*/better_seed_*.csv"):
        path.unlink()
    figure_before = pd.read_csv(results / "tables" / "design_study_across_tasks_figure.csv")
    csv, md, *_ = write_across_tasks(cfg, results, results / "tables", keep_absent=True)
    kept = pd.read_csv(csv).set_index("method")
    assert bool(kept.loc["ganno_better", "carried_over"]) is True
    assert not kept.loc[["ganno_plain", "sgd_cosine"], "carried_over"].any()
    pd.testing.assert_series_equal(
        kept.loc["ganno_better", table.columns].astype(str), better[table.columns].astype(str)
    )  # the same baselines: every number as before, the targets and tasks won too
    assert kept.loc["ganno_plain", "train_tuned_accuracy"] == plain["train_tuned_accuracy"]
    figure = pd.read_csv(results / "tables" / "design_study_across_tasks_figure.csv")
    pd.testing.assert_frame_equal(
        figure[figure["method"] == "ganno_better"].reset_index(drop=True),
        figure_before[figure_before["method"] == "ganno_better"].reset_index(drop=True),
    )
    text = md.read_text()
    assert "Kept from the table before (carried_over in the CSV): ganno_better" in text
    assert "The baselines here are the same numbers as before" in text
    assert "Missing (not yet run): 4" in text  # plain on wide and absent; better's are not missing
    # without keep_absent the table has only what ran here
    csv, *_ = write_across_tasks(cfg, results, results / "tables" / "fresh")
    assert "ganno_better" not in set(pd.read_csv(csv)["method"])
    # baselines whose numbers changed: the kept row's comparisons are redone against them (the
    # deep task is no longer won) or left empty (P against a changed baseline), and listed
    changed = pd.read_csv(results / "sweep" / "deep" / "baselines.csv")
    changed["test_accuracy"] += 0.15
    changed.to_csv(results / "sweep" / "deep" / "baselines.csv", index=False)
    csv, md, *_ = write_across_tasks(cfg, results, results / "tables", keep_absent=True)
    kept = pd.read_csv(csv).set_index("method").loc["ganno_better"]
    assert kept["tasks_won"] == 0 and np.isnan(kept["p_accuracy"])
    assert kept["held_out_accuracy"] == better["held_out_accuracy"]  # its own runs
    assert re.search(r"differ from the table before \(\d+; .*\): sgd_cosine \(\d+ numbers",
                     md.read_text())  # fmt: skip
    # baselines that are not the same methods on the same tasks: refused, naming the fix
    (results / "sweep" / "deep" / "baselines.csv").unlink()
    with pytest.raises(ResultsMissingError, match="not the ones of the table being kept"):
        write_across_tasks(cfg, results, results / "tables", keep_absent=True)
    with pytest.raises(ResultsMissingError, match="no table to keep agents from"):
        write_across_tasks(cfg, results, results / "nowhere", keep_absent=True)


def test_gpu_trained_policies_are_imported_as_the_study_s_runs_and_not_retrained(tmp_path):
    """benchmarks/import_study_policies.py: a vmapped run folder archived on the GPU machine
    becomes one run folder per seed (its policy, its seed's curve), after which the study's
    meta-training steps for that agent are done; a second import and an unfinished run are
    refused, naming them."""
    import importlib.util
    import json
    import tarfile
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "import_study_policies.py"
    spec = importlib.util.spec_from_file_location("ganno_bench_import", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    cfg = load_config(
        overrides={
            "agents": [{"name": "big", "question": "scale", "tasks": ["train"]}],
            "extensions": {"reference": "big"},
            "meta_train": {"seeds": [0, 1]},
            "torch_deployment": {"enabled": False},
        }
    )
    run = tmp_path / "gpu" / "big"
    curve = [{"seed": s, "update": u, "episode_return": s + u / 10} for u in (1, 2) for s in (0, 1)]
    (run / "policy").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "learning_curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    for s in (0, 1):
        (run / "policy" / f"seed_{s}").mkdir()
        (run / "policy" / f"seed_{s}" / "policy.json").write_text(json.dumps({"seed": s}))
        (run / "policy" / f"seed_{s}" / "actor_params.msgpack").write_bytes(bytes([s]) * 8)
    out = tmp_path / "out"
    out.mkdir()
    with tarfile.open(out / "big.tar.gz", "w:gz") as tar:
        tar.add(run, arcname="big")
    (out / "big.log").write_text("big: rc 0\n")
    results = tmp_path / "results"
    before = study_steps("study.yaml", cfg, results, "scale")
    meta = [s for s in before if s.argv[0] == "meta-train"]
    assert len(meta) == 2 and not any(s.done() for s in meta)

    assert bench.main([str(out), str(results)]) == 0
    for s in (0, 1):
        seed_dir = results / "meta_train" / "big" / f"seed_{s}"
        assert (seed_dir / "policy" / "actor_params.msgpack").read_bytes() == bytes([s]) * 8
        rows = [json.loads(x) for x in (seed_dir / "learning_curve.jsonl").read_text().splitlines()]
        assert [r["seed"] for r in rows] == [s, s] and [r["update"] for r in rows] == [1, 2]
        assert (seed_dir / "config.yaml").read_text() == "seed: 0\n"
    assert all(s.done() for s in meta)  # the study evaluates them instead of meta-training

    with pytest.raises(SystemExit, match=r"seed_0 exists; remove it to import .*big again"):
        bench.main([str(out), str(results)])
    unfinished = tmp_path / "killed" / "big"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(SystemExit, match=r"killed/big: no policy/seed_<s>/policy.json.*resume"):
        bench.main([str(tmp_path / "killed"), str(tmp_path / "other")])


def test_a_run_counts_as_at_chance_up_to_a_twentieth_of_the_way_to_perfect():
    """With 10 classes: test accuracy 0.145 (chance 0.1 + 0.05 x 0.9) is at chance, above is not;
    the share is over every lr0 and seed of a method on a task."""
    runs = _runs("m", [1e-3, 1e-2, 1e-1, 1.0], lambda lr: {1e-3: 0.1, 1e-2: 0.145}.get(lr, 0.146),
                 [100])  # fmt: skip
    assert tables.at_chance_shares(runs).loc[("m", "train")] == pytest.approx(0.5)
