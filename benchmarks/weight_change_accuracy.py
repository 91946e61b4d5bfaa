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

import argparse
import time
import warnings

import pandas as pd
import torch

from ganno.config import load_config
from ganno.data import load
from ganno.errors import GannoWarning
from ganno.stats import mean_ci
from ganno.torch.evaluation import Budget, TorchData, episode_inputs, network_spec, train_run
from ganno.torch.networks import from_jax_params, make_torch_network

TASKS = (("mnist1d", "mlp"), ("mnist1d", "cnn"), ("digits", "mlp"))
WAYS = ("read", "weight_changes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--seeds", default="100,101,102,103,104")
    parser.add_argument("--lr0", default="1e-4,1e-3,1e-2,1e-1,1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ganno.pretrained import load as load_pretrained

    policy = load_pretrained()
    config = load_config(args.config)
    budget = Budget.from_config(config)
    ceilings = {f"{budget.lr_bounds[1]:g}": budget}
    ceilings["1"] = Budget(**{**vars(budget), "lr_bounds": (budget.lr_bounds[0], 1.0)})
    seeds = [int(s) for s in args.seeds.split(",")]
    lr0s = [float(v) for v in args.lr0.split(",")]
    rows, start = [], time.perf_counter()
    for dataset, network in TASKS:
        data = TorchData.from_dataset(load(dataset, root=config["data"]["root"]))
        spec = network_spec(config, network)
        chance = 1.0 / data.num_classes
        for seed in seeds:
            params0, batches = episode_inputs(spec, seed, data, budget)
            for lr0 in lr0s:
                for ceiling, b in ceilings.items():
                    row = {"task": f"{network} on {dataset}", "ceiling": ceiling, "lr0": lr0}
                    for way in WAYS:
                        model = from_jax_params(
                            make_torch_network(spec, data.x_train.shape[1:], data.num_classes),
                            params0,
                        )
                        with warnings.catch_warnings():  # dead networks are counted, not printed
                            warnings.simplefilter("ignore", GannoWarning)
                            r = train_run(
                                model, "ganno", lr0, batches, data, b, policy,
                                gradient_statistics=way,
                            )  # fmt: skip
                        row[way] = r.test_accuracy
                        row[f"{way} at chance"] = r.test_accuracy <= chance + 0.05 * (1 - chance)
                    rows.append({**row, "seed": seed})
    runs = pd.DataFrame(rows)
    runs["difference"] = runs["weight_changes"] - runs["read"]
    print(
        f"{len(runs)} pairs of {budget.num_steps} steps, lr0 {lr0s}, seeds {seeds}, "
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
