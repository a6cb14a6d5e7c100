"""The multi-image tasks' items: tuples of views of one building and their labels, derived from the cameras.

Four of the paper's tasks read several images at once through one shared encoder (siamese), and their labels
are functions of the cameras of those images, read from each view's camera file (`point_info`) at ingest:

- `fixated_pose`: two views fixating the same point; the second camera's pose relative to the first.
- `nonfixated_pose`: two views fixating different points but seeing a common one; the same relative pose.
- `egomotion`: three views fixating the same point; the three pairwise relative poses (18 numbers).
- `point_matching`: two views; whether their centres show the same 3D point (the original's `point_match_new`:
  1 when the two views fixate the same point, 0 otherwise).

The relative pose is the original's `calculate_relative_camera_pose` (taskbank `load_ops.py`): with R_i the
matrix of view i's `camera_rotation_final` (static XYZ Euler angles, Blender's XYZ), the rotation R_2^T R_1 as
static XYZ Euler angles, and the translation R_2^T (location_1 - location_2), standardised by the original's
fixed means and standard deviations (one set for fixated pairs, one for nonfixated). Which pairs and triples
are formed, and their order, is drawn per building and task from the study seed, so the tuples are
deterministic by seed; a tuple belongs to its building's split.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The fields of a camera file the multi-image tasks read.
CAMERA_FIELDS = ("camera_location", "camera_rotation_final", "nonfixated_points_in_view")
TUPLE_TASKS = ("fixated_pose", "nonfixated_pose", "egomotion", "point_matching")


# ---------------------------------------------------------------- camera files


def read_camera(path: str | Path) -> dict[str, Any] | str:
    """A camera file's location, rotation and the points it sees, or the problem with the file (one line)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as error:
        return f"unreadable: {' '.join(str(error).split())}"
    except ValueError as error:
        return f"not a camera file: {' '.join(str(error).split())}"
    if not isinstance(data, dict):
        return "not a camera file: the JSON is not an object"
    missing = [name for name in CAMERA_FIELDS if name not in data]
    if missing:
        return f"camera file without the field {missing[0]!r}, which the multi-image tasks need"
    try:
        location = [float(x) for x in data["camera_location"]]
        rotation = [float(x) for x in data["camera_rotation_final"]]
        seen = [int(p) for p in data["nonfixated_points_in_view"]]
    except (TypeError, ValueError) as error:
        return f"camera file with a malformed field: {' '.join(str(error).split())}"
    if len(location) != 3 or len(rotation) != 3:
        return "camera file whose camera_location or camera_rotation_final is not 3 numbers"
    if not np.isfinite(location + rotation).all():
        return "camera file with a camera_location or camera_rotation_final that is not finite"
    return {"location": location, "rotation": rotation, "points_in_view": seen}


# ---------------------------------------------------------------- relative poses


def relative_pose(first: dict[str, Any], second: dict[str, Any]) -> np.ndarray:
    """The raw 6-number pose of camera `first` relative to `second` (`labels.relative_pose`)."""
    from taskonomy_db import labels  # scipy comes with it: `tdb --help` and `tdb query` import this module

    return labels.relative_pose(first["rotation"], first["location"], second["rotation"], second["location"])


def pose_label(first: dict[str, Any], second: dict[str, Any], fixated: bool) -> np.ndarray:
    """fixated_camera_pose / nonfixated_camera_pose: the relative pose, standardised."""
    from taskonomy_db import labels

    return labels.standardise_pose(relative_pose(first, second), fixated)


def egomotion_label(cameras: Sequence[dict[str, Any]]) -> np.ndarray:
    """triplet_fixated_egomotion: the fixated poses of pairs (1, 2), (1, 3), (2, 3), concatenated (18 numbers)."""
    return np.concatenate([pose_label(cameras[i], cameras[j], True) for i, j in ((0, 1), (0, 2), (1, 2))])


# ---------------------------------------------------------------- tuples


@dataclass(frozen=True)
class View:
    """One ingested view with a camera: what forming and labelling tuples reads."""

    image_id: int
    image_key: str
    building: str
    point: int
    split: str | None
    camera: dict[str, Any]
    sees: frozenset[int]  # the point it fixates and every other point it sees


