"""Stage ``collect-demos``: roll both experts out and save each as an on-disk dataset that
keeps the per-step cost (or import demonstrations recorded elsewhere with ``--from``)."""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from safeknob import data, hdf5_io, minari_io, schemas, seeding
from safeknob.artifacts import (
    ROLES,
    ArtifactError,
    atomic_dir,
    checksum,
    make_meta,
    normalize,
    stage_config,
    up_to_date,
    write_json,
)
from safeknob.config import RunConfig
from safeknob.envs import make_env
from safeknob.errors import UserError
from safeknob.evaluation.metrics import episode_stats
from safeknob.evaluation.rollout import PolicyAgent, rollout
from safeknob.rl.training import env_factory
from safeknob.stages.common import console, progress_bar, write_config
from safeknob.stages.train_experts import SECTIONS as EXPERT_SECTIONS
from safeknob.store import FIX_DEMOS as FIX
from safeknob.store import ExperimentStore

STAGE = "collect-demos"


@dataclass(frozen=True)
class CollectConfig:
    run: RunConfig
    """Experiment, data folder, force, quiet."""
    source: Path | None = None
    """Import this imitation dataset instead of rolling the expert out."""
    role: str | None = None
    """Which expert the imported dataset belongs to (``safe`` or ``reckless``)."""
    max_cost: float | None = None
    """With ``hdf5:`` sources: the safe role's budget on an episode's cost (default: the
    experiment's ``experts.cost_limit``)."""


def _advance(progress: Any, task: Any, n: int) -> None:
    progress.update(task, advance=n)


def summarize(trajs: list[Any], seed: int = 0) -> dict[str, Any]:
    rets = np.array([float(np.sum(t.rews)) for t in trajs])
    costs = np.array([float(np.sum(data.costs(t))) for t in trajs])
    return {
        "episodes": len(trajs),
        "transitions": int(sum(len(t.acts) for t in trajs)),
        **episode_stats(rets, costs, seed),
        "cost_storage": "infos[t]['cost'] (float)",
    }


def check_experts_current(rc: RunConfig) -> None:
    """Refuse experts trained under another config: their demonstrations would be stale."""
    want = normalize({s: rc.experiment.to_dict()[s] for s in EXPERT_SECTIONS})
    for role in ROLES:
        try:
            got = json.loads((rc.paths.expert(role) / "meta.json").read_text()).get("config")
            got = normalize({s: got.get(s) for s in EXPERT_SECTIONS})
        except (OSError, json.JSONDecodeError, AttributeError):
            continue  # missing or corrupt: ExperimentStore.expert says so
        if got != want:
            raise ArtifactError(
                f"{rc.paths.expert(role)} was trained with a different config; run "
                "`safeknob train-experts --force` first"
            )


def run(cc: CollectConfig) -> Path:
    """Record (or import) demonstrations; returns ``demos/``."""
    rc = cc.run
    if cc.source is not None:
        return import_demos(cc)
    if cc.max_cost is not None:
        raise UserError("--max-cost applies to --from hdf5:PATH only")
    exp = rc.experiment
    check_experts_current(rc)
    config = stage_config(exp, "env", "ppo", "lagrange", "experts", "demos")
    todo = [
        r
        for r in ROLES
        if not up_to_date(rc.paths.demos(r) / "manifest.json", config, rc.force, FIX)
    ]
    store = ExperimentStore(rc)
    models = {role: store.expert(role) for role in todo}
    if todo:
        write_config(rc)
    with progress_bar(rc.quiet) as progress:
        for role in todo:
            model, meta = models[role]
            task = progress.add_task(f"{role} demos", total=exp.demos.episodes)
            t0 = time.perf_counter()
            seed = seeding.derive(exp.seed, "demos", role)
            res = rollout(
                PolicyAgent(model, bool(meta.get("deterministic", True))),
                env_factory(exp.env),
                exp.demos.episodes,
                seed,
                record=True,
                progress=functools.partial(_advance, progress, task),
            )
            trajs = data.to_trajectories(res.episodes)
            with atomic_dir(rc.paths.demos(role)) as tmp:
                data.save(tmp, trajs)
                manifest = make_meta(
                    STAGE,
                    config,
                    seed,
                    inputs={"expert": rc.paths.expert(role) / "model.zip"},
                    wall_seconds=time.perf_counter() - t0,
                    role=role,
                    expert=str(rc.paths.expert(role)),
                    source="rollout",
                    summary=summarize(trajs, seed),
                )
                write_json(tmp / "manifest.json", manifest)
    if not rc.quiet:
        for role in ROLES:
            print_info(rc.paths.demos(role))
    return rc.paths.root / "demos"


