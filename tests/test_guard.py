"""The guard (issue 37 item 6; ``env.guard``, the rule in :mod:`ganno.protocol`): when a run heads
for death it goes back to the last decision and follows the base schedule to the end of its
budget. (1) the rule on constructed values, each trigger alone; (2) an environment built for
evaluation keeps alive a network that a controller doubling its multiplier kills without it, with
multipliers 1 and the base schedule's rates after the trip; (3) the environment, ``ganno_sgd`` and
``GannoScheduler`` take the same decisions, trip at the same step and end at the same rates and
weights; (4) settings: recorded in a saved policy, followed and overridden by the schedulers,
refused in the compound mode. Guard off, every other test of the environment and the schedulers
checks that nothing changed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import decisive_policy, inner_task, scheduled_torch_step

from ganno.config import validate
from ganno.deployment import deployment_settings
from ganno.env import GannoEnv, make_env
from ganno.env_settings import EnvSettings, share_of_the_way
from ganno.errors import UsageError
from ganno.evaluate import grid_table, play_episode
from ganno.inner import episode_keys
from ganno.networks import MLP, layer_keys
from ganno.optax_scheduler import ganno_sgd, guarded_at
from ganno.policy import Policy, env_settings
from ganno.protocol import DEAD_GRADIENT_FRACTION, guard_trips, run_diverged

K, H = 5, 8
WEIGHT_RTOL = 1e-4
#: the runs at chance accuracy (ganno.tables.at_chance: 5% of the way from chance to perfect)
CHANCE = share_of_the_way(10, 0.05)


@pytest.fixture(scope="module")
def task(dataset):
    return inner_task(dataset, MLP(depth=3, width=32, num_classes=10))


def guarded_env(task, guard=True, **kw) -> GannoEnv:
    """The default design's action mode: cosine on DoG's step size x a compounding multiplier."""
    settings = dict(
        steps_per_decision=K,
        num_decisions=H,
        action_mode="anchored_compound",
        base_step_size="dog",
        scale_bounds=(1e-4, 1e5),
        guard=guard,
    )
    return GannoEnv(task, **{**settings, **kw})


def always(env: GannoEnv, factor: float) -> Policy:
    """A policy that chooses ``factor`` for every layer whatever it sees (``env``'s settings
    recorded, the guard included)."""
    policy = decisive_policy(env.num_features, env.action_dim, env=env)
    params = jax.tree.map(np.array, policy.params)
    head = params["params"]["Dense_0"]
    head["kernel"][:] = 0.0
    head["bias"][:] = 0.0
    head["bias"][env.action_index(factor)] = 10.0
    return Policy(params, policy.config)


# ------------------------------------------------------------------------------------ (1)
@pytest.mark.parametrize("kind", ["numpy", "jax", "torch"])
def test_the_rule_trips_on_each_trigger_alone_and_not_otherwise(kind):
    torch = pytest.importorskip("torch") if kind == "torch" else None
    as_array = {
        "numpy": lambda x: np.asarray(x, np.float32),
        "jax": lambda x: jnp.asarray(x, jnp.float32),
        "torch": lambda x: torch.tensor(x, dtype=torch.float32),
    }[kind]
    initial_sq = as_array([1.0, 4.0, 0.0])
    live_sq = as_array([0.5, 1e-3, 0.0])  # the third layer had no gradient at the start either
    dead_sq = as_array([0.5, 4.0 * DEAD_GRADIENT_FRACTION, 0.0])
    weights = as_array([3.0, 2.0, 1.0])

    def diverged(val, train=1.0, w=weights):
        return bool(run_diverged(val, train, w, 2.3, 10.0))

    def trips(div, val, sq, best=2.3, train=2.3, best_train=2.3):
        return bool(
            guard_trips(
                div, val, 2.3, best, sq, initial_sq,
                train_loss=train, initial_train_loss=2.3, best_train_loss=best_train,
            )
        )  # fmt: skip

    # the divergence rule: each cause alone
    assert not diverged(2.0)
    assert diverged(float("nan")) and diverged(float("inf")) and diverged(23.1)
    assert not diverged(22.9)
    assert diverged(2.0, train=float("nan")) and diverged(2.0, train=float("-inf"))
    assert diverged(2.0, w=as_array([3.0, float("inf"), 1.0]))
    assert diverged(2.0, w=as_array([float("nan"), 2.0, 1.0]))
    # the guard: none, then (a), (b), (c) alone
    assert not trips(False, 2.0, live_sq)
    assert trips(True, 2.0, live_sq)
    assert trips(False, 2.31, live_sq, train=2.31) and not trips(False, 2.3, live_sq, train=2.31)
    # (b) once the run made progress: both losses half-way back from their best (1.0) to where
    # they started (2.3), each on its own line
    back = dict(best=1.0, best_train=1.0)
    assert trips(False, 1.66, live_sq, train=1.66, **back)
    assert not trips(False, 1.64, live_sq, train=1.66, **back)
    assert not trips(False, 1.66, live_sq, train=1.64, **back)
    # a well-trained network whose validation loss rises while it still fits its training data
    # (the training loss at its best): not a run heading for death
    assert not trips(False, 2.2, live_sq, train=1.0, **back)
    # a network collapsed to one class sits near ln(10) = 2.303, under a 2.4 start: caught
    collapsed = float(np.log(10.0))
    assert bool(
        guard_trips(
            False, collapsed, 2.4, 0.9, live_sq, initial_sq,
            train_loss=collapsed, initial_train_loss=2.4, best_train_loss=0.8,
        )
    )  # fmt: skip
    assert trips(False, 2.0, dead_sq)
    assert not trips(False, float("nan"), live_sq)  # a NaN is divergence's, (a)
    # the rule traces under jit
    if kind == "jax":
        jitted = jax.jit(
            lambda v, sq: guard_trips(
                jnp.bool_(False), v, 2.3, 2.3, sq, initial_sq,
                train_loss=v, initial_train_loss=2.3, best_train_loss=2.3,
            )
        )  # fmt: skip
        assert bool(jitted(jnp.float32(2.0), dead_sq)) and not bool(jitted(2.0, live_sq))
        assert bool(jitted(jnp.float32(2.4), live_sq))


# ------------------------------------------------------------------------------------ (4)
def test_the_guard_is_recorded_followed_overridden_and_refused_where_there_is_no_base(
    task, dataset
):
    with pytest.raises(ValueError, match="compound has no base schedule"):
        EnvSettings(guard=True)
    with pytest.raises(ValueError, match="compound has no base schedule"):
        GannoEnv(task, guard=True)
    env = guarded_env(task)
    assert env.guarded and env_settings(env)["guard"] is True
    assert "guard" not in env_settings(guarded_env(task, guard=False))  # as saved before
    # meta-training's environment records the setting but does not apply it
    assert not GannoEnv(task, env.settings, apply_guard=False).guarded
    cfg = validate(
        {
            "task": {"network": {"kind": "mlp", "depth": 2, "width": 8}, "batch_size": 32},
            "env": {"action_mode": "anchored_compound", "guard": True},
        }
    )
    assert make_env(cfg, dataset, evaluation=True).guarded
    meta_training = make_env(cfg, dataset)
    assert not meta_training.guarded and env_settings(meta_training)["guard"] is True
    policy = always(env, 2.0)
    assert deployment_settings(policy).guard
    assert not deployment_settings(policy, guard=False).guard
    unguarded = always(guarded_env(task, guard=False), 2.0)
    assert not deployment_settings(unguarded).guard and deployment_settings(unguarded, guard=True)
    compound = decisive_policy(16, 5, env=GannoEnv(task, steps_per_decision=K, num_decisions=H))
    with pytest.raises(UsageError, match="ganno_sgd: guard=true .* compound"):
        ganno_sgd(compound, lr0=0.1, guard=True, val_loss_fn=lambda p: 0.0)


# ------------------------------------------------------------------------------------ (2)
def test_the_guard_keeps_alive_a_network_the_agents_kill(task, dataset):
    """A controller that doubles every multiplier at every decision, lr0 = 1: without the guard
    the network ends at chance; with it the guard trips, the multipliers are 1 from there, every
    rate is the base schedule's (cosine x DoG's step size) and the network learns."""
    up = lambda env: lambda obs, key: jnp.full((env.num_agents,), env.action_index(2.0))  # noqa: E731
    xt, yt = jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test)
    key, lr0 = jax.random.PRNGKey(1), jnp.float32(1.0)
    played = {}
    for guard in (False, True):
        env = guarded_env(task, guard=guard)
        played[guard] = jax.jit(lambda k, lr, env=env: play_episode(env, up(env), k, lr, xt, yt))(
            key, lr0
        )
    off, on = played[False], played[True]
    assert float(off.test_accuracy) <= CHANCE and int(off.guard_step) == -1
    assert float(on.test_accuracy) > 0.8
    trip = int(on.guard_step)
    assert trip > 0 and trip % K == 0 and not bool(on.diverged)
    after = trip // K  # the trajectory's index of the decision at the trip
    scale = np.asarray(on.lr_scale)
    assert np.all(scale[after:] == 1.0) and np.all(np.asarray(off.lr_scale)[after:] > 1.0)
    assert np.all(np.asarray(on.active))  # the run trained to the end of its budget
    table = grid_table(
        jax.tree.map(lambda x: np.asarray(x)[None, None], on),
        [1.0],
        [1],
        method="m",
        task="t",
        wall_time_s=0.0,
    )
    assert table["guard_step"].tolist() == [trip]

    # step by step: the rates after the trip are the base schedule's at multiplier 1
    env = guarded_env(task)
    state, _ = jax.jit(env.reset_with_lr0)(jax.random.split(key)[0], lr0)  # play_episode's
    step = jax.jit(env.step)
    action = jnp.full((env.num_agents,), env.action_index(2.0))
    upper = env.lr_bounds[1]
    for d in range(1, H + 1):
        state, _ = step(state, action)
        if d * K < trip:
            assert not bool(state.guard.tripped)
            continue
        # the last step's rate of the interval, or at the trip the rollback step's
        at = d * K if d * K == trip else d * K - 1
        base = np.minimum(np.asarray(env.base_rate(state.dog.eta, jnp.int32(at))), upper)
        np.testing.assert_allclose(state.opt_state.learning_rates, np.full(3, base), rtol=1e-6)
        np.testing.assert_array_equal(state.lr_scale, np.ones(3))
    assert int(state.guard.step) == trip and bool(state.guard.tripped)


# ------------------------------------------------------------------------------------ (3)
def env_run(env: GannoEnv, policy: Policy, key, lr0):
    state, ts = jax.jit(env.reset_with_lr0)(key, jnp.float32(lr0))
    params0 = state.params
    step = jax.jit(env.step)
    actions = []
    carry = policy.initial_carry(env.num_agents)
    while True:
        carry, action = policy.step(carry, ts.observation)
        state, ts = step(state, action)
        actions.append(np.asarray(action))
        if bool(ts.last()):
            break
    return params0, state, np.stack(actions)


def assert_same_weights(params, env_params):
    for k in layer_keys(env_params):
        for n in ("kernel", "bias"):
            a, b = np.asarray(params[k][n]), np.asarray(env_params[k][n])
            assert np.linalg.norm(a - b) <= WEIGHT_RTOL * np.linalg.norm(b) + 1e-7, (k, n)


def test_environment_optax_and_torch_trip_alike(task):
    """The policy doubles every multiplier; at lr0 = 0.05 the guard trips at the end of the second
    interval. The same weights and minibatches: ``ganno_sgd`` and ``GannoScheduler`` (guard from
    the policy's record) take the environment's decisions before the trip, trip at its step,
    roll back DoG with the weights and end at its multipliers (1), rates, DoG step size and
    weights after training on with the base schedule."""
    torch = pytest.importorskip("torch")
    from test_optax_scheduler import optax_episode
    from test_torch_scheduler import sgd, torch_episode

    from ganno.torch.networks import TorchMLP, from_jax_params, to_jax_params

    env = guarded_env(task)
    policy = always(env, 2.0)
    key, lr0 = jax.random.PRNGKey(5), 0.05
    params0, state, actions = env_run(env, policy, key, lr0)
    trip = int(state.guard.step)
    assert trip == 2 * K and not bool(state.diverged), "the case must trip mid-episode"
    before = trip // K  # decisions the agents took (the first at reset)
    assert np.all(state.lr_scale == 1.0)

    params, opt_state, _, _, o_actions = optax_episode(task, policy, key, lr0, K * H)
    assert guarded_at(opt_state) == trip and not bool(opt_state.diverged)
    # the rise rule's training-loss start: the first minibatch's loss at the initial weights
    initial_train = float(state.guard.initial_train_loss)
    assert float(opt_state.guard.initial_train_loss) == pytest.approx(initial_train, rel=1e-5)
    np.testing.assert_array_equal(o_actions[:before], actions[:before])
    np.testing.assert_array_equal(opt_state.lr_scale, state.lr_scale)
    np.testing.assert_allclose(opt_state.learning_rates, state.opt_state.learning_rates, rtol=1e-5)
    np.testing.assert_allclose(opt_state.dog.eta, state.dog.eta, rtol=1e-4)
    assert_same_weights(params, state.params)

    _, data_key, _ = episode_keys(key)
    torch.manual_seed(0)
    model = from_jax_params(TorchMLP(40, 3, 32, 10), params0)
    sched = torch_episode(task, model, policy, data_key, lr0, K * H, sgd)
    assert sched.guard and sched.guarded_at_step == trip and not sched.diverged
    assert sched._initial_train_loss == pytest.approx(initial_train, rel=1e-5)
    taken = [h["actions"] for h in sched.history if h["actions"] is not None]
    np.testing.assert_array_equal(np.stack(taken), actions[:before])
    np.testing.assert_array_equal(sched.lr_scale.numpy(), np.asarray(state.lr_scale))
    np.testing.assert_allclose(sched.get_last_lr(), state.opt_state.learning_rates, rtol=1e-5)
    assert sched.dog.eta == pytest.approx(float(state.dog.eta), rel=1e-4)
    assert_same_weights(to_jax_params(model), state.params)

    # the policy's record is a default, not a must
    off = ganno_sgd(policy, lr0=lr0, guard=False, val_loss_fn=lambda p: 0.0)
    assert not off.settings.guard


def test_the_scheduler_rolls_back_the_optimiser_state(task):
    """With momentum, the trip returns the momentum buffers to those of the last decision, and
    the rollback step's optimizer.step() is undone (weights and buffers)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from ganno.torch.networks import TorchMLP, from_jax_params, layerwise_param_groups
    from ganno.torch.scheduler import GannoScheduler

    env = guarded_env(task)
    policy = always(env, 2.0)
    model = from_jax_params(TorchMLP(40, 3, 32, 10), task.init_params(jax.random.PRNGKey(0)))
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.01, momentum=0.9)
    x, y = torch.tensor(np.asarray(task.x_train)), torch.tensor(np.asarray(task.y_train)).long()
    xv, yv = torch.tensor(np.asarray(task.x_val)), torch.tensor(np.asarray(task.y_val)).long()
    sched = GannoScheduler(
        optimizer, policy, val_loss_fn=lambda: F.cross_entropy(model(xv), yv).item()
    )
    snapshots = {}
    for t in range(K * H):
        idx = torch.arange(t * 32, (t + 1) * 32) % len(x)
        scheduled_torch_step(model, optimizer, sched, x[idx], y[idx])
        if sched.guarded and "trip" not in snapshots:
            snapshots["trip"] = sched.steps
            snapshots["weights"] = [p.detach().clone() for p in model.parameters()]
        elif "trip" in snapshots and sched.steps == snapshots["trip"] + 1:
            # after the rollback step: nothing moved, and the buffers are the last decision's
            for p, q in zip(model.parameters(), snapshots["weights"], strict=True):
                torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)
            saved = sched._guard_snapshot["optimizer"]
            assert len(saved) == len(sched._flat)  # a decision after the first: buffers exist
            for i, p in enumerate(sched._flat):
                torch.testing.assert_close(
                    optimizer.state[p]["momentum_buffer"], saved[i]["momentum_buffer"]
                )
            snapshots["checked"] = True
    assert snapshots["trip"] > K and sched.guarded_at_step == snapshots["trip"]
    assert snapshots.get("checked"), "the rollback step was not reached"
    assert not sched.diverged and sched.done


