"""A straightforward eager-PyTorch GANNO environment (the throughput baseline of the JAX one).

It follows :class:`ganno.env.GannoEnv` definition by definition, the way one would write it
without JAX: ``num_envs`` independent inner networks (``torch.nn.Linear`` + ReLU MLPs), each with
its own ``torch.optim.SGD`` holding one parameter group per layer, stepped one after the other in a
plain Python loop (no ``torch.compile``, no batching across environments).

Per decision and environment: multiply each layer's rate by its agent's factor (clipped to
``lr_bounds``), run ``steps_per_decision`` SGD steps on minibatches drawn with replacement while
accumulating each layer's gradient sum and squared gradient norms, compute the validation loss and
accuracy, build the ``[N, F]`` observation of :data:`ganno.env.FEATURE_NAMES`, check for divergence
(non-finite losses/weights or a validation loss above ``divergence_loss_ratio`` x the initial one:
the step is then undone and penalised) and give the shared reward.

Nothing here imports JAX, so the timings are PyTorch's alone. The observation and reward match the
JAX environment to float32 precision when given the same initial weights and minibatches (the
``init_params`` / ``batch_indices`` hooks; see ``tests/test_torch_equivalence.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# The observation in PyTorch, shared with ganno.torch.GannoScheduler (no JAX is imported).
from ganno.torch.features import initial_observation, observe

REWARDS = ("log_val_loss_drop", "val_accuracy_gain", "final_log_val_loss_drop")


class MLP(torch.nn.Module):
    """ReLU MLP like :class:`ganno.networks.MLP`, initialised like flax ``Dense`` (LeCun normal,
    truncated at 2 standard deviations, zero bias)."""

    def __init__(self, in_features: int, depth: int, width: int, num_classes: int):
        super().__init__()
        sizes = [in_features] + [width] * (depth - 1) + [num_classes]
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        for lin in self.layers:
            std = math.sqrt(1.0 / lin.in_features) / 0.87962566103423978
            torch.nn.init.trunc_normal_(lin.weight, std=std, a=-2 * std, b=2 * std)
            torch.nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for lin in self.layers[:-1]:
            x = F.relu(lin(x))
        return self.layers[-1](x)


class _Episode:
    """One environment's state: its network, optimiser and what the observation remembers."""

    model: MLP
    optimizer: torch.optim.SGD
    lrs: torch.Tensor  # [N]
    prev_mean_grad: list[list[torch.Tensor]]
    train_loss: torch.Tensor
    val_loss: torch.Tensor
    val_accuracy: torch.Tensor
    initial_val_loss: torch.Tensor
    step_count: int
    view: torch.Tensor  # [N, F]
    diverged: bool


