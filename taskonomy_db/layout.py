"""The real Taskonomy dataset's on-disk forms: domain names, file names, the folder-name table, the layouts.

Full release:     ROOT/{building}/{domain}/point_{P}_view_{V}_domain_{domain}.{ext}
Omnidata:         ROOT/{domain}/taskonomy/{building}/point_{P}_view_{V}_domain_{domain}.{ext}
Legacy (sample building, the original training code):  ROOT/{legacy folder}/... for one building, or
                  ROOT/{building}/{legacy folder}/..., folder and file names mapped by LEGACY_FOLDERS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Every per-view domain tdb reads, in the order of the `images` table's path columns. Camera files are
# `point_info`, as the full release and the omnidata downloader name them (`points` is the legacy name).
DOMAINS: tuple[str, ...] = (
    "rgb",
    "depth_zbuffer",
    "depth_euclidean",
    "normal",
    "reshading",
    "principal_curvature",
    "edge_texture",
    "edge_occlusion",
    "keypoints2d",
    "keypoints3d",
    "segment_semantic",
    "segment_unsup2d",
    "segment_unsup25d",
    "class_object",
    "class_scene",
    "point_info",
    "nonfixated_matches",
    "mask_valid",
)

# The legacy sample building's folders (StanfordVL/taskonomy-sample-model-1, its README; the original's
# load_ops.py reads `points/..._domain_fixatedpose.json`) -> (domain, the domain part of its file names). None:
# its files are named `point_P_view_V.npy`, with no domain part (places/ in the sample building; softmax1000/
# assumed alike: load_ops.class_1000_softmax reads `point_P_view_V.npy`).
LEGACY_FOLDERS: dict[str, tuple[str, str | None]] = {
    "rgb": ("rgb", "rgb"),
    "depth": ("depth_zbuffer", "depth"),
    "mist": ("depth_euclidean", "mist"),
    "normal": ("normal", "normal"),
    "reshade": ("reshading", "reshade"),
    "curvature": ("principal_curvature", "curvature"),
    "edge2d": ("edge_texture", "edge2d"),
    "edge": ("edge_occlusion", "edge"),
    "keypoint2d": ("keypoints2d", "keypoint2d"),
    "keypoint": ("keypoints3d", "keypoint"),
    "segmentsemantic": ("segment_semantic", "segmentsemantic"),
    "segment2d": ("segment_unsup2d", "segment2d"),
    "segment25d": ("segment_unsup25d", "segment25d"),
    "softmax1000": ("class_object", None),
    "places": ("class_scene", None),
    "points": ("point_info", "fixatedpose"),
}
# Per-point files (no view number): `nonfixated/point_P_view_all_domain_nonfixatedpose.json`, the views that see
# point P with its pixel in each; read into the `nonfixated_views` table.
NONFIXATED_FOLDER, NONFIXATED_DOMAIN = "nonfixated", "nonfixatedpose"
# Domains a download may hold that no tdb task reads: skipped, and listed in the ingest summary.
UNUSED_DOMAINS: tuple[str, ...] = ("rgb_large", "skybox", "modeldata", "fragments")
# Names only the legacy form uses: a building holding one of these is in the legacy form.
LEGACY_ONLY = frozenset([*LEGACY_FOLDERS, NONFIXATED_FOLDER]) - frozenset(DOMAINS)

EXTENSIONS = ("png", "json", "npy")
FILE_NAME = re.compile(r"^point_(\d+)_view_(\d+)_domain_(\w+)\.(png|json|npy)$")
# Every name ingest accepts: per-view (view V), per-point (view all) and legacy names without a domain part.
ANY_FILE_NAME = re.compile(r"^point_(\d+)_view_(\d+|all)(?:_domain_(\w+))?\.(png|json|npy)$")
LAYOUTS = ("taskonomy", "omnidata", "legacy")
WRITE_LAYOUTS = ("taskonomy", "omnidata")  # the release's forms, which the generator writes


@dataclass(frozen=True)
class Folder:
    """What a folder of a download holds, from its name alone."""

    name: str
    kind: str  # "domain" (one file per view), "nonfixated" (one file per point), "unused" or "unknown"
    domain: str | None = None  # the tdb domain of a "domain" folder
    file_domains: frozenset[str | None] = frozenset()  # domain parts its file names may carry (None: none)


def resolve_folder(name: str) -> Folder:
    """A download folder's meaning: a release domain, a legacy folder (mapped), per-point nonfixated files, a
    domain tdb does not use, or unknown. The names of the release and of the legacy form are read in every layout.
    """
    if name in DOMAINS:
        return Folder(name, "domain", name, frozenset({name}))
    if name in LEGACY_FOLDERS:
        domain, file_domain = LEGACY_FOLDERS[name]
        # The folder's own name is accepted too: tdb's generator wrote `points/..._domain_points.json` before it
        # took the release's name.
        return Folder(name, "domain", domain, frozenset({name, domain, file_domain}))
    if name == NONFIXATED_FOLDER:
        return Folder(name, "nonfixated", None, frozenset({NONFIXATED_DOMAIN}))
    if name in UNUSED_DOMAINS:
        return Folder(name, "unused")
    return Folder(name, "unknown")


def file_name(point: int, view: int, domain: str, ext: str) -> str:
    return f"point_{point}_view_{view}_domain_{domain}.{ext}"


def relative_path(layout: str, building: str, domain: str, name: str) -> Path:
    """Where the release's forms keep a file (the generator and test fixtures write these)."""
    if layout == "taskonomy":
        return Path(building, domain, name)
    if layout == "omnidata":
        return Path(domain, "taskonomy", building, name)
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(WRITE_LAYOUTS)}")


