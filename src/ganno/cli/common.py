"""What several command groups share: the help of ``--config`` and the agent that ``--agent``
names."""

from __future__ import annotations

import argparse
import sys

from ganno.errors import UsageError

#: The help of ``--config`` where a command needs one (the pipeline passes results/config.yaml).
CONFIG_HELP = "the config (YAML; config/README.md), e.g. config/config.yaml"


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
