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
run side by side in that call (``vmap``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from tqdm.auto import tqdm

from ganno.config import ConfigError, dump_config, validate
from ganno.parallel import shard_batch
from ganno.policy import Policy, env_settings
from ganno.systems import ippo, mappo, normalisation
from ganno.systems.anakin import actor_network_config, scan_updates, steps_per_update

ALGORITHMS = {"ippo": ippo.make_learner, "mappo": mappo.make_learner}
CURVE_FILE = "learning_curve.jsonl"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINTS_KEPT = 2
# Config keys that may change between an interrupted run and its resumption.
_RESUMABLE_KEYS = (
    "total_timesteps",
    "checkpoint_every",
    "updates_per_chunk",
    "algorithms",
    "seeds",
)
_LOSSES = ("total_loss", "actor_loss", "value_loss", "entropy", "approx_kl")


class NonFiniteLossError(FloatingPointError):
    """The learner produced a NaN or infinite loss; the last good checkpoint is kept."""


class CheckpointNotFoundError(FileNotFoundError):
    """A run folder has no (readable) checkpoint."""


class CheckpointError(ValueError):
    """A checkpoint exists but does not belong to this run or cannot be read."""


# ----------------------------------------------------------------------------- checkpoints


def _is_key(x: Any) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def save_checkpoint(directory: str | Path, state: Any, meta: Mapping[str, Any]) -> Path:
    """Write ``state`` (any pytree of arrays) and ``meta`` (JSON-able) as the newest checkpoint.

    The file is written to a temporary name, then renamed, so a kill leaves the old one intact;
    only the newest :data:`CHECKPOINTS_KEPT` checkpoints are kept.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree.leaves(jax.device_get(state))
    arrays = {
        str(i): np.asarray(jax.random.key_data(x) if _is_key(x) else x)
        for i, x in enumerate(leaves)
    }
    blob = serialization.msgpack_serialize(
        {"meta": json.dumps(dict(meta)), "num_leaves": len(leaves), "leaves": arrays}
    )
    path = directory / f"checkpoint_{int(meta['update']):08d}.msgpack"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in sorted(directory.glob("checkpoint_*.msgpack"))[:-CHECKPOINTS_KEPT]:
        old.unlink()
    return path


def load_checkpoint(directory: str | Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """The newest readable checkpoint in ``directory`` as ``(state, meta)``.

    ``template`` is a pytree with the state's structure (e.g. a freshly initialised learner state
    or its ``jax.eval_shape``). A corrupt newest file falls back to the one before it.
    """
    directory = Path(directory)
    paths = sorted(directory.glob("checkpoint_*.msgpack"), reverse=True)
    if not paths:
        raise CheckpointNotFoundError(
            f"no checkpoint in {directory}; run ganno.meta_train.meta_train(...) with out_dir "
            f"{directory.parent} to create one (it checkpoints every meta_train.checkpoint_every "
            "updates)"
        )
    treedef = jax.tree.structure(template)
    template_leaves = jax.tree.leaves(template)
    problems = []
    for path in paths:
        try:
            raw = serialization.msgpack_restore(path.read_bytes())
            meta = json.loads(raw["meta"])
            arrays = [raw["leaves"][str(i)] for i in range(raw["num_leaves"])]
        except Exception as exc:  # noqa: BLE001 -- any failure to decode means "corrupt"
            problems.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
            continue
        if len(arrays) != len(template_leaves) or any(
            tuple(a.shape) != tuple(_data_shape(t))
            for a, t in zip(arrays, template_leaves, strict=True)
        ):
            raise CheckpointError(
                f"checkpoint {path} holds a learner state of another shape (another environment, "
                "network or number of seeds); use a fresh out_dir or delete its checkpoints"
            )
        leaves = [
            jax.random.wrap_key_data(jnp.asarray(a)) if _is_key(t) else jnp.asarray(a, t.dtype)
            for a, t in zip(arrays, template_leaves, strict=True)
        ]
        return jax.tree.unflatten(treedef, leaves), meta
    raise CheckpointError("no readable checkpoint:\n  " + "\n  ".join(problems))


def _data_shape(leaf: Any) -> tuple[int, ...]:
    if _is_key(leaf):
        return tuple(jax.eval_shape(jax.random.key_data, leaf).shape)
    return tuple(leaf.shape)


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
                row[name] = float(total[s, k]) / count if count else None
            for name in _LOSSES:
                row[name] = _finite_or_none(float(metrics[name][s, k]))
            rows.append(row)
    return rows


def read_curve(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``learning_curve.jsonl`` (a torn last line from a kill is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _restore_curve(
    path: Path, last_update: int, saved: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Rewrite the curve as it was at the checkpoint of ``last_update`` and return its rows: from
    the rows saved with the checkpoint, or (a checkpoint without them) from the file's own rows."""
    rows = [r for r in (read_curve(path) if saved is None else saved) if r["update"] <= last_update]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
    return rows


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
    return json.dumps({"config": learning, "algo": algo}, sort_keys=True)


