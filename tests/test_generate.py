"""The embedded dataset generator: geometry, labels, layout, determinism and bad input, on real generated files."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from taskonomy_db import encodings as enc
from taskonomy_db import labels
from taskonomy_db.cli import cli
from taskonomy_db.generate import GenerateError, GenerateSettings, build_room, generate, points_in_views, render_room
from taskonomy_db.ingest import ingest
from taskonomy_db.layout import DOMAINS, file_name, parse_file_name
from taskonomy_db.render import CompiledRoom, pixel_rays
from taskonomy_db.scenes import building_names, make_building_rooms, restyle
from taskonomy_db.view_labels import occlusion_strength
from taskonomy_db.workspace import Workspace

SIZE = 48
SETTINGS = {"n_buildings": 2, "rooms_per_building": 2, "points_per_room": 2, "views_per_point": 2, "size": SIZE}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated") / "data"
    generate(out, seed=3, workers=2, progress=False, **SETTINGS)
    return out


# Every field of a real Taskonomy camera file, and nothing else.
REAL_CAMERA_FIELDS = {
    "camera_location", "camera_rotation_original", "camera_rotation_final", "camera_rotation_from_original_to_final",
    "field_of_view_rads", "point_location", "point_normal", "point_pitch", "point_uuid", "view_id", "camera_uuid",
    "camera_distance", "obliqueness_angle", "room", "bounding_box_ranges", "vanishing_points_gaussian_sphere",
    "vanishing_points_image", "nonfixated_points_in_view", "model_rotation_degrees", "resolution", "skybox_img",
    "skybox_img_path",
}  # fmt: skip
BLENDER_FROM_CV = np.diag([1.0, -1.0, -1.0])


def views(root: Path):
    """(building, point, view) of every view in a taskonomy-layout dataset."""
    for points in sorted(root.glob("*/point_info/*.json")):
        point, view, _, _ = parse_file_name(points.name)
        yield points.parent.parent.name, point, view


def focal(info: dict) -> float:
    return info["resolution"] / 2 / math.tan(info["field_of_view_rads"] / 2)


def load(root: Path, building: str, point: int, view: int, domain: str):
    return enc.read_domain(root / building / domain / file_name(point, view, domain, enc.extension(domain)))


def camera_rays(info: dict) -> np.ndarray:
    """Per-pixel camera-frame (x right, y down, z forward) ray directions at z = 1."""
    size = info["resolution"]
    grid = np.arange(size) + 0.5
    x = (grid[None, :] - size / 2) / focal(info)
    y = (grid[:, None] - size / 2) / focal(info)
    return np.stack(np.broadcast_arrays(x, y, np.ones((size, size))), axis=-1)


def test_every_domain_for_every_view_and_ingest_unchanged(dataset: Path, tmp_path: Path):
    keys = list(views(dataset))
    assert len(keys) == 2 * 2 * 2 * 2
    for building, point, view in keys:
        for domain in DOMAINS:
            assert (dataset / building / domain / file_name(point, view, domain, enc.extension(domain))).is_file()
    before = sorted(p.relative_to(dataset) for p in dataset.rglob("*"))
    workspace = Workspace.init(tmp_path / "study")
    report = ingest(workspace, dataset)
    assert report.layout == "taskonomy"
    assert report.n_images == len(keys)
    assert report.domains == list(DOMAINS)
    assert report.missing_per_domain == {} and report.problems == []
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*")) == before


def test_depth_euclidean_at_least_zbuffer_and_equal_at_centre(dataset: Path):
    for key in views(dataset):
        zbuffer = load(dataset, *key, "depth_zbuffer").astype(np.int64)
        euclidean = load(dataset, *key, "depth_euclidean").astype(np.int64)
        valid = zbuffer != enc.DEPTH_MISSING
        assert np.array_equal(valid, euclidean != enc.DEPTH_MISSING)
        assert np.array_equal(valid, enc.decode_mask(load(dataset, *key, "mask_valid")))
        assert np.all(euclidean[valid] >= zbuffer[valid] - 1)
        centre = SIZE // 2
        assert abs(euclidean[centre, centre] - zbuffer[centre, centre]) <= 1
        # The fixated point is what the centre sees.
        info = load(dataset, *key, "point_info")
        seen = euclidean[centre - 1 : centre + 1, centre - 1 : centre + 1] / enc.DEPTH_UNITS_PER_METRE
        # The image centre lies between the four central pixels: on a plane their mean is the centre's depth.
        assert abs(seen.mean() - info["camera_distance"]) < 0.03 * info["camera_distance"]


def test_normals_are_unit_and_face_the_camera(dataset: Path):
    for key in views(dataset):
        normals, valid = enc.decode_normal(load(dataset, *key, "normal"))
        depth_valid = enc.decode_mask(load(dataset, *key, "mask_valid"))
        assert np.array_equal(valid, depth_valid)
        length = np.linalg.norm(normals[valid], axis=1)
        assert np.all(np.abs(length - 1) < 0.02)
        cv = normals * np.array([1, 1, -1])  # stored +Z toward the camera -> camera frame z forward
        rays = camera_rays(load(dataset, *key, "point_info"))
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        facing = np.einsum("ijk,ijk->ij", cv, rays)[valid]
        assert np.all(facing < 0.02)
        assert np.mean(facing < -0.1) > 0.95


def test_edge_occlusion_lies_on_depth_discontinuities(dataset: Path):
    n_edges = 0
    for key in views(dataset):
        edges = enc.decode_response(load(dataset, *key, "edge_occlusion")) > 0
        metres, valid = enc.decode_depth(load(dataset, *key, "depth_euclidean"))
        log_depth = np.pad(np.log(np.where(valid, np.maximum(metres, 1e-3), enc.DEPTH_MAX_METRES)), 1, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(log_depth, (3, 3))
        jump = windows.max(axis=(2, 3)) - windows.min(axis=(2, 3))
        # A Sobel response above the threshold needs a depth ratio of ~1.1 or more across the 3x3 window.
        assert np.all(jump[edges] > 0.1)
        n_edges += edges.sum()
    assert n_edges > 0


def test_texture_edges_differ_from_occlusion_edges(dataset: Path):
    texture_only, texture_total = 0, 0
    for key in views(dataset):
        texture = enc.decode_response(load(dataset, *key, "edge_texture")) > 0
        occlusion = enc.decode_response(load(dataset, *key, "edge_occlusion")) > 0
        near_occlusion = np.zeros_like(occlusion)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near_occlusion |= np.roll(occlusion, (dy, dx), axis=(0, 1))
        texture_only += (texture & ~near_occlusion).sum()
        texture_total += texture.sum()
    assert texture_total > 0 and texture_only / texture_total > 0.5


def test_camera_files_have_exactly_the_real_fields(dataset: Path):
    for key in views(dataset):
        info = load(dataset, *key, "point_info")
        assert set(info) == REAL_CAMERA_FIELDS
        assert info["point_uuid"] == str(key[1]) and info["view_id"] == key[2] and info["resolution"] == SIZE
        assert info["skybox_img_path"] == f"./img/high/{info['camera_uuid']}_skybox{info['skybox_img']}.jpg"
        # obliqueness: the angle between the surface normal and the direction from the point to the camera.
        to_camera = np.subtract(info["camera_location"], info["point_location"])
        cosine = to_camera @ info["point_normal"] / np.linalg.norm(to_camera)
        assert abs(math.cos(info["obliqueness_angle"]) - cosine) < 1e-5
        assert abs(np.linalg.norm(to_camera) - info["camera_distance"]) < 1e-5


def test_fixated_point_projects_to_image_centre_in_every_view(dataset: Path):
    points_seen: dict[tuple[str, int], list[list[float]]] = {}
    for key in views(dataset):
        info = load(dataset, *key, "point_info")
        # camera_rotation_final: Blender XYZ Euler of a camera looking down its -Z with +Y up.
        rx, ry, rz = info["camera_rotation_final"]
        rot_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
        rot_y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
        rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
        world_from_camera = rot_z @ rot_y @ rot_x @ BLENDER_FROM_CV  # camera frame x right, y down, z forward
        local = world_from_camera.T @ (np.array(info["point_location"]) - info["camera_location"])
        pixel = local[:2] / local[2] * focal(info) + SIZE / 2
        assert local[2] > 0 and np.allclose(pixel, [SIZE / 2, SIZE / 2], atol=1e-3)
        assert math.radians(50) < info["field_of_view_rads"] < math.radians(70)
        # The world axes on the Gaussian sphere are the rotation's rows (Blender camera frame).
        for name, row in zip("xyz", rot_z @ rot_y @ rot_x, strict=True):
            assert np.allclose(info["vanishing_points_gaussian_sphere"][name], row, atol=1e-5)
        points_seen.setdefault((key[0], key[1]), []).append(info["camera_location"])
    # Views of one point come from different places.
    for locations in points_seen.values():
        assert len(locations) == 2 and np.linalg.norm(np.subtract(*locations)) > 0.4


def test_other_points_in_view_are_those_an_unblocked_ray_reaches_inside_the_image():
    settings = GenerateSettings(n_buildings=1, rooms_per_building=1, points_per_room=6, views_per_point=2, size=32)
    room, rendered = render_room(settings, 0, "test", 0)
    compiled = CompiledRoom(room)
    listed = points_in_views(rendered, 32)
    n_seen = 0
    for (pose, _), seen in zip(rendered, listed, strict=True):
        for other, _ in rendered:
            if other.point == pose.point or other.view != 0:
                continue
            offset = other.point_location - pose.camera.position
            distance = np.linalg.norm(offset)
            t, _ = compiled.cast(pose.camera.position[None], (offset / distance)[None])
            (u, v), z = pose.camera.project(other.point_location, 32)
            in_image = z > 0 and 0.5 <= u < 31.5 and 0.5 <= v < 31.5  # a pixel off the border: no rounding doubt
            reached = abs(t[0] - distance) < 0.01 * distance
            if in_image and reached:
                assert other.point in seen
                n_seen += 1
            elif not (z > 0 and 0 <= u < 32 and 0 <= v < 32) or t[0] < 0.9 * distance:
                assert other.point not in seen
    assert n_seen > 0


def test_room_layout_and_vanishing_point_labels_match_the_rendered_room(dataset: Path):
    """Both labels are computed from the camera file by load_ops' rules; the room they describe is the one the
    normals and depth show: wall, floor and ceiling normals lie along the vanishing directions, and the layout
    box's floor-wall and wall-wall edges project onto pixels whose normals are those of the two surfaces."""
    checked, agreeing, n_room_pixels = 0, 0, 0
    for key in views(dataset):
        info = load(dataset, *key, "point_info")
        normals, valid = enc.decode_normal(load(dataset, *key, "normal"))
        depth, _ = enc.decode_depth(load(dataset, *key, "depth_zbuffer"))
        semantic, _ = enc.decode_segment_semantic(load(dataset, *key, "segment_semantic"))
        to_stored = np.array([1, 1, -1])  # camera frame (z forward) -> stored normal frame (+Z toward camera)
        vanishing, _ = labels.vanishing_point(info)
        directions = vanishing.reshape(3, 3) @ BLENDER_FROM_CV  # rows: canonical axes in the cv camera frame
        room = valid & (semantic == enc.SEMANTIC_BACKGROUND)
        alignment = np.abs(np.einsum("ijk,ak->ija", normals * to_stored, directions)).max(-1)
        assert np.mean(alignment[room] > 0.97) > 0.97
        n_room_pixels += room.sum()
        standard, _ = labels.room_layout(info)
        layout = standard * labels.ROOM_LAYOUT_STD + labels.ROOM_LAYOUT_MEAN
        centre = BLENDER_FROM_CV @ layout[:3]
        rotation = BLENDER_FROM_CV @ labels.euler_to_matrix(layout[3:6]).T  # canonical room frame -> cv camera
        # One set of room axes, canonicalised differently (x-major against the view lying between +x and +y).
        assert np.allclose(np.sort(np.abs(directions @ rotation), axis=1), [[0, 0, 1]] * 3, atol=1e-5)
        # Sample the four floor-wall edges of the layout box and the four vertical wall-wall edges.
        hx, hy, hz = layout[6:] / 2
        s = np.linspace(-1, 1, 120)[:, None]
        edges = []  # (room-frame points along the edge, the inward normals of the two surfaces meeting there)
        for side in (-1, 1):
            edges.append((s * [hx, 0, 0] + [0, side * hy, -hz], [[0, 0, 1], [0, -side, 0]]))
            edges.append((s * [0, hy, 0] + [side * hx, 0, -hz], [[0, 0, 1], [-side, 0, 0]]))
            for other in (-1, 1):
                edges.append((s * [0, 0, hz] + [side * hx, other * hy, 0], [[-side, 0, 0], [0, -other, 0]]))
        for room_points, room_normals in edges:
            expected_normals = [rotation @ n * to_stored for n in room_normals]
            camera_points = room_points @ rotation.T + centre
            z = camera_points[:, 2]
            front = z > 0.2
            pixels = camera_points[front, :2] / z[front, None] * focal(info) + SIZE / 2
            inside = np.all((pixels >= 1) & (pixels < SIZE - 1), axis=1)
            for (u, v), depth_edge in zip(pixels[inside].astype(int), z[front][inside], strict=True):
                window = (slice(v - 1, v + 2), slice(u - 1, u + 2))
                if not np.any(np.abs(depth[window] - depth_edge) < 0.03 * depth_edge + 0.01):
                    continue  # an object hides this part of the edge
                checked += 1
                found = [
                    np.any(valid[window] & (np.einsum("ijk,k->ij", normals[window], n) > 0.95))
                    for n in expected_normals
                ]
                agreeing += all(found)
    assert n_room_pixels > 1000
    assert checked > 50
    assert agreeing / checked > 0.9


