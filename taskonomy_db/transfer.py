"""Transfers (`tdb transfer`): small readouts trained on frozen representations, tested image by image.

Step 2 of the method. For every target and source set S a readout D_{S->t} is trained on the stored
representations of S (concatenated along channels) with the target's loss, and its loss on every test image goes
into `losses`. Baselines on the same test images: `gold` (the task's own fully supervised network), `scratch`
(the same architecture trained from pixels on the readouts' images) and `random` (a readout on the random
encoder's representations).

Image roles, as in the original: task networks train on the train split; readouts and scratch train on images
of `[transfer] train_split` (val: no task network took a gradient step on them), `transfer_images` of them
(`fit`), and stop early on `holdout_images` images of other buildings of that split (`holdout`); every stored
loss is on the test split. The `transfer_train_images` view lists each transfer's fit and holdout images.

Higher orders follow the paper's beam over each target's first-order ranking by AHP affinity, computed by the
store's own views over exactly the run's first-order transfers (baselines and the target's own encoder left out
of the ranking, as in the released rankings): orders 2 and 3 take every pair/triple of the top `beam` sources,
order 4 every 4-subset of the top `beam + 1`, orders 5 and above the one greedy prefix of the ranking.

Store contract: a transfer is one `transfers` row plus one `losses` row per test image, written in one
transaction, so a kill loses at most the transfers in flight and a rerun skips every finished `transfer_key`.
Readouts that read the same sources train together (one fused first convolution for all their targets) and are
recorded in one transaction; each has its own seed, derived from the workspace seed and its transfer key.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from taskonomy_db.data import TaskData, image_size, load_task_data
from taskonomy_db.encoders import EncoderRecord, registered_encoders, representation_problem
from taskonomy_db.executor import Executor, create_executor
from taskonomy_db.extract import check_representations, read_representations, recorded_encoders, representation_dir
from taskonomy_db.locking import writer_lock
from taskonomy_db.names import GOLD, NETWORK_BASELINES, RANDOM, SCRATCH
from taskonomy_db.readout import ROLES, Labels, NetworkJob, ReadoutGroup, TransferContext, TransferError, TransferJob
from taskonomy_db.settings import LABEL_ESTIMATORS
from taskonomy_db.tasks import get_task, list_tasks
from taskonomy_db.training import load_gold_network, network_config, network_sha256, train_settings
from taskonomy_db.transfer_images import TransferImages, choose_transfer_images
from taskonomy_db.transfer_jobs import run_job
from taskonomy_db.transfer_settings import (
    RESULT_SETTINGS,
    derive_seed,
    seeded_name,
    settings_digest,
    transfer_key,
    transfer_settings,
)
from taskonomy_db.transfer_store import finished_keys, first_order_ranking, record_image_set, record_outcomes
from taskonomy_db.workspace import Workspace

# ---------------------------------------------------------------- reading the workspace


def extracted_encoders(workspace: Workspace) -> list[str]:
    """Registered encoders that the store says were extracted or that have Parquet parts on disk: one whose
    parts were since deleted stays chosen, so that `check_representations` fails on it rather than the run
    silently going without it."""
    recorded = recorded_encoders(workspace)
    return [
        r.encoder
        for r in registered_encoders(workspace)
        if r.encoder in recorded or any(representation_dir(workspace, r.encoder).glob("part-*.parquet"))
    ]


def _normalise(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Centre each channel and scale the whole representation to unit variance with the fit images' statistics,
    so every encoder's scale is comparable. One scale per encoder, not per channel: a channel that barely varies
    stays small instead of being blown up into noise."""
    fit = rows["fit"]
    mean = fit.mean(axis=(0, 2, 3), keepdims=True)
    std = (fit - mean).std() + 1e-6
    return {role: ((values - mean) / std).astype(np.float32) for role, values in rows.items()}


