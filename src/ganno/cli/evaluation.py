"""Evaluating policies and baselines: ``ganno run-policy`` (one episode, its trajectory),
``ganno baselines``, ``ganno sweep`` and ``ganno generalise`` (the lr0 grid's tables), and how
they find a policy and the config to run it with."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from ganno.cli.common import CONFIG_HELP, _agent_name
from ganno.config import load_config
from ganno.errors import ConfigError, GannoWarning, UsageError
from ganno.io import atomic_write, check_writable, write_csv, write_json

#: The help of ``--policy`` (a folder or a shipped policy's name: :func:`_policy_folder`).
POLICY_HELP = "a policy folder (run/policy) or a shipped policy's name (ganno pretrained show)"


def _policy_folder(text: str) -> Path:
    """An argparse type: a policy folder, or the name of a policy shipped with the package (when
    no such folder exists here)."""
    from ganno import pretrained

    path = Path(text)
    if not path.exists() and text in pretrained.available():
        return pretrained.directory(text)
    return path


def _run_config_of(policy_dir: Path) -> Path:
    """The resolved config that a meta-training run wrote beside its policy."""
    for candidate in (policy_dir.parent / "config.yaml", policy_dir.parent.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no settings.json in the policy {policy_dir} and no config.yaml beside it (looked in its "
        "parent folders); pass --config with the config the policy was trained with"
    )


def _policy_config(config: Path | None, policies: list[Path], agent: str | None = None) -> dict:
    """The config to run ``policies`` with: ``--config`` (with ``agent``'s overrides, if given),
    refused where it gives a policy other actions or features than the settings it ships with;
    without it, the settings the policies ship with (``settings.json``), else the config.yaml
    their runs wrote, the same for every policy."""
    from ganno import pretrained

    if config is not None:
        cfg = load_config(config)
        if agent is not None:
            from ganno.config import agent_config

            cfg = agent_config(cfg, agent)
        for policy in policies:
            pretrained.check_config(cfg, policy)
        return cfg
    configs = []
    for policy in policies:
        shipped = pretrained.settings_config(policy)
        configs.append(shipped if shipped is not None else load_config(_run_config_of(policy)))
    if any(cfg != configs[0] for cfg in configs[1:]):
        raise UsageError(
            "the policies were meta-trained with different settings; give --config (the one "
            "they should all run with) or run them one at a time"
        )
    return configs[0]


def _clipped_lr0(lr0: float, bounds: tuple[float, float]) -> float:
    """``lr0`` clipped to the environment's learning-rate bounds, with a warning if it changes."""
    low, high = bounds
    effective = min(max(lr0, low), high)
    if effective != lr0:
        warnings.warn(
            f"--lr0 {lr0:g} is outside env.lr_bounds [{low:g}, {high:g}]: the run starts from "
            f"{effective:g} (recorded as lr0, the request as lr0_requested)",
            GannoWarning,
            stacklevel=2,
        )
    return effective


def _learning_rate(text: str) -> float:
    """An argparse type: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a learning rate; give a positive, finite number such as 0.01"
        )
    return value


def _cmd_run_policy(args: argparse.Namespace) -> int:
    import jax

    from ganno.config import task_config
    from ganno.data import load_from_config
    from ganno.env import make_env
    from ganno.evaluate import keep_rate, play_episode
    from ganno.policy import Policy, check_policy_fits

    out = check_writable(args.out)
    policy_dir = Path(args.policy)
    policy = Policy.load(policy_dir)
    cfg = _policy_config(args.config, [policy_dir])
    if args.task != "train":
        cfg = task_config(cfg, args.task)
    dataset = load_from_config(cfg)
    env = make_env(cfg, dataset, evaluation=True)
    check_policy_fits(policy, env, policy_dir, args.task)
    lr0 = _clipped_lr0(args.lr0, env.lr_bounds)
    carry = None
    if args.controller == "policy":
        act = lambda c, obs, key: policy.step(c, obs, key, greedy=not args.sample)  # noqa: E731
        carry = policy.initial_carry(env.num_agents)
    else:
        act = keep_rate(env)
    episode = jax.jit(
        lambda key, lr0: play_episode(
            env, act, key, lr0, dataset.x_test, dataset.y_test, carry=carry
        )
    )
    t = jax.tree.map(lambda x: x.tolist(), episode(jax.random.PRNGKey(args.seed), lr0))
    last = sum(t.active) - 1
    record = {
        "policy": str(policy_dir),
        "controller": args.controller,
        "task": args.task,
        "dataset": cfg["task"]["dataset"],
        "network": cfg["task"]["network"],
        "lr0": lr0,
        "lr0_requested": args.lr0,
        "seed": args.seed,
        "steps_per_decision": env.steps_per_decision,
        "num_agents": env.num_agents,
        "decisions": [
            {
                "decision": d,
                "step": d * env.steps_per_decision,
                "learning_rates": t.learning_rates[d],
                "train_loss": t.train_loss[d],
                "val_loss": t.val_loss[d],
                "val_accuracy": t.val_accuracy[d],
            }
            for d in range(last + 1)
        ],
        "diverged": t.diverged,
        "final_val_loss": t.val_loss[last],
        "final_val_accuracy": t.val_accuracy[last],
        "test_loss": t.test_loss,
        "test_accuracy": t.test_accuracy,
    }
    write_json(out, record)  # strict JSON: a diverged run's infinite loss is written as null
    print(
        f"test loss {t.test_loss:.4f}, test accuracy {t.test_accuracy:.4f}"
        f"{' (diverged)' if t.diverged else ''}; trajectory written to {out}"
    )
    return 0


def _skip_if_unavailable(cfg: dict, task: str, out: Path, columns) -> bool:
    """Write an empty table with a note when a task's dataset is absent; True if skipped."""
    import pandas as pd

    from ganno.data import task_unavailable_reason

    reason = task_unavailable_reason(cfg, task)
    if reason is None:
        return False
    write_csv(pd.DataFrame(columns=list(columns)), out)
    atomic_write(str(out) + ".skipped", reason + "\n")
    print(f"skipped task {task!r}: {reason}", file=sys.stderr)
    return True


def _cmd_baselines(args: argparse.Namespace) -> int:
    from ganno.experiments import COLUMNS, run_baselines

    cfg = load_config(args.config)
    check_writable(args.out)  # before the grid is computed
    if _skip_if_unavailable(cfg, args.task, args.out, COLUMNS):
        return 0
    methods = args.methods.split(",") if args.methods else None
    df = run_baselines(cfg, args.task, methods)
    write_csv(df, args.out)
    print(f"{len(df)} runs of {df['method'].nunique()} baselines on {args.task} -> {args.out}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import pandas as pd

    from ganno import agents, pretrained
    from ganno.experiments import COLUMNS, PolicyRun, run_policies

    count = len(args.policy)
    meta_seeds = args.meta_seed or [-1] * count
    shipped_agents = {pretrained.shipped_agent(p) for p in args.policy}
    shipped_agent = shipped_agents.pop() if len(shipped_agents) == 1 else None
    given = _agent_name(args, required=args.name is None and shipped_agent is None)
    agent = given or shipped_agent
    names = args.name or [agents.method_name(agent)] * count
    for flag, values in (("--name", names), ("--out", args.out), ("--meta-seed", meta_seeds)):
        if len(values) != count:
            raise UsageError(
                f"{count} --policy but {len(values)} {flag}: give one {flag} per --policy, in "
                "the same order"
            )
    if args.schedules and len(args.schedules) != count:
        raise UsageError(
            f"{count} --policy but {len(args.schedules)} --schedules: give one per --policy or none"
        )
    for path in [*args.out, *(args.schedules or [])]:
        check_writable(path)  # before the policies run
    cfg = _policy_config(args.config, args.policy, given)
    skipped = [_skip_if_unavailable(cfg, args.task, out, COLUMNS) for out in args.out]
    if any(skipped):
        for path in args.schedules or []:
            write_csv(pd.DataFrame(), path)
        return 0
    runs = [PolicyRun(*run) for run in zip(args.policy, names, meta_seeds, strict=True)]
    tables = run_policies(cfg, args.task, runs, greedy=not args.sample)
    for i, (results, schedules) in enumerate(tables):
        write_csv(results, args.out[i])
        if args.schedules:
            write_csv(schedules, args.schedules[i])
        print(f"{len(results)} runs of {names[i]} on {args.task} -> {args.out[i]}")
    return 0


def _add_run_policy(sub: argparse._SubParsersAction) -> None:
    """The parser of run-policy."""
    from ganno import pretrained

    rp = sub.add_parser("run-policy", help="train an inner network with a policy in control")
    rp.add_argument(
        "--policy",
        type=_policy_folder,
        default=pretrained.DEFAULT,
        help=f"{POLICY_HELP}; default: the shipped {pretrained.DEFAULT!r}",
    )
    rp.add_argument(
        "--config",
        type=Path,
        help="the config to run it with (default: the settings the policy ships with, else the "
        "config.yaml its run wrote); refused if it gives the policy other actions or features "
        "than it was meta-trained with",
    )
    rp.add_argument(
        "--task",
        default="train",
        help="'train' (the meta-training task) or a generalisation task's name",
    )
    rp.add_argument(
        "--lr0",
        type=_learning_rate,
        required=True,
        help="initial learning rate of all layers (clipped to env.lr_bounds, with a warning)",
    )
    rp.add_argument(
        "--seed", type=int, default=0, help="seed of the network's initial weights and batches"
    )
    rp.add_argument(
        "--controller",
        choices=["policy", "constant"],
        default="policy",
        help="'constant' keeps lr0 throughout (the plain-SGD reference)",
    )
    rp.add_argument("--sample", action="store_true", help="sample actions instead of greedy")
    rp.add_argument("--out", type=Path, required=True, help="trajectory JSON to write")
    rp.set_defaults(func=_cmd_run_policy)


def _add_experiments(sub: argparse._SubParsersAction) -> None:
    """The parser of the experiments: baselines, sweep, generalise."""
    bl = sub.add_parser("baselines", help="every baseline on a task over the lr0 grid")
    bl.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    bl.add_argument(
        "--task",
        default="train",
        help="'train' (the meta-training task) or a generalisation task's name",
    )
    bl.add_argument("--methods", help="comma-separated subset of the configured baselines")
    bl.add_argument("--out", type=Path, required=True, help="results CSV")
    bl.set_defaults(func=_cmd_baselines)

    for name, helptext, default_task in (
        ("sweep", "a trained policy from every lr0 of the grid (C2)", "train"),
        ("generalise", "a trained policy, unchanged, on another task (C3)", None),
    ):
        sw = sub.add_parser(name, help=helptext)
        sw.add_argument(
            "--config",
            type=Path,
            help="the config: its evaluation grid and tasks (default: the settings the policies "
            "ship with, else the config.yaml their runs wrote)",
        )
        sw.add_argument(
            "--policy",
            type=_policy_folder,
            required=True,
            action="append",
            help=f"{POLICY_HELP}; repeat it (with one --name, --out, ... each) to evaluate "
            "several policies in one process and one compilation",
        )
        sw.add_argument(
            "--name",
            action="append",
            help="method name in the table (one per --policy; default ganno_<agent>)",
        )
        sw.add_argument(
            "--meta-seed", type=int, action="append", help="the policy's training seed (default -1)"
        )
        sw.add_argument(
            "--task",
            default=default_task,
            required=default_task is None,
            help="'train' (the meta-training task) or a generalisation or validation task's name"
            + (" (default train)" if default_task else ""),
        )
        sw.add_argument("--sample", action="store_true", help="sample actions instead of greedy")
        sw.add_argument(
            "--out", type=Path, required=True, action="append", help="results CSV, one per --policy"
        )
        sw.add_argument(
            "--schedules",
            type=Path,
            action="append",
            help="CSV of each layer's rate per decision (one per --policy)",
        )
        sw.add_argument(
            "--agent",
            help="the agent (an entry of the config's agents) the policies were meta-trained as: "
            "its env overrides apply, and the method is ganno_<agent>",
        )
        sw.add_argument("--variant", help=argparse.SUPPRESS)  # deprecated: --agent
        sw.set_defaults(func=_cmd_sweep)
