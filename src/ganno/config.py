"""Configuration: YAML files validated against one JSON schema, with defaults filled in.

The same schema (``ganno/schemas/config.schema.yaml``) is used by the Snakemake workflow's
``validate``, so a key means the same thing to the pipeline and to the library.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ganno import agents as registry
from ganno.env_settings import check_base_step_size, check_gradient_scale_range
from ganno.errors import ConfigError
from ganno.layout import TRAIN_TASK, task_names
from ganno.schema import parsed_schema, read_yaml

__all__ = ["TRAIN_TASK", "ConfigError", "agent_config", "derive", "load_config", "task_config",
           "task_names", "validate"]  # fmt: skip


def load_schema() -> dict[str, Any]:
    """The config schema (read and parsed once per process; a copy, so callers may change it)."""
    return copy.deepcopy(parsed_schema())


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    merged = dict(node)
    merged.update({k: v for k, v in schema.items() if k != "$ref"})
    return merged


def _fill_defaults(schema: Mapping[str, Any], value: Any, root: Mapping[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    for key, sub in schema["properties"].items():
        sub = _resolve(sub, root)
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = _fill_defaults(sub, value[key], root)
    return value


def _key_name(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError, root: Mapping[str, Any]) -> str:
    key = _key_name(error.absolute_path)
    schema = _resolve(error.schema, root) if isinstance(error.schema, Mapping) else {}
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        where = "at the top level" if key == "<top level>" else f"under '{key}'"
        return f"unknown key {', '.join(hints)} {where}; allowed keys: {', '.join(allowed)}"
    value = error.instance
    if kind == "enum":
        return f"'{key}' = {value!r} is not allowed; choose one of {error.validator_value}"
    if kind == "type":
        return f"'{key}' = {value!r} has the wrong type; expected {error.validator_value}"
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        limit = f"{bounds[kind]} {error.validator_value}"
        return f"'{key}' = {value!r} is out of range; it must be {limit}"
    if kind in ("minItems", "maxItems"):
        return f"'{key}' = {value!r} has {len(value)} item(s); {kind} is {error.validator_value}"
    return f"'{key}' = {value!r}: {error.message}"


def _check_semantics(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in ("lr0_range", "lr_bounds"):
        low, high = config["env"][key]
        if not low < high:
            problems.append(
                f"'env.{key}' = {[low, high]} is an inverted or empty range; give [low, high] with "
                "0 < low < high"
            )
    try:
        check_gradient_scale_range(config["env"].get("gradient_scale_range"))
    except ValueError as error:
        problems.append(f"'env.{error}'")
    try:
        check_base_step_size(
            config["env"]["base_step_size"],
            config["env"]["action_mode"],
        )
    except ValueError as error:
        problems.append(f"'env.{error}'")
    for key in ("evaluation.lr0_exponents", "torch_deployment.lr0_exponents"):
        section, name = key.split(".")
        low, high = config[section][name]
        if not low <= high:
            problems.append(
                f"'{key}' = {[low, high]} is inverted; give [low, high] with low <= high"
            )
    env = config["env"]
    if env["reward"] == "counterfactual_log_val_loss_drop":
        if 1.0 not in env["actions"]:
            problems.append(
                f"'env.reward' = 'counterfactual_log_val_loss_drop' needs the keep action 1.0 in "
                f"'env.actions' = {env['actions']}; add 1.0 or choose another reward"
            )
        if env["momentum_actions"] is not None or env["weight_decay_actions"] is not None:
            problems.append(
                "'env.reward' = 'counterfactual_log_val_loss_drop' is defined for learning-rate-"
                "only agents; set env.momentum_actions and env.weight_decay_actions to null or "
                "choose another reward"
            )
    mt = config["meta_train"]
    batch = mt["num_envs"] * mt["rollout_length"]
    if batch % mt["num_minibatches"]:
        divisors = [d for d in range(1, batch + 1) if batch % d == 0]
        problems.append(
            f"'meta_train.num_minibatches' = {mt['num_minibatches']} does not divide the batch "
            f"num_envs x rollout_length = {mt['num_envs']} x {mt['rollout_length']} = {batch}; "
            f"choose one of {divisors}"
        )
    return problems


#: The evaluation's lists of tasks, each entry a name and overrides of the task and env blocks:
#: the held-out tasks and the meta-validation tasks.
TASK_LISTS = ("generalisation_tasks", "validation_tasks")


def _check_generalisation_tasks(config: Mapping[str, Any]) -> list[str]:
    """Every task of :data:`TASK_LISTS` is a valid task, and no name is used twice (over both
    lists and ``train``); a validation task is not a held-out task under another name."""
    problems, seen = [], {TRAIN_TASK}
    for key in TASK_LISTS:
        for i, spec in enumerate(config.get("evaluation", {}).get(key) or []):
            if spec["name"] in seen:
                problems.append(
                    f"'evaluation.{key}.{i}.name' = {spec['name']!r} is used twice; task names "
                    "must be unique over train, evaluation.generalisation_tasks and "
                    "evaluation.validation_tasks"
                )
            seen.add(spec["name"])
            try:
                task_config(config, spec["name"])
            except ConfigError as exc:
                detail = str(exc).split("\n", 1)[-1].replace("\n", " ")
                problems.append(
                    f"'evaluation.{key}.{i}' ({spec['name']}) gives an invalid task: "
                    f"{detail.strip()}"
                )
    if problems:
        return problems
    held_out = _identities(config, "generalisation_tasks")
    for i, spec in enumerate(config["evaluation"].get("validation_tasks") or []):
        identity = _task_identity(task_config(config, spec["name"]))
        twin = held_out.get(identity)
        if twin is not None:
            problems.append(
                f"'evaluation.validation_tasks.{i}' ({spec['name']}) is the held-out task "
                f"{twin!r} (same dataset, network, batch size and budget): a held-out task must "
                "not choose the policy; remove it from one of the two lists"
            )
        elif identity == _task_identity(config):
            problems.append(
                f"'evaluation.validation_tasks.{i}' ({spec['name']}) is the meta-training task "
                "(same dataset, network, batch size and budget): a validation task must be one "
                "the agents were not meta-trained on; override the task or env block"
            )
    return problems


def derive(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A config derived from ``config``: ``overrides`` merged in (:func:`merge`: lists replace),
    then validated like any config. Generalisation tasks and agents are both derived this way.

    Validating a config validates the configs derived from it (each agent's, each task's), and
    theirs, so the same derived config comes up many times: each is validated once per process
    (:func:`_validated`, keyed by its content) and handed out as a fresh copy."""
    merged = merge(config, overrides)
    try:
        key = json.dumps(merged, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):  # not plain data: validated as it is, uncached
        return validate(merged)
    return copy.deepcopy(_validated(key))


