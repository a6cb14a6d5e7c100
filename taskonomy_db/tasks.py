"""The task registry: every Taskonomy task as data, read by training, export, extraction, transfers and reports.

One `TaskSpec` per task says what the network sees, what it predicts, how the stored label is decoded from the
task's file in the `images` table (labels.py), the per-image loss (losses.py, masked where the label is invalid,
as in the original taskbank), the baseline a trivial predictor achieves, and the task's group and roles.

Conventions every consumer relies on:

- Labels are decoded once (`decode_label`) into compact arrays at the training size: dense maps as (C, H, W)
  float, segmentations as (H, W) integers, distributions as (K,) float. Masks are (H, W) booleans.
- Every encoder sees clean RGB in [0, 1], NCHW. Input kinds that are a fixed function of the image (grey for
  colorization) are part of the network graph, so an exported encoder needs no task-specific preprocessing.
  Stochastic corruptions (noise, a masked hole, shuffled tiles) and the pixels the segmentation metric loss
  samples are drawn by `make_batch`: from the batch generator while training, and with a per-image seed at
  evaluation so every image's test loss is reproducible.
- `loss(prediction, target, mask)` returns one loss per image (shape [B]); `mask` may be None. For the
  segmentation embeddings the mask holds the sampled pixels.
- `label_version` counts changes to a task's label or loss: it is part of the keys of stored gold results, of
  the decoded-label cache and (through `label_versions_digest`) of transfers, so nothing measured with an older
  label is reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taskonomy_db import encodings, labels
from taskonomy_db.errors import UnknownTaskError
from taskonomy_db.losses import LOSSES, SEGMENT_EMBEDDING_DIM, SEGMENT_SAMPLED_PIXELS

GROUPS = ("3D", "2D", "geometric", "semantic")
INPUT_KINDS = ("rgb", "grey", "noisy_rgb", "masked_rgb", "tiles")
# dense: (C,H,W) regression; dense_classes: per-pixel logits; embedding: per-pixel vectors for a metric loss;
# distribution: (K,) logits against a soft label; classes: (K,) logits against one class index; vector: (K,)
# regression (room layout, vanishing points).
DERIVED_LABELS = ("rgb", "chroma", "permutation", "tuple")
OUTPUT_KINDS = ("dense", "dense_classes", "embedding", "distribution", "classes", "vector")

DENOISING_SIGMA = 0.1
JIGSAW_GRID = 3
JIGSAW_PERMUTATIONS = 100


@dataclass(frozen=True)
class Batch:
    """What one training or evaluation step consumes: network input, target and validity mask (or None)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task. Frozen: the registry is data, and every consumer reads the same entry; registered by keyword,
    so each registration says what every value is."""

    name: str
    group: str
    input_kind: str
    output_kind: str
    out_channels: int
    # The `images` column (without `_path`) the label is decoded from; None when it is derived from rgb.
    label_domain: str | None
    loss_name: str
    # 3D tasks ignore pixels without a surface (depth_zbuffer = 65535), like the original's depth masks.
    masked_by_depth: bool = False
    is_source: bool = True
    is_target: bool = True
    description: str = ""
    # Label channels whose sign flips when the image is mirrored left-right (the x of a normal); training
    # mirrors images at random, the one augmentation that is label-preserving for every task here.
    mirror_negates: tuple[int, ...] = ()
    # False where mirroring changes the label in a way no channel sign captures (camera-frame geometry vectors).
    mirror: bool = True
    # Training jitters brightness, contrast and colour balance, so a network does not key on one building's
    # palette (the test buildings have their own). Labels of geometry and semantics do not depend on it, and
    # labels derived from rgb (autoencoding, colorization, ...) are computed from the jittered image. False where
    # the stored label was computed from the rgb pixels themselves (edges, keypoints, superpixels).
    photometric: bool = True
    label_version: int = 1
    # A label with no file (label_domain None), computed from the image: "rgb" (reconstruct the clean image),
    # "chroma" (its YUV chroma) or "permutation" (the jigsaw's tile order, drawn with the input); or "tuple", the
    # label of a tuple of views in the `tuples` table (the multi-image tasks, computed from their cameras).
    derived_label: str | None = None
    # Images the network reads at once through one shared encoder (siamese): 2 or 3 for the multi-image tasks,
    # whose items are tuples (taskonomy_db.tuples) rather than images.
    n_views: int = 1
    decoder: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]] | None = field(
        default=None, repr=False, compare=False
    )

    # -- labels -----------------------------------------------------------------------------------------------

    @property
    def domains(self) -> tuple[str, ...]:
        """Every `images` domain this task reads: rgb, its label file, and depth for the mask."""
        needed = ["rgb"]
        if self.label_domain is not None:
            needed.append(self.label_domain)
        if self.masked_by_depth and "depth_zbuffer" not in needed:
            needed.append("depth_zbuffer")
        return tuple(needed)

    @property
    def label_is_categorical(self) -> bool:
        """Integer labels: resized by nearest neighbour and stored as integers."""
        return self.output_kind in ("dense_classes", "embedding")

    def decode_label(self, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """A stored label file's array -> (label, validity mask or None) at the file's own resolution."""
        if self.decoder is None:
            raise ValueError(f"task {self.name} derives its label from rgb; it has no stored label")
        return self.decoder(stored)

    # -- batches ----------------------------------------------------------------------------------------------

    def make_batch(
        self,
        rgb: torch.Tensor,
        label: torch.Tensor | None,
        mask: torch.Tensor | None,
        image_ids: torch.Tensor,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> Batch:
        """Network input and target for images given as float RGB (B,3,H,W) in [0, 1] plus their decoded labels.

        train=True draws corruptions from `generator`; train=False seeds them by image_id (reproducible losses).
        """
        kind = self.input_kind
        if kind in ("rgb", "grey"):
            inputs = rgb
        elif kind == "noisy_rgb":
            noise = _noise(rgb.shape, image_ids, train, generator)
            inputs = (rgb + DENOISING_SIGMA * noise).clamp(0, 1)
        elif kind == "masked_rgb":
            inputs = rgb.clone()
            size = rgb.shape[-1]
            lo, hi = size // 4, size - size // 4
            inputs[:, :, lo:hi, lo:hi] = 0.5
        elif kind == "tiles":
            perm_index = _jigsaw_choice(image_ids, train, generator)
            inputs = shuffle_tiles(rgb, perm_index)
            return Batch(inputs, perm_index, None)
        else:  # pragma: no cover - guarded by the registry's validation
            raise ValueError(kind)

        if self.label_domain is not None or self.derived_label == "tuple":
            targets = label
        elif self.derived_label == "chroma":
            targets = chroma(rgb)
        else:  # "rgb": reconstruct the clean image
            targets = rgb
        if self.output_kind == "embedding":
            mask = sample_pixels(targets.shape, image_ids, train, generator)
        return Batch(inputs, targets, mask)

    # -- loss and baseline ------------------------------------------------------------------------------------

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image loss, shape [B]. Images whose every pixel is masked get loss 0."""
        return LOSSES[self.loss_name](prediction, target, mask)

    def baseline_prediction(self, targets: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """The trivial predictor, fitted on training targets: the per-pixel training mean for regression, the
        training-set class frequencies (as logits) for classification, a constant embedding for the metric loss.
        Returned with a leading batch axis of 1, broadcastable against a batch of predictions."""
        kind = self.output_kind
        if kind == "vector":
            return targets.float().mean(0, keepdim=True)
        if kind == "dense":
            if masks is None:
                return targets.float().mean(0, keepdim=True)
            weights = masks.float().unsqueeze(1)
            total = (targets.float() * weights).sum(0, keepdim=True)
            return total / weights.sum(0, keepdim=True).clamp_min(1)
        if kind == "distribution":
            return targets.float().mean(0, keepdim=True).clamp_min(1e-6).log()
        if kind == "classes":
            counts = torch.bincount(targets.long(), minlength=self.out_channels).float() + 1
            return (counts / counts.sum()).log().unsqueeze(0)
        if kind == "dense_classes":
            onehot = F.one_hot(targets.long(), self.out_channels).permute(0, 3, 1, 2).float()
            if masks is not None:
                onehot = onehot * masks.float().unsqueeze(1)
            counts = onehot.sum(0, keepdim=True) + 1
            return (counts / counts.sum(1, keepdim=True)).log()
        if kind == "embedding":
            return torch.zeros(1, self.out_channels, *targets.shape[-2:])
        raise ValueError(kind)  # pragma: no cover

    def as_row(self) -> dict[str, Any]:
        """The task's row in the `tasks` table."""
        return {
            "task": self.name,
            "task_group": self.group,
            "input_kind": self.input_kind,
            "output_kind": self.output_kind,
            "loss": self.loss_name,
            "is_source": self.is_source,
            "is_target": self.is_target,
            "description": self.description,
            "n_views": self.n_views,
        }


# ---------------------------------------------------------------- derived inputs and targets


def chroma(rgb: torch.Tensor) -> torch.Tensor:
    """The two chroma channels (U, V of YUV) colorization predicts from the luminance alone."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([0.492 * (b - luma), 0.877 * (r - luma)], dim=1)


LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def grey(rgb: torch.Tensor) -> torch.Tensor:
    """Luminance replicated to three channels: colorization's input, computed inside its network graph."""
    red, green, blue = LUMA_WEIGHTS
    luma = red * rgb[:, 0:1] + green * rgb[:, 1:2] + blue * rgb[:, 2:3]
    return luma.expand(-1, 3, -1, -1)


def _per_image_generators(image_ids: torch.Tensor, salt: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(i) * 1_000_003 + salt) for i in image_ids.tolist()]


