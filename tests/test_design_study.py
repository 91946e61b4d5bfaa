"""The design study's table: read from the runs the study script writes, tuned like every table."""

import numpy as np
import pandas as pd
import pytest

from ganno.config import load_config
from ganno.design_study import study_table, write_study
from ganno.experiments import COLUMNS


def _runs(method, lr0s, acc_at, seeds, meta_seed=-1):
    rows = []
    for lr0 in lr0s:
        for s in seeds:
            acc = acc_at(lr0) + 0.001 * (s - 100)
            rows.append(
                {
                    "method": method,
                    "task": "train",
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
    sweep = tmp_path / "sweep"
    sweep.mkdir()
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
    (results / "sweep" / "better_seed_1.csv").unlink()
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
        ).to_csv(results / "sweep" / f"memory_seed_{seed}.csv", index=False)
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
