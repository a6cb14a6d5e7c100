"""Transfers (`tdb transfer`): small readouts trained on frozen representations, tested image by image.

Step 2 of the method. For every target and source set S a readout D_{S->t} is trained on the stored
representations of S (concatenated along channels) with the target's loss, on the same small transfer subset of
the train split, and its loss on every test image goes into `losses`. Baselines on the same test images:
`gold` (the task's own fully supervised network), `scratch` (the same architecture trained from pixels on the
transfer subset with the transfer budget) and `random` (a readout on the random encoder's representations).

Higher orders follow the paper's beam over each target's first-order ranking, read from the store (mean test
loss of done first-order transfers, baselines and the target's own encoder left out, as in the released
rankings): orders 2 and 3 take every pair/triple of the top `beam` sources, order 4 every 4-subset of the top
`beam + 1`, orders 5 and above the one greedy prefix of the ranking.

Store contract: a transfer is one `transfers` row plus one `losses` row per test image, written in one
transaction, so a kill loses at most the transfers in flight and a rerun skips every finished `transfer_key`.
Readouts that read the same sources train together (one fused first convolution for all their targets) and are
recorded in one transaction; each has its own seed, derived from the workspace seed and its transfer key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from taskonomy_db.data import TaskData, image_size, load_task_data
from taskonomy_db.encoders import EncoderRecord, registered_encoders, representation_problem
from taskonomy_db.errors import TdbError
from taskonomy_db.executor import Executor, create_executor
from taskonomy_db.extract import read_representations, representation_dir
from taskonomy_db.models.networks import PixelShuffle, create_task_network
from taskonomy_db.names import GOLD, NETWORK_BASELINES, RANDOM, SCRATCH
from taskonomy_db.tasks import TaskSpec, get_task, label_versions_digest, list_tasks
from taskonomy_db.training import (
    load_gold_network,
    network_config,
    network_sha256,
    per_image_losses,
    train_settings,
)
from taskonomy_db.workspace import TRANSFER_NUMBERS, Workspace, check_numbers

BASELINES = (GOLD, SCRATCH, RANDOM)
KINDS = ("transfer", *BASELINES)

# The [transfer] section of tdb.toml; CLI flags override single keys. Sized so that orders 1 and 2 for a dozen
# targets fit in a few minutes on 2 cores at 64 px.
DEFAULT_TRANSFER_SETTINGS: dict[str, Any] = {
    "transfer_images": 128,
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": 0.003,
    "weight_decay": 0.0001,
    "readout_width": 16,
    "max_order": 2,
    "beam": 5,
    "baselines": list(BASELINES),
    "workers": 0,  # 0 = one per core
}
# Only these change what a readout learns; the rest (which transfers, how fast) leave finished transfers valid.
RESULT_SETTINGS = ("transfer_images", "epochs", "batch_size", "learning_rate", "weight_decay", "readout_width")
EVAL_BATCH = 256
# Bumped whenever the readout or its training changes what it learns, so stored transfers of an older readout
# are not mistaken for current ones (it is part of every settings_hash).
READOUT_VERSION = 3
VECTOR_KINDS = ("distribution", "classes", "vector")  # one output per image; the rest are maps


class TransferError(TdbError):
    """The transfers asked for cannot run: missing representations or networks, or impossible settings."""


# ---------------------------------------------------------------- settings and keys


def transfer_settings(workspace: Workspace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then tdb.toml's [transfer], then non-None `overrides`; `seed` defaults to the study seed."""
    settings = dict(DEFAULT_TRANSFER_SETTINGS)
    settings.update(workspace.settings.get("transfer", {}))
    settings.setdefault("seed", workspace.seed)
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = set(settings) - set(DEFAULT_TRANSFER_SETTINGS) - {"seed"}
    if unknown:
        raise TransferError(f"unknown [transfer] setting(s): {', '.join(sorted(unknown))}")
    check_numbers("transfer", settings, TRANSFER_NUMBERS, TransferError)
    baselines = settings["baselines"]
    if not isinstance(baselines, list) or not all(isinstance(b, str) for b in baselines):
        raise TransferError(f"[transfer] baselines must be a list of names, got {baselines!r}")
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise TransferError(f"unknown baseline {bad[0]!r}; expected some of {', '.join(BASELINES)}")
    return settings


