"""Import the paper's released affinities and win rates (the layout of taskonomy-published/) into a workspace.

The release is a set of pickles: `results/affinities/all_affinities{,_1k,_16k}.pkl` and
`results/winrates/wins_vs_{task,pixels}{,_1k,_16k}.pkl`, each a flat dict `"src1__src2__target" -> float`.
Pickles can run code when loaded, so they are read with safe_pickle's unpickler, which builds checked numpy
dtypes, scalars and arrays (the release's rankings hold arrays) and refuses everything else. Names are mapped
to this project's: dataset domain names, `self` -> gold, `pixels` -> scratch.
"""

from __future__ import annotations

import pickle
import reprlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from taskonomy_db.db import Database
from taskonomy_db.errors import TdbError
from taskonomy_db.safe_pickle import load_numpy_pickle

DATA_SIZES = ("1k", "16k", "full")
_FILE_SUFFIX = {"1k": "_1k", "16k": "_16k", "full": ""}

# Code names in the released files -> dataset domain names (the paper's Table 1 names). Baselines get our names.
PAPER_TO_DOMAIN: dict[str, str] = {
    "autoencoder": "autoencoding",
    "colorization": "colorization",
    "curvature": "principal_curvature",
    "denoise": "denoising",
    "edge2d": "edge_texture",
    "edge3d": "edge_occlusion",
    "ego_motion": "egomotion",
    "fix_pose": "fixated_pose",
    "jigsaw": "jigsaw",
    "keypoint2d": "keypoints2d",
    "keypoint3d": "keypoints3d",
    "non_fixated_pose": "nonfixated_pose",
    "point_match": "point_matching",
    "reshade": "reshading",
    "rgb2depth": "depth_zbuffer",
    "rgb2mist": "depth_euclidean",
    "rgb2sfnorm": "normal",
    "room_layout": "room_layout",
    "segment25d": "segment_unsup25d",
    "segment2d": "segment_unsup2d",
    "segmentsemantic": "segment_semantic",
    "segmentsemantic_rb": "segment_semantic",
    "class_1000": "class_object",
    "class_places": "class_scene",
    "class_selected": "class_selected",  # a 100-class object task with no dataset domain; kept as released
    "inpainting_whole": "inpainting",
    "impainting_whole": "inpainting",
    "vanishing_point": "vanishing_point",
    "vanishing_point_well_defined": "vanishing_point",
    "self": "gold",
    "pixels": "scratch",
    "random": "random",
}
BASELINE_KINDS = {"gold": "gold", "scratch": "scratch", "random": "random"}


class PublishedDataError(TdbError):
    """The published results are missing, malformed, or not safe to load."""


_MALFORMED = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
    RecursionError,
)


def _short(value: Any) -> str:
    """A value from a file as a short single line: an array's repr can be long and span lines."""
    text = value if isinstance(value, BaseException) else reprlib.repr(value)
    return " ".join(str(text).split())


def load_pickle(path: Path) -> Any:
    """Unpickle a released file, allowing only the numpy globals the release uses. Raises PublishedDataError."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise PublishedDataError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        return load_numpy_pickle(data)
    # What a malformed or hostile file makes the unpickler or numpy raise, MemoryError included for an allocation
    # the checks let through; every one is a property of the file, so each becomes a one-line error naming it.
    except _MALFORMED as error:
        raise PublishedDataError(f"refused to load {path}: {_short(error)}") from error


def load_scores(path: Path) -> dict[str, float]:
    """A released `"src1__src2__target" -> value` dict with plain keys and float values."""
    loaded = load_pickle(path)
    if not isinstance(loaded, dict):
        raise PublishedDataError(f"{path}: expected a dict, found {type(loaded).__name__}")
    scores = {}
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, float | np.floating | int):
            raise PublishedDataError(f"{path}: expected str -> float entries, found {_short(key)} -> {_short(value)}")
        scores[key] = float(value)
    return scores


@dataclass(frozen=True)
class PublishedKey:
    target: str
    sources: tuple[str, ...]
    kind: str


def parse_key(key: str) -> PublishedKey:
    """`"src1__src2__target"` -> target and sorted source names in this project's vocabulary."""
    names = key.split("__")
    if len(names) < 2:
        raise PublishedDataError(f"malformed key {key!r}: expected sources and a target joined by '__'")
    unknown = [n for n in names if n not in PAPER_TO_DOMAIN]
    if unknown:
        raise PublishedDataError(f"key {key!r} names unknown task(s): {', '.join(unknown)}")
    mapped = [PAPER_TO_DOMAIN[n] for n in names]
    target, sources = mapped[-1], tuple(sorted(mapped[:-1]))
    kind = BASELINE_KINDS.get(sources[0], "transfer") if len(sources) == 1 else "transfer"
    return PublishedKey(target, sources, kind)


