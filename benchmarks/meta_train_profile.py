# ruff: noqa: E402  (JAX must be configured before it is imported)
"""Where one meta-training run's time goes (Q3): compilation, the agents' inner training, the
reference run of a relative reward, and PPO, timed part by part on one agent of a config at a small
budget and scaled to the config's budget; the report (``ganno.cost``) reads the CSV it writes.

    python benchmarks/meta_train_profile.py [--config config/config.yaml] [--agent ippo]
        [--updates 2] [--repeats 3] [--out benchmarks/measured/meta_train_profile.csv]

Each part is timed steady-state (compiled and warmed up; the median of ``--repeats`` calls of
``--updates`` updates, the variants interleaved round-robin so that load from other processes hits
all alike), environments sharded over the host's CPU devices as ``ganno meta-train`` runs them:

- *full*: the agent's learner, ``scan_updates`` of its IPPO/MAPPO update (what meta-training runs);
- *rollout*: every member of the task family rolled out ``num_envs x rollout_length`` decisions an
  update with random actions, auto-reset included (``meta_train_overhead.random_rollout``): the
  environment's whole work, the reference run included;
- *rollout without the reference*: the same environments with the relative reward swapped for
  its plain twin (``relative_log_val_error`` -> ``log_val_error_drop``, ``relative_log_val_loss``
  -> ``log_val_loss_drop``), which trains no reference network;
- *compilation*: the learner's first call less a steady call, paid once a run (without XLA's
  persistent cache, which this script turns off; in the pipeline the seeds after the first of a
  setting may find their program there);
- *reference pool* (``meta_train.reference_pool``, :mod:`ganno.reference_pool`): filling the pool,
  every member's reference curves trained once before the first update, compilation included;
  the rollouts and the learner then play the pool's episodes (0 without a pool).

Parts of a run (``seconds``: the config's ``total_timesteps`` worth of updates): agents' inner
training = rollout without the reference; reference run = rollout - that (reading the pool's
table, with a pool); PPO (action selection, GAE, the epochs of minibatch updates) = full -
rollout; compilation and the reference pool once. ``share`` = part / their
sum. A difference of two timings can come out slightly negative when a part is negligible.
Process start-up, data loading and writing the policy are not counted (the run's benchmark file
has them: its wall time minus the estimate here).
"""

from __future__ import annotations

import os

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # compilation is one of the parts timed

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ganno.parallel import configure_host_devices

configure_host_devices()  # as the ganno command line does: every core an XLA device

import jax
import pandas as pd

from ganno.agents import agents, get
from ganno.config import agent_config, load_config, merge, validate
from ganno.env import make_envs
from ganno.layout import MEASURED_META_TRAIN_PROFILE
from ganno.meta_train import ALGORITHMS
from ganno.parallel import shard_batch
from ganno.reference_pool import pooled_envs
from ganno.systems.anakin import scan_updates

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_train_overhead import random_rollout

ROOT = Path(__file__).resolve().parents[1]
#: A relative reward's twin without the reference run (same observation, actions and budget).
PLAIN_TWIN = {
    "relative_log_val_error": "log_val_error_drop",
    "relative_log_val_loss": "log_val_loss_drop",
}
PARTS = ("compilation", "reference pool", "agents' inner training", "reference run", "PPO")


def played_envs(cfg):
    """(what meta-training plays: the config's environments with their reference pool if it has
    one, as ``ganno.meta_train.build_learner`` makes them; seconds the pool took to fill)."""
    envs = make_envs(cfg)
    start = time.perf_counter()
    played = pooled_envs(envs, cfg, 0)
    jax.block_until_ready([getattr(e, "reference_pool", None) for e in _as_list(played)])
    return played, (time.perf_counter() - start if played is not envs else 0.0)


def _as_list(envs):
    return envs if isinstance(envs, list) else [envs]


def rollout_fn(envs, cfg, updates: int):
    """A blocking call rolling out every family member ``updates`` updates' worth of decisions."""
    mt = cfg["meta_train"]
    runs = [
        random_rollout(env, mt["num_envs"], mt["rollout_length"], updates) for env in _as_list(envs)
    ]

    def call():
        for states, run in runs:
            jax.block_until_ready(run(states))

    call()  # compile + warm up
    return call


