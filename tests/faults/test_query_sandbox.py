"""Read-only `tdb query` is a sandbox: the hostile tester's trials (settings and calls that write files anywhere,
extension downloads, reads of any file, a deleted store), each through the real executable against a real
workspace. A trial passes when it is refused in one line and nothing under its folder was created or changed:
not the sentinel files outside the workspace, not the workspace, not the store, not $HOME (pointed inside the
folder, so an extension download or a persistent secret would land where it is seen)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taskonomy_db.errors import QueryError
from taskonomy_db.workspace import DATABASE_FILE, Workspace
from tests.faults.conftest import assert_one_line_error, store_fingerprint, tdb

SENTINEL = "written before the trial\n"


class Trial:
    """A workspace, a folder outside it holding a sentinel file and a CSV, and a home folder, all under one
    folder whose every file is hashed before a query and compared after."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = Workspace.init(root / "ws")
        with self.workspace.db.transaction() as con:  # a row, so a store that lost it would show
            con.execute("insert into tasks values ('t', '3D', 'rgb', 'dense', 'l1', true, true, '', 1)")
        self.store = self.workspace.root / DATABASE_FILE
        self.outside = root / "outside"
        self.outside.mkdir()
        self.sentinel = self.outside / "sentinel.txt"
        self.sentinel.write_text(SENTINEL)
        self.csv = self.outside / "numbers.csv"
        self.csv.write_text("n,name\n1,a\n2,b\n")
        self.home = root / "home"
        self.home.mkdir()

    def files(self) -> dict[str, str]:
        """Every file under the trial's folder, by relative path, with a hash of its bytes."""
        return {
            str(path.relative_to(self.root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(self.root.rglob("*"))
            if path.is_file()
        }

    def query(self, sql: str, *args: str | Path):
        # Run from the trial's folder, so a relative path in the SQL also lands where it is seen.
        return tdb("query", sql, "-w", self.workspace.root, *args, cwd=self.root, env={"HOME": str(self.home)})

    def refused(self, sql: str, *fragments: str, args: tuple[str | Path, ...] = ()) -> str:
        """Run `sql` read-only; it must fail in one line naming `fragments` and leave every file as it was."""
        files, fingerprint = self.files(), store_fingerprint(self.store)
        line = assert_one_line_error(self.query(sql, *args), *fragments)
        assert self.files() == files
        assert store_fingerprint(self.store) == fingerprint
        assert self.sentinel.read_text() == SENTINEL
        return line


@pytest.fixture
def trial(tmp_path: Path) -> Trial:
    return Trial(tmp_path)


@pytest.mark.parametrize("target", ["sentinel.txt", "new.log"])
def test_log_query_path_cannot_be_set(trial, target):
    path = trial.outside / target
    trial.refused(f"set log_query_path = '{path}'; select 1", "log_query_path", "locked", "--write")
    assert not (trial.outside / "new.log").exists()


@pytest.mark.parametrize(
    "sql, refused",
    [
        ("pragma enable_profiling = 'json'; pragma profile_output = '{target}'; select 1", "enable_profiling"),
        ("pragma profile_output = '{target}'; pragma enable_profiling = 'json'; select 1", "profile_output"),
        ("set profiling_output = '{target}'; select 1", "profiling_output"),
    ],
)
def test_profiling_output_cannot_be_set(trial, sql, refused):
    trial.refused(sql.format(target=trial.sentinel), refused, "locked")


def test_logging_to_files_cannot_be_enabled(trial):
    logs = trial.outside / "logs"
    trial.refused(f"call enable_logging(storage = 'file', storage_path = '{logs}'); select 1", "enable_logging")
    assert not logs.exists()


@pytest.mark.parametrize("sql", ["install httpfs", "load httpfs", "force install json", "update extensions"])
def test_no_extension_is_installed_or_loaded(trial, sql):
    trial.refused(sql, "read-only query")
    assert not any(trial.home.iterdir())  # no ~/.duckdb/extensions


@pytest.mark.parametrize(
    "sql, name",
    [
        ("set enable_external_access = true; select * from read_csv('/etc/passwd')", "enable_external_access"),
        ("reset enable_external_access; select * from read_csv('/etc/passwd')", "enable_external_access"),
        ("set lock_configuration = false", "lock_configuration"),
        ("reset lock_configuration", "lock_configuration"),
        ("set allowed_directories = ['/']; select * from read_csv('/etc/passwd')", "allowed_directories"),
        ("set temp_directory = '{outside}'", "temp_directory"),
    ],
)
def test_the_sandbox_settings_cannot_be_undone(trial, sql, name):
    trial.refused(sql.format(outside=trial.outside), name, "locked")


def test_files_outside_the_workspace_are_read_only_where_allowed(trial):
    sql = f"select * from read_csv('{trial.csv}') order by n"
    trial.refused(sql, str(trial.csv), "outside the workspace", "--allow-read")
    for allowed in (trial.csv, trial.outside):
        read = trial.query(sql, "--format", "csv", "--allow-read", allowed)
        assert read.returncode == 0, read.stderr
        assert read.stdout == "n,name\n1,a\n2,b\n"
    other = trial.root / "other.csv"  # allowing one file does not allow its neighbours
    other.write_text("x\n1\n")
    trial.refused(f"select * from read_csv('{other}')", str(other), args=("--allow-read", trial.csv))


def test_parquet_outside_is_read_only_where_allowed_and_inside_always(trial):
    outside = trial.outside / "scores.parquet"
    inside = trial.workspace.root / "representations" / "scores.parquet"
    for path in (outside, inside):
        pq.write_table(pa.table({"score": [0.5, 0.25]}), path)
    sql = "select sum(score) as total from read_parquet('{path}')"
    trial.refused(sql.format(path=outside), str(outside), "--allow-read")
    for path, args in ((outside, ("--allow-read", trial.outside)), (inside, ())):
        read = trial.query(sql.format(path=path), "--format", "csv", *args)
        assert read.returncode == 0, read.stderr
        assert read.stdout == "total\n0.75\n"


@pytest.mark.parametrize("path", ["/etc/passwd", "../../etc/passwd", "file:///etc/passwd"])
def test_system_files_are_not_read(trial, path):
    trial.refused(f"select * from read_csv('{path}', sep = ':')", path, "--allow-read")
    trial.refused(f"select * from read_text('{path}')", path)


def test_another_database_cannot_be_attached(trial):
    other = trial.outside / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("create table kept as select 1 as n")
    for target in (other, trial.outside / "new.duckdb", trial.workspace.root / "reports" / "new.duckdb"):
        trial.refused(f"attach '{target}' as other; select 1", "ATTACH", "--write")
    assert not (trial.outside / "new.duckdb").exists()


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("copy (select 1 as n) to '{target}'", "COPY"),
        ("copy tasks to '{target}'", "COPY"),
        ("export database '{folder}'", "EXPORT DATABASE"),
        # A COPY wrapped in a statement of another kind (found in review: both wrote tdb.toml).
        ("prepare p as copy (select 1 as n) to '{target}'; execute p", "prepared statement"),
        ("explain analyze copy (select 1 as n) to '{target}'", "EXPLAIN ANALYZE"),
    ],
)
def test_nothing_is_copied_or_exported_even_where_reading_is_allowed(trial, sql, kind):
    # DuckDB's allowed folders are writable too; the workspace and --allow-read folders must still not be.
    for folder in (trial.outside, trial.workspace.root / "reports"):
        target = folder / "copied.csv"
        trial.refused(
            sql.format(target=target, folder=folder / "export"), kind, "--write", args=("--allow-read", trial.outside)
        )
        assert not target.exists() and not (folder / "export").exists()


