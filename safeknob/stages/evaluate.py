"""Stage ``evaluate``: roll out every expert and blended agent, write ``eval/results.csv``
(one row per method, alpha, seed) and ``eval/summary.csv`` (one row per method)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from safeknob import parallel
from safeknob.artifacts import atomic_dir, write_json
from safeknob.config import RunConfig
from safeknob.envs import make_env, tabular_model
from safeknob.envs.frontier import Frontier, fingerprint
from safeknob.evaluation.metrics import (
    RESULT_COLUMNS,
    SUMMARY_COLUMNS,
    ExpertStats,
    chord_gain,
    episode_stats,
    frontier_gap,
    position,
    seed_interval,
    summarize_method,
)
from safeknob.evaluation.rollout import Agent, PolicyAgent, rollout
from safeknob.methods import BlendContext, load_blend
from safeknob.rl.training import env_factory
from safeknob.stages.common import console, progress_bar
from safeknob.store import ExperimentStore


def exact_frontier(rc: RunConfig) -> Frontier | None:
    """The env's exact frontier (cached in ``cache/frontier.json``), or None."""
    env = make_env(rc.experiment.env.id, dict(rc.experiment.env.kwargs), rc.experiment.env.cost_fn)
    model = tabular_model(env)
    env.close()
    if model is None:
        return None
    cache = rc.paths.cache / "frontier.json"
    fp = fingerprint(model)
    if cache.is_file():
        try:
            fr = Frontier.from_dict(json.loads(cache.read_text()))
            if fr.model_id == fp:
                return fr
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    fr = Frontier.compute(model)
    write_json(cache, fr.to_dict())
    return fr


def measure(agent: Agent, rc: RunConfig, episodes: int, progress=None, task=None) -> dict[str, Any]:
    seed = rc.experiment.eval.seed
    res = rollout(
        agent,
        env_factory(rc.experiment.env),
        episodes,
        seed,
        progress=(lambda n: progress.update(task, advance=n)) if progress is not None else None,
    )
    return {
        "episodes": episodes,
        **episode_stats(res.returns, res.costs, seed, rc.experiment.eval.n_boot),
    }


def _digest(h: Any, root: Path, skip: tuple[str, ...] = ()) -> None:
    """Feed every file under ``root`` (path and bytes, sorted) into ``h``."""
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root)
        if rel.parts[0] in skip:
            continue
        h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")


def base_key(rc: RunConfig, episodes: int) -> Any:
    """The part of every measurement key shared by all agents of a run: the env, the
    evaluation settings and both experts (a mixture loads them). Computed once per run."""
    h = hashlib.sha256()
    exp = rc.experiment
    settings = {"env": repr(exp.env), "episodes": episodes, "seed": exp.eval.seed,
                "n_boot": exp.eval.n_boot}  # fmt: skip
    h.update(json.dumps(settings, sort_keys=True).encode())
    for role in ("safe", "reckless"):
        _digest(h, rc.paths.expert(role))
    return h


def measurement_key(rc: RunConfig, folder: Path, base: Any) -> str:
    """What an agent's measurement depends on: ``base`` (:func:`base_key`), its own files and
    its method's shared files (e.g. the one conditioned policy). Same key, same numbers: the
    rollouts are seeded."""
    h = base.copy()
    _digest(h, folder)
    if folder.parent.parent == rc.paths.blends:  # a blend: its method's files outside alpha-*/
        skip = tuple(p.name for p in folder.parent.iterdir() if p.name.startswith(("alpha-", ".")))
        _digest(h, folder.parent, skip + ("calibration.json",))
    return h.hexdigest()


