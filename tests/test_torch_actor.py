"""The policy's actor in PyTorch (ganno.torch.actor): the JAX actor's decisions and distribution
from the same files, and a PyTorch training loop that never imports JAX.

Tolerances: both actors compute in float32 and differ in summation order only, so the
log-probabilities agree to a few ulps of the largest logit (``LOGIT_RTOL`` of it; measured: 7.6e-6
on the shipped policy's logits of up to 57, 1 ulp there) and the greedy actions are identical
wherever the best two logits are further apart than that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from conftest import decisive_policy  # noqa: E402
from flax import serialization  # noqa: E402

import ganno  # noqa: E402
from ganno import baselines  # noqa: E402
from ganno import schedules as base_schedule  # noqa: E402
from ganno.errors import PolicyLoadError, PolicyNotFoundError  # noqa: E402
from ganno.policy import CONFIG_FILE, PARAMS_FILE, Policy  # noqa: E402
from ganno.pretrained import directory  # noqa: E402
from ganno.systems.networks import ACTOR_KINDS, MASKED_LOGIT  # noqa: E402
from ganno.systems.normalisation import CLIP  # noqa: E402
from ganno.torch import actor as torch_actor  # noqa: E402
from ganno.torch.actor import TorchPolicy, pretrained_policy, read_flax_msgpack  # noqa: E402
from ganno.types import Observation  # noqa: E402

LOGIT_RTOL = 1e-6  # of the largest |logit|: float32 rounding, summed in another order
SCHEDULE_ATOL = 2.5e-7  # of the peak 1: XLA's float32 cos and pow are not correctly rounded

torch.set_num_threads(1)


def _policies() -> dict[str, Policy]:
    return {
        "shipped": ganno.pretrained_policy(),  # normalised observations, 17 features
        "mlp": decisive_policy(16, 5, seed=1, scale=1.0),  # a fresh actor: near-uniform
        "decisive": decisive_policy(16, 5, seed=1),
        "gru": decisive_policy(17, 5, seed=2, gru_size=16, scale=1.0),
    }


def _compare(jax_policy: Policy, torch_policy: TorchPolicy, steps: int, rows: int, seed: int):
    """Run both actors on the same random observations and masks (``steps`` decisions of
    ``rows`` agents, carrying a recurrent actor's state); the largest differences."""
    rng = np.random.default_rng(seed)
    width = jax_policy.config["network"]["obs_dim"]
    jax_carry, torch_carry = jax_policy.initial_carry(rows), torch_policy.initial_carry(rows)
    worst = {"log_probs": 0.0, "probs": 0.0, "carry": 0.0, "near_ties": 0}
    for _ in range(steps):
        view = (2.0 * rng.normal(size=(rows, width))).astype(np.float32)
        mask = rng.random((rows, 5)) < 0.8
        mask[np.arange(rows), rng.integers(0, 5, rows)] = True  # at least one valid action
        obs = Observation(jnp.asarray(view), jnp.asarray(mask), jnp.zeros((rows,), jnp.int32))
        jax_carry, dist = jax_policy.step_distribution(jax_carry, obs)
        before, tview, tmask = torch_carry, torch.from_numpy(view), torch.from_numpy(mask)
        torch_carry, log_probs = torch_policy.step_logits(before, tview, tmask)
        _, actions = torch_policy.step(before, tview, tmask)  # greedy
        expected, got = np.asarray(dist.logits), log_probs.numpy()
        scale = max(1.0, float(np.abs(expected[mask]).max()))
        diff = float(np.abs(got - expected)[mask].max())
        assert diff <= LOGIT_RTOL * scale, (diff, scale)
        assert np.all(got[~mask] < MASKED_LOGIT / 2) and np.all(expected[~mask] < MASKED_LOGIT / 2)
        probs_diff = float(np.abs(np.exp(got) - np.asarray(dist.probs)).max())
        assert probs_diff <= 1e-6
        # greedy: identical wherever the best two logits are further apart than the tolerance
        top2 = np.sort(np.where(mask, expected, -np.inf), axis=-1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2 * LOGIT_RTOL * scale
        np.testing.assert_array_equal(
            actions.numpy()[clear], np.asarray(dist.mode())[clear].astype(np.int64)
        )
        worst["near_ties"] += int((~clear).sum())
        worst["log_probs"] = max(worst["log_probs"], diff)
        worst["probs"] = max(worst["probs"], probs_diff)
        if torch_policy.recurrent:
            carry_diff = float(np.abs(torch_carry.numpy() - np.asarray(jax_carry)).max())
            assert carry_diff <= 1e-5
            worst["carry"] = max(worst["carry"], carry_diff)
    return worst


@pytest.mark.parametrize("name", ["shipped", "mlp", "decisive", "gru"])
def test_the_torch_actor_decides_as_the_jax_actor(name):
    """On 10,000 random observations (with random action masks; a recurrent actor over 20
    decisions, carrying its state), the same log-probabilities (the distribution's parameters,
    hence the same sampling distribution), probabilities and greedy actions, normaliser
    included (the shipped policy normalises its observations)."""
    jax_policy = _policies()[name]
    torch_policy = TorchPolicy.from_policy(jax_policy)
    assert torch_policy.recurrent == jax_policy.recurrent
    assert torch_policy.network.normalised == (jax_policy.normaliser is not None)
    steps, rows = (20, 500) if jax_policy.recurrent else (1, 10_000)
    worst = _compare(jax_policy, torch_policy, steps, rows, seed=3)
    print(f"{name}: max |log-prob difference| {worst}")


def test_the_shipped_files_load_without_flax_into_the_same_actor():
    """TorchPolicy.load reads policy.json and the msgpack itself: the same arrays as flax's
    msgpack_restore, the same config, the same decisions as the JAX policy loaded from the same
    folder; ganno.torch.pretrained_policy() is that."""
    folder = directory()
    raw = (folder / PARAMS_FILE).read_bytes()
    ours, flax_tree = read_flax_msgpack(raw), serialization.msgpack_restore(raw)
    jax.tree.map(np.testing.assert_array_equal, ours, flax_tree)
    loaded = pretrained_policy()
    assert loaded.config == ganno.pretrained_policy().config
    jax_policy = Policy.load(folder)
    worst = _compare(jax_policy, loaded, 1, 10_000, seed=4)
    assert worst["near_ties"] <= 10  # of 10,000 (a gap under 1e-4: a float32 tie)
    # the file names and constants are the JAX side's
    assert (torch_actor.CONFIG_FILE, torch_actor.PARAMS_FILE) == (CONFIG_FILE, PARAMS_FILE)
    assert set(torch_actor.TORCH_ACTOR_KINDS) == set(ACTOR_KINDS)
    assert torch_actor.MASKED_LOGIT == MASKED_LOGIT and torch_actor.NORMALISER_CLIP == CLIP


def test_a_saved_recurrent_policy_loads_and_decides_alike(tmp_path):
    jax_policy = decisive_policy(17, 5, seed=5, gru_size=8)
    jax_policy.save(tmp_path / "policy")
    loaded = TorchPolicy.load(tmp_path / "policy")
    assert loaded.recurrent and loaded.initial_carry(3).shape == (3, 8)
    _compare(jax_policy, loaded, 10, 64, seed=6)


def test_sampling_draws_from_the_same_distribution():
    """greedy=False draws from the categorical of the JAX actor's parameters (its
    frequencies within 4 standard errors), reproducibly from a seeded generator."""
    policy = TorchPolicy.from_policy(decisive_policy(16, 5, seed=1, scale=2.0))
    view = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 16)).astype(np.float32))
    probs = policy.step_logits(None, view)[1].exp()[0].numpy()
    n = 20_000
    draws = policy.step(
        None, view.expand(n, -1), greedy=False, generator=torch.Generator().manual_seed(1)
    )[1]
    freq = np.bincount(draws.numpy(), minlength=5) / n
    assert np.all(np.abs(freq - probs) <= 4 * np.sqrt(probs * (1 - probs) / n) + 1e-12)
    again = policy.step(
        None, view.expand(n, -1), greedy=False, generator=torch.Generator().manual_seed(1)
    )[1]
    assert torch.equal(draws, again)


