"""How well each estimator ranks a target's sources as the measured transfers do (`tdb estimate --compare`): the
mean over targets of Spearman's correlation between its scores and the measured first-order affinities (the
view estimator_agreement), with a building-bootstrap interval where the study has replicates: the same mean
computed against each replicate's affinities."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from scipy import stats

from taskonomy_db.affinity import bootstrap_design
from taskonomy_db.db import Database


def agreement_summary(db: Database, level: float = 0.95) -> list[dict[str, Any]]:
    """Per method: targets compared, mean, standard deviation, min and max of the per-target Spearman (own
    encoder left out), the mean with the own encoder in, and (null without replicates) the interval of the mean
    over building-bootstrap replicates at `level`."""
    rows = db.query(
        "select method, target, spearman, spearman_with_own, n_sources from estimator_agreement order by all"
    ).to_pylist()
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_method[row["method"]].append(row)
    intervals = _replicate_intervals(db, level) if rows and bootstrap_design(db)[0] > 0 else {}
    summary = []
    for method, found in sorted(by_method.items()):
        values = np.array([r["spearman"] for r in found if r["spearman"] is not None], dtype=float)
        with_own = [r["spearman_with_own"] for r in found if r["spearman_with_own"] is not None]
        low, high = intervals.get(method, (None, None))
        summary.append(
            {
                "method": method,
                "targets": len(values),
                "mean_spearman": float(values.mean()) if len(values) else None,
                "ci_low": low,
                "ci_high": high,
                "std": float(values.std(ddof=1)) if len(values) > 1 else None,
                "min": float(values.min()) if len(values) else None,
                "max": float(values.max()) if len(values) else None,
                "mean_with_own": float(np.mean(with_own)) if with_own else None,
            }
        )
    return summary


def _replicate_intervals(db: Database, level: float) -> dict[str, tuple[float, float]]:
    """Per method, the percentile interval of the mean per-target Spearman over bootstrap replicates 1.."""
    estimates = db.query(
        "select method, target, sources[1] as source, score from estimates where len(sources) = 1"
    ).to_pylist()
    scores: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for row in estimates:
        if row["source"] != row["target"]:
            scores[row["method"], row["target"]][row["source"]] = row["score"]
    affinities = db.query(
        """select replicate, target, sources[1] as source, affinity from bootstrap_affinity
           where replicate > 0 and kind = 'transfer' and "order" = 1 and affinity is not null"""
    ).to_pylist()
    by_replicate: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for row in affinities:
        by_replicate[row["replicate"], row["target"]][row["source"]] = row["affinity"]
    means: dict[str, list[float]] = defaultdict(list)
    for replicate in sorted({r for r, _ in by_replicate}):
        per_method: dict[str, list[float]] = defaultdict(list)
        for (method, target), scored in scores.items():
            measured = by_replicate.get((replicate, target), {})
            shared = sorted(set(scored) & set(measured))
            if len(shared) >= 3:
                rho = stats.spearmanr([scored[s] for s in shared], [measured[s] for s in shared]).statistic
                if np.isfinite(rho):
                    per_method[method].append(float(rho))
        for method, values in per_method.items():
            means[method].append(float(np.mean(values)))
    tail = (1 - level) / 2
    return {method: (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail))) for method, v in means.items()}
