"""The PPO learner IPPO and MAPPO share, Anakin style: environments and learner in one jitted step.

One update = a rollout of ``rollout_length`` steps in ``num_envs`` vmapped environments
(``lax.scan``), GAE, then ``ppo_epochs`` epochs over ``num_minibatches`` shuffled minibatches,
updating the shared actor and the critic with Adam after global-norm clipping. The systems differ
only in the critic they pass in (what it reads); see :mod:`ganno.systems.ippo` and ``mappo``.

``update_fn`` is pure and jittable, :func:`scan_updates` runs several updates in one compiled call,
and ``jax.vmap(init_fn)`` / ``jax.vmap(update_fn)`` run several seeds at once.

A recurrent actor (``meta_train.gru_size`` > 0, Mava's rec_ippo design) carries its hidden state
through the rollout (reset to zeros where an episode ends) and learns from whole sequences: the
rollout's hidden state at its first step is kept, minibatches are groups of parallel
environments (every step of each), and the actor is unrolled over them from that state, so the
log-probabilities of the loss are those the rollout's actions were drawn with. The critic stays
feed-forward (the observation carries the episode's progress).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ganno.config import ConfigError
from ganno.systems import normalisation
from ganno.systems.networks import (
    actor_config,
    actor_step,
    init_actor,
    initial_carry,
    make_actor,
    reset_carry,
)
from ganno.systems.ppo import (
    LearnerState,
    OptStates,
    Params,
    PPOTransition,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    normalize,
)
from ganno.systems.wrappers import EPISODE_METRICS, wrap

InitFn = Callable[[chex.PRNGKey], LearnerState]
UpdateFn = Callable[[LearnerState], tuple[LearnerState, dict]]


def ppo_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``meta_train`` section of a full (validated) config, checked for PPO's batch layout."""
    if "meta_train" not in cfg:
        raise ConfigError("the config has no 'meta_train' section; pass a full, validated config")
    mt = dict(cfg["meta_train"])
    batch = mt["num_envs"] * mt["rollout_length"]
    if batch % mt["num_minibatches"]:
        raise ConfigError(
            f"'meta_train.num_minibatches' = {mt['num_minibatches']} must divide num_envs x "
            f"rollout_length = {batch}"
        )
    if mt.get("gru_size", 0) and mt["num_envs"] % mt["num_minibatches"]:
        raise ConfigError(
            f"'meta_train.num_minibatches' = {mt['num_minibatches']} must divide 'num_envs' = "
            f"{mt['num_envs']} for a recurrent actor (gru_size > 0), whose minibatches are whole "
            "sequences of parallel environments; change one of them"
        )
    return mt


def steps_per_update(cfg: Mapping[str, Any]) -> int:
    """Environment steps (summed over parallel environments) one update collects."""
    mt = cfg["meta_train"]
    return int(mt["num_envs"] * mt["rollout_length"])


