"""MAPPO: PPO with a shared decentralised actor and a centralised critic.

Agents act exactly as in IPPO (shared :class:`~ganno.systems.networks.Actor` on ``agents_view``);
the critic reads the environment's ``global_state``, whose size does not depend on the number of
agents (pooled agent features plus global features), so it too runs on bigger inner networks. The
environment must return :class:`ganno.types.ObservationGlobalState`.

The learner itself is shared with IPPO: :func:`ganno.systems.anakin.make_ppo_learner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from ganno.config import ConfigError
from ganno.systems.anakin import InitFn, UpdateFn, family_members, make_ppo_learner
from ganno.systems.networks import Critic


def make_critic(cfg: Mapping[str, Any]) -> Critic:
    """Centralised critic on the global state (one value per agent row)."""
    return Critic(hidden_sizes=tuple(cfg["meta_train"]["hidden_sizes"]), input_field="global_state")


def make_learner(env: Any, cfg: Mapping[str, Any]) -> tuple[InitFn, UpdateFn]:
    """``(init_fn(key) -> LearnerState, update_fn(LearnerState) -> (LearnerState, metrics))``."""
    first = family_members(env)[0]  # a task family: its first member
    _, timestep = jax.eval_shape(first.reset, jax.random.PRNGKey(0))
    if not hasattr(timestep.observation, "global_state"):
        raise ConfigError(
            f"MAPPO needs a global state, but {type(env).__name__} returns "
            f"{type(timestep.observation).__name__}; return ganno.types.ObservationGlobalState "
            "or use IPPO"
        )
    return make_ppo_learner(env, cfg, make_critic(cfg))
