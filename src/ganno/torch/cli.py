"""The ``ganno torch-eval`` command (wired into :mod:`ganno.cli` by :func:`add_torch_commands`).

Nothing here imports PyTorch until the command runs, so the rest of the command line stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _cmd_torch_eval(args: argparse.Namespace) -> int:
    from ganno.config import load_config
    from ganno.io import check_writable

    cfg = load_config(args.config)
    check_writable(args.out)  # before the runs
    import torch

    torch.set_num_threads(max(1, int(args.threads)))
    from ganno.torch.evaluation import torch_deployment, write_csv_atomic

    start = time.perf_counter()
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    df = torch_deployment(cfg, [Path(p) for p in args.policy or []], progress=progress)
    write_csv_atomic(df, args.out)
    print(
        f"{len(df)} runs ({df['method'].nunique()} methods on {', '.join(df['task'].unique())}) "
        f"in {time.perf_counter() - start:.1f} s -> {args.out}"
    )
    return 0


def add_torch_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``torch-eval`` to the ``ganno`` command line's subcommands."""
    te = subparsers.add_parser(
        "torch-eval",
        help="trained policies driving PyTorch training (GannoScheduler) vs PyTorch baselines",
        description=(
            "On the config's training data, train PyTorch networks (torch_deployment.networks) "
            "from every initial rate and seed of the torch_deployment block with the "
            "GannoScheduler (one row per --policy) and PyTorch SGD baselines; write one results "
            "table (the columns of the other results tables)."
        ),
    )
    te.add_argument(
        "--config", type=Path, required=True, help="the pipeline config (torch_deployment block)"
    )
    te.add_argument(
        "--policy",
        type=Path,
        action="append",
        help="a policy folder (run/policy); repeat for several meta-training seeds",
    )
    te.add_argument("--out", type=Path, required=True, help="results CSV (written atomically)")
    te.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1)")
    te.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    te.set_defaults(func=_cmd_torch_eval)
