"""The jobs of a transfer run and what a readout job does: train readouts until their held-out loss stops
improving, then score every test image. Pure functions of a `TransferContext` and a job, run by the executor's
workers (through `taskonomy_db.transfer_jobs.run_job`, which also runs the pixel baselines); nothing here
touches the workspace's database.

Image roles (chosen by `taskonomy_db.transfer`): `fit` (the images readouts and scratch take gradient steps on,
from a split no task network trained on), `holdout` (images of other buildings of that split, for early
stopping) and `test` (every loss that is stored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch

from taskonomy_db.data import TaskData
from taskonomy_db.errors import TdbError
from taskonomy_db.models.readout import VECTOR_KINDS, ReadoutBank
from taskonomy_db.tasks import TaskSpec, get_task

ROLES = ("fit", "holdout", "test")
EVAL_BATCH = 256


class TransferError(TdbError):
    """The transfers asked for cannot run: missing representations or networks, or impossible settings."""


# ---------------------------------------------------------------- jobs and results


@dataclass(frozen=True)
class TransferJob:
    """One row-to-be of `transfers`."""

    key: str
    kind: str
    target: str
    sources: tuple[str, ...]
    order: int
    seed: int
    seed_index: int = 0  # which of the source set's `[transfer] seeds` readouts


@dataclass(frozen=True)
class ReadoutGroup:
    """Readouts over the same input (one source set, or the random encoder) for several targets."""

    inputs: tuple[str, ...]  # encoders whose representations are concatenated
    jobs: tuple[TransferJob, ...]
    seed: int  # batch order, shared by the group


@dataclass(frozen=True)
class NetworkJob:
    """A baseline that reads pixels: gold (evaluate the trained network) or scratch (train one)."""

    job: TransferJob


@dataclass
class TransferOutcome:
    job: TransferJob
    image_ids: np.ndarray | None  # test images, ascending; None when failed
    losses: np.ndarray | None
    failure_reason: str | None
    seconds_train: float
    seconds_eval: float
    started_at: datetime
    finished_at: datetime
    n_steps: int = 0  # optimiser steps taken
    best_step: int = 0  # the step whose weights were kept (lowest held-out loss)

    @property
    def status(self) -> str:
        return "failed" if self.failure_reason else "done"


# ---------------------------------------------------------------- what every job shares


@dataclass
class Labels:
    """One target's labels on one image role, aligned with that role's representation rows; for a multi-image
    target, one per tuple of the role (`views`: the positions of each tuple's views among the role's images)."""

    rows: np.ndarray  # positions in the role's images that carry this target's label (tuples: 0..N-1)
    image_ids: np.ndarray  # image ids, or tuple ids
    targets: torch.Tensor
    masks: torch.Tensor | None
    views: np.ndarray | None = None  # int64 [N, V] for a multi-image target


@dataclass
class TransferContext:
    """Everything the jobs of one run read, shipped once to each worker: representations per role as normalised
    float32 (read from Parquet once per source), labels per role decoded once per target, and pixels for the
    baselines."""

    settings: dict[str, Any]
    image_ids: dict[str, np.ndarray]  # role -> image ids, ascending
    representations: dict[str, dict[str, np.ndarray]]  # encoder -> role -> rows
    targets: dict[str, dict[str, Labels]]  # target -> role -> labels
    pixels: dict[str, dict[str, TaskData]] = field(default_factory=dict)  # target -> role -> data
    workspace_root: str = ""  # where the gold networks are (models/<task>.pt)

    def inputs(self, encoders: Sequence[str]) -> dict[str, torch.Tensor]:
        return {
            role: torch.from_numpy(np.concatenate([self.representations[e][role] for e in encoders], axis=1))
            for role in ROLES
        }


# ---------------------------------------------------------------- early stopping


@dataclass
class Patience:
    """Early stopping on a held-out loss: the best value and step so far, and whether `patience` evaluations in a
    row have failed to improve on it."""

    patience: int
    best: float = float("inf")
    best_step: int = 0
    misses: int = 0

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation; True when it is the best so far (the weights to keep)."""
        if value < self.best:
            self.best, self.best_step, self.misses = value, step, 0
            return True
        self.misses += 1
        return False

    @property
    def stopped(self) -> bool:
        return self.misses >= self.patience


