"""The workspace: init, settings, schema migrations, provenance, and read-only queries."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.db import schema_version_available
from taskonomy_db.errors import WorkspaceError
from taskonomy_db.workspace import Workspace


def test_init_creates_the_layout_and_a_migrated_store(tmp_path):
    workspace = Workspace.init(tmp_path / "study", seed=7)
    for name in ("tdb.toml", "taskonomy.duckdb", "models", "representations", "reports"):
        assert (workspace.root / name).exists()
    assert workspace.seed == 7
    assert workspace.db.schema_version() == schema_version_available()
    assert not workspace.db.needs_migration()
    with pytest.raises(WorkspaceError, match="already a workspace"):
        Workspace.init(workspace.root)


def test_open_resolves_flag_then_env_then_cwd(tmp_path, monkeypatch):
    Workspace.init(tmp_path / "a")
    Workspace.init(tmp_path / "b")
    monkeypatch.setenv("TDB_WORKSPACE", str(tmp_path / "b"))
    assert Workspace.open(tmp_path / "a").root == tmp_path / "a"
    assert Workspace.open().root == tmp_path / "b"
    monkeypatch.delenv("TDB_WORKSPACE")
    monkeypatch.chdir(tmp_path / "a")
    assert Workspace.open().root.resolve() == (tmp_path / "a").resolve()
    with pytest.raises(WorkspaceError, match="no workspace at"):
        Workspace.open(tmp_path)
    # A relative $TDB_WORKSPACE is read from the current folder; the error says where the path came from.
    monkeypatch.setenv("TDB_WORKSPACE", "b")
    with pytest.raises(WorkspaceError, match=r"^no workspace at b \(from \$TDB_WORKSPACE\) \(no tdb.toml\)"):
        Workspace.open()


def test_migration_upgrades_an_old_store_and_refuses_a_newer_one(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    with workspace.db.transaction() as con:
        con.execute("update schema_meta set value = 'stale' where key = 'views_digest'")
    assert workspace.db.needs_migration()
    Workspace.open(workspace.root)
    assert not workspace.db.needs_migration()
    with workspace.db.transaction() as con:
        applied = con.execute("select value from schema_meta where key = 'applied'").fetchone()[0]
        con.execute("update schema_meta set value = ? where key = 'applied'", [applied + ",999"])
    with pytest.raises(WorkspaceError, match=r"migrations \[999\] that this taskonomy-db does not know"):
        Workspace.open(workspace.root)


def test_a_migration_numbered_below_the_applied_ones_still_runs(tmp_path, monkeypatch):
    from taskonomy_db import db as db_module

    workspace = Workspace.init(tmp_path / "ws")
    shipped = db_module._sql_files

    def with_late_migration():
        migrations, views = shipped()
        return [(0, "0000_late.sql", "create table late_table (x integer)"), *migrations], views

    monkeypatch.setattr(db_module, "_sql_files", with_late_migration)
    assert workspace.db.needs_migration()
    Workspace.open(workspace.root)
    assert workspace.db.scalar("select count(*) from late_table") == 0
    assert not workspace.db.needs_migration()


def test_a_workspace_from_before_point_info_keeps_its_camera_files(tmp_path, monkeypatch):
    """Migration 7 renames points_path to point_info_path and the domain in datasets, migration 8 allows the
    legacy layout and records unused domains; rows keep their values."""
    from taskonomy_db import db as db_module

    shipped = db_module._sql_files

    def before_point_info():  # and without today's views, which read columns of later migrations
        migrations, _ = shipped()
        return [m for m in migrations if m[0] < 7], []

    monkeypatch.setattr(db_module, "_sql_files", before_point_info)
    workspace = Workspace.init(tmp_path / "ws")
    with workspace.db.transaction() as con:
        con.execute(
            'insert into images (image_key, building, point, "view", split, rgb_path, points_path)'
            " values ('aa/point_0_view_0', 'aa', 0, 0, 'train', '/d/rgb.png', '/d/points.json')"
        )
        con.execute("insert into datasets values ('/d', 'omnidata', 'hash', ['rgb', 'points'], 1, now())")
    monkeypatch.setattr(db_module, "_sql_files", shipped)

    Workspace.open(workspace.root)

    assert workspace.db.schema_version() == schema_version_available() >= 7
    row = workspace.db.query("select * from images").to_pylist()[0]
    assert row["point_info_path"] == "/d/points.json" and "points_path" not in row
    dataset = workspace.db.query("select layout, domains, unused_domains from datasets").to_pylist()[0]
    assert dataset == {"layout": "omnidata", "domains": ["rgb", "point_info"], "unused_domains": []}
    assert workspace.db.scalar("select count(*) from missing_files") == 0
    assert workspace.db.scalar("select count(*) from nonfixated_views") == 0
    with workspace.db.transaction() as con:  # the new layout is allowed
        con.execute("update datasets set layout = 'legacy'")


def test_a_store_that_recorded_only_its_highest_version_opens(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    with workspace.db.transaction() as con:
        applied = con.execute("select value from schema_meta where key = 'applied'").fetchone()[0]
        con.execute("delete from schema_meta where key = 'applied'")
        con.execute("insert into schema_meta values ('version', ?)", [applied.split(",")[-1]])
    Workspace.open(workspace.root)
    assert workspace.db.schema_version() == schema_version_available()


def test_a_view_dropped_by_hand_is_made_again_on_open(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    dropped = CliRunner().invoke(cli, ["query", "drop view affinity", "-w", str(workspace.root), "--write"])
    assert dropped.exit_code == 0, dropped.output
    assert workspace.db.scalar("select count(*) from duckdb_views() where view_name = 'affinity'") == 0
    reopened = Workspace.open(workspace.root)
    assert reopened.db.scalar("select count(*) from affinity") == 0  # the view answers again


def test_settings_update_is_merged_and_malformed_file_is_reported(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    workspace.update_settings("train", {"epochs": 3, "norm": "group"})
    assert (workspace.settings.train.epochs, workspace.settings.train.norm) == (3, "group")
    assert workspace.settings.train.width == 16 and workspace.settings.split.train == 0.7
    assert "width" not in (workspace.root / "tdb.toml").read_text()  # defaults of [train] are not pinned
    before = (workspace.root / "tdb.toml").read_text()
    with pytest.raises(WorkspaceError, match=r"\[train\] epochs must be at least 1, got 0"):
        workspace.update_settings("train", {"epochs": 0})
    assert (workspace.root / "tdb.toml").read_text() == before and workspace.settings.train.epochs == 3
    (workspace.root / "tdb.toml").write_text("[study\nseed = ")
    with pytest.raises(WorkspaceError, match="tdb.toml"):
        Workspace.open(workspace.root)


def test_run_records_provenance_and_failure(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    with workspace.run("ingest", {"root": "x"}):
        pass
    with pytest.raises(RuntimeError), workspace.run("train"):
        raise RuntimeError("boom")
    rows = workspace.db.query("select command, status, settings, version from runs order by run_id").to_pylist()
    assert [(r["command"], r["status"]) for r in rows] == [("ingest", "done"), ("train", "failed")]
    assert json.loads(rows[0]["settings"]) == {"root": "x"}


def test_query_is_read_only_without_write(tmp_path):
    runner = CliRunner()
    workspace = Workspace.init(tmp_path / "ws")
    ws = ["-w", str(workspace.root)]
    insert = "insert into tasks values ('t', '3D', 'rgb', 'dense', 'l1', true, true, '', 1)"
    assert runner.invoke(cli, ["query", insert, *ws, "--write"]).exit_code == 0

    refused = runner.invoke(cli, ["query", "delete from tasks", *ws])
    assert refused.exit_code == 1 and "--write" in refused.output
    assert workspace.db.scalar("select count(*) from tasks") == 1

    refused = runner.invoke(cli, ["query", "create table scratch_pad (x int)", *ws])
    assert refused.exit_code == 1
    assert workspace.db.scalar("select count(*) from duckdb_tables() where table_name = 'scratch_pad'") == 0

    deleted = runner.invoke(cli, ["query", "delete from tasks", *ws, "--write"])
    assert deleted.exit_code == 0
    assert workspace.db.scalar("select count(*) from tasks") == 0
    recorded = workspace.db.query("select settings, status from runs where command = 'query' order by run_id")
    assert [(r["settings"], r["status"]) for r in recorded.to_pylist()][1:] == [
        ('{"sql": "delete from tasks"}', "done")
    ]
    assert len(recorded) == 2  # the refused statements changed nothing and are not runs


def test_read_only_query_refuses_statements_that_write_elsewhere(tmp_path):
    runner = CliRunner()
    workspace = Workspace.init(tmp_path / "ws")
    ws = ["-w", str(workspace.root)]
    written = tmp_path / "out"
    statements = {
        "COPY can write": f"copy (select 1 as n) to '{written / 'n.csv'}'",
        "EXPORT DATABASE writes": f"select 1; export database '{written / 'export'}'",
        "ATTACH can write": f"attach '{written / 'other.duckdb'}' as other",
    }
    written.mkdir()
    for kind, sql in statements.items():
        refused = runner.invoke(cli, ["query", sql, *ws])
        assert refused.exit_code == 1
        assert refused.output.startswith("Error: a read-only query runs SELECT-like statements only: " + kind)
        assert refused.output.rstrip().endswith("pass --write to run it")
    assert not any(written.iterdir())
    copied = runner.invoke(cli, ["query", statements["COPY can write"], *ws, "--write"])
    assert copied.exit_code == 0 and (written / "n.csv").read_text() == "n\n1\n"


def test_query_formats_and_output_file(tmp_path):
    import pyarrow.parquet as pq

    runner = CliRunner()
    workspace = Workspace.init(tmp_path / "ws")
    ws = ["-w", str(workspace.root)]
    sql = "select * from (values (1, 'a'), (2, 'b')) as t(n, name)"
    assert runner.invoke(cli, ["query", sql, *ws, "--format", "csv"]).output == "n,name\n1,a\n2,b\n"
    assert json.loads(runner.invoke(cli, ["query", sql, *ws, "--format", "json"]).output) == [
        {"n": 1, "name": "a"},
        {"n": 2, "name": "b"},
    ]
    table = runner.invoke(cli, ["query", sql, *ws]).output.splitlines()
    assert table[0].split() == ["n", "name"] and table[2].split() == ["1", "a"]
    out = tmp_path / "result.parquet"
    assert runner.invoke(cli, ["query", sql, *ws, "--format", "parquet", "--out", str(out)]).exit_code == 0
    assert pq.read_table(out).num_rows == 2
    # without --format, the file's extension decides (a .parquet file used to get the text table)
    for name, check in [
        ("by_ext.parquet", lambda p: pq.read_table(p).num_rows == 2),
        ("by_ext.csv", lambda p: p.read_text() == "n,name\n1,a\n2,b\n"),
        ("by_ext.json", lambda p: json.loads(p.read_text())[1] == {"n": 2, "name": "b"}),
        ("by_ext.txt", lambda p: p.read_text().split()[:2] == ["n", "name"]),
    ]:
        result = runner.invoke(cli, ["query", sql, *ws, "--out", str(tmp_path / name)])
        assert result.exit_code == 0 and "wrote 2 rows" in result.output and check(tmp_path / name), name
    missing_out = runner.invoke(cli, ["query", sql, *ws, "--format", "parquet"])
    assert missing_out.exit_code == 2 and "--out" in missing_out.output
    bad = runner.invoke(cli, ["query", "select * from no_such_table", *ws])
    assert bad.exit_code == 1 and "no_such_table" in bad.output and "Traceback" not in bad.output


def test_query_output_is_strict_json_and_written_whole_or_not_at_all(tmp_path):
    runner = CliRunner()
    workspace = Workspace.init(tmp_path / "ws")
    ws = ["-w", str(workspace.root)]
    odd = runner.invoke(
        cli, ["query", "select 'nan'::double as x, 'inf'::double as y, 1.5 as z", *ws, "--format", "json"]
    )
    assert json.loads(odd.output, parse_constant=lambda name: pytest.fail(f"bare {name}")) == [
        {"x": None, "y": None, "z": 1.5}
    ]
    nested = tmp_path / "new" / "dir" / "n.csv"  # missing folders are made
    assert runner.invoke(cli, ["query", "select 1 as n", *ws, "--format", "csv", "--out", str(nested)]).exit_code == 0
    assert nested.read_text() == "n\n1\n"
    (tmp_path / "plain").write_text("a file, not a folder")
    for output_format in ("csv", "json", "parquet"):
        under_file = tmp_path / "plain" / f"x.{output_format}"
        result = runner.invoke(
            cli, ["query", "select 1 as n", *ws, "--format", output_format, "--out", str(under_file)]
        )
        assert (
            result.exit_code == 1
            and result.output.strip()
            == f"Error: cannot write {under_file}: {tmp_path / 'plain'} is a file, not a folder"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "plain", "ws"]
    mismatch = runner.invoke(
        cli, ["query", "select 1 as n", *ws, "--format", "csv", "--out", str(tmp_path / "r.parquet")]
    )
    assert mismatch.exit_code == 2 and "--out r.parquet is a .parquet file but --format is csv" in mismatch.output
    assert not (tmp_path / "r.parquet").exists()
    empty = runner.invoke(cli, ["query", "  ", *ws])
    assert empty.exit_code == 2 and "empty" in empty.output


def test_init_refuses_an_empty_path_and_a_path_under_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    empty = runner.invoke(cli, ["init", ""])
    assert empty.exit_code == 1 and "path is empty" in empty.output and not (tmp_path / "tdb.toml").exists()
    (tmp_path / "plain").write_text("a file")
    under_file = runner.invoke(cli, ["init", "plain/ws"])
    assert under_file.exit_code == 1 and "cannot create the workspace" in under_file.output
    assert "Traceback" not in under_file.output


def test_tables_lists_every_relation_with_a_description(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    result = CliRunner().invoke(cli, ["tables", "-w", str(workspace.root), "--format", "json"])
    rows = json.loads(result.output)
    names = {row["name"] for row in rows}
    assert {"tasks", "images", "encoders", "transfers", "losses", "runs", "missing_files"} <= names
    assert all(row["description"] for row in rows)
