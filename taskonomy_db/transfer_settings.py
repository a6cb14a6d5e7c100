"""The [transfer] settings of tdb.toml, checked, and what they determine: the settings_hash that marks which
stored transfers are current, each transfer's key, and the seeds derived from the study seed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from taskonomy_db.names import GOLD, RANDOM, SCRATCH
from taskonomy_db.readout import TransferError
from taskonomy_db.tasks import label_versions_digest
from taskonomy_db.workspace import TRANSFER_NUMBERS, Workspace, check_numbers

BASELINES = (GOLD, SCRATCH, RANDOM)
KINDS = ("transfer", *BASELINES)
TRAIN_SPLITS = ("val", "train")

# The [transfer] section of tdb.toml; CLI flags override single keys. The schedule (a step budget, evaluation on
# the held-out images every `eval_every` steps, stop after `patience` evaluations without improvement) was chosen
# by benchmarks/bench_schedule.py: see benchmarks/RESULTS.md.
DEFAULT_TRANSFER_SETTINGS: dict[str, Any] = {
    "train_split": "val",
    "transfer_images": 256,
    "holdout_images": 64,
    "max_steps": 1500,
    "eval_every": 20,
    "patience": 5,
    "batch_size": 32,
    "learning_rate": 0.003,
    "weight_decay": 0.0001,
    "readout_width": 16,
    "max_order": 2,
    "beam": 5,
    "baselines": list(BASELINES),
    # Readouts per source set, each with its own derived seed; the affinity views average their per-image
    # losses. Not part of the settings_hash: raising it keeps the readouts already trained and adds the others.
    "seeds": 1,
    "workers": 0,  # 0 = one per core
}
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
# Settings of earlier versions, and what replaced them.
RETIRED_SETTINGS = {
    "epochs": "readouts now train until their held-out loss stops improving: set max_steps (the step budget) and"
    " patience instead",
}
# Bumped whenever the readout or its training changes what it learns, so stored transfers of an older readout
# are not mistaken for current ones (it is part of every settings_hash).
READOUT_VERSION = 4


# ---------------------------------------------------------------- settings and keys


def transfer_settings(workspace: Workspace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then tdb.toml's [transfer], then non-None `overrides`; `seed` defaults to the study seed."""
    settings = dict(DEFAULT_TRANSFER_SETTINGS)
    settings.update(workspace.settings.get("transfer", {}))
    settings.setdefault("seed", workspace.seed)
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    retired = sorted(set(settings) & set(RETIRED_SETTINGS))
    if retired:
        raise TransferError(f"[transfer] {retired[0]} is no longer a setting: {RETIRED_SETTINGS[retired[0]]}")
    unknown = set(settings) - set(DEFAULT_TRANSFER_SETTINGS) - {"seed"}
    if unknown:
        raise TransferError(f"unknown [transfer] setting(s): {', '.join(sorted(unknown))}")
    check_numbers("transfer", settings, TRANSFER_NUMBERS, TransferError)
    if settings["train_split"] not in TRAIN_SPLITS:
        raise TransferError(
            f"[transfer] train_split must be one of {', '.join(TRAIN_SPLITS)}, got {settings['train_split']!r}"
        )
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


def seeded_name(name: str, seed_index: int) -> str:
    """What a seed of readout `seed_index` is derived from: `name` itself for the first, so a single-seed study
    keeps the keys and seeds it always had."""
    return name if seed_index == 0 else f"{name}:seed{seed_index}"


def derive_seed(seed: int, name: str) -> int:
    """A 31-bit seed for one transfer (or group), independent of the order in which work runs."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little") & 0x7FFFFFFF
