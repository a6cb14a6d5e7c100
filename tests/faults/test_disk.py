"""A full disk or an unwritable folder: `tdb init`, `tdb ingest` and `tdb extract` say which path could not be
written, in one line, and leave nothing half-written; the same command succeeds once there is room."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from taskonomy_db.generate import generate
from tests.faults.conftest import assert_one_line_error, small_filesystem, store_fingerprint, tdb, unwritable


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("generated") / "data"
    generate(data, n_buildings=6, rooms_per_building=1, points_per_room=2, views_per_point=2, size=32, workers=1,
             progress=False)  # fmt: skip
    return data


def test_init_on_a_full_disk_leaves_no_workspace_behind(tmp_path: Path):
    with small_filesystem(tmp_path / "fs", "300k") as fs:
        result = tdb("init", fs / "study")
        assert_one_line_error(result, str(fs / "study"))
        assert "No space left on device" in result.stderr
        assert not (fs / "study").exists()


def test_ingest_on_a_full_disk_stores_nothing_and_succeeds_once_there_is_room(tmp_path: Path, dataset: Path):
    with small_filesystem(tmp_path / "fs", "1200k") as fs:
        study = fs / "study"
        assert tdb("init", study).returncode == 0
        store = study / "taskonomy.duckdb"
        before = store_fingerprint(store)
        result = tdb("ingest", dataset, "-w", study)
        assert_one_line_error(result, f"cannot write {store}", "No space left on device")
        after = store_fingerprint(store)
        # Only the failed run's provenance row is new.
        assert after == {**before, "counts": {**before["counts"], "runs": 1}}
        with duckdb.connect(str(store), read_only=True) as con:
            assert con.execute("select command, status from runs").fetchall() == [("ingest", "failed")]
        subprocess.run(["mount", "-o", "remount,size=20m", str(fs)], check=True)
        again = tdb("ingest", dataset, "-w", study)
        assert again.returncode == 0, again.stderr
        assert store_fingerprint(store)["counts"]["images"] == 6 * 2 * 2


def representations_of(root: Path, encoder: str):
    from taskonomy_db.extract import read_representations
    from taskonomy_db.workspace import Workspace

    ids, rows = read_representations(Workspace.open(root), encoder)
    return ids.tolist(), rows.tolist()


@pytest.mark.parametrize("fault", ["full", "unwritable"])
def test_extract_that_cannot_write_a_part_is_one_line_and_the_rerun_gives_the_same_representations(
    study: Path, tmp_path: Path, fault: str
):
    encoder = "normal"
    expected = representations_of(study, encoder)
    folder = study / "representations" / encoder
    for part in folder.glob("part-*.parquet"):
        part.unlink()
    if fault == "full":
        with small_filesystem(folder, "8k"):
            result = tdb("extract", encoder, "-w", study)
            assert not list(folder.iterdir())  # nothing half-written
        reason = "No space left on device"
    else:
        with unwritable(folder):
            result = tdb("extract", encoder, "-w", study)
        reason = "not permitted" if os.geteuid() == 0 else "Permission denied"
    assert_one_line_error(result, f"cannot write {folder}", reason)
    assert not list(folder.iterdir())
    again = tdb("extract", encoder, "-w", study)
    assert again.returncode == 0, again.stderr
    assert representations_of(study, encoder) == expected
