"""Does the deployed scheduler's dead-network flag (``ganno.protocol.dead_layers``: a layer
that got no gradient for three intervals in a row) catch the networks the shipped policy kills, and
only them?

The shipped policy drives PyTorch training (``ganno.torch.evaluation.train_run``, the pipeline's
``torch-eval`` loop: the environment's initial weights and minibatches per seed, its budget and
divergence rule) on the default config's MLP and 1-D CNN on MNIST-1D (the policy's training data)
and on the MLP on sklearn's digits (a dataset it never saw), over a decade grid of initial rates
and three seeds, at the policy's own ceiling (``lr_bounds[1]`` 10) and at a ceiling of 1 (the
remedy the warning names). A run is *at chance* when its final test accuracy is at most 5% of the
way from chance to perfect (``env.collapse_check``'s level); *flagged* when the scheduler flagged
it dead; *caught* when it was flagged or stopped by the divergence rule (the scheduler's own check,
or the loop's, the same rule: with the default ``on_divergence="raise"`` the user gets an
exception). Printed: per task and ceiling, the
runs, at chance, caught of those at chance, flagged of those not at chance (false alarms), the
median step of the flag, and the runs the flag missed or raised wrongly (``--runs``: every run).

    python benchmarks/dead_network_check.py [--policy DIR] [--seeds 100,101,102] [--runs]
"""

from __future__ import annotations

import time

import pandas as pd
import shipped_policy_runs as shared


def main() -> None:
    parser = shared.parser(__doc__.split("\n\n")[0], "100,101,102", "1e-5,1e-4,1e-3,1e-2,1e-1,1")
    parser.add_argument("--policy", help="a policy folder (default: the packaged pretrained one)")
    parser.add_argument("--runs", action="store_true", help="also list every run")
    args = parser.parse_args()
    policy = None
    if args.policy:
        from ganno.policy import Policy

        policy = Policy.load(args.policy)
    s = shared.setup(args, policy)
    budget = s.budget
    ceilings = {f"{budget.lr_bounds[1]:g} (the policy's)": budget, "1": s.capped(1.0)}
    seeds, lr0s = s.seeds, s.lr0s
    rows, start = [], time.perf_counter()
    for at in shared.starts(s):
        for ceiling, b in ceilings.items():
            r = shared.run(at, s, b)
            rows.append(
                {
                    "task": at.task,
                    "ceiling": ceiling,
                    "lr0": at.lr0,
                    "seed": at.seed,
                    "test_accuracy": r.test_accuracy,
                    "at_chance": at.at_chance(r.test_accuracy),
                    "flagged": r.dead_at_step is not None,
                    "flag_step": r.dead_at_step,
                    "scheduler_diverged": r.scheduler_diverged_at_step is not None,
                    "diverged": r.diverged,
                    "peak_rate": max(max(h) for h in r.learning_rates),
                }
            )
    runs = pd.DataFrame(rows)
    print(
        f"{len(runs)} runs of {budget.num_steps} steps (batch {budget.batch_size}), lr0 {lr0s}, "
        f"seeds {seeds}, {time.perf_counter() - start:.0f} s"
    )

    def summary(g: pd.DataFrame) -> pd.Series:
        dead, flagged = g["at_chance"], g["flagged"]
        caught = flagged | g["scheduler_diverged"] | g["diverged"]
        return pd.Series(
            {
                "runs": len(g),
                "at chance": int(dead.sum()),
                "flagged": int(flagged.sum()),
                "at chance, flagged": f"{int((dead & flagged).sum())} of {int(dead.sum())}",
                "at chance, caught": f"{int((dead & caught).sum())} of {int(dead.sum())}",
                "learning, flagged": f"{int((~dead & flagged).sum())} of {int((~dead).sum())}",
                "median flag step": g["flag_step"].dropna().median() if flagged.any() else "-",
                "mean test accuracy": round(float(g["test_accuracy"].mean()), 3),
            }
        )

    table = runs.groupby(["task", "ceiling"], sort=False).apply(summary, include_groups=False)
    print(table.reset_index().to_markdown(index=False))
    if args.runs:
        print(runs.to_markdown(index=False, floatfmt=".3g"))
    missed = runs[runs["at_chance"] & ~runs["flagged"]]
    if len(missed):
        print("\nat chance, not flagged dead:")
        print(missed.to_markdown(index=False, floatfmt=".3g"))
    alarms = runs[~runs["at_chance"] & runs["flagged"]]
    if len(alarms):
        print("\nflagged, not at chance:")
        print(alarms.to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
