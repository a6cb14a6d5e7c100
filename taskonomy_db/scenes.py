"""Procedural indoor scenes for the embedded dataset: buildings of rooms furnished with primitive-built objects.

A building fixes a style (palette, texture families of walls, floor, ceiling and of every object class, light
colour) shared by its rooms, so a split by building tests generalisation to unseen styles. A room is an
axis-aligned box (world frame: x, y horizontal, z up, metres) with a door and a window opening, a room type
(the scene class) that decides which objects appear and where, and one ceiling light that casts shadows.

Everything here is a pure function of its random generator, so a seed fixes a scene independently of the
image resolution and of how work is spread over processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from taskonomy_db.encodings import OBJECT_CLASSES, SCENE_CLASSES

TEXTURE_FAMILIES = ("plain", "stripes", "checks", "noise", "wood")
BOX, SPHERE, CYLINDER = "box", "sphere", "cylinder"

# Lost or corrupt buildings of the real dataset: never reuse their names.
_RESERVED_NAMES = {"mosquito", "tansboro", "tomkins", "darnestown", "brinnon", "rough", "woodbine"}
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br", "gr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ea", "oo", "ai")
_CODAS = ("", "n", "r", "l", "s", "m", "nd", "rt")
_SUFFIXES = ("ville", "wood", "ton", "field", "dale", "brook", "ford", "burg", "mont", "haven")


@dataclass(frozen=True)
class Material:
    """A procedural texture: two colours mixed by a pattern of the given family, scale in metres."""

    family: str
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    period: float
    angle: float
    noise_seed: int


@dataclass(frozen=True)
class Primitive:
    """A solid (box, sphere or vertical-in-local-frame cylinder) placed by a centre and a local->world rotation.

    `size` is (half x, half y, half z) for boxes, (radius, -, -) for spheres, (radius, -, half height) for
    cylinders. `object_index` is the object it belongs to (-1 for none).
    """

    kind: str
    centre: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]
    size: tuple[float, float, float]
    material: Material
    object_index: int


@dataclass(frozen=True)
class SceneObject:
    class_name: str
    position: tuple[float, float]
    yaw: float


@dataclass(frozen=True)
class Opening:
    """A hole in a wall: rays through it hit nothing. wall = (axis 0|1, side 0 = low, 1 = high)."""

    axis: int
    side: int
    along: tuple[float, float]  # extent along the wall's horizontal axis
    height: tuple[float, float]  # extent in z


@dataclass(frozen=True)
class Room:
    index: int
    room_type: str
    size: tuple[float, float, float]  # width (x), depth (y), height (z); the room spans [0, size]
    wall: Material
    floor: Material
    ceiling: Material
    openings: tuple[Opening, ...]
    light: tuple[float, float, float]
    light_colour: tuple[float, float, float]
    objects: tuple[SceneObject, ...]
    primitives: tuple[Primitive, ...]

    @property
    def scene_class(self) -> int:
        return SCENE_CLASSES.index(self.room_type)


@dataclass(frozen=True)
class Style:
    """What the rooms of one building share."""

    wall: dict[str, Material] = field(hash=False)  # room type -> wall material
    floor: Material
    ceiling: Material
    objects: dict[str, tuple[Material, Material]] = field(hash=False)  # class -> (main, accent)
    light_colour: tuple[float, float, float]
    round_tables: bool
    leg_kind: str


def building_name(seed: int, index: int) -> str:
    """A deterministic pronounceable name in the spirit of the real dataset's (allensville, beechwood)."""
    rng = np.random.default_rng([seed, index, 7])
    syllables = "".join(
        _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] + _CODAS[rng.integers(len(_CODAS))]
        for _ in range(int(rng.integers(1, 3)))
    )
    name = syllables + _SUFFIXES[rng.integers(len(_SUFFIXES))]
    return name if name not in _RESERVED_NAMES else name + "e"


