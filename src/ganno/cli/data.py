"""``ganno data prepare``: a dataset's fixed splits."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganno.config import load_config


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