def settings_digest(settings: dict[str, Any], data_digest: str, scratch_network: dict[str, Any]) -> str:
    """The settings_hash of a run: everything that changes a transfer's losses, and nothing else."""
    relevant = {k: settings[k] for k in RESULT_SETTINGS}
    relevant.update(
        seed=int(settings["seed"]),
        data=data_digest,
        scratch_network=scratch_network,
        readout=READOUT_VERSION,
        labels=label_versions_digest(),
    )
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def transfer_key(kind: str, target: str, sources: Sequence[str], n_train_images: int, digest: str) -> str:
    return f"{kind}:{target}:{'+'.join(sorted(sources))}:{n_train_images}:{digest}"


def derive_seed(seed: int, name: str) -> int:
    """A 31-bit seed for one transfer (or group), independent of the order in which work runs."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little") & 0x7FFFFFFF


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

    @property
    def status(self) -> str:
        return "failed" if self.failure_reason else "done"


# ---------------------------------------------------------------- what every job shares


@dataclass
class TargetArrays:
    """One target's labels on the transfer subset and its test images, aligned with the representation rows."""

    train_rows: np.ndarray  # positions in the transfer subset that have this target's label
    train_targets: torch.Tensor
    train_masks: torch.Tensor | None
    test_rows: np.ndarray  # positions in the test split
    test_ids: np.ndarray
    test_targets: torch.Tensor
    test_masks: torch.Tensor | None


@dataclass
class TransferContext:
    """Everything the jobs of one run read, shipped once to each worker: representations as normalised float32
    (read from Parquet once per source), labels decoded once per target, and pixels for the baselines."""

    settings: dict[str, Any]
    train_ids: np.ndarray
    test_ids: np.ndarray
    representations: dict[str, tuple[np.ndarray, np.ndarray]]  # encoder -> (train rows, test rows)
    targets: dict[str, TargetArrays]
    pixels: dict[str, tuple[TaskData, TaskData]] = field(default_factory=dict)  # target -> (train, test)
    workspace_root: str = ""  # where the gold networks are (models/<task>.pt)

    def inputs(self, encoders: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        train = np.concatenate([self.representations[e][0] for e in encoders], axis=1)
        test = np.concatenate([self.representations[e][1] for e in encoders], axis=1)
        return torch.from_numpy(train), torch.from_numpy(test)


# ---------------------------------------------------------------- the readout


class ReadoutBank(nn.Module):
    """Independent readouts of several targets over one input. Their first 3x3 convolutions are fused into one
    (every head reads the same representation, so one wide convolution replaces many thin ones); after it each
    head has its own layers and parameters, so each is trained exactly as it would be alone.

    Dense targets: conv 3x3, then a 1x1 conv to out_channels x s^2 and a pixel shuffle back to the image size
    (all compute at the representation's resolution). Vector targets: pooled to 2x2, then linear. Each head
    predicts a correction to its target's trivial predictor (`priors`: the transfer subset's per-pixel mean or
    class frequencies) and starts at exactly that predictor (last layer zero): the few steps a readout gets go
    into what the representation adds, not into learning the target's mean. Embedding heads (segment_unsup*)
    start from a random last layer instead.
    """

    def __init__(
        self,
        in_channels: int,
        side: int,
        specs: Sequence[TaskSpec],
        seeds: Sequence[int],
        width: int,
        size: int,
        priors: Sequence[torch.Tensor],
    ) -> None:
        super().__init__()
        self.width = width
        for index, prior in enumerate(priors):
            self.register_buffer(f"prior{index}", prior.detach().float().clone())
        self.first = nn.Conv2d(in_channels, width * len(specs), 3, padding=1)
        heads = []
        for index, (spec, seed) in enumerate(zip(specs, seeds, strict=True)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                first = nn.Conv2d(in_channels, width, 3, padding=1)
                head = _readout_head(spec, width, side, size)
                if spec.output_kind != "embedding":
                    # Not for embeddings: the metric loss has zero gradient where all pixels embed alike, so a
                    # readout started at a constant embedding never leaves it.
                    last = [m for m in head.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]
                    nn.init.zeros_(last.weight)
                    nn.init.zeros_(last.bias)
                heads.append(head)
            with torch.no_grad():
                self.first.weight[index * width : (index + 1) * width] = first.weight
                self.first.bias[index * width : (index + 1) * width] = first.bias
        self.heads = nn.ModuleList(heads)

    def forward(self, representation: torch.Tensor) -> list[torch.Tensor]:
        hidden = F.relu(self.first(representation))
        w = self.width
        return [head(hidden[:, i * w : (i + 1) * w]) + getattr(self, f"prior{i}") for i, head in enumerate(self.heads)]


def _readout_head(spec: TaskSpec, width: int, side: int, size: int) -> nn.Module:
    if spec.output_kind in VECTOR_KINDS:
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(width * 4, spec.out_channels))
    if size % side:
        raise TransferError(f"image size {size} is not a multiple of the representation side {side}")
    scale = size // side
    return nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, spec.out_channels * scale * scale, 1),
        PixelShuffle(scale),
    )


