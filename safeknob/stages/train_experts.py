"""Stage ``train-experts``: the reckless expert (PPO on reward) and the safe expert
(PPO-Lagrangian under the experiment's episode-cost limit)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from safeknob import parallel, seeding
from safeknob.artifacts import ROLES, atomic_dir, make_meta, stage_config, up_to_date, write_json
from safeknob.config import RunConfig, tb_dir
from safeknob.envs import make_env
from safeknob.evaluation.metrics import episode_stats
from safeknob.evaluation.rollout import PolicyAgent, rollout
from safeknob.rl.training import env_factory, train_ppo
from safeknob.stages.common import console, progress_bar, write_config
from safeknob.store import EXPERT_SECTIONS, ExperimentStore

STAGE = "train-experts"
SECTIONS = EXPERT_SECTIONS


def check_env(rc: RunConfig) -> None:
    """Fail fast (one line) on an unknown env, a bad layout or an env without a cost."""
    env_cfg = rc.experiment.env
    env = make_env(env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(1000):  # at most one (long) episode
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            break
    env.close()


def evaluate_agent(
    rc: RunConfig, model: Any, deterministic: bool, episodes: int, seed: int
) -> dict[str, float]:
    """Return and cost (mean and 95% CI) over ``episodes`` rollouts."""
    res = rollout(PolicyAgent(model, deterministic), env_factory(rc.experiment.env), episodes, seed)
    stats = episode_stats(res.returns, res.costs, seed)
    stats.pop("cost_std")
    return {"episodes": episodes, **stats, "length_mean": float(np.mean(res.lengths))}


def run(rc: RunConfig, workers: int = 1) -> Path:
    """Train (or keep, when up to date) both experts, on ``workers`` processes (one per
    role); returns ``experts/``."""
    exp = rc.experiment
    paths = rc.paths
    config = stage_config(exp, *SECTIONS)
    todo = [
        role
        for role in ROLES
        if not up_to_date(
            paths.expert(role) / "meta.json", config, rc.force, "safeknob train-experts"
        )
    ]
    if todo:
        check_env(rc)
        write_config(rc)
    if workers > 1 and len(todo) > 1:
        with progress_bar(rc.quiet) as progress:
            task = progress.add_task(f"experts ({workers} workers)", total=len(todo))
            parallel.Pool(
                _role_job,
                workers,
                progress=progress,
                on_result=lambda _job, _r: progress.update(task, advance=1),
                what="a train-experts worker",
                fix="safeknob train-experts",
            ).run([(rc.replace(quiet=True), role) for role in todo])
    else:
        with progress_bar(rc.quiet) as progress:
            for role in todo:
                _train_role(rc, role, progress)
    if not rc.quiet:
        print_experts(rc)
    return paths.root / "experts"


def _role_job(job: tuple[RunConfig, str]) -> None:
    """A pool job: train one expert in a worker process, progress relayed to the parent."""
    rc, role = job
    _train_role(rc, role, parallel.relay(role))


def _train_role(rc: RunConfig, role: str, progress: Any) -> None:
    """Train, evaluate and save one expert (``experts/<role>/``)."""
    exp = rc.experiment
    config = stage_config(exp, *SECTIONS)
    steps = {"reckless": exp.experts.reckless_steps, "safe": exp.experts.safe_steps}
    task = progress.add_task(f"{role} expert", total=steps[role]) if progress else None
    t0 = time.perf_counter()
    seed = seeding.derive(exp.seed, "experts", role)
    budget = exp.experts.cost_limit if role == "safe" else None
    res = train_ppo(
        exp,
        steps[role],
        seed,
        budget=budget,
        progress=progress,
        task=task,
        tb_dir=tb_dir(rc, STAGE, role),
    )
    train_seconds = time.perf_counter() - t0
    stats = evaluate_agent(
        rc, res.model, exp.experts.deterministic, exp.experts.eval_episodes, exp.eval.seed
    )
    with atomic_dir(rc.paths.expert(role)) as tmp:
        res.model.save(tmp / "model.zip")
        meta = make_meta(
            STAGE,
            config,
            exp.seed,
            wall_seconds=train_seconds,
            train_seed=seed,
            role=role,
            steps=steps[role],
            cost_limit=budget,
            deterministic=exp.experts.deterministic,
            final_lambda=res.final_lambda,
            lagrange_history=res.history,
            evaluation=stats,
        )
        write_json(tmp / "meta.json", meta)


def print_experts(rc: RunConfig) -> None:
    table = Table(title=f"Experts of {rc.experiment.name}")
    for col in ("expert", "return (95% CI)", "cost (95% CI)", "cost limit", "train s"):
        table.add_column(col, justify="right" if col != "expert" else "left")
    store = ExperimentStore(rc)
    for role in ROLES:
        meta = store.expert_meta(role)  # checked: a hand-edited meta is one error line
        ev = meta["evaluation"]
        table.add_row(
            role,
            f"{ev['return_mean']:.3f} [{ev['return_lo']:.3f}, {ev['return_hi']:.3f}]",
            f"{ev['cost_mean']:.3f} [{ev['cost_lo']:.3f}, {ev['cost_hi']:.3f}]",
            "-" if meta["cost_limit"] is None else f"{meta['cost_limit']:g}",
            f"{meta.get('wall_seconds') or 0:.0f}",
        )
    console.print(table)
