"""What the guard (``env.guard``, issue 37 item 6; the rule in ``ganno.deployment``) changes: a
pipeline run's trained policies on every task of its config, the lr0 grid x evaluation seeds, with
the guard off and on.

The sweep is the library's own (``ganno.experiments.run_policies``, what ``ganno sweep`` and
``ganno generalise`` run), on the config with ``env.guard`` set to false and to true; tasks whose
data is absent are skipped. Per task and guard: the runs, the share at chance (test accuracy at
most ``ganno.tables.at_chance``'s level, 5% of the way from chance to perfect), the mean test
accuracy over every lr0 (all-lr0), the tuned test accuracy (lr0 chosen on validation accuracy,
``ganno.tables.tuned_results``: one lr0 per task for the policies pooled, as the report tunes a
method) and the runs in which the guard tripped. Written: ``<out>/guard_effect_runs.csv`` (every
run), ``<out>/guard_effect.csv`` and ``<out>/guard_effect.md`` (the table).

    python benchmarks/guard_effect.py --results /work/fresh/results \\
        [--config RESULTS/config.yaml] [--agent ippo] [--policy DIR ...] [--tasks train,digits] \\
        [--data-root DIR] [--out RESULTS/benchmarks/guard_effect] [--quick]

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
            }
        )
    return pd.DataFrame(rows)


def markdown(summary: pd.DataFrame, header: str) -> str:
    lines = [
        header,
        "",
        "| task | guard | runs | at chance | all-lr0 test acc. | tuned test acc. (lr0) | "
        "guard tripped |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.task} | {r.guard} | {r.runs} | {r.at_chance_share:.1%} | "
            f"{r.all_lr0_test_accuracy:.3f} | {r.tuned_test_accuracy:.3f} ({r.tuned_lr0:.3g}) | "
            f"{r.guard_trips} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    from ganno import agents
    from ganno.config import agent_config, load_config
    from ganno.data import task_unavailable_reason
    from ganno.experiments import lr0_grid, run_policies
    from ganno.io import atomic_write, write_csv
    from ganno.layout import task_names

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
