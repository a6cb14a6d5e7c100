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

# DuckDB's allowed folders may be written as well as read, so these statements are refused outright: with the
# workspace and every --allow-read folder open to DuckDB, COPY ... TO or EXPORT DATABASE would write there.
_REFUSED = {
    duckdb.StatementType.COPY: "COPY can write outside the workspace; pass --write to allow it"
    " (to save a result, use --out FILE)",
    duckdb.StatementType.COPY_DATABASE: "COPY FROM DATABASE can write outside the workspace; pass --write to allow it",
    duckdb.StatementType.EXPORT: "EXPORT DATABASE can write outside the workspace; pass --write to allow it"
    " (to save a result, use --out FILE)",
    duckdb.StatementType.ATTACH: "ATTACH can write outside the workspace; pass --write to allow it",
    duckdb.StatementType.LOAD: "INSTALL and LOAD are refused: a read-only query installs and loads no extension",
}

_NO_ACCESS = re.compile(r'Cannot access (?:file|directory) "(.*)" - file system operations are disabled')
_LOCKED = re.compile(r'Cannot change configuration option "(.*)" - the configuration has been locked')


def refuse_statements(sql: str) -> None:
    """Raise QueryError naming the first statement of `sql` the sandbox refuses by kind."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(" ".join(str(error).split())) from error
    for statement in statements:
        try:
            kind = statement.type
        except ValueError:  # a kind this duckdb's Python API cannot name yet (UPDATE EXTENSIONS)
            raise QueryError("a read-only query refuses this kind of statement; pass --write to run it") from None
        if kind in _REFUSED:
            raise QueryError(_REFUSED[kind])


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
