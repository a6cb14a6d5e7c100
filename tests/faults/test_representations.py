"""Trials on extracted representations a user (or a disk) damaged after `tdb extract`: a deleted part, a
truncated one, one with rows missing, one copied in. Every reader fails with one line naming the encoder and
`tdb extract ENCODER`, before writing anything; and that command repairs the damage."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taskonomy_db.workspace import Workspace
from tests.faults.conftest import QUICK_TRANSFER, assert_one_line_error, store_fingerprint, tdb

ENCODER = "normal"


def _delete(part: Path) -> None:
    part.unlink()


def _truncate(part: Path) -> None:
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])


def _drop_rows(part: Path) -> None:
    table = pq.read_table(part)  # metadata kept: only the row count tells
    pq.write_table(table.slice(0, table.num_rows - 3), part)


def _copy_in(part: Path) -> None:
    (part.parent / "part-00099.parquet").write_bytes(part.read_bytes())


DAMAGE = {
    "deleted": (_delete, "is missing"),
    "truncated": (_truncate, "cannot be read as Parquet (truncated or corrupt)"),
    "rows missing": (_drop_rows, "rows, extraction wrote"),
    "copied in": (_copy_in, "a part the store does not list"),
}


def _damage(study: Path, how: str) -> Path:
    parts = sorted((study / "representations" / ENCODER).glob("part-*.parquet"))
    assert parts, "the prepared study has no part to damage"
    DAMAGE[how][0](parts[0])
    return parts[0]


@pytest.mark.parametrize("how", DAMAGE)
def test_transfer_over_a_damaged_part_is_one_line_naming_the_encoder_and_the_fix(study: Path, how: str):
    part = _damage(study, how)
    before = store_fingerprint(study / "taskonomy.duckdb")
    result = tdb("transfer", "-w", study, *QUICK_TRANSFER)
    line = assert_one_line_error(result, f"representations of {ENCODER}", f"`tdb extract {ENCODER}`")
    if how != "copied in":
        assert part.name in line and DAMAGE[how][1] in line
    else:
        assert DAMAGE[how][1] in line
    assert store_fingerprint(study / "taskonomy.duckdb") == before  # failed before its run was recorded


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_the_damaged_encoder_is_not_dropped_from_the_default_selection(study: Path, how: str):
    # With neither --targets nor --sources, the run chose its encoders from what was extracted: a deleted part
    # used to make the encoder vanish from both lists and the run succeed without it.
    _damage(study, how)
    result = tdb("transfer", "-w", study, "--transfer-images", "6", "--holdout-images", "4", "--max-steps", "2",
                 "--max-order", "1", "--baselines", "none", "--workers", "1")  # fmt: skip
    assert_one_line_error(result, f"representations of {ENCODER}", f"`tdb extract {ENCODER}`")


@pytest.mark.parametrize("how", DAMAGE)
def test_the_named_fix_repairs_the_damage(study: Path, how: str):
    _damage(study, how)
    repaired = tdb("extract", ENCODER, "-w", study)
    assert repaired.returncode == 0, repaired.stderr
    result = tdb("transfer", "-w", study, *QUICK_TRANSFER, "--sources", f"depth_zbuffer,{ENCODER}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(study.rglob("*.tmp"))


def test_a_gold_network_of_another_image_size_is_one_line(study: Path):
    # The prepared networks read 32-pixel images; the workspace now says 64 (a hand edit of tdb.toml).
    Workspace.open(study).update_settings("train", {"image_size": 64})
    before = store_fingerprint(study / "taskonomy.duckdb")
    result = tdb("transfer", "-w", study, *QUICK_TRANSFER[:-6], "--max-order", "1", "--workers", "1")
    assert_one_line_error(result, "gold network of depth_zbuffer reads 32-pixel images", "image_size is 64")
    assert store_fingerprint(study / "taskonomy.duckdb") == before
