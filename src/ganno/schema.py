"""The config schema (``ganno/schemas/config.schema.yaml``): the one place where every setting's
default lives. The validator fills them into a config (:mod:`ganno.config`), and the objects built
without a config (:class:`ganno.env_settings.EnvSettings`) read them from here. No JAX, no
jsonschema: the PyTorch scheduler's settings read this too.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(str(resources.files("ganno") / "schemas" / "config.schema.yaml"))


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader, but '1e-3' is a float (YAML 1.1 would read it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file, with scientific notation such as 1e-3 read as a number."""
    with open(path) as f:
        return yaml.load(f, Loader=_Loader)


@functools.cache
def parsed_schema() -> dict[str, Any]:
    """The schema as parsed, once per process (do not change it: :func:`ganno.config.load_schema`
    hands out copies)."""
    return read_yaml(SCHEMA_PATH)


def block_defaults(block: str) -> dict[str, Any]:
    """The schema's defaults of the top-level config ``block`` (``env``, ``task``, ...), lists as
    tuples; a key without a default is left out (absent means off, see its description)."""
    properties = parsed_schema()["properties"][block]["properties"]
    return {
        key: tuple(spec["default"]) if isinstance(spec.get("default"), list) else spec["default"]
        for key, spec in properties.items()
        if "default" in spec
    }