def building_names(seed: int, count: int) -> list[str]:
    names: list[str] = []
    for index in range(count):
        name = building_name(seed, index)
        names.append(name if name not in names else f"{name}{index}")
    return names


# ---------------------------------------------------------------- styles and materials


def _colour(rng: np.random.Generator, hue: float, saturation: tuple[float, float], value: tuple[float, float]) -> tuple:
    h = (hue + rng.normal(0, 0.04)) % 1.0
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return tuple(round(float(c), 6) for c in rgb)


def random_material(
    rng: np.random.Generator,
    hue: float,
    families: tuple[str, ...],
    period: tuple[float, float],
    dark: bool = False,
    saturation: tuple[float, float] = (0.15, 0.7),
) -> Material:
    family = families[int(rng.integers(len(families)))]
    value = (0.25, 0.55) if dark else (0.55, 0.95)
    colour_a = _colour(rng, hue, saturation, value)
    # The second colour contrasts enough that the pattern survives Canny at 64 px.
    contrast = rng.uniform(0.45, 0.75)
    colour_b = tuple(round(float(c * contrast), 6) for c in colour_a)
    if rng.random() < 0.4:
        colour_b = _colour(rng, (hue + rng.uniform(0.3, 0.7)) % 1.0, (0.2, 0.8), (0.2, 0.6))
    return Material(
        family=family,
        colour_a=colour_a,
        colour_b=colour_b,
        period=round(float(rng.uniform(*period)), 6),
        angle=round(float(rng.choice([0.0, math.pi / 2, rng.uniform(0, math.pi)])), 6),
        noise_seed=int(rng.integers(1, 2**31 - 1)),
    )


def make_style(rng: np.random.Generator) -> Style:
    hue = rng.random()
    surfaces = tuple(rng.permutation(TEXTURE_FAMILIES))
    wall_families = tuple(surfaces[:3])
    objects = {}
    for index, class_name in enumerate(OBJECT_CLASSES):
        # Each class keeps its own hue band in every building (plants green, beds pale, ... in the real world):
        # with per-building hues an object's class showed only in a shape a few pixels wide, and the semantic
        # tasks could not be learnt from a dozen buildings at 64 px.
        class_hue = (index / len(OBJECT_CLASSES) + rng.uniform(-0.04, 0.04)) % 1.0
        families = (
            ("wood", "plain", "noise") if class_name in ("table", "shelf", "cabinet", "bed") else TEXTURE_FAMILIES
        )
        objects[class_name] = (
            random_material(rng, class_hue, families, (0.08, 0.3)),
            random_material(rng, (class_hue + 0.5) % 1.0, ("plain", "noise", "stripes"), (0.05, 0.2), dark=True),
        )
    return Style(
        # Each room type keeps its own wall hue band in every building (kitchens tiled white, bedrooms papered
        # pastel, ... in the real world): with the building's hue on every wall, the room type showed only in
        # which objects happen to be in view, and class_scene could not be learnt from a few dozen rooms.
        wall={
            room_type: random_material(
                rng,
                (index / len(SCENE_CLASSES) + rng.uniform(-0.03, 0.03)) % 1.0,
                wall_families,
                (0.3, 0.9),
                saturation=(0.35, 0.75),
            )
            for index, room_type in enumerate(SCENE_CLASSES)
        },
        floor=random_material(rng, (hue + 0.08) % 1.0, ("wood", "checks", "noise", "stripes"), (0.3, 0.8), dark=True),
        ceiling=random_material(rng, hue, ("plain", "noise"), (0.5, 1.0)),
        objects=objects,
        light_colour=tuple(round(float(c), 6) for c in (1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 0.95))),
        round_tables=bool(rng.random() < 0.5),
        leg_kind=CYLINDER if rng.random() < 0.5 else BOX,
    )


