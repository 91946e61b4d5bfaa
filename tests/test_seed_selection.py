"""Choosing a policy among meta-training seeds on the validation tasks, and the seed-by-seed table
that checks the choice against the held-out tasks."""

import numpy as np
import pandas as pd
import pytest
from test_pipeline import _planned  # outside the pipeline tests' worker

from ganno.config import load_config
from ganno.design_study import CARRIED, study_steps, write_across_tasks
from ganno.results import COLUMNS
from ganno.seed_selection import seeds_table, selected_runs, selection_summary
from ganno.stats import rank_correlation_ci

LR0S = [1e-3, 1e-2, 1e-1, 1.0]
EVAL_SEEDS = [100, 101, 102]


def _runs(method, task, meta_seed, acc_at, val_at=None):
    """Runs over LR0S x EVAL_SEEDS whose test accuracy is ``acc_at(lr0)`` (validation accuracy
    ``val_at(lr0)``, default the same), a thousandth apart between evaluation seeds."""
    val_at = val_at or acc_at
    rows = [
        {
            "method": method,
            "task": task,
            "lr0": lr0,
            "seed": s,
            "meta_seed": meta_seed,
            "val_loss": 2.0 - val_at(lr0),
            "val_accuracy": val_at(lr0) + 0.001 * (s - 100),
            "test_loss": 3.0 - acc_at(lr0),
            "test_accuracy": acc_at(lr0) + 0.001 * (s - 100),
            "diverged": False,
            "wall_time_s": 1.0,
        }
        for lr0 in LR0S
        for s in EVAL_SEEDS
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _peak(at, best, rest=0.3):
    """An lr0 curve: ``best`` at lr0 = ``at``, ``rest`` elsewhere."""
    return lambda lr: best if lr == at else rest


#: Per seed of agent "a": (held-out accuracy at its own best lr0, that lr0, validation score).
#: The seeds' best lr0 differ, so one lr0 for all seeds would not find each one's best.
SEEDS_A = {0: (0.70, 1e-2, 0.60), 1: (0.80, 1e-1, 0.70), 2: (0.75, 1.0, 0.65)}


def _study_runs():
    held, val = [], []
    for seed, (acc, lr0, score) in SEEDS_A.items():
        held.append(_runs("ganno_a", "train", seed, _peak(lr0, acc - 0.05)))
        for task in ("deep", "wide"):
            held.append(_runs("ganno_a", task, seed, _peak(lr0, acc)))
        for task in ("val_x", "val_y"):
            val.append(_runs("ganno_a", task, seed, _peak(lr0, 0.1), _peak(lr0, score)))
    # agent "b": seed 1 dead (at chance) on "deep" at every lr0; no validation runs for seed 1
    for seed in (0, 1):
        held.append(_runs("ganno_b", "train", seed, _peak(1e-2, 0.6)))
        held.append(_runs("ganno_b", "deep", seed, (lambda lr: 0.1) if seed else _peak(1e-2, 0.6)))
        held.append(_runs("ganno_b", "wide", seed, _peak(1e-2, 0.6)))
        if seed == 0:
            val.append(_runs("ganno_b", "val_x", seed, _peak(1e-2, 0.5)))
            val.append(_runs("ganno_b", "val_y", seed, _peak(1e-2, 0.5)))
    for task in ("deep", "wide"):  # the baselines' tasks are the held-out tasks; not rows here
        held.append(_runs("sgd_cosine", task, -1, _peak(1e-1, 0.7)))
    return pd.concat(held, ignore_index=True), pd.concat(val, ignore_index=True)


def test_each_seed_is_tuned_on_its_own_runs_and_the_best_validated_seed_is_selected():
    held, val = _study_runs()
    table = seeds_table(held, val, ["deep", "wide"], ["val_x", "val_y"], n_resamples=200)
    table = table.set_index(["method", "meta_seed"])
    assert list(table.index) == [("ganno_a", 0), ("ganno_a", 1), ("ganno_a", 2),
                                 ("ganno_b", 0), ("ganno_b", 1)]  # fmt: skip
    for seed, (acc, _, score) in SEEDS_A.items():
        row = table.loc[("ganno_a", seed)]
        # tuned per seed: each seed's own peak, pooled over both held-out tasks
        assert row["held_out_accuracy"] == pytest.approx(acc + 0.001, abs=1e-9)
        assert row["train_tuned_accuracy"] == pytest.approx(acc - 0.05 + 0.001, abs=1e-9)
        # the score is the validation split's accuracy, not the test split's (0.1 there)
        assert row["validation_score"] == pytest.approx(score + 0.001, abs=1e-9)
    assert table["selected"].tolist() == [False, True, False, False, False]  # b: seed 1 unscored
    assert table.loc[("ganno_b", 1), "at_chance_deep"] == 1.0
    assert table.loc[("ganno_b", 0), "at_chance_deep"] == 0.0
    # the validation tasks' runs at chance too (test accuracy 0.1 at a's best lr0 there)
    assert table.loc[("ganno_a", 0), "at_chance_val_x"] == pytest.approx(1 / len(LR0S))
    assert np.isnan(table.loc[("ganno_b", 1), "at_chance_val_x"])  # no validation runs
    assert np.isnan(table.loc[("ganno_b", 1), "validation_score"])
    summary = selection_summary(table.reset_index(), n_resamples=200)
    # over a's three seeds and b's scored one, the score ranks the seeds as held out does
    assert summary.seeds == 4 and summary.correlation.value == pytest.approx(1.0)
    assert summary.agents == 1 and summary.at_or_above_median == 1
    assert summary.selected_rank == {"ganno_a": 1}
    assert summary.within_agents == pytest.approx(1.0)  # b has one scored seed: no rho of its own
    chosen = selected_runs(held, table.reset_index())
    assert set(chosen["method"]) == {"ganno_a_selected"} and set(chosen["meta_seed"]) == {1}
    assert len(chosen) == len(held[(held["method"] == "ganno_a") & (held["meta_seed"] == 1)])
    # a selection record's method and seed give the same rows
    pd.testing.assert_frame_equal(selected_runs(held, {"ganno_a": 1}), chosen)


def test_a_selection_that_picks_the_worst_seed_says_so():
    held, val = _study_runs()
    peak = val["val_accuracy"] > 0.4  # each seed's score, reflected: the worst held out first
    flipped = val.assign(val_accuracy=val["val_accuracy"].where(~peak, 1.3 - val["val_accuracy"]))
    table = seeds_table(held, flipped, ["deep", "wide"], ["val_x", "val_y"], n_resamples=200)
    summary = selection_summary(table, n_resamples=200)
    assert table.loc[table["selected"], "meta_seed"].tolist() == [0]  # a's worst held out
    assert summary.selected_rank == {"ganno_a": 3} and summary.at_or_above_median == 0
    assert summary.correlation.value < 0


def test_rank_correlation_and_its_interval():
    x = np.arange(6.0)
    assert tuple(rank_correlation_ci(x, x**2, n_resamples=200)) == pytest.approx((1, 1, 1))
    assert rank_correlation_ci(x, -x, n_resamples=200).value == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    est = rank_correlation_ci(rng.normal(size=30), rng.normal(size=30), n_resamples=500)
    assert est.low < est.value < est.high and est.low < 0 < est.high  # unrelated: CI spans 0
    assert np.isnan(rank_correlation_ci(x[:2], x[:2]).value)  # too few pairs
    assert np.isnan(rank_correlation_ci(x, np.ones(6)).value)  # nothing to rank
    with pytest.raises(ValueError, match="same length"):
        rank_correlation_ci(x, x[:5])


def _config(**evaluation):
    return load_config(
        overrides={
            "agents": [
                {"name": "a", "question": "design"},
                {"name": "trainonly", "question": "design", "tasks": ["train"]},
            ],
            "extensions": {"reference": "a"},
            "meta_train": {"seeds": [0, 1, 2]},
            "evaluation": {
                "generalisation_tasks": [
                    {"name": "deep", "task": {"network": {"depth": 5}}},
                    {"name": "wide", "task": {"network": {"width": 256}}},
                ],
                **evaluation,
            },
            "torch_deployment": {"enabled": False},
            "baselines": {"bootstrap_resamples": 200},
        }
    )


VALIDATION = [
    {"name": "val_x", "task": {"network": {"depth": 6}}},
    {"name": "val_y", "task": {"network": {"width": 128}}},
]


def test_the_study_runs_every_seed_of_an_agent_on_the_validation_tasks(tmp_path):
    cfg = _config(validation_tasks=VALIDATION)
    steps = study_steps("study.yaml", cfg, tmp_path, "design")
    runs = [(s.argv[s.argv.index("--agent") + 1], s.argv[s.argv.index("--task") + 1])
            for s in steps if s.argv[0] == "generalise"]  # fmt: skip
    assert runs == [("a", "train"), ("a", "deep"), ("a", "wide"), ("a", "val_x"), ("a", "val_y"),
                    ("trainonly", "train")]  # fmt: skip
    val_x = next(s for s in steps if "val_x" in s.argv)
    assert val_x.argv.count("--meta-seed") == 3
    assert val_x.outputs[2] == tmp_path / "sweep/val_x/a_seed_2.csv"
    # no baselines on a validation task: the score compares an agent's seeds with each other
    assert not any(s.argv[0] == "baselines" and "val_x" in s.argv for s in steps)


def _write_results(results, agent="a"):
    held, val = _study_runs()
    held = held[held["method"].isin(["ganno_a", "sgd_cosine"])]
    val = val[val["method"] == "ganno_a"]
    for (task, method, seed), runs in pd.concat([held, val]).groupby(
        ["task", "method", "meta_seed"]
    ):
        folder = results / "sweep" / task
        folder.mkdir(parents=True, exist_ok=True)
        name = "baselines" if method == "sgd_cosine" else f"{agent}_seed_{seed}"
        runs.assign(method=f"ganno_{agent}" if method != "sgd_cosine" else method).to_csv(
            folder / f"{name}.csv", index=False
        )


def test_the_study_s_tables_give_each_seed_and_the_selected_policy_and_keep_absent_agents(
    tmp_path,
):
    cfg = _config(validation_tasks=VALIDATION)
    results = tmp_path / "results"
    _write_results(results)
    out = tmp_path / "tables"
    across_csv, across_md, csv, md = write_across_tasks(cfg, results, out)
    # the selected policy is a row of the across-tasks table: seed 1's runs alone
    across = pd.read_csv(across_csv).set_index("method")
    chosen = across.loc["ganno_a_selected"]
    assert chosen["kind"] == "design agent" and "seed [1] selected" in chosen["setting"]
    # pooled normalised per task (tables.POOLING): seed 1 at 0.801 on both held-out tasks, the
    # best tuned baseline (sgd_cosine) at 0.701, chance 0.1
    assert chosen["held_out_accuracy"] == pytest.approx((0.801 - 0.1) / (0.701 - 0.1), abs=1e-9)
    assert across.loc["ganno_a", "held_out_accuracy"] < chosen["held_out_accuracy"]
    assert "`<agent>_selected`" in across_md.read_text()
    table = pd.read_csv(csv)
    assert table["method"].tolist() == ["ganno_a"] * 3
    assert table.loc[table["selected"], "meta_seed"].tolist() == [1]
    assert not table[CARRIED].any()
    text = md.read_text()
    assert "val_x, val_y" in text and "deep, wide" in text  # validation and held-out tasks named
    assert "over the 3 seeds with both: 1.000" in text
    assert "at or above its agent's median seed held out for 1 of 1 agents" in text
    assert "| ganno_a | 1 | yes |" in " ".join(text.split())
    assert "Missing" not in text
    # another session's results: agent "a" absent here, its rows kept and marked
    other = tmp_path / "other"
    _write_results(other, agent="c")
    cfg["agents"].append({"name": "c", "question": "design"})
    *_, csv, md = write_across_tasks(cfg, other, out, keep_absent=True)
    table = pd.read_csv(csv)
    assert table.groupby("method")[CARRIED].all().to_dict() == {"ganno_a": True, "ganno_c": False}
    assert "Kept from the table before" in md.read_text()
    # without validation tasks the table still gives each seed's held-out numbers, unselected
    across_csv, _, csv, md = write_across_tasks(_config(), results, tmp_path / "bare")
    bare = pd.read_csv(csv)
    assert bare["validation_score"].isna().all() and not bare["selected"].any()
    assert bare["held_out_accuracy"].notna().all()
    assert "none configured" in md.read_text()
    assert not pd.read_csv(across_csv)["method"].str.endswith("_selected").any()


def test_the_pipeline_ships_the_seed_the_validation_tasks_select(tmp_path, capsys):
    """`ganno pretrained select` scores every seed of the shipped agent on the validation tasks;
    `ganno pretrained refresh --selection` ships that seed's policy with the record."""
    import json

    import ganno
    from ganno.cli import main

    config = tmp_path / "validated.yaml"
    config.write_text(
        "meta_train: {seeds: [0, 1]}\nevaluation:\n  validation_tasks:\n"
        "    - {name: val_x, task: {network: {depth: 6}}}\n"
        "    - {name: val_y, task: {network: {width: 128}}}\n"
    )
    results = tmp_path / "results"
    record = tmp_path / "selection.json"
    argv = ["pretrained", "select", "--config", str(config), "--agent", "ippo"]
    argv += ["--results", str(results), "--out", str(record)]
    assert main(argv) == 2  # no runs yet: the error names the missing table
    assert "sweep/val_x/ippo_seed_0.csv does not exist" in capsys.readouterr().err
    for seed, score in ((0, 0.6), (1, 0.7)):
        ganno.pretrained_policy().save(results / f"meta_train/ippo/seed_{seed}/policy")
        for task in ("val_x", "val_y"):
            folder = results / "sweep" / task
            folder.mkdir(parents=True, exist_ok=True)
            runs = _runs("ganno_ippo", task, seed, _peak(1e-2, 0.1), _peak(1e-2, score))
            runs.to_csv(folder / f"ippo_seed_{seed}.csv", index=False)
    assert main(argv) == 0
    chosen = json.loads(record.read_text())
    assert chosen["seed"] == 1 and chosen["validation_tasks"] == ["val_x", "val_y"]
    assert chosen["policy"].endswith("meta_train/ippo/seed_1/policy")
    assert chosen["scores"]["0"]["value"] == pytest.approx(0.601, abs=1e-9)
    dest = tmp_path / "shipped"
    refresh = ["pretrained", "refresh", "--selection", str(record), "--dest", str(dest)]
    assert main(refresh) == 0
    provenance = json.loads((dest / "ippo" / "PROVENANCE.json").read_text())
    assert provenance["selection"] == chosen
    assert provenance["source"].endswith("seed_1/policy")
    record.write_text("{}")
    assert main(refresh) == 2 and "is not a seed-selection record" in capsys.readouterr().err
    record.unlink()
    assert main(refresh) == 2 and "choose the seed first" in capsys.readouterr().err
    # a config without validation tasks has nothing to select on
    bare = tmp_path / "bare.yaml"
    bare.write_text("meta_train: {seeds: [0, 1]}\n")
    argv[3] = str(bare)
    assert main(argv) == 2 and "runs on no validation task" in capsys.readouterr().err


def test_with_validation_tasks_the_shipped_seed_is_chosen_on_them(tmp_path):
    """A config with validation tasks runs the shipped agent's seeds on them and refreshes the
    package from the seed they select, every seed's policy an input (which one is known only
    after the runs)."""
    out = _planned(
        tmp_path,
        "evaluation:\n  validation_tasks:\n    - {name: val_deep6, task: {network: {depth: 6}}}\n",
    )

    def block(rule: str) -> str:
        text = out[out.index(f"rule {rule}:") :]
        return text[: text.index("\n\n")]

    select = block("select_pretrained_seed")
    for seed in (0, 1, 2):
        assert f"results/sweep/val_deep6/ippo_seed_{seed}.csv" in select
    assert "results/selection/ippo.json" in select
    refresh = block("pretrained_policy")
    assert "results/selection/ippo.json" in refresh
    for seed in (0, 1, 2):
        assert f"results/meta_train/ippo/seed_{seed}/policy/policy.json" in refresh
    # only the shipped agent runs there, and no baseline does
    assert "val_deep6/mappo_seed" not in out and "sweep/val_deep6/baselines.csv" not in out
