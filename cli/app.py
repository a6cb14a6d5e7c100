"""The `tdb` click group and what every command shares: the workspace option, error handling, output formats.

The CLI is thin: it parses arguments, calls the library, formats the result, and turns the library's named
errors into one-line messages with a non-zero exit code.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from taskonomy_db import __version__
from taskonomy_db.errors import TdbError
from taskonomy_db.settings import Choice, Number, rule_of
from taskonomy_db.workspace import Workspace


class OneLineUsageError(click.UsageError):
    """A usage error (exit code 2) shown as one line, like every other error, without click's usage banner."""

    def show(self, file: Any = None) -> None:
        hint = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", file=file, err=True)


_KEPT_AS_IS: tuple[type[click.UsageError], ...] = (OneLineUsageError,)
if hasattr(click.exceptions, "NoArgsIsHelpError"):  # click >= 8.2 shows a bare `tdb`'s help through it
    _KEPT_AS_IS += (click.exceptions.NoArgsIsHelpError,)


def _one_line(error: click.UsageError) -> click.UsageError:
    if isinstance(error, _KEPT_AS_IS):
        return error
    return OneLineUsageError(error.format_message(), error.ctx)


class TdbGroup(click.Group):
    """Lists commands in the order they were added (the order of the method) and reports errors as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise _one_line(error) from error

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _one_line(error) from error
        except TdbError as error:
            exception = click.ClickException(str(error))
            exception.exit_code = error.exit_code
            raise exception from error
        except (OSError, MemoryError) as error:
            if isinstance(error, OSError) and error.errno not in _ENVIRONMENT_ERRNOS:
                raise  # a missing file tdb itself should have checked, a broken pipe (`| head`): not the machine's
            raise click.ClickException(_environment_error(error)) from error
        except Exception as error:
            if not _is_duckdb_environment_error(error):
                raise  # a bug (tdb's own SQL, say): its traceback is what a report needs
            raise click.ClickException(f"DuckDB: {_single_line(error)}") from error


# The machine's failures, not tdb's: a full disk or quota, a permission, a read-only or failing device, no memory,
# no file descriptors left. Any other OSError that reaches here is a bug and keeps its traceback.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EIO,
    errno.ENOMEM,
    errno.EMFILE,
    errno.ENFILE,
}


def _single_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _environment_error(error: OSError | MemoryError) -> str:
    """A failure of the machine rather than of tdb (a full disk, a permission, no memory) as one line."""
    if isinstance(error, MemoryError):
        return f"out of memory{': ' + _single_line(error) if str(error) else ''}"
    return _single_line(error) or type(error).__name__  # str() has the errno, strerror and path: [Errno 28] ...


def _is_duckdb_environment_error(error: BaseException) -> bool:
    """DuckDB failing to read, write or allocate (its IO and out-of-memory errors); not its binder or catalog
    errors, which from tdb's own SQL are bugs."""
    # Looked up, not imported: the CLI must not import duckdb (slow) for commands that never open the store,
    # and an error cannot come from duckdb unless something imported it.
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(error, duckdb.IOException | duckdb.OutOfMemoryException)


@click.group(cls=TdbGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="tdb")
def cli() -> None:
    """taskonomy-db: the Taskonomy method (Zamir et al., CVPR 2018) as a database-centric toolkit.

    Train a network per task, transfer between every pair, normalise win rates with AHP into a task affinity
    matrix (SQL views over DuckDB), and solve for the tasks to label under a supervision budget.

    Every command works on a workspace: -w/--workspace, else $TDB_WORKSPACE, else the current directory.

    Example:

        tdb demo ./study
    """


def workspace_option(function: Callable) -> Callable:
    return click.option(
        "-w",
        "--workspace",
        "workspace_path",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Workspace directory (default: $TDB_WORKSPACE, else the current directory).",
    )(function)


def open_workspace(path: Path | None, read_only: bool = False) -> Workspace:
    return Workspace.open(path, read_only=read_only)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf: nan compares false with every bound, so a range lets it by."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def setting_type(section: str, key: str) -> click.ParamType:
    """The click type of a flag that overrides tdb.toml's [section] key: the bounds the file's value is checked
    against, so the flag and the file refuse the same values (the flag's as a usage error, exit 2)."""
    rule = rule_of(section, key)
    if isinstance(rule, Choice):
        return click.Choice(rule.values)
    if not isinstance(rule, Number):
        raise TypeError(f"[{section}] {key} has no flag type")
    if rule.kind is int:
        below = None if rule.below is None else int(rule.below)
        return RuledInt(
            rule, f"[{section}] {key}", min=int(rule.minimum), min_open=rule.above, max=below, max_open=True
        )
    return RuledFloat(rule, f"[{section}] {key}", min=rule.minimum, min_open=rule.above, max=rule.below, max_open=True)


class _Ruled:
    """The rest of a setting's rule (a multiple of, say) past what click's range checks."""

    def __init__(self, rule: Number, where: str, **bounds: Any) -> None:
        super().__init__(**bounds)  # type: ignore[call-arg]
        self.rule, self.where = rule, where

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)  # type: ignore[misc]
        reason = self.rule.check(self.where, number)
        if reason:
            self.fail(reason, param, ctx)  # type: ignore[attr-defined]
        return number


class RuledInt(_Ruled, click.IntRange):
    pass


class RuledFloat(_Ruled, FiniteFloat):
    pass


def format_option(choices: Sequence[str] = ("table", "csv", "json"), default: str = "table") -> Callable:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format.",
    )


def render_rows(rows: list[dict[str, Any]], columns: Sequence[str], output_format: str) -> str:
    """Rows as an aligned text table, CSV or JSON (a list of objects)."""
    if output_format == "json":
        return to_json(rows)
    if output_format == "csv":
        buffer = io.StringIO()
        # Rows may carry more keys than the columns chosen for display (e.g. a dataclass's every field).
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(v) if isinstance(v, list | tuple) else v for k, v in row.items()} for row in rows)
        return buffer.getvalue().rstrip("\n")
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    return str(value)


def _json_safe(value: Any) -> Any:
    # Strict JSON has no NaN or Infinity (jq and browsers reject Python's bare NaN): they become null.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):  # SQL literals such as 1.5 are DECIMAL: a number in JSON, not a string
        return _json_safe(float(value))
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def to_json(data: Any) -> str:
    """Strict JSON: non-finite floats as null, bytes as hex, anything else without a JSON type as its string."""
    return json.dumps(_json_safe(data), indent=2, default=str, allow_nan=False)


def echo_json(data: Any) -> None:
    click.echo(to_json(data))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def is_interactive() -> bool:
    return sys.stderr.isatty()
