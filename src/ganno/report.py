"""The report: the paper's claims (C1-C3) and the questions beyond it (Q1, Q2, a design study,
the PyTorch deployment, Q3 what GANNO costs) as peer sections of one README, built from everything
the pipeline wrote.

:func:`build_report` reads the results laid out as :mod:`ganno.layout` says, once, for every
agent; the claims' section is built here, the questions' and the PyTorch deployment's by
:mod:`ganno.extensions_report`; both compute their numbers with :mod:`ganno.tables`. Q3's
section, from the run's benchmark files, is :mod:`ganno.cost`'s. It writes ``figures/`` (PNG, PDF
and the CSV drawn), ``tables/`` (CSV with full-precision numbers, Markdown and LaTeX),
``config.yaml`` and ``README.md`` into the output folder.

Tuned numbers come from :func:`ganno.tables.tune` per (method, task) with the config's
``evaluation.tune_by``, for GANNO's agents as for every baseline. Aggregates are interquartile
means with stratified-bootstrap confidence intervals (:mod:`ganno.stats`), with the config's
``baselines.confidence``, ``baselines.bootstrap_resamples`` and ``seed``.

This module reads the results (:func:`load_results`), computes the claims' tables and figures
(:func:`claims_section`) and assembles the README (:func:`write_paper_readme`). The rest lives
beside it, one idea a module: the claims' verdicts in :mod:`ganno.verdicts`, their prose in
:mod:`ganno.claims_text`, the sentences on method in :mod:`ganno.method_statements`, the copy of
the verdict table into the repository's README in :mod:`ganno.front_door`. Their names are
re-exported here, so ``ganno.report.X`` keeps working for the tests and notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml

from ganno import agents as registry
from ganno import cost, extensions_report, plots, seed_selection, tuning_budget
from ganno.claims_text import claims_lines
from ganno.errors import ResultsError
from ganno.front_door import (  # noqa: F401  (re-exported)
    FRONT_DOOR,
    FRONT_DOOR_BEGIN,
    FRONT_DOOR_END,
    update_front_door,
    verdict_table_of,
)
from ganno.io import atomic_write, read_curve
from ganno.layout import DEFAULT_REPORT_DIR, TRAIN_TASK, result_paths, task_names
from ganno.method_statements import (  # noqa: F401  (re-exported: the tests read them from here)
    ACTION_MODE_WORDS,
    TUNING,
    agent_design_statement,
    grid_statement,
    meta_seeds_statement,
    meta_training_statement,
    selection_statement,
    tuning_statement,
)
from ganno.results import read_results
from ganno.tables import (  # noqa: F401  (re-exported: the notebooks read them from here)
    ALL_TASKS,
    DEAD_RUNS_PER_SEED_MAX,
    DEAD_SHARE_MAX,
    HELD_OUT,
    POOLING,
    TablePaths,
    ci_kwargs,
    dead_network_check,
    estimate,
    figure_lines,
    fmt,
    fmt_chance,
    fmt_ci,
    fmt_decades,
    fmt_lr,
    generalisation_display,
    generalisation_summary,
    improvement_display,
    improvement_summary,
    read_csv_or_skip,
    robustness_by_task,
    robustness_by_task_display,
    robustness_display,
    robustness_summary,
    schedule_display,
    schedule_summary,
    task_standings,
    tune_by,
    tuned_results,
    write_table,
)
from ganno.verdicts import (  # noqa: F401  (re-exported: the tests read them from here)
    Tables,
    Verdict,
    c1_verdicts,
    c2_verdicts,
    c3_verdicts,
    claim_verdicts,
    stated,
    verdict_table,
)

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class ReportData(NamedTuple):
    """What the pipeline wrote, read."""

    results: pd.DataFrame  # baselines and the claims' agents, every task that ran
    schedules: pd.DataFrame  # the claims' agents' per-layer rates on "train"
    curves: pd.DataFrame  # the claims' agents' learning-curve rows, with ``algo`` = agent
    tasks: list[str]  # tasks with results, in config order
    skipped: dict[str, str]  # file (relative to the results folder) -> why it has no rows
    question_results: pd.DataFrame  # the question agents' rows (results schema)
    question_curves: pd.DataFrame  # their learning curves
    torch: pd.DataFrame | None  # the PyTorch deployment's rows, when configured and run
    selection: dict[str, Any] | None  # the shipped agent's seed chosen on the validation tasks


def _read_curves(paths: Mapping[tuple[str, int], Path], root: Path, skipped: dict[str, str]):
    frames = []
    for (agent, seed), path in paths.items():
        rows = read_curve(path)
        if not rows:
            skipped[str(path.relative_to(root))] = "missing or empty learning curve"
            continue
        frames.append(pd.DataFrame(rows).assign(algo=agent, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["algo", "seed", "env_steps", *plots.CURVE_METRICS])
    return pd.concat(frames, ignore_index=True)


def _read_tables(paths: Sequence[Path], root: Path, skipped: dict[str, str]) -> pd.DataFrame:
    frames = [read_csv_or_skip(p, root, skipped, lambda p: read_results([p])) for p in paths]
    frames = [f for f in frames if f is not None]
    results = read_results([]) if not frames else pd.concat(frames, ignore_index=True)
    results["diverged"] = results["diverged"].astype(bool)
    return results


def load_results(results_dir: str | Path, config: Mapping[str, Any]) -> ReportData:
    """Read every file of :func:`ganno.layout.result_paths`; empty CSVs (skipped tasks) are
    noted, not read."""
    root = Path(results_dir)
    paths = result_paths(config, root)
    skipped: dict[str, str] = {}
    claims = {a.name for a in registry.agents(config, question=None)}
    mine = {k: p for k, p in paths.agents.items() if k[1] in claims}
    results = _read_tables([*paths.baselines.values(), *mine.values()], root, skipped)
    others = [p for k, p in paths.agents.items() if k[1] not in claims]
    question_results = _read_tables(others, root, skipped)

    schedule_frames = []
    for (_, seed), path in paths.schedules.items():
        df = read_csv_or_skip(path, root, skipped, pd.read_csv)
        if df is not None:
            schedule_frames.append(df.assign(meta_seed=df.get("meta_seed", seed)))
    schedules = (
        pd.concat(schedule_frames, ignore_index=True)
        if schedule_frames
        else pd.DataFrame(
            columns=["method", "task", "lr0", "seed", "step", "layer", "learning_rate", "meta_seed"]
        )
    )
    curves = _read_curves({k: p for k, p in paths.curves.items() if k[0] in claims}, root, skipped)
    question_curves = _read_curves(
        {k: p for k, p in paths.curves.items() if k[0] not in claims}, root, skipped
    )
    torch = None
    if paths.torch is not None:
        torch = read_csv_or_skip(paths.torch, root, skipped, lambda p: read_results([p]))
        if torch is not None:
            torch["diverged"] = torch["diverged"].astype(bool)
    selection = None
    if paths.selection is not None:
        # The shipped policy's own row: the selected seed's runs, beside its agent's pooled ones.
        selection = seed_selection.read_selection(paths.selection)
        chosen = {selection["method"]: int(selection["seed"])}
        results = pd.concat(
            [results, seed_selection.selected_runs(results, chosen)], ignore_index=True
        )
    present = set(results["task"])
    tasks = [t for t in task_names(config) if t in present]
    return ReportData(
        results,
        schedules,
        curves,
        tasks,
        skipped,
        question_results,
        question_curves,
        torch,
        selection,
    )


def skipped_tasks(data: ReportData, config: Mapping[str, Any]) -> dict[str, str]:
    """Tasks of the config without any results -> the reason of their first skipped file."""
    out = {}
    for task in task_names(config):
        if task in data.tasks:
            continue
        reasons = [r for f, r in data.skipped.items() if Path(f).parts[1:2] == (task,)]
        out[task] = reasons[0] if reasons else "no results"
    return out


# --------------------------------------------------------------------------------------------
# The README
# --------------------------------------------------------------------------------------------


def _table_captions(config: Mapping[str, Any]) -> dict[str, str]:
    captions = {
        "robustness": f"robustness on `{TRAIN_TASK}` (C2): range, all-lr0 and tuned test accuracy "
        "and loss, divergences",
        "generalisation": "tuned test accuracy (and loss) per task (C3)",
        "robustness_by_task": "robust range and all-lr0 test accuracy on every task (C2 beyond "
        "the training task)",
        "improvement": "probability of improvement of GANNO over each baseline, on test accuracy "
        "and on test loss (C3)",
        "schedules": "final and peak learning rates the agents set (C1)",
        "torch_deployment": "the policy in a PyTorch training loop against PyTorch baselines",
        "q3_cost": "Q3, what GANNO costs: meta-training, evaluation runs, deployment",
        "q3_break_even": "Q3, the training problems after which GANNO costs less than tuning "
        "each baseline",
    }
    for question in registry.questions(config):
        title = registry.question_title(config, question)
        captions[question.lower()] = f"{question}, {title}: against the reference agents"
    return captions


def write_paper_readme(
    out_dir: str | Path,
    sections: Sequence[Sequence[str]],
    table_paths: Mapping[str, TablePaths],
    config: Mapping[str, Any],
    skipped: Mapping[str, str],
    skipped_files: Mapping[str, str] | None = None,
    results_dir: str | Path = "results",
    selection: Mapping[str, Any] | None = None,
) -> Path:
    """``out_dir/README.md``: how the numbers were made, the ``sections`` (the claims', then each
    question's and the PyTorch deployment's), the tables, skipped tasks and the config. Paths are
    relative to ``out_dir``; ``selection`` is the shipped policy's seed-selection record, when
    the validation tasks chose it."""
    out = Path(out_dir)
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    cfg = config["baselines"]
    ci = f"{round(100 * float(cfg['confidence']))}%"
    seeds = config["evaluation"]["seeds"]
    lines = [
        "# GANNO: results",
        "",
        f"Built by `ganno.report.build_report` from `{results_dir}`. Every number below is read "
        "from the tables in `tables/` (counts are counted from their rows), computed in the same "
        "run. Scores are final test accuracies, with the final test loss beside them; "
        f"aggregates are interquartile means (IQM) with {ci} stratified-bootstrap confidence "
        f"intervals ({cfg['bootstrap_resamples']} resamples, runs resampled within each task). "
        f"Each (method, task, lr0) cell has {len(seeds)} evaluation seeds; "
        f"{meta_seeds_statement(config)} {grid_statement(config)} {tuning_statement(config)} "
        f"{meta_training_statement(config)} {agent_design_statement(config)} "
        f"Pooled numbers are {POOLING} (per task: `tables/generalisation.csv`, its `normaliser` "
        "columns). A verdict is **above** or **below** only where the two confidence intervals "
        "are apart, else **level**."
        + (f" {selection_statement(selection)}" if selection is not None else ""),
        "",
        *[line for section in sections for line in section],
        "## Tables",
        "",
    ]
    captions = _table_captions(config)
    for name, paths in table_paths.items():
        links = ", ".join(f"[{p.suffix[1:]}]({rel(p)})" for p in paths)
        lines.append(f"- `{name}`: {captions.get(name, name)} ({links})")
    for name in ("robustness", "generalisation"):
        if name in table_paths:
            lines += ["", f"### {captions[name]}", "", table_paths[name].md.read_text().rstrip()]
    lines += ["", "## Skipped", ""]
    if skipped:
        lines += [f"- task `{t}`: {reason}" for t, reason in skipped.items()]
    extra = {
        f: r
        for f, r in (skipped_files or {}).items()
        if Path(f).parts[1:2] not in [(t,) for t in skipped]
    }
    lines += [f"- file `{f}`: {r}" for f, r in extra.items()]
    if not skipped and not extra:
        lines.append("Nothing was skipped.")
    lines += [
        "",
        "## Config",
        "",
        "The resolved config of the run (also in `config.yaml`):",
        "",
        "<details><summary>config</summary>",
        "",
        "```yaml",
        yaml.safe_dump(_plain(config), sort_keys=False).rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    path = out / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines))
    return path


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


class Report(NamedTuple):
    """What :func:`build_report` wrote."""

    readme: Path
    figures: dict[str, plots.FigurePaths]
    tables: dict[str, TablePaths]
    numbers: Tables


def _dead_networks(results: pd.DataFrame) -> pd.DataFrame:
    """:func:`ganno.tables.dead_network_check` of every GANNO method, one frame."""
    methods = [m for m in plots.method_order(results["method"].unique()) if plots.is_ganno(m)]
    frames = [dead_network_check(results, m).reset_index().assign(method=m) for m in methods]
    return (
        pd.concat(frames, ignore_index=True) if frames else Tables._field_defaults["dead_networks"]
    )


def _runs_saved(curves: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """:func:`ganno.tuning_budget.runs_saved` of every agent with curves, in one table."""
    agents = [m for m in plots.method_order(curves["method"].unique()) if plots.is_ganno(m)]
    frames = [tuning_budget.runs_saved(curves, m, confidence) for m in agents]
    if not frames:
        return Tables._field_defaults["runs_saved"]
    return pd.concat(frames, ignore_index=True)


def claims_section(
    out_dir: Path, config: Mapping[str, Any], data: ReportData
) -> tuple[Tables, dict[str, TablePaths], dict[str, plots.FigurePaths]]:
    """The tables and figures of the paper's claims (C1-C3) and of meta-training."""
    tables, curves = _claims_tables(config, data)
    table_paths = _write_claims_tables(out_dir / "tables", tables, data.tasks)
    figures = _claims_figures(out_dir / "figures", config, data, tables, curves)
    return tables, table_paths, figures


