"""Meta-training driver: runs IPPO or MAPPO on an environment and writes everything a run leaves.

``meta_train(env, cfg, algo, seed, out_dir)`` writes to ``out_dir``:

- ``config.yaml``: the resolved config (defaults filled in);
- ``learning_curve.jsonl``: one JSON line per update and seed (env steps, update, mean return and
  the means of the episode-end ``extras`` over the episodes finished in that update, PPO losses,
  steps per second, wall time);
- ``metrics.json``: the same curve in marl-eval's format (see :func:`marl_eval_json`);
- ``checkpoints/``: the learner state every ``checkpoint_every`` updates, with the learning curve
  up to it (msgpack, written atomically); rerunning on the same ``out_dir`` resumes from the last
  one, the curve included, even where ``learning_curve.jsonl`` was deleted (as Snakemake deletes
  the outputs of a job it reruns);
- ``policy/`` (``policy/seed_<s>/`` when seeds are vmapped): the final actor, see
  :class:`ganno.policy.Policy`.

Updates run ``updates_per_chunk`` at a time in one compiled call; seeds given as ``seeds_vmapped``
run side by side in that call (``vmap``). One process at a time writes a run folder
(:class:`ganno.io.RunLock`). A resumed run is bitwise identical to an uninterrupted one.

The steps of :func:`meta_train`, in order: :func:`plan_run` (check the arguments, no work),
:func:`build_learner`, :func:`resume`, :func:`train` (:func:`run_chunk` and :func:`checkpoint`
until the last update), :func:`export` (metrics and policies).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ganno.config import dump_config, validate
from ganno.env_settings import meta_training_env
from ganno.errors import (  # noqa: F401 -- re-exported: their historical home
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    NonFiniteLossError,
    OutputError,
)
from ganno.io import (  # noqa: F401 -- save/load re-exported for callers of this module
    CHECKPOINTS_KEPT,
    TMP_SUFFIX,
    RunLock,
    atomic_write,
    load_checkpoint,
    output_error,
    read_curve,
    save_checkpoint,
    write_json,
)
from ganno.parallel import shard_batch
from ganno.policy import Policy, env_settings
from ganno.reference_pool import pooled_envs
from ganno.systems import ippo, mappo, normalisation
from ganno.systems.anakin import (
    actor_network_config,
    family_members,
    scan_updates,
    steps_per_update,
)

ALGORITHMS = {"ippo": ippo.make_learner, "mappo": mappo.make_learner}
CURVE_FILE = "learning_curve.jsonl"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
# Config keys that may change between an interrupted run and its resumption.
_RESUMABLE_KEYS = (
    "total_timesteps",
    "checkpoint_every",
    "updates_per_chunk",
    "algorithms",
    "seeds",
)
_LOSSES = ("total_loss", "actor_loss", "value_loss", "entropy", "approx_kl")


# ----------------------------------------------------------------------------- learning curve


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _curve_rows(
    metrics: dict[str, np.ndarray], first_update: int, seeds: list[int], per_update: int
) -> list[dict[str, Any]]:
    """One row per update and seed; ``metrics`` leaves are ``[S, K]`` (seeds x updates)."""
    rows = []
    num_updates = metrics["num_episodes"].shape[1]
    for k in range(num_updates):
        update = first_update + k + 1
        for s, seed in enumerate(seeds):
            count = int(metrics["num_episodes"][s, k])
            row: dict[str, Any] = {
                "seed": seed,
                "update": update,
                "env_steps": update * per_update,
                "num_episodes": count,
            }
            for name, total in metrics["episode_sums"].items():
                row[name] = _finite_or_none(float(total[s, k]) / count) if count else None
            for name in _LOSSES:
                row[name] = _finite_or_none(float(metrics[name][s, k]))
            rows.append(row)
    return rows


def _restore_curve(
    path: Path, last_update: int, saved: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Rewrite the curve as it was at the checkpoint of ``last_update`` and return its rows: from
    the rows saved with the checkpoint, or (a checkpoint without them) from the file's own rows."""
    rows = [r for r in (read_curve(path) if saved is None else saved) if r["update"] <= last_update]
    atomic_write(path, "".join(_json_line(r) for r in rows))
    return rows


