"""Atomic file writes and the temporaries they leave when a process is killed.

A file is written to a temporary beside it, `.<name>.<pid>.tmp`, then renamed over it, so a reader sees the old
file or the new one, never half of one. A writer that fails removes its own temporary; one killed with SIGKILL
cannot, and the temporary's pid is how a later command knows its writer is gone (`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def temporary_path(path: Path) -> Path:
    """Where this process writes `path` before renaming it into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path: Path, error: type[Exception] | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any failure it is removed. With
    `error`, an OSError (a full disk, an unwritable folder) becomes `error("cannot write PATH: reason")`, one line
    naming the file: the writers' own messages often do not (pyarrow's for a full disk)."""
    tmp = temporary_path(path)
    try:
        yield tmp
        tmp.replace(path)
    except BaseException as failure:
        tmp.unlink(missing_ok=True)
        if error is not None and isinstance(failure, OSError):
            raise error(f"cannot write {path}: {failure.strerror or failure}") from failure
        raise


def stale_writer(pid: int) -> bool:
    """A temporary's writer that can no longer finish it: gone, and not this process."""
    return pid != os.getpid() and not process_alive(pid)


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Remove every temporary under `root` (at any depth) whose writer is gone; return what was removed.

    The pid is only meaningful on the machine that wrote the file: a folder written from two machines at once
    (a shared file system) is not supported."""
    removed = []
    if not root.is_dir():
        return removed
    for path in root.rglob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and stale_writer(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
