"""The executors: a process pool gives what running in this process gives, and a worker that dies ends the run
with one clear error after the results that came before it, not a traceback."""

from __future__ import annotations

import os

import pytest

from taskonomy_db.errors import WorkerDiedError
from taskonomy_db.executor import ProcessExecutor, SerialExecutor


def _square_or_die(fatal: int, job: int) -> int:
    if job == fatal:
        os._exit(3)  # what the OOM killer or a kill -9 does to a worker: no exception, no cleanup
    return job * job


def test_a_pool_gives_what_this_process_gives():
    jobs = list(range(10))
    assert sorted(ProcessExecutor(2).map(_square_or_die, jobs, -1)) == list(
        SerialExecutor().map(_square_or_die, jobs, -1)
    )


def test_a_dead_worker_ends_the_map_with_one_clear_error_after_the_results_before_it():
    results = []
    with pytest.raises(WorkerDiedError, match="run the command again to resume"):
        for result in ProcessExecutor(2).map(_square_or_die, [1, 2, 3, 4, 5, 6], 6):
            results.append(result)
    assert set(results) <= {1, 4, 9, 16, 25}
