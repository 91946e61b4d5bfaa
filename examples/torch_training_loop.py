"""A trained GANNO policy setting the per-layer learning rates of ordinary PyTorch training.

Trains a PyTorch MLP and a small 1-D CNN on MNIST-1D with ``torch.optim.SGD`` (one parameter group
per layer) while :class:`ganno.torch.GannoScheduler` asks the policy, ``num_decisions`` times
spread over the training, by how much to scale each layer's rate. Prints every decision's learning
rates and the final test accuracy of each network, beside the baseline it is compared with: SGD
with a cosine schedule from the same lr0, initial weights and minibatches (``--no-baseline`` skips
it).

    python examples/torch_training_loop.py                       # the packaged pretrained policy
    python examples/torch_training_loop.py --total-steps 8000    # any training length
    python examples/torch_training_loop.py --ceiling 1           # rates capped at 1, not 10
    python examples/torch_training_loop.py --guard               # the guard on
    python examples/torch_training_loop.py --policy results/meta_train/ippo/seed_0/policy

The dataset is read from ``<data-root>/processed`` (prepared offline, if absent, as by
``ganno data prepare mnist1d``). The budget is the one the policy was meta-trained for unless
``--total-steps`` is given.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganno.torch import (
    GannoScheduler,
    TorchCNN1D,
    TorchMLP,
    TorchPolicy,
    layerwise_param_groups,
    pretrained_policy,
)


def build_model(kind: str, input_length: int, num_classes: int, width: int) -> torch.nn.Module:
    if kind == "mlp":
        return TorchMLP(input_length, depth=3, width=width, num_classes=num_classes)
    if kind == "cnn":
        return TorchCNN1D(input_length, channels=(16, 32), kernel_size=5, num_classes=num_classes)
    raise ValueError(f"unknown network {kind!r}; choose mlp or cnn")


def tensors(dataset: Any) -> dict[str, torch.Tensor]:
    """The dataset's splits as float32 inputs and int64 labels."""
    return {
        name: torch.tensor(np.asarray(getattr(dataset, name), dtype))
        for split in ("train", "val", "test")
        for name, dtype in ((f"x_{split}", np.float32), (f"y_{split}", np.int64))
    }


def test_metrics(model: torch.nn.Module, data: dict[str, torch.Tensor]) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(data["x_test"])
        accuracy = (logits.argmax(-1) == data["y_test"]).float().mean().item()
        return accuracy, F.cross_entropy(logits, data["y_test"]).item()


def train_baseline(kind: str, dataset: Any, args: argparse.Namespace, total_steps: int) -> float:
    """The comparison: cosine SGD from the same lr0, initial weights and minibatches; returns
    its final test accuracy."""
    torch.manual_seed(args.seed)
    data = tensors(dataset)
    model = build_model(kind, data["x_train"].shape[1], int(dataset.num_classes), args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr0)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(total_steps):
        idx = torch.randint(0, data["x_train"].shape[0], (args.batch_size,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(data["x_train"][idx]), data["y_train"][idx]).backward()
        optimizer.step()
        cosine.step()
    accuracy, _ = test_metrics(model, data)
    return accuracy


def train_one(kind: str, policy: TorchPolicy, dataset: Any, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    data = tensors(dataset)
    x_train, y_train = data["x_train"], data["y_train"]
    x_val, y_val = data["x_val"], data["y_val"]
    model = build_model(kind, x_train.shape[1], int(dataset.num_classes), args.width)
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=args.lr0)

    def val_loss() -> torch.Tensor:
        with torch.no_grad():
            return F.cross_entropy(model(x_val), y_val)

    sched = GannoScheduler(
        optimizer,
        policy,
        val_loss_fn=val_loss,
        total_steps=args.total_steps,
        on_divergence="restore",  # roll back to the last decision and stop deciding
        # the highest rate a layer may get (default: the policy's own, 10)
        lr_bounds=None if args.ceiling is None else (1e-6, args.ceiling),
        # --guard: when the run heads for death, back to the last decision and the base schedule
        # to the end (docs/torch.md, "The guard"); default: what the policy records (off)
        guard=args.guard or None,
    )
    names = [g["name"] for g in optimizer.param_groups]
    print(
        f"\n{kind}: {len(names)} layers ({', '.join(names)}), {sched.total_steps} steps of "
        f"{args.batch_size}, lr0 {args.lr0:g}, rate ceiling {sched.lr_bounds[1]:g}, gradient "
        f"statistics {sched.gradient_statistics}"  # plain SGD: from the weights' changes
    )
    generator = torch.Generator().manual_seed(args.seed)
    seen = 0
    for _ in range(sched.total_steps):
        idx = torch.randint(0, x_train.shape[0], (args.batch_size,), generator=generator)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        loss.backward()
        sched.observe_gradients(loss)
        optimizer.step()
        sched.step()
        for record in sched.history[seen:]:
            if record["actions"] is not None:
                rates = " ".join(f"{lr:.3g}" for lr in record["learning_rates"])
                print(
                    f"  step {record['step']:5d}  val loss {record['val_loss']:.4f}  "
                    f"rates [{rates}]"
                )
        seen = len(sched.history)
        if sched.diverged:
            print(f"  diverged at step {sched.diverged_at_step}; weights rolled back")
            break
    accuracy, test_loss = test_metrics(model, data)
    print(f"  final test accuracy {accuracy:.4f} (test loss {test_loss:.4f})")
    baseline = None
    if args.baseline:
        baseline = train_baseline(kind, dataset, args, sched.total_steps)
        print(
            f"  baseline, cosine SGD from the same lr0 {args.lr0:g}, weights and minibatches: "
            f"test accuracy {baseline:.4f}"
        )
    if sched.dead_at_step is not None:
        print(
            f"  the scheduler flagged the network dead at step {sched.dead_at_step}: rerun with "
            "--guard, a lower ceiling (--ceiling 1) or a smaller --lr0"
        )
    return {
        "network": kind,
        "test_accuracy": accuracy,
        "test_loss": test_loss,
        "baseline_test_accuracy": baseline,
        "diverged": sched.diverged,
        "dead_at_step": sched.dead_at_step,
        "learning_rates": [r["learning_rates"] for r in sched.history],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--policy", help="a saved policy folder (run/policy); default: the packaged pretrained one"
    )
    parser.add_argument("--data-root", default="data", help="ganno data folder (default data)")
    parser.add_argument("--networks", default="mlp,cnn", help="comma-separated: mlp, cnn")
    parser.add_argument("--lr0", type=float, default=0.05, help="initial rate of every layer")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="hidden units of the MLP")
    parser.add_argument(
        "--total-steps", type=int, help="training length (default: the policy's episode)"
    )
    parser.add_argument(
        "--ceiling",
        type=float,
        help="the highest learning rate a layer may get (lr_bounds[1]; default: the policy's)",
    )
    parser.add_argument(
        "--guard", action="store_true", help="the guard on (docs/torch.md, 'The guard')"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the comparison run (cosine SGD from the same lr0, weights and minibatches)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, dataset: Any = None) -> list[dict]:
    """Run the example; ``dataset`` (an object with x/y_train, x/y_val, x/y_test, num_classes)
    replaces MNIST-1D (the tests pass a small synthetic one)."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    policy = TorchPolicy.load(args.policy) if args.policy else pretrained_policy()  # no JAX
    if dataset is None:
        from ganno.data import load

        dataset = load("mnist1d", root=args.data_root)
    return [train_one(kind, policy, dataset, args) for kind in args.networks.split(",")]


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