def _labels(data: TaskData, image_ids: np.ndarray) -> Labels:
    """Targets and masks of a whole role at once (deterministic corruptions); of a multi-image target, one per
    tuple whose views are all among the role's images."""
    batch = data.batch(torch.arange(len(data)), train=False)
    if data.views is not None:
        views = np.searchsorted(image_ids, data.views).astype(np.int64)
        return Labels(np.arange(len(data)), data.image_ids.astype(np.int32), batch.targets, None, views)
    return Labels(
        np.searchsorted(image_ids, data.image_ids), data.image_ids.astype(np.int32), batch.targets, batch.masks
    )


# ---------------------------------------------------------------- the store


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
    saved_by_estimate: int = 0  # first-order readouts (all seeds) an estimated beam did not need
    # Targets whose candidates the views average over fewer seeds than asked for (target -> seeds averaged):
    # source sets of an earlier run with fewer seeds hold every candidate of the target to their number.
    seed_shortfalls: dict[str, int] = field(default_factory=dict)

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
    images: TransferImages
    # With [transfer] beam_from = "estimate:METHOD": each target's sources by the estimator, best first.
    estimated_ranking: dict[str, list[str]] | None = None

    def first_order_sources(self, target: str) -> list[str]:
        """Every source, or with an estimated ranking and a beam (max order 2 and above) only the sources the beam
        reaches: the top `beam`, `beam + 1` for order 4, the first `max_order` for the greedy orders 5 and above.
        The first-order transfers of the others are what an estimate saves."""
        max_order = int(self.settings["max_order"])
        if self.estimated_ranking is None or max_order < 2 or target not in self.estimated_ranking:
            return self.sources
        reach = int(self.settings["beam"]) + (1 if max_order >= 4 else 0)
        return sorted(self.estimated_ranking[target][: max(reach, max_order if max_order >= 5 else 0)])

    def jobs(self, kind: str, target: str, sources: Sequence[str], order: int) -> list[TransferJob]:
        """The source set's readouts, one per `[transfer] seeds` (gold, a trained network, has one)."""
        n_seeds = 1 if kind == GOLD else int(self.settings["seeds"])
        return [self.job(kind, target, sources, order, index) for index in range(n_seeds)]

    def job(self, kind: str, target: str, sources: Sequence[str], order: int, seed_index: int = 0) -> TransferJob:
        base = seeded_name(
            transfer_key(kind, target, sources, int(self.settings["transfer_images"]), self.digest), seed_index
        )
        inputs = {"transfer": sorted(sources), RANDOM: [RANDOM], GOLD: [f"{GOLD}:{target}"]}.get(kind, [])
        # A multi-image target's tuples are drawn at ingest: a building redrawn by a re-ingest is measured again.
        inputs = [*inputs, *(name for name in [f"tuples:{target}"] if name in self.fingerprints)]
        key = ":".join([base, *(self.fingerprints[name][:12] for name in inputs)])
        # Seeded by the key without fingerprints: a retrained encoder gets a new readout, not new random draws.
        seed = derive_seed(self.settings["seed"], base)
        return TransferJob(key, kind, target, tuple(sorted(sources)), order, seed, seed_index)


