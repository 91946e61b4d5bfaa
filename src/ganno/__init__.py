"""ganno: multi-agent RL agents that set each layer's learning rate while a network trains.

``ganno.Policy.load(run_dir / "policy")`` gives a trained controller, ``ganno.pretrained_policy()``
the one shipped with the package (:mod:`ganno.pretrained`); see the README for the rest.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Policy", "__version__", "pretrained_policy"]


def _import_jumanji_keeping_the_matplotlib_backend() -> None:
    """Importing jumanji inside a notebook runs ``%matplotlib ipympl`` (jumanji/environments/
    __init__.py), which fails without ipympl and would turn figures into widgets that an executed
    notebook cannot keep. Import it once with that magic call skipped: the modules that import
    jumanji (ganno.types, ganno.env) call this first, so ``import ganno`` loads no JAX."""
    import builtins

    if not getattr(builtins, "__IPYTHON__", False) or "jumanji" in __import__("sys").modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    original = shell.run_line_magic

    def run_line_magic(name, line, *args, **kwargs):
        if name == "matplotlib":
            return None
        return original(name, line, *args, **kwargs)

    shell.run_line_magic = run_line_magic
    try:
        import jumanji  # noqa: F401
    finally:
        shell.run_line_magic = original


def _needs_jax(what: str) -> None:
    """An ImportError naming the install, where ``what`` (a JAX policy) is asked for without JAX."""
    import importlib.util

    missing = [m for m in ("jax", "flax", "distrax", "chex") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{what} runs in JAX, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install 'ganno[optax]' for a JAX training loop; in a PyTorch loop use "
            "ganno.torch.pretrained_policy() (the same policy in PyTorch, no JAX)"
        )


def pretrained_policy(name: str = "ippo"):
    """The policy ``name`` shipped with the package, a :class:`ganno.Policy` (JAX; see
    :mod:`ganno.pretrained` for its provenance). In PyTorch: ``ganno.torch.pretrained_policy``."""
    _needs_jax("ganno.pretrained_policy()")
    from ganno.pretrained import load

    return load(name)


def __getattr__(name: str):
    # Lazy, so `import ganno` (and the CLI's --help) does not import JAX.
    if name == "Policy":
        _needs_jax("ganno.Policy")
        from ganno.policy import Policy

        return Policy
    raise AttributeError(f"module 'ganno' has no attribute {name!r}")
