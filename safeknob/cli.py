"""The safeknob command line: a thin Typer adapter over ``safeknob.stages``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from safeknob import hdf5_io, minari_io, tracking
from safeknob.config import (
    EvalConfig,
    RunConfig,
    apply_overrides,
    check_range,
    load_experiment,
    quick,
)
from safeknob.errors import SafeknobError, UserError
from safeknob.methods import REGISTRY, REWARD_SOURCES, check_specs, get_method
from safeknob.rl.training import set_threads
from safeknob.stages import blend as blend_stage
from safeknob.stages import calibrate as calibrate_stage
from safeknob.stages import collect_demos as collect_stage
from safeknob.stages import evaluate as evaluate_stage
from safeknob.stages import frontier as frontier_stage
from safeknob.stages import learn_rewards as rewards_stage
from safeknob.stages import pipeline
from safeknob.stages import report as report_stage
from safeknob.stages import sweep as sweep_stage
from safeknob.stages import train_experts as experts_stage
from safeknob.stages.common import console
from safeknob.store import ExperimentStore

err_console = Console(stderr=True, highlight=False)
"""Errors go to stderr: ``safeknob ... > out.log`` still shows them."""

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
    Path | None,
    typer.Option(
        "--data",
        help="Artifact root; the experiment lives in DATA/<name>/ (default: the global --data).",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config field, e.g. --set blend.steps=50000 (repeatable; TOML values, "
        "checked like the experiment file).",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo the stage even if up to date.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Override the experiment's seed.")]
TrainSeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Train only this training seed (default: every seed of the experiment's "
        "[blend] seeds; `blend`: the first).",
    ),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="Processes training alphas in parallel.")
]
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)

DEFAULT_DATA = Path(os.environ.get("SAFEKNOB_DATA", "data"))


def _guard(fn: Callable[[], Any]) -> Any:
    """Run a stage; user errors become one red line and exit code 2, no traceback."""
    try:
        out = fn()
        tracking.finish(0)
        return out
    except SafeknobError as exc:
        tracking.finish(2)
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except UnicodeError as exc:  # LANG=C and a non-ASCII path or text: not the data's fault
        tracking.finish(2)
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}: the locale's encoding cannot represent "
            "this text or path (nothing was changed); run with a UTF-8 locale, e.g. "
            "`LANG=C.UTF-8 safeknob ...` or `PYTHONUTF8=1 safeknob ...`",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        tracking.finish(130)
        err_console.print("[bold red]interrupted[/]: nothing half-written was kept")
        raise typer.Exit(130) from None
    except OSError as exc:
        tracking.finish(2)
        msg = escape(f"{exc.strerror or exc}: {exc.filename or ''}")
        err_console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
        raise typer.Exit(2) from None


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command (``safeknob --no-tensorboard run``), carried to
    every command in Typer's context object."""

    cost_fn: str | None = None
    """``module:function`` overriding the experiment's ``env.cost_fn``."""
    tensorboard: bool = True
    """Log training to ``DATA/<name>/tb/``."""
    data: Path = DEFAULT_DATA
    """Artifact root (a command's own ``--data`` wins)."""
    wandb: bool = False
    """Also log to Weights & Biases (:mod:`safeknob.tracking`)."""
    command: str | None = None
    """The command being run (the W&B run's job type)."""


@app.callback()
def _root(
    ctx: typer.Context,
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
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Artifact root for every command (default $SAFEKNOB_DATA or ./data); a "
            "command's own --data wins.",
        ),
    ] = DEFAULT_DATA,
    wandb: Annotated[
        bool,
        typer.Option(
            "--wandb",
            help="Also log to Weights & Biases: the resolved config, and what goes to "
            "TensorBoard (`make install-wandb`; WANDB_MODE=offline works offline).",
        ),
    ] = False,
) -> None:
    """Blend a reckless and a safe expert with one knob, alpha."""
    ctx.obj = GlobalOptions(
        cost_fn=cost_fn,
        tensorboard=tensorboard,
        data=data,
        wandb=wandb,
        command=ctx.invoked_subcommand,
    )


