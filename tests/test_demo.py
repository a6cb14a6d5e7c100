"""`tdb demo --tiny` end to end: the method's structure shows, and an interrupted demo resumes to the same result."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest

from taskonomy_db.db import Database
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

    # What it says of its own uncertainty: the median Gain's interval recomputed from the replicates by numpy
    with duckdb.connect(str(workspace / "taskonomy.duckdb"), read_only=True) as con:
        con.execute(f"set variable bootstrap_replicates = {PROFILES['tiny'].analysis['bootstrap']}")
        gains = con.execute(
            """select replicate, list(gain) from bootstrap_affinity where replicate > 0 and kind = 'transfer'
            and "order" = 1 and gain is not null group by replicate"""
        ).fetchall()
    medians = [float(np.median(values)) for _, values in gains]
    assert len(medians) == PROFILES["tiny"].analysis["bootstrap"]
    assert facts["median_first_order_gain_interval"] == pytest.approx(list(np.percentile(medians, [2.5, 97.5])))
    assert len(facts["tree_support"]) == len(facts["tree_groups"])
    assert all(0 <= share <= 1 for share in facts["tree_support"])
    assert set(facts["same_supervised_share"]) == set(facts["taxonomies"])
    changed = facts["smoothing_changes"]["targets_served_otherwise"]
    assert set(changed) == set(facts["taxonomies"]) and all(0 <= n <= len(TINY_GROUPS) for n in changed.values())


def test_tiny_demo_rerun_skips_everything_and_changes_nothing(uninterrupted):
    workspace, _, before = uninterrupted
    run_demo(workspace)
    assert results(workspace) == before


def _read_lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)  # the output ended


def kill_during(workspace: Path, step: str, started: Callable[[], bool]) -> None:
    """Start the demo and SIGKILL it once `started()` shows `step` under way (polled only after the step before
    has printed its line: a step's line is printed when it has finished); then check the kill landed mid-step."""
    previous = [name for name, _ in STEPS][[name for name, _ in STEPS].index(step) - 1]
    process = subprocess.Popen(
        [*TDB, "demo", str(workspace), "--tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    # A thread reads the pipe, so waiting for a line has a deadline and the pipe never fills.
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    printed: list[str] = []
    deadline = time.monotonic() + 300
    try:
        while not any(line.split()[:1] == [previous] for line in printed):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {previous!r} line within 300 s: {printed}")
            assert line is not None, f"the demo ended before {step}: {printed}"
            printed.append(line)
        while not started():
            assert process.poll() is None, f"the demo ended before {step} was seen under way: {printed}"
            assert time.monotonic() < deadline, f"{step} not seen under way within 300 s: {printed}"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    reader.join(timeout=60)
    while not lines.empty():
        printed.append(lines.get() or "")
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL, f"the demo ended before the kill: {printed}"
    assert not any(line.split()[:1] == [step] for line in printed), f"{step} finished before the kill: {printed}"


def test_demo_killed_during_train_and_transfer_resumes_to_identical_results(uninterrupted, tmp_path):
    _, _, expected = uninterrupted
    workspace = tmp_path / "ws"
    # Under way: a network's first epoch is written to its resume file; two transfers are stored.
    kill_during(workspace, "train", lambda: any((workspace / "models").glob("*.last.pt")))
    store, done = Database(workspace / "taskonomy.duckdb"), "select count(*) from transfers where status = 'done'"
    kill_during(workspace, "transfer", lambda: store.scalar(done) >= 2)
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
    from taskonomy_db.settings import TrainSettings

    profile = PROFILES["default"]
    generated = asdict(GenerateSettings())
    assert profile.dataset == {key: generated[key] for key in profile.dataset}
    assert profile.train == {key: getattr(TrainSettings(), key) for key in profile.train}
