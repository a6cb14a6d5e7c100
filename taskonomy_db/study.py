"""The Python face of a workspace: its results as Polars frames, its taxonomy and tree as objects.

    >>> import taskonomy_db as tdb
    >>> study = tdb.open("study")
    >>> study.affinity().filter(pl.col("target") == "normal").sort("affinity", descending=True)
    >>> study.taxonomy(budget=3, max_order=2).per_target

Every frame comes from the same SQL views the command line and any DuckDB client read, so the numbers are the
ones `tdb affinity`, `tdb taxonomy` and `tdb tree` print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from taskonomy_db.affinity import check_origin, first_order_matrix
from taskonomy_db.workspace import Workspace

SOURCES_TYPE = pl.List(pl.String)


@dataclass(frozen=True)
class TaxonomyResult:
    """A solved taxonomy: which tasks to supervise, the transfer serving every other target, and per target how
    it is served with its affinity, Gain and Quality (`per_target`). `taxonomy` is the solver's full result."""

    supervised: tuple[str, ...]
    transfers: dict[str, tuple[str, ...]]
    objective: float
    per_target: pl.DataFrame
    taxonomy: Any


class Study:
    """An opened workspace. Construct with `taskonomy_db.open(path)`."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def __repr__(self) -> str:
        return f"Study({str(self.workspace.root)!r})"

    def _frame(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pl.DataFrame:
        return pl.from_arrow(self.workspace.db.query(sql, params))

    def _statistic(self, column: str, origin: str | None) -> pl.DataFrame:
        chosen = check_origin(self.workspace.db, origin)
        return self._frame(
            f'select target, sources, "order"::integer as "order", kind, {column}::double as {column}'
            f" from affinity_by_origin where origin = ? and {column} is not null order by target, sources",
            [chosen],
        )

    def affinity(self, origin: str | None = None) -> pl.DataFrame:
        """AHP affinity per (target, source set): target, sources (list), order, kind, affinity. `origin`:
        'measured' or an imported release ('published_16k', ...); default the active one (`tdb origin`)."""
        return self._statistic("affinity", origin)

    def quality(self, origin: str | None = None) -> pl.DataFrame:
        """Quality, the win rate against the target's gold network: target, sources, order, kind, quality."""
        return self._statistic("quality", origin)

    def gain(self, origin: str | None = None) -> pl.DataFrame:
        """Gain, the win rate against scratch: target, sources, order, kind, gain."""
        return self._statistic("gain", origin)

    def intervals(self, statistic: str = "affinity") -> pl.DataFrame:
        """The measured `statistic` ('affinity', 'quality' or 'gain') with its building-bootstrap interval:
        target, sources, order, kind, the value, ci_low, ci_high, replicates ([analysis] sets them)."""
        if statistic not in ("affinity", "quality", "gain"):
            raise ValueError(f"statistic must be affinity, quality or gain, got {statistic!r}")
        return self._frame(f"select * from {statistic}_ci order by target, sources")

    def variance(self) -> pl.DataFrame:
        """Each measured affinity's variance split in two (view affinity_variance): target, sources, order, kind,
        affinity, n_seeds, seed_variance (from the readout seeds; null with one), image_variance (from the test
        buildings, by the bootstrap), seed_share."""
        return self._frame("select * from affinity_variance order by target, sources")

    def losses(self, target: str | None = None, kind: str | None = None) -> pl.DataFrame:
        """Per-image test losses of the done transfers: transfer_id, target, sources, order, kind, seed_index,
        image_id, loss; `target` and `kind` ('transfer', 'gold', 'scratch', 'random') filter."""
        return self._frame(
            """
            select transfers.transfer_id, transfers.target, transfers.sources, transfers."order", transfers.kind,
                transfers.seed_index, losses.image_id, losses.loss
            from losses inner join transfers using (transfer_id)
            where transfers.status = 'done' and ($target is null or transfers.target = $target)
                and ($kind is null or transfers.kind = $kind)
            order by transfers.transfer_id, losses.image_id
            """,
            {"target": target, "kind": kind},
        )

    def first_order_matrix(self, origin: str | None = None, column: str = "affinity") -> pl.DataFrame:
        """The first-order source x target matrix, wide: a `source` column, then one column per target (null
        where not measured). `column`: 'affinity', 'quality' or 'gain'."""
        matrix = first_order_matrix(self.workspace.db, origin, column)
        data: dict[str, list[Any]] = {"source": matrix.sources}
        for index, target in enumerate(matrix.targets):
            data[target] = [row[index] for row in matrix.values]
        return pl.DataFrame(data, schema={"source": pl.String, **dict.fromkeys(matrix.targets, pl.Float64)})

    def taxonomy(
        self,
        budget: float,
        max_order: int | None = None,
        objective: str = "sqrt",
        targets: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        source_only: Sequence[str] = (),
        target_only: Sequence[str] = (),
        costs: Mapping[str, float] | None = None,
        transfer_costs: Mapping[str, float] | None = None,
        values: Mapping[str, float] | None = None,
    ) -> TaxonomyResult:
        """Solve the budgeted BIP on the active origin's affinities, as `tdb taxonomy` does with the same
        options (`costs` is --cost, `transfer_costs` --transfer-cost, `values` --value)."""
        from taskonomy_db.evaluation import load_affinity_rows, load_measurements, per_target
        from taskonomy_db.taxonomy import DEFAULT_MAX_ORDER, build_problem, solve

        db = self.workspace.db
        problem = build_problem(
            load_affinity_rows(db),
            budget=budget,
            max_order=DEFAULT_MAX_ORDER if max_order is None else max_order,
            objective=objective,
            targets=targets,
            sources=sources,
            source_only=source_only,
            target_only=target_only,
            supervision_cost=costs,
            transfer_cost=transfer_costs,
            value=values,
        )
        solved = solve(problem)
        served = per_target(solved, load_measurements(db))
        frame = pl.DataFrame(
            [{"target": target, **info} for target, info in served.items()],
            schema={
                "target": pl.String,
                "supervised": pl.Boolean,
                "sources": SOURCES_TYPE,
                "order": pl.Int64,
                "affinity": pl.Float64,
                "gain": pl.Float64,
                "quality": pl.Float64,
            },
        )
        return TaxonomyResult(
            supervised=solved.supervised,
            transfers={target: edge.sources for target, edge in solved.transfers.items()},
            objective=solved.objective,
            per_target=frame,
            taxonomy=solved,
        )

    def tree(self, clusters: int = 4, origin: str | None = None) -> pl.DataFrame:
        """The task similarity tree cut into `clusters` groups: task, cluster (numbered as `tdb tree` prints)."""
        from taskonomy_db.tree import build_tree

        assignment = build_tree(self.workspace.db, origin).clusters(clusters)
        return pl.DataFrame(
            {"task": list(assignment), "cluster": list(assignment.values())},
            schema={"task": pl.String, "cluster": pl.Int64},
        ).sort("cluster", "task")

    def representations(self, encoder: str) -> pl.LazyFrame:
        """The encoder's extracted representations as a lazy frame over its Parquet parts (image_id,
        representation: a fixed-size list), after checking the parts against the store's record."""
        from taskonomy_db.extract import check_representations

        parts = check_representations(self.workspace, encoder)
        return pl.scan_parquet([str(part) for part in parts])


def open_study(path: str | Path | None = None) -> Study:
    """The workspace at `path` (default: $TDB_WORKSPACE, else the current folder), migrated if it needs to be."""
    return Study(Workspace.open(path))