def _json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, allow_nan=False) + "\n"  # rows hold None, never NaN (strict JSON)


def _append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to the curve; a torn last line (kill, full disk) is dropped on resume."""
    try:
        with open(path, "a") as f:
            f.writelines(_json_line(r) for r in rows)
    except OSError as exc:
        raise output_error(path, exc) from exc


def marl_eval_json(
    rows: list[dict[str, Any]], env_name: str, task_name: str, algo: str
) -> dict[str, Any]:
    """marl-eval's raw format from curve rows.

    ``{env_name: {task_name: {algo: {"seed_<s>": {"step_<i>": {"step_count": env_steps,
    metric: [value]}, ..., "absolute_metrics": {metric: [values]}}}}}}``. Metrics are the training
    episodes' means per update; ``absolute_metrics`` holds the values of the last 10% of updates.
    """
    skip = {
        "seed",
        "update",
        "env_steps",
        "num_episodes",
        "steps_per_second",
        "wall_time",
        *_LOSSES,
    }
    runs: dict[str, Any] = {}
    for seed in sorted({r["seed"] for r in rows}):
        seed_rows = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["update"])
        run: dict[str, Any] = {}
        for i, row in enumerate(seed_rows):
            step = {"step_count": row["env_steps"]}
            step.update({k: [v] for k, v in row.items() if k not in skip and v is not None})
            run[f"step_{i}"] = step
        tail = seed_rows[-max(1, len(seed_rows) // 10) :]
        names = {k for r in tail for k in r if k not in skip}
        run["absolute_metrics"] = {
            name: [r[name] for r in tail if r.get(name) is not None] for name in sorted(names)
        }
        runs[f"seed_{seed}"] = run
    return {env_name: {task_name: {algo: runs}}}


# ----------------------------------------------------------------------------- driver


def _fingerprint(cfg: Mapping[str, Any], algo: str) -> str:
    """What must not change between a run and its resumption."""
    learning = copy.deepcopy(dict(cfg))
    learning["meta_train"] = {
        k: v for k, v in cfg["meta_train"].items() if k not in _RESUMABLE_KEYS
    }
    learning["env"] = meta_training_env(cfg["env"])  # the guard is evaluation-only
    return json.dumps({"config": learning, "algo": algo}, sort_keys=True)


def _chunk_size(mt: Mapping[str, Any]) -> int:
    """Largest chunk <= updates_per_chunk dividing checkpoint_every (chunks end on checkpoints)."""
    size = min(mt["updates_per_chunk"], mt["checkpoint_every"])
    while mt["checkpoint_every"] % size:
        size -= 1
    return size


@dataclass(frozen=True)
class RunPlan:
    """One meta-training run, as fixed by its arguments before any work is done."""

    cfg: dict[str, Any]  # validated, defaults filled in
    algo: str
    seeds: list[int]
    vmapped: bool  # seeds side by side in one compiled call (a leading seed axis)
    per_update: int  # environment steps one update collects
    num_updates: int
    out_dir: Path
    env_name: str
    task_name: str

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    @property
    def curve_path(self) -> Path:
        return self.out_dir / CURVE_FILE

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.cfg, self.algo)

    @property
    def env_axis(self) -> int:
        """The axis of the learner state's leaves that runs over parallel environments."""
        return 1 if self.vmapped else 0


