"""One process-pool runner for every fan-out: ``train-blend``'s alphas, ``learn-rewards``'
roles and ``sweep``'s jobs (its Ray backend aside).

Workers are spawned (a fresh interpreter each, one torch thread), end when their parent
dies, and may report progress to the parent's rich bars through :func:`relay`. A job that
raises lets the jobs already running finish (their folders are complete), cancels the ones
not started and then raises its error, as a serial run would. A worker that dies (killed,
out of memory) breaks the pool: the unfinished jobs are resubmitted on a new pool up to
``retries`` times. Ctrl-C ends the workers at once (an unfinished folder is a temporary
``.tmp-*`` sibling that the next run removes).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

from rich.progress import Progress

from safeknob.errors import ArtifactError
from safeknob.rl.training import set_threads
from safeknob.worker import PARENT_ENV, die_with_parent

J = TypeVar("J")
R = TypeVar("R")

_RELAY: Any = None
"""In a pool worker: the queue its progress goes to (set by :func:`_init_worker`)."""


class WorkerDied(ArtifactError):
    """A pool worker process died (killed or out of memory) more often than retried."""


class ProgressRelay:
    """The part of rich's ``Progress`` that training calls, forwarded from a pool worker to
    the parent's progress bars through a queue."""

    def __init__(self, queue: Any, prefix: str) -> None:
        self.queue, self.prefix, self.n = queue, prefix, 0

    def add_task(self, description: str, total: float | None = None, **_: Any) -> str:
        self.n += 1
        key = f"{self.prefix}/{self.n}"
        self.queue.put(("add", key, description, total))
        return key

    def update(self, task: str, advance: float = 0, **_: Any) -> None:
        self.queue.put(("update", task, advance))

    def remove_task(self, task: str) -> None:
        self.queue.put(("remove", task))


def relay(prefix: str) -> ProgressRelay | None:
    """In a pool worker: a progress object whose bars show in the parent (None elsewhere)."""
    return ProgressRelay(_RELAY, prefix) if _RELAY is not None else None


def _init_worker(parent_pid: int, queue: Any) -> None:
    """Pool-worker initializer: end with the parent (a killed `safeknob` must not leave
    workers training in the background; already armed on ``import safeknob``, see
    :mod:`safeknob.worker`), one torch thread, progress to the parent's bars."""
    global _RELAY
    die_with_parent(parent_pid)
    set_threads()
    _RELAY = queue


def abort_pool(pool: Any, grace: float = 0.0) -> None:
    """Ctrl-C or a dead worker: cancel a process pool's queued jobs and end its workers.

    ``grace`` seconds let workers that got the same Ctrl-C remove their temporary folders
    before they are terminated (an unfinished folder is a ``.tmp-*`` sibling that the next
    run removes anyway)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    if grace:
        for proc in procs:
            proc.join(timeout=grace)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)


class _Bars:
    """The parent's side of the relay: messages from workers become rich progress tasks."""

    def __init__(self, queue: Any, progress: Progress | None) -> None:
        self.queue, self.progress, self.tasks = queue, progress, {}

    def drain(self) -> None:
        while True:
            try:
                msg = self.queue.get_nowait()
            except queue_mod.Empty:
                return
            if self.progress is None:
                continue
            if msg[0] == "add":
                self.tasks[msg[1]] = self.progress.add_task(msg[2], total=msg[3])
            elif msg[1] in self.tasks:
                if msg[0] == "remove":
                    self.progress.remove_task(self.tasks.pop(msg[1]))
                else:
                    self.progress.update(self.tasks[msg[1]], advance=msg[2])


class Pool(Generic[J, R]):
    """Run ``fn(job)`` for every job on ``workers`` spawned processes.

    ``on_result(job, result)`` runs in the parent as each job finishes; ``on_error(job,
    exc)`` may return True to count an exception as handled (the other jobs go on);
    ``on_tick(running)`` runs a few times a second with the number of jobs running.
    ``what`` and ``fix`` name the work and the command to re-run in a dead worker's error."""

    def __init__(
        self,
        fn: Callable[[J], R],
        workers: int,
        *,
        progress: Progress | None = None,
        on_result: Callable[[J, R], None] | None = None,
        on_error: Callable[[J, BaseException], bool] | None = None,
        on_tick: Callable[[int], None] | None = None,
        retries: int = 0,
        grace: float = 0.0,
        what: str = "a worker",
        fix: str = "the same command",
    ) -> None:
        self.fn, self.workers, self.progress = fn, workers, progress
        self.on_result, self.on_error, self.on_tick = on_result, on_error, on_tick
        self.retries, self.grace, self.what, self.fix = retries, grace, what, fix

    def run(self, jobs: Sequence[J]) -> None:
        """Run every job; raises the first unhandled job error after the running ones end."""
        ctx = mp.get_context("spawn")
        bars = _Bars(ctx.Queue(), self.progress)
        os.environ[PARENT_ENV] = str(os.getpid())  # read by the workers: safeknob.worker
        deaths = [0] * len(jobs)
        todo = list(range(len(jobs)))
        error: BaseException | None = None
        while todo and error is None:
            n = min(self.workers, len(todo))
            pool = ProcessPoolExecutor(
                n, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), bars.queue)
            )
            try:
                futures = {pool.submit(self.fn, jobs[i]): i for i in todo}
                todo, error = self._collect(futures, jobs, deaths, bars, n)
            except BaseException:  # Ctrl-C: stop now, do not let queued jobs start
                abort_pool(pool, self.grace)
                raise
            pool.shutdown(wait=True)
        bars.drain()
        if error is not None:
            raise error

    def _collect(
        self,
        futures: dict[Future, int],
        jobs: Sequence[J],
        deaths: list[int],
        bars: _Bars,
        n: int,
    ) -> tuple[list[int], BaseException | None]:
        """Wait for one pool's futures; returns the jobs to resubmit and the first error."""
        retry: list[int] = []
        error: BaseException | None = None
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            bars.drain()
            for fut in done:
                if fut.cancelled():
                    continue
                i = futures[fut]
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    deaths[i] += 1
                    if deaths[i] <= self.retries:
                        retry.append(i)
                        continue
                    exc = WorkerDied(
                        f"{self.what} process died (killed or out of memory); nothing "
                        f"half-written was kept. Re-run `{self.fix}`"
                    )
                if exc is None:
                    if self.on_result is not None:
                        self.on_result(jobs[i], fut.result())
                elif not (self.on_error is not None and self.on_error(jobs[i], exc)):
                    error = error or exc
                    for f in pending:
                        f.cancel()  # not started yet: never start it
            if self.on_tick is not None:
                self.on_tick(min(sum(f.running() for f in pending), n))
        return retry, error
