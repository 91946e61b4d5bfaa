"""The design study of the agents: which design options (objective, action mode, observation
normalisation, recurrence, a task family) move which number, against the baselines, on the
training task and on every held-out task.

:func:`study_steps` is the study as a list of ``ganno`` commands (prepare the data, meta-train
every agent of a question over the meta-training seeds, run the baselines and every agent's
policies on each of its tasks); :func:`run_study` runs those not yet done (``ganno design-study``,
``workflow/scripts/design_study.sh``). The results follow the pipeline's layout
(:mod:`ganno.layout`) under the study's own results folder.

Three tables are written from them:

- ``design_study[_<question>].{csv,md}`` (:func:`write_study`), the training task: per method the
  tuned test accuracy and test loss (lr0 tuned on validation, :func:`ganno.baselines.tune`), the
  IQM over every lr0 and run, the robust range, the divergence rate and, for each design agent,
  the probability that one of its tuned runs beats one of the best handcrafted SGD schedule's;
- ``design_study_across_tasks.{csv,md}`` and its figure (:func:`write_across_tasks`), every agent
  of the study config with runs on the held-out tasks: tuned test accuracy and loss on the
  training task and pooled over the held-out tasks, the probability of beating the best baseline
  there (stratified by task), the held-out tasks won, and the robust range on the training task;
  each agent's policy selected on the validation tasks is a row of its own;
- ``design_study_seeds.{csv,md}`` (:func:`write_seeds_table`), each agent's meta-training seeds
  one by one: the validation score that selects among them (:mod:`ganno.seed_selection`) beside
  what each did on the held-out and training tasks;

all with 95% stratified-bootstrap CIs over runs (meta-training seeds x evaluation seeds).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ganno import layout, plots, seed_selection, stats, tables
from ganno.agents import agents, get, question_title, reference
from ganno.config import agent_config, family_configs, task_config
from ganno.env_settings import BASE_SCHEDULES, COLLAPSE_DEAD
from ganno.errors import ResultsMissingError, StepFailedError, UsageError
from ganno.results import read_results

#: The handcrafted SGD schedules (the baselines of the first target): those a base schedule can be.
HANDCRAFTED = BASE_SCHEDULES
TABLE = "design_study"
#: The question of the main study; another question's agents (a follow-up study run with
#: ``design_study.sh CONFIG RESULTS TABLES QUESTION``) get a table of their own, beside the
#: reference agent (``extensions.reference``) and the baselines of the same runs.
MAIN_QUESTION = "design"


def table_name(question: str = MAIN_QUESTION) -> str:
    """``design_study`` for the main study, ``design_study_<question>`` for a follow-up."""
    return TABLE if question == MAIN_QUESTION else f"{TABLE}_{question}"


def study_agents(config: Mapping[str, Any], question: str = MAIN_QUESTION) -> list[Any]:
    """The agents a study meta-trains: the question's, and for a follow-up question the
    reference agent too (first), so that its table compares like with like."""
    found = agents(config, question)
    if not found:
        raise ValueError(f"no agent of question {question!r} in the config's agents")
    if question != MAIN_QUESTION and reference(config) not in {a.name for a in found}:
        found = [get(config, reference(config)), *found]
    return found


def study_paths(
    config: Mapping[str, Any], results: str | Path, question: str = MAIN_QUESTION
) -> dict[str, list[Path]]:
    """The training task's results CSVs of the study: ``{"baselines": [...], method: [one per
    seed]}`` (the pipeline's layout, :mod:`ganno.layout`, under ``results``)."""
    root, task = Path(results), layout.TRAIN_TASK
    seeds = config["meta_train"]["seeds"]
    paths = {"baselines": [root / layout.BASELINES_CSV.format(task=task)]}
    for agent in study_agents(config, question):
        paths[agent.method] = [
            root / layout.AGENT_CSV.format(task=task, agent=agent.name, seed=s) for s in seeds
        ]
    return paths


# --------------------------------------------------------------------------------------------
# Running the study
# --------------------------------------------------------------------------------------------

#: Where the study appends each meta-training run's wall time (under ``<results>/logs``).
META_TRAIN_TIMES = "meta_train_times.txt"


class Step(NamedTuple):
    """One ``ganno`` command of the study."""

    log: str  # its log file, under <results>/logs
    argv: tuple[str, ...]  # the command's arguments (after ``ganno``)
    outputs: tuple[Path, ...]  # it is done when every one exists
    timed: str = ""  # meta-training: "<agent> seed <seed>", its wall time goes to META_TRAIN_TIMES

    def done(self) -> bool:
        return all(p.is_file() for p in self.outputs)


def study_tasks(config: Mapping[str, Any], found: Sequence[Any]) -> list[str]:
    """The tasks that some agent of ``found`` is evaluated on (``agents.*.tasks``), config order."""
    evaluated = {t for a in found for t in layout.agent_tasks(config, a)}
    return [t for t in layout.task_names(config) if t in evaluated]


def _datasets(config: Mapping[str, Any], found: Sequence[Any]) -> list[str]:
    """The datasets the study's meta-training (task families included) and evaluation read; a
    task whose dataset's files are absent is left out (its runs are skipped with a note)."""
    from ganno.data import task_unavailable_reason

    tasks = study_tasks(config, found) + [
        t for a in found for t in layout.agent_validation_tasks(config, a)
    ]
    names = [
        task_config(config, t)["task"]["dataset"]
        for t in dict.fromkeys(tasks)
        if task_unavailable_reason(config, t) is None
    ]
    for agent in found:
        names += [m["task"]["dataset"] for _, m in family_configs(agent_config(config, agent.name))]
    return list(dict.fromkeys(names))


def study_steps(
    config_path: str | Path,
    config: Mapping[str, Any],
    results: str | Path,
    question: str = MAIN_QUESTION,
    only: Sequence[str] | None = None,
) -> list[Step]:
    """The study as ``ganno`` commands, in the order they run: the datasets; every agent's
    meta-training, seed by seed (an interrupted study keeps whole rounds); the baselines on every
    task; then agent by agent, task by task, the agent's policies of every seed in one process.
    ``only``: these agents of the question (to run the promising ones first)."""
    from ganno.data import processed_path

    cfg, root, data = str(config_path), Path(results), config["data"]
    seeds = list(config["meta_train"]["seeds"])
    found = study_agents(config, question)
    if only is not None:
        unknown = sorted(set(only) - {a.name for a in found})
        if unknown:
            raise UsageError(
                f"--only names {unknown}, not agents of question {question!r}; choose from "
                f"{[a.name for a in found]}"
            )
        found = [a for a in found if a.name in only]
    steps = [
        Step(
            f"data_{name}.log",
            ("data", "prepare", name, "--config", cfg),
            (processed_path(name, data["root"], data["val_fraction"], data["split_seed"]),),
        )
        for name in _datasets(config, found)
    ]

    def run_dir(agent: str, seed: int) -> Path:
        return root / layout.META_TRAIN_DIR.format(agent=agent, seed=seed)

    for seed in seeds:
        for agent in found:
            out = run_dir(agent.name, seed)
            steps.append(
                Step(
                    f"meta_train_{agent.name}_seed_{seed}.log",
                    (
                        "meta-train",
                        "--config",
                        cfg,
                        "--agent",
                        agent.name,
                        "--seed",
                        str(seed),
                        "--out",
                        str(out),
                        "--no-progress",
                    ),
                    (root / layout.POLICY_JSON.format(agent=agent.name, seed=seed),),
                    timed=f"{agent.name} seed {seed}",
                )
            )
    for task in study_tasks(config, found):
        csv = root / layout.BASELINES_CSV.format(task=task)
        steps.append(
            Step(
                f"baselines_{task}.log",
                ("baselines", "--config", cfg, "--task", task, "--out", str(csv)),
                (csv,),
            )
        )
    for agent in found:
        for task in layout.agent_tasks(config, agent) + layout.agent_validation_tasks(
            config, agent
        ):
            argv = ["generalise", "--config", cfg, "--task", task, "--agent", agent.name]
            outputs = []
            for seed in seeds:
                csv = root / layout.AGENT_CSV.format(task=task, agent=agent.name, seed=seed)
                schedules = root / layout.AGENT_SCHEDULES_CSV.format(
                    task=task, agent=agent.name, seed=seed
                )
                argv += [
                    "--policy",
                    str(run_dir(agent.name, seed) / "policy"),
                    "--name",
                    agent.method,
                    "--meta-seed",
                    str(seed),
                    "--out",
                    str(csv),
                    "--schedules",
                    str(schedules),
                ]
                outputs.append(csv)
            steps.append(Step(f"sweep_{task}_{agent.name}.log", tuple(argv), tuple(outputs)))
    return steps


def run_study(
    config_path: str | Path,
    results: str | Path,
    question: str = MAIN_QUESTION,
    *,
    only: Sequence[str] | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Step]:
    """Run the study's steps that are not done (finished runs are kept; an interrupted
    meta-training run resumes), each ``ganno`` command with its output in its log. Returns the
    steps it ran (with ``dry_run``: would run). A failing command stops the study with an error
    naming its log; everything finished before it stays."""
    from ganno.config import load_config

    config = load_config(config_path)
    logs = Path(results) / "logs"
    steps = study_steps(config_path, config, results, question, only)
    todo = [s for s in steps if not s.done()]
    if dry_run:
        for step in todo:
            echo("ganno " + " ".join(step.argv))
        return todo
    logs.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(todo, 1):
        echo(f"[{i}/{len(todo)}] ganno {step.argv[0]} -> {logs / step.log}")
        start = time.monotonic()
        with open(logs / step.log, "w") as log:
            code = subprocess.call(
                [sys.executable, "-m", "ganno.cli", *step.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if code != 0:
            raise StepFailedError(
                f"ganno {' '.join(step.argv)} failed (exit {code}); see {logs / step.log}. Fix "
                "it and run the study again: finished runs are kept"
            )
        if step.timed:
            with open(logs / META_TRAIN_TIMES, "a") as times:
                times.write(f"{step.timed}: {time.monotonic() - start:.0f} s\n")
    return todo


def load_study(
    config: Mapping[str, Any], results: str | Path, question: str = MAIN_QUESTION
) -> tuple[pd.DataFrame, list[str]]:
    """All runs of the study that exist, and the paths that are missing."""
    found, missing = [], []
    for files in study_paths(config, results, question).values():
        for path in files:
            (found if path.is_file() else missing).append(path)
    df = read_results(found)
    df["diverged"] = df["diverged"].astype(bool)
    return df, [str(p) for p in missing]


def study_table(
    df: pd.DataFrame,
    config: Mapping[str, Any],
    question: str = MAIN_QUESTION,
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """One row per method (design agents first, then the baselines by tuned test accuracy)."""
    tolerance = float(config["baselines"]["robustness_tolerance"])
    tune_by = tables.tune_by(config)
    train = df[df["task"] == "train"]
    summary = tables.robustness_summary(
        train, tolerance=tolerance, tune_by=tune_by, **ci_kwargs
    ).set_index("method")
    tuned = tables.tuned_results(train, tune_by)
    handcrafted = summary[summary.index.isin(HANDCRAFTED)]
    best_sgd = str(handcrafted["tuned_iqm"].idxmax()) if not handcrafted.empty else None
    descriptions = {a.method: a.setting() for a in study_agents(config, question)}
    rows = []
    for method, r in summary.iterrows():
        row = {
            "method": method,
            "kind": "design agent" if method in descriptions else "baseline",
            "setting": descriptions.get(method, ""),
            "tuned_lr0": r["tuned_lr0"],
            "tuned_accuracy": r["tuned_iqm"],
            "tuned_accuracy_low": r["tuned_low"],
            "tuned_accuracy_high": r["tuned_high"],
            "tuned_loss": r["tuned_loss_iqm"],
            "tuned_loss_low": r["tuned_loss_low"],
            "tuned_loss_high": r["tuned_loss_high"],
            "all_accuracy": r["all_iqm"],
            "all_accuracy_low": r["all_low"],
            "all_accuracy_high": r["all_high"],
            "robust_decades": r["robust_decades"],
            "diverged_fraction": r["diverged_fraction"],
            "runs_per_lr0": int(r["runs"] / max(r["lr0_points"], 1)),
            "tune_by": tune_by,
            "vs": best_sgd or "",
            "p_improvement": np.nan,
            "p_improvement_low": np.nan,
            "p_improvement_high": np.nan,
        }
        if best_sgd and method in descriptions:
            mine = tuned.loc[tuned["method"] == method, "test_accuracy"].to_numpy(float)
            theirs = tuned.loc[tuned["method"] == best_sgd, "test_accuracy"].to_numpy(float)
            p = stats.probability_of_improvement({"train": mine}, {"train": theirs}, **ci_kwargs)
            row.update(p_improvement=p.value, p_improvement_low=p.low, p_improvement_high=p.high)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_baseline"] = out["kind"] != "design agent"
    out = out.sort_values(["_baseline", "tuned_accuracy"], ascending=[True, False])
    return out.drop(columns="_baseline").reset_index(drop=True)


def study_display(table: pd.DataFrame) -> pd.DataFrame:
    def ci(r: pd.Series, prefix: str) -> str:
        if not np.isfinite(r[prefix]):
            return "-"
        return tables.fmt_ci(r[prefix], r[f"{prefix}_low"], r[f"{prefix}_high"])

    return pd.DataFrame(
        {
            "method": table["method"],
            "setting": table["setting"],
            "tuned test accuracy": [ci(r, "tuned_accuracy") for _, r in table.iterrows()],
            "tuned test loss": [ci(r, "tuned_loss") for _, r in table.iterrows()],
            "all-lr0 test accuracy": [ci(r, "all_accuracy") for _, r in table.iterrows()],
            "robust range (decades)": table["robust_decades"].map(tables.fmt_decades),
            "P(beats best SGD schedule)": [ci(r, "p_improvement") for _, r in table.iterrows()],
            "diverged": table["diverged_fraction"].map(lambda x: f"{100 * x:.0f}%"),
        }
    )


def report_tuning(config: Mapping[str, Any]) -> str:
    """How lr0 is tuned, in the words of the paper's summary (the same rule for every method)."""
    from ganno.report import tuning_statement

    return tuning_statement(config)


def write_study(
    config: Mapping[str, Any],
    results: str | Path,
    out_dir: str | Path,
    question: str = MAIN_QUESTION,
) -> tuple[Path, Path]:
    """Write ``<table_name(question)>.csv`` (the numbers) and ``.md`` (the display) to
    ``out_dir``."""
    df, missing = load_study(config, results, question)
    if df.empty:
        raise FileNotFoundError(
            f"no design-study results under {results}/sweep; run workflow/scripts/design_study.sh"
        )
    table = study_table(df, config, question, **tables.ci_kwargs(config))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / f"{table_name(question)}.csv", out / f"{table_name(question)}.md"
    table.to_csv(csv, index=False)
    best_sgd = table["vs"].iloc[0] if len(table) else ""
    follow_up = (
        "" if question == MAIN_QUESTION else f" ({question}: {question_title(config, question)})"
    )
    lines = [
        f"Design study{follow_up} on the training task (MNIST-1D MLP 40-64-64-10, default "
        "budget): IQM "
        "[95% stratified-bootstrap CI] over meta-training seeds x evaluation seeds; "
        f"{report_tuning(config)} P(beats best SGD schedule): the probability that a tuned run of "
        f"the agent has a higher test accuracy than a tuned run of {best_sgd}, the handcrafted "
        "SGD schedule with the best tuned test accuracy.",
        "",
        study_display(table).to_markdown(index=False),
        "",
    ]
    if missing:
        lines += [f"Missing (not yet run): {len(missing)} tables, e.g. {missing[0]}.", ""]
    md.write_text("\n".join(lines))
    return csv, md


# --------------------------------------------------------------------------------------------
# Across tasks: the training task and the held-out tasks
# --------------------------------------------------------------------------------------------

ACROSS_TASKS = "design_study_across_tasks"


def load_across_tasks(
    config: Mapping[str, Any], results: str | Path
) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """Every run of every agent of the config and of the baselines on every task that exists;
    the paths not yet run; the tables skipped with their reason (a task whose files are absent)."""
    root = Path(results)
    found, missing, skipped = [], [], {}
    seeds = config["meta_train"]["seeds"]
    for task in layout.task_names(config):
        paths = [root / layout.BASELINES_CSV.format(task=task)]
        for agent in agents(config):
            if task in layout.agent_tasks(config, agent):
                paths += [
                    root / layout.AGENT_CSV.format(task=task, agent=agent.name, seed=s)
                    for s in seeds
                ]
        for path in paths:
            if not path.is_file() and not layout.skipped_marker(path).is_file():
                missing.append(str(path))
                continue
            df = tables.read_csv_or_skip(path, root, skipped, lambda p: read_results([p]))
            if df is not None:
                found.append(df)
    df = pd.concat(found, ignore_index=True) if found else read_results([])
    df["diverged"] = df["diverged"].astype(bool)
    return df, missing, skipped


def held_out_tasks(df: pd.DataFrame, config: Mapping[str, Any]) -> list[str]:
    """The held-out tasks of the study's runs ``df``: the tasks other than ``train`` on which the
    baselines ran, in config order."""
    baseline_tasks = set(df.loc[~df["method"].map(plots.is_ganno), "task"])
    return [t for t in layout.task_names(config) if t != layout.TRAIN_TASK and t in baseline_tasks]


def across_tasks_table(
    df: pd.DataFrame, config: Mapping[str, Any], **ci_kwargs: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per method that ran on the training task (agents first, by pooled held-out tuned
    accuracy; then the baselines), and the per-task summary the figure draws
    (:func:`ganno.tables.generalisation_summary`).

    The held-out tasks are the tasks other than ``train`` on which the baselines ran; a method is
    pooled over them only when it ran on every one. P(beats best baseline): stratified by held-out
    task, against the baseline with the best pooled tuned test accuracy (for the loss, the lowest
    pooled tuned test loss). Tasks won: held-out tasks on which the method's tuned test accuracy
    IQM is above every baseline's there.
    """
    tune_by = tables.tune_by(config)
    tolerance = float(config["baselines"]["robustness_tolerance"])
    registry = {a.method: a for a in agents(config)}
    held_out = held_out_tasks(df, config)
    tasks = [layout.TRAIN_TASK, *held_out]
    df = df[df["task"].isin(tasks)]
    per_task = tables.generalisation_summary(df, tasks, tune_by=tune_by, **ci_kwargs)
    train = df[df["task"] == layout.TRAIN_TASK]
    if train.empty:
        raise ResultsMissingError(
            "no runs on the training task; run the design study (ganno design-study)"
        )
    robust = tables.robustness_summary(
        train, tolerance=tolerance, tune_by=tune_by, **ci_kwargs
    ).set_index("method")
    # C2 beyond the training task: each held-out task's robust range (their median per method)
    # and the all-lr0 accuracy pooled over them (normalised per task, stratified by task)
    held_runs = df[df["task"].isin(held_out)]
    robust_held = (
        stats.robustness_table(held_runs, "test_accuracy", tolerance=tolerance)
        if held_out
        else pd.DataFrame(columns=["method", "task", "decades"])
    )

    def held_out_robustness(method: str) -> dict[str, float]:
        mine = robust_held[robust_held["method"] == method]
        if len(mine) < len(held_out) or not held_out or (method, tables.HELD_OUT) not in cell.index:
            return {"held_out_robust_decades": np.nan, **dict.fromkeys(
                ("held_out_all_accuracy", "held_out_all_accuracy_low",
                 "held_out_all_accuracy_high"), np.nan)}  # fmt: skip
        pooled = cell.loc[(method, tables.HELD_OUT)]  # normalised per task (tables.POOLING)
        return {
            "held_out_robust_decades": float(mine["decades"].median()),
            "held_out_all_accuracy": pooled["all_iqm"],
            "held_out_all_accuracy_low": pooled["all_low"],
            "held_out_all_accuracy_high": pooled["all_high"],
        }

    at_chance = tables.at_chance_shares(df)

    def runs_at_chance(method: str) -> dict[str, Any]:
        """The shares of runs at chance: on the training task, the mean over the held-out tasks
        (each task one weight, only with runs on every one) and the held-out task with the most."""
        held = {t: at_chance[(method, t)] for t in held_out if (method, t) in at_chance.index}
        worst = max(held, key=held.get) if held else ""
        full = bool(held_out) and len(held) == len(held_out)
        return {
            "train_at_chance": at_chance.get((method, layout.TRAIN_TASK), np.nan),
            "held_out_at_chance": float(np.mean(list(held.values()))) if full else np.nan,
            "held_out_at_chance_worst": held[worst] if worst else np.nan,
            "held_out_at_chance_worst_task": worst,
        }

    cell = per_task.set_index(["method", "task"])
    pooled = per_task[per_task["task"] == tables.HELD_OUT].set_index("method")
    baselines = [m for m in pooled.index if not plots.is_ganno(m)]
    best_acc = str(pooled.loc[baselines, "iqm"].idxmax()) if baselines else ""
    best_loss = str(pooled.loc[baselines, "loss_iqm"].idxmin()) if baselines else ""
    tuned = tables.tuned_results(df, tune_by)

    def scores(method: str, metric: str) -> dict[str, np.ndarray]:
        runs = tuned[(tuned["method"] == method) & tuned["task"].isin(held_out)]
        return {t: g[metric].to_numpy(float) for t, g in runs.groupby("task")}

    def estimate(prefix: str, method: str, scope: str, column: str) -> dict[str, float]:
        if (method, scope) not in cell.index:
            return {prefix: np.nan, f"{prefix}_low": np.nan, f"{prefix}_high": np.nan}
        r = cell.loc[(method, scope)]
        return {
            prefix: r[column],
            f"{prefix}_low": r[column.replace("iqm", "low")],
            f"{prefix}_high": r[column.replace("iqm", "high")],
        }

    rows = []
    for method in robust.index:
        agent, setting = registry.get(method), ""
        if agent is None and method.endswith(seed_selection.SELECTED_SUFFIX):
            agent = registry.get(method.removesuffix(seed_selection.SELECTED_SUFFIX))
            seeds = sorted(set(df.loc[df["method"] == method, "meta_seed"]))
            setting = f"the policy of meta-training seed {seeds} selected on the validation tasks"
        r = robust.loc[method]
        row: dict[str, Any] = {
            "method": method,
            "kind": "design agent" if plots.is_ganno(method) else "baseline",
            "question": agent.question if agent else "",
            "setting": setting or (agent.setting() if agent else ""),
            "train_tuned_accuracy": r["tuned_iqm"],
            "train_tuned_accuracy_low": r["tuned_low"],
            "train_tuned_accuracy_high": r["tuned_high"],
            "train_tuned_loss": r["tuned_loss_iqm"],
            "train_tuned_loss_low": r["tuned_loss_low"],
            "train_tuned_loss_high": r["tuned_loss_high"],
            "train_all_accuracy": r["all_iqm"],
            "train_all_accuracy_low": r["all_low"],
            "train_all_accuracy_high": r["all_high"],
            "train_robust_decades": r["robust_decades"],
            **estimate("held_out_accuracy", method, tables.HELD_OUT, "iqm"),
            **estimate("held_out_loss", method, tables.HELD_OUT, "loss_iqm"),
            "held_out_tasks": int(sum((method, t) in cell.index for t in held_out)),
            **held_out_robustness(method),
            **runs_at_chance(method),
            "tasks_won": np.nan,
            "vs_accuracy": best_acc,
            "p_accuracy": np.nan,
            "p_accuracy_low": np.nan,
            "p_accuracy_high": np.nan,
            "vs_loss": best_loss,
            "p_loss": np.nan,
            "p_loss_low": np.nan,
            "p_loss_high": np.nan,
            "tune_by": tune_by,
        }
        if plots.is_ganno(method):
            row["tasks_won"] = len(tables.task_standings(per_task, method, held_out)["above"])
            if method in pooled.index and best_acc:
                for metric, vs, key, higher in (
                    ("test_accuracy", best_acc, "p_accuracy", True),
                    ("test_loss", best_loss, "p_loss", False),
                ):
                    p = stats.probability_of_improvement(
                        scores(method, metric),
                        scores(vs, metric),
                        higher_is_better=higher,
                        **ci_kwargs,
                    )
                    row.update({key: p.value, f"{key}_low": p.low, f"{key}_high": p.high})
        rows.append(row)
    return _ordered(targets_met(pd.DataFrame(rows))), per_task


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    """Agents first (by targets met, then held-out accuracy, then training-task accuracy), then
    the baselines by training-task accuracy."""
    out = table.copy()
    out["_baseline"] = out["kind"] != "design agent"
    out["_order"] = out["held_out_accuracy"].fillna(-np.inf)
    out = out.sort_values(
        ["_baseline", "targets_met", "_order", "train_tuned_accuracy"],
        ascending=[True, False, False, False],
    )
    return out.drop(columns=["_baseline", "_order"]).reset_index(drop=True)


#: The across-tasks table's column that marks a row kept from the table before
#: (:func:`keep_absent_agents`).
CARRIED = "carried_over"


def _differences(mine: pd.DataFrame, theirs: pd.DataFrame, keys: list[str]) -> list[str]:
    """Every cell in which two tables of the same rows differ (numbers beyond 1e-9 relative), as
    ``"<row> <column>: <here> here, <there> before"``; a :class:`ResultsMissingError` when their
    rows are not the same ones."""
    a, b = mine.set_index(keys).sort_index(), theirs.set_index(keys).sort_index()
    if list(a.index) != list(b.index):
        odd = sorted(set(map(str, a.index)) ^ set(map(str, b.index)))
        raise ResultsMissingError(
            f"the baselines here are not the ones of the table being kept (rows {odd[:4]} are in "
            "one only): run the absent agents into this results folder, or write the table "
            "without keeping them"
        )
    found = []
    for column in a.columns.intersection(b.columns):
        x, y = a[column], b[column]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            same = np.isclose(
                x.to_numpy(float), y.to_numpy(float), rtol=1e-9, atol=0.0, equal_nan=True
            )
        else:
            same = (x.fillna("").astype(str) == y.fillna("").astype(str)).to_numpy()
        for row in a.index[~same]:
            found.append(f"{row} {column}: {x.loc[row]:.4g} here, {y.loc[row]:.4g} before"
                         if isinstance(x.loc[row], float) else
                         f"{row} {column}: {x.loc[row]} here, {y.loc[row]} before")  # fmt: skip
    return found


class KeptRows(NamedTuple):
    """What :func:`keep_absent_agents` returns."""

    table: pd.DataFrame  # the across-tasks table with the kept rows
    per_task: pd.DataFrame  # the figure's data with the kept agents' points
    kept: list[str]  # the agents kept
    differences: list[str]  # baseline numbers that differ from the table before's


def keep_absent_agents(
    table: pd.DataFrame, per_task: pd.DataFrame, out_dir: str | Path
) -> KeptRows:
    """The across-tasks table and figure data with the design agents of the table already in
    ``out_dir`` that have no runs here kept (a study run over several sessions whose earlier runs
    are not in this results folder), marked in :data:`CARRIED`.

    A kept row keeps the numbers of the agent's own runs. What compares it with the baselines is
    recomputed against the baselines here: the targets, the held-out tasks won (from its points
    per task); its probability of beating the best baseline is kept only when that baseline is
    still the best and its numbers here are the same as before (else it is left empty). The
    baselines must be the same methods on the same tasks (else a
    :class:`~ganno.errors.ResultsMissingError` says so); numbers of theirs that differ (a
    floating-point difference between machines, say) are returned to be listed beside the
    table."""
    out = Path(out_dir)
    csv, figure_csv = out / f"{ACROSS_TASKS}.csv", out / f"{ACROSS_TASKS}_figure.csv"
    for path in (csv, figure_csv):
        if not path.is_file():
            raise ResultsMissingError(
                f"{path} does not exist: there is no table to keep agents from; write the table "
                "without keeping absent agents"
            )
    before, drawn = pd.read_csv(csv), pd.read_csv(figure_csv)
    if CARRIED not in before.columns:
        before[CARRIED] = False
    baselines_here = table[table["kind"] == "baseline"]
    names = set(baselines_here["method"])
    differences = _differences(
        baselines_here.drop(columns=[CARRIED], errors="ignore"),
        before[before["kind"] == "baseline"].drop(columns=[CARRIED]),
        ["method"],
    )
    shown_here = per_task[per_task["method"].isin(names) & per_task["task"].isin(drawn["task"])]
    shown_here = shown_here.dropna(subset=["iqm", "low", "high"])  # as the figure's data is
    # written (plots.generalisation_figure)
    differences += _differences(
        shown_here[drawn.columns], drawn[drawn["method"].isin(names)], ["method", "task"]
    )
    absent = before[(before["kind"] == "design agent") & ~before["method"].isin(table["method"])]
    per_task = pd.concat(
        [per_task, drawn[drawn["method"].isin(set(absent["method"]))]], ignore_index=True
    )
    held_out = [
        t
        for t in dict.fromkeys(per_task["task"])
        if t not in (layout.TRAIN_TASK, tables.ALL_TASKS, tables.HELD_OUT)
    ]
    absent = absent.copy()
    changed = {d.split(" ")[0] for d in differences}
    for i, row in absent.iterrows():
        standings = tables.task_standings(per_task, row["method"], held_out)
        absent.loc[i, "tasks_won"] = len(standings["above"])
        for key, vs in (("p_accuracy", "vs_accuracy"), ("p_loss", "vs_loss")):
            best = table[vs].iloc[0] if len(table) else ""
            if row[vs] != best or row[vs] in changed:
                absent.loc[i, [key, f"{key}_low", f"{key}_high"]] = np.nan
                absent.loc[i, vs] = best

    def without_targets(rows: pd.DataFrame, carried: bool) -> pd.DataFrame:
        targets = [c for c in rows.columns if c.startswith(("meets_", "standing_"))]
        targets += ["targets_met"]
        return rows.drop(columns=targets).assign(**{CARRIED: carried})

    merged = pd.concat(
        [without_targets(table, False), without_targets(absent, True)], ignore_index=True
    )
    merged[CARRIED] = merged[CARRIED].astype(bool)
    return KeptRows(_ordered(targets_met(merged)), per_task, list(absent["method"]), differences)


#: The targets of issue "Agents that win (2/2)", each the agent against the best baseline's
#: number: met unless it stands ``below`` (CIs apart, ours worse; :func:`ganno.stats.compare`) or,
#: for the robust range (a grid count, no interval), ``narrower``.
TARGETS = {
    "held_out_accuracy": "pooled held-out tuned test accuracy not below the best baseline's",
    "held_out_loss": "pooled held-out tuned test loss not below (not above) the lowest baseline's",
    "train_accuracy": "training-task tuned test accuracy not below the best handcrafted SGD "
    "schedule's",
    "all_lr0": "training-task all-lr0 test accuracy not below the best baseline's",
    "robust_range": "training-task robust range at least as wide as every baseline's",
}


def _estimate(row: pd.Series, column: str) -> stats.Estimate:
    return stats.Estimate(row[column], row[f"{column}_low"], row[f"{column}_high"])


def targets_met(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with, per target of :data:`TARGETS`, the design agents' standing against the best
    baseline's number (``standing_<target>``: above / level / below, or wider / as wide / narrower
    for the robust range; empty for baselines and where the agent has no number), whether it is
    met (``meets_<target>``, NaN for baselines) and ``targets_met``, their count (NaN for
    baselines). An agent with no held-out runs does not meet the held-out targets."""
    table = table.copy()
    agents_ = table["kind"] == "design agent"
    base = table[~agents_]
    sgd = base[base["method"].isin(HANDCRAFTED)]
    # target -> (column, the baselines it is held against, higher is better)
    against = {
        "held_out_accuracy": ("held_out_accuracy", base, True),
        "held_out_loss": ("held_out_loss", base, False),
        "train_accuracy": ("train_tuned_accuracy", sgd, True),
        "all_lr0": ("train_all_accuracy", base, True),
        "robust_range": ("train_robust_decades", base, True),
    }
    count = np.zeros(len(table))
    for target, (column, others, higher) in against.items():
        others = others[np.isfinite(others[column].to_numpy(float))]
        standing = [""] * len(table)
        if not others.empty:
            best = others.loc[others[column].idxmax() if higher else others[column].idxmin()]
            for i, (_, row) in enumerate(table.iterrows()):
                if not agents_.iloc[i] or not np.isfinite(row[column]):
                    continue
                if target == "robust_range":
                    standing[i] = stats.compare_ranges(row[column], best[column])
                else:
                    standing[i] = stats.compare(
                        _estimate(row, column), _estimate(best, column), higher
                    )
        met = np.array([s not in ("", "below", "narrower") for s in standing])
        table[f"standing_{target}"] = standing
        table[f"meets_{target}"] = np.where(agents_, met, np.nan)
        count += met
    table["targets_met"] = np.where(agents_, count, np.nan)
    return table


def across_tasks_display(table: pd.DataFrame) -> pd.DataFrame:
    def ci(r: pd.Series, prefix: str) -> str:
        if not np.isfinite(r[prefix]):
            return "-"
        return tables.fmt_ci(r[prefix], r[f"{prefix}_low"], r[f"{prefix}_high"])

    def each(prefix: str) -> list[str]:
        return [ci(r, prefix) for _, r in table.iterrows()]

    return pd.DataFrame(
        {
            "method": table["method"],
            "held-out (normalised): tuned test accuracy": each("held_out_accuracy"),
            "held-out (normalised): tuned test loss": each("held_out_loss"),
            "held-out: P(acc. beats best)": each("p_accuracy"),
            "held-out: P(loss beats best)": each("p_loss"),
            "targets met": [
                "-" if not np.isfinite(n) else f"{int(n)} / {len(TARGETS)}"
                for n in table["targets_met"]
            ],
            "tasks won": [
                "-" if not np.isfinite(w) else f"{int(w)} / {n}"
                for w, n in zip(table["tasks_won"], table["held_out_tasks"], strict=True)
            ],
            "train: tuned test accuracy": each("train_tuned_accuracy"),
            "train: tuned test loss": each("train_tuned_loss"),
            "train: all-lr0 accuracy": each("train_all_accuracy"),
            "train: robust range (decades)": table["train_robust_decades"].map(tables.fmt_decades),
            "held-out (normalised): all-lr0 accuracy": each("held_out_all_accuracy"),
            "held-out: robust range (median, decades)": [
                "-" if not np.isfinite(d) else tables.fmt_decades(d)
                for d in table["held_out_robust_decades"]
            ],
            "runs at chance: train / held-out / most (task)": [
                _at_chance_cell(r) for _, r in table.iterrows()
            ],
        }
    )


def _at_chance_cell(row: pd.Series) -> str:
    """``train / held-out / most (task)`` shares of runs at chance, in percent (the task named
    only where its share is above 0); ``-`` where not computed (a row kept from a table written
    before the shares were)."""
    if not np.isfinite(row["train_at_chance"]):
        return "-"

    pct = tables.fmt_share
    most = row["held_out_at_chance_worst"]
    where = f" ({row['held_out_at_chance_worst_task']})" if np.isfinite(most) and most else ""
    return f"{pct(row['train_at_chance'])} / {pct(row['held_out_at_chance'])} / {pct(most)}{where}"


def _differences_line(differences: Sequence[str]) -> str:
    """The baseline numbers that differ from the table before, per method: how many, and the
    first of each method's."""
    if not differences:
        return "The baselines here are the same numbers as before."
    by_method: dict[str, list[str]] = {}
    for d in differences:
        by_method.setdefault(d.split(" ")[0].strip("(',"), []).append(d)
    parts = [f"{m} ({len(ds)} numbers, e.g. {ds[0]})" for m, ds in by_method.items()]
    return (
        f"Baseline numbers that differ from the table before ({len(differences)}; numbers of "
        f"their own runs, which ran again here): {'; '.join(parts)}."
    )


def write_across_tasks(
    config: Mapping[str, Any],
    results: str | Path,
    out_dir: str | Path,
    *,
    keep_absent: bool = False,
) -> tuple[Path, ...]:
    """Write ``design_study_across_tasks.{csv,md}`` and its figure (tuned test accuracy per
    task and pooled over the held-out tasks, per method; each agent's policy selected on the
    validation tasks a method of its own, :mod:`ganno.seed_selection`) and
    ``design_study_seeds.{csv,md}`` (:func:`write_seeds_table`) to ``out_dir``; returns the
    tables' paths. ``keep_absent``: keep the rows of the agents already in the tables there that
    have no runs in ``results`` (:func:`keep_absent_agents`)."""
    df, missing, skipped = load_across_tasks(config, results)
    if df.empty:
        raise FileNotFoundError(
            f"no design-study results under {results}/sweep; run ganno design-study"
        )
    ci_kwargs = tables.ci_kwargs(config)
    held_out = held_out_tasks(df, config)
    validation, validation_missing = seed_selection.load_validation(
        config, results, list(df["method"].unique())
    )
    seeds = seed_selection.seeds_table(
        df,
        validation,
        held_out,
        layout.validation_task_names(config),
        tables.tune_by(config),
        **ci_kwargs,
    )
    df = pd.concat([df, seed_selection.selected_runs(df, seeds)], ignore_index=True)
    table, per_task = across_tasks_table(df, config, **ci_kwargs)
    carried: list[str] = []
    differences: list[str] = []
    if keep_absent:
        table, per_task, carried, differences = keep_absent_agents(table, per_task, out_dir)
        kept = {f"/{name.removeprefix('ganno_')}_seed_" for name in carried}
        missing = [m for m in missing if not any(k in m for k in kept)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / f"{ACROSS_TASKS}.csv", out / f"{ACROSS_TASKS}.md"
    table.to_csv(csv, index=False)
    held_out = [
        t
        for t in dict.fromkeys(per_task["task"])
        if t not in (layout.TRAIN_TASK, tables.ALL_TASKS, tables.HELD_OUT)
    ]
    shown = per_task[per_task["task"] != tables.ALL_TASKS]
    figure = plots.generalisation_figure(
        shown, out / f"{ACROSS_TASKS}_figure", order=list(table["method"])
    )
    vs = table.iloc[0]
    lines = [
        "Design study across tasks: every agent of the study config meta-trained over "
        f"{len(config['meta_train']['seeds'])} seeds and evaluated on the training task (MNIST-1D "
        f"MLP 40-64-64-10) and on the held-out tasks ({', '.join(held_out) or 'none run yet'}), "
        "against the "
        "baselines. IQM [95% stratified-bootstrap CI] over meta-training seeds x evaluation "
        f"seeds (pooled over the held-out tasks: stratified by task); {report_tuning(config)} "
        f"P(acc. beats best): the probability that a tuned run beats one of {vs['vs_accuracy']} "
        "(the baseline with the best pooled held-out tuned accuracy) on the same held-out task; "
        f"P(loss beats best): the same on test loss against {vs['vs_loss']}. Tasks won: held-out "
        "tasks where the agent's tuned accuracy stands above the best baseline's there (CIs "
        "apart). The training "
        "task's robust range is the targets'; the held-out robust range is the median over the "
        "held-out tasks of each one's (`ganno.stats.robustness_table`) and the held-out "
        "all-lr0 accuracy the IQM over every lr0 and run pooled over them. Runs at chance: "
        "the share of runs (every lr0 and seed) whose test accuracy ends at most "
        f"{COLLAPSE_DEAD:.0%} of the way from chance to perfect (the level "
        "`env.collapse_check` calls dead), on the training task, averaged over the held-out "
        "tasks, and on the held-out task with the most; a baseline's count the rates too small "
        "to learn, an agent's above them networks it killed or never let learn ('-': a row "
        "kept from a table written before this column). "
        f"A row `<agent>{seed_selection.SELECTED_SUFFIX}` is the agent's policy of one "
        "meta-training seed, the one with the best score on the validation tasks "
        f"(evaluation.validation_tasks; {SEEDS}.md), the policy a practitioner would be "
        "shipped: its cells have that seed's runs only (one per evaluation seed), where the "
        "agent's own row pools every meta-training seed's. "
        f"Pooled held-out numbers are {tables.POOLING}. "
        "Targets met (each agent's number with its CI against the best baseline's: met when "
        "**above** or **level**, the CIs apart on the better side or overlapping, not when "
        "**below**; the robust range is a count of decades on the lr0 grid, without an interval; "
        f"agents sorted by them, then by held-out accuracy): {'; '.join(TARGETS.values())}.",
        "",
        across_tasks_display(table).to_markdown(index=False),
        "",
        *tables.figure_lines(
            out,
            figure,
            "Tuned test accuracy per task and pooled over the held-out tasks (IQM, 95% CI)",
        ),
    ]
    if carried:
        lines += [
            f"Kept from the table before ({CARRIED} in the CSV): {', '.join(carried)}. Their runs "
            f"are not in {results}; their own numbers are the table's before, and what compares "
            "them with the baselines (targets, tasks won) is recomputed against the baselines "
            "here (their P(beats best) only where that baseline's numbers are unchanged). "
            + _differences_line(differences),
            "",
        ]
    if skipped:
        lines += [f"Skipped: {len(skipped)} tables, e.g. {next(iter(skipped.items()))}.", ""]
    if missing:
        lines += [f"Missing (not yet run): {len(missing)} tables, e.g. {missing[0]}.", ""]
    md.write_text("\n".join(lines))
    return (
        csv,
        md,
        *write_seeds_table(
            config, seeds, held_out, validation_missing, results, out, keep_absent=keep_absent
        ),
    )


def _number(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.3f}"


#: The seed-by-seed table (:func:`write_seeds_table`).
SEEDS = "design_study_seeds"


def write_seeds_table(
    config: Mapping[str, Any],
    table: pd.DataFrame,
    held_out: Sequence[str],
    missing: Sequence[str],
    results: str | Path,
    out_dir: str | Path,
    *,
    keep_absent: bool = False,
) -> tuple[Path, Path]:
    """Write ``design_study_seeds.{csv,md}`` to ``out_dir``: ``table``
    (:func:`ganno.seed_selection.seeds_table` of the runs under ``results``, whose held-out tasks
    are ``held_out`` and whose validation tables ``missing`` are not yet run) with its summary
    (:func:`ganno.seed_selection.selection_summary`). ``keep_absent``: keep the rows of the agents
    already in the table there that have no runs here (marked in :data:`CARRIED`)."""
    ci_kwargs = tables.ci_kwargs(config)
    validation_names = layout.validation_task_names(config)
    table = table.assign(**{CARRIED: False})
    out = Path(out_dir)
    csv, md = out / f"{SEEDS}.csv", out / f"{SEEDS}.md"
    carried: list[str] = []
    if keep_absent and csv.is_file():
        before = pd.read_csv(csv)
        absent = before[~before["method"].isin(set(table["method"]))].assign(**{CARRIED: True})
        carried = list(dict.fromkeys(absent["method"]))
        table = pd.concat([table, absent], ignore_index=True) if carried else table
    if not table.empty:
        table = table.sort_values(["method", "meta_seed"]).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    summary = seed_selection.selection_summary(table, **ci_kwargs) if len(table) else None
    lines = [
        "Design study, seed by seed: every design agent's policy of each meta-training seed. "
        "Validation score: its tuned validation-split accuracy pooled over the meta-validation "
        f"tasks ({', '.join(validation_names) or 'none configured'}; evaluation.validation_tasks, "
        "neither meta-trained on nor held out), IQM [95% stratified-bootstrap CI over evaluation "
        "seeds], lr0 tuned per task on this seed's runs by "
        f"{tables.tune_by(config)}; the seed with the highest is its agent's selected policy "
        "(none while a seed has no score). Beside it, on tasks the selection never saw: tuned "
        "test accuracy pooled over the held-out tasks "
        f"({', '.join(held_out) or 'none run yet'}) and on the training task, each lr0 tuned "
        "on this seed's runs alone (the across-tasks table tunes one lr0 for all seeds), and "
        "the share of its runs (every lr0 and evaluation seed) whose test accuracy ends at most "
        f"{COLLAPSE_DEAD:.0%} of the way from chance to perfect, per task (the validation "
        "tasks' too: the score is tuned, so it does not count the networks left at chance at "
        "other lr0).",
        "",
    ]
    if summary is not None:
        rho = summary.correlation
        rho_text = (
            "not computed (it needs 3 seeds with both numbers, and spread in each)"
            if not np.isfinite(rho.value)
            else f"{tables.fmt_ci(rho.value, rho.low, rho.high)} (95% bootstrap CI resampling "
            "seeds)"
        )
        ranks = ", ".join(f"{m} {r}" for m, r in summary.selected_rank.items()) or "none yet"
        lines += [
            f"Does the validation score rank the seeds as the held-out tasks do? Spearman's rank "
            f"correlation of validation score and held-out tuned accuracy over the {summary.seeds} "
            f"seeds with both: {rho_text}; within an agent (the mean over agents of each one's "
            f"own, over its seeds): {_number(summary.within_agents)}. The selected seed "
            f"is at or above its agent's median seed held out for {summary.at_or_above_median} "
            f"of {summary.agents} agents; its held-out rank among its agent's seeds (1 = best): "
            f"{ranks}.",
            "",
            seed_selection.seeds_display(table).to_markdown(index=False),
            "",
        ]
    if carried:
        lines += [
            f"Kept from the table before ({CARRIED} in the CSV): {', '.join(carried)}; their "
            f"runs are not in {results}.",
            "",
        ]
    if missing:
        lines += [
            f"Missing (not yet run): {len(missing)} validation tables, e.g. {missing[0]}.",
            "",
        ]
    md.write_text("\n".join(lines))
    return csv, md
