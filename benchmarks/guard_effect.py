"""What the guard (``env.guard``, issue 37 item 6; the rule in ``ganno.protocol``) changes: a
pipeline run's trained policies on every task of its config, the lr0 grid x evaluation seeds, with
the guard off and on.

The sweep is the library's own (``ganno.experiments.run_policies``, what ``ganno sweep`` and
``ganno generalise`` run), on the config with ``env.guard`` set to false and to true; tasks whose
data is absent are skipped. Per task and guard: the runs, the share at chance (test accuracy at
most ``ganno.tables.at_chance``'s level, 5% of the way from chance to perfect), the mean test
accuracy over every lr0 (all-lr0), the tuned test accuracy (lr0 chosen on validation accuracy,
``ganno.tables.tuned_results``: one lr0 per task for the policies pooled, as the report tunes a
method), the runs in which the guard tripped (and of them, those still at chance: it tripped too
late), and, paired with the same runs unguarded, the runs
it took off chance, the runs it put at chance and the mean change in test accuracy of the runs
in which it tripped. Written: ``<out>/guard_effect_runs.csv`` (every
run), ``<out>/guard_effect.csv`` and ``<out>/guard_effect.md`` (the table).

    python benchmarks/guard_effect.py --results /work/fresh/results \\
        [--config RESULTS/config.yaml] [--agent ippo] [--policy DIR ...] [--tasks train,digits] \\
        [--data-root DIR] [--out RESULTS/benchmarks/guard_effect] [--quick] [--off-from-sweeps]

Default policies: ``<results>/meta_train/<agent>/seed_*/policy``. Default data root: the config's
``data.root``, relative to the results folder's parent (the pipeline's working directory) when
relative.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import pandas as pd


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="a pipeline run")
    parser.add_argument("--config", type=Path, help="default: <results>/config.yaml")
    parser.add_argument("--agent", default="ippo", help="whose policies (default ippo)")
    parser.add_argument("--policy", action="append", type=Path, help="policy folder(s)")
    parser.add_argument("--tasks", help="comma-separated tasks (default: every task)")
    parser.add_argument("--data-root", type=Path, help="where the prepared datasets are")
    parser.add_argument("--out", type=Path, help="default: <results>/benchmarks/guard_effect")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: lr0 1e-3 .. 1 a decade, one seed"
    )
    parser.add_argument(
        "--off-from-sweeps",
        action="store_true",
        help="read the guard-off runs from the pipeline's own sweeps (<results>/sweep/<task>/"
        "<agent>_seed_<s>.csv, the same function and config with the guard off) where every "
        "policy's exists, instead of running them again: half the time",
    )
    return parser.parse_args()


def policy_runs(args: argparse.Namespace, method: str) -> list:
    from ganno.experiments import PolicyRun

    folders = args.policy or sorted(
        (args.results / "meta_train" / args.agent).glob("seed_*/policy"),
        key=lambda p: int(p.parent.name.split("_")[1]),
    )
    if not folders:
        raise SystemExit(f"no policies under {args.results / 'meta_train' / args.agent}")
    runs = []
    for i, folder in enumerate(folders):
        seed = folder.parent.name.split("_")[-1]
        runs.append(PolicyRun(folder, method, int(seed) if seed.isdigit() else i))
    return runs


def swept(args: argparse.Namespace, task: str, runs: list) -> pd.DataFrame | None:
    """The pipeline's guard-off runs of ``runs`` on ``task`` (None unless every one exists)."""
    from ganno.layout import AGENT_CSV
    from ganno.results import read_results

    paths = [
        args.results / AGENT_CSV.format(task=task, agent=args.agent, seed=run.meta_seed)
        for run in runs
    ]
    if not all(p.exists() for p in paths):
        return None
    return read_results(paths).assign(guard_step=-1)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and guard: runs, share at chance, all-lr0 and tuned test accuracy, trips."""
    from ganno.tables import at_chance, tuned_results

    rows = []
    for (task, guard), part in runs.groupby(["task", "guard"], sort=False):
        tuned = tuned_results(part)
        rows.append(
            {
                "task": task,
                "guard": guard,
                "runs": len(part),
                "at_chance_share": float(at_chance(part["test_accuracy"]).mean()),
                "all_lr0_test_accuracy": float(part["test_accuracy"].mean()),
                "tuned_lr0": float(tuned["lr0"].iloc[0]),
                "tuned_test_accuracy": float(tuned["test_accuracy"].mean()),
                "guard_trips": int((part["guard_step"] >= 0).sum()),
                # tripped too late: the last decision's weights were already at chance
                "tripped_at_chance": int(
                    ((part["guard_step"] >= 0) & at_chance(part["test_accuracy"])).sum()
                ),
                **paired(runs, task, guard),
            }
        )
    return pd.DataFrame(rows)


def paired(runs: pd.DataFrame, task: str, guard: str) -> dict[str, float]:
    """The guard's rows against the same runs without it (same policy, lr0 and seed): runs
    taken off chance (``rescued``), runs put at chance (``killed``), the mean change in test
    accuracy of the runs in which it tripped, and of every run with its 95% bootstrap interval
    (``change``, ``change_low``, ``change_high``) and where that interval stands against no
    change (``change_standing``: above, level or below, ganno.stats.compare)."""
    if guard != "on":
        nan = float("nan")
        keys = ("rescued", "killed", "tripped_change", "change", "change_low", "change_high")
        return {**dict.fromkeys(keys, nan), "change_standing": ""}
    from ganno.stats import Estimate, compare, mean_ci
    from ganno.tables import at_chance

    keys = ["lr0", "seed", "meta_seed"]
    part = runs[runs["task"] == task]
    both = part[part["guard"] == "off"].merge(
        part[part["guard"] == "on"], on=keys, suffixes=("_off", "_on")
    )
    off, on = at_chance(both["test_accuracy_off"]), at_chance(both["test_accuracy_on"])
    tripped = both["guard_step_on"] >= 0
    change = both["test_accuracy_on"] - both["test_accuracy_off"]
    every = mean_ci([change.to_numpy()])
    return {
        "rescued": int((off & ~on).sum()),
        "killed": int((on & ~off).sum()),
        "tripped_change": float(change[tripped].mean()) if tripped.any() else 0.0,
        "change": every.value,
        "change_low": every.low,
        "change_high": every.high,
        "change_standing": compare(every, Estimate(0.0, 0.0, 0.0)),
    }


def markdown(summary: pd.DataFrame, header: str) -> str:
    lines = [
        header,
        "",
        "| task | guard | runs | at chance | all-lr0 test acc. | tuned test acc. (lr0) | "
        "guard tripped (still at chance) | off chance / to chance | change where tripped | "
        "change, every run [95% CI] |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in summary.itertuples():
        pairs = "" if r.guard != "on" else f"{int(r.rescued)} / {int(r.killed)}"
        change = "" if r.guard != "on" else f"{r.tripped_change:+.3f}"
        every = (
            ""
            if r.guard != "on"
            else f"{r.change_standing}: {r.change:+.3f} [{r.change_low:+.3f}, {r.change_high:+.3f}]"
        )
        lines.append(
            f"| {r.task} | {r.guard} | {r.runs} | {r.at_chance_share:.1%} | "
            f"{r.all_lr0_test_accuracy:.3f} | {r.tuned_test_accuracy:.3f} ({r.tuned_lr0:.3g}) | "
            f"{r.guard_trips} ({r.tripped_at_chance}) | {pairs} | {change} | {every} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    from ganno import agents
    from ganno.config import agent_config, load_config
    from ganno.data import task_unavailable_reason
    from ganno.experiments import run_policies
    from ganno.io import atomic_write, write_csv
    from ganno.layout import task_names
    from ganno.results import lr0_grid

    config_path = args.config or args.results / "config.yaml"
    cfg = agent_config(load_config(config_path), args.agent)
    root = Path(args.data_root or cfg["data"]["root"])
    if args.data_root is None and not root.is_absolute():
        root = args.results.resolve().parent / root
    cfg["data"] = {**cfg["data"], "root": str(root)}
    if args.quick:
        cfg["evaluation"] = {
            **cfg["evaluation"],
            "seeds": cfg["evaluation"]["seeds"][:1],
            "lr0_exponents": [-3, 0],
            "lr0_per_decade": 1,
        }
    method = agents.method_name(args.agent)
    runs = policy_runs(args, method)
    tasks = args.tasks.split(",") if args.tasks else task_names(cfg)
    out = args.out or args.results / "benchmarks" / "guard_effect"
    out.mkdir(parents=True, exist_ok=True)

    frames, skipped, start = [], [], time.perf_counter()
    for task in tasks:
        reason = task_unavailable_reason(cfg, task)
        if reason is not None:
            skipped.append(f"{task} ({reason})")
            continue
        for guard in (False, True):
            if not guard and args.off_from_sweeps:
                kept = swept(args, task, runs)
                if kept is not None:
                    frames.append(kept.assign(guard="off"))
                    print(f"{task}, guard off: read from the pipeline's sweeps", flush=True)
                    continue
            guarded = copy.deepcopy(cfg)
            guarded["env"]["guard"] = guard
            tick = time.perf_counter()
            for results, _ in run_policies(guarded, task, runs):
                frames.append(results.assign(guard="on" if guard else "off"))
            print(
                f"{task}, guard {'on' if guard else 'off'}: {len(runs)} policies, "
                f"{time.perf_counter() - tick:.0f} s",
                flush=True,
            )
    if not frames:
        raise SystemExit("no task could run: " + "; ".join(skipped))
    every = pd.concat(frames, ignore_index=True)
    write_csv(every, out / "guard_effect_runs.csv")
    summary = summarise(every)
    write_csv(summary, out / "guard_effect.csv")
    grid = lr0_grid(cfg)
    header = (
        f"# The guard's effect: {len(runs)} {method} policies ({config_path}), "
        f"{len(grid)} lr0 ({grid[0]:g} .. {grid[-1]:g}) x {len(cfg['evaluation']['seeds'])} "
        f"seeds per task; {time.perf_counter() - start:.0f} s"
        + (f"\n\nSkipped: {'; '.join(skipped)}" if skipped else "")
    )
    table = markdown(summary, header)
    atomic_write(out / "guard_effect.md", table)
    print(table)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
