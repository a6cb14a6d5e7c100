"""A study's workspace: one directory holding tdb.toml, the DuckDB store, ONNX models, Parquet representations
and reports. Every command resolves one with `Workspace.open`."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from taskonomy_db import __version__
from taskonomy_db.atomic import atomic_path, process_alive, remove_stale_temporaries
from taskonomy_db.db import Database
from taskonomy_db.errors import WorkspaceError
from taskonomy_db.locking import writer_lock

SETTINGS_FILE = "tdb.toml"
DATABASE_FILE = "taskonomy.duckdb"
SUBDIRS = ("models", "representations", "reports")

DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "study": {"name": "study", "seed": 0},
    "split": {"train": 0.7, "val": 0.15, "test": 0.15},
    # The building bootstrap behind every confidence interval: replicates (0: none), interval level, draw seed;
    # and the win rates' smoothing: 0 clips them to [0.001, 0.999] as the paper did, a > 0 is (wins + a) / (n + 2a).
    "analysis": {"bootstrap": 200, "level": 0.95, "seed": 0, "smoothing": 0.0},
}


@dataclass(frozen=True)
class Number:
    """What one numeric setting of tdb.toml must be: an int (or any real number, for float) of at least
    `minimum`, or above it when `above`, and below `below` when given."""

    kind: type
    minimum: float
    above: bool = False
    below: float | None = None

    def check(self, where: str, value: Any) -> str | None:
        """Why `value` is not such a number, or None when it is."""
        whole = self.kind is int
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            return f"{where} must be {'an integer' if whole else 'a number'}, got {value!r}"
        if not math.isfinite(value):  # TOML has nan and inf; neither is a fraction, a rate or a size
            return f"{where} must be a finite number, got {value!r}"
        if value < self.minimum or (self.above and value == self.minimum):
            bound = f"above {self.minimum:g}" if self.above else f"at least {self.minimum:g}"
            return f"{where} must be {bound}, got {value!r}"
        if self.below is not None and value >= self.below:
            return f"{where} must be below {self.below:g}, got {value!r}"
        return None


ANY_INTEGER = Number(int, -(2**63))  # a seed


@dataclass(frozen=True)
class Text:
    """A setting of tdb.toml that must be a string."""

    def check(self, where: str, value: Any) -> str | None:
        return None if isinstance(value, str) else f"{where} must be a string, got {value!r}"


# The rules of the numeric [train] and [transfer] settings. They live here, away from the torch-importing
# modules that apply them, so the CLI can give each overriding flag the same bounds without importing torch.
TRAIN_NUMBERS = {
    "image_size": Number(int, 8),
    "epochs": Number(int, 1),
    "width": Number(int, 1),
    "depth": Number(int, 0),
    "representation_channels": Number(int, 1),
    "batch_size": Number(int, 2),
    "learning_rate": Number(float, 0, above=True),
    "weight_decay": Number(float, 0),
    "threads": Number(int, 0),
}
TRANSFER_NUMBERS = {
    **{
        key: Number(int, 1)
        for key in (
            "transfer_images",
            "holdout_images",
            "max_steps",
            "eval_every",
            "patience",
            "readout_width",
            "max_order",
            "beam",
            "seeds",
        )
    },
    "batch_size": Number(int, 2),  # the scratch network's batch norm needs two images
    "learning_rate": Number(float, 0, above=True),
    "weight_decay": Number(float, 0),
    "workers": Number(int, 0),
    "seed": ANY_INTEGER,
}


# What each section of tdb.toml may hold, every key listed, except [train] and [transfer]: the commands that read
# those check them (they know every key, and this module may not import them: torch comes with them).
SETTING_RULES: dict[str, dict[str, Number | Text]] = {
    "study": {"name": Text(), "seed": ANY_INTEGER},
    "split": {split: Number(float, 0) for split in ("train", "val", "test")},
    "analysis": {
        "bootstrap": Number(int, 0, below=1_000_001),
        "level": Number(float, 0, above=True, below=1),
        "seed": ANY_INTEGER,
        "smoothing": Number(float, 0),
    },
    "demo": {"profile": Text()},
}
CHECKED_BY_THEIR_COMMANDS = ("train", "transfer")
SECTIONS = ("study", "split", "train", "transfer", "analysis", "demo")  # every section, in the order tdb.toml has them


def check_settings(settings: dict[str, Any]) -> str | None:
    """Why tdb.toml's parsed `settings` are unusable (an unknown section or key, a value of the wrong type or
    out of range), or None: checked when a workspace opens, so no command starts work on a bad file."""
    for section, values in settings.items():
        if section not in SECTIONS:
            return f"unknown section [{section}]; the sections are {', '.join(f'[{s}]' for s in SECTIONS)}"
        if not isinstance(values, dict):
            return f"top-level key {section!r} must be a table ([{section}])"
        rules = SETTING_RULES.get(section)
        for key, value in values.items() if rules is not None else ():
            if key not in rules:
                return f"unknown setting [{section}] {key}; [{section}] has {', '.join(rules)}"
            reason = rules[key].check(f"[{section}] {key}", value)
            if reason:
                return reason
    return None


def check_numbers(section: str, settings: dict[str, Any], rules: dict[str, Number], error: type[Exception]) -> None:
    """Raise `error` naming the first setting of `section` that breaks its rule (a wrong type or a bad value in
    tdb.toml would otherwise surface as a traceback deep inside the work, after it had started)."""
    for key, rule in rules.items():
        if key in settings:
            reason = rule.check(f"[{section}] {key}", settings[key])
            if reason:
                raise error(reason)


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
        settings = {section: dict(values) for section, values in DEFAULT_SETTINGS.items()}
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
                    ' make; run `tdb query --write "select 1"` once to migrate it'
                )
            workspace.db.migrate()
        return workspace

    @property
    def settings(self) -> dict[str, dict[str, Any]]:
        path = self.root / SETTINGS_FILE
        try:
            loaded = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise WorkspaceError(f"cannot read {path}: {error.strerror or error}") from error
        except UnicodeDecodeError as error:
            raise WorkspaceError(f"{path}: not UTF-8 text (byte {error.start})") from error
        except tomllib.TOMLDecodeError as error:  # its message names the line and column
            raise WorkspaceError(f"{path}: {error}") from error
        reason = check_settings(loaded)
        if reason:
            raise WorkspaceError(f"{path}: {reason}")
        merged = {section: dict(values) for section, values in DEFAULT_SETTINGS.items()}
        for section, values in loaded.items():
            merged.setdefault(section, {}).update(values)
        return merged

    def update_settings(self, section: str, values: dict[str, Any]) -> None:
        """Merge `values` into one section of tdb.toml, written atomically (replace, never half-written)."""
        settings = self.settings
        settings.setdefault(section, {}).update(values)
        self._write_settings(settings)
        self.db.variables = self.sql_variables()

    def _write_settings(self, settings: dict[str, dict[str, Any]]) -> None:
        with atomic_path(self.root / SETTINGS_FILE, WorkspaceError) as tmp:
            tmp.write_text(dumps_toml(settings))

    def sql_variables(self) -> dict[str, object]:
        """What the analysis views read with getvariable, from [analysis] (checked when the settings load)."""
        analysis = self.settings["analysis"]
        return {
            "bootstrap_replicates": int(analysis["bootstrap"]),
            "bootstrap_level": float(analysis["level"]),
            "bootstrap_seed": int(analysis["seed"]),
            "win_rate_smoothing": float(analysis["smoothing"]),
        }

    @property
    def seed(self) -> int:
        seed = self.settings["study"]["seed"]
        reason = ANY_INTEGER.check("[study] seed", seed)
        if reason:
            raise WorkspaceError(f"{self.root / SETTINGS_FILE}: {reason}")
        return int(seed)

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
                    con.execute("update runs set status = 'interrupted' where run_id = ?", [stale_id])
            run_id = con.execute(
                "insert into runs (command, version, git_commit, settings, started_at, status, pid, host)"
                " values (?, ?, ?, ?, ?, 'running', ?, ?) returning run_id",
                [
                    command,
                    __version__,
                    git_commit(),
                    json.dumps(settings or {}, default=str),
                    datetime.now(),
                    os.getpid(),
                    host,
                ],
            ).fetchone()[0]
        status = "failed"
        try:
            yield run_id
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            with self.db.transaction() as con:
                con.execute(
                    "update runs set finished_at = ?, status = ? where run_id = ?",
                    [datetime.now(), status, run_id],
                )