@functools.lru_cache(maxsize=512)
def _validated(key: str) -> dict[str, Any]:
    """:func:`validate` of the config whose JSON is ``key`` (a ConfigError is not cached)."""
    return validate(json.loads(key))


def _bare_agents(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The agents without overrides, tasks or questions, which belong to the meta-training
    config: a derived config stays complete, and its agents stay valid on its tasks."""
    return [{"name": a.name, "algorithm": a.algorithm} for a in registry.agents(config)]


def task_config(config: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The full config of a task: the config itself for ``train``, else the meta-training config
    with that generalisation task's ``task``/``env`` overrides (:func:`derive`)."""
    if task == TRAIN_TASK:
        return dict(config)
    tasks = {t["name"]: t for key in TASK_LISTS for t in config["evaluation"].get(key) or []}
    if task not in tasks:
        raise ConfigError(
            f"no generalisation or validation task {task!r}; configured: {sorted(tasks)}"
        )
    overrides = {k: tasks[task][k] for k in ("task", "env") if k in tasks[task]}
    overrides |= {"evaluation": _no_tasks(config), "agents": _bare_agents(config)}
    overrides |= _no_grid_study_tasks(config)
    if config["meta_train"].get("task_family"):  # evaluated on, not meta-trained on
        overrides["meta_train"] = {"task_family": []}
    return derive(config, overrides)


#: What a task family member may override in the env block: the budget; the rest (actions,
#: reward, observation) is the agents' design and must be one for the whole family.
FAMILY_ENV_KEYS = ("steps_per_decision", "num_decisions")


def family_configs(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The tasks an agent is meta-trained on, ``[(name, full config)]``: the config's own task
    (``train``) first, then each ``meta_train.task_family`` member (:func:`derive`d like a
    generalisation task). One entry when there is no family."""
    members = [(TRAIN_TASK, dict(config))]
    for spec in config["meta_train"].get("task_family") or []:
        overrides = {k: spec[k] for k in ("task", "env") if k in spec}
        overrides |= {
            "evaluation": _no_tasks(config),
            "agents": _bare_agents(config),
            "meta_train": {"task_family": []},
        }
        overrides |= _no_grid_study_tasks(config)
        members.append((spec["name"], derive(config, overrides)))
    return members


def _no_tasks(config: Mapping[str, Any]) -> dict[str, list]:
    """The evaluation overrides of a task's own config: none of the lists of tasks (a key the
    config does not have stays absent, so its fingerprint stays)."""
    return {key: [] for key in TASK_LISTS if key in config.get("evaluation", {})} | {
        "generalisation_tasks": []
    }


def _no_grid_study_tasks(config: Mapping[str, Any]) -> dict[str, Any]:
    """The grid_study override of a task's own config, which has no evaluation tasks: its study
    on ``train`` only (none when the config has no grid_study block, so its fingerprint stays)."""
    return {"grid_study": {"tasks": [TRAIN_TASK]}} if "grid_study" in config else {}


def check_grid_study(config: Mapping[str, Any], block: Mapping[str, Any]) -> list[str]:
    """The problems of a ``grid_study`` block (:mod:`ganno.grid_study`, defaults filled) in
    ``config``: its tasks are the config's (``train`` or evaluation.generalisation_tasks), its
    methods among ``baselines.methods`` (what ``ganno baselines`` can run) and its agent one of
    ``agents``; each problem names the key and the allowed values."""

    def unknown(key: str, value: str, allowed: list[str], what: str) -> str:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"'grid_study.{key}' = {value!r} is not {what}{hint}; choose from {allowed}"

    problems = []
    tasks = task_names(config)
    for i, task in enumerate(block["tasks"]):
        if task not in tasks:
            problems.append(unknown(f"tasks.{i}", task, tasks, "a task of the config"))
    methods = list(config["baselines"]["methods"])
    for i, method in enumerate(block["methods"]):
        if method not in methods:  # a known baseline (the schema says so) the config does not run
            problems.append(
                f"'grid_study.methods.{i}' = {method!r} is not among the config's baselines; add "
                f"it to baselines.methods or choose from {methods}"
            )
    agents = registry.agent_names(config)
    if block["agent"] not in agents:
        problems.append(unknown("agent", block["agent"], agents, "an agent of the config"))
    return problems


def _task_identity(cfg: Mapping[str, Any]) -> str:
    """What makes two tasks the same task: the inner problem and its budget."""
    env = {k: cfg["env"][k] for k in FAMILY_ENV_KEYS}
    return json.dumps({"task": cfg["task"], "env": env}, sort_keys=True)


def _identities(config: Mapping[str, Any], key: str) -> dict[str, str]:
    """``{identity: name}`` of the tasks of ``evaluation.<key>`` that are valid."""
    found = {}
    for spec in config["evaluation"].get(key) or []:
        try:
            found[_task_identity(task_config(config, spec["name"]))] = spec["name"]
        except ConfigError:
            continue  # reported by _check_generalisation_tasks
    return found


def _check_task_family(config: Mapping[str, Any], where: str = "meta_train") -> list[str]:
    """Held-out means held out: no family member may be an evaluation task (the same inner
    problem and budget, whatever it is called), and members differ from each other."""
    specs = config["meta_train"].get("task_family") or []
    if not specs:
        return []
    problems = []
    for i, spec in enumerate(specs):
        extra = sorted(set(spec.get("env", {})) - set(FAMILY_ENV_KEYS))
        if extra:
            problems.append(
                f"'{where}.task_family.{i}' ({spec['name']}) overrides env.{', env.'.join(extra)}; "
                f"a family member may change only the budget ({', '.join(FAMILY_ENV_KEYS)}): the "
                "actions, reward and observation are the agents' design, one for the family"
            )
    if problems:
        return problems
    try:
        members = family_configs(config)
    except ConfigError as exc:
        detail = str(exc).split("\n", 1)[-1].replace("\n", " ")
        return [f"'{where}.task_family' gives an invalid task: {detail.strip()}"]
    held_out = _identities(config, "generalisation_tasks")
    validation = _identities(config, "validation_tasks")
    seen: dict[str, str] = {}
    for name, cfg in members:
        identity = _task_identity(cfg)
        if identity in held_out:
            problems.append(
                f"'{where}.task_family' member {name!r} is the evaluation task "
                f"{held_out[identity]!r} (same dataset, network, batch size and budget): a "
                "held-out task must not be meta-trained on; remove it from the family or from "
                "evaluation.generalisation_tasks"
            )
        elif identity in validation:
            problems.append(
                f"'{where}.task_family' member {name!r} is the validation task "
                f"{validation[identity]!r} (same dataset, network, batch size and budget): a "
                "task that chooses the policy must not be meta-trained on; remove it from the "
                "family or from evaluation.validation_tasks"
            )
        elif identity in seen:
            problems.append(
                f"'{where}.task_family' member {name!r} repeats {seen[identity]!r}; "
                "every member must be a different task"
            )
        seen.setdefault(identity, name)
    return problems


def agent_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The full config agent ``name`` is meta-trained and evaluated with: the config with the
    agent's ``env``/``meta_train`` overrides (:func:`derive`); the agents stay, bare."""
    try:
        agent = registry.get(config, name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    return derive(config, {**agent.overrides, "agents": _bare_agents(config)})


def _check_agents(config: Mapping[str, Any]) -> list[str]:
    tasks = task_names(config)
    problems = registry.check(config, tasks)
    names = registry.agent_names(config)
    torch_agent = config["torch_deployment"]["agent"]
    if config["torch_deployment"]["enabled"] and torch_agent not in names:
        problems.append(
            f"'torch_deployment.agent' = {torch_agent!r} is not an agent; choose from {names}"
        )
    if problems:
        return problems
    for i, agent in enumerate(registry.agents(config)):
        if not agent.overrides:
            continue
        try:
            cfg = agent_config(config, agent.name)
        except ConfigError as exc:
            detail = str(exc).split("\n", 1)[-1].replace("\n", " ")
            problems.append(
                f"'agents.{i}' ({agent.name}) gives an invalid config: {detail.strip()}"
            )
            continue
        env = cfg["env"]
        if env["reward"] == "counterfactual_log_val_loss_drop" and (
            env["momentum_actions"] or env["weight_decay_actions"]
        ):
            problems.append(
                f"'agents.{i}' ({agent.name}) combines counterfactual rewards with momentum/"
                "weight-decay actions; counterfactual rewards are for learning-rate-only agents"
            )
    return problems


def _migrated(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the keys of before the agent registry rewritten (with a warning that shows
    the new form); a config mixing both forms is an error that says what to remove."""
    new, old = registry.migrate(config)
    if not old:
        return new
    if "agents" in config:
        raise ConfigError(
            f"invalid configuration:\n  - the config has 'agents' and the keys it replaced "
            f"({', '.join(old)}); move those into 'agents' entries (see config/README.md) and "
            "remove them"
        )
    snippet = {k: new[k] for k in ("agents",) if k in new}
    warnings.warn(
        f"config keys {', '.join(old)} are deprecated: agents are now entries of the top-level "
        "'agents' list (torch_deployment.algorithm is torch_deployment.agent); this config means\n"
        + yaml.safe_dump(snippet, sort_keys=False, default_flow_style=None, width=100),
        FutureWarning,
        stacklevel=3,
    )
    return new


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults into a copy of ``config`` and check it; a ConfigError names each problem."""
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"a config must be a mapping of keys to values, not {type(config).__name__}"
        )
    schema = parsed_schema()  # read only here
    filled = _fill_defaults(schema, _migrated(config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e, schema) for e in errors]
    if not problems and "grid_study" in filled:  # first: every derived task config carries it
        problems = check_grid_study(filled, filled["grid_study"])
    if not problems:
        # A task inherits the base config: its problems would repeat the base config's.
        problems = _check_semantics(filled) or _check_generalisation_tasks(filled)
    if not problems:
        problems = _check_task_family(filled)
    if not problems:
        problems = _check_agents(filled)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return filled


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (not validated); a :class:`ConfigError` names the
    file, and for a syntax error the line and column, when it is missing, empty or not YAML.

    An empty file is an error, as it is to Snakemake, so that both accept the same files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the path")
    try:
        raw = read_yaml(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = exc.problem or "unreadable"
        if exc.context and (start := exc.context_mark):
            problem = (
                f"{exc.context} from line {start.line + 1}, column {start.column + 1}: {problem}"
            )
        raise ConfigError(
            f"config file {where} is not valid YAML ({problem}); fix the file there (indent "
            "with spaces, close every bracket and quote)"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not YAML ({exc}); give a YAML file") from None
    if raw is None:
        raise ConfigError(
            f"config file {path} is empty; write the keys you change (e.g. 'seed: 0'), every key "
            "left out takes its default (config/config.yaml lists them)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {path} holds a {type(raw).__name__}, not a mapping of keys to values; "
            "write one 'key: value' per line at the top level"
        )
    return raw


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """Read a YAML config (defaults if ``path`` is None), apply nested ``overrides``, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        raw = read_config_file(path)
    if overrides:
        raw = merge(raw, overrides)
    try:
        return validate(raw)
    except ConfigError as exc:
        where = f" in {path}" if path is not None else ""
        message = str(exc).replace("invalid configuration", f"invalid configuration{where}")
        raise ConfigError(message) from None


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dictionary merge: values of ``update`` win; neither input is modified."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dump_config(config: Mapping[str, Any], path: str | Path) -> None:
    """Write a resolved config as YAML (what a run actually used, defaults included)."""
    from ganno.io import atomic_write

    atomic_write(path, yaml.safe_dump(dict(config), sort_keys=False))


#: Names a config file for notebooks and scripts run outside the pipeline (see
#: :func:`load_project_config`).
CONFIG_ENV = "GANNO_CONFIG"


def find_project(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) that holds
    ``config/config.yaml``: the root of a clone of this repository, or None outside one."""
    here = Path.cwd() if start is None else Path(start)
    for folder in (here.resolve(), *here.resolve().parents):
        if (folder / "config" / "config.yaml").is_file():
            return folder
    return None


def load_project_config(start: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """The config a notebook or script uses wherever it is started, and the folder its relative
    paths (``data.root``) are resolved against, which it returns with ``data.root`` made absolute.

    In order: the file ``$GANNO_CONFIG`` names; inside a clone (:func:`find_project`), the
    pipeline's ``results/config.yaml`` when a run wrote it, else ``config/config.yaml`` (paths
    relative to the clone's root, from any of its folders); outside a clone, the schema's
    defaults, relative to the working directory."""
    named = os.environ.get(CONFIG_ENV)
    root = find_project(start)
    if named:
        path: Path | None = Path(named)
        base = root if root is not None else Path.cwd()
    elif root is not None:
        resolved = root / "results" / "config.yaml"
        path, base = (resolved if resolved.is_file() else root / "config" / "config.yaml"), root
    else:
        path, base = None, Path.cwd()
    config = load_config(path)
    data = config.setdefault("data", {})
    data["root"] = str((base / data.get("root", "data")).resolve())
    return config, base
