"""``safeknob sweep``: a grid of (experiment x method x alpha x seed) blend jobs on a local
process pool or on Ray, then one evaluation per experiment.

Shared artifacts (experts, demonstrations, learned rewards) are produced once per experiment
in this process before the fan-out, so no two jobs ever race for them. Each job then writes
only its own ``blends/<method>/alpha-A[_seed-S]/`` folder (atomically, see
:func:`safeknob.artifacts.atomic_dir`), which is why a sweep can be interrupted and resumed:
finished folders are skipped. A job that fails leaves its traceback in
``<data>/<experiment>/sweep-logs/<job>.log`` and does not stop the others. Each job also
measures its own agents into the evaluation's cache, so only the experts are measured after
the fan-out.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from safeknob import parallel
from safeknob.artifacts import alpha_dir, up_to_date
from safeknob.config import ExperimentConfig, RunConfig
from safeknob.errors import ArtifactError, UserError
from safeknob.methods import BlendContext, learned_rewards, load_blend, method_of, parse_spec
from safeknob.rl.training import set_threads
from safeknob.stages import blend, collect_demos, evaluate, learn_rewards, train_experts
from safeknob.stages.common import console, progress_bar
from safeknob.store import ExperimentStore

BACKENDS = ("local", "ray")
LOG_DIR = "sweep-logs"
EVALUATE = "evaluate"
"""Job name of an experiment's evaluation in the results (``sweep-logs/evaluate.log``)."""


@dataclass(frozen=True)
class SweepConfig:
    experiments: tuple[ExperimentConfig, ...]
    """Experiments to sweep (each with its own data folder ``data_dir/<name>``)."""
    data_dir: Path = Path("data")
    """Artifact root."""
    methods: tuple[str, ...] | None = None
    """Method specs as in ``safeknob run --methods`` (``budget-env``, ``bc-mix``, ...);
    default: each experiment's ``blend.methods``."""
    alphas: tuple[float, ...] | None = None
    """Alpha grid; default: each experiment's ``blend.alphas``."""
    seeds: tuple[int, ...] | None = None
    """Training seeds; default: each experiment's ``[blend] seeds``."""
    backend: str = "local"
    """``local`` (process pool) or ``ray`` (Ray core tasks)."""
    workers: int = 2
    """Parallel jobs (local pool size; CPUs of a local Ray instance)."""
    address: str | None = None
    """Ray cluster to join (``auto`` or ``host:port``); default: start a local instance."""
    force: bool = False
    """Redo shared artifacts and every job."""
    quiet: bool = False
    """No progress display or tables (failures are still listed)."""
    tensorboard: bool = True
    """Log training to ``<data>/<experiment>/tb/`` (``--no-tensorboard``)."""


@dataclass(frozen=True)
class Job:
    """One unit of work: one method spec at some alphas (several only for ``conditioned``,
    whose alphas share one policy) and one seed, for one experiment."""

    run: RunConfig
    spec: str
    alphas: tuple[float, ...]
    seed: int

    @property
    def id(self) -> str:
        where = f"_{alpha_dir(self.alphas[0])}" if len(self.alphas) == 1 else ""
        return f"{self.spec}{where}_seed-{self.seed}"

    @property
    def experiment(self) -> str:
        return self.run.experiment.name

    @property
    def log(self) -> Path:
        return self.run.paths.root / LOG_DIR / f"{self.id}.log"


@dataclass(frozen=True)
class JobResult:
    experiment: str
    job: str
    status: str
    """``done``, ``skipped`` (already up to date) or ``failed``."""
    seconds: float = 0.0
    log: Path | None = None
    error: str = ""


class SweepError(UserError):
    """Some jobs failed (the others finished and were evaluated)."""

    def __init__(self, message: str, results: list[JobResult]) -> None:
        super().__init__(message)
        self.results = results


# ---------------------------------------------------------------------------- the job itself


def run_job(job: Job) -> JobResult:
    """Train one job's blend folder(s) in this process (a pool worker or a Ray task).

    Never raises for a failing job: the traceback goes to ``job.log``."""
    set_threads()  # one torch thread, known-harmless upstream warnings off
    name, reward = parse_spec(job.spec)
    t0 = time.perf_counter()
    try:
        blend.run(blend.BlendRunConfig(job.run, name, job.alphas, reward, seed=job.seed))
    except Exception as exc:  # noqa: BLE001 - reported, must not stop the sweep
        return _failure(job, exc, traceback.format_exc(), time.perf_counter() - t0)
    measure(job)
    job.log.unlink(missing_ok=True)  # a stale log of an earlier failed attempt
    return JobResult(job.experiment, job.id, "done", time.perf_counter() - t0)