def test_semantic_labels_and_depth_agree_with_the_primitive_each_ray_hit():
    settings = GenerateSettings(n_buildings=1, rooms_per_building=1, points_per_room=1, views_per_point=2, size=32)
    room, rendered = render_room(settings, 0, "test", 0)
    compiled = CompiledRoom(room)
    for pose, view in rendered:
        ids = view.primitive_id
        expected = np.where(ids == 0, enc.SEMANTIC_BACKGROUND, enc.SEMANTIC_UNCERTAIN)
        for k, primitive in enumerate(room.primitives):
            cls = room.objects[primitive.object_index].class_name
            expected[ids == k + 1] = enc.SEMANTIC_CLASSES.index(cls)
        assert np.array_equal(view.segment_semantic, expected)
        # Re-intersect each object pixel's ray with its primitive alone: same distance as the stored depth.
        dirs = pixel_rays(pose.camera, 32)[0].reshape(32, 32, 3)
        for k in np.unique(ids[ids > 0]):
            rows = ids == k
            t = compiled._hit_primitive(k - 1, np.broadcast_to(pose.camera.position, (rows.sum(), 3)), dirs[rows])
            assert np.allclose(t, view.depth_euclidean[rows], atol=1e-6)
        assert (view.segment_semantic >= 2).any() or len(room.objects) == 0


