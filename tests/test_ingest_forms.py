"""Ingest of real Taskonomy downloads as they come: the full release, the omnidata downloader's tree and the legacy
sample building (StanfordVL's taskonomy-sample-model-1), with their real folder names, file names and camera-file
fields (values synthetic), extra domains tdb does not use, and the legacy per-point nonfixated files."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from taskonomy_db import encodings, labels
from taskonomy_db.cli import cli
from taskonomy_db.errors import IngestError
from taskonomy_db.ingest import ingest
from taskonomy_db.layout import LEGACY_FOLDERS, file_name, relative_path
from taskonomy_db.tasks import get_task
from tests.conftest import png_bytes
from tests.test_generate import REAL_CAMERA_FIELDS
from tests.test_labels import CAMERA, ROOM, layout_by_hand

# (point, view) -> (camera location, yaw of a level camera). Point 0 has two views: a fixated pair.
VIEWS = {(0, 0): (CAMERA, 0.3), (0, 1): ([3.0, 2.0, 1.5], 0.8), (1, 0): (CAMERA, -1.2)}
# Point -> the views that see it without being fixated on it: (point, view, pixel x, pixel y).
SEEN_BY = {0: [(1, 0, 100, 200)], 1: [(0, 1, 30, 40), (0, 0, 500, 7)]}
# The sample building's folders and what they hold (its README): folder -> (domain, name of point 0 view 0).
LEGACY_TABLE = {
    "rgb": ("rgb", "point_0_view_0_domain_rgb.png"),
    "depth": ("depth_zbuffer", "point_0_view_0_domain_depth.png"),  # "Z-buffer depth images"
    "mist": ("depth_euclidean", "point_0_view_0_domain_mist.png"),  # "Euclidian distance images"
    "normal": ("normal", "point_0_view_0_domain_normal.png"),
    "reshade": ("reshading", "point_0_view_0_domain_reshade.png"),
    "curvature": ("principal_curvature", "point_0_view_0_domain_curvature.png"),
    "edge2d": ("edge_texture", "point_0_view_0_domain_edge2d.png"),  # "2D texture edge images"
    "edge": ("edge_occlusion", "point_0_view_0_domain_edge.png"),  # "Occlusion (3D) edge images"
    "keypoint2d": ("keypoints2d", "point_0_view_0_domain_keypoint2d.png"),
    "keypoint": ("keypoints3d", "point_0_view_0_domain_keypoint.png"),  # "3D keypoint heatmaps"
    "segmentsemantic": ("segment_semantic", "point_0_view_0_domain_segmentsemantic.png"),
    "segment2d": ("segment_unsup2d", "point_0_view_0_domain_segment2d.png"),
    "segment25d": ("segment_unsup25d", "point_0_view_0_domain_segment25d.png"),
    "softmax1000": ("class_object", "point_0_view_0.npy"),  # "Object classification (Imagenet 1000)"
    "places": ("class_scene", "point_0_view_0.npy"),  # "Scene classification"
    "points": ("point_info", "point_0_view_0_domain_fixatedpose.json"),
}


def camera_file(point: int, view: int) -> dict:
    """Every field of a real camera file (and only those); the ones the labels read describe a level camera."""
    location, yaw = VIEWS[(point, view)]
    return {
        "bounding_box_ranges": ROOM,
        "camera_distance": 2.5,
        "camera_location": location,
        "camera_rotation_final": [math.pi / 2, 0.0, yaw],
        "camera_rotation_from_original_to_final": [0.0, 0.0, 0.1],
        "camera_rotation_original": [math.pi / 2, 0.0, yaw - 0.1],
        "camera_uuid": f"{point:016x}{view:016x}",
        "field_of_view_rads": 1.0,
        "model_rotation_degrees": 0.0,
        "nonfixated_points_in_view": [
            q for q, seen in SEEN_BY.items() for p, v, _, _ in seen if (p, v) == (point, view)
        ],
        "obliqueness_angle": 0.2,
        "point_location": [0.5, 3.0, 1.0],
        "point_normal": [1.0, 0.0, 0.0],
        "point_pitch": -0.1,
        "point_uuid": str(point),
        "resolution": 512,
        "room": "0_2",
        "skybox_img": 3,
        "skybox_img_path": f"./img/high/{point:016x}{view:016x}_skybox3.jpg",
        "vanishing_points_gaussian_sphere": {"x": [1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0], "z": [0.0, 0.0, 1.0]},
        "vanishing_points_image": {"x": [256.0, 256.0], "y": [256.0, 256.0], "z": [256.0, 256.0]},
        "view_id": view,
    }


def nonfixated_file(point: int) -> dict:
    """A legacy per-point file: the views that see the point and where."""
    views = [
        {
            "camera_uuid": f"{p:016x}{v:016x}",
            "point_uuid": str(p),
            "nonfixated_pixel_x": x,
            "nonfixated_pixel_y": y,
            "view_id": v,
        }
        for p, v, x, y in SEEN_BY[point]
    ]
    return {"point_location": [0.5, 3.0, 1.0], "point_uuid": str(point), "views": views}


def write(path: Path, content: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(content))
    elif path.suffix == ".npy":
        np.save(path, np.full(5, 0.2, np.float32))
    else:
        path.write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))


def write_release(root: Path, layout: str, building: str) -> None:
    """A building as the full release or the omnidata downloader lays it out, with two domains tdb does not use."""
    for point, view in VIEWS:
        for domain, ext in (("rgb", "png"), ("depth_zbuffer", "png"), ("class_object", "npy"), ("point_info", "json")):
            name = file_name(point, view, domain, ext)
            write(root / relative_path(layout, building, domain, name), camera_file(point, view))
        for domain in ("rgb_large", "fragments"):
            write(root / relative_path(layout, building, domain, file_name(point, view, domain, "png")))


def write_legacy(
    building_dir: Path, folders: tuple[str, ...] = ("rgb", "depth", "curvature", "places", "points")
) -> None:
    """A building in the sample building's form: legacy names, per-point nonfixated files, unused folders."""
    for point, view in VIEWS:
        for folder in folders:
            name = LEGACY_TABLE[folder][1].replace("point_0_view_0", f"point_{point}_view_{view}")
            write(building_dir / folder / name, camera_file(point, view))
        # rgb_large's files carry the domain rgb, not their folder's name.
        write(building_dir / "rgb_large" / f"point_{point}_view_{view}_domain_rgb.png")
    for point in SEEN_BY:
        write(
            building_dir / "nonfixated" / f"point_{point}_view_all_domain_nonfixatedpose.json", nonfixated_file(point)
        )
    write(building_dir / "skybox" / "b20b2b0634e241d794127bb70d0381ec_skybox3.jpg")
    (building_dir / "modeldata" / "mesh").mkdir(parents=True)
    (building_dir / "modeldata" / "mesh" / "mesh.obj").write_text("v 0 0 0\n")


