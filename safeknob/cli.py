"""The safeknob command line: a thin Typer adapter over ``safeknob.stages``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="Processes training alphas in parallel.")
]
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)

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
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]: nothing half-written was kept")
        raise typer.Exit(130) from None
    except OSError as exc:
        msg = escape(f"{exc.strerror or exc}: {exc.filename or ''}")
        console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
        raise typer.Exit(2) from None


_COST_FN: dict[str, str | None] = {"value": None}
_TENSORBOARD: dict[str, bool] = {"value": True}


@app.callback()
def _root(
    cost_fn: Annotated[
        str | None,
        typer.Option(
            "--cost-fn",
            help="module:function computing each step's cost (obs, action, next_obs, info) "
            "for an env that reports none; overrides the experiment's env.cost_fn.",
        ),
    ] = None,
    tensorboard: Annotated[
        bool,
        typer.Option(
            "--tensorboard/--no-tensorboard",
            help="Log training (multipliers, episode costs, AIRL statistics) to DATA/<name>/tb/.",
        ),
    ] = True,
) -> None:
    """Blend a reckless and a safe expert with one knob, alpha."""
    _COST_FN["value"] = cost_fn
    _TENSORBOARD["value"] = tensorboard


def _run_config(
    experiment: str | None, data: Path, force: bool, quiet: bool, seed: int | None = None
):
    import dataclasses

    from safeknob.config import load_experiment
    from safeknob.stages.common import RunConfig

    exp = load_experiment(experiment)
    if seed is not None:
        exp = exp.replace(seed=seed)
    if _COST_FN["value"]:
        exp = exp.replace(env=dataclasses.replace(exp.env, cost_fn=_COST_FN["value"]))
    return RunConfig(
        experiment=exp, data_dir=data, force=force, quiet=quiet, tensorboard=_TENSORBOARD["value"]
    )


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


@app.command("collect-demos")
def collect_demos(
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Import this imitation dataset (with costs) instead; minari:ID_OR_PATH for a "
            "local Minari dataset; hdf5:FILE for a DSRL/D4RL-layout file (the role's "
            "episodes are selected from it, see --max-cost).",
        ),
    ] = None,
    role: Annotated[
        str | None, typer.Option("--role", help="With --from: safe or reckless.")
    ] = None,
    episodes: Annotated[
        int | None,
        typer.Option(
            "--episodes",
            min=1,
            help="Episodes per role (default: the experiment's demos.episodes).",
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            min=0.0,
            help="With --from hdf5: safe demonstrations are the highest-return episodes with "
            "cost <= this (default: the experiment's experts.cost_limit).",
        ),
    ] = None,
) -> None:
    """Roll both experts out and save their demonstrations (per-step cost kept)."""
    import dataclasses

    from safeknob.stages import collect_demos as stage

    def go():
        rc = _run_config(experiment, data, force, quiet)
        if episodes is not None:
            exp = rc.experiment
            rc = dataclasses.replace(
                rc, experiment=exp.replace(demos=dataclasses.replace(exp.demos, episodes=episodes))
            )
        return stage.run(stage.CollectConfig(rc, source, role, max_cost))

    _guard(go)


@demos_app.command("info")
def demos_info(
    path: Annotated[
        Path, typer.Argument(help="A demonstration folder, e.g. data/hazard-grid/demos/safe")
    ],
) -> None:
    """Print a demonstration dataset's summary (episodes, return, cost)."""
    from safeknob.stages import collect_demos as stage

    _guard(lambda: stage.print_info(path))


MethodOpt = Annotated[
    str | None,
    typer.Option("--method", "-m", help="mixture, bc-mix, reward-mix, budget, conditioned."),
]
RewardOpt = Annotated[
    str | None,
    typer.Option("--reward", help="Reward source of budget/reward-mix: airl or env."),
]


@app.command("blend")
def blend(
    alpha: Annotated[
        float, typer.Option("--alpha", "-a", help="0 = safe expert, 1 = reckless.")
    ] = 0.6,
    method: MethodOpt = None,
    reward: RewardOpt = None,
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
    episodes: Annotated[int, typer.Option(help="Episodes of the brief evaluation.")] = 100,
    calibrated: Annotated[
        bool,
        typer.Option(
            "--calibrated/--raw", help="Use the method's calibration map when one exists."
        ),
    ] = True,
) -> None:
    """Produce one blended agent at ALPHA and show where it sits between the experts."""
    from safeknob.stages import blend as stage

    def go():
        rc = _run_config(experiment, data, force, quiet)
        stage.check_alpha(alpha)
        m = method or rc.experiment.blend.method
        return stage.blend_one(
            stage.BlendRunConfig(rc, m, (alpha,), reward, seed, calibrated=calibrated), episodes
        )

    _guard(go)


