"""Stages ``train-blend`` (a grid of alphas) and ``blend`` (one alpha, evaluated briefly)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from safeknob import parallel
from safeknob.artifacts import (
    alpha_dir,
    atomic_dir,
    make_meta,
    stage_config,
    up_to_date,
    write_json,
)
from safeknob.config import ExperimentConfig, RunConfig
from safeknob.errors import UserError
from safeknob.evaluation.metrics import ExpertStats, bootstrap_ci, position
from safeknob.evaluation.rollout import rollout
from safeknob.methods import BlendContext, get_method, load_blend
from safeknob.methods.base import Method
from safeknob.rl.batched_ppo import AgentFailure
from safeknob.rl.training import env_factory
from safeknob.stages import learn_rewards
from safeknob.stages.common import console, progress_bar
from safeknob.store import ExperimentStore

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
    """One training seed (a label); default: every seed of the experiment's ``[blend] seeds``."""
    workers: int = 1
    """Processes training (alpha, seed) jobs in parallel (one torch thread each)."""
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
    return tuple(sorted({v + 0.0 for v in vals}))  # + 0.0: -0 is 0


def check_alpha(alpha: float) -> None:
    if not (0.0 <= alpha <= 1.0):
        raise UserError(f"alpha must be in [0, 1], got {alpha:g}")


def run(bc: BlendRunConfig) -> Path:
    """Produce one agent per (alpha, seed) under ``blends/<method>/alpha-A[_seed-S]/`` (every
    seed of ``[blend] seeds`` unless ``bc.seed`` names one) on ``bc.workers`` processes;
    returns the method folder."""
    return run_all([bc], bc.workers)[0]


def run_all(bcs: Sequence[BlendRunConfig], workers: int = 1) -> list[Path]:
    """Train several methods' agents, every (method, alpha, seed), on one process pool of
    ``workers`` processes (``workers=1``: one after another, in order); returns each method's
    folder.

    One pool for all methods, so no worker idles while another finishes the last job of a
    method. A job is one (alpha, seed), or one seed of a method whose one policy serves every
    alpha (``conditioned``) or that trains its alphas in one batch (``Method.batches``). Jobs start longest first (longest-processing-time scheduling,
    Graham 1969), estimated from the method's registered ``cost`` (x the alphas its one
    policy serves), so the pool does not end on one long job with the other workers idle.
    Learned rewards the methods need are made once, before the fan-out.

    Every agent is checked before any training (in this process): an agent made with
    another config raises ArtifactError, a learned reward that failed its gate
    RewardCheckError; missing learned rewards are learned once, only for methods with agents
    to train. Raises UserError for an alpha outside [0, 1] or an unknown method."""
    methods = []
    for bc in bcs:
        for a in bc.alphas:
            check_alpha(a)
        methods.append(get_method(bc.method, bc.reward))
    plans = _check(bcs, methods, workers)
    folders = [bc.run.paths.blends / ps[0].out_name for bc, ps in zip(bcs, plans, strict=True)]
    if workers <= 1:
        for ps in plans:
            for p in ps:
                _train(p)
        return folders
    pool_jobs: list[tuple[float, BlendRunConfig]] = []
    for method, ps in zip(methods, plans, strict=True):
        for p in ps:
            if not p.todo:  # up to date: not sent to the pool
                continue
            if not method.trains:  # nothing to train (mixture): write its folders here
                _train(p)
            elif method.shared_policy:
                pool_jobs.append((method.cost * len(p.bc.alphas), p.bc))
            elif method.batches(p.ctx):  # one batch per seed: its alphas still to train
                batch = dataclasses.replace(p.bc, alphas=tuple(p.todo))
                pool_jobs.append((method.cost * len(p.todo), batch))
            else:
                pool_jobs += [(method.cost, dataclasses.replace(p.bc, alphas=(a,))) for a in p.todo]
    pool_jobs.sort(key=lambda wj: -wj[0])  # stable: ties keep the methods' order
    if len(pool_jobs) == 1:  # not worth a process
        _train(_plan(pool_jobs[0][1]))
    elif pool_jobs:
        _run_parallel([j for _, j in pool_jobs], workers, bcs[0].run.quiet)
    return folders


def _check(bcs: Sequence[BlendRunConfig], methods: list[Method], workers: int) -> list[list[_Plan]]:
    """Every (method, seed)'s plan, made before any training; the learned rewards of methods
    with agents to train are learned (when missing) or checked (:func:`_ensure_rewards`)."""
    plans = [[_plan(dataclasses.replace(bc, seed=s)) for s in _seeds(bc)] for bc in bcs]
    if any(p.todo for ps in plans for p in ps):
        _check_ends(bcs[0].run)
    for bc, method, ps in zip(bcs, methods, plans, strict=True):
        if any(p.todo for p in ps):
            _ensure_rewards(bc.run, method, workers)
        if ps[0].cal is not None and not bc.run.quiet:
            for a in bc.alphas:
                console.print(
                    f"using the calibration map of {method.name}: alpha {a:g} -> internal "
                    f"setting {ps[0].internal[a]:.3f}"
                )
    return plans


