# Shared set-up: validate the config (ganno's messages first, then Snakemake's schema check),
# write the resolved config once for the rules, and name the pipeline's final outputs. Only
# JAX-free modules are imported here (ganno.agents, ganno.layout, ganno.config, ganno.data), so
# parsing the workflow stays quick.
import json
import os
from pathlib import Path
from string import Formatter

import yaml

from ganno import agents as registry
from ganno import layout
from ganno import pretrained as shipped
from ganno.config import ConfigError, agent_config, family_configs, task_config
from ganno.config import validate as ganno_validate
from ganno.data import task_unavailable_reason
from ganno.env_settings import meta_training_env

try:
    _resolved = ganno_validate(config)
except ConfigError as exc:
    raise ValueError(f"config error:\n{exc}") from None
validate(config, "../schemas/config.schema.yaml")
config.clear()
config.update(_resolved)

RESULTS = Path("results")
RESOLVED_CONFIG = str(RESULTS / layout.RESOLVED_CONFIG)
REPORT_DIR = layout.report_dir(config)
# The shipped pretrained policy is refreshed from this agent's first meta-training seed, into
# src/ganno/pretrained for the default report (paper/), else beside the report (see layout).
PRETRAINED_DIR = layout.pretrained_dir(config)
PRETRAINED_AGENT = shipped.DEFAULT


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

SEEDS = config["meta_train"]["seeds"]


def agent_seeds(agent):
    """The seeds an agent is meta-trained over (its own meta_train.seeds, else the config's)."""
    return registry.meta_seeds(config, agent)


# The shipped policy is refreshed from PRETRAINED_AGENT (a config without that agent never asks
# for the refresh): from the seed its runs on the validation tasks select (evaluation.
# validation_tasks; `ganno pretrained select`), else from its first seed.
SHIPS_POLICY = PRETRAINED_AGENT in registry.agent_names(config)
PRETRAINED_SEEDS = agent_seeds(PRETRAINED_AGENT) if SHIPS_POLICY else SEEDS
PRETRAINED_VALIDATION = (
    layout.agent_validation_tasks(config, registry.get(config, PRETRAINED_AGENT))
    if SHIPS_POLICY
    else []
)
# The seeds whose policies the refresh reads: every one when the validation tasks choose.
PRETRAINED_INPUT_SEEDS = (
    PRETRAINED_SEEDS if PRETRAINED_VALIDATION else PRETRAINED_SEEDS[:1]
)
# The shipped policy's files as the rule pretrained_policy refreshes them (none for a config
# without that agent); the notebooks that run ganno.pretrained_policy() wait for them.
PRETRAINED_FILES = (
    [f"{PRETRAINED_DIR}/{PRETRAINED_AGENT}/{name}" for name in shipped.SHIPPED_FILES]
    if SHIPS_POLICY
    else []
)


def notebook_pretrained(wildcards):
    """The shipped policy's files for a notebook that runs ganno.pretrained_policy() (the
    tutorial): this run's, once refreshed. The analysis notebooks read results/ only, so they
    run beside the report instead of after the refresh."""
    source = Path(f"notebooks/{wildcards.name}.ipynb").read_text()
    return PRETRAINED_FILES if "pretrained_policy()" in source else []


wildcard_constraints:
    agent="|".join(registry.agent_names(config)),
    seed=r"\d+",
    task="[^/]+",


def results(pattern, **values):
    """A path of ganno.layout under results/: ``values`` filled in, the other fields kept as
    wildcards."""
    fields = {name for _, name, _, _ in Formatter().parse(pattern) if name}
    return str(
        RESULTS / pattern.format(**{f: values.get(f, f"{{{f}}}") for f in fields})
    )


def per_seed(pattern, seeds):
    """The path of ganno.layout ``pattern`` for each of ``seeds`` (other wildcards kept)."""
    return [results(pattern, seed=seed) for seed in seeds]


def section(*keys):
    """A config section as a string: a rule's params, so editing it reruns that rule only."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def final_outputs():
    notebooks = [
        f"results/notebooks/{p.stem}.ipynb"
        for p in sorted(Path("notebooks").glob("*.ipynb"))
    ]
    return [str(Path(REPORT_DIR) / layout.README), *notebooks, *PRETRAINED_FILES]


def training_data(wildcards):
    """The prepared datasets meta-training needs: the task's, and with a task family (an
    agent's meta_train.task_family) every member's."""
    cfg = (
        agent_config(config, wildcards.agent) if "agent" in wildcards.keys() else config
    )
    datasets = dict.fromkeys(
        member["task"]["dataset"] for _, member in family_configs(cfg)
    )
    return [rules.prepare_data.output.npz.format(dataset=d) for d in datasets]


def task_data(wildcards):
    """The prepared dataset a task needs; none for a task whose files are absent (it is skipped
    with a note by the command itself)."""
    if task_unavailable_reason(config, wildcards.task) is not None:
        return []
    cfg = task_config(config, wildcards.task)
    return rules.prepare_data.output.npz.format(dataset=cfg["task"]["dataset"])


# The lists that define the other tasks: a task's runs do not depend on them (its own entry is
# merged into its `task` and `env` sections), so adding or editing another task reruns that task
# alone.
TASK_LISTS = ("generalisation_tasks", "validation_tasks")


def task_settings(wildcards, *sections):
    """A task's resolved sections (of an agent's config for an agent's job), other tasks'
    definitions left out: editing them reruns that task (and agent) only."""
    base = config
    if "agent" in wildcards.keys():
        base = agent_config(config, wildcards.agent)
    cfg = task_config(base, wildcards.task)
    settings = {k: cfg[k] for k in sections}
    if "evaluation" in settings:
        evaluation = settings["evaluation"]
        settings["evaluation"] = {
            k: v for k, v in evaluation.items() if k not in TASK_LISTS
        }
    return json.dumps(settings, sort_keys=True)


def agent_settings(wildcards):
    """An agent's resolved meta-training settings: editing them reruns that agent only."""
    cfg = agent_config(config, wildcards.agent)
    algorithm = registry.get(config, wildcards.agent).algorithm
    sections = {k: cfg[k] for k in ("seed", "task", "env", "meta_train")}
    # the guard applies in evaluation only: turning it on reruns the sweeps, not meta-training
    sections["env"] = meta_training_env(cfg["env"])
    return json.dumps({**sections, "algorithm": algorithm}, sort_keys=True)


def sweep_arguments(wildcards, input, output):
    """`ganno generalise` arguments for an agent's policies: one --policy/--meta-seed/--out/
    --schedules group per meta-training seed, in the order of input.policies, output.results
    and output.schedules."""
    seeds = agent_seeds(wildcards.agent)
    groups = zip(seeds, input.policies, output.results, output.schedules, strict=True)
    return " ".join(
        f"--policy {Path(policy).parent} --meta-seed {seed} "
        f"--out {results} --schedules {schedules}"
        for seed, policy, results, schedules in groups
    )


def pretrained_source(wildcards, input):
    """`ganno pretrained refresh`'s source: the selection record, or the first seed's policy."""
    if PRETRAINED_VALIDATION:
        return f"--selection {input.selection}"
    return f"--from {Path(input.policies[0]).parent}"
