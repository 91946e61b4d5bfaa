"""What spreading a policy's decisions over the user's training length does on the long-budget
task (4x the meta-training budget, like the ``long_budget`` evaluation task): a PyTorch MLP of the
config's task trained with ``GannoScheduler`` for ``4 x steps_per_decision x num_decisions`` steps,
the policy's decisions

* ``frozen``: over the first quarter only, rates frozen afterwards (the scheduler before
  ``total_steps`` existed, and still its default);
* ``spread``: spread over the whole run (``total_steps=``, one decision every 4 k steps);
* ``more_decisions``: 4x as many decisions every k steps, progress = decisions / (4 H) (what the
  JAX ``long_budget`` task evaluates, ``env.num_decisions: 160``);

with constant SGD at lr0 for context, and the trained budget (``1x``) as the reference. Same seeds
(initial weights, minibatches) as ``ganno torch-eval``. Prints a table and writes JSON::

    python benchmarks/torch_long_budget.py --config config/config.yaml --policy RUN/policy \
        --out long_budget.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganno.config import load_config
from ganno.data import load_from_config
from ganno.policy import Policy
from ganno.torch.evaluation import Budget, TorchData, _evaluate, episode_inputs, network_spec
from ganno.torch.networks import from_jax_params, layerwise_param_groups, make_torch_network
from ganno.torch.scheduler import GannoScheduler

MODES = ("frozen", "spread", "more_decisions", "sgd_constant")


def run(mode: str, model, lr0, batches, data, policy, k: int, h: int, factor: int) -> dict:
    """Train ``model`` in place for ``factor x k x h`` steps; test metrics of the final weights
    (of the last good decision if the scheduler saw the training diverge)."""
    num_steps = factor * k * h
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=lr0)
    settings = {
        "frozen": {},
        "spread": {"total_steps": num_steps},
        "more_decisions": {"num_decisions": factor * h},
    }
    sched = None
    if mode != "sgd_constant":

        def val_loss():
            with torch.no_grad():
                return F.cross_entropy(model(data.x_val), data.y_val)

        sched = GannoScheduler(  # the gradients read, as in meta-training: this measures the
            optimizer,  # spreading of the decisions alone
            policy,
            val_loss_fn=val_loss,
            on_divergence="restore",
            gradient_statistics="read",
            **settings[mode],
        )
    start = time.perf_counter()
    for step in range(num_steps):
        if sched is not None and sched.diverged:
            break
        idx = batches[step]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        if sched is not None:
            sched.observe_gradients(loss)
        optimizer.step()
        if sched is not None:
            sched.step()
    test_loss, test_accuracy = _evaluate(model, data.x_test, data.y_test)
    diverged = bool(sched.diverged) if sched is not None else not np.isfinite(test_loss)
    return {
        "test_accuracy": test_accuracy if np.isfinite(test_loss) else float("nan"),
        "test_loss": test_loss,
        "diverged": diverged or not np.isfinite(test_loss),
        "final_rates": [float(g["lr"]) for g in optimizer.param_groups],
        "wall_time_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--lr0", default="1e-3,1e-2,1e-1", help="comma-separated initial rates")
    parser.add_argument("--seeds", default="100,101")
    parser.add_argument("--factor", type=int, default=4, help="the long budget in trained budgets")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    policy = Policy.load(args.policy)
    env = policy.config["env"]
    k, h = int(env["steps_per_decision"]), int(env["num_decisions"])
    data = TorchData.from_dataset(load_from_config(config), config["env"]["val_subset"])
    spec = network_spec(config, "mlp")
    long = Budget(k, args.factor * h, int(config["task"]["batch_size"]))
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        params0, batches = episode_inputs(spec, seed, data, long)
        for lr0 in [float(x) for x in args.lr0.split(",")]:
            cells = [(m, args.factor) for m in MODES] + [("spread", 1), ("sgd_constant", 1)]
            for mode, factor in cells:
                model = make_torch_network(spec, data.x_train.shape[1:], data.num_classes)
                model = from_jax_params(model, params0)
                result = run(mode, model, lr0, batches, data, policy, k, h, factor)
                rows.append(
                    {"mode": mode, "budget": f"{factor}x", "lr0": lr0, "seed": seed, **result}
                )
                print(
                    f"seed {seed} lr0 {lr0:g} {factor}x {mode:15s} test accuracy "
                    f"{result['test_accuracy']:.4f}{' (diverged)' if result['diverged'] else ''}"
                    f" {result['wall_time_s']:.1f} s",
                    flush=True,
                )
    print("\nmean test accuracy over seeds (budget, mode) x lr0:")
    table: dict[tuple[str, str], dict[float, list[float]]] = {}
    for r in rows:
        table.setdefault((r["budget"], r["mode"]), {}).setdefault(r["lr0"], []).append(
            r["test_accuracy"]
        )
    for (budget, mode), by_lr0 in table.items():
        cells = "  ".join(f"{lr0:g}: {np.mean(v):.4f}" for lr0, v in by_lr0.items())
        mean = np.mean([x for v in by_lr0.values() for x in v])
        print(f"{budget:3s} {mode:15s} {cells}  mean {mean:.4f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"policy": str(args.policy), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
