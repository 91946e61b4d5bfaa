"""XLA settings made before JAX starts: config `compute.fast_compile`, as the CLI applies it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

# In a fresh interpreter (JAX must not have started): apply the config's compute block the way
# `ganno` does, then report XLA_FLAGS and run a jitted function under them.
_PROBE = """
import argparse, json, os, sys
from ganno.cli import _configure_compute
_configure_compute(argparse.Namespace(config=sys.argv[1]))
flags = os.environ.get("XLA_FLAGS", "")
import jax, jax.numpy as jnp
x = jnp.linspace(-1.0, 1.0, 64).reshape(8, 8)
value = float(jax.jit(lambda a: jnp.tanh(a @ a.T).sum())(x))
print(json.dumps({"flags": flags, "value": value}))
"""


def _probe(tmp_path, compute: dict | None, xla_flags: str | None = None) -> dict:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({} if compute is None else {"compute": compute}))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return yaml.safe_load(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return _probe(tmp_path_factory.mktemp("default"), None)


def test_fast_compile_is_off_by_default(default_run):
    assert "--xla_backend_optimization_level" not in default_run["flags"]


def test_fast_compile_sets_the_level_before_jax_starts_and_keeps_the_results(tmp_path, default_run):
    fast = _probe(tmp_path, {"fast_compile": True}, xla_flags="--xla_cpu_enable_fast_math=false")
    assert "--xla_backend_optimization_level=0" in fast["flags"].split()
    assert "--xla_cpu_enable_fast_math=false" in fast["flags"].split()  # the user's flags stay
    assert fast["value"] == pytest.approx(default_run["value"], rel=1e-5)


def test_a_level_the_user_set_wins(tmp_path):
    run = _probe(tmp_path, {"fast_compile": True}, xla_flags="--xla_backend_optimization_level=2")
    assert run["flags"].split() == ["--xla_backend_optimization_level=2"]


def test_an_unknown_compute_key_names_the_key(tmp_path, capsys):
    from ganno.cli import main

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"compute": {"fast_compiles": True}}))
    assert main(["config", "check", str(path)]) == 2
    assert "compute" in capsys.readouterr().err
