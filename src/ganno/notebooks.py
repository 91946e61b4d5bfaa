"""Execute the analysis notebooks with nbclient, keeping their outputs; a failing cell fails."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ganno.errors import NotebookFailed
from ganno.io import atomic_open


def execute_notebook(
    path: str | Path,
    out: str | Path,
    cwd: str | Path = ".",
    timeout: int = 600,
    kernel_name: str = "python3",
) -> Path:
    """Run every cell of ``path`` in ``cwd`` and write the executed notebook to ``out``."""
    path, out = Path(path), Path(out)
    # Figures become outputs of the executed notebook, whatever backend the environment names.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(cwd)}},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        client.execute()
    except CellExecutionError as exc:
        failed = out.with_suffix(".failed.ipynb")
        nbformat.write(notebook, failed)
        raise NotebookFailed(
            f"notebook {path} failed (partial outputs in {failed}):\n{exc}"
        ) from None
    with atomic_open(out, "w", encoding="utf-8") as f:
        nbformat.write(notebook, f)
    return out
