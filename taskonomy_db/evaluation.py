"""What a taxonomy is worth: Gain and Quality of its transfers, random feasible policies of its budget, and the
sweep over budgets and orders that scores structure significance (the paper's Gain and Quality tables), read
from the workspace's views or from any rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taskonomy_db.errors import InfeasibleError, QueryError
from taskonomy_db.names import GOLD
from taskonomy_db.taxonomy import (
    ROLE_TARGET,
    ROLE_TARGET_ONLY,
    Taxonomy,
    TaxonomyInputError,
    TaxonomyProblem,
    Transfer,
    build_problem,
    plain_number,
    solve,
)

GOLD_QUALITY = 0.5  # gold against itself: every image a tie, counted as half a win


@dataclass(frozen=True)
class Measurements:
    """Quality (win rate against gold) and Gain (against scratch) per (target, sorted sources), where measured."""

    quality: Mapping[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)
    gain: Mapping[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, quality_rows: Iterable[Sequence[Any]], gain_rows: Iterable[Sequence[Any]]) -> Measurements:
        def table(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, tuple[str, ...]], float]:
            return {
                (str(r[0]), tuple(sorted(str(s) for s in r[1]))): float(r[-1])
                for r in rows
                if r[-1] is not None and math.isfinite(float(r[-1]))
            }

        return cls(quality=table(quality_rows), gain=table(gain_rows))

    def quality_of(self, target: str, sources: tuple[str, ...]) -> float | None:
        found = self.quality.get((target, sources))
        if found is None and sources == (GOLD,):
            return GOLD_QUALITY
        return found

    def gain_of(self, target: str, sources: tuple[str, ...]) -> float | None:
        return self.gain.get((target, sources))


def per_target(taxonomy: Taxonomy, measurements: Measurements | None = None) -> dict[str, dict[str, Any]]:
    """For each target: how it is served, with affinity, Gain and Quality (None where not measured)."""
    measurements = measurements or Measurements()
    problem = taxonomy.problem
    result = {}
    for target in problem.target_tasks:
        sources = taxonomy.serving(target)
        supervised = sources == (GOLD,)
        affinity = problem.gold_affinity.get(target) if supervised else taxonomy.transfers[target].affinity
        result[target] = {
            "supervised": supervised,
            "sources": list(sources),
            "order": 0 if supervised else len(sources),
            "affinity": affinity,
            "gain": measurements.gain_of(target, sources),
            "quality": measurements.quality_of(target, sources),
        }
    return result


def mean_quality(problem: TaxonomyProblem, serving: Mapping[str, tuple[str, ...]], measurements: Measurements) -> float:
    """Mean Quality over the targets whose serving transfer has a measured Quality (gold counts 0.5)."""
    scores = [measurements.quality_of(t, serving[t]) for t in problem.target_tasks]
    scores = [s for s in scores if s is not None]
    return float(np.mean(scores)) if scores else float("nan")


def random_policies(
    problem: TaxonomyProblem, n: int, seed: int, max_attempts_per_policy: int = 50
) -> list[dict[str, tuple[str, ...]]]:
    """`n` random feasible policies of the problem's budget and maximum order: a random set of supervised tasks,
    grown in random order while the budget allows, then a uniformly random viable transfer per other target.
    Root sets that leave a target without a transfer are drawn again."""
    rng = np.random.default_rng(seed)
    roots = problem.root_tasks
    targets = problem.target_tasks
    edges_into: dict[str, list[Transfer]] = {t: [] for t in targets}
    for edge in problem.edges:
        edges_into[edge.target].append(edge)
    policies: list[dict[str, tuple[str, ...]]] = []
    for _ in range(n * max_attempts_per_policy):
        if len(policies) == n:
            break
        chosen: set[str] = set()
        # Start from every target transferred; supervising a target then also saves its transfer cost.
        spent = sum(problem.transfer_cost[t] for t in targets if problem.roles[t] == ROLE_TARGET_ONLY)
        spent += sum(problem.transfer_cost[t] for t in targets if problem.roles[t] == ROLE_TARGET)
        for index in rng.permutation(len(roots)):
            task = roots[index]
            extra = problem.supervision_cost[task] - (
                problem.transfer_cost[task] if problem.roles[task] == ROLE_TARGET else 0.0
            )
            if spent + extra <= problem.budget + 1e-9:
                chosen.add(task)
                spent += extra
        if spent > problem.budget + 1e-9:
            continue
        policy: dict[str, tuple[str, ...]] = {}
        for target in targets:
            if target in chosen:
                policy[target] = (GOLD,)
                continue
            options = [e for e in edges_into[target] if chosen.issuperset(e.sources)]
            if not options:
                break
            policy[target] = options[rng.integers(len(options))].sources
        else:
            policies.append(policy)
    return policies


def percentile_of(value: float, population: Sequence[float]) -> float:
    """Share of `population` below `value`, ties counted half, in percent."""
    population = np.asarray(population, dtype=float)
    if population.size == 0:
        return float("nan")
    return float(100.0 * (np.sum(population < value) + 0.5 * np.sum(population == value)) / population.size)


@dataclass(frozen=True)
class SweepCell:
    budget: float
    max_order: int
    taxonomy: Taxonomy | None  # None when infeasible
    infeasible_reason: str | None
    mean_quality: float | None
    random_mean_qualities: tuple[float, ...]
    percentile: float | None


def sweep_budget_limit(rows: Iterable[Sequence[Any] | Mapping[str, Any]], max_order: int, **settings: Any) -> int:
    """The largest budget worth sweeping: from what supervising every task costs on, every budget allows the same
    policies, and each budget costs a solve and its random policies."""
    return math.ceil(build_problem(list(rows), budget=1.0, max_order=max_order, **settings).full_cost)


def top_sweep_budget(requested: float | None, default: int, limit: int) -> int:
    """The largest budget of a sweep: `default` capped at `limit` when none was asked for; an asked-for budget
    above `limit` is refused (it would only repeat the same taxonomy, at a solve and its policies each)."""
    if requested is None:
        return min(default, limit)
    if requested > limit:
        raise TaxonomyInputError(
            f"a sweep up to budget {plain_number(requested)} goes past {limit}, what supervising every task costs:"
            f" every larger budget gives the same taxonomy; sweep up to {limit} at most"
        )
    return int(requested)


def sweep(
    rows: Iterable[Sequence[Any] | Mapping[str, Any]],
    measurements: Measurements,
    budgets: Sequence[float],
    orders: Sequence[int],
    n_random: int = 100,
    seed: int = 0,
    **settings: Any,
) -> list[SweepCell]:
    """Solve every (budget, maximum order) and compare each taxonomy's mean Quality with `n_random` random
    feasible policies of the same budget and order (structure significance, as a percentile)."""
    rows = list(rows)
    cells = []
    for order in orders:
        for budget in budgets:
            problem = build_problem(rows, budget=budget, max_order=order, **settings)
            try:
                taxonomy = solve(problem)
            except InfeasibleError as error:
                cells.append(SweepCell(budget, order, None, str(error), None, (), None))
                continue
            serving = {t: taxonomy.serving(t) for t in problem.target_tasks}
            ours = mean_quality(problem, serving, measurements)
            # One seed per cell, derived from the study seed, so a cell's draw does not depend on the grid.
            cell_seed = seed * 1_000_003 + order * 1009 + int(round(budget * 1000))
            policies = random_policies(problem, n_random, cell_seed)
            randoms = tuple(mean_quality(problem, p, measurements) for p in policies)
            cells.append(SweepCell(budget, order, taxonomy, None, ours, randoms, percentile_of(ours, randoms)))
    return cells


# -- reading the workspace -----------------------------------------------------------------------------------


def load_affinity_rows(db: Any) -> list[tuple[str, tuple[str, ...], int, float]]:
    """Rows of the workspace's `affinity` view (measured transfers, or the active published import)."""
    try:
        table = db.query('select target, sources, "order", affinity from affinity order by target, sources')
    except QueryError as error:
        raise TaxonomyInputError(f"cannot read the affinity view: {error}") from error
    rows = [(r["target"], tuple(r["sources"]), r["order"], r["affinity"]) for r in table.to_pylist()]
    if not rows:
        raise TaxonomyInputError(
            "the affinity view is empty: import the paper's affinities (`tdb import-published`) or measure transfers"
        )
    return rows


