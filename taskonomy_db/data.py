"""Network inputs and decoded labels for a task, for a split or a list of image ids, from a per-workspace cache.

Decoding PNGs and resizing them dominates a small training run on a 2-core CPU, so every image is decoded once
per (what, size) into compact arrays (uint8 rgb, float16 maps, int32 segment ids) kept in
`cache/<size>px/<what>/shard-*.npz` under the workspace. A shard is written atomically and records each image's
source path, so a re-ingest that points an image at a different file decodes it again. Loading reads only the
shards that hold the requested images, so memory stays bounded by the request.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from taskonomy_db import encodings
from taskonomy_db.atomic import atomic_path
from taskonomy_db.errors import DataError
from taskonomy_db.tasks import Batch, TaskSpec, get_task, grey
from taskonomy_db.workspace import Workspace

SPLITS = ("train", "val", "test")
SHARD_IMAGES = 512


@dataclass
class TaskData:
    """Decoded images and labels of one task, row-aligned with `image_ids` (sorted ascending).

    For a multi-image task a row is a tuple of views: `image_ids` are tuple ids, `views` the image ids of each
    tuple's views in order, `rgb` holds every view of the row, and `labels` the tuple's label."""

    task: str
    image_ids: np.ndarray  # int32 [N]
    splits: np.ndarray  # str [N]
    rgb: torch.Tensor  # uint8 [N, 3, S, S], or [N, V, 3, S, S] for tuples of V views
    labels: torch.Tensor | None  # decoded stored label; None for labels derived from rgb
    masks: torch.Tensor | None  # bool [N, S, S] where the task has invalid pixels, else None
    views: np.ndarray | None = None  # int32 [N, V]: the image ids of each tuple's views

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.task)

    def subset(self, rows: np.ndarray | Sequence[int] | slice) -> TaskData:
        """The rows at these positions (not image ids)."""
        index = rows if isinstance(rows, slice) else torch.as_tensor(np.asarray(rows), dtype=torch.long)
        np_index = rows if isinstance(rows, slice) else np.asarray(rows)
        return TaskData(
            self.task,
            self.image_ids[np_index],
            self.splits[np_index],
            self.rgb[index],
            None if self.labels is None else self.labels[index],
            None if self.masks is None else self.masks[index],
            None if self.views is None else self.views[np_index],
        )

    def split(self, name: str) -> TaskData:
        return self.subset(np.flatnonzero(self.splits == name))

    def batch(self, rows: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> Batch:
        """Network input, target and mask for these row positions (see TaskSpec.make_batch).

        train=True also mirrors a random half of the images left-right, labels and masks with them, and jitters
        the photometry of tasks whose label allows it (TaskSpec.photometric)."""
        spec = self.spec
        rgb = self.rgb[rows].float() / 255.0
        labels = None if self.labels is None else _as_target(self.labels[rows])
        masks = None if self.masks is None else self.masks[rows]
        if train and spec.mirror:
            flip = torch.rand(len(rows), generator=generator) < 0.5
            rgb = torch.where(flip[:, None, None, None], rgb.flip(-1), rgb)
            if masks is not None:
                masks = torch.where(flip[:, None, None], masks.flip(-1), masks)
            if labels is not None and labels.dim() >= 3:  # maps, not class vectors
                shape = (-1,) + (1,) * (labels.dim() - 1)
                mirrored = labels.flip(-1)
                if spec.mirror_negates:
                    mirrored = mirrored.clone()
                    mirrored[:, list(spec.mirror_negates)] *= -1
                labels = torch.where(flip.view(shape), mirrored, labels)
        if train and spec.photometric:  # each view of a tuple on its own, as separate photographs
            rgb = jitter_photometry(rgb.flatten(0, -4), generator).view(rgb.shape)
        ids = torch.from_numpy(self.image_ids[rows.numpy()].astype(np.int64))
        return spec.make_batch(rgb, labels, masks, ids, train, generator)


# Ranges of the per-image photometric jitter: enough to span the generator's building palettes and light
# levels, small enough that images stay plausible.
BRIGHTNESS_JITTER = 0.25
CONTRAST_JITTER = 0.25
SATURATION_JITTER = 0.3
CHANNEL_GAIN_JITTER = 0.1


def jitter_photometry(rgb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random per-image brightness, contrast, saturation and colour balance of RGB (B,3,H,W) in [0, 1]."""
    n = len(rgb)

    def draw(spread: float, channels: int = 1) -> torch.Tensor:
        return 1 + spread * (2 * torch.rand(n, channels, 1, 1, generator=generator) - 1)

    brightness, contrast, saturation, gain = (
        draw(BRIGHTNESS_JITTER),
        draw(CONTRAST_JITTER),
        draw(SATURATION_JITTER),
        draw(CHANNEL_GAIN_JITTER, 3),
    )
    luma = grey(rgb)[:, :1]
    out = luma + saturation * (rgb - luma)
    mean = luma.mean((2, 3), keepdim=True)
    out = mean + contrast * (out - mean)
    return (out * brightness * gain).clamp(0, 1)


