"""The study's HTML report: one self-contained file (plots as base64 PNG, inline CSS, no script, no network).

Sections: the first-order matrix before and after AHP, the task similarity tree, the taxonomy for chosen budgets,
the Gain and Quality tables by budget and maximum order, and structure significance against random policies.

"Before AHP" is the first-order Quality matrix: each transfer's raw win rate against the gold standard, the
per-pair number the paper starts from. It is not comparable across targets (some targets are easy for every
source) and says nothing about how sources rank against each other. "After AHP" is the affinity: each target's
candidates compared pairwise and normalised by the principal eigenvector, so every column sums to 1 over all
candidates of that target (higher orders included, hence first-order columns sum to less).
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from taskonomy_db import __version__
from taskonomy_db.affinity import AffinityMatrix, active_origin, bootstrap_design, first_order_matrix
from taskonomy_db.atomic import atomic_path
from taskonomy_db.db import Database
from taskonomy_db.errors import InfeasibleError, TdbError
from taskonomy_db.evaluation import (
    Measurements,
    load_affinity_rows,
    load_measurements,
    per_target,
    sweep,
    sweep_budget_limit,
    sweep_tables,
    top_sweep_budget,
)
from taskonomy_db.stability import Stability, taxonomy_stability
from taskonomy_db.taxonomy import Taxonomy, build_problem, plain_number, solve
from taskonomy_db.workspace import Workspace

REPORT_FILE = "report.html"
REPORT_SWEEP_BUDGET = 10
REPORT_CLUSTERS = 4
SECTIONS = (
    ("matrix", "First-order matrix before and after AHP"),
    ("tree", "Task similarity tree"),
    ("taxonomy", "Taxonomies for chosen budgets"),
    ("tables", "Gain and Quality by budget and maximum order"),
    ("significance", "Structure significance"),
)


def _pyplot() -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(png_base64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64}">'


# -- plots ----------------------------------------------------------------------------------------------------


def plot_matrices(quality: Any, affinity: Any) -> str:
    """Before (Quality) and after (AHP affinity, log colour scale) as two source x target heatmaps."""
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(18, 0.3 * max(len(quality.sources), len(affinity.sources)) + 3))
    for ax, matrix, title in (
        (axes[0], quality, "Before AHP: Quality (win rate against gold)"),
        (axes[1], affinity, "After AHP: affinity (log colour scale)"),
    ):
        values = _grid(matrix)
        if matrix is affinity:
            positive = values[np.isfinite(values) & (values > 0)]
            low = max(float(positive.min()) if positive.size else 1e-4, 1e-5)
            norm = LogNorm(vmin=low, vmax=max(float(np.nanmax(values)), low * 10))
            _heatmap(figure, ax, matrix, np.where(values > 0, values, np.nan), title, cmap="viridis", norm=norm)
        else:
            _heatmap(figure, ax, matrix, values, title, cmap="viridis", vmin=0.0, vmax=max(0.5, np.nanmax(values)))
    figure.tight_layout()
    return _png(figure)


def _grid(matrix: AffinityMatrix) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in matrix.values], dtype=float)


def _heatmap(figure: Any, ax: Any, matrix: AffinityMatrix, values: np.ndarray, title: str, **style: Any) -> None:
    """One source x target heatmap with its labelled axes and colour bar."""
    image = ax.imshow(values, aspect="auto", **style)
    ax.set_xticks(range(len(matrix.targets)), matrix.targets, rotation=90, fontsize=8)
    ax.set_yticks(range(len(matrix.sources)), matrix.sources, fontsize=8)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, fraction=0.04)


def plot_taxonomy(taxonomy: Taxonomy) -> str:
    """Supervised tasks on top, transferred targets below, one arrow per source of each serving transfer."""
    plt = _pyplot()
    supervised = list(taxonomy.supervised)
    # Order the bottom row by the position of each target's first source, so arrows cross less.
    transferred = sorted(taxonomy.transfers, key=lambda t: (supervised.index(taxonomy.transfers[t].sources[0]), t))
    width = max(len(supervised), len(transferred), 4)
    figure, ax = plt.subplots(figsize=(max(8.0, 0.75 * width), 4.8))
    top = {t: ((i + 0.5) * width / max(len(supervised), 1), 1.0) for i, t in enumerate(supervised)}
    bottom = {t: ((i + 0.5) * width / max(len(transferred), 1), 0.0) for i, t in enumerate(transferred)}
    palette = plt.get_cmap("tab10")
    for target in transferred:
        transfer = taxonomy.transfers[target]
        colour = palette(0) if transfer.order == 1 else palette(transfer.order % 10)
        for source in transfer.sources:
            ax.annotate(
                "",
                xy=bottom[target],
                xytext=top[source],
                arrowprops={"arrowstyle": "-|>", "color": colour, "alpha": 0.55, "shrinkA": 8, "shrinkB": 8},
            )
    problem = taxonomy.problem
    for task, (x, y) in top.items():
        served = task in problem.target_tasks
        ax.scatter([x], [y], s=260, color="#1f6f3f" if served else "#8fbf9f", zorder=3, edgecolors="black")
        ax.text(x, y + 0.09, task, rotation=35, ha="left", va="bottom", fontsize=8)
    for task, (x, y) in bottom.items():
        ax.scatter([x], [y], s=160, color="#d9e6f2", zorder=3, edgecolors="black")
        ax.text(x, y - 0.09, task, rotation=-35, ha="left", va="top", fontsize=8)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-1.1, 1.9)
    ax.axis("off")
    ax.set_title(
        f"budget {plain_number(problem.budget)}, max order {problem.max_order}: {len(supervised)} supervised"
        f" (dark: targets, light: source-only), {len(transferred)} transferred; arrow colour = order"
    )
    return _png(figure)


def plot_significance(tables: dict[str, Any], cells_by_key: dict[tuple[int, float], Any]) -> str:
    """Per maximum order: the random policies' mean Quality (box per budget) and the taxonomy's (red dot)."""
    plt = _pyplot()
    orders, budgets = tables["orders"], tables["budgets"]
    figure, axes = plt.subplots(1, len(orders), figsize=(4.5 * len(orders), 3.8), sharey=True, squeeze=False)
    for ax, order in zip(axes[0], orders, strict=True):
        randoms = [list(cells_by_key[(order, b)].random_mean_qualities) or [np.nan] for b in budgets]
        ours = [cells_by_key[(order, b)].mean_quality for b in budgets]
        positions = list(range(1, len(budgets) + 1))
        ax.boxplot(randoms, positions=positions, widths=0.6, showfliers=False)
        ax.plot(positions, [np.nan if v is None else v for v in ours], "o-", color="tab:red", label="taxonomy")
        ax.set_xticks(positions, [str(plain_number(b)) for b in budgets])
        ax.set_xlabel("budget")
        ax.set_title(f"max order {order}")
    axes[0][0].set_ylabel("mean Quality over targets")
    axes[0][0].legend(loc="upper left", fontsize=8)
    figure.suptitle("Taxonomy vs random feasible policies of the same budget and order")
    figure.tight_layout()
    return _png(figure)


# -- html -----------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
img { max-width: 100%; } .note { color: #555; font-size: 0.9em; } nav a { margin-right: 1em; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], shade: bool = False) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "<td></td>"
        if isinstance(value, float):
            style = ""
            if shade and 0.0 <= value <= 1.0:
                # Green for high win rates, as in the paper's tables; white at 0.
                style = f' style="background: rgba(40, 160, 80, {value * 0.7:.2f})"'
            return f"<td{style}>{value:.2f}</td>" if shade else f"<td>{value:.3g}</td>"
        if isinstance(value, int):
            return f"<td>{value}</td>"
        return f'<td class="text">{html.escape(str(value))}</td>'

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(key: str, body: str) -> str:
    title = dict(SECTIONS)[key]
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def build_report(
    workspace: Workspace,
    out: Path | None = None,
    budgets: Sequence[float] = (2, 4, 8),
    max_order: int = 4,
    sweep_budget: int | None = None,
    objective: str = "sqrt",
    n_random: int = 100,
    seed: int | None = None,
    clusters: int | None = None,
) -> Path:
    """Write the report (default: reports/report.html in the workspace) and return its path.

    sweep_budget and clusters default to REPORT_SWEEP_BUDGET and REPORT_CLUSTERS, or less where the study is
    smaller; a value given beyond what the study allows (a budget above what supervising every task costs, more
    clusters than tasks) raises before anything is written."""
    from taskonomy_db.tree import build_tree, draw_dendrogram
    from taskonomy_db.tree_support import cluster_support

    db = workspace.db
    seed = workspace.seed if seed is None else seed
    rows = load_affinity_rows(db)
    measurements = load_measurements(db)
    origin = active_origin(db)
    # Intervals, support and stability come from resampling per-image losses: the workspace's own transfers only.
    uncertain = origin == "measured" and bootstrap_design(db)[0] > 0
    parts = []

    quality_matrix = first_order_matrix(db, column="quality")
    affinity_matrix = first_order_matrix(db, column="affinity")
    parts.append(
        _section(
            "matrix",
            '<p class="note">Rows are sources, columns targets, first-order transfers only. <b>Before AHP</b>:'
            " Quality, the raw win rate of each transfer against the target's gold standard (gold itself 0.5),"
            " not comparable across targets. <b>After AHP</b>: the affinity, each target's candidates compared"
            " pairwise and normalised by the principal eigenvector (a column sums to 1 over all of the target's"
            " candidates, higher orders included). Blank: not measured.</p>"
            + _img(plot_matrices(quality_matrix, affinity_matrix), "first-order matrix before and after AHP")
            + (_uncertainty_figure(db, affinity_matrix) if uncertain else ""),
        )
    )

    sweep_budget = top_sweep_budget(
        sweep_budget, REPORT_SWEEP_BUDGET, sweep_budget_limit(rows, max_order, objective=objective)
    )
    try:
        tree = build_tree(db)
    except TdbError as error:
        tree = None
        tree_body = f'<p class="note">The task tree is not available: {html.escape(str(error))}</p>'
    if tree is not None:
        # An asked-for count above the tasks raises here (TaskTree.clusters), before anything is written.
        assignment = tree.clusters(min(REPORT_CLUSTERS, len(tree.tasks)) if clusters is None else clusters)
        support = cluster_support(db, tree, max(assignment.values())).support if uncertain else None
        with tempfile.TemporaryDirectory() as tmp:
            png_path, _svg = draw_dendrogram(tree, assignment, Path(tmp), support)
            tree_png = base64.b64encode(png_path.read_bytes()).decode("ascii")
        groups = [
            [n, ", ".join(sorted(t for t, c in assignment.items() if c == n)), *([support[n]] if support else [])]
            for n in sorted(set(assignment.values()))
        ]
        tree_body = (
            '<p class="note">Agglomerative clustering of tasks by their transferring-out pattern'
            " (see <code>tdb tree</code>)"
            + (
                "; support: the share of building-bootstrap replicates whose tree, cut as this one, has exactly"
                " the cluster"
                if support
                else ""
            )
            + ".</p>"
            + _img(tree_png, "task similarity tree")
            + _table(["cluster", "tasks", *(["support"] if support else [])], groups)
        )
    parts.append(_section("tree", tree_body))

    sweep_budgets = [float(b) for b in range(1, sweep_budget + 1)]
    cells = sweep(
        rows,
        measurements,
        budgets=sweep_budgets,
        orders=list(range(1, max_order + 1)),
        n_random=n_random,
        seed=seed,
        objective=objective,
    )
    cells_by_key = {(c.max_order, c.budget): c for c in cells}
    tables = sweep_tables(cells, measurements)

    taxonomy_parts = []
    for budget in budgets:
        cell = cells_by_key.get((max_order, float(budget)))
        title = f"<h3>Budget {plain_number(budget)}, max order {max_order}</h3>"
        try:
            taxonomy = (
                cell.taxonomy
                if cell and cell.taxonomy
                else solve(build_problem(rows, budget=budget, max_order=max_order, objective=objective))
            )
        except InfeasibleError as error:
            taxonomy_parts.append(f"{title}<p>{html.escape(str(error))}</p>")
            continue
        stability = taxonomy_stability(db, budget, max_order, objective=objective) if uncertain and taxonomy else None
        taxonomy_parts.append(title + _taxonomy_summary(taxonomy, measurements, stability))
    parts.append(
        _section(
            "taxonomy",
            f'<p class="note">Objective <code>{objective}</code>, default roles, costs and values'
            " (<code>tdb taxonomy</code> sets them).</p>" + "".join(taxonomy_parts),
        )
    )

    header = ["target", *(f"B={plain_number(b)}" for b in tables["budgets"])]
    table_parts = [
        '<p class="note">Per target, the Gain (win rate against scratch) and Quality (win rate against gold) of the'
        " transfer the taxonomy serves it with, for each budget (columns) and maximum order; a supervised target"
        " counts as gold. Blank: infeasible or not measured.</p>"
    ]
    for order in tables["orders"]:
        for name in ("gain", "quality"):
            body = [[t, *(tables[name][order][t].get(b) for b in tables["budgets"])] for t in tables["targets"]]
            table_parts.append(f"<h3>{name.capitalize()}, max order {order}</h3>" + _table(header, body, shade=True))
    parts.append(_section("tables", "".join(table_parts)))

    significance_rows = [
        [
            s["max_order"],
            plain_number(s["budget"]),
            s["mean_quality"],
            s["random_mean_quality"],
            s["random_p95_quality"],
            s["n_random"],
            "infeasible" if not s["feasible"] else f"{s['percentile']:.1f}",
        ]
        for s in tables["significance"]
    ]
    parts.append(
        _section(
            "significance",
            f'<p class="note">Each taxonomy\'s mean Quality over targets against {n_random} random feasible policies'
            " of the same budget and maximum order (a random set of supervised tasks filling the budget, then a"
            f" random viable transfer per other target; seed {seed}). Percentile: share of random policies below"
            " the taxonomy, ties counted half.</p>"
            + _img(plot_significance(tables, cells_by_key), "structure significance")
            + _table(
                ["max order", "budget", "mean Quality", "random mean", "random p95", "n random", "percentile"],
                significance_rows,
            ),
        )
    )

    nav = "".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title in SECTIONS)
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Taskonomy report: {html.escape(workspace.settings.study.name)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Taskonomy report: {html.escape(workspace.settings.study.name)}</h1>"
        f'<p class="note">Affinities from <b>{html.escape(origin)}</b>; taskonomy-db {__version__};'
        f" written {datetime.now():%Y-%m-%d %H:%M}.</p><nav>{nav}</nav>" + "\n".join(parts) + "</body></html>\n"
    )
    out = Path(out) if out is not None else workspace.path("reports", REPORT_FILE)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return out


def _uncertainty_figure(db: Database, affinity: AffinityMatrix) -> str:
    """The first-order affinity matrix's building-bootstrap intervals, as their width relative to the value."""
    rows = db.query(
        'select sources[1] as source, target, affinity, ci_low, ci_high, replicates from affinity_ci where "order" = 1'
    ).to_pylist()
    # a value no replicate measured has no interval (null bounds): its cell stays blank
    width = {
        (r["source"], r["target"]): (r["ci_high"] - r["ci_low"]) / r["affinity"]
        for r in rows
        if r["affinity"] and r["ci_low"] is not None
    }
    relative = AffinityMatrix(
        affinity.origin,
        affinity.sources,
        affinity.targets,
        [[width.get((s, t)) for t in affinity.targets] for s in affinity.sources],
    )
    percent = (db.scalar("select getvariable('bootstrap_level')") or 0.95) * 100
    level = f"{percent:g}%"
    replicates = max((r["replicates"] for r in rows), default=0)
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(9, 0.3 * len(relative.sources) + 3))
    title = f"Uncertainty: {level} interval width / affinity"
    _heatmap(figure, ax, relative, _grid(relative), title, cmap="magma_r", vmin=0.0)
    figure.tight_layout()
    return (
        f'<p class="note">The affinity\'s {level} confidence interval from {replicates} building-bootstrap'
        " replicates (test buildings resampled; view <code>affinity_ci</code>), as its width relative to the"
        " affinity: 1 means the interval is as wide as the value itself.</p>"
        + _img(_png(figure), "relative width of the affinity intervals")
    )


