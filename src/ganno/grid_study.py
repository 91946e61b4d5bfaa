"""The lr0 grid study: how the grid of initial rates moves the verdicts.

Every method is tuned on the lr0 grid (``evaluation.lr0_per_decade``, 2 a decade by default: 13
rates from 1e-5 to 10), so a coarse grid may miss a schedule's best rate. The study runs some
methods (``grid_study.methods``) and one agent's policies (``grid_study.agent``, every
meta-training seed) on some tasks (``grid_study.tasks``) over a finer grid
(``grid_study.lr0_per_decade``, same exponents and evaluation seeds), and puts each method's
tuned test accuracy there beside the one of the default run's own sweeps, with the agent's
standing against the best handcrafted SGD schedule on each grid (:func:`ganno.stats.compare`).

The workflow target ``snakemake --cores all grid_study`` (workflow/rules/grid_study.smk) writes
the fine-grid config and sweeps under ``results/grid_study/`` and the table
``<report.dir>/tables/grid_study.{csv,md,tex}`` (``ganno grid-study``). Paths below are relative
to the results folder, as in :mod:`ganno.layout`::

    grid_study/config.yaml                          the resolved config on the fine grid
    grid_study/sweep/<task>/baselines.csv           the study's baselines on the fine grid
    grid_study/sweep/<task>/<agent>_seed_<s>.csv    the agent's policy of seed s on it

This module's top level imports no JAX and no pandas: the workflow reads its names.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ganno import agents as registry
from ganno import layout
from ganno.config import check_grid_study, load_schema, merge
from ganno.env_settings import BASE_SCHEDULES
from ganno.errors import ConfigError, ResultsError, ResultsMissingError

if TYPE_CHECKING:
    import pandas as pd

#: The table's name (``<report.dir>/tables/grid_study.*``), the workflow target's and the
#: results folder's.
NAME = "grid_study"
#: The command that makes the table.
COMMAND = "snakemake --cores all grid_study"
#: The command that makes the coarse-grid sweeps: the default run.
DEFAULT_RUN = "snakemake --cores all"
SWEEP = "sweep"  # the folder of layout's sweep files, relative to the results folder
CONFIG = f"{NAME}/{layout.RESOLVED_CONFIG}"
BASELINES_CSV = f"{NAME}/{layout.BASELINES_CSV}"
AGENT_CSV = f"{NAME}/{layout.AGENT_CSV}"
#: The handcrafted SGD schedules: the agent is held against the best of those the study runs.
HANDCRAFTED = BASE_SCHEDULES
COARSE, FINE = "coarse", "fine"
#: Where a coarse cell comes from: the default run's sweep, or (a method that sweep did not run
#: on the task) the fine sweep's runs at the evaluation grid's rates, the same runs.
FROM_SWEEP, FROM_FINE = "sweep", "fine sweep at the coarse grid's lr0"


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``grid_study`` block of a validated config with its defaults filled (the schema's
    when the block is absent), checked against the config: a :class:`ConfigError` names the key
    and the allowed values."""
    defaults = {k: v["default"] for k, v in load_schema()["properties"][NAME]["properties"].items()}
    block = copy.deepcopy(defaults | dict(config.get(NAME) or {}))
    problems = check_grid_study(config, block)
    if problems:
        given = "" if NAME in config else " (the defaults: the config has no grid_study block)"
        raise ConfigError(f"invalid configuration{given}:\n  - " + "\n  - ".join(problems))
    return block


