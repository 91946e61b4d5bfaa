"""Where the pipeline puts things: every results path and every report name, spelled once.

The Snakemake rules and the library (the CLI, :mod:`ganno.report`) both import this module; it
imports only :mod:`ganno.agents` (no JAX, no third-party package), so ``snakemake -n`` stays
quick. Paths below are relative to the results folder (``results/``)::

    meta_train/<agent>/seed_<s>/policy/policy.json     an agent's policy of meta-training seed s
    meta_train/<agent>/seed_<s>/learning_curve.jsonl   its meta-training curve
    sweep/<task>/baselines.csv                         every baseline, lr0 grid x evaluation seeds
    sweep/<task>/<agent>_seed_<s>.csv                  the policy of seed s on the same grid
    sweep/<task>/<agent>_seed_<s>.schedules.csv        its per-layer learning rates
    torch/deployment.csv                               the PyTorch deployment (ganno torch-eval)
    selection/<agent>.json                             its seed chosen on the validation tasks
    benchmarks/meta_train/<agent>_seed_<s>.tsv         Snakemake's benchmark of that job (the
    benchmarks/sweep/<task>_<agent>.tsv                rules' ``benchmark:`` files: wall and CPU
    benchmarks/sweep/<task>_baselines.tsv              time, memory, mean load), read by
    benchmarks/torch/deployment.tsv                    :mod:`ganno.cost` for Q3
    benchmarks/meta_train_profile.csv                  benchmarks/meta_train_profile.py's output

A task that cannot run here leaves an empty CSV and ``<csv>.skipped`` holding the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ganno import agents as registry

#: The agent whose policy the package ships (:mod:`ganno.pretrained`).
SHIPPED_AGENT = "ippo"

#: The name of the meta-training task among the evaluation tasks.
TRAIN_TASK = "train"

RESOLVED_CONFIG = "config.yaml"  # the validated config the rules pass to every command
BASELINES_CSV = "sweep/{task}/baselines.csv"
AGENT_CSV = "sweep/{task}/{agent}_seed_{seed}.csv"
AGENT_SCHEDULES_CSV = "sweep/{task}/{agent}_seed_{seed}.schedules.csv"
META_TRAIN_DIR = "meta_train/{agent}/seed_{seed}"
POLICY_JSON = META_TRAIN_DIR + "/policy/policy.json"
LEARNING_CURVE = META_TRAIN_DIR + "/learning_curve.jsonl"
TORCH_CSV = "torch/deployment.csv"
SELECTION_JSON = "selection/{agent}.json"  # the agent's seed chosen on the validation tasks
SKIPPED_SUFFIX = ".skipped"  # beside an empty CSV: why the task could not run
# Snakemake's benchmark files (the rules' ``benchmark:`` lines spell them under results/).
META_TRAIN_BENCHMARK = "benchmarks/meta_train/{agent}_seed_{seed}.tsv"
AGENT_SWEEP_BENCHMARK = "benchmarks/sweep/{task}_{agent}.tsv"
BASELINES_SWEEP_BENCHMARK = "benchmarks/sweep/{task}_baselines.tsv"
TORCH_BENCHMARK = "benchmarks/torch/deployment.tsv"
#: The cost breakdown of one meta-training configuration (benchmarks/meta_train_profile.py): in a
#: results folder, and, measured by hand, in the repository.
META_TRAIN_PROFILE = "benchmarks/meta_train_profile.csv"
MEASURED_META_TRAIN_PROFILE = "benchmarks/measured/meta_train_profile.csv"
#: the default config's profile beside the same agent with a reference pool
#: (meta_train.reference_pool)
MEASURED_REFERENCE_POOL_PROFILE = "benchmarks/measured/reference_pool_profile.csv"

#: The report of the paper's claims; questions and the PyTorch deployment add theirs.
CLAIM_FIGURES = (
    "meta_training",
    "schedules",
    "robustness",
    "generalisation",
    "tuning_budget",
    "comparison",
    "comparison_loss",
)
CLAIM_TABLES = (
    "robustness",
    "generalisation",
    "improvement",
    "schedules",
    "robustness_by_task",
    "tuning_budget",
    # Q3, what GANNO costs (ganno.cost): written for every config, from whatever the run measured
    "q3_cost",
    "q3_break_even",
)
QUESTION_FIGURES = ("robustness", "curves")  # <question>_robustness, <question>_curves
TORCH = "torch_deployment"
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("png", "pdf", "csv")
README = "README.md"
DEFAULT_REPORT_DIR = "paper"
PACKAGE_PRETRAINED_DIR = "src/ganno/pretrained"  # relative to the repository (the workflow's root)
#: The report table whose rows are stored as a refreshed policy's headline numbers.
PRETRAINED_HEADLINE_TABLE = "robustness"


def pretrained_dir(config: Mapping[str, Any]) -> str:
    """Where the pipeline refreshes the shipped pretrained policies (:mod:`ganno.pretrained`): the
    package's source tree, ``src/ganno/pretrained``, when the report goes to the committed
    ``paper/`` (the default), so the shipped policy stays in step with the paper; else
    ``<report.dir>/pretrained``, so a test or private config never overwrites the shipped one."""
    out = report_dir(config)
    if Path(out) == Path(DEFAULT_REPORT_DIR):
        return PACKAGE_PRETRAINED_DIR
    return str(Path(out) / "pretrained")


def task_names(config: Mapping[str, Any]) -> list[str]:
    """``train`` (the meta-training task) and the configured generalisation tasks."""
    return [TRAIN_TASK] + [t["name"] for t in config["evaluation"]["generalisation_tasks"]]


def validation_task_names(config: Mapping[str, Any]) -> list[str]:
    """The meta-validation tasks (``evaluation.validation_tasks``), which choose a policy among
    the meta-training seeds and are reported apart from the held-out tasks."""
    return [t["name"] for t in config["evaluation"].get("validation_tasks") or []]


def agent_validation_tasks(config: Mapping[str, Any], agent: registry.Agent) -> list[str]:
    """The meta-validation tasks ``agent`` runs on: all of them for an agent evaluated on every
    task (no ``tasks`` key), none for one restricted to some."""
    return validation_task_names(config) if agent.tasks is None else []


def selection_path(config: Mapping[str, Any], results_dir: str | Path = "results") -> Path | None:
    """The selection record (:data:`SELECTION_JSON`) of the agent whose policy the package ships
    (:data:`ganno.pretrained.DEFAULT`) when the validation tasks choose its seed; ``None`` when
    the config has no such agent or it runs on no validation task (its first seed is shipped)."""
    if SHIPPED_AGENT not in registry.agent_names(config):
        return None
    if not agent_validation_tasks(config, registry.get(config, SHIPPED_AGENT)):
        return None
    return Path(results_dir) / SELECTION_JSON.format(agent=SHIPPED_AGENT)


def agent_tasks(config: Mapping[str, Any], agent: registry.Agent) -> list[str]:
    """The tasks ``agent`` is evaluated on, in config order."""
    tasks = task_names(config)
    return tasks if agent.tasks is None else [t for t in tasks if t in agent.tasks]


def agents_on(config: Mapping[str, Any], task: str) -> list[registry.Agent]:
    """The agents evaluated on ``task``."""
    return [a for a in registry.agents(config) if task in agent_tasks(config, a)]


def skipped_marker(csv: str | Path) -> Path:
    """The file that says why ``csv`` is empty."""
    return Path(f"{csv}{SKIPPED_SUFFIX}")


def report_dir(config: Mapping[str, Any]) -> str:
    """Where the report (figures, tables, README) goes: ``report.dir``, default ``paper``."""
    return str(config.get("report", {}).get("dir", DEFAULT_REPORT_DIR))


def torch_enabled(config: Mapping[str, Any]) -> bool:
    """Whether the pipeline evaluates the PyTorch deployment (``torch_deployment.enabled``)."""
    block = config.get(TORCH) or {}
    return bool(block.get("enabled", False)) and bool(block.get("networks"))


def question_figures(question: str) -> list[str]:
    return [f"{question.lower()}_{kind}" for kind in QUESTION_FIGURES]


def figure_names(config: Mapping[str, Any]) -> list[str]:
    """Every figure the report writes for ``config``."""
    names = list(CLAIM_FIGURES)
    for question in registry.questions(config):
        names += question_figures(question)
    return names + ([TORCH] if torch_enabled(config) else [])


def table_names(config: Mapping[str, Any]) -> list[str]:
    """Every table the report writes for ``config``."""
    names = list(CLAIM_TABLES) + [q.lower() for q in registry.questions(config)]
    return names + ([TORCH] if torch_enabled(config) else [])


def caption_name(figure: str) -> str:
    """The caption file (workflow/report/<name>.rst) of a figure: one per kind of question
    figure, so a new question needs no caption file of its own."""
    for kind in QUESTION_FIGURES:
        if figure not in CLAIM_FIGURES and figure.endswith(f"_{kind}"):
            return f"question_{kind}"
    return figure


class ResultPaths(NamedTuple):
    """Every file the report reads, by role."""

    baselines: dict[str, Path]  # task -> CSV
    agents: dict[tuple[str, str, int], Path]  # (task, agent, meta seed) -> CSV
    schedules: dict[tuple[str, int], Path]  # (claim agent, meta seed) -> CSV on "train"
    curves: dict[tuple[str, int], Path]  # (agent, meta seed) -> JSONL
    torch: Path | None
    selection: Path | None  # the shipped agent's seed chosen on the validation tasks


def result_paths(config: Mapping[str, Any], results_dir: str | Path = "results") -> ResultPaths:
    """The files the pipeline writes for ``config`` under ``results_dir`` that the report reads."""
    root = Path(results_dir)
    every = registry.agents(config)
    claims = registry.agents(config, question=None)
    seeds = {a.name: registry.meta_seeds(config, a.name) for a in every}
    return ResultPaths(
        baselines={t: root / BASELINES_CSV.format(task=t) for t in task_names(config)},
        agents={
            (t, a.name, s): root / AGENT_CSV.format(task=t, agent=a.name, seed=s)
            for t in task_names(config)
            for a in agents_on(config, t)
            for s in seeds[a.name]
        },
        schedules={
            (a.name, s): root / AGENT_SCHEDULES_CSV.format(task=TRAIN_TASK, agent=a.name, seed=s)
            for a in claims
            if TRAIN_TASK in agent_tasks(config, a)
            for s in seeds[a.name]
        },
        curves={
            (a.name, s): root / LEARNING_CURVE.format(agent=a.name, seed=s)
            for a in every
            for s in seeds[a.name]
        },
        torch=root / TORCH_CSV if torch_enabled(config) else None,
        selection=selection_path(config, root),
    )


def report_inputs(config: Mapping[str, Any], results_dir: str | Path = "results") -> list[str]:
    """Every file the report reads (the report rule's ``input``)."""
    paths = result_paths(config, results_dir)
    groups = (paths.baselines, paths.agents, paths.schedules, paths.curves)
    files = [str(p) for group in groups for p in group.values()]
    optional = (paths.torch, paths.selection)
    return files + [str(p) for p in optional if p is not None]


def report_outputs(config: Mapping[str, Any], out_dir: str | Path | None = None) -> list[str]:
    """Every file the report writes (the report rule's ``output``)."""
    out = Path(report_dir(config) if out_dir is None else out_dir)
    return (
        [str(out / README), str(out / RESOLVED_CONFIG)]
        + [str(out / "figures" / f"{f}.{e}") for f in figure_names(config) for e in FIGURE_FORMATS]
        + [str(out / "tables" / f"{t}.{e}") for t in table_names(config) for e in TABLE_FORMATS]
    )
