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
    "ganno.cli",  # with its command groups (ganno.cli.data, ganno.cli.evaluation, ...)
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


#: The package's layers, lowest first: a module imports only modules of its own layer or of the
#: layers below (docs/development.md, "Layers"). Every module of src/ganno is in exactly one.
LAYERS: dict[str, tuple[str, ...]] = {
    # settings, files, names and the decision protocol: no JAX, no PyTorch
    "foundation": (
        "agents", "config", "data", "deployment", "env_settings", "errors", "feature_names", "io",
        "layout", "protocol", "results", "schedules", "schema", "stats",
    ),
    # the environment, the inner networks and the MARL systems (JAX)
    "environment": (
        "coordination_game", "env", "inner", "networks", "observation", "optim", "parallel",
        "policy", "rewards", "systems", "systems.anakin", "systems.ippo", "systems.mappo",
        "systems.networks", "systems.normalisation", "systems.ppo", "systems.wrappers", "types",
    ),
    # meta-training and evaluating policies and baselines over the lr0 grid
    "training": ("baselines", "evaluate", "experiments", "meta_train", "reference_pool"),
    # a trained policy in a user's training loop, and the shipped one
    "deployment": (
        "optax_scheduler", "pretrained", "torch", "torch.actor", "torch.cli", "torch.dog",
        "torch.evaluation",
        "torch.features", "torch.networks", "torch.sampling", "torch.scheduler",
        "torch.weight_changes",
    ),
    # tables, figures, verdicts and the report, read from results files
    "analysis": (
        "claims_text", "cost", "design_study", "extensions_report", "front_door", "grid_study",
        "method_statements", "notebooks", "plots", "report", "seed_selection", "tables",
        "tuning_budget", "verdicts",
    ),
    # the command line and the package's front (ganno.pretrained_policy, ganno.Policy)
    "interface": (
        "cli", "cli.__main__", "cli.common", "cli.config", "cli.data", "cli.evaluation",
        "cli.meta_train", "cli.pretrained", "cli.report", "cli.study", "__init__",
    ),
}  # fmt: skip


def _imports(path) -> set[str]:
    """The ganno modules ``path`` imports, at the top or inside functions."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ganno":
                found |= {f"ganno.{a.name}" for a in node.names}
            elif node.module.startswith("ganno."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ganno.")}
    return found


def test_every_module_imports_only_its_layer_and_the_layers_below():
    from pathlib import Path

    import ganno

    root = Path(ganno.__file__).parent
    layer_of = {m: i for i, mods in enumerate(LAYERS.values()) for m in mods}
    names = list(LAYERS)
    modules = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        or "__init__": p
        for p in root.rglob("*.py")
    }
    assert set(modules) == set(layer_of), "a module missing from LAYERS, or a stale entry"
    wrong = []
    for module, path in modules.items():
        for target in _imports(path):
            name = target.removeprefix("ganno.")
            while name not in layer_of and "." in name:  # from ganno.x import a function
                name = name.rsplit(".", 1)[0]
            if name in layer_of and layer_of[name] > layer_of[module]:
                wrong.append(
                    f"{module} ({names[layer_of[module]]}) imports {name} ({names[layer_of[name]]})"
                )
    assert not wrong, "imports that point up a layer:\n" + "\n".join(sorted(wrong))
