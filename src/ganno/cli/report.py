"""``ganno report``, ``ganno grid-study`` and ``ganno notebook``: the report, read from results."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno.cli.common import CONFIG_HELP
from ganno.config import load_config
from ganno.io import check_writable_folder


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