def test_ganno_sgd_rolls_back_the_direction_state(task):
    """With momentum (``direction=optax.trace(0.9)``) the update that sees the trip returns the
    weights and the momentum of the last decision, and the rates follow the base schedule."""
    import optax
    from conftest import optax_train_step

    env = guarded_env(task, base_step_size="lr0")
    policy = always(env, 2.0)
    params = task.init_params(jax.random.PRNGKey(0))
    opt = ganno_sgd(
        policy,
        lr0=0.05,
        direction=optax.trace(0.9),
        val_loss_fn=lambda p: task.loss_and_accuracy(p, task.x_val, task.y_val)[0],
    )
    state = opt.init(params)
    train_step = optax_train_step(task, opt, jax.random.PRNGKey(1))
    checked = False
    for t in range(K * H):
        before_params, before = params, state
        params, state = train_step(params, state, jnp.int32(t))
        if bool(state.guard.tripped) and not bool(before.guard.tripped):
            assert guarded_at(state) == t and t > K
            kept = before.guard  # what the last decision kept
            leaves = lambda *trees: zip(*map(jax.tree.leaves, trees), strict=True)  # noqa: E731
            for a, b in leaves(params, before.prev_params):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
            for a, b in leaves(state.direction_state, kept.direction_state):
                np.testing.assert_array_equal(a, b)
            assert not any(np.array_equal(a, b) for a, b in leaves(params, before_params))
            np.testing.assert_array_equal(state.lr_scale, np.ones(3))
            checked = True
    assert checked and not bool(state.diverged)
    unit = 0.5 * (1 + np.cos(np.pi * (K * H - 1) / (K * H)))  # sgd_cosine's last step
    np.testing.assert_allclose(state.learning_rates, np.full(3, 0.05 * unit), rtol=1e-4)


