"""``ganno config check``: a config validated and printed with its defaults filled."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno.config import dump_config, load_config


def _cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.out:
        dump_config(cfg, args.out)
    else:
        import yaml

        print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    """The parser of config check."""
    cfg_p = sub.add_parser("config", help="configs").add_subparsers(
        dest="config_command", required=True, metavar="COMMAND"
    )
    check = cfg_p.add_parser("check", help="validate a config and print it with defaults filled")
    check.add_argument("config", type=Path, help="the config (YAML) to check")
    check.add_argument("--out", type=Path, help="write the resolved config here instead")
    check.set_defaults(func=_cmd_config_check)
