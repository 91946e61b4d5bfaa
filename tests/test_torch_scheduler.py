"""The PyTorch deployment (ganno.torch): the same observations, decisions and training as the JAX
environment, on any optimiser and any number of layers, with clear errors.

Tolerances: features are O(1) logs, cosines and flags computed in float32 on both sides from the
same tensors, so they agree to a few ulps (``FEATURE_ATOL = 1e-5``). Over a full episode both
sides train in float32 and differ only in summation order (see test_torch_equivalence.py), so the
final weights agree to ``WEIGHT_RTOL = 1e-4`` relative and the greedy actions, hence the rates,
are identical (the policy's logits differ by ~1e-7, far below the gaps between them).
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from conftest import decisive_policy, inner_task  # noqa: E402

from ganno.env import FEATURE_NAMES, GannoEnv  # noqa: E402
from ganno.errors import UsageError  # noqa: E402
from ganno.inner import InnerTask, episode_keys  # noqa: E402
from ganno.networks import CNN1D, MLP, layer_keys  # noqa: E402
from ganno.observation import IntervalStats  # noqa: E402
from ganno.policy import Policy, env_settings  # noqa: E402
from ganno.torch import features  # noqa: E402
from ganno.torch.networks import (  # noqa: E402
    TorchCNN1D,
    TorchMLP,
    from_jax_params,
    layerwise_param_groups,
    to_jax_params,
)
from ganno.torch.scheduler import GannoScheduler, TrainingDivergedError  # noqa: E402

FEATURE_ATOL = 1e-5
WEIGHT_RTOL = 1e-4
K, H = 5, 4  # steps per decision, decisions

torch.set_num_threads(1)


def make_policy(
    env: GannoEnv | None = None,
    seed: int = 0,
    action_dim: int = 5,
    obs_dim=16,
    scale: float = 200.0,
    env_entry: dict | None = None,
    gru_size: int = 0,
) -> Policy:
    """A decisive random actor of the right shapes (see conftest.decisive_policy)."""
    return decisive_policy(
        obs_dim, action_dim, seed=seed, scale=scale, env=env, env_entry=env_entry, gru_size=gru_size
    )


def make_task(dataset, network) -> InnerTask:
    return inner_task(dataset, network)


@pytest.fixture(scope="module")
def mlp_task(dataset):
    return make_task(dataset, MLP(depth=3, width=32, num_classes=10))


@pytest.fixture(scope="module")
def mlp_env(mlp_task):
    return GannoEnv(mlp_task, steps_per_decision=K, num_decisions=H)


def _torch_layers(params):
    return [
        [torch.tensor(np.asarray(params[k][n])) for n in ("kernel", "bias")]
        for k in layer_keys(params)
    ]


# ------------------------------------------------------------------------------------ (a)
def test_feature_names_match_the_environment():
    assert features.FEATURE_NAMES == FEATURE_NAMES


def test_features_equal_the_jax_observe(mlp_task):
    """The same weights, gradients and losses give the same [N, F] observation."""
    env = GannoEnv(mlp_task, steps_per_decision=K, num_decisions=H)
    rng = np.random.default_rng(0)
    p0 = mlp_task.init_params(jax.random.PRNGKey(0))

    def like(scale):
        return jax.tree.map(
            lambda x: jnp.asarray(rng.normal(size=x.shape) * scale, jnp.float32), p0
        )

    params, prev_params = like(0.3), like(0.3)
    mean_grad, prev_mean_grad = like(1e-2), like(1e-2)
    mean_sq = jnp.asarray(rng.uniform(1e-3, 1e-1, size=3), jnp.float32)
    lrs = jnp.asarray([0.03, 1e-5, 2.0], jnp.float32)
    prev_log2 = jnp.asarray([1.0, -1.0, 0.0], jnp.float32)
    kw = dict(
        train_loss=jnp.float32(1.7),
        val_loss=jnp.float32(1.9),
        prev_train_loss=jnp.float32(2.1),
        prev_val_loss=jnp.float32(2.0),
        step_count=2,
    )
    losses = {k: v for k, v in kw.items() if k != "step_count"}

    def jax_observe(mean_grad, prev_mean_grad, mean_sq, params, prev_params):
        stats = IntervalStats(
            learning_rates=lrs,
            mean_grad=mean_grad,
            prev_mean_grad=prev_mean_grad,
            mean_sq_grad_norm=mean_sq,
            params=params,
            prev_params=prev_params,
            progress=jnp.float32(kw["step_count"] / H),
            prev_log2_choice=prev_log2,
            **losses,
        )
        return np.asarray(env._observe(stats, env.optimizer.init(params), jnp.ones(3)))

    jax_view = jax_observe(mean_grad, prev_mean_grad, mean_sq, params, prev_params)
    torch_view = features.observe(
        learning_rates=torch.tensor(np.asarray(lrs)),
        mean_grad=_torch_layers(mean_grad),
        prev_mean_grad=_torch_layers(prev_mean_grad),
        mean_sq_grad_norm=torch.tensor(np.asarray(mean_sq)),
        params=_torch_layers(params),
        prev_params=_torch_layers(prev_params),
        num_decisions=H,
        prev_log2_factor=torch.tensor(np.asarray(prev_log2)),
        **{k: (float(v) if k != "step_count" else v) for k, v in kw.items()},
    )
    assert torch_view.shape == (3, len(FEATURE_NAMES)) and torch_view.dtype == torch.float32
    np.testing.assert_allclose(torch_view.numpy(), jax_view, rtol=0, atol=FEATURE_ATOL)
    # the edge cases: no update, zero gradient (logs clipped, cosine 0 via the tiny guard)
    zeros = jax.tree.map(jnp.zeros_like, params)
    jax_edge = jax_observe(zeros, zeros, mean_sq * 0, params, params)
    torch_edge = features.observe(
        learning_rates=torch.tensor(np.asarray(lrs)),
        mean_grad=_torch_layers(zeros),
        prev_mean_grad=_torch_layers(zeros),
        mean_sq_grad_norm=torch.zeros(3),
        params=_torch_layers(params),
        prev_params=_torch_layers(params),
        num_decisions=H,
        prev_log2_factor=torch.tensor(np.asarray(prev_log2)),
        **{k: (float(v) if k != "step_count" else v) for k, v in kw.items()},
    )
    np.testing.assert_allclose(torch_edge.numpy(), jax_edge, rtol=0, atol=FEATURE_ATOL)


# ------------------------------------------------------------------------------------ (b)
_JITTED: dict[int, tuple] = {}


def jax_episode(env: GannoEnv, policy: Policy, key, lr0):
    if id(env) not in _JITTED:  # compile once per environment (the tests' main cost)
        _JITTED[id(env)] = (env, jax.jit(env.reset_with_lr0), jax.jit(env.step))
    _, reset, step = _JITTED[id(env)]
    state, ts = reset(key, jnp.float32(lr0))
    params0 = state.params
    views, rates, actions = [np.asarray(ts.observation.agents_view)], [], []
    carry = policy.initial_carry(env.num_agents)
    while True:
        carry, action = policy.step(carry, ts.observation)
        state, ts = step(state, action)
        actions.append(np.asarray(action))
        rates.append(np.asarray(state.opt_state.learning_rates))
        views.append(np.asarray(ts.observation.agents_view))
        if bool(ts.last()):
            break
    return params0, state, np.stack(views), np.stack(rates), np.stack(actions)


def torch_episode(
    task: InnerTask, model, policy, data_key, lr0, num_steps, make_optimizer, **sched_kw
):
    x_all = torch.tensor(np.asarray(task.x_train))
    y_all = torch.tensor(np.asarray(task.y_train)).long()
    x_val = torch.tensor(np.asarray(task.x_val))
    y_val = torch.tensor(np.asarray(task.y_val)).long()
    indices = np.asarray(jax.vmap(lambda s: task.batch_indices(data_key, s))(jnp.arange(num_steps)))

    def val_loss():
        with torch.no_grad():
            return F.cross_entropy(model(x_val), y_val)

    optimizer = make_optimizer(layerwise_param_groups(model), lr0)
    sched_kw.setdefault("gradient_statistics", "read")  # the environment's features, compared
    sched = GannoScheduler(optimizer, policy, val_loss_fn=val_loss, **sched_kw)
    for step in range(num_steps):
        if sched.diverged:  # the episode ended (on_divergence="restore"/"stop")
            break
        idx = torch.from_numpy(indices[step].astype(np.int64))
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        loss.backward()
        sched.observe_gradients(loss)
        optimizer.step()
        sched.step()
    return sched


def sgd(groups, lr0):
    return torch.optim.SGD(groups, lr=lr0)


def _rates_per_decision(sched):
    return np.stack([h["learning_rates"] for h in sched.history if h["actions"] is not None])


def _views(sched):
    return np.stack([h["observation"].numpy() for h in sched.history])


@pytest.mark.parametrize(
    "lr0,diverges,gru_size", [(0.05, False, 0), (0.9, True, 0), (0.05, False, 16)]
)
def test_full_episode_matches_the_environment(mlp_task, mlp_env, lr0, diverges, gru_size):
    """Same initial weights and minibatches: torch SGD + GannoScheduler and GannoEnv with the
    same policy take the same decisions, hence the same per-layer rates, see the same
    observations and end at the same weights; at lr0 = 0.9 both diverge in the second interval and
    keep the weights and rates of the last good state (on_divergence="restore"). A recurrent
    policy takes the same decisions too: the scheduler carries its hidden state."""
    env = mlp_env
    policy = make_policy(env, seed=2 if gru_size else 1, gru_size=gru_size)  # varied actions
    key = jax.random.PRNGKey(5)
    _, data_key, _ = episode_keys(key)
    params0, state, views, rates, actions = jax_episode(env, policy, key, lr0)
    model = from_jax_params(TorchMLP(40, 3, 32, 10), params0)
    sched = torch_episode(
        mlp_task, model, policy, data_key, lr0, K * H, sgd, on_divergence="restore"
    )

    diverged = bool(state.diverged)
    assert diverged == diverges == sched.diverged
    decisions = len(actions)
    assert decisions == (2 if diverges else H)
    assert sched.decisions == decisions and sched.done
    if not diverged:
        assert len(set(actions.ravel().tolist())) > 1, "vacuous test"
        np.testing.assert_allclose(_rates_per_decision(sched), rates, rtol=1e-6)
    np.testing.assert_array_equal(
        np.stack([h["actions"] for h in sched.history[:decisions]]), actions
    )
    seen = views[:-1] if diverged else views  # a diverged step repeats the last good view
    np.testing.assert_allclose(_views(sched), seen, rtol=0, atol=FEATURE_ATOL)
    np.testing.assert_allclose(sched.get_last_lr(), state.opt_state.learning_rates, rtol=1e-6)
    final = to_jax_params(model)
    for k in layer_keys(final):
        for n in ("kernel", "bias"):
            a, b = final[k][n], np.asarray(state.params[k][n])
            assert np.linalg.norm(a - b) <= WEIGHT_RTOL * np.linalg.norm(b) + 1e-7, (k, n)
    moved = np.linalg.norm(final["layer_0"]["kernel"] - np.asarray(params0["layer_0"]["kernel"]))
    assert moved > 1e-3


# ------------------------------------------------------------------------------------ (c)
def test_cnn_with_more_groups_matches_the_environment(dataset):
    """A 1-D CNN (3 layers: 2 convolutions + head) in torch equals the JAX CNN1D episode; and a
    deeper CNN (4 groups) runs too: the agent axis is a batch axis."""
    task = make_task(dataset, CNN1D(channels=(4, 8), kernel_size=5, num_classes=10))
    env = GannoEnv(task, steps_per_decision=K, num_decisions=H)
    policy = make_policy(env, seed=2)
    key = jax.random.PRNGKey(9)
    _, data_key, _ = episode_keys(key)
    params0, state, views, rates, _ = jax_episode(env, policy, key, 0.1)
    model = from_jax_params(TorchCNN1D(40, 1, (4, 8), 5, 10), params0)
    with torch.no_grad():  # the twin computes the same function
        x = torch.tensor(np.asarray(task.x_val[:8]))
        np.testing.assert_allclose(
            model(x).numpy(),
            np.asarray(task.network.apply({"params": params0}, task.x_val[:8])),
            atol=1e-5,
        )
    sched = torch_episode(task, model, policy, data_key, 0.1, K * H, sgd)
    np.testing.assert_allclose(_rates_per_decision(sched), rates, rtol=1e-6)
    np.testing.assert_allclose(_views(sched), views, rtol=0, atol=FEATURE_ATOL)

    deeper = TorchCNN1D(40, 1, (4, 8, 8), 3, 10)
    assert len(layerwise_param_groups(deeper)) == 4
    sched = torch_episode(task, deeper, policy, data_key, 0.1, K * H, sgd)
    assert sched.history[0]["observation"].shape == (4, 16)
    assert sched.history[0]["observation"][:, 13].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda groups, lr0: torch.optim.Adam(groups, lr=lr0),
        lambda groups, lr0: torch.optim.AdamW(groups, lr=lr0, weight_decay=1e-2),
        lambda groups, lr0: torch.optim.SGD(groups, lr=lr0, momentum=0.9, nesterov=True),
    ],
    ids=["adam", "adamw", "nesterov"],
)
def test_any_optimizer_gets_its_group_rates_from_the_policy(mlp_task, make_optimizer):
    env = GannoEnv(mlp_task, steps_per_decision=K, num_decisions=H)
    policy = make_policy(env, seed=3)
    model = TorchMLP(40, 3, 32, 10)
    sched = torch_episode(
        mlp_task, model, policy, jax.random.PRNGKey(0), 1e-3, K * H + 3, make_optimizer
    )
    assert sched.decisions == H and sched.steps == K * H + 3  # the rates stay after the budget
    lrs = np.asarray(sched.get_last_lr())
    factors = np.asarray(env.actions)
    expected = np.full(3, 1e-3)
    for h in sched.history[:H]:
        expected = np.clip(expected * factors[h["actions"]], *env.lr_bounds)
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    assert sched.history[-1]["actions"] is None and sched.history[-1]["step"] == K * H


@pytest.mark.parametrize(
    "mode,window,stop,base_step_size,statistics",
    [
        ("compound", None, 7, "lr0", "read"),
        ("anchored_compound", 2, 9, "lr0", "read"),
        ("anchored", 2, 7, "lr0", "read"),
        ("anchored_compound", None, 9, "dog", "read"),
        ("anchored_compound", 2, 9, "lr0", "weight_changes"),  # inside the window's snapshots
        ("compound", None, 7, "lr0", "weight_changes"),
    ],
)
def test_state_dict_resumes_mid_episode_identically(
    mlp_task, mode, window, stop, base_step_size, statistics
):
    """Checkpointed mid-interval (before or inside the gradient window, with the anchored modes'
    planned per-step rates, or DoG's step size and initial weights), a resumed scheduler takes the
    uninterrupted run's decisions on its observations and sets its rates at every step."""
    env = GannoEnv(
        mlp_task,
        steps_per_decision=K,
        num_decisions=H,
        action_mode=mode,
        gradient_window=window,
        base_step_size=base_step_size,
    )
    policy = make_policy(env, seed=4, obs_dim=env.num_features)
    key = jax.random.PRNGKey(1)
    init_key, data_key, _ = episode_keys(key)
    params0 = mlp_task.init_params(init_key)
    full = torch_episode(
        mlp_task,
        from_jax_params(TorchMLP(40, 3, 32, 10), params0),
        policy,
        data_key,
        0.05,
        K * H,
        sgd,
        gradient_statistics=statistics,
    )
    # stop after `stop` steps (mid-interval), checkpoint everything, resume in fresh objects
    model = from_jax_params(TorchMLP(40, 3, 32, 10), params0)
    half = torch_episode(
        mlp_task, model, policy, data_key, 0.05, stop, sgd, gradient_statistics=statistics
    )
    buffer = io.BytesIO()  # through torch.save, as a real checkpoint would
    torch.save(
        {
            "sched": half.state_dict(),
            "model": model.state_dict(),
            "opt": half.optimizer.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    model2 = TorchMLP(40, 3, 32, 10)
    model2.load_state_dict(saved["model"])
    opt2 = torch.optim.SGD(layerwise_param_groups(model2), lr=0.05)
    opt2.load_state_dict(saved["opt"])
    x_val = torch.tensor(np.asarray(mlp_task.x_val))
    y_val = torch.tensor(np.asarray(mlp_task.y_val)).long()
    sched2 = GannoScheduler(  # the default "auto" resumes the way the state was taken
        opt2, policy, val_loss_fn=lambda: F.cross_entropy(model2(x_val), y_val)
    )
    sched2.load_state_dict(saved["sched"])
    assert sched2.gradient_statistics == statistics
    assert sched2.get_last_lr() == half.get_last_lr()
    np.testing.assert_array_equal(sched2.learning_rates, half.learning_rates)
    indices = np.asarray(jax.vmap(lambda s: mlp_task.batch_indices(data_key, s))(jnp.arange(K * H)))
    x_all = torch.tensor(np.asarray(mlp_task.x_train))
    y_all = torch.tensor(np.asarray(mlp_task.y_train)).long()
    for step in range(stop, K * H):
        idx = torch.from_numpy(indices[step].astype(np.int64))
        opt2.zero_grad()
        loss = F.cross_entropy(model2(x_all[idx]), y_all[idx])
        loss.backward()
        sched2.observe_gradients(loss)
        opt2.step()
        sched2.step()
    assert [h["actions"] for h in sched2.history] == [h["actions"] for h in full.history]
    assert len({tuple(h["actions"] or ()) for h in full.history}) > 2, "vacuous test"
    np.testing.assert_allclose(_views(sched2), _views(full), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sched2.get_last_lr(), full.get_last_lr(), rtol=1e-7)
    other = GannoScheduler(
        torch.optim.SGD(layerwise_param_groups(TorchMLP(40, 2, 8, 10)), lr=0.1), policy
    )
    with pytest.raises(ValueError, match="another"):
        other.load_state_dict(saved["sched"])


# ------------------------------------------------------------------------------------ (d)
def test_settings_come_from_the_policy_or_arguments(mlp_task):
    env = GannoEnv(mlp_task, steps_per_decision=7, num_decisions=3, lr_bounds=(1e-4, 1.0))
    opt = torch.optim.SGD(layerwise_param_groups(TorchMLP(40, 3, 8, 10)), lr=5.0)
    sched = GannoScheduler(opt, make_policy(env))
    assert (sched.steps_per_decision, sched.num_decisions, sched.total_steps) == (7, 3, 21)
    assert sched.lr_bounds == (1e-4, 1.0) and sched.get_last_lr() == [1.0] * 3  # lr0 clipped
    sched = GannoScheduler(opt, make_policy(env), steps_per_decision=2, num_decisions=9)
    assert (sched.steps_per_decision, sched.num_decisions) == (2, 9)
    legacy = make_policy(None)  # a policy saved before the env settings were recorded
    with pytest.raises(ValueError, match="steps_per_decision, num_decisions"):
        GannoScheduler(opt, legacy)
    sched = GannoScheduler(opt, legacy, steps_per_decision=4, num_decisions=2)
    assert sched.actions == (0.5, 0.8, 1.0, 1.25, 2.0)


def test_error_paths(mlp_task, tmp_path):
    env = GannoEnv(mlp_task, steps_per_decision=K, num_decisions=H)
    model = TorchMLP(40, 3, 8, 10)
    opt = torch.optim.SGD(layerwise_param_groups(model), lr=0.1)
    # a policy with another action count (e.g. momentum x factor joint actions)
    with pytest.raises(ValueError, match="more than the learning rate"):
        GannoScheduler(opt, make_policy(env, action_dim=10))
    entry = {**env_settings(env), "hyperparameter_actions": {"momentum": [0.0, 0.9]}}
    with pytest.raises(ValueError, match="momentum"):
        GannoScheduler(opt, make_policy(action_dim=10, obs_dim=17, env_entry=entry))
    with pytest.raises(ValueError, match="features"):
        GannoScheduler(opt, make_policy(env, obs_dim=17))
    with pytest.raises(ValueError, match="differ from the factors"):
        GannoScheduler(opt, make_policy(env), actions=[0.5, 1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="on_divergence"):
        GannoScheduler(opt, make_policy(env), on_divergence="ignore")
    # a round trip through disk keeps the recorded settings
    make_policy(env).save(tmp_path / "p")
    assert GannoScheduler(opt, Policy.load(tmp_path / "p")).steps_per_decision == K

    policy = make_policy(env)
    sched = GannoScheduler(opt, policy)  # no val_loss_fn
    x = torch.tensor(np.asarray(mlp_task.x_train[:32]))
    y = torch.tensor(np.asarray(mlp_task.y_train[:32])).long()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert sched.needs_val_loss
    with pytest.raises(ValueError, match="val_loss_fn"):
        sched.observe_gradients(loss)
    sched.observe_gradients(loss, val_loss=2.3)
    with pytest.raises(RuntimeError, match="twice"):
        sched.observe_gradients(loss)
    opt.step()
    sched.step()
    with pytest.raises(RuntimeError, match="observe_gradients"):
        sched.step()


def _diverging_run(mlp_task, on_divergence, nan_at=None, explode_after=10):
    """SGD at 0.01 with a validation loss of 2.0 that jumps to 50 (> 10 x 2.0) once more than
    ``explode_after`` steps were taken, or a NaN minibatch loss at step ``nan_at``: the rule
    itself, deterministically (a real explosion is compared with GannoEnv above)."""
    env = GannoEnv(mlp_task, steps_per_decision=K, num_decisions=H)
    policy = make_policy(env, seed=0, scale=0.0)  # uniform logits: greedy keeps action 0 (x0.5)
    torch.manual_seed(0)
    model = TorchMLP(40, 3, 32, 10)
    opt = torch.optim.SGD(layerwise_param_groups(model), lr=0.01)
    sched = GannoScheduler(
        opt,
        policy,
        on_divergence=on_divergence,
        val_loss_fn=lambda: 2.0 if sched.steps <= explode_after else 50.0,
    )
    x_all = torch.tensor(np.asarray(mlp_task.x_train))
    y_all = torch.tensor(np.asarray(mlp_task.y_train)).long()
    snapshots = []
    for step in range(K * H):
        if sched.diverged:
            break
        if step % K == 0:
            snapshots.append([p.detach().clone() for p in model.parameters()])
        idx = torch.arange(32 * step, 32 * step + 32) % x_all.shape[0]
        opt.zero_grad()
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        if nan_at is not None and step == nan_at:
            loss = loss * float("nan")
        loss.backward()
        sched.observe_gradients(loss)
        opt.step()
        sched.step()
    return sched, model, snapshots


def test_divergence_raises_or_restores_like_the_environment(mlp_task):
    with pytest.raises(TrainingDivergedError, match="validation loss 50"):
        _diverging_run(mlp_task, "raise")
    with pytest.raises(TrainingDivergedError, match="non-finite minibatch loss"):
        _diverging_run(mlp_task, "raise", nan_at=7)
    sched, model, snapshots = _diverging_run(mlp_task, "restore")
    # checks after steps 5 and 10 pass, the one after step 15 fails: 3 decisions were taken
    assert sched.diverged and sched.diverged_at_step == 15 and sched.decisions == 3
    # the weights are those of the last decision (step 10), the rates those before it
    for p, q in zip(model.parameters(), snapshots[-1], strict=True):
        torch.testing.assert_close(p.detach(), q)
    assert not torch.equal(snapshots[-1][0], snapshots[0][0])
    assert sched.get_last_lr() == pytest.approx([0.01 * 0.5**2] * 3)
    sched.observe_gradients(torch.tensor(1.0))  # no-ops from now on
    sched.step()
    assert sched.decisions == 3 and sched.done
    sched, model, snapshots = _diverging_run(mlp_task, "stop", nan_at=7)
    assert sched.diverged and sched.diverged_at_step == 7 and sched.decisions == 2
    assert sched.get_last_lr() == pytest.approx([0.01 * 0.5**2] * 3)  # "stop" changes nothing


# ------------------------------------------------------------------------------------ (b')
@pytest.mark.parametrize(
    "mode,base_step_size",
    [("anchored", "lr0"), ("anchored_compound", "lr0"), ("anchored_compound", "dog")],
)
def test_anchored_policy_with_normalisation_matches_the_environment(mlp_task, mode, base_step_size):
    """A policy meta-trained in an anchored action mode on normalised observations: torch SGD +
    GannoScheduler follow the base schedule x the multipliers step by step (the base on lr0, or
    on DoG's step size), and take the environment's decisions on the environment's (normalised)
    observations."""
    env = GannoEnv(
        mlp_task,
        steps_per_decision=K,
        num_decisions=H,
        action_mode=mode,
        base_step_size=base_step_size,
    )
    assert env.num_features == 17
    policy = make_policy(env, seed=3, obs_dim=17)
    rng = np.random.default_rng(0)
    stats = {"mean": rng.normal(size=17).tolist(), "var": rng.uniform(0.5, 2, 17).tolist()}
    policy = Policy(policy.params, {**policy.config, "observation_normalisation": stats})
    key = jax.random.PRNGKey(5)
    _, data_key, _ = episode_keys(key)
    params0, state, views, rates, actions = jax_episode(env, policy, key, 0.05)
    assert len(set(actions.ravel().tolist())) > 1, "vacuous test"
    model = from_jax_params(TorchMLP(40, 3, 32, 10), params0)
    sched = torch_episode(mlp_task, model, policy, data_key, 0.05, K * H, sgd)
    assert sched.action_mode == mode
    np.testing.assert_array_equal(np.stack([h["actions"] for h in sched.history[:H]]), actions)
    np.testing.assert_allclose(_views(sched), views, rtol=0, atol=FEATURE_ATOL)
    np.testing.assert_allclose(sched.lr_scale, state.lr_scale, rtol=1e-6)
    np.testing.assert_allclose(sched.get_last_lr(), state.opt_state.learning_rates, rtol=1e-5)
    final = to_jax_params(model)
    for k in layer_keys(final):
        for n in ("kernel", "bias"):
            a, b = final[k][n], np.asarray(state.params[k][n])
            assert np.linalg.norm(a - b) <= WEIGHT_RTOL * np.linalg.norm(b) + 1e-7, (k, n)
    if base_step_size == "dog":  # DoG's step size moved off lr0, and equals the environment's
        assert sched.dog.eta != pytest.approx(0.05, rel=0.01)
        assert sched.dog.eta == pytest.approx(float(state.dog.eta), rel=1e-4)
        assert sched.dog.max_distance == pytest.approx(float(state.dog.max_distance), rel=1e-4)
        with pytest.raises(UsageError, match="one for all the layers.*give one lr0"):
            GannoScheduler(sched.optimizer, policy, lr0=[0.01, 0.02, 0.03])
    else:
        assert sched.dog is None


# ------------------------------------------------------------------------------------ (e)
@pytest.mark.parametrize("mode,window", [("compound", None), ("anchored", None), ("anchored", 2)])
def test_total_steps_spreads_the_decisions_like_a_longer_episode(mlp_task, mode, window):
    """A policy meta-trained with k = K, given total_steps = 3 K H: H decisions every 3 K steps with
    progress d / H and (anchored) a base schedule over 3 K H steps, i.e. the environment with
    k = 3 K; then the rates stay. A length that is not a multiple of H puts decision d after
    d x T // H steps. A policy meta-trained with a gradient window (its last 2 steps) reads the
    last 2 steps of the longer intervals too, as the environment does."""
    trained = GannoEnv(
        mlp_task, steps_per_decision=K, num_decisions=H, action_mode=mode, gradient_window=window
    )
    policy = make_policy(trained, seed=1, obs_dim=trained.num_features)
    assert policy.config["env"]["gradient_window"] == window
    longer = GannoEnv(
        mlp_task,
        steps_per_decision=3 * K,
        num_decisions=H,
        action_mode=mode,
        gradient_window=window,
    )
    key = jax.random.PRNGKey(2)
    _, data_key, _ = episode_keys(key)
    params0, state, views, _, actions = jax_episode(longer, policy, key, 0.05)
    model = from_jax_params(TorchMLP(40, 3, 32, 10), params0)
    sched = torch_episode(
        mlp_task, model, policy, data_key, 0.05, 3 * K * H + 2, sgd, total_steps=3 * K * H
    )
    assert sched.total_steps == 3 * K * H and sched.decisions == H and sched.done
    assert sched.settings.gradient_window == window
    np.testing.assert_array_equal(np.stack([h["actions"] for h in sched.history[:H]]), actions)
    np.testing.assert_allclose(_views(sched), views, rtol=0, atol=FEATURE_ATOL)
    if window is not None:  # not vacuous: the window's gradient features are not the interval's
        whole = GannoEnv(mlp_task, steps_per_decision=3 * K, num_decisions=H, action_mode=mode)
        _, _, whole_views, _, _ = jax_episode(whole, policy, key, 0.05)
        grad_norm = FEATURE_NAMES.index("log_grad_norm")
        assert not np.allclose(whole_views[1:, :, grad_norm], views[1:, :, grad_norm], atol=1e-3)
    assert [h["step"] for h in sched.history] == [3 * K * d for d in range(H + 1)]
    odd = GannoScheduler(
        torch.optim.SGD(layerwise_param_groups(TorchMLP(40, 3, 8, 10)), lr=0.1),
        policy,
        total_steps=30,
    )
    assert [odd.interval_end(d) for d in range(H + 1)] == [0, 7, 15, 22, 30]
    with pytest.raises(ValueError, match="fewer than the policy's 4 decisions"):
        GannoScheduler(odd.optimizer, policy, total_steps=3)


def test_initial_rates_are_validated_and_a_clipped_one_is_announced(mlp_env):
    from ganno.errors import GannoWarning

    policy = make_policy(mlp_env, seed=1)
    model = TorchMLP(40, 3, 32, 10)
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.1)
    with pytest.raises(UsageError, match="positive and finite"):
        GannoScheduler(optimizer, policy, lr0=-1.0)
    with pytest.raises(UsageError, match="positive and finite"):
        GannoScheduler(optimizer, policy, lr0=float("nan"))
    with pytest.warns(GannoWarning, match="outside the policy's lr_bounds"):
        sched = GannoScheduler(optimizer, policy, lr0=1000.0)
    assert sched.get_last_lr() == [10.0] * 3


def test_a_loop_that_validates_itself_can_hand_the_scheduler_its_value(mlp_env):
    """benchmarks/torch_scheduler_overhead.py's two loops (the scheduler calling val_loss_fn, or
    the loop validating at its cadence and passing ``val_loss=``) take the same decisions."""
    import copy
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_scheduler_overhead.py"
    spec = importlib.util.spec_from_file_location("ganno_bench_sched_overhead", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    made = []

    class Recording(GannoScheduler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(16, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    )
    x, x_val = torch.randn(64, 4, 4), torch.randn(32, 4, 4)
    data = (
        x,
        torch.randint(0, 3, (64,)),
        torch.randint(0, 64, (K * H, 8)),
        x_val,
        torch.randint(0, 3, (32,)),
    )
    for validate in (False, True):
        times = bench.train(
            copy.deepcopy(model),
            data,
            K * H,
            make_policy(mlp_env),
            K,
            validate=validate,
            scheduler_cls=Recording,
        )
        assert times["sched_cpu"] > 0 and (times["sched_val_cpu"] > 0) != validate
        assert 0 < times["sched_wall"] < times["wall"]
    own, handed = made
    assert own.done and handed.done and len(own.history) == len(handed.history) == H + 1
    np.testing.assert_allclose(_views(handed), _views(own), rtol=0, atol=FEATURE_ATOL)
    assert [h["learning_rates"] for h in handed.history] == [
        h["learning_rates"] for h in own.history
    ]