def make_form(root: Path, form: str) -> list[str]:
    """A download in one of the real forms; returns its buildings."""
    if form == "legacy_one_building":
        write_legacy(root)
        return [root.name]
    buildings = ["allensville", "beechwood"]
    for building in buildings:
        if form == "legacy":
            write_legacy(root / building)
        else:
            write_release(root, form, building)
    return buildings


FORMS = ["taskonomy", "omnidata", "legacy", "legacy_one_building"]


@pytest.mark.parametrize("form", FORMS)
def test_each_real_form_is_detected_and_every_view_has_its_camera_file(tmp_path, workspace, form):
    root = tmp_path / "allensville"
    buildings = make_form(root, form)

    report = ingest(workspace, root)  # no --skip-bad: the unused domains are skipped, not errors

    assert report.layout == form.removesuffix("_one_building")
    assert report.problems == [] and report.n_images == len(VIEWS) * len(buildings)
    unused = ["fragments", "rgb_large"] if form in ("taskonomy", "omnidata") else ["modeldata", "rgb_large", "skybox"]
    assert report.unused_domains == unused
    assert workspace.db.scalar("select unused_domains from datasets") == unused
    rows = workspace.db.query("select building, point, view, point_info_path from images").to_pylist()
    assert sorted({row["building"] for row in rows}) == buildings
    for row in rows:
        assert encodings.read_domain(row["point_info_path"]) == camera_file(row["point"], row["view"])
    assert workspace.db.scalar("select count(*) from missing_files") == 0


