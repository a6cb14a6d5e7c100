"""Transferability estimators on the default demo: each method's time for every first-order (target, source)
pair, against the first-order transfers' own time, and how well its scores rank the sources as the measured
affinities do (mean per-target Spearman, own encoder left out, with its building-bootstrap interval).

Reads a finished default-profile demo workspace, `$TDB_DEMO_WORKSPACE` (default `demo-workspace`, the README's
quickstart), copied to a temporary folder so the estimates do not touch it. Prints one Markdown section.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GOAL_SHARE = 0.01  # of the first-order transfer time
GOAL_SPEARMAN = 0.86  # the best published figure on Taskonomy (DDS, ECCV 2020)


def main() -> None:
    from taskonomy_db.affinity import bootstrap_design
    from taskonomy_db.agreement import agreement_summary
    from taskonomy_db.estimate import estimate
    from taskonomy_db.settings import ESTIMATORS
    from taskonomy_db.workspace import Workspace

    source = Path(os.environ.get("TDB_DEMO_WORKSPACE", "demo-workspace"))
    if not (source / "tdb.toml").is_file():
        raise SystemExit(f"no demo workspace at {source}: run `tdb demo {source}` or set TDB_DEMO_WORKSPACE")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "study"
        shutil.copytree(source, root)
        workspace = Workspace.open(root)
        profile = workspace.settings.demo.profile
        seconds = {}
        for method in ESTIMATORS:
            start = time.perf_counter()
            summary = estimate(workspace, [method], progress=False)
            seconds[method] = (time.perf_counter() - start, len(summary.rows), summary.n_images)
        start = time.perf_counter()
        estimate(workspace, progress=False)  # all four in one run, as `tdb estimate` does: the data read once
        together = time.perf_counter() - start
        transfer_seconds = workspace.db.scalar(
            """select sum(seconds_train + seconds_eval) from transfers
               where status = 'done' and kind = 'transfer' and "order" = 1"""
        )
        n_transfers = workspace.db.scalar(
            """select count(*) from transfers where status = 'done' and kind = 'transfer' and "order" = 1"""
        )
        agreement = {row["method"]: row for row in agreement_summary(workspace.db)}
        replicates = bootstrap_design(workspace.db)[0]
        beam = workspace.settings.transfer.beam
        overlap = beam_overlap(workspace, beam)
    lines = [
        "## Transferability estimators against measured first-order affinities, default demo",
        "",
        f"The {profile} demo's workspace: every estimator on every first-order (target, source) pair of its "
        f"extracted encoders, from the first {seconds[ESTIMATORS[0]][2]} images of the transfer-training split; "
        f"measured against its {n_transfers} first-order transfers, which took {transfer_seconds:.0f} s of worker "
        "time (training and testing, summed over transfers). Spearman: per target, between the method's scores "
        "and the measured affinities over the target's sources (own encoder left out), averaged over targets; the "
        f"interval from the {replicates} building-bootstrap replicates of the affinities.",
        "",
        "| method | pairs | seconds | share of first-order transfer time | mean Spearman [95% interval] | "
        "std | min | max | mean with own encoder |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for method in ESTIMATORS:
        took, pairs, _ = seconds[method]
        row = agreement.get(method)
        if row is None or row["mean_spearman"] is None:
            lines.append(f"| {method} | {pairs} | {took:.1f} | {took / transfer_seconds:.2%} | n/a | | | | |")
            continue
        interval = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["ci_low"] is not None else ""
        lines.append(
            f"| {method} | {pairs} | {took:.1f} | {took / transfer_seconds:.2%} | {row['mean_spearman']:.2f}{interval}"
            f" | {row['std']:.2f} | {row['min']:.2f} | {row['max']:.2f} | {row['mean_with_own']:.2f} |"
        )
    n_targets = len({t for _, t in overlap.get(ESTIMATORS[0], {})})
    lines += [
        "",
        f"`--beam-from estimate:METHOD` with the demo's beam of {beam}: the share of each target's measured top "
        f"{beam} first-order sources that the estimator's top {beam} holds (mean over {n_targets} targets), and the "
        "first-order transfers it would not run:",
        "",
        "| method | top-beam overlap with measured | first-order transfers saved |",
        "|---|---:|---:|",
    ]
    for method in ESTIMATORS:
        found = overlap.get(method, {})
        if found:
            shares = [share for share, _ in found.values()]
            saved = sum(n for _, n in found.values())
            lines.append(f"| {method} | {np.mean(shares):.0%} | {saved} of {n_transfers} |")
    total = together
    best = max(
        (row for row in agreement.values() if row["mean_spearman"] is not None),
        key=lambda row: row["mean_spearman"],
        default=None,
    )
    lines += [
        "",
        f"All four estimators in one run (`tdb estimate`, representations and labels read once; the rows above "
        f"each read them again): {total:.1f} s, {total / transfer_seconds:.2%} of the first-order transfer time (goal: "
        f"at most {GOAL_SHARE:.0%} {'met' if total / transfer_seconds <= GOAL_SHARE else 'not met'}). Best mean "
        f"Spearman: {best['method']} {best['mean_spearman']:.2f} (goal: at least {GOAL_SPEARMAN}, the best published "
        f"figure on Taskonomy; {'met' if best['mean_spearman'] >= GOAL_SPEARMAN else 'not met'})."
        if best
        else "No estimator could be compared with measured affinities.",
    ]
    print("\n".join(lines))


def beam_overlap(workspace: Any, beam: int) -> dict[str, dict[tuple[str, str], tuple[float, int]]]:
    """method -> (method, target) -> (share of the measured top-`beam` sources in the estimator's top `beam`,
    first-order transfers an estimated beam would not run), own encoder left out of both rankings."""
    measured = workspace.db.query(
        """select target, list(sources[1] order by affinity desc, sources[1]) as ranking from measured_affinity
           where kind = 'transfer' and "order" = 1 and sources[1] <> target group by target"""
    ).to_pylist()
    estimated = workspace.db.query(
        """select method, target, list(sources[1] order by score desc, sources[1]) as ranking from estimates
           where sources[1] <> target group by method, target"""
    ).to_pylist()
    truth = {row["target"]: row["ranking"] for row in measured}
    found: dict[str, dict[tuple[str, str], tuple[float, int]]] = {}
    for row in estimated:
        if row["target"] in truth:
            shared = set(truth[row["target"]][:beam]) & set(row["ranking"][:beam])
            saved = len(truth[row["target"]]) + 1 - beam  # the own-encoder transfer is not run either
            found.setdefault(row["method"], {})[row["method"], row["target"]] = (len(shared) / beam, saved)
    return found


if __name__ == "__main__":
    sys.exit(main())
