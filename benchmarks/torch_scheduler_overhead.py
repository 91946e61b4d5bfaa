"""The wall-clock that ``GannoScheduler`` adds to a PyTorch training loop.

One process times the same loop (``torch.optim.SGD``, one parameter group per layer, batch 128,
cross-entropy) with and without the scheduler, interleaved (plain, scheduled, plain, ...) so that
both see the same machine load, from the same initial weights and minibatches, and keeps the best
of ``--repeats`` runs of each. Workloads: an MLP 784-1024-512-10 (1.33M parameters) on 28x28
inputs and a small CNN (2 convolutions + 2 dense layers, 0.42M parameters), on random inputs
labelled by a fixed random linear map (learnable, so the training does not diverge). The scheduled
loop pays for the gradient statistics of every step, and at every decision (every ``--interval``
steps, as in meta-training) for the validation loss (``--val-size`` examples), the observation and
the policy's forward pass; the table splits the validation loss out because a training loop
usually computes one anyway. ``--policy`` defaults to the packaged pretrained policy.

    python benchmarks/torch_scheduler_overhead.py [--steps 1000 --repeats 5 --threads 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from ganno.torch.networks import layerwise_param_groups
from ganno.torch.scheduler import GannoScheduler


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )


def cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 7 * 7, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )


def train(
    model, data, steps: int, policy=None, interval: int = 50, lr0: float = 0.01
) -> tuple[float, float]:
    """Seconds for ``steps`` steps (and of them, seconds in the validation loss)."""
    x, y, batches, x_val, y_val = data
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=lr0)
    val_time = [0.0]

    def val_loss():
        start = time.perf_counter()
        with torch.no_grad():
            value = F.cross_entropy(model(x_val), y_val)
        val_time[0] += time.perf_counter() - start
        return value

    sched = None
    if policy is not None:
        sched = GannoScheduler(
            optimizer,
            policy,
            val_loss_fn=val_loss,
            steps_per_decision=interval,
            num_decisions=steps // interval,
        )
    start = time.perf_counter()
    for step in range(steps):
        idx = batches[step]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        if sched is not None:
            sched.observe_gradients(loss)
        optimizer.step()
        if sched is not None:
            sched.step()
    return time.perf_counter() - start, val_time[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--val-size", type=int, default=512)
    parser.add_argument(
        "--interval", type=int, default=50, help="steps per decision (the policy's k = 50)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--policy", help="a policy folder (default: the packaged pretrained one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from ganno.policy import Policy

    if args.policy:
        policy = Policy.load(args.policy)
    else:
        from ganno.pretrained import load

        policy = load()
    # a learnable task (labels of a fixed random linear map), so no run diverges and each takes
    # every decision
    x, x_val = torch.randn(8192, 1, 28, 28), torch.randn(args.val_size, 1, 28, 28)
    teacher = torch.randn(784, 10)
    data = (
        x,
        (x.flatten(1) @ teacher).argmax(1),
        torch.randint(0, 8192, (args.steps, args.batch_size)),
        x_val,
        (x_val.flatten(1) @ teacher).argmax(1),
    )
    print(
        f"{args.steps} steps, batch {args.batch_size}, {args.threads} threads, "
        f"validation {args.val_size}, best of {args.repeats} interleaved runs"
    )
    print("| model | parameters | without (s) | with (s) | added | of which validation loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        model0 = {"mlp": mlp, "cnn": cnn}[name]()
        size = sum(p.numel() for p in model0.parameters())
        train(copy.deepcopy(model0), data, args.steps, policy, args.interval)  # warm-up (JAX jit)
        plain, scheduled, val = [], [], []
        for _ in range(args.repeats):
            plain.append(train(copy.deepcopy(model0), data, args.steps)[0])
            seconds, val_seconds = train(
                copy.deepcopy(model0), data, args.steps, policy, args.interval
            )
            scheduled.append(seconds)
            val.append(val_seconds)
        best = min(range(args.repeats), key=lambda i: scheduled[i])
        base = min(plain)
        print(
            f"| {name} | {size / 1e6:.2f}M | {base:.2f} | {scheduled[best]:.2f} | "
            f"{100 * (scheduled[best] / base - 1):+.1f}% | {100 * val[best] / base:.1f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
