"""`tdb estimate`: cheap transferability estimates of every source -> target from the stored representations, to
rank sources before paying for readouts, and to benchmark the estimators against measured affinities.

Every estimate reads the images of the transfer-training split (`[transfer] train_split`, val by default: no task
network trained on them), the first `n_images` by image_id, never a test image. LogME and ridge regress a target's
labels on a source's representation (flattened per image); CKA and RSA compare a source's representation with the
target's own encoder's. Targets for the regressions: a vector or distribution target as it is; a dense target's
label map pooled (mask-weighted) to GRID x GRID cells per channel (dense classes as their frequencies per cell),
then its leading COMPONENTS principal components; every target column z-scored. A superpixel id map (the
segment_unsup tasks) is no regression target: those get CKA and RSA only. Scores go to the `estimates` table;
the view `estimator_agreement` compares them with the measured first-order affinities.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from taskonomy_db.data import TaskData, image_size, load_task_data
from taskonomy_db.errors import TdbError
from taskonomy_db.estimators import (
    RidgeFolds,
    debiased_cka,
    feature_svd,
    linear_kernel,
    logme,
    ranked_dissimilarities,
    rsa,
    zscore,
)
from taskonomy_db.extract import read_representations
from taskonomy_db.locking import writer_lock
from taskonomy_db.names import RANDOM
from taskonomy_db.settings import ESTIMATORS, LABEL_ESTIMATORS
from taskonomy_db.tasks import TaskSpec, get_task, list_tasks
from taskonomy_db.transfer import extracted_encoders
from taskonomy_db.workspace import Workspace

DEFAULT_IMAGES = 256
GRID = 4
COMPONENTS = 8


class EstimateError(TdbError):
    """Bad input to `tdb estimate`: an unknown method, task or encoder, or too few images."""


@dataclass
class EstimateSummary:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    n_images: int = 0
    seconds: float = 0.0


def estimate(
    workspace: Workspace,
    methods: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    n_images: int = DEFAULT_IMAGES,
    progress: bool = True,
) -> EstimateSummary:
    """Score every (method, target, source) asked for and store the scores (replacing earlier ones)."""
    started = time.perf_counter()
    methods = _check_methods(methods)
    extracted = set(extracted_encoders(workspace))
    targets = _check_targets(targets, extracted)
    sources = _check_sources(sources, extracted)
    image_ids, buildings = _images(workspace, n_images, need_buildings=any(m == "ridge" for m in methods))
    summary = EstimateSummary(n_images=len(image_ids))
    with writer_lock(workspace.root, "estimate"):
        features = {
            name: _flat(read_representations(workspace, name, image_ids.tolist())[1])
            for name in tqdm(sorted(set(sources) | (set(targets) & extracted)), desc="reading representations",
                             unit="encoder", disable=None if progress else True)
        }  # fmt: skip
        size = image_size(workspace)
        cache = _Sides(features, buildings)
        for target in tqdm(targets, desc="estimating", unit="target", disable=None if progress else True):
            labelled = None
            if any(m in LABEL_ESTIMATORS for m in methods):
                labelled = _regression_target(workspace, get_task(target), image_ids, size)
            for method in methods:
                why = _why_not(method, target, labelled, extracted, buildings)
                if why:
                    summary.skipped.append({"method": method, "target": target, "reason": why})
                    continue
                for source in sources:
                    clock = time.perf_counter()
                    score, used = _score(method, cache, source, target, labelled)
                    summary.rows.append(
                        {"method": method, "target": target, "sources": [source], "score": score,
                         "n_images": used, "seconds": time.perf_counter() - clock, "estimated_at": datetime.now()}
                    )  # fmt: skip
        with workspace.run("estimate", {"methods": methods, "n_images": len(image_ids)}):
            with workspace.db.transaction() as con:
                for row in summary.rows:
                    con.delete("estimates", method=row["method"], target=row["target"], sources=row["sources"])
                con.insert("estimates", summary.rows)
    summary.seconds = time.perf_counter() - started
    return summary


class _Sides:
    """What each estimator needs of a representation alone (its SVD, ridge folds, kernel, ranked
    dissimilarities), computed once per representation and image rows, not once per target."""

    def __init__(self, features: dict[str, np.ndarray], buildings: np.ndarray) -> None:
        self.features, self.buildings = features, buildings
        self._made: dict[tuple[str, str, bytes], Any] = {}

    def get(self, kind: str, encoder: str, rows: np.ndarray | None = None) -> Any:
        key = (kind, encoder, b"" if rows is None else rows.tobytes())
        if key not in self._made:
            x = self.features[encoder] if rows is None else self.features[encoder][rows]
            if kind == "svd":
                self._made[key] = feature_svd(x)
            elif kind == "ridge":
                self._made[key] = RidgeFolds(x, self.buildings[rows])
            elif kind == "kernel":
                self._made[key] = linear_kernel(x)
            else:
                self._made[key] = ranked_dissimilarities(x)
        return self._made[key]


def _score(
    method: str, sides: _Sides, source: str, target: str, labelled: tuple[np.ndarray, np.ndarray] | None
) -> tuple[float, int]:
    if method in LABEL_ESTIMATORS:
        assert labelled is not None
        rows, values = labelled
        if method == "logme":
            return logme(None, values, svd=sides.get("svd", source, rows)), len(rows)
        return sides.get("ridge", source, rows).score(values), len(rows)
    n_images = len(sides.features[source])
    if method == "cka":
        return debiased_cka(None, None, (sides.get("kernel", source), sides.get("kernel", target))), n_images
    return rsa(None, None, (sides.get("ranks", source), sides.get("ranks", target))), n_images


def _why_not(
    method: str,
    target: str,
    labelled: tuple[np.ndarray, np.ndarray] | None,
    extracted: set[str],
    buildings: np.ndarray,
) -> str | None:
    if method in LABEL_ESTIMATORS and labelled is None:
        if get_task(target).n_views > 1:
            return "its labels belong to tuples of views, and the estimators read one image at a time"
        return "its label (a superpixel id map) is no regression target"
    if method in LABEL_ESTIMATORS and labelled is not None and labelled[1].shape[1] == 0:
        return "its labels do not vary over these images"
    if method == "ridge" and labelled is not None and len(set(buildings[labelled[0]].tolist())) < 2:
        return "its labelled images are all of one building, and ridge holds buildings out"
    if method not in LABEL_ESTIMATORS and target not in extracted:
        return f"{method} compares with the target's own encoder, which has no extracted representations"
    return None


def _flat(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(len(values), -1)


def _regression_target(
    workspace: Workspace, spec: TaskSpec, image_ids: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows of `image_ids` with a label, their target matrix, z-scored columns), or None for a task whose
    label is no regression target."""
    if spec.output_kind == "embedding" or spec.n_views > 1:
        return None
    data: TaskData = load_task_data(workspace, spec.name, None, image_ids=image_ids.tolist(), size=size, progress=False)
    if len(data) < 4:
        raise EstimateError(f"{spec.name} has a label on only {len(data)} of the {len(image_ids)} images")
    batch = data.batch(torch.arange(len(data)), train=False)
    targets, masks = batch.targets, batch.masks
    if spec.output_kind in ("vector", "distribution"):
        values = targets.double().numpy().reshape(len(data), -1)
    else:
        if spec.output_kind == "dense_classes":
            targets = F.one_hot(targets.long(), spec.out_channels).permute(0, 3, 1, 2)
        values = _leading_components(_pooled(targets.double(), masks), COMPONENTS)
    rows = np.searchsorted(image_ids, data.image_ids)
    # A column constant over the images (a class none of them shows) carries nothing, and LogME's evidence for a
    # constant target grows without bound with the source's size: left out.
    varying = values.std(axis=0) > 0
    return rows, zscore(values[:, varying])


