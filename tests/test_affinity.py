"""The affinity views (win rates, W', AHP, Quality, Gain) against an independent numpy reference on loss tables
with planted orderings, ties and a source that always wins, written into a real workspace's DuckDB file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.workspace import Workspace


def numpy_ahp(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W, principal eigenvector of W' summing to 1) for a candidates x images loss matrix, the paper's recipe."""
    better = (losses[:, None, :] < losses[None, :, :]).sum(-1)
    ties = (losses[:, None, :] == losses[None, :, :]).sum(-1)
    win_rate = (better + 0.5 * ties) / losses.shape[1]
    clipped = np.clip(win_rate, 0.001, 0.999)
    values, vectors = np.linalg.eig(clipped / clipped.T)
    principal = np.real(vectors[:, np.argmax(np.real(values))])
    return win_rate, np.abs(principal) / np.abs(principal).sum()


def insert_transfers(
    workspace: Workspace, target_losses: dict[str, dict[tuple[str, ...], np.ndarray]], settings_hash: str = "h"
) -> None:
    """Write done transfers and their per-image losses the way `tdb transfer` records them."""
    start = datetime(2026, 1, 1)
    with workspace.db.transaction() as con:
        next_id = con.execute("select coalesce(max(transfer_id), 0) + 1 from transfers").fetchone()[0]
        for target, candidates in target_losses.items():
            for sources, losses in candidates.items():
                kind = sources[0] if sources[0] in ("gold", "scratch", "random") else "transfer"
                con.execute(
                    'insert into transfers (transfer_id, transfer_key, target, sources, "order", kind,'
                    " n_train_images, status, seed, settings_hash, settings, started_at, finished_at)"
                    " values (?, ?, ?, ?, ?, ?, 100, 'done', 0, ?, ?, ?, ?)",
                    [
                        next_id,
                        f"{kind}:{target}:{'+'.join(sources)}:100:h{next_id}",
                        target,
                        list(sources),
                        len(sources),
                        kind,
                        settings_hash,
                        json.dumps({}),
                        start,
                        start + timedelta(seconds=next_id),
                    ],
                )
                rows = [(next_id, image_id, float(loss)) for image_id, loss in enumerate(losses, start=1)]
                con.executemany("insert into losses values (?, ?, ?)", rows)
                next_id += 1


def planted_losses(seed: int = 0) -> dict[str, dict[tuple[str, ...], np.ndarray]]:
    rng = np.random.default_rng(seed)
    n_images = 60
    tables: dict[str, dict[tuple[str, ...], np.ndarray]] = {}
    # normal: a planted ordering (lower offset = better), noisy enough that every pair splits the images
    names = ["depth_zbuffer", "reshading", "edge_texture", "jigsaw", ("depth_zbuffer", "reshading")]
    noise = rng.normal(size=(len(names) + 3, n_images))
    tables["normal"] = {
        (name,) if isinstance(name, str) else tuple(sorted(name)): 0.3 * index + noise[index]
        for index, name in enumerate(names)
    }
    tables["normal"][("gold",)] = -1.0 + noise[-3]
    tables["normal"][("scratch",)] = 1.0 + noise[-2]
    tables["normal"][("random",)] = 2.0 + noise[-1]
    # reshading: coarse integer losses, so most comparisons are ties
    tables["reshading"] = {
        (name,): rng.integers(0, 3, n_images).astype(float)
        for name in ["normal", "depth_zbuffer", "edge_texture", "gold", "scratch"]
    }
    # edge_texture: one source always wins (W row 0.999 after clipping), one always loses
    base = rng.random((4, n_images))
    tables["edge_texture"] = {
        ("autoencoding",): base[0] - 10.0,
        ("denoising",): base[1],
        ("keypoints2d",): base[2],
        ("random",): base[3] + 10.0,
    }
    # keypoints3d: cyclic preferences (a beats b beats c beats a on most images), W' far from consistent, so its
    # subdominant eigenvalues are complex and large: the slowest case for the power iteration
    orderings = [(0.0, 1.0, 2.0)] * 30 + [(2.0, 0.0, 1.0)] * 18 + [(1.0, 2.0, 0.0)] * 12
    cyclic = np.array(orderings).T
    tables["keypoints3d"] = {(name,): cyclic[index] for index, name in enumerate(["normal", "reshading", "jigsaw"])}
    # class_scene: a single candidate takes the whole affinity
    tables["class_scene"] = {("class_object",): rng.random(n_images)}
    return tables


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    workspace = Workspace.init(tmp_path_factory.mktemp("affinity") / "ws")
    tables = planted_losses()
    insert_transfers(workspace, tables)
    return workspace, tables


