# Shared set-up: validate the config (ganno's messages first, then Snakemake's schema check),
# write the resolved config once for the rules, and name the pipeline's final outputs.
import json
import os
from pathlib import Path

import yaml

from ganno.config import ConfigError
from ganno.config import validate as ganno_validate
from ganno.config import task_config, task_names
from ganno.data import task_unavailable_reason
from ganno.variants import variant_config, variant_names, variant_tasks

try:
    _resolved = ganno_validate(config)
except ConfigError as exc:
    raise ValueError(f"config error:\n{exc}") from None
validate(config, "../schemas/config.schema.yaml")
config.clear()
config.update(_resolved)

RESULTS = Path("results")
LOGS = Path("logs")
RESOLVED_CONFIG = str(RESULTS / "config.yaml")


def _write_if_changed(path, text):
    # Rewriting an unchanged file would bump its mtime and rerun everything downstream.
    path = Path(path)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


_write_if_changed(RESOLVED_CONFIG, yaml.safe_dump(config, sort_keys=False))

# XLA's persistent compilation cache (JAX reads the variable itself): the jobs that run the same
# program, such as the seeds of one meta-training setting, compile it once. It lives with the
# results it helped make; export JAX_COMPILATION_CACHE_DIR to put it elsewhere.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str((RESULTS / "jax_cache").resolve())
)

META = config["meta_train"]
ALGOS = META["algorithms"]
SEEDS = META["seeds"]
VARIANTS = variant_names(config)


wildcard_constraints:
    algo="ippo|mappo",
    variant="[a-z][a-z0-9_]*",
    seed=r"\d+",
    task="[^/]+",


def section(*keys):
    """A config section as a string: a rule's params, so editing it reruns that rule only."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


TASKS = task_names(config)
VARIANT_TASKS = variant_tasks(config)


def final_outputs():
    notebooks = [
        f"results/notebooks/{p.stem}.ipynb"
        for p in sorted(Path("notebooks").glob("*.ipynb"))
    ]
    return ["paper/README.md", *notebooks]


def training_data(wildcards):
    return rules.prepare_data.output.npz.format(dataset=config["task"]["dataset"])


def task_data(wildcards):
    """The prepared dataset a task needs; none for a task whose files are absent (it is skipped
    with a note by the command itself)."""
    if task_unavailable_reason(config, wildcards.task) is not None:
        return []
    cfg = task_config(config, wildcards.task)
    return rules.prepare_data.output.npz.format(dataset=cfg["task"]["dataset"])


def task_settings(wildcards, *sections):
    base = config
    if "variant" in wildcards.keys():
        base = variant_config(config, wildcards.variant)
    cfg = task_config(base, wildcards.task)
    return json.dumps({k: cfg[k] for k in sections}, sort_keys=True)


def variant_settings(wildcards):
    """A variant's resolved meta-training settings: editing it reruns that variant only."""
    cfg = variant_config(config, wildcards.variant)
    return json.dumps(
        {k: cfg[k] for k in ("seed", "task", "env", "meta_train")}, sort_keys=True
    )


def sweep_arguments(runs, input, output):
    """`ganno generalise` arguments for several policies, one --policy/--name/--meta-seed/--out/
    --schedules group per (method name, meta seed) in ``runs``, in the order of the rule's
    input.policies, output.results and output.schedules."""
    groups = zip(runs, input.policies, output.results, output.schedules, strict=True)
    return " ".join(
        f"--policy {Path(policy).parent} --name {name} --meta-seed {seed} "
        f"--out {results} --schedules {schedules}"
        for (name, seed), policy, results, schedules in groups
    )
