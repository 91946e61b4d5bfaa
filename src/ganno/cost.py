"""Q3, what GANNO costs and when it pays for itself, from the run's own measurements.

Every number comes from a file the run (or a benchmark script) wrote, never from the text:

- **Snakemake's benchmark files** (:data:`ganno.layout.META_TRAIN_BENCHMARK` and its siblings, one
  per job): ``s`` (wall seconds), ``cpu_time`` (CPU seconds, user + system, of the job's
  processes), ``mean_load`` (the CPU use in percent of one core, averaged over the job) and
  ``max_rss`` (MB). They do not name the machine, so their numbers hold "on the machine the run
  ran on"; ``mean_load / 100`` says how many of its cores a job kept busy. CPU time is counted in
  CPU-core-seconds.
- **Learning curves**: the decisions a meta-training run took (``env_steps`` of its last row; one
  environment step is one decision of one episode, all its agents, and with a task family each
  member takes the same share of them).
- **Results CSVs**: the runs a sweep made; a baseline's share of its task's sweep (one job runs
  every baseline) is its share of the sweep's measured grid wall time (``wall_time_s``).
- ``torch/deployment.csv``: each PyTorch run's wall time (the policy's overhead there).
- ``benchmarks/meta_train_profile.csv`` (``benchmarks/meta_train_profile.py``): where one
  meta-training run's time goes.

**Break-even** (:func:`break_even`): a user who would otherwise tune baseline B runs ``k`` runs of
B per training problem (``k`` = the runs B needs for its expected best to reach one GANNO run,
:func:`ganno.tuning_budget.runs_saved`), and with GANNO one run; meta-training is paid once. GANNO
costs less in all after ``P`` problems, the smallest whole number above
``meta_cost / (k * cost_B - cost_GANNO)``; never where that denominator is not positive, and never
where B needs no more runs than GANNO (``k = 1``: no tuning is saved, and what one run of each
costs differs by a few percent, inside the timings' noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ganno import agents as registry
from ganno import layout
from ganno.config import agent_config, family_configs
from ganno.layout import TRAIN_TASK, agent_tasks, task_names
from ganno.tables import TablePaths, write_table
from ganno.tuning_budget import POOLED  # the label of the pooled rows of runs_saved

#: VeLO's meta-training compute as its abstract states it (Metz et al. 2022, "VeLO: Training
#: Versatile Learned Optimizers by Scaling Up", arXiv 2211.09760): "Meta-trained with approximately
#: four thousand TPU-months of compute".
VELO_TPU_MONTHS = 4000.0
VELO_SOURCE = (
    'Metz et al. 2022, "VeLO: Training Versatile Learned Optimizers by Scaling Up" '
    '(arXiv 2211.09760), abstract: "approximately four thousand TPU-months of compute"'
)
SECONDS_PER_MONTH = 30 * 24 * 3600  # a TPU-month as 30 days of one TPU
NEVER = "never"
NOT_MEASURED = "not measured in this run"
#: The overhead benchmark's output in a results folder, if anyone saved it there: the script
#: (benchmarks/torch_scheduler_overhead.py) prints its table and writes no file.
TORCH_OVERHEAD_FILES = (
    "benchmarks/torch_scheduler_overhead.csv",
    "benchmarks/torch_scheduler_overhead.txt",
)
#: The repository an editable install runs from: the profiles measured by hand are committed there.
REPOSITORY = Path(__file__).resolve().parents[2]
#: Parts of :data:`ganno.layout.META_TRAIN_PROFILE`, in the order they are reported.
PROFILE_PARTS = ("compilation", "reference pool", "agents' inner training", "reference run", "PPO")

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_benchmark(path: str | Path) -> dict[str, float] | None:
    """A Snakemake benchmark TSV as ``{wall_s, cpu_s, mean_load, max_rss_mb}`` (the mean over its
    rows: a ``repeat()`` benchmark has one per repetition; ``NA`` cells give NaN); ``None`` when
    the file is missing, empty or not a benchmark file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, sep="\t")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if df.empty or not {"s", "cpu_time"} <= set(df.columns):
        return None
    col = lambda c: float(pd.to_numeric(df[c], errors="coerce").mean()) if c in df else np.nan  # noqa: E731
    return {
        "wall_s": col("s"),
        "cpu_s": col("cpu_time"),
        "mean_load": col("mean_load"),
        "max_rss_mb": col("max_rss"),
    }


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None


def _last_curve_row(path: Path) -> dict[str, Any] | None:
    from ganno.io import read_curve

    rows = read_curve(path)
    return rows[-1] if rows else None


def _num_layers(network: Mapping[str, Any]) -> int:
    """Parametrised layers (one agent each) of a ``task.network`` block (:mod:`ganno.networks`)."""
    if network.get("kind", "mlp") == "cnn1d":
        return len(network.get("channels", (16, 32))) + 1  # the convolutions and the dense head
    if network.get("kind") == "transformer":  # embedding, 4 a block, head (its default: 1 block)
        return 2 + 4 * int(network.get("blocks", 1))
    return int(network.get("depth", 3))