def measure(job: Job) -> None:
    """Roll out the job's agents into the evaluation's per-agent cache (``cache/eval/``), so
    the measuring runs in parallel too and the evaluation after the fan-out only reads it.

    Exactly what :func:`safeknob.stages.evaluate.run` would do for these folders (same
    context, same cache key, seeded rollouts). A failure here is left to that evaluation,
    which measures the agent again and reports the error."""
    rc = job.run
    try:
        ctx = BlendContext.create(rc)
        n = rc.experiment.eval.episodes
        base = evaluate.base_key(rc, n)
        for folder in _folders(job):
            _, _, agent = load_blend(ctx, folder)
            evaluate.measure_cached(lambda a=agent: a, rc, folder, base, n)
    except Exception:  # noqa: BLE001 - the evaluation redoes it and reports
        pass


def _failure(job: Job, exc: BaseException, tb: str, seconds: float = 0.0) -> JobResult:
    header = f"job {job.id} of experiment {job.experiment} (method {job.spec}, alphas "
    header += f"{list(job.alphas)}, seed {job.seed})"
    return _report_failure(job.experiment, job.id, job.log, header, exc, tb, seconds)


def _report_failure(
    experiment: str, job_id: str, log: Path, header: str, exc: BaseException, tb: str,
    seconds: float = 0.0,
) -> JobResult:  # fmt: skip
    """Write the traceback to ``log``; the result names the log and the error's first line."""
    error = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    written: Path | None = log
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{header}\n\n{tb}")
    except OSError:
        written = None
    return JobResult(experiment, job_id, "failed", seconds, written, error)


# ---------------------------------------------------------------------------- planning


def _check(sc: SweepConfig) -> None:
    """Bad input fails before anything is written."""
    if sc.backend not in BACKENDS:
        raise UserError(f"unknown backend {sc.backend!r}; choose from {', '.join(BACKENDS)}")
    if sc.workers < 1:
        raise UserError(f"--workers must be >= 1, got {sc.workers}")
    if not sc.experiments:
        raise UserError("no experiment to sweep; pass --experiment/-e")
    names = [e.name for e in sc.experiments]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"experiment {dupes[0]!r} is listed twice; pass each experiment once")
    for a in sc.alphas or ():
        blend.check_alpha(a)
    for exp in sc.experiments:
        for spec in sc.methods or exp.blend.methods:
            method_of(spec)  # unknown method / reward -> UserError
    if sc.backend == "ray":
        _import_ray()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("ray is not installed; run `make install-ray`") from None
    return ray


def plan(sc: SweepConfig) -> list[Job]:
    """Every job of the sweep, long ones first (needs nothing on disk)."""
    jobs: list[Job] = []
    data_dir = Path(sc.data_dir).resolve()  # workers (or Ray nodes) may have another cwd
    for exp in sc.experiments:
        rc = RunConfig(exp, data_dir, sc.force, quiet=True, tensorboard=sc.tensorboard)
        alphas = tuple(sc.alphas or exp.blend.alphas)
        for spec in sc.methods or exp.blend.methods:
            for seed in sc.seeds or exp.blend.seeds:
                if method_of(spec).shared_policy:
                    jobs.append(Job(rc, spec, alphas, seed))
                else:
                    jobs.extend(Job(rc, spec, (a,), seed) for a in alphas)
    # Long jobs first (better load balance).
    jobs.sort(key=lambda j: -method_of(j.spec).cost)
    return jobs


def _folders(job: Job) -> list[Path]:
    store = ExperimentStore(job.run)
    name = method_of(job.spec).name
    return [store.blend_folder(name, a, job.seed) for a in job.alphas]


def is_finished(job: Job) -> bool:
    """True when every folder of the job is up to date (then no worker is started for it).

    The check of :func:`safeknob.stages.blend._plan` (same :func:`~safeknob.stages.blend.
    agent_config`), which the worker repeats: a false "not finished" only costs a job that
    skips itself."""
    rc = job.run
    if rc.force:
        return False
    config = blend.agent_config(rc.experiment, method_of(job.spec), job.seed)
    for a, folder in zip(job.alphas, _folders(job), strict=True):
        try:
            if not up_to_date(
                folder / "meta.json", {**config, "alpha": a, "internal_alpha": a}, False, ""
            ):
                return False
        except ArtifactError:
            return False  # a conflicting folder: the job reports it with its fix
    return True


