"""Building-bootstrap intervals in SQL at the default demo's size: 17 targets x 30 candidates (gold, scratch and
random included) x 432 test images in 18 buildings, 200 replicates. Each query runs in its own process on the same
workspace file, for a clean peak memory. Prints one Markdown section."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_affinity import IMAGES_PER_BUILDING, generate

N_TARGETS, N_SOURCES, N_IMAGES, REPLICATES = 17, 30, 432, 200
N_SEEDS = 3
GOAL_SECONDS = 30.0
GOAL_STABILITY_SECONDS = 60.0
BUDGET = 3
QUERIES = {
    "all three (`bootstrap_intervals`)": "select * from bootstrap_intervals",
    "`affinity_ci`": "select * from affinity_ci",
    "`quality_ci`": "select * from quality_ci",
    "`gain_ci`": "select * from gain_ci",
    "point estimates (`measured_affinity`), for scale": "select * from measured_affinity",
}


SEEDED_QUERIES = {
    f"all three (`bootstrap_intervals`), {N_SEEDS} readout seeds": "select * from bootstrap_intervals",
    f"seed and image variance (`affinity_variance`), {N_SEEDS} readout seeds": "select * from affinity_variance",
}


def add_seeds(path: Path, n_seeds: int) -> Path:
    """A copy of the study at `path` whose trained candidates have `n_seeds` readouts: seed 0's losses plus
    uniform noise for each further seed (gold, one network, keeps one)."""
    import duckdb

    seeded = path.with_name("seeded.duckdb")
    seeded.write_bytes(path.read_bytes())
    with duckdb.connect(str(seeded)) as con:
        con.execute("select setseed(0.24)")
        offset = con.execute("select max(transfer_id) from transfers").fetchone()[0]
        trained = "select transfer_id from transfers where kind <> 'gold' and seed_index = 0"
        for index in range(1, n_seeds):
            con.execute(
                f"""
                insert into transfers by name
                select * replace (transfer_id + {offset * index} as transfer_id,
                    transfer_key || ':seed{index}' as transfer_key, {index} as seed_index)
                from transfers where transfer_id in ({trained})
                """
            )
            con.execute(
                f"""
                insert into losses (transfer_id, image_id, loss)
                select transfer_id + {offset * index}, image_id, loss + 0.5 * (random() - 0.5)
                from losses where transfer_id in ({trained})
                """
            )
    return seeded


def child(path: str, sql: str) -> None:
    import duckdb

    with duckdb.connect(path, read_only=True) as con:
        con.execute(f"set variable bootstrap_replicates = {REPLICATES}")
        start = time.perf_counter()
        n_rows = len(con.execute(sql).fetchall())
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": n_rows, "peak_rss_mib": peak}))


def stability_child(path: str) -> None:
    from taskonomy_db.stability import taxonomy_stability
    from taskonomy_db.taxonomy import solver_name
    from taskonomy_db.workspace import Workspace

    workspace = Workspace.open(Path(path).parent)
    workspace.update_settings("analysis", {"bootstrap": REPLICATES})
    start = time.perf_counter()
    found = taxonomy_stability(workspace.db, budget=BUDGET, max_order=1)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"seconds": seconds, "rows": found.replicates + 1, "peak_rss_mib": peak, "solver": solver_name()}
    print(json.dumps({**result, "same": found.same_supervised_share}))


def measure(path: Path, sql: str) -> dict:
    args = ["--stability", str(path)] if sql == "stability" else ["--child", str(path), sql]
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
        return
    if sys.argv[1:2] == ["--stability"]:
        stability_child(sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = generate(Path(tmp), N_IMAGES, N_TARGETS, N_SOURCES)
        results = {label: measure(path, sql) for label, sql in QUERIES.items()}
        stability = measure(path, "stability")
        seeded = add_seeds(path, N_SEEDS)
        results |= {label: measure(seeded, sql) for label, sql in SEEDED_QUERIES.items()}
    lines = [
        "## Confidence intervals: the building bootstrap in SQL, default demo size",
        "",
        f"{N_TARGETS} targets x {N_SOURCES} candidates (gold, scratch and random included) x {N_IMAGES} test images "
        f"in {N_IMAGES // IMAGES_PER_BUILDING} buildings, synthetic losses; {REPLICATES} replicates, each drawing "
        "17 of the 18 buildings with replacement. Every query is the whole pipeline (per-building wins, replicate "
        "weights, AHP per replicate and target, percentile intervals), in its own process. The seeded rows: the "
        f"same study with {N_SEEDS} readouts per trained candidate (losses averaged per image; `affinity_variance` "
        "adds the AHP of each seed alone).",
        "",
        "| query | rows | seconds | peak RSS (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for label, result in results.items():
        lines.append(f"| {label} | {result['rows']} | {result['seconds']:.2f} | {result['peak_rss_mib']:.0f} |")
    lines.append(
        f"| taxonomy stability (`tdb taxonomy --budget {BUDGET} --stability`: the BIP on the study and every "
        f"replicate, {stability['solver']}) | {stability['rows']} solves | {stability['seconds']:.2f} "
        f"| {stability['peak_rss_mib']:.0f} |"
    )
    seconds = results["all three (`bootstrap_intervals`)"]["seconds"]
    verdict = "meets" if seconds <= GOAL_SECONDS else "misses"
    stable_verdict = "meets" if stability["seconds"] <= GOAL_STABILITY_SECONDS else "misses"
    lines += [
        "",
        f"Goals on 2 cores: all intervals in at most {GOAL_SECONDS:.0f} s (this run {verdict} it); taxonomy "
        f"stability over {REPLICATES} replicates in at most {GOAL_STABILITY_SECONDS:.0f} s (this run "
        f"{stable_verdict} it; the same supervised set in {stability['same']:.0%} of the replicates, synthetic "
        "losses).",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
