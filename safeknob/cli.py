"""The safeknob command line: a thin Typer adapter over ``safeknob.stages``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from safeknob.stages.common import console

app = typer.Typer(
    name="safeknob",
    help="Blend a reckless and a safe expert with one knob, alpha.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demos_app = typer.Typer(help="Inspect and export demonstration datasets.", no_args_is_help=True)
app.add_typer(demos_app, name="demos")

ExperimentOpt = Annotated[
    str | None,
    typer.Option(
        "--experiment",
        "-e",
        help="Experiment name (experiments/<name>.toml) or path to a TOML file.",
    ),
]
DataOpt = Annotated[
    Path,
    typer.Option("--data", help="Artifact root; the experiment lives in DATA/<name>/."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo the stage even if up to date.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Override the experiment's seed.")]

DEFAULT_DATA = Path(os.environ.get("SAFEKNOB_DATA", "data"))


def _user_errors() -> tuple[type[BaseException], ...]:
    from safeknob.artifacts import ArtifactError
    from safeknob.config import ConfigError
    from safeknob.envs import EnvError, MissingCostError
    from safeknob.envs.hazard_grid import LayoutError
    from safeknob.errors import UserError

    return (ArtifactError, ConfigError, EnvError, MissingCostError, LayoutError, UserError)


def _guard(fn: Callable[[], Any]) -> Any:
    """Run a stage; user errors become one red line and exit code 2, no traceback."""
    try:
        return fn()
    except _user_errors() as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]: nothing half-written was kept")
        raise typer.Exit(130) from None
    except OSError as exc:
        console.print(f"[bold red]error:[/] {exc.strerror or exc}: {exc.filename or ''}")
        raise typer.Exit(2) from None


def _run_config(
    experiment: str | None, data: Path, force: bool, quiet: bool, seed: int | None = None
):
    from safeknob.config import load_experiment
    from safeknob.stages.common import RunConfig

    exp = load_experiment(experiment)
    if seed is not None:
        exp = exp.replace(seed=seed)
    return RunConfig(experiment=exp, data_dir=data, force=force, quiet=quiet)


@app.command("train-experts")
def train_experts(
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
) -> None:
    """Train the reckless expert (PPO) and the safe expert (PPO-Lagrangian)."""
    from safeknob.stages import train_experts as stage

    _guard(lambda: stage.run(_run_config(experiment, data, force, quiet, seed)))


def main() -> None:
    """Console-script entry point."""
    from safeknob.training import set_threads

    set_threads()
    app(prog_name="safeknob")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
