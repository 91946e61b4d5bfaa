"""Shared fixtures: a small, learnable synthetic classification task (no dataset files needed)."""

from __future__ import annotations

import os
import shutil
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest

# One XLA compilation cache for the whole test session, set before JAX starts: the controller
# makes it and both xdist workers and every process they start inherit it (the test pipeline's
# jobs, the SLURM run's, the command-line and fault-injection runs), so a program compiled by one
# is loaded by the next. The workflow keeps its cache under results/ only where the variable is
# unset. Every program is kept, however quick its compilation (config/test.yaml compiles with
# XLA's optimisation off).
_OWN_XLA_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_XLA_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ganno-tests-xla-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# XLA's backend optimisation off for the whole session, likewise inherited (config/test.yaml's
# `compute.fast_compile`, here for every test): the tests' programs are tiny and mostly compiled
# once, so compilation is their time (tests/test_env.py 264 s -> 155 s). A level the caller set in
# XLA_FLAGS is kept; tests/test_parallel.py probes its own processes without these flags.
from ganno.parallel import configure_fast_compile  # noqa: E402

configure_fast_compile()

from ganno.config import validate  # noqa: E402


def pytest_unconfigure(config):
    if _OWN_XLA_CACHE and not hasattr(config, "workerinput"):  # the session's own, once
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def synthetic_dataset(n_train=512, n_val=256, features=40, classes=10, seed=0):
    """Gaussian blobs: learnable by an MLP in a few hundred SGD steps."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, classes, n).astype(np.int32)
        x = centres[y] + 1.5 * rng.normal(size=(n, features)).astype(np.float32)
        return x.astype(np.float32), y

    x_train, y_train = draw(n_train)
    x_val, y_val = draw(n_val)
    x_test, y_test = draw(n_val)
    return SimpleNamespace(
        name="synthetic",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=classes,
    )


def inner_task(data, network, batch_size: int = 32, num_classes: int = 10):
    """An InnerTask of ``network`` on ``data``'s train and validation splits."""
    import jax.numpy as jnp

    from ganno.inner import InnerTask

    return InnerTask(
        network=network,
        x_train=jnp.asarray(data.x_train),
        y_train=jnp.asarray(data.y_train),
        x_val=jnp.asarray(data.x_val),
        y_val=jnp.asarray(data.y_val),
        batch_size=batch_size,
        num_classes=num_classes,
    )


def scheduled_torch_step(model, optimizer, sched, x, y) -> None:
    """One step of the PyTorch loop a GannoScheduler drives: cross-entropy on ``(x, y)``,
    backward, ``observe_gradients``, the optimiser's step, ``sched.step()``."""
    import torch.nn.functional as F

    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    sched.observe_gradients(loss)
    optimizer.step()
    sched.step()


def optax_train_step(task, opt, data_key):
    """The jitted ``(params, state, t) -> (params, state)`` of a ganno_sgd loop on ``task``'s
    minibatch stream (the transformation calls its own ``val_loss_fn``)."""
    import jax
    import optax

    @jax.jit
    def train_step(params, state, t):
        loss, grads = jax.value_and_grad(task.loss)(params, *task.batch(data_key, t))
        updates, state = opt.update(grads, state, params, loss=loss)
        return optax.apply_updates(params, updates), state

    return train_step


def tiny_inner_task(data):
    """A 2-layer MLP of width 8 on a 3-class synthetic dataset, minibatches of 16."""
    from ganno.networks import make_network

    return inner_task(data, make_network({"kind": "mlp", "depth": 2, "width": 8}, 3), 16, 3)


def decisive_policy(
    obs_dim,
    action_dim,
    *,
    seed=0,
    scale=200.0,
    env=None,
    env_entry=None,
    gru_size=0,
    hidden_sizes=(32, 32),
):
    """A random actor of the given shapes (a GRU actor if ``gru_size``), its output layer scaled up
    so that it is decisive (varied actions, large logit gaps) rather than near-uniform like a fresh
    PPO actor; with ``env``'s settings recorded (or the ``env_entry`` given)."""
    import jax
    import jax.numpy as jnp

    from ganno.policy import Policy, env_settings
    from ganno.systems.networks import actor_config, init_actor, make_actor
    from ganno.types import Observation

    network = actor_config(obs_dim, action_dim, list(hidden_sizes), gru_size)
    obs = Observation(
        jnp.zeros((2, obs_dim)), jnp.ones((2, action_dim), bool), jnp.zeros((2,), jnp.int32)
    )
    params = init_actor(make_actor(network), jax.random.PRNGKey(seed), obs)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            x * scale
            if "Dense_0" in jax.tree_util.keystr(path) and "MLP" not in jax.tree_util.keystr(path)
            else x
        ),
        params,
    )
    config = {"network": network, "algo": "ippo"}
    if env is not None:
        config["env"] = env_settings(env)
    if env_entry is not None:
        config["env"] = env_entry
    return Policy(params, config)


@pytest.fixture(scope="session")
def dataset():
    return synthetic_dataset()


@pytest.fixture(scope="session")
def small_config():
    """The default config shrunk: 3-layer MLP of width 32, 5 decisions of 10 steps."""
    return validate(
        {
            "task": {"network": {"kind": "mlp", "depth": 3, "width": 32}, "batch_size": 32},
            "env": {"steps_per_decision": 10, "num_decisions": 5},
        }
    )


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """The test pipeline run once locally, for tests/test_pipeline.py and the SLURM run's check."""
    from test_pipeline import run_test_pipeline

    work = tmp_path_factory.mktemp("pipeline")
    run_test_pipeline(work)
    return work
