"""The wall-clock that ``GannoScheduler`` adds to a PyTorch training loop.

One process times the same loop (``torch.optim.SGD``, one parameter group per layer, batch 128,
cross-entropy) with and without the scheduler, interleaved (plain, scheduled, plain, ...) so that
both see the same machine load, from the same initial weights and minibatches, and keeps the best
of ``--repeats`` runs of each. The plain loop sets, before each step, the rates the scheduled run
used at that step (recorded in the warm-up run), as a plain schedule would: both loops train the
same trajectory (the same arithmetic, denormals included), so the difference is the scheduler's.
Workloads: an MLP 784-1024-512-10 (1.33M parameters) on 28x28 inputs and a small CNN (2
convolutions + 2 dense layers, 0.41M parameters), on random inputs labelled by a fixed random linear
map (learnable, so the training does not diverge). The scheduled
loop pays for the gradient statistics of every step (measured both ways, ``--gradient-sample``:
every entry, and the scheduler's default, large tensors read on a fixed 1/16 of their entries, see
``ganno.torch.sampling``), and at every decision (every ``--interval``
steps, as in meta-training) for the validation loss (``--val-size`` examples), the observation and
the policy's forward pass. Each model is measured twice: once with a plain loop that does not
validate (the scheduler computes the validation loss itself, through ``val_loss_fn``, and it counts
as overhead), once with loops that both validate before training and every ``--interval`` steps on
the same ``--val-size`` examples -- a practitioner's cadence: 512 examples every 50 steps is one
pass over a 10k validation set per 1000 steps, i.e. about once per two MNIST epochs at batch 128 --
and hand that value to the scheduler (``sched.step(val_loss=...)``), which then adds only its own
work. ``--policy`` defaults to the packaged pretrained policy.

Columns: the best wall-clock and CPU time of each loop, the scheduled loop's added wall-clock and
CPU time, the CPU time spent inside the scheduler's calls (``observe_gradients`` + ``step``)
relative to the plain loop's CPU time, the wall-clock inside them relative to the plain loop's
wall-clock (what they add to the loop's, the issue's measure), and of the CPU the validation loss
the scheduler computed itself: on a machine shared with other jobs the difference of two totals
is noisy (a few %), while the time inside the calls is measured directly.

    python benchmarks/torch_scheduler_overhead.py [--steps 1000 --repeats 5 --threads 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from ganno.torch.networks import layerwise_param_groups
from ganno.torch.sampling import SAMPLE_FRACTION
from ganno.torch.scheduler import GannoScheduler, TrainingDivergedError


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


def random_teacher_data(steps: int, batch_size: int, val_size: int):
    """8192 random 28x28 inputs labelled by a fixed random linear map (learnable, so the training
    does not diverge), each step's minibatch indices, and ``val_size`` validation examples:
    ``(x, y, batches, x_val, y_val)``."""
    x, x_val = torch.randn(8192, 1, 28, 28), torch.randn(val_size, 1, 28, 28)
    teacher = torch.randn(784, 10)
    return (
        x,
        (x.flatten(1) @ teacher).argmax(1),
        torch.randint(0, 8192, (steps, batch_size)),
        x_val,
        (x_val.flatten(1) @ teacher).argmax(1),
    )


def train(
    model,
    data,
    steps: int,
    policy=None,
    interval: int = 50,
    lr0: float = 0.01,
    validate: bool = False,
    scheduler_cls=GannoScheduler,
    rates: list[list[float]] | None = None,
    gradient_sample: float | None = SAMPLE_FRACTION,
    gradient_statistics: str = "read",
) -> dict:
    """Wall-clock and CPU seconds of ``steps`` steps; with a policy also the CPU seconds spent in
    the scheduler's calls and, of them, in the validation loss, and the rates each step used
    (``times["rates"]``).

    ``validate``: the loop itself computes the validation loss before training and after every
    ``interval``-th step (with or without the scheduler), and the scheduler is handed that value
    instead of calling ``val_loss_fn``: the loop of a practitioner who validates anyway.
    ``rates``: without a policy, each step's per-group rates (a scheduled run's ``rates``), set
    before each optimiser step as a plain schedule would: the plain loop then trains the very
    trajectory of the scheduled one, so the difference of the two is the scheduler's own work.
    """
    x, y, batches, x_val, y_val = data
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=lr0)
    times = {"sched_cpu": 0.0, "sched_wall": 0.0, "val_cpu": 0.0}

    def val_loss():
        start = time.process_time()
        with torch.no_grad():
            value = F.cross_entropy(model(x_val), y_val)
        times["val_cpu"] += time.process_time() - start
        return value

    sched = None
    if policy is not None:
        sched = scheduler_cls(
            optimizer,
            policy,
            val_loss_fn=None if validate else val_loss,
            steps_per_decision=interval,
            num_decisions=steps // interval,
            gradient_sample=gradient_sample,
            gradient_statistics=gradient_statistics,
        )
    used = []  # each step's rates, read after the loop's timing (see below)
    groups = optimizer.param_groups
    wall, cpu = time.perf_counter(), time.process_time()
    val = val_loss() if validate else None
    for step in range(steps):
        idx = batches[step]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        if sched is not None:
            start, start_wall = time.process_time(), time.perf_counter()
            sched.observe_gradients(loss, val_loss=val if step == 0 else None)
            times["sched_cpu"] += time.process_time() - start
            times["sched_wall"] += time.perf_counter() - start_wall
            used.append([g["lr"] for g in groups])
        elif rates is not None:
            for group, lr in zip(groups, rates[step], strict=True):
                group["lr"] = lr
        optimizer.step()
        val = val_loss() if validate and (step + 1) % interval == 0 else None
        if sched is not None:
            start, start_wall = time.process_time(), time.perf_counter()
            sched.step(val_loss=val)
            times["sched_cpu"] += time.process_time() - start
            times["sched_wall"] += time.perf_counter() - start_wall
    times["wall"] = time.perf_counter() - wall
    times["cpu"] = time.process_time() - cpu
    times["rates"] = used
    # the validation loss the scheduler computed itself (inside its calls), none if handed one
    times["sched_val_cpu"] = 0.0 if validate else times["val_cpu"]
    return times


def compare(model0, data, steps: int, policy, interval: int, repeats: int, **kw) -> dict:
    """Best of ``repeats`` interleaved runs (plain, scheduled, plain, ...) from the same weights:
    wall and CPU seconds of each loop, the added fractions, and the CPU in the scheduler's calls
    (and in the validation loss it computes itself) relative to the plain loop's CPU time."""
    # warm-up (JAX jit), and the rates the plain loop replays
    rates = train(copy.deepcopy(model0), data, steps, policy, interval, **kw)["rates"]
    plain, scheduled = [], []
    for _ in range(repeats):
        plain.append(train(copy.deepcopy(model0), data, steps, rates=rates, **kw))
        run = train(copy.deepcopy(model0), data, steps, policy, interval, **kw)
        if run["rates"] != rates:
            raise RuntimeError("the scheduled runs did not repeat: the replay would differ")
        scheduled.append(run)
    base = min(plain, key=lambda t: t["wall"])
    best = min(scheduled, key=lambda t: t["wall"])
    base_cpu = min(t["cpu"] for t in plain)
    best_cpu = min(t["cpu"] for t in scheduled)
    return {
        "wall": (base["wall"], best["wall"]),
        "cpu": (base_cpu, best_cpu),
        "added_wall": best["wall"] / base["wall"] - 1,
        "added_cpu": best_cpu / base_cpu - 1,
        # the least load-sensitive ratio: time measured inside the scheduler's own calls
        "calls": min(t["sched_cpu"] for t in scheduled) / base_cpu,
        # the wall-clock inside the calls over the plain loop's: what the scheduler adds to a
        # loop's wall-clock when its calls do not slow the rest (CPU time also counts the other
        # intra-op thread's spinning while a call runs its small operations)
        "calls_wall": min(t["sched_wall"] for t in scheduled) / base["wall"],
        "own_val": min(t["sched_val_cpu"] for t in scheduled) / base_cpu,
    }


