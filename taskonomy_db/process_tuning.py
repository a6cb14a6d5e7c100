"""Process tuning for array-heavy loops (the generator's renders, training and readouts): glibc's malloc
thresholds and one OpenBLAS thread per process. Linux with glibc and OpenBLAS only; elsewhere the missing parts
are skipped."""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from taskonomy_db.worker_lifetime import die_with_parent

# glibc mallopt parameters (malloc.h): mmap and trim thresholds, tuned and default.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TUNED_THRESHOLDS = {_M_MMAP_THRESHOLD: 64 * 1024 * 1024, _M_TRIM_THRESHOLD: 256 * 1024 * 1024}
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
# (set, get) thread-count functions of the OpenBLAS builds numpy and scipy ship (symbol names vary by build).
_OPENBLAS_THREAD_FUNCTIONS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def tune_process() -> Callable[[], None]:
    """Tune this process for array-heavy work; return a function that undoes it.

    - glibc serves blocks over 128 KiB with fresh mmap pages and trims its heap eagerly, so every (primitive x
      ray) culling matrix or label-sized temporary cost hundreds of page faults (~15% of a view's CPU time on a
      virtual machine), and every full-resolution activation of a readout's training step the same (a readout
      group's step took 0.59 s untuned and 0.36 s tuned). Higher thresholds keep those pages mapped. Undoing
      restores the default values (glibc then stops adapting its mmap threshold dynamically).
    - OpenBLAS runs larger matrix products on all cores and its threads then spin-wait: in a worker of a
      process pool that quadrupled the culling step's CPU time and took the other core from the other worker.
      One BLAS thread per process: the parallelism is the pool's.
    Elsewhere than Linux with glibc and OpenBLAS, the missing parts are skipped.
    """
    undo: list[Callable[[], None]] = []
    if sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):  # not glibc (musl, ...)
            mallopt = None
        if mallopt is not None:
            for parameter, value in _TUNED_THRESHOLDS.items():
                mallopt(parameter, value)
                undo.append(functools.partial(mallopt, parameter, _GLIBC_DEFAULT_THRESHOLD))
        for set_threads, get_threads in _openblas_thread_functions():
            undo.append(functools.partial(set_threads, get_threads()))
            set_threads(1)

    def undo_all() -> None:
        for step in reversed(undo):
            step()

    return undo_all


def _openblas_thread_functions() -> list[tuple[Callable[[int], None], Callable[[], int]]]:
    """The thread-count functions of every OpenBLAS library loaded in this process (as threadpoolctl finds them)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1].lower()})
    functions = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _OPENBLAS_THREAD_FUNCTIONS:
            if hasattr(library, set_name) and hasattr(library, get_name):
                functions.append((getattr(library, set_name), getattr(library, get_name)))
                break
    return functions


def tune_worker(parent_pid: int) -> None:
    """Pool initializer: workers are started for one run and exit after it, so their tuning is never undone;
    they also die with the process that started them (`parent_pid`), even one killed with SIGKILL."""
    die_with_parent(parent_pid)
    tune_process()


@contextmanager
def tuned() -> Iterator[None]:
    """`tune_process()` for the duration of a block."""
    undo = tune_process()
    try:
        yield
    finally:
        undo()