def plan_run(
    env: Any,
    cfg: Mapping[str, Any],
    algo: str,
    seed: int,
    out_dir: str | Path,
    seeds_vmapped: list[int] | None = None,
    env_name: str | None = None,
    task_name: str | None = None,
) -> RunPlan:
    """Check the arguments of :func:`meta_train` and fix what the run will do (no work done)."""
    cfg = validate(cfg)
    if algo not in ALGORITHMS:
        raise ConfigError(f"algo = {algo!r} is not allowed; choose one of {sorted(ALGORITHMS)}")
    vmapped = seeds_vmapped is not None
    seeds = [int(s) for s in (seeds_vmapped if vmapped else [seed])]
    if not seeds:
        raise ConfigError("seeds_vmapped is empty; give at least one seed or None")
    mt = cfg["meta_train"]
    family = family_members(env)
    per_update = steps_per_update(cfg) * len(family)  # a rollout of every family member
    env = family[0]
    num_updates = mt["total_timesteps"] // per_update
    if num_updates < 1:
        raise ConfigError(
            f"'meta_train.total_timesteps' = {mt['total_timesteps']} is less than one update "
            f"(num_envs x rollout_length x family members = {per_update} steps)"
        )
    return RunPlan(
        cfg=cfg,
        algo=algo,
        seeds=seeds,
        vmapped=vmapped,
        per_update=per_update,
        num_updates=num_updates,
        out_dir=Path(out_dir),
        env_name=env_name or getattr(env, "name", type(env).__name__),
        task_name=task_name or getattr(env, "task_name", None) or str(cfg["task"]["dataset"]),
    )


ChunkFn = Callable[[Any, int], tuple[Any, dict]]


def build_learner(env: Any, plan: RunPlan) -> tuple[Any, ChunkFn]:
    """The initial learner state (seeds on a leading axis if vmapped), placed on the devices,
    and ``chunk_fn(state, n) -> (state, metrics)``, which runs ``n`` updates in one compiled
    call (compiled once per ``n``)."""
    env = pooled_envs(env, plan.cfg, plan.seeds[0])  # meta_train.reference_pool, if set
    init_fn, update_fn = ALGORITHMS[plan.algo](env, plan.cfg)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in plan.seeds])
    if plan.vmapped:
        state = jax.jit(jax.vmap(init_fn))(keys)
    else:
        state = jax.jit(init_fn)(keys[0])
    compiled: dict[int, Callable] = {}

    def chunk_fn(state: Any, n: int) -> tuple[Any, dict]:
        if n not in compiled:
            chunk = scan_updates(update_fn, n)
            compiled[n] = jax.jit(jax.vmap(chunk) if plan.vmapped else chunk)
        return compiled[n](state)

    return place_on_devices(state, plan), chunk_fn


def place_on_devices(state: Any, plan: RunPlan) -> Any:
    """Split the parallel environments of ``state`` over the devices (every core on a CPU).

    A restored checkpoint goes through here too: a state left on one device would compile to
    another program, whose float rounding differs (a resumed run would drift by ~1e-7)."""
    return shard_batch(state, plan.cfg["meta_train"]["num_envs"], axis=plan.env_axis)


@dataclass
class Progress:
    """Where a run stands: its learner state, update count and the learning curve so far."""

    state: Any
    update: int = 0
    wall_before: float = 0.0  # wall time of the run's earlier sessions (before a resume)
    last_checkpoint: int | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    session_start: float = field(default_factory=time.perf_counter)  # this session's clock


def _torn_writes(plan: RunPlan) -> list[Path]:
    """The ``.tmp`` files a killed run can leave: only the names this driver writes, as the run
    folder may hold other files (even be the working directory)."""
    own = [CURVE_FILE, METRICS_FILE, "config.yaml", f"{CHECKPOINT_DIR}/checkpoint_*.msgpack"]
    own += [f"policy/{name}" for name in ("*", "seed_*/*")]
    return [p for pattern in own for p in plan.out_dir.glob(pattern + TMP_SUFFIX)]


def resume(plan: RunPlan, state: Any) -> Progress:
    """The run's progress from its newest checkpoint (a fresh start without one): the learner
    state, placed like a fresh one, and the learning curve rewritten as it was at that update."""
    for leftover in _torn_writes(plan):
        leftover.unlink()
    if not any(plan.checkpoint_dir.glob("checkpoint_*.msgpack")):
        atomic_write(plan.curve_path, "")
        return Progress(state=state)
    restored, meta = load_checkpoint(plan.checkpoint_dir, state)
    if meta.get("fingerprint") != plan.fingerprint or meta.get("seeds") != plan.seeds:
        raise ConfigError(
            f"{plan.out_dir} holds a run with another config, algorithm or seeds than this one "
            f"(checkpointed run: algo {meta.get('algo')!r}, seeds {meta.get('seeds')}); use a "
            "fresh out_dir or delete this one"
        )
    update = int(meta["update"])
    if update > plan.num_updates:
        raise ConfigError(
            f"{plan.out_dir} is already at update {update}, past this run's {plan.num_updates}"
        )
    # The rows so far, also saved with every checkpoint (Snakemake deletes a rerun job's outputs).
    curve = _restore_curve(plan.curve_path, update, meta.get("curve"))
    return Progress(
        state=place_on_devices(restored, plan),
        update=update,
        wall_before=float(meta["wall_time"]),
        last_checkpoint=update,
        curve=curve,
    )


