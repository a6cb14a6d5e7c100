"""Views per second of `tdb generate` (render + every label + file writes) at 64x64 and 256x256, both cores."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from taskonomy_db.generate import generate

GOAL_64 = 50.0
CASES = [  # (size, buildings, rooms, points per room, views per point)
    (64, 4, 3, 3, 3),
    (256, 2, 1, 2, 2),
]


def measure(size: int, buildings: int, rooms: int, points: int, views: int, workers: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = generate(Path(tmp, "data"), buildings, rooms, points, views, size, 0, workers=workers, progress=False)
        return report.n_views, time.perf_counter() - start


def main() -> None:
    workers = min(2, os.cpu_count() or 1)
    measure(32, 1, 1, 1, 1, 1)  # warm imports and caches
    lines = [
        "## Dataset generation (`tdb generate`)",
        "",
        f"Rendering, labels (Canny, Sobel, Hessian, NARF-like, 2 x Felzenszwalb) and 18 files per view; "
        f"{workers} worker processes.",
        "",
        "| size | views | seconds | views/s |",
        "|---:|---:|---:|---:|",
    ]
    rates = {}
    for size, *counts in CASES:
        n_views, seconds = measure(size, *counts, workers)
        rates[size] = n_views / seconds
        lines.append(f"| {size}x{size} | {n_views} | {seconds:.1f} | {rates[size]:.1f} |")
    verdict = "meets" if rates[64] >= GOAL_64 else "misses"
    lines += ["", f"Goal: at least {GOAL_64:.0f} views/s at 64x64 on 2 cores; this run {verdict} it."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
