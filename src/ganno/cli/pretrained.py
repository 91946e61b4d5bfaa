"""``ganno pretrained show|refresh|select``: the policies shipped with the package."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganno.cli.common import CONFIG_HELP
from ganno.config import load_config
from ganno.errors import ResultsError, ResultsMissingError, UsageError
from ganno.io import check_writable, write_json


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