def _chunk_size(mt: Mapping[str, Any]) -> int:
    """Largest chunk <= updates_per_chunk dividing checkpoint_every (chunks end on checkpoints)."""
    size = min(mt["updates_per_chunk"], mt["checkpoint_every"])
    while mt["checkpoint_every"] % size:
        size -= 1
    return size


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

    Returns a summary: ``{"updates", "env_steps", "final_return", "out_dir"}``.
    """
    cfg = validate(cfg)
    if algo not in ALGORITHMS:
        raise ConfigError(f"algo = {algo!r} is not allowed; choose one of {sorted(ALGORITHMS)}")
    mt = cfg["meta_train"]
    vmapped = seeds_vmapped is not None
    seeds = [int(s) for s in (seeds_vmapped if vmapped else [seed])]
    if not seeds:
        raise ConfigError("seeds_vmapped is empty; give at least one seed or None")
    per_update = steps_per_update(cfg)
    num_updates = mt["total_timesteps"] // per_update
    if num_updates < 1:
        raise ConfigError(
            f"'meta_train.total_timesteps' = {mt['total_timesteps']} is less than one update "
            f"(num_envs x rollout_length = {per_update} steps)"
        )
    env_name = env_name or getattr(env, "name", type(env).__name__)
    task_name = task_name or getattr(env, "task_name", None) or str(cfg["task"]["dataset"])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    curve_path = out_dir / CURVE_FILE
    fingerprint = _fingerprint(cfg, algo)

    # BUILD LEARNER (seeds on a leading axis, vmapped or one)
    init_fn, update_fn = ALGORITHMS[algo](env, cfg)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    if vmapped:
        state = jax.jit(jax.vmap(init_fn))(keys)
    else:
        state = jax.jit(init_fn)(keys[0])
    # SPLIT THE ENVIRONMENTS OVER DEVICES (every core on a CPU; one jit partitions the work)
    state = shard_batch(state, mt["num_envs"], axis=1 if vmapped else 0)

    compiled: dict[int, Callable] = {}

    def run_chunk(state: Any, n: int) -> tuple[Any, dict]:
        if n not in compiled:
            chunk = scan_updates(update_fn, n)
            compiled[n] = jax.jit(jax.vmap(chunk) if vmapped else chunk)
        return compiled[n](state)

    # RESUME FROM THE LAST CHECKPOINT, IF ANY
    start_update, wall_before = 0, 0.0
    if any(ckpt_dir.glob("checkpoint_*.msgpack")):
        state, meta = load_checkpoint(ckpt_dir, state)
        if meta.get("fingerprint") != fingerprint or meta.get("seeds") != seeds:
            raise ConfigError(
                f"{out_dir} holds a run with another config, algorithm or seeds than this one "
                f"(checkpointed run: algo {meta.get('algo')!r}, seeds {meta.get('seeds')}); use a "
                "fresh out_dir or delete this one"
            )
        start_update, wall_before = int(meta["update"]), float(meta["wall_time"])
        if start_update > num_updates:
            raise ConfigError(
                f"{out_dir} is already at update {start_update}, past this run's {num_updates}"
            )
        # The rows so far, also saved with every checkpoint.
        curve = _restore_curve(curve_path, start_update, meta.get("curve"))
    else:
        curve_path.write_text("")
        curve = []
    dump_config(cfg, out_dir / "config.yaml")

    # RUN UPDATES IN CHUNKS
    chunk = _chunk_size(mt)
    update, last_checkpoint = start_update, start_update if start_update else None
    bar = tqdm(
        total=num_updates * per_update,
        initial=start_update * per_update,
        unit="step",
        unit_scale=True,
        disable=not progress,
        desc=f"{algo} seeds {seeds}",
        dynamic_ncols=True,
    )
    t_start = time.perf_counter()
    try:
        while update < num_updates:
            # Chunks end on checkpoint updates, also after a resume with another checkpoint_every.
            next_checkpoint = (update // mt["checkpoint_every"] + 1) * mt["checkpoint_every"]
            n = min(chunk, num_updates - update, next_checkpoint - update)
            t_chunk = time.perf_counter()
            state, metrics = run_chunk(state, n)
            metrics = jax.tree.map(np.asarray, jax.device_get(metrics))
            if not vmapped:
                metrics = jax.tree.map(lambda x: x[None], metrics)
            elapsed = time.perf_counter() - t_chunk

            # CHECK FOR NON-FINITE LOSSES (the bad state is never checkpointed)
            bad = ~np.isfinite(metrics["total_loss"])
            if bad.any():
                s, k = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
                kept = (
                    f"the last good checkpoint (update {last_checkpoint}) in {ckpt_dir} is kept"
                    if last_checkpoint is not None
                    else "no checkpoint was written yet"
                )
                raise NonFiniteLossError(
                    f"{algo}: non-finite loss at update {update + k + 1} (seed {seeds[s]}) in "
                    f"{out_dir}; {kept}. Check the environment's rewards and observations for "
                    "NaN/inf, or lower meta_train.actor_lr / critic_lr"
                )

            # LOG THE LEARNING CURVE
            rows = _curve_rows(metrics, update, seeds, per_update)
            wall = wall_before + time.perf_counter() - t_start
            for row in rows:
                row["steps_per_second"] = n * per_update * len(seeds) / elapsed
                row["wall_time"] = wall
            with open(curve_path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            curve.extend(rows)
            update += n

            # CHECKPOINT
            if update % mt["checkpoint_every"] == 0 or update == num_updates:
                meta = {
                    "update": update,
                    "env_steps": update * per_update,
                    "wall_time": wall,
                    "algo": algo,
                    "seeds": seeds,
                    "fingerprint": fingerprint,
                    # The curve so far: Snakemake deletes a rerun job's outputs, this file too.
                    "curve": curve,
                }
                save_checkpoint(ckpt_dir, state, meta)
                last_checkpoint = update

            returns = [r["episode_return"] for r in rows if r["episode_return"] is not None]
            bar.set_postfix(ret=f"{np.mean(returns):.3g}" if returns else "n/a", update=update)
            bar.update(n * per_update)
            if callback is not None:
                callback({"update": update, "env_steps": update * per_update, "rows": rows})
    finally:
        bar.close()

    # WRITE METRICS AND THE FINAL POLICY
    with open(out_dir / METRICS_FILE, "w") as f:
        json.dump(marl_eval_json(curve, env_name, task_name, algo), f, indent=1)
    network = actor_network_config(env, cfg)
    for s, seed_ in enumerate(seeds):
        actor_params = state.params.actor
        if vmapped:
            actor_params = jax.tree.map(lambda x, s=s: x[s], actor_params)
        policy_config = {
            "network": network,
            "algo": algo,
            "seed": seed_,
            "env_steps": num_updates * per_update,
            "env_name": env_name,
            "task_name": task_name,
        }
        if (settings := env_settings(env)) is not None:
            policy_config["env"] = settings  # what deploying the policy needs (ganno.torch)
        if state.obs_norm:  # the running statistics the actor's inputs were normalised with
            stats = state.obs_norm["agents_view"]
            if vmapped:
                stats = jax.tree.map(lambda x, s=s: x[s], stats)
            policy_config["observation_normalisation"] = normalisation.to_json(stats)
        policy_dir = out_dir / "policy" / (f"seed_{seed_}" if vmapped else "")
        Policy(actor_params, policy_config).save(policy_dir)
    final = [
        r["episode_return"] for r in curve[-len(seeds) :] if r.get("episode_return") is not None
    ]
    return {
        "updates": num_updates,
        "env_steps": num_updates * per_update,
        "final_return": float(np.mean(final)) if final else None,
        "out_dir": str(out_dir),
    }