@pytest.mark.parametrize("form", FORMS)
def test_labels_from_the_ingested_camera_files_equal_values_by_hand(tmp_path, workspace, form):
    make_form(tmp_path / "allensville", form)
    ingest(workspace, tmp_path / "allensville")
    paths = {
        (row["point"], row["view"]): row["point_info_path"]
        for row in workspace.db.query("select point, view, point_info_path from images").to_pylist()
    }
    for key in ((0, 0), (1, 0)):  # the views at CAMERA, which layout_by_hand assumes
        label, _ = get_task("room_layout").decode_label(encodings.read_domain(paths[key]))
        np.testing.assert_allclose(label, layout_by_hand(VIEWS[key][1]), atol=1e-5)
    # Yaw 0.3 looks along (-sin .3, cos .3, 0): canonical x is world +y, canonical y world -x (test_labels).
    label, _ = get_task("vanishing_point").decode_label(encodings.read_domain(paths[(0, 0)]))
    c, s = math.cos(0.3), math.sin(0.3)
    np.testing.assert_allclose(label, [s, 0, -c, -c, 0, -s, 0, 1, 0], atol=1e-6)
    # The fixated pair of point 0: view 0 (yaw .3) in the frame of view 1 (yaw .8, 2 m along +x from view 0).
    # Both level, so the rotation is -0.5 about the camera's up (y) axis; view 1's right is (cos .8, sin .8, 0)
    # and backward (sin .8, -cos .8, 0), so the offset (-2, 0, 0) is (-2 cos .8, 0, -2 sin .8) there.
    first, second = (encodings.read_domain(paths[key]) for key in ((0, 0), (0, 1)))
    raw = [0.0, -0.5, 0.0, -2 * math.cos(0.8), 0.0, -2 * math.sin(0.8)]
    np.testing.assert_allclose(labels.relative_camera_pose(first, second, standardise=False), raw, atol=1e-6)
    standard = (np.array(raw) - labels.FIXATED_POSE_MEAN) / labels.FIXATED_POSE_STD
    np.testing.assert_allclose(labels.relative_camera_pose(first, second), standard, atol=1e-6)


def test_generated_camera_files_have_the_real_fields_the_fixture_has():
    assert set(camera_file(0, 0)) == REAL_CAMERA_FIELDS and "room_layout" not in REAL_CAMERA_FIELDS


def test_every_legacy_folder_maps_to_its_domain(tmp_path, workspace):
    assert {folder: domain for folder, (domain, _) in LEGACY_TABLE.items()} == {
        folder: domain for folder, (domain, _) in LEGACY_FOLDERS.items()
    }
    root = tmp_path / "sample"
    for folder, (_, name) in LEGACY_TABLE.items():
        write(root / folder / name, camera_file(0, 0))

    report = ingest(workspace, root)

    assert report.layout == "legacy" and report.n_images == 1
    assert sorted(report.domains) == sorted(domain for domain, _ in LEGACY_TABLE.values())
    row = workspace.db.query("select * from images").to_pylist()[0]
    assert row["image_key"] == "sample/point_0_view_0"
    for folder, (domain, name) in LEGACY_TABLE.items():
        assert row[f"{domain}_path"] == str((root / folder / name).resolve())


def test_nonfixated_per_point_files_are_read_into_a_table(tmp_path, workspace):
    root = tmp_path / "data"
    make_form(root, "legacy")

    report = ingest(workspace, root)

    rows = workspace.db.query(
        "select building, point, image_key, camera_uuid, pixel_x, pixel_y from nonfixated_views order by all"
    ).to_pylist()
    expected = [
        {
            "building": building,
            "point": point,
            "image_key": f"{building}/point_{p}_view_{v}",
            "camera_uuid": f"{p:016x}{v:016x}",
            "pixel_x": x,
            "pixel_y": y,
        }
        for building in ("allensville", "beechwood")
        for point, seen in SEEN_BY.items()
        for p, v, x, y in seen
    ]
    assert rows == sorted(expected, key=lambda row: tuple(row.values()))
    assert report.n_nonfixated_views == len(expected)
    # Every seeing image is an ingested image, so pairs for the nonfixated pose are one join away.
    unmatched = "select count(*) from nonfixated_views anti join images using (image_key)"
    assert workspace.db.scalar(unmatched) == 0
    ingest(workspace, root)  # idempotent
    assert workspace.db.scalar("select count(*) from nonfixated_views") == len(expected)


def test_tdb_datasets_from_before_point_info_still_ingest(tmp_path, workspace):
    """tdb wrote camera files as points/..._domain_points.json before it took the release's name."""
    root = tmp_path / "data"
    write_release(root, "taskonomy", "aa")
    for path in sorted((root / "aa" / "point_info").iterdir()):
        old = root / "aa" / "points" / path.name.replace("point_info", "points")
        old.parent.mkdir(exist_ok=True)
        path.rename(old)
    (root / "aa" / "point_info").rmdir()
    report = ingest(workspace, root)
    assert "point_info" in report.domains and report.n_images == len(VIEWS)
    assert workspace.db.scalar("select count(*) from images where point_info_path like '%/points/%'") == len(VIEWS)


