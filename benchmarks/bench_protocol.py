"""The transfer protocol measured on the default demo: its checks under two readout seeds, and whether each
target's first-order source ranking is a property of the representations rather than of the readouts' training.

Builds the default demo from nothing (or reads a finished one named by $TDB_BENCH_DEMO), then reruns its
transfers in copies with one thing changed, the test images, encoders and labels the same ($TDB_BENCH_VARIANTS,
a comma-separated subset of `seed,steps`, picks which):
- another transfer seed: the readouts' and scratch's initialisation and batch order, and which val buildings are
  fit and which held out (all drawn from `[transfer] seed`): every transfer, so every check is measured again;
- twice the training (twice the step budget and twice the patience: a readout stops only after twice as many
  held-out evaluations without improvement): the first order, which is what the ranking needs.

Reports the demo's checks per run (own encoder among each target's 3 best first-order sources, depth_zbuffer
and depth_euclidean each other's best other source, the tree's 3D-vs-2D adjusted Rand index, the cross-fitted
Quality percentile at budgets 2 and 3, the median first-order Gain), and per target Spearman's rho between the
first-order affinities of its sources under the demo's transfers and under each rerun, computed by the store's
views over the first order alone. Goal for the rankings: a median over targets of at least 0.95 for both.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy.stats import spearmanr

from taskonomy_db.affinity import evidence_store
from taskonomy_db.demo import (
    PROFILES,
    best_other_sources,
    median_first_order_gain,
    own_encoder_ranks,
    tree_against_groups,
)
from taskonomy_db.significance import cross_fitted_sweep
from taskonomy_db.transfer_settings import transfer_settings
from taskonomy_db.workspace import Workspace

PROFILE = PROFILES["default"]
GOAL = 0.95


def tdb(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from taskonomy_db.cli import main; main()", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])


def checks(workspace: Workspace) -> dict[str, str]:
    db = workspace.db
    ranks = own_encoder_ranks(db)
    best = best_other_sources(db)
    pair = best.get("depth_zbuffer") == "depth_euclidean" and best.get("depth_euclidean") == "depth_zbuffer"
    _, _, ari = tree_against_groups(db)
    crossed = {
        c.budget: c.percentile
        for c in cross_fitted_sweep(db, (2, 3), [PROFILE.max_order], PROFILE.n_random, workspace.seed)
    }
    gain = median_first_order_gain(db)
    missed = [f"{t} ({r})" for t, r in sorted(ranks.items()) if r is None or r > 3]
    return {
        "own encoder in its top 3": f"{len(ranks) - len(missed)}/{len(ranks)}"
        + (f" (misses {', '.join(missed)})" if missed else ""),
        "depth pair mutual": f"{'yes' if pair else 'no'} ({best.get('depth_zbuffer')}, {best.get('depth_euclidean')})",
        "tree ARI": f"{ari:.2f}",
        "Quality pct, budget 2": _pct(crossed.get(2)),
        "Quality pct, budget 3": _pct(crossed.get(3)),
        "median Gain": "n/a" if gain is None else f"{gain:.2f}",
    }


def _pct(value: float | None) -> str:
    return "infeasible" if value is None else f"{value:.1f}"


def first_order(workspace: Workspace) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """target -> source -> first-order affinity (the store's views over the current first order alone), and how
    the readouts stopped: the median step whose weights were kept, the share that ran to the step budget."""
    db = workspace.db
    ids = db.query(
        """select transfer_id from candidate_transfers where "order" = 1 and kind in ('transfer', 'random', 'gold')"""
    ).column("transfer_id")
    stops = db.query(
        """
        select median(best_step) as kept, avg((n_steps >= (settings ->> 'max_steps')::int)::int) as capped,
            sum(seconds_train) as seconds
        from transfers where transfer_id in (select unnest(?)) and kind in ('transfer', 'random')
        """,
        [ids.to_pylist()],
    ).to_pylist()[0]
    with evidence_store(db, ids.to_pylist()) as store:
        rows = store.query('select target, sources[1] as source, affinity from affinity where "order" = 1').to_pylist()
    affinities: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["source"] != "gold":
            affinities.setdefault(row["target"], {})[row["source"]] = row["affinity"]
    return affinities, stops


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-protocol-") as tmp:
        given = os.environ.get("TDB_BENCH_DEMO")
        source = Path(given) if given else Path(tmp) / "demo"
        if not given:
            tdb("demo", str(source), "--format", "json")
        workspace = Workspace.open(source)
        settings = transfer_settings(workspace)
        steps, patience = 2 * int(settings["max_steps"]), 2 * int(settings["patience"])
        # (name, tdb transfer options, every check or the first order alone). A new seed or schedule is a new
        # settings hash: the views then read only the rerun's transfers.
        variants = [
            (f"transfer seed {workspace.seed + 1}", ["--seed", str(workspace.seed + 1)], True),
            (
                f"max_steps {steps}, patience {patience}",
                [
                    "--max-steps",
                    str(steps),
                    "--patience",
                    str(patience),
                    "--max-order",
                    "1",
                    "--baselines",
                    "gold,random",
                ],
                False,
            ),
        ]
        chosen = os.environ.get("TDB_BENCH_VARIANTS", "seed,steps").split(",")
        variants = [v for v, key in zip(variants, ("seed", "steps"), strict=True) if key in chosen]
        runs = {f"transfer seed {workspace.seed} (the demo)": (checks(workspace), *first_order(workspace), None)}
        for name, options, full in variants:
            copy = Path(tmp) / "variant"
            shutil.copytree(source, copy)
            started = time.perf_counter()
            tdb("transfer", "-w", str(copy), *options)
            seconds = time.perf_counter() - started
            rerun = Workspace.open(copy)
            runs[name] = (checks(rerun) if full else None, *first_order(rerun), seconds)
            shutil.rmtree(copy)
    report(runs, settings)


def report(runs: dict, settings: dict) -> None:
    names = list(runs)
    base = runs[names[0]][1]
    schedule = ", ".join(f"{k} {settings[k]}" for k in ("max_steps", "eval_every", "patience", "batch_size"))
    print("## The transfer protocol on the default demo: checks and ranking stability\n")
    print(
        f"Schedule: {schedule}, learning rate {settings['learning_rate']}; readouts fit on "
        f"{settings['transfer_images']} {settings['train_split']} images and stop early on "
        f"{settings['holdout_images']} images of other {settings['train_split']} buildings. Another transfer seed "
        "draws the readouts' and scratch's initialisation and batch order and which val buildings are fit and which "
        "held out; test images, encoders and labels are the same. Quality percentiles "
        "are cross-fitted (the taxonomy of one half of the test buildings scored, with 100 random policies, on "
        "the other half, both ways, averaged).\n"
    )
    full = [n for n in names if runs[n][0] is not None]
    columns = list(runs[full[0]][0])
    print("| transfers | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in full:
        print(f"| {name} | " + " | ".join(runs[name][0][c] for c in columns) + " |")
    print(
        "\nWanted: own encoder in its top 3 for every target, the depth pair mutual, ARI >= 0.5, percentiles >= 95, "
        "median Gain above 0.5 (transfers beat scratch).\n"
    )
    others = names[1:]
    rhos = {n: {} for n in others}
    for target, row in sorted(base.items()):
        sources = sorted(row)
        for name in others:
            other = runs[name][1][target]
            rhos[name][target] = spearmanr([row[s] for s in sources], [other[s] for s in sources])[0]
    n_sources = len(next(iter(base.values())))
    print(
        f"Spearman's rho per target between the first-order affinities of its {n_sources} sources (its own "
        f"encoder and random included) under the demo's transfers and under each rerun (goal: median >= {GOAL}):\n"
    )
    print("| target | " + " | ".join(others) + " |")
    print("|---|" + "---:|" * len(others))
    for target in sorted(base):
        print(f"| {target} | " + " | ".join(f"{rhos[n][target]:.2f}" for n in others) + " |")
    medians = {n: statistics.median(rhos[n].values()) for n in others}
    print("| **median** | " + " | ".join(f"**{medians[n]:.2f}**" for n in others) + " |")
    print("\n| transfers | median step kept | readouts at the step budget | readout CPU s, first order | rerun s |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        stops, seconds = runs[name][2], runs[name][3]
        took = "-" if seconds is None else f"{seconds:.0f}"
        print(f"| {name} | {stops['kept']:.0f} | {100 * stops['capped']:.0f}% | {stops['seconds']:.0f} | {took} |")


if __name__ == "__main__":
    main()