def import_demos(cc: CollectConfig) -> Path:
    """Validate a dataset recorded elsewhere against the experiment's env and copy it in."""
    rc = cc.run
    if cc.role not in ROLES:
        raise UserError(f"--role must be one of {', '.join(ROLES)} with --from, got {cc.role!r}")
    src = Path(cc.source)  # type: ignore[arg-type]
    fix = (
        "re-record it (one finite cost >= 0 per step in infos[t]['cost']) or pick the "
        "--experiment it was recorded with"
    )
    from_minari = str(cc.source).startswith("minari:")
    from_hdf5 = str(cc.source).startswith("hdf5:")
    selection = None
    if cc.max_cost is not None and not from_hdf5:
        raise UserError("--max-cost applies to --from hdf5:PATH only")
    try:
        if from_hdf5:
            src = Path(str(cc.source)[len("hdf5:") :])
            max_cost = rc.experiment.experts.cost_limit if cc.max_cost is None else cc.max_cost
            trajs, selection = hdf5_io.load_selected(
                src, cc.role, rc.experiment.demos.episodes, max_cost
            )
        elif from_minari:
            trajs = minari_io.load(str(cc.source)[len("minari:") :])
        else:
            trajs = data.load(src)
    except ArtifactError as exc:
        if from_minari or from_hdf5:
            raise

        reason = str(exc).split(";")[0]
        raise ArtifactError(
            f"--from: {reason}; pass a folder saved by imitation.data.serialize.save "
            "(e.g. data/<experiment>/demos/<role>)"
        ) from None
    env = make_env(rc.experiment.env.id, dict(rc.experiment.env.kwargs), rc.experiment.env.cost_fn)
    data.check_compatible(trajs, env, str(src), fix)
    env.close()
    dest = rc.paths.demos(cc.role)
    if dest.exists() and not rc.force:
        raise ArtifactError(f"{dest} already exists; add --force to replace it")
    if selection is not None and len(trajs) < rc.experiment.demos.episodes and not rc.quiet:
        console.print(
            f"[yellow]warning:[/] only {len(trajs)} episodes of {src} qualify as "
            f"{cc.role} demonstrations ({rc.experiment.demos.episodes} wanted)"
        )
    write_config(rc)
    with atomic_dir(dest) as tmp:
        if from_minari or from_hdf5:
            data.save(tmp, trajs)
        else:
            for f in src.iterdir():
                if f.is_file() and f.name != "manifest.json":
                    shutil.copy2(f, tmp / f.name)
        manifest = make_meta(
            STAGE,
            stage_config(rc.experiment, "env", "demos"),
            rc.experiment.seed,
            inputs={} if from_minari else {"source": src},
            role=cc.role,
            source=(
                str(cc.source)
                if from_minari
                else f"hdf5:{src.resolve()}"
                if from_hdf5
                else str(src.resolve())
            ),
            summary=summarize(trajs),
            **({"selection": selection} if selection is not None else {}),
        )
        write_json(tmp / "manifest.json", manifest)
    if not rc.quiet:
        print_info(dest)
    return dest


def print_info(path: Path) -> None:
    """``safeknob demos info``: a table of a demonstration folder's manifest."""
    path = Path(path)
    trajs = data.load(path)  # a truncated or corrupt dataset fails here, manifest or not
    if not data.has_costs(trajs):
        raise ArtifactError(f"{path} has no per-step cost in its infos; record it with `{FIX}`")
    mpath = path / "manifest.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError:
            raise ArtifactError(f"{mpath} is corrupt; re-run `{FIX} --force`") from None
        need = {"summary": schemas.DEMOS_MANIFEST["summary"]}
        summary = schemas.check(manifest, need, mpath, FIX)["summary"]
        title = f"{path} ({manifest.get('role', '?')} expert, seed {manifest.get('seed')})"
    else:
        summary = summarize(trajs)
        title = f"{path} (no manifest; computed from the dataset)"
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("episodes", str(summary["episodes"]))
    table.add_row("transitions", str(summary["transitions"]))
    table.add_row(
        "return (95% CI)",
        f"{summary['return_mean']:.3f} [{summary['return_lo']:.3f}, {summary['return_hi']:.3f}]",
    )
    table.add_row(
        "cost (95% CI)",
        f"{summary['cost_mean']:.3f} [{summary['cost_lo']:.3f}, {summary['cost_hi']:.3f}]",
    )
    table.add_row("cost stored as", summary.get("cost_storage", "infos[t]['cost']"))
    console.print(table)


def dataset_checksum(path: Path) -> str:
    return checksum(path)
