"""One interface for fanning independent jobs out: `Executor.map(fn, jobs, context)`.

`fn(context, job)` must be a pure, picklable module-level function: it reads only its arguments and returns a
result, and never touches the workspace's database, so the caller stays the only writer. `context` is what every
job shares (cached arrays); an implementation ships it to each worker once, not once per job. Results are
yielded as jobs finish, so the caller can record each one at once; a distributed engine (Ray, Dask, Spark) only
needs another class with this one method.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

import torch

from taskonomy_db.errors import WorkerDiedError
from taskonomy_db.process_tuning import tune_worker, tuned

C = TypeVar("C")
J = TypeVar("J")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[C, J], R], jobs: Sequence[J], context: C) -> Iterator[R]:
        """Run fn(context, job) for every job; yield results as they finish (any order)."""
        ...


class SerialExecutor:
    """Runs jobs one after another in this process, with torch's own intra-op threads."""

    def map(self, fn: Callable[[C, J], R], jobs: Sequence[J], context: C) -> Iterator[R]:
        with tuned():
            for job in jobs:
                yield fn(context, job)


_worker_context: Any = None


def _init_worker(context: Any, threads: int, parent_pid: int) -> None:
    global _worker_context
    tune_worker(parent_pid)  # first: also makes the worker die with its parent; a worker lives for one map
    _worker_context = context
    torch.set_num_threads(threads)


def _call(fn: Callable[[Any, Any], Any], job: Any) -> Any:
    return fn(_worker_context, job)


class ProcessExecutor:
    """A pool of `workers` processes (spawned, so no OpenMP state is forked), each with an equal share of the
    cores as torch threads. At most 2 jobs per worker are queued, so an interrupt loses little work. A worker
    that dies ends the map with WorkerDiedError (one line for the CLI), after every result that came before.
    Workers die with this process, even when it is killed with SIGKILL (see worker_lifetime)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[[C, J], R], jobs: Sequence[J], context: C) -> Iterator[R]:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(context, threads, os.getpid()),
        )
        pending: set[Future] = set()
        queue = iter(jobs)
        try:
            while True:
                while len(pending) < 2 * self.workers:
                    job = next(queue, None)
                    if job is None:
                        break
                    pending.add(pool.submit(_call, fn, job))
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        result = future.result()
                    except BrokenProcessPool as error:
                        # Results already yielded are the caller's (recorded); the rest is lost with the pool.
                        raise WorkerDiedError(
                            "a worker process died (killed, out of memory, or the installed code changed while it"
                            " ran); what finished is kept: run the command again to resume"
                        ) from error
                    yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def create_executor(workers: int) -> Executor:
    """Serial for 1 worker (usually fastest on a small machine: torch already uses every core), else a pool."""
    return SerialExecutor() if workers <= 1 else ProcessExecutor(workers)
