"""`tdb demo --tiny` end to end: the method's structure shows, and an interrupted demo resumes to the same result."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from taskonomy_db.demo import PROFILES, STEPS

TDB = [sys.executable, "-c", "from taskonomy_db.cli import main; main()"]


def run_demo(workspace: Path, timeout: float = 600) -> dict:
    done = subprocess.run(
        [*TDB, "demo", str(workspace), "--tiny", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def results(workspace: Path) -> dict:
    """Everything the method computes, read with a plain DuckDB client, in a comparable form."""
    con = duckdb.connect(str(workspace / "taskonomy.duckdb"), read_only=True)
    try:
        return {
            "losses": con.execute(
                "select transfers.transfer_key, losses.image_id, losses.loss from losses "
                "join transfers using (transfer_id) order by all"
            ).fetchall(),
            "failed": con.execute("select transfer_key from transfers where status = 'failed' order by 1").fetchall(),
            "affinity": con.execute('select target, sources, "order", affinity from affinity order by all').fetchall(),
            "gold": con.execute("select task, test_loss from gold_results order by all").fetchall(),
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict, dict]:
    """The demo's workspace, its JSON summary, and its results as they were when it finished: the rerun test
    writes to the workspace again, so what the other tests compare with is read before any of them runs."""
    workspace = tmp_path_factory.mktemp("demo") / "ws"
    facts = run_demo(workspace)
    return workspace, facts, results(workspace)


# The tiny profile's tasks by the paper's groups, written out rather than read from the registry the demo reads.
TINY_GROUPS = {"depth_zbuffer": "3D", "depth_euclidean": "3D", "normal": "3D", "edge_texture": "2D",
               "keypoints2d": "2D", "autoencoding": "2D"}  # fmt: skip


def own_encoder_in_top3(affinity_rows: list[tuple]) -> tuple[int, int]:
    """(targets whose own encoder is among their 3 best first-order sources by affinity, targets), recounted
    from the affinity rows; the baselines gold and scratch are networks, not sources; ties go by name."""
    ranked: dict[str, list[tuple[float, str]]] = {}
    for target, sources, order, affinity in affinity_rows:
        if order == 1 and sources[0] not in ("gold", "scratch"):
            ranked.setdefault(target, []).append((-affinity, sources[0]))
    n = sum(target in [source for _, source in sorted(sources)[:3]] for target, sources in ranked.items())
    return n, len(ranked)


def adjusted_rand_index_by_pairs(labels_a: list, labels_b: list) -> float:
    """ARI from the four pair counts, item pair by item pair: another route than the demo's contingency sums."""
    together_both = together_a = together_b = apart_both = 0
    for (a1, b1), (a2, b2) in itertools.combinations(zip(labels_a, labels_b, strict=True), 2):
        same_a, same_b = a1 == a2, b1 == b2
        together_both += same_a and same_b
        together_a += same_a and not same_b
        together_b += same_b and not same_a
        apart_both += not same_a and not same_b
    numerator = 2 * (together_both * apart_both - together_a * together_b)
    return numerator / (
        (together_both + together_a) * (together_a + apart_both)
        + (together_both + together_b) * (together_b + apart_both)
    )


def test_tiny_demo_runs_every_step_and_reports_its_checks(uninterrupted):
    # Whether the structure shows (tree, significance, own encoder) needs the default profile's data and
    # training; benchmarks/bench_demo.py asserts that. Here: each figure the tiny demo reports is the one its
    # store and tree give, recomputed another way.
    workspace, facts, stored = uninterrupted
    assert Path(facts["report"]).is_file() and (workspace / "reports").is_dir()
    assert set(facts["significance"]) == {f"budget {b}, order 2" for b in PROFILES["tiny"].budgets}
    assert set(facts["taxonomies"]) == {str(b) for b in PROFILES["tiny"].budgets}

    top3 = facts["own_encoder_in_top3"]
    assert top3["of"] == len(PROFILES["tiny"].tasks)
    assert isinstance(top3["n"], int) and 0 <= top3["n"] <= top3["of"]
    assert (top3["n"], top3["of"]) == own_encoder_in_top3(stored["affinity"])

    cluster = {task: number for number, tasks in enumerate(facts["tree_groups"]) for task in tasks}
    assert set(TINY_GROUPS) <= set(cluster)
    spatial = sorted(TINY_GROUPS)
    expected = adjusted_rand_index_by_pairs([cluster[t] for t in spatial], [TINY_GROUPS[t] for t in spatial])
    assert facts["tree_ari_3d_vs_2d"] == pytest.approx(expected, abs=1e-12)


def test_tiny_demo_rerun_skips_everything_and_changes_nothing(uninterrupted):
    workspace, _, before = uninterrupted
    run_demo(workspace)
    assert results(workspace) == before


def kill_during(workspace: Path, step: str) -> None:
    """Start the demo and SIGKILL it a moment into `step` (a step's line is printed when it has finished)."""
    previous = [name for name, _ in STEPS][[name for name, _ in STEPS].index(step) - 1]
    process = subprocess.Popen(
        [*TDB, "demo", str(workspace), "--tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    for line in process.stdout:
        if line.split()[:1] == [previous]:
            time.sleep(2)
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_demo_killed_during_train_and_transfer_resumes_to_identical_results(uninterrupted, tmp_path):
    _, _, expected = uninterrupted
    workspace = tmp_path / "ws"
    kill_during(workspace, "train")
    kill_during(workspace, "transfer")
    run_demo(workspace)
    assert results(workspace) == expected


def test_demo_refuses_a_workspace_made_otherwise(tmp_path):
    from taskonomy_db.workspace import Workspace

    Workspace.init(tmp_path / "ws")
    done = subprocess.run([*TDB, "demo", str(tmp_path / "ws"), "--tiny"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "was made by something other than `tdb demo`" in done.stderr


def test_default_profile_is_what_generate_and_train_do_by_default():
    # The README promises that `tdb generate` + `tdb train` without options reproduce the demo's default data
    # and networks; the profile spells its settings out (it is written into tdb.toml), so they must agree.
    from dataclasses import asdict

    from taskonomy_db.generate import GenerateSettings
    from taskonomy_db.training import DEFAULT_TRAIN_SETTINGS

    profile = PROFILES["default"]
    generated = asdict(GenerateSettings())
    assert profile.dataset == {key: generated[key] for key in profile.dataset}
    assert profile.train == {key: DEFAULT_TRAIN_SETTINGS[key] for key in profile.train}