def _pooled(maps: torch.Tensor, masks: torch.Tensor | None) -> np.ndarray:
    """(N, C, H, W) maps averaged over GRID x GRID cells, where the mask allows (a cell with no valid pixel: 0)."""
    weights = torch.ones_like(maps[:, :1]) if masks is None else masks.double().unsqueeze(1)
    total = F.adaptive_avg_pool2d(maps * weights, GRID)
    share = F.adaptive_avg_pool2d(weights, GRID)
    return torch.where(share > 0, total / share.clamp_min(1e-12), 0.0).reshape(len(maps), -1).numpy()


def _leading_components(values: np.ndarray, k: int) -> np.ndarray:
    centred = values - values.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    keep = min(k, int((s > 1e-9 * max(s[0], 1e-300)).sum()))
    return u[:, :keep] * s[:keep]


def _images(workspace: Workspace, n_images: int, need_buildings: bool) -> tuple[np.ndarray, np.ndarray]:
    split = workspace.settings.transfer.train_split
    rows = workspace.db.query(
        "select image_id, building from images where split = ? order by image_id limit ?", [split, n_images]
    )
    ids = np.asarray(rows.column("image_id").to_pylist(), dtype=np.int64)
    buildings = np.asarray(rows.column("building").to_pylist())
    if len(ids) < 4:
        raise EstimateError(f"the {split} split has {len(ids)} images; estimates need at least 4")
    if need_buildings and len(set(buildings.tolist())) < 2:
        raise EstimateError(
            f"ridge holds buildings out, but the first {len(ids)} {split} images are all of one building;"
            " read more with --images, or leave ridge out with --method"
        )
    return ids, buildings


def _check_methods(methods: Sequence[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(methods or ESTIMATORS))
    unknown = [m for m in chosen if m not in ESTIMATORS]
    if unknown:
        raise EstimateError(f"unknown method {unknown[0]!r}; the methods are {', '.join(ESTIMATORS)}")
    return chosen


def _check_targets(targets: Sequence[str] | None, extracted: set[str]) -> list[str]:
    if not targets:
        chosen = [t for t in list_tasks(role="target") if t in extracted]
        if not chosen:
            raise EstimateError("no target task has extracted representations; run `tdb extract` first")
        return chosen
    for name in targets:
        if not get_task(name).is_target:
            raise EstimateError(f"{name} is a source-only task; it cannot be a target")
    return list(dict.fromkeys(targets))


def _check_sources(sources: Sequence[str] | None, extracted: set[str]) -> list[str]:
    if not sources:
        chosen = sorted(extracted - {RANDOM})
        if not chosen:
            raise EstimateError("no encoder has extracted representations; run `tdb extract` first")
        return chosen
    missing = [s for s in sources if s not in extracted]
    if missing:
        raise EstimateError(f"source {missing[0]} has no extracted representations; run `tdb extract {missing[0]}`")
    return sorted(dict.fromkeys(sources))
