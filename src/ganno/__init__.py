"""ganno: multi-agent RL agents that set each layer's learning rate while a network trains.

``ganno.Policy.load(run_dir / "policy")`` gives a trained controller; see the README for the rest.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Policy", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import ganno` (and the CLI's --help) does not import JAX.
    if name == "Policy":
        from ganno.policy import Policy

        return Policy
    raise AttributeError(f"module 'ganno' has no attribute {name!r}")