def test_reshading_and_geometry_ignore_textures():
    settings = GenerateSettings(n_buildings=1, rooms_per_building=1, points_per_room=1, views_per_point=2, size=32)
    room = build_room(settings.seed, 0, 0)
    restyled = restyle(room, np.random.default_rng(99))
    _, plain = render_room(settings, 0, "test", 0, room=room)
    _, repainted = render_room(settings, 0, "test", 0, room=restyled)
    for (_, a), (_, b) in zip(plain, repainted, strict=True):
        assert np.array_equal(enc.encode_reshading(a.reshading), enc.encode_reshading(b.reshading))
        assert np.array_equal(a.depth_zbuffer, b.depth_zbuffer) and np.array_equal(a.normal, b.normal)
        assert np.array_equal(occlusion_strength(a), occlusion_strength(b))
        assert not np.array_equal(enc.encode_rgb(a.rgb), enc.encode_rgb(b.rgb))


def test_room_type_shows_in_the_wall_hue_in_every_building():
    # class_scene is learnable only if the room type shows at 64 px in more than the objects that happen to be
    # in view: each type has a wall hue band shared by every building.
    hits = n_rooms = 0
    for building in range(40):
        for room in make_building_rooms(0, building, 3):
            hue = colorsys.rgb_to_hsv(*room.wall.colour_a)[0]
            centres = np.arange(len(enc.SCENE_CLASSES)) / len(enc.SCENE_CLASSES)
            distance = np.abs((hue - centres + 0.5) % 1.0 - 0.5)
            hits += enc.SCENE_CLASSES[int(np.argmin(distance))] == room.room_type
            n_rooms += 1
    assert hits / n_rooms >= 0.9