def restyle(room: Room, rng: np.random.Generator) -> Room:
    """The same geometry with every texture redrawn: what reshading, depth and normals must not notice."""
    style = make_style(rng)
    materials = {}
    primitives = []
    for primitive in room.primitives:
        key = id(primitive.material)
        if key not in materials:
            cls = room.objects[primitive.object_index].class_name if primitive.object_index >= 0 else "box"
            materials[key] = style.objects[cls][len(materials) % 2]
        primitives.append(replace(primitive, material=materials[key]))
    return replace(
        room, wall=style.wall[room.room_type], floor=style.floor, ceiling=style.ceiling, primitives=tuple(primitives)
    )


# ---------------------------------------------------------------- object builders (local frame: origin on the
# floor at the footprint centre, the object's front facing local +y)

_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_LYING_X = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0))  # local z along world x
_LYING_Y = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))  # local z along world y

# Footprint (width x, depth y) of each class, used for placement.
_FOOTPRINTS = {
    "table": (1.2, 0.8),
    "chair": (0.5, 0.5),
    "bed": (1.5, 2.0),
    "shelf": (1.0, 0.35),
    "lamp": (0.4, 0.4),
    "sofa": (1.9, 0.85),
    "plant": (0.5, 0.5),
    "box": (0.5, 0.45),
    "cabinet": (0.9, 0.5),
    "screen": (1.0, 0.12),
}


def _part(kind: str, centre: tuple, size: tuple, material: Material, rotation: tuple = _IDENTITY) -> tuple:
    return (kind, tuple(float(c) for c in centre), rotation, tuple(float(s) for s in size), material)