def learner_fn(envs, cfg, algorithm: str, updates: int):
    """(blocking call of ``updates`` learner updates, seconds of its first call)."""
    init_fn, update_fn = ALGORITHMS[algorithm](envs, cfg)
    state = shard_batch(jax.jit(init_fn)(jax.random.PRNGKey(0)), cfg["meta_train"]["num_envs"])
    chunk = jax.jit(lambda s: scan_updates(update_fn, updates)(s)[0])

    def call():
        jax.block_until_ready(chunk(state))

    start = time.perf_counter()
    call()  # compile + the first run
    return call, time.perf_counter() - start


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()}"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def profile(config_path: str, agent: str | None, updates: int, repeats: int) -> pd.DataFrame:
    config = load_config(config_path)
    name = agent or agents(config, question=None)[0].name
    cfg = agent_config(config, name)
    reward = cfg["env"]["reward"]
    mt = cfg["meta_train"]
    envs, pool_s = played_envs(cfg)
    members = len(_as_list(envs))
    per_update = mt["num_envs"] * mt["rollout_length"] * members
    num_updates = mt["total_timesteps"] // per_update
    print(
        f"{config_path}, agent {name} ({get(config, name).algorithm}): {members} task(s), "
        f"{per_update} decisions an update, {num_updates} updates a run; timing {updates} "
        f"updates x {repeats} rounds on {jax.local_device_count()} CPU device(s)",
        flush=True,
    )
    calls = {}
    full, first = learner_fn(envs, cfg, get(config, name).algorithm, updates)
    calls["full"] = full
    calls["rollout"] = rollout_fn(envs, cfg, updates)
    if reward in PLAIN_TWIN:
        plain = validate(merge(cfg, {"env": {"reward": PLAIN_TWIN[reward]}}))
        calls["rollout_without_reference"] = rollout_fn(make_envs(plain), plain, updates)
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    per = {k: statistics.median(t) / updates for k, t in times.items()}  # seconds an update
    without = per.get("rollout_without_reference", per["rollout"])
    compile_s = first - per["full"] * updates
    seconds = {
        "compilation": compile_s,
        "reference pool": pool_s,
        "agents' inner training": without * num_updates,
        "reference run": (per["rollout"] - without) * num_updates,
        "PPO": (per["full"] - per["rollout"]) * num_updates,
    }
    per_update_s = {
        "compilation": float("nan"),
        "reference pool": float("nan"),
        "agents' inner training": without,
        "reference run": per["rollout"] - without,
        "PPO": per["full"] - per["rollout"],
    }
    total = sum(seconds.values())
    meta = {
        "agent": name,
        "reward": reward,
        "reference_pool": mt.get("reference_pool"),
        "config": str(Path(config_path).name),
        "total_timesteps": mt["total_timesteps"],
        "num_updates": num_updates,
        "updates_timed": updates,
        "repeats": repeats,
        "run_seconds_estimate": total,
        "host_devices": jax.local_device_count(),
        "machine": _machine(),
        "jax": jax.__version__,
        "commit": _commit(),
        "date": datetime.date.today().isoformat(),
    }
    rows = [
        {"part": p, "seconds": seconds[p], "share": seconds[p] / total,
         "seconds_per_update": per_update_s[p], **meta}
        for p in PARTS
    ]  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--agent", help="an agent of the config (default: its first main agent)")
    parser.add_argument("--updates", type=int, default=2, help="updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out",
        default=str(ROOT / MEASURED_META_TRAIN_PROFILE),
        help="the CSV (a pipeline's results/benchmarks/meta_train_profile.csv, or by hand the "
        "default, benchmarks/measured/meta_train_profile.csv)",
    )
    args = parser.parse_args()
    df = profile(args.config, args.agent, args.updates, args.repeats)
    for _, r in df.iterrows():
        print(f"  {r['part']:24s} {r['seconds']:9.1f} s a run  {100 * r['share']:5.1f}%")
    print(f"  {'run (estimate)':24s} {df['run_seconds_estimate'].iloc[0]:9.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
