"""How much the default demo's structure checks move when only the readouts' seed changes.

Builds the default demo from nothing (or reads a finished one named by $TDB_BENCH_DEMO), then reruns every
transfer in copies of it with other seeds: the same images, the same encoders, only the readouts' initialisation
and batch order differ. For each seed it reports the demo's two structure checks that read the affinities (the
tree's 3D-vs-2D adjusted Rand index, and every target's own encoder among its 3 best sources) and how far each
target's ranking of its first-order sources agrees with the first seed's (Spearman's rho). A check that flips
between seeds while the rankings agree closely measures the readouts' noise, not the method or the data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from taskonomy_db.demo import own_encoder_ranks, tree_against_groups
from taskonomy_db.tree import members_by_cluster
from taskonomy_db.workspace import Workspace

EXTRA_SEEDS = 2


def tdb(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from taskonomy_db.cli import main; main()", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])


def measure(path: Path) -> dict:
    db = Workspace.open(path).db
    tree, clusters, ari = tree_against_groups(db)
    return {
        "ari": ari,
        "ranks": own_encoder_ranks(db),
        "features": dict(zip(tree.targets, tree.features.T, strict=True)),
        "groups": members_by_cluster(clusters),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-seeds-") as tmp:
        given = os.environ.get("TDB_BENCH_DEMO")
        source = Path(given) if given else Path(tmp) / "demo"
        if not given:
            tdb("demo", str(source), "--format", "json")
        study_seed = Workspace.open(source).seed
        runs = {study_seed: measure(source)}
        seconds = []
        for seed in range(study_seed + 1, study_seed + 1 + EXTRA_SEEDS):
            copy = Path(tmp) / f"seed-{seed}"
            shutil.copytree(source, copy)
            started = time.perf_counter()
            # A new seed is a new settings hash: the affinity views then read only this run's transfers.
            tdb("transfer", "-w", str(copy), "--seed", str(seed))
            seconds.append(time.perf_counter() - started)
            runs[seed] = measure(copy)
            shutil.rmtree(copy)
    first = runs[study_seed]
    print("## The demo's structure checks across readout seeds\n")
    print(
        f"One default demo; every transfer rerun with {EXTRA_SEEDS} other seeds "
        f"({np.mean(seconds):.0f} s a rerun). Same images, same encoders.\n"
    )
    print("| readout seed | tree 3D vs 2D ARI | own encoder in its top 3 | targets it misses (rank) | tree groups |")
    print("|---:|---:|---:|---|---|")
    for seed, run in runs.items():
        missed = [f"{t} ({r})" for t, r in run["ranks"].items() if r is None or r > 3]
        n_in = len(run["ranks"]) - len(missed)
        groups = "; ".join(", ".join(g) for g in run["groups"])
        print(f"| {seed} | {run['ari']:.2f} | {n_in}/{len(run['ranks'])} | {', '.join(missed) or '-'} | {groups} |")
    print("\nSpearman's rho between each target's source ranking under the study seed and under the other seeds:\n")
    print("| target | " + " | ".join(f"seed {s}" for s in list(runs)[1:]) + " |")
    print("|---|" + "---:|" * (len(runs) - 1))
    others = list(runs.values())[1:]
    for target, column in first["features"].items():
        rhos = [spearmanr(column, run["features"][target])[0] for run in others]
        print(f"| {target} | " + " | ".join(f"{rho:.2f}" for rho in rhos) + " |")


if __name__ == "__main__":
    main()