def run_chunk(plan: RunPlan, progress: Progress, chunk_fn: ChunkFn, n: int) -> list[dict]:
    """Run ``n`` updates, check their losses, append their curve rows; returns the rows.

    A non-finite loss raises :class:`NonFiniteLossError` before the state is kept, so the bad
    state is never checkpointed."""
    start = time.perf_counter()
    state, metrics = chunk_fn(progress.state, n)
    metrics = jax.tree.map(np.asarray, jax.device_get(metrics))
    if not plan.vmapped:
        metrics = jax.tree.map(lambda x: x[None], metrics)
    elapsed = time.perf_counter() - start

    # CHECK FOR NON-FINITE LOSSES
    bad = ~np.isfinite(metrics["total_loss"])
    if bad.any():
        s, k = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
        kept = (
            f"the last good checkpoint (update {progress.last_checkpoint}) in "
            f"{plan.checkpoint_dir} is kept"
            if progress.last_checkpoint is not None
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"{plan.algo}: non-finite loss at update {progress.update + k + 1} (seed "
            f"{plan.seeds[s]}) in {plan.out_dir}; {kept}. Check the environment's rewards and "
            "observations for NaN/inf, or lower meta_train.actor_lr / critic_lr"
        )

    # LOG THE LEARNING CURVE
    rows = _curve_rows(metrics, progress.update, plan.seeds, plan.per_update)
    wall = progress.wall_before + time.perf_counter() - progress.session_start
    for row in rows:
        row["steps_per_second"] = n * plan.per_update * len(plan.seeds) / elapsed
        row["wall_time"] = wall
    _append_rows(plan.curve_path, rows)
    progress.state = state
    progress.update += n
    progress.curve.extend(rows)
    return rows


def checkpoint(plan: RunPlan, progress: Progress) -> None:
    """Save the learner state with the curve so far; a failed write keeps the previous one."""
    meta = {
        "update": progress.update,
        "env_steps": progress.update * plan.per_update,
        "wall_time": progress.curve[-1]["wall_time"],
        "algo": plan.algo,
        "seeds": plan.seeds,
        "fingerprint": plan.fingerprint,
        # The curve so far: Snakemake deletes a rerun job's outputs, this file too.
        "curve": progress.curve,
    }
    try:
        save_checkpoint(plan.checkpoint_dir, progress.state, meta)
    except OutputError as exc:
        resumes = progress.last_checkpoint or 0
        raise OutputError(f"{exc}; rerunning resumes from update {resumes}", exc.errno) from exc
    progress.last_checkpoint = progress.update


def export(env: Any, plan: RunPlan, progress: Progress) -> dict[str, Any]:
    """Write ``metrics.json`` and the final policy (one per seed if vmapped); the summary."""
    write_json(
        plan.out_dir / METRICS_FILE,
        marl_eval_json(progress.curve, plan.env_name, plan.task_name, plan.algo),
    )
    family = family_members(env)
    env = family[0]  # the config's own task: its settings are the policy's
    network = actor_network_config(env, plan.cfg)
    env_steps = plan.num_updates * plan.per_update
    for s, seed in enumerate(plan.seeds):
        actor_params = progress.state.params.actor
        if plan.vmapped:
            actor_params = jax.tree.map(lambda x, s=s: x[s], actor_params)
        policy_config = {
            "network": network,
            "algo": plan.algo,
            "seed": seed,
            "env_steps": env_steps,
            "env_name": plan.env_name,
            "task_name": plan.task_name,
        }
        if (settings := env_settings(env)) is not None:
            policy_config["env"] = settings  # what deploying the policy needs (ganno.torch)
        if len(family) > 1:  # the tasks it was meta-trained on (held out: every other)
            policy_config["task_family"] = [
                getattr(m, "task_name", None) or f"member_{i}" for i, m in enumerate(family)
            ]
        if progress.state.obs_norm:  # the running statistics the actor's inputs were normalised by
            stats = progress.state.obs_norm["agents_view"]
            if plan.vmapped:
                stats = jax.tree.map(lambda x, s=s: x[s], stats)
            policy_config["observation_normalisation"] = normalisation.to_json(stats)
        policy_dir = plan.out_dir / "policy" / (f"seed_{seed}" if plan.vmapped else "")
        Policy(actor_params, policy_config).save(policy_dir)
    final = [
        r["episode_return"]
        for r in progress.curve[-len(plan.seeds) :]
        if r.get("episode_return") is not None
    ]
    return {
        "updates": plan.num_updates,
        "env_steps": env_steps,
        "final_return": float(np.mean(final)) if final else None,
        "out_dir": str(plan.out_dir),
    }