def _build_parts(class_name: str, style: Style, rng: np.random.Generator, scale: float) -> list[tuple]:
    main, accent = style.objects[class_name]
    w, d = (s * scale for s in _FOOTPRINTS[class_name])
    leg = style.leg_kind
    parts: list[tuple] = []

    def legs(height: float, inset: float, thickness: float) -> None:
        for sx in (-1, 1):
            for sy in (-1, 1):
                centre = (sx * (w / 2 - inset), sy * (d / 2 - inset), height / 2)
                size = (thickness, thickness, height / 2) if leg == BOX else (thickness, 0, height / 2)
                parts.append(_part(leg, centre, size, accent))

    if class_name == "table":
        height = rng.uniform(0.7, 0.78)
        if style.round_tables:
            radius = min(w, d) / 2 + 0.1
            parts.append(_part(CYLINDER, (0, 0, height - 0.025), (radius, 0, 0.025), main))
            parts.append(_part(CYLINDER, (0, 0, (height - 0.05) / 2), (0.05, 0, (height - 0.05) / 2), accent))
            parts.append(_part(CYLINDER, (0, 0, 0.02), (radius * 0.5, 0, 0.02), accent))
        else:
            parts.append(_part(BOX, (0, 0, height - 0.025), (w / 2, d / 2, 0.025), main))
            legs(height - 0.05, 0.06, 0.03)
    elif class_name == "chair":
        seat = rng.uniform(0.42, 0.48)
        parts.append(_part(BOX, (0, 0, seat), (w / 2, d / 2, 0.03), main))
        parts.append(_part(BOX, (0, -d / 2 + 0.03, seat + 0.25), (w / 2, 0.03, 0.22), main))
        legs(seat - 0.03, 0.04, 0.02)
    elif class_name == "bed":
        parts.append(_part(BOX, (0, 0, 0.22), (w / 2, d / 2, 0.22), accent))
        parts.append(_part(BOX, (0, 0.05, 0.5), (w / 2 - 0.03, d / 2 - 0.08, 0.06), main))
        parts.append(_part(BOX, (0, -d / 2 + 0.04, 0.55), (w / 2, 0.04, 0.55), accent))
        parts.append(_part(CYLINDER, (0, -d / 2 + 0.3, 0.63), (0.1, 0, w / 2 - 0.15), main, _LYING_X))
    elif class_name == "shelf":
        height = rng.uniform(1.4, 2.0)
        parts.append(_part(BOX, (0, -d / 2 + 0.02, height / 2), (w / 2, 0.02, height / 2), main))
        for side in (-1, 1):
            parts.append(_part(BOX, (side * (w / 2 - 0.02), 0, height / 2), (0.02, d / 2, height / 2), main))
        n_boards = int(rng.integers(3, 6))
        for k in range(n_boards):
            z = 0.05 + k * (height - 0.1) / (n_boards - 1)
            parts.append(_part(BOX, (0, 0, z), (w / 2 - 0.04, d / 2, 0.015), main))
            if k < n_boards - 1 and rng.random() < 0.7:  # a row of books on the board
                book_w = rng.uniform(0.15, w / 2 - 0.1)
                x = rng.uniform(-w / 2 + 0.05 + book_w, w / 2 - 0.05 - book_w)
                parts.append(_part(BOX, (x, 0, z + 0.11), (book_w, d / 2 - 0.05, 0.095), accent))
    elif class_name == "lamp":
        height = rng.uniform(1.3, 1.7)
        parts.append(_part(CYLINDER, (0, 0, 0.02), (0.15, 0, 0.02), accent))
        parts.append(_part(CYLINDER, (0, 0, height / 2), (0.015, 0, height / 2), accent))
        if rng.random() < 0.5:
            parts.append(_part(SPHERE, (0, 0, height + 0.05), (0.17, 0, 0), main))
        else:
            parts.append(_part(CYLINDER, (0, 0, height), (0.18, 0, 0.14), main))
    elif class_name == "sofa":
        parts.append(_part(BOX, (0, 0.05, 0.22), (w / 2 - 0.12, d / 2 - 0.05, 0.2), main))
        parts.append(_part(BOX, (0, -d / 2 + 0.1, 0.5), (w / 2 - 0.12, 0.1, 0.4), main))
        for side in (-1, 1):
            parts.append(_part(CYLINDER, (side * (w / 2 - 0.12), 0, 0.45), (0.12, 0, d / 2), accent, _LYING_Y))
            parts.append(_part(BOX, (side * (w / 2 - 0.12), 0, 0.2), (0.12, d / 2, 0.2), accent))
    elif class_name == "plant":
        pot_h = rng.uniform(0.25, 0.45)
        parts.append(_part(CYLINDER, (0, 0, pot_h / 2), (0.17, 0, pot_h / 2), accent))
        for _ in range(int(rng.integers(2, 5))):
            r = rng.uniform(0.14, 0.26)
            centre = (rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), pot_h + r + rng.uniform(0.0, 0.45))
            parts.append(_part(SPHERE, centre, (r, 0, 0), main))
    elif class_name == "box":
        stack = int(rng.integers(1, 4))
        z = 0.0
        for _ in range(stack):
            hx, hy, hz = w / 2 * rng.uniform(0.6, 1.0), d / 2 * rng.uniform(0.6, 1.0), rng.uniform(0.12, 0.25)
            parts.append(_part(BOX, (rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04), z + hz), (hx, hy, hz), main))
            z += 2 * hz
    elif class_name == "cabinet":
        height = rng.uniform(0.8, 1.3)
        parts.append(_part(BOX, (0, 0, height / 2), (w / 2, d / 2, height / 2), main))
        for side in (-1, 1):
            parts.append(_part(BOX, (side * 0.08, d / 2 + 0.01, height * 0.6), (0.015, 0.015, 0.08), accent))
    elif class_name == "screen":
        bottom = rng.uniform(1.0, 1.3)
        parts.append(_part(BOX, (0, 0, bottom + 0.3), (w / 2, 0.03, 0.3), accent))
        parts.append(_part(BOX, (0, 0.032, bottom + 0.3), (w / 2 - 0.04, 0.003, 0.26), main))
    return parts


# ---------------------------------------------------------------- room types and placement

