"""``ganno meta-train``: meta-training an agent of the config on its task."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno.cli.common import CONFIG_HELP, _agent_name
from ganno.config import load_config
from ganno.io import check_writable_folder


def _cmd_meta_train(args: argparse.Namespace) -> int:
    from ganno import agents
    from ganno.config import agent_config
    from ganno.env import make_envs
    from ganno.meta_train import meta_train

    name = _agent_name(args)
    cfg = agent_config(load_config(args.config), name)
    algo = agents.get(cfg, name).algorithm
    check_writable_folder(args.out)  # before loading data and compiling
    env = make_envs(cfg)  # a list with a task family
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    summary = meta_train(
        env,
        cfg,
        algo,
        args.seed,
        args.out,
        seeds_vmapped=seeds,
        progress=not args.no_progress,
        env_name="ganno",
        task_name=cfg["task"]["dataset"],
    )
    print(
        f"{name} ({algo}): {summary['updates']} updates, "
        f"{summary['env_steps']} agent decisions; "
        f"final mean return {summary['final_return']:.4f}; written to {summary['out_dir']}"
    )
    return 0


def _add_meta_train(sub: argparse._SubParsersAction) -> None:
    """The parser of meta-train."""
    mt = sub.add_parser("meta-train", help="meta-train an agent of the config on its task")
    mt.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    mt.add_argument(
        "--agent", help="an entry of the config's agents (its algorithm and overrides), e.g. ippo"
    )
    mt.add_argument("--algo", help=argparse.SUPPRESS)  # deprecated: --agent
    mt.add_argument("--variant", help=argparse.SUPPRESS)  # deprecated: --agent
    mt.add_argument("--seed", type=int, default=0, help="meta-training seed (default 0)")
    mt.add_argument(
        "--seeds", help="comma-separated seeds trained side by side (vmapped); replaces --seed"
    )
    mt.add_argument("--out", type=Path, required=True, help="run folder (rerun it to resume)")
    mt.add_argument("--no-progress", action="store_true", help="no progress bar")
    mt.set_defaults(func=_cmd_meta_train)
