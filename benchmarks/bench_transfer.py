"""First-order transfers per minute (`tdb transfer`) on the default dataset, against the naive loop that re-runs
the source encoder (onnxruntime) on every batch instead of reading stored representations.

The workspace: $TDB_BENCH_WORKSPACE (a trained, exported and extracted one, e.g. the demo's; copied, never
written), else one built here from the default generated dataset with gold networks trained for one epoch (the
speed of a readout does not depend on how good its encoder is).

Pipeline: every target x every source at order 1, default [transfer] settings, timed end to end (reading
representations and labels, training, evaluation, writing the store). Naive: one transfer per target (sources
taken in turn), each trained and tested with the same readout and settings, its input computed by the ONNX
encoder for every batch (onnxruntime on every core, the readout on one thread as in the pipeline); labels and
decoded pixels are given to it for free, so the comparison favours the naive loop. The same transfers are also
timed as lone readouts from the stored representations, which splits the naive time into readout and encoder.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taskonomy_db.data import load_rgb
from taskonomy_db.demo import PROFILES
from taskonomy_db.encoders import export_encoders, registered_encoder
from taskonomy_db.extract import extract, open_session
from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest
from taskonomy_db.readout import ROLES, ReadoutGroup, train_readout_group
from taskonomy_db.training import train_tasks
from taskonomy_db.transfer import prepare_transfers, run_transfers
from taskonomy_db.transfer_settings import derive_seed
from taskonomy_db.workspace import Workspace


def build_workspace(root: Path) -> Workspace:
    generate(root / "data", progress=False)
    workspace = Workspace.init(root / "study")
    workspace.update_settings("split", dict(PROFILES["default"].split))  # the demo's: readouts fit on val
    workspace.update_settings("transfer", dict(PROFILES["default"].transfer))
    ingest(workspace, root / "data")
    train_tasks(workspace, overrides={"epochs": 1}, progress=False)
    export_encoders(workspace)
    extract(workspace, progress=False)
    return workspace


def naive_features(workspace: Workspace, source: str, context, threads: int):
    """Features that run the source's ONNX encoder on every batch, standardised like the stored ones."""
    record = registered_encoder(workspace, source)
    session = open_session(workspace, record, "cpu", threads)
    pixels = {role: load_rgb(workspace, context.image_ids[role].tolist(), record.input_size) for role in ROLES}

    def encode(role: str, rows: np.ndarray) -> np.ndarray:
        images = pixels[role][rows].astype(np.float32) / np.float32(255)
        if record.normalisation is not None:
            images = (images - record.normalisation[0]) / record.normalisation[1]
        return session.run([record.output_name], {record.input_name: images})[0]

    fit = encode("fit", np.arange(len(context.image_ids["fit"])))  # the standardisation statistics need one pass
    mean = fit.mean(axis=(0, 2, 3), keepdims=True)
    std = (fit - mean).std() + 1e-6

    def features(role: str, rows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(((encode(role, rows.numpy()) - mean) / std).astype(np.float32))

    return features


def main() -> int:
    cores = os.cpu_count() or 1
    given = os.environ.get("TDB_BENCH_WORKSPACE")
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        if given:
            shutil.copytree(given, Path(tmp) / "study")
            workspace = Workspace.open(Path(tmp) / "study")
            with workspace.db.transaction() as con:
                con.execute("delete from losses; delete from transfers")
        else:
            print("building the default workspace (gold networks trained 1 epoch) ...", file=sys.stderr)
            workspace = build_workspace(Path(tmp))
        n_views = workspace.db.scalar("select count(*) from images")

        started = time.perf_counter()
        summary = run_transfers(workspace, {"max_order": 1, "baselines": []}, progress=False)
        pipeline_seconds = time.perf_counter() - started
        n_pipeline = sum(entry["done"] + entry["failed"] for entry in summary.counts.values())

        plan = prepare_transfers(workspace, {"max_order": 1, "baselines": []}, progress=False)
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        naive_seconds = lone_seconds = 0.0
        n_naive = 0
        for index, target in enumerate(plan.targets):
            source = plan.sources[index % len(plan.sources)]
            job = plan.job("transfer", target, [source], 1)
            group = ReadoutGroup((source,), (job,), derive_seed(plan.settings["seed"], "batches:" + source))
            start = time.perf_counter()
            features = naive_features(workspace, source, plan.context, cores)
            train_readout_group(plan.context, group, features)
            naive_seconds += time.perf_counter() - start
            # The same readout from the stored representations: what the naive loop spends beyond this is the
            # work that storing representations saves.
            start = time.perf_counter()
            train_readout_group(plan.context, group)
            lone_seconds += time.perf_counter() - start
            n_naive += 1
        torch.set_num_threads(previous)

    pipeline_rate = 60 * n_pipeline / pipeline_seconds
    naive_rate = 60 * n_naive / naive_seconds
    workers = int(plan.settings["workers"]) or cores
    print("## Transfers: first order from stored representations vs re-running the encoder\n")
    print(
        f"Default generated dataset ({n_views} views at 64 px), {len(plan.targets)} targets x "
        f"{len(plan.sources)} sources, {summary.n_train_images} transfer images, {summary.n_test_images} test "
        f"images, up to {plan.settings['max_steps']} steps, batch {plan.settings['batch_size']}, readout width "
        f"{plan.settings['readout_width']}; {cores} cores. Workspace: "
        f"{'given' if given else 'built here, gold networks trained 1 epoch'}.\n"
    )
    print("| path | transfers | seconds | transfers / min |")
    print("|---|---:|---:|---:|")
    print(
        f"| `tdb transfer` (stored representations, readouts fused per source, {workers} worker processes x 1 "
        f"thread) | {n_pipeline} | {pipeline_seconds:.1f} | {pipeline_rate:.1f} |"
    )
    print(
        f"| naive loop (onnxruntime encoder on every batch, {cores} threads; one readout at a time) | "
        f"{n_naive} | {naive_seconds:.1f} | {naive_rate:.1f} |"
    )
    print(
        f"| the naive loop's transfers, readout from stored representations (1 thread, one at a time) | "
        f"{n_naive} | {lone_seconds:.1f} | {60 * n_naive / lone_seconds:.1f} |"
    )
    naive_each, lone_each = naive_seconds / n_naive, lone_seconds / n_naive
    pipeline_each = pipeline_seconds * workers / n_pipeline
    print(
        f"\nSpeed-up: **{pipeline_rate / naive_rate:.1f}x** (goal: at least 5x). The pipeline's time includes "
        "reading representations and labels and writing every loss to DuckDB; the naive loop's excludes label "
        "loading.\n\n"
        f"Where it comes from, per transfer: the naive loop takes {naive_each:.2f} s, of which the readout itself "
        f"(trained from stored representations) is {lone_each:.2f} s; the encoder and its pixels are the other "
        f"{naive_each - lone_each:.2f} s, the work that storing representations saves. The pipeline spends "
        f"{pipeline_each:.2f} core-seconds per transfer ({pipeline_each / lone_each:.2f}x a lone readout: fusing a "
        f"source's readouts, reading and writing included). Skipping the encoder and running {workers} workers "
        f"bounds the speed-up at {workers} x {naive_each:.2f} / {lone_each:.2f} = "
        f"{workers * naive_each / lone_each:.1f}x unless fused readouts cost less than lone ones; 5x needs "
        f"{workers * naive_each / 5:.2f} core-seconds per transfer, {lone_each / (workers * naive_each / 5):.1f}x "
        "less than a lone readout."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
