"""Commands over the affinity views: affinity (AHP, Quality, Gain), tree (task similarity), import-published."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from taskonomy_db.affinity import (
    STATISTICS,
    active_origin,
    affinity_intervals,
    affinity_rows,
    bootstrap_caveat,
    check_origin,
    first_order_matrix,
    origins,
    seed_share,
)
from taskonomy_db.cli.app import cli, echo_json, format_option, open_workspace, render_rows, warn, workspace_option
from taskonomy_db.published import DATA_SIZES, import_published, set_active

if TYPE_CHECKING:
    from taskonomy_db.workspace import Workspace

origin_option = click.option(
    "--origin",
    default=None,
    help="measured, published_1k, published_16k or published_full (default: the active one, see active_origin).",
)


@cli.command()
@click.option("--target", default=None, help="Only this target task.")
@click.option("--order", type=click.IntRange(min=1), default=None, help="Only source sets of this order.")
@click.option("--matrix", is_flag=True, help="The first-order source x target affinity matrix instead.")
@click.option(
    "--ci",
    is_flag=True,
    help="With each value's building-bootstrap interval (measured transfers; [analysis] sets replicates and level).",
)
@origin_option
@format_option()
@workspace_option
def affinity(
    target: str | None,
    order: int | None,
    matrix: bool,
    ci: bool,
    origin: str | None,
    output_format: str,
    workspace_path: Path | None,
) -> None:
    """Print AHP affinities with Quality (win rate vs gold) and Gain (win rate vs scratch) per transfer.

    With --matrix, the first-order affinity matrix instead; its JSON is {source: {target: affinity}}.

    With --ci, each affinity, Quality and Gain with its confidence interval from resampling the test buildings
    (views affinity_ci, quality_ci, gain_ci; JSON and CSV give <value>_low and <value>_high columns). Only the
    workspace's own transfers have intervals: a published release has no per-image losses.

    The numbers come from the SQL views affinity, quality, gain and first_order_affinity, which any DuckDB
    client opened on the workspace file can query too. Within a target rows are sorted by affinity.

    Example:

        tdb affinity --target normal --order 1 --format csv

        tdb affinity --target normal --ci
    """
    if matrix and (target is not None or order is not None or ci):
        raise click.UsageError(
            "--matrix is the whole first-order matrix; it does not combine with --target, --order or --ci"
        )
    workspace = open_workspace(workspace_path)
    if ci:
        _echo_intervals(workspace, target, order, origin, output_format)
        return
    if matrix:
        table = first_order_matrix(workspace.db, origin)
        if output_format == "json":
            echo_json({"origin": table.origin, "matrix": _matrix_dict(table)})
            return
        columns = ["source", *table.targets]
        rows = [
            {"source": s, **dict(zip(table.targets, table.values[i], strict=True))} for i, s in enumerate(table.sources)
        ]
        click.echo(render_rows(rows, columns, output_format))
        return
    rows = affinity_rows(workspace.db, target, order, origin)
    if not rows:
        _warn_empty(
            target,
            order,
            lambda: bool(affinity_rows(workspace.db, None, None, origin)),
            "tdb affinity",
            "no affinities yet: run transfers with gold and baselines, or `tdb import-published`",
        )
    if output_format == "json":
        echo_json(rows)
        return
    for row in rows:
        row["sources"] = "+".join(row["sources"])
    if output_format == "table":
        click.echo(f"origin: {origin or active_origin(workspace.db)}", err=True)
    click.echo(render_rows(rows, ["target", "sources", "order", "kind", "affinity", "quality", "gain"], output_format))


def _warn_empty(
    target: str | None, order: int | None, any_unfiltered: Callable[[], bool], command: str, nothing: str
) -> None:
    """Why a listing is empty: the filters (when the unfiltered listing has rows), or no affinities at all."""
    if (target is not None or order is not None) and any_unfiltered():
        asked = ", ".join(f for f in (target and f"target {target}", order and f"order {order}") if f)
        warn(f"no affinities for {asked}; `{command}` without filters lists what there is")
    else:
        warn(nothing)


def _echo_intervals(workspace: Workspace, target: str | None, order: int | None, origin: str | None, fmt: str) -> None:
    chosen = check_origin(workspace.db, origin)
    if chosen != "measured":
        raise click.UsageError(
            f"--ci needs the measured origin (intervals come from per-image losses, which {chosen} has not);"
            " add --origin measured"
        )
    rows = affinity_intervals(workspace.db, target, order)
    if not rows:
        _warn_empty(
            target,
            order,
            # the point estimates, not the intervals again: the same rows exist, without 200 replicates
            lambda: bool(workspace.db.scalar("select count(*) from measured_affinity")),
            "tdb affinity --ci",
            "no measured affinities: run `tdb transfer` with gold and baselines",
        )
    replicates, buildings, caveat = bootstrap_caveat(workspace.db)
    if caveat:
        warn(caveat if replicates else f"no intervals: {caveat}")
    if fmt == "json":
        echo_json(rows)
        return
    if fmt == "csv":
        click.echo(render_rows(rows, list(rows[0]) if rows else [], fmt))
        return
    for row in rows:
        row["sources"] = "+".join(row["sources"])
        for statistic in STATISTICS:
            low, high = row.pop(f"{statistic}_low"), row.pop(f"{statistic}_high")
            if row[statistic] is not None and low is not None:
                row[statistic] = f"{row[statistic]:.4f} [{low:.4f}, {high:.4f}]"
    level = workspace.settings.analysis.level
    click.echo(
        f"origin: measured; {level * 100:g}% intervals from {replicates} replicates resampling {buildings} test"
        " buildings",
        err=True,
    )
    fewest, most, share = seed_share(workspace.db)
    if share is not None:
        seeds = f"{most}" if fewest == most else f"{fewest} to {most} (by target)"
        click.echo(
            f"readout seeds: {seeds} per source set, their losses averaged; the seeds make {share:.0%} of an"
            " affinity's variance (median over targets with several; view affinity_variance), the test buildings"
            " the rest",
            err=True,
        )
    click.echo(render_rows(rows, ["target", "sources", "order", "kind", *STATISTICS, "replicates"], fmt))


def _matrix_dict(table: object) -> dict[str, dict[str, float | None]]:
    return {s: dict(zip(table.targets, table.values[i], strict=True)) for i, s in enumerate(table.sources)}


@cli.command()
@click.option("--clusters", type=click.IntRange(min=1), default=4, show_default=True, help="Cut into K groups.")
@click.option(
    "--support",
    is_flag=True,
    help="Each cluster's bootstrap support: the share of replicates ([analysis] bootstrap) whose tree has it.",
)
@origin_option
@format_option(("text", "json"), default="text")
@workspace_option
def tree(clusters: int, support: bool, origin: str | None, output_format: str, workspace_path: Path | None) -> None:
    """Cluster tasks by their transferring-out pattern into the task similarity tree (dendrogram + groups).

    Each task is described by its rank as a first-order source for every target; tasks are merged by Ward
    linkage on the Euclidean distance between those rank vectors. Writes reports/task_tree.png and .svg.

    With --support (measured transfers only), the tree is built again from every building-bootstrap replicate
    of the affinities and cut into as many clusters: a cluster's support is the share of replicates whose tree
    has exactly that cluster, and the consensus lists the clusters more than half of them have.

    Example:

        tdb tree --clusters 4 --support
    """
    # Imported here: scipy's clustering and statistics are most of `tdb`'s start-up time otherwise.
    from taskonomy_db.tree import agreement_with_paper, build_tree, draw_dendrogram, render_text

    workspace = open_workspace(workspace_path)
    task_tree = build_tree(workspace.db, origin)
    if support and task_tree.origin != "measured":
        raise click.UsageError("--support needs the measured origin (replicates resample per-image losses)")
    assignment = task_tree.clusters(clusters)
    found = None
    if support:
        from taskonomy_db.tree_support import cluster_support

        found = cluster_support(workspace.db, task_tree, clusters)
        caveat = bootstrap_caveat(workspace.db)[2]
        if caveat:
            warn(caveat)
    shares = found.support if found else None
    png, svg = draw_dendrogram(task_tree, assignment, workspace.path("reports"), shares)
    groups = [sorted(t for t, c in assignment.items() if c == k) for k in range(1, clusters + 1)]
    ari, n_scored = agreement_with_paper(assignment)
    if output_format == "json":
        echo_json(
            {
                "origin": task_tree.origin,
                "tasks": task_tree.tasks,
                "clusters": assignment,
                "groups": groups,
                "linkage": task_tree.linkage_matrix.tolist(),
                "adjusted_rand_index_vs_paper": ari,
                "png": str(png),
                "svg": str(svg),
                **(
                    {"support": shares, "support_replicates": found.replicates, "consensus": found.consensus}
                    if found
                    else {}
                ),
            }
        )
        return
    click.echo(f"task similarity tree ({task_tree.origin}, {len(task_tree.tasks)} tasks, Ward on source ranks)")
    click.echo(render_text(task_tree, assignment))
    click.echo("")
    for number, members in enumerate(groups, start=1):
        backed = f" (support {shares[number]:.0%})" if shares and number in shares else ""
        click.echo(f"cluster {number}{backed}: {', '.join(members)}")
    if found:
        consensus = "; ".join(", ".join(c) for c in found.consensus) or "none"
        click.echo(f"support over {found.replicates} bootstrap replicates; clusters in most of them: {consensus}")
    click.echo(f"adjusted Rand index vs the paper's four groups: {ari:.3f} (over {n_scored} tasks)")
    click.echo(f"dendrogram: {png}, {svg}")


@cli.command("import-published")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Choice(DATA_SIZES), required=True, help="Which release: 1k, 16k or full data.")
@format_option(("text", "json"), default="text")
@workspace_option
def import_published_command(path: Path, data: str, output_format: str, workspace_path: Path | None) -> None:
    """Load the paper's released affinities and win rates, and serve them from the affinity views.

    PATH is a copy of the original repository's published results (results/affinities, results/winrates).
    Names become dataset domain names, self becomes gold and pixels scratch. The pickles are read with an
    unpickler that allows only the numpy globals they use. The imported release becomes the active origin;
    importing another data size switches to it.

    Example:

        tdb import-published path/to/taskonomy-published --data 16k
    """
    workspace = open_workspace(workspace_path)
    with workspace.run("import-published", {"path": str(path), "data": data}):
        report = import_published(workspace.db, path, data)
    if output_format == "json":
        echo_json(dataclasses.asdict(report))
        return
    click.echo(
        f"imported published {report.data}: {report.n_transfers} transfers for {report.n_targets} targets"
        f" ({report.n_with_affinity} with an affinity, orders up to {report.max_order}) from {report.source_path}"
    )
    click.echo(f"the affinity, quality and gain views now serve published_{report.data}")


@cli.command("origin")
@click.argument("origin", required=False)
@format_option(("text", "json"), default="text")
@workspace_option
def origin_command(origin: str | None, output_format: str, workspace_path: Path | None) -> None:
    """Show which origin the affinity, quality and gain views serve (and so `tdb tree`, `tdb taxonomy` and
    `tdb report`), or switch to ORIGIN.

    The views serve one origin at a time, because each target's affinities sum to 1 over one set of candidates:
    `measured` (this workspace's transfers) or an imported release (`published_1k`, `published_16k`,
    `published_full`). `tdb import-published` switches to the release it loads; this switches back.

    Example:

        tdb origin measured
    """
    workspace = open_workspace(workspace_path)
    if origin is not None:
        data = origin.removeprefix("published_")
        if origin != "measured" and not (origin.startswith("published_") and data in DATA_SIZES):
            expected = ", ".join(["measured", *(f"published_{d}" for d in DATA_SIZES)])
            raise click.BadParameter(f"unknown origin {origin!r}; expected one of {expected}", param_hint="ORIGIN")
        with workspace.run("origin", {"origin": origin}):
            set_active(workspace.db, None if origin == "measured" else data)
    active, available = active_origin(workspace.db), origins(workspace.db)
    if output_format == "json":
        echo_json({"active": active, "available": available})
        return
    click.echo(f"active origin: {active}")
    click.echo(f"origins with affinities: {', '.join(available) or 'none'}")