def measure_cached(
    agent_fn,
    rc: RunConfig,
    folder: Path,
    base: Any,
    episodes: int,
    progress=None,
    task=None,
    key: str | None = None,
) -> dict[str, Any]:
    """``measure`` with a per-agent cache under ``cache/eval/``: an agent whose files, experts
    and evaluation settings are unchanged is not rolled out again. ``key``: its
    :func:`measurement_key`, when already computed."""
    key = key or measurement_key(rc, folder, base)
    row = cached(rc, folder, key)
    if row is not None:
        if progress is not None:
            progress.update(task, advance=episodes)
        return row
    row = measure(agent_fn(), rc, episodes, progress, task)
    write_json(cache_path(rc, folder), {"key": key, "row": row})
    return row


def cache_path(rc: RunConfig, folder: Path) -> Path:
    """Where :func:`measure_cached` keeps an agent's measurement."""
    rel = folder.relative_to(rc.paths.root)
    return rc.paths.cache / "eval" / ("__".join(rel.parts) + ".json")


def cached(rc: RunConfig, folder: Path, key: str) -> dict[str, Any] | None:
    """The stored measurement of ``folder`` under ``key``, or None."""
    cache = cache_path(rc, folder)
    if cache.is_file():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("key") == key:
                return dict(stored["row"])
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    return None


def _measure_job(job: tuple[BlendContext, Path, str, int]) -> None:
    """A pool job: roll out one blended agent and store its measurement in the cache."""
    ctx, folder, key, episodes = job
    _, _, agent = load_blend(ctx, folder)
    rc = ctx.run
    write_json(cache_path(rc, folder), {"key": key, "row": measure(agent, rc, episodes)})


def _measure_on_pool(ctx: BlendContext, keys: dict[Path, str], workers: int) -> None:
    """Measure the blended agents without a stored measurement (``keys``: folder ->
    :func:`measurement_key`) on ``workers`` processes (the same seeded rollouts as in this
    process, so the same numbers)."""
    rc = ctx.run
    n = rc.experiment.eval.episodes
    bare = dataclasses.replace(ctx, cache={})  # sent with every job: no loaded agents
    jobs = [(bare, f, key, n) for f, key in keys.items() if cached(rc, f, key) is None]
    if len(jobs) < 2:
        return  # not worth the processes
    with progress_bar(rc.quiet) as progress:
        task = progress.add_task(f"agents ({workers} workers)", total=len(jobs))
        parallel.Pool(
            _measure_job,
            workers,
            on_result=lambda _job, _r: progress.update(task, advance=1),
            what="an evaluate worker",
            fix="safeknob evaluate",
        ).run(jobs)


