"""`tdb taxonomy` and `tdb report` on an imported release: the paper's published 1k data where it is present, and
always a synthetic release written by tests/conftest.py (the same assertions), so CI checks the README's promises
without skipping them. The oracle for the JSON output is the library run on the release as `read_published` reads
the pickles, not on what the workspace's views serve."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.evaluation import Measurements, sweep_budget_limit, taxonomy_json
from taskonomy_db.published import read_published
from taskonomy_db.taxonomy import build_problem, solve
from taskonomy_db.tree import PAPER_GROUPS

from .conftest import PUBLISHED, write_synthetic_release

SOURCE_ONLY = {"colorization", "inpainting", "jigsaw", "random"}  # sources only, as in the release


def import_release(root, release, data):
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
    result = runner.invoke(cli, ["import-published", str(release), "--data", data, "-w", str(root)])
    assert result.exit_code == 0, result.output
    return root, read_published(release, data)


@pytest.fixture(scope="module")
def published_workspace(tmp_path_factory):
    if not PUBLISHED.is_dir():
        pytest.skip(f"the paper's published data is not at {PUBLISHED}")
    return import_release(tmp_path_factory.mktemp("taxonomy") / "ws", PUBLISHED, "1k")


@pytest.fixture(scope="module")
def synthetic_workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    release = write_synthetic_release(base / "release", PAPER_GROUPS, SOURCE_ONLY, seed=19)
    return import_release(base / "ws", release, "16k")


@pytest.fixture(params=["synthetic", "published"])
def imported(request):
    """(workspace root, the release's rows as read from its pickles); shared read-only by the tests."""
    return request.getfixturevalue(f"{request.param}_workspace")


def tdb(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_json_matches_the_library(imported):
    root, rows = imported
    args = ["--budget", 4, "--max-order", 2, "--target-only", "vanishing_point", "--cost", "normal=2"]
    result = tdb("taxonomy", *args, "--format", "json", "-w", root)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == ["budget", "max_order", "objective_kind", "objective", "supervised", "transfers", "per_target"]
    assert data["budget"] == 4 and data["max_order"] == 2 and data["objective_kind"] == "sqrt"
    expected = solve(
        build_problem(rows, budget=4, max_order=2, target_only=["vanishing_point"], supervision_cost={"normal": 2})
    )
    assert data["objective"] == pytest.approx(expected.objective)
    assert data["supervised"] == list(expected.supervised)
    measurements = Measurements.from_rows(
        [(r["target"], r["sources"], r["quality"]) for r in rows],
        [(r["target"], r["sources"], r["gain"]) for r in rows],
    )
    assert data == json.loads(json.dumps(taxonomy_json(expected, measurements)))
    assert "vanishing_point" in data["transfers"] and "vanishing_point" not in data["supervised"]
    info = data["per_target"]["vanishing_point"]
    assert info["sources"] == data["transfers"]["vanishing_point"]
    assert {"affinity", "gain", "quality"} <= set(info) and info["quality"] is not None
    assert all(data["per_target"][t]["quality"] == 0.5 for t in data["supervised"] if t in data["per_target"])


def test_cli_text_md_and_errors(imported):
    root, _ = imported
    text = tdb("taxonomy", "--budget", 3, "-w", root)
    assert text.exit_code == 0 and "supervised (3)" in text.output and "served by" in text.output
    md = tdb("taxonomy", "--budget", 3, "--objective", "affinity", "--format", "md", "-w", root)
    assert md.exit_code == 0 and "| target | served by |" in md.output
    infeasible = tdb("taxonomy", "--budget", 0, "--target-only", "normal", "-w", root)
    assert infeasible.exit_code == 2 and "infeasible" in infeasible.output and "target-only" in infeasible.output
    # only vanishing_point may be a source, and it is target-only: nothing can serve the targets, whatever the budget
    stranded = tdb("taxonomy", "--target-only", "vanishing_point", "--sources", "vanishing_point", "-w", root)
    assert stranded.exit_code == 2 and "no viable transfer" in stranded.output, stranded.output
    unknown = tdb("taxonomy", "--cost", "foo=1", "-w", root)  # known only once affinities are read
    assert unknown.exit_code == 1 and "unknown task" in unknown.output, unknown.output
    # A value no taxonomy can take is a usage error, whichever way it is wrong (tests/faults covers every variant).
    for args, message in [
        (["--cost", "normal=-1"], ">= 0"),
        (["--budget", "inf"], "not a finite number"),
        (["--budget", "-2"], "Invalid value for '--budget'"),
        (["--value", "normal"], "TASK=NUMBER"),
    ]:
        result = tdb("taxonomy", *args, "-w", root)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_cli_sweep_is_seeded(imported):
    root, _ = imported
    args = ["taxonomy", "--sweep", "--budget", 2, "--max-order", 2, "--format", "json", "-w", root]
    first, second = tdb(*args), tdb(*args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    data = json.loads(first.output)
    assert set(data["gain"]) == {"1", "2"} and set(data["gain"]["1"]["normal"]) == {"1", "2"}
    assert len(data["significance"]) == 4 and all(s["n_random"] >= 100 for s in data["significance"])
    text = tdb("taxonomy", "--sweep", "--budget", 2, "--max-order", 1, "--format", "md", "-w", root)
    assert "## Gain, max order 1" in text.output and "## Structure significance" in text.output


def test_cli_sweep_refuses_a_fractional_top_budget(imported):
    root, _ = imported
    # 2.5 silently became budgets 1..2
    result = tdb("taxonomy", "--sweep", "--budget", 2.5, "--max-order", 1, "-w", root)
    assert result.exit_code == 2 and "whole number" in result.output


def test_sweep_stops_at_what_supervising_every_task_costs(imported):
    root, rows = imported
    # A sweep to 1e6 ran a solve and 100 random policies per budget: days, silently.
    limit = sweep_budget_limit(rows, 1)
    # every task that appears as a source (gold and scratch are not tasks) at cost 1; transfers cost nothing
    assert limit == len({s for row in rows for s in row["sources"]} - {"gold", "scratch"})
    assert sweep_budget_limit(rows, 1, supervision_cost={"normal": 2.5}) == limit + 2
    result = tdb("taxonomy", "--sweep", "--budget", 1e6, "--max-order", 1, "-w", root)
    assert result.exit_code == 1 and f"sweep up to {limit} at most" in result.output
    result = tdb("taxonomy", "--sweep", "--random-policies", 10**9, "-w", root)
    assert result.exit_code == 2 and "--random-policies" in result.output


def test_report_refuses_more_clusters_or_budgets_than_the_study_has(imported, tmp_path):
    root, _ = imported
    out = tmp_path / "report.html"
    refused = [(["--clusters", 50], "--clusters must be between 1 and"), (["--sweep-budget", 999], "goes past")]
    for args, message in refused:
        result = tdb("report", *args, "--out", out, "-w", root)
        assert result.exit_code == 1 and message in result.output, result.output
        assert not out.exists()