def _draw(
    sampler: Callable[..., torch.Tensor],
    shape: torch.Size | tuple[int, ...],
    image_ids: torch.Tensor,
    train: bool,
    generator: torch.Generator | None,
    salt: int,
) -> torch.Tensor:
    """A batch of random values: from `generator` while training, else from a generator seeded per image."""
    if train:
        return sampler(shape, generator=generator)
    per_image = [sampler(tuple(shape[1:]), generator=g) for g in _per_image_generators(image_ids, salt)]
    return torch.stack(per_image) if per_image else torch.zeros(tuple(shape))


def _noise(shape: torch.Size, image_ids: torch.Tensor, train: bool, generator: torch.Generator | None) -> torch.Tensor:
    return _draw(torch.randn, shape, image_ids, train, generator, 1)


def sample_pixels(
    shape: torch.Size | tuple[int, ...], image_ids: torch.Tensor, train: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """(B, H, W) masks of SEGMENT_SAMPLED_PIXELS distinct pixels per image, uniformly at random (the original's
    segment_pixel_sample: random.sample without replacement), or every pixel when the image has fewer."""
    batch, height, width = shape[0], shape[-2], shape[-1]
    scores = _draw(torch.rand, (batch, height * width), image_ids, train, generator, 3)
    chosen = scores.topk(min(SEGMENT_SAMPLED_PIXELS, height * width), dim=1).indices
    mask = torch.zeros(batch, height * width, dtype=torch.bool).scatter_(1, chosen, True)
    return mask.view(batch, height, width)


def _jigsaw_choice(image_ids: torch.Tensor, train: bool, generator: torch.Generator | None) -> torch.Tensor:
    if train:
        return torch.randint(JIGSAW_PERMUTATIONS, (len(image_ids),), generator=generator)
    choices = [torch.randint(JIGSAW_PERMUTATIONS, (1,), generator=g) for g in _per_image_generators(image_ids, 2)]
    return torch.cat(choices) if choices else torch.zeros(0, dtype=torch.long)


@cache
def jigsaw_permutations() -> torch.Tensor:
    """The 100 fixed permutations of the 3x3 tiles, (100, 9), chosen greedily for large Hamming distance
    between each other (as in Noroozi & Favaro, which the original jigsaw task followed)."""
    rng = np.random.default_rng(2018)
    n_tiles = JIGSAW_GRID * JIGSAW_GRID
    candidates = np.array([rng.permutation(n_tiles) for _ in range(2000)])
    chosen = [np.arange(n_tiles)]
    distance = (candidates != chosen[0]).sum(1)
    while len(chosen) < JIGSAW_PERMUTATIONS:
        best = int(distance.argmax())
        chosen.append(candidates[best])
        distance = np.minimum(distance, (candidates != candidates[best]).sum(1))
    return torch.from_numpy(np.stack(chosen)).long()


def shuffle_tiles(rgb: torch.Tensor, perm_index: torch.Tensor) -> torch.Tensor:
    """Cut each image's central 3x3 grid into tiles and reassemble them in the order of its permutation.

    The original jigsaw network was siamese over 9 tiles; reassembling the tiles into one image keeps one encoder
    architecture for every task, and the encoder still has to recognise which tile belongs where.
    """
    size = rgb.shape[-1]
    tile = size // JIGSAW_GRID
    out = rgb.clone()
    perms = jigsaw_permutations()[perm_index]
    tiles = [
        rgb[:, :, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
        for r in range(JIGSAW_GRID)
        for c in range(JIGSAW_GRID)
    ]
    stacked = torch.stack(tiles, dim=1)  # (B, 9, 3, t, t)
    shuffled = stacked[torch.arange(len(rgb)).unsqueeze(1), perms]
    for position in range(JIGSAW_GRID * JIGSAW_GRID):
        r, c = divmod(position, JIGSAW_GRID)
        out[:, :, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = shuffled[:, position]
    return out


# ---------------------------------------------------------------- the registry

_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to the registry; refuses a duplicate name or an unknown group, input or output kind."""
    if spec.name in _REGISTRY:
        raise ValueError(f"task {spec.name!r} is already registered")
    if spec.group not in GROUPS:
        raise ValueError(f"task {spec.name}: group {spec.group!r} is not one of {GROUPS}")
    if spec.input_kind not in INPUT_KINDS or spec.output_kind not in OUTPUT_KINDS:
        raise ValueError(f"task {spec.name}: unknown input kind {spec.input_kind!r} or output {spec.output_kind!r}")
    if spec.loss_name not in LOSSES:
        raise ValueError(f"task {spec.name}: unknown loss {spec.loss_name!r}")
    if (spec.label_domain is None) != (spec.decoder is None):
        raise ValueError(f"task {spec.name}: a stored label needs a decoder, and only a stored label has one")
    if (spec.label_domain is None) != (spec.derived_label in DERIVED_LABELS):
        raise ValueError(f"task {spec.name}: a label without a file is derived, one of {DERIVED_LABELS}")
    if (spec.n_views > 1) != (spec.derived_label == "tuple") or spec.n_views > 1 and spec.input_kind != "rgb":
        raise ValueError(f"task {spec.name}: exactly the multi-image tasks read rgb tuples with a tuple's label")
    _REGISTRY[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise UnknownTaskError(f"unknown task {name!r}; registered tasks: {known}") from None


def list_tasks(group: str | None = None, role: str | None = None) -> list[str]:
    """Registered task names in registry order; optionally only one group, or role 'source' / 'target'."""
    names = []
    for spec in _REGISTRY.values():
        if group is not None and spec.group != group:
            continue
        if role == "source" and not spec.is_source or role == "target" and not spec.is_target:
            continue
        names.append(spec.name)
    return names


def resolve_tasks(names: tuple[str, ...] | list[str] | None) -> list[TaskSpec]:
    """The named tasks (all registered ones when none are named); an unknown name is an UnknownTaskError."""
    if not names:
        return list(_REGISTRY.values())
    return [get_task(n) for n in dict.fromkeys(names)]


def _dense(name: str, loss_name: str = "l1", **data: Any) -> None:
    """A dense regression task read from its own label file (`name`), as the original stored them."""
    register_task(
        TaskSpec(name=name, input_kind="rgb", output_kind="dense", label_domain=name, loss_name=loss_name, **data)
    )


_DEPTH = "log(1+units)/log(2^16)"
_dense(
    "depth_zbuffer",
    group="3D",
    out_channels=1,
    masked_by_depth=True,
    decoder=labels.decode_depth,
    description=f"z-buffer depth as {_DEPTH}, L1",
)
_dense(
    "depth_euclidean",
    group="3D",
    out_channels=1,
    masked_by_depth=True,
    decoder=labels.decode_depth,
    description=f"ray depth as {_DEPTH}, L1",
)
_dense(
    "normal",
    group="3D",
    out_channels=3,
    masked_by_depth=True,
    decoder=labels.decode_normal,
    mirror_negates=(0,),
    description="camera-frame surface normals, L1",
)
_dense(
    "reshading",
    group="3D",
    out_channels=1,
    masked_by_depth=True,
    decoder=labels.decode_reshading,
    description="shading of the untextured geometry, L1",
)
_dense(
    "principal_curvature",
    group="3D",
    out_channels=2,
    masked_by_depth=True,
    decoder=labels.decode_curvature,
    loss_name="l2",
    label_version=2,
    description="k1, k2 in stored units standardised by the original's fixed means and stds, L2",
)
_dense(
    "edge_occlusion",
    group="3D",
    out_channels=1,
    masked_by_depth=True,
    decoder=labels.decode_edge_occlusion,
    label_version=2,
    description="depth-discontinuity edges rescaled to [-1, 1] and Gaussian-blurred (sigma 4 px at 256 px), L1",
)
_dense(
    "keypoints3d",
    group="3D",
    out_channels=1,
    masked_by_depth=True,
    decoder=labels.decode_response,
    description="NARF-like keypoint response on depth, L1",
)
# Computed from the rgb pixels themselves: a photometric jitter of the input would not move the stored label.
_dense(
    "edge_texture",
    group="2D",
    out_channels=1,
    decoder=labels.decode_response,
    photometric=False,
    description="Canny edges of the rgb image, L1",
)
_dense(
    "keypoints2d",
    group="2D",
    out_channels=1,
    decoder=labels.decode_response,
    photometric=False,
    description="SURF-like keypoint response, L1",
)

_SEGMENT_TEXT = (
    f"Felzenszwalb superpixels; the original's metric loss over all pairs of {SEGMENT_SAMPLED_PIXELS} sampled"
    " pixels' embeddings"
)
for _name, _group, _photometric in (("segment_unsup2d", "2D", False), ("segment_unsup25d", "3D", True)):
    register_task(
        TaskSpec(name=_name, group=_group, input_kind="rgb", output_kind="embedding",
                 out_channels=SEGMENT_EMBEDDING_DIM, label_domain=_name, loss_name="segment_metric",
                 photometric=_photometric, label_version=2, decoder=labels.decode_unsup, description=_SEGMENT_TEXT)
    )  # fmt: skip

register_task(
    TaskSpec(name="segment_semantic", group="semantic", input_kind="rgb", output_kind="dense_classes",
             out_channels=len(encodings.SEMANTIC_CLASSES), label_domain="segment_semantic",
             loss_name="dense_cross_entropy", label_version=2, decoder=labels.decode_semantic,
             description="per-pixel object class; softmax cross-entropy weighted by the class prior factor, "
             "label 0 (uncertain) masked")
)  # fmt: skip
for _name, _classes, _what in (
    ("class_object", encodings.OBJECT_CLASSES, "object classes"),
    ("class_scene", encodings.SCENE_CLASSES, "scene (room) types"),
):
    register_task(
        TaskSpec(name=_name, group="semantic", input_kind="rgb", output_kind="distribution",
                 out_channels=len(_classes), label_domain=_name, loss_name="soft_cross_entropy",
                 decoder=labels.decode_distribution,
                 description=f"distribution over {_what}; cross-entropy against the soft label")
    )  # fmt: skip

for _name, _decoder, _text in (
    (
        "room_layout",
        labels.room_layout,
        "room box (centre, rotation, size) for an x-major canonical world, standardised, from the camera JSON, L2",
    ),
    ("vanishing_point", labels.vanishing_point, "the canonical world's 3 axes in the camera frame, L2"),
):
    register_task(
        TaskSpec(name=_name, group="geometric", input_kind="rgb", output_kind="vector", out_channels=9,
                 label_domain="point_info", loss_name="l2", mirror=False, label_version=2, decoder=_decoder,
                 description=_text)
    )  # fmt: skip

# Labels derived from the rgb image itself (no label file): derived_label says which.
register_task(
    TaskSpec(name="autoencoding", group="2D", input_kind="rgb", output_kind="dense", out_channels=3,
             label_domain=None, loss_name="l1", derived_label="rgb", description="reconstruct rgb, L1")
)  # fmt: skip
register_task(
    TaskSpec(name="denoising", group="2D", input_kind="noisy_rgb", output_kind="dense", out_channels=3,
             label_domain=None, loss_name="l1", derived_label="rgb",
             description=f"clean rgb from rgb + N(0, {DENOISING_SIGMA}^2) noise, L1 (the paper's tree puts it apart)")
)  # fmt: skip
register_task(
    TaskSpec(name="colorization", group="2D", input_kind="grey", output_kind="dense", out_channels=2,
             label_domain=None, loss_name="l1", derived_label="chroma", is_target=False,
             description="YUV chroma from luminance, L1; source-only as in the paper")
)  # fmt: skip
register_task(
    TaskSpec(name="inpainting", group="2D", input_kind="masked_rgb", output_kind="dense", out_channels=3,
             label_domain=None, loss_name="l1", derived_label="rgb", is_target=False,
             description="whole rgb from rgb with its central half-size square greyed out (inpainting_whole), L1; "
             "source-only as in the paper")
)  # fmt: skip
register_task(
    TaskSpec(name="jigsaw", group="geometric", input_kind="tiles", output_kind="classes",
             out_channels=JIGSAW_PERMUTATIONS, label_domain=None, loss_name="cross_entropy",
             derived_label="permutation", is_target=False,
             description="which of 100 fixed permutations shuffled the 3x3 tiles; softmax; source-only as in the paper")
)  # fmt: skip

# The multi-image tasks (siamese, as the original's configs fix_pose, non_fixated_pose, ego_motion, point_match):
# the label of each tuple of views comes from their cameras (taskonomy_db.tuples). Mirroring a view would change
# the camera geometry the label describes, so they train without it.
_POSE = "standardised as the original's calculate_relative_camera_pose; Euclidean distance (not squared)"
for _name, _views, _numbers, _text in (
    ("fixated_pose", 2, 6, "relative camera pose of two views fixating the same point"),
    ("nonfixated_pose", 2, 6, "relative camera pose of two views of different points that see a common point"),
    ("egomotion", 3, 18, "pairwise relative poses of three views fixating the same point"),
):
    register_task(
        TaskSpec(name=_name, group="geometric", input_kind="rgb", output_kind="vector", out_channels=_numbers,
                 label_domain=None, loss_name="pose_distance", mirror=False, derived_label="tuple", n_views=_views,
                 description=f"{_text}: rotation (static XYZ Euler) and translation, {_POSE}")
    )  # fmt: skip
register_task(
    TaskSpec(name="point_matching", group="geometric", input_kind="rgb", output_kind="classes", out_channels=2,
             label_domain=None, loss_name="cross_entropy", mirror=False, derived_label="tuple", n_views=2,
             description="whether the centres of two views show the same 3D point (they fixate the same point); "
             "balanced, softmax")
)  # fmt: skip


def label_versions_digest() -> str:
    """A digest of every registered task's label version: part of a transfer's key, since a transfer reads the
    labels of its target and the networks its sources' labels trained."""
    versions = ",".join(f"{name}={spec.label_version}" for name, spec in sorted(_REGISTRY.items()))
    return hashlib.sha256(versions.encode()).hexdigest()[:16]


def sync_tasks(workspace: Any) -> None:
    """Write the registry into the workspace's `tasks` table (insert or replace, one transaction)."""
    with workspace.db.transaction() as con:
        con.insert("tasks", [spec.as_row() for spec in _REGISTRY.values()], replace=True)
