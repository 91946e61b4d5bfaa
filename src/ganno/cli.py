"""The ``ganno`` command line: the pipeline's rules and a user at a shell run the same code."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from ganno.config import dump_config, load_config
from ganno.errors import (
    ConfigError,
    GannoError,
    GannoWarning,
    ResultsError,
    ResultsMissingError,
    UsageError,
)
from ganno.io import atomic_write, check_writable, check_writable_folder, write_csv, write_json


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from ganno import data

    root = args.root
    val_fraction, split_seed = args.val_fraction, args.split_seed
    if args.config is not None:
        cfg = load_config(args.config)
        root = root or cfg["data"]["root"]
        val_fraction = val_fraction if val_fraction is not None else cfg["data"]["val_fraction"]
        split_seed = split_seed if split_seed is not None else cfg["data"]["split_seed"]
    path = data.prepare(
        args.name,
        root=root or "data",
        val_fraction=0.2 if val_fraction is None else val_fraction,
        split_seed=0 if split_seed is None else split_seed,
        download=args.download,
        force=args.force,
        verify=not args.no_verify,
    )
    print(path)
    return 0


def _agent_name(args: argparse.Namespace, required: bool = True) -> str | None:
    """The agent that --agent names, or the deprecated --algo/--variant (with a note on stderr
    saying how to migrate)."""
    given = {f"--{k}": getattr(args, k, None) for k in ("agent", "algo", "variant")}
    named = {flag: v for flag, v in given.items() if v is not None}
    if len(set(named.values())) > 1:
        raise UsageError(
            f"{' and '.join(f'{f} {v}' for f, v in named.items())} name different agents; "
            "give --agent NAME only"
        )
    for flag in ("--algo", "--variant"):
        if flag in named:
            print(
                f"ganno: note: {flag} is deprecated; use --agent {named[flag]} (every algorithm "
                "and variant is an entry of the config's agents)",
                file=sys.stderr,
            )
    if not named and required:
        raise UsageError("give --agent NAME (an entry of the config's agents, e.g. ippo)")
    return next(iter(named.values()), None)


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


def _cmd_design_table(args: argparse.Namespace) -> int:
    from ganno.design_study import write_across_tasks, write_study

    cfg = load_config(args.config)
    for path in write_study(cfg, args.results, args.out, args.question):
        print(path)
    for path in write_across_tasks(cfg, args.results, args.out, keep_absent=args.keep_absent):
        print(path)
    return 0


def _cmd_design_study(args: argparse.Namespace) -> int:
    from ganno.design_study import run_study

    ran = run_study(args.config, args.results, args.question, only=args.only, dry_run=args.dry_run)
    if args.dry_run:
        print(f"{len(ran)} commands to run", file=sys.stderr)
        return 0
    return _cmd_design_table(args)


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


def _cmd_report(args: argparse.Namespace) -> int:
    from ganno.report import build_report

    check_writable_folder(args.out)
    report = build_report(args.results, args.out, load_config(args.config))
    print(f"{len(report.figures)} figures, {len(report.tables)} tables; summary: {report.readme}")
    return 0


def _cmd_grid_study(args: argparse.Namespace) -> int:
    from ganno.grid_study import write_grid_study

    check_writable_folder(args.out.parent)
    paths = write_grid_study(load_config(args.config), args.coarse, args.fine, args.out)
    print(f"the lr0 grid study's table -> {', '.join(map(str, paths))}")
    return 0


def _cmd_notebook(args: argparse.Namespace) -> int:
    from ganno.notebooks import execute_notebook

    execute_notebook(args.notebook, args.out, cwd=args.cwd, timeout=args.timeout)
    print(f"executed {args.notebook} -> {args.out}")
    return 0


def _cmd_pretrained_refresh(args: argparse.Namespace) -> int:
    from ganno.pretrained import refresh, restamp

    if args.in_place:
        if args.summary is not None or args.note is not None:
            raise UsageError(
                "--in-place keeps the recorded headline and note; leave out --summary and --note"
            )
        try:
            print(restamp(args.name, dest=args.dest))
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"--in-place: {exc}") from None
        return 0
    source, selection = args.source, None
    if args.selection is not None:
        from ganno.seed_selection import read_selection

        try:
            selection = read_selection(args.selection)
        except (ResultsError, ResultsMissingError) as exc:
            raise UsageError(f"--selection: {exc}") from None
        source = Path(selection["policy"])
    print(
        refresh(
            source,
            summary=args.summary,
            name=args.name,
            note=args.note,
            dest=args.dest,
            selection=selection,
            guard=args.guard,
        )
    )
    return 0


def _cmd_pretrained_show(args: argparse.Namespace) -> int:
    from ganno import pretrained

    if args.name not in pretrained.available():
        raise UsageError(
            f"no shipped policy {args.name!r}; this installation ships {pretrained.available()}"
        )
    if args.json:
        print(json.dumps(pretrained.info(args.name), indent=1))
    else:
        print(pretrained.describe(args.name), end="")
    return 0


def _cmd_pretrained_select(args: argparse.Namespace) -> int:
    from ganno.seed_selection import select_seed

    check_writable(args.out)
    record = select_seed(load_config(args.config), args.agent, args.results)
    write_json(args.out, record)
    scores = ", ".join(f"seed {s} {v['value']:.4f}" for s, v in record["scores"].items())
    print(f"{args.agent}: seed {record['seed']} selected ({scores}) -> {args.out}")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.out:
        dump_config(cfg, args.out)
    else:
        import yaml

        print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0


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


#: The help of ``--config`` where a command needs one (the pipeline passes results/config.yaml).
CONFIG_HELP = "the config (YAML; config/README.md), e.g. config/config.yaml"
#: The help of ``--policy`` (a folder or a shipped policy's name: :func:`_policy_folder`).
POLICY_HELP = "a policy folder (run/policy) or a shipped policy's name (ganno pretrained show)"


def _add_data(sub: argparse._SubParsersAction) -> None:
    """The parser of the data command: preparing datasets."""
    data_p = sub.add_parser("data", help="datasets").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND"
    )
    prep = data_p.add_parser("prepare", help="build a dataset's fixed splits as .npz + manifest")
    prep.add_argument("name", help="mnist1d, digits, mnist or fashion_mnist")
    prep.add_argument("--config", type=Path, help="take root/val_fraction/split_seed from here")
    prep.add_argument("--root", help="data folder (default: data)")
    prep.add_argument(
        "--val-fraction", type=float, help="share of the training set held out (default 0.2)"
    )
    prep.add_argument(
        "--split-seed", type=int, help="seed of the train/validation split (default 0)"
    )
    prep.add_argument(
        "--download",
        action="store_true",
        help="fetch missing MNIST/Fashion-MNIST files (needs internet)",
    )
    prep.add_argument("--force", action="store_true", help="rebuild even if up to date")
    prep.add_argument(
        "--no-verify",
        action="store_true",
        help="accept MNIST files whose SHA-256 differs from the published one",
    )
    prep.set_defaults(func=_cmd_data_prepare)


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


def _add_design_study(sub: argparse._SubParsersAction) -> None:
    """The parser of the design study's commands."""
    for name, helptext, func in (
        (
            "design-study",
            "run the design study's commands not yet done (config/study.yaml), then its tables",
            _cmd_design_study,
        ),
        (
            "design-table",
            "the design study's tables: its question's, across tasks, and seed by seed",
            _cmd_design_table,
        ),
    ):
        ds = sub.add_parser(name, help=helptext)
        ds.add_argument(
            "--config", type=Path, required=True, help="the study's config (config/study.yaml)"
        )
        ds.add_argument(
            "--results",
            type=Path,
            default=Path("results/study"),
            help="the study's results folder (default results/study)",
        )
        ds.add_argument(
            "--out",
            type=Path,
            default=Path("paper/tables"),
            help="folder of the tables (default paper/tables)",
        )
        ds.add_argument(
            "--question",
            default="design",
            help="the agents' question: design (the main study, design_study.*) or a follow-up "
            "(design_study_<question>.*, with the reference agent); design_study_across_tasks.* "
            "and design_study_seeds.* (each meta-training seed, chosen among by the validation "
            "tasks) have every agent that has run",
        )
        ds.add_argument(
            "--keep-absent",
            action="store_true",
            help="keep the rows of the agents already in design_study_across_tasks.csv (and "
            "design_study_seeds.csv) that have no runs in --results (a study run over several "
            "sessions); refused unless the baselines here are the same numbers as theirs",
        )
        if name == "design-study":
            ds.add_argument(
                "--dry-run", action="store_true", help="print the commands it would run"
            )
            ds.add_argument(
                "--only", nargs="+", metavar="AGENT", help="only these agents of the question"
            )
        ds.set_defaults(func=func)


