"""Bring design-study agents meta-trained elsewhere (benchmarks/gpu_study_meta_train.sh on a lent
GPU) into a study's results, so that `ganno design-study` evaluates them instead of meta-training
them again: each ``<agent>.tar.gz`` (or ``<agent>/`` folder) of a vmapped ``ganno meta-train`` run
becomes one run folder per seed, ``<results>/meta_train/<agent>/seed_<s>/`` with its policy, its
seed's learning curve and the run's config, as the study's own meta-training leaves it. A run that
did not finish (no ``policy/``) is refused, naming it; an existing run folder is not overwritten.

    python3 benchmarks/import_study_policies.py GPU_OUT [results/study]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from ganno import layout
from ganno.io import atomic_write, read_curve


def vmapped_runs(source: Path, scratch: Path) -> list[Path]:
    """The run folders (those with a ``config.yaml``) under ``source`` and in its ``*.tar.gz``,
    which are unpacked into ``scratch``."""
    roots = [source]
    for archive in sorted(source.glob("*.tar.gz")):
        roots.append(scratch / archive.name.removesuffix(".tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(roots[-1], filter="data")
    return sorted(config.parent for root in roots for config in root.rglob("config.yaml"))


def import_run(run: Path, results: Path) -> list[Path]:
    """One vmapped run folder as per-seed run folders; returns them."""
    agent = run.name
    seeds = sorted(run.glob("policy/seed_*/policy.json"))
    if not seeds:
        raise SystemExit(
            f"{run}: no policy/seed_<s>/policy.json: the run did not finish; resume it with "
            f"RESUME=<the folder of its archive> bash benchmarks/gpu_study_meta_train.sh {agent}"
        )
    policies = {int(p.parent.name.removeprefix("seed_")): p.parent for p in seeds}
    targets = {s: results / layout.META_TRAIN_DIR.format(agent=agent, seed=s) for s in policies}
    for out in targets.values():  # every seed refused before any is written
        if out.exists():
            raise SystemExit(f"{out} exists; remove it to import {run} again")
    curve = read_curve(run / "learning_curve.jsonl")
    for seed, out in targets.items():
        out.mkdir(parents=True)
        shutil.copytree(policies[seed], out / "policy")
        shutil.copy2(run / "config.yaml", out / "config.yaml")
        rows = [row for row in curve if row["seed"] == seed]
        atomic_write(out / "learning_curve.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return list(targets.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the GPU script's $OUT (fetched)")
    parser.add_argument("results", type=Path, nargs="?", default=Path("results/study"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        for run in vmapped_runs(args.source, Path(scratch)):
            for out in import_run(run, args.results):
                print(f"{run.name}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