class TorchGannoEnv:
    """``num_envs`` GANNO environments in eager PyTorch, looped over in Python.

    ``reset(lr0=None) -> obs [E, N, F]``; ``step(actions [E, N]) -> (obs, reward [E, N],
    done [E])``, all numpy. Episodes do not reset by themselves (call ``reset`` again).
    """

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        *,
        num_envs: int = 16,
        depth: int = 3,
        width: int = 64,
        num_classes: int = 10,
        batch_size: int = 128,
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
        seed: int = 0,
        batch_indices: Callable[[int, int], np.ndarray] | None = None,
        init_params: Callable[[int], list[tuple[np.ndarray, np.ndarray]]] | None = None,
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward {reward!r} is not implemented here; choose one of {REWARDS}")
        self.x_train = torch.from_numpy(np.array(x_train, np.float32))
        self.y_train = torch.as_tensor(np.array(y_train), dtype=torch.long)
        xv, yv = np.array(x_val, np.float32), np.array(y_val)
        if val_subset is not None:
            xv, yv = xv[:val_subset], yv[:val_subset]
        self.x_val, self.y_val = torch.as_tensor(xv), torch.as_tensor(yv, dtype=torch.long)
        self.num_envs, self.depth, self.width = int(num_envs), int(depth), int(width)
        self.num_classes, self.batch_size = int(num_classes), int(batch_size)
        self.k, self.num_decisions = int(steps_per_decision), int(num_decisions)
        self.lr0_range = (float(lr0_range[0]), float(lr0_range[1]))
        self.lr_bounds = (float(lr_bounds[0]), float(lr_bounds[1]))
        self.factors = torch.tensor(actions, dtype=torch.float32)
        self.log2_factors = torch.log2(self.factors)
        self.reward_name = reward
        self.divergence_penalty = float(divergence_penalty)
        self.divergence_loss_ratio = float(divergence_loss_ratio)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.num_agents = self.depth
        self._batch_indices = batch_indices
        self._init_params = init_params
        self._rng = np.random.default_rng(seed)
        self._generators = [
            torch.Generator().manual_seed(seed * 100_003 + e) for e in range(self.num_envs)
        ]
        torch.manual_seed(seed)
        self.episodes: list[_Episode] = []

    @classmethod
    def from_config(
        cls, config: Any, dataset: Any, num_envs: int = 16, seed: int = 0, **kwargs: Any
    ) -> TorchGannoEnv:
        task, env = config["task"], config["env"]
        net = task["network"]
        if net.get("kind", "mlp") != "mlp":
            raise ValueError("the eager-PyTorch environment implements the MLP only")
        return cls(
            dataset.x_train,
            dataset.y_train,
            dataset.x_val,
            dataset.y_val,
            num_envs=num_envs,
            depth=int(net.get("depth", 3)),
            width=int(net.get("width", 64)),
            num_classes=int(dataset.num_classes),
            batch_size=int(task["batch_size"]),
            steps_per_decision=env["steps_per_decision"],
            num_decisions=env["num_decisions"],
            lr0_range=env["lr0_range"],
            lr_bounds=env["lr_bounds"],
            actions=env["actions"],
            reward=env["reward"],
            divergence_penalty=env["divergence_penalty"],
            divergence_loss_ratio=env["divergence_loss_ratio"],
            val_subset=env["val_subset"],
            momentum=task["momentum"],
            weight_decay=task["weight_decay"],
            seed=seed,
            **kwargs,
        )

    # ------------------------------------------------------------------ pieces
    def _batch(self, e: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batch_indices is not None:
            idx = torch.as_tensor(np.asarray(self._batch_indices(e, step), np.int64))
        else:
            idx = torch.randint(
                0, self.x_train.shape[0], (self.batch_size,), generator=self._generators[e]
            )
        return self.x_train[idx], self.y_train[idx]

    @torch.no_grad()
    def _val_metrics(self, model: MLP) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(self.x_val)
        loss = F.cross_entropy(logits, self.y_val)
        return loss, (logits.argmax(-1) == self.y_val).float().mean()

    @staticmethod
    def _params(model: MLP) -> list[list[torch.Tensor]]:
        return [[lin.weight, lin.bias] for lin in model.layers]

    # ------------------------------------------------------------------ protocol
    def _reset_one(self, e: int, lr0: float) -> _Episode:
        ep = _Episode()
        ep.model = MLP(self.x_train.shape[1], self.depth, self.width, self.num_classes)
        if self._init_params is not None:
            with torch.no_grad():
                for lin, (w, b) in zip(ep.model.layers, self._init_params(e), strict=True):
                    lin.weight.copy_(torch.as_tensor(w))
                    lin.bias.copy_(torch.as_tensor(b))
        lr0 = min(max(float(lr0), self.lr_bounds[0]), self.lr_bounds[1])
        ep.lrs = torch.full((self.num_agents,), lr0, dtype=torch.float32)
        ep.optimizer = torch.optim.SGD(
            [{"params": list(lin.parameters()), "lr": lr0} for lin in ep.model.layers],
            lr=lr0,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        # the first observation reads the gradient of the first minibatch without taking a step
        x, y = self._batch(e, 0)
        loss = F.cross_entropy(ep.model(x), y)
        params = self._params(ep.model)
        grads = [
            list(g)
            for g in zip(
                *[iter(torch.autograd.grad(loss, [p for layer in params for p in layer]))] * 2,
                strict=True,
            )
        ]
        ep.train_loss = loss.detach()
        ep.val_loss, ep.val_accuracy = self._val_metrics(ep.model)
        ep.initial_val_loss = ep.val_loss
        ep.prev_mean_grad = grads
        ep.step_count = 0
        with torch.no_grad():
            detached = [[p.detach() for p in layer] for layer in params]
            view = initial_observation(
                learning_rates=ep.lrs,
                grads=grads,
                params=detached,
                train_loss=ep.train_loss,
                val_loss=ep.val_loss,
                num_decisions=self.num_decisions,
            )
        ep.view, ep.diverged = view, False
        return ep

    def reset(self, lr0: float | Sequence[float] | None = None) -> np.ndarray:
        """New episodes; ``lr0`` (one value or one per env) or log-uniform from ``lr0_range``."""
        if lr0 is None:
            lo, hi = np.log(self.lr0_range[0]), np.log(self.lr0_range[1])
            lr0s = np.exp(self._rng.uniform(lo, hi, self.num_envs))
        else:
            lr0s = np.broadcast_to(np.asarray(lr0, np.float64), (self.num_envs,))
        self.episodes = [self._reset_one(e, float(lr0s[e])) for e in range(self.num_envs)]
        return np.stack([ep.view.numpy() for ep in self.episodes])

    def _step_one(self, e: int, action: np.ndarray) -> tuple[torch.Tensor, bool]:
        ep = self.episodes[e]
        action = torch.as_tensor(np.asarray(action, np.int64))
        old_lrs = ep.lrs
        lrs = torch.clamp(ep.lrs * self.factors[action], *self.lr_bounds)
        for group, lr in zip(ep.optimizer.param_groups, lrs.tolist(), strict=True):
            group["lr"] = lr
        model, opt = ep.model, ep.optimizer
        params = self._params(model)
        prev_params = [[p.detach().clone() for p in layer] for layer in params]
        old_opt_state = (
            {
                id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
                for p, s in opt.state.items()
            }
            if self.momentum > 0
            else None
        )
        flat = [p for layer in params for p in layer]  # w0, b0, w1, b1, ...
        flat_sum = [torch.zeros_like(p) for p in flat]
        sq_sum = torch.zeros(len(flat))  # per tensor; summed per layer below
        loss_sum = torch.zeros(())
        start = ep.step_count * self.k
        for s in range(self.k):
            x, y = self._batch(e, start + s)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            with torch.no_grad():  # the observation's per-step statistics (multi-tensor ops)
                grads = [p.grad for p in flat]
                torch._foreach_add_(flat_sum, grads)
                sq_sum += torch.stack(torch._foreach_norm(grads)).square()
                loss_sum += loss.detach()
            opt.step()
        sq_sum = sq_sum.view(self.num_agents, -1).sum(1)
        grad_sum = [flat_sum[2 * i : 2 * i + 2] for i in range(self.num_agents)]
        mean_grad = [[g / self.k for g in layer] for layer in grad_sum]
        train_loss = loss_sum / self.k
        val_loss, val_accuracy = self._val_metrics(model)
        step_count = ep.step_count + 1
        detached = [[p.detach() for p in layer] for layer in params]
        view = observe(
            learning_rates=lrs,
            mean_grad=mean_grad,
            prev_mean_grad=ep.prev_mean_grad,
            mean_sq_grad_norm=sq_sum / self.k,
            params=detached,
            prev_params=prev_params,
            train_loss=train_loss,
            val_loss=val_loss,
            prev_train_loss=ep.train_loss,
            prev_val_loss=ep.val_loss,
            step_count=step_count,
            num_decisions=self.num_decisions,
            prev_log2_factor=self.log2_factors[action],
        )
        with torch.no_grad():
            weights_finite = all(torch.isfinite(p).all() for layer in detached for p in layer)
        finite = bool(torch.isfinite(val_loss)) and bool(torch.isfinite(train_loss))
        finite = finite and weights_finite
        diverged = (not finite) or bool(val_loss > self.divergence_loss_ratio * ep.initial_val_loss)
        done = diverged or step_count >= self.num_decisions

        n = self.num_agents
        if self.reward_name == "log_val_loss_drop":
            team = torch.log(ep.val_loss) - torch.log(val_loss)
        elif self.reward_name == "val_accuracy_gain":
            team = val_accuracy - ep.val_accuracy
        else:
            total = torch.log(ep.initial_val_loss) - torch.log(val_loss)
            team = total if step_count >= self.num_decisions else torch.zeros(())
        reward = (
            torch.full((n,), -self.divergence_penalty)
            if diverged
            else torch.nan_to_num(team) * torch.ones(n)
        )

        ep.step_count, ep.diverged = step_count, diverged
        if diverged:  # undo the interval: nothing non-finite survives, the last view is kept
            with torch.no_grad():
                for layer, old in zip(params, prev_params, strict=True):
                    for p, q in zip(layer, old, strict=True):
                        p.copy_(q)
            ep.lrs = old_lrs
            for group, lr in zip(opt.param_groups, old_lrs.tolist(), strict=True):
                group["lr"] = lr
            if old_opt_state is not None:
                for p in opt.state:
                    opt.state[p] = old_opt_state.get(id(p), {})
        else:
            ep.lrs = lrs
            ep.prev_mean_grad = mean_grad
            ep.train_loss, ep.val_loss, ep.val_accuracy = train_loss, val_loss, val_accuracy
            ep.view = view
        return reward, done

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        actions = np.asarray(actions)
        rewards, dones = [], []
        for e in range(self.num_envs):
            reward, done = self._step_one(e, actions[e])
            rewards.append(reward.numpy())
            dones.append(done)
        obs = np.stack([ep.view.numpy() for ep in self.episodes])
        return obs, np.stack(rewards).astype(np.float32), np.asarray(dones)
