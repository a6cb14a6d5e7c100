"""Commands of step 4: `tdb taxonomy` (the budgeted BIP, one solve or a sweep) and `tdb report` (the HTML report)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from taskonomy_db.affinity import active_origin, bootstrap_caveat
from taskonomy_db.cli.app import FiniteFloat, cli, echo_json, format_option, open_workspace, warn, workspace_option
from taskonomy_db.evaluation import (
    load_affinity_rows,
    load_measurements,
    per_target,
    sweep,
    sweep_budget_limit,
    sweep_tables,
    taxonomy_json,
    top_sweep_budget,
)
from taskonomy_db.report import REPORT_CLUSTERS, REPORT_SWEEP_BUDGET
from taskonomy_db.stability import taxonomy_stability
from taskonomy_db.taxonomy import (
    DEFAULT_BUDGET,
    DEFAULT_MAX_ORDER,
    OBJECTIVES,
    Taxonomy,
    build_problem,
    plain_number,
    solve,
)

SWEEP_MAX_BUDGET = 10
SWEEP_MAX_ORDER = 4  # the paper's tables stop at order 4
MAX_RANDOM_POLICIES = 100_000  # past this the percentile no longer moves, and the draw takes minutes per cell


def _names(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists: --targets a,b --targets c."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


class TaskNumbers(click.ParamType):
    """TASK=NUMBER[,TASK=NUMBER...] with every number finite and >= 0 (a cost or a value), as (task, number) pairs.

    A malformed pair or number is a usage error (exit 2), as a bad --budget is; an unknown task is not known
    until the affinities are read, so build_problem refuses it (exit 1)."""

    name = "TASK=NUMBER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):  # already converted
            return value
        pairs = []
        for part in str(value).split(","):
            task, sep, number = part.partition("=")
            if not sep or not task.strip():
                self.fail(f"expected TASK=NUMBER, got {part!r}", param, ctx)
            try:
                parsed = float(number)
            except ValueError:
                self.fail(f"{number!r} is not a number (in {part!r})", param, ctx)
            if not math.isfinite(parsed) or parsed < 0:
                self.fail(f"{number.strip()!r} is not a finite number >= 0 (in {part!r})", param, ctx)
            pairs.append((task.strip(), parsed))
        return tuple(pairs)


def _pairs(values: tuple[tuple[tuple[str, float], ...], ...]) -> dict[str, float]:
    """Repeatable TASK=NUMBER options merged, a later pair for a task winning."""
    return {task: number for pairs in values for task, number in pairs}


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _render_taxonomy(taxonomy: Taxonomy, served: dict[str, dict[str, Any]], markdown: bool) -> str:
    problem = taxonomy.problem
    heading = (
        f"taxonomy: budget {plain_number(problem.budget)}, max order {problem.max_order},"
        f" objective {problem.objective} = {taxonomy.objective:.6g}"
        f" (cost {plain_number(taxonomy.cost)}, {taxonomy.solver}, {taxonomy.seconds:.2f} s)"
    )
    supervised = f"supervised ({len(taxonomy.supervised)}): {', '.join(taxonomy.supervised) or '(none)'}"
    stable = any("stable" in info for info in served.values())
    rows = [
        [
            target,
            "(supervised)" if info["supervised"] else " + ".join(info["sources"]),
            str(info["order"]),
            _cell(info["affinity"], 4),
            _cell(info["gain"]),
            _cell(info["quality"]),
            *([f"{info['stable']:.0%}"] if stable else []),
        ]
        for target, info in served.items()
    ]
    header = ["target", "served by", "order", "affinity", "gain", "quality", *(["stable"] if stable else [])]
    table = _table(header, rows, markdown)
    if markdown:
        return f"## Taxonomy\n\n{heading}\n\n{supervised}\n\n{table}"
    return f"{heading}\n{supervised}\n\n{table}"


def _render_sweep(tables: dict[str, Any], markdown: bool) -> str:
    budgets = tables["budgets"]
    header = ["target", *(f"B={plain_number(b)}" for b in budgets)]
    parts = []
    for order in tables["orders"]:
        for name in ("gain", "quality"):
            rows = [
                [target, *(_cell(tables[name][order][target].get(b), 2) for b in budgets)]
                for target in tables["targets"]
            ]
            title = f"{name.capitalize()}, max order {order}"
            parts.append((f"## {title}" if markdown else f"{title}:") + "\n\n" + _table(header, rows, markdown))
    rows = [
        [
            str(s["max_order"]),
            str(plain_number(s["budget"])),
            _cell(s["mean_quality"]),
            _cell(s["random_mean_quality"]),
            _cell(s["random_p95_quality"]),
            str(s["n_random"]),
            _cell(s["percentile"], 1) if s["feasible"] else "infeasible",
        ]
        for s in tables["significance"]
    ]
    header = ["max order", "budget", "mean quality", "random mean", "random p95", "n random", "percentile"]
    title = "Structure significance (taxonomy mean Quality against random feasible policies)"
    parts.append((f"## {title}" if markdown else f"{title}:") + "\n\n" + _table(header, rows, markdown))
    return "\n\n".join(parts)


def _json_tables(tables: dict[str, Any]) -> dict[str, Any]:
    def keyed(table: dict[int, dict[str, dict[float, Any]]]) -> dict[str, Any]:
        return {
            str(order): {t: {plain_number(b): v for b, v in row.items()} for t, row in per_order.items()}
            for order, per_order in table.items()
        }

    return {
        **tables,
        "budgets": [plain_number(b) for b in tables["budgets"]],
        "gain": keyed(tables["gain"]),
        "quality": keyed(tables["quality"]),
        "significance": [{**s, "budget": plain_number(s["budget"])} for s in tables["significance"]],
    }


@cli.command("taxonomy")
@click.option(
    "--budget",
    type=FiniteFloat(min=0),
    default=None,
    help=f"Supervision budget, a finite number >= 0 (default {plain_number(DEFAULT_BUDGET)}); with --sweep the"
    f" largest budget, a whole number >= 1 (default {SWEEP_MAX_BUDGET}).",
)
@click.option(
    "--max-order",
    type=click.IntRange(1),
    default=None,
    help=f"Largest source set of a transfer (default {DEFAULT_MAX_ORDER}); with --sweep the largest order"
    f" (default {SWEEP_MAX_ORDER}).",
)
@click.option(
    "--objective",
    type=click.Choice(OBJECTIVES),
    default="sqrt",
    show_default=True,
    help="sqrt: the public API's sqrt(affinity) clipped to [1e-5, 1]; affinity: the paper's formula.",
)
@click.option("--targets", multiple=True, help="Tasks that may be targets (comma-separated; default: all measured).")
@click.option("--sources", multiple=True, help="Tasks that may be sources (comma-separated; default: all).")
@click.option("--source-only", multiple=True, help="Tasks that may only be sources (comma-separated).")
@click.option("--target-only", multiple=True, help="Tasks that cannot be supervised, only transferred to.")
@click.option(
    "--cost", multiple=True, type=TaskNumbers(), metavar="TASK=C", help="Cost of fully supervising TASK (default 1)."
)
@click.option(
    "--transfer-cost",
    multiple=True,
    type=TaskNumbers(),
    metavar="TASK=C",
    help="Cost of a transfer to TASK (default 0).",
)
@click.option(
    "--value", multiple=True, type=TaskNumbers(), metavar="TASK=V", help="Relative value of TASK (default 1)."
)
@click.option("--sweep", "do_sweep", is_flag=True, help="Budgets 1..B x max orders 1..K: Gain/Quality tables.")
@click.option(
    "--random-policies",
    type=click.IntRange(1, MAX_RANDOM_POLICIES),
    default=100,
    show_default=True,
    help="Random feasible policies per sweep cell for structure significance.",
)
@click.option("--seed", type=int, default=None, help="Seed of the random policies (default: the study's seed).")
@click.option(
    "--stability",
    is_flag=True,
    help="Also solve every building-bootstrap replicate ([analysis] bootstrap): how often each choice recurs.",
)
@format_option(("text", "json", "md"), default="text")
@workspace_option
def taxonomy_command(
    budget: float | None,
    max_order: int | None,
    objective: str,
    targets: tuple[str, ...],
    sources: tuple[str, ...],
    source_only: tuple[str, ...],
    target_only: tuple[str, ...],
    cost: tuple[tuple[tuple[str, float], ...], ...],
    transfer_cost: tuple[tuple[tuple[str, float], ...], ...],
    value: tuple[tuple[tuple[str, float], ...], ...],
    do_sweep: bool,
    random_policies: int,
    seed: int | None,
    stability: bool,
    output_format: str,
    workspace_path: Path | None,
) -> None:
    """Choose which tasks to supervise and the transfer serving every other target, within a budget.

    Solves the binary integer program of the Taskonomy method on the workspace's `affinity` view with the
    public API's semantics: a transfer only from supervised sources, each target supervised or served by one
    transfer, budget over supervision and transfer costs.

    Exit code 2: a usage error, such as a budget, cost or value that is not a finite number >= 0 (negative, nan,
    inf, not a number) or, with --sweep, a budget that is not a whole number >= 1; and infeasible settings, with
    why. Exit code 1: the workspace cannot answer, such as an unknown task or no affinities.
    With --sweep: budgets 1..B and max orders 1..K give the paper's Gain and Quality tables and the structure
    significance of each taxonomy against random feasible policies of the same budget and order.
    With --stability: the same taxonomy solved on every building-bootstrap replicate of the measured
    affinities; each target's column `stable` is the share of replicates serving it the same way, and a line
    gives the share with the same supervised set and each task's share supervised.

    Example:

        tdb taxonomy --budget 4 --max-order 2 --target-only vanishing_point --cost normal=2 --format json

        tdb taxonomy --budget 3 --stability
    """
    if do_sweep and budget is not None and (budget < 1 or budget != int(budget)):  # a usage error: before any read
        raise click.BadParameter(
            f"--sweep runs budgets 1, 2, ... up to --budget: a whole number >= 1, got {plain_number(budget)}",
            ctx=click.get_current_context(),
            param_hint="'--budget'",
        )
    if do_sweep and stability:
        raise click.UsageError("--stability is for one taxonomy; it does not combine with --sweep")
    workspace = open_workspace(workspace_path)
    if stability and active_origin(workspace.db) != "measured":
        raise click.UsageError(
            f"--stability needs the measured origin (replicates resample per-image losses, which"
            f" {active_origin(workspace.db)} has not); `tdb origin measured` serves the workspace's transfers"
        )
    rows = load_affinity_rows(workspace.db)
    measurements = load_measurements(workspace.db)
    settings: dict[str, Any] = {
        "objective": objective,
        "targets": _names(targets) or None,
        "sources": _names(sources) or None,
        "source_only": _names(source_only),
        "target_only": _names(target_only),
        "supervision_cost": _pairs(cost),
        "transfer_cost": _pairs(transfer_cost),
        "value": _pairs(value),
    }
    markdown = output_format == "md"
    if do_sweep:
        top_order = SWEEP_MAX_ORDER if max_order is None else max_order
        top_budget = top_sweep_budget(budget, SWEEP_MAX_BUDGET, sweep_budget_limit(rows, top_order, **settings))
        cells = sweep(
            rows,
            measurements,
            budgets=[float(b) for b in range(1, int(top_budget) + 1)],
            orders=list(range(1, top_order + 1)),
            n_random=random_policies,
            seed=workspace.seed if seed is None else seed,
            **settings,
        )
        tables = sweep_tables(cells, measurements)
        if output_format == "json":
            echo_json({"objective_kind": objective, **_json_tables(tables)})
        else:
            click.echo(_render_sweep(tables, markdown))
        return
    problem = build_problem(
        rows,
        budget=DEFAULT_BUDGET if budget is None else budget,
        max_order=DEFAULT_MAX_ORDER if max_order is None else max_order,
        **settings,
    )
    if not stability:
        taxonomy = solve(problem)
        if output_format == "json":
            echo_json(taxonomy_json(taxonomy, measurements))
            return
        click.echo(_render_taxonomy(taxonomy, per_target(taxonomy, measurements), markdown))
        return
    found = taxonomy_stability(workspace.db, problem.budget, problem.max_order, **settings)
    caveat = bootstrap_caveat(workspace.db)[2]
    if caveat:
        warn(caveat)
    if output_format == "json":
        echo_json({**taxonomy_json(found.taxonomy, measurements), "stability": found.as_json()})
        return
    served = per_target(found.taxonomy, measurements)
    for target, info in served.items():
        info["stable"] = found.serving_share[target]
    click.echo(_render_taxonomy(found.taxonomy, served, markdown))
    shares = ", ".join(f"{t} {share:.0%}" for t, share in sorted(found.supervised_share.items(), key=lambda x: -x[1]))
    skipped = f" ({found.skipped} left out: a target without images, or infeasible)" if found.skipped else ""
    click.echo(
        f"\nstability: same supervised set in {found.same_supervised_share:.0%} of {found.replicates} replicates"
        f"{skipped}; supervised in: {shares}"
    )


@cli.command("report")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="HTML file to write.")
@click.option(
    "--budgets",
    default="2,4,8",
    show_default=True,
    help="Budgets whose taxonomy graphs to draw: comma-separated finite numbers >= 0.",
)
@click.option("--max-order", type=click.IntRange(min=1), default=4, show_default=True, help="Largest transfer order.")
@click.option(
    "--sweep-budget",
    type=click.IntRange(min=1),
    default=None,
    help=f"Tables cover budgets 1..N (default {REPORT_SWEEP_BUDGET}, or what supervising every task costs if less).",
)
@click.option("--objective", type=click.Choice(OBJECTIVES), default="sqrt", show_default=True)
@click.option("--random-policies", type=click.IntRange(1, MAX_RANDOM_POLICIES), default=100, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of the random policies (default: the study's seed).")
@click.option(
    "--clusters",
    type=click.IntRange(min=1),
    default=None,
    help=f"Groups in the tree (default {REPORT_CLUSTERS}, or the number of tasks if less).",
)
@workspace_option
def report_command(
    out: Path | None,
    budgets: str,
    max_order: int,
    sweep_budget: int | None,
    objective: str,
    random_policies: int,
    seed: int | None,
    clusters: int | None,
    workspace_path: Path | None,
) -> None:
    """Write the study's report: one self-contained HTML file, viewable offline.

    Sections: the first-order matrix before AHP (Quality, the raw win rate against gold) and after (the AHP
    affinity), the task similarity tree, the taxonomy graph for each of --budgets, the Gain and Quality tables
    for budgets 1..--sweep-budget and orders 1..--max-order, and structure significance against random
    policies. Plots are embedded as PNG; there is no script and nothing is fetched.

    Example:

        tdb report --budgets 3,6 --out study-report.html
    """
    from taskonomy_db.report import build_report

    chosen = [float(b) for b in _pairs_free_numbers(budgets, "--budgets")]
    workspace = open_workspace(workspace_path)
    path = build_report(
        workspace,
        out=out,
        budgets=chosen,
        max_order=max_order,
        sweep_budget=sweep_budget,
        objective=objective,
        n_random=random_policies,
        seed=seed,
        clusters=clusters,
    )
    click.echo(f"wrote {path}")


def _pairs_free_numbers(text: str, what: str) -> list[float]:
    """Comma-separated budgets, each a finite number >= 0; anything else is a usage error, as a bad --budget is."""
    numbers = []
    for part in text.split(","):
        try:
            number = float(part)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise click.BadParameter(
                f"expected comma-separated finite numbers >= 0, got {part!r}",
                ctx=click.get_current_context(),
                param_hint=f"'{what}'",
            )
        numbers.append(number)
    return numbers
