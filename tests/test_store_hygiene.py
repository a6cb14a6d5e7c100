"""The store is written one way: through the transaction's Writer, whose inserts name every column (a migration
that adds or reorders a column cannot silently shift values); SQL that writes appears outside taskonomy_db/db.py
only where the SQL is the point (ingest's merge of new images into the stored ones)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from taskonomy_db.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
WRITING_SQL = re.compile(r"insert\s+(or\s+replace\s+)?into|update\s+\w+\s+set|delete\s+from", re.IGNORECASE)
# Where writing SQL is the point: an UPDATE ... FROM and an anti-joined INSERT ... SELECT merge a re-ingest.
ALLOWED = {"taskonomy_db/ingest.py": 2}


def test_writes_go_through_the_writer():
    found: dict[str, int] = {}
    for folder in ("taskonomy_db", "cli", "models"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            hits = len(WRITING_SQL.findall(path.read_text()))
            if hits and name != "taskonomy_db/db.py":
                found[name] = hits
    assert found == ALLOWED
    assert WRITING_SQL.search('con.execute("insert into losses values (?, ?, ?)")')  # the pattern does catch one


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace.init(tmp_path / "study")


def test_rows_go_in_by_name_whatever_their_order(workspace):
    rows = pa.table({"loss": [0.5, 0.25], "image_id": [7, 8], "transfer_id": [3, 3]})  # not the table's order
    with workspace.db.transaction() as con:
        assert con.insert("losses", rows) == 2
        assert con.insert("losses", [{"image_id": 9, "loss": 1.5, "transfer_id": 4}]) == 1
        assert con.insert("losses", []) == 0
    stored = workspace.db.query("select transfer_id, image_id, loss from losses order by image_id").to_pylist()
    assert stored == [
        {"transfer_id": 3, "image_id": 7, "loss": 0.5},
        {"transfer_id": 3, "image_id": 8, "loss": 0.25},
        {"transfer_id": 4, "image_id": 9, "loss": 1.5},
    ]


def test_one_row_returns_its_key_and_replace_rows_swaps_a_subset(workspace):
    run = {"command": "test", "version": "0", "git_commit": "x", "settings": "{}", "started_at": datetime.now(),
           "status": "running", "pid": 1, "host": "h"}  # fmt: skip
    with workspace.db.transaction() as con:
        first = con.insert_one("runs", run, returning="run_id")
        second = con.insert_one("runs", run, returning="run_id")
        con.update("runs", {"status": "done"}, run_id=first)
        assert con.count("runs", status="running") == 1
        con.insert("ingest_problems", [{"data_root": r, "path": p, "problem": "bad"} for r in "ab" for p in "xy"])
        con.replace_rows("ingest_problems", [{"data_root": "a", "path": "z", "problem": "worse"}], data_root="a")
    assert second == first + 1
    problems = workspace.db.query("select data_root, path from ingest_problems order by all").to_pylist()
    assert [(r["data_root"], r["path"]) for r in problems] == [("a", "z"), ("b", "x"), ("b", "y")]


def test_a_failed_write_leaves_nothing_and_names_must_be_plain(workspace):
    with pytest.raises(duckdb.ConstraintException), workspace.db.transaction() as con:
        con.insert("losses", [{"transfer_id": 1, "image_id": 1, "loss": 0.5}])
        con.insert_one("transfers", {"transfer_key": None})  # not null: the whole transaction goes
    assert workspace.db.scalar("select count(*) from losses") == 0
    with workspace.db.transaction() as con:
        with pytest.raises(ValueError, match="needs a condition"):
            con.delete("losses")
        with pytest.raises(ValueError, match="not a plain SQL identifier"):
            con.update("losses; drop table runs", {"loss": 1.0})