def _add_report(sub: argparse._SubParsersAction) -> None:
    """The parser of report, grid-study and notebook."""
    rep = sub.add_parser("report", help="figures, tables and paper/README.md from results/")
    rep.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    rep.add_argument(
        "--results", type=Path, default=Path("results"), help="results folder (default results)"
    )
    rep.add_argument(
        "--out", type=Path, default=Path("paper"), help="the report's folder (default paper)"
    )
    rep.set_defaults(func=_cmd_report)

    gs = sub.add_parser(
        "grid-study",
        help="the lr0 grid study's table: the evaluation grid's sweeps beside the fine grid's "
        "(snakemake --cores all grid_study)",
    )
    gs.add_argument("--config", type=Path, required=True, help="the default run's config")
    gs.add_argument(
        "--coarse", type=Path, default=Path("results/sweep"), help="the default run's sweeps"
    )
    gs.add_argument(
        "--fine",
        type=Path,
        default=Path("results/grid_study/sweep"),
        help="the grid study's sweeps (grid_study.lr0_per_decade)",
    )
    gs.add_argument(
        "--out",
        type=Path,
        default=Path("paper/tables/grid_study"),
        help="the table's path without extension (.csv, .md and .tex are written)",
    )
    gs.set_defaults(func=_cmd_grid_study)

    nb = sub.add_parser("notebook", help="execute an analysis notebook, keeping its outputs")
    nb.add_argument("notebook", type=Path, help="the notebook (.ipynb) to run")
    nb.add_argument("--out", type=Path, required=True, help="the executed notebook")
    nb.add_argument("--cwd", type=Path, default=Path("."), help="folder it runs in")
    nb.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    nb.set_defaults(func=_cmd_notebook)


