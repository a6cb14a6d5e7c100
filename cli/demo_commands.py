"""`tdb demo`: the README's first command."""

from __future__ import annotations

from pathlib import Path

import click

from taskonomy_db.cli.app import cli, format_option
from taskonomy_db.demo import run_demo, summary_json


@cli.command()
@click.argument("workspace", type=click.Path(file_okay=False, path_type=Path), default="demo-workspace")
@click.option("--tiny", is_flag=True, help="A few tasks on a tiny dataset (about a minute).")
@click.option("--full", is_flag=True, help="Every registered task on a larger dataset (about half an hour).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of a new demo workspace.")
@format_option(("text", "json"), default="text")
def demo(workspace: Path, tiny: bool, full: bool, seed: int, output_format: str) -> None:
    """Run the whole method on the embedded default dataset in WORKSPACE (created if needed).

    generate -> ingest -> train -> export -> extract -> transfer -> affinity -> tree -> taxonomy -> report,
    with a summary line and timing per step. Each step is skipped when already done, so an interrupted demo
    resumes where it stopped. The default profile trains 19 tasks across the 3D, 2D, geometric and semantic
    groups and takes about 42 minutes on 2 CPU cores (see the README).

    Example:

        tdb demo ./demo-workspace

        tdb demo --tiny /tmp/tiny-demo    # 6 tasks at 32 px in about a minute
    """
    if tiny and full:
        raise click.UsageError("--tiny and --full are two different profiles; choose one")
    name = "tiny" if tiny else "full" if full else "default"
    if output_format == "json":
        state = run_demo(workspace, name, lambda line: click.echo(line, err=True), seed=seed)
        click.echo(summary_json(state))
    else:
        run_demo(workspace, name, click.echo, seed=seed)