def _options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def _run_config(
    ctx: typer.Context,
    experiment: str | None,
    data: Path | None,
    force: bool,
    quiet: bool,
    seed: int | None = None,
    overrides: list[str] | None = None,
    quick_mode: bool = False,
) -> RunConfig:
    """The run config of a command: its experiment with ``--set`` overrides, ``--seed`` and
    the global ``--cost-fn`` applied, the data folder and the global flags."""
    opts = _options(ctx)
    exp = apply_overrides(load_experiment(experiment), overrides or ())
    check_specs(exp.blend.methods)
    if seed is not None:
        _check_seed(seed)
        exp = exp.replace(seed=seed)
    if opts.cost_fn:
        exp = exp.replace(env=dataclasses.replace(exp.env, cost_fn=opts.cost_fn))
    if quick_mode:
        exp = quick(exp)
    rc = RunConfig(
        experiment=exp,
        data_dir=data if data is not None else opts.data,
        force=force,
        quiet=quiet,
        tensorboard=opts.tensorboard,
    )
    if opts.wandb:
        root = rc.paths.root
        tracking.start(exp.to_dict(), exp.name, str(opts.command), root, root / "tb")
    return rc


def _check_seed(seed: int | None, label: str = "--seed") -> None:
    if seed is not None:
        check_range("seed", seed, label)


@app.command("train-experts")
def train_experts(
    ctx: typer.Context,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
    overrides: SetOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes training the two experts.")
    ] = 1,
) -> None:
    """Train the reckless expert (PPO) and the safe expert (PPO-Lagrangian)."""
    _guard(
        lambda: experts_stage.run(
            _run_config(ctx, experiment, data, force, quiet, seed, overrides), workers
        )
    )


@app.command("collect-demos")
def collect_demos(
    ctx: typer.Context,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
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
    overrides: SetOpt = None,
) -> None:
    """Roll both experts out and save their demonstrations (per-step cost kept)."""

    def go():
        rc = _run_config(ctx, experiment, data, force, quiet, overrides=overrides)
        if episodes is not None:
            exp = rc.experiment
            rc = rc.replace(
                experiment=exp.replace(demos=dataclasses.replace(exp.demos, episodes=episodes))
            )
        return collect_stage.run(collect_stage.CollectConfig(rc, source, role, max_cost))

    _guard(go)


@demos_app.command("info")
def demos_info(
    path: Annotated[
        Path, typer.Argument(help="A demonstration folder, e.g. data/hazard-grid/demos/safe")
    ],
) -> None:
    """Print a demonstration dataset's summary (episodes, return, cost)."""
    _guard(lambda: collect_stage.print_info(path))


def _method_help() -> str:
    lines = [f"{k} ({c.summary})" if c.summary else k for k, c in REGISTRY.items()]
    return "One of: " + "; ".join(lines) + "."


def _reward_help() -> str:
    takes = [f"{k}: {'/'.join(c.rewards)}" for k, c in REGISTRY.items() if c.rewards]
    return f"Reward source, {' or '.join(REWARD_SOURCES)}, of the methods that take one ({'; '.join(takes)})."


MethodOpt = Annotated[str | None, typer.Option("--method", "-m", help=_method_help())]
RewardOpt = Annotated[str | None, typer.Option("--reward", help=_reward_help())]


@app.command("blend")
def blend(
    ctx: typer.Context,
    alpha: Annotated[
        float, typer.Option("--alpha", "-a", help="0 = safe expert, 1 = reckless.")
    ] = 0.6,
    method: MethodOpt = None,
    reward: RewardOpt = None,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    seed: TrainSeedOpt = None,
    episodes: Annotated[int, typer.Option(help="Episodes of the brief evaluation.")] = 100,
    calibrated: Annotated[
        bool,
        typer.Option(
            "--calibrated/--raw", help="Use the method's calibration map when one exists."
        ),
    ] = True,
    overrides: SetOpt = None,
) -> None:
    """Produce one blended agent at ALPHA and show where it sits between the experts."""

    def go():
        rc = _run_config(ctx, experiment, data, force, quiet, overrides=overrides)
        _check_seed(seed)
        blend_stage.check_alpha(alpha)
        if episodes < 2:
            raise UserError(f"--episodes must be >= 2, got {episodes}")
        m = method or rc.experiment.blend.method
        return blend_stage.blend_one(
            blend_stage.BlendRunConfig(rc, m, (alpha,), reward, seed, calibrated=calibrated),
            episodes,
        )

    _guard(go)