def _claims_tables(config: Mapping[str, Any], data: ReportData) -> tuple[Tables, pd.DataFrame]:
    """The claims' tables, computed from the run's results, and the expected-best curves of the
    tuning budget they read the runs saved from."""
    ci = ci_kwargs(config)
    tol = float(config["baselines"]["robustness_tolerance"])
    by = tune_by(config)
    results = data.results
    by_task = robustness_by_task(results, data.tasks, tolerance=tol, tune_by=by, **ci)
    on_train = by_task[by_task["task"] == TRAIN_TASK].drop(columns="task")
    curves = tuning_budget.expected_best_curve(results, **ci)
    tables = Tables(
        robustness=on_train.reset_index(drop=True),
        generalisation=generalisation_summary(results, data.tasks, tune_by=by, **ci),
        improvement=improvement_summary(results, data.tasks, tune_by=by, **ci),
        schedules=schedule_summary(data.schedules),
        robustness_by_task=by_task,
        dead_networks=_dead_networks(results),
        runs_saved=_runs_saved(curves, ci["confidence"]),
    )
    return tables, curves


def _write_claims_tables(
    table_dir: Path, tables: Tables, tasks: Sequence[str]
) -> dict[str, TablePaths]:
    """The claims' tables under ``table_dir`` (CSV, Markdown, LaTeX), with their captions."""
    return {
        "robustness": write_table(
            tables.robustness,
            robustness_display(tables.robustness),
            table_dir / "robustness",
            f"Robustness to the initial learning rate on {TRAIN_TASK} (C2).",
        ),
        "generalisation": write_table(
            tables.generalisation,
            generalisation_display(tables.generalisation, tasks),
            table_dir / "generalisation",
            "Tuned test accuracy, IQM [95% CI] / tuned test loss, IQM / runs at chance (every "
            "lr0 and seed), per task (C3); the pooled columns normalised per task.",
        ),
        "improvement": write_table(
            tables.improvement,
            improvement_display(tables.improvement),
            table_dir / "improvement",
            "Probability of improvement of GANNO over each baseline: a higher tuned test "
            "accuracy, a lower tuned test loss.",
        ),
        "robustness_by_task": write_table(
            tables.robustness_by_task,
            robustness_by_task_display(tables.robustness_by_task, tasks),
            table_dir / "robustness_by_task",
            "Robust range (decades; +: at the lr0 grid's edge, may be wider) / all-lr0 test "
            "accuracy IQM / runs at chance of every method on every task.",
        ),
        "schedules": write_table(
            tables.schedules,
            schedule_display(tables.schedules),
            table_dir / "schedules",
            "Learning rates set by the agents on the meta-training task (C1).",
        ),
        "tuning_budget": write_table(
            tables.runs_saved,
            tuning_budget.runs_saved_display(tables.runs_saved),
            table_dir / "tuning_budget",
            "Runs of each baseline (lr0 drawn at random from the grid, the best by validation "
            "accuracy kept) needed for its expected best test accuracy to reach one run of the "
            "GANNO agent (C2), per task and pooled over the held-out tasks (normalised).",
        ),
    }


