"""Configuration: YAML files validated against one JSON schema, with defaults filled in.

The same schema (``ganno/schemas/config.schema.yaml``) is used by the Snakemake workflow's
``validate``, so a key means the same thing to the pipeline and to the library.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ganno.errors import ConfigError

#: The name of the meta-training task among the evaluation tasks.
TRAIN_TASK = "train"
SCHEMA_PATH = Path(str(resources.files("ganno") / "schemas" / "config.schema.yaml"))


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader, but '1e-3' is a float (YAML 1.1 would read it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file, with scientific notation such as 1e-3 read as a number."""
    with open(path) as f:
        return yaml.load(f, Loader=_Loader)


@functools.cache
def _parsed_schema() -> dict[str, Any]:
    return read_yaml(SCHEMA_PATH)


def load_schema() -> dict[str, Any]:
    """The config schema (read and parsed once per process; a copy, so callers may change it)."""
    return copy.deepcopy(_parsed_schema())


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


def _check_generalisation_tasks(config: Mapping[str, Any]) -> list[str]:
    problems, seen = [], set()
    for i, spec in enumerate(config.get("evaluation", {}).get("generalisation_tasks", [])):
        if spec["name"] in seen:
            problems.append(
                f"'evaluation.generalisation_tasks.{i}.name' = {spec['name']!r} "
                "is used twice; task names must be unique"
            )
        seen.add(spec["name"])
        try:
            generalisation_config(config, spec["name"])
        except ConfigError as exc:
            detail = str(exc).split("\n", 1)[-1].replace("\n", " ")
            problems.append(
                f"'evaluation.generalisation_tasks.{i}' ({spec['name']}) gives an "
                f"invalid task: {detail.strip()}"
            )
    return problems


def task_names(config: Mapping[str, Any]) -> list[str]:
    """``train`` (the meta-training task) and the configured generalisation tasks."""
    return [TRAIN_TASK] + [t["name"] for t in config["evaluation"]["generalisation_tasks"]]


def task_config(config: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The full config of a task: the config itself for ``train``."""
    return dict(config) if task == TRAIN_TASK else generalisation_config(config, task)


def generalisation_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The full config of generalisation task ``name``: the meta-training config with that task's
    ``task``/``env`` overrides applied, validated like any config."""
    tasks = {t["name"]: t for t in config["evaluation"]["generalisation_tasks"]}
    if name not in tasks:
        raise ConfigError(f"no generalisation task {name!r}; configured: {sorted(tasks)}")
    spec = tasks[name]
    overrides = {k: spec[k] for k in ("task", "env") if k in spec}
    merged = merge(config, overrides)
    merged["evaluation"] = {**merged["evaluation"], "generalisation_tasks": []}
    merged["extensions"] = {}  # variants and their tasks belong to the meta-training config
    return validate(merged)


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults into a copy of ``config`` and check it; a ConfigError names each problem."""
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"a config must be a mapping of keys to values, not {type(config).__name__}"
        )
    schema = _parsed_schema()  # read only here
    filled = _fill_defaults(schema, copy.deepcopy(dict(config)), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e, schema) for e in errors]
    if not problems:
        # A task inherits the base config: its problems would repeat the base config's.
        problems = _check_semantics(filled) or _check_generalisation_tasks(filled)
    if not problems:
        from ganno.variants import check as check_variants

        problems = check_variants(filled)
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
