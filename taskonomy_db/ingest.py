"""Register a dataset in a real Taskonomy form (full release, omnidata, legacy) in a workspace's `images` table.

Folder names resolve through layout.resolve_folder in every layout (release names, the legacy table, domains tdb
skips), so one building's files land in the same columns whichever form they came in. Everything is checked
before anything is written, and the write is one transaction: an ingest either fully lands or leaves the
workspace as it was. Re-ingesting the same root changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from taskonomy_db.atomic import atomic_path
from taskonomy_db.errors import IngestError
from taskonomy_db.generate_settings import MANIFEST
from taskonomy_db.layout import (
    DOMAINS,
    LAYOUTS,
    NONFIXATED_DOMAIN,
    Folder,
    check_file,
    detect_layout,
    is_one_building,
    parse_any_file_name,
    resolve_folder,
)
from taskonomy_db.settings import as_dict
from taskonomy_db.tuples import read_camera, sync_tuples
from taskonomy_db.workspace import Workspace

SPLITS = ("train", "val", "test")
SPLIT_SETS = ("tiny", "medium", "full", "fullplus")
NONFIXATED_SCHEMA = pa.schema(
    [
        ("data_root", pa.string()),
        ("building", pa.string()),
        ("point", pa.int32()),
        ("image_key", pa.string()),
        ("camera_uuid", pa.string()),
        ("pixel_x", pa.int32()),
        ("pixel_y", pa.int32()),
    ]
)


@dataclass
class IngestReport:
    data_root: str
    layout: str
    split_source: str
    domains: list[str]
    n_images: int
    n_new: int
    images_per_split: dict[str, int]
    missing_per_domain: dict[str, int]
    problems: list[tuple[str, str]] = field(default_factory=list)
    buildings_not_in_split: list[str] = field(default_factory=list)
    unused_domains: list[str] = field(default_factory=list)  # folders of domains tdb does not use, skipped
    n_nonfixated_views: int = 0  # rows of the legacy per-point nonfixated files, in nonfixated_views
    n_cameras: int = 0  # views whose camera file was read into `cameras`
    n_tuples: int = 0  # tuples of views the multi-image tasks read, over every ingested root


@dataclass
class _Scan:
    files: dict[tuple[str, int, int], dict[str, str]]  # (building, point, view) -> domain -> path
    nonfixated: list[dict]  # nonfixated_views rows, without data_root
    unused_domains: list[str]
    problems: list[tuple[str, str]]


def read_split_csv(path: Path) -> dict[str, str]:
    """Building -> split from a published split CSV (columns id,train,val,test; CR, LF or CRLF line ends)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise IngestError(f"cannot read split file {path}: {error}") from error
    rows = list(csv.reader(io.StringIO(text.replace("\r\n", "\n").replace("\r", "\n"))))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if header[:4] != ["id", "train", "val", "test"]:
        raise IngestError(f"split file {path}: expected columns id,train,val,test, found {','.join(header)}")
    splits: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        flags = [cell.strip() for cell in row[1:4]]
        chosen = [name for name, flag in zip(SPLITS, flags, strict=False) if flag == "1"]
        if len(chosen) != 1 or any(flag not in ("0", "1") for flag in flags):
            raise IngestError(f"split file {path}, line {number}: a building needs exactly one of train,val,test")
        splits[row[0].strip()] = chosen[0]
    return splits


def resolve_split_file(split_file: Path, split_set: str | None) -> tuple[Path, str]:
    """The CSV to read: `split_file` itself, or train_val_test_{set}.csv inside a directory."""
    if split_set is not None and split_set not in SPLIT_SETS:
        raise IngestError(f"unknown split set {split_set!r}; expected one of {', '.join(SPLIT_SETS)}")
    if split_file.is_dir():
        if split_set is None:
            raise IngestError(f"{split_file} is a directory: choose a set with --split-set")
        csv_path = split_file / f"train_val_test_{split_set}.csv"
    else:
        csv_path = split_file
        stem_set = csv_path.stem.removeprefix("train_val_test_")
        if split_set is not None and stem_set in SPLIT_SETS and stem_set != split_set:
            raise IngestError(f"--split-set {split_set} does not match the split file {csv_path.name}")
        split_set = split_set or (stem_set if stem_set in SPLIT_SETS else "custom")
    if not csv_path.is_file():
        raise IngestError(f"split file not found: {csv_path}")
    return csv_path, split_set


def _total(fractions: dict[str, float]) -> float:
    total = sum(fractions[s] for s in SPLITS)
    if total <= 0 or any(fractions[s] < 0 for s in SPLITS):
        raise IngestError("split fractions must be non-negative and sum to more than zero")
    return total


