"""The deployments flag a dead network (ganno.protocol.dead_layers: a layer that got no gradient
for DEAD_INTERVALS intervals in a row): the PyTorch scheduler and the optax transformation count
the same intervals on the same stream and flag the same step, warn once with the remedy, and leave
a live network alone."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import decisive_policy, inner_task, optax_train_step, scheduled_torch_step

from ganno.deployment import dead_network_warning
from ganno.env import GannoEnv
from ganno.errors import GannoWarning
from ganno.networks import MLP
from ganno.optax_scheduler import dead_at_step, ganno_sgd
from ganno.protocol import DEAD_INTERVALS, dead_layers

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from ganno.torch.networks import TorchMLP, from_jax_params, layerwise_param_groups  # noqa: E402
from ganno.torch.scheduler import GannoScheduler  # noqa: E402

K, H = 5, 8  # steps per decision, decisions
LR0 = 0.01
KILL = 2 * K  # from this step on the first layer's ReLUs are all off: it gets no gradient


@pytest.fixture(scope="module")
def task(dataset):
    return inner_task(dataset, MLP(depth=3, width=16, num_classes=10))


@pytest.fixture(scope="module")
def policy(task):
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    return decisive_policy(env.num_features, env.action_dim, seed=2, env=env)


def test_the_rule_reads_numpy_jax_and_torch_arrays():
    for array in (np.asarray, jnp.asarray, torch.tensor):
        mean_sq = array([0.0, 1e-13, 1e-11, 2.0, 0.0])
        initial = array([1.0, 1.0, 1.0, 1.0, 0.0])  # the last layer never had a gradient
        assert np.asarray(dead_layers(mean_sq, initial)).tolist() == [
            True,
            True,
            False,
            False,
            False,
        ]
    traced = jax.jit(dead_layers)(jnp.zeros(3), jnp.ones(3))
    assert np.asarray(traced).all()


def test_the_warning_names_the_cause():
    at_ceiling = dead_network_warning("S", 250, [0, 1], 10.0, 10.0)
    assert "layer(s) [0, 1] got no gradient" in at_ceiling and "step 250" in at_ceiling
    assert "lr_bounds=(1e-6, 1.0)" in at_ceiling
    below = dead_network_warning("S", 250, [0], 0.5, 10.0)
    assert "highest rate so far was 0.5" in below and "lr_bounds" not in below


def torch_run(task, policy, kill: bool):
    """The environment's initial weights and minibatches in PyTorch; with ``kill``, the first
    layer's units switched off before step KILL (a bias of -1e3: every ReLU off, for good)."""
    init_key, data_key = jax.random.split(jax.random.PRNGKey(3))
    params = task.init_params(init_key)
    model = TorchMLP(task.x_train.shape[1], 3, 16, 10)
    from_jax_params(model, params)
    x, y = torch.tensor(np.asarray(task.x_train)), torch.tensor(np.asarray(task.y_train)).long()
    x_val = torch.tensor(np.asarray(task.x_val))
    y_val = torch.tensor(np.asarray(task.y_val)).long()

    def val_loss():
        with torch.no_grad():
            return F.cross_entropy(model(x_val), y_val)

    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=LR0)
    sched = GannoScheduler(
        optimizer, policy, val_loss_fn=val_loss, num_decisions=H, gradient_statistics="read"
    )  # as the environment reads them: optax's flag is compared
    first = optimizer.param_groups[0]["params"]
    for t in range(K * H):
        if kill and t == KILL:
            with torch.no_grad():
                first[1].fill_(-1e3)  # the bias
        idx = torch.from_numpy(np.asarray(task.batch_indices(data_key, t)).astype(np.int64))
        scheduled_torch_step(model, optimizer, sched, x[idx], y[idx])
    return sched, params, data_key


def test_a_dead_layer_is_flagged_once_and_alike_in_torch_and_optax(task, policy):
    with pytest.warns(GannoWarning, match=r"layer\(s\) \[0\] got no gradient") as record:
        sched, params, data_key = torch_run(task, policy, kill=True)
    assert len([w for w in record if issubclass(w.category, GannoWarning)]) == 1
    assert record[0].filename.endswith("conftest.py")  # the caller of step(): the loop helper
    # the intervals ending at steps 3K, 4K and 5K are the first DEAD_INTERVALS without a gradient
    assert sched.dead_at_step == KILL + DEAD_INTERVALS * K
    assert sched.done and not sched.diverged  # it goes on deciding

    opt = ganno_sgd(
        policy,
        lr0=LR0,
        num_decisions=H,
        val_loss_fn=lambda p: task.loss_and_accuracy(p, task.x_val, task.y_val)[0],
    )
    state = opt.init(params)
    train_step = optax_train_step(task, opt, data_key)

    for t in range(K * H + 1):
        if t == KILL:
            params = {**params, "layer_0": {**params["layer_0"], "bias": jnp.full(16, -1e3)}}
        params, state = train_step(params, state, jnp.int32(t))
        if t == KILL + DEAD_INTERVALS * K - 1:
            assert dead_at_step(state) is None  # not before its interval ended
    assert dead_at_step(state) == sched.dead_at_step
    assert dead_at_step((optax.EmptyState(), state)) == sched.dead_at_step  # in a chain


def test_a_live_network_is_not_flagged(task, policy):
    with warnings.catch_warnings():
        warnings.simplefilter("error", GannoWarning)
        sched, *_ = torch_run(task, policy, kill=False)
    assert sched.done and sched.dead_at_step is None


def test_the_flag_survives_a_resume(task, policy):
    with pytest.warns(GannoWarning):
        sched, *_ = torch_run(task, policy, kill=True)
    state = sched.state_dict()
    fresh = GannoScheduler(sched.optimizer, policy, num_decisions=H, val_loss_fn=lambda: 0.0)
    fresh.load_state_dict(state)
    assert fresh.dead_at_step == sched.dead_at_step
    torch.testing.assert_close(fresh._initial_grad_sq, sched._initial_grad_sq)
    old = {
        k: v for k, v in state.items() if k not in ("dead_at_step", "dead_count", "initial_grad_sq")
    }
    fresh.load_state_dict(old)  # a state saved before the check: not flagged, not checked
    assert fresh.dead_at_step is None and fresh._initial_grad_sq is None
