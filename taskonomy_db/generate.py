"""The embedded default dataset: render buildings of procedural rooms into the real Taskonomy layout and encodings.

`generate(out, ...)` writes ROOT/{building}/{domain}/point_P_view_V_domain_D.ext (or the omnidata layout) with
every per-view domain, so `ingest` reads it through the same code path as the real dataset. Cameras follow
Taskonomy: a "point" is a spot on a visible surface and each of its "views" looks straight at it from a
different place in the room (fixated), with a field of view near 60 degrees and a small roll.

Work is split by (building, room); each unit's output is a pure function of (seed, building, room, settings),
so the bytes do not depend on the number of worker processes. Output goes to a temporary folder beside OUT that
is renamed into place at the end: an interrupted run leaves no half dataset.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import math
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from taskonomy_db import encodings as enc
from taskonomy_db.atomic import stale_writer
from taskonomy_db.errors import GenerateError
from taskonomy_db.generate_settings import MANIFEST, GenerateSettings
from taskonomy_db.layout import DOMAINS, file_name, relative_path
from taskonomy_db.process_tuning import tune_process, tune_worker
from taskonomy_db.render import Camera, CompiledRoom, RenderedView, render
from taskonomy_db.scenes import Room, Style, building_names, make_room, make_style
from taskonomy_db.view_labels import (
    class_object,
    class_scene,
    edge_occlusion,
    edge_texture,
    keypoints2d,
    keypoints3d,
    segment_unsup2d,
    segment_unsup25d,
)

FOV_RANGE = (math.radians(55), math.radians(65))
MAX_PITCH = math.radians(40)
MAX_ROLL = math.radians(10)


@dataclass
class GenerateReport:
    out: str
    buildings: list[str]
    n_views: int
    n_files: int
    settings: dict


@dataclass(frozen=True)
class ViewPose:
    point: int
    view: int
    camera: Camera
    point_location: np.ndarray
    point_normal: np.ndarray
    original_rotation: np.ndarray


# ---------------------------------------------------------------- cameras


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """world_from_camera rotation (x right, y down, z forward) looking at target, rolled about the view axis."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.array([forward[1], -forward[0], 0.0])  # forward x up, written out: np.cross is slow on 3-vectors
    right /= np.linalg.norm(right)
    down = np.array(
        [
            forward[1] * right[2] - forward[2] * right[1],
            forward[2] * right[0] - forward[0] * right[2],
            forward[0] * right[1] - forward[1] * right[0],
        ]
    )
    c, s = math.cos(roll), math.sin(roll)
    return np.stack([c * right + s * down, -s * right + c * down, forward], axis=1)


def blender_euler(world_from_camera: np.ndarray) -> list[float]:
    """Blender XYZ Euler angles of the camera (Blender cameras look down -Z with +Y up), as in Taskonomy JSON."""
    m = world_from_camera @ np.diag([1.0, -1.0, -1.0])
    return _euler_xyz(m)


def _euler_xyz(m: np.ndarray) -> list[float]:
    """Euler angles (x, y, z) with m = Rz @ Ry @ Rx."""
    ry = math.asin(-max(-1.0, min(1.0, m[2, 0])))
    rx = math.atan2(m[2, 1], m[2, 2])
    rz = math.atan2(m[1, 0], m[0, 0])
    return [rx, ry, rz]


def _free_positions(compiled: CompiledRoom, rng: np.random.Generator, n: int, margin: float) -> np.ndarray:
    width, depth, _ = compiled.room.size
    positions = np.stack(
        [rng.uniform(margin, width - margin, n), rng.uniform(margin, depth - margin, n), rng.uniform(0.9, 1.8, n)],
        axis=1,
    )
    return positions[~compiled.inside_any(positions, 0.25)]


