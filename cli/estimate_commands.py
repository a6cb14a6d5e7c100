"""`tdb estimate`: cheap transferability estimates, and how well they agree with measured affinities."""

from __future__ import annotations

from pathlib import Path

import click

from taskonomy_db.cli.app import cli, echo_json, format_option, open_workspace, render_rows, warn, workspace_option
from taskonomy_db.cli.transfer_commands import _names
from taskonomy_db.settings import ESTIMATORS


@cli.command("estimate")
@workspace_option
@click.option(
    "--method", "methods", multiple=True, help=f"Comma-separated subset of {','.join(ESTIMATORS)} (default: all)."
)
@click.option("--targets", multiple=True, help="Target tasks, comma-separated (default: every extracted target).")
@click.option(
    "--sources", multiple=True, help="Source encoders, comma-separated (default: every extracted one but random)."
)
@click.option(
    "--images",
    "n_images",
    type=click.IntRange(min=4),
    default=256,
    show_default=True,
    help="Images of the transfer-training split to read: the first N by image_id.",
)
@click.option("--compare", is_flag=True, help="Print how each method's scores rank sources against measured ones.")
@format_option()
def estimate_command(
    workspace_path: Path | None,
    methods: tuple[str, ...],
    targets: tuple[str, ...],
    sources: tuple[str, ...],
    n_images: int,
    compare: bool,
    output_format: str,
) -> None:
    """Score every source -> target with cheap transferability estimators, from the stored representations and
    the target's labels alone: logme (LogME's evidence of a linear model), ridge (held-out error of ridge
    regression, buildings held out), cka (debiased linear CKA with the target's own encoder) and rsa (rank
    correlation of the two dissimilarity matrices). Reads images of the transfer-training split, never a test
    image; scores go to the `estimates` table.

    With --compare, nothing is estimated: for each method, the mean over targets of Spearman's correlation
    between its scores and the measured first-order affinities (view estimator_agreement, own encoder left
    out), with a building-bootstrap interval where the study has replicates.

    Example:

        tdb estimate --method logme,cka --images 512

        tdb estimate --compare --format json
    """
    workspace = open_workspace(workspace_path, read_only=compare)
    chosen = [m.lower() for m in _names(methods)] or None
    if compare:
        from taskonomy_db.agreement import agreement_summary

        level = workspace.settings.analysis.level
        rows = agreement_summary(workspace.db, level)
        if chosen:
            rows = [r for r in rows if r["method"] in chosen]
        if not rows:
            warn("nothing to compare: run `tdb estimate` and `tdb transfer` (first order) on the same targets")
        if output_format == "json":
            echo_json(rows)
            return
        columns = ["method", "targets", "mean_spearman", "ci_low", "ci_high", "std", "min", "max", "mean_with_own"]
        click.echo(render_rows([{k: _short(v) for k, v in r.items()} for r in rows], columns, output_format))
        return

    from taskonomy_db.estimate import estimate  # torch loads only when estimates are computed

    summary = estimate(workspace, chosen, _names(targets) or None, _names(sources) or None, n_images)
    for skipped in summary.skipped:
        warn(f"no {skipped['method']} for {skipped['target']}: {skipped['reason']}")
    rows = [{**row, "sources": "+".join(row["sources"])} for row in summary.rows]
    if output_format == "json":
        echo_json([{k: v for k, v in row.items() if k != "estimated_at"} for row in summary.rows])
        return
    click.echo(render_rows(rows, ["method", "target", "sources", "score", "n_images", "seconds"], output_format))
    if output_format == "table":
        click.echo(f"\n{len(rows)} estimates on {summary.n_images} images in {summary.seconds:.1f} s", err=True)


def _short(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else value