def fine_config(config: Mapping[str, Any], block: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` on the study's fine grid: ``evaluation.lr0_per_decade`` set to the study's."""
    return merge(config, {"evaluation": {"lr0_per_decade": block["lr0_per_decade"]}})


def sweep_file(pattern: str, sweep_dir: str | Path, **values: Any) -> Path:
    """A file of :mod:`ganno.layout`'s ``sweep/...`` ``pattern`` under ``sweep_dir`` (the default
    run's ``results/sweep`` or the study's ``results/grid_study/sweep``)."""
    relative = pattern.removeprefix(f"{SWEEP}/")
    return Path(sweep_dir) / relative.format(**values)


def coarse_inputs(
    config: Mapping[str, Any], block: Mapping[str, Any], sweep_dir: str | Path
) -> list[Path]:
    """The default run's sweeps the table reads: every study task's baselines, and the agent's
    per-seed results on the study tasks the default run evaluates it on."""
    agent = registry.get(config, block["agent"])
    seeds = registry.meta_seeds(config, agent.name)
    on = layout.agent_tasks(config, agent)
    files = []
    for task in block["tasks"]:
        files.append(sweep_file(layout.BASELINES_CSV, sweep_dir, task=task))
        if task in on:
            files += [
                sweep_file(layout.AGENT_CSV, sweep_dir, task=task, agent=agent.name, seed=s)
                for s in seeds
            ]
    return files


def fine_inputs(
    config: Mapping[str, Any], block: Mapping[str, Any], sweep_dir: str | Path
) -> list[Path]:
    """The study's fine-grid sweeps the table reads: its baselines and the agent's per-seed
    results on every study task."""
    seeds = registry.meta_seeds(config, block["agent"])
    files = []
    for task in block["tasks"]:
        files.append(sweep_file(layout.BASELINES_CSV, sweep_dir, task=task))
        files += [
            sweep_file(layout.AGENT_CSV, sweep_dir, task=task, agent=block["agent"], seed=s)
            for s in seeds
        ]
    return files


def table_inputs(config: Mapping[str, Any], results_dir: str | Path) -> dict[str, list[str]]:
    """The table's input files under ``results_dir`` (the workflow rule's ``input``): the default
    run's sweeps (``coarse``) and the study's (``fine``); a :class:`ConfigError` naming the key
    where the config's study is invalid."""
    block = settings(config)
    root = Path(results_dir)
    return {
        COARSE: [str(p) for p in coarse_inputs(config, block, root / SWEEP)],
        FINE: [str(p) for p in fine_inputs(config, block, root / NAME / SWEEP)],
    }


def sweep_settings(
    config: Mapping[str, Any], block: Mapping[str, Any], task: str, agent: str | None = None
) -> str:
    """The study's block and ``task``'s resolved sections (of ``agent``'s config for its sweep)
    as a string: a sweep rule's params, so editing them reruns that sweep only."""
    from ganno.config import agent_config, task_config

    cfg = task_config(agent_config(config, agent) if agent else config, task)
    sections = {k: cfg[k] for k in ("task", "env", "evaluation")}
    return json.dumps({**sections, NAME: dict(block)}, sort_keys=True)


def generalise_arguments(seeds: Sequence[int], policies: Sequence[str], outs: Sequence[str]) -> str:
    """`ganno generalise` arguments for an agent's policies: one --policy/--meta-seed/--out
    group per meta-training seed, in the order of ``policies`` (policy.json files) and ``outs``."""
    return " ".join(
        f"--policy {Path(policy).parent} --meta-seed {seed} --out {out}"
        for seed, policy, out in zip(seeds, policies, outs, strict=True)
    )


class GridStudy(NamedTuple):
    """The study's table: numbers (full precision) and display (formatted), with notes."""

    numbers: pd.DataFrame  # one row per (task, method)
    display: pd.DataFrame
    notes: list[str]  # sentences under the Markdown table: standings, sources, skipped tasks


#: The numbers' columns: per grid the number of lr0, the tuned lr0, the runs there and their test
#: accuracy IQM [CI], the agent's standing and the schedule it is held against (its row only).
COLUMNS = (
    "task",
    "method",
    *(f"{COARSE}_{k}" for k in ("lr0s", "tuned_lr0", "runs", "iqm", "low", "high")),
    "coarse_from",
    *(f"{FINE}_{k}" for k in ("lr0s", "tuned_lr0", "runs", "iqm", "low", "high")),
    "change",
    *(f"{g}_{k}" for g in (COARSE, FINE) for k in ("standing", "best")),
)
_REQUIRED = ("method", "task", "lr0", "seed", "val_loss", "val_accuracy", "test_accuracy")


def _read(path: Path, made_by: str, skipped: dict[str, str]) -> pd.DataFrame | None:
    """A results CSV; None with the reason in ``skipped`` for a task that could not run."""
    import pandas as pd

    marker = layout.skipped_marker(path)
    if marker.is_file():
        lines = marker.read_text().strip().splitlines()
        skipped[str(path)] = lines[0] if lines else "skipped (no reason given)"
        return None
    if not path.is_file():
        raise ResultsMissingError(f"{path} is missing; `{made_by}` makes it")
    if path.stat().st_size == 0:
        skipped[str(path)] = "empty file"
        return None
    df = pd.read_csv(path)
    missing = sorted(set(_REQUIRED) - set(df.columns))
    if missing:
        raise ResultsError(
            f"{path} is not a results table: it lacks {missing}; `{made_by}` makes it"
        )
    if df.empty:
        skipped[str(path)] = "no rows"
        return None
    return df


def _read_all(paths: Sequence[Path], made_by: str, skipped: dict[str, str]) -> pd.DataFrame:
    import pandas as pd

    frames = [df for p in paths if (df := _read(p, made_by, skipped)) is not None]
    if not frames:
        return pd.DataFrame(columns=list(_REQUIRED))
    return pd.concat(frames, ignore_index=True)


def _on_grid(lr0s: Any, grid: Sequence[float]) -> Any:
    """Which of ``lr0s`` are rates of ``grid`` (up to rounding)."""
    import numpy as np

    values = np.asarray(lr0s, float)[:, None]
    return np.isclose(values, np.asarray(grid, float)[None, :], rtol=1e-9, atol=0).any(axis=1)


def _tuned_cell(
    runs: pd.DataFrame, task: str, config: Mapping[str, Any], prefix: str
) -> dict[str, Any]:
    """A method's tuned test accuracy IQM [CI] on one task and grid, as the report tunes it."""
    from ganno import tables

    if runs.empty:
        nan = float("nan")
        return {f"{prefix}_tuned_lr0": nan, f"{prefix}_runs": 0, f"{prefix}_iqm": nan,
                f"{prefix}_low": nan, f"{prefix}_high": nan}  # fmt: skip
    tuned = tables.tuned_results(runs, tables.tune_by(config))
    est = tables.iqm_ci({task: tuned["test_accuracy"]}, **tables.ci_kwargs(config))
    return {
        f"{prefix}_tuned_lr0": float(tuned["lr0"].iloc[0]),
        f"{prefix}_runs": len(tuned),
        f"{prefix}_iqm": est.value,
        f"{prefix}_low": est.low,
        f"{prefix}_high": est.high,
    }


def _standings(rows: pd.DataFrame, method: str, prefix: str) -> tuple[str, str]:
    """The agent's standing on one task and grid against the best handcrafted SGD schedule of
    ``rows`` (the best baseline where the study runs none): (standing, that schedule)."""
    import numpy as np

    from ganno import stats

    def estimate(row: Any) -> stats.Estimate:
        return stats.Estimate(*(float(row[f"{prefix}_{k}"]) for k in ("iqm", "low", "high")))

    ran = rows[np.isfinite(rows[f"{prefix}_iqm"].astype(float))]
    ours = ran[ran["method"] == method]
    base = ran[ran["method"] != method]
    hand = base[base["method"].isin(HANDCRAFTED)]
    pool = hand if not hand.empty else base
    if ours.empty or pool.empty:
        return "", ""
    best = pool.loc[pool[f"{prefix}_iqm"].astype(float).idxmax()]
    return stats.compare(estimate(ours.iloc[0]), estimate(best)), str(best["method"])


def grid_study_table(
    config: Mapping[str, Any], coarse_dir: str | Path, fine_dir: str | Path
) -> GridStudy:
    """The study's table from the default run's sweeps (``coarse_dir``, ``results/sweep``) and
    the study's (``fine_dir``, ``results/grid_study/sweep``) for validated ``config`` (the
    default run's: its grid is the coarse one)."""
    import numpy as np
    import pandas as pd

    from ganno.results import lr0_grid

    block = settings(config)
    agent = block["agent"]
    ganno = registry.method_name(agent)
    methods = [*block["methods"], ganno]
    grids = {COARSE: lr0_grid(config), FINE: lr0_grid(fine_config(config, block))}
    skipped: dict[str, str] = {}
    coarse = _read_all(coarse_inputs(config, block, coarse_dir), DEFAULT_RUN, skipped)
    fine = _read_all(fine_inputs(config, block, fine_dir), COMMAND, skipped)
    rows, notes = [], []
    for task in block["tasks"]:
        task_rows = []
        for method in methods:
            row: dict[str, Any] = {"task": task, "method": method}
            fine_runs = fine[(fine["task"] == task) & (fine["method"] == method)]
            coarse_runs = coarse[(coarse["task"] == task) & (coarse["method"] == method)]
            source = FROM_SWEEP
            if coarse_runs.empty and not fine_runs.empty:
                coarse_runs = fine_runs[_on_grid(fine_runs["lr0"], grids[COARSE])]
                source = FROM_FINE
            for prefix, runs in ((COARSE, coarse_runs), (FINE, fine_runs)):
                row[f"{prefix}_lr0s"] = len(grids[prefix])
                row |= _tuned_cell(runs, task, config, prefix)
            row["coarse_from"] = source if not coarse_runs.empty else ""
            task_rows.append(row)
        table = pd.DataFrame(task_rows)
        if not np.isfinite(table[[f"{COARSE}_iqm", f"{FINE}_iqm"]].astype(float)).any(axis=None):
            continue  # a task that could not run here (its reason is among the skipped)
        for prefix in (COARSE, FINE):
            standing, best = _standings(table, ganno, prefix)
            table[f"{prefix}_best"] = np.where(table["method"] == ganno, best, "")
            table[f"{prefix}_standing"] = np.where(table["method"] == ganno, standing, "")
            if standing:
                notes.append(
                    f"`{task}`, {prefix} grid ({len(grids[prefix])} lr0): {ganno} is "
                    f"**{standing}**{' with' if standing == 'level' else ''} the best "
                    f"handcrafted SGD schedule there, {best}."
                )
        rows.append(table)
        fallback = table.loc[table["coarse_from"] == FROM_FINE, "method"].tolist()
        if fallback:
            notes.append(
                f"`{task}`: the default run did not run {', '.join(fallback)} there; their "
                f"coarse cells (marked *) are the fine sweep's runs at the "
                f"{len(grids[COARSE])} lr0 of the evaluation grid (the same runs)."
            )
    notes += [f"skipped: {path}: {why}" for path, why in skipped.items()]
    if not rows:
        raise ResultsError(
            f"no grid-study task has results ({', '.join(block['tasks'])}): "
            + "; ".join(f"{p}: {w}" for p, w in skipped.items())
        )
    numbers = pd.concat(rows, ignore_index=True)
    numbers["change"] = numbers[f"{FINE}_iqm"] - numbers[f"{COARSE}_iqm"]
    numbers = numbers[list(COLUMNS)]
    confidence = float(config["baselines"]["confidence"])
    return GridStudy(numbers, _display(numbers, grids, confidence), notes)


def _display(
    numbers: pd.DataFrame, grids: Mapping[str, Sequence[float]], confidence: float
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    from ganno.tables import fmt_ci, fmt_lr

    def cells(prefix: str) -> tuple[list[str], list[str]]:
        cols = [f"{prefix}_iqm", f"{prefix}_low", f"{prefix}_high"]
        ci = [fmt_ci(*r) if np.isfinite(r[0]) else "–" for r in numbers[cols].itertuples(False)]
        lr = [fmt_lr(x) if np.isfinite(x) else "–" for x in numbers[f"{prefix}_tuned_lr0"]]
        return lr, ci

    def standing(row: Any) -> str:
        parts = [f"{p}: {row[f'{p}_standing']} ({row[f'{p}_best']})"
                 for p in (COARSE, FINE) if row[f"{p}_standing"]]  # fmt: skip
        return "; ".join(parts)

    coarse_lr, coarse_ci = cells(COARSE)
    fine_lr, fine_ci = cells(FINE)
    coarse_ci = [
        c + ("*" if f == FROM_FINE else "")
        for c, f in zip(coarse_ci, numbers["coarse_from"], strict=True)
    ]
    n_coarse, n_fine = len(grids[COARSE]), len(grids[FINE])
    ci = f"{100 * confidence:g}% CI"
    return pd.DataFrame(
        {
            "task": numbers["task"],
            "method": numbers["method"],
            f"coarse ({n_coarse} lr0): tuned lr0": coarse_lr,
            f"coarse: test accuracy IQM [{ci}]": coarse_ci,
            f"fine ({n_fine} lr0): tuned lr0": fine_lr,
            f"fine: test accuracy IQM [{ci}]": fine_ci,
            "change": [f"{x:+.3f}" if np.isfinite(x) else "–" for x in numbers["change"]],
            "agent vs best handcrafted": [standing(r) for _, r in numbers.iterrows()],
        }
    )


def grid_statement(config: Mapping[str, Any]) -> str:
    """The first line of the Markdown table: the command that made it and the config's grids."""
    from ganno.results import lr0_grid

    block = settings(config)
    ev = config["evaluation"]
    low, high = ev["lr0_exponents"]
    coarse, fine = lr0_grid(config), lr0_grid(fine_config(config, block))
    return (
        f"Made by `{COMMAND}` (`ganno grid-study`; report.dir `{layout.report_dir(config)}`): "
        f"lr0 from 1e{low:+g} to 1e{high:+g}, the coarse grid evaluation.lr0_per_decade "
        f"{ev['lr0_per_decade']} ({len(coarse)} lr0, the default run's sweeps), the fine grid "
        f"grid_study.lr0_per_decade {block['lr0_per_decade']} ({len(fine)} lr0); every method "
        f"tuned on {ev['tune_by']} (evaluation.tune_by), {len(ev['seeds'])} evaluation seeds."
    )


def write_grid_study(
    config: Mapping[str, Any], coarse_dir: str | Path, fine_dir: str | Path, stem: str | Path
) -> list[Path]:
    """The study's table as ``<stem>.csv`` (full precision), ``.md`` (the command and grids on
    its first line, the standings under it) and ``.tex``."""
    from ganno.io import atomic_write
    from ganno.tables import write_table

    study = grid_study_table(config, coarse_dir, fine_dir)
    statement = grid_statement(config)
    grids = study.numbers[["coarse_lr0s", "fine_lr0s"]].iloc[0]
    caption = (
        f"the lr0 grid study: tuned test accuracy on the evaluation grid ({grids.iloc[0]} lr0) "
        f"and on the fine grid ({grids.iloc[1]} lr0), and the agent against the best "
        "handcrafted SGD schedule on each"
    )
    paths = write_table(study.numbers, study.display, stem, caption=caption)
    table = study.display.to_markdown(index=False, disable_numparse=True)  # "+0.051" kept
    markdown = [statement, "", table, ""]
    markdown += [f"- {note}" for note in study.notes]
    atomic_write(paths.md, "\n".join(markdown).rstrip("\n") + "\n")
    return list(paths)
