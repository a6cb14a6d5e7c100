"""Win rates + AHP for 26 targets x 40 candidate sources x 20,000 test images (20.8 million loss rows):
the SQL views (affinity) against a vectorised numpy reference, each in its own process for a clean peak memory.

Prints one Markdown section. Usage: python benchmarks/bench_affinity.py [--images N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

N_TARGETS, N_SOURCES = 26, 40
IMAGES_PER_BUILDING = 24  # as the default demo's buildings (3 rooms x 4 points x 2 views)


def generate(root: Path, n_images: int, n_targets: int = N_TARGETS, n_sources: int = N_SOURCES) -> Path:
    """A workspace of `n_targets` x `n_sources` done transfers (gold, scratch and random first) with a loss on
    each of `n_images` test images, in buildings of IMAGES_PER_BUILDING images."""
    from taskonomy_db.workspace import Workspace

    workspace = Workspace.init(root / "ws")
    with workspace.db.transaction() as con:
        con.execute("select setseed(0.42)")
        con.execute(
            """
            insert into images (image_id, image_key, building, point, "view", split)
            select image_id, 'b' || building || '/point_' || image_id || '_view_0', 'b' || building, image_id, 0, 'test'
            from (select range + 1 as image_id, range // $per_building as building from range($n_images))
            """,
            {"n_images": n_images, "per_building": IMAGES_PER_BUILDING},
        )
        con.execute(
            """
            insert into transfers (transfer_id, transfer_key, target, sources, "order", kind, n_train_images, status,
                                   seed, settings_hash, settings, started_at, finished_at)
            select
                target_number * $n_sources + source_number + 1,
                'bench:' || target_number || ':' || source_number,
                'target_' || lpad(target_number::varchar, 2, '0'),
                case source_number when 0 then ['gold'] when 1 then ['scratch'] when 2 then ['random']
                    else ['source_' || lpad(source_number::varchar, 2, '0')] end,
                1,
                case source_number when 0 then 'gold' when 1 then 'scratch' when 2 then 'random' else 'transfer' end,
                1000, 'done', 0, 'bench', '{}', $now, $now
            from range($n_targets) as targets(target_number), range($n_sources) as sources(source_number)
            """,
            {"n_sources": n_sources, "n_targets": n_targets, "now": datetime(2026, 1, 1)},
        )
        # Planted quality per source plus per-image noise, so the pairs split the images unevenly.
        con.execute(
            """
            insert into losses
            select transfer_id, image_id::integer, random() + ((transfer_id * 7) % 40) * 0.01
            from transfers, range(1, $n_images + 1) as images(image_id)
            order by transfer_id, image_id
            """,
            {"n_images": n_images},
        )
    return workspace.db.path


def run_sql(path: str) -> dict:
    import duckdb

    with duckdb.connect(path, read_only=True) as con:
        start = time.perf_counter()
        rows = con.execute("select target, sources, affinity from affinity order by target, sources").fetchall()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "affinity": [[t, s, a] for t, s, a in rows]}


def run_numpy(path: str) -> dict:
    import duckdb

    with duckdb.connect(path, read_only=True) as con:
        start = time.perf_counter()
        candidates = con.execute(
            "select target, sources from transfers where status = 'done' order by transfer_id"
        ).fetchall()
        # Ordered by integer keys only: the cheapest order that puts each transfer's losses in one row.
        losses = (
            con.execute(
                """
                select losses.loss
                from losses inner join transfers using (transfer_id)
                where transfers.status = 'done'
                order by losses.transfer_id, losses.image_id
                """
            )
            .to_arrow_table()
            .column(0)
            .to_numpy()
        )
        fetched = time.perf_counter()
    rows_of_target: dict[str, list[int]] = {}
    for row, (target, sources) in enumerate(candidates):
        if sources != ["scratch"]:  # compared for Gain, but no AHP candidate: it has no affinity
            rows_of_target.setdefault(target, []).append(row)
    n_images = len(losses) // len(candidates)
    matrices = losses.reshape(len(candidates), n_images)
    result = []
    for target, rows in rows_of_target.items():
        matrix = matrices[rows]
        better = (matrix[:, None, :] < matrix[None, :, :]).sum(-1)
        ties = (matrix[:, None, :] == matrix[None, :, :]).sum(-1)
        win_rate = np.clip((better + 0.5 * ties) / n_images, 0.001, 0.999)
        values, vectors = np.linalg.eig(win_rate / win_rate.T)
        principal = np.abs(np.real(vectors[:, np.argmax(np.real(values))]))
        principal /= principal.sum()
        result += [[target, candidates[row][1], float(a)] for row, a in zip(rows, principal, strict=True)]
    done = time.perf_counter()
    return {
        "seconds": done - start,
        "fetch_seconds": fetched - start,
        "compute_seconds": done - fetched,
        "affinity": result,
    }


def child(kind: str, path: str) -> None:
    result = run_sql(path) if kind == "sql" else run_numpy(path)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(kind: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = generate(Path(tmp), args.images)
        generate_seconds = time.perf_counter() - start
        numpy_result = measure("numpy", path)
        sql_result = measure("sql", path)
    reference = {(t, tuple(s)): a for t, s, a in numpy_result["affinity"]}
    max_diff = max(abs(a - reference[(t, tuple(s))]) for t, s, a in sql_result["affinity"])
    n_rows = N_TARGETS * N_SOURCES * args.images
    ratio = sql_result["seconds"] / numpy_result["seconds"]
    print(f"## Affinities: win rates + AHP in SQL vs numpy ({n_rows / 1e6:.1f}M loss rows)\n")
    print(
        f"{N_TARGETS} targets x {N_SOURCES} candidate sources (gold, scratch and random included; scratch is compared"
        f" for Gain, no AHP candidate) x {args.images:,} test images in buildings of {IMAGES_PER_BUILDING},"
        f" {len(sql_result['affinity'])} affinities; synthetic losses generated in"
        f" {generate_seconds:.1f} s. Each path runs once in its own process on the same workspace file.\n"
    )
    print("| path | seconds | peak RSS (MiB) |")
    print("|---|---:|---:|")
    print(
        f"| SQL views (`select * from affinity`, DuckDB) | {sql_result['seconds']:.2f} |"
        f" {sql_result['peak_rss_mib']:.0f} |"
    )
    print(
        f"| numpy, total (fetch losses from DuckDB + compute) | {numpy_result['seconds']:.2f} |"
        f" {numpy_result['peak_rss_mib']:.0f} |"
    )
    print(f"| numpy, fetch only | {numpy_result['fetch_seconds']:.2f} | |")
    print(
        f"| numpy, compute only (broadcast comparisons + `np.linalg.eig`) | {numpy_result['compute_seconds']:.2f} | |"
    )
    print(
        f"\nSQL / numpy total: {ratio:.2f}x (goal: within 2x); SQL / numpy compute only:"
        f" {sql_result['seconds'] / numpy_result['compute_seconds']:.2f}x."
        f" Largest difference between the two affinities: {max_diff:.1e}."
    )


if __name__ == "__main__":
    main()