def _rng(seed: int, task: str, building: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:tuples:{task}:{building}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _ordered(pair: tuple[View, View], rng: np.random.Generator) -> tuple[View, View]:
    return pair if rng.random() < 0.5 else (pair[1], pair[0])


def _row(task: str, views: Sequence[View], label: np.ndarray) -> dict[str, Any]:
    return {
        "tuple_key": f"{task}:" + "|".join(v.image_key for v in views),
        "task": task,
        "image_ids": [v.image_id for v in views],
        "label": [float(x) for x in label],
        "building": views[0].building,
        "split": views[0].split,
    }


def _building_tuples(views: list[View], seed: int) -> list[dict[str, Any]]:
    """Every task's tuples of one building's views (sorted by point and view)."""
    building = views[0].building
    by_point: dict[int, list[View]] = defaultdict(list)
    for view in views:
        by_point[view.point].append(view)
    rows = []

    rng = _rng(seed, "fixated_pose", building)
    same_point = [pair for point in sorted(by_point) for pair in itertools.combinations(by_point[point], 2)]
    for pair in same_point:
        a, b = _ordered(pair, rng)
        rows.append(_row("fixated_pose", (a, b), pose_label(a.camera, b.camera, fixated=True)))

    rng = _rng(seed, "egomotion", building)
    for point in sorted(by_point):
        for triple in itertools.combinations(by_point[point], 3):
            ordered = [triple[i] for i in rng.permutation(3)]
            rows.append(_row("egomotion", ordered, egomotion_label([v.camera for v in ordered])))

    # Pairs of views of different points: as many nonfixated pairs as the building has views (all pairs of
    # views seeing a common point would grow with the square of the views), and one non-matching pair per
    # matching one, so that point matching is balanced.
    different = [(a, b) for a, b in itertools.combinations(views, 2) if a.point != b.point]
    rng = _rng(seed, "nonfixated_pose", building)
    covisible = [pair for pair in different if pair[0].sees & pair[1].sees]
    for index in sorted(rng.choice(len(covisible), size=min(len(views), len(covisible)), replace=False)):
        a, b = _ordered(covisible[index], rng)
        rows.append(_row("nonfixated_pose", (a, b), pose_label(a.camera, b.camera, fixated=False)))

    rng = _rng(seed, "point_matching", building)
    for pair in same_point:
        rows.append(_row("point_matching", _ordered(pair, rng), np.ones(1)))
    for index in sorted(rng.choice(len(different), size=min(len(same_point), len(different)), replace=False)):
        rows.append(_row("point_matching", _ordered(different[index], rng), np.zeros(1)))
    return rows


def build_tuples(views: Iterable[View], seed: int) -> list[dict[str, Any]]:
    """The `tuples` rows (without ids) of every multi-image task, building by building, deterministic by seed."""
    by_building: dict[str, list[View]] = defaultdict(list)
    for view in views:
        by_building[view.building].append(view)
    rows = []
    for building in sorted(by_building):
        ordered = sorted(by_building[building], key=lambda v: (v.point, v.image_key))
        rows += _building_tuples(ordered, seed)
    return rows


def stored_views(con: Any) -> list[View]:
    """The views with a camera and an image in the store (cameras joined to images), and the points each sees:
    its own, its camera file's nonfixated_points_in_view, and the legacy per-point nonfixated files that list it."""
    rows = con.execute(
        """
        select images.image_id, images.image_key, images.building, images.point, images.split,
            cameras.location, cameras.rotation, cameras.points_in_view,
            coalesce((select list(nonfixated_views.point) from nonfixated_views
                      where nonfixated_views.image_key = images.image_key), []) as listed_in
        from cameras
        inner join images using (image_key)
        where images.rgb_path is not null  -- a view without its image is in no tuple
        order by images.image_key
        """
    ).fetchall()
    views = []
    for image_id, key, building, point, split, location, rotation, in_view, listed_in in rows:
        camera = {"location": location, "rotation": rotation, "points_in_view": in_view}
        sees = frozenset([point, *in_view, *listed_in])
        views.append(View(image_id, key, building, point, split, camera, sees))
    return views


def sync_tuples(con: Any, seed: int) -> int:
    """Rebuild `tuples` from the stored cameras inside the caller's transaction. A tuple that is formed again
    keeps its id (losses are stored under it); returns how many tuples there are."""
    rows = build_tuples(stored_views(con), seed)
    known = dict(con.execute("select tuple_key, tuple_id from tuples").fetchall())
    kept = [{"tuple_id": known[row["tuple_key"]], **row} for row in rows if row["tuple_key"] in known]
    new = [row for row in rows if row["tuple_key"] not in known]
    for task in TUPLE_TASKS:
        con.delete("tuples", task=task)
    con.insert("tuples", kept)
    con.insert("tuples", new)
    return len(rows)
