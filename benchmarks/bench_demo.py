"""`tdb demo` (default profile) from nothing: wall time, peak memory, and the structure checks the issue names.

Goal: at most 10 minutes on 2 CPU cores, and the demo's checks: every target's own encoder among its 3 best
sources, depth_zbuffer and depth_euclidean each other's best other source, the tree putting 3D tasks apart from
2D tasks (adjusted Rand index >= 0.5), the taxonomy's cross-fitted Quality beating >= 95% of random policies at
budgets 2 and 3, and transfers beating scratch (median first-order Gain above 0.5). Also, read from the finished
workspace: each target's own encoder among its 3 best first-order sources by mean test loss for at least 80% of
targets.

TDB_BENCH_DEMO_WORKSPACE=DIR runs the demo in DIR (which must not exist) and keeps it, so that
`docs/make_readme_results.py DIR` can draw the README's results from the same run without running it again.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

# Mean test loss of every current first-order candidate that is an encoder (the baselines gold and scratch are
# networks, not sources), best first per target.
RANKING_SQL = """
select target, list(sources[1] order by mean_loss, sources[1]) as ranking
from (
    select candidates.target, candidates.sources, avg(losses.loss) as mean_loss
    from candidate_transfers as candidates
    inner join losses using (transfer_id)
    where candidates."order" = 1 and candidates.kind in ('transfer', 'random')
    group by all
)
group by target
"""


def loss_checks(database: Path) -> list[tuple[str, str, bool]]:
    with duckdb.connect(str(database), read_only=True) as con:
        ranking = dict(con.execute(RANKING_SQL).fetchall())
    own = [t for t, sources in ranking.items() if t in sources and sources.index(t) < 3]
    targets = [t for t, sources in ranking.items() if t in sources]
    return [
        (
            "own encoder among its 3 best first-order sources by mean test loss, >= 80% of targets",
            f"{len(own)}/{len(targets)}",
            len(own) >= 0.8 * len(targets),
        ),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        workspace = Path(os.environ.get("TDB_BENCH_DEMO_WORKSPACE") or Path(tmp) / "ws")
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from taskonomy_db.cli import main; main()",
                "demo",
                str(workspace),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        facts = json.loads(done.stdout)
        by_loss = loss_checks(workspace / "taskonomy.duckdb")
        steps = [line for line in done.stderr.splitlines() if line.startswith("  ") and " s  " in line]
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    top3 = facts["own_encoder_in_top3"]
    significance = facts["significance"]
    best = facts.get("depth_pair_best", {})
    mutual = best.get("depth_zbuffer") == "depth_euclidean" and best.get("depth_euclidean") == "depth_zbuffer"
    gain = facts["median_first_order_gain"]
    checks = [
        ("wall time <= 600 s", f"{seconds:.0f} s", seconds <= 600),
        ("own encoder among its 3 best sources, every target", f"{top3['n']}/{top3['of']}", top3["n"] == top3["of"]),
        ("depth_zbuffer and depth_euclidean each other's best other source", str(best or "n/a"), mutual),
        (
            "tree: 3D vs 2D adjusted Rand index >= 0.5",
            f"{facts['tree_ari_3d_vs_2d']:.2f}",
            facts["tree_ari_3d_vs_2d"] >= 0.5,
        ),
        *(
            (
                f"cross-fitted Quality percentile vs random policies, {cell} >= 95",
                f"{p:.0f}" if p is not None else "infeasible",
                p is not None and p >= 95,
            )
            for cell, p in significance.items()
            if cell.split(",")[0] in ("budget 2", "budget 3")
        ),
        ("median first-order Gain > 0.5", "n/a" if gain is None else f"{gain:.2f}", gain is not None and gain > 0.5),
        *by_loss,
    ]
    print("## `tdb demo`, default profile, from nothing\n")
    print(f"Wall time {seconds:.0f} s, peak memory (largest process) {peak_mib:.0f} MiB.\n")
    print("| step | seconds | summary |\n|---|---:|---|")
    for line in steps:
        name, rest = line.strip().split(None, 1)
        secs, summary = rest.split(" s  ", 1)
        cell = summary.replace("|", "\\|")  # a literal pipe would split the Markdown cell
        print(f"| {name} | {secs.strip()} | {cell} |")
    print("\n| check | measured | met |\n|---|---:|---|")
    for name, value, ok in checks:
        print(f"| {name} | {value} | {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main()