def sample_name(fraction: float | None, statistics: str = "read") -> str:
    entries = "every entry" if fraction is None else f"1/{round(1 / fraction)} of large tensors"
    if statistics == "weight_changes":
        return f"from the weights' changes ({entries})"
    return entries


def row(
    name: str, size: int, validate: bool, fraction: float | None, r: dict, statistics: str = "read"
) -> str:
    (w0, w1), (c0, c1) = r["wall"], r["cpu"]
    return (
        f"| {name} | {size / 1e6:.2f}M | {'yes' if validate else 'no'} | "
        f"{sample_name(fraction, statistics)} | {w0:.2f} ({c0:.2f}) | "
        f"{w1:.2f} ({c1:.2f}) | {100 * r['added_wall']:+.1f}% | {100 * r['added_cpu']:+.1f}% | "
        f"{100 * r['calls']:.1f}% | {100 * r['calls_wall']:.1f}% | {100 * r['own_val']:.1f}% |"
    )


HEADER = (
    "| model | parameters | loop validates | gradient statistics | without: wall s (CPU s) | "
    "with: wall s (CPU s) | added wall | added CPU | scheduler calls (CPU) | "
    "scheduler calls (wall) | of which its validation loss (CPU) |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


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
    parser.add_argument(
        "--lr0",
        type=float,
        default=0.001,
        help="the initial rate (the policy must not diverge: from 0.01 the shipped policy drives "
        "the MLP to a NaN near step 520 with the statistics from the weights' changes)",
    )
    parser.add_argument(
        "--gradient-sample",
        default=f"none,{SAMPLE_FRACTION}",
        help="comma-separated GannoScheduler(gradient_sample=...) values to measure, 'none' for "
        "every entry (default: both, exact and the scheduler's default)",
    )
    parser.add_argument(
        "--gradient-statistics",
        default="weight_changes,read",
        help="comma-separated GannoScheduler(gradient_statistics=...) values to measure: "
        "weight_changes (from the weights' changes: what the default 'auto' takes for these "
        "loops' plain SGD) and/or read (every step's gradients, as any other optimiser gets)",
    )
    args = parser.parse_args()
    modes = [m.strip() for m in args.gradient_statistics.split(",")]
    samples = [
        None if v.strip().lower() == "none" else float(v) for v in args.gradient_sample.split(",")
    ]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from ganno.policy import Policy

    if args.policy:
        policy = Policy.load(args.policy)
    else:
        from ganno.pretrained import load

        policy = load()
    data = random_teacher_data(args.steps, args.batch_size, args.val_size)
    print(
        f"{args.steps} steps, batch {args.batch_size}, {args.threads} threads, validation "
        f"{args.val_size} every {args.interval} steps, best of {args.repeats} interleaved runs"
    )
    print(HEADER)
    for name in args.models.split(","):
        model0 = {"mlp": mlp, "cnn": cnn}[name]()
        size = sum(p.numel() for p in model0.parameters())
        cells = [(v, f, m) for v in (False, True) for m in modes for f in samples]
        for validate, fraction, mode in cells:
            try:
                r = compare(
                    model0,
                    data,
                    args.steps,
                    policy,
                    args.interval,
                    args.repeats,
                    validate=validate,
                    lr0=args.lr0,
                    gradient_sample=fraction,
                    gradient_statistics=mode,
                )
            except TrainingDivergedError as error:
                raise SystemExit(
                    f"{name}: the policy's run diverged from lr0 = {args.lr0} ({error}); a "
                    "diverged run stops deciding, so its time is not the scheduler's: pass a "
                    "smaller --lr0"
                ) from None
            print(row(name, size, validate, fraction, r, mode), flush=True)


if __name__ == "__main__":
    main()
