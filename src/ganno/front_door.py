"""The front door: the repository's README quotes the verdict table of the default report
(paper/README.md, "What reproduces") between two marker lines; :func:`update_front_door`, run by
:func:`ganno.report.build_report` for the default report, copies it there.
"""

from __future__ import annotations

from pathlib import Path

from ganno.io import atomic_write

#: The repository's README (the front door), relative to the pipeline's working directory: it
#: quotes the verdict table of the default report between these two lines.
FRONT_DOOR = "README.md"
FRONT_DOOR_BEGIN = (
    "<!-- the verdict table of paper/README.md, copied there by `ganno report`: do not edit -->"
)
FRONT_DOOR_END = "<!-- end of the copied verdict table -->"


def verdict_table_of(report_readme: str) -> list[str]:
    """The verdict table ("What reproduces") of a report's README text: its table lines."""
    lines = report_readme.splitlines()
    if "## What reproduces" not in lines:
        return []
    rest = lines[lines.index("## What reproduces") + 1 :]
    table = []
    for line in rest:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return table


def update_front_door(readme: Path, report_readme: Path) -> bool:
    """Copy the report's verdict table into ``readme`` between :data:`FRONT_DOOR_BEGIN` and
    :data:`FRONT_DOOR_END`; False (nothing written) where ``readme`` lacks them."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    if FRONT_DOOR_BEGIN not in text or FRONT_DOOR_END not in text:
        return False
    head, rest = text.split(FRONT_DOOR_BEGIN, 1)
    _, tail = rest.split(FRONT_DOOR_END, 1)
    table = verdict_table_of(report_readme.read_text(encoding="utf-8"))
    new = head + FRONT_DOOR_BEGIN + "\n" + "\n".join(table) + "\n" + FRONT_DOOR_END + tail
    if new != text:
        atomic_write(readme, new)
    return True