def test_errors_name_the_cause_and_the_fix(tmp_path):
    with pytest.raises(PolicyNotFoundError, match="no saved policy"):
        TorchPolicy.load(tmp_path / "nothing")
    folder = tmp_path / "policy"
    shutil.copytree(directory(), folder)
    (folder / PARAMS_FILE).write_bytes(b"\xc1 not msgpack")
    with pytest.raises(PolicyLoadError, match="corrupt"):
        TorchPolicy.load(folder)
    decisive_policy(16, 5, hidden_sizes=(8, 8)).save(tmp_path / "other")
    shutil.copyfile(tmp_path / "other" / PARAMS_FILE, folder / PARAMS_FILE)  # another network
    with pytest.raises(PolicyLoadError, match="do not fit the network"):
        TorchPolicy.load(folder)
    config = json.loads((tmp_path / "other" / CONFIG_FILE).read_text())
    config["network"]["kind"] = "transformer_categorical"
    with pytest.raises(ValueError, match="no PyTorch version.*actor='jax'"):
        TorchPolicy({}, config)


@pytest.mark.parametrize("name", base_schedule.BASE_SCHEDULES)
def test_base_schedules_match_optax(name):
    """The NumPy base schedules are optax's (ganno.baselines.unit_schedule) to within a float32
    ulp or two of the peak, at every step of several budgets."""
    from ganno.env_settings import BASE_SCHEDULES

    assert base_schedule.BASE_SCHEDULES == BASE_SCHEDULES
    for total in (2, 3, 7, 20, 60, 101, 2000, 8000):
        steps = jnp.arange(total)
        expected = np.asarray(jax.vmap(baselines.unit_schedule(name, total))(steps), np.float32)
        got = base_schedule.unit_schedule(name, total)
        assert got.dtype == np.float32 and got.shape == (total,)
        np.testing.assert_allclose(got, expected, rtol=0, atol=SCHEDULE_ATOL, err_msg=str(total))