@app.command("train-blend")
def train_blend(
    ctx: typer.Context,
    alphas: Annotated[
        str | None, typer.Option("--alphas", help="Comma-separated grid, e.g. 0,0.25,0.5,0.75,1")
    ] = None,
    method: MethodOpt = None,
    reward: RewardOpt = None,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    seed: TrainSeedOpt = None,
    workers: WorkersOpt = 1,
    calibrated: Annotated[
        bool,
        typer.Option(
            "--calibrated/--raw",
            help="Ask each alpha through the method's calibration map (`safeknob calibrate`); "
            "agents go to blends/<method>+cal/.",
        ),
    ] = False,
    overrides: SetOpt = None,
) -> None:
    """Train blended agents for a grid of alphas with one method."""

    def go():
        rc = _run_config(ctx, experiment, data, force, quiet, overrides=overrides)
        _check_seed(seed)
        grid = (
            blend_stage.parse_alphas(alphas) if alphas is not None else rc.experiment.blend.alphas
        )
        m = method or rc.experiment.blend.method
        if calibrated:
            name = get_method(m, reward).name
            if ExperimentStore(rc).calibration_map(name) is None:
                raise UserError(
                    f"no calibration map of {name} in {rc.paths.blends / name}; run "
                    f"`safeknob calibrate --method {name}` first (or train with --raw)"
                )
        return blend_stage.run(
            blend_stage.BlendRunConfig(
                rc, m, tuple(grid), reward, seed, workers, calibrated=calibrated
            )
        )

    _guard(go)


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    quiet: QuietOpt = False,
    episodes: Annotated[
        int | None, typer.Option(help="Episodes per agent (default: the experiment's).")
    ] = None,
    overrides: SetOpt = None,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="Processes rolling out agents in parallel."),
    ] = DEFAULT_WORKERS,
) -> None:
    """Roll out every expert and blend; write eval/results.csv and eval/summary.csv."""

    def go():
        rc = _run_config(ctx, experiment, data, False, quiet, overrides=overrides)
        if episodes is not None:
            if episodes < 2:
                raise UserError(f"--episodes must be >= 2, got {episodes}")
            ev = EvalConfig(
                episodes=episodes, seed=rc.experiment.eval.seed, n_boot=rc.experiment.eval.n_boot
            )
            rc = rc.replace(experiment=rc.experiment.replace(eval=ev))
        return evaluate_stage.run(rc, workers)

    _guard(go)


