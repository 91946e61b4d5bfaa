"""Does taking the gradient statistics from the weights' changes
(``GannoScheduler(gradient_statistics="weight_changes")``) cost test accuracy against reading every
step's gradients (the default, the environment's features)?

Paired runs: the shipped policy drives PyTorch training in the pipeline's ``torch-eval`` loop
(``ganno.torch.evaluation.train_run``: the environment's initial weights and minibatches per seed,
its budget and divergence rule) twice from each start, once per way of taking the statistics, on
the default config's MLP and 1-D CNN on MNIST-1D and the MLP on digits, over lr0 by decades, seeds
and two ceilings (the policy's ``lr_bounds[1]`` of 10, and 1). Printed per task and ceiling and
pooled: the mean test accuracy of each, the mean paired difference (weight changes minus read) with
a stratified-bootstrap 95% CI (``ganno.stats.mean_ci``, runs resampled within each task), the
runs each left at chance (``dead_network_check.py``'s level), and how many pairs differ by more
than 0.01.

    python benchmarks/weight_change_accuracy.py [--seeds 100,...,104] [--lr0 1e-4,...,1]
"""

from __future__ import annotations

import time

import pandas as pd
import shipped_policy_runs as shared

from ganno.stats import mean_ci

WAYS = ("read", "weight_changes")


def main() -> None:
    parser = shared.parser(__doc__.split("\n\n")[0], "100,101,102,103,104", "1e-4,1e-3,1e-2,1e-1,1")
    s = shared.setup(parser.parse_args())
    budget = s.budget
    ceilings = {f"{budget.lr_bounds[1]:g}": budget, "1": s.capped(1.0)}
    rows, start = [], time.perf_counter()
    for at in shared.starts(s):
        for ceiling, b in ceilings.items():
            row = {"task": at.task, "ceiling": ceiling, "lr0": at.lr0}
            for way in WAYS:
                r = shared.run(at, s, b, gradient_statistics=way)
                row[way] = r.test_accuracy
                row[f"{way} at chance"] = at.at_chance(r.test_accuracy)
            rows.append({**row, "seed": at.seed})
    runs = pd.DataFrame(rows)
    runs["difference"] = runs["weight_changes"] - runs["read"]
    print(
        f"{len(runs)} pairs of {budget.num_steps} steps, lr0 {s.lr0s}, seeds {s.seeds}, "
        f"{time.perf_counter() - start:.0f} s"
    )

    def summary(g: pd.DataFrame, by_task: bool) -> pd.Series:
        diffs = (
            {t: d["difference"].to_numpy() for t, d in g.groupby("task")}
            if by_task
            else {0: g["difference"].to_numpy()}
        )
        est = mean_ci(diffs)
        return pd.Series(
            {
                "pairs": len(g),
                "read: mean test acc.": round(float(g["read"].mean()), 4),
                "weight changes: mean test acc.": round(float(g["weight_changes"].mean()), 4),
                "difference [95% CI]": f"{est.value:+.4f} [{est.low:+.4f}, {est.high:+.4f}]",
                "at chance (read / weight changes)": (
                    f"{int(g['read at chance'].sum())} / {int(g['weight_changes at chance'].sum())}"
                ),
                "pairs differing by > 0.01": int((g["difference"].abs() > 0.01).sum()),
            }
        )

    table = runs.groupby(["task", "ceiling"], sort=False).apply(
        summary, by_task=False, include_groups=False
    )
    print(table.reset_index().to_markdown(index=False))
    pooled = runs.groupby("ceiling", sort=False).apply(summary, by_task=True, include_groups=False)
    print("\npooled over the tasks (CI resampled within each task):")
    print(pooled.reset_index().to_markdown(index=False))


if __name__ == "__main__":
    main()
