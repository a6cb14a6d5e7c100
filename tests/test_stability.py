"""Taxonomy stability over building-bootstrap replicates: a planted clear choice recurs in every replicate, a
planted coin flip in some, and the study's taxonomy is the one `tdb taxonomy` solves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.evaluation import load_affinity_rows
from taskonomy_db.stability import taxonomy_stability
from taskonomy_db.taxonomy import TaxonomyInputError, build_problem, solve
from taskonomy_db.workspace import Workspace
from tests.test_bootstrap import N_BUILDINGS, PER_BUILDING, write_study

N_IMAGES = N_BUILDINGS * PER_BUILDING


def study_of(tmp_path, rival: np.ndarray) -> Workspace:
    """Target normal: depth_zbuffer far better than gold, `rival` for reshading, edge_texture always worst."""
    rng = np.random.default_rng(5)
    depth = rng.normal(0, 1, N_IMAGES)
    workspace = Workspace.init(tmp_path / "study")
    write_study(
        workspace,
        {
            "normal": {
                "gold": depth + 3,
                "scratch": depth + 4,
                "depth_zbuffer": depth,
                "reshading": rival,
                "edge_texture": depth + 10,
            }
        },
    )
    return workspace


def test_a_planted_clear_choice_recurs_in_every_replicate(tmp_path):
    workspace = study_of(tmp_path, np.linspace(5, 6, N_IMAGES))  # reshading: worse than gold on every image
    stability = taxonomy_stability(workspace.db, budget=1, max_order=1)
    assert stability.taxonomy.supervised == ("depth_zbuffer",)
    assert stability.replicates == 200 and stability.skipped == 0
    assert stability.serving_share == {"normal": 1.0}
    assert stability.supervised_share["depth_zbuffer"] == 1.0 and stability.same_supervised_share == 1.0


def test_a_planted_coin_flip_recurs_in_some_replicates_only(tmp_path):
    # reshading as good as depth_zbuffer: the same distribution, other draws; which one wins moves with the buildings
    workspace = study_of(tmp_path, np.random.default_rng(6).normal(0, 1, N_IMAGES))
    stability = taxonomy_stability(workspace.db, budget=1, max_order=1)
    study = stability.taxonomy
    assert study.supervised in (("depth_zbuffer",), ("reshading",))
    assert 0 < stability.serving_share["normal"] < 1
    # budget 1, every cost 1: each replicate supervises exactly one task
    assert sum(stability.supervised_share.values()) == pytest.approx(1.0)
    assert stability.same_supervised_share == stability.supervised_share[study.supervised[0]]
    # the study's taxonomy is the one solved on the affinity view, as `tdb taxonomy` solves it
    direct = solve(build_problem(load_affinity_rows(workspace.db), budget=1, max_order=1))
    assert (direct.supervised, dict(direct.transfers)) == (study.supervised, dict(study.transfers))


def test_cli_stability_in_json_and_text_and_its_refusals(tmp_path):
    workspace = study_of(tmp_path, np.linspace(5, 6, N_IMAGES))
    args = ["taxonomy", "--budget", "1", "--max-order", "1", "--stability", "-w", str(workspace.root)]
    result = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["supervised"] == ["depth_zbuffer"]
    assert printed["stability"]["serving_share"] == {"normal": 1.0}
    assert printed["stability"]["replicates"] == 200
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0 and "same supervised set in 100% of 200 replicates" in text.output, text.output
    swept = CliRunner().invoke(cli, [*args, "--sweep"])
    assert swept.exit_code == 2 and "--stability" in swept.output and "Traceback" not in swept.output
    workspace.update_settings("analysis", {"bootstrap": 0})
    with pytest.raises(TaxonomyInputError, match="no bootstrap replicates"):
        taxonomy_stability(workspace.db, budget=1, max_order=1)


def planted_groups(tmp_path) -> Workspace:
    """Two groups of sources: 3D ones far better for the 3D targets, semantic ones for the semantic targets."""
    rng = np.random.default_rng(9)
    groups = {"3d": ["depth_zbuffer", "depth_euclidean", "keypoints3d"], "semantic": ["segment_semantic", "jigsaw"]}
    targets = {"normal": "3d", "reshading": "3d", "class_scene": "semantic", "class_object": "semantic"}
    losses = {}
    for target, group in targets.items():
        losses[target] = {"gold": rng.normal(-3, 1, N_IMAGES), "scratch": rng.normal(3, 1, N_IMAGES)}
        for name, members in groups.items():
            for source in members:
                losses[target][source] = rng.normal(-1.5 if name == group else 1.5, 1, N_IMAGES)
    workspace = Workspace.init(tmp_path / "grouped")
    write_study(workspace, losses)
    return workspace


def test_planted_clusters_have_full_support_and_the_cli_draws_it(tmp_path):
    from taskonomy_db.tree import build_tree, members_by_cluster
    from taskonomy_db.tree_support import cluster_support

    workspace = planted_groups(tmp_path)
    study = build_tree(workspace.db)
    assert members_by_cluster(study.clusters(2)) in (
        [["depth_euclidean", "depth_zbuffer", "keypoints3d"], ["jigsaw", "segment_semantic"]],
        [["jigsaw", "segment_semantic"], ["depth_euclidean", "depth_zbuffer", "keypoints3d"]],
    )
    support = cluster_support(workspace.db, study, 2)
    assert support.replicates == 200 and support.support == {1: 1.0, 2: 1.0}
    assert sorted(support.consensus) == [
        ["depth_euclidean", "depth_zbuffer", "keypoints3d"],
        ["jigsaw", "segment_semantic"],
    ]
    # three clusters split a group by noise alone: that split is not supported by every replicate
    assert min(cluster_support(workspace.db, study, 3).support.values()) < 1.0

    result = CliRunner().invoke(
        cli, ["tree", "--clusters", "2", "--support", "--format", "json", "-w", str(workspace.root)]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["support"] == {"1": 1.0, "2": 1.0} and printed["support_replicates"] == 200
    svg = (workspace.root / "reports" / "task_tree.svg").read_text()
    assert "bootstrap support" in svg and "100%" in svg


def test_a_published_origin_has_no_replicates_to_resample(tmp_path):
    from taskonomy_db.published import import_published
    from tests.faults.test_bad_inputs import write_release

    workspace = study_of(tmp_path, np.linspace(5, 6, N_IMAGES))
    import_published(workspace.db, write_release(tmp_path / "release"), "16k")  # now the active origin
    for args, message in [
        (["affinity", "--ci"], "--ci needs the measured origin"),
        (["affinity", "--ci", "--origin", "published_16k"], "--ci needs the measured origin"),
        (["tree", "--clusters", "2", "--support"], "--support needs the measured origin"),
        (["taxonomy", "--budget", "1", "--stability"], "--stability needs the measured origin"),
    ]:
        refused = CliRunner().invoke(cli, [*args, "-w", str(workspace.root)])
        assert refused.exit_code == 2 and isinstance(refused.exception, SystemExit), refused.output
        assert message in refused.output and "Traceback" not in refused.output
    measured = CliRunner().invoke(cli, ["affinity", "--ci", "--origin", "measured", "-w", str(workspace.root)])
    assert measured.exit_code == 0 and "depth_zbuffer" in measured.output