def run(rc: RunConfig, workers: int = 1) -> Path:
    """Evaluate every agent (the blended ones not measured before on ``workers`` processes);
    returns ``eval/``."""
    exp = rc.experiment
    n = exp.eval.episodes
    # Checks first, so bad input changes nothing on disk.
    store = ExperimentStore(rc)
    experts = {role: store.expert(role) for role in ("safe", "reckless")}
    ctx = BlendContext.create(rc)  # needs the demonstrations
    folders = store.blend_folders()
    blends = [(f, *load_blend(ctx, f)) for f in folders]
    frontier = exact_frontier(rc)
    base = base_key(rc, n)
    keys = {f: measurement_key(rc, f, base) for f in folders}  # hashed once
    if workers > 1:
        _measure_on_pool(ctx, keys, workers)

    rows: list[dict[str, Any]] = []
    with progress_bar(rc.quiet) as progress:
        overall = progress.add_task("agents", total=2 + len(blends))
        stats: dict[str, dict[str, Any]] = {}
        for role in ("safe", "reckless"):
            model, meta = experts[role]
            task = progress.add_task(f"expert-{role}", total=n)
            stats[role] = measure_cached(
                lambda m=model, d=bool(meta.get("deterministic", True)): PolicyAgent(m, d),
                rc, rc.paths.expert(role), base, n, progress, task,
            )  # fmt: skip
            stats[role].update(
                method=f"expert-{role}",
                alpha=1.0 if role == "reckless" else 0.0,
                seed=int(meta["seed"]),
                train_seconds=float(meta.get("wall_seconds") or 0.0),
            )
            progress.update(overall, advance=1)
        ref = ExpertStats(
            stats["safe"]["return_mean"], stats["safe"]["cost_mean"],
            stats["reckless"]["return_mean"], stats["reckless"]["cost_mean"],
        )  # fmt: skip
        rows.extend([stats["safe"], stats["reckless"]])
        for folder, _method, meta, agent in blends:
            task = progress.add_task(f"{meta['method']} alpha={meta['alpha']:.2f}", total=n)
            row = measure_cached(
                lambda a=agent: a, rc, folder, base, n, progress, task, key=keys[folder]
            )
            row.update(
                method=meta["method"],
                alpha=float(meta["alpha"]),
                seed=int(meta["seed"]),
                train_seconds=float(meta.get("train_seconds") or 0.0),
            )
            rows.append(row)
            progress.update(overall, advance=1)

    for row in rows:
        row["experiment"] = exp.name
        row["env_id"] = exp.env.id
        row["position"] = position(row["cost_mean"], ref)
        row["chord_gain"] = chord_gain(row["return_mean"], row["cost_mean"], ref)
        if frontier is not None:
            # Costs a hair below the minimum achievable (sampling noise) use the minimum.
            fr_c = max(row["cost_mean"], frontier.min_cost)
            row["frontier_return"] = float(frontier(fr_c))
            row["frontier_gap"] = frontier_gap(
                row["return_mean"], fr_c, ref, lambda c: float(frontier(c))
            )
        else:
            row["frontier_return"] = math.nan
            row["frontier_gap"] = math.nan
    results = pd.DataFrame(rows)[RESULT_COLUMNS]
    results = results.sort_values(["method", "alpha", "seed"], kind="stable").reset_index(drop=True)

    summary_rows = []
    for method, df in results.groupby("method", sort=True):
        if str(method).startswith("expert-"):
            continue
        s = summarize_method(df)
        s.update(seed_interval(df, exp.eval.n_boot, seed=exp.eval.seed))
        summary_rows.append({"experiment": exp.name, "method": method, **s})
    summary = pd.DataFrame(summary_rows, columns=SUMMARY_COLUMNS)

    with atomic_dir(rc.paths.eval) as tmp:
        results.to_csv(tmp / "results.csv", index=False, float_format="%.6g")
        summary.to_csv(tmp / "summary.csv", index=False, float_format="%.6g")
    if not rc.quiet:
        print_summary(results, summary)
    return rc.paths.eval


def print_summary(results: pd.DataFrame, summary: pd.DataFrame) -> None:
    t = Table(title="Agents (return and cost: mean [95% CI])")
    for col in ("method", "alpha", "return", "cost", "position", "chord gain", "frontier gap"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for _, r in results.iterrows():
        t.add_row(
            str(r.method), f"{r.alpha:.2f}",
            f"{r.return_mean:.3f} [{r.return_lo:.3f}, {r.return_hi:.3f}]",
            f"{r.cost_mean:.2f} [{r.cost_lo:.2f}, {r.cost_hi:.2f}]",
            _f(r.position), _f(r.chord_gain), _f(r.frontier_gap),
        )  # fmt: skip
    console.print(t)
    s = Table(title="Summary per method")
    for col in ("method", "alphas", "spearman", "violations", "calib. err (mean/max)",
                "chord gain", "frontier gap (mean/max)", "train s"):  # fmt: skip
        s.add_column(col, justify="left" if col == "method" else "right")
    for _, r in summary.iterrows():
        s.add_row(
            str(r.method), str(r.n_alphas), _f(r.spearman), str(r.violations),
            f"{_f(r.calibration_error)} / {_f(r.calibration_max)}", _f(r.chord_gain_mean),
            f"{_f(r.frontier_gap_mean)} / {_f(r.frontier_gap_max)}", f"{r.train_seconds:.0f}",
        )  # fmt: skip
    console.print(s)


def _f(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
