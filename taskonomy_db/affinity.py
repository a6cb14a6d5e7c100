"""Read the affinity views (sql/2x_*, sql/3x_*): per-target AHP affinities with Quality and Gain, and the
first-order source x target matrix. The numbers themselves are computed in SQL so any DuckDB client sees them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskonomy_db.db import Database
from taskonomy_db.errors import TdbError, UnknownTaskError


class AffinityError(TdbError):
    """No affinities to show: nothing measured or imported, or an unknown origin."""


def active_origin(db: Database) -> str:
    """The origin the `affinity`, `quality` and `gain` views serve: 'measured' or 'published_<data>'."""
    return db.scalar("select origin from active_origin")


def origins(db: Database) -> list[str]:
    return [row["origin"] for row in db.query("select distinct origin from affinity_by_origin order by 1").to_pylist()]


def check_origin(db: Database, origin: str | None) -> str:
    chosen = origin or active_origin(db)
    if origin is not None and origin not in origins(db):
        known = ", ".join(origins(db)) or "none"
        raise AffinityError(f"no affinities from origin {origin!r} (available: {known})")
    return chosen


def affinity_rows(
    db: Database, target: str | None = None, order: int | None = None, origin: str | None = None
) -> list[dict[str, Any]]:
    """Rows of (target, sources, order, kind, affinity, quality, gain), best affinity first within each target."""
    chosen = check_origin(db, origin)
    rows = db.query(
        """
        select target, sources, "order", kind, affinity, quality, gain
        from affinity_by_origin
        where origin = $origin
            and ($target is null or target = $target)
            and ($order is null or "order" = $order)
        order by target, affinity desc nulls last, sources
        """,
        {"origin": chosen, "target": target, "order": order},
    ).to_pylist()
    if target is not None and not rows:
        targets = db.query(
            "select distinct target from affinity_by_origin where origin = $origin order by 1", {"origin": chosen}
        ).column(0)
        if target not in targets.to_pylist():
            raise UnknownTaskError(f"no affinities for target {target!r} in {chosen}")
    return rows


STATISTICS = ("affinity", "quality", "gain")
FEW_TEST_BUILDINGS = 5  # below this a bootstrap over buildings has too few distinct replicates to say much


def bootstrap_design(db: Database) -> tuple[int, int]:
    """(replicates, test buildings) of the building bootstrap as the views see them ([analysis] bootstrap)."""
    row = db.query(
        "select count(distinct replicate) filter (where replicate > 0) as replicates,"
        " count(*) filter (where replicate = 0) as buildings from bootstrap_weights"
    ).to_pylist()[0]
    return row["replicates"], row["buildings"]


def bootstrap_caveat(db: Database) -> tuple[int, int, str | None]:
    """The design, and why its intervals are missing or rough (None when neither): for a warning or an error."""
    replicates, buildings = bootstrap_design(db)
    if buildings < 2:
        why = f"the building bootstrap needs at least 2 test buildings; the study has {buildings}"
    elif replicates == 0:
        why = "no bootstrap replicates: set [analysis] bootstrap above 0 in tdb.toml"
    elif buildings < FEW_TEST_BUILDINGS:
        why = f"only {buildings} test buildings: few distinct replicates, so intervals and shares are rough"
    else:
        why = None
    return replicates, buildings, why


def seed_share(db: Database) -> tuple[int, int, float | None]:
    """(fewest and most readout seeds a target's candidates are averaged over, and the median over the measured
    affinities of targets with several of the seeds' share of their variance) from the view affinity_variance;
    the share is None, and the bootstrap not computed, when no target has several."""
    fewest, most = (
        db.query(
            "select coalesce(min(n_seeds), 1), coalesce(max(n_seeds), 1) from"
            " (select target, max(n_seeds) as n_seeds from affinity_candidates group by target)"
        )
        .to_pylist()[0]
        .values()
    )
    if most < 2:
        return fewest, most, None
    return fewest, most, db.scalar("select median(seed_share) from affinity_variance where n_seeds > 1")


def affinity_intervals(db: Database, target: str | None = None, order: int | None = None) -> list[dict[str, Any]]:
    """`affinity_rows` of the measured transfers with each statistic's building-bootstrap interval: columns
    <statistic>_low and <statistic>_high for affinity, quality and gain, and how many replicates measured them
    (the views affinity_ci, quality_ci and gain_ci; `[analysis]` sets the replicates, level and seed)."""
    pivot = ", ".join(
        f"max({column}) filter (where statistic = '{statistic}') as {statistic}{suffix}"
        for statistic in STATISTICS
        for column, suffix in (("value", ""), ("ci_low", "_low"), ("ci_high", "_high"))
    )
    rows = db.query(
        f"""
        select target, sources, "order", kind, {pivot}, max(replicates) as replicates
        from bootstrap_intervals
        where ($target is null or target = $target) and ($order is null or "order" = $order)
        group by target, sources, "order", kind
        order by target, affinity desc nulls last, sources
        """,
        {"target": target, "order": order},
    ).to_pylist()
    if (
        target is not None
        and not rows
        and not db.scalar("select count(*) from measured_affinity where target = ?", [target])
    ):
        raise UnknownTaskError(f"no measured affinities for target {target!r}")
    return rows


@dataclass(frozen=True)
class AffinityMatrix:
    """First-order affinities as a dense source x target matrix (None where a transfer was not measured)."""

    origin: str
    sources: list[str]
    targets: list[str]
    values: list[list[float | None]]

    def value(self, source: str, target: str) -> float | None:
        return self.values[self.sources.index(source)][self.targets.index(target)]

    @classmethod
    def from_cells(cls, origin: str, cells: Mapping[tuple[str, str], float | None]) -> AffinityMatrix:
        """The matrix of (source, target) -> value cells, sources and targets sorted, None where no cell."""
        sources = sorted({s for s, _ in cells})
        targets = sorted({t for _, t in cells})
        return cls(origin, sources, targets, [[cells.get((s, t)) for t in targets] for s in sources])


def first_order_matrix(db: Database, origin: str | None = None, column: str = "affinity") -> AffinityMatrix:
    """The source x target matrix of `column` (affinity, quality or gain) over first-order candidates."""
    if column not in ("affinity", "quality", "gain"):
        raise ValueError(f"unknown column {column!r}")
    chosen = check_origin(db, origin)
    rows = db.query(
        f"""
        select sources[1] as source, target, {column} as value
        from affinity_by_origin
        where origin = $origin and len(sources) = 1
        """,
        {"origin": chosen},
    ).to_pylist()
    return AffinityMatrix.from_cells(chosen, {(r["source"], r["target"]): r["value"] for r in rows})


@contextmanager
def evidence_store(
    db: Database, transfer_ids: Sequence[int], buildings: Sequence[str] | None = None
) -> Iterator[Database]:
    """A throwaway store with every view, holding only these transfers and their losses (those of test items in
    `buildings` alone when given): the views' win rates and AHP over exactly that evidence. The beam ranks
    sources by the run's first order alone this way, and cross-fitting scores one half of the test buildings
    with the other's taxonomy, with the same SQL that serves the workspace."""
    with tempfile.TemporaryDirectory(prefix="tdb-evidence-") as folder:
        store = Database(Path(folder) / "evidence.duckdb", variables=db.variables)  # the same smoothing
        store.migrate()
        with db.connect(read_only=True) as source:
            transfers = source.sql(
                "select * from transfers where transfer_id in (select unnest(?))", params=[list(transfer_ids)]
            ).to_arrow_table()
            if buildings is None:
                losses = source.sql(
                    "select * from losses where transfer_id in (select unnest(?))", params=[list(transfer_ids)]
                ).to_arrow_table()
            else:
                # A multi-image target's losses are per tuple, stored under its tuple id: placed through `tuples`.
                losses = source.sql(
                    """
                    select losses.*
                    from losses
                    inner join transfers using (transfer_id)
                    left join tasks on tasks.task = transfers.target
                    left join images
                        on coalesce(tasks.n_views, 1) = 1 and images.image_id = losses.image_id
                    left join tuples
                        on tasks.n_views > 1 and tuples.tuple_id = losses.image_id
                    where losses.transfer_id in (select unnest(?))
                        and coalesce(tuples.building, images.building) in (select unnest(?))
                    """,
                    params=[list(transfer_ids), list(buildings)],
                ).to_arrow_table()
        with store.transaction() as con:
            con.insert("transfers", transfers)
            con.insert("losses", losses)
        yield store
