"""Commands that create a workspace, bring data into it, and read it: init, ingest, query, tables."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import click
import pyarrow.parquet as pq

from taskonomy_db.atomic import atomic_path
from taskonomy_db.cli.app import (
    cli,
    echo_json,
    format_option,
    open_workspace,
    render_rows,
    warn,
    workspace_option,
)
from taskonomy_db.errors import QueryError
from taskonomy_db.ingest import SPLIT_SETS, ingest
from taskonomy_db.layout import LAYOUTS
from taskonomy_db.workspace import Workspace


@cli.command()
@click.argument("path", type=click.Path(file_okay=False))  # a str: Path("") would silently become "."
@click.option("--name", default=None, help="Study name (default: the directory's name).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for every random choice in the study.")
def init(path: str, name: str | None, seed: int) -> None:
    """Create a workspace: tdb.toml, the DuckDB store, and models/, representations/, reports/.

    Example:

        tdb init ./study && export TDB_WORKSPACE="$PWD/study"
    """
    workspace = Workspace.init(path, name=name, seed=seed)
    click.echo(f"created workspace {workspace.root} (schema version {workspace.db.schema_version()})")


@cli.command("ingest")
@click.argument("data_root", type=click.Path(path_type=Path))
@click.option(
    "--layout",
    type=click.Choice(["auto", *LAYOUTS]),
    default="auto",
    show_default=True,
    help="taskonomy (full release): ROOT/building/domain/...; omnidata: ROOT/domain/taskonomy/building/...; "
    "legacy (the sample building): ROOT/folder/... for one building, or ROOT/building/folder/...",
)
@click.option(
    "--split-file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A published split CSV (id,train,val,test), or the folder holding train_val_test_<set>.csv.",
)
@click.option(
    "--split-set",
    type=click.Choice(SPLIT_SETS),
    default=None,
    help="Which published split to use; buildings outside it are not ingested.",
)
@click.option("--skip-bad", is_flag=True, help="Skip corrupt or misnamed files (recorded in ingest_problems).")
@format_option(("text", "json"), default="text")
@workspace_option
def ingest_command(
    data_root: Path,
    layout: str,
    split_file: Path | None,
    split_set: str | None,
    skip_bad: bool,
    output_format: str,
    workspace_path: Path | None,
) -> None:
    """Register every (point, view) of a Taskonomy-format dataset with its per-domain files and split.

    Reads the full release, the omnidata downloader's tree and the legacy sample building (legacy folder names
    are mapped to domains). Domains tdb does not use (rgb_large, skybox, modeldata, fragments) are skipped and
    listed. Without --split-file, buildings are split deterministically by a hash of their names (fractions from
    tdb.toml). Re-ingesting the same root is idempotent. Nothing is written unless every file checks out.

    Example:

        tdb ingest /data/taskonomy --split-file splits/ --split-set tiny
    """
    workspace = open_workspace(workspace_path)
    settings = {
        "data_root": str(data_root),
        "layout": layout,
        "split_file": str(split_file),
        "split_set": split_set,
    }
    with workspace.run("ingest", settings):
        report = ingest(workspace, data_root, layout, split_file, split_set, skip_bad)
    if output_format == "json":
        echo_json(dataclasses.asdict(report))
        return
    splits = ", ".join(f"{n} {s}" for s, n in report.images_per_split.items())
    click.echo(f"ingested {report.n_images} images ({report.n_new} new) from {report.data_root} [{report.layout}]")
    click.echo(f"splits: {splits} ({report.split_source})")
    click.echo(f"domains: {', '.join(report.domains)}")
    if report.unused_domains:
        click.echo(f"skipped (domains tdb does not use): {', '.join(report.unused_domains)}")
    if report.n_nonfixated_views:
        click.echo(f"nonfixated: {report.n_nonfixated_views} (point, seeing image) rows in nonfixated_views")
    if report.n_cameras:
        click.echo(f"cameras: {report.n_cameras} views; tuples of the multi-image tasks: {report.n_tuples}")
    for domain, count in report.missing_per_domain.items():
        warn(f"{count} images have no {domain} file (see the missing_files view)")
    if report.buildings_not_in_split:
        warn(f"{len(report.buildings_not_in_split)} buildings are not in the split set and were not ingested")
    for path, problem in report.problems:
        warn(f"skipped {path}: {problem}")
    held = workspace.db.query("select split, count(*) as n from images group by split").to_pylist()
    counts = {row["split"]: row["n"] for row in held}
    if not counts.get("test"):
        warn("the workspace has no test images: transfers and gold test losses need a test split")
    if not counts.get("val"):
        warn("the workspace has no val images: training will pick checkpoints by the training loss")
    if split_file is None and not (counts.get("test") and counts.get("val")):
        warn("without --split-file a building's split comes from a hash of its name: few buildings can leave one empty")


QUERY_FORMATS = ("table", "csv", "json", "parquet")


@cli.command()
@click.argument("sql")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(QUERY_FORMATS),
    default=None,
    help="Output format (default: from --out's extension, .csv, .json or .parquet; else table).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to this file.")
@click.option(
    "--write",
    is_flag=True,
    help="Allow statements that modify the workspace (one transaction). Not a sandbox: the SQL may read and "
    "write any file.",
)
@click.option(
    "--allow-read",
    "allow_read",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Let a read-only query read this file or folder outside the workspace (repeatable).",
)
@workspace_option
def query(
    sql: str,
    output_format: str | None,
    out: Path | None,
    write: bool,
    allow_read: tuple[Path, ...],
    workspace_path: Path | None,
) -> None:
    """Run SQL on the workspace's DuckDB store; read-only unless --write.

    Read-only runs in a sandbox: the store does not change, no file is created or changed (only SELECT,
    EXPLAIN, PRAGMA, CALL and SET statements run; COPY ... TO, EXPORT DATABASE, ATTACH, PREPARE, INSTALL and the
    rest are refused), files outside the workspace folder are read only where --allow-read names them, and
    settings are locked. --write is not a sandbox.
    Several statements separated by ';' run in order; the last one's result is printed.

    Tables: tasks, images, encoders, transfers, losses, runs; see `tdb tables` for all tables and views.

    Example:

        tdb query "select split, count(*) as n_images from images group by split" --format csv

        tdb query "select * from affinity" --out affinity.parquet

        tdb query "select * from read_csv('/data/labels.csv')" --allow-read /data/labels.csv
    """
    if not sql.strip():
        raise click.UsageError("the SQL statement is empty")
    suffix = out.suffix.lower().lstrip(".") if out is not None else ""
    implied = {"pq": "parquet"}.get(suffix, suffix) if suffix in ("csv", "json", "parquet", "pq") else None
    if output_format is None:
        output_format = implied or "table"
    elif implied and implied != output_format:
        raise click.UsageError(f"--out {out.name} is a .{suffix} file but --format is {output_format}")
    if output_format == "parquet" and out is None:
        raise click.UsageError("--format parquet needs --out FILE")
    if write and allow_read:
        raise click.UsageError("--allow-read is for read-only queries; --write already reads any file")
    workspace = open_workspace(workspace_path, read_only=not write)
    # A change to the workspace leaves its provenance in `runs`, like every other command's.
    with workspace.run("query", {"sql": sql}) if write else contextlib.nullcontext():
        result = workspace.db.execute_user_sql(sql, write=write, allow_read=allow_read)
    if result.num_columns == 0 and output_format != "parquet":
        if write:
            click.echo("ok", err=True)
        return
    if out is None:
        click.echo(render_rows(result.to_pylist(), result.column_names, output_format))
        return
    # Written beside the target and renamed: an error or a kill never leaves a half-written file at `out`.
    blocking = next((p for p in out.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise QueryError(f"cannot write {out}: {blocking} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            if output_format == "parquet":
                pq.write_table(result, tmp)
            else:
                tmp.write_text(render_rows(result.to_pylist(), result.column_names, output_format) + "\n")
    except OSError as error:
        raise QueryError(f"cannot write {out}: {error.strerror or error}") from error
    click.echo(f"wrote {result.num_rows} row{'' if result.num_rows == 1 else 's'} to {out}", err=True)


@cli.command()
@format_option()
@workspace_option
def tables(output_format: str, workspace_path: Path | None) -> None:
    """List the workspace's tables and views, each with its one-line description.

    Example:

        tdb tables --format json
    """
    workspace = open_workspace(workspace_path)
    rows = workspace.db.relations()
    if not rows:
        raise QueryError("the workspace has no tables")
    click.echo(render_rows(rows, ["name", "kind", "description"], output_format))