def _tuples_sha256(data: dict[str, TaskData]) -> str:
    """What a multi-image target's readouts read of its tuples in each role: their ids, views and labels."""
    digest = hashlib.sha256()
    for role in ROLES:
        for part in (data[role].image_ids, data[role].views, data[role].labels.numpy()):
            digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def prepare_transfers(
    workspace: Workspace,
    overrides: dict[str, Any] | None = None,
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    progress: bool = True,
) -> TransferPlan:
    """Check the request and read what the jobs need; writes nothing.

    Raises TransferError (or UnknownTaskError) for an unknown or non-target task, a target or source without
    extracted representations, a missing gold network, more transfer or holdout images than the transfer split
    holds, or a maximum order above the number of sources; EncoderError for representations on disk that differ
    from what extraction recorded (a part deleted, truncated, or not listed).
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
    size = image_size(workspace)
    if GOLD in baselines:
        for target in targets:  # a missing or unloadable checkpoint fails here, not mid-run
            network, config = load_gold_network(workspace, target)
            if config.input_size != size:
                raise TransferError(
                    f"the gold network of {target} reads {config.input_size}-pixel images, the workspace's"
                    f" [train] image_size is {size}: retrain it (`tdb train {target}`) or set image_size back"
                )
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
    for name in sorted(set(targets) | set(needed)):  # footers only: a damaged part fails before any long read
        check_representations(workspace, name)
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

    images = choose_transfer_images(
        workspace,
        settings["train_split"],
        int(settings["transfer_images"]),
        int(settings["holdout_images"]),
        int(settings["seed"]),
    )
    scratch_network = network_config(train_settings(workspace)).as_dict()
    digest = settings_digest(settings, images.digest, scratch_network)
    settings = dict(settings, scratch_network=scratch_network)
    run_settings = {
        **{k: settings[k] for k in RESULT_SETTINGS},
        "seed": int(settings["seed"]),
        "seeds": int(settings["seeds"]),
        "settings_hash": digest,
        "data_digest": images.digest,
        "image_set": images.digest,
        "holdout_buildings": list(images.holdout_buildings),
        "scratch_network": scratch_network,
        "encoders": {name: encoders[name].sha256 for name in sorted(set(sources) | ({RANDOM} & extracted))},
    }

    # Read everything once: representations per encoder, labels per target (and pixels for the baselines).
    by_role = images.by_role()
    representations = {}
    for name in tqdm(needed, desc="reading representations", unit="encoder", disable=None if progress else True):
        representations[name] = _normalise(
            {role: read_representations(workspace, name, ids)[1] for role, ids in by_role.items()}
        )
    arrays, pixels, tuple_fingerprints = {}, {}, {}
    for target in tqdm(targets, desc="loading labels", unit="task", disable=None if progress else True):
        data = {
            role: load_task_data(workspace, target, None, image_ids=ids.tolist(), size=size, progress=False)
            for role, ids in by_role.items()
        }
        for role in ("fit", "holdout"):
            if len(data[role]) == 0:
                whole = (
                    ": none of its tuples has all its views among them (ask for more images, whole buildings'"
                    " worth, with --transfer-images or --holdout-images)"
                    if get_task(target).n_views > 1
                    else ""
                )
                raise TransferError(
                    f"{target} has no label on any of the {len(by_role[role])} {role} images of the"
                    f" {images.split} split; readouts of it cannot train or stop early{whole}"
                )
        arrays[target] = {role: _labels(data[role], by_role[role]) for role in ROLES}
        if get_task(target).n_views > 1:
            tuple_fingerprints[f"tuples:{target}"] = _tuples_sha256(data)
        if GOLD in baselines or SCRATCH in baselines:
            pixels[target] = data
    context = TransferContext(settings, by_role, representations, arrays, pixels, str(workspace.root))
    fingerprints = {name: encoders[name].sha256 for name in needed} | gold_fingerprints | tuple_fingerprints
    ranking = estimated_ranking(workspace, settings["beam_from"], targets, sources)
    return TransferPlan(
        settings, digest, targets, sources, baselines, run_settings, context, fingerprints, images, ranking
    )


def estimated_ranking(
    workspace: Workspace, beam_from: str, targets: Sequence[str], sources: Sequence[str]
) -> dict[str, list[str]] | None:
    """Each target's sources (its own encoder left out, as in the measured ranking) by an estimator's stored
    scores, best first, ties by name; None for the measured ranking. A multi-image target, which the label
    estimators (LogME, ridge) cannot score, is left out: its ranking is measured. Raises TransferError where a
    target lacks a score for one of the sources."""
    if beam_from == "measured":
        return None
    method = beam_from.split(":", 1)[1]
    rows = workspace.db.query(
        "select target, sources[1] as source, score from estimates where method = ? and len(sources) = 1",
        [method],
    ).to_pylist()
    scores = {(r["target"], r["source"]): r["score"] for r in rows}
    ranking = {}
    for target in targets:
        if method in LABEL_ESTIMATORS and get_task(target).n_views > 1:
            continue
        candidates = [s for s in sources if s != target]
        missing = [s for s in candidates if (target, s) not in scores]
        if missing:
            raise TransferError(
                f"--beam-from {beam_from}: {target} has no {method} estimate for {missing[0]};"
                f" run `tdb estimate --method {method} --targets {target}` first"
            )
        ranking[target] = sorted(candidates, key=lambda s: (-scores[target, s], s))
    return ranking


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
    # Locked from the planning on: the plan fingerprints gold networks and encoders that `train --force` replaces.
    with writer_lock(workspace.root, "transfer"):
        plan = prepare_transfers(workspace, overrides, targets, sources, progress)
        settings, targets, sources = plan.settings, plan.targets, plan.sources
        n_train = int(settings["transfer_images"])
        executor = executor or create_executor(int(settings["workers"]) or os.cpu_count() or 1)
        summary = TransferSummary(plan.digest, n_train, len(plan.images.test))

        with workspace.run("transfer", plan.run_settings):
            record_image_set(workspace, plan.images)
            # Order 1: every source for every target (or those an estimated beam can reach), plus the baselines.
            jobs = [
                job for t in targets for s in plan.first_order_sources(t) for job in plan.jobs("transfer", t, [s], 1)
            ]
            summary.saved_by_estimate = int(settings["seeds"]) * sum(
                len(sources) - len(plan.first_order_sources(t)) for t in targets
            )
            for kind in plan.baselines:
                jobs += [job for t in targets for job in plan.jobs(kind, t, [kind], 1)]
            _execute(workspace, jobs, plan, executor, summary, progress, "order 1")
            first_order_keys = [job.key for job in jobs]  # the baselines too: AHP ranks against them as well
            for order in range(2, int(settings["max_order"]) + 1):
                # Targets an estimator cannot score (multi-image ones, for the label estimators) by the measured.
                ranking = first_order_ranking(workspace, first_order_keys) | (plan.estimated_ranking or {})
                jobs = [
                    job
                    for t in targets
                    for chosen in beam_source_sets(ranking.get(t, []), order, int(settings["beam"]))
                    for job in plan.jobs("transfer", t, chosen, order)
                ]
                _execute(workspace, jobs, plan, executor, summary, progress, f"order {order}")
        if int(settings["seeds"]) > 1:
            averaged = workspace.db.query(
                "select target, max(n_seeds) as n from affinity_candidates where target in (select unnest(?))"
                " group by target",
                [targets],
            ).to_pylist()
            summary.seed_shortfalls = {r["target"]: r["n"] for r in averaged if r["n"] < int(settings["seeds"])}
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
    """Readouts over the same input and of the same seed index become one group (in a fixed order, so a resumed
    run forms the same groups): the seeds of a source set draw their batches in orders of their own. A
    multi-image target's readouts read tuples, not images, so each forms a group of its own. Each pixel baseline
    is its own job. Scratch networks go first: they are the longest."""
    groups: dict[tuple[tuple[str, ...], int, str], list[TransferJob]] = defaultdict(list)
    singles: list[NetworkJob] = []
    for job in jobs:
        if job.kind in NETWORK_BASELINES:
            singles.append(NetworkJob(job))
        else:
            inputs = (RANDOM,) if job.kind == RANDOM else job.sources
            groups[inputs, job.seed_index, job.target if get_task(job.target).n_views > 1 else ""].append(job)
    work: list[ReadoutGroup | NetworkJob] = sorted(singles, key=lambda n: (n.job.kind != SCRATCH, n.job.key))
    for inputs, seed_index, tuple_target in sorted(groups):
        members = tuple(sorted(groups[inputs, seed_index, tuple_target], key=lambda j: j.key))
        name = "batches:" + "+".join(inputs) + (f":{tuple_target}" if tuple_target else "")
        work.append(ReadoutGroup(inputs, members, derive_seed(seed, seeded_name(name, seed_index))))
    return work
