"""Command of step 2: `tdb transfer` (readouts from stored representations, with baselines)."""

from __future__ import annotations

from pathlib import Path

import click

from taskonomy_db.cli.app import (
    cli,
    echo_json,
    format_option,
    open_workspace,
    render_rows,
    setting_type,
    warn,
    workspace_option,
)
from taskonomy_db.settings import BASELINES


def _names(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists: --targets a,b --targets c."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@cli.command("transfer")
@workspace_option
@click.option("--targets", multiple=True, help="Target tasks, comma-separated (default: every extracted target).")
@click.option("--sources", multiple=True, help="Source encoders, comma-separated (default: every extracted one).")
@click.option(
    "--train-split",
    type=setting_type("transfer", "train_split"),
    default=None,
    help="Split readouts and scratch train on (default val: no task network trained on it).",
)
@click.option(
    "--transfer-images",
    type=setting_type("transfer", "transfer_images"),
    default=None,
    help="Images each readout trains on (the paper's 1k/16k).",
)
@click.option(
    "--holdout-images",
    type=setting_type("transfer", "holdout_images"),
    default=None,
    help="Images of other buildings of that split for early stopping.",
)
@click.option(
    "--max-steps",
    type=setting_type("transfer", "max_steps"),
    default=None,
    help="Step budget of each readout (and scratch network); most stop earlier.",
)
@click.option(
    "--patience",
    type=setting_type("transfer", "patience"),
    default=None,
    help="Held-out evaluations without improvement before a readout stops.",
)
@click.option(
    "--max-order",
    type=setting_type("transfer", "max_order"),
    default=None,
    help="Highest order of source sets (1 = first order only).",
)
@click.option(
    "--beam",
    type=setting_type("transfer", "beam"),
    default=None,
    help="Beam width: orders 2-3 from the top BEAM, 4 from BEAM+1.",
)
@click.option(
    "--beam-from",
    type=setting_type("transfer", "beam_from"),
    default=None,
    help="Rank sources for the beam by measured first-order affinity, or by `tdb estimate`'s scores (estimate:METHOD:"
    " first order then runs only for the sources the beam reaches).",
)
@click.option("--baselines", default=None, help=f"Comma-separated subset of {','.join(BASELINES)}; 'none' for none.")
@click.option(
    "--seeds",
    type=setting_type("transfer", "seeds"),
    default=None,
    help="Readouts per source set, each with its own seed; the affinities average their per-image losses.",
)
@click.option("--seed", type=int, default=None, help="Seed (default: the study seed).")
@click.option(
    "--workers",
    type=setting_type("transfer", "workers"),
    default=None,
    help="Worker processes ([transfer] workers; 0 = one per core, 1 = in this process).",
)
@format_option()
def transfer_command(
    workspace_path: Path | None,
    targets: tuple[str, ...],
    sources: tuple[str, ...],
    train_split: str | None,
    transfer_images: int | None,
    holdout_images: int | None,
    max_steps: int | None,
    patience: int | None,
    max_order: int | None,
    beam: int | None,
    beam_from: str | None,
    baselines: str | None,
    seeds: int | None,
    seed: int | None,
    workers: int | None,
    output_format: str,
) -> None:
    """Train a readout for every source -> target (first order, then the beam of higher orders) and the
    gold, scratch and random baselines, storing each one's loss on every test image.

    Readouts and scratch train on the val split (images no task network trained on), each until its loss on
    held-out buildings of that split stops improving, and are tested on the test split. Settings come from
    tdb.toml's [transfer] section; options override them for this run. Finished transfers are skipped, so an
    interrupted run resumes where it stopped. Prints what was done, failed and skipped.

    With --seeds N every source set (and the scratch and random baselines) gets N readouts with seeds of their
    own; raising N keeps the readouts already trained. The affinity views average their losses image by image,
    and the affinity_variance view splits each affinity's variance into the seeds' part and the test images'.

    Example:

        tdb transfer --transfer-images 128 --max-order 2

        tdb transfer --targets depth_zbuffer,normal --baselines gold,random

        tdb transfer --seeds 3

        tdb estimate --method logme && tdb transfer --max-order 3 --beam-from estimate:logme
    """
    from taskonomy_db.transfer import run_transfers  # torch loads only when a transfer runs, not for --help

    workspace = open_workspace(workspace_path)
    overrides = {
        "train_split": train_split,
        "transfer_images": transfer_images,
        "holdout_images": holdout_images,
        "max_steps": max_steps,
        "patience": patience,
        "max_order": max_order,
        "beam": beam,
        "beam_from": beam_from,
        "seeds": seeds,
        "seed": seed,
        "workers": workers,
    }
    if baselines is not None:
        overrides["baselines"] = [] if baselines.strip() == "none" else _names((baselines,))
    summary = run_transfers(workspace, overrides, _names(targets) or None, _names(sources) or None)
    for target, n in summary.seed_shortfalls.items():
        warn(
            f"{target}: the views average {n} seed(s): source sets of an earlier run have fewer, and every"
            " candidate is averaged over the fewest; rerun those orders with --seeds to add theirs"
        )
    rows = summary.rows()
    if output_format == "json":
        echo_json(
            {
                "settings_hash": summary.settings_hash,
                "n_train_images": summary.n_train_images,
                "n_test_images": summary.n_test_images,
                "seconds": round(summary.seconds, 2),
                "saved_by_estimate": summary.saved_by_estimate,
                "counts": rows,
                "failures": [{"transfer_key": key, "reason": reason} for key, reason in summary.failures],
                "seed_shortfalls": summary.seed_shortfalls,
            }
        )
        return
    click.echo(render_rows(rows, ["order", "kind", "done", "failed", "skipped"], output_format))
    if output_format == "table":
        click.echo(
            f"\nsettings {summary.settings_hash}: {summary.n_train_images} transfer images, "
            f"{summary.n_test_images} test images, {summary.seconds:.1f} s"
        )
        if summary.saved_by_estimate:
            click.echo(
                f"{summary.saved_by_estimate} first-order transfers not run: the estimated beam does not reach them"
            )
        for key, reason in summary.failures:
            click.echo(f"failed: {key}: {reason}", err=True)
