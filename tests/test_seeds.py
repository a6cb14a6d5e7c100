"""Readout seeds in the views: each candidate's losses are averaged image by image over its seeds, every trained
candidate of a target over as many seeds as the fewest has, gold (one network) at every seed, each seed alone
gives the AHP of a single-seed study, and affinity_variance splits the variance into the seeds' part and the
test images' part."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from click.testing import CliRunner

import taskonomy_db
from taskonomy_db.cli import cli
from taskonomy_db.workspace import Workspace
from tests.test_affinity import numpy_ahp
from tests.test_bootstrap import images_table

N_BUILDINGS, PER_BUILDING = 8, 10
N_IMAGES = N_BUILDINGS * PER_BUILDING
SOURCES = ["depth_zbuffer", "edge_texture", "normal", "reshading"]


def write_seeds(workspace: Workspace, losses: dict[str, np.ndarray], target: str = "curvature") -> None:
    """Done transfers of `target`: `losses[source]` is seeds x images (gold: one row), buildings in turn."""
    images = images_table(N_BUILDINGS, PER_BUILDING)
    start = datetime(2026, 1, 1)
    with workspace.db.transaction() as con:
        con.register("new_images", images)
        con.execute('insert into images (image_id, image_key, building, point, "view", split) from new_images')
        transfer_id = 0
        for source, by_seed in losses.items():
            kind = source if source in ("gold", "scratch", "random") else "transfer"
            for seed_index, values in enumerate(np.atleast_2d(by_seed)):
                transfer_id += 1
                con.execute(
                    'insert into transfers (transfer_id, transfer_key, target, sources, "order", kind,'
                    " n_train_images, status, seed, seed_index, settings_hash, settings, started_at, finished_at)"
                    " values (?, ?, ?, ?, 1, ?, 100, 'done', ?, ?, 'h', ?, ?, ?)",
                    [transfer_id, f"{kind}:{target}:{source}" + (f":seed{seed_index}" if seed_index else ""), target,
                     [source], kind, seed_index, seed_index, json.dumps({}), start,
                     start + timedelta(seconds=transfer_id)],
                )  # fmt: skip
                con.executemany(
                    "insert into losses (transfer_id, image_id, loss) values (?, ?, ?)",
                    [(transfer_id, image_id, float(v)) for image_id, v in enumerate(values, start=1)],
                )


def seeded_losses(rng: np.random.Generator, n_seeds: int, seed_noise: float, image_noise: float = 1.0) -> dict:
    """Sources better by their index, plus an image effect every source shares and a readout effect per seed."""
    shared = rng.normal(size=N_IMAGES)
    losses = {
        source: 0.2 * index
        + shared
        + image_noise * rng.normal(size=N_IMAGES)
        + seed_noise * rng.normal(size=(n_seeds, N_IMAGES))
        for index, source in enumerate(SOURCES)
    }
    losses["gold"] = shared - 0.5 + rng.normal(size=N_IMAGES)
    return losses


def seed_mean(losses: dict, n_seeds: int | None = None) -> np.ndarray:
    """Candidates x images in source_index order (sources by name, gold among them), seeds averaged in order."""
    rows = []
    for source in sorted(losses):
        by_seed = np.atleast_2d(losses[source])
        chosen = by_seed if source == "gold" else by_seed[:n_seeds]
        total = np.zeros(N_IMAGES)
        for row in chosen:  # in seed order, as the view sums
            total = total + row
        rows.append(total / len(chosen))
    return np.array(rows)


def affinities(workspace: Workspace, view: str = "measured_affinity") -> dict[str, float]:
    rows = workspace.db.query(f"select sources[1] as source, affinity from {view} where affinity is not null")
    return {r["source"]: r["affinity"] for r in rows.to_pylist()}


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    workspace = Workspace.init(tmp_path / "study")
    workspace.update_settings("analysis", {"bootstrap": 40})
    return Workspace.open(workspace.root)


def test_the_views_compare_each_image_s_loss_averaged_over_the_readout_seeds(workspace):
    losses = seeded_losses(np.random.default_rng(1), n_seeds=3, seed_noise=0.7)
    write_seeds(workspace, losses)
    candidates = workspace.db.query("select sources[1] as source, n_seeds from affinity_candidates").to_pylist()
    assert {r["source"]: r["n_seeds"] for r in candidates} == {**dict.fromkeys(SOURCES, 3), "gold": 1}
    win_rate, eigenvector = numpy_ahp(seed_mean(losses))
    names = sorted(losses)
    wins = workspace.db.query("select sources_i[1] as i, sources_j[1] as j, win_rate from pairwise_wins").to_pylist()
    assert {(r["i"], r["j"]): r["win_rate"] for r in wins} == {
        (a, b): win_rate[x, y] for x, a in enumerate(names) for y, b in enumerate(names)
    }
    assert affinities(workspace) == pytest.approx(dict(zip(names, eigenvector, strict=True)), abs=1e-12)
    # and not the first seed's alone: with this much seed noise they differ
    assert not np.allclose(numpy_ahp(seed_mean(losses, 1))[1], eigenvector, atol=1e-3)


def test_every_trained_candidate_averages_as_many_seeds_as_the_fewest_has(workspace):
    losses = seeded_losses(np.random.default_rng(2), n_seeds=3, seed_noise=0.7)
    losses["normal"] = losses["normal"][:2]  # its third readout never finished
    write_seeds(workspace, losses)
    assert workspace.db.scalar("select list(distinct n_seeds order by n_seeds) from candidate_transfers") == [1, 2]
    names = sorted(losses)
    _, eigenvector = numpy_ahp(seed_mean(losses, 2))
    assert affinities(workspace) == pytest.approx(dict(zip(names, eigenvector, strict=True)), abs=1e-12)


def test_each_seed_alone_is_the_study_that_seed_would_have_given(workspace):
    losses = seeded_losses(np.random.default_rng(3), n_seeds=3, seed_noise=0.7)
    write_seeds(workspace, losses)
    names = sorted(losses)
    for rank in (1, 2, 3):
        single = {s: (v if s == "gold" else v[rank - 1]) for s, v in losses.items()}
        _, eigenvector = numpy_ahp(seed_mean(single))
        got = workspace.db.query(
            "select sources[1] as source, affinity from ahp_results('seed_matrix')"
            " where replicate = ? and affinity is not null",
            [rank],
        ).to_pylist()
        assert {r["source"]: r["affinity"] for r in got} == pytest.approx(
            dict(zip(names, eigenvector, strict=True)), abs=1e-12
        )


def test_affinity_variance_splits_the_seeds_part_from_the_test_images_part(workspace, tmp_path):
    losses = seeded_losses(np.random.default_rng(4), n_seeds=4, seed_noise=0.7)
    write_seeds(workspace, losses)
    rows = workspace.db.query("select * from affinity_variance order by sources").to_pylist()
    assert [r["sources"][0] for r in rows] == sorted(losses)
    per_seed = np.array([numpy_ahp(seed_mean({s: (v if s == "gold" else v[k]) for s, v in losses.items()}))[1]
                         for k in range(4)])  # fmt: skip
    expected = per_seed.var(axis=0, ddof=1) / 4
    for row, want in zip(rows, expected, strict=True):
        assert row["n_seeds"] == 4  # gold's too: it is compared with the others' mean over 4 seeds
        assert row["seed_variance"] == pytest.approx(want, rel=1e-9)
        assert row["image_variance"] > 0 and 0 <= row["seed_share"] <= 1
        assert row["seed_share"] == pytest.approx(
            row["seed_variance"] / (row["seed_variance"] + row["image_variance"]), rel=1e-12
        )

    # Seeds that agree leave no seed variance: the uncertainty is the test images' alone.
    same = Workspace.init(tmp_path / "same")
    same.update_settings("analysis", {"bootstrap": 40})
    agreeing = {s: (v if s == "gold" else np.repeat(v[:1], 4, axis=0)) for s, v in losses.items()}
    write_seeds(Workspace.open(same.root), agreeing)
    shares = Workspace.open(same.root).db.query("select seed_variance, seed_share from affinity_variance").to_pylist()
    assert all(r["seed_variance"] == 0 and r["seed_share"] == 0 for r in shares)


def test_seed_noise_raises_the_seeds_share(tmp_path):
    def median_share(seed_noise: float, name: str) -> float:
        workspace = Workspace.init(tmp_path / name)
        workspace.update_settings("analysis", {"bootstrap": 40})
        workspace = Workspace.open(workspace.root)
        write_seeds(workspace, seeded_losses(np.random.default_rng(5), n_seeds=3, seed_noise=seed_noise))
        return workspace.db.scalar("select median(seed_share) from affinity_variance where kind = 'transfer'")

    assert median_share(0.1, "quiet") < median_share(3.0, "noisy")


def test_a_single_seed_study_has_no_seed_variance(workspace):
    write_seeds(workspace, seeded_losses(np.random.default_rng(6), n_seeds=1, seed_noise=0.0))
    assert workspace.db.scalar("select count(*) from candidate_losses where seed_rank > 0") == 0
    rows = workspace.db.query("select n_seeds, seed_variance, image_variance from affinity_variance").to_pylist()
    assert rows and all(r["n_seeds"] == 1 and r["seed_variance"] is None and r["image_variance"] > 0 for r in rows)


def test_tdb_affinity_ci_says_what_share_the_seeds_make_and_python_has_the_split(workspace):
    write_seeds(workspace, seeded_losses(np.random.default_rng(7), n_seeds=3, seed_noise=0.7))
    result = CliRunner().invoke(cli, ["affinity", "--ci", "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    median = workspace.db.scalar("select median(seed_share) from affinity_variance")
    assert f"readout seeds: 3 per source set, their losses averaged; the seeds make {median:.0%}" in result.stderr
    variance = taskonomy_db.open(workspace.root).variance()
    assert variance.columns[-3:] == ["seed_variance", "image_variance", "seed_share"]
    assert variance.height == 5 and variance["n_seeds"].to_list() == [3] * 5


def test_transfers_stored_before_seeds_are_seed_0(tmp_path, monkeypatch):
    from taskonomy_db import db as db_module

    shipped = db_module._sql_files
    monkeypatch.setattr(db_module, "_sql_files", lambda: ([m for m in shipped()[0] if m[0] < 11], []))
    workspace = Workspace.init(tmp_path / "ws")
    with workspace.db.transaction() as con:
        con.execute(
            'insert into transfers (transfer_key, target, sources, "order", kind, n_train_images, status, seed,'
            " settings_hash, settings, started_at, finished_at)"
            " values ('k', 'normal', ['gold'], 1, 'gold', 1, 'done', 7, 'h', '{}', now(), now())"
        )
    monkeypatch.setattr(db_module, "_sql_files", shipped)
    workspace = Workspace.open(workspace.root)
    assert workspace.db.query("select seed, seed_index from transfers").to_pylist() == [{"seed": 7, "seed_index": 0}]
    assert workspace.db.query("select n_seeds, transfer_ids from affinity_candidates").to_pylist() == [
        {"n_seeds": 1, "transfer_ids": [1]}
    ]


def test_seeds_of_an_older_readout_are_not_averaged_with_a_newer_one(workspace):
    losses = seeded_losses(np.random.default_rng(8), n_seeds=3, seed_noise=0.7)
    write_seeds(workspace, losses)
    # normal's encoder retrained: its seed 0 run again (a new key, finished last), seeds 1 and 2 not
    with workspace.db.transaction() as con:
        con.execute(
            'insert into transfers (transfer_id, transfer_key, target, sources, "order", kind, n_train_images,'
            " status, seed, seed_index, settings_hash, settings, started_at, finished_at)"
            " select 100, transfer_key || ':retrained', target, sources, \"order\", kind, n_train_images, status,"
            " seed, 0, settings_hash, settings, started_at, finished_at + interval 1 day from transfers"
            " where sources = ['normal'] and seed_index = 0"
        )
        con.execute("insert into losses (transfer_id, image_id, loss) select 100, image_id, loss + 1 from losses"
                    " where transfer_id = (select transfer_id from transfers where sources = ['normal'] and"
                    " seed_index = 0 and transfer_id <> 100)")  # fmt: skip
    rows = workspace.db.query("select sources[1] as s, n_seeds, transfer_ids from affinity_candidates").to_pylist()
    assert {r["s"]: r["n_seeds"] for r in rows} == dict.fromkeys(sorted(losses), 1)  # the fewest: normal's one
    assert next(r["transfer_ids"] for r in rows if r["s"] == "normal") == [100]
