"""The GANNO environment: one episode is one training run of an inner network.

Each parametrised layer of the inner network is an agent. Every ``steps_per_decision`` inner SGD
steps, each agent sees features of its own layer (plus the shared losses and progress) and picks a
multiplicative factor for its layer's learning rate. The team shares one reward, by default the drop
in log validation loss over the interval, so an episode's rewards sum to ``log(L_0 / L_T)``.

The environment speaks Mava's protocol (see :mod:`ganno.types`): ``reset``/``step`` are pure and
``vmap``-able and return jumanji ``TimeStep``s whose observation is an
:class:`~ganno.types.ObservationGlobalState`. A deeper or wider network changes the number of
agents ``N`` only, never the feature width ``F``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jumanji import specs
from jumanji.env import Environment
from jumanji.types import StepType, TimeStep

from ganno.feature_names import FEATURE_NAMES
from ganno.inner import InnerTask, episode_keys, make_task
from ganno.networks import layer_keys
from ganno.optim import LayerwiseSGDState, layerwise_sgd
from ganno.types import ObservationGlobalState

#: Per-layer features that the centralised critic's global state pools (mean, min, max) over agents.
POOLED_FEATURES: tuple[str, ...] = FEATURE_NAMES[:7] + ("prev_action",)
#: Team-level features appended once to the global state.
GLOBAL_FEATURES: tuple[str, ...] = FEATURE_NAMES[7:12]
#: Features appended (after the position features) when the agents also set their layer's momentum
#: and/or weight decay (Q1): the layer's current value, ``log_feature(wd)`` for weight decay.
HYPERPARAMETER_FEATURES: dict[str, str] = {
    "momentum": "momentum",
    "weight_decay": "log_weight_decay",
}
REWARDS: tuple[str, ...] = (
    "log_val_loss_drop",
    "val_accuracy_gain",
    "final_log_val_loss_drop",
    "counterfactual_log_val_loss_drop",
)
_F = {name: i for i, name in enumerate(FEATURE_NAMES)}
_TINY = 1e-30


class EnvState(NamedTuple):
    """Everything an episode carries from one decision to the next (all arrays, so it vmaps)."""

    params: Any  # the inner network's parameters
    opt_state: LayerwiseSGDState  # per-layer learning rates (and momentum buffers)
    data_key: jax.Array  # the minibatch stream of this episode
    step_count: jnp.ndarray  # [] int32, decisions taken
    prev_mean_grad: Any  # mean gradient of the last interval, like params
    train_loss: jnp.ndarray  # [] mean minibatch loss of the last interval
    val_loss: jnp.ndarray  # []
    val_accuracy: jnp.ndarray  # []
    initial_val_loss: jnp.ndarray  # []
    lr0: jnp.ndarray  # []
    agents_view: jnp.ndarray  # [N, F] the last observation (kept when a step diverges)
    diverged: jnp.ndarray  # [] bool


def log_feature(x: jnp.ndarray) -> jnp.ndarray:
    """Scaled log10 of a positive quantity (a norm, a rate, a ratio): about unit scale, finite."""
    return jnp.clip(jnp.log10(jnp.maximum(x, _TINY)), -8.0, 8.0) / 4.0


def _log10_loss(loss: jnp.ndarray) -> jnp.ndarray:
    return jnp.clip(jnp.log10(jnp.maximum(loss, _TINY)), -8.0, 8.0)


def per_layer(fn, *trees: Any) -> jnp.ndarray:
    """Apply ``fn`` to every leaf of each layer (top-level entry) and sum per layer: [N]."""
    keys = layer_keys(trees[0])
    sums = []
    for key in keys:
        leaves = zip(*(jax.tree.leaves(t[key]) for t in trees), strict=True)
        sums.append(sum(jnp.sum(fn(*leaf)) for leaf in leaves))
    return jnp.stack(sums)


class GannoEnv(Environment):
    """Cooperative multi-agent learning-rate control of an inner network (a jumanji Environment)."""

    def __init__(
        self,
        task: InnerTask,
        *,
        steps_per_decision: int = 50,
        num_decisions: int = 40,
        lr0_range: Sequence[float] = (1e-3, 1e-1),
        lr_bounds: Sequence[float] = (1e-6, 10.0),
        actions: Sequence[float] = (0.5, 0.8, 1.0, 1.25, 2.0),
        reward: str = "log_val_loss_drop",
        divergence_penalty: float = 1.0,
        divergence_loss_ratio: float = 10.0,
        val_subset: int | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        momentum_actions: Sequence[float] | None = None,
        weight_decay_actions: Sequence[float] | None = None,
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; choose one of {REWARDS}")
        if not actions:
            raise ValueError("the action set is empty; give at least one learning-rate factor")
        if reward == "counterfactual_log_val_loss_drop" and 1.0 not in actions:
            raise ValueError("counterfactual rewards need the keep action 1.0 in the action set")
        extra = {"momentum": momentum_actions, "weight_decay": weight_decay_actions}
        self.hyperparameter_actions = {
            k: tuple(float(v) for v in vs) for k, vs in extra.items() if vs is not None
        }
        for name, values in self.hyperparameter_actions.items():
            if not values:
                raise ValueError(f"{name}_actions is empty; give at least one {name} value or null")
        if self.hyperparameter_actions and reward == "counterfactual_log_val_loss_drop":
            raise ValueError(
                "counterfactual rewards are defined for learning-rate-only agents; set "
                "momentum_actions and weight_decay_actions to null or choose another reward"
            )
        self.task = task
        self.steps_per_decision = int(steps_per_decision)
        self.num_decisions = int(num_decisions)
        self.lr0_range = (float(lr0_range[0]), float(lr0_range[1]))
        self.lr_bounds = (float(lr_bounds[0]), float(lr_bounds[1]))
        self.actions = tuple(float(a) for a in actions)
        self.reward_name = reward
        self.divergence_penalty = float(divergence_penalty)
        self.divergence_loss_ratio = float(divergence_loss_ratio)
        self._x_val = task.x_val if val_subset is None else task.x_val[:val_subset]
        self._y_val = task.y_val if val_subset is None else task.y_val[:val_subset]
        controls = self.hyperparameter_actions
        self.optimizer = layerwise_sgd(
            learning_rate=self.lr0_range[0],
            momentum=momentum if momentum > 0 or "momentum" in controls else None,
            weight_decay=weight_decay if weight_decay > 0 or "weight_decay" in controls else None,
        )
        self._momentum, self._weight_decay = float(momentum), float(weight_decay)
        # The joint action of one agent is a flat index into the product of its choice sets:
        # learning-rate factor (slowest), then momentum, then weight decay (fastest).
        choice_sets = [self.actions, *controls.values()]
        grids = jnp.meshgrid(*[jnp.asarray(c, jnp.float32) for c in choice_sets], indexing="ij")
        table = jnp.stack([g.reshape(-1) for g in grids], axis=1)  # [A, 1 + len(controls)]
        self._factors = table[:, 0]
        self._log2_factors = jnp.log2(self._factors)
        self._controlled = {name: table[:, 1 + i] for i, name in enumerate(controls)}
        self._num_agents = task.num_layers()
        n = self._num_agents
        depth = jnp.arange(n, dtype=jnp.float32) / max(n - 1, 1)
        first = (jnp.arange(n) == 0).astype(jnp.float32)
        last = (jnp.arange(n) == n - 1).astype(jnp.float32)
        self._position = jnp.stack([depth, first, last], axis=1)  # [N, 3]
        super().__init__()

    # ------------------------------------------------------------------ protocol attributes
    @property
    def num_agents(self) -> int:
        return self._num_agents

    @property
    def action_dim(self) -> int:
        return int(self._factors.shape[0])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The names of the observation's columns: :data:`FEATURE_NAMES`, then one per extra
        hyperparameter the agents control."""
        return FEATURE_NAMES + tuple(
            HYPERPARAMETER_FEATURES[k] for k in self.hyperparameter_actions
        )

    def action_index(
        self, factor: float = 1.0, momentum: float | None = None, weight_decay: float | None = None
    ) -> int:
        """The flat action that applies learning-rate ``factor`` and sets the given momentum and
        weight decay (each must be in its action set; leave out those the agents do not set)."""
        index = self.actions.index(float(factor))
        for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
            if name not in self.hyperparameter_actions:
                if value is not None:
                    raise ValueError(f"these agents do not set {name}")
                continue
            values = self.hyperparameter_actions[name]
            value = getattr(self, f"_{name}") if value is None else float(value)
            if value not in values:
                raise ValueError(f"{name} {value} is not one of the {name} actions {values}")
            index = index * len(values) + values.index(value)
        return index

    @property
    def time_limit(self) -> int:
        return self.num_decisions

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def global_state_dim(self) -> int:
        pooled = len(POOLED_FEATURES) + len(self.hyperparameter_actions)
        return 3 * pooled + len(GLOBAL_FEATURES)

    def __repr__(self) -> str:
        extra = "".join(f", {k}_actions={v}" for k, v in self.hyperparameter_actions.items())
        return (
            f"GannoEnv(agents={self.num_agents}, actions={self.actions}{extra}, "
            f"k={self.steps_per_decision}, H={self.num_decisions}, reward={self.reward_name})"
        )

    @cached_property
    def observation_spec(self) -> specs.Spec:
        n, a = self._num_agents, self.action_dim
        return specs.Spec(
            ObservationGlobalState,
            "ObservationSpec",
            agents_view=specs.Array((n, self.num_features), jnp.float32, "agents_view"),
            action_mask=specs.BoundedArray((n, a), bool, False, True, "action_mask"),
            global_state=specs.Array((n, self.global_state_dim), jnp.float32, "global_state"),
            step_count=specs.BoundedArray((n,), jnp.int32, 0, self.num_decisions, "step_count"),
        )

    @cached_property
    def action_spec(self) -> specs.MultiDiscreteArray:
        return specs.MultiDiscreteArray(
            num_values=jnp.full((self._num_agents,), self.action_dim, jnp.int32), name="action"
        )

    @cached_property
    def reward_spec(self) -> specs.Array:
        return specs.Array((self._num_agents,), jnp.float32, "reward")

    @cached_property
    def discount_spec(self) -> specs.BoundedArray:
        return specs.BoundedArray((self._num_agents,), jnp.float32, 0.0, 1.0, "discount")

    # ------------------------------------------------------------------ inner training
    def _val_metrics(self, params: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
        return self.task.loss_and_accuracy(params, self._x_val, self._y_val)

    def _train_interval(self, params: Any, opt_state: LayerwiseSGDState, data_key, start_step):
        """``steps_per_decision`` SGD steps, accumulating what the observation needs."""
        grad_fn = jax.value_and_grad(self.task.loss)

        def one_step(carry, step):
            params, opt_state, grad_sum, sq_norm_sum, loss_sum = carry
            x, y = self.task.batch(data_key, step)
            loss, grads = grad_fn(params, x, y)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            params = jax.tree.map(jnp.add, params, updates)
            grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
            sq_norm_sum = sq_norm_sum + per_layer(jnp.square, grads)
            return (params, opt_state, grad_sum, sq_norm_sum, loss_sum + loss), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        init = (params, opt_state, zeros, jnp.zeros(self._num_agents), jnp.zeros(()))
        steps = start_step + jnp.arange(self.steps_per_decision)
        (params, opt_state, grad_sum, sq_norm_sum, loss_sum), _ = jax.lax.scan(
            one_step, init, steps
        )
        k = self.steps_per_decision
        mean_grad = jax.tree.map(lambda g: g / k, grad_sum)
        return params, opt_state, mean_grad, sq_norm_sum / k, loss_sum / k

    # ------------------------------------------------------------------ observations
    def _observe(
        self,
        *,
        mean_grad,
        prev_mean_grad,
        mean_sq_grad_norm,
        params,
        prev_params,
        train_loss,
        val_loss,
        prev_train_loss,
        prev_val_loss,
        step_count,
        prev_log2_factor,
        opt_state,
    ):
        grad_sq = per_layer(jnp.square, mean_grad)
        weight_sq = per_layer(jnp.square, params)
        update_sq = per_layer(lambda p, q: jnp.square(p - q), params, prev_params)
        dot = per_layer(jnp.multiply, mean_grad, prev_mean_grad)
        prev_sq = per_layer(jnp.square, prev_mean_grad)
        noise = jnp.maximum(mean_sq_grad_norm - grad_sq, 0.0)
        cosine = dot / jnp.sqrt(jnp.maximum(grad_sq * prev_sq, _TINY))
        log_train, log_val = _log10_loss(train_loss), _log10_loss(val_loss)
        ones = jnp.ones((self._num_agents,))
        layer = jnp.stack(
            [
                log_feature(opt_state.learning_rates),
                log_feature(jnp.sqrt(grad_sq)),
                log_feature(jnp.sqrt(weight_sq)),
                log_feature(jnp.sqrt(update_sq)),
                log_feature(jnp.sqrt(update_sq / jnp.maximum(weight_sq, _TINY))),
                jnp.clip(cosine, -1.0, 1.0),
                log_feature(jnp.sqrt(noise / jnp.maximum(grad_sq, _TINY))),
                log_train * ones,
                log_val * ones,
                jnp.clip(log_train - _log10_loss(prev_train_loss), -5.0, 5.0) * ones,
                jnp.clip(log_val - _log10_loss(prev_val_loss), -5.0, 5.0) * ones,
                (step_count / self.num_decisions) * ones,
                prev_log2_factor,
            ],
            axis=1,
        )
        extras = [
            opt_state.momentum if name == "momentum" else log_feature(opt_state.weight_decay)
            for name in self.hyperparameter_actions
        ]
        view = jnp.concatenate([layer, self._position, *(e[:, None] for e in extras)], axis=1)
        return jnp.nan_to_num(view, nan=0.0, posinf=8.0, neginf=-8.0).astype(jnp.float32)

    def global_state(self, agents_view: jnp.ndarray) -> jnp.ndarray:
        """[N, F] -> [N, G]: per-layer features pooled over agents plus the team features, the
        same for every agent and of a size that does not depend on N."""
        extra_idx = [len(FEATURE_NAMES) + i for i in range(len(self.hyperparameter_actions))]
        pooled_idx = jnp.array([_F[f] for f in POOLED_FEATURES] + extra_idx)
        team_idx = jnp.array([_F[f] for f in GLOBAL_FEATURES])
        pooled = agents_view[:, pooled_idx]
        row = jnp.concatenate(
            [pooled.mean(0), pooled.min(0), pooled.max(0), agents_view[0, team_idx]]
        )
        return jnp.broadcast_to(row, (self._num_agents, row.shape[0]))

    def _timestep(self, state: EnvState, reward, step_type, discount) -> TimeStep:
        n = self._num_agents
        observation = ObservationGlobalState(
            agents_view=state.agents_view,
            action_mask=jnp.ones((n, self.action_dim), bool),
            global_state=self.global_state(state.agents_view),
            step_count=jnp.full((n,), state.step_count, jnp.int32),
        )
        extras = {
            "train_loss": state.train_loss,
            "val_loss": state.val_loss,
            "val_accuracy": state.val_accuracy,
            "diverged": state.diverged,
            "learning_rates": state.opt_state.learning_rates,
            "momentum": state.opt_state.momentum,
            "weight_decay": state.opt_state.weight_decay,
            "lr0": state.lr0,
        }
        return TimeStep(
            step_type=step_type,
            reward=reward,
            discount=discount,
            observation=observation,
            extras=extras,
        )

    # ------------------------------------------------------------------ protocol
    def sample_lr0(self, key: jax.Array) -> jnp.ndarray:
        """An initial learning rate drawn log-uniformly from ``lr0_range``."""
        low, high = jnp.log(self.lr0_range[0]), jnp.log(self.lr0_range[1])
        return jnp.exp(jax.random.uniform(key, (), minval=low, maxval=high))

    def reset(self, key: jax.Array) -> tuple[EnvState, TimeStep]:
        """A new episode with its initial learning rate drawn from ``lr0_range``."""
        return self.reset_with_lr0(key, self.sample_lr0(episode_keys(key)[2]))

    def reset_with_lr0(self, key: jax.Array, lr0: float | jnp.ndarray) -> tuple[EnvState, TimeStep]:
        """A new episode whose layers all start at the given learning rate (for evaluation)."""
        init_key, data_key, _ = episode_keys(key)
        lr0 = jnp.asarray(lr0, jnp.float32)
        params = self.task.init_params(init_key)
        opt_state = self.optimizer.init(params)
        opt_state = opt_state._replace(
            learning_rates=jnp.clip(jnp.full((self._num_agents,), lr0), *self.lr_bounds),
            momentum=jnp.full((self._num_agents,), self._momentum),
            weight_decay=jnp.full((self._num_agents,), self._weight_decay),
        )
        # The first observation reads the gradient of the first minibatch without taking a step.
        x, y = self.task.batch(data_key, jnp.zeros((), jnp.int32))
        train_loss, grads = jax.value_and_grad(self.task.loss)(params, x, y)
        val_loss, val_accuracy = self._val_metrics(params)
        n = self._num_agents
        grad_sq = per_layer(jnp.square, grads)
        view = self._observe(
            mean_grad=grads,
            prev_mean_grad=grads,
            mean_sq_grad_norm=grad_sq,
            params=params,
            prev_params=params,
            train_loss=train_loss,
            val_loss=val_loss,
            prev_train_loss=train_loss,
            prev_val_loss=val_loss,
            step_count=0,
            prev_log2_factor=jnp.zeros((n,)),
            opt_state=opt_state,
        )
        view = view.at[:, _F["grad_cosine"]].set(0.0).at[:, _F["log_grad_noise"]].set(0.0)
        state = EnvState(
            params=params,
            opt_state=opt_state,
            data_key=data_key,
            step_count=jnp.zeros((), jnp.int32),
            prev_mean_grad=grads,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            initial_val_loss=val_loss,
            lr0=lr0,
            agents_view=view,
            diverged=jnp.zeros((), bool),
        )
        timestep = self._timestep(
            state,
            jnp.zeros((n,), jnp.float32),
            jnp.asarray(StepType.FIRST, jnp.int8),
            jnp.ones((n,), jnp.float32),
        )
        return state, timestep

    def step(self, state: EnvState, action: jnp.ndarray) -> tuple[EnvState, TimeStep]:
        """Apply each agent's factor to its layer's rate, train one interval, observe, reward."""
        n = self._num_agents
        learning_rates = jnp.clip(
            state.opt_state.learning_rates * self._factors[action], *self.lr_bounds
        )
        opt_state = self._apply_hyperparameters(state.opt_state, action, learning_rates)
        start = state.step_count * self.steps_per_decision
        params, opt_state, mean_grad, mean_sq, train_loss = self._train_interval(
            state.params, opt_state, state.data_key, start
        )
        val_loss, val_accuracy = self._val_metrics(params)
        step_count = state.step_count + 1
        view = self._observe(
            mean_grad=mean_grad,
            prev_mean_grad=state.prev_mean_grad,
            mean_sq_grad_norm=mean_sq,
            params=params,
            prev_params=state.params,
            train_loss=train_loss,
            val_loss=val_loss,
            prev_train_loss=state.train_loss,
            prev_val_loss=state.val_loss,
            step_count=step_count,
            prev_log2_factor=self._log2_factors[action],
            opt_state=opt_state,
        )
        finite = jnp.isfinite(val_loss) & jnp.isfinite(train_loss)
        finite &= jnp.all(jnp.isfinite(per_layer(jnp.square, params)))
        diverged = ~finite | (val_loss > self.divergence_loss_ratio * state.initial_val_loss)
        done = diverged | (step_count >= self.num_decisions)

        reward = self._reward(state, action, val_loss, val_accuracy, step_count, diverged)

        # A diverged step keeps the last finite weights and observation: nothing non-finite leaves.
        keep_old = lambda old, new: jnp.where(diverged, old, new)  # noqa: E731
        new_state = EnvState(
            params=jax.tree.map(keep_old, state.params, params),
            opt_state=jax.tree.map(keep_old, state.opt_state, opt_state),
            data_key=state.data_key,
            step_count=step_count,
            prev_mean_grad=jax.tree.map(keep_old, state.prev_mean_grad, mean_grad),
            train_loss=keep_old(state.train_loss, train_loss),
            val_loss=keep_old(state.val_loss, val_loss),
            val_accuracy=keep_old(state.val_accuracy, val_accuracy),
            initial_val_loss=state.initial_val_loss,
            lr0=state.lr0,
            agents_view=keep_old(state.agents_view, view),
            diverged=diverged,
        )
        step_type = jnp.where(done, StepType.LAST, StepType.MID).astype(jnp.int8)
        discount = jnp.where(done, 0.0, 1.0) * jnp.ones((n,), jnp.float32)
        return new_state, self._timestep(new_state, reward, step_type, discount)

    def _apply_hyperparameters(self, opt_state: LayerwiseSGDState, action, learning_rates):
        """The optimiser state with the new rates and, for Q1 agents, momentum / weight decay."""
        changes = {"learning_rates": learning_rates}
        for name, values in self._controlled.items():
            changes[name] = values[action]
        return opt_state._replace(**changes)

    # ------------------------------------------------------------------ rewards
    def _reward(self, state: EnvState, action, val_loss, val_accuracy, step_count, diverged):
        n = self._num_agents
        log_drop = jnp.log(state.val_loss) - jnp.log(val_loss)
        if self.reward_name == "log_val_loss_drop":
            team = log_drop * jnp.ones((n,))
        elif self.reward_name == "val_accuracy_gain":
            team = (val_accuracy - state.val_accuracy) * jnp.ones((n,))
        elif self.reward_name == "final_log_val_loss_drop":
            total = jnp.log(state.initial_val_loss) - jnp.log(val_loss)
            team = jnp.where(step_count >= self.num_decisions, total, 0.0) * jnp.ones((n,))
        else:
            team = self._counterfactual_reward(state, action, val_loss)
        penalty = -self.divergence_penalty * jnp.ones((n,))
        return jnp.where(diverged, penalty, jnp.nan_to_num(team)).astype(jnp.float32)

    def _counterfactual_reward(self, state: EnvState, action, val_loss) -> jnp.ndarray:
        """Agent i's reward: log L(i keeps its rate) - log L(actual joint action), i.e. how much
        better the team did than had agent i alone chosen the keep action (difference rewards)."""
        n = self._num_agents
        actual = jnp.clip(state.opt_state.learning_rates * self._factors[action], *self.lr_bounds)
        keep = state.opt_state.learning_rates
        counterfactual_lrs = jnp.where(jnp.eye(n, dtype=bool), keep[None, :], actual[None, :])
        start = state.step_count * self.steps_per_decision

        def loss_with(lrs):
            opt_state = state.opt_state._replace(learning_rates=lrs)
            params, *_ = self._train_interval(state.params, opt_state, state.data_key, start)
            return self._val_metrics(params)[0]

        cf_loss = jax.vmap(loss_with)(counterfactual_lrs)
        cf_loss = jnp.nan_to_num(cf_loss, nan=jnp.inf)
        diff = jnp.log(jnp.maximum(cf_loss, _TINY)) - jnp.log(val_loss)
        return jnp.clip(diff, -10.0, 10.0)


def make_env(
    config: Mapping[str, Any], dataset: Any | None = None, task: InnerTask | None = None
) -> GannoEnv:
    """The environment a validated config describes (``task`` and ``env`` blocks)."""
    task = task if task is not None else make_task(config, dataset)
    env_cfg, task_cfg = config["env"], config["task"]
    return GannoEnv(
        task,
        steps_per_decision=env_cfg["steps_per_decision"],
        num_decisions=env_cfg["num_decisions"],
        lr0_range=env_cfg["lr0_range"],
        lr_bounds=env_cfg["lr_bounds"],
        actions=env_cfg["actions"],
        reward=env_cfg["reward"],
        divergence_penalty=env_cfg["divergence_penalty"],
        divergence_loss_ratio=env_cfg["divergence_loss_ratio"],
        val_subset=env_cfg["val_subset"],
        momentum=task_cfg["momentum"],
        weight_decay=task_cfg["weight_decay"],
        momentum_actions=env_cfg.get("momentum_actions"),
        weight_decay_actions=env_cfg.get("weight_decay_actions"),
    )
