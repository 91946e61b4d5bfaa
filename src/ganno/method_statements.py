"""The sentences on method that open paper/README.md: the lr0 grid, how lr0 is tuned, the
meta-training seeds pooled, the shipped policy's seed selection, what the agents were
meta-trained on and what they choose and are rewarded for. Each is read from the config and
the settings the code itself uses (tested: they must say what the code does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ganno import agents as registry
from ganno import seed_selection
from ganno.results import lr0_grid
from ganno.tables import fmt_lr, tune_by

TUNING = {
    "val_accuracy": "the highest seed-mean final validation accuracy (ties: the lower validation "
    "loss)",
    "val_loss": "the lowest seed-mean final validation loss (ties: the higher validation accuracy)",
}


def grid_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on the lr0 grid every number comes from (the one
    :func:`ganno.results.lr0_grid` builds for every method and task)."""
    grid = lr0_grid(config)
    per = int(config["evaluation"]["lr0_per_decade"])
    return (
        f"Every method runs on every task from the same {len(grid)} initial rates, "
        f"{fmt_lr(grid[0])} to {fmt_lr(grid[-1])}, {per} a decade (`evaluation.lr0_per_decade`; "
        "`tables/grid_study`, made by `snakemake --cores all grid_study`, reruns some methods "
        "on a finer grid)."
    )


def tuning_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on how lr0 is tuned, from the value the code uses
    (``evaluation.tune_by``, passed to :func:`ganno.tables.tune`)."""
    return (
        f"*Tuned* means the lr0 with {TUNING[tune_by(config)]}, then the smaller lr0 "
        f"(`ganno.tables.tune`, `evaluation.tune_by: {tune_by(config)}`), for GANNO as for "
        "every baseline; the test split is never used to choose."
    )


def meta_seeds_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on how many meta-training seeds each GANNO method pools
    (:func:`ganno.agents.meta_seeds`: the agents that set their own seeds are named)."""
    default = len(config["meta_train"]["seeds"])
    own: dict[int, list[str]] = {}
    for agent in registry.agents(config):
        count = len(registry.meta_seeds(config, agent.name))
        if count != default:
            own.setdefault(count, []).append(f"`{agent.name}`")
    exceptions = "; ".join(f"{', '.join(names)}: {n}" for n, names in own.items())
    return f"GANNO methods pool their {default} meta-training seed(s)" + (
        f" ({exceptions})." if exceptions else "."
    )


def selection_statement(selection: Mapping[str, Any] | None) -> str:
    """The README's sentence on the shipped policy's row (``ganno_<agent>_selected``), from the
    selection record the report read (:func:`ganno.seed_selection.select_seed`); empty when the
    config chooses no seed."""
    if selection is None:
        return ""
    scores = ", ".join(
        f"seed {seed} {float(score['value']):.3f}" for seed, score in selection["scores"].items()
    )
    tasks = ", ".join(f"`{t}`" for t in selection["validation_tasks"])
    row = seed_selection.selected_method(selection["method"])
    return (
        f"`{row}` is the policy the pipeline ships: "
        f"the runs of `{selection['agent']}`'s meta-training seed {selection['seed']} alone, "
        f"chosen as {selection['rule']}; the validation tasks are {tasks}, neither meta-trained "
        f"on nor held out (validation scores: {scores})."
    )


def meta_training_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on what the main agents (those of the claims) were meta-trained on:
    the training task alone, or a task family (``meta_train.task_family``, listed), which by
    validation contains no evaluation task."""
    from ganno.config import agent_config, family_configs

    parts = []
    for agent in registry.agents(config, None):
        members = [name for name, _ in family_configs(agent_config(config, agent.name))]
        if len(members) == 1:
            parts.append(f"`{agent.name}` on the training task alone")
        else:
            family = ", ".join(f"`{m}`" for m in members[1:])
            parts.append(f"`{agent.name}` on the training task and its task family ({family})")
    held_out = " (validation refuses a family member that is an evaluation task)"
    has_family = any("family" in p for p in parts)
    return f"Meta-training: {'; '.join(parts)}{held_out if has_family else ''}."


ACTION_MODE_WORDS = {
    "compound": "a factor from {actions} on each layer's current rate, compounding over the "
    "episode",
    "anchored": "a level from {levels} (x{scale:.3g} per level) on the {base} schedule {step}, "
    "nothing compounding",
    "anchored_compound": "a factor from {actions} on a per-layer multiplier (within {bounds}) of "
    "the {base} schedule {step}",
}
#: What the anchored modes' base schedule scales (``env.base_step_size``).
BASE_STEP_WORDS = {
    "lr0": "from lr0",
    "dog": "whose step size is DoG's (`env.base_step_size: dog`: the largest distance the weights "
    "moved from their start over the root of the summed squared gradient norms; lr0 at the first "
    "step)",
}


def agent_design_statement(config: Mapping[str, Any]) -> str:
    """The README's sentence on what the main agents choose and are rewarded for, read from the
    settings their environments and learners are built from (:class:`EnvSettings`, the
    ``meta_train`` block of each agent's config)."""
    from ganno.config import agent_config
    from ganno.env_settings import EnvSettings

    def fmt_values(values: Any) -> str:
        return "{" + ", ".join(f"{v:g}" for v in values) + "}"

    parts = []
    for agent in registry.agents(config, None):
        cfg = agent_config(config, agent.name)
        env, mt = EnvSettings.from_config(cfg), cfg["meta_train"]
        actions = ACTION_MODE_WORDS[env.action_mode].format(
            actions=fmt_values(env.actions),
            levels=fmt_values(env.levels),
            scale=math.exp(env.level_scale),
            bounds=f"[{env.scale_bounds[0]:g}, {env.scale_bounds[1]:g}]",
            base=f"`{env.base_schedule}`",
            step=BASE_STEP_WORDS[env.base_step_size],
        )
        network = f"a {'GRU' if mt.get('gru_size', 0) else 'feed-forward'} actor"
        norm = "normalised" if mt.get("normalise_observations", False) else "raw"
        window = (
            "every step of an interval"
            if env.gradient_steps == env.steps_per_decision
            else f"the last {env.gradient_steps} of every {env.steps_per_decision} steps"
        )
        guard = "with" if env.guard else "without"
        ceiling = (
            f", every rate capped at `env.lr_bounds[1]` = {env.lr_bounds[1]:g}, evaluated {guard} "
            "the guard (`env.guard`)"
        )
        parts.append(
            f"`{agent.name}` ({agent.algorithm.upper()}) chooses {actions} "
            f"(`env.action_mode: {env.action_mode}`), is rewarded by `{env.reward}`, with "
            f"{network} on {norm} observations whose gradient features read {window}{ceiling}"
        )
    return f"Agent design: {'; '.join(parts)}."
