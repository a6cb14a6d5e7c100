"""Vectorised ray casting of a room and every per-view Taskonomy label computed from the render.

Geometry (depth, normals, curvature, semantic ids) comes straight from the ray hits. RGB adds procedural
textures and a ceiling light with cast shadows, so 2D labels (texture edges, 2D keypoints, 2D superpixels) have
causes that 3D labels do not see. Labels follow the original algorithms with scikit-image (shared/TASKONOMY.md):
Canny on RGB, Sobel on depth with a threshold, a determinant-of-Hessian response, a NARF-like response on the
range image, Felzenszwalb superpixels on RGB and on depth+normals+curvature.

Camera frame ("cv"): x right, y down, z forward. The stored normal frame flips z (+Z toward the camera).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import canny, hessian_matrix_det
from skimage.segmentation import felzenszwalb

from taskonomy_db.encodings import DEPTH_MAX_METRES, OBJECT_CLASSES, SCENE_CLASSES
from taskonomy_db.scenes import BOX, SPHERE, Material, Primitive, Room

ROOM_ID = 0  # primitive ids: -1 no surface, 0 the room's inside, k + 1 the room's k-th object primitive
EPS = 1e-4
AMBIENT = 0.28
SKY = np.array([0.78, 0.86, 0.97])
SCENE_LABEL_SMOOTHING = 0.1
OCCLUSION_THRESHOLD = 0.1  # Sobel of log depth, per pixel: a jump of ~20% in depth between neighbours


@dataclass(frozen=True)
class Camera:
    position: np.ndarray  # world, metres
    rotation: np.ndarray  # world_from_camera (columns: camera x right, y down, z forward in world)
    fov: float  # horizontal = vertical field of view, radians

    def focal(self, size: int) -> float:
        return (size / 2) / math.tan(self.fov / 2)

    def project(self, points_world: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (continuous, pixel centres at i + 0.5) and camera z of world points."""
        local = (np.asarray(points_world, dtype=np.float64) - self.position) @ self.rotation
        f = self.focal(size)
        with np.errstate(divide="ignore", invalid="ignore"):
            pixels = local[..., :2] / local[..., 2:3] * f + size / 2
        return pixels, local[..., 2]


def pixel_rays(camera: Camera, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit world directions of every pixel (row-major, (size*size, 3)) and each ray's length at z_cam = 1."""
    coords = (np.arange(size) + 0.5 - size / 2) / camera.focal(size)
    x, y = np.meshgrid(coords, coords)
    local = np.stack([x.ravel(), y.ravel(), np.ones(size * size)], axis=1)
    length = np.linalg.norm(local, axis=1)
    return (local / length[:, None]) @ camera.rotation.T, length


# ---------------------------------------------------------------- intersections (local frames)


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def _hit_box(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    inv = 1.0 / _safe(d)
    t1, t2 = (-half - o) * inv, (half - o) * inv
    t_near = np.minimum(t1, t2).max(axis=1)
    t_far = np.maximum(t1, t2).min(axis=1)
    return np.where((t_far >= t_near) & (t_near > EPS), t_near, np.inf)


def _hit_sphere(o: np.ndarray, d: np.ndarray, radius: float) -> np.ndarray:
    b = np.einsum("ij,ij->i", o, d)
    disc = b * b - (np.einsum("ij,ij->i", o, o) - radius * radius)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc >= 0) & (t > EPS), t, np.inf)


def _hit_cylinder(o: np.ndarray, d: np.ndarray, radius: float, half_height: float) -> np.ndarray:
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - radius * radius
    disc = b * b - a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / _safe(a)
    z = o[:, 2] + t_side * d[:, 2]
    t_side = np.where((disc >= 0) & (a > 1e-12) & (np.abs(z) <= half_height) & (t_side > EPS), t_side, np.inf)
    # Only the cap facing the ray can be entered from outside.
    cap = -np.sign(_safe(d[:, 2])) * half_height
    t_cap = (cap - o[:, 2]) / _safe(d[:, 2])
    px, py = o[:, 0] + t_cap * d[:, 0], o[:, 1] + t_cap * d[:, 1]
    t_cap = np.where((px * px + py * py <= radius * radius) & (t_cap > EPS), t_cap, np.inf)
    return np.minimum(t_side, t_cap)