def parse_file_name(name: str) -> tuple[int, int, str, str] | None:
    """(point, view, domain, ext) of a per-view Taskonomy file name, or None when it does not parse."""
    match = FILE_NAME.match(name)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)


def parse_any_file_name(name: str) -> tuple[int, int | None, str | None, str] | None:
    """(point, view or None for `view_all`, domain or None when the name has none, ext), or None."""
    match = ANY_FILE_NAME.match(name)
    if not match:
        return None
    view = None if match.group(2) == "all" else int(match.group(2))
    return int(match.group(1)), view, match.group(3), match.group(4)


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir())


def is_one_building(root: Path) -> bool:
    """Whether the root holds a building's domain folders (the legacy sample building) rather than buildings: no
    real building is named like a domain, so one domain folder among its folders is enough (and a stray folder
    beside them is then reported as an unknown domain, not taken for a building)."""
    return any(resolve_folder(p.name).kind != "unknown" for p in _folders(root))


def detect_layout(root: Path) -> str:
    """'omnidata' when a root folder holds a taskonomy/ folder; 'legacy' for one building at the root (domain
    folders there) or buildings holding legacy-only folder names; else 'taskonomy' (the full release)."""
    children = _folders(root)
    if any((p / "taskonomy").is_dir() for p in children):
        return "omnidata"
    if is_one_building(root):
        return "legacy"
    if any(q.name in LEGACY_ONLY for p in children for q in _folders(p)):
        return "legacy"
    return "taskonomy"


def check_file(path: Path, ext: str) -> str | None:
    """A cheap integrity check that catches truncated and corrupt files; returns the problem or None.

    PNGs must start with the signature and end with the IEND chunk (truncation cuts it off); JSON must parse;
    .npy files must hold as many bytes as their header promises. Full decoding is left to the readers.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            if ext == "png":
                if handle.read(8) != b"\x89PNG\r\n\x1a\n":
                    return "not a PNG file"
                if size < 20:
                    return "truncated PNG"
                handle.seek(size - 12)
                if handle.read(12)[4:8] != b"IEND":
                    return "truncated PNG (no IEND chunk)"
            elif ext == "json":
                import json

                json.loads(handle.read())
            elif ext == "npy":
                import numpy as np

                major, _ = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(handle)
                expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if size - handle.tell() < expected:
                    return "truncated .npy file"
    except (OSError, ValueError) as error:
        return f"unreadable: {' '.join(str(error).split())}"
    return None
