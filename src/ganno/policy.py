"""A trained policy: the shared actor's parameters plus the config needed to rebuild the network.

``Policy.load(dir)`` reads what meta-training wrote to ``<run>/policy/``; ``policy.act(obs)`` picks
one action per agent and works for any number of agents (the agent axis is a batch axis). A
``Policy`` is a pytree (its parameters are the leaves), so it can be passed through ``jax.jit``.

A recurrent policy (``policy.recurrent``) remembers the episode so far in a hidden state per
agent: start an episode with ``carry = policy.initial_carry(num_agents)`` and decide with
``carry, actions = policy.step(carry, obs)``. ``step`` works for every policy (a feed-forward one
carries nothing), so code that drives any policy uses it; ``act`` serves feed-forward ones only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import serialization, traverse_util

from ganno.deployment import UNRECORDED
from ganno.errors import (  # noqa: F401 -- importable from here, as before
    PolicyLoadError,
    PolicyMismatchError,
    PolicyNotFoundError,
)
from ganno.io import (
    HOW_TO_CREATE_A_POLICY,
    POLICY_CONFIG_FILE,
    POLICY_PARAMS_FILE,
    atomic_write,
    saved_policy_files,
)
from ganno.systems.networks import (
    RecurrentActor,
    actor_step,
    init_actor,
    initial_carry,
    make_actor,
)
from ganno.systems.normalisation import normalise

CONFIG_FILE, PARAMS_FILE = POLICY_CONFIG_FILE, POLICY_PARAMS_FILE  # importable from here
FORMAT_VERSION = 1
_HOW_TO_CREATE = HOW_TO_CREATE_A_POLICY


@jax.tree_util.register_pytree_node_class
class Policy:
    """Shared actor parameters and their config (``config["network"]`` rebuilds the actor)."""

    def __init__(self, params: Any, config: dict[str, Any], normaliser: Any = None):
        if "network" not in config:
            raise ValueError("a policy config needs a 'network' entry (see actor_config)")
        self.params = params
        self._config_json = json.dumps(config, sort_keys=True)
        self.network = make_actor(config["network"])
        saved = config.get("observation_normalisation")
        if normaliser is None and saved is not None:
            normaliser = {k: jnp.asarray(saved[k], jnp.float32) for k in ("mean", "var")}
            width = normaliser["mean"].shape[-1]
            if width != config["network"]["obs_dim"]:
                raise ValueError(
                    f"the observation normalisation has {width} features but the actor reads "
                    f"{config['network']['obs_dim']}"
                )
        #: The running mean and variance ``{"mean", "var"}`` of every feature that the actor's
        #: inputs were normalised with in meta-training (None: they were not), applied by
        #: :meth:`distribution` and so by :meth:`act`; a pytree child, like the parameters.
        self.normaliser = normaliser

    @property
    def config(self) -> dict[str, Any]:
        return copy.deepcopy(json.loads(self._config_json))

    def tree_flatten(self) -> tuple[tuple[Any, Any], str]:
        return (self.params, self.normaliser), self._config_json

    @classmethod
    def tree_unflatten(cls, config_json: str, children: tuple[Any, Any]) -> Policy:
        return cls(children[0], json.loads(config_json), children[1])

    @property
    def recurrent(self) -> bool:
        """Whether the actor carries a hidden state from one decision to the next."""
        return isinstance(self.network, RecurrentActor)

    def initial_carry(self, num_agents: int, batch_shape: tuple[int, ...] = ()) -> Any:
        """What :meth:`step` carries at an episode's start, for ``num_agents`` agents (after
        ``batch_shape``): zeros ``[*batch_shape, N, H]`` if recurrent, else ``()``."""
        return initial_carry(self.network, (*batch_shape, int(num_agents)))

    def _seen(self, observation: Any) -> Any:
        """The observation as the actor reads it (normalised if it was in meta-training)."""
        if self.normaliser is None:
            return observation
        view = normalise(observation.agents_view, self.normaliser)
        return observation._replace(agents_view=view)

    def distribution(self, observation: Any) -> Any:
        """The masked categorical over actions, batch shape ``[..., N]`` (the observation is
        normalised first if the policy was meta-trained on normalised observations). Feed-forward
        policies only; a recurrent one needs its carry (:meth:`step_distribution`)."""
        self._refuse_recurrent("distribution(obs)", "step_distribution(carry, obs)")
        return self.network.apply(self.params, self._seen(observation))

    def step_distribution(self, carry: Any, observation: Any) -> tuple[Any, Any]:
        """``(next carry, the masked categorical over actions)`` for any policy."""
        return actor_step(self.network, self.params, carry, self._seen(observation))

    def step(
        self,
        carry: Any,
        observation: Any,
        key: chex.PRNGKey | None = None,
        greedy: bool = True,
    ) -> tuple[Any, jax.Array]:
        """One decision of any policy: ``(next carry, actions [..., N] int32)`` from the carry of
        the previous decision (:meth:`initial_carry` at an episode's start) and the observation
        (see :meth:`act` for ``key`` and ``greedy``). Jittable (``greedy`` static)."""
        carry, policy = self.step_distribution(carry, observation)
        return carry, _choose(policy, key, greedy)

    def act(
        self, observation: Any, key: chex.PRNGKey | None = None, greedy: bool = True
    ) -> jax.Array:
        """Actions ``[..., N]`` (int32) for an observation with ``agents_view`` ``[..., N, F]`` and
        ``action_mask`` ``[..., N, A]``: the most likely valid action if ``greedy``, else a sample
        drawn with ``key``. Jittable (``greedy`` must then be static). Feed-forward policies only
        (a recurrent one decides with :meth:`step`)."""
        return _choose(self.distribution(observation), key, greedy)

    def _refuse_recurrent(self, call: str, instead: str) -> None:
        if self.recurrent:
            raise TypeError(
                f"this policy is recurrent (a GRU actor): {call} has no hidden state to use; call "
                f"{instead} with carry = policy.initial_carry(num_agents) at the episode's start "
                "and the returned carry afterwards"
            )

    def save(self, directory: str | Path) -> Path:
        """Write ``policy.json`` and ``actor_params.msgpack`` to ``directory`` (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        params = jax.tree.map(lambda x: jax.device_get(x), self.params)
        atomic_write(directory / PARAMS_FILE, serialization.msgpack_serialize(params))
        config = {"format_version": FORMAT_VERSION, **self.config}
        atomic_write(directory / CONFIG_FILE, json.dumps(config, indent=2).encode())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Policy:
        """Read a policy written by :meth:`save`; clear errors if it is missing or corrupt."""
        directory = Path(directory)
        config_path, params_path = saved_policy_files(directory)
        try:
            config = json.loads(config_path.read_text())
            config.pop("format_version", None)
            network = make_actor(config["network"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PolicyLoadError(
                f"the policy config {config_path} is corrupt or not a policy ({exc}); "
                "delete the folder and " + _HOW_TO_CREATE
            ) from exc
        try:
            params = serialization.msgpack_restore(params_path.read_bytes())
        except Exception as exc:  # msgpack raises several unrelated types on bad bytes
            raise PolicyLoadError(
                f"the policy parameters {params_path} are corrupt ({type(exc).__name__}: {exc}); "
                "delete the folder and " + _HOW_TO_CREATE
            ) from exc
        expected = _expected_param_shapes(network, config["network"])
        try:
            found = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(params).items()}
        except (AttributeError, TypeError):
            found = None
        if found != expected:
            raise PolicyLoadError(
                f"the parameters in {params_path} do not fit the network in {config_path} "
                f"({config['network']}); the files come from different runs or are corrupt"
            )
        return cls(jax.tree.map(jnp.asarray, params), config)


def _choose(policy: Any, key: chex.PRNGKey | None, greedy: bool) -> jax.Array:
    if greedy:
        return policy.mode().astype(jnp.int32)
    if key is None:
        raise ValueError("sampling an action (greedy=False) needs a PRNG key")
    return policy.sample(seed=key).astype(jnp.int32)


def check_policy_fits(policy: Policy, env: Any, where: str | Path, task: str) -> None:
    """Raise :class:`PolicyMismatchError` unless ``policy`` (saved at ``where``) reads the
    features and chooses among the actions of ``env`` (the environment of ``task``)."""
    net = policy.config["network"]
    if (net["obs_dim"], net["action_dim"]) != (env.num_features, env.action_dim):
        raise PolicyMismatchError(
            f"policy {where} reads {net['obs_dim']} features and has {net['action_dim']} "
            f"actions, but task {task!r} of this config gives {env.num_features} features and "
            f"{env.action_dim} actions: it was trained with another observation or action set; "
            "pass the config it was trained with (its run folder's config.yaml)"
        )
    check_policy_env(policy, env, where)


def _expected_param_shapes(network: Any, net_config: dict[str, Any]) -> Any:
    from ganno.types import Observation

    obs = Observation(
        agents_view=jnp.zeros((1, net_config["obs_dim"]), jnp.float32),
        action_mask=jnp.ones((1, net_config["action_dim"]), bool),
        step_count=jnp.zeros((1,), jnp.int32),
    )
    shapes = jax.eval_shape(lambda k: init_actor(network, k, obs), jax.random.PRNGKey(0))
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes).items()}


#: The environment attributes a policy is saved with (``policy.json``'s ``env`` entry), so that it
#: can be deployed (e.g. by :class:`ganno.torch.GannoScheduler`) without the training config.
ENV_SETTINGS: tuple[str, ...] = (
    "steps_per_decision",
    "num_decisions",
    "actions",
    "lr_bounds",
    "lr0_range",
    "divergence_loss_ratio",
    "action_mode",
    "gradient_window",
)
#: Saved besides in the anchored action modes (how a choice becomes a rate).
ANCHORED_SETTINGS: tuple[str, ...] = (
    "base_schedule",
    "base_step_size",
    "levels",
    "level_scale",
    "scale_bounds",
)


def env_settings(env: Any) -> dict[str, Any] | None:
    """The settings of a GANNO environment that a deployed policy needs, or None for an
    environment without them (e.g. the coordination game of the tests). ``guard: true`` is
    recorded only when on (``env.guard``; a policy without it deploys unguarded, as before)."""
    if not all(hasattr(env, name) for name in ENV_SETTINGS):
        return None
    names = ENV_SETTINGS
    if getattr(env, "action_mode", "compound") != "compound":
        names = names + ANCHORED_SETTINGS
    settings: dict[str, Any] = {}
    for name in names:
        value = getattr(env, name)
        settings[name] = [float(v) for v in value] if isinstance(value, tuple | list) else value
    settings["steps_per_decision"] = int(settings["steps_per_decision"])
    settings["num_decisions"] = int(settings["num_decisions"])
    settings["divergence_loss_ratio"] = float(settings["divergence_loss_ratio"])
    if hasattr(env, "feature_names"):
        settings["feature_names"] = list(env.feature_names)
    if getattr(env, "guard", False):  # env.guard, what evaluation and the deployments follow
        settings["guard"] = True
    extra = getattr(env, "hyperparameter_actions", None)
    if extra:
        settings["hyperparameter_actions"] = {k: [float(v) for v in vs] for k, vs in extra.items()}
    return settings


#: The settings that decide what a policy's actions do: an environment that differs in any of them
#: would play the policy's outputs as other choices than the ones it learned.
ACTION_SETTINGS: tuple[str, ...] = ("action_mode", "actions", *ANCHORED_SETTINGS)


def check_policy_env(policy: Policy, env: Any, where: str | Path = "the policy") -> None:
    """Raise :class:`PolicyMismatchError` naming the setting if ``env`` does not interpret the
    policy's actions and features as in meta-training (its saved ``env`` settings; a policy saved
    before action modes existed was trained in the compound mode)."""
    saved = policy.config.get("env")
    actual = env_settings(env)
    if not saved or actual is None:
        return
    # a policy saved before these settings existed: compound mode, features of whole intervals
    saved = {name: UNRECORDED[name] for name in ("action_mode", "gradient_window")} | saved
    names = ACTION_SETTINGS if saved["action_mode"] != "compound" else ACTION_SETTINGS[:2]
    for name in (*names, "gradient_window", "feature_names"):
        if name in saved and saved[name] != actual.get(name):
            raise PolicyMismatchError(
                f"{where} was meta-trained with env.{name} = {saved[name]}, but this environment "
                f"has {actual.get(name)}; evaluate it with the config it was trained with (its run "
                "folder's config.yaml, or the agent's overrides)"
            )
