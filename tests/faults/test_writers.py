"""Two writers at once, and a writer that fails: the second writer is refused with a line naming the first
(readers go on), and a training that cannot finish leaves the previous gold network, result and epochs as they
were."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from taskonomy_db.locking import LOCK_FILE
from taskonomy_db.workspace import Workspace
from tests.faults.conftest import TDB, assert_one_line_error, sha256_file, store_fingerprint, tdb, unwritable

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def wait_for(condition, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_second_writer_is_refused_while_a_transfer_runs_and_readers_go_on(study: Path, tmp_path: Path):
    root = study
    gold = root / "models" / "depth_zbuffer.pt"
    before = sha256_file(gold)
    log = (tmp_path / "transfer.out").open("w")
    # Enough steps that the transfer is still running when the others start.
    transfer = subprocess.Popen(
        [
            str(TDB),
            "transfer",
            "-w",
            str(root),
            "--max-order",
            "1",
            "--transfer-images",
            "6",
            "--holdout-images",
            "4",
            "--workers",
            "1",
            "--max-steps",
            "3000",
            "--patience",
            "3000",
        ],  # fmt: skip
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        lock = root / LOCK_FILE
        wait_for(
            lambda: transfer.poll() is not None or (lock.is_file() and "tdb transfer" in lock.read_text()),
            "the transfer to take the lock",
        )
        train = tdb("train", "depth_zbuffer", "--force", "-w", root)
        assert transfer.poll() is None, "the transfer ended before the second writer ran: the trial proved nothing"
        assert_one_line_error(train, "is being changed by `tdb transfer`", f"pid {transfer.pid}")
        write = tdb("query", "--write", "delete from losses", "-w", root)
        assert_one_line_error(write, "is being changed by `tdb transfer`")
        read = tdb("query", "select count(*) as n from images", "--format", "csv", "-w", root)
        assert read.returncode == 0 and read.stdout.split() == ["n", "36"], read.stderr
        assert sha256_file(gold) == before
    finally:
        transfer.kill()
        transfer.wait(timeout=60)
        log.close()
    # The kernel dropped the killed holder's lock: the next writer goes ahead.
    assert tdb("train", "depth_zbuffer", "-w", root).returncode == 0


def test_a_training_that_cannot_save_keeps_the_previous_network_result_and_epochs(study: Path):
    root = study
    store = root / "taskonomy.duckdb"
    gold = root / "models" / "depth_zbuffer.pt"
    before, network = store_fingerprint(store), sha256_file(gold)
    with unwritable(root / "models"):
        result = tdb("train", "depth_zbuffer", "--force", "-w", root)
    assert_one_line_error(result, "cannot write", str(root / "models"))
    after = store_fingerprint(store)
    assert after["counts"] == {**before["counts"], "runs": before["counts"]["runs"] + 1}  # the failed run, recorded
    assert sha256_file(gold) == network
    rows = (
        Workspace.open(root)
        .db.query(
            "select (select count(*) from gold_results where task = 'depth_zbuffer') as results,"
            " (select count(*) from training_epochs where task = 'depth_zbuffer') as epochs,"
            " (select status from runs order by run_id desc limit 1) as status"
        )
        .to_pylist()
    )
    assert rows == [{"results": 1, "epochs": 1, "status": "failed"}]
    assert not list((root / "models").glob(".*.tmp")) and not (root / "models" / "depth_zbuffer.next.pt").exists()


def test_a_forced_training_replaces_the_network_result_and_epochs_together(study: Path):
    root = study
    gold = root / "models" / "depth_zbuffer.pt"
    workspace = Workspace.open(root)
    workspace.update_settings("train", {"epochs": 3})
    result = tdb("train", "depth_zbuffer", "-w", root)
    assert result.returncode == 0, result.stderr
    epochs = workspace.db.query(
        "select epoch, val_loss, is_best from training_epochs where task = 'depth_zbuffer' order by epoch"
    ).to_pylist()
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    lowest = min(epochs, key=lambda row: row["val_loss"])["epoch"]
    assert [row["epoch"] for row in epochs if row["is_best"]] == [lowest]
    stored = workspace.db.query("select best_epoch, n_epochs from gold_results where task = 'depth_zbuffer'")
    assert stored.to_pylist() == [{"best_epoch": lowest, "n_epochs": 3}]
    models = root / "models"
    assert not (models / "depth_zbuffer.next.pt").exists() and not (models / "depth_zbuffer.last.pt").exists()
    assert gold.is_file()