def _by_key(rows: list[dict], value: str) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(row["target"], tuple(row["sources"])): row[value] for row in rows}


def test_sql_ahp_equals_numpy_eigenvector(measured):
    workspace, tables = measured
    # A plain DuckDB client, read-only, no taskonomy_db code: the views must stand on their own.
    with duckdb.connect(str(workspace.db.path), read_only=True) as con:
        relation = con.sql('select target, sources, "order", affinity from affinity')
        rows = [dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall()]
    affinity = _by_key(rows, "affinity")
    for target, candidates in tables.items():
        keys = sorted(k for k in candidates if k != ("scratch",))  # scratch is a Gain reference, no AHP candidate
        _, expected = numpy_ahp(np.stack([candidates[k] for k in keys]))
        got = np.array([affinity[(target, k)] for k in keys])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=target)
        assert abs(got.sum() - 1) < 1e-12
    assert not any(sources == ("scratch",) for _, sources in affinity)
    assert len(rows) == sum(len(c) for c in tables.values()) - sum(("scratch",) in c for c in tables.values())


def test_scratch_has_gain_rows_but_no_affinity(measured):
    workspace, tables = measured
    gain = workspace.db.query("select target, sources, gain from gain").to_pylist()
    scratch_gain = {r["target"]: r["gain"] for r in gain if r["sources"] == ["scratch"]}
    assert scratch_gain == {t: 0.5 for t, c in tables.items() if ("scratch",) in c}
    assert {(r["target"], tuple(r["sources"])) for r in gain} == {
        (t, k) for t, c in tables.items() if ("scratch",) in c for k in c
    }
    matrix = workspace.db.query("select source, affinity, gain from first_order_affinity where source = 'scratch'")
    assert matrix.num_rows == 2 and matrix.column("affinity").null_count == 2


def test_win_rates_quality_and_gain_match_numpy(measured):
    workspace, tables = measured
    with duckdb.connect(str(workspace.db.path), read_only=True) as con:
        wins = con.sql("select target, sources_i, sources_j, win_rate, n_images from pairwise_wins").fetchall()
        quality = {(t, tuple(s)): q for t, s, q in con.sql("select target, sources, quality from quality").fetchall()}
        gain = {(t, tuple(s)): g for t, s, g in con.sql("select target, sources, gain from gain").fetchall()}
    got = {(t, tuple(i), tuple(j)): (w, n) for t, i, j, w, n in wins}
    for target, candidates in tables.items():
        keys = sorted(candidates)
        win_rate, _ = numpy_ahp(np.stack([candidates[k] for k in keys]))
        for a, key_i in enumerate(keys):
            for b, key_j in enumerate(keys):
                assert got[(target, key_i, key_j)] == pytest.approx((win_rate[a, b], 60), abs=1e-12)
            if ("gold",) in candidates:
                assert quality[(target, key_i)] == pytest.approx(win_rate[a, keys.index(("gold",))], abs=1e-12)
            if ("scratch",) in candidates:
                assert gain[(target, key_i)] == pytest.approx(win_rate[a, keys.index(("scratch",))], abs=1e-12)
    assert quality[("normal", ("gold",))] == 0.5 and gain[("reshading", ("scratch",))] == 0.5
    assert not any(target == "edge_texture" for target, _ in quality)  # no gold measured there


def test_planted_structure_shows_in_the_affinities(measured):
    workspace, _ = measured
    rows = workspace.db.query("select target, sources, affinity from affinity").to_pylist()
    edge = {tuple(r["sources"]): r["affinity"] for r in rows if r["target"] == "edge_texture"}
    assert max(edge, key=edge.get) == ("autoencoding",) and min(edge, key=edge.get) == ("random",)
    normal = {tuple(r["sources"]): r["affinity"] for r in rows if r["target"] == "normal"}
    assert max(normal, key=normal.get) == ("gold",)
    assert normal[("depth_zbuffer",)] > normal[("jigsaw",)] > normal[("random",)]
    assert [r["affinity"] for r in rows if r["target"] == "class_scene"] == [pytest.approx(1.0)]


