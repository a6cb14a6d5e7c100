"""Cross-fitted structure significance: does a taxonomy beat random policies of its budget on test images it was
not chosen on?

Scored in-sample (`evaluation.sweep` on the workspace's views), the taxonomy is optimised on the very test images
that then score it, while the random policies are not, so its percentile is optimistic. Here the test buildings
are cut in two halves; the affinities of one half choose the taxonomy, and it is scored (with the same random
policies) by the Quality of the other half, and the other way round. Each half's numbers come from the store's
own views over that half's losses (`affinity.evidence_store`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskonomy_db.affinity import evidence_store
from taskonomy_db.db import Database
from taskonomy_db.errors import TdbError
from taskonomy_db.evaluation import load_affinity_rows, load_measurements, sweep


class SignificanceError(TdbError):
    """Cross-fitting is impossible here: too few test buildings, or no measured transfers."""


@dataclass(frozen=True)
class CrossFitCell:
    """One (budget, maximum order): the percentile of the taxonomy of each half scored on the other, and their
    mean (None where infeasible)."""

    budget: float
    max_order: int
    percentiles: tuple[float | None, float | None]

    @property
    def percentile(self) -> float | None:
        known = [p for p in self.percentiles if p is not None and not math.isnan(p)]
        return sum(known) / len(known) if len(known) == 2 else None


def building_halves(db: Database, seed: int) -> tuple[list[str], list[str]]:
    """Two halves of the test buildings, cut by a seeded hash of their names."""
    rows = db.query("select distinct building from images where split = 'test'").to_pylist()
    buildings = sorted(
        {r["building"] for r in rows}, key=lambda b: hashlib.sha256(f"{seed}:halves:{b}".encode()).hexdigest()
    )
    if len(buildings) < 2:
        raise SignificanceError(f"cross-fitting needs at least 2 test buildings, the test split has {len(buildings)}")
    return sorted(buildings[::2]), sorted(buildings[1::2])


def cross_fitted_sweep(
    db: Database,
    budgets: Sequence[float],
    orders: Sequence[int],
    n_random: int = 100,
    seed: int = 0,
    **settings: Any,
) -> list[CrossFitCell]:
    """Structure significance of every (budget, maximum order), cross-fitted over two halves of the test
    buildings (see the module's docstring), for the workspace's measured transfers."""
    ids = db.query("select transfer_id from candidate_transfers").column("transfer_id").to_pylist()
    if not ids:
        raise SignificanceError("no measured transfers to cross-fit; run `tdb transfer` first")
    halves = building_halves(db, seed)
    evidence = []
    for buildings in halves:
        with evidence_store(db, ids, buildings) as store:
            evidence.append((load_affinity_rows(store), load_measurements(store)))
    runs = [
        sweep(evidence[a][0], evidence[b][1], budgets, orders, n_random, seed, **settings) for a, b in ((0, 1), (1, 0))
    ]
    return [
        CrossFitCell(one.budget, one.max_order, (one.percentile, other.percentile))
        for one, other in zip(*runs, strict=True)
    ]