def prepare(rc: RunConfig, specs: Sequence[str], workers: int = 1) -> None:
    """Experts, demonstrations and every learned reward the methods need (both roles for
    ``budget-airl`` and ``reward-mix``), made once here before the fan-out, so no two jobs
    ever learn one concurrently."""
    exp = rc.experiment
    if not rc.quiet:
        console.rule(f"[bold]{exp.name}: shared artifacts")
    train_experts.run(rc)
    collect_demos.run(collect_demos.CollectConfig(rc))
    roles = learned_rewards(specs)
    if roles:
        learn_rewards.run(rc, roles, workers=workers)


# ---------------------------------------------------------------------------- backends

Update = Callable[[JobResult | None, int], None]
"""Called with a finished job's result (or None for a refresh) and the number running."""


def _run_local(jobs: list[Job], workers: int, update: Update) -> None:
    """The process pool (:mod:`safeknob.parallel`); a pool broken by a dead worker is rebuilt
    and its unfinished jobs resubmitted once (a job whose worker dies twice is reported as
    failed)."""

    def failed(job: Job, exc: BaseException) -> bool:
        if isinstance(exc, parallel.WorkerDied):
            update(_failure(job, exc, "its worker process died twice (killed or out of memory)"), 0)
        else:  # e.g. an unpicklable result
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            update(_failure(job, exc, tb), 0)
        return True

    parallel.Pool(
        run_job,
        workers,
        on_result=lambda _job, result: update(result, 0),
        on_error=failed,
        on_tick=lambda running: update(None, running),
        retries=1,
        what="a sweep worker",
        fix="safeknob sweep",
    ).run(jobs)


def _run_ray(jobs: list[Job], sc: SweepConfig, update: Update) -> None:
    """Ray core tasks, one CPU each; a local instance (``workers`` CPUs) unless ``address``."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        if sc.address:
            try:
                ray.init(address=sc.address, log_to_driver=False)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, ...
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UserError(
                    f"cannot join the Ray cluster at {sc.address!r} ({reason}); start one with "
                    "`ray start --head`, or drop --address for a local instance"
                ) from None
        else:
            ray.init(
                num_cpus=sc.workers,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        started = True
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", sc.workers)))
        task = ray.remote(num_cpus=1, max_retries=1)(run_job)
        refs = {task.remote(j): j for j in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a dead worker or node
                    result = _failure(refs[ref], exc, traceback.format_exc())
                update(result, 0)
            update(None, min(len(pending), cpus))
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------- the sweep


def run(sc: SweepConfig) -> Path:
    """Run the sweep; returns the experiment's ``eval/`` (or ``data_dir`` for several).

    Raises :class:`SweepError` (after evaluating what finished) when a job failed."""
    _check(sc)
    t0 = time.perf_counter()
    jobs = plan(sc)
    for exp in sc.experiments:
        prepare(
            RunConfig(exp, sc.data_dir, sc.force, sc.quiet, sc.tensorboard),
            sc.methods or exp.blend.methods,
            sc.workers,
        )

    results: list[JobResult] = []
    todo = []
    for j in jobs:
        if is_finished(j):
            results.append(JobResult(j.experiment, j.id, "skipped"))
        else:
            todo.append(j)
    if not sc.quiet:
        console.rule(
            f"[bold]sweep: {len(jobs)} jobs ({len(jobs) - len(todo)} already done), "
            f"backend {sc.backend}, {sc.workers} workers"
        )
    if todo:
        _fan_out(sc, todo, len(jobs), results)
    outs = _evaluate(sc, jobs, results)
    failed = [r for r in results if r.status == "failed"]
    _print_results(results, sc.quiet, time.perf_counter() - t0)
    if failed:
        what = f"{len(failed)} of {len(jobs)} sweep jobs failed"
        if any(r.job == EVALUATE for r in failed):
            what = f"{what} (counting evaluations)"
        raise SweepError(
            f"{what} (logs listed above, in "
            f"<data>/<experiment>/{LOG_DIR}/); the others finished and were evaluated. Fix "
            "the cause and re-run the same command: finished jobs are skipped",
            results,
        )
    return outs[0] if len(outs) == 1 else Path(sc.data_dir)


def _fan_out(sc: SweepConfig, todo: list[Job], n_jobs: int, results: list[JobResult]) -> None:
    """Run ``todo`` on the sweep's backend with a live count; results go to ``results``."""
    skipped = n_jobs - len(todo)
    with progress_bar(sc.quiet) as progress:
        counts = {"done": 0, "failed": 0, "running": 0}
        task = progress.add_task("", total=n_jobs, completed=skipped)

        def describe() -> str:
            return (
                f"sweep: [green]{counts['done']} done[/] "
                f"[cyan]{counts['running']} running[/] [red]{counts['failed']} failed[/] "
                f"[dim]{skipped} skipped[/]"
            )

        def update(result: JobResult | None, running: int) -> None:
            if result is None:
                counts["running"] = running
            else:
                results.append(result)
                counts["done" if result.status == "done" else "failed"] += 1
                progress.update(task, advance=1)
            progress.update(task, description=describe())

        progress.update(task, description=describe())
        if sc.backend == "ray":
            _run_ray(todo, sc, update)
        else:
            _run_local(todo, sc.workers, update)