def meta_train(
    env: Any,
    cfg: Mapping[str, Any],
    algo: str,
    seed: int,
    out_dir: str | Path,
    seeds_vmapped: list[int] | None = None,
    progress: bool = True,
    *,
    env_name: str | None = None,
    task_name: str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Meta-train ``algo`` on ``env`` and write the run to ``out_dir`` (resuming if it has one).

    ``cfg`` is a full config (validated here; defaults filled in). ``seeds_vmapped``, if given,
    replaces ``seed``: those seeds train side by side in one compiled call. ``callback`` is called
    after every chunk with ``{"update", "env_steps", "rows"}`` (tests interrupt runs with it).
    ``env_name`` / ``task_name`` label ``metrics.json`` (default: the env's ``name`` attribute or
    class name, and its ``task_name`` attribute or else the config's ``task.dataset``).

    One process at a time writes ``out_dir`` (:class:`ganno.io.RunLock`); a second one raises
    :class:`ganno.errors.RunLockedError` naming the first one's PID.

    Returns a summary: ``{"updates", "env_steps", "final_return", "out_dir"}``.
    """
    plan = plan_run(env, cfg, algo, seed, out_dir, seeds_vmapped, env_name, task_name)
    with RunLock(plan.out_dir):
        state, chunk_fn = build_learner(env, plan)
        run = resume(plan, state)
        dump_config(plan.cfg, plan.out_dir / "config.yaml")
        train(plan, run, chunk_fn, progress, callback)
        return export(env, plan, run)


def next_chunk(plan: RunPlan, update: int) -> int:
    """Updates in the chunk after ``update``: chunks end on checkpoint updates (also after a
    resume with another checkpoint_every), so a resumed run runs the same chunks as an
    uninterrupted one."""
    every = plan.cfg["meta_train"]["checkpoint_every"]
    next_checkpoint = (update // every + 1) * every
    return min(
        _chunk_size(plan.cfg["meta_train"]), plan.num_updates - update, next_checkpoint - update
    )


def train(
    plan: RunPlan,
    run: Progress,
    chunk_fn: ChunkFn,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run chunks of updates until the plan's last update, checkpointing on the way."""
    bar = tqdm(
        total=plan.num_updates * plan.per_update,
        initial=run.update * plan.per_update,
        unit="step",
        unit_scale=True,
        disable=not progress,
        desc=f"{plan.algo} seeds {plan.seeds}",
        dynamic_ncols=True,
    )
    run.session_start = time.perf_counter()
    with bar:
        while run.update < plan.num_updates:
            n = next_chunk(plan, run.update)
            rows = run_chunk(plan, run, chunk_fn, n)
            every = plan.cfg["meta_train"]["checkpoint_every"]
            if run.update % every == 0 or run.update == plan.num_updates:
                checkpoint(plan, run)
            returns = [r["episode_return"] for r in rows if r["episode_return"] is not None]
            bar.set_postfix(ret=f"{np.mean(returns):.3g}" if returns else "n/a", update=run.update)
            bar.update(n * plan.per_update)
            if callback is not None:
                info = {"update": run.update, "env_steps": run.update * plan.per_update}
                callback({**info, "rows": rows})