def test_class_vectors_and_curvature(dataset: Path):
    scenes = set()
    for key in views(dataset):
        info = load(dataset, *key, "point_info")
        scene = load(dataset, *key, "class_scene")
        assert scene.dtype == np.float32 and scene.shape == (len(enc.SCENE_CLASSES),)
        room_type = info["room"].rsplit("_", 1)[0]
        assert enc.SCENE_CLASSES[int(scene.argmax())] == room_type
        scenes.add(room_type)
        objects = load(dataset, *key, "class_object")
        assert objects.shape == (len(enc.OBJECT_CLASSES),) and abs(objects.sum() - 1) < 1e-5
        semantic, _ = enc.decode_segment_semantic(load(dataset, *key, "segment_semantic"))
        visible = {enc.SEMANTIC_CLASSES[label] for label in np.unique(semantic) if label >= 2}
        if visible:
            assert {enc.OBJECT_CLASSES[i] for i in np.flatnonzero(objects > 0)} == visible
        curvature = enc.decode_curvature(load(dataset, *key, "principal_curvature"))
        assert np.all(curvature[..., 0] >= curvature[..., 1])
        assert np.all(curvature[semantic == enc.SEMANTIC_BACKGROUND] == 0)  # walls, floor, ceiling are flat
    assert scenes


