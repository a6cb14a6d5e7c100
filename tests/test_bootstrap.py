"""The building bootstrap in SQL (bootstrap_weights -> bootstrap_matrix -> bootstrap_affinity -> *_ci views):
replicate 0 is the study to the last bit, every interval holds its estimate, intervals cover known win rates at
their level on simulated studies, and agree with an independent numpy bootstrap."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.workspace import Workspace

N_BUILDINGS, PER_BUILDING = 18, 24  # the default demo's test split


def images_table(n_buildings: int, per_building: int) -> pa.Table:
    """Rows of `images`: test images 1.. of buildings b00.., `per_building` each, in building order."""
    n_images = n_buildings * per_building
    return pa.table(
        {
            "image_id": pa.array(range(1, n_images + 1), pa.int32()),
            "image_key": [f"b{i // per_building:02d}/point_{i}_view_0" for i in range(n_images)],
            "building": [f"b{i // per_building:02d}" for i in range(n_images)],
            "point": pa.array(range(n_images), pa.int32()),
            "view": pa.array([0] * n_images, pa.int32()),
            "split": ["test"] * n_images,
        }
    )


def write_study(workspace: Workspace, losses: dict[str, dict[str, np.ndarray]]) -> None:
    """Done transfers of every (target, source) with its losses on the test images of N_BUILDINGS buildings:
    `losses[target][source]` holds one loss per image, buildings in turn, PER_BUILDING images each."""
    n_images = N_BUILDINGS * PER_BUILDING
    images = images_table(N_BUILDINGS, PER_BUILDING)
    transfers, loss_rows = [], {"transfer_id": [], "image_id": [], "loss": []}
    for target, by_source in losses.items():
        for source, values in by_source.items():
            transfer_id = len(transfers) + 1
            kind = source if source in ("gold", "scratch", "random") else "transfer"
            sources = source.split("+")
            transfers.append((transfer_id, f"{kind}:{target}:{source}", target, sources, len(sources), kind))
            loss_rows["transfer_id"] += [transfer_id] * n_images
            loss_rows["image_id"] += list(range(1, n_images + 1))
            loss_rows["loss"] += [float(v) for v in values]
    loss_table = pa.table(loss_rows)
    with workspace.db.transaction() as con:
        con.register("new_images", images)
        con.execute('insert into images (image_id, image_key, building, point, "view", split) from new_images')
        con.executemany(
            'insert into transfers (transfer_id, transfer_key, target, sources, "order", kind, n_train_images,'
            " status, seed, settings_hash, settings, started_at, finished_at)"
            " values (?, ?, ?, ?, ?, ?, 100, 'done', 0, 'h', '{}', ?, ?)",
            [(*row, datetime(2026, 1, 1), datetime(2026, 1, 2)) for row in transfers],
        )
        con.register("new_losses", loss_table)
        con.execute("insert into losses select transfer_id::integer, image_id::integer, loss from new_losses")


def building_effects(rng: np.random.Generator, n_sources: int) -> np.ndarray:
    """Per-(source, image) losses whose sources differ by a planted offset, by building, and by image."""
    building = np.repeat(rng.normal(0, 0.4, (n_sources, N_BUILDINGS)), PER_BUILDING, axis=1)
    return 0.25 * np.arange(n_sources)[:, None] + building + rng.normal(0, 1, (n_sources, N_BUILDINGS * PER_BUILDING))


SOURCES = ["gold", "scratch", "random", "normal", "reshading", "edge_texture", "jigsaw", "normal+reshading"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Workspace:
    rng = np.random.default_rng(20)
    workspace = Workspace.init(tmp_path_factory.mktemp("bootstrap") / "study")
    losses = {}
    for target in ("depth_zbuffer", "normal", "class_scene"):
        values = building_effects(rng, len(SOURCES))
        losses[target] = {s: values[k] for k, s in enumerate(SOURCES) if s != target and target not in s.split("+")}
    losses["class_scene"]["edge_texture"] = np.round(losses["class_scene"]["edge_texture"])  # ties with itself
    write_study(workspace, losses)
    return workspace


def rows(workspace: Workspace, sql: str) -> list[dict]:
    return workspace.db.query(sql).to_pylist()


def test_replicate_zero_is_the_study_to_the_last_bit(study: Workspace):
    differing = rows(
        study,
        """
        select * from measured_affinity as study
        full join (select * from bootstrap_affinity where replicate = 0) as zero using (target, sources)
        where study.affinity is distinct from zero.affinity or study.quality is distinct from zero.quality
            or study.gain is distinct from zero.gain or study."order" is distinct from zero."order"
        """,
    )
    assert differing == []
    matrix = rows(
        study,
        """
        select count(*) as n, count(zero.target) as matched,
            count(*) filter (where study.win_rate = zero.win_rate
                and study.win_ratio is not distinct from zero.win_ratio) as equal
        from ahp_matrix as study
        left join (select * from bootstrap_matrix where replicate = 0) as zero
            using (target, source_index_i, source_index_j)
        """,
    )[0]
    assert matrix["n"] == matrix["matched"] == matrix["equal"] > 0
    # building_wins compares the images by a self-join, pairwise_wins by loss lists: two ways to the same counts
    mismatched = rows(
        study,
        """
        select * from pairwise_wins
        full join (
            select target, source_index_i, source_index_j, sum(n_wins) as n_wins, sum(n_images) as n_images
            from building_wins group by all
        ) as by_building using (target, source_index_i, source_index_j)
        where pairwise_wins.n_wins is distinct from by_building.n_wins
            or pairwise_wins.n_images is distinct from by_building.n_images
        """,
    )
    assert mismatched == []


def test_every_interval_is_numpys_percentile_interval_of_the_replicates(study: Workspace):
    replicated = {}
    for r in rows(study, "select * from bootstrap_affinity where replicate > 0"):
        for statistic in ("affinity", "quality", "gain"):
            if r[statistic] is not None:
                replicated.setdefault((statistic, r["target"], tuple(r["sources"])), []).append(r[statistic])
    widened = 0
    for statistic in ("affinity", "quality", "gain"):
        found = rows(study, f"select * from {statistic}_ci")
        assert len(found) == study.db.scalar(f"select count({statistic}) from measured_affinity") > 0
        assert {r["replicates"] for r in found} == {200}
        for r in found:
            low, high = np.percentile(replicated[(statistic, r["target"], tuple(r["sources"]))], [2.5, 97.5])
            # widened to hold the estimate only where the percentile interval leaves it out
            assert r["ci_low"] == pytest.approx(min(low, r[statistic]), abs=1e-12)
            assert r["ci_high"] == pytest.approx(max(high, r[statistic]), abs=1e-12)
            widened += not low <= r[statistic] <= high
        assert any(r["ci_low"] < r["ci_high"] for r in found)
    assert widened < 10  # a rare correction, not the rule


def test_no_replicates_means_no_interval(study: Workspace):
    study.update_settings("analysis", {"bootstrap": 0})
    try:
        found = rows(study, "select ci_low, ci_high, replicates from affinity_ci")
        assert found and all(r == {"ci_low": None, "ci_high": None, "replicates": 0} for r in found)
        result = CliRunner().invoke(cli, ["affinity", "--ci", "-w", str(study.root)])
        assert result.exit_code == 0 and "no intervals: no bootstrap replicates" in result.output, result.output
    finally:
        study.update_settings("analysis", {"bootstrap": 200})


def test_weights_draw_all_but_one_building_deterministically(study: Workspace):
    weights = rows(study, "select replicate, building, weight from bootstrap_weights order by all")
    zero = [w for w in weights if w["replicate"] == 0]
    assert len(zero) == N_BUILDINGS and {w["weight"] for w in zero} == {1}
    totals: dict[int, int] = {}
    for w in weights:
        totals[w["replicate"]] = totals.get(w["replicate"], 0) + w["weight"]
    assert totals == {0: N_BUILDINGS} | {r: N_BUILDINGS - 1 for r in range(1, 201)}  # Rao and Wu: n - 1 draws
    scaled = rows(study, "select replicate, sum(weight * scale) as total from bootstrap_weights group by all")
    assert all(r["total"] == pytest.approx(N_BUILDINGS, abs=1e-12) for r in scaled)  # each weighs the study's size
    # a plain DuckDB client sees the same replicates with tdb's settings, and others with another seed
    with duckdb.connect(str(study.db.path), read_only=True) as con:
        same = con.sql("select replicate, building, weight from bootstrap_weights order by all").fetchall()
        con.execute("set variable bootstrap_seed = 1")
        other = con.sql("select replicate, building, weight from bootstrap_weights order by all").fetchall()
        con.execute("set variable bootstrap_replicates = 50")
        assert {r for (r,) in con.sql("select distinct replicates from affinity_ci").fetchall()} == {50}
    assert same == [tuple(w.values()) for w in weights]
    assert other != same


def test_analysis_settings_reach_the_views(study: Workspace, tmp_path):
    study.update_settings("analysis", {"bootstrap": 30, "level": 0.5})
    try:
        narrow = {(r["target"], tuple(r["sources"])): r for r in rows(study, "select * from quality_ci")}
        assert {r["replicates"] for r in narrow.values()} == {30}
        study.update_settings("analysis", {"level": 0.99})
        wide = rows(study, "select * from quality_ci")
        pairs = [(r, narrow[(r["target"], tuple(r["sources"]))]) for r in wide]
        assert all(w["ci_low"] <= n["ci_low"] and n["ci_high"] <= w["ci_high"] for w, n in pairs)
        assert any(w["ci_high"] - w["ci_low"] > n["ci_high"] - n["ci_low"] for w, n in pairs)  # the level arrived
    finally:
        study.update_settings("analysis", {"bootstrap": 200, "level": 0.95})


def numpy_quality_interval(losses: np.ndarray, gold: np.ndarray, replicates: int, level: float) -> tuple:
    """The building bootstrap by hand: per-building wins against gold (ties half), n - 1 of the n buildings drawn
    with replacement by numpy, the percentile interval of the win rate."""
    wins = ((losses < gold) + 0.5 * (losses == gold)).reshape(N_BUILDINGS, PER_BUILDING).sum(1)
    rng = np.random.default_rng(7)
    counts = rng.multinomial(N_BUILDINGS - 1, [1 / N_BUILDINGS] * N_BUILDINGS, size=replicates)
    rates = counts @ wins / (counts.sum(1) * PER_BUILDING)
    low, high = np.percentile(rates, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return low, high, rates.std()


def test_quality_intervals_agree_with_a_numpy_bootstrap(study: Workspace):
    replicates, level = 2000, 0.95
    with duckdb.connect(str(study.db.path), read_only=True) as con:
        con.execute(f"set variable bootstrap_replicates = {replicates}")
        intervals = con.sql("select target, sources, quality, ci_low, ci_high from quality_ci").fetchall()
        losses = {
            (target, tuple(sources)): np.array(values)
            for target, sources, values in con.sql(
                """select target, sources, list(loss order by image_id) from losses
                inner join transfers using (transfer_id) group by all"""
            ).fetchall()
        }
    checked = 0
    for target, sources, _, sql_low, sql_high in intervals:
        if sources == ["gold"]:
            continue
        low, high, spread = numpy_quality_interval(
            losses[(target, tuple(sources))], losses[(target, ("gold",))], replicates, level
        )
        # Two Monte Carlo runs of 2000 replicates: each 2.5% quantile has a standard error near 0.06 bootstrap
        # standard deviations, their difference near 0.085; 0.35 is four of those.
        assert abs(sql_low - low) <= 0.35 * spread and abs(sql_high - high) <= 0.35 * spread, (target, sources)
        checked += 1
    assert checked == len(intervals) - 3 > 0  # every candidate but the three golds


def test_intervals_cover_known_win_rates_at_their_level(tmp_path):
    """400 simulated studies (targets), buildings as clusters: each building has its own win probability
    around the true one, and an image's comparison is a coin with that probability. A correct building bootstrap
    of this design covers about 93% (3000 studies in numpy); 400 put the Monte Carlo standard error near 1.3%."""
    true_rate, n_studies = 0.65, 400
    rng = np.random.default_rng(0)
    losses = {}
    for study_number in range(n_studies):
        per_building = true_rate + rng.uniform(-0.15, 0.15, N_BUILDINGS)
        wins = rng.random(N_BUILDINGS * PER_BUILDING) < np.repeat(per_building, PER_BUILDING)
        losses[f"target_{study_number:03d}"] = {"gold": np.full(wins.size, 0.5), "source": np.where(wins, 0.4, 0.6)}
    workspace = Workspace.init(tmp_path / "simulated")
    write_study(workspace, losses)
    found = rows(workspace, "select ci_low, ci_high from quality_ci where sources = ['source']")
    assert len(found) == n_studies
    covered = sum(r["ci_low"] <= true_rate <= r["ci_high"] for r in found)
    assert 0.90 * n_studies <= covered <= 0.98 * n_studies, covered


def test_cli_ci_gives_the_views_intervals_and_refuses_what_has_none(study: Workspace):
    result = CliRunner().invoke(
        cli, ["affinity", "--ci", "--target", "normal", "--format", "json", "-w", str(study.root)]
    )
    assert result.exit_code == 0, result.output
    printed = {tuple(r["sources"]): r for r in json.loads(result.output)}
    views = rows(study, "select sources, affinity, ci_low, ci_high from affinity_ci where target = 'normal'")
    assert len(printed) == len(views) + 1  # scratch: Quality and Gain, no affinity
    for view in views:
        row = printed[tuple(view["sources"])]
        assert (row["affinity"], row["affinity_low"], row["affinity_high"]) == (
            view["affinity"],
            view["ci_low"],
            view["ci_high"],
        )
    for args, code, message in [
        (["--origin", "published_16k"], 1, "no affinities from origin 'published_16k'"),
        (["--matrix"], 2, "--matrix is the whole first-order matrix"),
    ]:
        refused = CliRunner().invoke(cli, ["affinity", "--ci", *args, "-w", str(study.root)])
        assert refused.exit_code == code and isinstance(refused.exception, SystemExit)
        assert message in refused.output and "Traceback" not in refused.output


def test_smoothing_setting_replaces_the_clip_in_the_study_and_the_replicates(study: Workspace):
    study.update_settings("analysis", {"smoothing": 1.0, "bootstrap": 20})
    try:
        entries = rows(
            study,
            """select target, source_index_i, source_index_j, ahp_matrix.is_ahp_pair, n_wins, n_images, win_rate_clipped
            from ahp_matrix inner join pairwise_wins using (target, source_index_i, source_index_j)""",
        )
        for e in entries:  # Laplace's rule with a = 1, no clip
            assert e["win_rate_clipped"] == pytest.approx((float(e["n_wins"]) + 1) / (e["n_images"] + 2), abs=1e-15)
        # the eigenvector of the smoothed W', by numpy, for every target
        for target in {e["target"] for e in entries}:
            mine = [e for e in entries if e["target"] == target and e["is_ahp_pair"]]
            n = max(e["source_index_i"] for e in mine)
            w = np.zeros((n, n))
            for e in mine:
                w[e["source_index_i"] - 1, e["source_index_j"] - 1] = e["win_rate_clipped"]
            values, vectors = np.linalg.eig(w / w.T)
            principal = np.abs(np.real(vectors[:, np.argmax(np.real(values))]))
            stored = rows(
                study,
                f"""select affinity from ahp_results('ahp_matrix') where target = '{target}' and affinity is not null
                order by source_index""",
            )
            assert [r["affinity"] for r in stored] == pytest.approx(list(principal / principal.sum()), abs=1e-9)
        differing = rows(
            study,
            """select * from measured_affinity as study
            inner join (select * from bootstrap_affinity where replicate = 0) as zero using (target, sources)
            where study.affinity is distinct from zero.affinity""",
        )
        assert differing == []
    finally:
        study.update_settings("analysis", {"smoothing": 0.0, "bootstrap": 200})
