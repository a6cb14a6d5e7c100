"""Gold-standard training (`tdb train`): one fully supervised encoder-decoder per task on the train split.

Per task: validation loss after every epoch (`training_epochs`), the best checkpoint kept at `models/<task>.pt`,
and the per-image test loss of that checkpoint against the trivial baseline (`gold_results`). A task whose result
exists with the same settings is skipped; an interrupted task resumes from `models/<task>.last.pt` after its last
finished epoch, giving the same result as an uninterrupted run. A task's previous network, result and epochs are
replaced only when its new training has finished: one that fails or is killed leaves them as they were.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from taskonomy_db.atomic import atomic_path
from taskonomy_db.data import TaskData, load_task_data
from taskonomy_db.errors import TrainingError
from taskonomy_db.models.networks import NetworkConfig, TaskNetwork, create_task_network
from taskonomy_db.process_tuning import tuned
from taskonomy_db.settings import as_dict, with_overrides
from taskonomy_db.tasks import TaskSpec, get_task, resolve_tasks, sync_tasks
from taskonomy_db.workspace import Workspace

EVAL_BATCH = 128
# Bumped whenever the training procedure changes what a given [train] setting produces, so stored results
# of an older recipe are retrained rather than skipped.
RECIPE_VERSION = 2
# Evaluation and checkpoints use an exponential moving average of the weights: with a few hundred small-batch
# steps the raw weights jitter from step to step, and the average both generalises better and gives a
# validation curve smooth enough to pick a checkpoint from one held-out building.
EMA_DECAY = 0.95
EMA_WARMUP_STEPS = 10
# Distribution targets are mixed with the training class frequencies while training (label smoothing toward the
# prior): a test building's rooms and objects differ from the few training ones, and a network that learnt to
# be confident pays a large cross-entropy on every image it gets wrong.
LABEL_SMOOTHING = 0.2


@dataclass
class TrainResult:
    task: str
    test_loss: float
    baseline_loss: float
    beats_baseline: bool
    best_epoch: int
    n_epochs: int
    n_train_images: int
    n_test_images: int
    seconds: float
    skipped: bool = False


def train_settings(workspace: Workspace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """tdb.toml's [train] (taskonomy_db.settings.TrainSettings) with the non-None `overrides` in place."""
    try:
        settings = with_overrides(workspace.settings.train, overrides, "train")
    except ValueError as error:
        raise TrainingError(str(error)) from None
    return as_dict(settings)


def network_config(settings: dict[str, Any]) -> NetworkConfig:
    return NetworkConfig(
        input_size=int(settings["image_size"]),
        width=int(settings["width"]),
        depth=int(settings["depth"]),
        representation_channels=int(settings["representation_channels"]),
        norm=settings["norm"],
    )


def settings_hash(settings: dict[str, Any], splits: str, label_version: int) -> str:
    """What a stored gold result was made from: the settings, the recipe, `splits` (split_digest), so a
    re-ingest that adds images or moves one between splits retrains instead of keeping a network that may
    have trained on what is now a test image, and the task's label version, so a changed label or loss
    retrains."""
    # Threads change speed, not results, so a different thread count does not retrain anything.
    relevant = {k: v for k, v in settings.items() if k != "threads"} | {"recipe": RECIPE_VERSION, "splits": splits}
    if label_version != 1:  # version 1 left out, so results stored before labels were versioned keep their keys
        relevant["labels"] = label_version
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def split_digest(workspace: Workspace) -> str:
    """A digest of every image's split."""
    rows = workspace.db.query("select image_key, split from images where split is not null order by image_key")
    digest = hashlib.sha256()
    for key, split in zip(rows.column("image_key").to_pylist(), rows.column("split").to_pylist(), strict=True):
        digest.update(f"{key}:{split}\n".encode())
    return digest.hexdigest()[:16]


def checkpoint_path(workspace: Workspace, task: str) -> Path:
    return workspace.path("models", f"{task}.pt")


def task_seed(seed: int, task: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(task.encode())) % 2**31


def set_threads(threads: int) -> None:
    if threads and threads > 0:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- checkpoints


def _save(path: Path, state: dict[str, Any]) -> None:
    # Through a Python file, so a full or read-only disk is an OSError with its errno (torch's own writer
    # raises a RuntimeError carrying only text).
    with atomic_path(path, TrainingError) as tmp, open(tmp, "wb") as file:
        torch.save(state, file)


