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

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from safeknob.artifacts import ArtifactError, alpha_dir
from safeknob.config import ExperimentConfig
from safeknob.errors import UserError
from safeknob.stages.common import RunConfig, console, progress_bar, stage_config, up_to_date
from safeknob.stages.pipeline import split_method

BACKENDS = ("local", "ray")
LOG_DIR = "sweep-logs"
EVALUATE = "evaluate"
"""Job name of an experiment's evaluation in the results (``sweep-logs/evaluate.log``)."""
# Rough relative cost of one job, to start the long ones first (better load balance).
_WEIGHT = {"conditioned": 4, "budget": 3, "reward-mix": 3, "bc-mix": 2, "mixture": 0}


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
    """Training seeds; default: each experiment's seed."""
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
        where = f"_alpha-{self.alphas[0]:.2f}" if len(self.alphas) == 1 else ""
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
    from safeknob.stages import blend
    from safeknob.training import set_threads

    set_threads()  # one torch thread, known-harmless upstream warnings off
    name, reward = split_method(job.spec)
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
    from safeknob.stages import evaluate
    from safeknob.stages.blend import context, load_blend

    rc = job.run
    try:
        ctx = context(rc)
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
    from safeknob.methods import get_method
    from safeknob.stages.blend import check_alpha

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
        check_alpha(a)
    for exp in sc.experiments:
        for spec in sc.methods or exp.blend.methods:
            get_method(*split_method(spec))  # unknown method / reward -> UserError
            if split_method(spec)[0] == "conditioned" and any(
                s != exp.seed for s in sc.seeds or ()
            ):
                raise UserError(
                    "conditioned trains one shared policy per experiment "
                    f"(blends/conditioned/shared), so it can only be swept with the experiment's "
                    f"seed ({exp.name}: {exp.seed}); drop it from --methods or from this sweep"
                )
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
        rc = RunConfig(exp, data_dir, sc.force, quiet=True)
        alphas = tuple(sc.alphas or exp.blend.alphas)
        for spec in sc.methods or exp.blend.methods:
            for seed in sc.seeds or (exp.seed,):
                if split_method(spec)[0] == "conditioned":
                    jobs.append(Job(rc, spec, alphas, seed))
                else:
                    jobs.extend(Job(rc, spec, (a,), seed) for a in alphas)
    jobs.sort(key=lambda j: -_WEIGHT.get(split_method(j.spec)[0], 1))
    return jobs


def _folders(job: Job) -> list[Path]:
    from safeknob.methods import get_method
    from safeknob.stages.blend import seed_suffix

    method = get_method(*split_method(job.spec))
    sfx = seed_suffix(job.run, job.seed)
    return [job.run.paths.blends / method.name / (alpha_dir(a) + sfx) for a in job.alphas]


def is_finished(job: Job) -> bool:
    """True when every folder of the job is up to date (then no worker is started for it).

    Mirrors the check in :func:`safeknob.stages.blend.run`, which repeats it in the worker:
    a false "not finished" only costs a job that skips itself."""
    from safeknob.methods import get_method

    rc = job.run
    if rc.force:
        return False
    method = get_method(*split_method(job.spec))
    config = {
        **stage_config(rc.experiment, "env", "ppo", "lagrange", "experts", "demos", "blend"),
        "method": method.name,
        "train_seed": job.seed,
    }
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
    """Experts, demonstrations and the learned rewards the methods need, made once here."""
    from safeknob import rewards
    from safeknob.stages import collect_demos, train_experts

    exp = rc.experiment
    if not rc.quiet:
        console.rule(f"[bold]{exp.name}: shared artifacts")
    train_experts.run(rc)
    collect_demos.run(collect_demos.CollectConfig(rc))
    if any(split_method(m)[1] == "airl" or m == "reward-mix" for m in specs):
        roles = ("reckless", "safe") if "reward-mix" in specs else ("reckless",)
        rewards.run(rc, roles, workers=workers)


# ---------------------------------------------------------------------------- backends

Update = Callable[[JobResult | None, int], None]
"""Called with a finished job's result (or None for a refresh) and the number running."""


def _run_local(jobs: list[Job], workers: int, update: Update) -> None:
    """A spawn process pool; a pool broken by a dead worker is rebuilt and its unfinished jobs
    resubmitted once (a job whose worker dies twice is reported as failed)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    deaths: dict[str, int] = {}
    queue = list(jobs)
    while queue:
        n = min(workers, len(queue))
        from safeknob.training import abort_pool, die_with_parent

        pool = ProcessPoolExecutor(
            n,
            mp_context=mp.get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )
        try:
            futures = {pool.submit(run_job, j): j for j in queue}
            queue = []
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures[fut]
                    try:
                        result = fut.result()
                    except BrokenProcessPool as exc:
                        deaths[job.id] = deaths.get(job.id, 0) + 1
                        if deaths[job.id] < 2:
                            queue.append(job)
                            continue
                        result = _failure(
                            job, exc, "its worker process died twice (killed or out of memory)"
                        )
                    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                        result = _failure(job, exc, traceback.format_exc())
                    update(result, 0)
                running = sum(f.running() for f in pending)
                update(None, min(running, n))
        except BaseException:  # Ctrl-C: stop now, do not let queued jobs start
            abort_pool(pool)
            raise
        pool.shutdown(wait=True)


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
    from safeknob.stages import evaluate

    _check(sc)
    t0 = time.perf_counter()
    jobs = plan(sc)
    for exp in sc.experiments:
        prepare(
            RunConfig(exp, sc.data_dir, sc.force, sc.quiet),
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
        with progress_bar(sc.quiet) as progress:
            counts = {"done": 0, "failed": 0, "running": 0}
            task = progress.add_task("", total=len(jobs), completed=len(jobs) - len(todo))

            def describe() -> str:
                return (
                    f"sweep: [green]{counts['done']} done[/] "
                    f"[cyan]{counts['running']} running[/] [red]{counts['failed']} failed[/] "
                    f"[dim]{len(jobs) - len(todo)} skipped[/]"
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

    ran = {r.experiment for r in results if r.status == "done"}
    outs = []
    for exp in sc.experiments:
        rc = RunConfig(exp, sc.data_dir, False, sc.quiet)
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


def evaluation_current(rc: RunConfig, jobs: Sequence[Job]) -> bool:
    """True when ``eval/results.csv`` is newer than every folder of ``jobs`` and has their
    rows (then re-running a finished sweep evaluates nothing)."""
    import pandas as pd

    from safeknob.methods import get_method

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
        name = get_method(*split_method(job.spec)).name
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
