"""Layers that point one way: the analysis and report side reads results with pandas and draws
with matplotlib, and imports no JAX, flax, optax or PyTorch; the NumPy copy of the baselines'
registry and shapes agrees with the optax one that trains them."""

from __future__ import annotations

import subprocess
import sys

from ganno import baselines, schedules

ANALYSIS = (
    "ganno.report",
    "ganno.verdicts",
    "ganno.claims_text",
    "ganno.method_statements",
    "ganno.front_door",
    "ganno.extensions_report",
    "ganno.tables",
    "ganno.plots",
    "ganno.stats",
    "ganno.cost",
    "ganno.tuning_budget",
    "ganno.seed_selection",
    "ganno.grid_study",
    "ganno.design_study",
    "ganno.results",
    "ganno.layout",
    "ganno.cli",
    # the decision protocol and the deployment settings: shared by the JAX environment, optax
    # and the PyTorch scheduler, so they belong to neither framework
    "ganno.protocol",
    "ganno.deployment",
)
FRAMEWORKS = ("jax", "flax", "optax", "distrax", "chex", "torch", "jumanji")


def test_building_the_report_imports_no_framework():
    code = (
        "import importlib, sys\n"
        f"for m in {ANALYSIS!r}: importlib.import_module(m)\n"
        f"print(sorted(f for f in {FRAMEWORKS!r} if f in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_numpy_registry_and_shapes_match_the_baselines():
    assert schedules.METHOD_NAMES == tuple(baselines.METHODS)
    scheduled = {m for m in baselines.METHODS if baselines.unit_schedule(m, 100) is not None}
    assert schedules.SCHEDULED_METHODS == scheduled
    # the shapes themselves: tests/test_torch_actor.py::test_base_schedules_match_optax