def test_repeated_transfer_counts_once_and_failed_ones_not_at_all(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    rng = np.random.default_rng(3)
    insert_transfers(workspace, {"normal": {("gold",): rng.random(20), ("reshading",): rng.random(20)}})
    rerun = rng.random(20)
    insert_transfers(workspace, {"normal": {("reshading",): rerun}})  # later: replaces the first
    with workspace.db.transaction() as con:
        con.execute("update transfers set status = 'failed' where transfer_id = 1")  # gold failed
    insert_transfers(workspace, {"normal": {("gold",): rng.random(20)}})
    candidates = workspace.db.query("select sources, transfer_ids from affinity_candidates order by sources")
    assert candidates.to_pylist() == [
        {"sources": ["gold"], "transfer_ids": [4]},
        {"sources": ["reshading"], "transfer_ids": [3]},
    ]


def test_candidates_of_a_target_come_from_its_latest_settings(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    rng = np.random.default_rng(4)
    first = {("gold",): rng.random(20), ("reshading",): rng.random(20), ("depth_zbuffer",): rng.random(20)}
    insert_transfers(workspace, {"normal": first, "reshading": {("normal",): rng.random(20)}}, settings_hash="a")
    # normal measured again with other settings (say more transfer images), for two of its sources only
    insert_transfers(workspace, {"normal": {("gold",): rng.random(20), ("reshading",): rng.random(20)}}, "b")
    candidates = workspace.db.query(
        "select target, sources, transfer_ids from affinity_candidates order by target, sources"
    ).to_pylist()
    assert candidates == [
        {"target": "normal", "sources": ["gold"], "transfer_ids": [5]},
        {"target": "normal", "sources": ["reshading"], "transfer_ids": [6]},
        {"target": "reshading", "sources": ["normal"], "transfer_ids": [4]},
    ]


def test_affinity_command_formats(measured):
    workspace, _ = measured
    runner = CliRunner()
    result = runner.invoke(cli, ["affinity", "-w", str(workspace.root), "--target", "normal", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["target"] for r in rows} == {"normal"}
    assert abs(sum(r["affinity"] for r in rows if r["sources"] != ["scratch"]) - 1) < 1e-12
    assert [r["affinity"] for r in rows if r["sources"] == ["scratch"]] == [None]  # listed for its Gain
    assert {"sources", "order", "affinity", "quality", "gain"} <= set(rows[0])
    result = runner.invoke(cli, ["affinity", "-w", str(workspace.root), "--order", "2", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].startswith("normal,depth_zbuffer+reshading,2,")
    result = runner.invoke(cli, ["affinity", "-w", str(workspace.root), "--matrix"])
    assert result.exit_code == 0, result.output
    assert "normal" in result.output.splitlines()[0]
    result = runner.invoke(cli, ["affinity", "-w", str(workspace.root), "--target", "nonsense"])
    assert result.exit_code != 0 and "nonsense" in result.output
    result = runner.invoke(cli, ["affinity", "-w", str(workspace.root), "--order", "9"])
    assert result.exit_code == 0 and "no affinities for order 9" in result.output and "yet" not in result.output


def test_candidates_tested_on_different_images_are_compared_on_the_common_ones(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    rng = np.random.default_rng(7)
    tables = {"normal": {(name,): rng.random(40) for name in ["gold", "reshading", "depth_zbuffer"]}}
    insert_transfers(workspace, tables)
    with workspace.db.transaction() as con:  # reshading's loss on images 1-5 is missing, depth's on image 40
        con.execute("delete from losses where transfer_id = 2 and image_id <= 5 or transfer_id = 3 and image_id = 40")
    keys = sorted(tables["normal"])
    common = np.stack([tables["normal"][k][5:39] for k in keys])
    expected_wins, expected = numpy_ahp(common)
    rows = workspace.db.query("select sources, affinity from affinity").to_pylist()
    got = {tuple(r["sources"]): r["affinity"] for r in rows}
    np.testing.assert_allclose([got[k] for k in keys], expected, rtol=0, atol=1e-9)
    assert set(workspace.db.query("select n_images from pairwise_wins").column(0).to_pylist()) == {34}
