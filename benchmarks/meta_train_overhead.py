# ruff: noqa: E402  (JAX must be configured before it is imported)
"""How much of meta-training the agents cost: full IPPO/MAPPO updates against rolling out the same
environments with random actions (same number of envs, same rollout length, auto-reset included).

    python benchmarks/meta_train_overhead.py [--config config/config.yaml] [--updates 5]
        [--json out.json]
    python benchmarks/meta_train_overhead.py --config config/study.yaml --agents

``--agents``: instead, the meta-training decisions per second of every agent of the config (e.g.
the design options of config/study.yaml) as a ratio to the first agent's, timed round-robin in one
process so that load on a shared machine hits all alike. A decision is one step of one episode (all
its agents); a task-family agent takes one per member per step.

Compilation is excluded (one warm-up call); each figure is the median of ``--repeats`` timed calls.
Target (issue 3): meta-training runs at >= 0.75 x the random-rollout decisions per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from ganno.parallel import configure_host_devices

configure_host_devices()  # as the ganno command line does: every core an XLA device

import jax

from ganno.agents import agents
from ganno.config import agent_config, load_config
from ganno.data import load_from_config
from ganno.env import make_env, make_envs
from ganno.parallel import shard_batch
from ganno.systems import ippo, mappo
from ganno.systems.anakin import scan_updates
from ganno.systems.wrappers import wrap


def median_seconds(fn, arg, repeats):
    jax.block_until_ready(fn(arg))  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_rollout(env, num_envs, length, updates):
    """(initial batch state split over devices, jitted rollout of random actions from it)."""
    wrapped = wrap(env, num_envs)
    states, _ = jax.jit(wrapped.reset)(jax.random.PRNGKey(1))

    def run(states):
        def one(carry, _):
            states, key = carry
            key, action_key = jax.random.split(key)
            actions = jax.random.randint(action_key, (num_envs, env.num_agents), 0, env.action_dim)
            states, _ = wrapped.step(states, actions)
            return (states, key), None

        (states, _), _ = jax.lax.scan(one, (states, jax.random.PRNGKey(2)), None, length * updates)
        return states

    return shard_batch(states, num_envs), jax.jit(run)


def agent_costs(cfg, updates: int, repeats: int, only: list[str] | None = None) -> dict:
    """Decisions/s of each agent's IPPO/MAPPO updates, timed round-robin, and the ratio of its
    time per decision to the first agent's (its cost relative to today's agents)."""
    from ganno.meta_train import ALGORITHMS

    runs = {}
    for agent in agents(cfg):
        if only and agent.name not in only:
            continue
        name, vcfg = agent.name, agent_config(cfg, agent.name)
        env = make_envs(vcfg)  # with a task family, one environment per member
        members = len(env) if isinstance(env, list) else 1
        mt = vcfg["meta_train"]
        init_fn, update_fn = ALGORITHMS[agent.algorithm](env, vcfg)
        state = shard_batch(jax.jit(init_fn)(jax.random.PRNGKey(0)), mt["num_envs"])
        several = scan_updates(update_fn, updates)
        chunk = jax.jit(lambda s, several=several: several(s)[0])
        jax.block_until_ready(chunk(state))  # compile + warm up
        runs[name] = (chunk, state, mt["num_envs"] * mt["rollout_length"] * updates * members)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (chunk, state, _) in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(chunk(state))
            times[name].append(time.perf_counter() - start)
    first = next(iter(runs))
    per_decision = {n: statistics.median(t) / runs[n][2] for n, t in times.items()}
    result = {}
    for name, seconds in per_decision.items():
        result[name] = {
            "decisions_per_s": 1.0 / seconds,
            "cost_relative_to_" + first: seconds / per_decision[first],
        }
        print(
            f"{name:20s} {1.0 / seconds:8.1f} decisions/s  "
            f"{seconds / per_decision[first]:5.2f} x {first}'s time per decision"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--updates", type=int, default=5, help="updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--agents", action="store_true", help="time the config's agents")
    parser.add_argument("--only", nargs="+", help="with --agents: these agents (the first is 1x)")
    args = parser.parse_args()

    cfg = load_config(args.config)
    if args.agents:
        result = agent_costs(cfg, args.updates, args.repeats, args.only)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return
    env = make_env(cfg, load_from_config(cfg))
    mt = cfg["meta_train"]
    decisions = mt["num_envs"] * mt["rollout_length"] * args.updates

    states, rollout = random_rollout(env, mt["num_envs"], mt["rollout_length"], args.updates)
    t_random = median_seconds(rollout, states, args.repeats)
    print(f"devices: {jax.devices()}")
    result = {
        "num_envs": mt["num_envs"],
        "rollout_length": mt["rollout_length"],
        "decisions_per_call": decisions,
        "random_rollout_decisions_per_s": decisions / t_random,
    }
    print(
        f"random-action rollout : {decisions / t_random:8.1f} decisions/s "
        f"({decisions * env.steps_per_decision / t_random:9.0f} inner steps/s)"
    )
    for name, system in (("ippo", ippo), ("mappo", mappo)):
        init_fn, update_fn = system.make_learner(env, cfg)
        state = shard_batch(jax.jit(init_fn)(jax.random.PRNGKey(0)), mt["num_envs"])
        updates = scan_updates(update_fn, args.updates)
        chunk = jax.jit(lambda s, updates=updates: updates(s)[0])
        t = median_seconds(chunk, state, args.repeats)
        ratio = t_random / t
        result[f"{name}_decisions_per_s"] = decisions / t
        result[f"{name}_over_random"] = ratio
        print(
            f"{name} meta-training    : {decisions / t:8.1f} decisions/s  "
            f"= {ratio:.2f} x random rollout (target >= 0.75)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