def _claims_figures(
    fig_dir: Path,
    config: Mapping[str, Any],
    data: ReportData,
    tables: Tables,
    curves: pd.DataFrame,
) -> dict[str, plots.FigurePaths]:
    """The claims' and meta-training's figures under ``fig_dir``."""
    ci = ci_kwargs(config)
    by = tune_by(config)
    results = data.results
    train = results[results["task"] == TRAIN_TASK]
    env = config["env"]
    tuned_lr0 = tables.robustness.set_index("method")["tuned_lr0"].to_dict()
    figures = {"meta_training": plots.meta_training_curves(data.curves, fig_dir / "meta_training")}
    figures["tuning_budget"] = tuning_budget.curves_figure(curves, fig_dir / "tuning_budget")
    figures["schedules"] = plots.schedule_figure(
        data.schedules,
        tuned_lr0,
        fig_dir / "schedules",
        total_steps=int(env["steps_per_decision"] * env["num_decisions"]),
    )
    figures["robustness"] = plots.robustness_figure(
        train, fig_dir / "robustness", train_range=env["lr0_range"], **ci
    )
    per_task = tables.generalisation[tables.generalisation["task"].isin(data.tasks)]
    figures["generalisation"] = plots.generalisation_figure(per_task, fig_dir / "generalisation")
    figures["comparison"] = plots.comparison_plot(
        tuned_results(results, by),
        fig_dir / "comparison",
        title="tuned test accuracy over all tasks",
        **ci,
    )
    figures["comparison_loss"] = plots.comparison_plot(
        tuned_results(results, by),
        fig_dir / "comparison_loss",
        metric="test_loss",
        higher_is_better=False,
        title="tuned test loss over all tasks (lower is better)",
        **ci,
    )
    return figures


