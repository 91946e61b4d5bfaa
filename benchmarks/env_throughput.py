"""Throughput of the GANNO environment: inner SGD steps per second, three ways, in one run.

(a) ``env``:   the JAX environment, ``jit(vmap(env.step))`` over ``--num-envs`` environments with
               random actions, ``lax.scan`` over decisions inside one jitted call (Anakin style),
               the stacked timesteps (observations, global states, rewards) returned;
(b) ``optax``: a bare optax loop of the same network, batch size and minibatch stream
               (``ganno.inner.train_steps`` with ``optax.sgd``), vmapped over the same number of
               runs: the ceiling the environment's own bookkeeping is measured against;
(c) ``torch``: the eager-PyTorch environment of ``benchmarks/torch_env.py`` (Python loop over
               environments, one ``torch.optim.SGD`` per environment).

"Steps per second" counts inner SGD steps summed over all environments/runs. Compile time is
excluded (every jitted function is warmed up first), JAX timings wait on ``block_until_ready``,
all variants are timed in interleaved rounds and each median is reported. ``--profile`` adds
ablations of the environment (which of its parts cost what). Default task: config/config.yaml
(MNIST-1D, MLP 40-64-64-10, batch 128, k = 50).

Timings on a shared machine: PyTorch's OpenMP threads degrade badly when another process
competes for the cores (seconds instead of 0.2 s per decision), JAX far less; the summary prints the
load average and the JSON keeps every round's time and the best-round throughput too.

    python benchmarks/env_throughput.py --quick
    python benchmarks/env_throughput.py --profile --json results/env_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def _host_devices_from_argv(argv: list[str]) -> int:
    """``--host-devices N`` must take effect before JAX initialises its CPU backend."""
    for i, arg in enumerate(argv):
        if arg.startswith("--host-devices"):
            value = arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            return int(value) or len(os.sched_getaffinity(0))
    return len(os.sched_getaffinity(0))  # as the ganno command line runs: every core a device


_HOST_DEVICES = _host_devices_from_argv(sys.argv[1:]) if __name__ == "__main__" else 1
if _HOST_DEVICES > 1:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_HOST_DEVICES}"
    )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from ganno.config import load_config, merge  # noqa: E402
from ganno.env import GannoEnv, make_env  # noqa: E402
from ganno.inner import episode_keys, make_task, train_steps  # noqa: E402
from ganno.optim import layerwise_sgd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from torch_env import REWARDS as TORCH_REWARDS  # noqa: E402
from torch_env import TorchGannoEnv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers
class Contestant:
    """A warmed-up, blocking callable doing ``inner_steps`` inner SGD steps per call."""

    def __init__(self, label: str, fn, inner_steps: int, setup=None):
        self.label, self.fn, self.inner_steps, self.setup = label, fn, inner_steps, setup
        self.times: list[float] = []

    def time_once(self) -> None:
        if self.setup is not None:  # untimed per-call preparation (the torch env's reset)
            self.setup()
        t0 = time.perf_counter()
        self.fn()
        self.times.append(time.perf_counter() - t0)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def steps_per_s(self) -> float:
        return self.inner_steps / self.seconds

    @property
    def best_steps_per_s(self) -> float:
        """From the fastest round: less sensitive to other processes than the median."""
        return self.inner_steps / min(self.times)


def interleaved(contestants: list[Contestant], repeats: int) -> None:
    """Time every contestant ``repeats`` times, round-robin, so that a change of the machine's
    load (other processes) hits all of them alike; the median of each is what counts."""
    for _ in range(repeats):
        for c in contestants:
            c.time_once()


def synthetic_like_mnist1d(seed: int = 0):
    """SYNTHETIC stand-in with MNIST-1D's shapes (3200/800 x 40, 10 classes): --synthetic-data."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 40)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, 10, n).astype(np.int32)
        return (centres[y] + 1.5 * rng.normal(size=(n, 40))).astype(np.float32), y

    (xt, yt), (xv, yv), (xs, ys) = draw(3200), draw(800), draw(1000)
    return SimpleNamespace(
        name="SYNTHETIC-mnist1d-shape",
        x_train=xt,
        y_train=yt,
        x_val=xv,
        y_val=yv,
        x_test=xs,
        y_test=ys,
        num_classes=10,
    )


