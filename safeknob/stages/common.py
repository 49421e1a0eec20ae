"""What every stage shares: console output, progress bars, the resolved config file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from safeknob.artifacts import ArtifactError, write_text
from safeknob.config import RunConfig

console = Console(stderr=False, highlight=False)


def progress_bar(quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )


def toml_dumps(data: dict[str, Any]) -> str:
    """A small TOML writer for the resolved config (scalars, lists, nested tables)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {val(x)}" for k, x in v.items()) + " }"
        raise TypeError(type(v))

    lines: list[str] = []
    tables = []
    for k, v in data.items():
        if isinstance(v, dict) and k != "kwargs":
            tables.append((k, v))
        else:
            lines.append(f"{k} = {val(v)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        for k, v in table.items():
            lines.append(f"{k} = {val(v)}")
    return "\n".join(lines) + "\n"


def write_config(rc: RunConfig) -> None:
    write_text(rc.paths.config, toml_dumps(rc.experiment.to_dict()))


def require(path: Path, what: str, fix: str) -> None:
    if not path.exists():
        raise ArtifactError(f"{what} not found at {path}; run `{fix}` first")