@app.command("frontier")
def frontier(
    ctx: typer.Context,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    min_gap: Annotated[
        float | None,
        typer.Option(
            "--min-gap",
            help="Exit non-zero when the coin flip's exact mean frontier gap is below this.",
        ),
    ] = None,
    reward: Annotated[
        str | None,
        typer.Option(
            "--reward",
            help="airl: what the learned task reward promises the knob (its optimum at each "
            "budget d(alpha), scored with the env's reward and cost; needs learn-rewards) "
            "beside each expert's reward and the env's.",
        ),
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Print the exact frontier's routes and the coin flip's gap below it (no training)."""

    def go():
        rc = _run_config(ctx, experiment, data, False, False, overrides=overrides)
        if reward is None:
            return frontier_stage.run(rc, min_gap)
        if reward != "airl":
            raise UserError(f"--reward must be airl, got {reward!r}")
        if min_gap is not None:
            raise UserError("--min-gap checks the exact frontier; it does not go with --reward")
        return frontier_stage.run_promise(rc)

    _guard(go)


@app.command("report")
def report(
    ctx: typer.Context,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    quiet: QuietOpt = False,
    overrides: SetOpt = None,
) -> None:
    """Write report/ (figures, report.md, self-contained report.html) from eval/."""
    _guard(
        lambda: report_stage.run(
            _run_config(ctx, experiment, data, False, quiet, overrides=overrides)
        )
    )


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

    def go():
        if fmt == "hdf5":
            dest = (
                out or Path("data/hdf5") / f"{path.resolve().parent.parent.name}-{path.name}.hdf5"
            )
            dest = hdf5_io.export(path, dest, force=force)
        elif fmt == "minari":
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
    ctx: typer.Context,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="reckless and/or safe (default: reckless).")
    ] = None,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Processes learning the roles' rewards in parallel (one each)."
        ),
    ] = DEFAULT_WORKERS,
    overrides: SetOpt = None,
) -> None:
    """Learn an AIRL reward per expert and check it by re-optimizing it with PPO (a gate)."""

    def go():
        roles = tuple(role or ["reckless"])
        for r in roles:
            if r not in ("reckless", "safe"):
                raise UserError(f"--role must be reckless or safe, got {r!r}")
        rc = _run_config(ctx, experiment, data, force, quiet, overrides=overrides)
        return rewards_stage.run(rc, roles, workers=workers)

    _guard(go)


def _split_methods(methods: str | None) -> tuple[str, ...] | None:
    """``--methods a,b`` -> ("a", "b"), checked against the registry (None when not given)."""
    if methods is None:
        return None
    ms = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not ms:
        raise UserError("empty --methods; use e.g. --methods mixture,bc-mix")
    check_specs(ms, where="--methods")
    return ms


@app.command("run")
def run_all(
    ctx: typer.Context,
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
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
    overrides: SetOpt = None,
) -> None:
    """Every stage for one experiment: experts, demos, rewards, blends, evaluate, report."""

    def go():
        rc = _run_config(
            ctx, experiment, data, force, quiet, overrides=overrides, quick_mode=quick_mode
        )
        return pipeline.run(pipeline.PipelineConfig(rc, _split_methods(methods), workers))

    _guard(go)


@app.command("reproduce")
def reproduce(
    ctx: typer.Context,
    data: DataOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    quick_mode: Annotated[bool, typer.Option("--quick", help="Small budgets (minutes).")] = False,
    workers: WorkersOpt = DEFAULT_WORKERS,
) -> None:
    """Run every experiment marked reproduce = true (what `make reproduce` calls)."""
    _guard(
        lambda: pipeline.reproduce(_run_config(ctx, None, data, force, quiet), quick_mode, workers)
    )


@app.command("calibrate")
def calibrate(
    ctx: typer.Context,
    method: Annotated[
        str,
        typer.Option("--method", "-m", help="Method column of eval/results.csv, e.g. budget-env."),
    ] = "budget-env",
    experiment: ExperimentOpt = None,
    data: DataOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure a method's response curve and store the map that calibrates its knob."""
    _guard(
        lambda: calibrate_stage.run(
            calibrate_stage.CalibrateConfig(
                _run_config(ctx, experiment, data, False, quiet), method
            )
        )
    )


def _parse_seeds(seeds: str | None) -> tuple[int, ...] | None:
    if seeds is None:
        return None
    try:
        sd = tuple(dict.fromkeys(int(s) for s in seeds.split(",") if s.strip()))
    except ValueError:
        raise UserError(
            f"malformed seed list {seeds!r}; use comma-separated integers, e.g. 0,1,2"
        ) from None
    if not sd:
        raise UserError("empty --seeds; use comma-separated integers, e.g. 0,1,2")
    for s in sd:
        _check_seed(s, "--seeds")
    return sd


@app.command("sweep")
def sweep(
    ctx: typer.Context,
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
    data: DataOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    overrides: SetOpt = None,
) -> None:
    """Run a grid of (experiment x method x alpha x seed) blend jobs in parallel, then evaluate."""

    def go():
        rcs = [
            _run_config(ctx, e, data, force, quiet, overrides=overrides)
            for e in (experiment or [None])
        ]
        ms = _split_methods(methods)
        grid = blend_stage.parse_alphas(alphas) if alphas is not None else None
        if address is not None and backend != "ray":
            raise UserError("--address needs --backend ray")
        return sweep_stage.run(
            sweep_stage.SweepConfig(
                tuple(rc.experiment for rc in rcs),
                rcs[0].data_dir,
                ms,
                grid,
                _parse_seeds(seeds),
                backend.lower(),
                workers,
                address,
                force,
                quiet,
                tensorboard=rcs[0].tensorboard,
            )
        )

    _guard(go)


def main() -> None:
    """Console-script entry point."""
    set_threads()
    app(prog_name="safeknob")


if __name__ == "__main__":  # pragma: no cover
    main()