def network_name(config, task) -> str:
    net = config["task"]["network"]
    if net.get("kind", "mlp") == "mlp":
        sizes = [int(np.prod(task.x_train.shape[1:]))] + [net["width"]] * (net["depth"] - 1)
        return "mlp " + "-".join(map(str, sizes + [task.num_classes]))
    return f"{net['kind']} {net}"


# ----------------------------------------------------------------------------- (a) JAX env
def make_rollout(env, num_decisions: int):
    """jit: (states, key) -> (states, timesteps [D, E, ...]) with random actions."""
    n, a = env.num_agents, env.action_dim

    def rollout(states, key):
        def body(states, key):
            num_envs = jax.tree.leaves(states)[0].shape[0]
            actions = jax.random.randint(key, (num_envs, n), 0, a)
            return jax.vmap(env.step)(states, actions)

        return jax.lax.scan(body, states, jax.random.split(key, num_decisions))

    return jax.jit(rollout)


def env_contestant(label, env, num_envs: int, decisions: int, k: int, seed: int = 0):
    """Every call runs the same ``decisions`` from the same reset states (no episode ends)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num_envs)
    states, _ = jax.block_until_ready(jax.jit(jax.vmap(env.reset))(keys))
    rollout = make_rollout(env, decisions)
    key = jax.random.PRNGKey(seed + 1)
    fn = lambda: jax.block_until_ready(rollout(states, key))  # noqa: E731
    fn()  # compile + warm up
    return Contestant(label, fn, num_envs * decisions * k)


def reset_contestant(env, num_envs: int, seed: int = 0) -> Contestant:
    keys = jax.random.split(jax.random.PRNGKey(seed), num_envs)
    reset = jax.jit(jax.vmap(env.reset))
    fn = lambda: jax.block_until_ready(reset(keys))  # noqa: E731
    fn()
    return Contestant("env reset (vmap over all envs)", fn, 0)


# ----------------------------------------------------------------------------- (b) optax
def train_steps_contestant(
    label, task, optimizer, num_runs: int, num_steps: int, seed: int = 0
) -> Contestant:
    keys = jax.random.split(jax.random.PRNGKey(seed), num_runs)
    init_keys, data_keys, _ = jax.vmap(episode_keys)(keys)
    params = jax.vmap(task.init_params)(init_keys)
    opt_state = jax.vmap(optimizer.init)(params)

    @jax.jit
    def run(params, opt_state, data_keys):
        return jax.vmap(lambda p, s, dk: train_steps(task, optimizer, p, s, dk, 0, num_steps))(
            params, opt_state, data_keys
        )

    fn = lambda: jax.block_until_ready(run(params, opt_state, data_keys))  # noqa: E731
    fn()
    return Contestant(label, fn, num_runs * num_steps)


# ----------------------------------------------------------------------------- multi-device
def _shard(tree, ndev: int):
    return jax.tree.map(lambda a: a.reshape(ndev, a.shape[0] // ndev, *a.shape[1:]), tree)


def pmap_env_contestant(label, env, num_envs: int, decisions: int, k: int, seed: int = 0):
    """(a) split over the host's CPU devices: pmap over devices of vmap over envs."""
    ndev = jax.local_device_count()
    keys = _shard(jax.random.split(jax.random.PRNGKey(seed), num_envs), ndev)
    states, _ = jax.block_until_ready(jax.pmap(jax.vmap(env.reset))(keys))
    rollout = jax.pmap(lambda s, kk: make_rollout(env, decisions)(s, kk))
    dev_keys = jax.random.split(jax.random.PRNGKey(seed + 1), ndev)
    fn = lambda: jax.block_until_ready(rollout(states, dev_keys))  # noqa: E731
    fn()
    return Contestant(label, fn, num_envs * decisions * k)


def pmap_train_steps_contestant(
    label, task, optimizer, num_runs: int, num_steps: int, seed: int = 0
) -> Contestant:
    ndev = jax.local_device_count()
    keys = jax.random.split(jax.random.PRNGKey(seed), num_runs)
    init_keys, data_keys, _ = jax.vmap(episode_keys)(keys)
    params = jax.vmap(task.init_params)(init_keys)
    opt_state = jax.vmap(optimizer.init)(params)
    params, opt_state, data_keys = _shard((params, opt_state, data_keys), ndev)
    run = jax.pmap(
        lambda p, s, d: jax.vmap(
            lambda p, s, d: train_steps(task, optimizer, p, s, d, 0, num_steps)
        )(p, s, d)
    )
    fn = lambda: jax.block_until_ready(run(params, opt_state, data_keys))  # noqa: E731
    fn()
    return Contestant(label, fn, num_runs * num_steps)