def _weighted_mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean() if values.numel() else values.sum()


# (split, row positions) -> the input batch: by default rows of the cached representations; the benchmark's naive
# baseline passes one that runs the encoders again instead.
Features = Callable[[str, torch.Tensor], torch.Tensor]


def cached_features(context: TransferContext, encoders: Sequence[str]) -> Features:
    train_x, test_x = context.inputs(encoders)
    return lambda split, rows: (train_x if split == "train" else test_x)[rows]


def train_readout_group(
    context: TransferContext, group: ReadoutGroup, features: Features | None = None
) -> list[TransferOutcome]:
    """Train the group's readouts together and return each one's per-image test losses (or why it failed)."""
    started_at = datetime.now()
    start = time.perf_counter()
    settings = context.settings
    features = features or cached_features(context, group.inputs)
    n_train, n_test = len(context.train_ids), len(context.test_ids)
    specs = [get_task(job.target) for job in group.jobs]
    labels = [context.targets[job.target] for job in group.jobs]
    in_channels, side, _ = features("train", torch.arange(1)).shape[1:]
    sizes = {int(t.train_targets.shape[-1]) for t, s in zip(labels, specs, strict=True) if _is_dense(s)}
    size = sizes.pop() if sizes else side
    priors = [s.baseline_prediction(t.train_targets, t.train_masks) for s, t in zip(specs, labels, strict=True)]
    bank = ReadoutBank(
        in_channels, side, specs, [job.seed for job in group.jobs], int(settings["readout_width"]), size, priors
    )
    # Where each target's labelled images sit in the transfer subset (-1: no label there).
    label_row = []
    for target in labels:
        lookup = np.full(n_train, -1, dtype=np.int64)
        lookup[target.train_rows] = np.arange(len(target.train_rows))
        label_row.append(torch.from_numpy(lookup))

    epochs, batch_size = int(settings["epochs"]), int(settings["batch_size"])
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    optimizer = torch.optim.AdamW(
        bank.parameters(), lr=float(settings["learning_rate"]), weight_decay=float(settings["weight_decay"])
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(group.seed)
    failures: list[str | None] = [None] * len(group.jobs)
    bank.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n_train, generator=generator)
        for step in range(steps_per_epoch):
            rows = order[step * batch_size : (step + 1) * batch_size]
            predictions = bank(features("train", rows))
            total = torch.zeros(())
            for index, (spec, target, prediction) in enumerate(zip(specs, labels, predictions, strict=True)):
                if failures[index]:
                    continue
                where = label_row[index][rows]
                keep = where >= 0
                if not bool(keep.any()):
                    continue
                label_rows = where[keep]
                if not bool(keep.all()):  # skipped when every image is labelled: a masked copy costs a full pass
                    prediction = prediction[keep]
                masks = None if target.train_masks is None else target.train_masks[label_rows]
                loss = spec.loss(prediction, target.train_targets[label_rows], masks).mean()
                if not torch.isfinite(loss):
                    # Left out of the sum from here on: its parameters are its own, so the others are unaffected.
                    failures[index] = f"diverged: training loss {loss.item()} at epoch {epoch}"
                    continue
                total = total + loss
            optimizer.zero_grad(set_to_none=True)
            if total.requires_grad:
                total.backward()
                optimizer.step()
            scheduler.step()
    seconds_train = time.perf_counter() - start

    start = time.perf_counter()
    bank.eval()
    outcomes = []
    with torch.no_grad():
        outputs: list[list[torch.Tensor]] = [[] for _ in group.jobs]
        for begin in range(0, n_test, EVAL_BATCH):
            rows = torch.arange(begin, min(begin + EVAL_BATCH, n_test))
            for index, prediction in enumerate(bank(features("test", rows))):
                outputs[index].append(prediction)
        predictions = [torch.cat(chunks) for chunks in outputs]
    seconds_eval = time.perf_counter() - start
    finished_at = datetime.now()
    for index, (job, spec, target) in enumerate(zip(group.jobs, specs, labels, strict=True)):
        losses = None
        if failures[index] is None:
            with torch.no_grad():
                prediction = predictions[index][torch.from_numpy(target.test_rows)]
                losses = spec.loss(prediction, target.test_targets, target.test_masks).double().numpy()
            failures[index] = _check_losses(losses)
        outcomes.append(
            TransferOutcome(
                job,
                None if failures[index] else target.test_ids,
                None if failures[index] else losses,
                failures[index],
                seconds_train / len(group.jobs),
                seconds_eval / len(group.jobs),
                started_at,
                finished_at,
            )
        )
    return outcomes


