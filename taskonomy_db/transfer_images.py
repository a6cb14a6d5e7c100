"""Which images a transfer run reads, by role: `fit` (the readouts' and scratch's training images), `holdout`
(their early-stopping images) and `test` (every stored loss).

Fit and holdout come from one split that no task network trained on (`[transfer] train_split`, val by default,
as the original trained its transfer functions on val). The holdout is whole buildings of that split, chosen by
seed, so early stopping judges images of buildings the readout never saw, the way the test split does; with a
single building in the split it falls back to images of that building.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from taskonomy_db.readout import TransferError
from taskonomy_db.workspace import Workspace


@dataclass(frozen=True)
class TransferImages:
    """The image ids of each role, ascending, and a digest of all three (part of every transfer's key)."""

    fit: np.ndarray
    holdout: np.ndarray
    test: np.ndarray
    split: str
    holdout_buildings: tuple[str, ...]  # empty when the split has one building and the holdout is images of it

    @property
    def digest(self) -> str:
        parts = [self.fit.tobytes(), self.holdout.tobytes(), self.test.tobytes()]
        return hashlib.sha256(b"|".join(parts)).hexdigest()[:16]

    def by_role(self) -> dict[str, np.ndarray]:
        return {"fit": self.fit, "holdout": self.holdout, "test": self.test}


def _split_images(workspace: Workspace, split: str) -> tuple[np.ndarray, np.ndarray]:
    table = workspace.db.query(
        "select image_id, building from images where split = ? and rgb_path is not null order by image_id", [split]
    )
    return table.column("image_id").to_numpy().astype(np.int32), np.array(table.column("building").to_pylist())


def _rank(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:holdout:{name}".encode()).hexdigest()


def choose_transfer_images(workspace: Workspace, split: str, n_fit: int, n_holdout: int, seed: int) -> TransferImages:
    """The run's images: `n_fit` fit and `n_holdout` holdout images of `split` drawn by `seed`, and the test split.

    Holdout buildings are taken in a seeded order until they hold `n_holdout` images (always leaving one building
    for fitting); the holdout is drawn from their images and the fit images from the other buildings. Raises
    TransferError when the split cannot supply both.
    """
    ids, buildings = _split_images(workspace, split)
    test, _ = _split_images(workspace, "test")
    if len(test) == 0:
        raise TransferError("the test split has no images")
    if len(ids) < 2:
        raise TransferError(
            f"the {split} split has {len(ids)} image(s); readouts train on it and stop early on part of it, so it"
            " needs at least 2 (ingest more buildings, change the split fractions, or set [transfer] train_split)"
        )
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}:transfer-images".encode()).digest()[:8]))
    names = sorted(set(buildings.tolist()), key=lambda name: _rank(seed, name))
    held: list[str] = []
    if len(names) >= 2:
        for name in names[:-1]:
            if np.isin(buildings, held).sum() >= n_holdout:
                break
            held.append(name)
        in_holdout = np.isin(buildings, held)
        holdout_pool, fit_pool = ids[in_holdout], ids[~in_holdout]
    else:
        shuffled = rng.permutation(ids)
        holdout_pool, fit_pool = shuffled[:n_holdout], shuffled[n_holdout:]
    where = f"the {split} split's {len(ids)} images in {len(names)} building(s)"
    if len(holdout_pool) < n_holdout:
        raise TransferError(
            f"--holdout-images {n_holdout} is more than the {len(holdout_pool)} images {where} can hold out for"
            " early stopping (whole buildings, one kept for fitting); ask for fewer"
        )
    if n_fit > len(fit_pool):
        raise TransferError(
            f"--transfer-images {n_fit} is more than the {len(fit_pool)} images {where} have outside the"
            f" {len(holdout_pool)} kept for early stopping; ask for at most {len(fit_pool)}"
        )
    holdout = rng.choice(holdout_pool, size=n_holdout, replace=False)
    fit = rng.choice(fit_pool, size=n_fit, replace=False)
    return TransferImages(
        np.sort(fit).astype(np.int32), np.sort(holdout).astype(np.int32), test, split, tuple(sorted(held))
    )
