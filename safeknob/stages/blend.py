"""Stages ``train-blend`` (a grid of alphas) and ``blend`` (one alpha, evaluated briefly)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from safeknob.artifacts import (
    ArtifactError,
    alpha_dir,
    atomic_dir,
    make_meta,
    read_meta,
    write_json,
)
from safeknob.errors import UserError
from safeknob.methods import BlendContext, Method, get_method
from safeknob.metrics import ExpertStats, bootstrap_ci, position
from safeknob.rollout import Agent, rollout
from safeknob.stages.common import RunConfig, console, progress_bar, stage_config, up_to_date
from safeknob.training import env_factory

STAGE = "blend"


@dataclass(frozen=True)
class BlendRunConfig:
    run: RunConfig
    """Experiment, data folder, force, quiet."""
    method: str = "budget"
    """Blend method (``--method``)."""
    alphas: tuple[float, ...] = (0.6,)
    """Alphas to produce agents for."""
    reward: str | None = None
    """Reward source for methods that take one (``airl`` or ``env``)."""
    seed: int | None = None
    """Training seed (default: the experiment's)."""
    workers: int = 1
    """Processes training alphas in parallel (one torch thread each)."""
    calibrated: bool = False
    """Use the method's calibration map (``safeknob calibrate``) when one exists; agents then
    go to ``blends/<method>+cal/``."""


def parse_alphas(text: str) -> tuple[float, ...]:
    """``"0,0.25,0.5"`` -> (0.0, 0.25, 0.5); raises UserError on malformed or out-of-range."""
    try:
        vals = [float(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise UserError(
            f"malformed alpha list {text!r}; use comma-separated numbers, e.g. 0,0.25,0.5"
        ) from None
    if not vals:
        raise UserError("empty alpha list; use comma-separated numbers, e.g. 0,0.25,0.5")
    for a in vals:
        check_alpha(a)
    return tuple(sorted(set(vals)))


def check_alpha(alpha: float) -> None:
    if not (0.0 <= alpha <= 1.0):
        raise UserError(f"alpha must be in [0, 1], got {alpha:g}")


def demo_costs(rc: RunConfig) -> tuple[float, float]:
    """(C_safe, C_reck): the experts' mean episode costs in their demonstrations."""
    out = []
    for role in ("safe", "reckless"):
        m = read_meta(
            rc.paths.demos(role), "collect-demos", "safeknob collect-demos", "manifest.json"
        )
        out.append(float(m["summary"]["cost_mean"]))
    return out[0], out[1]


def context(rc: RunConfig, seed: int | None = None) -> BlendContext:
    c_safe, c_reck = demo_costs(rc)
    return BlendContext(
        run=rc, seed=rc.experiment.seed if seed is None else seed, c_safe=c_safe, c_reck=c_reck
    )


def seed_suffix(rc: RunConfig, seed: int) -> str:
    """``""`` for the experiment's own seed, else ``"_seed-S"``: one folder per (method, alpha,
    seed), ``blends/<method>/alpha-0.50_seed-1/``. Not ``-seed-``: ``atomic_dir`` cleans
    ``.tmp-alpha-0.50-*``, which would match a concurrent job's ``.tmp-alpha-0.50-seed-1-*``."""
    return "" if seed == rc.experiment.seed else f"_seed-{seed}"


def run(bc: BlendRunConfig) -> Path:
    """Produce one agent per alpha under ``blends/<method>/alpha-A/``; returns the method folder."""
    for a in bc.alphas:
        check_alpha(a)
    method = get_method(bc.method, bc.reward)
    rc = bc.run
    ctx = context(rc, bc.seed)
    config = {
        **stage_config(rc.experiment, "env", "ppo", "lagrange", "experts", "demos", "blend"),
        "method": method.name,
        "train_seed": ctx.seed,
    }
    cal = None
    if bc.calibrated:
        from safeknob.stages.calibrate import load_map

        cal = load_map(rc, method.name)
    out_name = f"{method.name}+cal" if cal is not None else method.name
    sfx = seed_suffix(rc, ctx.seed)
    internal = {a: (cal.internal(a) if cal is not None else a) for a in bc.alphas}
    if cal is not None and not rc.quiet:
        for a in bc.alphas:
            console.print(
                f"using the calibration map of {method.name}: alpha {a:g} -> internal setting "
                f"{internal[a]:.3f}"
            )
    todo = [
        a
        for a in bc.alphas
        if not up_to_date(
            rc.paths.blends / out_name / (alpha_dir(a) + sfx) / "meta.json",
            {**config, "alpha": a, "internal_alpha": internal[a]},
            rc.force,
            f"safeknob blend --method {bc.method} --alpha {a:g}",
        )
    ]
    needs = getattr(method, "needs_rewards", ())
    from safeknob import rewards

    # Missing rewards are learned here, once, before any fan-out; a reward that failed its
    # re-optimization check stops the stage (the same seed would fail the same way again).
    missing = [r for r in needs if rewards.reward_status(rc, r) == "missing"]
    if todo:
        for r in needs:
            if r not in missing:
                rewards.require_usable(rc, r)
    if todo and missing:
        if not rc.quiet:
            console.print(
                f"{method.name} needs learned rewards ({', '.join(missing)}): running "
                "`safeknob learn-rewards` first"
            )
        rewards.run(rc, tuple(needs), workers=bc.workers)
    steps = method.steps(ctx)
    if bc.workers > 1 and method.trains and method.name != "conditioned" and len(todo) > 1:
        _run_parallel(bc, todo)
        return rc.paths.blends / out_name
    with progress_bar(rc.quiet or not todo) as progress:
        overall = progress.add_task(f"{method.name} blends", total=len(todo))
        for a in todo:
            task = progress.add_task(f"alpha={a:.2f}", total=max(steps, 1)) if steps else None
            ctx.progress, ctx.task = progress, task
            t0 = time.perf_counter()
            with atomic_dir(rc.paths.blends / out_name / (alpha_dir(a) + sfx)) as tmp:
                extra = method.train(ctx, internal[a], tmp)
                meta = make_meta(
                    STAGE,
                    {**config, "alpha": a, "internal_alpha": internal[a]},
                    ctx.seed,
                    wall_seconds=time.perf_counter() - t0,
                    method=out_name,
                    method_arg=bc.method,
                    reward=bc.reward,
                    alpha=a,
                    internal_alpha=internal[a],
                    calibrated=cal is not None,
                    budget=ctx.budget(internal[a]),
                    c_safe=ctx.c_safe,
                    c_reck=ctx.c_reck,
                    train_seconds=time.perf_counter() - t0 if method.trains else 0.0,
                    **extra,
                )
                write_json(tmp / "meta.json", meta)
            if task is not None:
                progress.remove_task(task)
            progress.update(overall, advance=1)
    return rc.paths.blends / out_name


def _one_alpha(bc: BlendRunConfig) -> float:
    from safeknob.training import set_threads

    set_threads()
    run(bc)
    return bc.alphas[0]


def _run_parallel(bc: BlendRunConfig, todo: list[float]) -> None:
    """Train one alpha per job on a process pool; each job writes only its own folder."""
    import dataclasses
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    quiet_rc = dataclasses.replace(bc.run, quiet=True)
    jobs = [dataclasses.replace(bc, run=quiet_rc, alphas=(a,), workers=1) for a in todo]
    with progress_bar(bc.run.quiet) as progress:
        task = progress.add_task(f"{bc.method} blends ({bc.workers} workers)", total=len(jobs))
        from safeknob.training import die_with_parent

        with ProcessPoolExecutor(
            bc.workers,
            mp_context=mp.get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(_one_alpha, j) for j in jobs]
            for fut in as_completed(futures):
                fut.result()
                progress.update(task, advance=1)


def load_blend(ctx: BlendContext, folder: Path) -> tuple[Method, dict, Agent]:
    """The agent stored in a blend folder (checked)."""
    meta = read_meta(folder, STAGE, "safeknob train-blend")
    name = str(meta.get("method_arg", meta.get("method", "")))
    method = get_method(name, meta.get("reward"))
    try:
        agent = method.load_agent(ctx, folder, meta)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken folder, whatever the cause
        raise ArtifactError(
            f"{folder} cannot be loaded ({type(exc).__name__}: {exc}); re-run "
            f"`safeknob blend --method {name} --alpha {meta.get('alpha')} --force`"
        ) from None
    return method, meta, agent


def _reference(rc: RunConfig, role: str) -> tuple[str, float, float]:
    """(label, return, cost) of one end of the knob: the trained expert's evaluation, or,
    when the demonstrations were imported (``collect-demos --from``) and no expert was
    trained, the imported demonstrations' means."""
    path = rc.paths.expert(role) / "meta.json"
    if path.is_file():
        ev = json.loads(path.read_text())["evaluation"]
        return f"expert-{role}", ev["return_mean"], ev["cost_mean"]
    m = read_meta(rc.paths.demos(role), "collect-demos", "safeknob collect-demos", "manifest.json")
    return f"demos-{role}", float(m["summary"]["return_mean"]), float(m["summary"]["cost_mean"])


def blend_one(bc: BlendRunConfig, episodes: int = 100) -> Path:
    """``safeknob blend --alpha A``: produce the agent, evaluate it briefly, show where it sits."""
    folder_root = run(bc)
    rc = bc.run
    alpha = bc.alphas[0]
    ctx = context(rc, bc.seed)
    folder = folder_root / (alpha_dir(alpha) + seed_suffix(rc, ctx.seed))
    _, _, agent = load_blend(ctx, folder)
    seed = rc.experiment.eval.seed
    make = env_factory(rc.experiment.env)
    rows = []
    for role in ("safe", "reckless"):
        rows.append(_reference(rc, role))
    res = rollout(agent, make, episodes, seed)
    r = bootstrap_ci(res.returns, seed=seed)
    c = bootstrap_ci(res.costs, seed=seed)
    experts = ExpertStats(rows[0][1], rows[0][2], rows[1][1], rows[1][2])
    table = Table(title=f"{folder_root.name} at alpha={alpha:g} ({episodes} episodes)")
    for col in ("agent", "return", "cost", "position"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    table.add_row(rows[0][0], f"{rows[0][1]:.3f}", f"{rows[0][2]:.3f}", "0.00")
    table.add_row(
        f"[bold]{folder_root.name} alpha={alpha:g}[/]",
        f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]",
        f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]",
        f"{position(c[0], experts):.2f}",
    )
    table.add_row(rows[1][0], f"{rows[1][1]:.3f}", f"{rows[1][2]:.3f}", "1.00")
    if not rc.quiet:
        console.print(table)
        console.print(f"saved in {folder}")
    return folder
