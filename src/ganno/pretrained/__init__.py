"""Policies shipped inside the package, so a practitioner can use GANNO without meta-training.

Each one is a folder ``ganno/pretrained/<name>/`` holding what meta-training writes to
``<run>/policy/`` (``policy.json``, ``actor_params.msgpack``) and ``PROVENANCE.json``: where it came
from (the run folder, its config, the git commit) and the numbers it achieved. ::

    policy = ganno.pretrained_policy()          # the default: "ippo"
    ganno.pretrained.provenance()["headline"]   # what it achieved, and on what

:func:`refresh` (``ganno pretrained refresh --from RUN/policy --summary FILE``) replaces a shipped
policy with a pipeline's output and writes its provenance, so the files are never copied by hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT = "ippo"
PROVENANCE_FILE = "PROVENANCE.json"
_POLICY_FILES = ("policy.json", "actor_params.msgpack")
#: Every file of a shipped policy's folder (what :func:`refresh` writes).
SHIPPED_FILES = (*_POLICY_FILES, PROVENANCE_FILE)


def directory(name: str = DEFAULT) -> Path:
    """The folder of the shipped policy ``name`` (inside the installed package)."""
    folder = Path(__file__).parent / name
    if not (folder / _POLICY_FILES[0]).is_file():
        raise ValueError(f"no pretrained policy {name!r}; the package ships {available()}")
    return folder


def available() -> list[str]:
    """The names of the policies shipped with this installation."""
    here = Path(__file__).parent
    return sorted(p.parent.name for p in here.glob(f"*/{_POLICY_FILES[0]}"))


def load(name: str = DEFAULT) -> Any:
    """The shipped policy ``name`` as a :class:`ganno.Policy` (use it with
    :class:`ganno.torch.GannoScheduler` or :func:`ganno.optax_scheduler.ganno_sgd`)."""
    from ganno.policy import Policy

    return Policy.load(directory(name))


def provenance(name: str = DEFAULT) -> dict[str, Any]:
    """What ``PROVENANCE.json`` records: source run, config, commit, headline numbers, note."""
    return json.loads((directory(name) / PROVENANCE_FILE).read_text())


#: What makes a result (relative to the repository's top): uncommitted changes there mark the
#: commit ``+dirty``. The pipeline's own outputs (``paper/``, the shipped policies) are not in it:
#: a run rewrites them before this policy is copied.
_RESULT_INPUTS = (":(top)src", ":(top)config", ":(top)workflow", ":(top)Snakefile",
                  ":(top,exclude)src/ganno/pretrained")  # fmt: skip


def _git_commit(where: Path) -> str | None:
    """The commit of the repository holding ``where`` (``+dirty`` with uncommitted changes to
    the code, config or workflow: :data:`_RESULT_INPUTS`)."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", str(where), *a], capture_output=True, text=True, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        changed = run("status", "--porcelain", "--untracked-files=no", "--", *_RESULT_INPUTS)
        return commit + ("+dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _read_summary(path: Path) -> Any:
    """The headline numbers file: JSON as is, CSV as a list of rows, anything else as text."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return path.read_text()


def refresh(
    policy_dir: str | Path,
    *,
    summary: str | Path | None = None,
    name: str = DEFAULT,
    note: str | None = None,
    dest: str | Path | None = None,
    selection: Mapping[str, Any] | None = None,
) -> Path:
    """Copy the policy in ``policy_dir`` (a run's ``policy/`` folder) to the shipped policy
    ``name`` and write its ``PROVENANCE.json``: the source, the run's ``config.yaml`` and last
    learning-curve row (if the run folder has them), the git commit of the source's repository,
    the headline numbers read from ``summary`` (JSON, CSV or text) and ``note``. ``dest``: the
    folder of shipped policies (default: this package's, i.e. the source tree in an editable
    install). ``selection``: how the policy was chosen among its agent's meta-training seeds
    (:func:`ganno.seed_selection.select_seed`'s record), stored as is. Returns the policy's new
    folder."""
    import yaml

    from ganno.policy import Policy

    source = Path(policy_dir)
    Policy.load(source)  # refuse a missing, corrupt or mismatched policy before copying anything
    if summary is not None and not Path(summary).is_file():
        raise FileNotFoundError(f"--summary {summary} does not exist; give the headline table")
    target = Path(dest if dest is not None else Path(__file__).parent) / name
    target.mkdir(parents=True, exist_ok=True)
    for file in _POLICY_FILES:
        shutil.copyfile(source / file, target / file)
    run = source.resolve().parent
    curve = run / "learning_curve.jsonl"
    last_row = None
    if curve.is_file():
        lines = [line for line in curve.read_text().splitlines() if line.strip()]
        last_row = json.loads(lines[-1]) if lines else None
    record = {
        "name": name,
        "source": str(source.resolve()),
        "commit": _git_commit(run),
        "refreshed_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": note,
        "selection": None if selection is None else dict(selection),
        "headline_source": None if summary is None else str(summary),
        "headline": None if summary is None else _read_summary(Path(summary)),
        "meta_training_last_update": last_row,
        "config": yaml.safe_load((run / "config.yaml").read_text())
        if (run / "config.yaml").is_file()
        else None,
    }
    (target / PROVENANCE_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return target


__all__ = ["DEFAULT", "SHIPPED_FILES", "available", "directory", "load", "provenance", "refresh"]
