"""A user re-ingesting the dataset: the same data again redoes nothing, and one building moved to another split
redoes the training and the transfers it invalidates (here every one: the move changes what each gold network
is selected and tested on, so every encoder and every readout's inputs change)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskonomy_db.encoders import export_encoders
from taskonomy_db.extract import extract
from taskonomy_db.ingest import ingest, ingest_generated, write_split_csv
from taskonomy_db.training import train_tasks
from taskonomy_db.transfer import run_transfers
from taskonomy_db.workspace import Workspace
from tests.faults.conftest import EXTRACTED, TRAINED

QUICK = {"transfer_images": 6, "holdout_images": 4, "max_steps": 4, "max_order": 1, "baselines": ["random"],
         "workers": 1}  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def redo(root: Path) -> tuple[list[bool], dict[str, int]]:
    """Every step after ingest, as a user reruns them: which trainings were skipped, and the transfers' counts."""
    workspace = Workspace.open(root)
    skipped = [result.skipped for result in train_tasks(workspace, TRAINED, progress=False)]
    export_encoders(workspace, EXTRACTED)
    extract(workspace, EXTRACTED, progress=False)
    summary = run_transfers(workspace, QUICK, targets=["depth_zbuffer"], progress=False)
    totals = {"done": 0, "failed": 0, "skipped": 0}
    for row in summary.rows():
        for what in totals:
            totals[what] += row[what]
    return skipped, totals


def splits(root: Path) -> dict[str, str]:
    rows = Workspace.open(root).db.query("select distinct building, split from images order by 1").to_pylist()
    return {row["building"]: row["split"] for row in rows}


def data_root(root: Path) -> Path:
    return Path(Workspace.open(root).db.scalar("select data_root from datasets"))


def test_reingesting_the_same_data_redoes_nothing(study: Path):
    _, first = redo(study)
    n_transfers = first["done"]
    assert n_transfers > 0 and first["skipped"] == 0
    ingest_generated(Workspace.open(study), data_root(study))
    skipped, again = redo(study)
    assert skipped == [True] * len(TRAINED)
    assert again == {"done": 0, "failed": 0, "skipped": n_transfers}


def test_a_building_moved_to_another_split_redoes_the_training_and_the_transfers(study: Path, tmp_path: Path):
    _, first = redo(study)
    before = splits(study)
    moved = next(building for building, split in sorted(before.items()) if split == "train")
    after = {**before, moved: "test"}
    split_file = write_split_csv(tmp_path / "split.csv", after)
    ingest(Workspace.open(study), data_root(study), split_file=split_file)
    assert splits(study) == after
    skipped, again = redo(study)
    assert skipped == [False] * len(TRAINED)
    assert again["skipped"] == 0 and again["done"] == first["done"]
