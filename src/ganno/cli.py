"""The ``ganno`` command line: the pipeline's rules and a user at a shell run the same code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganno.config import ConfigError, dump_config, load_config


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


def _cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.out:
        dump_config(cfg, args.out)
    else:
        import yaml

        print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganno", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data_p = sub.add_parser("data", help="datasets").add_subparsers(
        dest="data_command", required=True
    )
    prep = data_p.add_parser("prepare", help="build a dataset's fixed splits as .npz + manifest")
    prep.add_argument("name", help="mnist1d, digits, mnist or fashion_mnist")
    prep.add_argument("--config", type=Path, help="take root/val_fraction/split_seed from here")
    prep.add_argument("--root", help="data folder (default: data)")
    prep.add_argument("--val-fraction", type=float)
    prep.add_argument("--split-seed", type=int)
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

    cfg_p = sub.add_parser("config", help="configs").add_subparsers(
        dest="config_command", required=True
    )
    check = cfg_p.add_parser("check", help="validate a config and print it with defaults filled")
    check.add_argument("config", type=Path)
    check.add_argument("--out", type=Path, help="write the resolved config here instead")
    check.set_defaults(func=_cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"ganno: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