def _as_target(labels: torch.Tensor) -> torch.Tensor:
    return labels.float() if labels.dtype == torch.float16 else labels


# ---------------------------------------------------------------- public entry points


def image_rows(
    workspace: Workspace,
    domains: Sequence[str],
    splits: Sequence[str] | None = None,
    image_ids: Sequence[int] | None = None,
) -> list[dict]:
    """image_id, split and the path of each domain for the chosen images that have every one of `domains`."""
    columns = ", ".join(f"{d}_path" for d in domains)
    where = [f"{d}_path is not null" for d in domains]
    params: list = []
    if splits is not None:
        bad = [s for s in splits if s not in SPLITS]
        if bad:
            raise DataError(f"unknown split {bad[0]!r}; expected {', '.join(SPLITS)}")
        where.append("split in (select unnest(?))")
        params.append(list(splits))
    if image_ids is not None:
        where.append("image_id in (select unnest(?))")
        params.append([int(i) for i in image_ids])
    sql = f"select image_id, split, {columns} from images where {' and '.join(where)} order by image_id"
    return workspace.db.query(sql, params).to_pylist()


def load_task_data(
    workspace: Workspace,
    task: str,
    splits: Sequence[str] | str | None = SPLITS,
    image_ids: Sequence[int] | None = None,
    size: int | None = None,
    progress: bool = True,
) -> TaskData:
    """Inputs and labels of `task` for the images of `splits` (and/or exactly `image_ids`), at `size` pixels.

    Images that lack any file the task needs are left out; compare `TaskData.image_ids` with what you asked for.
    """
    spec = get_task(task)
    size = size or image_size(workspace)
    if isinstance(splits, str):
        splits = [splits]
    if spec.n_views > 1:
        return _load_tuples(workspace, spec, splits, image_ids, size, progress)
    rows = image_rows(workspace, spec.domains, splits, image_ids)
    if not rows:
        raise DataError(f"no images with {', '.join(spec.domains)} in splits {', '.join(splits or SPLITS)}")
    ids = np.array([r["image_id"] for r in rows], dtype=np.int32)
    rgb, _ = _cached(workspace, "rgb", rows, size, progress)
    labels = masks = None
    if spec.label_domain is not None:
        labels_np, masks_np = _cached(workspace, f"label-{spec.name}", rows, size, progress)
        labels = torch.from_numpy(labels_np)
        masks = None if masks_np is None else torch.from_numpy(masks_np)
    return TaskData(spec.name, ids, np.array([r["split"] for r in rows]), torch.from_numpy(rgb), labels, masks)


