"""The [transfer] settings of tdb.toml, checked, and what they determine: the settings_hash that marks which
stored transfers are current, each transfer's key, and the seeds derived from the study seed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from taskonomy_db.readout import TransferError
from taskonomy_db.settings import as_dict, with_overrides
from taskonomy_db.tasks import label_versions_digest
from taskonomy_db.workspace import Workspace

# Only these change what a readout learns; the rest (which transfers, how fast) leave finished transfers valid.
RESULT_SETTINGS = (
    "train_split",
    "transfer_images",
    "holdout_images",
    "max_steps",
    "eval_every",
    "patience",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "readout_width",
)
# Bumped whenever the readout or its training changes what it learns, so stored transfers of an older readout
# are not mistaken for current ones (it is part of every settings_hash).
READOUT_VERSION = 4


# ---------------------------------------------------------------- settings and keys


def transfer_settings(workspace: Workspace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """tdb.toml's [transfer] (taskonomy_db.settings.TransferSettings) with the non-None `overrides` in place;
    `seed` defaults to the study seed. `seeds` is no part of the settings_hash: raising it keeps the readouts
    already trained and adds the others."""
    try:
        settings = with_overrides(workspace.settings.transfer, overrides, "transfer")
    except ValueError as error:
        raise TransferError(str(error)) from None
    values = as_dict(settings)
    if values["seed"] is None:
        values["seed"] = workspace.seed
    return values


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


def seeded_name(name: str, seed_index: int) -> str:
    """What a seed of readout `seed_index` is derived from: `name` itself for the first, so a single-seed study
    keeps the keys and seeds it always had."""
    return name if seed_index == 0 else f"{name}:seed{seed_index}"


def derive_seed(seed: int, name: str) -> int:
    """A 31-bit seed for one transfer (or group), independent of the order in which work runs."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little") & 0x7FFFFFFF
