"""The real Taskonomy dataset's on-disk layout: domain names, file names, and the two directory layouts.

Released layout:  ROOT/{building}/{domain}/point_{P}_view_{V}_domain_{domain}.{ext}
Omnidata layout:  ROOT/{domain}/taskonomy/{building}/point_{P}_view_{V}_domain_{domain}.{ext}
"""

from __future__ import annotations

import re
from pathlib import Path

# Every per-view domain the real dataset ships, in the order of the `images` table's path columns. Camera files
# are `point_info`, as the full release and the omnidata downloader name them (`points` is the legacy name).
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
EXTENSIONS = ("png", "json", "npy")
FILE_NAME = re.compile(r"^point_(\d+)_view_(\d+)_domain_(\w+)\.(png|json|npy)$")
LAYOUTS = ("taskonomy", "omnidata")


def file_name(point: int, view: int, domain: str, ext: str) -> str:
    return f"point_{point}_view_{view}_domain_{domain}.{ext}"


def relative_path(layout: str, building: str, domain: str, name: str) -> Path:
    if layout == "taskonomy":
        return Path(building, domain, name)
    if layout == "omnidata":
        return Path(domain, "taskonomy", building, name)
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def parse_file_name(name: str) -> tuple[int, int, str, str] | None:
    """(point, view, domain, ext) of a Taskonomy file name, or None when it does not parse."""
    match = FILE_NAME.match(name)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)


def detect_layout(root: Path) -> str:
    """'omnidata' when the root's folders are domains holding a taskonomy/ folder, else 'taskonomy'."""
    children = [p for p in root.iterdir() if p.is_dir()]
    if children and all(p.name in DOMAINS and (p / "taskonomy").is_dir() for p in children):
        return "omnidata"
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
