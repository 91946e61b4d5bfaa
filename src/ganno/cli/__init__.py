"""The ``ganno`` command line: the pipeline's rules and a user at a shell run the same code."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

# one module per command group, each with its parser (_add_<group>) and handlers (_cmd_<command>)
from ganno.cli.config import _add_config
from ganno.cli.data import _add_data
from ganno.cli.evaluation import _add_experiments, _add_run_policy
from ganno.cli.meta_train import _add_meta_train
from ganno.cli.pretrained import _add_pretrained
from ganno.cli.report import _add_report
from ganno.cli.study import _add_design_study
from ganno.config import load_config
from ganno.errors import GannoError, GannoWarning


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
