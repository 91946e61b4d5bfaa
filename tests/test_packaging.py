"""The installs pyproject.toml declares: a light library, framework extras in ranges, the pipeline
pinned exactly to the lock file the committed results were made with."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "pipeline-lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements(names: list[str]) -> list[Requirement]:
    return [Requirement(r) for r in names if not r.startswith("ganno[")]


def test_the_library_needs_no_framework_and_no_pipeline():
    core = {canonicalize_name(r.name) for r in _requirements(PROJECT["dependencies"])}
    assert core == {"numpy", "pyyaml", "jsonschema", "msgpack"}
    assert {canonicalize_name(r.name) for r in _requirements(EXTRAS["torch"])} == {"torch"}
    optax = {canonicalize_name(r.name) for r in _requirements(EXTRAS["optax"])}
    assert "torch" not in optax and "jax" in optax


def test_the_pipeline_extra_is_pinned_to_the_lock():
    lock = _lock()
    for req in _requirements(EXTRAS["pipeline"]):
        (spec,) = req.specifier
        assert spec.operator == "==", req
        # "==2.13.0" admits the lock's "2.13.0+cpu" (a local build label), no other release
        assert spec.contains(lock[canonicalize_name(req.name)]), (req, "lock differs")


def test_the_library_ranges_admit_the_locked_versions():
    lock = _lock()
    for req in _requirements(PROJECT["dependencies"] + EXTRAS["torch"] + EXTRAS["optax"]):
        assert req.specifier.contains(lock[canonicalize_name(req.name)]), req


def test_a_jax_policy_without_jax_names_the_install():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['jax'] = None\n"
        "import ganno\n"
        "try:\n"
        "    ganno.pretrained_policy()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "jax is not installed" in out.stdout
    assert "ganno[optax]" in out.stdout and "ganno.torch.pretrained_policy()" in out.stdout


def test_the_optax_path_needs_neither_pandas_nor_jumanji_nor_torch():
    """What ganno[optax] installs is enough: the shipped policy as an optax transformation."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('pandas', 'jumanji', 'torch', 'scipy', 'matplotlib', 'sklearn'):\n"
        "    sys.modules[m] = None\n"
        "import jax.numpy as jnp\n"
        "import ganno\n"
        "from ganno.optax_scheduler import ganno_sgd\n"
        "opt = ganno_sgd(ganno.pretrained_policy(), lr0=0.05, total_steps=40,\n"
        "                val_loss_fn=lambda p: jnp.sum(p['w'] ** 2))\n"
        "state = opt.init({'w': jnp.ones(3)})\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
