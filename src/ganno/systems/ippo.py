"""IPPO: independent PPO with parameter sharing.

Every agent acts with the shared :class:`~ganno.systems.networks.Actor` on its own
``agents_view`` and is judged by a critic that, too, reads only its own ``agents_view``. Nothing is
centralised, so actor and critic run unchanged on any number of agents.

The learner itself (rollout, GAE, PPO epochs) is the one MAPPO uses too:
:func:`ganno.systems.anakin.make_ppo_learner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ganno.systems.anakin import InitFn, UpdateFn, make_ppo_learner
from ganno.systems.networks import Critic


def make_critic(cfg: Mapping[str, Any]) -> Critic:
    """Per-agent critic on the agent's own view."""
    return Critic(hidden_sizes=tuple(cfg["meta_train"]["hidden_sizes"]), input_field="agents_view")


def make_learner(env: Any, cfg: Mapping[str, Any]) -> tuple[InitFn, UpdateFn]:
    """``(init_fn(key) -> LearnerState, update_fn(LearnerState) -> (LearnerState, metrics))``."""
    return make_ppo_learner(env, cfg, make_critic(cfg))
