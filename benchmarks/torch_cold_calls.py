"""What one small call costs right after a PyTorch backward pass, against the same call made
again at once: the floor under ``GannoScheduler``'s per-step work (docs/torch.md, "Overhead").

The loop is ``benchmarks/torch_scheduler_overhead.py``'s MLP (1.33M parameters, batch 128). After
each ``backward()`` a tiny operation is timed twice in a row, the first call paying whatever the
backward pass evicted, the second not; the same after ``optimizer.step()``. Each value is the
mean over the steps after a warm-up, in microseconds.

    python benchmarks/torch_cold_calls.py [--steps 300 --threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_scheduler_overhead import mlp

CALLS = {
    "torch.dot on 90k floats (a sampled row)": lambda t, a: torch.dot(t, t),
    "tensor.numpy() of 3 floats": lambda t, a: a["small"].numpy(),
    "NumPy array multiply (3 floats)": lambda t, a: a["array"] * np.float32(3),
    "NumPy clip (3 floats)": lambda t, a: a["array"].clip(max=np.float32(2)),
    "NumPy float32 scalar multiply": lambda t, a: a["scalar"] * a["scalar"],
    "tensor.tolist() of 3 floats": lambda t, a: a["small"].tolist(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    row = torch.randn(90_000)
    extra = {"small": torch.ones(3), "array": np.ones(3, np.float32), "scalar": np.float32(1.5)}
    warm = args.steps // 5
    print(f"{args.steps} steps ({warm} warm-up), {args.threads} threads; mean microseconds")
    print("| call | first after backward | again at once | first after optimizer.step |")
    print("| --- | --- | --- | --- |")
    for name, call in CALLS.items():
        totals = np.zeros(3)
        for step in range(args.steps):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            t0 = time.perf_counter()
            call(row, extra)
            t1 = time.perf_counter()
            call(row, extra)
            t2 = time.perf_counter()
            optimizer.step()
            t3 = time.perf_counter()
            call(row, extra)
            t4 = time.perf_counter()
            if step >= warm:
                totals += (t1 - t0, t2 - t1, t4 - t3)
        first, again, after_step = 1e6 * totals / (args.steps - warm)
        print(f"| {name} | {first:.1f} | {again:.1f} | {after_step:.1f} |")


if __name__ == "__main__":
    main()