def _check_ends(rc: RunConfig) -> None:
    """The two ends of the knob as ``evaluate`` will read them: trained experts must have been
    made with this experiment's ``[env]``, ``[ppo]``, ``[lagrange]`` and ``[experts]`` (else
    imported demonstrations); raises ArtifactError before training agents that ``evaluate``
    would then refuse to measure against them."""
    store = ExperimentStore(rc)
    for role in ("safe", "reckless"):
        store.reference(role)


def _ensure_rewards(rc: RunConfig, method: Method, workers: int) -> None:
    """The learned rewards ``method`` needs: learned now when missing (``learn-rewards``),
    else checked; raises RewardCheckError for one that failed its re-optimization gate (the
    same seed would fail the same way again)."""
    needs = method.learned_rewards
    store = ExperimentStore(rc)
    missing = [r for r in needs if store.reward_status(r) == "missing"]
    for r in needs:
        if r not in missing:
            store.require_usable(r)
    if missing:
        if not rc.quiet:
            console.print(
                f"{method.name} needs learned rewards ({', '.join(missing)}): running "
                "`safeknob learn-rewards` first"
            )
        learn_rewards.run(rc, needs, workers=workers)


def _seeds(bc: BlendRunConfig) -> tuple[int, ...]:
    return (bc.seed,) if bc.seed is not None else bc.run.experiment.blend.seeds


@dataclass
class _Plan:
    """What :func:`_train` will do for one training seed: the alphas not up to date."""

    bc: BlendRunConfig
    method: Method
    ctx: BlendContext
    config: dict
    cal: Any
    out_name: str
    sfx: str
    internal: dict[float, float]
    todo: list[float]


def agent_config(exp: ExperimentConfig, method: Method, train_seed: int) -> dict[str, Any]:
    """The settings a blended agent of ``method`` depends on, as its ``meta.json`` records
    them (add ``alpha`` and ``internal_alpha``): the experiment's sections the experts,
    demonstrations and agent were made with, plus ``[rewards]`` for a learned reward (same
    settings, same deterministic rewards). An agent whose record differs is stale."""
    config = {
        **stage_config(exp, "env", "ppo", "lagrange", "experts", "demos", "blend"),
        "method": method.name,
        "train_seed": train_seed,
    }
    if method.learned_rewards:
        config.update(stage_config(exp, "rewards"))
    return config


def _plan(bc: BlendRunConfig) -> _Plan:
    """The agents of ``bc`` (one training seed) still to train; raises ArtifactError for an
    agent made with a different config (without ``--force``)."""
    method = get_method(bc.method, bc.reward)
    rc = bc.run
    store = ExperimentStore(rc)
    ctx = BlendContext.create(rc, bc.seed)
    config = agent_config(rc.experiment, method, ctx.seed)
    cal = store.calibration_map(method.name) if bc.calibrated else None
    out_name = f"{method.name}+cal" if cal is not None else method.name
    sfx = store.seed_suffix(ctx.seed)
    internal = {a: (cal.internal(a) if cal is not None else a) for a in bc.alphas}
    todo = [
        a
        for a in bc.alphas
        if not up_to_date(
            rc.paths.blends / out_name / (alpha_dir(a) + sfx) / "meta.json",
            {**config, "alpha": a, "internal_alpha": internal[a]},
            rc.force,
            f"{_command(bc, method)} --alphas {a:g} --seed {ctx.seed}",
        )
    ]
    return _Plan(bc, method, ctx, config, cal, out_name, sfx, internal, todo)


def _command(bc: BlendRunConfig, method: Method | None = None) -> str:
    """The ``train-blend`` command that remakes ``bc``'s agents (add ``--alphas``/``--seed``
    for one of them)."""
    method = method or get_method(bc.method, bc.reward)
    reward = f" --reward {method.reward}" if method.reward else ""
    cal = " --calibrated" if bc.calibrated else ""
    return f"safeknob train-blend --method {method.key}{reward}{cal}"


