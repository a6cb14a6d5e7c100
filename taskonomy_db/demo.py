"""`tdb demo`: the whole method on the embedded default dataset, step by step, each step skipped when done.

generate -> ingest -> train -> export -> extract -> transfer -> affinity -> tree -> taxonomy -> report. Every
step either checks that its output exists or is itself resumable, so a demo interrupted at any moment (Ctrl-C or
SIGKILL) resumes where it stopped when run again, and ends with the same results as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskonomy_db.db import Database
from taskonomy_db.errors import TdbError
from taskonomy_db.generate_settings import MANIFEST
from taskonomy_db.workspace import SETTINGS_FILE, Workspace

if TYPE_CHECKING:
    from taskonomy_db.taxonomy import Taxonomy
    from taskonomy_db.tree import TaskTree

DATA_DIR = "data"


class DemoError(TdbError):
    """The demo cannot run in this workspace as asked."""


@dataclass(frozen=True)
class Profile:
    """How big a demo is: the dataset and its split, the tasks, and the training and transfer budgets."""

    name: str
    dataset: dict[str, int]
    split: dict[str, float]  # building fractions per split
    tasks: tuple[str, ...] | None  # None: every registered task
    train: dict[str, Any]
    transfer: dict[str, Any]
    budgets: tuple[int, ...] = (2, 3, 4)
    max_order: int = 2
    n_random: int = 100
    analysis: dict[str, Any] = field(default_factory=dict)  # [analysis]: the bootstrap behind intervals


# At least one task of every group, two of them multi-image (their tuples need three views of each point).
DEFAULT_TASKS = (
    "depth_zbuffer",
    "depth_euclidean",
    "normal",
    "reshading",
    "principal_curvature",
    "edge_occlusion",
    "keypoints3d",
    "segment_unsup25d",
    "edge_texture",
    "keypoints2d",
    "segment_unsup2d",
    "autoencoding",
    "denoising",
    "segment_semantic",
    "class_object",
    "class_scene",
    "jigsaw",
    "egomotion",
    "nonfixated_pose",
)

# The split gives each role its own buildings, as the original: task networks train on train, readouts fit on
# val and stop early on held-out val buildings, and the test split is large enough to rank sources image by
# image (the default: 432 test images from 18 buildings).
EVEN_SPLIT = {"train": 0.375, "val": 0.25, "test": 0.375}

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        dataset={"n_buildings": 6, "rooms_per_building": 2, "points_per_room": 2, "views_per_point": 2, "size": 32},
        split={"train": 1, "val": 1, "test": 1},
        tasks=("depth_zbuffer", "depth_euclidean", "normal", "edge_texture", "keypoints2d", "autoencoding"),
        train={"image_size": 32, "epochs": 3, "width": 16},
        transfer={
            "transfer_images": 8,
            "holdout_images": 8,
            "max_steps": 60,
            "eval_every": 5,
            "patience": 3,
            "max_order": 2,
            "beam": 3,
        },
        budgets=(2, 3),
        n_random=100,
        analysis={"bootstrap": 50},
    ),
    "default": Profile(
        name="default",
        dataset={"n_buildings": 48, "rooms_per_building": 2, "points_per_room": 4, "views_per_point": 3, "size": 64},
        split=EVEN_SPLIT,
        tasks=DEFAULT_TASKS,
        train={"image_size": 64, "epochs": 11, "width": 16},
        transfer={"transfer_images": 216, "holdout_images": 64, "max_order": 2, "beam": 5},
    ),
    "full": Profile(
        name="full",
        dataset={"n_buildings": 32, "rooms_per_building": 3, "points_per_room": 4, "views_per_point": 4, "size": 64},
        split=EVEN_SPLIT,
        tasks=None,
        train={"image_size": 64, "epochs": 12},
        transfer={"transfer_images": 288, "holdout_images": 64, "max_order": 3, "beam": 5},
        budgets=(2, 3, 4, 6),
        max_order=3,
    ),
}


@dataclass
class DemoState:
    """What the steps hand on to each other and what the demo prints at the end."""

    workspace: Workspace
    profile: Profile
    echo: Callable[[str], None]
    facts: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- the steps


def step_generate(state: DemoState) -> str:
    from taskonomy_db.generate import generate

    out = state.workspace.path(DATA_DIR)
    if (out / MANIFEST).is_file():
        return "already generated"
    report = generate(out, seed=state.workspace.seed, **state.profile.dataset)
    return f"{report.n_views} views in {len(report.buildings)} buildings ({report.n_files} files)"


def step_ingest(state: DemoState) -> str:
    from taskonomy_db.ingest import ingest_generated

    # The generated buildings are all known, so each role gets exactly its share of them (the hash split of a
    # growing dataset only approximates the fractions).
    report = ingest_generated(state.workspace, state.workspace.path(DATA_DIR))
    splits = ", ".join(f"{n} {split}" for split, n in report.images_per_split.items())
    return f"{report.n_images} images ({report.n_new} new): {splits}"


def step_train(state: DemoState) -> str:
    from taskonomy_db.training import train_tasks

    results = train_tasks(state.workspace, list(state.profile.tasks or []) or None, progress=True)
    beats = sum(r.beats_baseline for r in results)
    trained = sum(not r.skipped for r in results)
    state.facts["gold_beats_baseline"] = f"{beats}/{len(results)}"
    return f"{trained} trained, {len(results) - trained} already done; {beats}/{len(results)} beat their baseline"


def step_export(state: DemoState) -> str:
    from taskonomy_db.encoders import export_encoders

    names = [*(state.profile.tasks or []), "random"] if state.profile.tasks else None
    records = export_encoders(state.workspace, names)
    worst = max((r.parity_max_abs_diff or 0.0) for r in records)
    return f"{len(records)} encoders in ONNX, parity max |diff| {worst:.1e}"


def step_extract(state: DemoState) -> str:
    from taskonomy_db.extract import extract

    names = [*(state.profile.tasks or []), "random"] if state.profile.tasks else None
    reports = extract(state.workspace, names)
    done = sum(r.n_extracted for r in reports)
    return f"{len(reports)} encoders x {reports[0].n_images} images ({done} extracted now)"


def step_transfer(state: DemoState) -> str:
    from taskonomy_db.transfer import run_transfers

    summary = run_transfers(state.workspace, targets=_targets(state), sources=_sources(state))
    done = sum(entry["done"] for entry in summary.counts.values())
    skipped = sum(entry["skipped"] for entry in summary.counts.values())
    failed = sum(entry["failed"] for entry in summary.counts.values())
    return f"{done} transfers and baselines done, {skipped} already done, {failed} failed"


def own_encoder_ranks(db: Database) -> dict[str, int | None]:
    """Each target's own encoder's rank among its first-order sources by affinity (1 = best; None when the
    target's own encoder was not a source). The baselines gold and scratch are networks, not sources."""
    rows = db.query(
        """
        with first_order as (
            select target, sources[1] as source, affinity,
                   row_number() over (partition by target order by affinity desc, sources[1]) as rank
            from affinity
            where "order" = 1 and sources[1] not in ('gold', 'scratch')
        )
        select target, min(rank) filter (where source = target) as own_rank
        from first_order group by target order by target
        """
    ).to_pylist()
    return {row["target"]: row["own_rank"] for row in rows}


def best_other_sources(db: Database) -> dict[str, str]:
    """Each target's best first-order source by affinity other than its own encoder and the baselines."""
    rows = db.query(
        """
        select target, sources[1] as source
        from affinity
        where "order" = 1 and sources[1] <> target and sources[1] not in ('gold', 'scratch', 'random')
        qualify row_number() over (partition by target order by affinity desc, sources[1]) = 1
        order by target
        """
    ).to_pylist()
    return {row["target"]: row["source"] for row in rows}


def median_first_order_gain(db: Database) -> float | None:
    """The median Gain (win rate against scratch) of the first-order transfers."""
    return db.scalar(
        """select median(gain) from measured_affinity where kind = 'transfer' and "order" = 1 and gain is not null"""
    )


def median_gain_interval(db: Database) -> tuple[float, float] | None:
    """The percentile interval of that median over the building-bootstrap replicates ([analysis] level)."""
    row = db.query(
        """
        with medians as (
            select replicate, median(gain) as gain from bootstrap_affinity
            where replicate > 0 and kind = 'transfer' and "order" = 1 and gain is not null
            group by replicate
        )
        select
            quantile_cont(gain, (1 - getvariable('bootstrap_level')) / 2) as low,
            quantile_cont(gain, (1 + getvariable('bootstrap_level')) / 2) as high
        from medians
        """
    ).to_pylist()[0]
    return None if row["low"] is None else (row["low"], row["high"])


def step_affinity(state: DemoState) -> str:
    db = state.workspace.db
    n_affinities = db.scalar("select count(*) from affinity")
    ranks = own_encoder_ranks(db)
    in_top3 = [target for target, rank in ranks.items() if rank is not None and rank <= 3]
    state.facts["own_encoder_in_top3"] = {"n": len(in_top3), "of": len(ranks)}
    best = best_other_sources(db)
    depths = ("depth_zbuffer", "depth_euclidean")
    if all(d in best for d in depths):
        state.facts["depth_pair_best"] = {d: best[d] for d in depths}
    gain = median_first_order_gain(db)
    state.facts["median_first_order_gain"] = gain
    interval = median_gain_interval(db)
    state.facts["median_first_order_gain_interval"] = interval
    shown = "n/a" if gain is None else f"{gain:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
    return (
        f"{n_affinities} affinities; own encoder among the 3 best sources for {len(in_top3)}/{len(ranks)} targets;"
        f" median first-order Gain {shown}"
    )


def tree_against_groups(db: Database) -> tuple[TaskTree, dict[str, int], float]:
    """The task similarity tree cut into as many clusters as the registry has groups among its tasks, and the
    adjusted Rand index of that cut with the registry's groups over the 3D and 2D tasks."""
    from taskonomy_db.tasks import get_task
    from taskonomy_db.tree import adjusted_rand_index, build_tree

    tree = build_tree(db)
    groups = {t: get_task(t).group for t in tree.tasks if t != "random"}
    clusters = tree.clusters(min(len(set(groups.values())), len(tree.tasks)))
    spatial = [t for t in groups if groups[t] in ("3D", "2D")]
    ari = adjusted_rand_index([clusters[t] for t in spatial], [groups[t] for t in spatial])
    return tree, clusters, ari


def step_tree(state: DemoState) -> str:
    from taskonomy_db.tree import draw_dendrogram, members_by_cluster
    from taskonomy_db.tree_support import cluster_support

    tree, clusters, ari = tree_against_groups(state.workspace.db)
    support = cluster_support(state.workspace.db, tree, max(clusters.values())).support
    draw_dendrogram(tree, clusters, state.workspace.path("reports"), support)
    state.facts["tree_ari_3d_vs_2d"] = ari
    state.facts["tree_groups"] = members_by_cluster(clusters)
    state.facts["tree_support"] = [support[n] for n in range(1, len(state.facts["tree_groups"]) + 1)]
    n_groups = len(state.facts["tree_groups"])
    shares = ", ".join(f"{share:.0%}" for share in state.facts["tree_support"])
    return (
        f"{len(tree.tasks)} tasks in {n_groups} groups (bootstrap support {shares});"
        f" 3D vs 2D adjusted Rand index {ari:.2f}"
    )


def smoothing_changes(state: DemoState, taxonomies: dict[int, Taxonomy], order: int) -> dict[str, Any]:
    """How many targets each taxonomy serves otherwise when the win rates are smoothed the other way: Laplace's
    (wins + 1) / (n + 2) against the paper's clip, or the clip against the study's own smoothing."""
    from taskonomy_db.evaluation import load_affinity_rows
    from taskonomy_db.taxonomy import build_problem, solve

    variables = state.workspace.sql_variables()
    other = 1.0 if variables["win_rate_smoothing"] == 0 else 0.0
    rows = load_affinity_rows(Database(state.workspace.db.path, {**variables, "win_rate_smoothing": other}))
    changed = {}
    for budget, taxonomy in taxonomies.items():
        smoothed = solve(build_problem(rows, budget=budget, max_order=order))
        changed[budget] = sum(smoothed.serving(t) != taxonomy.serving(t) for t in taxonomy.problem.target_tasks)
    return {"smoothing": other, "targets_served_otherwise": changed}


def step_taxonomy(state: DemoState) -> str:
    from taskonomy_db.evaluation import load_affinity_rows, load_measurements, sweep
    from taskonomy_db.significance import cross_fitted_sweep
    from taskonomy_db.stability import taxonomy_stability
    from taskonomy_db.taxonomy import plain_number

    db = state.workspace.db
    rows = load_affinity_rows(db)
    order = state.profile.max_order
    n_tasks = len({row[0] for row in rows} | {s for row in rows for s in row[1]})
    cells = sweep(
        rows,
        load_measurements(db),
        budgets=list(range(1, n_tasks + 1)),
        orders=list(range(1, order + 1)),
        n_random=state.profile.n_random,
        seed=state.workspace.seed,
    )
    chosen = {cell.budget: cell for cell in cells if cell.max_order == order and cell.budget in state.profile.budgets}
    state.facts["taxonomies"] = {b: cell.taxonomy for b, cell in sorted(chosen.items()) if cell.taxonomy}
    stable = {b: taxonomy_stability(db, b, order) for b, cell in sorted(chosen.items()) if cell.taxonomy}
    state.facts["same_supervised_share"] = {b: found.same_supervised_share for b, found in stable.items()}
    state.facts["smoothing_changes"] = smoothing_changes(state, {b: stable[b].taxonomy for b in stable}, order)
    # The check scores each taxonomy on test buildings it was not chosen on (see taskonomy_db.significance).
    crossed = cross_fitted_sweep(db, state.profile.budgets, [order], state.profile.n_random, state.workspace.seed)
    state.facts["significance"] = {f"budget {c.budget}, order {order}": c.percentile for c in crossed}
    shown = ", ".join(
        f"budget {c.budget}: {'infeasible' if c.percentile is None else f'{c.percentile:.0f}'}" for c in crossed
    )
    same = ", ".join(
        f"budget {plain_number(b)}: {share:.0%}" for b, share in state.facts["same_supervised_share"].items()
    )
    return (
        f"{len(cells)} (budget, order) taxonomies solved; cross-fitted Quality percentile vs random: {shown};"
        f" same supervised set in bootstrap replicates: {same}; targets served otherwise under smoothing"
        f" {state.facts['smoothing_changes']['smoothing']:g}: "
        + ", ".join(f"budget {b}: {n}" for b, n in state.facts["smoothing_changes"]["targets_served_otherwise"].items())
    )


def step_report(state: DemoState) -> str:
    from taskonomy_db.report import build_report

    path = build_report(
        state.workspace,
        budgets=state.profile.budgets,
        max_order=state.profile.max_order,
        n_random=state.profile.n_random,
    )
    state.facts["report"] = str(path)
    return str(path)


STEPS: tuple[tuple[str, Callable[[DemoState], str]], ...] = (
    ("generate", step_generate),
    ("ingest", step_ingest),
    ("train", step_train),
    ("export", step_export),
    ("extract", step_extract),
    ("transfer", step_transfer),
    ("affinity", step_affinity),
    ("tree", step_tree),
    ("taxonomy", step_taxonomy),
    ("report", step_report),
)


def _targets(state: DemoState) -> list[str] | None:
    from taskonomy_db.tasks import get_task

    if state.profile.tasks is None:
        return None
    return [t for t in state.profile.tasks if get_task(t).is_target]


def _sources(state: DemoState) -> list[str] | None:
    return list(state.profile.tasks) if state.profile.tasks is not None else None


# ------------------------------------------------------------------------------------------------ running


def prepare_workspace(path: Path, profile: Profile, seed: int) -> Workspace:
    """Create the demo workspace with the profile's settings, or reopen one made by the same profile."""
    if (path / SETTINGS_FILE).is_file():
        workspace = Workspace.open(path)
        made_by = workspace.settings.demo.profile
        if made_by != profile.name:
            what = f"the {made_by} profile" if made_by else "something other than `tdb demo`"
            raise DemoError(f"{path} was made by {what}; use another workspace for the {profile.name} profile")
        return workspace
    workspace = Workspace.init(path, seed=seed)
    workspace.update_settings("demo", {"profile": profile.name})
    workspace.update_settings("split", dict(profile.split))
    workspace.update_settings("train", dict(profile.train))
    workspace.update_settings("transfer", dict(profile.transfer))
    if profile.analysis:
        workspace.update_settings("analysis", dict(profile.analysis))
    return workspace


def run_demo(path: Path, profile_name: str, echo: Callable[[str], None], seed: int = 0) -> DemoState:
    if profile_name not in PROFILES:
        raise DemoError(f"unknown profile {profile_name!r}; expected one of {', '.join(PROFILES)}")
    profile = PROFILES[profile_name]
    workspace = prepare_workspace(Path(path), profile, seed)
    state = DemoState(workspace, profile, echo)
    echo(f"tdb demo ({profile.name} profile) in {workspace.root}")
    started = time.perf_counter()
    with workspace.run("demo", {"profile": profile.name}):
        for name, step in STEPS:
            step_started = time.perf_counter()
            summary = step(state)
            echo(f"  {name:<9} {time.perf_counter() - step_started:6.1f} s  {summary}")
    state.facts["seconds"] = time.perf_counter() - started
    echo_summary(state)
    return state


def echo_summary(state: DemoState) -> None:
    echo, facts = state.echo, state.facts
    echo("")
    echo(f"done in {facts['seconds']:.0f} s. Report: {facts['report']}")
    echo("")
    echo("Task tree groups (bootstrap support: share of replicates whose tree has the group):")
    for number, (tasks, share) in enumerate(zip(facts["tree_groups"], facts["tree_support"], strict=True), start=1):
        echo(f"  {number}. {', '.join(tasks)} ({share:.0%})")
    for budget, taxonomy in facts["taxonomies"].items():
        echo("")
        echo(f"Taxonomy at budget {budget} (max order {state.profile.max_order}):")
        same = facts["same_supervised_share"][budget]
        echo(f"  supervise: {', '.join(taxonomy.supervised)} (the same set in {same:.0%} of bootstrap replicates)")
        for target, transfer in sorted(taxonomy.transfers.items()):
            echo(f"  {target} <- {' + '.join(transfer.sources)}")
    echo("")
    top3 = facts["own_encoder_in_top3"]
    echo("Checks:")
    echo(f"  own encoder among its 3 best sources: {top3['n']}/{top3['of']} targets")
    if "depth_pair_best" in facts:
        best = facts["depth_pair_best"]
        mutual = best["depth_zbuffer"] == "depth_euclidean" and best["depth_euclidean"] == "depth_zbuffer"
        listed = ", ".join(f"{target} <- {source}" for target, source in best.items())
        echo(f"  depth pair each other's best source: {'yes' if mutual else 'no'} ({listed})")
    echo(f"  tree, 3D vs 2D adjusted Rand index: {facts['tree_ari_3d_vs_2d']:.2f}")
    for cell, percentile in facts["significance"].items():
        shown = "infeasible" if percentile is None or math.isnan(percentile) else f"percentile {percentile:.0f}"
        echo(f"  taxonomy Quality vs {state.profile.n_random} random policies (cross-fitted), {cell}: {shown}")
    gain, interval = facts["median_first_order_gain"], facts["median_first_order_gain_interval"]
    shown = "n/a" if gain is None else f"{gain:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
    echo(f"  median first-order Gain: {shown}")


def summary_json(state: DemoState) -> str:
    facts = dict(state.facts)
    facts["taxonomies"] = {
        str(b): {"supervised": list(t.supervised), "transfers": {k: list(v.sources) for k, v in t.transfers.items()}}
        for b, t in facts["taxonomies"].items()
    }
    return json.dumps(facts, indent=2, default=str)
