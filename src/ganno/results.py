"""The results tables every experiment writes and the report reads: their columns, reading them
back, and the grid of initial rates they cover. No JAX: the report and the seed selection read
results with pandas alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganno.errors import ResultsError

#: Columns of every results table, in order (``meta_seed`` is -1 for methods without one).
COLUMNS = (
    "method",
    "task",
    "lr0",
    "seed",
    "meta_seed",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "diverged",
    "wall_time_s",
)


#: Columns a results table carries after :data:`COLUMNS` where they apply: ``guard_step``, the
#: inner step at which a policy's guard tripped (-1: never; ``env.guard``, ganno.protocol).
OPTIONAL_COLUMNS = ("guard_step",)


def lr0_grid(config: Mapping[str, Any]) -> list[float]:
    """The initial rates of the sweep: ``10**low .. 10**high``, ``lr0_per_decade`` per decade."""
    low, high = config["evaluation"]["lr0_exponents"]
    per = config["evaluation"]["lr0_per_decade"]
    exponents = np.arange(round(low * per), round(high * per) + 1) / per
    return [float(10.0**e) for e in exponents]


def read_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate result CSVs, checking they carry the results schema."""
    frames = []
    for path in paths:
        df = pd.read_csv(path)
        missing = set(COLUMNS) - set(df.columns)
        if missing:
            raise ResultsError(
                f"{path} is not a results table: it lacks {sorted(missing)}; give a table written "
                "by ganno baselines, sweep or generalise"
            )
        frames.append(df[list(COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)