def sample_fixation(compiled: CompiledRoom, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """A point on a visible surface (not the ceiling) and its world normal, seen from a random free spot."""
    room = compiled.room
    for _ in range(30):
        origins = _free_positions(compiled, rng, 4, 0.5)
        if len(origins) == 0:
            continue
        origin = origins[0]
        if room.primitives and rng.random() < 0.6:
            target = np.asarray(room.primitives[int(rng.integers(len(room.primitives)))].centre)
            direction = target - origin + rng.normal(0, 0.05, 3)
        else:
            yaw, pitch = rng.uniform(0, 2 * math.pi), rng.uniform(-0.6, 0.15)
            direction = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
        direction = direction / np.linalg.norm(direction)
        t, ids = compiled.cast(origin, direction[None])
        if not np.isfinite(t[0]) or ids[0] < 0 or t[0] < 0.6:
            continue
        point = origin + t[0] * direction
        if point[2] > room.size[2] - 0.05 or not _on_broad_surface(compiled, origin[None], point[None])[0]:
            continue
        normal = compiled.surface(point[None], ids)["normals"][0]
        if normal @ direction > 0:
            normal = -normal
        return point, normal
    return None


def _on_broad_surface(compiled: CompiledRoom, origins: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each origin looking at its target, whether rays 0.04 rad around the line of sight hit the same
    surface (about a pixel at 32 px): keeps fixations off silhouettes and thin parts, so the pixels at the
    image centre see the fixated point at any size. One batched cast for all origins."""
    offset = targets - origins
    distance = np.linalg.norm(offset, axis=1)
    direction = offset / distance[:, None]
    side = np.cross(direction, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    up = np.cross(side, direction)
    angles = np.arange(8) * (np.pi / 4)
    ring = np.cos(angles)[None, :, None] * side[:, None] + np.sin(angles)[None, :, None] * up[:, None]
    dirs = (direction[:, None] + 0.04 * ring).reshape(-1, 3)
    t, _ = compiled.cast(np.repeat(origins, 8, axis=0), dirs / np.linalg.norm(dirs, axis=1, keepdims=True))
    return np.all(np.abs(t.reshape(-1, 8) - distance[:, None]) < 0.1 * distance[:, None], axis=1)


def sample_views(
    compiled: CompiledRoom, rng: np.random.Generator, point: np.ndarray, normal: np.ndarray, n_views: int
) -> list[np.ndarray] | None:
    """Camera positions that see `point` unoccluded, from the side its surface faces, spread apart."""
    positions: list[np.ndarray] = []
    for _ in range(12):
        candidates = _free_positions(compiled, rng, 64, 0.3)
        offset = point - candidates
        distance = np.linalg.norm(offset, axis=1)
        pitch = np.arcsin(np.clip(offset[:, 2] / np.maximum(distance, 1e-9), -1, 1))
        facing = -(offset @ normal) / np.maximum(distance, 1e-9)
        keep = (distance > 0.8) & (distance < 5.5) & (np.abs(pitch) < MAX_PITCH) & (facing > 0.25)
        candidates, distance, offset = candidates[keep], distance[keep], offset[keep]
        if len(candidates) == 0:
            continue
        t, _ = compiled.cast(candidates, offset / distance[:, None])
        visible = np.abs(t - distance) < 1e-3 * distance + 1e-4
        candidates = candidates[visible]
        if len(candidates) == 0:
            continue
        broad = _on_broad_surface(compiled, candidates, np.broadcast_to(point, candidates.shape))
        for position in candidates[broad]:
            if all(np.linalg.norm(position - other) > 0.5 for other in positions):
                positions.append(position)
                if len(positions) == n_views:
                    return positions
    return None


def sample_poses(
    compiled: CompiledRoom, rng: np.random.Generator, first_point: int, settings: GenerateSettings
) -> list[ViewPose]:
    """Fixated cameras for every (point, view) of a room."""
    poses: list[ViewPose] = []
    for k in range(settings.points_per_room):
        for _attempt in range(200):
            fixation = sample_fixation(compiled, rng)
            if fixation is None:
                continue
            positions = sample_views(compiled, rng, *fixation, settings.views_per_point)
            if positions is not None:
                break
        else:
            raise GenerateError(f"room {compiled.room.index}: found no camera that sees a fixation point")
        point, normal = fixation
        for view, position in enumerate(positions):
            roll = float(np.clip(rng.normal(0, math.radians(4)), -MAX_ROLL, MAX_ROLL))
            level_target = np.array([point[0], point[1], position[2]])
            camera = Camera(
                position=position, rotation=look_at(position, point, roll), fov=float(rng.uniform(*FOV_RANGE))
            )
            poses.append(ViewPose(first_point + k, view, camera, point, normal, look_at(position, level_target)))
    return poses


# ---------------------------------------------------------------- per-view annotations


def _vector(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in np.asarray(values).ravel()]


def _matrix(m: np.ndarray) -> list[list[float]]:
    return [_vector(row) for row in m]


# Cube face of the skybox image that holds a direction, by its largest camera-frame component and that
# component's sign (the original pipeline's axis_and_positive_to_skybox_idx).
SKYBOX_FACES = {(0, True): 1, (0, False): 3, (1, True): 0, (1, False): 5, (2, True): 2, (2, False): 4}
# Blender camera frame (x right, y up, z backward) from the renderer's (x right, y down, z forward).
BLENDER_FROM_CV = np.diag([1.0, -1.0, -1.0])


def camera_uuid(building: str, point: int, view: int) -> str:
    """A stable 32-hex id of the camera position of one view (every view here has a position of its own)."""
    return hashlib.sha256(f"{building}/{point}/{view}".encode()).hexdigest()[:32]


def point_info_json(building: str, room: Room, pose: ViewPose, size: int, points_in_view: list[int]) -> dict:
    """The view's camera file with exactly the fields of a real Taskonomy one, in its conventions: Blender XYZ
    Euler rotations (a Blender camera looks down -Z with +Y up) in a z-up world in metres, and
    `bounding_box_ranges` (the room's box) with world x and y swapped, as load_ops.py reads them."""
    camera = pose.camera
    final = camera.rotation @ BLENDER_FROM_CV  # world_from_camera, Blender camera frame
    original = pose.original_rotation @ BLENDER_FROM_CV
    focal = camera.focal(size)
    sphere, image = {}, {}
    for name, axis in zip("xyz", np.eye(3), strict=True):
        direction = final.T @ axis  # the world axis in the camera frame
        sphere[name] = _vector(direction)
        # create_vanishing_points.py projects a point just in front of the camera along the direction.
        near = 0.1 * direction - np.array([0.0, 0.0, 0.2])
        image[name] = _vector([size / 2 + focal * near[0] / -near[2], size / 2 - focal * near[1] / -near[2]])
    to_point = pose.point_location - camera.position
    distance = float(np.linalg.norm(to_point))
    in_original = original.T @ to_point / distance
    face = int(np.argmax(np.abs(in_original)))
    skybox = SKYBOX_FACES[(face, bool(in_original[face] >= 0))]
    uuid = camera_uuid(building, pose.point, pose.view)
    width, depth, height = room.size
    return {
        "bounding_box_ranges": {"x": [0.0, depth], "y": [0.0, width], "z": [0.0, height]},
        "camera_distance": round(distance, 6),
        "camera_location": _vector(camera.position),
        "camera_rotation_final": _vector(blender_euler(camera.rotation)),
        "camera_rotation_from_original_to_final": _vector(_euler_xyz(camera.rotation @ pose.original_rotation.T)),
        "camera_rotation_original": _vector(blender_euler(pose.original_rotation)),
        "camera_uuid": uuid,
        "field_of_view_rads": round(camera.fov, 6),
        "model_rotation_degrees": 0.0,
        "nonfixated_points_in_view": points_in_view,
        "obliqueness_angle": round(math.acos(float(np.clip(-to_point @ pose.point_normal / distance, -1, 1))), 6),
        "point_location": _vector(pose.point_location),
        "point_normal": _vector(pose.point_normal),
        "point_pitch": round(math.asin(float(np.clip(in_original[1], -1, 1))), 6),
        "point_uuid": str(pose.point),
        "resolution": size,
        "room": f"{room.room_type}_{room.index}",
        "skybox_img": skybox,
        "skybox_img_path": f"./img/high/{uuid}_skybox{skybox}.jpg",
        "vanishing_points_gaussian_sphere": sphere,
        "vanishing_points_image": image,
        "view_id": pose.view,
    }


def points_in_views(views: list[tuple[ViewPose, RenderedView]], size: int) -> list[list[int]]:
    """For every view, the room's other points it sees: in the image and not hidden (nonfixated_points_in_view)."""
    points = {pose.point: pose.point_location for pose, _ in views}
    found = []
    for pose, rendered in views:
        seen = []
        for point, location in points.items():
            if point == pose.point:
                continue
            (u, v), z = pose.camera.project(location, size)
            if z > 0.05 and 0 <= u < size and 0 <= v < size:
                row, col = int(v), int(u)
                if abs(rendered.depth_zbuffer[row, col] - z) < 0.03 * z + 0.02:
                    seen.append(point)
        found.append(seen)
    return found


def nonfixated_matches(views: list[tuple[ViewPose, RenderedView]], size: int) -> list[list[dict]]:
    """For every view, the other views of the room that see the same surfaces, with the fraction they share."""
    stride = max(1, size // 32)
    samples = []
    for pose, rendered in views:
        rows, cols = np.nonzero(rendered.valid[::stride, ::stride])
        rows, cols = rows * stride, cols * stride
        directions, _ = _directions(pose.camera, size, rows, cols)
        samples.append(pose.camera.position + rendered.depth_euclidean[rows, cols, None] * directions)
    # Every view's samples are projected into all views of the room at once, one (views, samples) row per
    # camera-frame coordinate: local[j] = sum_i (x[i] - position[i]) R[i, j].
    positions = np.array([pose.camera.position for pose, _ in views])[:, :, None]
    rotations = np.array([pose.camera.rotation for pose, _ in views])[:, :, :, None]
    focals = np.array([pose.camera.focal(size) for pose, _ in views])[:, None]
    zbuffers = np.stack([rendered.depth_zbuffer for _, rendered in views])
    matches: list[list[dict]] = []
    for a, (pose_a, _) in enumerate(views):
        found: list[dict] = []
        matches.append(found)
        if len(samples[a]) == 0:
            continue
        offset = samples[a].T[None] - positions  # (views, 3, samples)
        x, y, z = (
            offset[:, 0] * rotations[:, 0, j] + offset[:, 1] * rotations[:, 1, j] + offset[:, 2] * rotations[:, 2, j]
            for j in range(3)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = x / z * focals + size / 2, y / z * focals + size / 2
        inside = (z > 0.05) & (u >= 0) & (u < size) & (v >= 0) & (v < size)
        which, _ = np.nonzero(inside)
        seen = zbuffers[which, np.clip(v[inside].astype(int), 0, size - 1), np.clip(u[inside].astype(int), 0, size - 1)]
        consistent = np.abs(seen - z[inside]) < 0.03 * z[inside] + 0.02
        overlaps = np.bincount(which[consistent], minlength=len(views)) / len(samples[a])
        for b, (pose_b, _) in enumerate(views):
            if b != a and overlaps[b] >= 0.05:
                found.append(
                    {
                        "point": pose_b.point,
                        "view": pose_b.view,
                        "overlap": round(float(overlaps[b]), 4),
                        "same_point": pose_b.point == pose_a.point,
                    }
                )
    return matches


def _directions(camera: Camera, size: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = camera.focal(size)
    local = np.stack([(cols + 0.5 - size / 2) / f, (rows + 0.5 - size / 2) / f, np.ones(len(rows))], axis=1)
    length = np.linalg.norm(local, axis=1)
    return (local / length[:, None]) @ camera.rotation.T, length


def encode_view(
    building: str, room: Room, pose: ViewPose, rendered: RenderedView, size: int, points_in_view: list[int]
) -> dict[str, bytes]:
    """Every domain file of one view (except nonfixated_matches, which needs the room's other views)."""
    png = enc.png_bytes
    return {
        "rgb": png(enc.encode_rgb(rendered.rgb)),
        "depth_zbuffer": png(enc.encode_depth(rendered.depth_zbuffer, rendered.valid)),
        "depth_euclidean": png(enc.encode_depth(rendered.depth_euclidean, rendered.valid)),
        "normal": png(enc.encode_normal(rendered.normal, rendered.valid)),
        "reshading": png(enc.encode_reshading(rendered.reshading)),
        "principal_curvature": png(enc.encode_curvature(rendered.curvature[..., 0], rendered.curvature[..., 1])),
        "edge_texture": png(enc.encode_response(edge_texture(rendered))),
        "edge_occlusion": png(enc.encode_response(edge_occlusion(rendered))),
        "keypoints2d": png(enc.encode_response(keypoints2d(rendered))),
        "keypoints3d": png(enc.encode_response(keypoints3d(rendered))),
        "segment_semantic": png(enc.encode_segment_semantic(rendered.segment_semantic)),
        "segment_unsup2d": png(enc.encode_segment_unsup(segment_unsup2d(rendered))),
        "segment_unsup25d": png(enc.encode_segment_unsup(segment_unsup25d(rendered))),
        "class_object": enc.npy_bytes(enc.encode_distribution(class_object(rendered))),
        "class_scene": enc.npy_bytes(enc.encode_distribution(class_scene(room))),
        "point_info": enc.json_bytes(point_info_json(building, room, pose, size, points_in_view), indent=None),
        "mask_valid": png(enc.encode_mask(rendered.valid)),
    }


# ---------------------------------------------------------------- one room, one building, the dataset


def build_room(seed: int, building_index: int, room_index: int) -> Room:
    """Room `room_index` of building `building_index`: a pure function of the three numbers."""
    return make_room(
        _style(seed, building_index), np.random.default_rng([seed, building_index, 1, room_index]), room_index
    )


@functools.lru_cache(maxsize=64)
def _style(seed: int, building_index: int) -> Style:
    """A building's style, made once per process for all its rooms (make_room only reads it)."""
    return make_style(np.random.default_rng([seed, building_index, 0]))


def render_room(
    settings: GenerateSettings, building_index: int, building: str, room_index: int, room: Room | None = None
) -> tuple[Room, list[tuple[ViewPose, RenderedView]]]:
    """The room, its fixated cameras and every rendered view (for tests and tools; writes nothing)."""
    room = room or build_room(settings.seed, building_index, room_index)
    compiled = CompiledRoom(room)
    rng = np.random.default_rng([settings.seed, building_index, 2, room_index])
    poses = sample_poses(compiled, rng, room_index * settings.points_per_room, settings)
    return room, [(pose, render(compiled, pose.camera, settings.size)) for pose in poses]


def _room_task(args: tuple[GenerateSettings, int, str, int, str]) -> int:
    settings, building_index, building, room_index, root = args
    room, views = render_room(settings, building_index, building, room_index)
    matches = nonfixated_matches(views, settings.size)
    seen = points_in_views(views, settings.size)
    for (pose, rendered), found, in_view in zip(views, matches, seen, strict=True):
        files = encode_view(building, room, pose, rendered, settings.size, in_view)
        matches_json = {"point": pose.point, "view": pose.view, "matches": found}
        files["nonfixated_matches"] = enc.json_bytes(matches_json, indent=None)
        for domain, data in files.items():
            name = file_name(pose.point, pose.view, domain, enc.extension(domain))
            _write_new_file(os.path.join(root, relative_path(settings.layout, building, domain, name)), data)
    return len(views)


def _write_new_file(path: str, data: bytes) -> None:
    """Write a file with plain system calls: 18 small files per view make Python's buffered file objects (about
    twice the cost of the write itself) a visible share of the generator's time."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise GenerateError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GenerateError(f"output {out} exists and is not empty (use --overwrite to replace it)")


def _remove_killed_renders(out: Path) -> None:
    """Remove the half-rendered folders of earlier runs into `out` that were killed (SIGKILL: no cleanup)."""
    for folder in out.parent.glob(f".{glob.escape(out.name)}.generating-*"):
        pid = folder.name.rpartition("-")[2]
        if pid.isdigit() and stale_writer(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def generate(
    out: str | Path,
    n_buildings: int = GenerateSettings.n_buildings,
    rooms_per_building: int = GenerateSettings.rooms_per_building,
    points_per_room: int = GenerateSettings.points_per_room,
    views_per_point: int = GenerateSettings.views_per_point,
    size: int = GenerateSettings.size,
    seed: int = GenerateSettings.seed,
    layout: str = GenerateSettings.layout,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> GenerateReport:
    """Render a dataset into `out` in the real Taskonomy layout; see the module docstring."""
    settings = GenerateSettings(n_buildings, rooms_per_building, points_per_room, views_per_point, size, seed, layout)
    settings.check()
    out = Path(out)
    check_output(out, overwrite)
    if workers is not None and workers < 1:
        raise GenerateError(f"workers must be at least 1, got {workers}")

    names = building_names(seed, n_buildings)
    tasks = [(settings, b, names[b], r, "") for b in range(n_buildings) for r in range(rooms_per_building)]
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    tmp = out.parent / f".{out.name}.generating-{os.getpid()}"
    _remove_killed_renders(out)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for name in names:
            for domain in DOMAINS:
                (tmp / relative_path(layout, name, domain, "x")).parent.mkdir(parents=True, exist_ok=True)
        tasks = [(s, b, name, r, str(tmp)) for s, b, name, r, _ in tasks]
        with tqdm(total=settings.n_views, desc="rendering", unit="view", disable=None if progress else True) as bar:
            if workers == 1:
                undo = tune_process()
                try:
                    for task in tasks:
                        bar.update(_room_task(task))
                finally:
                    undo()
            else:
                # fork: workers inherit the imported modules and never re-run the caller's main script.
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
                with context.Pool(workers, initializer=tune_worker, initargs=(os.getpid(),)) as pool:
                    for n in pool.imap_unordered(_room_task, tasks):
                        bar.update(n)
        manifest = {"generator": "taskonomy_db.generate", "buildings": names, "settings": asdict(settings)}
        (tmp / MANIFEST).write_bytes(enc.json_bytes(manifest))
        if out.exists():
            old = out.parent / f".{out.name}.replaced-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GenerateReport(
        out=str(out),
        buildings=names,
        n_views=settings.n_views,
        n_files=settings.n_views * len(DOMAINS),
        settings=asdict(settings),
    )