@dataclass(frozen=True)
class Schedule:
    """The step budget and the early-stopping rule every readout and scratch network of a run follows."""

    max_steps: int
    eval_every: int
    patience: int
    batch_size: int

    @classmethod
    def of(cls, settings: dict[str, Any]) -> Schedule:
        return cls(
            int(settings["max_steps"]),
            int(settings["eval_every"]),
            int(settings["patience"]),
            int(settings["batch_size"]),
        )

    def evaluates_at(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.max_steps


def train_until_stopped(
    schedule: Schedule,
    n_heads: int,
    step: Callable[[list[int], int], Mapping[int, str] | None],
    evaluate: Callable[[list[int]], Sequence[float]],
    keep: Callable[[int], None],
) -> tuple[list[Patience], list[str | None], int]:
    """The loop every readout and scratch network trains in. Up to `schedule.max_steps` steps: `step(active, n)`
    takes gradient step n for the heads still training and returns why any of them failed (a diverged loss), or
    None when it trained nothing (a batch too small; no evaluation follows it). Every `eval_every` steps
    `evaluate(active)` gives each head's held-out loss and `keep(i)` saves the weights of a head that improved on
    its best; a head stops after `patience` evaluations without improvement, the loop when every head has
    stopped or failed. Returns each head's Patience (best step), failure and the steps taken."""
    watch = [Patience(schedule.patience) for _ in range(n_heads)]
    failures: list[str | None] = [None] * n_heads
    n = 0
    while n < schedule.max_steps:
        active = [i for i in range(n_heads) if failures[i] is None and not watch[i].stopped]
        if not active:
            break
        n += 1
        failed = step(active, n)
        if failed is None:
            continue
        for index, reason in failed.items():
            failures[index] = reason
        active = [i for i in active if failures[i] is None]
        if active and schedule.evaluates_at(n):
            for index, value in zip(active, evaluate(active), strict=True):
                if watch[index].update(value if np.isfinite(value) else float("inf"), n):
                    keep(index)
    return watch, failures, n


class BatchOrder:
    """Batches of row positions, reshuffled by `generator` whenever the images run out (epochs without a fixed
    count: a run stops by steps)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.order, self.position = torch.randperm(n, generator=generator), 0

    def next(self) -> torch.Tensor:
        if self.position >= self.n:
            self.order, self.position = torch.randperm(self.n, generator=self.generator), 0
        rows = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return rows


@dataclass(frozen=True)
class Samples:
    """The pixels a masked metric loss reads, per labelled image of a role: flat indices in ascending order
    padded to the largest count (`valid` marks the real ones), and the targets there."""

    index: torch.Tensor  # (N, K)
    valid: torch.Tensor  # (N, K)
    targets: torch.Tensor  # (N, K)

    @classmethod
    def of(cls, labels: Labels) -> Samples:
        chosen = labels.masks.flatten(1).bool()
        counts = chosen.sum(1)
        # A stable sort puts each image's chosen pixels first, in ascending order (the order the loss reads).
        first = torch.sort((~chosen).to(torch.uint8), dim=1, stable=True).indices
        index = first[:, : int(counts.max()) if len(counts) else 0]
        valid = torch.arange(index.shape[1])[None, :] < counts[:, None]
        return cls(index, valid, torch.gather(labels.targets.flatten(1), 1, index))


def _sampled(spec: TaskSpec, labels: Labels) -> Samples | None:
    """The samples of a target whose loss reads sampled pixels of a dense embedding (None for the rest)."""
    if spec.output_kind != "embedding" or labels.masks is None:
        return None
    return Samples.of(labels)


def at_samples(samples: Samples, lookup: torch.Tensor, rows: torch.Tensor, prediction: torch.Tensor) -> tuple:
    """`_labelled` for a head computed at its samples: the prediction, targets and masks (as (B, K, 1) maps of
    the samples) of the labelled images among `rows`."""
    where = lookup[rows]
    keep = where >= 0
    label_rows = where[keep]
    if not bool(keep.all()):
        prediction = prediction[keep]
    return prediction, samples.targets[label_rows].unsqueeze(2), samples.valid[label_rows].unsqueeze(2)


# (role, row positions) -> the input batch: by default rows of the cached representations; the benchmark's naive
# baseline passes one that runs the encoders again instead.
Features = Callable[[str, torch.Tensor], torch.Tensor]


def cached_features(context: TransferContext, encoders: Sequence[str]) -> Features:
    inputs = context.inputs(encoders)
    return lambda role, rows: inputs[role][rows]


def tuple_features(features: Features, labels: Mapping[str, Labels]) -> Features:
    """The input of a multi-image target's readout: for each tuple of a role, its views' representations
    concatenated along the channels (as the original's transfers to these tasks read them)."""

    def read(role: str, rows: torch.Tensor) -> torch.Tensor:
        views = labels[role].views[rows.numpy()]
        return torch.cat([features(role, torch.from_numpy(views[:, k])) for k in range(views.shape[1])], dim=1)

    return read


def _labelled(labels: Labels, lookup: torch.Tensor, rows: torch.Tensor, prediction: torch.Tensor) -> tuple:
    """The prediction, targets and masks of the images among `rows` that carry this target's label."""
    where = lookup[rows]
    keep = where >= 0
    label_rows = where[keep]
    if not bool(keep.all()):  # skipped when every image is labelled: a masked copy costs a full pass
        prediction = prediction[keep]
    masks = None if labels.masks is None else labels.masks[label_rows]
    return prediction, labels.targets[label_rows], masks


def _lookup(labels: Labels, n: int) -> torch.Tensor:
    """Role row -> position among the labelled images (-1: no label there)."""
    lookup = np.full(n, -1, dtype=np.int64)
    lookup[labels.rows] = np.arange(len(labels.rows))
    return torch.from_numpy(lookup)


@torch.no_grad()
def _predict(
    bank: ReadoutBank, features: Features, role: str, n: int, heads: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """The predictions of `heads` (every head when None) for every image of a role, in batches."""
    outputs: list[list[torch.Tensor]] = [[] for _ in (bank.heads if heads is None else heads)]
    for begin in range(0, n, EVAL_BATCH):
        batch = features(role, torch.arange(begin, min(begin + EVAL_BATCH, n)))
        for index, prediction in enumerate(bank(batch, heads)):
            outputs[index].append(prediction)
    return [torch.cat(chunks) for chunks in outputs]


def train_readout_group(
    context: TransferContext, group: ReadoutGroup, features: Features | None = None
) -> list[TransferOutcome]:
    """Train the group's readouts together, each until its held-out loss stops improving (or the step budget
    ends), keep each one's best weights, and return each one's per-image test losses (or why it failed)."""
    started_at = datetime.now()
    start = time.perf_counter()
    schedule = Schedule.of(context.settings)
    features = features or cached_features(context, group.inputs)
    counts = {role: len(context.image_ids[role]) for role in ROLES}
    specs = [get_task(job.target) for job in group.jobs]
    labels = [context.targets[job.target] for job in group.jobs]
    if any(spec.n_views > 1 for spec in specs):  # a group of its own (group_jobs): its rows are tuples
        features = tuple_features(features, labels[0])
        counts = {role: len(labels[0][role].image_ids) for role in ROLES}
    in_channels, side, _ = features("fit", torch.arange(1)).shape[1:]
    sizes = {int(t["fit"].targets.shape[-1]) for t, s in zip(labels, specs, strict=True) if _is_dense(s)}
    size = sizes.pop() if sizes else side
    priors = [s.baseline_prediction(t["fit"].targets, t["fit"].masks) for s, t in zip(specs, labels, strict=True)]
    width = int(context.settings["readout_width"])
    bank = ReadoutBank(in_channels, side, specs, [job.seed for job in group.jobs], width, size, priors)
    lookups = [{role: _lookup(t[role], counts[role]) for role in ("fit", "holdout")} for t in labels]
    samples = [_sampled(spec, t["fit"]) for spec, t in zip(specs, labels, strict=True)]

    optimizer = torch.optim.AdamW(
        bank.parameters(),
        lr=float(context.settings["learning_rate"]),
        weight_decay=float(context.settings["weight_decay"]),
    )
    batches = BatchOrder(counts["fit"], schedule.batch_size, torch.Generator().manual_seed(group.seed))
    n_heads = len(group.jobs)
    best = [bank.head_state(i) for i in range(n_heads)]  # step 0: the trivial predictor
    steps = [0] * n_heads
    holdout_rows = torch.arange(counts["holdout"])

    def step(active: list[int], n: int) -> dict[int, str]:
        failed = {}
        bank.train()
        rows = batches.next()
        # An unlabelled image's row gets any pixels: _labelled drops it.
        pixels = {i: samples[i].index[lookups[i]["fit"][rows].clamp_min(0)] for i in active if samples[i] is not None}
        predictions = bank(features("fit", rows), active, pixels)
        total = torch.zeros(())
        for index, predicted in zip(active, predictions, strict=True):
            if index in pixels:  # the full-map targets _labelled would gather are never read
                prediction, targets, masks = at_samples(samples[index], lookups[index]["fit"], rows, predicted)
            else:
                prediction, targets, masks = _labelled(labels[index]["fit"], lookups[index]["fit"], rows, predicted)
            if not len(targets):
                continue
            loss = specs[index].loss(prediction, targets, masks).mean()
            if not torch.isfinite(loss):
                # Left out of the sum from here on: its parameters are its own, so the others are unaffected.
                failed[index] = f"diverged: training loss {loss.item()} at step {n}"
                continue
            total = total + loss
            steps[index] = n
        optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
            optimizer.step()
        return failed

    def evaluate(active: list[int]) -> list[float]:
        bank.eval()
        values = []
        for index, predicted in zip(
            active, _predict(bank, features, "holdout", counts["holdout"], active), strict=True
        ):
            prediction, targets, masks = _labelled(
                labels[index]["holdout"], lookups[index]["holdout"], holdout_rows, predicted
            )
            values.append(float(specs[index].loss(prediction, targets, masks).mean()))
        return values

    def keep(index: int) -> None:
        best[index] = bank.head_state(index)

    watch, failures, _ = train_until_stopped(schedule, n_heads, step, evaluate, keep)
    for index in range(n_heads):
        bank.load_head_state(index, best[index])
    seconds_train = time.perf_counter() - start

    start = time.perf_counter()
    bank.eval()
    predictions = _predict(bank, features, "test", counts["test"])
    seconds_eval = time.perf_counter() - start
    finished_at = datetime.now()
    outcomes = []
    for index, (job, spec, target) in enumerate(zip(group.jobs, specs, labels, strict=True)):
        test = target["test"]
        losses = None
        if failures[index] is None:
            with torch.no_grad():
                prediction = predictions[index][torch.from_numpy(test.rows)]
                losses = spec.loss(prediction, test.targets, test.masks).double().numpy()
            failures[index] = check_losses(losses)
        failed = failures[index] is not None
        outcomes.append(
            TransferOutcome(
                job,
                None if failed else test.image_ids,
                None if failed else losses,
                failures[index],
                seconds_train / n_heads,
                seconds_eval / n_heads,
                started_at,
                finished_at,
                steps[index],
                watch[index].best_step,
            )
        )
    return outcomes


def _is_dense(spec: TaskSpec) -> bool:
    return spec.output_kind not in VECTOR_KINDS


def check_losses(losses: np.ndarray) -> str | None:
    bad = ~np.isfinite(losses)
    if bad.any():
        return f"diverged: {int(bad.sum())} of {len(losses)} test losses are not finite"
    return None
