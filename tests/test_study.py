"""The Python API: a real workspace's results as Polars frames, equal to what the views and `tdb` print."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import taskonomy_db as tdb
from taskonomy_db.cli import cli
from taskonomy_db.encoders import export_random_encoder
from taskonomy_db.extract import extract
from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest_generated
from taskonomy_db.workspace import Workspace
from tests.test_bootstrap import SOURCES, building_effects, write_study

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    workspace = Workspace.init(tmp_path_factory.mktemp("api") / "study")
    losses = {}
    for target in ("normal", "class_scene"):
        values = building_effects(rng, len(SOURCES))
        losses[target] = {s: values[k] for k, s in enumerate(SOURCES) if target not in s.split("+")}
    write_study(workspace, losses)
    return workspace.root


def test_frames_have_the_views_rows_columns_and_types(root: Path):
    study = tdb.open(root)
    affinity = study.affinity()
    assert affinity.columns == ["target", "sources", "order", "kind", "affinity"]
    assert affinity.schema["sources"] == pl.List(pl.String) and affinity.schema["affinity"] == pl.Float64
    stored = Workspace.open(root).db.query("select target, sources, affinity from affinity order by all").to_pylist()
    assert sorted(affinity.select("target", "sources", "affinity").rows()) == [
        (r["target"], r["sources"], r["affinity"]) for r in stored
    ]
    assert study.quality()["quality"].is_between(0, 1).all() and study.gain().height == affinity.height + 2
    assert study.intervals("gain").columns == ["target", "sources", "order", "kind", "gain", "ci_low", "ci_high",
                                               "replicates"]  # fmt: skip
    gold = study.losses(target="normal", kind="gold")
    assert gold.height == 18 * 24 and set(gold["kind"]) == {"gold"}
    matrix = study.first_order_matrix()
    assert matrix.columns == ["source", "class_scene", "normal"]
    normal = dict(zip(matrix["source"], matrix["normal"], strict=True))
    first = affinity.filter((pl.col("target") == "normal") & (pl.col("order") == 1))
    assert {s[0]: a for s, a in first.select("sources", "affinity").rows()} == {
        s: a for s, a in normal.items() if a is not None
    }
    with pytest.raises(ValueError, match="statistic must be"):
        study.intervals("nope")


def test_taxonomy_is_the_one_tdb_taxonomy_prints(root: Path):
    plan = tdb.open(root).taxonomy(budget=2, max_order=2, target_only=["class_scene"])
    args = ["taxonomy", "--budget", "2", "--max-order", "2", "--target-only", "class_scene", "--format", "json"]
    printed = json.loads(CliRunner().invoke(cli, [*args, "-w", str(root)]).output)
    assert list(plan.supervised) == printed["supervised"]
    assert {t: list(s) for t, s in plan.transfers.items()} == printed["transfers"]
    assert plan.objective == pytest.approx(printed["objective"], abs=1e-12)
    assert plan.per_target.to_dicts() == [{"target": t, **info} for t, info in printed["per_target"].items()]


def test_tree_and_representations(tmp_path: Path, root: Path):
    tree = tdb.open(root).tree(clusters=2)
    assert tree.columns == ["task", "cluster"] and set(tree["cluster"]) == {1, 2}
    data = tmp_path / "data"
    generate(data, n_buildings=3, rooms_per_building=1, points_per_room=2, views_per_point=2, size=32, workers=1,
             progress=False)  # fmt: skip
    workspace = Workspace.init(tmp_path / "extracted")
    workspace.update_settings("train", {"image_size": 32})
    ingest_generated(workspace, data)
    export_random_encoder(workspace)
    extract(workspace, ["random"], progress=False)
    frame = tdb.open(workspace.root).representations("random").collect()
    assert frame.height == 12 and frame.columns == ["image_id", "representation"]
    assert sorted(frame["image_id"]) == list(range(1, 13))


def test_the_readme_example_runs(root: Path, monkeypatch, capsys):
    text = README.read_text()
    section = text[text.index("### From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert root.name == "study"
    monkeypatch.chdir(root.parent)  # the example opens "study"
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert str(tdb.open(root).taxonomy(budget=2, max_order=2).supervised) in printed