def test_same_seed_same_bytes_whatever_the_workers_and_different_seeds_differ(tmp_path: Path):
    small = {"n_buildings": 2, "rooms_per_building": 1, "points_per_room": 1, "views_per_point": 2, "size": 32}
    generate(tmp_path / "a", seed=5, workers=1, progress=False, **small)
    generate(tmp_path / "b", seed=5, workers=2, progress=False, **small)
    generate(tmp_path / "c", seed=6, workers=1, progress=False, **small)

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b
    assert building_names(5, 2) != building_names(6, 2)
    rgb_a = sorted(v for k, v in a.items() if "/rgb/" in k)
    rgb_c = sorted(v for k, v in c.items() if "/rgb/" in k)
    assert len(rgb_a) == len(rgb_c) == 4 and not set(rgb_a) & set(rgb_c)


def test_cli_generates_omnidata_layout_that_ingests(tmp_path: Path):
    out = tmp_path / "omni"
    args = ["generate", str(out), "--buildings", "1", "--rooms", "1", "--points-per-room", "1"]
    result = CliRunner().invoke(cli, [*args, "--views-per-point", "2", "--size", "32", "--layout", "omnidata"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 views" in result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(DOMAINS)
    workspace = Workspace.init(tmp_path / "study")
    report = ingest(workspace, out)
    assert report.layout == "omnidata" and report.n_images == 2 and report.domains == list(DOMAINS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--buildings", "0"], "Invalid value for '--buildings': 0 is not in the range x>=1."),
        (["--size", "-8"], "Invalid value for '--size': -8 is not in the range 32<=x<=512."),
        (["--size", "1024"], "Invalid value for '--size': 1024 is not in the range 32<=x<=512."),
        (["--views-per-point", "0"], "Invalid value for '--views-per-point': 0 is not in the range x>=1."),
    ],
)
def test_bad_settings_stop_before_writing(tmp_path: Path, extra: list[str], message: str):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["generate", str(out), *extra])
    assert result.exit_code == 2  # a usage error
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_buildings": 0}, "buildings must be a positive integer"),
        ({"size": 1024}, "unsupported image size 1024"),
        ({"views_per_point": 0}, "views per point must be a positive integer"),
    ],
)
def test_the_library_checks_settings_too(tmp_path: Path, settings: dict, message: str):
    with pytest.raises(GenerateError, match=message):
        generate(tmp_path / "out", progress=False, **settings)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["generate", str(out), "--buildings", "1", "--rooms", "1", "--points-per-room", "1", "--size", "32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and "exists and is not empty" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind
    result = CliRunner().invoke(cli, [*args, "--overwrite", "--views-per-point", "1"])
    assert result.exit_code == 0, result.output
    assert not (out / "keep.txt").exists() and len(list(out.glob("*/rgb/*.png"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_generate_help_has_an_example():
    result = CliRunner().invoke(cli, ["generate", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
