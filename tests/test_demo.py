"""`tdb demo --tiny` end to end: the method's structure shows, and an interrupted demo resumes to the same result."""

from __future__ import annotations

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
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    workspace = tmp_path_factory.mktemp("demo") / "ws"
    return workspace, run_demo(workspace)


def test_tiny_demo_runs_every_step_and_reports_its_checks(uninterrupted):
    # The structure checks themselves (tree, significance, own encoder) need the default profile's data and
    # training; benchmarks/bench_demo.py asserts them there. Here: every step ran and reported its figures.
    workspace, facts = uninterrupted
    assert Path(facts["report"]).is_file()
    assert -1.0 <= facts["tree_ari_3d_vs_2d"] <= 1.0
    assert set(facts["significance"]) == {f"budget {b}, order 2" for b in PROFILES["tiny"].budgets}
    top3 = facts["own_encoder_in_top3"]
    assert top3["of"] == len(PROFILES["tiny"].tasks)
    assert set(facts["taxonomies"]) == {str(b) for b in PROFILES["tiny"].budgets}
    assert (workspace / "reports").is_dir()


def test_tiny_demo_rerun_skips_everything_and_changes_nothing(uninterrupted):
    workspace, _ = uninterrupted
    before = results(workspace)
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
    reference, _ = uninterrupted
    workspace = tmp_path / "ws"
    kill_during(workspace, "train")
    kill_during(workspace, "transfer")
    run_demo(workspace)
    assert results(workspace) == results(reference)


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