def inner_trainings_per_decision(
    cfg: Mapping[str, Any], member: Mapping[str, Any] | None = None
) -> float:
    """The inner networks one decision of ``member`` (default: the config's own task) trains:
    the agents' own, plus the reference run of a relative reward (``Reward.reference_metric``),
    plus one per agent for the counterfactual rewards (each agent's keep-action counterfactual).
    With a reference pool (``meta_train.reference_pool``) the reference counts by its share: the
    pool's ``P x num_decisions`` reference intervals over the decisions the member plays."""
    from ganno.rewards import REWARDS

    member = cfg if member is None else member
    reward = REWARDS[member["env"]["reward"]]
    extra = 0.0
    if reward.reference_metric:
        pool = cfg["meta_train"].get("reference_pool")
        played = planned_decisions(cfg) / len(family_configs(cfg))
        extra = 1.0 if pool is None else pool * member["env"]["num_decisions"] / played
    if reward.counterfactual:
        extra += _num_layers(member["task"]["network"])
    return 1 + extra


def inner_steps_per_decision(cfg: Mapping[str, Any]) -> float:
    """Inner SGD steps per decision, all networks a decision trains counted
    (:func:`inner_trainings_per_decision` x ``env.steps_per_decision``), the mean over the task
    family's members (each takes the same share of the decisions; one member without a family)."""
    members = [c for _, c in family_configs(cfg)]
    return float(
        np.mean(
            [m["env"]["steps_per_decision"] * inner_trainings_per_decision(cfg, m) for m in members]
        )
    )