def _evaluate(sc: SweepConfig, jobs: list[Job], results: list[JobResult]) -> list[Path]:
    """Evaluate every experiment whose agents changed; a failure is added to ``results``."""
    ran = {r.experiment for r in results if r.status == "done"}
    outs = []
    for exp in sc.experiments:
        rc = RunConfig(exp, sc.data_dir, False, sc.quiet, sc.tensorboard)
        exp_jobs = [j for j in jobs if j.experiment == exp.name]
        if exp.name not in ran and evaluation_current(rc, exp_jobs):
            outs.append(rc.paths.eval)
            continue
        if not sc.quiet:
            console.rule(f"[bold]{exp.name}: evaluate")
        try:
            outs.append(evaluate.run(rc))
            (rc.paths.root / LOG_DIR / f"{EVALUATE}.log").unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - the other experiments still get evaluated
            log = rc.paths.root / LOG_DIR / f"{EVALUATE}.log"
            header = f"evaluation of experiment {exp.name}"
            tb = traceback.format_exc()
            results.append(_report_failure(exp.name, EVALUATE, log, header, exc, tb))
            outs.append(rc.paths.eval)
    return outs


def evaluation_current(rc: RunConfig, jobs: Sequence[Job]) -> bool:
    """True when ``eval/results.csv`` is newer than every folder of ``jobs`` and has their
    rows (then re-running a finished sweep evaluates nothing)."""
    path = rc.paths.eval / "results.csv"
    if not path.is_file():
        return False
    try:
        df = pd.read_csv(path)
        have = {(str(m), round(float(a), 6), int(s)) for m, a, s in zip(
            df["method"], df["alpha"], df["seed"], strict=True
        )}  # fmt: skip
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return False
    newest = 0.0
    for job in jobs:
        name = method_of(job.spec).name
        for a, folder in zip(job.alphas, _folders(job), strict=True):
            meta = folder / "meta.json"
            if not meta.is_file():
                continue  # a failed job: nothing to evaluate
            if (name, round(a, 6), job.seed) not in have:
                return False
            newest = max(newest, meta.stat().st_mtime)
    return path.stat().st_mtime >= newest


def _print_results(results: list[JobResult], quiet: bool, seconds: float) -> None:
    failed = [r for r in results if r.status == "failed"]
    shown = failed if (quiet or len(results) > 40) else results
    if shown:
        table = Table(title="Failed sweep jobs" if shown is failed else "Sweep jobs")
        for col in ("experiment", "job", "status", "seconds", "log / error"):
            table.add_column(
                col,
                justify="right" if col == "seconds" else "left",
                overflow="fold",  # log paths must stay whole
                no_wrap=col in ("job", "status"),
            )
        style = {"done": "green", "skipped": "dim", "failed": "bold red"}
        for r in sorted(
            results if shown is results else failed, key=lambda r: (r.experiment, r.job)
        ):
            detail = f"{r.log}\n{r.error}" if r.log else r.error
            table.add_row(
                r.experiment,
                r.job,
                f"[{style[r.status]}]{r.status}[/]",
                f"{r.seconds:.1f}" if r.status != "skipped" else "",
                detail,
            )
        console.print(table)
    if not quiet:
        n = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
        console.print(
            f"sweep finished in {seconds:.0f} s: {n['done']} done, {n['skipped']} skipped "
            f"(already up to date), {n['failed']} failed"
        )
