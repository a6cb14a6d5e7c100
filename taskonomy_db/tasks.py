"""The task registry: every Taskonomy task as data, read by training, export, extraction, transfers and reports.

One `TaskSpec` per task says what the network sees, what it predicts, how the stored label is decoded from the
task's file in the `images` table, the per-image loss (masked where the label is invalid, as in the original
taskbank), the baseline a trivial predictor achieves, and the task's group and roles.

Conventions every consumer relies on:

- Labels are decoded once (`decode_label`) into compact arrays at the training size: dense maps as (C, H, W)
  float, segmentations as (H, W) integers, distributions as (K,) float. Masks are (H, W) booleans.
- Every encoder sees clean RGB in [0, 1], NCHW. Input kinds that are a fixed function of the image (grey for
  colorization) are part of the network graph, so an exported encoder needs no task-specific preprocessing.
  Stochastic corruptions (noise, a masked hole, shuffled tiles) are applied by `make_batch`: randomly while
  training, and with a per-image seed at evaluation so every image's test loss is reproducible.
- `loss(prediction, target, mask)` returns one loss per image (shape [B]); `mask` may be None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taskonomy_db import encodings
from taskonomy_db.errors import UnknownTaskError

GROUPS = ("3D", "2D", "geometric", "semantic")
INPUT_KINDS = ("rgb", "grey", "noisy_rgb", "masked_rgb", "tiles")
# dense: (C,H,W) regression; dense_classes: per-pixel logits; embedding: per-pixel vectors for a metric loss;
# distribution: (K,) logits against a soft label; classes: (K,) logits against one class index; vector: (K,)
# regression (room layout, vanishing points).
OUTPUT_KINDS = ("dense", "dense_classes", "embedding", "distribution", "classes", "vector")

DENOISING_SIGMA = 0.1
JIGSAW_GRID = 3
JIGSAW_PERMUTATIONS = 100
SEGMENT_EMBEDDING_DIM = 8
# Pixel offsets compared by the segmentation metric loss: near pairs teach boundaries, far ones teach grouping.
SEGMENT_PAIR_OFFSETS = ((0, 1), (1, 0), (0, 3), (3, 0), (2, 2), (2, -2), (0, 8), (8, 0), (6, -6), (0, 16), (16, 0))
SEGMENT_MARGIN = 1.0


@dataclass(frozen=True)
class Batch:
    """What one training or evaluation step consumes: network input, target and validity mask (or None)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None


@dataclass(frozen=True)
class TaskSpec:
    """One task. Frozen: the registry is data, and every consumer reads the same entry."""

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

        if self.label_domain is not None:
            targets = label
        elif self.name == "colorization":
            targets = chroma(rgb)
        else:  # autoencoding, denoising, inpainting: reconstruct the clean image
            targets = rgb
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
        }


# ---------------------------------------------------------------- losses (each returns shape [B])


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over everything but the batch axis, counting only valid pixels. values: (B,C,H,W) or (B,H,W)."""
    if mask is None:
        return values.flatten(1).mean(1)
    weights = mask.to(values.dtype)
    if values.dim() == 4:
        weights = weights.unsqueeze(1).expand_as(values)
    return (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1)


def l1_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return _masked_mean((prediction - target.to(prediction.dtype)).abs(), mask)


def l2_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over a vector's entries (the original's L2 for room layout and vanishing points)."""
    return (prediction - target.to(prediction.dtype)).pow(2).flatten(1).mean(1)