class CompiledRoom:
    """A room's primitives as arrays, ready for casting many rays."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.lo = np.zeros(3)
        self.hi = np.array(room.size, dtype=np.float64)
        self.primitives: list[Primitive] = list(room.primitives)
        self.centres = np.array([p.centre for p in self.primitives]).reshape(-1, 3)
        self.rotations = np.array([p.rotation for p in self.primitives]).reshape(-1, 3, 3)
        self.sizes = np.array([p.size for p in self.primitives]).reshape(-1, 3)
        kinds = [p.kind for p in self.primitives]
        self.bounds = np.array(
            [
                np.linalg.norm(s) if k == BOX else (s[0] if k == SPHERE else math.hypot(s[0], s[2]))
                for k, s in zip(kinds, self.sizes, strict=True)
            ]
        )
        # Per-object bounding spheres let a ray skip all of an object's parts with one test.
        self.objects: list[tuple[np.ndarray, float, list[int]]] = []
        for index in range(len(room.objects)):
            members = [k for k, p in enumerate(self.primitives) if p.object_index == index]
            if members:
                centre = self.centres[members].mean(axis=0)
                radius = max(np.linalg.norm(self.centres[k] - centre) + self.bounds[k] for k in members)
                self.objects.append((centre, float(radius), members))
        self.object_centres = np.array([centre for centre, _, _ in self.objects]).reshape(-1, 3)
        self.object_radii = np.array([radius for _, radius, _ in self.objects])
        self.labels = np.array(
            [1] + [2 + OBJECT_CLASSES.index(room.objects[p.object_index].class_name) for p in self.primitives],
            dtype=np.int64,
        )

    def _local(self, k: int, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rotation = self.rotations[k]
        return (origins - self.centres[k]) @ rotation, dirs @ rotation

    def _hit_primitive(self, k: int, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        o, d = self._local(k, origins, dirs)
        kind, size = self.primitives[k].kind, self.sizes[k]
        if kind == BOX:
            return _hit_box(o, d, size)
        if kind == SPHERE:
            return _hit_sphere(o, d, size[0])
        return _hit_cylinder(o, d, size[0], size[2])

    def _near(self, centre: np.ndarray, radius: float, origins: np.ndarray, dirs: np.ndarray, limit: np.ndarray):
        """Which rays' segments [0, limit] pass within `radius` of `centre` (origins (3,) or one per ray)."""
        offset = centre - origins
        if origins.ndim == 1:
            along = dirs @ offset
            closest = offset @ offset
        else:
            along = np.einsum("ij,ij->i", offset, dirs)
            closest = np.einsum("ij,ij->i", offset, offset)
        return (closest - along * along <= radius * radius) & (along + radius > 0) & (along - radius < limit)

    def _groups(self, origins: np.ndarray, dirs: np.ndarray, limit: np.ndarray, rays: np.ndarray | None = None):
        """(primitive k, candidate ray indices) pairs, culled per object, then per primitive."""
        if rays is None:
            rays = np.arange(len(dirs))
        if origins.ndim == 1 and self.objects:
            # One origin: test every object's bounding sphere with a single matrix product.
            offsets = self.object_centres - origins
            along = dirs[rays] @ offsets.T
            radius = self.object_radii
            miss = along * along < (offsets * offsets).sum(axis=1) - radius * radius
            object_masks = ~(miss | (along + radius <= 0) | (along - radius >= limit[rays, None]))
        for index, (centre, radius, members) in enumerate(self.objects):
            if origins.ndim == 1:
                near = rays[object_masks[:, index]]
            else:
                near = rays[self._near(centre, radius, origins[rays], dirs[rays], limit[rays])]
            if near.size == 0:
                continue
            for k in members:
                o = origins if origins.ndim == 1 else origins[near]
                candidates = near[self._near(self.centres[k], self.bounds[k], o, dirs[near], limit[near])]
                if candidates.size:
                    yield k, candidates

    def hit_room(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Exit distance from the inside of the room box, inf through a door or window."""
        d = _safe(dirs)
        bound = np.where(d > 0, self.hi, self.lo)
        t_axes = (bound - origins) / d
        axis = t_axes.argmin(axis=1)
        t = t_axes[np.arange(len(t_axes)), axis]
        point = origins + t[:, None] * dirs
        for opening in self.room.openings:
            side = (dirs[:, opening.axis] > 0) == bool(opening.side)
            along = point[:, 1 - opening.axis]
            inside = (
                (axis == opening.axis)
                & side
                & (along > opening.along[0])
                & (along < opening.along[1])
                & (point[:, 2] > opening.height[0])
                & (point[:, 2] < opening.height[1])
            )
            t = np.where(inside, np.inf, t)
        return t

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit distance and primitive id of every ray (origins (N,3) or (3,), unit dirs (N,3))."""
        n = len(dirs)
        origins_b = np.broadcast_to(origins, (n, 3))
        t = self.hit_room(origins_b, dirs)
        ids = np.where(np.isfinite(t), ROOM_ID, -1)
        for k, rays in self._groups(origins, dirs, t):  # live t: culls behind the nearest hit so far
            t_k = self._hit_primitive(k, origins_b[rays], dirs[rays])
            closer = t_k < t[rays]
            t[rays[closer]] = t_k[closer]
            ids[rays[closer]] = k + 1
        return t, ids

    def occluded(self, source: np.ndarray, dirs: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Whether an object blocks each segment from `source` along unit `dirs` up to `distance` (shadow rays
        cast from the light, so every ray shares one origin; the room's walls never block: lights are inside)."""
        blocked = np.zeros(len(dirs), dtype=bool)
        limit = distance - 1e-3
        for k, rays in self._groups(source, dirs, limit):
            rays = rays[~blocked[rays]]
            if rays.size:
                t_k = self._hit_primitive(k, np.broadcast_to(source, (rays.size, 3)), dirs[rays])
                blocked[rays[t_k < limit[rays]]] = True
        return blocked

    def inside_any(self, points: np.ndarray, margin: float) -> np.ndarray:
        """Whether points lie within `margin` of any object primitive (for placing cameras)."""
        inside = np.zeros(len(points), dtype=bool)
        for k, primitive in enumerate(self.primitives):
            q = (points - self.centres[k]) @ self.rotations[k]
            s = self.sizes[k]
            if primitive.kind == BOX:
                inside |= np.all(np.abs(q) <= s + margin, axis=1)
            elif primitive.kind == SPHERE:
                inside |= np.linalg.norm(q, axis=1) <= s[0] + margin
            else:
                inside |= (np.hypot(q[:, 0], q[:, 1]) <= s[0] + margin) & (np.abs(q[:, 2]) <= s[2] + margin)
        return inside

    def surface(self, points: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
        """World normals, texture coordinates (metres), principal curvatures and material index at hits."""
        n = len(points)
        normals = np.zeros((n, 3))
        uv = np.zeros((n, 2))
        k1, k2 = np.zeros(n), np.zeros(n)
        room = np.flatnonzero(ids == ROOM_ID)
        if room.size:
            q = points[room]
            gap = np.minimum(np.abs(q - self.lo), np.abs(q - self.hi))
            axis = gap.argmin(axis=1)
            high = np.abs(q[np.arange(room.size), axis] - self.hi[axis]) < np.abs(q[np.arange(room.size), axis])
            normals[room, axis] = np.where(high, -1.0, 1.0)
            uv[room] = np.where(
                (axis == 2)[:, None], q[:, :2], np.where((axis == 0)[:, None], q[:, [1, 2]], q[:, [0, 2]])
            )
        for k, primitive in enumerate(self.primitives):
            rows = np.flatnonzero(ids == k + 1)
            if rows.size == 0:
                continue
            q = (points[rows] - self.centres[k]) @ self.rotations[k]
            s = self.sizes[k]
            local = np.zeros((rows.size, 3))
            if primitive.kind == BOX:
                axis = (np.abs(q) / s).argmax(axis=1)
                local[np.arange(rows.size), axis] = np.sign(q[np.arange(rows.size), axis])
                uv[rows] = np.where(
                    (axis == 2)[:, None], q[:, :2], np.where((axis == 0)[:, None], q[:, [1, 2]], q[:, [0, 2]])
                )
            elif primitive.kind == SPHERE:
                local = q / s[0]
                uv[rows] = np.stack([np.arctan2(q[:, 1], q[:, 0]) * s[0], q[:, 2]], axis=1)
                k1[rows] = k2[rows] = 1.0 / s[0]
            else:
                on_cap = np.abs(np.abs(q[:, 2]) - s[2]) < 1e-6 * max(1.0, s[2]) + 1e-7
                radial = np.hypot(q[:, 0], q[:, 1])
                on_cap &= radial < s[0] * (1 - 1e-6)
                local[:, :2] = np.where(on_cap[:, None], 0.0, q[:, :2] / np.maximum(radial, 1e-12)[:, None])
                local[:, 2] = np.where(on_cap, np.sign(q[:, 2]), 0.0)
                uv[rows] = np.where(
                    on_cap[:, None], q[:, :2], np.stack([np.arctan2(q[:, 1], q[:, 0]) * s[0], q[:, 2]], axis=1)
                )
                k1[rows] = np.where(on_cap, 0.0, 1.0 / s[0])
            normals[rows] = local @ self.rotations[k].T
        return {"normals": normals, "uv": uv, "k1": k1, "k2": k2}

    def materials(self, points: np.ndarray, ids: np.ndarray) -> list[tuple[np.ndarray, Material]]:
        """(rows, material) groups covering every hit."""
        groups = []
        room = np.flatnonzero(ids == ROOM_ID)
        if room.size:
            z = points[room, 2]
            floor, ceiling = z < 1e-3, z > self.hi[2] - 1e-3
            groups += [(room[floor], self.room.floor), (room[ceiling], self.room.ceiling)]
            groups.append((room[~floor & ~ceiling], self.room.wall))
        for k, primitive in enumerate(self.primitives):
            rows = np.flatnonzero(ids == k + 1)
            if rows.size:
                groups.append((rows, primitive.material))
        return groups


# ---------------------------------------------------------------- textures


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    h = (ix * 374761393 + iy * 668265263 + seed * 1442695) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFFFF) / float(0x1000000)


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth lattice noise in [0, 1), a pure function of position and seed."""
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    a, b = _hash01(ix, iy, seed), _hash01(ix + 1, iy, seed)
    c, d = _hash01(ix, iy + 1, seed), _hash01(ix + 1, iy + 1, seed)
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


def texture(material: Material, uv: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) of a material at surface coordinates in metres."""
    cos, sin = math.cos(material.angle), math.sin(material.angle)
    s = (uv[:, 0] * cos + uv[:, 1] * sin) / material.period
    t = (-uv[:, 0] * sin + uv[:, 1] * cos) / material.period
    seed = material.noise_seed
    family = material.family
    if family == "stripes":
        mix = (np.mod(s, 1.0) < 0.5).astype(np.float64)
    elif family == "checks":
        mix = np.mod(np.floor(s) + np.floor(t), 2.0)
    elif family == "noise":
        n = 0.65 * value_noise(s * 1.5, t * 1.5, seed) + 0.35 * value_noise(s * 4, t * 4, seed + 1)
        mix = np.clip((n - 0.5) * 4 + 0.5, 0, 1)
    elif family == "wood":
        grain = s + 0.8 * value_noise(s * 0.5, t * 3.0, seed)
        mix = (np.mod(grain * 2.0, 1.0) < 0.3).astype(np.float64) * 0.8 + 0.2 * value_noise(s * 6, t, seed + 2)
    else:  # plain, with a faint mottling
        mix = 0.25 * value_noise(s * 2, t * 2, seed)
    a, b = np.array(material.colour_a), np.array(material.colour_b)
    return a * (1 - mix[:, None]) + b * mix[:, None]


# ---------------------------------------------------------------- one view


@dataclass
class RenderedView:
    """Everything one camera sees, as float arrays (H, W, ...) before encoding."""

    rgb: np.ndarray
    depth_zbuffer: np.ndarray
    depth_euclidean: np.ndarray
    valid: np.ndarray
    normal: np.ndarray  # stored frame: +X right, +Y down, +Z toward the camera
    reshading: np.ndarray
    curvature: np.ndarray  # (H, W, 2): k1 >= k2, 1/m
    segment_semantic: np.ndarray
    primitive_id: np.ndarray


def render(compiled: CompiledRoom, camera: Camera, size: int) -> RenderedView:
    dirs, length = pixel_rays(camera, size)
    origin = camera.position
    t, ids = compiled.cast(origin, dirs)
    valid = np.isfinite(t) & (t <= DEPTH_MAX_METRES)
    ids = np.where(valid, ids, -1)
    t_safe = np.where(valid, t, 0.0)
    points = origin + t_safe[:, None] * dirs
    surface = compiled.surface(points, ids)
    normals = surface["normals"]
    # Normals face the viewer (matters only for grazing numerical cases).
    facing = np.einsum("ij,ij->i", normals, dirs)
    normals = np.where((facing > 0)[:, None], -normals, normals)

    albedo = np.zeros((len(dirs), 3))
    for rows, material in compiled.materials(points, ids):
        albedo[rows] = texture(material, surface["uv"][rows])
    to_light = np.asarray(compiled.room.light) - points
    distance = np.linalg.norm(to_light, axis=1)
    to_light = to_light / np.maximum(distance, 1e-9)[:, None]
    lambert = np.clip(np.einsum("ij,ij->i", normals, to_light), 0, None) * valid
    lit = np.flatnonzero(lambert > 0)
    shadow = np.zeros(len(dirs), dtype=bool)
    if lit.size:
        light = np.asarray(compiled.room.light, dtype=np.float64)
        shadow[lit] = compiled.occluded(light, -to_light[lit], distance[lit])
    direct = lambert * ~shadow * 1.6 / (1 + (distance / 3.5) ** 2)
    radiance = albedo * (AMBIENT + direct)[:, None] * np.asarray(compiled.room.light_colour)
    rgb = np.clip(radiance, 0, 1) ** (1 / 2.2)
    rgb[~valid] = SKY - 0.12 * (dirs[~valid, 2:3] < 0)

    camera_normals = normals @ camera.rotation
    camera_normals[:, 2] *= -1
    camera_normals[~valid] = 0
    reshading = np.clip(-np.einsum("ij,ij->i", normals, dirs), 0, 1) * valid
    semantic = np.where(ids >= 0, compiled.labels[np.maximum(ids, 0)], 0)
    shape = (size, size)
    return RenderedView(
        rgb=rgb.reshape(*shape, 3),
        depth_zbuffer=(t_safe / length).reshape(shape),
        depth_euclidean=t_safe.reshape(shape),
        valid=valid.reshape(shape),
        normal=camera_normals.reshape(*shape, 3),
        reshading=reshading.reshape(shape),
        curvature=np.stack([surface["k1"], surface["k2"]], axis=1).reshape(*shape, 2),
        segment_semantic=semantic.reshape(shape),
        primitive_id=ids.reshape(shape),
    )


# ---------------------------------------------------------------- labels derived from the render


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2125, 0.7154, 0.0721])


def _log_depth(view: RenderedView) -> np.ndarray:
    return np.log(np.where(view.valid, np.maximum(view.depth_euclidean, 1e-3), DEPTH_MAX_METRES))


def edge_texture(view: RenderedView) -> np.ndarray:
    """Canny on the RGB image's luminance (binary), scale-adjusted so edges look alike at every resolution."""
    sigma = max(1.0, view.rgb.shape[0] / 128)
    return canny(_gray(view.rgb), sigma=sigma, low_threshold=0.04, high_threshold=0.1).astype(np.float64)


def occlusion_strength(view: RenderedView) -> np.ndarray:
    """Sobel magnitude of log depth per pixel (scale-free: a depth ratio, not metres)."""
    log_depth = _log_depth(view)
    gx = ndimage.sobel(log_depth, axis=1, mode="nearest") / 8
    gy = ndimage.sobel(log_depth, axis=0, mode="nearest") / 8
    return np.hypot(gx, gy)


def edge_occlusion(view: RenderedView) -> np.ndarray:
    """Depth discontinuities: the Sobel response where it passes the threshold, 0 elsewhere."""
    strength = occlusion_strength(view)
    return np.where(strength > OCCLUSION_THRESHOLD, np.clip(strength, 0, 1), 0.0)


def keypoints2d(view: RenderedView) -> np.ndarray:
    """Scale-normalised determinant-of-Hessian (SURF-like) response, squashed into [0, 1)."""
    sigma = max(1.0, view.rgb.shape[0] / 64)
    response = np.abs(hessian_matrix_det(_gray(view.rgb), sigma=sigma, approximate=False)) * sigma**4
    return 1 - np.exp(-response / 0.002)


def keypoints3d(view: RenderedView) -> np.ndarray:
    """A NARF-like interest on the range image: where the surface (normals, log depth) changes in two directions.

    The smaller eigenvalue of the structure tensor of the normal field and log depth, so straight borders and
    creases score low and corners and tips of 3D structure score high.
    """
    size = view.rgb.shape[0]
    channels = np.concatenate([view.normal, 2 * _log_depth(view)[..., None]], axis=2)
    gy, gx = np.gradient(channels, axis=(0, 1))
    scale = (size / 64) ** 2  # gradients are per pixel: make the response resolution-independent
    sigma = max(1.0, size / 64)
    a = ndimage.gaussian_filter((gx * gx).sum(axis=2), sigma) * scale
    b = ndimage.gaussian_filter((gx * gy).sum(axis=2), sigma) * scale
    c = ndimage.gaussian_filter((gy * gy).sum(axis=2), sigma) * scale
    smallest = (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)
    return 1 - np.exp(-np.maximum(smallest, 0) / 0.1)


def _min_size(size: int) -> int:
    return max(8, size * size // 256)


def segment_unsup2d(view: RenderedView) -> np.ndarray:
    return felzenszwalb(view.rgb, scale=200, sigma=0.5, min_size=_min_size(view.rgb.shape[0]), channel_axis=-1)


def segment_unsup25d(view: RenderedView) -> np.ndarray:
    """Felzenszwalb on depth + normals + curvature (the 2.5D superpixels)."""
    # Log depth is down-weighted: it varies smoothly across every plane, normals only change at creases.
    features = np.concatenate([0.3 * _log_depth(view)[..., None], view.normal, np.tanh(view.curvature / 4)], axis=2)
    with warnings.catch_warnings():  # skimage warns that 6 channels "may not be intended": they are
        warnings.simplefilter("ignore", RuntimeWarning)
        return felzenszwalb(features, scale=2.0, sigma=0.5, min_size=_min_size(view.rgb.shape[0]), channel_axis=-1)


def class_object(view: RenderedView) -> np.ndarray:
    """Distribution over OBJECT_CLASSES by visible area; uniform when no object is in view."""
    labels = view.segment_semantic.ravel()
    counts = np.bincount(labels[labels >= 2] - 2, minlength=len(OBJECT_CLASSES)).astype(np.float64)
    if counts.sum() == 0:
        return np.full(len(OBJECT_CLASSES), 1.0 / len(OBJECT_CLASSES))
    return counts / counts.sum()


def class_scene(room: Room) -> np.ndarray:
    """The room type, one-hot with label smoothing (soft labels, as the original distilled ones were)."""
    p = np.full(len(SCENE_CLASSES), SCENE_LABEL_SMOOTHING / (len(SCENE_CLASSES) - 1))
    p[room.scene_class] = 1 - SCENE_LABEL_SMOOTHING
    return p
