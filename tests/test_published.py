"""`tdb import-published` on the paper's released results, and the unpickler that refuses anything but numpy."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.published import PAPER_TO_DOMAIN, PublishedDataError, load_pickle, read_published, set_active
from taskonomy_db.tasks import list_tasks
from taskonomy_db.tree import PAPER_GROUPS
from taskonomy_db.workspace import Workspace
from tests.conftest import PUBLISHED, write_synthetic_release

needs_published = pytest.mark.skipif(
    not (PUBLISHED / "results").is_dir(), reason=f"the paper's released results are not at {PUBLISHED}"
)


def import_into(workspace: Workspace, data: str, release: Path = PUBLISHED) -> dict:
    result = CliRunner().invoke(
        cli, ["import-published", str(release), "--data", data, "-w", str(workspace.root), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def published_workspace(tmp_path_factory):
    if not (PUBLISHED / "results").is_dir():
        pytest.skip(f"the paper's released results are not at {PUBLISHED}")
    workspace = Workspace.init(tmp_path_factory.mktemp("published") / "ws")
    import_into(workspace, "1k")
    import_into(workspace, "16k")
    return workspace


@needs_published
@pytest.mark.parametrize(("data", "n_affinities"), [("1k", 1418), ("16k", 1758)])
def test_affinities_sum_to_one_per_target_as_released(published_workspace, data, n_affinities):
    set_active(published_workspace.db, data)
    with duckdb.connect(str(published_workspace.db.path), read_only=True) as con:
        sums = con.sql("select target, sum(affinity), count(*) from affinity group by target").fetchall()
        origin = con.execute("select origin from active_origin").fetchone()[0]
    assert origin == f"published_{data}"
    assert len(sums) == 22 and sum(n for _, _, n in sums) == n_affinities
    for target, total, _ in sums:
        assert total == pytest.approx(1.0, abs=1e-12), target


@needs_published
def test_names_are_mapped_to_domains_and_baselines(published_workspace):
    set_active(published_workspace.db, "16k")
    rows = published_workspace.db.query('select target, sources, "order" from affinity').to_pylist()
    names = {r["target"] for r in rows} | {s for r in rows for s in r["sources"]}
    paper_only = set(PAPER_TO_DOMAIN) - set(PAPER_TO_DOMAIN.values())
    assert not names & paper_only
    assert {"gold", "random", "normal", "depth_zbuffer", "class_scene", "inpainting", "vanishing_point"} <= names
    # The measured study names the same tasks, the multi-image ones included; class_selected has no domain.
    assert names - {"gold", "scratch", "random", "class_selected"} <= set(list_tasks())
    assert {"egomotion", "fixated_pose", "nonfixated_pose", "point_matching"} <= names
    assert all(r["sources"] == sorted(r["sources"]) and r["order"] == len(r["sources"]) for r in rows)
    targets = {r["target"] for r in rows}
    first_order = {(r["target"], r["sources"][0]) for r in rows if r["order"] == 1}
    assert all((t, "gold") in first_order and (t, t) in first_order for t in targets)  # self__t and t__t
    quality = published_workspace.db.query("select quality from quality where sources = ['gold']").column(0)
    assert set(quality.to_pylist()) == {0.5}  # gold against itself, as released
    assert published_workspace.db.scalar("select count(*) from gain") == 1762


@needs_published
def test_switching_origins(published_workspace):
    set_active(published_workspace.db, None)
    assert published_workspace.db.scalar("select origin from active_origin") == "measured"
    assert published_workspace.db.scalar("select count(*) from affinity") == 0
    set_active(published_workspace.db, "1k")
    assert published_workspace.db.scalar('select max("order") from affinity') == 4
    with pytest.raises(PublishedDataError, match="not imported"):
        set_active(published_workspace.db, "full")


@pytest.fixture(scope="module")
def synthetic_workspace(tmp_path_factory):
    """A synthetic release of 1k and 16k (different seeds), imported like the published one: 1k, then 16k."""
    base = tmp_path_factory.mktemp("synthetic")
    source_only = {"colorization", "inpainting", "jigsaw", "random"}
    for seed, data in ((7, "1k"), (19, "16k")):
        write_synthetic_release(base / "release", PAPER_GROUPS, source_only, seed=seed, data=data)
    workspace = Workspace.init(base / "ws")
    import_into(workspace, "1k", base / "release")
    import_into(workspace, "16k", base / "release")
    return workspace, base / "release"


@pytest.fixture(params=["synthetic", "published"])
def imported_release(request):
    """(workspace with 1k and 16k imported, the release's folder)."""
    if request.param == "published":
        return request.getfixturevalue("published_workspace"), PUBLISHED
    return request.getfixturevalue("synthetic_workspace")


def affinities_served(root: str) -> dict[tuple[str, tuple[str, ...]], float | None]:
    result = CliRunner().invoke(cli, ["affinity", "--format", "json", "-w", root])
    assert result.exit_code == 0, result.output
    return {(r["target"], tuple(r["sources"])): r["affinity"] for r in json.loads(result.stdout)}


def test_origin_command_shows_and_switches(imported_release):
    workspace, release = imported_release
    root = str(workspace.root)
    runner = CliRunner()
    result = runner.invoke(cli, ["origin", "measured", "--format", "json", "-w", root])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["active"] == "measured"
    assert workspace.db.scalar("select count(*) from affinity") == 0
    assert affinities_served(root) == {}
    result = runner.invoke(cli, ["origin", "published_1k", "-w", root])
    assert result.exit_code == 0 and "active origin: published_1k" in result.output
    assert workspace.db.scalar("select origin from active_origin") == "published_1k"
    # `tdb affinity` now serves the 1k release, as its pickles hold it
    assert affinities_served(root) == {
        (r["target"], tuple(r["sources"])): r["affinity"] for r in read_published(release, "1k")
    }
    result = runner.invoke(cli, ["origin", "published_full", "-w", root])
    assert result.exit_code == 1 and "not imported" in result.output
    result = runner.invoke(cli, ["origin", "published", "-w", root])
    assert result.exit_code == 2 and "unknown origin" in result.output
    assert workspace.db.scalar("select origin from active_origin") == "published_1k"


class RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "all_affinities_16k.pkl"
    evil.write_bytes(pickle.dumps({"rgb2depth__normal": RunsACommand(marker)}, protocol=3))
    with pytest.raises(PublishedDataError, match=r"refused to load .*(posix|os)\.system is not allowed"):
        load_pickle(evil)
    assert not marker.exists()


def test_crafted_pickle_through_the_command(tmp_path):
    marker = tmp_path / "pwned"
    release = tmp_path / "release" / "results"
    for folder, names in {
        "affinities": ["all_affinities_1k"],
        "winrates": ["wins_vs_task_1k", "wins_vs_pixels_1k"],
    }.items():
        (release / folder).mkdir(parents=True)
        for name in names:
            (release / folder / f"{name}.pkl").write_bytes(pickle.dumps({"x__normal": RunsACommand(marker)}))
    workspace = Workspace.init(tmp_path / "ws")
    result = CliRunner().invoke(
        cli, ["import-published", str(release.parent), "--data", "1k", "-w", str(workspace.root)]
    )
    assert result.exit_code == 1
    assert "is not allowed" in result.output and "Traceback" not in result.output
    assert not marker.exists()
    assert workspace.db.scalar("select count(*) from published_transfers") == 0


def test_object_dtype_scalars_are_refused(tmp_path):
    # numpy's scalar() would read these bytes as a PyObject pointer: memory corruption, so refused outright.
    crafted = tmp_path / "object.pkl"
    crafted.write_bytes(pickle.dumps({"a__b": np.array([None], dtype=object)[0:1]}, protocol=3))
    with pytest.raises(PublishedDataError, match="refused"):
        load_pickle(crafted)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"rgb2depth__normal": np.float64(0.25)}, protocol=3))
    assert load_pickle(plain) == {"rgb2depth__normal": 0.25}


def test_malformed_release_is_a_clear_error(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    result = CliRunner().invoke(cli, ["import-published", str(tmp_path), "--data", "16k", "-w", str(workspace.root)])
    assert result.exit_code == 1 and "does not look like taskonomy-published" in result.output