def _add_pretrained(sub: argparse._SubParsersAction) -> None:
    """The parser of pretrained: show, refresh, select."""
    from ganno import pretrained

    pre_p = sub.add_parser(
        "pretrained", help="the policies shipped with the package"
    ).add_subparsers(dest="pretrained_command", required=True, metavar="COMMAND")
    show = pre_p.add_parser(
        "show",
        help="where a shipped policy came from, its design and its headline numbers",
    )
    show.add_argument(
        "name",
        nargs="?",
        default=pretrained.DEFAULT,
        help=f"the shipped policy (default {pretrained.DEFAULT}; the package ships "
        f"{', '.join(pretrained.available()) or 'none'})",
    )
    show.add_argument(
        "--json", action="store_true", help="print everything recorded as JSON instead"
    )
    show.set_defaults(func=_cmd_pretrained_show)
    refresh = pre_p.add_parser(
        "refresh", help="copy a pipeline's policy into the package, with its provenance"
    )
    source = refresh.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", type=Path, help="a run's policy folder")
    source.add_argument(
        "--selection",
        type=Path,
        help="the record of ganno pretrained select: ship the seed it chose, with the record",
    )
    source.add_argument(
        "--in-place",
        action="store_true",
        help="rewrite the shipped policy's settings.json and its provenance's paths from what "
        "its PROVENANCE.json recorded (no run folder needed), keeping the policy and numbers",
    )
    refresh.add_argument("--summary", type=Path, help="the headline numbers (JSON, CSV or text)")
    refresh.add_argument("--name", default="ippo", help="the shipped policy's name")
    refresh.add_argument("--note", help="a sentence on what the policy is (stored as is)")
    refresh.add_argument(
        "--dest", type=Path, help="folder of shipped policies (default: the package's own)"
    )
    refresh.add_argument(
        "--guard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the shipped policy deploys with the guard by default (the pipeline passes "
        "its env.guard, so it deploys as the report evaluated it; default: as the policy records)",
    )
    refresh.set_defaults(func=_cmd_pretrained_refresh)
    select = pre_p.add_parser(
        "select",
        help="choose an agent's meta-training seed on the validation tasks "
        "(evaluation.validation_tasks), from its runs there",
    )
    select.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    select.add_argument("--agent", default="ippo", help="an entry of the config's agents")
    select.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="results folder with the seeds' runs on the validation tasks (default results)",
    )
    select.add_argument("--out", type=Path, required=True, help="the selection record (JSON)")
    select.set_defaults(func=_cmd_pretrained_select)


