"""A trained GANNO policy setting the per-layer learning rates of a flax model trained with optax.

Trains a flax MLP (``Dense_0``, ``Dense_1``, ``Dense_2``: three layers, three agents) on MNIST-1D
with :func:`ganno.optax_scheduler.ganno_sgd`, the policy as an optax transformation: the whole train
step, the policy's decisions included, is one jitted function. Prints every decision's learning
rates and the final test accuracy, beside the baseline it is compared with: optax SGD with a
cosine schedule from the same lr0, initial weights and minibatches (``--no-baseline`` skips it).

    python examples/optax_training_loop.py                        # the packaged pretrained policy
    python examples/optax_training_loop.py --total-steps 8000     # any training length
    python examples/optax_training_loop.py --policy results/meta_train/ippo/seed_0/policy

The dataset is read from ``<data-root>/processed`` (prepared offline, if absent, as by
``ganno data prepare mnist1d``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import ganno
from ganno.optax_scheduler import diverged, ganno_sgd
from ganno.policy import Policy


class MLP(nn.Module):
    """Every ``nn.Dense`` is a top-level entry of the params, so one layer for the policy."""

    width: int = 64
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width)(x))
        x = nn.relu(nn.Dense(self.width)(x))
        return nn.Dense(self.num_classes)(x)


def main(argv: list[str] | None = None, dataset: Any = None) -> dict:
    """Run the example; ``dataset`` (x/y_train, x/y_val, x/y_test, num_classes) replaces
    MNIST-1D (the tests pass a small synthetic one)."""
    args = parse_args(argv)
    policy = Policy.load(args.policy) if args.policy else ganno.pretrained_policy()
    if dataset is None:
        from ganno.data import load

        dataset = load("mnist1d", root=args.data_root)
    x_train, y_train = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
    x_val, y_val = jnp.asarray(dataset.x_val), jnp.asarray(dataset.y_val)
    model = MLP(args.width, int(dataset.num_classes))
    params = model.init(jax.random.PRNGKey(args.seed), x_train[:1])["params"]

    def loss_fn(params, x, y):
        logits = model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    opt = ganno_sgd(
        policy,
        lr0=args.lr0,
        total_steps=args.total_steps,
        val_loss_fn=lambda p: loss_fn(p, x_val, y_val),  # called at decisions only
    )
    total = opt.settings.total_steps
    opt_state = opt.init(params)

    def make_step(optimizer):
        @jax.jit
        def train_step(params, opt_state, key):
            idx = jax.random.randint(key, (args.batch_size,), 0, x_train.shape[0])
            loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx])
            updates, opt_state = optimizer.update(grads, opt_state, params, loss=loss)
            return optax.apply_updates(params, updates), opt_state

        return train_step

    def test_accuracy(params) -> float:
        logits = model.apply({"params": params}, jnp.asarray(dataset.x_test))
        return float((logits.argmax(-1) == jnp.asarray(dataset.y_test)).mean())

    initial_params = params
    train_step = make_step(opt)

    print(f"{len(params)} layers ({', '.join(params)}), {total} steps of {args.batch_size}")
    key = jax.random.PRNGKey(args.seed + 1)
    schedule = []
    for _ in range(total):
        key, sub = jax.random.split(key)
        before = int(opt_state.decisions)
        params, opt_state = train_step(params, opt_state, sub)
        if int(opt_state.decisions) > before:
            rates = [float(r) for r in opt_state.learning_rates]
            schedule.append(rates)
            print(
                f"  step {int(opt_state.count) - 1:5d}  val loss {float(opt_state.val_loss):.4f}"
                f"  rates [{' '.join(f'{r:.3g}' for r in rates)}]"
            )
        if bool(diverged(opt_state)):
            print("  diverged: the weights went back to the last decision's; stopping")
            break
    accuracy = test_accuracy(params)
    print(f"  final test accuracy {accuracy:.4f}")
    baseline = None
    if args.baseline:  # the same weights and minibatch keys, all `total` steps
        cosine = optax.sgd(optax.cosine_decay_schedule(args.lr0, total))
        step, params, state = make_step(cosine), initial_params, cosine.init(initial_params)
        key = jax.random.PRNGKey(args.seed + 1)
        for _ in range(total):
            key, sub = jax.random.split(key)
            params, state = step(params, state, sub)
        baseline = test_accuracy(params)
        print(
            f"  baseline, cosine SGD from the same lr0 {args.lr0:g}, weights and minibatches: "
            f"test accuracy {baseline:.4f}"
        )
    return {
        "test_accuracy": accuracy,
        "baseline_test_accuracy": baseline,
        "learning_rates": schedule,
        "steps": total,
        "diverged": bool(diverged(opt_state)),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--policy", help="a saved policy folder (run/policy); default: the packaged pretrained one"
    )
    parser.add_argument("--data-root", default="data", help="ganno data folder (default data)")
    parser.add_argument("--lr0", type=float, default=0.05, help="initial rate of every layer")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="hidden units of the MLP")
    parser.add_argument(
        "--total-steps", type=int, help="training length (default: the policy's episode)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the comparison run (cosine SGD from the same lr0, weights and minibatches)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
