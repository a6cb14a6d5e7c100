"""Worker processes die with the process that started them.

A pool's workers outlive a parent killed with SIGKILL: they are reparented and wait on their job queue for
ever, each holding its copy of the run's arrays (hundreds of MB). `die_with_parent`, called first thing in a
worker, ends the worker within moments of its parent: on Linux the kernel sends it SIGKILL
(prctl PR_SET_PDEATHSIG), elsewhere a daemon thread polls the parent's pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 0.5
ORPHAN_EXIT_CODE = 1


def die_with_parent(parent_pid: int, use_prctl: bool = True) -> None:
    """End this process when `parent_pid`, its parent, ends (`use_prctl=False` forces the portable fallback)."""
    if not (use_prctl and _parent_death_signal(signal.SIGKILL)):
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="tdb-parent-watch", daemon=True).start()
    # A parent that died before the line above never sends the signal: the orphan was already reparented.
    if os.getppid() != parent_pid:
        os._exit(ORPHAN_EXIT_CODE)


def _parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent dies; False where that is unavailable.

    The kernel ties the signal to the parent's *thread* that started this process: pools start their workers
    from the thread that runs the pool (the main one in tdb), which lives as long as the pool does."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_SECONDS)
    os._exit(ORPHAN_EXIT_CODE)  # no cleanup: the parent that would have used this worker's results is gone
