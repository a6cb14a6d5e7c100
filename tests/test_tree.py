"""`tdb tree`: the task similarity tree on the paper's released 16k affinities, and the ARI it is judged by."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.tree import PAPER_GROUPS, adjusted_rand_index, members_by_cluster
from taskonomy_db.workspace import Workspace
from tests.conftest import PUBLISHED, write_synthetic_release


def test_adjusted_rand_index_known_values():
    assert adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(0.5714285714285714)
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 1, 0, 1, 0, 1]) == pytest.approx(
        -1 / 9
    )  # worked by hand: (2 - 2.4) / (6 - 2.4)


def test_tree_recovers_groups_planted_in_a_synthetic_release(tmp_path):
    """What CI runs without the paper's data: a release written here whose affinities are built around the
    paper's four groups (their 25 tasks: denoising, which stands apart, and class_selected are not in them),
    imported and clustered by `tdb tree`. The oracle is the planted grouping itself, compared as a partition."""
    groups = PAPER_GROUPS
    source_only = {"colorization", "inpainting", "jigsaw", "random"}  # sources only, as in the release
    release = write_synthetic_release(tmp_path / "release", groups, source_only, seed=19)
    workspace = Workspace.init(tmp_path / "ws")
    imported = CliRunner().invoke(cli, ["import-published", str(release), "--data", "16k", "-w", str(workspace.root)])
    assert imported.exit_code == 0, imported.output
    result = CliRunner().invoke(cli, ["tree", "-w", str(workspace.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    tree = json.loads(result.output)
    assert sorted(tree["tasks"]) == sorted(t for tasks in groups.values() for t in tasks)
    found = {frozenset(t for t, c in tree["clusters"].items() if c == cluster) for cluster in tree["clusters"].values()}
    assert found == {frozenset(tasks) for tasks in groups.values()}
    assert tree["adjusted_rand_index_vs_paper"] == pytest.approx(1.0)
    for path in (tree["png"], tree["svg"]):
        assert (workspace.root / "reports" / path.rsplit("/", 1)[-1]).stat().st_size > 1000
    text = CliRunner().invoke(cli, ["tree", "-w", str(workspace.root), "--clusters", "2"])
    assert text.exit_code == 0 and sum(line.startswith("cluster ") for line in text.output.splitlines()) == 2


@pytest.fixture(scope="module")
def workspace_16k(tmp_path_factory):
    if not (PUBLISHED / "results").is_dir():
        pytest.skip(f"the paper's released results are not at {PUBLISHED}")
    workspace = Workspace.init(tmp_path_factory.mktemp("tree") / "ws")
    result = CliRunner().invoke(cli, ["import-published", str(PUBLISHED), "--data", "16k", "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    return workspace


def test_tree_recovers_the_papers_four_groups(workspace_16k):
    result = CliRunner().invoke(cli, ["tree", "-w", str(workspace_16k.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    tree = json.loads(result.output)
    truth = {task: group for group, tasks in PAPER_GROUPS.items() for task in tasks}
    scored = [t for t in tree["tasks"] if t in truth]
    assert len(scored) == 25 and "gold" not in tree["tasks"]
    ari = adjusted_rand_index([truth[t] for t in scored], [tree["clusters"][t] for t in scored])
    # What the README claims for the 16k release: the paper's four groups exactly.
    assert ari == pytest.approx(1.0) and tree["adjusted_rand_index_vs_paper"] == pytest.approx(1.0)
    assert len(tree["groups"]) == 4
    assert members_by_cluster(tree["clusters"]) == tree["groups"]  # what `tdb demo` prints as the tree's groups
    for path in (tree["png"], tree["svg"]):
        assert (workspace_16k.root / "reports" / path.rsplit("/", 1)[-1]).stat().st_size > 1000
    assert workspace_16k.path("reports", "task_tree.svg").read_text().lstrip().startswith("<?xml")


def test_tree_text_and_cluster_count(workspace_16k):
    result = CliRunner().invoke(cli, ["tree", "-w", str(workspace_16k.root), "--clusters", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum(line.startswith("cluster ") for line in lines) == 2
    assert any(line.rstrip().endswith("normal  [1]") or line.rstrip().endswith("normal  [2]") for line in lines)


def test_tree_without_affinities_is_a_clear_error(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    result = CliRunner().invoke(cli, ["tree", "-w", str(workspace.root)])
    assert result.exit_code == 1 and "at least two source tasks" in result.output


def test_tree_on_the_1k_release_scores_what_the_readme_claims(tmp_path):
    if not (PUBLISHED / "results").is_dir():
        pytest.skip(f"the paper's released results are not at {PUBLISHED}")
    workspace = Workspace.init(tmp_path / "ws")
    imported = CliRunner().invoke(cli, ["import-published", str(PUBLISHED), "--data", "1k", "-w", str(workspace.root)])
    assert imported.exit_code == 0, imported.output
    result = CliRunner().invoke(cli, ["tree", "-w", str(workspace.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["adjusted_rand_index_vs_paper"] == pytest.approx(0.885, abs=5e-4)
