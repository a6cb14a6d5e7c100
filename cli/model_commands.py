"""Commands for step 1 of the method: train the gold-standard networks, export encoders, extract
representations, and register users' own encoders: train, export, extract, add-encoder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from taskonomy_db.cli.app import (
    cli,
    echo_json,
    format_option,
    open_workspace,
    render_rows,
    setting_type,
    workspace_option,
)
from taskonomy_db.ingest import SPLITS
from taskonomy_db.settings import DTYPES, PROVIDERS

# The library modules import torch and onnxruntime, which take seconds to load: they are imported inside the
# commands so that every other `tdb` command starts fast. These mirror taskonomy_db.extract's choices.


def _floats3(value: str | None) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise click.BadParameter(f"expected three comma-separated numbers (R,G,B), got {value!r}")
    return parts  # type: ignore[return-value]


@cli.command()
@click.argument("tasks", nargs=-1)
@click.option("--epochs", type=setting_type("train", "epochs"), default=None, help="Epochs per task ([train] epochs).")
@click.option(
    "--image-size",
    type=setting_type("train", "image_size"),
    default=None,
    help="Input size in pixels ([train] image_size).",
)
@click.option("--width", type=setting_type("train", "width"), default=None, help="Encoder width ([train] width).")
@click.option(
    "--depth", type=setting_type("train", "depth"), default=None, help="Residual blocks per stage ([train] depth)."
)
@click.option(
    "--batch-size", type=setting_type("train", "batch_size"), default=None, help="Batch size ([train] batch_size)."
)
@click.option(
    "--norm",
    type=setting_type("train", "norm"),
    default=None,
    help="Encoder normalisation, batch or group ([train] norm; batch folds into the convolutions at export).",
)
@click.option("--learning-rate", type=setting_type("train", "learning_rate"), default=None, help="Peak learning rate.")
@click.option(
    "--threads", type=setting_type("train", "threads"), default=None, help="Torch threads; 0 = torch's default."
)
@click.option("--force", is_flag=True, help="Retrain tasks that already have a result with these settings.")
@format_option()
@workspace_option
def train(
    tasks: tuple[str, ...],
    epochs: int | None,
    image_size: int | None,
    width: int | None,
    depth: int | None,
    batch_size: int | None,
    norm: str | None,
    learning_rate: float | None,
    threads: int | None,
    force: bool,
    output_format: str,
    workspace_path: Path | None,
) -> None:
    """Train the gold-standard network of each TASK (default: every registered task) on the train split.

    Validation loss is stored per epoch (table training_epochs), the best checkpoint is kept at
    models/<task>.pt, and the test loss is compared with a trivial baseline (training mean or class
    frequencies; table gold_results). Settings come from tdb.toml [train], overridden by the flags. A task
    already trained with the same settings is skipped; an interrupted task resumes after its last epoch.

    Example:

        tdb train depth_zbuffer normal class_scene --epochs 8
    """
    from taskonomy_db.tasks import get_task
    from taskonomy_db.training import train_settings, train_tasks

    for name in tasks:
        get_task(name)  # unknown names fail before any work
    workspace = open_workspace(workspace_path)
    overrides = {
        "epochs": epochs,
        "image_size": image_size,
        "width": width,
        "depth": depth,
        "batch_size": batch_size,
        "norm": norm,
        "learning_rate": learning_rate,
        "threads": threads,
    }
    settings = train_settings(workspace, overrides)
    with workspace.run("train", {"tasks": list(tasks), **settings}):
        results = train_tasks(workspace, list(tasks), overrides, force=force)
    rows = []
    for result in results:
        row = dataclasses.asdict(result)
        row["group"] = get_task(result.task).group
        row["status"] = "skipped (done)" if result.skipped else "trained"
        rows.append(row)
    if output_format == "json":
        echo_json(rows)
        return
    columns = ["task", "group", "test_loss", "baseline_loss", "beats_baseline", "best_epoch", "seconds", "status"]
    click.echo(render_rows(rows, columns, output_format))
    if output_format == "table":
        wins = sum(r.beats_baseline for r in results)
        click.echo(f"gold beats the trivial baseline on {wins}/{len(results)} tasks (test split)")


@cli.command()
@click.argument("tasks", nargs=-1)
@click.option("--force", is_flag=True, help="Export again even when the ONNX file is up to date.")
@format_option()
@workspace_option
def export(tasks: tuple[str, ...], force: bool, output_format: str, workspace_path: Path | None) -> None:
    """Export each TASK's trained encoder to models/<task>.onnx and register it in the encoders table.

    Default: every trained task plus `random` (the same architecture at random initialisation). Each file has a
    named input `image` (N, 3, S, S; RGB in [0, 1]) and output `representation` with a dynamic batch axis,
    passes onnx.checker and a parity check against PyTorch (max abs difference <= 1e-4, recorded), and carries
    its task, representation shape, input size, preprocessing and source commit as metadata.

    Example:

        tdb export normal depth_zbuffer random
    """
    from taskonomy_db.encoders import export_encoders
    from taskonomy_db.tasks import get_task

    for name in tasks:
        if name != "random":
            get_task(name)
    workspace = open_workspace(workspace_path)
    with workspace.run("export", {"tasks": list(tasks), "force": force}):
        records = export_encoders(workspace, list(tasks), force=force)
    rows = [
        {
            "encoder": r.encoder,
            "kind": r.kind,
            "onnx_path": r.onnx_path,
            "representation_shape": list(r.representation_shape),
            "parity_max_abs_diff": r.parity_max_abs_diff,
            "sha256": r.sha256[:12],
            "status": "up to date" if r.skipped else "exported",
        }
        for r in records
    ]
    if output_format == "json":
        echo_json(rows)
        return
    click.echo(render_rows(rows, list(rows[0]), output_format))


@cli.command("extract")
@click.argument("encoders", nargs=-1)
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default="auto",
    show_default=True,
    help="onnxruntime execution provider; auto uses CUDA when available.",
)
@click.option(
    "--splits",
    default=",".join(SPLITS),
    show_default=True,
    help="Comma-separated splits whose images are extracted.",
)
@click.option("--dtype", type=click.Choice(DTYPES), default="float16", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0, help="onnxruntime intra-op threads; 0 = its default.")
@format_option()
@workspace_option
def extract_command(
    encoders: tuple[str, ...],
    provider: str,
    splits: str,
    dtype: str,
    batch_size: int,
    threads: int,
    output_format: str,
    workspace_path: Path | None,
) -> None:
    """Run each registered ENCODER (default: all) over the images into representations/<encoder>/*.parquet.

    One row per image: image_id and the representation as a fixed-size list (float16 unless --dtype).
    Resumable: a rerun extracts only images that no finished part holds, and parts of an older export of the
    encoder are replaced. Refuses an ONNX file whose sha256 differs from the registered one.

    Example:

        tdb extract normal random --splits train,test --provider cpu
    """
    from taskonomy_db.extract import extract

    chosen = [s.strip() for s in splits.split(",") if s.strip()]
    bad = [s for s in chosen if s not in SPLITS]
    if bad or not chosen:
        raise click.BadParameter(f"splits must be among {', '.join(SPLITS)}", param_hint="--splits")
    workspace = open_workspace(workspace_path)
    settings = {"encoders": list(encoders), "splits": chosen, "provider": provider, "dtype": dtype}
    with workspace.run("extract", settings):
        reports = extract(workspace, list(encoders), chosen, provider, dtype, batch_size, threads=threads)
    rows = [{**dataclasses.asdict(r), "images_per_second": round(r.images_per_second, 1)} for r in reports]
    if output_format == "json":
        echo_json(rows)
        return
    columns = ["encoder", "n_images", "n_extracted", "n_parts", "images_per_second", "provider"]
    click.echo(render_rows(rows, columns, output_format))


@cli.command("add-encoder")
@click.argument("name")
@click.argument("onnx_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input-size", type=click.IntRange(1), default=None, help="Square input size, if not in the file.")
@click.option("--mean", default=None, help="Per-channel mean subtracted from [0,1] RGB, e.g. 0.485,0.456,0.406.")
@click.option("--std", default=None, help="Per-channel std dividing [0,1] RGB, e.g. 0.229,0.224,0.225.")
@click.option("--output", "output_name", default=None, help="Graph output to use (default: the first).")
@click.option("--replace", is_flag=True, help="Replace an encoder registered under the same name.")
@format_option(("text", "json"), default="text")
@workspace_option
def add_encoder_command(
    name: str,
    onnx_file: Path,
    input_size: int | None,
    mean: str | None,
    std: str | None,
    output_name: str | None,
    replace: bool,
    output_format: str,
    workspace_path: Path | None,
) -> None:
    """Register your own ONNX image encoder NAME as a transfer source (copied to models/NAME.onnx).

    The input must be images (N, 3, H, W) of RGB in [0, 1] with a dynamic batch axis, optionally normalised by
    --mean/--std; the input size and preprocessing are read from the file's metadata when present. The
    representation is measured by running two images: it must be a square feature map (N, C, S, S) whose side S
    divides the workspace's image size, since the readouts upsample it to the labels. Then `tdb extract NAME`
    and transfers use it like any task's encoder (higher orders combine encoders whose maps are the same size).

    A ResNet-18 without its pooling and classifier gives an 8x8 map at 256 px, which divides 64. Example:

        tdb add-encoder resnet18 resnet18.onnx --input-size 256 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
    """
    from taskonomy_db.encoders import add_encoder, registered_encoders

    workspace = open_workspace(workspace_path)
    settings = {"name": name, "onnx_file": str(onnx_file), "input_size": input_size, "mean": mean, "std": std}
    replaced = replace and any(r.encoder == name for r in registered_encoders(workspace))
    with workspace.run("add-encoder", settings):
        record = add_encoder(
            workspace, name, onnx_file, input_size, _floats3(mean), _floats3(std), output_name, replace
        )
    if output_format == "json":
        echo_json({k: v for k, v in dataclasses.asdict(record).items() if k != "skipped"})
        return
    shape = "x".join(str(d) for d in record.representation_shape)
    click.echo(
        f"{'replaced' if replaced else 'registered'} encoder {record.encoder} ({record.onnx_path}, "
        f"input {record.input_size}px, "
        f"representation {shape}, sha256 {record.sha256[:12]})"
    )
