"""Vectorised ray casting of a room: depth, normals, curvature, semantic ids and RGB of one view.

Geometry comes straight from the ray hits. RGB adds procedural textures and a ceiling light with cast shadows,
so 2D labels (texture edges, 2D keypoints, 2D superpixels; `taskonomy_db.view_labels`) have causes that 3D
labels do not see.

Camera frame ("cv"): x right, y down, z forward. The stored normal frame flips z (+Z toward the camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from taskonomy_db.encodings import DEPTH_MAX_METRES, OBJECT_CLASSES
from taskonomy_db.scenes import BOX, CYLINDER, SPHERE, Material, Primitive, Room

ROOM_ID = 0  # primitive ids: -1 no surface, 0 the room's inside, k + 1 the room's k-th object primitive
EPS = 1e-4
AMBIENT = 0.28
SKY = np.array([0.78, 0.86, 0.97])


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
# Ray arrays are component-first, (3, N): each coordinate is one contiguous row, so the tests below are plain
# element-wise operations over long rows (numpy reductions over a trailing axis of length 3 are slow).


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def _hit_box(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Slab test: entry distance into boxes centred at the origin with half sizes `half` ((3,) or (3, N))."""
    half = np.asarray(half).reshape(3, -1)
    t_near = t_far = None
    for axis in range(3):
        inv = 1.0 / _safe(d[axis])
        t1, t2 = (-half[axis] - o[axis]) * inv, (half[axis] - o[axis]) * inv
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = near if t_near is None else np.maximum(t_near, near)
        t_far = far if t_far is None else np.minimum(t_far, far)
    return np.where((t_far >= t_near) & (t_near > EPS), t_near, np.inf)


def _hit_sphere(o: np.ndarray, d: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    disc = b * b - ((o[0] * o[0] + o[1] * o[1] + o[2] * o[2]) - radius * radius)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc >= 0) & (t > EPS), t, np.inf)


def _hit_cylinder(
    o: np.ndarray, d: np.ndarray, radius: float | np.ndarray, half_height: float | np.ndarray
) -> np.ndarray:
    a = d[0] ** 2 + d[1] ** 2
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] ** 2 + o[1] ** 2 - radius * radius
    disc = b * b - a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / _safe(a)
    z = o[2] + t_side * d[2]
    t_side = np.where((disc >= 0) & (a > 1e-12) & (np.abs(z) <= half_height) & (t_side > EPS), t_side, np.inf)
    # Only the cap facing the ray can be entered from outside.
    cap = -np.sign(_safe(d[2])) * half_height
    t_cap = (cap - o[2]) / _safe(d[2])
    px, py = o[0] + t_cap * d[0], o[1] + t_cap * d[1]
    t_cap = np.where((px * px + py * py <= radius * radius) & (t_cap > EPS), t_cap, np.inf)
    return np.minimum(t_side, t_cap)


KIND_CODES = {BOX: 0, SPHERE: 1, CYLINDER: 2}
FLOOR, CEILING, WALL = 0, 1, 2  # the first rows of CompiledRoom.material_table