def network_sha256(network: torch.nn.Module) -> str:
    """A network's identity by its weights and buffers: a checkpoint file's bytes are not one (torch.save wrote
    other bytes for the same weights after a resumed run)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def next_checkpoint_path(workspace: Workspace, task: str) -> Path:
    """Where a training in progress keeps its best weights until it finishes and they replace the gold network."""
    return workspace.path("models", f"{task}.next.pt")


def load_gold_network(workspace: Workspace, task: str) -> tuple[TaskNetwork, NetworkConfig]:
    """The trained gold-standard network of `task` in eval mode, with its architecture config."""
    path = checkpoint_path(workspace, task)
    if not path.is_file():
        raise TrainingError(f"no trained network for {task} ({path} missing); run `tdb train {task}`")
    return _load_network(path, task)


def _load_network(path: Path, task: str) -> tuple[TaskNetwork, NetworkConfig]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        config = NetworkConfig.from_dict(state["config"])
        network = create_task_network(get_task(task), config)
        network.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError, EOFError) as error:
        raise TrainingError(f"cannot load {path}: {error}") from error
    return network.eval(), config


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def per_image_losses(network: TaskNetwork, data: TaskData, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """The task loss of every image of `data` (float64, row-aligned), with deterministic corruptions."""
    network.eval()
    spec = data.spec
    out = []
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)))
        batch = data.batch(rows, train=False)
        out.append(spec.loss(network(batch.inputs), batch.targets, batch.masks).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def _baseline_prediction(spec: TaskSpec, train: TaskData) -> torch.Tensor:
    fit = train.batch(torch.arange(len(train)), train=False)
    return spec.baseline_prediction(fit.targets, fit.masks)


@torch.no_grad()
def _target_scale(spec: TaskSpec, train: TaskData) -> torch.Tensor:
    """The spread of each regression output channel over the training targets (valid pixels only), shaped like
    TaskNetwork.scale; 1 for logits and embeddings, whose scale the loss itself fixes."""
    if spec.output_kind not in ("dense", "vector"):
        return torch.ones(1)
    fit = train.batch(torch.arange(len(train)), train=False)
    targets = fit.targets.float()
    if spec.output_kind == "vector":
        return targets.std(0, keepdim=True).clamp_min(1e-3)
    channels = targets.transpose(0, 1).flatten(1)  # (C, N*H*W)
    if fit.masks is not None:
        valid = fit.masks.flatten()
        channels = channels[:, valid] if valid.any() else channels
    return channels.std(1).clamp_min(1e-3).view(1, -1, 1, 1)


@torch.no_grad()
def baseline_losses(spec: TaskSpec, train: TaskData, test: TaskData) -> np.ndarray:
    """Per-image test losses of the trivial predictor fitted on the train split's targets."""
    prediction = _baseline_prediction(spec, train)
    out = []
    for start in range(0, len(test), EVAL_BATCH):
        rows = torch.arange(start, min(start + EVAL_BATCH, len(test)))
        batch = test.batch(rows, train=False)
        expanded = prediction.expand(len(rows), *prediction.shape[1:])
        out.append(spec.loss(expanded, batch.targets, batch.masks).double().numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------- training


def _stored_result(workspace: Workspace, task: str, digest: str) -> TrainResult | None:
    rows = workspace.db.query(
        "select * from gold_results where task = ? and settings_hash = ?", [task, digest]
    ).to_pylist()
    if not rows or not checkpoint_path(workspace, task).is_file():
        return None
    row = rows[0]
    if row["network_sha256"] is not None and row["network_sha256"] != network_sha256(
        load_gold_network(workspace, task)[0]
    ):
        return None  # the weights changed after this result was stored: measure them
    return TrainResult(
        task,
        row["test_loss"],
        row["baseline_loss"],
        row["beats_baseline"],
        row["best_epoch"],
        row["n_epochs"],
        row["n_train_images"],
        row["n_test_images"],
        row["seconds_train"],
        skipped=True,
    )


def train_task(
    workspace: Workspace,
    task: str,
    settings: dict[str, Any],
    force: bool = False,
    progress: bool = True,
    splits: str | None = None,
) -> TrainResult:
    """Train (or resume, or skip) the gold-standard network of one task; returns its test result. `splits` is
    split_digest(workspace), read here when not given (train_tasks reads it once for all its tasks)."""
    spec = get_task(task)
    digest = settings_hash(settings, splits or split_digest(workspace), spec.label_version)
    last_path = workspace.path("models", f"{task}.last.pt")
    if not force:
        stored = _stored_result(workspace, task, digest)
        # An unfinished training of these settings (its resume file is there) is finished, not skipped: a run
        # killed while putting its results in place left the stored result older than the weights.
        if stored is not None and _load_resume(last_path, digest) is None:
            return stored
    set_threads(int(settings["threads"]))
    config = network_config(settings)
    data = load_task_data(workspace, task, size=config.input_size, progress=progress)
    train, val, test = data.split("train"), data.split("val"), data.split("test")
    items = "tuples of views" if spec.n_views > 1 else "images"
    if len(train) < 2:
        raise TrainingError(f"{task}: the train split has {len(train)} usable {items}; at least 2 are needed")
    if len(test) == 0:
        raise TrainingError(f"{task}: the test split has no usable {items}")
    if len(val) == 0:
        val = train  # model selection on the training loss, rather than none at all

    seed = task_seed(workspace.seed, task)
    torch.manual_seed(seed)
    network = create_task_network(spec, config)
    with torch.no_grad():
        network.prior.copy_(_baseline_prediction(spec, train))
        network.scale.copy_(_target_scale(spec, train))
    prior_distribution = network.prior.softmax(1) if spec.output_kind == "distribution" else None
    average = copy.deepcopy(network).requires_grad_(False).eval()
    epochs = int(settings["epochs"])
    batch_size = int(settings["batch_size"])
    steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=float(settings["learning_rate"]), weight_decay=float(settings["weight_decay"])
    )
    # One-cycle: fast warm-up then cosine decay, which converges in the few epochs a CPU run affords.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(settings["learning_rate"]), total_steps=epochs * steps_per_epoch, pct_start=0.15
    )

    best_path = checkpoint_path(workspace, task)
    # The previous gold network, its result and its epochs stay in place until this training has finished:
    # the best weights so far wait at next_path and the epochs in the resume file.
    next_path = next_checkpoint_path(workspace, task)
    start_epoch, best_val, best_epoch, seconds = 0, math.inf, 0, 0.0
    history: list[list[Any]] = []
    resumed = _load_resume(last_path, digest)
    if resumed is not None and not force:
        network.load_state_dict(resumed["model"])
        average.load_state_dict(resumed["average"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        start_epoch, best_val, best_epoch = resumed["epoch"], resumed["best_val"], resumed["best_epoch"]
        seconds, history = resumed["seconds"], resumed["history"]
    else:
        next_path.unlink(missing_ok=True)

    bar = tqdm(
        total=epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        desc=f"train {task}",
        unit="step",
        disable=None if progress else True,
    )
    for epoch in range(start_epoch + 1, epochs + 1):
        started = time.perf_counter()
        network.train()
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(train), generator=generator)
        epoch_losses = []
        for step in range(steps_per_epoch):
            rows = order[step * batch_size : (step + 1) * batch_size]
            if len(rows) < 2:  # a one-image batch gives a degenerate gradient; the image is seen next epoch
                scheduler.step()
                bar.update()
                continue
            batch = train.batch(rows, train=True, generator=generator)
            targets = batch.targets
            if spec.output_kind == "distribution":
                targets = (1 - LABEL_SMOOTHING) * targets + LABEL_SMOOTHING * prior_distribution
            loss = spec.loss(network(batch.inputs), targets, batch.masks).mean()
            if not torch.isfinite(loss):
                raise TrainingError(f"{task}: the training loss became {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            _update_average(average, network, (epoch - 1) * steps_per_epoch + step)
            epoch_losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        _precise_batch_norm(average, train)
        val_loss = float(per_image_losses(average, val).mean())
        seconds += time.perf_counter() - started
        is_best = val_loss < best_val
        if is_best:
            best_val, best_epoch = val_loss, epoch
            _save(next_path, {"task": task, "config": config.as_dict(), "model": average.state_dict(), "epoch": epoch})
        history.append([epoch, float(np.mean(epoch_losses)) if epoch_losses else math.nan, val_loss, seconds])
        _save(
            last_path,
            {
                "settings_hash": digest,
                "model": network.state_dict(),
                "average": average.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_val": best_val,
                "best_epoch": best_epoch,
                "seconds": seconds,
                "history": history,
            },
        )
        bar.set_postfix(val=f"{val_loss:.4f}", refresh=True)
    bar.close()

    if best_epoch == 0:
        raise TrainingError(f"{task}: the validation loss was never finite; nothing was kept")
    # A run killed after the rename below and before the commit finds its weights already in place.
    network, _ = _load_network(next_path if next_path.is_file() else best_path, task)
    test_losses = per_image_losses(network, test)
    base_losses = baseline_losses(spec, train, test)
    result = TrainResult(
        task,
        float(test_losses.mean()),
        float(base_losses.mean()),
        bool(test_losses.mean() < base_losses.mean()),
        best_epoch,
        epochs,
        len(train),
        len(test),
        seconds,
    )
    if next_path.is_file():
        next_path.replace(best_path)
    with workspace.db.transaction() as con:
        epoch_rows = [
            {"task": task, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
             "is_best": epoch == best_epoch, "seconds": elapsed}
            for epoch, train_loss, val_loss, elapsed in history
        ]  # fmt: skip
        con.replace_rows("training_epochs", epoch_rows, task=task)
        gold = {
            "task": task,
            "n_train_images": len(train),
            "n_val_images": len(val) if val is not train else 0,
            "n_test_images": len(test),
            "best_epoch": best_epoch,
            "n_epochs": epochs,
            "test_loss": result.test_loss,
            "baseline_loss": result.baseline_loss,
            "beats_baseline": result.beats_baseline,
            "checkpoint_path": str(best_path.relative_to(workspace.root)),
            "settings_hash": digest,
            "settings": json.dumps(settings, sort_keys=True),
            "seconds_train": seconds,
            "trained_at": datetime.now(),
            "network_sha256": network_sha256(network),
        }
        con.insert_one("gold_results", gold, replace=True)
    last_path.unlink(missing_ok=True)
    return result


@torch.no_grad()
def _update_average(average: TaskNetwork, network: TaskNetwork, step: int) -> None:
    """One step of the weight average; its decay ramps up over the first steps (as in TensorFlow's
    ExponentialMovingAverage with num_updates) so the average is not dominated by the initial weights.
    Batch norm statistics are copied here and recomputed for the averaged weights before each evaluation."""
    decay = min(EMA_DECAY, (1 + step) / (EMA_WARMUP_STEPS + step))
    torch._foreach_lerp_(list(average.parameters()), list(network.parameters()), 1 - decay)
    for kept, current in zip(average.buffers(), network.buffers(), strict=True):
        kept.copy_(current)


@torch.no_grad()
def _precise_batch_norm(network: TaskNetwork, train: TaskData, batch_size: int = EVAL_BATCH) -> None:
    """Set the batch norm statistics to those of the averaged weights over the whole training split (precise BN,
    Wu and Johnson 2021): the running statistics were gathered from the raw weights of the last hundred or so
    batches, which the weight average and the model selection never saw. The encoder's norms first, then those
    of a multi-image task's fully connected head, over the representations the recomputed encoder gives.

    Each norm's statistics are pooled over every pixel of the split (sums in float64), not averaged per batch as
    torch's update_bn does: that weighs a short last batch like a full one and leaves out the variance between
    batches. The split is visited in a fixed shuffled order, so that each batch, whose own statistics normalise
    what the later layers see in this pass, mixes buildings as a random training batch does."""
    encoder_norms = [m for m in network.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    _pool_statistics(network, train, batch_size, encoder_norms, network.encoder, network.forward_features)
    # The head's single norm follows a linear layer of the representation, so in eval mode (dropout off) its
    # inputs are those of training.
    head_norms = [m for m in network.decoder.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    _pool_statistics(network, train, batch_size, head_norms, None, network)


def _pool_statistics(
    network: TaskNetwork,
    train: TaskData,
    batch_size: int,
    norms: list[torch.nn.Module],
    in_train_mode: torch.nn.Module | None,
    forward: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    if not norms:
        return
    sums = {norm: [0, 0.0, 0.0] for norm in norms}  # values, sum, sum of squares per channel

    def accumulate(norm: torch.nn.Module, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0].double()
        dims = (0, *range(2, x.dim()))
        totals = sums[norm]
        totals[0] += x.numel() // x.shape[1]
        totals[1] = totals[1] + x.sum(dims)
        totals[2] = totals[2] + (x * x).sum(dims)

    hooks = [norm.register_forward_pre_hook(accumulate) for norm in norms]
    if in_train_mode is not None:
        in_train_mode.train()
    try:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        for start in range(0, len(train), batch_size):
            forward(train.batch(order[start : start + batch_size], train=False).inputs)
    finally:
        if in_train_mode is not None:
            in_train_mode.eval()
        for hook in hooks:
            hook.remove()
    for norm, (count, total, squares) in sums.items():
        mean = total / count
        variance = (squares / count - mean * mean) * count / max(count - 1, 1)  # unbiased, as torch keeps it
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(variance.clamp_min(0))


def _load_resume(path: Path, digest: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError):
        return None  # a torn or foreign file: start the task over
    # A resume file without the epoch history was written by an older tdb: start the task over.
    return state if state.get("settings_hash") == digest and "history" in state else None


def train_tasks(
    workspace: Workspace,
    tasks: list[str] | tuple[str, ...] | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[TrainResult]:
    """Train every named task (all registered tasks when none are named), in registry order."""
    specs = resolve_tasks(tasks)
    settings = train_settings(workspace, overrides)
    sync_tasks(workspace)
    splits = split_digest(workspace)
    with tuned():
        return [
            train_task(workspace, spec.name, settings, force=force, progress=progress, splits=splits) for spec in specs
        ]