def _load_tuples(
    workspace: Workspace,
    spec: TaskSpec,
    splits: Sequence[str] | None,
    image_ids: Sequence[int] | None,
    size: int,
    progress: bool,
) -> TaskData:
    """The tuples of a multi-image task in `splits`, or those whose every view is among `image_ids`."""
    where, params = ["task = ?"], [spec.name]
    if splits is not None:
        where.append("split in (select unnest(?))")
        params.append(list(splits))
    if image_ids is not None:
        where.append("list_has_all(?, image_ids)")
        params.append([int(i) for i in image_ids])
    table = workspace.db.query(
        f"select tuple_id, split, image_ids, label from tuples where {' and '.join(where)} order by tuple_id", params
    )
    if table.num_rows == 0 and image_ids is not None:  # the caller says what an image set without tuples means
        return TaskData(
            spec.name,
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=str),
            torch.zeros((0, spec.n_views, 3, size, size), dtype=torch.uint8),
            torch.zeros(0, dtype=torch.long) if spec.output_kind == "classes" else torch.zeros(0, spec.out_channels),
            None,
            np.zeros((0, spec.n_views), dtype=np.int32),
        )
    if table.num_rows == 0:
        raise DataError(
            f"no {spec.name} tuples in splits {', '.join(splits or SPLITS)}: its tuples of views come from the"
            " camera files (point_info) read at ingest, and need views of one building that fixate the same point"
        )
    views = np.array(table.column("image_ids").to_pylist(), dtype=np.int32)
    distinct = np.unique(views)
    rows = image_rows(workspace, ("rgb",), None, distinct.tolist())
    if len(rows) != len(distinct):
        raise DataError(f"{spec.name}: {len(distinct) - len(rows)} views of its tuples have no rgb file")
    rgb, _ = _cached(workspace, "rgb", rows, size, progress)
    labels = torch.tensor(table.column("label").to_pylist(), dtype=torch.float32)
    if spec.output_kind == "classes":
        labels = labels[:, 0].long()
    return TaskData(
        spec.name,
        np.array(table.column("tuple_id").to_pylist(), dtype=np.int32),
        np.array(table.column("split").to_pylist()),
        torch.from_numpy(rgb)[torch.from_numpy(np.searchsorted(distinct, views))],
        labels,
        None,
        views,
    )


def load_rgb(workspace: Workspace, image_ids: Sequence[int], size: int, progress: bool = False) -> np.ndarray:
    """uint8 RGB (N, 3, size, size) for exactly these images, in the given order (extraction's input)."""
    rows = image_rows(workspace, ["rgb"], None, image_ids)
    by_id = {r["image_id"]: r for r in rows}
    missing = [i for i in image_ids if int(i) not in by_id]
    if missing:
        raise DataError(f"{len(missing)} images have no rgb file (e.g. image_id {missing[0]})")
    ordered = [by_id[int(i)] for i in image_ids]
    rgb, _ = _cached(workspace, "rgb", ordered, size, progress)
    return rgb


def image_size(workspace: Workspace) -> int:
    """[train] image_size: the side every command after training reads images at."""
    return int(workspace.settings.train.image_size)


# ---------------------------------------------------------------- decoding one image


