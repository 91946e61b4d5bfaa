"""Where a scheduled PyTorch loop's wall-clock goes, phase by phase, against the plain loop's: is
the scheduler's cost the time inside its calls, or does it slow the rest of the loop?

The loops of ``torch_scheduler_overhead.py`` (its MLP or CNN, batch 128, validating 512 examples
every 50 steps and handing the value to the scheduler; the plain loop replays the scheduled run's
per-step rates, so both train the same trajectory, checked bitwise on the final weights), run
``--repeats`` times each, interleaved. Per run, the wall-clock of each phase: forward and backward
(``fb``), the scheduler's calls (``call``; the plain loop's rate setting), ``optimizer.step()``
(``opt``), the validation (``val``), and the whole loop. Printed: each phase's runs (sorted) and
median, the median added wall-clock and the median in-call share; and the per-step difference of
the forward-backward phase by position in the interval (step 0 follows a decision), the medians
over the intervals of the runs' fastest times.

    python benchmarks/torch_loop_phases.py [--model mlp] [--repeats 8]
        [--gradient-statistics weight_changes]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_scheduler_overhead import cnn, mlp, random_teacher_data

from ganno.torch.networks import layerwise_param_groups
from ganno.torch.scheduler import GannoScheduler

PHASES = ("fb", "call", "opt", "val", "total")


def run(model0, data, policy, args, rates=None) -> dict:
    """One loop: scheduled when ``rates`` is None, else the plain loop replaying ``rates``."""
    x, y, batches, x_val, y_val = data
    model = copy.deepcopy(model0)
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=args.lr0)
    sched = None
    if rates is None:
        sched = GannoScheduler(
            optimizer,
            policy,
            steps_per_decision=args.interval,
            num_decisions=args.steps // args.interval,
            gradient_statistics=args.gradient_statistics,
        )
    times = dict.fromkeys(PHASES, 0.0)
    per_step, used = [], []
    start = time.perf_counter()
    with torch.no_grad():
        val = F.cross_entropy(model(x_val), y_val)
    for step in range(args.steps):
        t0 = time.perf_counter()
        idx = batches[step]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        t1 = time.perf_counter()
        if sched is not None:
            sched.observe_gradients(loss, val_loss=val if step == 0 else None)
            used.append([g["lr"] for g in optimizer.param_groups])
        else:
            for group, lr in zip(optimizer.param_groups, rates[step], strict=True):
                group["lr"] = lr
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        val = None
        if (step + 1) % args.interval == 0:
            with torch.no_grad():
                val = F.cross_entropy(model(x_val), y_val)
        t4 = time.perf_counter()
        if sched is not None:
            sched.step(val_loss=val)
        t5 = time.perf_counter()
        per_step.append(t1 - t0)
        times["fb"] += t1 - t0
        times["call"] += (t2 - t1) + (t5 - t4)
        times["opt"] += t3 - t2
        times["val"] += t4 - t3
    times["total"] = time.perf_counter() - start
    times["per_step"] = per_step
    times["weights"] = [p.detach().clone() for p in model.parameters()]
    times["rates"] = used
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr0", type=float, default=0.001)
    parser.add_argument("--gradient-statistics", default="weight_changes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from ganno.pretrained import load

    policy = load()
    model0 = {"mlp": mlp, "cnn": cnn}[args.model]()
    data = random_teacher_data(args.steps, 128, 512)
    rates = run(model0, data, policy, args)["rates"]  # warm-up (JAX jit); the rates replayed
    plain, scheduled = [], []
    for _ in range(args.repeats):
        plain.append(run(model0, data, policy, args, rates=rates))
        scheduled.append(run(model0, data, policy, args))
    same = all(
        torch.equal(a, b) for a, b in zip(plain[0]["weights"], scheduled[0]["weights"], strict=True)
    )
    print(
        f"{args.model}, gradient statistics {args.gradient_statistics}, lr0 {args.lr0:g}, "
        f"{args.steps} steps, {args.threads} threads, {args.repeats} interleaved runs each; "
        f"the same final weights: {same}"
    )
    print("| phase | plain: median s | scheduled: median s | plain runs | scheduled runs |")
    print("| --- | --- | --- | --- | --- |")
    for phase in PHASES:
        a, b = [t[phase] for t in plain], [t[phase] for t in scheduled]
        print(
            f"| {phase} | {statistics.median(a):.3f} | {statistics.median(b):.3f} | "
            f"{' '.join(f'{v:.2f}' for v in sorted(a))} | "
            f"{' '.join(f'{v:.2f}' for v in sorted(b))} |"
        )
    base = statistics.median(t["total"] for t in plain)
    added = statistics.median(t["total"] for t in scheduled) / base - 1
    call = statistics.median(t["call"] for t in scheduled) / base
    print(
        f"\nmedian added wall-clock {100 * added:+.2f}%, median inside the calls {100 * call:.2f}%"
    )
    fastest = lambda runs: np.min([t["per_step"] for t in runs], axis=0)  # noqa: E731
    extra = (fastest(scheduled) - fastest(plain)).reshape(-1, args.interval)
    print(
        "forward-backward, scheduled minus plain, by step of the interval (microseconds): "
        + " ".join(f"{1e6 * v:.0f}" for v in np.median(extra, axis=0))
    )


if __name__ == "__main__":
    main()