# (class, how many (low, high), placement) per room type; placement: wall | centre | free | around_table
_ROOM_PLANS: dict[str, list[tuple[str, tuple[int, int], str]]] = {
    "bedroom": [
        ("bed", (1, 1), "wall"),
        ("lamp", (1, 2), "free"),
        ("shelf", (0, 1), "wall"),
        ("cabinet", (1, 2), "wall"),
        ("plant", (0, 2), "free"),
        ("box", (0, 2), "free"),
        ("chair", (0, 1), "free"),
    ],
    "living_room": [
        ("sofa", (1, 2), "wall"),
        ("table", (1, 1), "centre"),
        ("screen", (1, 1), "wall"),
        ("plant", (1, 3), "free"),
        ("lamp", (0, 2), "free"),
        ("chair", (0, 2), "free"),
        ("shelf", (0, 1), "wall"),
    ],
    "office": [
        ("table", (1, 2), "wall"),
        ("chair", (1, 2), "free"),
        ("shelf", (1, 3), "wall"),
        ("screen", (0, 1), "wall"),
        ("lamp", (0, 1), "free"),
        ("plant", (0, 2), "free"),
        ("box", (0, 2), "free"),
    ],
    "dining_room": [
        ("table", (1, 1), "centre"),
        ("chair", (2, 6), "around_table"),
        ("cabinet", (0, 2), "wall"),
        ("plant", (0, 2), "free"),
        ("lamp", (0, 1), "free"),
    ],
    "kitchen": [
        ("cabinet", (2, 4), "wall"),
        ("table", (0, 1), "centre"),
        ("chair", (0, 3), "around_table"),
        ("box", (0, 2), "free"),
        ("plant", (0, 1), "free"),
    ],
    "storage_room": [
        ("box", (3, 7), "free"),
        ("shelf", (1, 3), "wall"),
        ("cabinet", (0, 2), "wall"),
        ("chair", (0, 1), "free"),
    ],
}
MIN_OBJECTS, MAX_OBJECTS = 3, 12