def soft_cross_entropy(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy against a soft label (the original's distilled class distributions)."""
    return -(target.to(prediction.dtype) * F.log_softmax(prediction, dim=1)).sum(1)


def cross_entropy(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(prediction, target.long(), reduction="none")


def dense_cross_entropy(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel softmax cross-entropy; label 0 (uncertain) is masked, as in the original segment_semantic."""
    target = target.long()
    valid = target != encodings.SEMANTIC_UNCERTAIN
    if mask is not None:
        valid = valid & mask
    per_pixel = F.cross_entropy(prediction, target, reduction="none")
    return _masked_mean(per_pixel, valid)


def segment_metric_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Contrastive metric loss on pixel embeddings over fixed pixel pairs.

    The original trained segment_unsup2d/25d with a metric loss on pixel embeddings; this is the same idea with a
    fixed, deterministic set of pairs so the loss of an image is reproducible: pairs in one segment are pulled
    together (squared distance), pairs in different segments pushed beyond a margin (squared hinge).
    """
    target = target.long()
    height, width = target.shape[-2:]
    offsets = _segment_offsets(height, width)
    if mask is None:
        count = prediction.new_full((prediction.shape[0],), float(sum(_pair_count(*o) for o in offsets)))
    else:
        count = prediction.new_zeros(prediction.shape[0])
        for a_rows, a_cols, b_rows, b_cols in offsets:
            valid = mask[:, a_rows, a_cols] & mask[:, b_rows, b_cols]
            count = count + valid.flatten(1).sum(1).to(prediction.dtype)
    total = _SegmentMetricTotal.apply(prediction, target, mask)
    return total / count.clamp_min(1)


def _segment_offsets(height: int, width: int) -> list[tuple[slice, slice, slice, slice]]:
    """(a_rows, a_cols, b_rows, b_cols) of each offset of SEGMENT_PAIR_OFFSETS that fits the image, in order."""
    ranges = []
    for dy, dx in SEGMENT_PAIR_OFFSETS:
        if abs(dy) >= height or abs(dx) >= width:
            continue
        a_rows, b_rows = _shifted(dy, height)
        a_cols, b_cols = _shifted(dx, width)
        ranges.append((a_rows, a_cols, b_rows, b_cols))
    return ranges


def _pair_count(a_rows: slice, a_cols: slice, *_: slice) -> int:
    return (a_rows.stop - a_rows.start) * (a_cols.stop - a_cols.start)


class _SegmentMetricTotal(torch.autograd.Function):
    """Per-image sum of the pair losses of segment_metric_loss, with a hand-written backward.

    Autograd through the per-offset slicing kept a dozen (B,C,pairs) intermediates and zero-padded slice gradients
    per offset. Here the forward writes each offset's embedding differences into one reused buffer (the pair terms
    are computed as in the loss, term for term) and keeps only d(pair)/d(squared distance) per pair; the backward
    adds, for pair (a, b) with weight g, g * (x_a - x_b) at a and its negative at b as one scale per pixel
    (g summed over the pixel's pairs, applied to x once) plus one fused multiply-add per offset and end.
    """

    @staticmethod
    def forward(ctx: Any, embeddings: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        offsets = _segment_offsets(*target.shape[-2:])
        total = embeddings.new_zeros(embeddings.shape[0])
        buffer = torch.empty_like(embeddings)
        slopes = []
        for a_rows, a_cols, b_rows, b_cols in offsets:
            rows, cols = a_rows.stop - a_rows.start, a_cols.stop - a_cols.start
            diff = torch.sub(
                embeddings[:, :, a_rows, a_cols], embeddings[:, :, b_rows, b_cols], out=buffer[:, :, :rows, :cols]
            )
            dist2 = diff.mul_(diff).sum(1)
            dist = (dist2 + 1e-8).sqrt()
            same = (target[:, a_rows, a_cols] == target[:, b_rows, b_cols]).to(embeddings.dtype)
            hinge = F.relu(SEGMENT_MARGIN - dist)
            pair = same * dist2 + (1 - same) * hinge.pow(2)
            # d pair / d dist2: 1 in one segment, -relu(margin - dist) / dist across segments.
            slope = same - (1 - same) * hinge / dist
            if mask is not None:
                valid = (mask[:, a_rows, a_cols] & mask[:, b_rows, b_cols]).to(embeddings.dtype)
                pair = pair * valid
                slope = slope * valid
            total = total + pair.flatten(1).sum(1)
            slopes.append(slope)
        ctx.save_for_backward(embeddings, *slopes)
        ctx.offsets = offsets
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        embeddings, *slopes = ctx.saved_tensors
        grad = torch.zeros_like(embeddings)
        own = embeddings.new_zeros(embeddings.shape[0], *embeddings.shape[2:])  # sum of g over each pixel's pairs
        scale = grad_total.view(-1, 1, 1) * 2
        for (a_rows, a_cols, b_rows, b_cols), slope in zip(ctx.offsets, slopes, strict=True):
            weight = slope * scale
            own[:, a_rows, a_cols] += weight
            own[:, b_rows, b_cols] += weight
            weight = weight.unsqueeze(1)
            grad[:, :, a_rows, a_cols].addcmul_(embeddings[:, :, b_rows, b_cols], weight, value=-1)
            grad[:, :, b_rows, b_cols].addcmul_(embeddings[:, :, a_rows, a_cols], weight, value=-1)
        return grad.addcmul_(embeddings, own.unsqueeze(1)), None, None


def _shifted(offset: int, length: int) -> tuple[slice, slice]:
    """Index ranges a, b of one axis with b = a + offset, both inside [0, length)."""
    if offset >= 0:
        return slice(0, length - offset), slice(offset, length)
    return slice(-offset, length), slice(0, length + offset)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "l1": l1_loss,
    "l2": l2_loss,
    "soft_cross_entropy": soft_cross_entropy,
    "cross_entropy": cross_entropy,
    "dense_cross_entropy": dense_cross_entropy,
    "segment_metric": segment_metric_loss,
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


def _noise(shape: torch.Size, image_ids: torch.Tensor, train: bool, generator: torch.Generator | None) -> torch.Tensor:
    if train:
        return torch.randn(shape, generator=generator)
    return torch.stack([torch.randn(shape[1:], generator=g) for g in _per_image_generators(image_ids, 1)])


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


# ---------------------------------------------------------------- label decoders (stored array -> label, mask)


def _chw(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def _decode_depth(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    metres, valid = encodings.decode_depth(stored)
    return _chw(encodings.depth_log_target(metres)), valid


def _decode_normal(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    normals, valid = encodings.decode_normal(stored)
    return _chw(normals), valid


def _decode_reshading(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return _chw(encodings.decode_reshading(stored)), None


def _decode_curvature(stored: np.ndarray) -> tuple[np.ndarray, None]:
    # Scaled by 127/16 so the stored range maps to about [-1, 1], the scale of the other regression targets.
    scale = encodings.CURVATURE_ZERO / encodings.CURVATURE_UNITS_PER_INV_METRE
    return _chw(encodings.decode_curvature(stored) / np.float32(scale)), None


def _decode_response(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return _chw(encodings.decode_response(stored)), None


def _decode_semantic(stored: np.ndarray) -> tuple[np.ndarray, None]:
    labels, _valid = encodings.decode_segment_semantic(stored)  # label 0 is masked by the loss itself
    return labels, None


def _decode_unsup(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return encodings.decode_segment_unsup(stored), None


def _decode_distribution(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return encodings.decode_distribution(stored), None


def _decode_room_layout(points: dict) -> tuple[np.ndarray, None]:
    """The 9 numbers of the room box in the camera frame: centre (m), XYZ Euler rotation (rad), size (m)."""
    return np.asarray(points["room_layout"]["vector"], np.float32), None


def _decode_vanishing_points(points: dict) -> tuple[np.ndarray, None]:
    """The three Manhattan directions as unit vectors in the camera frame (x, y, z of the room), 9 numbers."""
    sphere = points["vanishing_points_gaussian_sphere"]
    return np.asarray([*sphere["x"], *sphere["y"], *sphere["z"]], np.float32), None


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


def _dense(name: str, group: str, domain: str, channels: int, decoder: Callable, masked: bool, text: str) -> None:
    negates = (0,) if name == "normal" else ()
    from_rgb_pixels = name in ("edge_texture", "keypoints2d")
    register_task(
        TaskSpec(
            name,
            group,
            "rgb",
            "dense",
            channels,
            domain,
            "l1",
            masked,
            description=text,
            mirror_negates=negates,
            photometric=not from_rgb_pixels,
            decoder=decoder,
        )
    )


_dense("depth_zbuffer", "3D", "depth_zbuffer", 1, _decode_depth, True, "z-buffer depth as log(1+units)/log(2^16), L1")
_dense("depth_euclidean", "3D", "depth_euclidean", 1, _decode_depth, True, "ray depth as log(1+units)/log(2^16), L1")
_dense("normal", "3D", "normal", 3, _decode_normal, True, "camera-frame surface normals, L1")
_dense("reshading", "3D", "reshading", 1, _decode_reshading, True, "shading of the untextured geometry, L1")
_dense("principal_curvature", "3D", "principal_curvature", 2, _decode_curvature, True, "k1, k2 scaled to ~[-1,1], L1")
_dense("edge_occlusion", "3D", "edge_occlusion", 1, _decode_response, True, "depth-discontinuity edges, L1")
_dense("keypoints3d", "3D", "keypoints3d", 1, _decode_response, True, "NARF-like keypoint response on depth, L1")
_dense("edge_texture", "2D", "edge_texture", 1, _decode_response, False, "Canny edges of the rgb image, L1")
_dense("keypoints2d", "2D", "keypoints2d", 1, _decode_response, False, "SURF-like keypoint response, L1")

for _name, _group, _masked in (("segment_unsup2d", "2D", False), ("segment_unsup25d", "3D", True)):
    register_task(
        TaskSpec(
            _name,
            _group,
            "rgb",
            "embedding",
            SEGMENT_EMBEDDING_DIM,
            _name,
            "segment_metric",
            _masked,
            photometric=_name != "segment_unsup2d",
            decoder=_decode_unsup,
            description="Felzenszwalb superpixels; contrastive metric loss on pixel embeddings over fixed pairs",
        )
    )

register_task(
    TaskSpec(
        "segment_semantic",
        "semantic",
        "rgb",
        "dense_classes",
        len(encodings.SEMANTIC_CLASSES),
        "segment_semantic",
        "dense_cross_entropy",
        decoder=_decode_semantic,
        description="per-pixel object class; softmax cross-entropy, label 0 (uncertain) masked",
    )
)
register_task(
    TaskSpec(
        "class_object",
        "semantic",
        "rgb",
        "distribution",
        len(encodings.OBJECT_CLASSES),
        "class_object",
        "soft_cross_entropy",
        decoder=_decode_distribution,
        description="distribution over object classes; cross-entropy against the soft label",
    )
)
register_task(
    TaskSpec(
        "class_scene",
        "semantic",
        "rgb",
        "distribution",
        len(encodings.SCENE_CLASSES),
        "class_scene",
        "soft_cross_entropy",
        decoder=_decode_distribution,
        description="distribution over scene (room) types; cross-entropy against the soft label",
    )
)

for _name, _decoder, _text in (
    ("room_layout", _decode_room_layout, "room box in the camera frame (centre, rotation, size) from points JSON, L2"),
    (
        "vanishing_point",
        _decode_vanishing_points,
        "the 3 Manhattan directions in the camera frame from points JSON, L2",
    ),
):
    register_task(
        TaskSpec(
            _name, "geometric", "rgb", "vector", 9, "points", "l2", mirror=False, decoder=_decoder, description=_text
        )
    )

register_task(TaskSpec("autoencoding", "2D", "rgb", "dense", 3, None, "l1", description="reconstruct rgb, L1"))
register_task(
    TaskSpec(
        "denoising",
        "2D",
        "noisy_rgb",
        "dense",
        3,
        None,
        "l1",
        description=f"clean rgb from rgb + N(0, {DENOISING_SIGMA}^2) noise, L1 (the paper's tree puts it apart)",
    )
)
register_task(
    TaskSpec(
        "colorization",
        "2D",
        "grey",
        "dense",
        2,
        None,
        "l1",
        is_target=False,
        description="YUV chroma from luminance, L1; source-only as in the paper",
    )
)
register_task(
    TaskSpec(
        "inpainting",
        "2D",
        "masked_rgb",
        "dense",
        3,
        None,
        "l1",
        is_target=False,
        description="whole rgb from rgb with its central half-size square greyed out (inpainting_whole), L1; "
        "source-only as in the paper",
    )
)
register_task(
    TaskSpec(
        "jigsaw",
        "geometric",
        "tiles",
        "classes",
        JIGSAW_PERMUTATIONS,
        None,
        "cross_entropy",
        is_target=False,
        description="which of 100 fixed permutations shuffled the 3x3 tiles; softmax; source-only as in the paper",
    )
)


def sync_tasks(workspace: Any) -> None:
    """Write the registry into the workspace's `tasks` table (insert or replace, one transaction)."""
    rows = [spec.as_row() for spec in _REGISTRY.values()]
    columns = list(rows[0])
    placeholders = ", ".join("?" for _ in columns)
    with workspace.db.transaction() as con:
        con.executemany(
            f"insert or replace into tasks ({', '.join(columns)}) values ({placeholders})",
            [[row[c] for c in columns] for row in rows],
        )
