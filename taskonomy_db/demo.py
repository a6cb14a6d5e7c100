"""`tdb demo`: the whole method on the embedded default dataset, step by step, each step skipped when done."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taskonomy_db.workspace import SETTINGS_FILE, Workspace


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Workspace], str] | None  # None: not built yet


STEPS: tuple[Step, ...] = (
    Step("generate", None),
    Step("ingest", None),
    Step("train", None),
    Step("export", None),
    Step("extract", None),
    Step("transfer", None),
    Step("affinity", None),
    Step("tree", None),
    Step("taxonomy", None),
    Step("report", None),
)


def run_demo(path: Path, echo: Callable[[str], None]) -> Workspace:
    workspace = Workspace.open(path) if (path / SETTINGS_FILE).is_file() else Workspace.init(path)
    echo(f"workspace: {workspace.root}")
    for step in STEPS:
        if step.run is None:
            echo(f"  {step.name:<10} not built yet")
            continue
        start = time.perf_counter()
        summary = step.run(workspace)
        echo(f"  {step.name:<10} {time.perf_counter() - start:6.1f} s  {summary}")
    return workspace
