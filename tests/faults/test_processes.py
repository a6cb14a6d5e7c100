"""kill -9 of a tdb command that runs worker processes: no process of it survives (its workers die with it, not
reparented to wait for ever), the next run resumes and completes, and no temporary file is left behind.

Processes are found and watched through /proc (Linux), as a user would with ps."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from taskonomy_db.db import Database
from tests.faults.conftest import TDB, TDB_TIMEOUT, tdb

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads processes from /proc")

GONE_WITHIN = 10.0  # seconds: the trial's bound on a killed command's processes
START_DEADLINE = 240.0  # generous: two cores shared with other work


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), None once it is gone or a zombie: with the pid,
    an identity that a reused pid does not share."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return None if fields[0] in "ZX" else fields[19]


def _descendants(pid: int) -> dict[int, str]:
    """Every live descendant of `pid` with its start time."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = [int(p) for p in children.read_text().split()]
            except OSError:  # the thread or process ended meanwhile
                continue
            for child in pids:
                started = _start_time(child)
                if started is not None and child not in found:
                    found[child] = started
                    todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _survivors(processes: dict[int, str], within: float) -> dict[int, str]:
    """Those of `processes` still alive after polling for up to `within` seconds."""
    deadline = time.monotonic() + within
    alive = processes
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid: started for pid, started in alive.items() if _start_time(pid) == started}
    return {pid: _cmdline(pid) for pid in alive}


def _start(args: list[str | Path], logs: Path) -> subprocess.Popen:
    """`tdb ARGS` in the background, output to files (a pipe nobody reads can fill and stall the command)."""
    logs.mkdir(exist_ok=True)
    with (logs / "stdout").open("w") as out, (logs / "stderr").open("w") as err:
        return subprocess.Popen([str(TDB), *map(str, args)], stdout=out, stderr=err)


def _wait_for(ready, process: subprocess.Popen, logs: Path, what: str) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while not ready():
        assert process.poll() is None, f"finished before {what}: {(logs / 'stderr').read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} within {START_DEADLINE} s"
        time.sleep(0.1)


def _kill_and_watch(process: subprocess.Popen) -> dict[int, str]:
    """SIGKILL the command; return its processes alive GONE_WITHIN seconds later (pid -> command line)."""
    processes = _descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return _survivors(processes, GONE_WITHIN)


def _workers(pid: int) -> list[int]:
    return [child for child in _descendants(pid) if "spawn_main" in _cmdline(child)]


# Long enough that the kill lands while the workers train (patience never stops a readout early), short enough
# that the resumed run finishes in a minute or two.
LONG_TRANSFER = ("--transfer-images", "6", "--holdout-images", "4", "--max-steps", "300", "--patience", "100",
                 "--max-order", "1", "--baselines", "random", "--workers", "2")  # fmt: skip


def test_kill_9_of_transfer_takes_its_workers_and_the_rerun_completes_leaving_no_temporary(study: Path, tmp_path):
    logs = tmp_path / "killed"
    process = _start(["transfer", "-w", study, *LONG_TRANSFER], logs)
    database = Database(study / "taskonomy.duckdb")

    def working() -> bool:  # both workers exist and the first result is in: they are past their start
        return len(_workers(process.pid)) >= 2 and database.scalar("select count(*) from transfers") > 0

    _wait_for(working, process, logs, "two workers and a first transfer")
    assert len(_workers(process.pid)) >= 2
    assert _kill_and_watch(process) == {}

    # What a kill during a write leaves: temporaries named after the dead writer (the killed command's pid).
    cache = next((study / "cache").rglob("shard-*.npz"))
    planted = [
        cache.with_name(f".{cache.name}.{process.pid}.tmp"),
        study / "models" / f".depth_zbuffer.last.pt.{process.pid}.tmp",
        study / "representations" / "normal" / f".part-00001.parquet.{process.pid}.tmp",
    ]
    for path in planted:
        path.write_bytes(b"torn")

    resumed = tdb("transfer", "-w", study, *LONG_TRANSFER, timeout=TDB_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert database.scalar("select count(*) from transfers where status <> 'done'") == 0
    assert sorted(study.rglob("*.tmp")) == []


def test_kill_9_of_generate_takes_its_rendering_workers_and_the_rerun_removes_the_half_render(tmp_path):
    out = tmp_path / "data"
    logs = tmp_path / "killed"
    process = _start(["generate", out, "--buildings", "8", "--rooms", "2", "--size", "64", "--workers", "2"], logs)
    half = tmp_path / f".data.generating-{process.pid}"

    def rendering() -> bool:
        return len(_descendants(process.pid)) >= 2 and half.is_dir()

    _wait_for(rendering, process, logs, "two rendering workers")
    assert _kill_and_watch(process) == {}
    assert half.is_dir()  # nothing could remove it

    rerun = tdb("generate", out, "--buildings", "1", "--rooms", "1", "--points-per-room", "1", "--views-per-point",
                "1", "--size", "32", "--workers", "1")  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert not half.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "killed"]


_ORPHAN = """
import os, subprocess, sys, time
if sys.argv[1] == "parent":
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], "child", str(os.getpid())])
    print(child.pid, flush=True)
    time.sleep(600)
else:
    from taskonomy_db.worker_lifetime import die_with_parent
    die_with_parent(int(sys.argv[2]), use_prctl=False)
    print("watching", flush=True)
    time.sleep(600)
"""


def _lines(stream) -> queue.Queue:
    """The lines of a subprocess's pipe as they come, read by a thread: a test waits for one with a deadline,
    where readline alone would wait as long as the sleeping parent keeps the pipe open."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def test_the_portable_fallback_ends_a_worker_whose_parent_was_killed():
    # Where prctl is unavailable (not Linux), a thread of the worker watches its parent's pid instead.
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN, "parent", _ORPHAN], stdout=subprocess.PIPE, text=True)
    try:
        lines = _lines(parent.stdout)
        child = int(lines.get(timeout=60))
        started = _start_time(child)
        assert lines.get(timeout=60).strip() == "watching"  # the child shares the pipe: its watch is armed
    finally:
        parent.kill()
        parent.wait()
    assert started is not None
    assert _survivors({child: started}, GONE_WITHIN) == {}
    parent.stdout.close()