def planned_decisions(cfg: Mapping[str, Any]) -> int:
    """The decisions ``meta_train.total_timesteps`` buys: whole updates of ``num_envs x
    rollout_length`` decisions per member of the task family (:func:`ganno.meta_train.plan_run`)."""
    mt = cfg["meta_train"]
    per_update = mt["num_envs"] * mt["rollout_length"] * len(family_configs(cfg))
    return int(mt["total_timesteps"] // per_update * per_update)


def meta_training_cost(results_dir: str | Path, config: Mapping[str, Any]) -> pd.DataFrame:
    """One row per main agent (the config's agents without a ``question``) and meta-training seed:
    ``agent``, ``method``, ``seed``, ``wall_s``, ``cpu_s``, ``mean_load``, ``max_rss_mb`` (its
    benchmark file; NaN where missing), ``decisions`` (its learning curve's last ``env_steps``, else
    what the config plans), ``decisions_from`` (``curve`` or ``config``), ``inner_trainings``
    (networks trained per decision), ``inner_steps`` (decisions x
    :func:`inner_steps_per_decision`), ``curve_wall_s`` (the curve's own wall clock) and
    ``benchmark`` (the file read, relative to the results folder; empty where missing)."""
    root = Path(results_dir)
    rows = []
    for agent in registry.agents(config, question=None):
        cfg = agent_config(config, agent.name)
        per_decision = inner_steps_per_decision(cfg)
        for seed in registry.meta_seeds(config, agent.name):
            rel = layout.META_TRAIN_BENCHMARK.format(agent=agent.name, seed=seed)
            bench = read_benchmark(root / rel)
            last = _last_curve_row(root / layout.LEARNING_CURVE.format(agent=agent.name, seed=seed))
            decisions = int(last["env_steps"]) if last else planned_decisions(cfg)
            rows.append(
                {
                    "agent": agent.name,
                    "method": agent.method,
                    "seed": int(seed),
                    **(
                        bench
                        or dict.fromkeys(("wall_s", "cpu_s", "mean_load", "max_rss_mb"), np.nan)
                    ),
                    "decisions": decisions,
                    "decisions_from": "curve" if last else "config",
                    "inner_trainings": inner_trainings_per_decision(cfg),
                    "inner_steps": decisions * per_decision,
                    "curve_wall_s": float(last.get("wall_time", np.nan)) if last else np.nan,
                    "benchmark": rel if bench else "",
                }
            )
    return pd.DataFrame(rows)


def evaluation_cost(results_dir: str | Path, config: Mapping[str, Any]) -> pd.DataFrame:
    """The cost of one evaluation run, per method and task (the tasks of
    :func:`ganno.layout.task_names`): ``method``, ``task``, ``runs`` (rows of its results CSVs),
    ``cpu_s`` and ``wall_s`` (of its sweep job; a baseline's share of its task's job by its share
    of the measured grid wall time), ``cpu_s_per_run``, ``wall_s_per_run`` and ``benchmark``.
    Main agents' rows come from their own sweep job (every meta-training seed's policy on the
    task). Tasks without results or without a benchmark file have no rows."""
    root = Path(results_dir)
    rows = []
    for task in task_names(config):
        bench = read_benchmark(root / layout.BASELINES_SWEEP_BENCHMARK.format(task=task))
        base = _read_csv(root / layout.BASELINES_CSV.format(task=task))
        if bench is not None and base is not None and not base.empty:
            wall = base.groupby("method", sort=False)["wall_time_s"].sum()
            share = wall / wall.sum() if wall.sum() > 0 else wall * 0 + 1 / len(wall)
            counts = base.groupby("method", sort=False).size()
            for method in wall.index:
                rows.append(
                    _eval_row(
                        method,
                        task,
                        int(counts[method]),
                        bench,
                        share[method],
                        layout.BASELINES_SWEEP_BENCHMARK.format(task=task),
                    )
                )
        for agent in registry.agents(config, question=None):
            if task not in agent_tasks(config, agent):
                continue
            rel = layout.AGENT_SWEEP_BENCHMARK.format(task=task, agent=agent.name)
            bench = read_benchmark(root / rel)
            frames = [
                _read_csv(root / layout.AGENT_CSV.format(task=task, agent=agent.name, seed=s))
                for s in registry.meta_seeds(config, agent.name)
            ]
            runs = sum(len(f) for f in frames if f is not None)
            if bench is not None and runs:
                rows.append(_eval_row(agent.method, task, runs, bench, 1.0, rel))
    columns = [
        "method",
        "task",
        "runs",
        "cpu_s",
        "wall_s",
        "cpu_s_per_run",
        "wall_s_per_run",
        "benchmark",
    ]
    return pd.DataFrame(rows, columns=columns)


def _eval_row(method, task, runs, bench, share, rel) -> dict[str, Any]:
    cpu, wall = bench["cpu_s"] * share, bench["wall_s"] * share
    return {
        "method": method,
        "task": task,
        "runs": runs,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_s_per_run": cpu / runs,
        "wall_s_per_run": wall / runs,
        "benchmark": rel,
    }


def deployment_cost(results_dir: str | Path, config: Mapping[str, Any]) -> pd.DataFrame | None:
    """The PyTorch deployment's wall time per finished run (median over runs that did not
    diverge), per method and network (``task``), and the GANNO policy's ratio to each plain
    baseline on the same network: ``method``, ``task``, ``runs``, ``wall_s_per_run``,
    ``relative_to`` and ``ratio`` (rows of GANNO only). ``None`` where the deployment did not run
    (not configured, or no ``torch/deployment.csv``)."""
    if not layout.torch_enabled(config):
        return None
    df = _read_csv(Path(results_dir) / layout.TORCH_CSV)
    if df is None or df.empty:
        return None
    done = df[~df["diverged"].astype(bool)]
    per = (
        done.groupby(["method", "task"], sort=False)["wall_time_s"]
        .agg(runs="size", wall_s_per_run="median")
        .reset_index()
    )
    rows = []
    for _, g in per[per["method"].map(registry.is_ganno).astype(bool)].iterrows():
        here = per[(per["task"] == g["task"]) & ~per["method"].map(registry.is_ganno).astype(bool)]
        for _, b in here.iterrows():
            rows.append(
                {
                    **g.to_dict(),
                    "relative_to": b["method"],
                    "ratio": g["wall_s_per_run"] / b["wall_s_per_run"],
                }
            )
    plain = per[~per["method"].map(registry.is_ganno).astype(bool)].assign(
        relative_to="", ratio=np.nan
    )
    return pd.concat([pd.DataFrame(rows), plain], ignore_index=True)


def default_profile_paths(results_dir: str | Path) -> list[Path]:
    """Where :func:`read_profile` looks: the run's own profile, then the one measured by hand and
    committed with the package's repository (an editable install)."""
    return [
        Path(results_dir) / layout.META_TRAIN_PROFILE,
        REPOSITORY / layout.MEASURED_META_TRAIN_PROFILE,
    ]


def reference_pool_lines(path: str | Path, config: Mapping[str, Any]) -> list[str]:
    """What the reference pool (``meta_train.reference_pool``) did to meta-training's time, from
    two profiles of one agent, without and with a pool (``benchmarks/meta_train_profile.py`` run
    on each, their rows in one CSV), and whether this run's ``config`` uses one: a line for the
    report, none without the file."""
    df = _read_csv(Path(path))
    if df is None or not {"part", "seconds", "reference_pool", "run_seconds_estimate"} <= set(
        df.columns
    ):
        return []
    pooled = df[df["reference_pool"].notna()]
    plain = df[df["reference_pool"].isna()]
    if pooled.empty or plain.empty:
        return []
    part = lambda rows, name: float(rows.loc[rows["part"] == name, "seconds"].sum())  # noqa: E731
    size = int(pooled["reference_pool"].iloc[0])
    with_pool = float(pooled["run_seconds_estimate"].iloc[0])
    without = float(plain["run_seconds_estimate"].iloc[0])
    change = with_pool / without - 1
    verdict = (
        f"it makes meta-training {_num(-100 * change, 2)}% cheaper here"
        if change < 0
        else "it does not make meta-training cheaper here"
    )
    first = pooled.iloc[0]
    about = ", ".join(
        f"{c} {first[c]}"
        for c in ("config", "machine", "date")
        if c in pooled and pd.notna(first[c])
    )
    return [
        f"- What was tried on the reference run: a pool of {size} episodes per task whose "
        "reference runs train once, before meta-training (`meta_train.reference_pool`), profiled "
        f"beside the same agent without it (`{Path(path).name}`: {about}). Filling the pool took "
        f"{_num(part(pooled, 'reference pool'))} s and the reference then "
        f"{_num(part(pooled, 'reference run'))} s, against "
        f"{_num(part(plain, 'reference run'))} s trained alongside; a run {_num(with_pool)} s "
        f"against {_num(without)} s: {verdict} (a reference trained in the agents' compiled "
        f"step costs less than one trained alone). {_pool_in(config)}"
    ]


def _pool_in(config: Mapping[str, Any]) -> str:
    """Whether this run meta-trained its main agents with a reference pool."""
    sizes = {
        agent_config(config, a.name)["meta_train"].get("reference_pool")
        for a in registry.agents(config, question=None)
    }
    if sizes == {None}:
        return "This run's agents meta-trained without a pool."
    return (
        "This run's agents meta-trained with pools of "
        + ", ".join(
            "none" if s is None else str(s) for s in sorted(sizes, key=lambda s: (s is None, s))
        )
        + " episodes per task."
    )


def read_profile(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, Path] | None:
    """The first of ``paths`` that holds a meta-training profile (columns ``part``, ``seconds``,
    ``share`` and the machine's description; ``benchmarks/meta_train_profile.py``), with its path;
    ``None`` when none does."""
    for path in map(Path, paths):
        df = _read_csv(path)
        if df is not None and {"part", "seconds", "share"} <= set(df.columns) and len(df):
            return df, path
    return None


def torch_overhead_file(results_dir: str | Path) -> Path | None:
    """The PyTorch scheduler-overhead benchmark's output in the results folder, where saved."""
    found = [Path(results_dir) / f for f in TORCH_OVERHEAD_FILES]
    return next((p for p in found if p.is_file() and p.stat().st_size), None)


# --------------------------------------------------------------------------------------------
# Break-even
# --------------------------------------------------------------------------------------------


def problems_to_break_even(
    meta_cost: float, k_needed: float, cost_b: float, cost_g: float
) -> float:
    """The training problems after which GANNO (``meta_cost`` once, then ``cost_g`` a problem)
    costs less in all than tuning B (``k_needed`` runs of ``cost_b`` a problem): the smallest whole
    ``P`` with ``meta_cost + P cost_g < P k cost_b``; ``inf`` (never) where ``k cost_b <= cost_g``
    or ``k <= 1`` (B needs no more runs than GANNO: no tuning saved); NaN where a cost is
    unknown."""
    values = (meta_cost, k_needed, cost_b, cost_g)
    if any(v is None or not np.isfinite(v) for v in values):
        return np.nan
    if k_needed <= 1:
        return math.inf
    saving = k_needed * cost_b - cost_g
    if saving <= 0:
        return math.inf
    return float(math.floor(meta_cost / saving) + 1)


def _per_run(evaluation: pd.DataFrame, method: str, tasks: Sequence[str]) -> float:
    """``method``'s CPU-seconds per run, the mean over ``tasks`` (NaN unless each has one)."""
    cell = evaluation[(evaluation["method"] == method) & evaluation["task"].isin(tasks)]
    if cell.empty or set(cell["task"]) != set(tasks):
        return np.nan
    return float(cell.groupby("task")["cpu_s_per_run"].first().mean())


def break_even(saved: pd.DataFrame, evaluation: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """Per GANNO agent, baseline and task of ``saved`` (:func:`ganno.tuning_budget.runs_saved`,
    concatenated over agents): ``k_needed`` and ``label`` from it, ``baseline_cpu_per_run`` and
    ``ganno_cpu_per_run`` (:func:`evaluation_cost`; the pooled row: the mean over the held-out
    tasks pooled), ``tuning_cpu`` (``k_needed`` x the baseline's), ``saving_per_problem``,
    ``meta_cpu_s`` (meta-training, every seed) and ``meta_cpu_s_one_seed`` (their mean), and
    ``problems`` and ``problems_one_seed`` (:func:`problems_to_break_even`; ``inf`` never, NaN
    not measured). ``k_needed`` is ``n + 1`` where the baseline never reaches GANNO's one run
    within the grid: its tuning costs at least that, so the count is an upper bound there."""
    rows = []
    for _, r in saved.iterrows():
        method, task = r["ganno_method"], r["task"]
        mine = saved[saved["ganno_method"] == method]
        tasks = (
            [t for t in dict.fromkeys(mine["task"]) if t not in (TRAIN_TASK, POOLED)]
            if task == POOLED
            else [task]
        )
        cost_b = _per_run(evaluation, r["method"], tasks)
        cost_g = _per_run(evaluation, method, tasks)
        seeds = meta[meta["method"] == method]["cpu_s"]
        meta_all = float(seeds.sum()) if len(seeds) and seeds.notna().all() else np.nan
        meta_one = float(seeds.mean()) if len(seeds) and seeds.notna().all() else np.nan
        k = float(r["k_needed"])
        rows.append(
            {
                "ganno_method": method,
                "baseline": r["method"],
                "task": task,
                "k_needed": k,
                "label": r["label"],
                "n": int(r["n"]),
                "baseline_cpu_per_run": cost_b,
                "ganno_cpu_per_run": cost_g,
                "tuning_cpu": k * cost_b,
                "saving_per_problem": k * cost_b - cost_g,
                "meta_cpu_s": meta_all,
                "meta_cpu_s_one_seed": meta_one,
                "problems": problems_to_break_even(meta_all, k, cost_b, cost_g),
                "problems_one_seed": problems_to_break_even(meta_one, k, cost_b, cost_g),
            }
        )
    columns = [
        "ganno_method",
        "baseline",
        "task",
        "k_needed",
        "label",
        "n",
        "baseline_cpu_per_run",
        "ganno_cpu_per_run",
        "tuning_cpu",
        "saving_per_problem",
        "meta_cpu_s",
        "meta_cpu_s_one_seed",
        "problems",
        "problems_one_seed",
    ]
    return pd.DataFrame(rows, columns=columns)


def fmt_problems(x: float) -> str:
    """``12``, ``never`` (inf) or ``not measured in this run`` (NaN)."""
    if isinstance(x, float) and math.isnan(x):
        return NOT_MEASURED
    return NEVER if math.isinf(x) else str(int(x))


def _bound(problems: float) -> str:
    """A break-even count where the baseline never reaches GANNO within its grid: ``k = n + 1``
    understates its tuning, so a count is an upper bound."""
    text = fmt_problems(problems)
    return f"at most {text}" if text.isdigit() else text


def velo_ratio(cpu_core_seconds: float) -> float:
    """GANNO's meta-training CPU-core-seconds over VeLO's TPU-seconds (:data:`VELO_TPU_MONTHS` x
    :data:`SECONDS_PER_MONTH`): different units, an order-of-magnitude statement only."""
    return cpu_core_seconds / (VELO_TPU_MONTHS * SECONDS_PER_MONTH)


# --------------------------------------------------------------------------------------------
# The Q3 table
# --------------------------------------------------------------------------------------------


def _num(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return NOT_MEASURED
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _held_out(config: Mapping[str, Any], tasks: Sequence[str]) -> list[str]:
    return [t for t in task_names(config) if t != TRAIN_TASK and t in set(tasks)]


COST_COLUMNS = ["method", "quantity", "value", "unit", "source"]


def _every_seed_sum(values: pd.Series) -> float:
    """The sum over an agent's seeds, NaN unless every seed's benchmark file was there."""
    return values.sum() if values.notna().all() else np.nan


def _row(method: str, quantity: str, value: Any, unit: str, source: str) -> dict[str, Any]:
    """One row of the Q3 table."""
    return dict(zip(COST_COLUMNS, (method, quantity, float(value), unit, source), strict=True))


def cost_table(
    config: Mapping[str, Any],
    meta: pd.DataFrame,
    evaluation: pd.DataFrame,
    deployment: pd.DataFrame | None,
    torch_overhead: Path | None,
) -> pd.DataFrame:
    """The Q3 table, long: ``method``, ``quantity``, ``value``, ``unit``, ``source`` (one row per
    number; NaN where the file it comes from is missing): the meta-training rows of every agent,
    the evaluation rows of every method, the deployment rows."""
    rows = [
        *_meta_training_rows(meta),
        *_evaluation_rows(config, evaluation),
        *_deployment_rows(deployment, torch_overhead),
    ]
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def _meta_training_rows(meta: pd.DataFrame) -> list[dict[str, Any]]:
    """Each agent's meta-training cost: CPU and wall time (per seed and in all), the cores it
    kept busy, decisions, networks trained per decision, inner steps, and the ratio to VeLO's."""
    rows = []
    bench = "results/" + layout.META_TRAIN_BENCHMARK
    decisions_source = {
        frozenset({"curve"}): "learning curve (env_steps)",
        frozenset({"config"}): "config (meta_train.total_timesteps)",
    }
    for method, m in meta.groupby("method", sort=False):
        total, wall_total = _every_seed_sum(m["cpu_s"]), _every_seed_sum(m["wall_s"])
        rows += [
            _row(method, "meta-training seeds", len(m), "runs", "config"),
            _row(
                method,
                "meta-training CPU time per seed (mean)",
                m["cpu_s"].mean(),
                "CPU-core-s",
                bench,
            ),
            _row(method, "meta-training CPU time, every seed", total, "CPU-core-s", bench),
            _row(method, "meta-training wall time per seed (mean)", m["wall_s"].mean(), "s", bench),
            _row(method, "meta-training wall time, every seed", wall_total, "s", bench),
            _row(
                method,
                "cores kept busy on average (mean_load / 100)",
                m["mean_load"].mean() / 100,
                "cores",
                bench,
            ),
            _row(
                method,
                "decisions per seed",
                m["decisions"].mean(),
                "decisions",
                decisions_source.get(
                    frozenset(m["decisions_from"]), "learning curves, else the config"
                ),
            ),
            _row(
                method,
                "networks trained per decision",
                m["inner_trainings"].iloc[0],
                "networks",
                "config (env.reward: the agents' run, + a reference run for a relative reward)",
            ),
            _row(
                method,
                "inner SGD steps per seed",
                m["inner_steps"].mean(),
                "steps",
                "decisions x env.steps_per_decision x networks per decision",
            ),
            _row(
                method,
                "meta-training / VeLO's",
                velo_ratio(total),
                "CPU-core-s per TPU-s",
                "VeLO: 4000 TPU-months (arXiv 2211.09760)",
            ),
        ]
    return rows


def _evaluation_rows(config: Mapping[str, Any], evaluation: pd.DataFrame) -> list[dict[str, Any]]:
    """Each method's evaluation CPU time per run on the training task and held out (the mean
    over the held-out tasks it ran on)."""
    rows = []
    held = _held_out(config, evaluation["task"])
    for method, e in evaluation.groupby("method", sort=False):
        src = "results/benchmarks/sweep/<task>_" + (
            f"{registry.agent_of(method)}.tsv" if registry.is_ganno(method) else "baselines.tsv"
        )
        on_train = e[e["task"] == TRAIN_TASK]["cpu_s_per_run"]
        rows.append(
            _row(
                method,
                f"evaluation CPU time per run, {TRAIN_TASK}",
                on_train.iloc[0] if len(on_train) else np.nan,
                "CPU-core-s",
                src,
            )
        )
        mine = e[e["task"].isin(held)]
        if len(mine):
            rows.append(
                _row(
                    method,
                    f"evaluation CPU time per run, held out (mean over {len(mine)} task(s))",
                    mine["cpu_s_per_run"].mean(),
                    "CPU-core-s",
                    src,
                )
            )
    return rows


def _deployment_rows(
    deployment: pd.DataFrame | None, torch_overhead: Path | None
) -> list[dict[str, Any]]:
    """The PyTorch runs' wall time against their reference method's, and where the scheduler's
    overhead benchmark is (or that it wrote no file)."""
    rows = []
    if deployment is not None:
        for _, d in deployment[deployment["relative_to"] != ""].iterrows():
            rows.append(
                _row(
                    d["method"],
                    f"PyTorch run wall time / {d['relative_to']}'s, {d['task']}",
                    d["ratio"],
                    "ratio",
                    "results/torch/deployment.csv (median over finished runs)",
                )
            )
    overhead_source = (
        str(torch_overhead)
        if torch_overhead
        else f"{NOT_MEASURED}: benchmarks/torch_scheduler_overhead.py writes no file"
    )
    rows.append(
        _row(
            "ganno (PyTorch scheduler)", "scheduler overhead benchmark", np.nan, "", overhead_source
        )
    )
    return rows


def cost_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`cost_table` with its values as the README prints them."""
    out = table.copy()
    out["value"] = [
        _num(v) if u != "CPU-core-s per TPU-s" or not np.isfinite(v) else f"{v:.1e}"
        for v, u in zip(table["value"], table["unit"], strict=True)
    ]
    return out


def _counts(table: pd.DataFrame, column: str) -> list[str]:
    return [
        _bound(p) if k > n else fmt_problems(p)
        for p, k, n in zip(table[column], table["k_needed"], table["n"], strict=True)
    ]


def break_even_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`break_even` as the README prints it."""
    return pd.DataFrame(
        {
            "GANNO": table["ganno_method"],
            "baseline": table["baseline"],
            "task": table["task"],
            "runs of the baseline per problem (k)": [
                f"{int(k)} ({label})" if label != str(int(k)) else str(int(k))
                for k, label in zip(table["k_needed"], table["label"], strict=True)
            ],
            "baseline CPU-s per run": table["baseline_cpu_per_run"].map(_num),
            "GANNO CPU-s per run": table["ganno_cpu_per_run"].map(_num),
            "problems to break even (every seed)": _counts(table, "problems"),
            "(one seed)": _counts(table, "problems_one_seed"),
        }
    )


# --------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------


class CostSection(NamedTuple):
    """What :func:`q3_section` wrote and says."""

    lines: list[str]
    tables: dict[str, TablePaths]
    cost: pd.DataFrame
    break_even: pd.DataFrame
    missing: list[str]  # what was not measured, said in the section


def _missing(root: Path, config: Mapping[str, Any], meta: pd.DataFrame, evaluation) -> list[str]:
    out = [
        f"`{layout.META_TRAIN_BENCHMARK.format(agent=r['agent'], seed=r['seed'])}`"
        for _, r in meta[meta["benchmark"] == ""].iterrows()
    ]
    have = set(zip(evaluation["method"], evaluation["task"], strict=True))
    for task in task_names(config):
        csv = root / layout.BASELINES_CSV.format(task=task)
        if _read_csv(csv) is None:
            continue  # a skipped task: no runs to cost
        if not any(t == task and not registry.is_ganno(m) for m, t in have):
            out.append(f"`{layout.BASELINES_SWEEP_BENCHMARK.format(task=task)}`")
        for agent in registry.agents(config, question=None):
            if task in agent_tasks(config, agent) and (agent.method, task) not in have:
                out.append(f"`{layout.AGENT_SWEEP_BENCHMARK.format(task=task, agent=agent.name)}`")
    return out


def _break_even_lines(be: pd.DataFrame) -> list[str]:
    lines = []
    for method, mine in be.groupby("ganno_method", sort=False):
        scope = POOLED if (mine["task"] == POOLED).any() else TRAIN_TASK
        rows = mine[mine["task"] == scope]
        if rows.empty:
            continue
        cells = []
        for _, r in rows.iterrows():
            if r["k_needed"] > r["n"]:  # B's tuning costs more than k runs: P is an upper bound
                cells.append(
                    f"`{r['baseline']}` {_bound(r['problems'])} (never within the grid of "
                    f"{int(r['n'])}: k = n + 1 taken)"
                )
            else:
                k = int(r["k_needed"])
                cells.append(f"`{r['baseline']}` {fmt_problems(r['problems'])} (k = {k})")
        meta = rows["meta_cpu_s"].iloc[0]
        lines.append(
            f"- **{method}** pays for its meta-training ({_num(meta)} CPU-core-s, every seed) "
            f"after this many training problems, against tuning each baseline ({scope}; k runs "
            f"of the baseline per problem against one GANNO run): {'; '.join(cells)}."
        )
    return lines


def _profile_lines(found: tuple[pd.DataFrame, Path] | None, meta: pd.DataFrame) -> list[str]:
    if found is None:
        return [
            f"- Where the time goes: {NOT_MEASURED} (no `{layout.META_TRAIN_PROFILE}` in the "
            f"results folder nor `{layout.MEASURED_META_TRAIN_PROFILE}`; "
            "`python benchmarks/meta_train_profile.py` writes one)."
        ]
    df, path = found
    first = df.iloc[0]
    parts = "; ".join(
        f"{r['part']} {100 * r['share']:.0f}% ({_num(r['seconds'])} s)" for _, r in df.iterrows()
    )
    about = ", ".join(
        f"{c} {first[c]}" for c in ("agent", "config", "machine", "host_devices", "date") if c in df
    )
    line = (
        f"- Where one meta-training run's time goes: {parts}; each part timed at a small budget "
        f"and scaled to the config's (`{path.name}`: {about})"
    )
    agent = first.get("agent")
    run = meta[meta["agent"] == agent]["wall_s"] if "agent" in df else pd.Series(dtype=float)
    if "run_seconds_estimate" in df and len(run) and run.notna().all():
        line += (
            f". Their sum, {_num(first['run_seconds_estimate'])} s, against this run's "
            f"{_num(run.mean())} s wall per seed of `{agent}` (start-up, data loading and "
            "writing the policy included there; a profile of another config or machine differs)"
        )
    return [line + "."]


def q3_section(
    out_dir: str | Path,
    config: Mapping[str, Any],
    results_dir: str | Path,
    runs_saved: pd.DataFrame,
    profile_paths: Sequence[str | Path] | None = None,
) -> CostSection:
    """Q3's tables (``tables/q3_cost``, ``tables/q3_break_even``) and README section, from the
    files under ``results_dir``; what is missing is said, never an error. ``runs_saved`` is the
    report's :func:`ganno.tuning_budget.runs_saved` of every agent; ``profile_paths`` where to
    look for the profile (default :func:`default_profile_paths`)."""
    out, root = Path(out_dir), Path(results_dir)
    meta = meta_training_cost(root, config)
    evaluation = evaluation_cost(root, config)
    deployment = deployment_cost(root, config)
    overhead = torch_overhead_file(root)
    table = cost_table(config, meta, evaluation, deployment, overhead)
    claims = {a.method for a in registry.agents(config, question=None)}
    saved = runs_saved[runs_saved["ganno_method"].isin(claims)] if len(runs_saved) else runs_saved
    be = (
        break_even(saved, evaluation, meta)
        if len(saved)
        else break_even(
            pd.DataFrame(columns=["ganno_method", "method", "task", "k_needed", "label", "n"]),
            evaluation,
            meta,
        )
    )
    profile = read_profile(
        profile_paths if profile_paths is not None else default_profile_paths(root)
    )
    tables = _write_q3_tables(out, table, be)
    missing = _missing(root, config, meta, evaluation)
    lines = ["## Q3 What GANNO costs", ""]
    lines.append(
        "Every number is read from the run's own files: Snakemake's benchmark files (wall and CPU "
        "time of every job, `results/benchmarks/`), the learning curves (decisions) and the "
        "results CSVs (runs). They hold on the machine the run ran on, which the benchmark files "
        "do not name (`mean_load` / 100: the cores a job kept busy); CPU time is "
        "CPU-core-seconds (`tables/q3_cost`)."
    )
    lines.append("")
    held = _held_out(config, evaluation["task"])
    for method, m in meta.groupby("method", sort=False):
        lines.append(
            _meta_training_line(method, m, evaluation[evaluation["method"] == method], held)
        )
    lines += _baselines_lines(evaluation)
    lines += _break_even_lines(be)
    lines.append(
        f"- VeLO for scale: {VELO_SOURCE}; taken as {int(VELO_TPU_MONTHS)} x 30 x 24 x 3600 = "
        f"{VELO_TPU_MONTHS * SECONDS_PER_MONTH:.3g} TPU-seconds. A CPU core-second and a "
        "TPU-second are not the same unit: the ratio is an order-of-magnitude statement."
    )
    lines += _profile_lines(profile, meta)
    lines += reference_pool_lines(REPOSITORY / layout.MEASURED_REFERENCE_POOL_PROFILE, config)
    lines.append(_deployment_line(deployment, overhead))
    if missing:
        lines.append(
            f"- {NOT_MEASURED.capitalize()}: no benchmark file " + ", ".join(missing) + "."
        )
    if be.empty:
        lines.append(f"- Break-even: {NOT_MEASURED} (no runs-saved numbers, tables/tuning_budget).")
    lines.append("")
    return CostSection(lines, tables, table, be, missing)


def _write_q3_tables(out: Path, table: pd.DataFrame, be: pd.DataFrame) -> dict[str, Any]:
    """``tables/q3_cost`` and ``tables/q3_break_even`` (CSV, Markdown, LaTeX) with captions."""
    return {
        "q3_cost": write_table(
            table,
            cost_display(table),
            out / "tables" / "q3_cost",
            "Q3: what GANNO costs on the machine the run ran on (Snakemake's benchmark files); "
            "CPU time in CPU-core-seconds. VeLO's meta-training: 4000 TPU-months x 30 x 24 x 3600 "
            "s (arXiv 2211.09760); a CPU core-second and a TPU-second are not the same unit, so "
            "the ratio is an order of magnitude.",
        ),
        "q3_break_even": write_table(
            be,
            break_even_display(be),
            out / "tables" / "q3_break_even",
            "Q3: training problems after which GANNO (meta-training once, one run a problem) "
            "costs less CPU time than tuning each baseline (k runs a problem, k from "
            "tables/tuning_budget); never where k runs of the baseline cost no more than one "
            "GANNO run.",
        ),
    }


def _meta_training_line(
    method: str, m: pd.DataFrame, evaluation: pd.DataFrame, held: Sequence[str]
) -> str:
    """The README's line on one agent: its meta-training cost (``m``, a row per seed), one
    evaluation run's (``evaluation``, its rows) and the ratio to VeLO's."""
    total = _every_seed_sum(m["cpu_s"])
    g_train = evaluation[evaluation["task"] == TRAIN_TASK]["cpu_s_per_run"]
    g_held = evaluation[evaluation["task"].isin(held)]["cpu_s_per_run"]
    networks = int(m["inner_trainings"].iloc[0])
    which = ": the agents' and the relative reward's reference run" if networks == 2 else ""
    measured = int(m["cpu_s"].notna().sum())
    seeds = (
        f"{_amount(total, 'CPU-core-s')} over {len(m)} seeds"
        if measured == len(m)
        else f"{NOT_MEASURED} in all ({measured} of {len(m)} seeds' benchmark files)"
    )
    return (
        f"- **{method}** meta-training: {seeds} ({_amount(m['cpu_s'].mean(), 'CPU-core-s')} "
        f"per seed, {_amount(m['wall_s'].mean(), 's')} wall per seed, "
        f"{_amount(m['mean_load'].mean() / 100, 'cores')} busy on average); per seed "
        f"{_num(m['decisions'].mean())} decisions and {_num(m['inner_steps'].mean())} inner "
        f"SGD steps ({networks} network(s) trained per decision{which}). One evaluation run: "
        f"{_amount(g_train.iloc[0] if len(g_train) else np.nan, 'CPU-core-s')} on "
        f"`{TRAIN_TASK}`"
        + (
            f", {_amount(g_held.mean(), 'CPU-core-s')} on the held-out tasks (mean)"
            if len(g_held)
            else ""
        )
        + f". Against VeLO's meta-training: {_ratio_text(velo_ratio(total))}."
    )


def _baselines_lines(evaluation: pd.DataFrame) -> list[str]:
    """The README's line on the baselines' evaluation runs on the training task (none without)."""
    base = evaluation[~evaluation["method"].map(registry.is_ganno).astype(bool)]
    on_train = base[base["task"] == TRAIN_TASK]
    if not len(on_train):
        return []
    cost = on_train["cpu_s_per_run"]
    return [
        f"- Baselines, one evaluation run on `{TRAIN_TASK}`: "
        f"{_num(cost.min())} to {_num(cost.max())} "
        f"CPU-core-s ({on_train.loc[cost.idxmin(), 'method']} to "
        f"{on_train.loc[cost.idxmax(), 'method']}; their sweep's CPU "
        "time shared by each one's measured grid wall time)."
    ]


def _amount(x: float, unit: str) -> str:
    """``1,643 CPU-core-s``, or :data:`NOT_MEASURED` without the unit."""
    text = _num(x)
    return text if text == NOT_MEASURED else f"{text} {unit}"


def _ratio_text(ratio: float) -> str:
    if not np.isfinite(ratio):
        return NOT_MEASURED
    return f"{ratio:.1e} of its compute (CPU-core-s over TPU-s; about 1 in {1 / ratio:.1e})"


def _deployment_line(deployment: pd.DataFrame | None, overhead: Path | None) -> str:
    bench = (
        f"the scheduler-overhead benchmark's output: `{overhead.name}`"
        if overhead
        else f"the scheduler-overhead benchmark: {NOT_MEASURED} "
        "(`benchmarks/torch_scheduler_overhead.py` prints its table and writes no file)"
    )
    if deployment is None:
        return f"- PyTorch deployment: {NOT_MEASURED}; {bench}."
    ratios = deployment[deployment["relative_to"] != ""]
    cells = [f"{r['task']} {r['ratio']:.2f} x {r['relative_to']}" for _, r in ratios.iterrows()]
    return (
        "- PyTorch deployment, wall time of one run with the policy over one plain run (median "
        f"over finished runs, `torch/deployment.csv`): {'; '.join(cells) or NOT_MEASURED}; {bench}."
    )
