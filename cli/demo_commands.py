"""`tdb demo`: the README's first command."""

from __future__ import annotations

from pathlib import Path

import click

from taskonomy_db.cli.app import cli
from taskonomy_db.demo import run_demo


@cli.command()
@click.argument("workspace", type=click.Path(file_okay=False, path_type=Path), default="demo-workspace")
def demo(workspace: Path) -> None:
    """Run the whole method on the embedded default dataset in WORKSPACE (created if needed).

    Each step is skipped when already done, so an interrupted demo resumes where it stopped.

    Example:

        tdb demo ./demo-workspace
    """
    run_demo(workspace, click.echo)