def test_torch_eval_leaves_divergence_to_the_guard(task, dataset):
    """``ganno torch-eval``'s loop (``train_run``) with a guarded policy: the guard, not the loop's
    own divergence check, answers until it trips, and the doubling policy's run learns; the same
    policy unguarded ends at chance or diverged."""
    torch = pytest.importorskip("torch")
    from ganno.torch.evaluation import Budget, TorchData, train_run
    from ganno.torch.networks import TorchMLP, from_jax_params

    def tensor(x, long=False):
        t = torch.tensor(np.asarray(x))
        return t.long() if long else t

    data = TorchData(
        tensor(dataset.x_train),
        tensor(dataset.y_train, True),
        tensor(dataset.x_val),
        tensor(dataset.y_val, True),
        tensor(dataset.x_test),
        tensor(dataset.y_test, True),
        10,
    )
    budget = Budget(steps_per_decision=K, num_decisions=H, batch_size=32)
    init_key, data_key, _ = episode_keys(jax.random.PRNGKey(3))
    params = task.init_params(init_key)
    batches = torch.from_numpy(
        np.asarray(jax.vmap(lambda s: task.batch_indices(data_key, s))(jnp.arange(K * H)))
    ).long()
    results = {}
    for guard in (False, True):
        policy = always(guarded_env(task, guard=guard), 2.0)
        model = from_jax_params(TorchMLP(40, 3, 32, 10), params)
        results[guard] = train_run(model, "ganno", 1.0, batches, data, budget, policy)
    off, on = results[False], results[True]
    assert off.diverged or off.test_accuracy <= CHANCE
    assert not on.diverged and on.test_accuracy > 0.5