@app.command("train-blend")
def train_blend(
    alphas: Annotated[
        str | None, typer.Option("--alphas", help="Comma-separated grid, e.g. 0,0.25,0.5,0.75,1")
    ] = None,
    method: MethodOpt = None,
    reward: RewardOpt = None,
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
    workers: WorkersOpt = 1,
    calibrated: Annotated[
        bool,
        typer.Option(
            "--calibrated/--raw",
            help="Ask each alpha through the method's calibration map (`safeknob calibrate`); "
            "agents go to blends/<method>+cal/.",
        ),
    ] = False,
) -> None:
    """Train blended agents for a grid of alphas with one method."""
    from safeknob.errors import UserError
    from safeknob.stages import blend as stage

    def go():
        rc = _run_config(experiment, data, force, quiet)
        grid = stage.parse_alphas(alphas) if alphas is not None else rc.experiment.blend.alphas
        m = method or rc.experiment.blend.method
        if calibrated:
            from safeknob.methods import get_method
            from safeknob.stages.calibrate import load_map

            name = get_method(m, reward).name
            if load_map(rc, name) is None:
                raise UserError(
                    f"no calibration map of {name} in {rc.paths.blends / name}; run "
                    f"`safeknob calibrate --method {name}` first (or train with --raw)"
                )
        return stage.run(
            stage.BlendRunConfig(rc, m, tuple(grid), reward, seed, workers, calibrated=calibrated)
        )

    _guard(go)


@app.command("evaluate")
def evaluate(
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    quiet: QuietOpt = False,
    episodes: Annotated[
        int | None, typer.Option(help="Episodes per agent (default: the experiment's).")
    ] = None,
) -> None:
    """Roll out every expert and blend; write eval/results.csv and eval/summary.csv."""
    from safeknob.config import EvalConfig
    from safeknob.errors import UserError
    from safeknob.stages import evaluate as stage

    def go():
        rc = _run_config(experiment, data, False, quiet)
        if episodes is not None:
            if episodes < 2:
                raise UserError(f"--episodes must be >= 2, got {episodes}")
            ev = EvalConfig(
                episodes=episodes, seed=rc.experiment.eval.seed, n_boot=rc.experiment.eval.n_boot
            )
            rc = type(rc)(rc.experiment.replace(eval=ev), rc.data_dir, rc.force, rc.quiet)
        return stage.run(rc)

    _guard(go)


@app.command("frontier")
def frontier(
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    min_gap: Annotated[
        float | None,
        typer.Option(
            "--min-gap",
            help="Exit non-zero when the coin flip's exact mean frontier gap is below this.",
        ),
    ] = None,
) -> None:
    """Print the exact frontier's routes and the coin flip's gap below it (no training)."""
    from safeknob.stages import frontier as stage

    _guard(lambda: stage.run(_run_config(experiment, data, False, False), min_gap))


@app.command("report")
def report(
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    quiet: QuietOpt = False,
) -> None:
    """Write report/ (figures, report.md, self-contained report.html) from eval/."""
    from safeknob.stages import report as stage

    _guard(lambda: stage.run(_run_config(experiment, data, False, quiet)))


@demos_app.command("export")
def demos_export(
    path: Annotated[
        Path, typer.Argument(help="A demonstration folder, e.g. data/hazard-grid/demos/safe")
    ],
    dataset_id: Annotated[
        str | None,
        typer.Option("--id", help="Minari dataset id, e.g. safeknob/hazard-grid/safe-v0"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="minari: folder of local Minari datasets (default data/minari); hdf5: the "
            "file to write (default data/hdf5/<experiment>-<role>.hdf5).",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="minari, or hdf5 (the DSRL/D4RL layout).")
    ] = "minari",
    force: ForceOpt = False,
) -> None:
    """Export a demonstration dataset (per-step cost kept)."""
    from safeknob.errors import UserError

    def go():
        if fmt == "hdf5":
            from safeknob import hdf5_io

            dest = (
                out or Path("data/hdf5") / f"{path.resolve().parent.parent.name}-{path.name}.hdf5"
            )
            dest = hdf5_io.export(path, dest, force=force)
        elif fmt == "minari":
            from safeknob import minari_io

            if dataset_id is None:
                raise UserError(
                    "--format minari needs --id, e.g. --id safeknob/hazard-grid/safe-v0"
                )
            dest = minari_io.export(path, dataset_id, out or Path("data/minari"), force=force)
        else:
            raise UserError(f"unknown export format {fmt!r}; supported: minari, hdf5")
        console.print(f"exported {path} to {dest}")
        return dest

    _guard(go)


@app.command("learn-rewards")
def learn_rewards(
    role: Annotated[
        list[str] | None, typer.Option("--role", help="reckless and/or safe (default: reckless).")
    ] = None,
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Processes learning the roles' rewards in parallel (one each)."
        ),
    ] = DEFAULT_WORKERS,
) -> None:
    """Learn an AIRL reward per expert and check it by re-optimizing it with a fresh PPO."""
    from safeknob import rewards
    from safeknob.errors import UserError

    def go():
        roles = tuple(role or ["reckless"])
        for r in roles:
            if r not in ("reckless", "safe"):
                raise UserError(f"--role must be reckless or safe, got {r!r}")
        return rewards.run(_run_config(experiment, data, force, quiet), roles, workers=workers)

    _guard(go)


