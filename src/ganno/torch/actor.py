"""A trained policy's actor in PyTorch, read from the files meta-training writes, without JAX.

:class:`TorchPolicy` loads ``policy.json`` and ``actor_params.msgpack`` (what
:meth:`ganno.Policy.save` writes and the package ships in ``ganno/pretrained/<name>/``) and takes
the same decisions as the JAX :class:`ganno.Policy`: the same network (:class:`TorchActor`,
the PyTorch twin of :class:`ganno.systems.networks.Actor` and ``RecurrentActor``), the same
observation normalisation, the same masked categorical (its most likely action, or a sample).
:class:`ganno.torch.GannoScheduler` decides with it, so a PyTorch training loop needs neither
JAX nor flax::

    policy = ganno.torch.pretrained_policy()          # or TorchPolicy.load(run / "policy")
    sched = GannoScheduler(optimizer, policy, val_loss_fn=val_loss)

The weights have one source, the msgpack file: flax writes a nested dictionary of arrays in
msgpack, each array an extension of type 1 holding ``(shape, dtype name, C-order bytes)``;
:func:`read_flax_msgpack` decodes that with the ``msgpack`` package (a dependency of flax).
``tests/test_torch_actor.py`` checks the decisions and the distribution against the JAX actor's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganno.errors import PolicyLoadError, UsageError
from ganno.io import (
    HOW_TO_CREATE_A_POLICY,
    POLICY_CONFIG_FILE,
    POLICY_PARAMS_FILE,
    saved_policy_files,
)

#: What :meth:`ganno.Policy.save` writes.
CONFIG_FILE, PARAMS_FILE = POLICY_CONFIG_FILE, POLICY_PARAMS_FILE
#: The actor kinds PyTorch runs (``ganno.systems.networks.ACTOR_KINDS``: every kind there is).
TORCH_ACTOR_KINDS = ("mlp_categorical", "gru_categorical")
#: The logit given to masked actions (``ganno.systems.networks.MASKED_LOGIT``).
MASKED_LOGIT = -1e9
#: ``ganno.systems.normalisation``'s epsilon under the square root, and its clip (a saved
#: normaliser records its clip; policies saved before it did used this one).
NORMALISER_EPS = 1e-8
NORMALISER_CLIP = 5.0
_FLAX_NDARRAY, _FLAX_NPSCALAR = 1, 3  # flax.serialization's msgpack extension types
_HOW_TO_CREATE = HOW_TO_CREATE_A_POLICY


def _flax_ext_hook(code: int, data: bytes) -> Any:
    import msgpack

    if code not in (_FLAX_NDARRAY, _FLAX_NPSCALAR):
        raise ValueError(f"msgpack extension type {code} is not one flax writes for arrays")
    shape, dtype, buffer = msgpack.unpackb(data, raw=False)
    if dtype in ("bfloat16", b"bfloat16"):
        raise ValueError("bfloat16 weights (a JAX-only type): save the policy in float32")
    array = np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape, order="C")
    return array[()] if code == _FLAX_NPSCALAR else array


def read_flax_msgpack(data: bytes) -> dict[str, Any]:
    """The nested dictionary of NumPy arrays that ``flax.serialization.msgpack_serialize``
    wrote (``msgpack_restore`` without flax; arrays over 1 GiB, which flax splits into chunks,
    are refused: no actor is that large)."""
    import msgpack

    tree = msgpack.unpackb(data, ext_hook=_flax_ext_hook, raw=False)
    if not isinstance(tree, dict):
        raise ValueError("not a flax parameter dictionary")

    def check(node: Any) -> None:
        if isinstance(node, dict):
            if "__msgpack_chunked_array__" in node:
                raise ValueError("an array of over 1 GiB (flax's chunked form): not an actor")
            for value in node.values():
                check(value)

    check(tree)
    return tree


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_flatten(value, name))
        else:
            out[name] = np.asarray(value)
    return out


class TorchActor(torch.nn.Module):
    """The shared actor (:mod:`ganno.systems.networks`) in PyTorch: a ReLU MLP torso
    (``hidden_sizes``), a GRU cell of ``gru_size`` units if recurrent, a linear head of
    ``action_dim`` logits; every row of ``[..., N, obs_dim]`` (one per agent) independently,
    after the observation normaliser (``mean``, ``var`` ``[obs_dim]``) if it has one."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int],
        gru_size: int = 0,
        normaliser: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        sizes = [int(obs_dim), *(int(h) for h in hidden_sizes)]
        kw = {"dtype": torch.float32}
        self.torso = torch.nn.ModuleList(
            torch.nn.Linear(a, b, **kw) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.gru = torch.nn.GRUCell(sizes[-1], int(gru_size), **kw) if gru_size else None
        self.head = torch.nn.Linear(int(gru_size) or sizes[-1], int(action_dim), **kw)
        self.obs_dim, self.action_dim, self.gru_size = int(obs_dim), int(action_dim), int(gru_size)
        self.normalised = normaliser is not None
        if normaliser is not None:
            mean = torch.as_tensor(np.asarray(normaliser["mean"], np.float32))
            var = torch.as_tensor(np.asarray(normaliser["var"], np.float32))
            if mean.shape != (self.obs_dim,) or var.shape != (self.obs_dim,):
                raise ValueError(
                    f"the observation normalisation has {tuple(mean.shape)} features but the "
                    f"actor reads {self.obs_dim}"
                )
            self.register_buffer("norm_mean", mean)
            self.register_buffer("norm_std", torch.sqrt(var + NORMALISER_EPS))
            self.norm_clip = float(normaliser.get("clip", NORMALISER_CLIP))
        self.requires_grad_(False)

    def normalise(self, view: torch.Tensor) -> torch.Tensor:
        """The observation as the actor reads it (``ganno.systems.normalisation.normalise``)."""
        if not self.normalised:
            return view
        return torch.clamp((view - self.norm_mean) / self.norm_std, -self.norm_clip, self.norm_clip)

    def forward(
        self,
        view: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        carry: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(next carry, masked logits [..., N, action_dim])`` for observations ``view``
        ``[..., N, obs_dim]`` (the carry ``[..., N, gru_size]`` of a recurrent actor, else
        None); masked actions (``action_mask`` False) get :data:`MASKED_LOGIT`."""
        x = self.normalise(view.to(torch.float32))
        for linear in self.torso:
            x = torch.relu(linear(x))
        if self.gru is not None:
            if carry is None:
                raise ValueError("a recurrent actor needs its carry (initial_carry at the start)")
            rows = x.reshape(-1, x.shape[-1])
            carry = self.gru(rows, carry.reshape(-1, self.gru_size)).reshape(*x.shape[:-1], -1)
            x = carry
        logits = self.head(x)
        if action_mask is not None:
            logits = torch.where(action_mask.to(torch.bool), logits, MASKED_LOGIT)
        return carry, logits

    @torch.no_grad()
    def load_flax_params(self, params: Mapping[str, Any]) -> TorchActor:
        """Copy a flax actor's parameters (``{"params": {"MLP_0": {"Dense_i": ...}, "gru":
        {...}, "Dense_0": ...}}``, NumPy or JAX arrays) into this module; returns it. Raises
        ``ValueError`` if they are not this actor's (other layers or shapes)."""
        flat = _flatten(params)
        expected = self._flax_shapes()
        found = {k: tuple(v.shape) for k, v in flat.items()}
        if found != expected:
            raise ValueError(f"flax parameters {found} do not fit this actor's {expected}")

        def dense(name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
            kernel = torch.from_numpy(np.array(flat[f"{name}/kernel"], np.float32).T.copy())
            bias = flat.get(f"{name}/bias")
            return kernel, None if bias is None else torch.from_numpy(np.array(bias, np.float32))

        for i, linear in enumerate(self.torso):
            linear.weight.copy_(dense(f"params/MLP_0/Dense_{i}")[0])
            linear.bias.copy_(dense(f"params/MLP_0/Dense_{i}")[1])
        if self.gru is not None:
            # flax's GRUCell is torch's with the recurrent r and z biases zero (gates r, z, n)
            gates = [dense(f"params/gru/{g}") for g in ("ir", "iz", "in", "hr", "hz", "hn")]
            self.gru.weight_ih.copy_(torch.cat([w for w, _ in gates[:3]]))
            self.gru.bias_ih.copy_(torch.cat([b for _, b in gates[:3]]))
            self.gru.weight_hh.copy_(torch.cat([w for w, _ in gates[3:]]))
            self.gru.bias_hh.copy_(torch.cat([torch.zeros(2 * self.gru_size), gates[5][1]]))
        self.head.weight.copy_(dense("params/Dense_0")[0])
        self.head.bias.copy_(dense("params/Dense_0")[1])
        return self

    def _flax_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for i, linear in enumerate(self.torso):
            shapes[f"params/MLP_0/Dense_{i}/kernel"] = (linear.in_features, linear.out_features)
            shapes[f"params/MLP_0/Dense_{i}/bias"] = (linear.out_features,)
        if self.gru is not None:
            h = self.gru_size
            for gate in ("ir", "iz", "in"):
                shapes[f"params/gru/{gate}/kernel"] = (self.gru.input_size, h)
                shapes[f"params/gru/{gate}/bias"] = (h,)
            for gate in ("hr", "hz", "hn"):
                shapes[f"params/gru/{gate}/kernel"] = (h, h)
            shapes["params/gru/hn/bias"] = (h,)
        shapes["params/Dense_0/kernel"] = (self.head.in_features, self.head.out_features)
        shapes["params/Dense_0/bias"] = (self.head.out_features,)
        return shapes


class TorchPolicy:
    """A saved policy's actor and config, deciding in PyTorch (the :class:`ganno.Policy`
    interface the scheduler uses: ``config``, ``recurrent``, ``initial_carry``, ``step``).

    ``config`` is the policy's ``policy.json`` (``network`` rebuilds the actor,
    ``observation_normalisation`` its normaliser, ``env`` the settings the scheduler follows);
    ``params`` the flax parameter dictionary (NumPy or JAX arrays)."""

    def __init__(self, params: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        config = dict(config)
        config.pop("format_version", None)
        net = config.get("network")
        if not isinstance(net, Mapping):
            raise ValueError("a policy config needs a 'network' entry (see actor_config)")
        kind = net.get("kind")
        if kind not in TORCH_ACTOR_KINDS:
            raise ValueError(
                f"actor kind {kind!r} has no PyTorch version (PyTorch runs {TORCH_ACTOR_KINDS}); "
                "decide in JAX instead: GannoScheduler(..., ganno.Policy.load(dir), actor='jax')"
            )
        self._config_json = json.dumps(config, sort_keys=True)
        self.network = TorchActor(
            net["obs_dim"],
            net["action_dim"],
            net["hidden_sizes"],
            int(net.get("gru_size", 0)) if kind == "gru_categorical" else 0,
            config.get("observation_normalisation"),
        ).load_flax_params(params)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self._config_json)

    @property
    def recurrent(self) -> bool:
        """Whether the actor carries a hidden state from one decision to the next."""
        return self.network.gru is not None

    @classmethod
    def load(cls, directory: str | Path) -> TorchPolicy:
        """Read a policy written by :meth:`ganno.Policy.save` (its ``policy.json`` and
        ``actor_params.msgpack``); the errors of :meth:`ganno.Policy.load` if it is missing or
        corrupt."""
        directory = Path(directory)
        config_path, params_path = saved_policy_files(directory)
        try:
            config = json.loads(config_path.read_text())
            config["network"]["hidden_sizes"]  # noqa: B018 -- a policy's config has it
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise PolicyLoadError(
                f"the policy config {config_path} is corrupt or not a policy ({exc}); "
                "delete the folder and " + _HOW_TO_CREATE
            ) from exc
        try:
            params = read_flax_msgpack(params_path.read_bytes())
        except Exception as exc:  # msgpack raises several unrelated types on bad bytes
            raise PolicyLoadError(
                f"the policy parameters {params_path} are corrupt ({type(exc).__name__}: {exc}); "
                "delete the folder and " + _HOW_TO_CREATE
            ) from exc
        try:
            return cls(params, config)
        except ValueError as exc:
            if "no PyTorch version" in str(exc):
                raise
            raise PolicyLoadError(
                f"the parameters in {params_path} do not fit the network in {config_path} "
                f"({config['network']}); the files come from different runs or are corrupt "
                f"({exc})"
            ) from exc

    @classmethod
    def from_policy(cls, policy: Any) -> TorchPolicy:
        """The PyTorch twin of a loaded :class:`ganno.Policy` (its parameters copied)."""
        config = policy.config
        if policy.normaliser is not None:  # given in memory rather than saved in the config
            stats = {
                k: np.asarray(policy.normaliser[k], np.float32).tolist() for k in ("mean", "var")
            }
            config["observation_normalisation"] = {
                **(config.get("observation_normalisation") or {}),
                **stats,
            }
        return cls(policy.params, config)

    def initial_carry(self, num_agents: int) -> torch.Tensor | None:
        """The hidden state at an episode's start: zeros ``[N, gru_size]`` if recurrent, else
        None."""
        if not self.recurrent:
            return None
        return torch.zeros(int(num_agents), self.network.gru_size)

    @torch.no_grad()
    def step_logits(
        self,
        carry: torch.Tensor | None,
        view: torch.Tensor,
        action_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(next carry, the categorical's log-probabilities [..., N, A])`` (``log_softmax`` of
        the masked logits: what ``distrax.Categorical(logits).logits`` holds)."""
        carry, logits = self.network(view, action_mask, carry)
        return carry, torch.log_softmax(logits, dim=-1)

    def step(
        self,
        carry: torch.Tensor | None,
        view: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        *,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """One decision: ``(next carry, actions [..., N] int64)``, the most likely valid action
        of every agent (the first of equals, as ``argmax``), or if not ``greedy`` a sample
        drawn with ``generator``."""
        carry, log_probs = self.step_logits(carry, view, action_mask)
        if greedy:
            return carry, torch.argmax(log_probs, dim=-1)
        rows = log_probs.reshape(-1, log_probs.shape[-1]).exp()
        drawn = torch.multinomial(rows, 1, generator=generator)
        return carry, drawn.reshape(log_probs.shape[:-1])

    def act(self, view: torch.Tensor, action_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The most likely valid action of every agent (a feed-forward policy)."""
        if self.recurrent:
            raise TypeError(
                "this policy is recurrent (a GRU actor): call step(carry, view) with carry = "
                "policy.initial_carry(num_agents) at the episode's start"
            )
        return self.step(None, view, action_mask)[1]


def pretrained_policy(name: str = "ippo") -> TorchPolicy:
    """The policy ``name`` shipped with the package, deciding in PyTorch (JAX not imported;
    :func:`ganno.pretrained_policy` is the same policy as a JAX :class:`ganno.Policy`)."""
    from ganno.pretrained import directory

    return TorchPolicy.load(directory(name))


# ----------------------------------------------------------------------------- deciding
#: Where a scheduler's policy decides: in PyTorch (:class:`TorchPolicy`) or in JAX (ganno.Policy).
ACTORS = ("torch", "jax")


def carry_to_numpy(carry: Any) -> np.ndarray | None:
    """A recurrent policy's hidden state as a NumPy copy (None for a feed-forward policy)."""
    if carry is None or isinstance(carry, tuple) and not carry:
        return None
    return carry.numpy().copy() if isinstance(carry, torch.Tensor) else np.array(carry)


def decider(policy: Any, actor: str) -> Any:
    """What takes the decisions: ``policy`` as a :class:`TorchPolicy` (``actor="torch"``) or the
    JAX :class:`ganno.Policy` itself (``"jax"``)."""
    if actor not in ACTORS:
        raise ValueError(f"actor={actor!r}; choose one of {ACTORS}")
    if isinstance(policy, TorchPolicy):
        if actor == "jax":
            raise UsageError(
                "actor='jax' decides with a JAX policy: pass ganno.Policy.load(dir) (or "
                "ganno.pretrained_policy()), not a TorchPolicy"
            )
        return policy
    if not (hasattr(policy, "params") and hasattr(policy, "config")):
        raise TypeError(
            f"policy: a ganno.torch.TorchPolicy or a ganno.Policy, not {type(policy).__name__}"
        )
    return TorchPolicy.from_policy(policy) if actor == "torch" else policy


_ACT_CACHE: dict[bool, Any] = {}


def jax_act(policy: Any, greedy: bool):
    """A jitted ``policy.step`` (compiled once per observation and carry shape, shared by all
    schedulers): ``(policy, carry, obs[, key]) -> (carry, actions)``."""
    import jax

    if greedy not in _ACT_CACHE:
        if greedy:
            _ACT_CACHE[greedy] = jax.jit(lambda p, c, obs: p.step(c, obs, greedy=True))
        else:
            _ACT_CACHE[greedy] = jax.jit(lambda p, c, obs, key: p.step(c, obs, key, greedy=False))
    return _ACT_CACHE[greedy]


def jax_key(seed: int):
    import jax

    return jax.random.PRNGKey(int(seed))
