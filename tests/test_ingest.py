"""Ingest of Taskonomy-format datasets in both layouts: splits, missing domains, bad files, idempotence."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.data import load_rgb
from taskonomy_db.errors import DataError, IngestError
from taskonomy_db.ingest import balanced_split, deterministic_split, ingest, read_split_csv, write_split_csv
from taskonomy_db.scenes import building_names
from taskonomy_db.workspace import Workspace
from tests.conftest import SPLITS_DIR, make_dataset, requires_published, tiny_split_buildings


def snapshot(workspace) -> tuple:
    """Everything ingest may touch, to check that a failed ingest changed nothing."""
    return tuple(
        workspace.db.query(f"select * from {table} order by all").to_pylist()
        for table in ("images", "datasets", "ingest_problems")
    )


def split_counts(workspace) -> dict[str, int]:
    rows = workspace.db.query("select split, count(*) as n from images group by split").to_pylist()
    return {row["split"]: row["n"] for row in rows}


@requires_published
def test_published_split_csv_has_cr_line_endings_and_known_counts():
    raw = (SPLITS_DIR / "train_val_test_tiny.csv").read_bytes()
    assert b"\r" in raw and b"\n" not in raw
    counts = {"tiny": (25, 5, 5), "medium": (99, 20, 19), "full": (346, 67, 69), "fullplus": (383, 75, 79)}
    for split_set, expected in counts.items():
        splits = list(read_split_csv(SPLITS_DIR / f"train_val_test_{split_set}.csv").values())
        assert (splits.count("train"), splits.count("val"), splits.count("test")) == expected


@requires_published
@pytest.mark.parametrize("layout", ["taskonomy", "omnidata"])
def test_ingest_with_published_tiny_split_counts_images_per_split(tmp_path, workspace, layout):
    tiny = tiny_split_buildings()
    buildings = tiny["train"][:3] + tiny["val"][:2] + tiny["test"][:1] + ["notinsplit"]
    root = make_dataset(tmp_path / "data", buildings, layout=layout, points=2, views=3)

    report = ingest(workspace, root, split_file=SPLITS_DIR, split_set="tiny")

    assert report.layout == layout
    assert split_counts(workspace) == {"train": 18, "val": 12, "test": 6}
    assert report.buildings_not_in_split == ["notinsplit"]
    assert workspace.db.scalar("select count(*) from images where building = 'notinsplit'") == 0
    row = workspace.db.query("select * from images order by image_id limit 1").to_pylist()[0]
    for domain in ("rgb", "depth_zbuffer", "point_info", "class_object"):
        assert Path(row[f"{domain}_path"]).is_file()
    assert row["normal_path"] is None
    assert workspace.db.scalar("select count(*) from missing_files") == 0


# -- the same promises on split files written here: CI has no published data, so these always run ------------

# Buildings by split, as a split set lists them; `notinsplit` is ingested data that no set names.
SPLIT = {"aa": "train", "bb": "train", "cc": "train", "dd": "val", "ee": "val", "ff": "test"}
LINE_ENDINGS = {"CR": "\r", "CRLF": "\r\n", "LF": "\n"}


def write_split_text(path: Path, split: dict[str, str], newline: str, final_newline: bool = False) -> Path:
    """A split CSV in the published form: id,train,val,test with a 1 in the building's column. The published
    files end their last row without a line ending; final_newline adds one."""
    lines = ["id,train,val,test"] + [
        ",".join([building] + ["1" if split == name else "0" for name in ("train", "val", "test")])
        for building, split in split.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + (newline if final_newline else "")).encode())
    return path


@pytest.mark.parametrize("final_newline", [False, True])
@pytest.mark.parametrize("ending", LINE_ENDINGS)
def test_split_csv_reads_cr_crlf_and_lf_line_endings(tmp_path, ending, final_newline):
    path = write_split_text(tmp_path / "split.csv", SPLIT, LINE_ENDINGS[ending], final_newline)
    raw = path.read_bytes()
    assert raw.count(LINE_ENDINGS[ending].encode()) == len(SPLIT) + final_newline  # the file is what it claims
    if ending == "CR":
        assert b"\n" not in raw  # old Mac: no LF at all, as in the published files
    assert read_split_csv(path) == SPLIT


@pytest.mark.parametrize(("layout", "ending"), [("taskonomy", "CR"), ("omnidata", "CRLF")])
def test_ingest_with_a_split_folder_and_set_counts_images_per_split(tmp_path, workspace, layout, ending):
    splits = tmp_path / "splits"
    write_split_text(splits / "train_val_test_tiny.csv", SPLIT, LINE_ENDINGS[ending])
    # Another set in the same folder puts every building in train: --split-set must pick the tiny file.
    write_split_text(splits / "train_val_test_medium.csv", dict.fromkeys(SPLIT, "train"), LINE_ENDINGS[ending])
    root = make_dataset(tmp_path / "data", [*SPLIT, "notinsplit"], layout=layout, points=2, views=3)

    args = ["ingest", str(root), "--split-file", str(splits), "--split-set", "tiny", "-w", str(workspace.root)]
    result = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output

    per_building = 2 * 3  # points x views
    assert split_counts(workspace) == {"train": 3 * per_building, "val": 2 * per_building, "test": per_building}
    assert json.loads(result.output)["buildings_not_in_split"] == ["notinsplit"]
    assert workspace.db.scalar("select count(*) from images where building = 'notinsplit'") == 0
    placed = workspace.db.query("select distinct building, split from images").to_pylist()
    assert {(r["building"], r["split"]) for r in placed} == set(SPLIT.items())


def test_split_csv_naming_no_ingested_building_is_refused_on_a_written_file(tmp_path, workspace):
    root = make_dataset(tmp_path / "data", ["xx", "yy"])
    before = snapshot(workspace)
    split_file = write_split_text(tmp_path / "train_val_test_tiny.csv", SPLIT, "\r")
    with pytest.raises(IngestError, match="names none of the 2 ingested buildings"):
        ingest(workspace, root, split_file=split_file)
    assert snapshot(workspace) == before


def test_ingest_auto_detects_both_layouts_to_the_same_rows(tmp_path):
    from taskonomy_db.workspace import Workspace

    keys = {}
    for layout in ("taskonomy", "omnidata"):
        workspace = Workspace.init(tmp_path / f"ws_{layout}")
        root = make_dataset(tmp_path / layout, ["aa", "bb", "cc", "dd"], layout=layout)
        assert ingest(workspace, root).layout == layout
        keys[layout] = workspace.db.query("select image_id, image_key, split from images order by all").to_pylist()
    assert keys["taskonomy"] == keys["omnidata"]
    assert len(keys["taskonomy"]) == 16


def test_reingest_is_idempotent(tmp_path, workspace):
    root = make_dataset(tmp_path / "data", ["aa", "bb", "cc"])
    first = ingest(workspace, root)
    before = workspace.db.query("select * from images order by image_id").to_pylist()
    second = ingest(workspace, root)
    assert first.n_new == 12 and second.n_new == 0
    assert workspace.db.query("select * from images order by image_id").to_pylist() == before


def test_missing_domain_is_recorded_not_dropped(tmp_path, workspace):
    root = make_dataset(tmp_path / "data", ["aa", "bb", "cc"])
    (root / "bb" / "depth_zbuffer" / "point_1_view_0_domain_depth_zbuffer.png").unlink()
    for path in (root / "cc" / "point_info").iterdir():
        path.unlink()
    (root / "cc" / "point_info").rmdir()  # a whole domain folder missing for one building

    report = ingest(workspace, root)

    assert report.n_images == 12
    assert report.missing_per_domain == {"depth_zbuffer": 1, "point_info": 4}
    missing = workspace.db.query("select image_key, domain from missing_files order by all").to_pylist()
    assert {"image_key": "bb/point_1_view_0", "domain": "depth_zbuffer"} in missing
    assert sum(1 for row in missing if row["domain"] == "point_info") == 4


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("truncate_png", "truncated PNG"),
        ("bad_name", "file name does not parse"),
        ("bad_json", "unreadable"),
        ("truncate_npy", "truncated .npy"),
    ],
)
def test_bad_files_fail_cleanly_and_leave_the_workspace_as_it_was(tmp_path, workspace, breakage, message):
    root = make_dataset(tmp_path / "data", ["aa", "bb", "cc"])
    ingest(workspace, root)
    before = snapshot(workspace)
    make_dataset(root, ["dd"])
    if breakage == "truncate_png":
        bad = root / "dd" / "rgb" / "point_0_view_1_domain_rgb.png"
        bad.write_bytes(bad.read_bytes()[:-30])
    elif breakage == "bad_name":
        bad = root / "dd" / "rgb" / "point_0_view_x_domain_rgb.png"
        bad.write_bytes(b"\x89PNG")
    elif breakage == "bad_json":
        bad = root / "dd" / "point_info" / "point_0_view_0_domain_point_info.json"
        bad.write_text("{not json")
    else:
        bad = root / "dd" / "class_object" / "point_1_view_1_domain_class_object.npy"
        bad.write_bytes(bad.read_bytes()[:-4])

    with pytest.raises(IngestError) as error:
        ingest(workspace, root)
    assert str(bad) in str(error.value) and message in str(error.value)
    assert snapshot(workspace) == before

    report = ingest(workspace, root, skip_bad=True)
    assert [path for path, _ in report.problems] == [str(bad)]
    assert workspace.db.scalar("select count(*) from images where building = 'dd'") == 4
    assert workspace.db.scalar("select path from ingest_problems") == str(bad)


@requires_published
def test_split_csv_naming_no_ingested_building_is_refused(tmp_path, workspace):
    root = make_dataset(tmp_path / "data", ["aa", "bb"])
    before = snapshot(workspace)
    with pytest.raises(IngestError, match="names none of the 2 ingested buildings"):
        ingest(workspace, root, split_file=SPLITS_DIR / "train_val_test_tiny.csv")
    assert snapshot(workspace) == before


def test_bad_roots_and_options_are_refused(tmp_path, workspace):
    with pytest.raises(IngestError, match="not found"):
        ingest(workspace, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no Taskonomy files"):
        ingest(workspace, tmp_path / "empty")
    with pytest.raises(IngestError, match="needs --split-file"):
        ingest(workspace, tmp_path / "empty", split_set="tiny")
    assert workspace.db.scalar("select count(*) from images") == 0


# Names in the release's style (tiny-split buildings of the real dataset), before the generator's.
REAL_NAMES = ["allensville", "beechwood", "benevolence", "coffeen", "collierville", "corozal", "cosmos",
              "darden", "forkland", "hanson", "hiteman", "ihlen", "klickitat", "lakeville", "leonardo"]  # fmt: skip
FRACTIONS = [
    {"train": 0.7, "val": 0.15, "test": 0.15},
    {"train": 1, "val": 1, "test": 1},
    {"train": 0.375, "val": 0.25, "test": 0.375},
]


@pytest.mark.parametrize("fractions", FRACTIONS)
def test_adding_buildings_never_moves_a_building_between_splits(fractions):
    # Real release names and generated ones: every prefix of the list is a dataset that then grows by one.
    buildings = REAL_NAMES + building_names(3, 60)
    whole = deterministic_split(buildings, fractions)
    assert whole == deterministic_split(list(reversed(buildings)), fractions)
    for n in range(1, len(buildings)):
        smaller = deterministic_split(buildings[:n], fractions)
        moved = {b: (s, whole[b]) for b, s in smaller.items() if whole[b] != s}
        assert not moved, f"adding buildings to {n} moved {moved}"


def test_hash_split_shares_follow_the_fractions():
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    counts = Counter(deterministic_split([f"building{i}" for i in range(4000)], fractions).values())
    for split, fraction in fractions.items():  # binomial, 4000 draws: a standard deviation is under 0.8%
        assert abs(counts[split] / 4000 - fraction) < 0.03, counts
    assert set(deterministic_split(["x"], {"train": 0, "val": 0, "test": 1}).values()) == {"test"}


def test_balanced_split_gives_exact_counts_and_round_trips_through_a_split_file(tmp_path, workspace):
    buildings = building_names(5, 48)
    split = balanced_split(buildings, {"train": 0.375, "val": 0.25, "test": 0.375})
    assert Counter(split.values()) == {"train": 18, "val": 12, "test": 18}
    assert set(balanced_split(["x", "y", "z"], FRACTIONS[0]).values()) == {"train", "val", "test"}
    path = write_split_csv(tmp_path / "split.csv", split)
    assert read_split_csv(path) == split

    root = make_dataset(tmp_path / "data", buildings[:6], points=1, views=1)
    ingest(workspace, root, split_file=path)
    rows = workspace.db.query("select building, split from images").to_pylist()
    assert {r["building"]: r["split"] for r in rows} == {b: split[b] for b in buildings[:6]}


def test_reingest_with_more_buildings_keeps_every_image_in_its_split(tmp_path, workspace):
    buildings = building_names(11, 12)
    ingest(workspace, make_dataset(tmp_path / "small", buildings[:5], points=1, views=1))
    before = workspace.db.query("select image_key, split from images order by image_key").to_pylist()
    ingest(workspace, make_dataset(tmp_path / "large", buildings, points=1, views=1))
    after = {r["image_key"]: r["split"] for r in workspace.db.query("select image_key, split from images").to_pylist()}
    assert len(after) == 12
    assert all(after[r["image_key"]] == r["split"] for r in before)


def test_cli_ingest_reports_and_plain_duckdb_client_reads_every_relation(tmp_path, workspace):
    root = make_dataset(tmp_path / "data", ["aa", "bb", "cc"], layout="omnidata")
    result = CliRunner().invoke(cli, ["ingest", str(root), "-w", str(workspace.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"layout": "omnidata"' in result.output

    con = duckdb.connect(str(workspace.db.path), read_only=True)
    names = con.execute(
        "select table_name from duckdb_tables() where schema_name = 'main' "
        "union all select view_name from duckdb_views() where schema_name = 'main' and not internal"
    ).fetchall()
    assert {"tasks", "images", "encoders", "transfers", "losses", "runs"} <= {n for (n,) in names}
    for (name,) in names:
        con.execute(f'select count(*) from "{name}"').fetchone()
    assert con.execute("select count(*) from images").fetchone()[0] == 12
    con.close()


def test_cli_ingest_bad_input_is_one_line_error(tmp_path, workspace):
    root = make_dataset(tmp_path / "data", ["aa"])
    (root / "aa" / "rgb" / "junk.png").write_bytes(b"x")
    result = CliRunner().invoke(cli, ["ingest", str(root), "-w", str(workspace.root)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "junk.png" in result.output
    assert "Traceback" not in result.output


def test_an_image_that_ingests_but_does_not_decode_is_named_when_read(tmp_path, workspace):
    """Ingest reads headers only; a PNG damaged inside its image data fails later, and the error names it."""
    ingest(workspace, make_dataset(tmp_path / "data", ["aa"]))
    row = workspace.db.query("select image_id, rgb_path from images order by image_id limit 1").to_pylist()[0]
    damaged = bytearray(Path(row["rgb_path"]).read_bytes())
    start = damaged.index(b"IDAT") + 8
    damaged[start : start + 16] = b"\xff" * 16
    Path(row["rgb_path"]).write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=rf"^cannot decode rgb from {row['rgb_path']}: "):
        load_rgb(workspace, [row["image_id"]], 32)


def test_ingest_warns_when_the_workspace_has_no_val_or_test_images(tmp_path, workspace):
    root = make_dataset(tmp_path / "data", ["aa", "bb", "cc"])
    split_file = tmp_path / "all_train.csv"
    split_file.write_text("id,train,val,test\naa,1,0,0\nbb,1,0,0\ncc,1,0,0\n")
    args = ["ingest", str(root), "--split-file", str(split_file), "-w", str(workspace.root)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "warning: the workspace has no test images" in result.output
    assert "warning: the workspace has no val images" in result.output
    assert "hash" not in result.output  # the split file chose every building's split
    one_each = write_split_csv(tmp_path / "one_each.csv", {"aa": "train", "bb": "val", "cc": "test"})
    split = CliRunner().invoke(cli, [*args[:2], "--split-file", str(one_each), "-w", str(workspace.root)])
    assert split.exit_code == 0 and "warning" not in split.output, split.output
    alone = Workspace.init(tmp_path / "alone").root
    hashed = CliRunner().invoke(cli, ["ingest", str(make_dataset(tmp_path / "one", ["aa"])), "-w", str(alone)])
    assert "without --split-file a building's split comes from a hash" in hashed.output
