"""Use every core: the CPU's cores as XLA devices, and batches of environments sharded over them.

XLA's CPU backend runs the small matrix products of these inner networks on one thread, so a
2-core machine trains at the speed of one core unless the batch of environments is split over
devices (measured on the default task: 1.9x the inner steps per second with 2 devices). On a GPU
there is one device and nothing here changes anything.

:func:`configure_host_devices` must run before JAX starts (the ``ganno`` command line calls it
first); without it everything still works, on one device. :func:`configure_fast_compile` (config
``compute.fast_compile``) trades execution speed for compilation speed, likewise before JAX starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

HOST_DEVICES_ENV = "GANNO_HOST_DEVICES"
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
_OPT_LEVEL_FLAG = "--xla_backend_optimization_level"


def configure_host_devices(count: int | None = None) -> int:
    """Expose ``count`` CPU devices to XLA (default: ``$GANNO_HOST_DEVICES`` or the core count).

    Returns the count asked for, or 0 when it is too late (JAX already imported) or the user set
    ``XLA_FLAGS`` themselves, in which case nothing is changed.
    """
    if not _can_set(_DEVICE_COUNT_FLAG):
        return 0
    if count is None:
        count = int(os.environ.get(HOST_DEVICES_ENV, 0)) or len(os.sched_getaffinity(0))
    if count > 1:
        _add_flag(_DEVICE_COUNT_FLAG, count)
    return count


def configure_fast_compile() -> bool:
    """Turn XLA's backend optimisation off (config ``compute.fast_compile``): compilation about 3x
    faster, execution slower; for tiny runs whose time is compilation.

    Must run before JAX starts. Returns whether the flag was set: not when JAX has already started
    or ``XLA_FLAGS`` sets the optimisation level itself.
    """
    if not _can_set(_OPT_LEVEL_FLAG):
        return False
    _add_flag(_OPT_LEVEL_FLAG, 0)
    return True


def _can_set(flag: str) -> bool:
    """Whether ``flag`` can still take effect: JAX has not started and the user did not set it."""
    return flag not in os.environ.get("XLA_FLAGS", "") and "jax" not in sys.modules


def _add_flag(flag: str, value: Any) -> None:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}={value}".strip()


def _devices_for(size: int) -> list:
    import jax

    devices = jax.local_devices()
    n = len(devices)
    while n > 1 and size % n:
        n -= 1
    return devices[:n]


def batch_sharding(size: int, axis: int = 0, ndim: int = 1):
    """A sharding that splits an axis of length ``size`` over as many devices as divide it (None
    when that is one device)."""
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = _devices_for(size)
    if len(devices) < 2:
        return None
    spec = [None] * ndim
    spec[axis] = "batch"
    return NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec(*spec))


def shard_batch(tree: Any, size: int, axis: int = 0) -> Any:
    """Place every leaf whose ``axis`` has length ``size`` split over devices; replicate the rest
    on all of them (so one ``jit`` partitions the batched work and keeps the rest whole)."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    probe = batch_sharding(size)
    if probe is None:
        return tree
    replicated = NamedSharding(probe.mesh, PartitionSpec())

    def place(leaf: Any) -> Any:
        shape = np.shape(leaf)
        if len(shape) > axis and shape[axis] == size:
            return jax.device_put(leaf, batch_sharding(size, axis, len(shape)))
        return jax.device_put(leaf, replicated)

    return jax.tree.map(place, tree)


def sharded_vmap(fn: Callable[..., Any], *args: Any, chunk_size: int | None = None) -> Any:
    """``jit(vmap(fn))(*args)`` with the batch (the leading axis of every arg) split over devices.

    The batch is padded to a multiple of the device count with copies of its last element, and
    the padding is dropped from the result, so any batch size works. With ``chunk_size`` the batch
    runs in chunks of at most that many elements (rounded up to a multiple of the device count),
    one after another through the same compiled function, to bound memory.
    """
    import jax
    import jax.numpy as jnp

    size = jax.tree.leaves(args)[0].shape[0]
    count = len(jax.local_devices())
    chunk = size if chunk_size is None else max(1, min(size, int(chunk_size)))
    chunk = -(-chunk // count) * count
    num_chunks = -(-size // chunk)
    padded = num_chunks * chunk
    if padded != size:
        pad = padded - size
        args = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), args)
    batched = jax.jit(jax.vmap(fn))
    outs = []
    for i in range(num_chunks):
        part = jax.tree.map(lambda x, i=i: x[i * chunk : (i + 1) * chunk], args)
        outs.append(batched(*shard_batch(part, chunk)))
    out = outs[0] if num_chunks == 1 else jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)
    return jax.tree.map(lambda x: x[:size], out) if padded != size else out