def results_dir(root: Path) -> Path:
    """The folder holding affinities/ and winrates/: ROOT/results, or ROOT itself."""
    root = Path(root)
    for candidate in (root / "results", root):
        if (candidate / "affinities").is_dir() and (candidate / "winrates").is_dir():
            return candidate
    raise PublishedDataError(f"{root} does not look like taskonomy-published (no results/affinities, results/winrates)")


def read_published(root: Path, data: str) -> list[dict[str, Any]]:
    """One row per released key of one data size: target, sources, order, kind, affinity, quality, gain."""
    if data not in DATA_SIZES:
        raise PublishedDataError(f"unknown data size {data!r}; choose one of {', '.join(DATA_SIZES)}")
    results = results_dir(root)
    suffix = _FILE_SUFFIX[data]
    affinity = load_scores(results / "affinities" / f"all_affinities{suffix}.pkl")
    quality = load_scores(results / "winrates" / f"wins_vs_task{suffix}.pkl")
    gain = load_scores(results / "winrates" / f"wins_vs_pixels{suffix}.pkl")
    rows, seen = [], {}
    for key in sorted(affinity.keys() | quality.keys() | gain.keys()):
        parsed = parse_key(key)
        identity = (parsed.target, parsed.sources)
        if identity in seen:
            raise PublishedDataError(f"keys {seen[identity]!r} and {key!r} name the same transfer")
        seen[identity] = key
        rows.append(
            {
                "data": data,
                "paper_key": key,
                "target": parsed.target,
                "sources": list(parsed.sources),
                "order": len(parsed.sources),
                "kind": parsed.kind,
                "affinity": affinity.get(key),
                "quality": quality.get(key),
                "gain": gain.get(key),
            }
        )
    return rows


@dataclass(frozen=True)
class PublishedImport:
    data: str
    source_path: str
    n_transfers: int
    n_targets: int
    n_with_affinity: int
    max_order: int


def import_published(db: Database, root: Path, data: str) -> PublishedImport:
    """Load one data size into the workspace, replacing an earlier import of it, and make it the active one."""
    rows = read_published(root, data)
    source_path = str(results_dir(root).resolve())
    targets = {r["target"] for r in rows}
    columns = ["data", "paper_key", "target", "sources", "order", "kind", "affinity", "quality", "gain"]
    with db.transaction() as con:
        con.replace_rows("published_transfers", pa.Table.from_pylist(rows).select(columns), data=data)
        con.delete("published_datasets", data=data)
        con.update("published_datasets", {"is_active": False})
        dataset = {
            "data": data,
            "source_path": source_path,
            "n_transfers": len(rows),
            "n_targets": len(targets),
            "is_active": True,
            "imported_at": datetime.now(),
        }
        con.insert_one("published_datasets", dataset)
    return PublishedImport(
        data=data,
        source_path=source_path,
        n_transfers=len(rows),
        n_targets=len(targets),
        n_with_affinity=sum(r["affinity"] is not None for r in rows),
        max_order=max(r["order"] for r in rows),
    )


def set_active(db: Database, data: str | None) -> None:
    """Serve an imported data size from the views, or (None) go back to the workspace's measured transfers."""
    with db.transaction() as con:
        if data is not None:
            if not con.count("published_datasets", data=data):
                raise PublishedDataError(f"published data {data!r} is not imported; run `tdb import-published`")
        con.update("published_datasets", {"is_active": False})
        if data is not None:
            con.update("published_datasets", {"is_active": True}, data=data)