def _is_dense(spec: TaskSpec) -> bool:
    return spec.output_kind not in VECTOR_KINDS


def _check_losses(losses: np.ndarray) -> str | None:
    bad = ~np.isfinite(losses)
    if bad.any():
        return f"diverged: {int(bad.sum())} of {len(losses)} test losses are not finite"
    return None


# ---------------------------------------------------------------- the pixel baselines


def run_network_job(context: TransferContext, item: NetworkJob) -> list[TransferOutcome]:
    """gold: the trained task network on the test images. scratch: the same architecture trained from pixels on
    the transfer subset with the transfer budget (epochs, batch size, optimiser), then tested."""
    job = item.job
    started_at = datetime.now()
    train, test = context.pixels[job.target]
    start = time.perf_counter()
    failure = None
    if job.kind == GOLD:
        network, _ = load_gold_network(Workspace(Path(context.workspace_root)), job.target)
        seconds_train = 0.0
    else:
        network, failure = _train_scratch(context, job, train)
        seconds_train = time.perf_counter() - start
    start = time.perf_counter()
    losses = None
    if failure is None:
        losses = per_image_losses(network, test)
        failure = _check_losses(losses)
    return [
        TransferOutcome(
            job,
            None if failure else test.image_ids,
            None if failure else losses,
            failure,
            seconds_train,
            time.perf_counter() - start,
            started_at,
            datetime.now(),
        )
    ]


def _train_scratch(context: TransferContext, job: TransferJob, train: TaskData) -> tuple[nn.Module, str | None]:
    # Everything random in here (initialisation, dropout) draws from the global generator, seeded by the job
    # alone, so the result does not depend on what this process ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed)
        return _train_scratch_seeded(context, job, train)


def _train_scratch_seeded(context: TransferContext, job: TransferJob, train: TaskData) -> tuple[nn.Module, str | None]:
    settings = context.settings
    spec = get_task(job.target)
    network = create_task_network(spec, _scratch_config(settings))
    epochs, batch_size = int(settings["epochs"]), int(settings["batch_size"])
    steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=float(settings["learning_rate"]), weight_decay=float(settings["weight_decay"])
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(job.seed)
    network.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train), generator=generator)
        for step in range(steps_per_epoch):
            rows = order[step * batch_size : (step + 1) * batch_size]
            if len(rows) < 2:  # batch norm needs two images
                scheduler.step()
                continue
            batch = train.batch(rows, train=True, generator=generator)
            loss = spec.loss(network(batch.inputs), batch.targets, batch.masks).mean()
            if not torch.isfinite(loss):
                return network, f"diverged: training loss {loss.item()} at epoch {epoch}"
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return network.eval(), None


def _scratch_config(settings: dict[str, Any]) -> Any:
    from taskonomy_db.models.networks import NetworkConfig

    return NetworkConfig.from_dict(settings["scratch_network"])


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


# ---------------------------------------------------------------- reading the workspace


def extracted_encoders(workspace: Workspace) -> list[str]:
    """Registered encoders that have Parquet representations on disk."""
    return [
        r.encoder
        for r in registered_encoders(workspace)
        if any(representation_dir(workspace, r.encoder).glob("part-*.parquet"))
    ]


