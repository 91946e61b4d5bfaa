"""The agent registry: every meta-trained agent is one entry of the config's ``agents`` list.

An agent is a name, the MARL system that trains it (``ippo`` or ``mappo``) and overrides of the
``env`` and ``meta_train`` blocks; ``ippo`` and ``mappo`` themselves are entries without overrides.
Every agent is meta-trained over ``meta_train.seeds`` (its own where it overrides them) by the
same rule, evaluated by the same rule on its ``tasks`` (default: every task), and its rows in the
results tables carry the method name ``ganno_<name>`` (:func:`method_name`, the only place that
spells the prefix).

Which part of the report an agent appears in is its ``question``: none for the agents of the
paper's claims (C1-C3: robustness, generalisation, improvement and schedule tables); ``Q1`` or
``Q2`` (GANNO.md's extensions), or any other identifier (a design study, say), for agents compared
with ``extensions.reference`` in a table of their own named after the question::

    agents:
      - {name: ippo, algorithm: ippo}
      - {name: mappo, algorithm: mappo}
      - {name: lr_momentum, question: Q1, tasks: [train, digits],
         env: {momentum_actions: [0.0, 0.5, 0.9]}}
      - {name: anchored, question: design, tasks: [train], env: {...}}

This module imports nothing from ganno (and no third-party package), so the Snakemake rules, the
config validation and the library all read agents the same way without loading JAX.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

#: The MARL systems an agent can be trained with (ganno.systems).
ALGORITHMS = ("ippo", "mappo")
#: The prefix of a meta-trained agent's method name in the results tables.
GANNO_PREFIX = "ganno_"
#: Titles of the questions GANNO.md asks; other questions take ``extensions.questions`` titles.
QUESTIONS = {
    "Q1": "which hyperparameters the agents set",
    "Q2": "the reward the agents are trained on",
}
#: The blocks an agent may override.
OVERRIDABLE = ("env", "meta_train")


class Agent(NamedTuple):
    """One entry of the ``agents`` list, defaults filled in."""

    name: str
    algorithm: str = "ippo"
    question: str | None = None  # None: the paper's claims C1-C3
    description: str = ""
    tasks: tuple[str, ...] | None = None  # None: every task
    overrides: Mapping[str, Any] = {}  # {"env": {...}, "meta_train": {...}}

    @property
    def method(self) -> str:
        return method_name(self.name)

    def setting(self) -> str:
        """What distinguishes the agent, for a table's ``setting`` column."""
        if self.description:
            return self.description
        env = self.overrides.get("env", {})
        return ", ".join(f"{k}={v}" for k, v in env.items()) or self.name


def method_name(agent: str) -> str:
    """The method name of an agent's policies in the results tables (``ganno_<agent>``)."""
    return f"{GANNO_PREFIX}{agent}"


def is_ganno(method: str) -> bool:
    """A meta-trained agent's method (``ganno_<agent>``), as opposed to a baseline."""
    return str(method).startswith(GANNO_PREFIX)


def agent_of(method: str) -> str:
    """The agent name of a ``ganno_<agent>`` method."""
    return str(method).removeprefix(GANNO_PREFIX)


def _agent(spec: Mapping[str, Any]) -> Agent:
    tasks = spec.get("tasks")
    return Agent(
        name=spec["name"],
        algorithm=spec.get("algorithm", "ippo"),
        question=spec.get("question"),
        description=spec.get("description", ""),
        tasks=None if tasks is None else tuple(tasks),
        overrides={k: spec[k] for k in OVERRIDABLE if k in spec},
    )


def agents(config: Mapping[str, Any], question: str | None | bool = True) -> list[Agent]:
    """The configured agents in config order: all of them (``question=True``), those of the
    paper's claims (``question=None``) or those of one question."""
    out = [_agent(spec) for spec in config.get("agents", [])]
    return out if question is True else [a for a in out if a.question == question]


def agent_names(config: Mapping[str, Any]) -> list[str]:
    return [a.name for a in agents(config)]


def get(config: Mapping[str, Any], name: str) -> Agent:
    """The agent called ``name``; a KeyError naming the configured ones otherwise."""
    found = {a.name: a for a in agents(config)}
    if name not in found:
        raise KeyError(f"no agent {name!r} in the config's agents; configured: {sorted(found)}")
    return found[name]


