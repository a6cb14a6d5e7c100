"""Run every benchmark script (benchmarks/bench_*.py) and rewrite benchmarks/RESULTS.md.

Each script prints one Markdown section (starting with '## ') to stdout. Usage:

    .venv/bin/python benchmarks/run.py [NAME_SUBSTRING ...]
"""

from __future__ import annotations

import os
import platform
import re
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


MARKER = "<!-- {name} | {date} | {machine} -->"
MARKER_PATTERN = re.compile(r"^<!-- (bench_\w+\.py) \| .* -->$", re.MULTILINE)


def previous_sections(path: Path) -> dict[str, str]:
    """The sections RESULTS.md already holds, by script name, each with its marker line."""
    if not path.is_file():
        return {}
    text = path.read_text()
    marks = list(MARKER_PATTERN.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return {m.group(1): text[m.start() : end].strip() + "\n" for m, end in zip(marks, ends, strict=True)}


def main(filters: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if filters:
        scripts = [s for s in scripts if any(f in s.name for f in filters)]
    results = HERE / "RESULTS.md"
    # A partial run replaces only its own sections: the others keep the date and machine they were measured on.
    sections = previous_sections(results)
    failed = 0
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        marker = MARKER.format(
            name=script.name, date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), machine=machine()
        )
        if done.returncode != 0:
            failed += 1
            sections[script.name] = (
                f"{marker}\n## {script.name}: FAILED (exit {done.returncode})\n\n```\n{done.stderr[-3000:]}\n```\n"
            )
            continue
        body = done.stdout.strip()
        sections[script.name] = f"{marker}\n{body}\n\nCommand: `python benchmarks/{script.name}` ({seconds:.0f} s)\n"
    header = (
        "# Benchmark results\n\n"
        "Written by `python benchmarks/run.py [NAME ...]`, which reruns the named benchmarks (all without names) and\n"
        "keeps the other sections. Each section's first line (an HTML comment) gives its script, date and machine.\n"
        "Ratios are measured within one run of each script; absolute figures vary with the machine's load.\n"
    )
    ordered = [sections[name] for name in sorted(sections)]
    results.write_text(header + "\n" + "\n".join(ordered))
    print(f"wrote {results} ({len(scripts)} benchmarks run, {failed} failed)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
