"""docs/cli.md: every command's `--help` and every tdb.toml setting, generated so that it cannot drift from the
code.

    python -m taskonomy_db.cli.docs > docs/cli.md

tests/test_cli_docs.py fails when the file is stale.
"""

from __future__ import annotations

import click

from taskonomy_db.cli import cli
from taskonomy_db.settings import reference

WIDTH = 100  # fixed, so the text does not depend on the terminal that generated it


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    settings = {**command.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    return click.Context(command, info_name=name, parent=parent, **settings)


def _help(command: click.Command, name: str, parent: click.Context | None) -> str:
    return command.get_help(_context(command, name, parent))


def render() -> str:
    """The whole page: the group's help, then each command's, in alphabetical order."""
    root = _context(cli, "tdb", None)
    parts = [
        "# `tdb` command reference",
        "",
        "Generated from the commands' `--help` by `python -m taskonomy_db.cli.docs > docs/cli.md`; do not edit.",
        "",
        "```text",
        _help(cli, "tdb", None),
        "```",
    ]
    for name in sorted(cli.commands):
        parts += ["", f"## `tdb {name}`", "", "```text", _help(cli.commands[name], name, root), "```"]
    parts += [
        "",
        "## `tdb.toml` settings",
        "",
        "Each workspace's `tdb.toml`, checked when any command opens the workspace; a flag of the same name"
        " overrides a setting for one run and refuses the same values (taskonomy_db.settings).",
        "",
        "| section | key | default | values | what it does |",
        "|---|---|---|---|---|",
    ]
    for row in reference():
        cells = [f"[{row['section']}]", f"`{row['key']}`", f"`{row['default']}`", row["rule"], row["about"]]
        parts.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    click.echo(render(), nl=False)