def actor_network_config(env: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The actor's config (saved with a policy), from the environment's observation shape."""
    _, timestep = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    obs_dim = timestep.observation.agents_view.shape[-1]
    mt = cfg["meta_train"]
    return actor_config(obs_dim, env.action_dim, mt["hidden_sizes"], mt.get("gru_size", 0))


def _optimiser(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=1e-5))


def _finished_episode_sums(info: dict) -> dict[str, chex.Array]:
    """Sums over the finished episodes of a rollout of every episode metric, and their count."""
    terminal = info["is_terminal_step"]
    sums = {
        name: jnp.sum(jnp.where(terminal, value, 0.0))
        for name, value in info.items()
        if name != "is_terminal_step"
    }
    return {"num_episodes": terminal.sum(), "episode_sums": sums}


#: The observation fields that are normalised when ``meta_train.normalise_observations`` is on.
NORMALISED_FIELDS = ("agents_view", "global_state")


def _normalised(obs: Any, obs_norm: dict) -> Any:
    """``obs`` with every field that has running statistics normalised by them."""
    return obs._replace(
        **{f: normalisation.normalise(getattr(obs, f), s) for f, s in obs_norm.items()}
    )


def _observation_stats(obs: Any, obs_norm: dict | None = None) -> dict:
    """Running statistics of the observation fields (started, or updated with ``obs``)."""
    fields = [f for f in NORMALISED_FIELDS if hasattr(obs, f)]
    if obs_norm is None:
        return {f: normalisation.initial_stats(getattr(obs, f)) for f in fields}
    return {f: normalisation.update_stats(obs_norm[f], getattr(obs, f)) for f in fields}


def family_members(env: Any) -> list[Any]:
    """The environments a learner trains on: a task family's members (a list or tuple of
    environments), or the one environment given."""
    return list(env) if isinstance(env, list | tuple) else [env]


def check_family(envs: list[Any]) -> None:
    """The members of a task family must give the shared actor the same observation and action
    sizes (the number of agents may differ)."""

    def sizes(env: Any) -> tuple[int, int]:
        _, timestep = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        return timestep.observation.agents_view.shape[-1], env.action_dim

    first = sizes(envs[0])
    for member in envs[1:]:
        if (mine := sizes(member)) != first:
            raise ConfigError(
                f"task family member {getattr(member, 'task_name', '?')!r} has {mine[0]} "
                f"features and {mine[1]} actions, but the first member has {first[0]} and "
                f"{first[1]}: one actor cannot serve both; give the members the same env "
                "settings (only the budget may differ)"
            )


def make_ppo_learner(
    env: Any, cfg: Mapping[str, Any], critic: nn.Module
) -> tuple[InitFn, UpdateFn]:
    """``(init_fn, update_fn)`` of a PPO learner with the shared actor and the given critic, on
    ``env`` or on every member of a task family (a list or tuple of environments)."""
    learner = PPOLearner(env, cfg, critic)
    return learner.init, learner.update


class PPOLearner:
    """The PPO learner's pure, jittable steps over the settings fixed when it is built (the
    actor, the critic, their optimisers, the wrapped environments, the PPO settings).

    Read top to bottom as Mava's ``ff_ippo.py`` train step: :meth:`init`; then :meth:`update`:
    a rollout of :meth:`env_step`, :meth:`learning_batch` (GAE), :meth:`update_epoch` x
    ``ppo_epochs`` (each a scan of :meth:`update_minibatch` over shuffled minibatches), the
    metrics and the observation statistics. A task family (:meth:`_family_init`,
    :meth:`_family_update`) rolls out every member in turn and learns from all their rows at
    once. No method keeps state: everything that changes is in the :class:`LearnerState`.
    """

    def __init__(self, env: Any, cfg: Mapping[str, Any], critic: nn.Module) -> None:
        self.mt = mt = ppo_settings(cfg)
        self.num_envs, self.rollout_length = mt["num_envs"], mt["rollout_length"]
        self.num_minibatches = mt["num_minibatches"]
        self.normalise_observations = bool(mt.get("normalise_observations", False))
        family = family_members(env)
        check_family(family)
        self.actor = make_actor(actor_network_config(family[0], cfg))
        self.critic = critic
        self.recurrent = bool(mt.get("gru_size", 0))
        self.members = [wrap(member, self.num_envs) for member in family]
        self.env = self.members[0]
        self.actor_optim = _optimiser(mt["actor_lr"], mt["max_grad_norm"])
        self.critic_optim = _optimiser(mt["critic_lr"], mt["max_grad_norm"])

    # INITIALISATION

    def init(self, key: chex.PRNGKey) -> LearnerState:
        """The learner's first state: networks and optimisers initialised, environments reset."""
        if len(self.members) > 1:
            return self._family_init(key)
        key, env_key, actor_key, critic_key = jax.random.split(key, 4)
        env_state, timestep = self.env.reset(env_key)
        params, opt_states = self._initial_params(actor_key, critic_key, timestep.observation)
        obs_norm = _observation_stats(timestep.observation) if self.normalise_observations else {}
        carry = initial_carry(self.actor, timestep.observation.agents_view.shape[:-1])
        return LearnerState(
            params, opt_states, key, env_state, timestep.observation, obs_norm, carry
        )

    def _family_init(self, key: chex.PRNGKey) -> LearnerState:
        """Every member's batch of environments; env_state, obs and the actor's carry are
        tuples over the members."""
        key, env_key, actor_key, critic_key = jax.random.split(key, 4)
        keys = jax.random.split(env_key, len(self.members))
        resets = [m.reset(k) for m, k in zip(self.members, keys, strict=True)]
        env_states = tuple(r[0] for r in resets)
        observations = tuple(r[1].observation for r in resets)
        params, opt_states = self._initial_params(actor_key, critic_key, observations[0])
        obs_norm = {}
        if self.normalise_observations:
            obs_norm = _observation_stats(observations[0])
            for obs in observations[1:]:
                obs_norm = _observation_stats(obs, obs_norm)
        carries = tuple(initial_carry(self.actor, o.agents_view.shape[:-1]) for o in observations)
        return LearnerState(params, opt_states, key, env_states, observations, obs_norm, carries)

    def _initial_params(
        self, actor_key: chex.PRNGKey, critic_key: chex.PRNGKey, batch_obs: Any
    ) -> tuple[Params, OptStates]:
        """The actor's and critic's parameters, initialised on one environment's observation
        of the batch ``batch_obs``, and their optimisers' states."""
        one_obs = jax.tree.map(lambda x: x[0], batch_obs)
        params = Params(
            init_actor(self.actor, actor_key, one_obs), self.critic.init(critic_key, one_obs)
        )
        opt_states = OptStates(
            self.actor_optim.init(params.actor), self.critic_optim.init(params.critic)
        )
        return params, opt_states

    # ROLLOUT

    def env_step(
        self, state: LearnerState, _: None, env: Any = None
    ) -> tuple[LearnerState, PPOTransition]:
        """One step of every parallel environment of ``env`` (the first member by default)."""
        env = self.env if env is None else env
        params, opt_states, key, env_state, obs, obs_norm, carry = state

        # SELECT ACTION (from the observation normalised with the statistics before this rollout)
        key, policy_key = jax.random.split(key)
        seen = _normalised(obs, obs_norm)
        carry, policy = actor_step(self.actor, params.actor, carry, seen)
        value = self.critic.apply(params.critic, seen)
        action = policy.sample(seed=policy_key)
        log_prob = policy.log_prob(action)

        # STEP ENVIRONMENT
        env_state, timestep = env.step(env_state, action)

        # RECORD TRANSITION (the episode's end is every agent's end; a new one starts afresh)
        done = jnp.broadcast_to(timestep.last()[:, None], action.shape)
        carry = reset_carry(carry, done)
        transition = PPOTransition(
            obs=obs,
            action=action,
            log_prob=log_prob,
            value=value,
            reward=timestep.reward,
            discount=timestep.discount,
            done=done,
            info=timestep.extras[EPISODE_METRICS],
        )
        next_state = LearnerState(
            params, opt_states, key, env_state, timestep.observation, obs_norm, carry
        )
        return next_state, transition

    def learning_batch(
        self, critic_params: Any, traj: PPOTransition, last_obs: Any, obs_norm: dict
    ) -> tuple[PPOTransition, chex.Array, chex.Array]:
        """``(rollout, advantages, targets)`` PPO learns from: GAE bootstrapped from the value of
        the observation after the rollout, observations normalised as the actor saw them."""
        last_value = self.critic.apply(critic_params, _normalised(last_obs, obs_norm))
        advantages, targets = compute_gae(
            traj.reward,
            traj.value,
            traj.discount,
            traj.done,
            last_value,
            self.mt["gamma"],
            self.mt["gae_lambda"],
        )
        seen = _normalised(traj.obs, obs_norm)
        return traj._replace(obs=seen, info={}), advantages, targets

    # LOSSES

    def action_distribution(self, actor_params: Any, batch: PPOTransition, carry: Any) -> Any:
        """The actor's distributions at the batch's observations: row by row for a feed-forward
        actor; unrolled over the batch's sequences ``[T, B, ...]`` from their first hidden state
        ``carry`` (reset where an episode ended) for a recurrent one."""
        if not self.recurrent:
            return self.actor.apply(actor_params, batch.obs)

        def one_step(h: chex.Array, step: tuple) -> tuple:
            obs, done = step
            h, policy = self.actor.apply(actor_params, h, obs)
            return reset_carry(h, done), policy.logits

        _, logits = jax.lax.scan(one_step, carry, (batch.obs, batch.done))
        return distrax.Categorical(logits=logits)

    def actor_loss(
        self, actor_params: Any, batch: PPOTransition, advantages: chex.Array, carry: Any
    ) -> tuple:
        """The clipped policy loss less the entropy bonus, with ``(policy loss, entropy,
        approximate KL)``."""
        policy = self.action_distribution(actor_params, batch, carry)
        log_prob = policy.log_prob(batch.action)
        policy_loss = clipped_policy_loss(
            log_prob, batch.log_prob, normalize(advantages), self.mt["clip_eps"]
        )
        entropy = policy.entropy().mean()
        approx_kl = jnp.mean(batch.log_prob - log_prob)
        return policy_loss - self.mt["ent_coef"] * entropy, (policy_loss, entropy, approx_kl)

    def critic_loss(self, critic_params: Any, batch: PPOTransition, targets: chex.Array) -> tuple:
        """The clipped value loss, weighted by ``vf_coef``, with the unweighted one."""
        value = self.critic.apply(critic_params, batch.obs)
        value_loss = clipped_value_loss(value, batch.value, targets, self.mt["clip_eps"])
        return self.mt["vf_coef"] * value_loss, value_loss

    # UPDATE

    def update_minibatch(self, carry: tuple, minibatch: tuple) -> tuple:
        """One Adam step of the actor and of the critic on one minibatch."""
        params, opt_states = carry
        batch, advantages, targets, first_carry = minibatch

        # CALCULATE ACTOR LOSS
        (actor_total, (policy_loss, entropy, approx_kl)), actor_grads = jax.value_and_grad(
            self.actor_loss, has_aux=True
        )(params.actor, batch, advantages, first_carry)

        # CALCULATE CRITIC LOSS
        (critic_total, value_loss), critic_grads = jax.value_and_grad(
            self.critic_loss, has_aux=True
        )(params.critic, batch, targets)

        # UPDATE ACTOR AND CRITIC
        actor_updates, actor_opt = self.actor_optim.update(
            actor_grads, opt_states.actor, params.actor
        )
        critic_updates, critic_opt = self.critic_optim.update(
            critic_grads, opt_states.critic, params.critic
        )
        params = Params(
            optax.apply_updates(params.actor, actor_updates),
            optax.apply_updates(params.critic, critic_updates),
        )
        losses = {
            "total_loss": actor_total + critic_total,
            "actor_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": approx_kl,
        }
        return (params, OptStates(actor_opt, critic_opt)), losses

    def shuffled_rows(self, key: chex.PRNGKey, rollout: tuple) -> tuple:
        """Minibatches of single steps: time and environment axes merged and shuffled (agents
        stay together)."""
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), rollout)
        order = jax.random.permutation(key, jax.tree.leaves(flat)[0].shape[0])
        return jax.tree.map(
            lambda x: jnp.take(x, order, axis=0).reshape(self.num_minibatches, -1, *x.shape[1:]),
            flat,
        )

    def shuffled_sequences(self, key: chex.PRNGKey, rollout: tuple, first_carry: Any) -> tuple:
        """Minibatches of whole sequences: the parallel environments shuffled into groups, each
        with every step of the rollout ``[T, E/M, ...]`` and its first hidden state."""
        order = jax.random.permutation(key, jax.tree.leaves(rollout)[0].shape[1])

        def split(x: chex.Array, axis: int) -> chex.Array:
            x = jnp.take(x, order, axis=axis)
            x = x.reshape(*x.shape[:axis], self.num_minibatches, -1, *x.shape[axis + 1 :])
            return jnp.moveaxis(x, axis, 0)

        sequences = jax.tree.map(lambda x: split(x, 1), rollout)
        return (*sequences, jax.tree.map(lambda h: split(h, 0), first_carry))

    def update_epoch(self, carry: tuple, _: None) -> tuple:
        """One epoch: the rollout shuffled into minibatches, one update on each in turn."""
        params, opt_states, key, rollout, first_carry = carry

        # SHUFFLE INTO MINIBATCHES
        key, shuffle_key = jax.random.split(key)
        if self.recurrent:
            minibatches = self.shuffled_sequences(shuffle_key, rollout, first_carry)
        else:
            minibatches = (*self.shuffled_rows(shuffle_key, rollout), first_carry)  # carry: ()

        # UPDATE MINIBATCHES
        (params, opt_states), losses = jax.lax.scan(
            self.update_minibatch, (params, opt_states), minibatches
        )
        return (params, opt_states, key, rollout, first_carry), losses

    def _epochs(
        self,
        params: Params,
        opt_states: OptStates,
        key: chex.PRNGKey,
        rollout: tuple,
        first_carry: Any,
    ) -> tuple[Params, OptStates, chex.PRNGKey, dict]:
        """``ppo_epochs`` epochs over the learning batch; the losses' means as metrics."""
        (params, opt_states, key, _, _), losses = jax.lax.scan(
            self.update_epoch,
            (params, opt_states, key, rollout, first_carry),
            None,
            self.mt["ppo_epochs"],
        )
        metrics = {name: value.mean() for name, value in losses.items()}
        return params, opt_states, key, metrics

    def update(self, state: LearnerState) -> tuple[LearnerState, dict]:
        """One PPO update: a rollout, GAE, the epochs; its metrics (the losses' means and the
        sums of the finished episodes' metrics)."""
        if len(self.members) > 1:
            return self._family_update(state)
        # STEP ENVIRONMENT FOR ROLLOUT LENGTH (keeping the hidden state the rollout starts from)
        first_carry = state.actor_carry
        state, traj = jax.lax.scan(self.env_step, state, None, self.rollout_length)
        params, opt_states, key, env_state, obs, obs_norm, carry = state

        # CALCULATE ADVANTAGE
        rollout = self.learning_batch(params.critic, traj, obs, obs_norm)

        # UPDATE EPOCHS
        params, opt_states, key, metrics = self._epochs(
            params, opt_states, key, rollout, first_carry
        )

        # REPORT METRICS
        metrics.update(_finished_episode_sums(traj.info))

        # UPDATE THE OBSERVATION STATISTICS (with the rollout's raw observations)
        if obs_norm:
            obs_norm = _observation_stats(traj.obs, obs_norm)
        next_state = LearnerState(params, opt_states, key, env_state, obs, obs_norm, carry)
        return next_state, metrics

    def _family_update(self, state: LearnerState) -> tuple[LearnerState, dict]:
        """One update on every member: a rollout of each (in turn, one compiled rollout per
        member), then PPO on all their rows at once, every agent of every member one row (or
        one sequence, if recurrent), so members may differ in their number of agents."""
        params, opt_states, key, _, _, obs_norm, _ = state
        rollouts, first_carries, sums, ends = [], [], [], []
        for i, member in enumerate(self.members):
            task_state = state._replace(
                key=key,
                env_state=state.env_state[i],
                obs=state.obs[i],
                actor_carry=state.actor_carry[i],
            )
            first_carries.append(task_state.actor_carry)
            step = functools.partial(self.env_step, env=member)
            task_state, traj = jax.lax.scan(step, task_state, None, self.rollout_length)
            key = task_state.key
            rollouts.append(self.learning_batch(params.critic, traj, task_state.obs, obs_norm))
            sums.append(_finished_episode_sums(traj.info))
            ends.append((task_state.env_state, task_state.obs, task_state.actor_carry, traj.obs))
        rollout, first_carry = _member_rows(rollouts, first_carries)

        # UPDATE EPOCHS
        params, opt_states, key, metrics = self._epochs(
            params, opt_states, key, rollout, first_carry
        )

        # REPORT METRICS (episodes of every member together)
        metrics.update(jax.tree.map(lambda *x: sum(x), *sums))

        # UPDATE THE OBSERVATION STATISTICS (with every member's raw observations)
        if obs_norm:
            for *_, raw in ends:
                obs_norm = _observation_stats(raw, obs_norm)
        env_states, observations, carries = (tuple(e[k] for e in ends) for k in range(3))
        next_state = LearnerState(
            params, opt_states, key, env_states, observations, obs_norm, carries
        )
        return next_state, metrics


def _member_rows(rollouts: list[tuple], first_carries: list[Any]) -> tuple[tuple, Any]:
    """The members' learning batches and first hidden states as one, every agent of every
    member one row: ``[T, E, N, ...] -> [T, E x N, 1, ...]``, concatenated over members."""

    def rows(x: chex.Array) -> chex.Array:
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], 1, *x.shape[3:])

    def carry_rows(h: chex.Array) -> chex.Array:
        return h.reshape(h.shape[0] * h.shape[1], 1, *h.shape[2:])

    rollout = jax.tree.map(
        lambda *xs: jnp.concatenate(xs, axis=1), *(jax.tree.map(rows, r) for r in rollouts)
    )
    first_carry = jax.tree.map(
        lambda *hs: jnp.concatenate(hs, axis=0),
        *(jax.tree.map(carry_rows, h) for h in first_carries),
    )
    return rollout, first_carry


def scan_updates(update_fn: UpdateFn, num_updates: int) -> UpdateFn:
    """``num_updates`` updates in one call (``lax.scan``); metrics get a leading update axis."""

    def run(state: LearnerState) -> tuple[LearnerState, dict]:
        return jax.lax.scan(lambda s, _: update_fn(s), state, None, num_updates)

    return run