def _add_config(sub: argparse._SubParsersAction) -> None:
    """The parser of config check."""
    cfg_p = sub.add_parser("config", help="configs").add_subparsers(
        dest="config_command", required=True, metavar="COMMAND"
    )
    check = cfg_p.add_parser("check", help="validate a config and print it with defaults filled")
    check.add_argument("config", type=Path, help="the config (YAML) to check")
    check.add_argument("--out", type=Path, help="write the resolved config here instead")
    check.set_defaults(func=_cmd_config_check)


def build_parser() -> argparse.ArgumentParser:
    from ganno import pretrained

    parser = argparse.ArgumentParser(prog="ganno", description=__doc__)
    parser.add_argument(
        "--version",
        action="version",
        version=f"ganno {pretrained.package_version()}",
        help="print ganno's version and exit",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of every error (ganno's own errors are one line without it)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data(sub)
    _add_meta_train(sub)
    _add_run_policy(sub)
    _add_experiments(sub)
    _add_design_study(sub)
    _add_report(sub)
    _add_pretrained(sub)
    _add_config(sub)
    from ganno.torch.cli import add_torch_commands  # torch-eval (PyTorch deployment)

    add_torch_commands(sub)
    return parser


def _configure_compute(args: argparse.Namespace) -> None:
    """Apply the config's ``compute`` block, which must happen before JAX starts."""
    from ganno.parallel import configure_fast_compile

    path = getattr(args, "config", None)
    if path is not None and load_config(path)["compute"]["fast_compile"]:
        configure_fast_compile()


def _one_line_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ganno's own warnings as one line and passes the
    others to ``show``."""

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, GannoWarning):
            print(f"ganno: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def main(argv: list[str] | None = None) -> int:
    """Run a command; ganno's own errors (:class:`ganno.errors.GannoError`) become one line and
    exit status 2, anything else is a bug and shows its traceback (``--debug``: always)."""
    from ganno.parallel import configure_host_devices

    configure_host_devices()  # before JAX starts: every core becomes a device
    parser = build_parser()
    args = parser.parse_args(argv)
    python_showwarning = warnings.showwarning
    warnings.showwarning = _one_line_warnings(python_showwarning)
    try:
        _configure_compute(args)
        return args.func(args)
    except GannoError as exc:
        if args.debug:
            raise
        print(f"ganno: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if args.debug or (exc.name or "ganno").split(".")[0] == "ganno":
            raise
        print(
            f"ganno: error: `ganno {args.command}` needs {exc.name}, which is not installed here "
            "(the light install ships the policy and its schedulers only): pip install "
            "'ganno[pipeline]'",
            file=sys.stderr,
        )
        return 2
    finally:
        warnings.showwarning = python_showwarning


if __name__ == "__main__":
    sys.exit(main())
