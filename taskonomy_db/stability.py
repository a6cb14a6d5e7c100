"""How stable a taxonomy is: the BIP solved again on every building-bootstrap replicate of the affinities.

The replicates are the SQL view `bootstrap_affinity` (test buildings resampled; replicate 0 is the study, so its
taxonomy is the one `tdb taxonomy` prints). A replicate in which a target of the study has no affinity (it drew
none of the buildings with that target's images) cannot pose the same problem and is left out, and counted.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from taskonomy_db.affinity import bootstrap_caveat
from taskonomy_db.db import Database
from taskonomy_db.errors import InfeasibleError, QueryError
from taskonomy_db.taxonomy import Taxonomy, TaxonomyInputError, build_problem, solve


@dataclass(frozen=True)
class Stability:
    """The study's taxonomy and how often the replicates' taxonomies agree with it."""

    taxonomy: Taxonomy  # replicate 0's: the study's own
    replicates: int  # replicates solved (the study's not counted)
    skipped: int  # replicates left out: a target without affinity, or no feasible taxonomy
    supervised_share: dict[str, float]  # task -> share of replicates supervising it
    serving_share: dict[str, float]  # target -> share of replicates serving it as the study's taxonomy does
    same_supervised_share: float  # share of replicates supervising exactly the study's tasks
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "replicates": self.replicates,
            "skipped": self.skipped,
            "supervised_share": self.supervised_share,
            "serving_share": self.serving_share,
            "same_supervised_share": self.same_supervised_share,
            "seconds": self.seconds,
        }


def replicate_rows(db: Database) -> dict[int, list[tuple[str, tuple[str, ...], int, float]]]:
    """Affinity rows (target, sources, order, affinity) of every replicate, replicate 0 the study's."""
    try:
        table = db.query(
            'select replicate, target, sources, "order", affinity from bootstrap_affinity'
            " where affinity is not null order by replicate, target, sources"
        )
    except QueryError as error:
        raise TaxonomyInputError(f"cannot read the bootstrap_affinity view: {error}") from error
    rows: dict[int, list[tuple[str, tuple[str, ...], int, float]]] = {}
    for r in table.to_pylist():
        rows.setdefault(r["replicate"], []).append((r["target"], tuple(r["sources"]), r["order"], r["affinity"]))
    return rows


def taxonomy_stability(db: Database, budget: float, max_order: int, **settings: Any) -> Stability:
    """Solve the taxonomy of `budget` and `max_order` (and `build_problem`'s other `settings`) on the study and on
    every bootstrap replicate; report how often each choice of the study's taxonomy recurs."""
    started = time.perf_counter()
    by_replicate = replicate_rows(db)
    if 0 not in by_replicate:
        raise TaxonomyInputError("no measured affinities: stability needs the workspace's own transfers")
    if len(by_replicate) == 1:
        raise TaxonomyInputError(bootstrap_caveat(db)[2] or "no bootstrap replicate has affinities")
    study = solve(build_problem(by_replicate[0], budget=budget, max_order=max_order, **settings))
    targets = {target for target, *_ in by_replicate[0]}
    supervised: Counter[str] = Counter()
    serving: Counter[str] = Counter()
    same, solved, skipped = 0, 0, 0
    for replicate, rows in sorted(by_replicate.items()):
        if replicate == 0:
            continue
        if {target for target, *_ in rows} != targets:
            skipped += 1
            continue
        try:
            taxonomy = solve(build_problem(rows, budget=budget, max_order=max_order, **settings))
        except InfeasibleError:
            skipped += 1
            continue
        solved += 1
        supervised.update(taxonomy.supervised)
        same += set(taxonomy.supervised) == set(study.supervised)
        serving.update(t for t in study.problem.target_tasks if taxonomy.serving(t) == study.serving(t))
    if not solved:
        raise TaxonomyInputError(
            f"none of the {skipped} bootstrap replicates poses the study's problem (each lacks a target's"
            " affinities, or has no feasible taxonomy)"
        )

    def share(n: int) -> float:
        return n / solved

    return Stability(
        taxonomy=study,
        replicates=solved,
        skipped=skipped,
        supervised_share={t: share(supervised[t]) for t in study.problem.root_tasks},
        serving_share={t: share(serving[t]) for t in study.problem.target_tasks},
        same_supervised_share=share(same),
        seconds=time.perf_counter() - started,
    )