@app.command("run")
def run_all(
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated, e.g. mixture,budget-env (default: the experiment's).",
        ),
    ] = None,
    quick_mode: Annotated[bool, typer.Option("--quick", help="Small budgets (minutes).")] = False,
    workers: WorkersOpt = DEFAULT_WORKERS,
) -> None:
    """Every stage for one experiment: experts, demos, rewards, blends, evaluate, report."""
    from safeknob.config import quick
    from safeknob.stages import pipeline
    from safeknob.stages.common import RunConfig

    def go():
        rc = _run_config(experiment, data, force, quiet)
        if quick_mode:
            rc = RunConfig(quick(rc.experiment), rc.data_dir, rc.force, rc.quiet)
        ms = tuple(m.strip() for m in methods.split(",")) if methods else None
        if ms:
            from safeknob.config import ConfigError, validate

            try:
                validate(
                    rc.experiment.replace(
                        blend=rc.experiment.blend.__class__(
                            **{**rc.experiment.blend.__dict__, "methods": ms}
                        )
                    )
                )
            except ConfigError as exc:
                raise ConfigError(f"--methods: {exc}") from None
        return pipeline.run(pipeline.PipelineConfig(rc, ms, workers))

    _guard(go)


@app.command("reproduce")
def reproduce(
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    quick_mode: Annotated[bool, typer.Option("--quick", help="Small budgets (minutes).")] = False,
    workers: WorkersOpt = DEFAULT_WORKERS,
) -> None:
    """Run every experiment marked reproduce = true (what `make reproduce` calls)."""
    from safeknob.stages import pipeline

    _guard(lambda: pipeline.reproduce(data, quick_mode, force, quiet, workers))


@app.command("calibrate")
def calibrate(
    method: Annotated[
        str,
        typer.Option("--method", "-m", help="Method column of eval/results.csv, e.g. budget-env."),
    ] = "budget-env",
    experiment: ExperimentOpt = None,
    data: DataOpt = DEFAULT_DATA,
    quiet: QuietOpt = False,
) -> None:
    """Measure a method's response curve and store the map that calibrates its knob."""
    from safeknob.stages import calibrate as stage

    _guard(
        lambda: stage.run(
            stage.CalibrateConfig(_run_config(experiment, data, False, quiet), method)
        )
    )


@app.command("sweep")
def sweep(
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            "-e",
            help="Experiment name or TOML path; repeat for several (default: the default one).",
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated, e.g. mixture,bc-mix,budget-env (default: the experiment's).",
        ),
    ] = None,
    alphas: Annotated[
        str | None, typer.Option("--alphas", help="Comma-separated grid, e.g. 0,0.25,0.5,0.75,1")
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Comma-separated training seeds (default: the experiment's)."),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="local (process pool) or ray (Ray core tasks).")
    ] = "local",
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Jobs in parallel (one torch thread each).")
    ] = DEFAULT_WORKERS,
    address: Annotated[
        str | None,
        typer.Option("--address", help="With --backend ray: cluster to join (auto or host:port)."),
    ] = None,
    data: DataOpt = DEFAULT_DATA,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a grid of (experiment x method x alpha x seed) blend jobs in parallel, then evaluate."""
    from safeknob.errors import UserError
    from safeknob.stages import blend as blend_stage
    from safeknob.stages import sweep as stage

    def go():
        exps = tuple(_run_config(e, data, force, quiet).experiment for e in (experiment or [None]))
        ms = tuple(m.strip() for m in methods.split(",") if m.strip()) if methods else None
        if methods is not None and not ms:
            raise UserError("empty --methods; use e.g. --methods mixture,bc-mix")
        grid = blend_stage.parse_alphas(alphas) if alphas is not None else None
        sd = None
        if seeds is not None:
            try:
                sd = tuple(dict.fromkeys(int(s) for s in seeds.split(",") if s.strip()))
            except ValueError:
                raise UserError(
                    f"malformed seed list {seeds!r}; use comma-separated integers, e.g. 0,1,2"
                ) from None
            if not sd:
                raise UserError("empty --seeds; use comma-separated integers, e.g. 0,1,2")
        if address is not None and backend != "ray":
            raise UserError("--address needs --backend ray")
        return stage.run(
            stage.SweepConfig(
                exps, data, ms, grid, sd, backend.lower(), workers, address, force, quiet
            )
        )

    _guard(go)


def main() -> None:
    """Console-script entry point."""
    from safeknob.training import set_threads

    set_threads()
    app(prog_name="safeknob")


if __name__ == "__main__":  # pragma: no cover
    main()