class CompiledRoom:
    """A room's primitives as arrays, ready for casting many rays.

    Rays meet all primitives at once rather than one Python call per primitive: one matrix product culls every
    (ray, primitive) pair by bounding sphere, then each primitive kind is intersected once over all surviving
    pairs. The cost follows the number of candidate pairs, not the number of primitives.
    """

    def __init__(self, room: Room) -> None:
        self.room = room
        self.lo = np.zeros(3)
        self.hi = np.array(room.size, dtype=np.float64)
        self.primitives: list[Primitive] = list(room.primitives)
        self.centres = np.array([p.centre for p in self.primitives], dtype=np.float64).reshape(-1, 3)
        self.rotations = np.array([p.rotation for p in self.primitives], dtype=np.float64).reshape(-1, 3, 3)
        self.sizes = np.array([p.size for p in self.primitives], dtype=np.float64).reshape(-1, 3)
        self.kinds = np.array([KIND_CODES[p.kind] for p in self.primitives], dtype=np.int64)
        self.bounds = np.array(
            [
                np.linalg.norm(s) if p.kind == BOX else (s[0] if p.kind == SPHERE else math.hypot(s[0], s[2]))
                for p, s in zip(self.primitives, self.sizes, strict=True)
            ]
        ).reshape(-1)
        # Pair tests run over primitives sorted by kind, so each kind's pairs form one contiguous run.
        self._order = np.argsort(self.kinds, kind="stable")
        sorted_kinds = self.kinds[self._order]
        self._kind_runs = [
            (code, int(np.searchsorted(sorted_kinds, code)), int(np.searchsorted(sorted_kinds, code, side="right")))
            for code in range(len(KIND_CODES))
        ]
        self._centres_sorted = self.centres[self._order]
        # Culling runs in float32 (a third of the float64 cost over every (primitive, ray) pair) with slack that
        # covers its rounding in rooms of metres: a spare candidate costs one exact test, a lost one would change
        # the image. The exact tests run in float64.
        self._centres32 = self._centres_sorted.astype(np.float32)
        self._centre_norm2_32 = (self._centres_sorted**2).sum(axis=1).astype(np.float32)[:, None]
        radius = self.bounds[self._order] * (1 + 1e-3) + 1e-3
        self._cull_radius32 = radius.astype(np.float32)[:, None]
        self._cull_radius2_32 = (radius**2 + 2e-4).astype(np.float32)[:, None]
        self._rotation_rows = self.rotations[self._order].reshape(-1, 9).T.copy()  # (9, P): R[i, j] at row 3i + j
        self._sizes_sorted = self.sizes[self._order].T.copy()  # (3, P)
        self.labels = np.array(
            [1] + [2 + OBJECT_CLASSES.index(room.objects[p.object_index].class_name) for p in self.primitives],
            dtype=np.int64,
        )
        # Floor, ceiling, wall, then every distinct object material: textures are evaluated per family over all
        # pixels of the materials in that family, not per material.
        self.material_table: list[Material] = [room.floor, room.ceiling, room.wall]
        index: dict[Material, int] = {}
        for primitive in self.primitives:
            if primitive.material not in index:
                index[primitive.material] = len(self.material_table)
                self.material_table.append(primitive.material)
        self.primitive_material = np.array([index[p.material] for p in self.primitives], dtype=np.int64)
        self._textures = _TextureTable(self.material_table)

    def _local(self, k: int, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rotation = self.rotations[k]
        return (origins - self.centres[k]) @ rotation, dirs @ rotation

    def _hit_primitive(self, k: int, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Distances along rays (origins and dirs (N, 3)) to primitive k alone, inf where they miss it."""
        o, d = self._local(k, origins, dirs)
        o, d = o.T, d.T
        kind, size = self.primitives[k].kind, self.sizes[k]
        if kind == BOX:
            return _hit_box(o, d, size)
        if kind == SPHERE:
            return _hit_sphere(o, d, size[0])
        return _hit_cylinder(o, d, size[0], size[2])

    def _candidates(
        self, origins: np.ndarray, dirs: np.ndarray, limit: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(sorted primitive, ray) pairs whose segment [0, limit] (or ray, without a limit) meets the primitive's
        bounding sphere, ordered by primitive (so by kind) and then by ray. `origins` is one point (3,) or one per
        ray (N, 3)."""
        n = len(dirs)
        if len(self.primitives) == 0 or n == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        dirs32 = dirs.astype(np.float32).T
        if origins.ndim == 1:
            offsets = (self._centres_sorted - origins).astype(np.float32)
            along = offsets @ dirs32  # (primitives, rays): where along each ray it passes closest to the centre
            distance2 = (offsets * offsets).sum(axis=1)[:, None]
        else:
            # (c - o).d and |c - o|^2 expanded, so matrix products cover every (primitive, ray) pair at once.
            origins32 = origins.astype(np.float32)
            along = self._centres32 @ dirs32
            along -= np.einsum("ij,ij->i", origins32, dirs32.T)
            distance2 = self._centres32 @ origins32.T
            distance2 *= -2
            distance2 += self._centre_norm2_32
            distance2 += np.einsum("ij,ij->i", origins32, origins32)
        radius = self._cull_radius32
        miss = along * along
        np.subtract(distance2, miss, out=miss)
        near = miss <= self._cull_radius2_32
        near &= along > -radius
        if limit is not None:
            near &= along < limit.astype(np.float32) + radius
        flat = np.flatnonzero(near)
        prims = np.repeat(np.arange(len(self.primitives)), np.count_nonzero(near, axis=1))
        return prims, flat - prims * n

    def _hit_pairs(self, origin: np.ndarray, dirs_t: np.ndarray, prims: np.ndarray, rays: np.ndarray) -> np.ndarray:
        """Hit distance of every (sorted primitive, ray) pair (inf for a miss), one vectorised test per kind.
        `origin` is one point (3,) or one per ray (3, N); `dirs_t` is (3, N)."""
        rotation = self._rotation_rows
        if origin.ndim == 1:
            # One origin: its local position in each primitive's frame is per primitive, not per pair.
            offset = origin[:, None] - self._centres_sorted.T
            o = np.stack(
                [offset[0] * rotation[j] + offset[1] * rotation[3 + j] + offset[2] * rotation[6 + j] for j in range(3)]
            )
            o = np.take(o, prims, axis=1)
            rotation = np.take(rotation, prims, axis=1)
        else:
            rotation = np.take(rotation, prims, axis=1)
            offset = np.take(origin, rays, axis=1) - np.take(self._centres_sorted.T, prims, axis=1)
            o = np.stack(
                [offset[0] * rotation[j] + offset[1] * rotation[3 + j] + offset[2] * rotation[6 + j] for j in range(3)]
            )
        # np.take: gathering columns this way is several times faster than fancy indexing [:, rays].
        d = np.take(dirs_t, rays, axis=1)
        # Local frame: x_local[j] = sum_i x[i] R[i, j].
        d = np.stack([d[0] * rotation[j] + d[1] * rotation[3 + j] + d[2] * rotation[6 + j] for j in range(3)])
        size = np.take(self._sizes_sorted, prims, axis=1)
        t = np.empty(len(prims))
        bounds = np.searchsorted(prims, [[begin, end] for _, begin, end in self._kind_runs])
        for (code, _, _), (lo, hi) in zip(self._kind_runs, bounds, strict=True):
            if lo == hi:
                continue
            run = slice(lo, hi)
            if code == KIND_CODES[BOX]:
                t[run] = _hit_box(o[:, run], d[:, run], size[:, run])
            elif code == KIND_CODES[SPHERE]:
                t[run] = _hit_sphere(o[:, run], d[:, run], size[0, run])
            else:
                t[run] = _hit_cylinder(o[:, run], d[:, run], size[0, run], size[2, run])
        return t

    def hit_room(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Exit distance from the inside of the room box, inf through a door or window."""
        d = _safe(dirs.T)  # component-first: per-axis rows
        o = np.broadcast_to(origins, dirs.shape).T
        t_axes = (np.where(d > 0, self.hi[:, None], self.lo[:, None]) - o) / d
        axis = _argmin3(t_axes)
        t = _pick3(t_axes, axis)
        point_along = [o[k] + t * dirs[:, k] for k in range(3)]
        for opening in self.room.openings:
            side = (dirs[:, opening.axis] > 0) == bool(opening.side)
            along, height = point_along[1 - opening.axis], point_along[2]
            inside = (
                (axis == opening.axis)
                & side
                & (along > opening.along[0])
                & (along < opening.along[1])
                & (height > opening.height[0])
                & (height < opening.height[1])
            )
            t = np.where(inside, np.inf, t)
        return t

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit distance and primitive id of every ray (origins (N,3) or (3,), unit dirs (N,3))."""
        n = len(dirs)
        t = self.hit_room(np.broadcast_to(origins, (n, 3)), dirs)
        ids = np.where(np.isfinite(t), ROOM_ID, -1)
        # No distance limit: every object is inside the room, so the walls behind would cull next to nothing.
        prims, rays = self._candidates(origins, dirs)
        if rays.size == 0:
            return t, ids
        t_pair = self._hit_pairs(origins if origins.ndim == 1 else origins.T, dirs.T, prims, rays)
        closer = t_pair < t[rays]  # strictly: on a tie with the room, the room keeps the pixel
        prims, rays, t_pair = prims[closer], rays[closer], t_pair[closer]
        np.minimum.at(t, rays, t_pair)
        nearest = t_pair == t[rays]
        prims, rays = self._order[prims[nearest]], rays[nearest]
        # On an exact tie between primitives the lowest id wins, whatever order the pairs were tested in.
        winner = np.full(n, len(self.primitives))
        np.minimum.at(winner, rays, prims)
        hit = winner < len(self.primitives)
        ids[hit] = winner[hit] + 1
        return t, ids

    def occluded(self, source: np.ndarray, dirs: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Whether an object blocks each segment from `source` along unit `dirs` up to `distance` (shadow rays
        cast from the light, so every ray shares one origin; the room's walls never block: lights are inside)."""
        blocked = np.zeros(len(dirs), dtype=bool)
        limit = distance - 1e-3
        prims, rays = self._candidates(source, dirs, limit)
        if rays.size:
            t_pair = self._hit_pairs(source, dirs.T, prims, rays)
            blocked[rays[t_pair < limit[rays]]] = True
        return blocked

    def inside_any(self, points: np.ndarray, margin: float) -> np.ndarray:
        """Whether points lie within `margin` of any object primitive (for placing cameras)."""
        if len(self.primitives) == 0:
            return np.zeros(len(points), dtype=bool)
        # Every (point, primitive) pair at once: q is each point in each primitive's frame, (points, prims, 3).
        q = np.einsum("npi,pij->npj", points[:, None, :] - self.centres, self.rotations)
        s = self.sizes
        box = np.all(np.abs(q) <= s + margin, axis=2)
        sphere = np.sqrt((q * q).sum(axis=2)) <= s[:, 0] + margin
        cylinder = (np.hypot(q[..., 0], q[..., 1]) <= s[:, 0] + margin) & (np.abs(q[..., 2]) <= s[:, 2] + margin)
        kinds = self.kinds
        inside = np.where(kinds == KIND_CODES[BOX], box, np.where(kinds == KIND_CODES[SPHERE], sphere, cylinder))
        return inside.any(axis=1)

    def surface(self, points: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
        """World normals, texture coordinates (metres), principal curvatures and material index at hits."""
        n = len(points)
        normals = np.zeros((n, 3))
        uv = np.zeros((n, 2))
        k1, k2 = np.zeros(n), np.zeros(n)
        material = np.full(n, -1, dtype=np.int64)
        room = np.flatnonzero(ids == ROOM_ID)
        if room.size:
            q = points[room].T  # component-first: the per-axis work below runs over contiguous rows
            gap = np.minimum(np.abs(q - self.lo[:, None]), np.abs(q - self.hi[:, None]))
            axis = _argmin3(gap)
            on_axis = _pick3(q, axis)
            high = np.abs(on_axis - self.hi[axis]) < np.abs(on_axis)
            normals[room, axis] = np.where(high, -1.0, 1.0)
            uv[room] = _planar_uv(q, axis)
            z = q[2]
            material[room] = np.where(z < 1e-3, FLOOR, np.where(z > self.hi[2] - 1e-3, CEILING, WALL))
        rows = np.flatnonzero(ids > ROOM_ID)
        if rows.size == 0:
            return {"normals": normals, "uv": uv, "k1": k1, "k2": k2, "material": material}
        k = ids[rows] - 1
        material[rows] = self.primitive_material[k]
        rotations = self.rotations[k]
        q_all = np.einsum("ni,nij->nj", points[rows] - self.centres[k], rotations)
        sizes, kinds = self.sizes[k], self.kinds[k]
        local = np.zeros((rows.size, 3))
        for code in np.unique(kinds):
            sel = np.flatnonzero(kinds == code)
            q, s, at = q_all[sel], sizes[sel], rows[sel]
            if code == KIND_CODES[BOX]:
                q_t = q.T
                axis = _argmax3(np.abs(q_t) / s.T)
                local[sel, axis] = np.sign(_pick3(q_t, axis))
                uv[at] = _planar_uv(q_t, axis)
            elif code == KIND_CODES[SPHERE]:
                local[sel] = q / s[:, :1]
                uv[at] = np.stack([np.arctan2(q[:, 1], q[:, 0]) * s[:, 0], q[:, 2]], axis=1)
                k1[at] = k2[at] = 1.0 / s[:, 0]
            else:
                on_cap = np.abs(np.abs(q[:, 2]) - s[:, 2]) < 1e-6 * np.maximum(1.0, s[:, 2]) + 1e-7
                radial = np.hypot(q[:, 0], q[:, 1])
                on_cap &= radial < s[:, 0] * (1 - 1e-6)
                side = q[:, :2] / np.maximum(radial, 1e-12)[:, None]
                local[sel, :2] = np.where(on_cap[:, None], 0.0, side)
                local[sel, 2] = np.where(on_cap, np.sign(q[:, 2]), 0.0)
                around = np.stack([np.arctan2(q[:, 1], q[:, 0]) * s[:, 0], q[:, 2]], axis=1)
                uv[at] = np.where(on_cap[:, None], q[:, :2], around)
                k1[at] = np.where(on_cap, 0.0, 1.0 / s[:, 0])
        normals[rows] = np.einsum("nij,nj->ni", rotations, local)
        return {"normals": normals, "uv": uv, "k1": k1, "k2": k2, "material": material}

    def albedo(self, material: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """Albedo (N, 3) at surface coordinates `uv` of rows into material_table (-1: none, black)."""
        return self._textures.albedo(material, uv)


def _planar_uv(q: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Texture coordinates on an axis-aligned face: the two coordinates of q (3, N) other than the normal axis,
    in order (x, y), (y, z) or (x, z)."""
    return np.stack([np.where(axis == 0, q[1], q[0]), np.where(axis == 2, q[1], q[2])], axis=1)


def _argmin3(a: np.ndarray) -> np.ndarray:
    """argmin over the 3 rows of a (3, N) array, first index on ties (as np.argmin): three comparisons instead of
    a numpy reduction over a short axis, which is several times slower."""
    return np.where((a[0] <= a[1]) & (a[0] <= a[2]), 0, np.where(a[1] <= a[2], 1, 2))


def _argmax3(a: np.ndarray) -> np.ndarray:
    """argmax over the 3 rows of a (3, N) array, first index on ties (as np.argmax)."""
    return np.where((a[0] >= a[1]) & (a[0] >= a[2]), 0, np.where(a[1] >= a[2], 1, 2))


def _pick3(a: np.ndarray, row: np.ndarray) -> np.ndarray:
    """a[row[i], i] for a (3, N) array."""
    return np.where(row == 0, a[0], np.where(row == 1, a[1], a[2]))


# ---------------------------------------------------------------- textures


# Lattice hash constants. The hash works modulo 2**32, so it runs in uint32, where wrap-around does the masking.
_HASH_X, _HASH_Y, _HASH_SEED = np.uint32(374761393), np.uint32(668265263), np.uint32(1442695)


def _hash01(h: np.ndarray) -> np.ndarray:
    """A uint32 lattice key (x * _HASH_X + y * _HASH_Y + seed * _HASH_SEED, mod 2**32) -> [0, 1)."""
    h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    return ((h ^ (h >> np.uint32(16))) & np.uint32(0xFFFFFF)) / float(0x1000000)


def value_noise(x: np.ndarray, y: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """Smooth lattice noise in [0, 1), a pure function of position and seed (one seed, or one per point)."""
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    # int64 first: casting a negative float straight to uint32 is undefined; int64 -> uint32 wraps modulo 2**32.
    ix, iy = fx.astype(np.int64).astype(np.uint32), fy.astype(np.int64).astype(np.uint32)
    key = ix * _HASH_X + iy * _HASH_Y + np.asarray(seed, dtype=np.int64).astype(np.uint32) * _HASH_SEED
    a, b = _hash01(key), _hash01(key + _HASH_X)  # the four corners' keys differ by the x and y constants
    c, d = _hash01(key + _HASH_Y), _hash01(key + (_HASH_X + _HASH_Y))
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


def _pattern(family: str, s: np.ndarray, t: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """The mix between a material's two colours, in [0, 1], at pattern coordinates (s, t) in periods."""
    if family == "stripes":
        return (np.mod(s, 1.0) < 0.5).astype(np.float64)
    if family == "checks":
        return np.mod(np.floor(s) + np.floor(t), 2.0)
    if family == "noise":
        n = 0.65 * value_noise(s * 1.5, t * 1.5, seed) + 0.35 * value_noise(s * 4, t * 4, seed + 1)
        return np.clip((n - 0.5) * 4 + 0.5, 0, 1)
    if family == "wood":
        grain = s + 0.8 * value_noise(s * 0.5, t * 3.0, seed)
        return (np.mod(grain * 2.0, 1.0) < 0.3).astype(np.float64) * 0.8 + 0.2 * value_noise(s * 6, t, seed + 2)
    return 0.25 * value_noise(s * 2, t * 2, seed)  # plain, with a faint mottling


class _TextureTable:
    """Several materials' parameters as arrays, so one pattern evaluation covers every material of a family."""

    def __init__(self, materials: list[Material]) -> None:
        # math.cos/sin as the per-material code always used: the same floats whichever way textures are batched.
        self.cos = np.array([math.cos(m.angle) for m in materials])
        self.sin = np.array([math.sin(m.angle) for m in materials])
        self.period = np.array([m.period for m in materials], dtype=np.float64)
        self.seed = np.array([m.noise_seed for m in materials], dtype=np.int64)
        self.colour_a = np.array([m.colour_a for m in materials], dtype=np.float64).reshape(-1, 3)
        self.colour_b = np.array([m.colour_b for m in materials], dtype=np.float64).reshape(-1, 3)
        self.families = sorted({m.family for m in materials})
        self.family = np.array([self.families.index(m.family) for m in materials], dtype=np.int64)

    def albedo(self, material: np.ndarray, uv: np.ndarray) -> np.ndarray:
        out = np.zeros((len(material), 3))
        family = np.where(material >= 0, self.family[np.maximum(material, 0)], -1)
        for code, name in enumerate(self.families):
            rows = np.flatnonzero(family == code)
            if rows.size == 0:
                continue
            m = material[rows]
            u, v = uv[rows, 0], uv[rows, 1]
            cos, sin, period = self.cos[m], self.sin[m], self.period[m]
            mix = _pattern(name, (u * cos + v * sin) / period, (-u * sin + v * cos) / period, self.seed[m])
            out[rows] = self.colour_a[m] * (1 - mix[:, None]) + self.colour_b[m] * mix[:, None]
        return out


def texture(material: Material, uv: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) of one material at surface coordinates in metres."""
    return _TextureTable([material]).albedo(np.zeros(len(uv), dtype=np.int64), uv)


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

    albedo = compiled.albedo(surface["material"], surface["uv"])
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