# ----------------------------------------------------------------------------- (c) torch
def torch_contestant(config, dataset, num_envs: int, decisions: int, threads: int, seed: int = 0):
    """Each call: ``decisions`` decisions of freshly reset episodes (the reset is not timed),
    with ``torch.set_num_threads(threads)``."""
    torch.set_num_threads(threads)
    env = TorchGannoEnv.from_config(config, dataset, num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset()
    env.step(rng.integers(0, len(env.factors), (num_envs, env.num_agents)))  # warm up

    def setup():
        torch.set_num_threads(threads)
        env.reset()

    def run():
        for _ in range(decisions):
            env.step(rng.integers(0, len(env.factors), (num_envs, env.num_agents)))

    return Contestant(
        f"(c) torch eager env, {threads} thread(s)", run, num_envs * decisions * env.k, setup=setup
    )


# ----------------------------------------------------------------------------- ablations
class NoGradAccumulation(GannoEnv):
    """without the per-step gradient sum and squared-norm accumulation"""

    def _train_interval(
        self, params, opt_state, data_key, start_step, rate_fn=None, grad_scale=1.0, dog=()
    ):
        grad_fn = jax.value_and_grad(self.task.loss)

        def one_step(carry, step):
            params, opt_state, loss_sum = carry
            x, y = self.task.batch(data_key, step)
            loss, grads = grad_fn(params, x, y)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            params = jax.tree.map(jnp.add, params, updates)
            return (params, opt_state, loss_sum + loss), None

        steps = start_step + jnp.arange(self.steps_per_decision)
        (params, opt_state, loss_sum), _ = jax.lax.scan(
            one_step, (params, opt_state, jnp.zeros(())), steps
        )
        zeros = jax.tree.map(jnp.zeros_like, params)
        k = self.steps_per_decision
        return params, opt_state, zeros, jnp.ones(self._num_agents), loss_sum / k, ()


class NoObservation(GannoEnv):
    """without per-layer norms/cosines (constant observation)"""

    def _observe(self, stats, opt_state, lr_scale):
        return jnp.zeros((self._num_agents, self.num_features), jnp.float32)


class NoValidation(GannoEnv):
    """without the validation pass per decision"""

    def _val_metrics(self, params):
        return jnp.ones(()), jnp.zeros(())


class Bare(NoGradAccumulation, NoObservation, NoValidation):
    """bare: all three removed (per-layer SGD + step bookkeeping)"""


ABLATIONS = {
    "no_accumulation": NoGradAccumulation,
    "no_observation": NoObservation,
    "no_validation": NoValidation,
    "bare": Bare,
}


def ablation_env(cls, env: GannoEnv) -> GannoEnv:
    e = cls.__new__(cls)
    e.__dict__.update(env.__dict__)
    return e


# ----------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument(
        "--decisions",
        type=int,
        default=None,
        help="decisions per timed JAX call (default 8, --quick 4)",
    )
    p.add_argument(
        "--torch-decisions",
        type=int,
        default=None,
        help="decisions per timed torch call (default 2, --quick 1)",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="rounds of timing (default 9, --quick 5)"
    )
    p.add_argument("--quick", action="store_true", help="fewer decisions and rounds (< 1 min)")
    p.add_argument("--profile", action="store_true", help="also time ablations of the env")
    p.add_argument(
        "--synthetic-data",
        action="store_true",
        help="use SYNTHETIC data of MNIST-1D's shape instead of the real dataset",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=None,
        help="torch thread counts to time; the fastest counts as (c) (default: 1 and "
        "torch's own default)",
    )
    p.add_argument(
        "--host-devices",
        type=int,
        default=0,
        help="XLA CPU devices (default 0 = one per core, as the ganno command line "
        "runs); with more than one, (a) and (b) are also timed split over them "
        "(pmap) and those are the headline figures: XLA runs these small ops on "
        "one core per device",
    )
    p.add_argument(
        "--reward",
        default=None,
        choices=TORCH_REWARDS,
        help="env.reward of every contestant (default: the config's, or log_val_loss_drop "
        f"when the PyTorch environment lacks it: it implements {', '.join(TORCH_REWARDS)})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    args = p.parse_args(argv)

    decisions = args.decisions or (4 if args.quick else 8)
    torch_decisions = args.torch_decisions or (1 if args.quick else 2)
    repeats = args.repeats or (5 if args.quick else 9)
    torch_threads = sorted(set(args.torch_threads or [1, torch.get_num_threads()]))

    config = load_config(args.config)
    # (a) and (c) must compute the same reward to be compared: the PyTorch environment has the
    # paper's rewards only (a relative reward trains a reference network beside the agents').
    reward = args.reward or config["env"]["reward"]
    if args.reward is None and reward not in TORCH_REWARDS:
        reward = "log_val_loss_drop"
        print(
            f"env.reward {config['env']['reward']!r} has no PyTorch implementation: every "
            f"contestant uses {reward!r} (--reward chooses)",
            flush=True,
        )
    config = merge(config, {"env": {"reward": reward}})
    if args.synthetic_data:
        dataset = synthetic_like_mnist1d(args.seed)
    else:
        from ganno.data import load_from_config

        data_root = Path(config["data"]["root"])
        if not data_root.is_absolute():
            config = merge(config, {"data": {"root": str(ROOT / data_root)}})
        dataset = load_from_config(config)
    task = make_task(config, dataset)
    env = make_env(config, task=task)
    E, k = args.num_envs, env.steps_per_decision
    name = network_name(config, task)
    print(
        f"task: {getattr(dataset, 'name', '?')} ({task.x_train.shape[0]} train, "
        f"{env._x_val.shape[0]} val), {name}, batch {task.batch_size}, k={k}, {E} envs; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
        f"(default {torch.get_num_threads()} threads), {os.cpu_count()} CPUs",
        flush=True,
    )

    contestants = {
        "env": env_contestant("(a) JAX env, jit(vmap(step))", env, E, decisions, k, args.seed),
        "optax": train_steps_contestant(
            "(b) optax.sgd train_steps", task, optax.sgd(1e-2), E, decisions * k, args.seed
        ),
        **{
            f"torch_{t}": torch_contestant(config, dataset, E, torch_decisions, t, args.seed)
            for t in torch_threads
        },
        "reset": reset_contestant(env, E, args.seed),
    }
    ndev = jax.local_device_count()
    if ndev > 1:
        if E % ndev:
            raise SystemExit(f"--num-envs {E} is not divisible by {ndev} host devices")
        contestants["env_pmap"] = pmap_env_contestant(
            f"(a') JAX env, pmap over {ndev} CPU devices", env, E, decisions, k, args.seed
        )
        contestants["optax_pmap"] = pmap_train_steps_contestant(
            f"(b') optax.sgd, pmap over {ndev} CPU devices",
            task,
            optax.sgd(1e-2),
            E,
            decisions * k,
            args.seed,
        )
    if args.profile:
        contestants["layerwise"] = train_steps_contestant(
            "layerwise_sgd train_steps (no env)",
            task,
            layerwise_sgd(learning_rate=1e-2),
            E,
            decisions * k,
            args.seed,
        )
        for key, cls in ABLATIONS.items():
            contestants[key] = env_contestant(
                "env " + cls.__doc__.splitlines()[0],
                ablation_env(cls, env),
                E,
                decisions,
                k,
                args.seed,
            )
    print(
        f"compiled and warmed up; timing {len(contestants)} variants x {repeats} rounds", flush=True
    )
    interleaved(list(contestants.values()), repeats)

    res_env, res_opt = contestants["env"], contestants["optax"]
    res_torch = max(
        (contestants[f"torch_{t}"] for t in torch_threads), key=lambda c: c.steps_per_s
    )  # the fastest thread count
    best_threads = torch_threads[
        [contestants[f"torch_{t}"] for t in torch_threads].index(res_torch)
    ]
    t_dec = res_env.seconds / decisions
    print(
        f"  (a) JAX env     : {res_env.steps_per_s:10.0f} inner steps/s "
        f"({decisions} decisions x {k} steps x {E} envs per call, {t_dec * 1e3:.1f} ms/decision)"
    )
    print(f"  (b) optax sgd   : {res_opt.steps_per_s:10.0f} inner steps/s")
    print(
        f"  (c) torch eager : {res_torch.steps_per_s:10.0f} inner steps/s "
        f"({torch_decisions} decision(s) per call, best of threads {torch_threads}: "
        f"{best_threads}; "
        + ", ".join(f"{t} thr {contestants[f'torch_{t}'].steps_per_s:.0f}" for t in torch_threads)
        + ")"
    )
    r_opt = res_env.steps_per_s / res_opt.steps_per_s
    r_torch = res_env.steps_per_s / res_torch.steps_per_s
    multi = {}
    if ndev > 1:
        pe, po = contestants["env_pmap"], contestants["optax_pmap"]
        multi = {
            "host_devices": ndev,
            "env_pmap_steps_per_s": pe.steps_per_s,
            "optax_pmap_steps_per_s": po.steps_per_s,
            "env_pmap_over_optax_pmap": pe.steps_per_s / po.steps_per_s,
            "env_pmap_over_torch": pe.steps_per_s / res_torch.steps_per_s,
        }
        print(
            f"  (a') JAX env on {ndev} CPU devices : {pe.steps_per_s:10.0f} inner steps/s "
            f"(x{pe.steps_per_s / res_env.steps_per_s:.2f} over one device; "
            f"/torch = {multi['env_pmap_over_torch']:.1f})"
        )
        print(
            f"  (b') optax on {ndev} CPU devices   : {po.steps_per_s:10.0f} inner steps/s "
            f"(env/optax = {multi['env_pmap_over_optax_pmap']:.2f})"
        )
    # Headline: the environment as ganno runs it (all cores), against both baselines using all
    # cores too (optax on the same devices, torch with its best thread count).
    head_env = multi.get("env_pmap_steps_per_s", res_env.steps_per_s)
    head_opt = multi.get("optax_pmap_steps_per_s", res_opt.steps_per_s)
    print(
        f"headline ({max(ndev, 1)} device(s)): env/optax = {head_env / head_opt:.2f} "
        f"(target >= 0.7)   env/torch = {head_env / res_torch.steps_per_s:.1f} (target >= 10)"
    )
    out = {
        "env_steps_per_s": head_env,
        "optax_steps_per_s": head_opt,
        "torch_env_steps_per_s": res_torch.steps_per_s,
        "num_envs": E,
        "network": name,
        "reward": reward,
        "env_over_optax": head_env / head_opt,
        "env_over_torch": head_env / res_torch.steps_per_s,
        "single_device": {
            "env_steps_per_s": res_env.steps_per_s,
            "optax_steps_per_s": res_opt.steps_per_s,
            "env_over_optax": r_opt,
            "env_over_torch": r_torch,
        },
        "targets": {"env_over_optax": 0.7, "env_over_torch": 10.0},
        **multi,
        "dataset": getattr(dataset, "name", "?"),
        "synthetic_data": bool(args.synthetic_data),
        "batch_size": task.batch_size,
        "steps_per_decision": k,
        "decisions_per_call": decisions,
        "torch_decisions_per_call": torch_decisions,
        "repeats": repeats,
        "quick": bool(args.quick),
        "env_reset_seconds": contestants["reset"].seconds,
        "env_seconds_per_decision": t_dec,
        "torch_threads": best_threads,
        "torch_steps_per_s_by_threads": {
            t: contestants[f"torch_{t}"].steps_per_s for t in torch_threads
        },
        "best_round_steps_per_s": {
            key: c.best_steps_per_s for key, c in contestants.items() if c.inner_steps
        },
        "times": {key: c.times for key, c in contestants.items()},
        "versions": {
            "jax": jax.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if args.profile:
        print(
            "profile (same rounds): inner steps/s, ms per decision of all envs, difference to (a)"
        )
        prof = {}
        for key in ["env", "optax", "layerwise", *ABLATIONS]:
            c = contestants[key]
            ms = c.seconds / decisions * 1e3
            prof[key] = {"label": c.label, "steps_per_s": c.steps_per_s, "ms_per_decision": ms}
            diff = ms - t_dec * 1e3
            print(f"  {c.label:62s} {c.steps_per_s:8.0f} {ms:7.1f} ms {diff:+6.1f} ms")
        ms_reset = contestants["reset"].seconds * 1e3
        print(f"  {contestants['reset'].label:62s} {'':8s} {ms_reset:7.1f} ms")
        out["profile"] = prof

    print(f"one device: env/optax = {r_opt:.2f}   env/torch = {r_torch:.1f}")
    if out["load_average"] and out["load_average"][0] > 0.5:
        print(
            f"note: 1-min load average {out['load_average'][0]:.2f} (this run included); "
            f"above ~1.5 on {os.cpu_count()} CPUs other processes shared them"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
