"""kill -9 of `tdb train` at several moments, then a rerun: the result equals an uninterrupted run's, and a
killed forced retraining leaves the previous network, result and epochs in place until a rerun finishes it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest_generated
from taskonomy_db.locking import LOCK_FILE
from taskonomy_db.training import load_gold_network, network_sha256
from taskonomy_db.workspace import Workspace
from tests.faults.conftest import TDB, sha256_file, store_fingerprint, tdb

TRAIN = {"image_size": 32, "epochs": 12, "width": 8, "batch_size": 8, "threads": 1}
TASK = "depth_zbuffer"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("generated") / "data"
    generate(data, n_buildings=6, rooms_per_building=1, points_per_room=2, views_per_point=3, size=32, workers=1,
             progress=False)  # fmt: skip
    workspace = Workspace.init(tmp_path_factory.mktemp("ws") / "study")
    workspace.update_settings("train", TRAIN)
    workspace.update_settings("split", {"train": 1, "val": 1, "test": 1})
    ingest_generated(workspace, data)
    return workspace.root


def copy_of(root: Path, where: Path) -> Path:
    shutil.copytree(root, where)
    return where


def trained(root: Path) -> dict:
    """What a training leaves: the network's weights, its stored result and its epochs (not their timings)."""
    workspace = Workspace.open(root)
    network, _ = load_gold_network(workspace, TASK)
    return {
        "weights": network_sha256(network),
        "result": workspace.db.query(
            "select best_epoch, n_epochs, test_loss, baseline_loss from gold_results where task = ?", [TASK]
        ).to_pylist(),
        "epochs": workspace.db.query(
            "select epoch, train_loss, val_loss, is_best from training_epochs where task = ? order by epoch", [TASK]
        ).to_pylist(),
    }


def kill_when(root: Path, ready, *args: str) -> None:
    """Start `tdb train TASK ARGS`, SIGKILL it as soon as `ready()` holds, and check the kill landed mid-run."""
    process = subprocess.Popen(
        [str(TDB), "train", TASK, *args, "-w", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the training ended before the kill: the trial proved nothing"


def test_train_killed_at_three_moments_resumes_to_the_uninterrupted_result(ingested: Path, tmp_path: Path):
    reference = copy_of(ingested, tmp_path / "reference")
    assert tdb("train", TASK, "-w", reference).returncode == 0
    expected = trained(reference)
    assert len(expected["epochs"]) == TRAIN["epochs"]

    root = copy_of(ingested, tmp_path / "killed")
    resume = root / "models" / f"{TASK}.last.pt"
    lock = root / LOCK_FILE
    kill_when(root, lambda: lock.is_file() and "tdb train" in lock.read_text())  # its run begun, reading the data
    kill_when(root, resume.is_file)  # right after the first epoch's resume file
    first = sha256_file(resume)
    kill_when(root, lambda: resume.is_file() and sha256_file(resume) != first)  # one more epoch in
    assert Workspace.open(root).db.scalar("select count(*) from gold_results") == 0  # nothing claimed yet
    finished = tdb("train", TASK, "-w", root)
    assert finished.returncode == 0, finished.stderr
    assert trained(root) == expected
    assert not list((root / "models").glob(".*.tmp")) and not resume.exists()


def test_a_killed_forced_retraining_keeps_the_previous_results_until_a_rerun_finishes_it(
    ingested: Path, tmp_path: Path
):
    root = copy_of(ingested, tmp_path / "study")
    assert tdb("train", TASK, "-w", root).returncode == 0
    previous, store = trained(root), store_fingerprint(root / "taskonomy.duckdb")
    Workspace.open(root).update_settings("train", {"learning_rate": 0.01})  # new settings: a new network
    resume = root / "models" / f"{TASK}.last.pt"
    kill_when(root, resume.is_file, "--force")
    assert trained(root) == previous
    after = store_fingerprint(root / "taskonomy.duckdb")
    assert after["counts"] == {**store["counts"], "runs": store["counts"]["runs"] + 1}
    finished = tdb("train", TASK, "-w", root)
    assert finished.returncode == 0, finished.stderr
    now = trained(root)
    assert now["weights"] != previous["weights"] and len(now["epochs"]) == TRAIN["epochs"]


def without_runs(fingerprint: dict) -> dict:
    return {name: n for name, n in fingerprint["counts"].items() if name != "runs"}


def images(root: Path) -> list[dict]:
    return Workspace.open(root).db.query("select * from images order by image_id").to_pylist()


@pytest.mark.parametrize("moment", ["started", "writing"])
def test_ingest_killed_stores_all_or_nothing_and_a_rerun_equals_an_uninterrupted_one(tmp_path: Path, moment: str):
    data = tmp_path / "data"
    generate(data, n_buildings=6, rooms_per_building=2, points_per_room=3, views_per_point=2, size=32, workers=1,
             progress=False)  # fmt: skip
    reference = tmp_path / "reference"
    assert tdb("init", reference).returncode == 0
    assert tdb("ingest", data, "-w", reference).returncode == 0
    root = tmp_path / "killed"
    assert tdb("init", root).returncode == 0
    store, lock = root / "taskonomy.duckdb", root / LOCK_FILE
    empty, size = store_fingerprint(store), store.stat().st_size
    ready = {
        "started": lambda: lock.is_file() and "tdb ingest" in lock.read_text(),  # its run has begun
        "writing": lambda: store.stat().st_size > size + 65536,  # its rows are going into the store
    }[moment]
    process = subprocess.Popen([str(TDB), "ingest", str(data), "-w", str(root)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the ingest ended before the kill: the trial proved nothing"
    # All or nothing: the store holds none of the dataset, or all of it (a kill after the commit).
    counts = without_runs(store_fingerprint(store))
    assert counts in (without_runs(empty), without_runs(store_fingerprint(reference / "taskonomy.duckdb")))
    finished = tdb("ingest", data, "-w", root)
    assert finished.returncode == 0, finished.stderr
    assert images(root) == images(reference)


def test_a_result_whose_weights_were_replaced_is_measured_again(ingested: Path, tmp_path: Path):
    # What a training killed between putting its weights in place and committing their result leaves (found in
    # review): another training's weights beside this result. The next run must not reuse the result.
    root = copy_of(ingested, tmp_path / "study")
    other = copy_of(ingested, tmp_path / "other")
    Workspace.open(other).update_settings("train", {"learning_rate": 0.01})
    assert tdb("train", TASK, "-w", root).returncode == 0 and tdb("train", TASK, "-w", other).returncode == 0
    expected = trained(root)
    shutil.copyfile(other / "models" / f"{TASK}.pt", root / "models" / f"{TASK}.pt")
    assert trained(root)["weights"] != expected["weights"]
    again = tdb("train", TASK, "-w", root)
    assert again.returncode == 0, again.stderr
    assert trained(root) == expected  # trained again by the same seed, not skipped: the same weights and result
    stored = Workspace.open(root).db.scalar("select network_sha256 from gold_results where task = ?", [TASK])
    assert stored == expected["weights"]
