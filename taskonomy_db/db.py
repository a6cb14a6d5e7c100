"""The one class that owns the workspace's DuckDB connection: schema migrations, views, queries, transactions.

Connections are short-lived on purpose: DuckDB lets one process write a file or many read it, never both, so a
long job (training, transfers) opens the file only for the moment it records a result, and `tdb query` in
another terminal keeps working while the job runs. Opening retries while another process holds the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from taskonomy_db import sandbox
from taskonomy_db.errors import QueryError, StoreUnreadableError, WorkspaceError

LOCK_WAIT_SECONDS = 60.0
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_VIEW_NAME = re.compile(r"^\d{2}_[a-z0-9]+_[a-z0-9_]+\.sql$")
_CREATED_VIEW = re.compile(r"^create or replace view (\w+)", re.IGNORECASE | re.MULTILINE)


def _sql_files() -> tuple[list[tuple[int, str, str]], list[tuple[str, str]]]:
    """(version, name, text) for every migration and (name, text) for every view file, in apply order."""
    root = resources.files("taskonomy_db.sql")
    migrations = []
    for entry in root.joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            migrations.append((int(match.group(1)), entry.name, entry.read_text()))
    views = [(e.name, e.read_text()) for e in root.iterdir() if _VIEW_NAME.match(e.name)]
    return sorted(migrations), sorted(views)


def schema_version_available() -> int:
    migrations, _ = _sql_files()
    return migrations[-1][0] if migrations else 0


def _views_digest(views: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, text in views:
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


# What DuckDB says of a file it cannot trust: a block whose checksum fails, a bad header, a file cut short.
_UNREADABLE = ("corrupt database file", "not a valid duckdb database file", "could not read enough bytes")


def _is_unreadable(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return any(fragment in text for fragment in _UNREADABLE)


def _is_lock_conflict(error: duckdb.Error) -> bool:
    text = str(error)
    return "lock" in text.lower() and ("conflicting" in text.lower() or "could not set" in text.lower())


class Database:
    """A workspace's DuckDB file. Every read and write of the store goes through this class."""

    def __init__(self, path: Path | str, variables: dict[str, object] | None = None) -> None:
        self.path = Path(path)
        # SQL variables every connection sets before its first statement: the analysis settings the views read
        # with getvariable, fixed when the workspace opens (an edit of tdb.toml reaches the next command).
        self.variables = dict(variables or {})

    @contextmanager
    def connect(
        self, read_only: bool = False, config: dict[str, object] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, waiting up to LOCK_WAIT_SECONDS while another process holds a conflicting lock."""
        if read_only and not self.path.exists():
            raise WorkspaceError(f"database not found: {self.path}")
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config or {})
                break
            except duckdb.Error as error:
                if _is_unreadable(error):
                    raise self._unreadable(error) from error
                if not _is_lock_conflict(error) or time.monotonic() > deadline:
                    raise WorkspaceError(f"cannot open {self.path}: {_one_line(error)}") from error
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            for name, value in self.variables.items():
                con.execute(f"set variable {name} = ?", [value])
            yield con
        except duckdb.Error as error:
            # A damaged block is found only when a statement reads it, which can be any statement of any command.
            if _is_unreadable(error):
                raise self._unreadable(error) from error
            raise
        finally:
            con.close()

    def _unreadable(self, error: duckdb.Error) -> StoreUnreadableError:
        return StoreUnreadableError(
            f"the store {self.path} is corrupt or unreadable ({_one_line(error)}); restore it from a copy,"
            " or move it aside and rebuild the workspace"
        )

    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        """A write connection inside one transaction: everything in the block commits, or nothing does."""
        with self.connect() as con:
            con.execute("begin transaction")
            try:
                yield Writer(con)
            except BaseException as error:
                # A rollback that fails too (a corrupt block, a full disk) must not hide the error that caused it;
                # closing the connection discards the uncommitted work either way.
                with contextlib.suppress(duckdb.Error):
                    con.execute("rollback")
                if isinstance(error, duckdb.IOException) and not _is_unreadable(error):
                    raise self._write_failed(error) from error
                raise
            try:
                con.execute("commit")
            except duckdb.Error as error:
                raise self._write_failed(error) from error

    def _write_failed(self, error: duckdb.Error) -> WorkspaceError:
        # A full disk or a vanished folder: DuckDB has kept the store as it was before the transaction.
        return WorkspaceError(f"cannot write {self.path}, nothing of this step was stored: {_one_line(error)}")

    # -- schema ---------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        if not self.path.exists():
            return 0
        with self.connect(read_only=True) as con:
            return self._version(con)

    @staticmethod
    def _applied(con: duckdb.DuckDBPyConnection) -> set[int]:
        """Numbers of the migrations already applied (tracked one by one, so a migration merged late still runs)."""
        exists = con.execute(
            "select count(*) from duckdb_tables() where table_name = 'schema_meta' and schema_name = 'main'"
        ).fetchone()[0]
        if not exists:
            return set()
        row = con.execute("select value from schema_meta where key = 'applied'").fetchone()
        if row:
            return {int(number) for number in row[0].split(",") if number}
        # Stores from before migrations were tracked one by one recorded only the highest version applied.
        row = con.execute("select value from schema_meta where key = 'version'").fetchone()
        available = {number for number, _, _ in _sql_files()[0]}
        return {number for number in available if number <= int(row[0])} if row else set()

    @classmethod
    def _version(cls, con: duckdb.DuckDBPyConnection) -> int:
        return max(cls._applied(con), default=0)

    def _check_not_newer(self, applied: set[int], available: set[int]) -> None:
        unknown = sorted(applied - available)
        if unknown:
            raise WorkspaceError(
                f"{self.path} has schema migrations {unknown} that this taskonomy-db does not know; upgrade it"
            )

    def needs_migration(self) -> bool:
        migrations, views = _sql_files()
        if not self.path.exists():
            return True
        with self.connect(read_only=True) as con:
            applied = self._applied(con)
            if not applied:
                return True
            digest = con.execute("select value from schema_meta where key = 'views_digest'").fetchone()
            existing = {
                row[0]
                for row in con.execute(
                    "select view_name from duckdb_views() where not internal and schema_name = 'main'"
                ).fetchall()
            }
        available = {number for number, _, _ in migrations}
        self._check_not_newer(applied, available)
        # A view dropped by hand (`tdb query --write "drop view ..."`) is made again, not left broken.
        expected = {name for _, text in views for name in _CREATED_VIEW.findall(text)}
        stale = digest is None or digest[0] != _views_digest(views) or not expected <= existing
        return bool(available - applied) or stale

    def migrate(self) -> int:
        """Apply pending migrations and recreate the views, all in one transaction. Returns the schema version."""
        migrations, views = _sql_files()
        with self.transaction() as con:
            applied = self._applied(con)
            self._check_not_newer(applied, {number for number, _, _ in migrations})
            for number, _name, text in migrations:
                if number not in applied:
                    con.execute(text)
                    applied.add(number)
            con.execute(
                "insert or replace into schema_meta (key, value) values ('applied', ?)",
                [",".join(map(str, sorted(applied)))],
            )
            for _name, text in views:
                con.execute(text)
            con.execute(
                "insert or replace into schema_meta (key, value) values ('views_digest', ?)", [_views_digest(views)]
            )
        return max(applied, default=0)

    # -- reading --------------------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run a statement on a read-only connection and return its result as an Arrow table."""
        with self.connect(read_only=True) as con:
            return _run(con, sql, params)

    def execute_user_sql(self, sql: str, write: bool = False, allow_read: Iterable[str | Path] = ()) -> pa.Table:
        """A user's ad-hoc SQL. With `write` it runs in one transaction, unsandboxed: it may read and write any
        file. Without, it runs in the sandbox (taskonomy_db.sandbox): the store cannot change, no file is
        written, and files are read only inside the workspace (the store's folder) or at `allow_read`."""
        allow_read = list(allow_read)
        if write:
            if allow_read:
                raise QueryError("--allow-read is for read-only queries; --write already reads any file")
            with self.transaction() as con:
                return _run(con, sql, None)
        sandbox.refuse_statements(sql)
        folders, files = sandbox.readable(self.path.parent, allow_read)
        with self.connect(read_only=True, config=sandbox.CONNECT_CONFIG) as con:
            sandbox.lock_down(con, folders, files)
            try:
                return _run(con, sql, None)
            except QueryError as error:
                refused = sandbox.explain(error.__cause__) if isinstance(error.__cause__, duckdb.Error) else None
                if refused:
                    raise QueryError(refused) from error
                if "read-only" in str(error).lower():
                    raise QueryError(f"{error} (pass --write to modify the workspace)") from error
                raise

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        table = self.query(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def relations(self) -> list[dict[str, str]]:
        """Every table and view with its one-line description (stored as a COMMENT in the database)."""
        table = self.query(
            """
            select table_name as name, 'table' as kind, coalesce(comment, '') as description
            from duckdb_tables() where schema_name = 'main' and not internal
            union all
            select view_name, 'view', coalesce(comment, '')
            from duckdb_views() where schema_name = 'main' and not internal
            order by kind, name
            """
        )
        return table.to_pylist()


Rows = pa.Table | Sequence[Mapping[str, Any]]


class Writer:
    """A transaction's connection, with writes that name every column: rows go in by name (from an Arrow table
    or dicts), so a migration that adds or reorders a column cannot shift values into the wrong one. Anything
    else a connection does (a query, an UPDATE ... FROM where the SQL is the point) passes through."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)

    def _run(self, sql: str, params: Sequence[Any] = ()) -> None:
        # Fetched to the end: DuckDB refuses other work on a connection (a register) while a result is pending.
        self.con.execute(sql, list(params)).fetchall()

    def insert(self, table: str, rows: Rows, replace: bool = False) -> int:
        """Insert `rows` (insert or replace when `replace`, for a table with a key); returns how many."""
        arrow = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
        if arrow.num_rows == 0:
            return 0
        self.con.register("_writer_rows", arrow)
        try:
            verb = "insert or replace" if replace else "insert"
            self._run(f"{verb} into {_identifier(table)} by name select * from _writer_rows")
        finally:
            self.con.unregister("_writer_rows")
        return arrow.num_rows

    def insert_one(
        self, table: str, values: Mapping[str, Any], replace: bool = False, returning: str | None = None
    ) -> Any:
        """Insert one row given as column -> value; returns the `returning` column's value (a generated key)."""
        columns = ", ".join(_identifier(c) for c in values)
        placeholders = ", ".join("?" for _ in values)
        verb = "insert or replace" if replace else "insert"
        sql = f"{verb} into {_identifier(table)} ({columns}) values ({placeholders})"
        if returning is None:
            self._run(sql, list(values.values()))
            return None
        return self.con.execute(f"{sql} returning {_identifier(returning)}", list(values.values())).fetchall()[0][0]

    def update(self, table: str, values: Mapping[str, Any], **where: Any) -> None:
        """Set `values` on the rows whose columns equal `where` (every row when `where` is empty)."""
        assignments = ", ".join(f"{_identifier(c)} = ?" for c in values)
        condition, params = _where(where)
        self._run(f"update {_identifier(table)} set {assignments}{condition}", [*values.values(), *params])

    def count(self, table: str, **where: Any) -> int:
        """How many rows' columns equal `where`."""
        condition, params = _where(where)
        return self.con.execute(f"select count(*) from {_identifier(table)}{condition}", params).fetchall()[0][0]

    def delete(self, table: str, **where: Any) -> None:
        """Delete the rows whose columns equal `where`."""
        if not where:
            raise ValueError("delete needs a condition; say which rows")
        condition, params = _where(where)
        self._run(f"delete from {_identifier(table)}{condition}", params)

    def delete_in(self, table: str, column: str, values: Sequence[Any]) -> None:
        """Delete the rows whose `column` is one of `values`."""
        self._run(f"delete from {_identifier(table)} where {_identifier(column)} in (select unnest(?))", [list(values)])

    def replace_rows(self, table: str, rows: Rows, **where: Any) -> int:
        """Make the rows whose columns equal `where` exactly `rows`: delete them, insert these."""
        self.delete(table, **where)
        return self.insert(table, rows)


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):  # names come from code, never from input; a bad one is a bug
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def _where(equal: Mapping[str, Any]) -> tuple[str, list[Any]]:
    if not equal:
        return "", []
    return " where " + " and ".join(f"{_identifier(c)} = ?" for c in equal), list(equal.values())


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | dict[str, Any] | None) -> pa.Table:
    try:
        relation = con.sql(sql, params=params)
        return pa.table({}) if relation is None else relation.to_arrow_table()
    except duckdb.Error as error:
        if _is_unreadable(error):
            raise  # not the query's fault: Database.connect names the store
        raise QueryError(_one_line(error)) from error


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