def snapshot(workspace) -> tuple:
    return tuple(
        workspace.db.query(f"select * from {table} order by all").to_pylist()
        for table in ("images", "datasets", "ingest_problems", "nonfixated_views")
    )


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("unknown_domain", "unknown domain 'surface_whatever'"),
        ("nonfixated_without_views", "nonfixated file without the field 'views'"),
        ("view_all_in_rgb", "a per-point (view_all) file in folder 'rgb'"),
        ("per_view_in_nonfixated", "folder 'nonfixated' holds per-point files"),
        ("wrong_domain_in_points", "domain 'rgb' in the name but the file is in folder 'points'"),
        ("no_domain_in_rgb", "no domain in the name but the file is in folder 'rgb'"),
        ("second_camera_file", "2 point_info files for one view"),
    ],
)
def test_bad_downloads_fail_in_one_line_and_write_nothing(tmp_path, workspace, breakage, message):
    root = tmp_path / "data"
    make_form(root, "legacy")
    ingest(workspace, root)
    before = snapshot(workspace)
    building = root / "beechwood"
    bad = {
        "unknown_domain": building / "surface_whatever",
        "nonfixated_without_views": building / "nonfixated" / "point_1_view_all_domain_nonfixatedpose.json",
        "view_all_in_rgb": building / "rgb" / "point_0_view_all_domain_rgb.png",
        "per_view_in_nonfixated": building / "nonfixated" / "point_0_view_0_domain_nonfixatedpose.json",
        "wrong_domain_in_points": building / "points" / "point_0_view_0_domain_rgb.json",
        "no_domain_in_rgb": building / "rgb" / "point_5_view_0.png",
        "second_camera_file": building / "point_info" / "point_0_view_0_domain_point_info.json",
    }[breakage]
    if breakage == "unknown_domain":
        write(bad / "point_0_view_0_domain_surface_whatever.png")
    else:
        write(bad, {"point_uuid": "1"} if breakage == "nonfixated_without_views" else camera_file(0, 0))

    result = CliRunner().invoke(cli, ["ingest", str(root), "-w", str(workspace.root)])

    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert str(bad) in result.output and message in result.output
    with pytest.raises(IngestError):
        ingest(workspace, root)
    assert snapshot(workspace) == before
    report = ingest(workspace, root, skip_bad=True)
    # Two camera files for one view: neither is taken, the view is left without one.
    clash = [str(building / "points" / "point_0_view_0_domain_fixatedpose.json")]
    expected = sorted([str(bad), *clash]) if breakage == "second_camera_file" else [str(bad)]
    assert sorted(path for path, _ in report.problems) == expected


@pytest.mark.parametrize("form", FORMS)
def test_an_unknown_domain_is_an_error_in_every_form(tmp_path, workspace, form):
    root = tmp_path / "allensville"
    buildings = make_form(root, form)
    unknown = {
        "taskonomy": root / "beechwood" / "surface_whatever",
        "omnidata": root / "surface_whatever",
        "legacy": root / "beechwood" / "surface_whatever",
        "legacy_one_building": root / "surface_whatever",
    }[form]
    name = file_name(0, 0, "surface_whatever", "png")
    write((unknown / "taskonomy" / "beechwood" / name) if form == "omnidata" else unknown / name)
    with pytest.raises(IngestError, match=f"^{re.escape(str(unknown))}: unknown domain 'surface_whatever'"):
        ingest(workspace, root)
    report = ingest(workspace, root, skip_bad=True)
    assert report.layout == form.removesuffix("_one_building") and report.n_images == len(VIEWS) * len(buildings)
    assert report.problems == [
        (str(unknown), "unknown domain 'surface_whatever' (not a release, legacy or unused domain)")
    ]


def test_cli_summary_lists_the_skipped_domains_and_the_nonfixated_rows(tmp_path, workspace):
    root = tmp_path / "data"
    make_form(root, "legacy")
    result = CliRunner().invoke(cli, ["ingest", str(root), "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert "[legacy]" in result.output
    assert "skipped (domains tdb does not use): modeldata, rgb_large, skybox" in result.output
    assert "nonfixated: 6 (point, seeing image) rows in nonfixated_views" in result.output
    forced = CliRunner().invoke(cli, ["ingest", str(root), "--layout", "taskonomy", "-w", str(workspace.root)])
    assert forced.exit_code == 0 and "[taskonomy]" in forced.output, forced.output
