"""Writing results safely: every file ganno writes goes through here.

- :func:`atomic_open` / :func:`atomic_write` write to ``<name>.tmp`` and rename it over the target,
  so a killed process leaves the old file or the new one, never half of one; a write that fails
  (full disk, read-only file system) removes the ``.tmp`` and raises :class:`OutputError` naming
  the path and the fix.
- :func:`check_writable` / :func:`check_writable_folder` try an output location before any work is
  done, so an unwritable ``--out`` fails in a second, not after an hour of computing.
- :func:`write_json` writes strict JSON: a NaN or infinite number becomes ``null``.
- :class:`RunLock`: one writer per run folder, with the holder's PID in the lock file; the lock of
  a killed process is taken over.
- :func:`save_checkpoint` / :func:`load_checkpoint`: a pytree of arrays plus JSON metadata as one
  msgpack file (JAX and flax are imported only when a checkpoint is written or read).

Nothing here imports JAX at module level: the Snakemake workflow and config checks stay fast.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ganno.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    GannoWarning,
    OutputError,
    PolicyNotFoundError,
    RunLockedError,
)

TMP_SUFFIX = ".tmp"
LOCK_FILE = ".ganno.lock"
CHECKPOINT_GLOB = "checkpoint_*.msgpack"
CHECKPOINTS_KEPT = 2

# ----------------------------------------------------------------------------- errors


def _first_file_above(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists but is not a folder (mkdir's ENOTDIR)."""
    for parent in [path, *path.parents]:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_error(path: str | Path, exc: OSError) -> OutputError:
    """An :class:`OutputError` for a failed write of ``path``: the cause and what to do."""
    path = Path(path)
    code = exc.errno
    if code == errno.ENOSPC:
        fix = "the disk is full: free space there or write elsewhere"
    elif code == errno.EDQUOT:
        fix = "the disk quota is exhausted: free space there or write elsewhere"
    elif code == errno.EROFS:
        fix = "the file system is read-only: choose an output path on a writable one"
    elif code in (errno.EACCES, errno.EPERM):
        fix = "permission denied: choose a folder you can write to"
    elif code in (errno.ENOTDIR, errno.EEXIST) and (blocker := _first_file_above(path.parent)):
        fix = f"{blocker} is a file, not a folder: choose another output path"
    elif code == errno.EISDIR:
        fix = "it is a folder: give a file path"
    else:
        fix = f"{exc.strerror or exc}: choose another output path"
    return OutputError(f"cannot write {path}: {fix} (no partial file was left)", code)


# ----------------------------------------------------------------------------- atomic writes


def tmp_path(path: str | Path) -> Path:
    """Where :func:`atomic_open` writes ``path`` before renaming it."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open ``<path>.tmp`` for writing; on success it is synced and renamed to ``path``.

    On any failure the ``.tmp`` is removed; an :class:`OSError` (full disk, read-only file system,
    a folder that is a file) becomes an :class:`OutputError` that names ``path``.
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise output_error(path, exc) from exc
        raise


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; see :func:`atomic_open`."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)


def write_csv(df: Any, path: str | Path) -> Path:
    """Write a pandas DataFrame (no index) atomically: a killed run never leaves half a table."""
    with atomic_open(path, "w", newline="") as f:
        df.to_csv(f, index=False)
    return Path(path)


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float (at any depth of dicts, lists and tuples)
    replaced by None, so that it can be written as standard JSON."""
    if isinstance(value, Mapping):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON (NaN and infinities written as ``null``; ``json.loads`` in any language reads
    it)."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    """Write ``value`` as strict JSON (see :func:`dumps_json`), atomically."""
    return atomic_write(path, dumps_json(value, indent=indent))


# ----------------------------------------------------------------------------- checks up front


def check_writable_folder(folder: str | Path, target: str | Path | None = None) -> Path:
    """Create ``folder`` if needed and prove that a file can be written in it; else raise
    :class:`OutputError` naming ``target`` (default: the folder) and the fix."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".ganno-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise output_error(target or folder, exc) from exc
    return folder


