"""The multi-agent environment protocol we speak: Mava's, on top of jumanji's ``TimeStep``.

An environment has ``reset(key) -> (state, timestep)`` and ``step(state, action) -> (state,
timestep)``, both pure and ``vmap``-able. ``timestep.observation`` is an :class:`Observation`
(or :class:`ObservationGlobalState` for a centralised critic); rewards and discounts have one entry
per agent, shape ``[N]``; actions are integer arrays of shape ``[N]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import chex

from ganno import _import_jumanji_keeping_the_matplotlib_backend

if TYPE_CHECKING:
    from jumanji.types import StepType, TimeStep

__all__ = ["MarlEnv", "Observation", "ObservationGlobalState", "StepType", "TimeStep"]


class Observation(NamedTuple):
    """What every agent sees: Mava's ``Observation``."""

    agents_view: chex.Array  # [N, F] float32
    action_mask: chex.Array  # [N, A] bool
    step_count: chex.Array  # [N] int32, decisions taken so far in the episode


class ObservationGlobalState(NamedTuple):
    """Mava's ``ObservationGlobalState``: the observation plus a global state for a critic."""

    agents_view: chex.Array  # [N, F]
    action_mask: chex.Array  # [N, A]
    global_state: chex.Array  # [N, G], the same row for every agent up to its own position
    step_count: chex.Array  # [N]


@runtime_checkable
class MarlEnv(Protocol):
    """What the IPPO/MAPPO systems need from an environment."""

    num_agents: int
    action_dim: int
    time_limit: int

    def reset(self, key: chex.PRNGKey) -> tuple[Any, TimeStep]: ...

    def step(self, state: Any, action: chex.Array) -> tuple[Any, TimeStep]: ...


def __getattr__(name: str) -> Any:
    """jumanji's ``StepType`` and ``TimeStep``, imported when first asked for: a policy's
    :class:`Observation` (the optax scheduler's, a saved policy's shapes) needs no jumanji."""
    if name in ("StepType", "TimeStep"):
        _import_jumanji_keeping_the_matplotlib_backend()
        from jumanji import types

        return getattr(types, name)
    raise AttributeError(f"module 'ganno.types' has no attribute {name!r}")
