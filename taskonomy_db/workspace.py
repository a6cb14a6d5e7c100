"""A study's workspace: one directory holding tdb.toml, the DuckDB store, ONNX models, Parquet representations
and reports. Every command resolves one with `Workspace.open`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from taskonomy_db import __version__
from taskonomy_db.atomic import atomic_path, process_alive, remove_stale_temporaries
from taskonomy_db.db import Database
from taskonomy_db.errors import WorkspaceError
from taskonomy_db.locking import writer_lock
from taskonomy_db.settings import Settings, as_dict, parse_settings

SETTINGS_FILE = "tdb.toml"
DATABASE_FILE = "taskonomy.duckdb"
SUBDIRS = ("models", "representations", "reports")

# The sections `tdb init` writes in full, so a new study's file shows what they hold; [train] and [transfer]
# hold only what was set, so a study takes a later version's defaults for the rest.
WRITTEN_AT_INIT = ("study", "split", "analysis")


def resolve_path(path: str | Path | None) -> Path:
    """The workspace directory: the given path, else $TDB_WORKSPACE, else the current directory."""
    if path is not None:
        return Path(path)
    env = os.environ.get("TDB_WORKSPACE")
    return Path(env) if env else Path.cwd()


@cache
def git_commit() -> str:
    """The commit of the taskonomy-db source tree in use, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def dumps_toml(settings: dict[str, dict[str, Any]]) -> str:
    """Serialise one level of tables of scalars and lists (all tdb.toml holds) as TOML."""
    lines = ["# taskonomy-db study settings. Edit freely; commands read this file at start."]
    for section, values in settings.items():
        lines.append("")
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


