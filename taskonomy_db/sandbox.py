"""The sandbox a read-only user query (`tdb query` without --write) runs in.

A read-only connection stops writes to the store, not the settings and calls that write other files
(`SET log_query_path`, `PRAGMA profile_output`, `CALL enable_logging(storage='file')`), nor extension downloads.
No list of statements can name them all, so the sandbox is DuckDB's own: external access off (no file outside
the allowed folders and files is opened, no extension installed or loaded from disk), and the configuration
locked so that no SET, RESET or PRAGMA can undo it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import duckdb

from taskonomy_db.errors import QueryError

# Given at connect time: DuckDB refuses these once external access is off, and refuses the allowed folders and
# files before the database starts, so those are SET in `lock_down` instead.
CONNECT_CONFIG: dict[str, object] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
}

# DuckDB's allowed folders may be written as well as read, so only statements that cannot write run: with the
# workspace and every --allow-read folder open to DuckDB, COPY ... TO or EXPORT DATABASE would write there, and so
# would a COPY wrapped in PREPARE/EXECUTE or run by EXPLAIN ANALYZE. An allow-list, because any kind DuckDB adds
# later is refused until someone has looked at it. (SET, PRAGMA and CALL cannot change the locked configuration.)
_ALLOWED = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.PRAGMA,
    duckdb.StatementType.CALL,
    duckdb.StatementType.SET,
    duckdb.StatementType.VARIABLE_SET,
    duckdb.StatementType.TRANSACTION,
}
_ANALYZE = re.compile(r"\banaly[sz]e\b", re.IGNORECASE)  # EXPLAIN ANALYZE runs the statement it explains
_SAVE = " (to save a result, use --out FILE)"
_REASONS = {
    duckdb.StatementType.COPY: "COPY can write files" + _SAVE,
    duckdb.StatementType.EXPORT: "EXPORT DATABASE writes files" + _SAVE,
    duckdb.StatementType.COPY_DATABASE: "COPY FROM DATABASE writes a database",
    duckdb.StatementType.ATTACH: "ATTACH can write another database",
    duckdb.StatementType.PREPARE: "a prepared statement could write files",
    duckdb.StatementType.EXECUTE: "a prepared statement could write files",
}


_NO_ACCESS = re.compile(r'Cannot access (?:file|directory) "(.*)" - file system operations are disabled')
_LOCKED = re.compile(r'Cannot change configuration option "(.*)" - the configuration has been locked')


def refuse_statements(sql: str) -> None:
    """Raise QueryError naming the first statement of `sql` that is not one a read-only query may run."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(" ".join(str(error).split())) from error
    for statement in statements:
        try:
            kind = statement.type
        except ValueError:  # a kind this duckdb's Python API cannot name yet (UPDATE EXTENSIONS)
            raise QueryError("a read-only query refuses this kind of statement; pass --write to run it") from None
        if kind == duckdb.StatementType.LOAD:
            raise QueryError("INSTALL and LOAD are refused: a read-only query installs and loads no extension")
        if kind == duckdb.StatementType.EXPLAIN and _ANALYZE.search(statement.query):
            raise QueryError("EXPLAIN ANALYZE runs the statement it explains; pass --write to run it")
        if kind not in _ALLOWED:
            reason = _REASONS.get(kind, f"{kind.name} statements can change data")
            raise QueryError(f"a read-only query runs SELECT-like statements only: {reason}; pass --write to run it")


def readable(workspace: Path, allow_read: Iterable[str | Path]) -> tuple[list[str], list[str]]:
    """The folders and files a sandboxed query may read: the workspace and each allowed path, made absolute
    (DuckDB compares prefixes, so a folder ends with '/' lest /data allow /data2)."""
    folders = [_folder(workspace.resolve())]
    files = []
    for given in allow_read:
        path = Path(given).expanduser().resolve()
        if path.is_dir():
            folders.append(_folder(path))
        elif path.exists():
            files.append(str(path))
        else:
            raise QueryError(f"cannot allow reading {given}: no such file or folder")
    return folders, files


def _folder(path: Path) -> str:
    return str(path).rstrip("/") + "/"


def lock_down(con: duckdb.DuckDBPyConnection, folders: list[str], files: list[str]) -> None:
    """Turn a fresh connection into the sandbox. The order is DuckDB's: what may be read is set while external
    access is still on, then access goes off, then the lock keeps both."""
    con.execute("set allowed_directories = ?", [folders])
    con.execute("set allowed_paths = ?", [files])
    con.execute("set enable_external_access = false")
    con.execute("set lock_configuration = true")


def explain(error: duckdb.Error) -> str | None:
    """A one-line message naming what the sandbox refused, or None for an error that is not the sandbox's."""
    text = str(error)
    access = _NO_ACCESS.search(text)
    if access:
        return (
            f"a read-only query cannot open {access.group(1)}: it is outside the workspace"
            " (pass --allow-read PATH to read it)"
        )
    locked = _LOCKED.search(text)
    if locked:
        return (
            f"a read-only query cannot change the setting {locked.group(1)}: its settings are locked"
            " (--write runs without the sandbox)"
        )
    if "Loading external extensions is disabled" in text:
        return "a read-only query loads no extension (--write runs without the sandbox)"
    return None