def _meta(plan: _Plan, a: float, seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``meta.json`` of the agent at ``a`` (its config, budget, seconds, method extras)."""
    bc, ctx, internal = plan.bc, plan.ctx, plan.internal
    return make_meta(
        STAGE,
        {**plan.config, "alpha": a, "internal_alpha": internal[a]},
        ctx.seed,
        wall_seconds=seconds,
        method=plan.out_name,
        method_arg=bc.method,
        reward=bc.reward,
        alpha=a,
        internal_alpha=internal[a],
        calibrated=plan.cal is not None,
        budget=ctx.budget(internal[a]),
        c_safe=ctx.c_safe,
        c_reck=ctx.c_reck,
        train_seconds=seconds if plan.method.trains else 0.0,
        **extra,
    )


def _folder(plan: _Plan, a: float) -> Path:
    return plan.bc.run.paths.blends / plan.out_name / (alpha_dir(a) + plan.sfx)


def _train(plan: _Plan) -> Path:
    """Every alpha of ``plan`` still to train (one training seed), in this process: one
    batched call when the method trains in batches (:func:`_train_batch`), else one after
    another."""
    rc = plan.bc.run
    method, ctx, internal, todo = plan.method, plan.ctx, plan.internal, plan.todo
    if todo and method.batches(ctx):
        _train_batch(plan)
        return rc.paths.blends / plan.out_name
    steps = method.steps(ctx)
    with progress_bar(rc.quiet or not todo) as progress:
        overall = progress.add_task(f"{method.name} blends", total=len(todo))
        for a in todo:
            task = progress.add_task(f"alpha={a:.2f}", total=max(steps, 1)) if steps else None
            ctx.progress, ctx.task = progress, task
            t0 = time.perf_counter()
            with atomic_dir(_folder(plan, a)) as tmp:
                extra = method.train(ctx, internal[a], tmp)
                write_json(tmp / "meta.json", _meta(plan, a, time.perf_counter() - t0, extra))
            if task is not None:
                progress.remove_task(task)
            progress.update(overall, advance=1)
    return rc.paths.blends / plan.out_name


def _train_batch(plan: _Plan) -> None:
    """The alphas of ``plan`` still to train as one batch (``Method.train_batch``), then each
    agent's folder on its own (``Method.finish``, atomically). Each meta.json records the
    batch (its alphas, size, seconds and the agent's index); an agent's seconds are its share
    of the batch plus its own finishing. Agents that failed in the batch are not written;
    raises RuntimeError naming them after the others are."""
    rc = plan.bc.run
    method, ctx, todo = plan.method, plan.ctx, plan.todo
    total = max(method.steps(ctx) * len(todo), 1)
    with progress_bar(rc.quiet) as progress:
        task = progress.add_task(f"{method.name}: {len(todo)} agents in one batch", total=total)
        t0 = time.perf_counter()
        results = method.train_batch(
            ctx, [plan.internal[a] for a in todo], lambda n: progress.update(task, advance=n)
        )
        seconds = time.perf_counter() - t0
    batch = {"alphas": list(todo), "size": len(todo), "seconds": seconds}
    failed = []
    for k, (a, res) in enumerate(zip(todo, results, strict=True)):
        if isinstance(res, AgentFailure):
            failed.append(f"alpha {a:g} ({res.reason})")
            continue
        t1 = time.perf_counter()
        with atomic_dir(_folder(plan, a)) as tmp:
            extra = method.finish(ctx, plan.internal[a], tmp, res)
            share = seconds / len(todo) + time.perf_counter() - t1
            meta = _meta(plan, a, share, {**extra, "batch": {**batch, "index": k}})
            write_json(tmp / "meta.json", meta)
    if failed:
        raise RuntimeError(
            f"{method.name} seed {ctx.seed}: training failed for {', '.join(failed)}; the "
            "other agents of the batch were written"
        )


def _one_job(bc: BlendRunConfig) -> float:
    """A pool job: one (alpha, seed), or one seed's grid, in a worker process."""
    _train(_plan(bc))
    return bc.alphas[0]


def _run_parallel(jobs: list[BlendRunConfig], workers: int, quiet: bool) -> None:
    """Train the jobs on the process pool; each job writes only its own folders."""
    quiet_jobs = [dataclasses.replace(j, run=j.run.replace(quiet=True), workers=1) for j in jobs]
    names = list(dict.fromkeys(_spec(j) for j in jobs))
    fix = _command(jobs[0]) if len(names) == 1 else "safeknob run"
    with progress_bar(quiet) as progress:
        task = progress.add_task(
            f"{', '.join(names)}: {len(jobs)} jobs ({workers} workers)", total=len(jobs)
        )
        parallel.Pool(
            _one_job,
            workers,
            on_result=lambda _job, _alpha: progress.update(task, advance=1),
            what="a train-blend worker",
            fix=fix,
        ).run(quiet_jobs)


def _spec(bc: BlendRunConfig) -> str:
    """The method spec of a job (``budget-env``, ``bc-mix+cal``), as results.csv names it."""
    return get_method(bc.method, bc.reward).name + ("+cal" if bc.calibrated else "")


def blend_one(bc: BlendRunConfig, episodes: int = 100) -> Path:
    """``safeknob blend --alpha A``: produce the agent, evaluate it briefly, show where it sits."""
    rc = bc.run
    if bc.seed is None:  # one agent: the experiment's first seed
        bc = dataclasses.replace(bc, seed=rc.experiment.blend.seeds[0])
    store = ExperimentStore(rc)
    refs = {role: store.reference(role) for role in ("safe", "reckless")}  # checks first
    folder_root = run(bc)
    alpha = bc.alphas[0]
    ctx = BlendContext.create(rc, bc.seed)
    folder = folder_root / store.blend_folder(folder_root.name, alpha, ctx.seed).name
    _, _, agent = load_blend(ctx, folder)
    seed = rc.experiment.eval.seed
    make = env_factory(rc.experiment.env)
    rows = []
    for role in ("safe", "reckless"):
        rows.append(refs[role])
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
