"""GannoScheduler(gradient_statistics="weight_changes"): the interval's gradient statistics from the
weights' changes (ganno.torch.weight_changes) instead of every step's gradients. On one trajectory
(a policy that always keeps the rates, so both ways train the same weights) the mean gradient's
features equal the read ones up to float32 rounding when the rate is constant over the interval,
and stay close under the cosine base; the noise feature is an estimate within a stated bound; only
plain SGD is accepted."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import decisive_policy, inner_task, scheduled_torch_step

from ganno.env import GannoEnv
from ganno.errors import UsageError
from ganno.feature_names import FEATURE_NAMES
from ganno.inner import episode_keys
from ganno.networks import MLP
from ganno.policy import Policy

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from ganno.torch.networks import TorchMLP, from_jax_params, layerwise_param_groups  # noqa: E402
from ganno.torch.scheduler import GannoScheduler  # noqa: E402
from ganno.torch.weight_changes import WeightChangeStatistics, check_plain_sgd  # noqa: E402

K, H = 20, 5
NORM, COSINE, NOISE = (
    FEATURE_NAMES.index(n) for n in ("log_grad_norm", "grad_cosine", "log_grad_noise")
)


@pytest.fixture(scope="module")
def task(dataset):
    return inner_task(dataset, MLP(depth=3, width=32, num_classes=10))


def keeping(env: GannoEnv) -> Policy:
    """A policy that always picks the factor 1: the rates (or multipliers) never change, so the
    trajectory does not depend on the features."""
    policy = decisive_policy(env.num_features, env.action_dim, env=env)
    keep = env.neutral_action  # the factor 1

    def one_action(path, x):
        name = jax.tree_util.keystr(path)
        if "Dense_0" not in name or "MLP" in name:
            return x
        return jnp.zeros_like(x) if "kernel" in name else jnp.zeros_like(x).at[keep].set(50.0)

    return Policy(jax.tree_util.tree_map_with_path(one_action, policy.params), policy.config)


def episode(task, policy, params0, data_key, statistics, lr0=0.05, **kw):
    model = from_jax_params(TorchMLP(40, 3, 32, 10), params0)
    x, y = torch.tensor(np.asarray(task.x_train)), torch.tensor(np.asarray(task.y_train)).long()
    x_val = torch.tensor(np.asarray(task.x_val))
    y_val = torch.tensor(np.asarray(task.y_val)).long()
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=lr0)
    sched = GannoScheduler(
        optimizer,
        policy,
        val_loss_fn=lambda: F.cross_entropy(model(x_val), y_val).detach(),
        gradient_statistics=statistics,
        **kw,
    )
    for t in range(sched.total_steps):
        idx = torch.from_numpy(np.asarray(task.batch_indices(data_key, t)).astype(np.int64))
        scheduled_torch_step(model, optimizer, sched, x[idx], y[idx])
    return sched, model


@pytest.mark.parametrize(
    "mode,window,norm_atol,cosine_atol",
    [
        ("compound", None, 2e-4, 2e-3),  # constant rates: the same mean, up to rounding
        ("compound", 10, 2e-4, 2e-3),  # over the gradient window only
        ("anchored_compound", None, 5e-3, 3e-2),  # cosine base: a rate-weighted mean
    ],
)
def test_the_features_follow_the_read_ones_on_one_trajectory(
    task, mode, window, norm_atol, cosine_atol
):
    env = GannoEnv(
        task, steps_per_decision=K, num_decisions=H, action_mode=mode, gradient_window=window
    )
    policy = keeping(env)
    init_key, data_key, _ = episode_keys(jax.random.PRNGKey(7))
    params0 = task.init_params(init_key)
    read, model_read = episode(task, policy, params0, data_key, "read")
    est, model_est = episode(task, policy, params0, data_key, "weight_changes")
    assert [h["actions"] for h in read.history] == [h["actions"] for h in est.history]
    for a, b in zip(model_read.parameters(), model_est.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same training, bit for bit
    views_read = np.stack([h["observation"].numpy() for h in read.history])[1:]
    views_est = np.stack([h["observation"].numpy() for h in est.history])[1:]
    other = [i for i in range(views_read.shape[-1]) if i not in (NORM, COSINE, NOISE)]
    # the weights' and update's norms from the sample's sums, not _foreach_norm: ulps apart
    np.testing.assert_allclose(views_est[..., other], views_read[..., other], rtol=0, atol=1e-6)
    np.testing.assert_allclose(views_est[..., NORM], views_read[..., NORM], rtol=0, atol=norm_atol)
    np.testing.assert_allclose(
        views_est[..., COSINE], views_read[..., COSINE], rtol=0, atol=cosine_atol
    )
    # the noise: an estimate from 5 segment means of 4 steps each (0.25 = a factor 10 ** 0.5 in
    # the noise-to-signal ratio the feature takes the log of; most are much closer)
    noise_error = np.abs(views_est[..., NOISE] - views_read[..., NOISE])
    assert noise_error.max() < 0.25 and np.median(noise_error) < 0.06, noise_error


def test_the_noise_estimate_is_unbiased_on_pure_noise():
    """Gradients that are a fixed mean plus independent noise, taken by plain SGD at a constant
    rate: the estimated mean squared minibatch-gradient norm matches the true one."""
    torch.manual_seed(0)
    weights = [torch.zeros(4000)]
    from ganno.torch.sampling import GradientSample

    stats = WeightChangeStatistics(GradientSample(weights, fraction=None), [0], 1)
    mean, sigma, lr, k = torch.full((4000,), 0.01), 0.05, 0.1, 50
    estimates, truths = [], []
    for _ in range(20):
        stats.start(0, 0, k, weights)
        squares = 0.0
        for step in range(k):
            g = mean + sigma * torch.randn(4000)
            stats.observe(step, weights)
            squares += float((g * g).sum())
            weights[0] -= lr * g
        interval = stats.statistics(weights, torch.full((k, 1), lr))
        grad_mean, mean_sq = interval.mean_grad, interval.mean_sq_grad_norm
        estimates.append(float(mean_sq[0]))
        truths.append(squares / k)
        np.testing.assert_allclose(grad_mean[0].numpy(), mean.numpy(), atol=5 * sigma / k**0.5)
    assert abs(np.mean(estimates) / np.mean(truths) - 1) < 0.03


def test_only_plain_sgd(task):
    params = [torch.nn.Parameter(torch.zeros(3))]
    check_plain_sgd(torch.optim.SGD(params, lr=0.1))
    for optimizer, why in [
        (torch.optim.SGD(params, lr=0.1, momentum=0.9), "momentum=0.9"),
        (torch.optim.SGD(params, lr=0.1, weight_decay=1e-4), "weight_decay"),
        (torch.optim.Adam(params, lr=0.1), "Adam is not torch.optim.SGD"),
    ]:
        with pytest.raises(UsageError, match=why):
            check_plain_sgd(optimizer)
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    model = TorchMLP(40, 3, 32, 10)
    with pytest.raises(UsageError, match="plain SGD"):
        GannoScheduler(
            torch.optim.Adam(layerwise_param_groups(model), lr=0.01),
            keeping(env),
            gradient_statistics="weight_changes",
        )
    dog = GannoEnv(
        task,
        steps_per_decision=K,
        num_decisions=H,
        action_mode="anchored_compound",
        base_step_size="dog",
    )
    with pytest.raises(UsageError, match="DoG-base"):
        GannoScheduler(
            torch.optim.SGD(layerwise_param_groups(model), lr=0.01),
            keeping(dog),
            gradient_statistics="weight_changes",
        )
    with pytest.raises(ValueError, match="gradient_statistics='grads'"):
        GannoScheduler(
            torch.optim.SGD(layerwise_param_groups(model), lr=0.01),
            keeping(env),
            gradient_statistics="grads",
        )


def test_auto_takes_the_weights_changes_only_where_they_record_the_gradients(task):
    """The default "auto": weight changes for plain SGD on CPU tensors, the gradients read for
    any other optimiser and for a DoG-base policy (whose step size reads them anyway)."""
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    dog = GannoEnv(
        task, steps_per_decision=K, num_decisions=H, action_mode="anchored_compound",
        base_step_size="dog",
    )  # fmt: skip
    model = TorchMLP(40, 3, 32, 10)
    groups = lambda: layerwise_param_groups(model)  # noqa: E731
    for optimizer, policy, expected in [
        (torch.optim.SGD(groups(), lr=0.01), keeping(env), "weight_changes"),
        (torch.optim.SGD(groups(), lr=0.01, momentum=0.9), keeping(env), "read"),
        (torch.optim.SGD(groups(), lr=0.01, weight_decay=1e-4), keeping(env), "read"),
        (torch.optim.Adam(groups(), lr=0.01), keeping(env), "read"),
        (torch.optim.SGD(groups(), lr=0.01), keeping(dog), "read"),
    ]:
        sched = GannoScheduler(optimizer, policy)
        assert sched.requested_statistics == "auto"
        assert sched.gradient_statistics == expected, (optimizer, expected)
        assert (sched._weight_stats is not None) == (expected == "weight_changes")
    # tensors off the CPU (here PyTorch's "meta" device, standing in for a GPU): read
    off_cpu = torch.optim.SGD(layerwise_param_groups(TorchMLP(40, 3, 32, 10).to("meta")), lr=0.01)
    assert GannoScheduler(off_cpu, keeping(env)).gradient_statistics == "read"
    with pytest.raises(UsageError, match="CPU tensors only"):
        GannoScheduler(off_cpu, keeping(env), gradient_statistics="weight_changes")
