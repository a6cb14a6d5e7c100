"""Run every benchmark script (benchmarks/bench_*.py) and rewrite benchmarks/RESULTS.md.

Each script prints one Markdown section (starting with '## ') to stdout. Usage:

    .venv/bin/python benchmarks/run.py [NAME_SUBSTRING ...]
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def main(filters: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if filters:
        scripts = [s for s in scripts if any(f in s.name for f in filters)]
    sections, failed = [], 0
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            failed += 1
            sections.append(f"## {script.name}: FAILED (exit {done.returncode})\n\n```\n{done.stderr[-3000:]}\n```\n")
            continue
        body = done.stdout.strip()
        sections.append(f"{body}\n\nCommand: `python benchmarks/{script.name}` ({seconds:.0f} s)\n")
    header = (
        "# Benchmark results\n\n"
        f"- Machine: {machine()}\n"
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- Command: `python benchmarks/run.py{' ' + ' '.join(filters) if filters else ''}`\n\n"
        "Ratios are measured within one run of each script; absolute figures vary with the machine's load.\n"
    )
    (HERE / "RESULTS.md").write_text(header + "\n" + "\n".join(sections))
    print(f"wrote {HERE / 'RESULTS.md'} ({len(scripts)} benchmarks, {failed} failed)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
