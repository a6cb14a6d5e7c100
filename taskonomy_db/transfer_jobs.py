"""The executor's one function, `run_job`, and the baselines that read pixels: gold (the trained task network,
evaluated) and scratch (the gold architecture trained from pixels on the fit images, with the readouts' schedule
and early stopping). Pure functions of a `TransferContext` and a job, like the readouts."""

from __future__ import annotations

import copy
import time
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from taskonomy_db.data import TaskData
from taskonomy_db.models.networks import NetworkConfig, create_task_network
from taskonomy_db.names import GOLD
from taskonomy_db.readout import (
    BatchOrder,
    NetworkJob,
    ReadoutGroup,
    Schedule,
    TransferContext,
    TransferJob,
    TransferOutcome,
    check_losses,
    train_readout_group,
    train_until_stopped,
)
from taskonomy_db.tasks import get_task
from taskonomy_db.training import load_gold_network, per_image_losses
from taskonomy_db.workspace import Workspace


def run_network_job(context: TransferContext, item: NetworkJob) -> list[TransferOutcome]:
    """gold: the trained task network on the test images. scratch: the same architecture trained from pixels on
    the fit images with the readouts' schedule and early stopping, then tested."""
    job = item.job
    started_at = datetime.now()
    data = context.pixels[job.target]
    start = time.perf_counter()
    failure, n_steps, best_step = None, 0, 0
    if job.kind == GOLD:
        network, _ = load_gold_network(Workspace(Path(context.workspace_root)), job.target)
        seconds_train = 0.0
    else:
        # Everything random in here (initialisation, dropout) draws from the global generator, seeded by the job
        # alone, so the result does not depend on what this process ran before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.seed)
            network, failure, n_steps, best_step = _train_scratch(context, job, data["fit"], data["holdout"])
        seconds_train = time.perf_counter() - start
    start = time.perf_counter()
    losses = None
    if failure is None:
        losses = per_image_losses(network, data["test"])
        failure = check_losses(losses)
    test_ids = data["test"].image_ids
    return [
        TransferOutcome(
            job,
            None if failure else test_ids,
            None if failure else losses,
            failure,
            seconds_train,
            time.perf_counter() - start,
            started_at,
            datetime.now(),
            n_steps,
            best_step,
        )
    ]


def _train_scratch(
    context: TransferContext, job: TransferJob, fit: TaskData, holdout: TaskData
) -> tuple[nn.Module, str | None, int, int]:
    schedule = Schedule.of(context.settings)
    spec = get_task(job.target)
    network = create_task_network(spec, NetworkConfig.from_dict(context.settings["scratch_network"]))
    optimizer = torch.optim.AdamW(
        network.parameters(),
        lr=float(context.settings["learning_rate"]),
        weight_decay=float(context.settings["weight_decay"]),
    )
    generator = torch.Generator().manual_seed(job.seed)
    batches = BatchOrder(len(fit), schedule.batch_size, generator)
    best = copy.deepcopy(network.state_dict())

    def step(active: list[int], n: int) -> dict[int, str] | None:
        rows = batches.next()
        if len(rows) < 2:  # batch norm needs two images
            return None
        network.train()
        batch = fit.batch(rows, train=True, generator=generator)
        loss = spec.loss(network(batch.inputs), batch.targets, batch.masks).mean()
        if not torch.isfinite(loss):
            return {0: f"diverged: training loss {loss.item()} at step {n}"}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {}

    def keep(index: int) -> None:
        nonlocal best
        best = copy.deepcopy(network.state_dict())

    def evaluate(active: list[int]) -> list[float]:
        return [float(per_image_losses(network, holdout).mean())]

    (watch,), (failure,), n_steps = train_until_stopped(schedule, 1, step, evaluate, keep)
    if failure is not None:
        return network, failure, n_steps, watch.best_step
    network.load_state_dict(best)
    return network.eval(), None, n_steps, watch.best_step


def run_job(context: TransferContext, item: ReadoutGroup | NetworkJob) -> list[TransferOutcome]:
    """The executor's one function: a readout group or a pixel baseline, on one thread.

    One thread always: these networks are too small for intra-op parallelism to pay (spinning threads cost more
    than they save, worse on a busy machine), and a fixed thread count keeps the losses bit-identical whether the
    run uses one worker or several. Parallelism comes from workers instead.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if isinstance(item, ReadoutGroup):
            return train_readout_group(context, item)
        return run_network_job(context, item)
    finally:
        torch.set_num_threads(threads)