def _setup(policy, actor="torch", init_seed=0, steps=120, **kw):
    from ganno.torch import GannoScheduler, TorchMLP, layerwise_param_groups

    torch.manual_seed(init_seed)
    model = TorchMLP(40, 3, 16, 10)
    optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.05)
    sched = GannoScheduler(
        optimizer,
        policy,
        val_loss_fn=lambda: _val_loss(model),
        total_steps=steps,
        actor=actor,
        **kw,
    )
    return model, optimizer, sched


_DATA = torch.Generator().manual_seed(0)
_X, _Y = torch.randn(256, 40, generator=_DATA), torch.randint(0, 10, (256,), generator=_DATA)


def _val_loss(model):
    return torch.nn.functional.cross_entropy(model(_X[192:]), _Y[192:])


def _train(model, optimizer, sched, start, stop):
    for step in range(start, stop):
        idx = torch.arange(step % 6 * 32, step % 6 * 32 + 32)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(_X[idx]), _Y[idx])
        loss.backward()
        sched.observe_gradients(loss)
        optimizer.step()
        sched.step()
    return sched


def _scheduled_run(policy, actor, steps=120, **kw):
    return _train(*_setup(policy, actor, steps=steps, **kw), 0, steps)


@pytest.mark.parametrize("name", ["shipped", "gru"])
def test_the_scheduler_decides_alike_with_either_actor(name):
    """GannoScheduler's default (the PyTorch actor) and actor="jax" take the same decisions on
    the same run, hence the same rates; a TorchPolicy cannot decide in JAX."""
    from ganno.errors import UsageError
    from ganno.torch import GannoScheduler, TorchMLP, layerwise_param_groups

    policy = _policies()[name]
    if name == "gru":  # the shipped policy's settings (anchored, 17 features)
        policy = Policy(
            policy.params, {**policy.config, "env": _policies()["shipped"].config["env"]}
        )
    runs = {actor: _scheduled_run(policy, actor) for actor in ("torch", "jax")}
    assert runs["torch"].actor == "torch" and runs["jax"].actor == "jax"
    actions = {a: [h["actions"] for h in r.history] for a, r in runs.items()}
    assert actions["torch"] == actions["jax"]
    assert len({a for row in actions["torch"] if row for a in row}) > 1, "vacuous test"
    assert runs["torch"].get_last_lr() == runs["jax"].get_last_lr()
    optimizer = torch.optim.SGD(layerwise_param_groups(TorchMLP(40, 3, 8, 10)), lr=0.05)
    with pytest.raises(UsageError, match="ganno.Policy.load"):
        GannoScheduler(optimizer, pretrained_policy(), actor="jax")


