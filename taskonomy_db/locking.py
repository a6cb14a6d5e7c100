"""One writer per workspace at a time.

Commands that change a workspace (ingest, train, export, extract, transfer, import-published, query --write,
demo) hold an exclusive lock on `<workspace>/.tdb-writer.lock` for as long as they run; a second one fails at
once with a line naming the first. Interleaved writers could store wrong results without any error: a `tdb
train --force` during `tdb transfer` swapped the gold network between the transfer's planning and its gold job,
and the stored gold losses came from weights the row's key does not name. Readers take no lock (DuckDB keeps
what they see consistent).

The lock is the kernel's (flock): it is released when its holder exits in any way, kill -9 included, so a
crashed command never leaves a stale lock. The file itself stays, holding a line about the last holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taskonomy_db.errors import WorkspaceError

LOCK_FILE = ".tdb-writer.lock"

# Locks this process holds, by workspace: commands nest (the demo runs train, extract and transfer), and a
# second flock on a fresh descriptor of the same file would conflict with the process's own first one.
_held: dict[Path, tuple[int, int]] = {}


class WorkspaceBusyError(WorkspaceError):
    """Another command is writing to the workspace."""


@contextmanager
def writer_lock(root: Path, command: str) -> Iterator[None]:
    """Hold the workspace's writer lock for the block; raises WorkspaceBusyError at once if another process
    holds it."""
    key = Path(root).resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    path = key / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise WorkspaceError(f"cannot write to {key}: {error.strerror or error}") from error
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkspaceError(f"cannot lock {path}: {error.strerror or error}") from error
            holder = os.pread(fd, 1000, 0).decode(errors="replace").strip() or "another tdb command"
            raise WorkspaceBusyError(
                f"{key} is being changed by {holder}; wait for it to finish (or stop it), then run this again"
            ) from None
        with contextlib.suppress(OSError):  # only a courtesy to the next writer: a full disk must not stop this one
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"`tdb {command}` (pid {os.getpid()} on {socket.gethostname()})\n".encode(), 0)
        _held[key] = (fd, 1)
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # closing the descriptor releases the lock