def load_measurements(db: Any) -> Measurements:
    """Quality and Gain per transfer from the `quality` and `gain` views (empty where a view is missing)."""

    def rows(view: str) -> list[tuple]:
        try:
            table = db.query(f"select target, sources, {view} from {view}")
        except QueryError:
            return []
        return [(r["target"], r["sources"], r[view]) for r in table.to_pylist()]

    return Measurements.from_rows(rows("quality"), rows("gain"))


# -- output ---------------------------------------------------------------------------------------------------


def taxonomy_json(taxonomy: Taxonomy, measurements: Measurements | None = None) -> dict[str, Any]:
    problem = taxonomy.problem
    return {
        "budget": plain_number(problem.budget),
        "max_order": problem.max_order,
        "objective_kind": problem.objective,
        "objective": taxonomy.objective,
        "supervised": list(taxonomy.supervised),
        "transfers": {t: list(e.sources) for t, e in taxonomy.transfers.items()},
        "per_target": per_target(taxonomy, measurements),
    }


def sweep_tables(cells: Sequence[SweepCell], measurements: Measurements) -> dict[str, Any]:
    """The paper's Gain and Quality tables (per maximum order: rows = targets, columns = budgets; None where
    infeasible or unmeasured) and the structure significance of every cell, as plain data."""
    budgets = sorted({c.budget for c in cells})
    orders = sorted({c.max_order for c in cells})
    targets = sorted({t for c in cells if c.taxonomy for t in c.taxonomy.problem.target_tasks})
    gain: dict[int, dict[str, dict[float, float | None]]] = {k: {t: {} for t in targets} for k in orders}
    quality: dict[int, dict[str, dict[float, float | None]]] = {k: {t: {} for t in targets} for k in orders}
    significance = []
    for cell in cells:
        served = per_target(cell.taxonomy, measurements) if cell.taxonomy else {}
        for target in targets:
            gain[cell.max_order][target][cell.budget] = served.get(target, {}).get("gain")
            quality[cell.max_order][target][cell.budget] = served.get(target, {}).get("quality")
        randoms = np.asarray(cell.random_mean_qualities, dtype=float)
        significance.append(
            {
                "budget": cell.budget,
                "max_order": cell.max_order,
                "feasible": cell.taxonomy is not None,
                "objective": cell.taxonomy.objective if cell.taxonomy else None,
                "supervised": list(cell.taxonomy.supervised) if cell.taxonomy else None,
                "mean_quality": cell.mean_quality,
                "n_random": int(randoms.size),
                "random_mean_quality": float(randoms.mean()) if randoms.size else None,
                "random_p95_quality": float(np.percentile(randoms, 95)) if randoms.size else None,
                "percentile": cell.percentile,
                "infeasible_reason": cell.infeasible_reason,
            }
        )
    return {
        "budgets": budgets,
        "orders": orders,
        "targets": targets,
        "gain": gain,
        "quality": quality,
        "significance": significance,
    }
