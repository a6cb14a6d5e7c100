"""`tdb generate`: render the embedded default dataset in the real Taskonomy layout and encodings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from taskonomy_db.cli.app import cli, echo_json, format_option
from taskonomy_db.generate_settings import MAX_SIZE, MIN_SIZE, GenerateSettings
from taskonomy_db.layout import WRITE_LAYOUTS

DEFAULTS = GenerateSettings()  # the embedded default dataset: one definition, in the library


@cli.command("generate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--buildings",
    default=DEFAULTS.n_buildings,
    show_default=True,
    type=click.IntRange(1),
    help="Number of buildings (styles).",
)
@click.option(
    "--rooms",
    default=DEFAULTS.rooms_per_building,
    show_default=True,
    type=click.IntRange(1),
    help="Rooms per building.",
)
@click.option(
    "--points-per-room",
    default=DEFAULTS.points_per_room,
    show_default=True,
    type=click.IntRange(1),
    help="Fixation points per room.",
)
@click.option(
    "--views-per-point",
    default=DEFAULTS.views_per_point,
    show_default=True,
    type=click.IntRange(1),
    help="Camera views of each point.",
)
@click.option(
    "--size",
    default=DEFAULTS.size,
    show_default=True,
    type=click.IntRange(MIN_SIZE, MAX_SIZE),
    help=f"Image size in pixels ({MIN_SIZE}-{MAX_SIZE}).",
)
@click.option(
    "--seed", default=DEFAULTS.seed, show_default=True, type=int, help="Same seed and settings give identical bytes."
)
@click.option(
    "--layout",
    type=click.Choice(WRITE_LAYOUTS),
    default=DEFAULTS.layout,
    show_default=True,
    help="taskonomy: OUT/building/domain/...; omnidata: OUT/domain/taskonomy/building/...",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists and is not empty.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Worker processes (default: one per core).")
@format_option(("text", "json"), default="text")
def generate_command(
    out: Path,
    buildings: int,
    rooms: int,
    points_per_room: int,
    views_per_point: int,
    size: int,
    seed: int,
    layout: str,
    overwrite: bool,
    workers: int | None,
    output_format: str,
) -> None:
    """Render procedural indoor buildings with every Taskonomy domain, ready for `tdb ingest`.

    Each building has its own style; each room is furnished by its type (the scene class) and lit by a
    shadow-casting light. Each point is a spot on a surface seen by several fixated views. The output is
    written to a temporary folder beside OUT and renamed into place when complete.

    Example:

        tdb generate ./data --buildings 12 --size 64 --seed 0 && tdb ingest ./data
    """
    from taskonomy_db.generate import generate  # the renderer's imaging libraries load only when used

    report = generate(
        out,
        n_buildings=buildings,
        rooms_per_building=rooms,
        points_per_room=points_per_room,
        views_per_point=views_per_point,
        size=size,
        seed=seed,
        layout=layout,
        overwrite=overwrite,
        workers=workers,
    )
    if output_format == "json":
        echo_json(dataclasses.asdict(report))
        return
    click.echo(
        f"wrote {report.n_views} views ({report.n_files} files) of {len(report.buildings)} buildings "
        f"at {size}x{size} to {report.out} [{layout}]"
    )