def _decode(what: str, row: dict, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One image's cached arrays: ('rgb' -> uint8 CHW) or ('label-<task>' -> label, mask), C-contiguous.

    C order matters for more than speed: an image already at `size` would otherwise keep its HWC strides, a
    batch of such images reaches the convolutions channels-last, and oneDNN's channels-last kernels round
    differently, so a run that decoded its data would train different weights from one that read the cache."""
    value, valid = _decode_any(what, row, size)
    return np.ascontiguousarray(value), None if valid is None else np.ascontiguousarray(valid)


def _decode_or_name_the_file(what: str, row: dict, size: int, label: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        return _decode(what, row, size)
    except (OSError, ValueError) as error:
        files = _path_key(row, what).replace("|", " or ")
        raise DataError(f"cannot decode {label} from {files}: {error}") from error


def _decode_any(what: str, row: dict, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    if what == "rgb":
        rgb = encodings.read_png(row["rgb_path"])
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        value, _ = _resize_mean(np.moveaxis(rgb[..., :3], -1, 0).astype(np.float32), None, size)
        return np.clip(np.rint(value), 0, 255).astype(np.uint8), None
    spec = get_task(what.removeprefix("label-"))
    label, valid = spec.decode_label(encodings.read_domain(row[f"{spec.label_domain}_path"]))
    if spec.masked_by_depth:
        _, depth_valid = encodings.decode_depth(encodings.read_png(row["depth_zbuffer_path"]))
        valid = depth_valid if valid is None else valid & depth_valid
    if spec.output_kind in ("distribution", "classes", "vector"):
        return label.astype(np.float32), None
    if spec.label_is_categorical:
        return _resize_nearest(label, size).astype(np.int32), None if valid is None else _resize_nearest(valid, size)
    value, valid = _resize_mean(label.astype(np.float32), valid, size)
    return value.astype(np.float16), valid


def _resize_mean(value: np.ndarray, valid: np.ndarray | None, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Area-average (C,H,W) to (C,size,size), averaging only valid pixels; a pixel stays valid when at least
    half of its source area is."""
    height, width = value.shape[-2:]
    if (height, width) == (size, size):
        return value, valid
    weight = np.ones((height, width), np.float32) if valid is None else valid.astype(np.float32)
    if height % size == 0 and width % size == 0:
        fy, fx = height // size, width // size

        def pool(a: np.ndarray) -> np.ndarray:
            return a.reshape(*a.shape[:-2], size, fy, size, fx).mean(axis=(-3, -1))
    else:
        from skimage.transform import resize

        def pool(a: np.ndarray) -> np.ndarray:
            out_shape = (*a.shape[:-2], size, size)
            return resize(a, out_shape, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)

    total = pool(value * weight)
    coverage = pool(weight)
    out = total / np.maximum(coverage, 1e-6)
    return out, None if valid is None else coverage >= 0.5


def _resize_nearest(array: np.ndarray, size: int) -> np.ndarray:
    height, width = array.shape[-2:]
    if (height, width) == (size, size):
        return array
    rows = ((np.arange(size) + 0.5) * height / size).astype(int)
    cols = ((np.arange(size) + 0.5) * width / size).astype(int)
    return array[..., rows[:, None], cols[None, :]]


# ---------------------------------------------------------------- the shard cache


def _cache_dir(workspace: Workspace, what: str, size: int) -> Path:
    if what != "rgb":  # a new label version decodes again; version 1 keeps the folder it had before versions
        version = get_task(what.removeprefix("label-")).label_version
        what = what if version == 1 else f"{what}.v{version}"
    return workspace.path("cache", f"{size}px", what)


def _path_key(row: dict, what: str) -> str:
    """The files an entry was decoded from, so a re-pointed image is decoded again."""
    if what == "rgb":
        return row["rgb_path"]
    spec = get_task(what.removeprefix("label-"))
    paths = [row[f"{spec.label_domain}_path"]]
    if spec.masked_by_depth:
        paths.append(row["depth_zbuffer_path"])
    return "|".join(paths)


def _cached(
    workspace: Workspace, what: str, rows: list[dict], size: int, progress: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Stacked arrays (and masks) for `rows`, decoding and caching whatever the cache does not hold yet."""
    folder = _cache_dir(workspace, what, size)
    wanted = {int(r["image_id"]): _path_key(r, what) for r in rows}
    found: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    if folder.is_dir():
        for shard in sorted(folder.glob("shard-*.npz")):
            with np.load(shard, allow_pickle=False) as data:
                shard_ids = data["image_ids"]
                shard_paths = data["paths"]
                hits = [
                    k
                    for k, (i, p) in enumerate(zip(shard_ids.tolist(), shard_paths.tolist(), strict=True))
                    if wanted.get(i) == p and i not in found
                ]
                if not hits:
                    continue
                values = data["values"]
                valids = data["valid"] if "valid" in data.files else None
                for k in hits:
                    found[int(shard_ids[k])] = (values[k], None if valids is None else valids[k])
    todo = [r for r in rows if int(r["image_id"]) not in found]
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        label = what if what == "rgb" else what.removeprefix("label-") + " labels"
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            for start in tqdm(
                range(0, len(todo), SHARD_IMAGES),
                desc=f"decoding {label} at {size}px",
                unit="shard",
                disable=None if progress else True,
            ):
                chunk = todo[start : start + SHARD_IMAGES]
                decoded = list(pool.map(lambda r: _decode_or_name_the_file(what, r, size, label), chunk))
                for r, item in zip(chunk, decoded, strict=True):
                    found[int(r["image_id"])] = item
                _write_shard(folder, [int(r["image_id"]) for r in chunk], [_path_key(r, what) for r in chunk], decoded)
    ordered = [found[int(r["image_id"])] for r in rows]
    values = np.stack([v for v, _ in ordered])
    masks = None if ordered[0][1] is None else np.stack([m for _, m in ordered])
    return values, masks


def _write_shard(
    folder: Path, ids: list[int], paths: list[str], decoded: list[tuple[np.ndarray, np.ndarray | None]]
) -> None:
    arrays = {
        "image_ids": np.array(ids, dtype=np.int32),
        "paths": np.array(paths),
        "values": np.stack([v for v, _ in decoded]),
    }
    if decoded[0][1] is not None:
        arrays["valid"] = np.stack([m for _, m in decoded])
    digest = hashlib.sha256(("\0".join(f"{i}:{p}" for i, p in zip(ids, paths, strict=True))).encode()).hexdigest()
    final = folder / f"shard-{digest[:16]}.npz"
    with atomic_path(final) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)
