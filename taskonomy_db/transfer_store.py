"""What `tdb transfer` writes to the store and reads back: finished keys, image sets, outcomes (a transfer's row
and its per-image losses, in one transaction), and the first-order ranking the beam of higher orders follows."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from taskonomy_db.affinity import evidence_store
from taskonomy_db.names import GOLD
from taskonomy_db.readout import TransferOutcome
from taskonomy_db.transfer_images import TransferImages
from taskonomy_db.workspace import Workspace


def finished_keys(workspace: Workspace, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    if not keys:
        return set()
    table = workspace.db.query("select transfer_key from transfers where transfer_key in (select unnest(?))", [keys])
    return set(table.column("transfer_key").to_pylist())


def record_image_set(workspace: Workspace, images: TransferImages) -> None:
    """Store which images the run's readouts fit and held out (once per image set)."""
    rows = pa.table(
        {
            "image_set": pa.array([images.digest] * (len(images.fit) + len(images.holdout))),
            "image_id": pa.array(np.concatenate([images.fit, images.holdout]).astype(np.int32)),
            "role": pa.array(["fit"] * len(images.fit) + ["holdout"] * len(images.holdout)),
        }
    )
    with workspace.db.transaction() as con:
        if not con.count("transfer_image_sets", image_set=images.digest):
            con.insert("transfer_image_sets", rows)


def record_outcomes(workspace: Workspace, outcomes: Sequence[TransferOutcome], run_settings: dict[str, Any]) -> None:
    """Write outcomes in one transaction: per transfer its row and, when done, one loss row per test image."""
    with workspace.db.transaction() as con:
        for outcome in outcomes:
            job = outcome.job
            if con.count("transfers", transfer_key=job.key):  # another process finished it meanwhile
                continue
            settings = dict(run_settings, transfer_seed=job.seed)
            trained = job.kind != GOLD
            row = {
                "transfer_key": job.key,
                "target": job.target,
                "sources": list(job.sources),
                "order": job.order,
                "kind": job.kind,
                "n_train_images": int(run_settings["transfer_images"]),
                "status": outcome.status,
                "failure_reason": outcome.failure_reason,
                "seed": job.seed,
                "seed_index": job.seed_index,
                "settings_hash": run_settings["settings_hash"],
                "settings": json.dumps(settings, sort_keys=True, default=str),
                "seconds_train": outcome.seconds_train,
                "seconds_eval": outcome.seconds_eval,
                "started_at": outcome.started_at,
                "finished_at": outcome.finished_at,
                "image_set": run_settings["image_set"] if trained else None,
                "n_steps": outcome.n_steps if trained else None,
                "best_step": outcome.best_step if trained else None,
            }
            transfer_id = con.insert_one("transfers", row, returning="transfer_id")
            if outcome.status != "done":
                continue
            rows = pa.table(
                {
                    "transfer_id": pa.array(np.full(len(outcome.losses), transfer_id, dtype=np.int32)),
                    "image_id": pa.array(outcome.image_ids.astype(np.int32)),
                    "loss": pa.array(outcome.losses.astype(np.float64)),
                }
            )
            con.insert("losses", rows)


def first_order_ranking(workspace: Workspace, keys: Sequence[str]) -> dict[str, list[str]]:
    """Each target's sources, best first, by AHP affinity among the done transfers with these keys (the run's
    first order and its baselines), computed by the store's own views over exactly those transfers, so that
    transfers of higher orders already stored (a resumed run) do not move the ranking. The target's own encoder
    and the baselines are left out of the ranking, as in the paper's; ties broken by name."""
    ids = workspace.db.query(
        "select transfer_id from transfers where status = 'done' and transfer_key in (select unnest(?))",
        [list(keys)],
    ).column("transfer_id")
    with evidence_store(workspace.db, ids.to_pylist()) as store:
        rows = store.query(
            """
            select target, sources[1] as source
            from measured_affinity
            where kind = 'transfer' and "order" = 1 and sources[1] <> target
            order by target, affinity desc, source
            """
        ).to_pylist()
    ranking: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        ranking[row["target"]].append(row["source"])
    return dict(ranking)