def test_a_sampling_scheduler_resumes_its_draws():
    """greedy=False in PyTorch: the generator's state is in state_dict, so a run resumed
    halfway draws what the uninterrupted one drew."""
    policy = pretrained_policy()
    full = _scheduled_run(policy, "torch", greedy=False, seed=1)
    drawn = [h["actions"] for h in full.history]
    assert len({a for row in drawn if row for a in row}) > 1, "vacuous test"
    model, optimizer, half = _setup(policy, greedy=False, seed=1)
    _train(model, optimizer, half, 0, 60)
    model2, optimizer2, resumed = _setup(policy, greedy=False, seed=99, init_seed=5)
    model2.load_state_dict(model.state_dict())
    optimizer2.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(half.state_dict())
    _train(model2, optimizer2, resumed, 60, 120)
    assert [h["actions"] for h in resumed.history] == drawn


_NO_JAX = textwrap.dedent(
    """
    import json, sys
    BLOCKED = ("jax", "jaxlib", "flax", "optax", "distrax", "chex", "jumanji", "orbax", "pandas",
               "scipy", "matplotlib", "sklearn")  # the library and the [torch] extra only
    for name in BLOCKED:
        sys.modules[name] = None  # `import jax` raises ImportError from here on

    import torch
    import torch.nn.functional as F

    import ganno
    from ganno.torch import GannoScheduler, TorchMLP, TorchPolicy, layerwise_param_groups
    from ganno.torch import pretrained_policy

    torch.manual_seed(0)
    x, y = torch.randn(512, 40), torch.randint(0, 10, (512,))
    out = {}
    for label, policy, kw in [
        ("shipped_read", pretrained_policy(), {"gradient_statistics": "read"}),
        ("lr0_weight_changes", TorchPolicy.load(sys.argv[2]),
         {"gradient_statistics": "weight_changes"}),
        ("dog_guard", TorchPolicy.load(sys.argv[1]), {"guard": True}),
    ]:
        model = TorchMLP(40, 3, 32, 10)
        optimizer = torch.optim.SGD(layerwise_param_groups(model), lr=0.05)
        sched = GannoScheduler(
            optimizer, policy, total_steps=200,
            val_loss_fn=lambda: F.cross_entropy(model(x[384:]), y[384:]), **kw,
        )
        for step in range(200):
            idx = torch.arange(step % 12 * 32, step % 12 * 32 + 32)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            sched.observe_gradients(loss)
            optimizer.step()
            sched.step()
        out[label] = {
            "decisions": sched.decisions,
            "dog": None if sched.dog is None else sched.dog.eta,
            "guard": sched.guard,
            "statistics": sched.gradient_statistics,
            "lr": sched.get_last_lr(),
        }
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m] is not None]
    out["loaded"] = loaded
    print(json.dumps(out))
    """
)


def test_a_pytorch_loop_never_imports_jax(tmp_path):
    """In a process where importing jax, flax, optax, distrax, chex or jumanji (or pandas,
    scipy, matplotlib, scikit-learn: none of them in the library's dependencies or its torch
    extra) fails, `import ganno`, ganno.torch.pretrained_policy() and GannoScheduler run whole
    episodes: the shipped policy with the gradients read, the shipped actor on an lr0 base
    (env.base_step_size: lr0) from the weights' changes (a DoG base reads every gradient), and
    on a DoG base with the guard."""
    copies = {}
    for base in ("dog", "lr0"):
        copies[base] = tmp_path / f"{base}_policy"
        shutil.copytree(directory(), copies[base])
        config = json.loads((copies[base] / CONFIG_FILE).read_text())
        config["env"]["base_step_size"] = base
        (copies[base] / CONFIG_FILE).write_text(json.dumps(config))
    dog = copies["dog"]
    script = tmp_path / "no_jax.py"
    script.write_text(_NO_JAX)
    src = str(Path(ganno.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, str(script), str(dog), str(copies["lr0"])],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out.pop("loaded") == []
    for label, result in out.items():
        assert result["decisions"] == 40, label
    assert out["shipped_read"]["statistics"] == "read"
    assert out["lr0_weight_changes"]["statistics"] == "weight_changes"
    assert out["dog_guard"]["guard"] and out["dog_guard"]["dog"] > 0