def deterministic_split(buildings: list[str], fractions: dict[str, float]) -> dict[str, str]:
    """Each building's split from a hash of its own name and the fractions alone.

    A building's hash is a point in [0, 1); the fractions cut that interval into train, val and test. Adding or
    removing buildings therefore never moves another building to another split, so a study that grows keeps its
    test set. The counts are binomial around the fractions: a few buildings may leave a split empty (ingest
    warns), which a split file (`balanced_split`, `write_split_csv`) avoids.
    """
    total = _total(fractions)
    split_of: dict[str, str] = {}
    for building in buildings:
        point = int.from_bytes(hashlib.sha256(building.encode()).digest()[:8], "big") / 2**64 * total
        if point < fractions["train"]:
            split_of[building] = "train"
        elif point < fractions["train"] + fractions["val"]:
            split_of[building] = "val"
        else:
            split_of[building] = "test"
    return split_of


def balanced_split(buildings: list[str], fractions: dict[str, float]) -> dict[str, str]:
    """Split a fixed set of buildings with exact counts, in the order of their names' hashes.

    Val and test get the floor of their share (at least one each with three or more buildings), train the rest.
    Unlike `deterministic_split`, adding a building can move others: write it to a split file once
    (`write_split_csv`) for a dataset whose buildings are all known, as the demo does for its generated data.
    """
    total = _total(fractions)
    ordered = sorted(buildings, key=lambda b: hashlib.sha256(b.encode()).hexdigest())
    n = len(ordered)
    n_test, n_val = int(n * fractions["test"] / total), int(n * fractions["val"] / total)
    if n >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    n_train = max(n - n_val - n_test, 0)
    assignment = ["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val)
    return dict(zip(ordered, assignment, strict=True))


def write_split_csv(path: Path, split_of: dict[str, str]) -> Path:
    """Write building -> split in the published form (id,train,val,test), whole or not at all."""
    flags = {split: ",".join("1" if split == s else "0" for s in SPLITS) for split in SPLITS}
    rows = ["id,train,val,test"] + [f"{building},{flags[split_of[building]]}" for building in sorted(split_of)]
    with atomic_path(path, error=IngestError) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    return path


def ingest_generated(workspace: Workspace, data_root: str | Path, split_file: Path | None = None) -> IngestReport:
    """Ingest a `tdb generate` dataset with each split given exactly its share of the buildings.

    The buildings are those the generator's manifest lists, split by `balanced_split` with the workspace's `[split]`
    fractions and written to `split_file` (default `split.csv` in the workspace), which records the split as the
    release's CSVs do and keeps it when the data is ingested again.
    """
    root = Path(data_root)
    try:
        buildings = json.loads((root / MANIFEST).read_text())["buildings"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IngestError(f"{root} has no readable {MANIFEST}: not a dataset written by `tdb generate`") from error
    path = split_file or workspace.path("split.csv")
    write_split_csv(path, balanced_split(buildings, as_dict(workspace.settings.split)))
    return ingest(workspace, root, split_file=path)


def _domain_folders(root: Path, layout: str) -> tuple[list[tuple[Path, str, Folder]], list[str], list[tuple[str, str]]]:
    """(folder, building, what it holds) for every folder of files to read, the unused domains skipped, problems."""
    found: list[tuple[Path, str, Folder]] = []
    unused: set[str] = set()
    problems: list[tuple[str, str]] = []

    def add(path: Path, building: str, folder: Folder) -> None:
        if folder.kind == "unused":
            unused.add(folder.name)
        elif folder.kind == "unknown":
            problems.append((str(path), f"unknown domain {folder.name!r} (not a release, legacy or unused domain)"))
        else:
            found.append((path, building, folder))

    if layout == "omnidata":
        for domain_dir in _subfolders(root):
            folder = resolve_folder(domain_dir.name)
            base = domain_dir / "taskonomy"
            if folder.kind in ("unused", "unknown"):
                add(domain_dir, "", folder)  # skipped or refused by its name alone, whatever it holds
            elif not base.is_dir():
                problems.append((str(domain_dir), "omnidata layout: no taskonomy/ folder inside"))
            else:
                for building_dir in _subfolders(base):
                    add(building_dir, building_dir.name, folder)
    elif layout == "legacy" and is_one_building(root):
        # The sample building is one building's folders at the root: the root's name is the building's.
        for domain_dir in _subfolders(root):
            add(domain_dir, root.resolve().name, resolve_folder(domain_dir.name))
    else:
        for building_dir in _subfolders(root):
            for domain_dir in _subfolders(building_dir):
                add(domain_dir, building_dir.name, resolve_folder(domain_dir.name))
    return found, sorted(unused), problems


def _scan(root: Path, layout: str) -> _Scan:
    found: dict[tuple[str, int, int], dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    nonfixated: list[dict] = []
    folders, unused, problems = _domain_folders(root, layout)
    candidates = [(f, building, folder) for path, building, folder in folders for f in _files(path)]
    for path, building, folder in tqdm(candidates, desc="checking files", unit="file", disable=None):
        checked = _check_name(path.name, folder)
        if isinstance(checked, str):
            problems.append((str(path), checked))
            continue
        point, view, ext = checked
        if view is None:
            rows = _nonfixated_rows(path, building, point)
            if isinstance(rows, str):
                problems.append((str(path), rows))
            else:
                nonfixated += rows
            continue
        problem = check_file(path, ext)
        if problem is not None:
            problems.append((str(path), problem))
            continue
        found[(building, point, view)][folder.domain].append(path)
    files: dict[tuple[str, int, int], dict[str, str]] = {}
    for key, by_domain in found.items():
        for domain, paths in by_domain.items():
            if len(paths) == 1:
                files.setdefault(key, {})[domain] = str(paths[0].resolve())
            else:  # a legacy and a release folder of one building: which is meant is not ours to guess
                names = ", ".join(str(p) for p in paths)
                problems += [(str(p), f"{len(paths)} {domain} files for one view: {names}") for p in paths]
    return _Scan(files, nonfixated, unused, problems)


def _read_cameras(scan: _Scan) -> dict[tuple[str, int, int], dict]:
    """The camera of every view with a camera file; a file that lacks a field the multi-image tasks need is a
    problem of the scan (named at ingest, or skipped and recorded with --skip-bad)."""
    paths = {key: files["point_info"] for key, files in scan.files.items() if "point_info" in files}
    with ThreadPoolExecutor(max_workers=8) as pool:
        read = dict(zip(paths, pool.map(read_camera, paths.values()), strict=True))
    cameras = {}
    for key in sorted(read):
        if isinstance(read[key], str):
            scan.problems.append((paths[key], read[key]))
        else:
            cameras[key] = read[key]
    return cameras


def _check_name(name: str, folder: Folder) -> str | tuple[int, int | None, str]:
    """(point, view or None for a per-point file, ext) of a file in its folder, or the problem with its name."""
    parsed = parse_any_file_name(name)
    if parsed is None:
        return "file name does not parse as point_P_view_V_domain_D.(png|json|npy)"
    point, view, domain, ext = parsed
    if domain not in folder.file_domains:
        named = f"domain {domain!r} in the name" if domain else "no domain in the name"
        return f"{named} but the file is in folder {folder.name!r}"
    if view is None and folder.kind != "nonfixated":
        return f"a per-point (view_all) file in folder {folder.name!r}, which holds one file per view"
    if view is not None and folder.kind == "nonfixated":
        return f"folder {folder.name!r} holds per-point files, point_P_view_all_domain_{NONFIXATED_DOMAIN}.json"
    return point, view, ext


def _nonfixated_rows(path: Path, building: str, point: int) -> list[dict] | str:
    """The rows of one legacy per-point nonfixated file (the views that see the point), or its problem."""
    try:
        views = json.loads(path.read_bytes())["views"]
        rows = [
            {
                "building": building,
                "point": point,
                "image_key": f"{building}/point_{int(seen['point_uuid'])}_view_{int(seen['view_id'])}",
                "camera_uuid": str(seen["camera_uuid"]),
                "pixel_x": int(seen["nonfixated_pixel_x"]),
                "pixel_y": int(seen["nonfixated_pixel_y"]),
            }
            for seen in views
        ]
    except OSError as error:
        return f"unreadable: {' '.join(str(error).split())}"
    except KeyError as error:
        return f"nonfixated file without the field {error.args[0]!r}"
    except (ValueError, TypeError) as error:  # not JSON, or a field of the wrong type
        return f"not a nonfixated file: {' '.join(str(error).split())}"
    return rows


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _files(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_file())


def ingest(
    workspace: Workspace,
    data_root: str | Path,
    layout: str = "auto",
    split_file: str | Path | None = None,
    split_set: str | None = None,
    skip_bad: bool = False,
) -> IngestReport:
    root = Path(data_root)
    if not root.is_dir():
        raise IngestError(f"data root not found or not a directory: {root}")
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise IngestError(f"unknown layout {layout!r}; expected auto, {', '.join(LAYOUTS)}")

    split_csv: tuple[Path, str] | None = None
    if split_file is not None:
        split_csv = resolve_split_file(Path(split_file), split_set)
    elif split_set is not None:
        raise IngestError("--split-set needs --split-file (a published split CSV or the folder holding them)")

    scan = _scan(root, layout)
    cameras = _read_cameras(scan)
    if scan.problems and not skip_bad:
        path, problem = scan.problems[0]
        more = f" (and {len(scan.problems) - 1} more problems)" if len(scan.problems) > 1 else ""
        raise IngestError(f"{path}: {problem}{more}; nothing was ingested (use --skip-bad to skip such files)")
    if not scan.files:
        raise IngestError(f"no Taskonomy files found under {root} (layout {layout})")

    buildings = sorted({key[0] for key in scan.files})
    if split_csv is not None:
        csv_path, chosen_set = split_csv
        split_of = read_split_csv(csv_path)
        used = [b for b in buildings if b in split_of]
        if not used:
            raise IngestError(
                f"split file {csv_path} names none of the {len(buildings)} ingested buildings "
                f"(e.g. {', '.join(buildings[:3])}); nothing was ingested"
            )
        split_source = f"{csv_path.resolve()} ({chosen_set})"
    else:
        split_of = deterministic_split(buildings, as_dict(workspace.settings.split))
        split_source = "deterministic by building hash"
    skipped_buildings = [b for b in buildings if b not in split_of]

    keys = sorted(k for k in scan.files if k[0] in split_of)
    domains = [d for d in DOMAINS if any(d in scan.files[k] for k in keys)]
    columns: dict[str, list] = {
        "image_key": [f"{b}/point_{p}_view_{v}" for b, p, v in keys],
        "building": [b for b, _, _ in keys],
        "point": [p for _, p, _ in keys],
        "view": [v for _, _, v in keys],
        "split": [split_of[b] for b, _, _ in keys],
    }
    for domain in DOMAINS:
        columns[f"{domain}_path"] = [scan.files[k].get(domain) for k in keys]
    schema = pa.schema(
        [("image_key", pa.string()), ("building", pa.string()), ("point", pa.int32()), ("view", pa.int32())]
        + [(name, pa.string()) for name in columns if name not in ("image_key", "building", "point", "view")]
    )
    new_images = pa.table(columns, schema=schema)
    path_columns = [f"{d}_path" for d in DOMAINS]
    data_root_text = str(root.resolve())
    nonfixated = pa.Table.from_pylist(
        [{"data_root": data_root_text, **row} for row in scan.nonfixated if row["building"] in split_of],
        schema=NONFIXATED_SCHEMA,
    )
    camera_rows = [
        {"data_root": data_root_text, "image_key": f"{b}/point_{p}_view_{v}", **cameras[b, p, v]}
        for b, p, v in keys
        if (b, p, v) in cameras
    ]

    with workspace.db.transaction() as con:
        con.register("new_images", new_images)
        n_new = con.execute("select count(*) from new_images anti join images using (image_key)").fetchone()[0]
        assignments = ", ".join(f"{c} = new_images.{c}" for c in ["split", *path_columns])
        con.execute(f"update images set {assignments} from new_images where images.image_key = new_images.image_key")
        insert_columns = ", ".join(["image_key", "building", "point", '"view"', "split", *path_columns])
        con.execute(
            f"insert into images ({insert_columns}) select {insert_columns} from new_images"
            ' anti join images using (image_key) order by building, point, "view"'
        )
        con.unregister("new_images")
        problems = [{"data_root": data_root_text, "path": path, "problem": problem} for path, problem in scan.problems]
        con.replace_rows("ingest_problems", problems, data_root=data_root_text)
        dataset = {
            "data_root": data_root_text,
            "layout": layout,
            "split_source": split_source,
            "domains": domains,
            "n_images": len(keys),
            "ingested_at": datetime.now(),
            "unused_domains": scan.unused_domains,
        }
        con.insert_one("datasets", dataset, replace=True)
        con.replace_rows("nonfixated_views", nonfixated, data_root=data_root_text)
        # A view read again under another root (a moved or copied dataset) keeps one camera, the latest, as
        # `images` keeps its latest paths: two would pair the view with itself.
        con.delete_in("cameras", "image_key", [r["image_key"] for r in camera_rows])
        con.replace_rows("cameras", camera_rows, data_root=data_root_text)
        n_tuples = sync_tuples(con, workspace.seed)

    missing = Counter(d for k in keys for d in domains if d not in scan.files[k])
    return IngestReport(
        data_root=data_root_text,
        layout=layout,
        split_source=split_source,
        domains=domains,
        n_images=len(keys),
        n_new=n_new,
        images_per_split={s: sum(1 for k in keys if split_of[k[0]] == s) for s in SPLITS},
        missing_per_domain=dict(sorted(missing.items())),
        problems=scan.problems,
        buildings_not_in_split=skipped_buildings,
        unused_domains=scan.unused_domains,
        n_nonfixated_views=nonfixated.num_rows,
        n_cameras=len(camera_rows),
        n_tuples=n_tuples,
    )