def test_a_guarded_scheduler_resumes_across_its_trip(task):
    """A state saved between the trip and the rollback step (and one saved after it) resumes to
    the weights of the uninterrupted run, momentum buffers and DoG step size included."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from ganno.torch.networks import TorchMLP, from_jax_params, layerwise_param_groups
    from ganno.torch.scheduler import GannoScheduler

    env = guarded_env(task)
    policy = always(env, 2.0)
    params = task.init_params(jax.random.PRNGKey(0))
    x, y = torch.tensor(np.asarray(task.x_train)), torch.tensor(np.asarray(task.y_train)).long()
    xv, yv = torch.tensor(np.asarray(task.x_val)), torch.tensor(np.asarray(task.y_val)).long()

    def fresh():
        model = from_jax_params(TorchMLP(40, 3, 32, 10), params)
        optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.05, momentum=0.5)
        val = lambda: F.cross_entropy(model(xv), yv).item()  # noqa: E731
        return model, optimizer, GannoScheduler(optimizer, policy, val_loss_fn=val)

    def train(model, optimizer, sched, steps):
        for t in steps:
            idx = torch.arange(t * 32, (t + 1) * 32) % len(x)
            scheduled_torch_step(model, optimizer, sched, x[idx], y[idx])

    model, optimizer, sched = fresh()
    train(model, optimizer, sched, range(K * H))
    trip = sched.guarded_at_step
    assert trip is not None and 0 < trip < K * H - 1 and not sched.diverged
    for stop in (trip, trip + 1):
        first, first_opt, first_sched = fresh()
        train(first, first_opt, first_sched, range(stop))
        saved = (first.state_dict(), first_opt.state_dict(), first_sched.state_dict())
        resumed, resumed_opt, resumed_sched = fresh()
        resumed.load_state_dict(saved[0])
        resumed_opt.load_state_dict(saved[1])
        resumed_sched.load_state_dict(saved[2])
        train(resumed, resumed_opt, resumed_sched, range(stop, K * H))
        assert resumed_sched.guarded_at_step == trip
        for p, q in zip(resumed.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
        assert resumed_sched.dog.eta == sched.dog.eta


def test_the_guard_rolls_back_batchnorm_statistics_given_as_buffers(task):
    """BatchNorm's running statistics move in the interval that went wrong, like the weights:
    with ``buffers=model.buffers()`` the trip restores them to the last decision's (as the
    weights), without them they keep the bad interval's."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from ganno.torch.networks import layerwise_param_groups
    from ganno.torch.scheduler import GannoScheduler

    env = guarded_env(task)
    policy = always(env, 2.0)  # compounds the rates up until the guard trips
    x, y = torch.tensor(np.asarray(task.x_train)), torch.tensor(np.asarray(task.y_train)).long()
    xv, yv = torch.tensor(np.asarray(task.x_val)), torch.tensor(np.asarray(task.y_val)).long()

    def run(with_buffers: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(40, 32),
            torch.nn.BatchNorm1d(32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 10),
        )
        assert len(layerwise_param_groups(model)) == 3  # the norm with the layer before it
        optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.05)

        def val():
            model.eval()
            with torch.no_grad():
                value = F.cross_entropy(model(xv), yv).item()
            model.train()
            return value

        sched = GannoScheduler(
            optimizer, policy, val_loss_fn=val, buffers=model.buffers() if with_buffers else ()
        )
        stats = []  # BatchNorm's running mean after every step
        for t in range(K * H):
            idx = torch.arange(t * 32, (t + 1) * 32) % len(x)
            scheduled_torch_step(model, optimizer, sched, x[idx], y[idx])
            stats.append(model[1].running_mean.clone())
        return sched.guarded_at_step, stats

    trip, stats = run(True)
    assert trip is not None and trip >= 2 * K, "the policy must trip the guard after a decision"
    # the trip (at the end of step `trip`) restores the state of the decision one interval back
    torch.testing.assert_close(stats[trip - 1], stats[trip - K - 1], rtol=0, atol=0)
    trip_without, unrestored = run(False)
    assert trip_without == trip
    assert not torch.equal(unrestored[trip - 1], unrestored[trip - K - 1])
