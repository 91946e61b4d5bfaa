"""An independent PyTorch implementation of the inner training must match the JAX one.

PyTorch side: ``torch.nn.Linear`` layers with ReLU, ``F.cross_entropy`` and ``torch.optim.SGD`` with
one parameter group per layer (each group its own learning rate, momentum and weight decay). It
starts from the JAX model's initial weights (flax kernels ``[in, out]`` transposed to torch weights
``[out, in]``) and trains on the same minibatches (``InnerTask.batch_indices``). The JAX side runs
``ganno.inner.train_steps`` with ``layerwise_sgd`` and, where all layers share one rate, the
environment itself (``GannoEnv`` with every agent choosing the keep action x1).

Tolerance. Both sides compute in float32 (unit roundoff u = 6e-8); they differ only in the
summation order of matrix products and reductions (XLA's CPU dot vs. PyTorch's CPU GEMM), i.e. a
relative difference of a few u per operation. Over ``STEPS = 100`` SGD steps at learning rates
<= 0.2 these differences accumulate roughly additively (the training map is not chaotic at these
rates), so we expect at most ~1e-6 relative difference of the weights and set ``RTOL = 1e-5``
(norm-wise, per tensor); measured: 1e-7..4e-7. Any real discrepancy (a wrong rate in one layer, a
missing weight-decay term, momentum applied differently, a batch off by one) moves the weights by
1e-3..1 relative, orders of magnitude above the tolerance. Per-step minibatch losses (O(1)) must
agree to ``LOSS_ATOL = 1e-5`` absolute (measured 2.4e-7, i.e. 1 ulp at loss ~2).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from ganno.env import FEATURE_NAMES, GannoEnv  # noqa: E402
from ganno.inner import InnerTask, episode_keys, train_steps  # noqa: E402
from ganno.networks import MLP, layer_keys  # noqa: E402
from ganno.optim import layerwise_sgd  # noqa: E402

STEPS = 100
BATCH = 64
RTOL = 1e-5  # relative, per tensor: ||a - b|| / ||b|| (see the module docstring)
LOSS_ATOL = 1e-5  # absolute, per-step minibatch loss (losses are O(1))
KEEP = 2  # index of the x1 factor in the default action set (0.5, 0.8, 1.0, 1.25, 2.0)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def _synthetic(n_train=512, n_val=256, features=40, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, classes, n).astype(np.int32)
        x = centres[y] + 1.5 * rng.normal(size=(n, features)).astype(np.float32)
        return x.astype(np.float32), y

    (x_train, y_train), (x_val, y_val) = draw(n_train), draw(n_val)
    return x_train, y_train, x_val, y_val


@pytest.fixture(scope="module")
def task() -> InnerTask:
    x_train, y_train, x_val, y_val = _synthetic()
    return InnerTask(
        network=MLP(depth=3, width=64, num_classes=10),  # 40-64-64-10
        x_train=jnp.asarray(x_train),
        y_train=jnp.asarray(y_train),
        x_val=jnp.asarray(x_val),
        y_val=jnp.asarray(y_val),
        batch_size=BATCH,
        num_classes=10,
    )


# ----------------------------------------------------------------------------- torch side
class TorchMLP(torch.nn.Module):
    def __init__(self, jax_params):
        super().__init__()
        keys = layer_keys(jax_params)
        self.layers = torch.nn.ModuleList()
        for key in keys:
            kernel = np.asarray(jax_params[key]["kernel"])  # [in, out]
            bias = np.asarray(jax_params[key]["bias"])
            lin = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(kernel.T.copy()))  # [out, in]
                lin.bias.copy_(torch.from_numpy(bias.copy()))
            self.layers.append(lin)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        for lin in self.layers[:-1]:
            x = F.relu(lin(x))
        return self.layers[-1](x)


def torch_train(task, params, data_key, lrs, momentum=None, weight_decay=None, steps=STEPS):
    """Plain PyTorch SGD with one parameter group per layer; returns (model, per-step losses)."""
    model = TorchMLP(params)
    n = len(model.layers)
    mom = [0.0] * n if momentum is None else list(momentum)
    wd = [0.0] * n if weight_decay is None else list(weight_decay)
    groups = [
        {
            "params": list(lin.parameters()),
            "lr": float(lrs[i]),
            "momentum": mom[i],
            "weight_decay": wd[i],
        }
        for i, lin in enumerate(model.layers)
    ]
    opt = torch.optim.SGD(groups, lr=0.0)
    x_all = torch.from_numpy(np.array(task.x_train))
    y_all = torch.from_numpy(np.array(task.y_train)).long()
    indices = np.asarray(jax.vmap(lambda s: task.batch_indices(data_key, s))(jnp.arange(steps)))
    losses = []
    for step in range(steps):
        idx = torch.from_numpy(indices[step].astype(np.int64))
        opt.zero_grad()
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, np.asarray(losses)


def torch_params(model):
    return {
        f"layer_{i}": {"kernel": lin.weight.detach().numpy().T, "bias": lin.bias.detach().numpy()}
        for i, lin in enumerate(model.layers)
    }


def torch_val_loss(model, task):
    with torch.no_grad():
        logits = model(torch.from_numpy(np.array(task.x_val)))
        return F.cross_entropy(logits, torch.from_numpy(np.array(task.y_val)).long()).item()


# ----------------------------------------------------------------------------- comparisons
def max_rel_diff(jax_params, ref_params) -> float:
    """max over tensors of ||a - b|| / ||b||."""
    worst = 0.0
    for key in layer_keys(ref_params):
        for name in ("kernel", "bias"):
            a = np.asarray(jax_params[key][name], np.float64)
            b = np.asarray(ref_params[key][name], np.float64)
            assert a.shape == b.shape
            worst = max(worst, np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
    return worst


def assert_close(jax_params, ref_params, what):
    rel = max_rel_diff(jax_params, ref_params)
    print(f"{what}: max relative weight difference {rel:.2e}")
    assert rel < RTOL, f"{what}: relative weight difference {rel:.2e} >= {RTOL:.0e}"


def moved(params, init) -> float:
    """How far training moved the kernels (relative, the least-moved layer): the comparison must
    not be vacuous."""
    return min(
        np.linalg.norm(np.asarray(params[k]["kernel"]) - np.asarray(init[k]["kernel"]))
        / np.linalg.norm(np.asarray(init[k]["kernel"]))
        for k in layer_keys(init)
    )


CASES = {
    # per-layer rates differing by up to 8x
    "plain": dict(lrs=(0.2, 0.05, 0.025), momentum=None, weight_decay=None),
    # per-layer momentum and weight decay, each group its own
    "momentum_wd": dict(
        lrs=(0.05, 0.02, 0.01), momentum=(0.9, 0.5, 0.0), weight_decay=(1e-3, 0.0, 5e-2)
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_train_steps_matches_torch_sgd_per_layer(task, case):
    spec = CASES[case]
    init_key, data_key, _ = episode_keys(jax.random.PRNGKey(7))
    params0 = task.init_params(init_key)
    use_m, use_wd = spec["momentum"] is not None, spec["weight_decay"] is not None
    opt = layerwise_sgd(momentum=0.0 if use_m else None, weight_decay=0.0 if use_wd else None)
    state = opt.init(params0)._replace(learning_rates=jnp.asarray(spec["lrs"], jnp.float32))
    if use_m:
        state = state._replace(momentum=jnp.asarray(spec["momentum"], jnp.float32))
    if use_wd:
        state = state._replace(weight_decay=jnp.asarray(spec["weight_decay"], jnp.float32))
    run = jax.jit(lambda p, s: train_steps(task, opt, p, s, data_key, 0, STEPS))
    params, _, losses = run(params0, state)

    model, torch_losses = torch_train(
        task, params0, data_key, spec["lrs"], spec["momentum"], spec["weight_decay"]
    )
    assert moved(params, params0) > 0.05  # training really changed every layer
    assert np.all(np.isfinite(np.asarray(losses)))
    loss_diff = np.max(np.abs(np.asarray(losses) - torch_losses))
    print(
        f"{case}: max per-step loss difference {loss_diff:.2e}; "
        f"loss {torch_losses[0]:.3f} -> {torch_losses[-1]:.3f}"
    )
    assert loss_diff < LOSS_ATOL
    assert_close(params, torch_params(model), f"train_steps[{case}]")


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 1e-2)])
def test_environment_matches_torch_sgd(task, momentum, weight_decay):
    """GannoEnv, every agent keeping its rate, trains exactly like torch SGD at lr0."""
    k, decisions, lr0 = 20, STEPS // 20, 0.05
    env = GannoEnv(
        task,
        steps_per_decision=k,
        num_decisions=decisions,
        momentum=momentum,
        weight_decay=weight_decay,
    )
    assert env.actions[KEEP] == 1.0
    key = jax.random.PRNGKey(3)
    init_key, data_key, _ = episode_keys(key)
    state, ts = jax.jit(lambda kk: env.reset_with_lr0(kk, lr0))(key)
    params0 = state.params
    step = jax.jit(env.step)
    keep = jnp.full((env.num_agents,), KEEP, jnp.int32)
    train_losses = []
    for _ in range(decisions):
        state, ts = step(state, keep)
        train_losses.append(float(ts.extras["train_loss"]))
    assert bool(ts.last()) and not bool(state.diverged)
    np.testing.assert_allclose(np.asarray(state.opt_state.learning_rates), lr0, rtol=1e-7)

    n = env.num_agents
    model, torch_losses = torch_train(
        task,
        params0,
        data_key,
        [lr0] * n,
        [momentum] * n if momentum else None,
        [weight_decay] * n if weight_decay else None,
    )
    assert moved(state.params, params0) > 0.02
    assert_close(state.params, torch_params(model), f"env[m={momentum}, wd={weight_decay}]")
    # the environment's interval training loss = mean of the interval's minibatch losses
    interval_means = torch_losses.reshape(decisions, k).mean(1)
    np.testing.assert_allclose(train_losses, interval_means, rtol=0, atol=LOSS_ATOL)
    np.testing.assert_allclose(float(ts.extras["val_loss"]), torch_val_loss(model, task), rtol=RTOL)


def _load_torch_env():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_env.py"
    if not path.is_file():
        pytest.skip("benchmarks/torch_env.py not present")
    spec = importlib.util.spec_from_file_location("ganno_bench_torch_env", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_eager_torch_environment_follows_the_same_definitions(task):
    """benchmarks/torch_env.py (the throughput baseline) computes the same observations and
    rewards as GannoEnv when given the same initial weights, minibatches and actions."""
    torch_env = _load_torch_env()
    k, decisions, lr0 = 10, 4, 0.05
    env = GannoEnv(task, steps_per_decision=k, num_decisions=decisions)
    key = jax.random.PRNGKey(11)
    init_key, data_key, _ = episode_keys(key)
    state, ts = jax.jit(lambda kk: env.reset_with_lr0(kk, lr0))(key)
    indices = np.asarray(
        jax.vmap(lambda s: task.batch_indices(data_key, s))(jnp.arange(k * decisions))
    )
    tenv = torch_env.TorchGannoEnv(
        np.asarray(task.x_train),
        np.asarray(task.y_train),
        np.asarray(task.x_val),
        np.asarray(task.y_val),
        num_envs=1,
        depth=3,
        width=64,
        num_classes=10,
        batch_size=BATCH,
        steps_per_decision=k,
        num_decisions=decisions,
        batch_indices=lambda env_index, step: indices[step],
        init_params=lambda env_index: torch_params_from_jax(state.params),
    )
    obs = tenv.reset(lr0=lr0)
    views = [np.asarray(ts.observation.agents_view)]
    torch_views = [obs[0]]
    rewards, torch_rewards = [], []
    rng = np.random.default_rng(0)
    step = jax.jit(env.step)
    for _ in range(decisions):
        action = rng.integers(0, len(env.actions), env.num_agents)
        state, ts = step(state, jnp.asarray(action, jnp.int32))
        obs, reward, done = tenv.step(action[None])
        views.append(np.asarray(ts.observation.agents_view))
        torch_views.append(obs[0])
        rewards.append(np.asarray(ts.reward))
        torch_rewards.append(reward[0])
    assert bool(done[0])
    assert torch_views[0].shape == (env.num_agents, len(FEATURE_NAMES))
    # features are O(1) logs, cosines and flags: an absolute tolerance is the natural one
    print(
        f"torch env vs GannoEnv: max |obs diff| "
        f"{np.max(np.abs(np.stack(torch_views) - np.stack(views))):.2e}, max |reward diff| "
        f"{np.max(np.abs(np.stack(torch_rewards) - np.stack(rewards))):.2e}"
    )
    np.testing.assert_allclose(np.stack(torch_views), np.stack(views), rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.stack(torch_rewards), np.stack(rewards), rtol=0, atol=1e-4)


def torch_params_from_jax(params):
    """{layer_i: (weight [out, in], bias [out])} as numpy, for TorchGannoEnv's init_params."""
    return [
        (np.asarray(params[k]["kernel"]).T.copy(), np.asarray(params[k]["bias"]).copy())
        for k in layer_keys(params)
    ]