def test_a_deleted_store_is_reported_and_not_created(trial):
    trial.store.unlink()
    files = trial.files()
    line = assert_one_line_error(trial.query("select count(*) from tasks"), "missing", str(trial.store))
    assert "creates none" in line
    assert not trial.store.exists()
    assert trial.files() == files


def test_a_store_needing_a_migration_is_not_migrated_by_a_read_only_query(trial):
    dropped = trial.query("drop view affinity", "--write")
    assert dropped.returncode == 0, dropped.stderr
    trial.refused("select 1", "needs a schema migration", "--write")
    migrated = trial.query("select count(*) as n from affinity", "--write", "--format", "csv")
    assert migrated.stdout == "n\n0\n", migrated.stderr


def test_read_only_features_still_work(trial):
    # Views, several statements (the last one's rows are printed), formats, and --out anywhere (tdb writes it).
    sql = "select count(*) as n from tasks; select count(*) as n from affinity"
    files = trial.files()
    as_csv = trial.query(sql, "--format", "csv")
    assert as_csv.returncode == 0 and as_csv.stdout == "n\n0\n", as_csv.stderr
    assert trial.files() == files
    out = trial.outside / "tasks.json"
    written = trial.query("select 1 as n; select task, loss from tasks", "--out", out)
    assert written.returncode == 0 and "wrote 1 row to" in written.stderr, written.stderr
    assert json.loads(out.read_text()) == [{"task": "t", "loss": "l1"}]


def test_write_and_allow_read_together_is_a_usage_error(trial):
    result = trial.query("select 1", "--write", "--allow-read", trial.csv)
    assert_one_line_error(result, "--allow-read", "--write", code=2)


def test_the_python_api_takes_the_allowed_paths(trial):
    workspace = Workspace.open(trial.workspace.root, read_only=True)
    sql = f"select count(*) as n from read_csv('{trial.csv}')"
    with pytest.raises(QueryError, match="--allow-read"):
        workspace.db.execute_user_sql(sql)
    assert workspace.db.execute_user_sql(sql, allow_read=[trial.csv]).to_pylist() == [{"n": 2}]
    with pytest.raises(QueryError, match="no such file or folder"):
        workspace.db.execute_user_sql(sql, allow_read=[trial.outside / "absent.csv"])
    with pytest.raises(QueryError, match="--write already reads any file"):
        workspace.db.execute_user_sql(sql, write=True, allow_read=[trial.csv])