def build_report(
    results_dir: str | Path, out_dir: str | Path, config: Mapping[str, Any] | str | Path
) -> Report:
    """Read the pipeline's results under ``results_dir`` (layout: :mod:`ganno.layout`) and write
    ``out_dir/figures/*``, ``out_dir/tables/*``, ``out_dir/config.yaml`` and ``out_dir/README.md``.

    ``config`` is the resolved config the results were made with (a mapping, or a YAML path that
    :func:`ganno.config.load_config` reads).
    """
    if not isinstance(config, Mapping):
        from ganno.config import load_config

        config = load_config(config)
    out = Path(out_dir)
    data = load_results(results_dir, config)
    if TRAIN_TASK not in data.tasks:
        raise ResultsError(
            f"no results on the task {TRAIN_TASK!r} under {results_dir}; run the pipeline first "
            "or pass --results with the folder that holds them"
        )
    tables, table_paths, figures = claims_section(out, config, data)
    extensions = extensions_report.build_extensions(
        out,
        config,
        extensions_report.ExtensionData(
            data.results, data.curves, data.question_results, data.question_curves, data.torch
        ),
    )
    figures |= extensions.figures
    table_paths |= extensions.tables
    q3 = cost.q3_section(out, config, results_dir, tables.runs_saved)
    table_paths |= q3.tables
    atomic_write(out / "config.yaml", yaml.safe_dump(_plain(config), sort_keys=False))
    readme = write_paper_readme(
        out,
        [claims_lines(out, tables, figures, config), extensions.lines, q3.lines],
        table_paths,
        config,
        skipped_tasks(data, config),
        {**data.skipped, **extensions.skipped},
        results_dir,
        data.selection,
    )
    if out.resolve() == Path(DEFAULT_REPORT_DIR).resolve():  # the default run's, paper/
        update_front_door(Path(FRONT_DOOR), readme)
    return Report(readme, figures, table_paths, tables)
