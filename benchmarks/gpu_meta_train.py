# ruff: noqa: E402  (JAX must be configured before it is imported)
"""Decisions per second of paper-scale meta-training (issue 13 item 5): on a GPU against a CPU.

    python benchmarks/gpu_meta_train.py --out gpu_meta_train.json          # GPU: every row
    python benchmarks/gpu_meta_train.py --quick --out cpu_meta_train.json  # CPU reference

The config is config/config.yaml with config/paper.yaml merged in as Snakemake merges
``--configfile``s (nested mappings merged, lists replaced), then validated: 64 envs x 40 decisions,
4 minibatches, the default design. Each row is an agent at a number of parallel environments
(``--rows ippo:64 mappo:64 ippo:1024 ippo:256`` by default; a GPU wants larger batches than the
paper's 64). A decision is one step of one episode (all its agents).

Per row, the learner that ``ganno meta-train`` builds (``ganno.meta_train.plan_run`` and
``build_learner``) runs ``--updates`` PPO updates per call: compile_s is the first call's time less
a timed call's (tracing, lowering and XLA compilation of the scanned updates; ``ganno meta-train``
compiles a scan of ``meta_train.updates_per_chunk`` = 10, and the scan's length hardly changes
compilation), then decisions/s is the median of ``--repeats`` timed calls (fewer where they would
take more than ``--row-seconds``). Rows run one
after the other and the results file is rewritten after each, so a timeout keeps the rows done; a
row is skipped once ``--budget`` seconds have passed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path

from ganno.parallel import configure_host_devices

configure_host_devices()  # as the ganno command line does: every CPU core an XLA device

import jax

from ganno import agents
from ganno.config import agent_config, derive, load_config, merge, read_config_file
from ganno.env import make_envs
from ganno.meta_train import build_learner, plan_run

DEFAULT_ROWS = ["ippo:64", "mappo:64", "ippo:1024", "ippo:256"]  # most wanted first


def device_name() -> str:
    devices = jax.devices()
    kind = devices[0].device_kind
    if devices[0].platform == "cpu":
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        kind = f"{models[0] if models else 'cpu'}, {len(os.sched_getaffinity(0))} cores"
    return f"{devices[0].platform}: {kind}, {len(devices)} device(s)"


def others_busy() -> float:
    """CPU seconds spent so far by other processes (this one's subtracted), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
    own = os.times()
    return busy - own.user - own.system


def paper_config(files: list[str]) -> dict:
    """The first file with the others merged over it, as ``snakemake --configfile`` does."""
    overrides: dict = {}
    for path in files[1:]:
        overrides = merge(overrides, read_config_file(path))
    return load_config(files[0], overrides)


def time_row(
    cfg: dict, agent: str, num_envs: int, updates: int, repeats: int, row_seconds: float
) -> dict:
    vcfg = agent_config(derive(cfg, {"meta_train": {"num_envs": num_envs}}), agent)
    env = make_envs(vcfg)
    mt = vcfg["meta_train"]
    plan = plan_run(env, vcfg, agents.get(vcfg, agent).algorithm, 0, out_dir="unused")
    state, chunk_fn = build_learner(env, plan)

    def call() -> float:
        start = time.perf_counter()
        jax.block_until_ready(chunk_fn(state, updates))
        return time.perf_counter() - start

    first_s = call()  # compilation and one call
    warmup_s = call()
    repeats = max(1, min(repeats, int(row_seconds / warmup_s)))  # a slow row: fewer calls
    others = others_busy()
    times = [call() for _ in range(repeats)]
    decisions = plan.per_update * updates  # every family member's rollout
    seconds = statistics.median(times)
    compile_s = first_s - seconds
    others = (others_busy() - others) / sum(times)  # cores other processes took meanwhile
    return {
        "agent": agent,
        "num_envs": num_envs,
        "rollout_length": mt["rollout_length"],
        "num_minibatches": mt["num_minibatches"],
        "updates_per_call": updates,
        "repeats": repeats,
        "compile_s": round(compile_s, 2),
        "warmup_call_s": round(warmup_s, 3),
        "median_call_s": round(seconds, 3),
        "seconds_per_update": round(seconds / updates, 4),
        "decisions_per_s": round(decisions / seconds, 1),
        "other_processes_cores": round(others, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["config/config.yaml", "config/paper.yaml"])
    parser.add_argument(
        "--rows", nargs="+", help=f"AGENT:NUM_ENVS (default {' '.join(DEFAULT_ROWS)})"
    )
    parser.add_argument("--updates", type=int, help="PPO updates per timed call (default 5)")
    parser.add_argument("--repeats", type=int, help="timed calls per row (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CPU reference: rows ippo:64 mappo:64, 1 update x 2 repeats",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="start no row after this many seconds (default 300)",
    )
    parser.add_argument(
        "--row-seconds",
        type=float,
        default=60.0,
        help="fewer timed calls where --repeats of them would take longer (default 60)",
    )
    parser.add_argument("--out", help="results as JSON here, and as CSV beside it (.csv)")
    args = parser.parse_args()
    rows = args.rows or (DEFAULT_ROWS[:2] if args.quick else DEFAULT_ROWS)
    updates = args.updates or (1 if args.quick else 5)
    repeats = args.repeats or (2 if args.quick else 3)

    begin = time.perf_counter()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cfg = paper_config(args.configs)
    device = device_name()
    print(f"jax {jax.__version__}, {jax.devices()}: {device}", flush=True)
    result = {"device": device, "jax": jax.__version__, "configs": args.configs, "rows": []}
    for spec in rows:
        agent, num_envs = spec.split(":")
        if time.perf_counter() - begin > args.budget:
            print(f"{spec}: skipped, past --budget {args.budget:.0f} s", flush=True)
            continue
        row = time_row(cfg, agent, int(num_envs), updates, repeats, args.row_seconds)
        result["rows"].append({"device": device, **row})
        print(
            f"{agent}:{num_envs}: {row['decisions_per_s']:.1f} decisions/s, compile "
            f"{row['compile_s']:.1f} s, {row['seconds_per_update']:.3f} s/update "
            f"(other processes took {row['other_processes_cores']:.2f} cores meanwhile)",
            flush=True,
        )
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            with open(Path(args.out).with_suffix(".csv"), "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(result["rows"][0]))
                writer.writeheader()
                writer.writerows(result["rows"])
    print(f"\n{device}, jax {jax.__version__}; total {time.perf_counter() - begin:.0f} s")
    columns = ["agent", "num_envs", "decisions_per_s", "seconds_per_update", "compile_s"]
    columns.append("other_processes_cores")  # cores others took while a row was timed
    print("  ".join(columns))
    for row in result["rows"]:
        print("  ".join(f"{row[c]:>{len(c)}}" for c in columns))


if __name__ == "__main__":
    main()
