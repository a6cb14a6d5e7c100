"""Step 4 of the Taskonomy method: the budgeted binary integer program (BIP) that chooses which tasks to supervise
fully and which transfer serves every other target, with the semantics of the public Transfer Learning API that
served the paper's taxonomies (the README's taxonomy section says how).

The solver works on a plain in-memory description built from rows of the `affinity` view
(target, sources, order, affinity), so it can be used and tested without a workspace:

- one binary per *root* (a task that may be fully supervised: roles `target` and `source-only`) and one per
  *viable edge* (a measured transfer `s1,...,sk -> t`);
- an edge only if all its sources are roots (`sum root_s - |S| x_e >= 0`): no chaining through transferred tasks;
- every `target` task is a root or receives exactly one edge; a `target-only` task (one that cannot be fully
  supervised, e.g. a new task with only the small data) must receive exactly one edge; `source-only` tasks are
  never targets;
- budget: `sum supervision_cost[t] root_t + sum transfer_cost[target(e)] x_e <= budget`;
- objective: `sum value[t] g(affinity_e) x_e + sum value[t] g(aff_gold_t) root_t`, with g the identity (`affinity`,
  the paper's formula) or `sqrt` clipped to [1e-5, 1] (`sqrt`, the API's). A source-only root gets g(0): 0 for
  `affinity`, 1e-5 for `sqrt`, as in the API.

The pseudo-sources of the affinity view appear as follows. `gold` (the fully supervised network) is never a
source; its affinity for t is the coefficient of supervising t. `random` (a random-init encoder) is an ordinary
task whose default role is source-only, as in the paper's roles: "supervising" it costs its supervision cost
(1 by default, as in the API; pass `cost={"random": 0}` to make it free). `scratch` (a network trained from
scratch on the small data) is not a representation anyone supervises, and the API had no such source, so its
rows are not edges of the BIP; its Gain is 0.5 by definition and it shows up only in reports. A transfer from a
target's own small-data encoder (`t -> t`, in the release) is excluded like any source equal to its target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulp

from taskonomy_db.errors import InfeasibleError, TdbError, UnknownTaskError
from taskonomy_db.names import GOLD, NETWORK_BASELINES

ROLE_TARGET = "target"
ROLE_SOURCE_ONLY = "source-only"
ROLE_TARGET_ONLY = "target-only"
ROLE_UNUSED = "unused"
ROLES = (ROLE_TARGET, ROLE_SOURCE_ONLY, ROLE_TARGET_ONLY, ROLE_UNUSED)
ROOT_ROLES = (ROLE_TARGET, ROLE_SOURCE_ONLY)
TARGET_ROLES = (ROLE_TARGET, ROLE_TARGET_ONLY)

OBJECTIVES = ("affinity", "sqrt")
SQRT_FLOOR = 1e-5  # the API's lower clip of sqrt(affinity): a source-only root is worth ~0, never exactly 0
DEFAULT_BUDGET = 6.0  # the API's defaults
DEFAULT_MAX_ORDER = 5


class TaxonomyInputError(TdbError):
    """Settings of a taxonomy (costs, values, budget, roles, affinity rows) that cannot be solved as given."""


@dataclass(frozen=True)
class Transfer:
    """One candidate transfer `sources -> target` with its AHP affinity; sources are sorted."""

    target: str
    sources: tuple[str, ...]
    affinity: float

    @property
    def order(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class TaxonomyProblem:
    """A fully validated BIP instance: tasks with roles, costs and values, and its viable edges."""

    roles: Mapping[str, str]
    edges: tuple[Transfer, ...]
    gold_affinity: Mapping[str, float]
    supervision_cost: Mapping[str, float]
    transfer_cost: Mapping[str, float]
    value: Mapping[str, float]
    budget: float
    max_order: int
    objective: str

    @property
    def tasks(self) -> list[str]:
        return sorted(self.roles)

    @property
    def root_tasks(self) -> list[str]:
        return sorted(t for t, r in self.roles.items() if r in ROOT_ROLES)

    @property
    def target_tasks(self) -> list[str]:
        return sorted(t for t, r in self.roles.items() if r in TARGET_ROLES)

    @property
    def full_cost(self) -> float:
        """What supervising every task that may be supervised and every transfer would cost: any larger budget
        allows exactly the same policies."""
        return sum(self.supervision_cost[t] for t in self.root_tasks) + sum(
            self.transfer_cost[t] for t in self.target_tasks
        )

    def g(self, affinity: float) -> float:
        if self.objective == "affinity":
            return affinity
        return min(max(math.sqrt(max(affinity, 0.0)), SQRT_FLOOR), 1.0)

    def edge_coefficient(self, edge: Transfer) -> float:
        return self.value[edge.target] * self.g(edge.affinity)

    def root_coefficient(self, task: str) -> float:
        if self.roles[task] == ROLE_SOURCE_ONLY:
            return self.value[task] * self.g(0.0)
        # A target with no measured gold affinity gets g(0): supervising it is then worth only its floor.
        return self.value[task] * self.g(self.gold_affinity.get(task, 0.0))

    def cost_of(self, supervised: Iterable[str], transferred_targets: Iterable[str]) -> float:
        return sum(self.supervision_cost[t] for t in supervised) + sum(
            self.transfer_cost[t] for t in transferred_targets
        )


@dataclass(frozen=True)
class Taxonomy:
    """A solved taxonomy: the supervised tasks, the transfer serving each other target, objective and cost."""

    problem: TaxonomyProblem
    supervised: tuple[str, ...]
    transfers: Mapping[str, Transfer]
    objective: float
    cost: float
    solver: str
    seconds: float

    def serving(self, target: str) -> tuple[str, ...]:
        """The sources that serve `target`: (gold,) when it is supervised."""
        return (GOLD,) if target in self.supervised else self.transfers[target].sources


# -- building a problem from affinity rows -------------------------------------------------------------------


def _canonical_rows(rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> dict[tuple[str, tuple[str, ...]], float]:
    table: dict[tuple[str, tuple[str, ...]], float] = {}
    for row in rows:
        if isinstance(row, Mapping):
            target, sources, affinity = row["target"], row["sources"], row["affinity"]
        else:
            target, sources, affinity = row[0], row[1], row[-1]
        if affinity is None:
            continue  # a released win rate without an affinity: not a candidate of the BIP
        key = (str(target), tuple(sorted(str(s) for s in sources)))
        affinity = float(affinity)
        if not math.isfinite(affinity):
            raise TaxonomyInputError(f"affinity of {_label(*key)} is {affinity}")
        if key in table and table[key] != affinity:
            raise TaxonomyInputError(f"two affinities for {_label(*key)}: {table[key]} and {affinity}")
        table[key] = affinity
    if not table:
        raise TaxonomyInputError("no affinities: import the paper's (`tdb import-published`) or measure transfers")
    return table


def default_roles(rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> dict[str, str]:
    """Every task that is some row's target is a `target`; one that only ever serves as a source is
    `source-only` (in the release: colorization, jigsaw, inpainting, random and class_selected)."""
    return _roles_of(_canonical_rows(rows))


def _roles_of(table: Mapping[tuple[str, tuple[str, ...]], float]) -> dict[str, str]:
    targets = {t for t, _ in table}
    sources = {s for _, srcs in table for s in srcs} - set(NETWORK_BASELINES)
    return {t: (ROLE_TARGET if t in targets else ROLE_SOURCE_ONLY) for t in sorted(targets | sources)}


def build_problem(
    rows: Iterable[Sequence[Any] | Mapping[str, Any]],
    budget: float = DEFAULT_BUDGET,
    max_order: int = DEFAULT_MAX_ORDER,
    objective: str = "sqrt",
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    source_only: Sequence[str] = (),
    target_only: Sequence[str] = (),
    supervision_cost: Mapping[str, float] | None = None,
    transfer_cost: Mapping[str, float] | None = None,
    value: Mapping[str, float] | None = None,
    roles: Mapping[str, str] | None = None,
) -> TaxonomyProblem:
    """Validate the settings and keep the viable edges of `rows` (target, sources, [order,] affinity).

    Roles start from `default_roles`. `targets` limits the tasks that may be targets and `sources` those that may
    be sources (a task in only one of them becomes target-only or source-only, in neither unused);
    `source_only`/`target_only` then set single tasks; `roles` (task -> role) overrides everything.
    """
    table = _canonical_rows(rows)
    known_roles = _roles_of(table)
    known = sorted(known_roles)

    def check_names(names: Iterable[str], what: str) -> list[str]:
        names = list(names)
        unknown = sorted(set(names) - set(known))
        if unknown:
            hint = " (gold and scratch are baselines, not tasks)" if set(unknown) & set(NETWORK_BASELINES) else ""
            raise UnknownTaskError(f"unknown task(s) in {what}: {', '.join(unknown)}{hint}; known: {', '.join(known)}")
        return names

    if objective not in OBJECTIVES:
        raise TaxonomyInputError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if not isinstance(budget, int | float) or not math.isfinite(budget) or budget < 0:
        raise TaxonomyInputError(f"the budget must be a finite number >= 0, got {budget}")
    if int(max_order) != max_order or max_order < 1:
        raise TaxonomyInputError(f"the maximum order must be an integer >= 1, got {max_order}")

    can_target = {t for t, r in known_roles.items() if r == ROLE_TARGET}
    can_source = set(known)
    if targets is not None:
        can_target = set(check_names(targets, "--targets"))
        not_measured = sorted(can_target - {t for t, r in known_roles.items() if r == ROLE_TARGET})
        if not_measured:
            raise TaxonomyInputError(f"no transfer to {', '.join(not_measured)} was measured; it cannot be a target")
    if sources is not None:
        can_source = set(check_names(sources, "--sources"))
    final_roles: dict[str, str] = {}
    for task in known:
        is_target, is_source = task in can_target, task in can_source
        final_roles[task] = (
            ROLE_TARGET
            if is_target and is_source
            else ROLE_TARGET_ONLY
            if is_target
            else ROLE_SOURCE_ONLY
            if is_source
            else ROLE_UNUSED
        )
    overlap = sorted(set(check_names(source_only, "--source-only")) & set(check_names(target_only, "--target-only")))
    if overlap:
        raise TaxonomyInputError(f"task(s) both source-only and target-only: {', '.join(overlap)}")
    for task in source_only:
        final_roles[task] = ROLE_SOURCE_ONLY
    for task in target_only:
        if task not in {t for t, r in known_roles.items() if r == ROLE_TARGET}:
            raise TaxonomyInputError(f"no transfer to {task} was measured; it cannot be target-only")
        final_roles[task] = ROLE_TARGET_ONLY
    for task, role in (roles or {}).items():
        check_names([task], "roles")
        if role not in ROLES:
            raise TaxonomyInputError(f"unknown role {role!r} for {task}; choose one of {', '.join(ROLES)}")
        final_roles[task] = role

    def numbers(given: Mapping[str, float] | None, default: float, what: str) -> dict[str, float]:
        result = dict.fromkeys(known, default)
        for task, number in (given or {}).items():
            check_names([task], what)
            number = float(number)
            if not math.isfinite(number) or number < 0:
                raise TaxonomyInputError(f"{what} of {task} must be a finite number >= 0, got {number}")
            result[task] = number
        return result

    costs = numbers(supervision_cost, 1.0, "supervision cost")
    transfer_costs = numbers(transfer_cost, 0.0, "transfer cost")
    values = numbers(value, 1.0, "value")

    edges = []
    for (target, srcs), affinity in sorted(table.items()):
        if final_roles.get(target) not in TARGET_ROLES or len(srcs) > max_order or target in srcs:
            continue
        if any(s in NETWORK_BASELINES or final_roles[s] not in ROOT_ROLES for s in srcs):
            continue
        edges.append(Transfer(target, srcs, affinity))
    gold_affinity = {t: a for (t, srcs), a in table.items() if srcs == (GOLD,)}

    served = {e.target for e in edges}
    stranded = sorted(t for t, r in final_roles.items() if r == ROLE_TARGET_ONLY and t not in served)
    if stranded:
        raise InfeasibleError(
            f"target-only task(s) {', '.join(stranded)} cannot be supervised and have no viable transfer"
            f" (every measured transfer to them of order <= {max_order} uses an unused, target-only or gold source)"
        )
    return TaxonomyProblem(
        roles=final_roles,
        edges=tuple(edges),
        gold_affinity=gold_affinity,
        supervision_cost=costs,
        transfer_cost=transfer_costs,
        value=values,
        budget=float(budget),
        max_order=int(max_order),
        objective=objective,
    )


# -- solving -------------------------------------------------------------------------------------------------


def solver_name() -> str:
    """HiGHS through PuLP when it is installed, else PuLP's bundled CBC (else a CBC on the PATH: PuLP 4 drops
    the bundled one)."""
    available = set(pulp.listSolvers(onlyAvailable=True))
    for name in ("HiGHS", "HiGHS_CMD", "PULP_CBC_CMD", "COIN_CMD"):
        if name in available:
            return name
    raise TdbError("PuLP has no MILP solver available (expected its bundled CBC)")


def _solver(name: str) -> pulp.LpSolver:
    # Exact optimum, no early stop: zero relative and absolute gaps. CBC also skips any new incumbent that improves
    # by less than its cutoff increment (default 1e-5), which is exactly the sqrt floor a source-only root is worth
    # and more than many affinity differences, so it is lowered too.
    if name in ("PULP_CBC_CMD", "COIN_CMD"):
        return pulp.getSolver(name, msg=False, gapRel=0.0, gapAbs=0.0, options=["increment 1e-10"])
    return pulp.getSolver(name, msg=False, gapRel=0.0, gapAbs=0.0)


def _binary(model: pulp.LpProblem, name: str) -> pulp.LpVariable:
    if hasattr(model, "add_variable"):  # PuLP >= 3.3, where a free-standing LpVariable is deprecated
        return model.add_variable(name, cat=pulp.LpBinary)
    return pulp.LpVariable(name, cat=pulp.LpBinary)


def _model(problem: TaxonomyProblem, minimise_cost: bool) -> tuple[pulp.LpProblem, dict, list]:
    sense = pulp.LpMinimize if minimise_cost else pulp.LpMaximize
    model = pulp.LpProblem("taxonomy", sense)
    roots = {t: _binary(model, f"root_{i}") for i, t in enumerate(problem.root_tasks)}
    edges = [_binary(model, f"edge_{i}") for i in range(len(problem.edges))]
    cost = pulp.LpAffineExpression(
        [(roots[t], problem.supervision_cost[t]) for t in roots]
        + [(x, problem.transfer_cost[e.target]) for x, e in zip(edges, problem.edges, strict=True)]
    )
    if minimise_cost:
        model += cost
    else:
        model += pulp.LpAffineExpression(
            [(roots[t], problem.root_coefficient(t)) for t in roots]
            + [(x, problem.edge_coefficient(e)) for x, e in zip(edges, problem.edges, strict=True)]
        )
        model += cost <= problem.budget, "budget"
    incoming: dict[str, list] = {t: [] for t in problem.target_tasks}
    using: dict[tuple[str, str], list] = {}
    for x, edge in zip(edges, problem.edges, strict=True):
        incoming[edge.target].append(x)
        for source in edge.sources:
            using.setdefault((edge.target, source), []).append(x)
    # The API's `sum_{s in S} root_s - |S| x_e >= 0`, written per (target, source): the edges into t that use s
    # sum to at most root_s. With at most one edge per target this allows exactly the same 0/1 solutions, but its
    # LP relaxation is far tighter and it has ~600 rows instead of one per edge and source, which is what keeps
    # a paper-sized solve well under a second.
    for i, ((_target, source), xs) in enumerate(sorted(using.items())):
        model += pulp.LpAffineExpression([(x, 1.0) for x in xs] + [(roots[source], -1.0)]) <= 0, f"uses_{i}"
    for i, (target, xs) in enumerate(incoming.items()):
        terms = [(x, 1.0) for x in xs] + ([(roots[target], 1.0)] if target in roots else [])
        model += pulp.LpAffineExpression(terms) == 1, f"served_{i}"
    # Source-only tasks have no incoming edges, so their `incoming + root <= 1` is the binary bound itself.
    return model, roots, edges


def solve(problem: TaxonomyProblem, solver: str | None = None) -> Taxonomy:
    """Solve the BIP exactly. Raises InfeasibleError (exit code 2) with the cheapest feasible cost when the budget
    is too small."""
    name = solver or solver_name()
    start = time.perf_counter()
    model, roots, edges = _model(problem, minimise_cost=False)
    model.solve(_solver(name))
    seconds = time.perf_counter() - start
    if pulp.LpStatus[model.status] != "Optimal":
        if pulp.LpStatus[model.status] == "Infeasible":
            raise InfeasibleError(_why_infeasible(problem, name))
        raise TdbError(f"the {name} solver stopped with status {pulp.LpStatus[model.status]}")
    supervised = tuple(t for t, x in roots.items() if x.value() > 0.5)
    transfers = {e.target: e for x, e in zip(edges, problem.edges, strict=True) if x.value() > 0.5}
    taxonomy = _checked(problem, supervised, transfers, name, seconds)
    return taxonomy


def _checked(
    problem: TaxonomyProblem, supervised: tuple[str, ...], transfers: dict[str, Transfer], solver: str, seconds: float
) -> Taxonomy:
    """Recompute objective and cost from the chosen variables and re-check every constraint: a solver's
    tolerances must not leak into reported numbers."""
    chosen = set(supervised)
    for target in problem.target_tasks:
        served = (target in chosen) + (target in transfers)
        if served != 1:
            raise TdbError(f"solver returned an invalid taxonomy: {target} is served {served} times")
    for edge in transfers.values():
        if not set(edge.sources) <= chosen:
            raise TdbError(f"solver returned an invalid taxonomy: {_label(edge.target, edge.sources)} unsupervised")
    cost = problem.cost_of(chosen, transfers)
    if cost > problem.budget + 1e-6:
        raise TdbError(f"solver returned a taxonomy costing {cost} over the budget {problem.budget}")
    objective = sum(problem.root_coefficient(t) for t in chosen) + sum(
        problem.edge_coefficient(e) for e in transfers.values()
    )
    return Taxonomy(
        problem=problem,
        supervised=tuple(sorted(chosen)),
        transfers=dict(sorted(transfers.items())),
        objective=objective,
        cost=cost,
        solver=solver,
        seconds=seconds,
    )


def minimum_cost(problem: TaxonomyProblem, solver: str | None = None) -> float:
    """The cost of the cheapest feasible taxonomy, whatever its objective (always feasible after build_problem:
    supervising every root-capable task serves every target)."""
    model, _roots, _edges = _model(problem, minimise_cost=True)
    model.solve(_solver(solver or solver_name()))
    return float(pulp.value(model.objective) or 0.0)


def _why_infeasible(problem: TaxonomyProblem, solver: str) -> str:
    cheapest = minimum_cost(problem, solver)
    target_only = [t for t, r in problem.roles.items() if r == ROLE_TARGET_ONLY]
    cheapest_text = plain_number(round(cheapest, 9))
    reasons = [
        f"infeasible: budget {plain_number(problem.budget)} is below {cheapest_text}, the cost of the cheapest"
        f" taxonomy that serves every target (order <= {problem.max_order})"
    ]
    if target_only:
        floor = sum(problem.transfer_cost[t] for t in target_only)
        reasons.append(
            f"the {len(target_only)} target-only task(s) ({', '.join(sorted(target_only))}) cannot be supervised,"
            f" so each needs a transfer whose sources are all supervised"
            + (f" (their transfer costs alone sum to {plain_number(floor)})" if floor else "")
        )
    return "; ".join(reasons)


def _label(target: str, sources: Sequence[str]) -> str:
    return f"{','.join(sources)} -> {target}"


def plain_number(x: float) -> int | float:
    """6.0 -> 6 so budgets and costs print as the user typed them."""
    return int(x) if float(x).is_integer() else float(x)
