"""Extraction memory: peak resident memory of `tdb extract` as the number of images grows fourfold.

Extraction loads, runs and writes one part (1024 images) at a time, so its peak should not grow with the
dataset. Both sizes span several parts: while one part loads, the previous one's arrays are still held, so a
one-part dataset peaks lower and would flatter the comparison. Each run is the real command in its own process;
its peak comes from getrusage of a wrapper process whose only child it is. Prints one Markdown section."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskonomy_db.encoders import export_random_encoder
from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest
from taskonomy_db.workspace import Workspace

SIZE = 64
BUILDINGS = (16, 64)  # 4 rooms x 8 points x 4 views = 128 views each: 2048 and 8192 images, both several parts
GOAL_GROWTH = 0.05  # the larger run's peak at most 5% above the smaller's

WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n"
)


def peak_rss_mib(command: list[str]) -> float:
    """Peak resident memory of `command`, in MiB (Linux reports ru_maxrss in KiB)."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, check=True)
    kib, code = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{' '.join(command)} exited with {code}")
    return int(kib) / 1024


def measure(root: Path, buildings: int) -> tuple[int, float, float, int]:
    """(images, seconds, peak MiB, bytes of RGB plus representations) of one extraction of the `random` encoder."""
    data = root / f"data{buildings}"
    generate(data, buildings, 4, 8, 4, SIZE, 0, workers=min(2, os.cpu_count() or 1), progress=False)
    workspace = Workspace.init(root / f"study{buildings}")
    report = ingest(workspace, data)
    record = export_random_encoder(workspace)
    start = time.perf_counter()
    tdb = str(Path(sys.executable).with_name("tdb"))
    peak = peak_rss_mib([tdb, "extract", "random", "-w", str(workspace.root)])
    seconds = time.perf_counter() - start
    width = 1
    for dimension in record.representation_shape:
        width *= dimension
    held = report.n_images * (SIZE * SIZE * 3 + 2 * width)  # uint8 pixels, float16 representation
    return report.n_images, seconds, peak, held


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(Path(tmp), buildings) for buildings in BUILDINGS]
    (n_small, _, peak_small, held_small), (n_large, _, peak_large, held_large) = rows
    growth = peak_large / peak_small - 1
    extra_data = (held_large - held_small) / 2**20
    lines = [
        "## Extraction memory: peak as the dataset grows",
        "",
        f"`tdb extract random` (the `random` encoder, {SIZE} px, float16, default part of 1024 images) on "
        "generated datasets of two sizes; each run in its own process, peak resident memory from getrusage.",
        "",
        "| images | seconds | peak MiB | RGB + representations if held at once, MiB |",
        "|---:|---:|---:|---:|",
    ]
    for n, seconds, peak, held in rows:
        lines.append(f"| {n} | {seconds:.1f} | {peak:.0f} | {held / 2**20:.0f} |")
    verdict = "meets" if growth <= GOAL_GROWTH else "misses"
    lines += [
        "",
        f"{n_large / n_small:.0f}x the images: peak {growth:+.1%} ({peak_large - peak_small:+.0f} MiB, "
        f"{(peak_large - peak_small) * 2**20 / (n_large - n_small):.0f} bytes per extra image: the image list and "
        f"its paths, not pixels), against {extra_data:.0f} MiB more data had extraction held it all. Goal: at most "
        f"{GOAL_GROWTH:.0%} growth; this run {verdict} it.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