def meta_seeds(config: Mapping[str, Any], name: str) -> list[int]:
    """The seeds agent ``name`` is meta-trained over: its own ``meta_train.seeds`` where it sets
    them (fewer for a costly extension agent, say), else the config's ``meta_train.seeds``."""
    own = get(config, name).overrides.get("meta_train", {})
    return list(own.get("seeds", config["meta_train"]["seeds"]))


def seed_groups(config: Mapping[str, Any]) -> dict[tuple[int, ...], list[str]]:
    """The agents grouped by their meta-training seeds (:func:`meta_seeds`), the group of the
    config's own seeds first: one evaluation rule per group in the workflow, since a rule's
    outputs (one file per seed) cannot vary with the agent."""
    groups: dict[tuple[int, ...], list[str]] = {tuple(config["meta_train"]["seeds"]): []}
    for agent in agents(config):
        groups.setdefault(tuple(meta_seeds(config, agent.name)), []).append(agent.name)
    return {seeds: names for seeds, names in groups.items() if names}


def reference(config: Mapping[str, Any]) -> str:
    """The agent that every question's agents are compared with (``extensions.reference``)."""
    return config.get("extensions", {}).get("reference", "ippo")


def questions(config: Mapping[str, Any]) -> list[str]:
    """The questions with at least one agent besides the reference, in config order."""
    ref = reference(config)
    return list(dict.fromkeys(a.question for a in agents(config) if a.question and a.name != ref))


def question_title(config: Mapping[str, Any], question: str) -> str:
    titles = {**QUESTIONS, **config.get("extensions", {}).get("questions", {})}
    return titles.get(question, f"agents of the study {question}")


def check(config: Mapping[str, Any], task_names: list[str]) -> list[str]:
    """Problems with the ``agents`` list and ``extensions`` (each naming its key), given the
    config's task names; the overrides themselves are validated by ganno.config."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, agent in enumerate(agents(config)):
        if agent.name in seen:
            problems.append(f"'agents.{i}.name' = {agent.name!r} is used twice; names are unique")
        seen.add(agent.name)
        for task in agent.tasks or ():
            if task not in task_names:
                problems.append(
                    f"'agents.{i}.tasks' names {task!r}, which is not a task; choose from "
                    f"{task_names}"
                )
    ref = reference(config)
    if any(a.question for a in agents(config)) and ref not in seen:
        problems.append(
            f"'extensions.reference' = {ref!r} is not an agent; it must be one of {sorted(seen)}"
        )
    return problems


# --------------------------------------------------------------------------------------------
# Configs written before the registry
# --------------------------------------------------------------------------------------------

_OLD_KEYS = ("meta_train.algorithms", "extensions.variants", "extensions.tasks",
             "torch_deployment.algorithm")  # fmt: skip


def migrate(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A config in the form before the registry (``meta_train.algorithms``, ``extensions.variants``
    and ``extensions.tasks``, ``torch_deployment.algorithm``) rewritten with ``agents`` and
    ``torch_deployment.agent``; returns (config, the old keys found). A config that mixes both
    forms is returned unchanged, for validation to reject."""
    config = copy.deepcopy(dict(raw))
    meta = config.get("meta_train") or {}
    ext = config.get("extensions") or {}
    torch = config.get("torch_deployment") or {}
    found = [
        key
        for key, block in zip(_OLD_KEYS, (meta, ext, ext, torch), strict=True)
        if isinstance(block, Mapping) and key.split(".")[1] in block
    ]
    if not found or "agents" in config:
        return config, found
    agents_list: list[dict[str, Any]] = []
    if "algorithms" in meta:
        agents_list += [{"name": a, "algorithm": a} for a in meta.pop("algorithms")]
    elif "variants" in ext:
        agents_list += [{"name": a, "algorithm": a} for a in ALGORITHMS]  # the old default
    ref = ext.get("reference", "ippo")
    tasks = ext.pop("tasks", None)
    for spec in ext.pop("variants", []):
        entry = {"name": spec["name"], "algorithm": ref if ref in ALGORITHMS else "ippo", **spec}
        if tasks is not None:
            entry["tasks"] = list(tasks)
        agents_list.append(entry)
    if agents_list:
        config["agents"] = agents_list
    if "algorithm" in torch:
        torch["agent"] = torch.pop("algorithm")
    return config, found