def _taxonomy_summary(taxonomy: Taxonomy, measurements: Measurements, stability: Stability | None = None) -> str:
    served = per_target(taxonomy, measurements)
    rows = [
        [
            target,
            "(supervised)" if info["supervised"] else " + ".join(info["sources"]),
            info["order"],
            info["affinity"],
            info["gain"],
            info["quality"],
            *([f"{stability.serving_share[target]:.0%}"] if stability else []),
        ]
        for target, info in served.items()
    ]
    source_only = [t for t in taxonomy.supervised if t not in served]
    text = (
        f"<p>Objective {taxonomy.objective:.4f}, cost {plain_number(round(taxonomy.cost, 9))}. Supervised: "
        f"{html.escape(', '.join(taxonomy.supervised))}"
        + (f" (source-only: {html.escape(', '.join(source_only))})" if source_only else "")
        + ".</p>"
    )
    if stability:
        text += (
            f"<p>Stability over {stability.replicates} bootstrap replicates: the same supervised set in"
            f" {stability.same_supervised_share:.0%}; <i>stable</i> is the share serving the target the same way.</p>"
        )
    return (
        text
        + _img(plot_taxonomy(taxonomy), f"taxonomy graph, budget {plain_number(taxonomy.problem.budget)}")
        + _table(
            ["target", "served by", "order", "affinity", "gain", "quality", *(["stable"] if stability else [])], rows
        )
    )