def check_writable(path: str | Path) -> Path:
    """Prove that the file ``path`` can be written (its folder created if needed), before the work
    that produces it starts; raise :class:`OutputError` with the fix otherwise."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file path", errno.EISDIR)
    check_writable_folder(path.parent, path)
    return path


# ----------------------------------------------------------------------------- run lock


class RunLock:
    """One writer per run folder: an exclusive ``flock`` on ``<folder>/.ganno.lock``.

    The file holds the holder's PID, host and start time, which a second writer's error names.
    The kernel drops the lock when its process dies, however it dies, so a lock file left by a
    killed run is recognised as stale and taken over (with a warning). Use as a context manager.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        check_writable_folder(self.folder)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"{self.folder} is being written by another run ({holder}); wait for it to "
                    "finish or stop it, or write to another folder"
                ) from None
            except OSError as exc:  # a file system without locks (some network mounts)
                os.close(fd)
                warnings.warn(
                    f"cannot lock {self.path} ({exc.strerror}): make sure that no other run "
                    "writes this folder at the same time",
                    GannoWarning,
                    stacklevel=3,
                )
                return
            try:  # a holder that released the lock meanwhile unlinked the file: lock the new one
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        if stale := _read_fd(fd):
            warnings.warn(
                f"taking over the run folder {self.folder}: its last writer ({stale}) is no "
                "longer running",
                GannoWarning,
                stacklevel=3,
            )
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked, so no one locks a file about to vanish
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_fd(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()


def _holder(fd: int, patience_s: float = 2.0) -> str:
    """Who holds the lock of ``fd``: a holder writes its PID just after locking, so wait a
    moment for it rather than report an empty file."""
    deadline = time.monotonic() + patience_s
    while not (holder := _read_fd(fd)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder or "a process that has not written its PID"


# ----------------------------------------------------------------------------- checkpoints


def _is_key(x: Any) -> bool:
    import jax
    import jax.numpy as jnp
    import numpy as np

    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def save_checkpoint(directory: str | Path, state: Any, meta: Mapping[str, Any]) -> Path:
    """Write ``state`` (any pytree of arrays) and ``meta`` (JSON-able, with an ``update``) as the
    newest checkpoint ``checkpoint_<update>.msgpack``, atomically; only the newest
    :data:`CHECKPOINTS_KEPT` are kept. Arrays are stored with their own dtype and bits."""
    import jax
    import numpy as np
    from flax import serialization

    directory = Path(directory)
    leaves = jax.tree.leaves(jax.device_get(state))
    arrays = {
        str(i): np.asarray(jax.random.key_data(x) if _is_key(x) else x)
        for i, x in enumerate(leaves)
    }
    blob = serialization.msgpack_serialize(
        {"meta": dumps_json(dict(meta)), "num_leaves": len(leaves), "leaves": arrays}
    )
    path = atomic_write(directory / f"checkpoint_{int(meta['update']):08d}.msgpack", blob)
    for old in sorted(directory.glob(CHECKPOINT_GLOB))[:-CHECKPOINTS_KEPT]:
        old.unlink()
    return path


def load_checkpoint(directory: str | Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """The newest readable checkpoint in ``directory`` as ``(state, meta)``.

    ``template`` is a pytree with the state's structure (e.g. a freshly initialised learner state
    or its ``jax.eval_shape``). A corrupt newest file falls back to the one before it; when none
    is readable, the :class:`CheckpointError` says how to go on.
    """
    import jax
    import jax.numpy as jnp
    from flax import serialization

    directory = Path(directory)
    paths = sorted(directory.glob(CHECKPOINT_GLOB), reverse=True)
    if not paths:
        raise CheckpointNotFoundError(
            f"no checkpoint in {directory}; run ganno.meta_train.meta_train(...) with out_dir "
            f"{directory.parent} to create one (it checkpoints every meta_train.checkpoint_every "
            "updates)"
        )
    treedef = jax.tree.structure(template)
    template_leaves = jax.tree.leaves(template)
    problems = []
    for path in paths:
        try:
            raw = serialization.msgpack_restore(path.read_bytes())
            meta = json.loads(raw["meta"])
            arrays = [raw["leaves"][str(i)] for i in range(raw["num_leaves"])]
        except Exception as exc:  # noqa: BLE001 -- any failure to decode means "corrupt"
            problems.append(f"{path.name} ({type(exc).__name__}: {exc})")
            continue
        if len(arrays) != len(template_leaves) or any(
            tuple(a.shape) != tuple(_data_shape(t))
            for a, t in zip(arrays, template_leaves, strict=True)
        ):
            raise CheckpointError(
                f"checkpoint {path} holds a learner state of another shape (another environment, "
                f"network or number of seeds); use a fresh output folder or delete {directory} "
                "to restart this one"
            )
        leaves = [
            jax.random.wrap_key_data(jnp.asarray(a)) if _is_key(t) else jnp.asarray(a, t.dtype)
            for a, t in zip(arrays, template_leaves, strict=True)
        ]
        return jax.tree.unflatten(treedef, leaves), meta
    raise CheckpointError(
        f"no readable checkpoint in {directory}: {'; '.join(problems)}. Delete {directory} to "
        "restart the run from the beginning, or put a good checkpoint file back there to resume"
    )


def _data_shape(leaf: Any) -> tuple[int, ...]:
    import jax

    if _is_key(leaf):
        return tuple(jax.eval_shape(jax.random.key_data, leaf).shape)
    return tuple(leaf.shape)


def read_curve(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``learning_curve.jsonl`` (a torn last line from a kill is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


#: The files of a saved policy (``ganno.Policy.save``), read by ``ganno.Policy.load`` and by the
#: PyTorch actor (``ganno.torch.TorchPolicy.load``), which must not import JAX.
POLICY_CONFIG_FILE = "policy.json"
POLICY_PARAMS_FILE = "actor_params.msgpack"
HOW_TO_CREATE_A_POLICY = (
    "create it by meta-training (ganno.meta_train.meta_train(env, cfg, algo, seed, out_dir), "
    "or the pipeline's meta-train stage), which writes <out_dir>/policy/"
)


def saved_policy_files(directory: str | Path) -> tuple[Path, Path]:
    """A saved policy's config and parameters files; a PolicyNotFoundError naming the missing
    one and how to create a policy."""
    directory = Path(directory)
    files = directory / POLICY_CONFIG_FILE, directory / POLICY_PARAMS_FILE
    for path in files:
        if not path.is_file():
            raise PolicyNotFoundError(
                f"no saved policy at {directory} ({path} is missing); " + HOW_TO_CREATE_A_POLICY
            )
    return files