def _rotation_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _footprint_corners(x: float, y: float, yaw: float, w: float, d: float) -> np.ndarray:
    local = np.array([[-w / 2, -d / 2], [w / 2, -d / 2], [w / 2, d / 2], [-w / 2, d / 2]])
    return local @ _rotation_z(yaw)[:2, :2].T + [x, y]


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quadrilaterals."""
    for poly in (a, b):
        for k in range(4):
            edge = poly[(k + 1) % 4] - poly[k]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def make_room(style: Style, rng: np.random.Generator, index: int) -> Room:
    room_type = SCENE_CLASSES[int(rng.integers(len(SCENE_CLASSES)))]
    width, depth, height = rng.uniform(3.5, 7.0), rng.uniform(3.5, 7.0), rng.uniform(2.5, 3.2)
    size = (round(float(width), 4), round(float(depth), 4), round(float(height), 4))
    openings = []
    door_wall, window_wall = rng.permutation(4)[:2]
    for wall, (z0, z1), span in ((door_wall, (0.0, 2.05), 0.9), (window_wall, (0.9, 2.1), rng.uniform(1.0, 1.8))):
        axis, side = int(wall) // 2, int(wall) % 2
        length = size[1 - axis]
        start = rng.uniform(0.4, length - span - 0.4)
        openings.append(Opening(axis, side, (float(start), float(start + span)), (float(z0), float(z1))))

    footprints: list[np.ndarray] = []
    # Keep the door clear so that rooms look walkable and the opening stays visible.
    door = openings[0]
    door_centre = (door.along[0] + door.along[1]) / 2
    door_xy = [door_centre, door_centre]
    door_xy[door.axis] = 0.5 if door.side == 0 else size[door.axis] - 0.5
    footprints.append(_footprint_corners(door_xy[0], door_xy[1], 0.0, 1.2, 1.2))

    objects: list[SceneObject] = []
    primitives: list[Primitive] = []
    table_at: list[tuple[float, float, float, float]] = []  # x, y, half width, half depth

    def place(cls: str, placement: str) -> bool:
        scale = float(rng.uniform(0.85, 1.15))
        w, d = (s * scale for s in _FOOTPRINTS[cls])
        for _attempt in range(40):
            if placement == "wall":
                axis, side = divmod(int(rng.integers(4)), 2)
                pos = [0.0, 0.0]
                pos[1 - axis] = rng.uniform(w / 2 + 0.05, size[1 - axis] - w / 2 - 0.05)
                pos[axis] = d / 2 + 0.02 if side == 0 else size[axis] - d / 2 - 0.02
                x, y = pos
                # Face into the room: local +y points away from the wall.
                yaw = {(1, 0): 0.0, (1, 1): math.pi, (0, 0): -math.pi / 2, (0, 1): math.pi / 2}[(axis, side)]
            elif placement == "centre":
                x = width / 2 + rng.uniform(-0.5, 0.5)
                y = depth / 2 + rng.uniform(-0.5, 0.5)
                yaw = float(rng.choice([0.0, math.pi / 2])) + rng.normal(0, 0.05)
            elif placement == "around_table" and table_at:
                tx, ty, hw, hd = table_at[0]
                angle = rng.uniform(0, 2 * math.pi)
                x, y = tx + (hw + 0.35) * math.cos(angle), ty + (hd + 0.35) * math.sin(angle)
                yaw = math.atan2(-(tx - x), ty - y)  # the seat's front (local +y) faces the table
            else:
                x = rng.uniform(w / 2 + 0.1, width - w / 2 - 0.1)
                y = rng.uniform(d / 2 + 0.1, depth - d / 2 - 0.1)
                yaw = rng.uniform(0, 2 * math.pi)
            corners = _footprint_corners(x, y, yaw, w, d)
            inside = corners.min() > 0.0 and corners[:, 0].max() < width and corners[:, 1].max() < depth
            if inside and not any(_overlaps(corners, other) for other in footprints):
                break
        else:
            return False
        footprints.append(corners)
        object_index = len(objects)
        objects.append(SceneObject(cls, (round(float(x), 6), round(float(y), 6)), round(float(yaw), 6)))
        if cls == "table":
            table_at.append((x, y, w / 2, d / 2))
        world = _rotation_z(yaw)
        for kind, centre, rotation, part_size, material in _build_parts(cls, style, rng, scale):
            primitives.append(
                Primitive(
                    kind=kind,
                    centre=tuple(float(c) for c in world @ np.array(centre) + [x, y, 0.0]),
                    rotation=tuple(tuple(float(v) for v in row) for row in world @ np.array(rotation)),
                    size=part_size,
                    material=material,
                    object_index=object_index,
                )
            )
        return True

    plan = _ROOM_PLANS[room_type]
    wanted = [(cls, placement) for cls, (lo, hi), placement in plan for _ in range(int(rng.integers(lo, hi + 1)))]
    for cls, placement in wanted[:MAX_OBJECTS]:
        place(cls, placement)
    for _attempt in range(20):
        if len(objects) >= MIN_OBJECTS:
            break
        place("box", "free")
    light = (
        float(rng.uniform(0.3, 0.7) * width),
        float(rng.uniform(0.3, 0.7) * depth),
        float(height - rng.uniform(0.25, 0.45)),
    )
    return Room(
        index=index,
        room_type=room_type,
        size=size,
        wall=style.wall[room_type],
        floor=style.floor,
        ceiling=style.ceiling,
        openings=tuple(openings),
        light=light,
        light_colour=style.light_colour,
        objects=tuple(objects),
        primitives=tuple(primitives),
    )


def make_building_rooms(seed: int, building_index: int, n_rooms: int) -> list[Room]:
    """Every room of one building; room r depends only on (seed, building, r) and the building's style."""
    style = make_style(np.random.default_rng([seed, building_index, 0]))
    return [make_room(style, np.random.default_rng([seed, building_index, 1, r]), r) for r in range(n_rooms)]
