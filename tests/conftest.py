"""Shared fixtures: throwaway workspaces and small datasets written in the real Taskonomy layouts."""

from __future__ import annotations

import io
import json
import struct
import tomllib
import zlib
from pathlib import Path

import numpy as np
import pytest

from taskonomy_db.layout import file_name, relative_path
from taskonomy_db.workspace import Workspace, dumps_toml

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO.parent / "shared" / "taskonomy-published"
SPLITS_DIR = PUBLISHED / "splits"

FIXTURE_DOMAINS = {"rgb": "png", "depth_zbuffer": "png", "point_info": "json", "class_object": "npy"}


def png_bytes(array: np.ndarray) -> bytes:
    """A minimal valid PNG (8-bit grey or RGB, 16-bit grey) so fixtures need no imaging library."""
    if array.ndim == 2:
        color_type, channels = 0, 1
    else:
        color_type, channels = 2, array.shape[2]
    bit_depth = 16 if array.dtype == np.uint16 else 8
    height, width = array.shape[:2]
    raw = array.astype(">u2" if bit_depth == 16 else np.uint8).reshape(height, width * channels)
    scanlines = b"".join(b"\x00" + row.tobytes() for row in raw)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b"")
    )


def view_files(layout: str, building: str, point: int, view: int, domains: dict[str, str]) -> dict[Path, bytes]:
    """One view's files (path relative to the dataset root -> contents), the same in every process: the seed is a
    CRC of the view's key, not hash(), which is salted per process for strings (PYTHONHASHSEED)."""
    rng = np.random.default_rng(zlib.crc32(repr((building, point, view)).encode()))
    files = {}
    for domain, ext in domains.items():
        path = relative_path(layout, building, domain, file_name(point, view, domain, ext))
        if ext == "png":
            array = (
                rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                if domain == "rgb"
                else rng.integers(0, 65535, (8, 8), dtype=np.uint16)
            )
            files[path] = png_bytes(array)
        elif ext == "json":  # a camera file: the fields of a real one that ingest reads, and its ids
            camera = {
                "camera_location": rng.uniform(-3, 3, 3).round(6).tolist(),
                "camera_rotation_final": rng.uniform(-3, 3, 3).round(6).tolist(),
                "nonfixated_points_in_view": [],
                "point_uuid": f"{building}-{point}",
                "view_id": view,
            }
            files[path] = json.dumps(camera).encode()
        else:
            buffer = io.BytesIO()
            np.save(buffer, rng.random(5).astype(np.float32))
            files[path] = buffer.getvalue()
    return files


def write_view(root: Path, layout: str, building: str, point: int, view: int, domains: dict[str, str]) -> None:
    for relative, contents in view_files(layout, building, point, view, domains).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents)


def make_dataset(
    root: Path,
    buildings: list[str],
    layout: str = "taskonomy",
    points: int = 2,
    views: int = 2,
    domains: dict[str, str] | None = None,
) -> Path:
    for building in buildings:
        for point in range(points):
            for view in range(views):
                write_view(root, layout, building, point, view, domains or FIXTURE_DOMAINS)
    return root


def tiny_split_buildings() -> dict[str, list[str]]:
    """Buildings of the published tiny split CSV, by split."""
    from taskonomy_db.ingest import read_split_csv

    by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for building, split in read_split_csv(SPLITS_DIR / "train_val_test_tiny.csv").items():
        by_split[split].append(building)
    return by_split


def write_synthetic_release(
    root: Path, groups: dict[str, tuple[str, ...]], source_only: set[str], seed: int, data: str = "16k"
) -> Path:
    """A release in the published layout (results/affinities, results/winrates pickles of one data size, paper code
    names) whose first-order affinities have planted groups: for each target every source of one group shares a base
    affinity, its own group's the highest and the other groups' in a random order, times small noise; then
    normalised per target with gold and scratch, as AHP shares are. Quality and gain are random win rates, except
    gold's quality: 0.5 (gold against itself), as released."""
    import pickle

    from taskonomy_db.published import PAPER_TO_DOMAIN

    code = {}
    for paper, domain in PAPER_TO_DOMAIN.items():
        code.setdefault(domain, paper)
    rng = np.random.default_rng(seed)
    group_of = {task: group for group, tasks in groups.items() for task in tasks}
    affinities, quality, gain = {}, {}, {}
    for target in sorted(t for t in group_of if t not in source_only):
        others = [g for g in groups if g != group_of[target]]
        base = {group_of[target]: 1.0} | dict(zip(rng.permutation(others), (0.3, 0.1, 0.03), strict=True))
        raw = {(s,): base[group_of[s]] * rng.uniform(0.9, 1.1) for s in group_of if s != target}
        raw |= {("gold",): 2.0, ("scratch",): 0.05, (target,): 0.5}
        total = sum(raw.values())
        for sources, value in raw.items():
            key = "__".join([code[s] for s in sources] + [code[target]])
            affinities[key] = value / total
            quality[key], gain[key] = float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.05, 0.95))
            if sources == ("gold",):
                quality[key] = 0.5
    for folder, name, scores in (
        ("affinities", f"all_affinities_{data}", affinities),
        ("winrates", f"wins_vs_task_{data}", quality),
        ("winrates", f"wins_vs_pixels_{data}", gain),
    ):
        (root / "results" / folder).mkdir(parents=True, exist_ok=True)
        (root / "results" / folder / f"{name}.pkl").write_bytes(pickle.dumps(scores, protocol=3))
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: the test machine has two cores shared with other work, and
    oversubscribed threads stall."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


requires_published = pytest.mark.skipif(
    not PUBLISHED.is_dir(), reason=f"the paper's published data is not at {PUBLISHED}"
)


def hand_edit(workspace: Workspace, section: str, key: str, value: object) -> None:
    """Set a value in tdb.toml as a user editing the file would: unchecked (update_settings refuses bad ones)."""
    path = workspace.root / "tdb.toml"
    settings = tomllib.loads(path.read_text())
    settings.setdefault(section, {})[key] = value
    path.write_text(dumps_toml(settings))
