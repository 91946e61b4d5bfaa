"""``ganno design-study`` and ``ganno design-table``: the design study's runs and tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganno.config import load_config


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