class Workspace:
    """An opened workspace directory. Construct with `Workspace.init` or `Workspace.open`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = Database(root / DATABASE_FILE)
        self._settings: Settings | None = None

    @classmethod
    def init(cls, path: str | Path, name: str | None = None, seed: int = 0) -> Workspace:
        if not str(path).strip():
            raise WorkspaceError("the workspace path is empty")
        root = Path(path)
        if (root / SETTINGS_FILE).exists():
            raise WorkspaceError(f"{root} is already a workspace ({SETTINGS_FILE} exists)")
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a directory")
        created = not root.exists()
        defaults = Settings()
        settings = {section: as_dict(getattr(defaults, section)) for section in WRITTEN_AT_INIT}
        settings["study"]["name"] = name or root.resolve().name
        settings["study"]["seed"] = seed
        workspace = cls(root)
        try:
            try:
                root.mkdir(parents=True, exist_ok=True)
                for sub in SUBDIRS:
                    (root / sub).mkdir(exist_ok=True)
            except OSError as error:
                raise WorkspaceError(f"cannot create the workspace at {root}: {error.strerror or error}") from error
            workspace.db.migrate()
            # Written last: a directory without tdb.toml is not a workspace.
            workspace._write_settings(settings)
            workspace.db.variables = workspace.sql_variables()
        except BaseException:
            if created:  # a failed init (a full disk) leaves nothing behind
                shutil.rmtree(root, ignore_errors=True)
            raise
        return workspace

    @classmethod
    def open(cls, path: str | Path | None = None, read_only: bool = False) -> Workspace:
        """The workspace at `path`, its store migrated to this taskonomy-db's schema; `read_only` changes
        nothing and creates nothing, and refuses a store that is missing or would need a migration."""
        root = resolve_path(path)
        if not (root / SETTINGS_FILE).is_file():
            where = f"{root} (from $TDB_WORKSPACE)" if path is None and os.environ.get("TDB_WORKSPACE") else root
            raise WorkspaceError(f"no workspace at {where} (no {SETTINGS_FILE}); create one with `tdb init {root}`")
        workspace = cls(root)
        workspace.db.variables = workspace.sql_variables()  # parses tdb.toml: a malformed file fails before any work
        if read_only and not workspace.db.path.is_file():
            raise WorkspaceError(
                f"the store {workspace.db.path} is missing; a read-only command creates none"
                " (restore it, or run a command that writes to start an empty one)"
            )
        if workspace.db.needs_migration():
            if read_only:
                raise WorkspaceError(
                    f"the store {workspace.db.path} needs a schema migration, which a read-only command does not"
                    f' make; run `tdb query --write "select 1" -w {shlex.quote(str(root))}` once to migrate it'
                )
            workspace.db.migrate()
        return workspace

    @property
    def settings(self) -> Settings:
        """tdb.toml, typed and checked: read once, when first asked for (`Workspace.open` asks)."""
        if self._settings is None:
            self._settings = self._parse(self._read_settings())
        return self._settings

    def _read_settings(self) -> dict[str, dict[str, Any]]:
        """What tdb.toml holds, as written (no defaults added)."""
        path = self.root / SETTINGS_FILE
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise WorkspaceError(f"cannot read {path}: {error.strerror or error}") from error
        except UnicodeDecodeError as error:
            raise WorkspaceError(f"{path}: not UTF-8 text (byte {error.start})") from error
        except tomllib.TOMLDecodeError as error:  # its message names the line and column
            raise WorkspaceError(f"{path}: {error}") from error

    def _parse(self, loaded: dict[str, dict[str, Any]]) -> Settings:
        try:
            return parse_settings(loaded)
        except ValueError as error:
            raise WorkspaceError(f"{self.root / SETTINGS_FILE}: {error}") from None

    def update_settings(self, section: str, values: dict[str, Any]) -> None:
        """Merge `values` into one section of tdb.toml, written atomically (replace, never half-written); values
        that break a setting's rule raise WorkspaceError and leave the file as it was."""
        loaded = self._read_settings()
        loaded.setdefault(section, {}).update(values)
        settings = self._parse(loaded)
        self._write_settings(loaded)
        self._settings = settings
        self.db.variables = self.sql_variables()

    def _write_settings(self, settings: dict[str, dict[str, Any]]) -> None:
        with atomic_path(self.root / SETTINGS_FILE, WorkspaceError) as tmp:
            tmp.write_text(dumps_toml(settings))

    def sql_variables(self) -> dict[str, object]:
        """What the analysis views read with getvariable, from [analysis] (checked when the settings load)."""
        analysis = self.settings.analysis
        return {
            "bootstrap_replicates": int(analysis.bootstrap),
            "bootstrap_level": float(analysis.level),
            "bootstrap_seed": int(analysis.seed),
            "win_rate_smoothing": float(analysis.smoothing),
        }

    @property
    def seed(self) -> int:
        return int(self.settings.study.seed)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @contextmanager
    def run(self, command: str, settings: dict[str, Any] | None = None) -> Iterator[int]:
        """Record a command's provenance in `runs`: version, commit, settings, start, end and outcome. Holds the
        workspace's writer lock throughout: raises WorkspaceBusyError if another command is changing it.

        Also removes the temporaries of commands that were killed mid-write (SIGKILL leaves no chance to), so
        a resumed run leaves the workspace as an uninterrupted one would: under the lock, as no other writer
        can be mid-write then."""
        with writer_lock(self.root, command):
            remove_stale_temporaries(self.root)
            yield from self._recorded_run(command, settings)

    def _recorded_run(self, command: str, settings: dict[str, Any] | None) -> Iterator[int]:
        host = socket.gethostname()
        with self.db.transaction() as con:
            # Runs left 'running' by a process of this host that no longer exists were killed without a chance
            # to say so.
            stale = con.execute("select run_id, pid from runs where status = 'running' and host = ?", [host])
            for stale_id, pid in stale.fetchall():
                if pid is not None and not process_alive(pid):
                    con.update("runs", {"status": "interrupted"}, run_id=stale_id)
            run = {
                "command": command,
                "version": __version__,
                "git_commit": git_commit(),
                "settings": json.dumps(settings or {}, default=str),
                "started_at": datetime.now(),
                "status": "running",
                "pid": os.getpid(),
                "host": host,
            }
            run_id = con.insert_one("runs", run, returning="run_id")
        status = "failed"
        try:
            yield run_id
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            with self.db.transaction() as con:
                con.update("runs", {"finished_at": datetime.now(), "status": status}, run_id=run_id)
