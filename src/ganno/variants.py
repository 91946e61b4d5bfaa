"""Variants of the agents (beyond the paper): Q1 several hyperparameters per layer, Q2 rewards.

A variant is a named set of overrides of the ``env`` (and optionally ``meta_train``) blocks, with
the MARL system that trains it. It is meta-trained over the same seeds as the main algorithms and
evaluated with the same code on the ``extensions.tasks``; its rows in the results tables carry the
method name ``ganno_<name>`` and are compared with the reference (``extensions.reference``: a main
algorithm, ``ganno_ippo`` by default, or a variant trained at the variants' own budget) in
``paper/`` (:mod:`ganno.extensions_report`). For example::

    extensions:
      variants:
        - {name: lr_momentum, question: Q1, env: {momentum_actions: [0.0, 0.5, 0.9]}}
        - {name: reward_accuracy, question: Q2, env: {reward: val_accuracy_gain}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ganno.config import ConfigError, merge, task_names, validate

QUESTIONS = {
    "Q1": "which hyperparameters the agents set",
    "Q2": "the reward the agents are trained on",
    "design": "the agents' design: objective, action mode, observation normalisation",
}


def method_name(name: str) -> str:
    """The method name of a variant's (or an algorithm's) policies in the results tables."""
    return f"ganno_{name}"


def variants(config: Mapping[str, Any], question: str | None = None) -> list[dict[str, Any]]:
    """The configured variants (of one question, if given), each with its ``algorithm``."""
    ext = config.get("extensions", {})
    reference = ext.get("reference", "ippo")
    default_algorithm = reference if reference in ("ippo", "mappo") else "ippo"
    out = []
    for spec in ext.get("variants", []):
        if question is None or spec["question"] == question:
            out.append({"algorithm": default_algorithm, **spec})
    return out


def reference_is_variant(config: Mapping[str, Any]) -> bool:
    """Whether ``extensions.reference`` names a variant (else a main algorithm)."""
    return config.get("extensions", {}).get("reference", "ippo") in variant_names(config)


def variant_names(config: Mapping[str, Any]) -> list[str]:
    return [v["name"] for v in variants(config)]


def variant_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    specs = {v["name"]: v for v in variants(config)}
    if name not in specs:
        raise ConfigError(
            f"no variant {name!r} in extensions.variants; configured: {sorted(specs) or 'none'}"
        )
    return specs[name]


def variant_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The full config a variant is meta-trained and evaluated with: the config with the variant's
    ``env``/``meta_train`` overrides applied and its algorithm as the only one, validated."""
    spec = variant_spec(config, name)
    overrides = {k: spec[k] for k in ("env", "meta_train") if k in spec}
    merged = merge(config, overrides)
    merged["meta_train"] = {**merged["meta_train"], "algorithms": [spec["algorithm"]]}
    merged["extensions"] = {**merged.get("extensions", {}), "variants": []}
    return validate(merged)


def variant_tasks(config: Mapping[str, Any]) -> list[str]:
    """The tasks variants are evaluated on (``extensions.tasks``, default: every task)."""

    tasks = config.get("extensions", {}).get("tasks")
    return list(task_names(config)) if tasks is None else list(tasks)


def check(config: Mapping[str, Any]) -> list[str]:
    """Problems with the ``extensions`` block (each naming its key), for :func:`validate`."""

    ext = config.get("extensions", {})
    problems: list[str] = []
    algorithms = config["meta_train"]["algorithms"]
    names = [v["name"] for v in ext.get("variants", [])]
    if ext.get("variants") and ext["reference"] not in [*algorithms, *names]:
        problems.append(
            f"'extensions.reference' = {ext['reference']!r} is not meta-trained; it must be one "
            f"of meta_train.algorithms {algorithms} or a variant's name {names}"
        )
    known = task_names(config)
    for task in ext.get("tasks") or []:
        if task not in known:
            problems.append(
                f"'extensions.tasks' names {task!r}, which is not a task; choose from {known}"
            )
    if problems:
        return problems
    seen: set[str] = set()
    for i, spec in enumerate(ext.get("variants", [])):
        key = f"extensions.variants.{i}"
        name = spec["name"]
        if name in seen or name in ("ippo", "mappo"):
            problems.append(
                f"'{key}.name' = {name!r} is used twice or is an algorithm's name; names must be "
                "unique and not ippo/mappo"
            )
        seen.add(name)
        try:
            cfg = variant_config(config, name)
            if cfg["env"]["reward"] == "counterfactual_log_val_loss_drop" and (
                cfg["env"]["momentum_actions"] or cfg["env"]["weight_decay_actions"]
            ):
                problems.append(
                    f"'{key}' ({name}) combines counterfactual rewards with momentum/weight-decay "
                    "actions; counterfactual rewards are for learning-rate-only agents"
                )
        except ConfigError as exc:
            detail = str(exc).split("\n", 1)[-1].replace("\n", " ")
            problems.append(f"'{key}' ({name}) gives an invalid config: {detail.strip()}")
    return problems
