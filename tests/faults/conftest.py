"""The fault-injection suite: trials a hostile but honest user would run (bad input, kill -9, two writers, a
full or unwritable disk), each through the real `tdb` executable in its own process, so a traceback or a
signal exit is seen exactly as a user would see it.

Every trial asserts the exit code, a one-line message naming the problem, no traceback, and that nothing in
the store was lost or changed (`store_fingerprint`: row counts of every table and a hash of `losses`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
import torch

from taskonomy_db.encoders import export_encoders
from taskonomy_db.extract import extract
from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest_generated
from taskonomy_db.training import train_tasks
from taskonomy_db.workspace import Workspace
from tests.conftest import REPO

TDB_TIMEOUT = 300
TDB = Path(sys.executable).parent / "tdb"  # the console script pip installed beside this Python


def tdb(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = TDB_TIMEOUT) -> subprocess.CompletedProcess:  # fmt: skip
    """Run `tdb ARGS` as a user would, in its own process, with both pipes read (no pipe can fill and stall)."""
    return subprocess.run(
        [str(TDB), *map(str, args)],
        cwd=cwd or REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> str:
    """A handled error: exit `code` (never a signal), no traceback, and stderr's last line is the one
    `Error: ...` line, which names every fragment."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert result.stderr.rstrip("\n").splitlines()[-1] == line, result.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def store_fingerprint(store: Path) -> dict[str, object]:
    """Row counts of every table and a hash of every loss in a fixed order: equal before and after a trial
    means nothing was lost or changed."""
    with duckdb.connect(str(store), read_only=True) as con:
        tables = [row[0] for row in con.execute("select table_name from duckdb_tables() order by 1").fetchall()]
        counts = {name: con.execute(f'select count(*) from "{name}"').fetchone()[0] for name in tables}
        digest = hashlib.sha256()
        if "losses" in tables:
            for row in con.execute("select * from losses order by all").fetchall():
                digest.update(repr(row).encode())
    return {"counts": counts, "losses": digest.hexdigest()}


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """`folder` refuses new files for the block. Root ignores permission bits, so there the folder is made
    immutable (chattr +i); a machine that allows neither skips the trial with the reason."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make {folder} unwritable as root here (chattr +i: {made.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def small_filesystem(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point`, to fill up; skipped with the reason where mounting is not allowed."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or 'mount failed'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# A tiny study ready for `tdb transfer`: generated data, one epoch of training, export and extraction (the
# pattern of tests/test_transfer.py's `prepared`). Built once; a trial works on its own copy (`study`).
SIZE = 32
TRAINED = ["depth_zbuffer", "normal", "class_scene"]
EXTRACTED = [*TRAINED, "random"]
# Transfer settings small enough for seconds: one target, order 1, no network baseline.
QUICK_TRANSFER = ("--targets", "depth_zbuffer", "--transfer-images", "6", "--holdout-images", "4",
                  "--max-steps", "4", "--max-order", "1", "--baselines", "random", "--workers", "1")  # fmt: skip


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # two cores shared with other work: oversubscribed threads stall
    try:
        data = tmp_path_factory.mktemp("generated") / "data"
        generate(data, n_buildings=6, rooms_per_building=1, points_per_room=2, views_per_point=3, size=SIZE,
                 workers=1, progress=False)  # fmt: skip
        workspace = Workspace.init(tmp_path_factory.mktemp("prepared") / "study")
        train = {"image_size": SIZE, "epochs": 1, "width": 8, "batch_size": 8, "threads": 1}
        workspace.update_settings("train", train)
        workspace.update_settings("split", {"train": 1, "val": 1, "test": 1})
        ingest_generated(workspace, data)
        train_tasks(workspace, TRAINED, progress=False)
        export_encoders(workspace, EXTRACTED)
        extract(workspace, EXTRACTED, progress=False)
    finally:
        torch.set_num_threads(previous)
    return workspace.root


@pytest.fixture
def study(prepared: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared study: a trial may damage it."""
    root = tmp_path / "study"
    shutil.copytree(prepared, root)
    return root
