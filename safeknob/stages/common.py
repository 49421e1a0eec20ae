"""What every stage shares: its run config, the experiment folder, console output."""

from __future__ import annotations

import json
from dataclasses import dataclass
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

from safeknob.artifacts import ArtifactError, ExperimentPaths, experiment_paths, write_text
from safeknob.config import ExperimentConfig

console = Console(stderr=False, highlight=False)


@dataclass(frozen=True)
class RunConfig:
    """What a stage needs beyond the experiment itself."""

    experiment: ExperimentConfig
    """The resolved experiment."""
    data_dir: Path = Path("data")
    """Artifact root; the experiment's folder is ``data_dir / experiment.name``."""
    force: bool = False
    """Redo a stage whose artifact exists (and accept a changed config)."""
    quiet: bool = False
    """No progress bars or tables (tests, sweeps)."""
    tensorboard: bool = True
    """Log training to ``<data>/<experiment>/tb/<stage>/...`` (``--no-tensorboard``)."""

    @property
    def paths(self) -> ExperimentPaths:
        return experiment_paths(self.data_dir, self.experiment.name)


def tb_dir(rc: RunConfig, *parts: str) -> Path | None:
    """TensorBoard folder of one training run, or None when logging is off or unavailable."""
    if not rc.tensorboard:
        return None
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return None
    return rc.paths.root / "tb" / Path(*parts)


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


def stage_config(exp: ExperimentConfig, *sections: str) -> dict[str, Any]:
    """The parts of the experiment config an artifact depends on (for up-to-date checks)."""
    full = exp.to_dict()
    out = {"name": exp.name, "seed": exp.seed}
    for s in sections:
        out[s] = full[s]
    return out


def up_to_date(meta_path: Path, config: dict[str, Any], force: bool, fix: str) -> bool:
    """True when an artifact exists with the same config (skip the work).

    Raises ArtifactError when it exists with a different config and ``force`` is False.
    """
    if force or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False  # corrupt: redo
    if _normalize(meta.get("config")) == _normalize(config):
        return True
    raise ArtifactError(
        f"{meta_path.parent} was made with a different config; re-run with `{fix} --force` "
        "to replace it"
    )


def _normalize(x: Any) -> Any:
    return json.loads(json.dumps(x, sort_keys=True, default=str))


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