def _normalise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre each channel and scale the whole representation to unit variance with the transfer subset's
    statistics, so every encoder's scale is comparable. One scale per encoder, not per channel: a channel that
    barely varies stays small instead of being blown up into noise."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = (train - mean).std() + 1e-6
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def split_image_ids(workspace: Workspace, split: str) -> np.ndarray:
    table = workspace.db.query(
        "select image_id from images where split = ? and rgb_path is not null order by image_id", [split]
    )
    return table.column("image_id").to_numpy().astype(np.int32)


def choose_transfer_subset(train_ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The same `n` train images for every transfer and baseline of a run, chosen by seed."""
    rng = np.random.default_rng(derive_seed(seed, "transfer-subset"))
    return np.sort(rng.choice(train_ids, size=n, replace=False)).astype(np.int32)


def _target_arrays(spec: TaskSpec, train: TaskData, test: TaskData, subset: np.ndarray, test_ids: np.ndarray):
    """Targets and masks of the whole transfer subset / test split at once (deterministic corruptions)."""
    fit = train.batch(torch.arange(len(train)), train=False)
    check = test.batch(torch.arange(len(test)), train=False)
    return TargetArrays(
        np.searchsorted(subset, train.image_ids),
        fit.targets,
        fit.masks,
        np.searchsorted(test_ids, test.image_ids),
        test.image_ids.astype(np.int32),
        check.targets,
        check.masks,
    )


# ---------------------------------------------------------------- the store


def finished_keys(workspace: Workspace, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    if not keys:
        return set()
    table = workspace.db.query("select transfer_key from transfers where transfer_key in (select unnest(?))", [keys])
    return set(table.column("transfer_key").to_pylist())


def record_outcomes(workspace: Workspace, outcomes: Sequence[TransferOutcome], run_settings: dict[str, Any]) -> None:
    """Write outcomes in one transaction: per transfer its row and, when done, one loss row per test image."""
    with workspace.db.transaction() as con:
        for outcome in outcomes:
            job = outcome.job
            exists = con.execute("select count(*) from transfers where transfer_key = ?", [job.key]).fetchone()[0]
            if exists:  # another process finished it meanwhile
                continue
            settings = dict(run_settings, transfer_seed=job.seed)
            transfer_id = con.execute(
                'insert into transfers (transfer_key, target, sources, "order", kind, n_train_images, status,'
                " failure_reason, seed, settings_hash, settings, seconds_train, seconds_eval, started_at,"
                " finished_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning transfer_id",
                [
                    job.key,
                    job.target,
                    list(job.sources),
                    job.order,
                    job.kind,
                    int(run_settings["transfer_images"]),
                    outcome.status,
                    outcome.failure_reason,
                    job.seed,
                    run_settings["settings_hash"],
                    json.dumps(settings, sort_keys=True, default=str),
                    outcome.seconds_train,
                    outcome.seconds_eval,
                    outcome.started_at,
                    outcome.finished_at,
                ],
            ).fetchone()[0]
            if outcome.status != "done":
                continue
            rows = pa.table(
                {
                    "transfer_id": pa.array(np.full(len(outcome.losses), transfer_id, dtype=np.int32)),
                    "image_id": pa.array(outcome.image_ids.astype(np.int32)),
                    "loss": pa.array(outcome.losses.astype(np.float64)),
                }
            )
            con.register("new_losses", rows)
            con.execute("insert into losses select transfer_id, image_id, loss from new_losses")
            con.unregister("new_losses")


def first_order_ranking(workspace: Workspace, keys: Sequence[str]) -> dict[str, list[str]]:
    """Each target's sources, best first, by mean test loss of the done first-order transfers with these keys
    (the target's own encoder left out, as in the paper's rankings); ties broken by name."""
    table = workspace.db.query(
        """
        select transfers.target, transfers.sources[1] as source, avg(losses.loss) as mean_loss
        from transfers
        join losses on losses.transfer_id = transfers.transfer_id
        where transfers.kind = 'transfer' and transfers."order" = 1 and transfers.status = 'done'
          and transfers.transfer_key in (select unnest(?))
          and transfers.sources[1] <> transfers.target
        group by all
        order by transfers.target, mean_loss, source
        """,
        [list(keys)],
    )
    ranking: dict[str, list[str]] = defaultdict(list)
    for row in table.to_pylist():
        ranking[row["target"]].append(row["source"])
    return dict(ranking)


def beam_source_sets(ranking: Sequence[str], order: int, beam: int) -> list[tuple[str, ...]]:
    """The paper's beam: all subsets of the top `beam` for orders 2-3, of the top `beam + 1` for order 4, and
    the greedy prefix of the ranking for orders 5 and above. Each set sorted by name."""
    if order < 2 or order > len(ranking):
        return []
    if order <= 3:
        pool = ranking[:beam]
    elif order == 4:
        pool = ranking[: beam + 1]
    else:
        return [tuple(sorted(ranking[:order]))]
    return [tuple(sorted(c)) for c in itertools.combinations(pool, order)]


# ---------------------------------------------------------------- the run


@dataclass
class TransferSummary:
    """What a run did, per (order, kind)."""

    settings_hash: str
    n_train_images: int
    n_test_images: int
    counts: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, order: int, kind: str, what: str, n: int = 1) -> None:
        entry = self.counts.setdefault((order, kind), {"done": 0, "failed": 0, "skipped": 0})
        entry[what] += n

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"order": order, "kind": kind, **entry}
            for (order, kind), entry in sorted(self.counts.items(), key=lambda item: (item[0][0], item[0][1]))
        ]


@dataclass
class TransferPlan:
    """A checked run: its settings and selection, and the context every job reads (loaded once)."""

    settings: dict[str, Any]
    digest: str
    targets: list[str]
    sources: list[str]
    baselines: list[str]
    run_settings: dict[str, Any]  # provenance stored with every transfer and in `runs`
    context: TransferContext
    # What each job reads that can change under the same name: an encoder's sha256 (re-exported after
    # retraining), a gold network's weights' ("gold:<target>"). Part of the key, so a transfer from a
    # retrained encoder is run again rather than skipped as done.
    fingerprints: dict[str, str]

    def job(self, kind: str, target: str, sources: Sequence[str], order: int) -> TransferJob:
        base = transfer_key(kind, target, sources, int(self.settings["transfer_images"]), self.digest)
        inputs = {"transfer": sorted(sources), RANDOM: [RANDOM], GOLD: [f"{GOLD}:{target}"]}.get(kind, [])
        key = ":".join([base, *(self.fingerprints[name][:12] for name in inputs)])
        # Seeded by the key without fingerprints: a retrained encoder gets a new readout, not new random draws.
        return TransferJob(key, kind, target, tuple(sorted(sources)), order, derive_seed(self.settings["seed"], base))


def prepare_transfers(
    workspace: Workspace,
    overrides: dict[str, Any] | None = None,
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    progress: bool = True,
) -> TransferPlan:
    """Check the request and read what the jobs need; writes nothing.

    Raises TransferError (or UnknownTaskError) for an unknown or non-target task, a target or source without
    extracted representations, a missing gold network, more transfer images than the train split holds, or a
    maximum order above the number of sources.
    """
    settings = transfer_settings(workspace, overrides)
    encoders = {r.encoder: r for r in registered_encoders(workspace)}
    extracted = set(extracted_encoders(workspace))
    targets = _resolve_targets(targets, extracted)
    sources = _resolve_sources(sources, encoders, extracted)
    baselines = list(dict.fromkeys(settings["baselines"]))
    if RANDOM in baselines and RANDOM not in extracted:
        raise TransferError(
            "the random baseline needs the random encoder's representations; run `tdb export random` and "
            "`tdb extract random`, or leave it out with --baselines"
        )
    gold_fingerprints = {}
    if GOLD in baselines:
        for target in targets:  # a missing or unloadable checkpoint fails here, not mid-run
            network, _ = load_gold_network(workspace, target)
            gold_fingerprints[f"{GOLD}:{target}"] = network_sha256(network)
    max_order = int(settings["max_order"])
    # Higher orders draw from the other sources; a beam is checked only where asked for (the default simply
    # takes every source where there are fewer).
    bounded = {"--max-order": max_order} if max_order > 1 else {}
    if max_order > 1 and (overrides or {}).get("beam") is not None:
        bounded["--beam"] = int(settings["beam"])
    for target in targets:
        candidates = [s for s in sources if s != target]
        for flag, value in bounded.items():
            if value > len(candidates):
                raise TransferError(
                    f"{flag} {value} is above the {len(candidates)} sources available to {target} "
                    "(its own encoder does not count for higher orders)"
                )

    needed = sorted(set(sources) | ({RANDOM} if RANDOM in baselines else set()))  # encoders whose output is read
    size = image_size(workspace)
    for name in needed:
        problem = representation_problem(encoders[name].representation_shape, size)
        if problem:
            raise TransferError(f"encoder {name!r} {problem}")
    if max_order > 1:
        sides = {name: encoders[name].representation_shape[1:] for name in sources}
        if len(set(sides.values())) > 1:
            listed = ", ".join(f"{name} {h}x{w}" for name, (h, w) in sorted(sides.items()))
            raise TransferError(
                f"higher orders concatenate representations, which need one map size; these differ ({listed}):"
                " transfer at --max-order 1, or choose --sources with one size"
            )

    train_all = split_image_ids(workspace, "train")
    test_ids = split_image_ids(workspace, "test")
    n_train = int(settings["transfer_images"])
    if n_train > len(train_all):
        raise TransferError(f"--transfer-images {n_train} is larger than the train split ({len(train_all)} images)")
    if len(test_ids) == 0:
        raise TransferError("the test split has no images")
    subset = choose_transfer_subset(train_all, n_train, int(settings["seed"]))
    data_digest = hashlib.sha256(subset.tobytes() + b"|" + test_ids.tobytes()).hexdigest()[:16]
    scratch_network = network_config(train_settings(workspace)).as_dict()
    digest = settings_digest(settings, data_digest, scratch_network)
    settings = dict(settings, scratch_network=scratch_network)
    run_settings = {
        **{k: settings[k] for k in RESULT_SETTINGS},
        "seed": int(settings["seed"]),
        "settings_hash": digest,
        "data_digest": data_digest,
        "scratch_network": scratch_network,
        "encoders": {name: encoders[name].sha256 for name in sorted(set(sources) | ({RANDOM} & extracted))},
    }

    # Read everything once: representations per encoder, labels per target (and pixels for the baselines).
    representations = {}
    for name in tqdm(needed, desc="reading representations", unit="encoder", disable=None if progress else True):
        _, train_rep = read_representations(workspace, name, subset)
        _, test_rep = read_representations(workspace, name, test_ids)
        representations[name] = _normalise(train_rep, test_rep)
    arrays, pixels = {}, {}
    for target in tqdm(targets, desc="loading labels", unit="task", disable=None if progress else True):
        spec = get_task(target)
        train = load_task_data(workspace, target, None, image_ids=subset.tolist(), size=size, progress=False)
        test = load_task_data(workspace, target, ["test"], size=size, progress=False)
        test = test.subset(np.flatnonzero(np.isin(test.image_ids, test_ids)))
        arrays[target] = _target_arrays(spec, train, test, subset, test_ids)
        if GOLD in baselines or SCRATCH in baselines:
            pixels[target] = (train, test)
    context = TransferContext(settings, subset, test_ids, representations, arrays, pixels, str(workspace.root))
    fingerprints = {name: encoders[name].sha256 for name in needed} | gold_fingerprints
    return TransferPlan(settings, digest, targets, sources, baselines, run_settings, context, fingerprints)


def run_transfers(
    workspace: Workspace,
    overrides: dict[str, Any] | None = None,
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    progress: bool = True,
    executor: Executor | None = None,
) -> TransferSummary:
    """Run every missing transfer of the selected targets and sources, order 1 to max_order, with baselines.

    Everything is checked before anything is written (see `prepare_transfers`).
    """
    started = time.perf_counter()
    plan = prepare_transfers(workspace, overrides, targets, sources, progress)
    settings, targets, sources = plan.settings, plan.targets, plan.sources
    n_train = int(settings["transfer_images"])
    executor = executor or create_executor(int(settings["workers"]) or os.cpu_count() or 1)
    summary = TransferSummary(plan.digest, n_train, len(plan.context.test_ids))

    with workspace.run("transfer", plan.run_settings):
        # Order 1: every source for every target, plus the baselines.
        jobs = [plan.job("transfer", t, [s], 1) for t in targets for s in sources]
        for kind in plan.baselines:
            jobs += [plan.job(kind, t, [kind], 1) for t in targets]
        _execute(workspace, jobs, plan, executor, summary, progress, "order 1")
        first_order_keys = [job.key for job in jobs if job.kind == "transfer"]
        for order in range(2, int(settings["max_order"]) + 1):
            ranking = first_order_ranking(workspace, first_order_keys)
            jobs = [
                plan.job("transfer", t, chosen, order)
                for t in targets
                for chosen in beam_source_sets(ranking.get(t, []), order, int(settings["beam"]))
            ]
            _execute(workspace, jobs, plan, executor, summary, progress, f"order {order}")
    summary.seconds = time.perf_counter() - started
    return summary


def _resolve_targets(targets: Sequence[str] | None, extracted: set[str]) -> list[str]:
    if targets:
        chosen = list(dict.fromkeys(targets))
        for name in chosen:
            spec = get_task(name)
            if not spec.is_target:
                raise TransferError(f"{name} is a source-only task; it cannot be a transfer target")
    else:
        chosen = [t for t in list_tasks(role="target") if t in extracted]
        if not chosen:
            raise TransferError("no target task has extracted representations; run `tdb extract` first")
    missing = [t for t in chosen if t not in extracted]
    if missing:
        raise TransferError(
            f"target {missing[0]} has no extracted representations (needed for its own-encoder transfer); "
            f"run whichever of `tdb train {missing[0]}`, `tdb export {missing[0]}` and `tdb extract {missing[0]}` "
            "has not run"
        )
    return chosen


def _resolve_sources(sources: Sequence[str] | None, encoders: dict[str, EncoderRecord], extracted: set[str]) -> list:
    if sources:
        chosen = list(dict.fromkeys(sources))
        for name in chosen:
            if name == RANDOM:
                raise TransferError("random is a baseline, not a source; it runs with --baselines random")
            if name not in encoders:
                known = ", ".join(e for e in encoders if e != RANDOM) or "none"
                raise TransferError(f"unknown source encoder {name!r}; registered: {known}")
            if name not in extracted:
                raise TransferError(f"source {name} has no extracted representations; run `tdb extract {name}`")
        return sorted(chosen)
    chosen = sorted(e for e in extracted if e != RANDOM)
    if not chosen:
        raise TransferError("no encoder has extracted representations; run `tdb extract` first")
    return chosen


def _execute(
    workspace: Workspace,
    jobs: list[TransferJob],
    plan: TransferPlan,
    executor: Executor,
    summary: TransferSummary,
    progress: bool,
    label: str,
) -> None:
    done = finished_keys(workspace, (j.key for j in jobs))
    todo = [j for j in jobs if j.key not in done]
    for job in jobs:
        if job.key in done:
            summary.add(job.order, job.kind, "skipped")
    if not todo:
        return
    work = group_jobs(todo, plan.settings["seed"])
    bar = tqdm(total=len(todo), desc=f"transfers, {label}", unit="transfer", disable=None if progress else True)
    try:
        for outcomes in executor.map(run_job, work, plan.context):
            record_outcomes(workspace, outcomes, plan.run_settings)
            for outcome in outcomes:
                summary.add(outcome.job.order, outcome.job.kind, outcome.status)
                if outcome.failure_reason:
                    summary.failures.append((outcome.job.key, outcome.failure_reason))
            bar.update(len(outcomes))
    finally:
        bar.close()


def group_jobs(jobs: Sequence[TransferJob], seed: int) -> list[ReadoutGroup | NetworkJob]:
    """Readouts over the same input become one group (in a fixed order, so a resumed run forms the same groups);
    each pixel baseline is its own job. Scratch networks go first: they are the longest."""
    groups: dict[tuple[str, ...], list[TransferJob]] = defaultdict(list)
    singles: list[NetworkJob] = []
    for job in jobs:
        if job.kind in NETWORK_BASELINES:
            singles.append(NetworkJob(job))
        else:
            inputs = (RANDOM,) if job.kind == RANDOM else job.sources
            groups[inputs].append(job)
    work: list[ReadoutGroup | NetworkJob] = sorted(singles, key=lambda n: (n.job.kind != SCRATCH, n.job.key))
    for inputs in sorted(groups):
        members = tuple(sorted(groups[inputs], key=lambda j: j.key))
        work.append(ReadoutGroup(inputs, members, derive_seed(seed, "batches:" + "+".join(inputs))))
    return work
