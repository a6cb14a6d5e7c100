"""Per-image losses of the task registry, as the original taskbank defined them (lib/models, lib/losses).

Every loss is `loss(prediction, target, mask)` and returns one value per image (shape [B]); `mask` may be None.
TensorFlow's weighted losses, which the original used, divide the weighted sum by the number of non-zero
weights; the per-image versions here do the same over each image's pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F

# segment2d/segment25d config.py: num_pixels sampled per image, target_num_channels of the embedding.
SEGMENT_SAMPLED_PIXELS = 300
SEGMENT_EMBEDDING_DIM = 64
# encoder_decoder_segmentation.py clips squared distances to [0, 80] and sigma to [1e-7, 1 - 1e-7].
SEGMENT_MAX_DISTANCE = 80.0
SEGMENT_SIGMA_EPS = 1e-7

# Pixel frequencies of segment_semantic's classes (uncertain excluded; background first, then OBJECT_CLASSES),
# measured over every view of the default generated dataset (`tdb generate`, seed 0, 576 views at 64 px). They
# play the part of the statistics behind the original's semseg_prior_factor.npy, which is the same formula
# (below) applied to its own dataset's 17 class frequencies.
SEMANTIC_CLASS_FREQUENCIES = (
    0.803271,
    0.021671,
    0.017869,
    0.008111,
    0.03846,
    0.005084,
    0.017438,
    0.015525,
    0.035008,
    0.035172,
    0.002391,
)
# The mixing weight of the uniform distribution in the prior factor (0.5 reproduces semseg_prior_factor.npy).
SEMANTIC_PRIOR_UNIFORM_MIX = 0.5


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over everything but the batch axis, counting only valid pixels. values: (B,C,H,W), (B,H,W), (B,K)."""
    if mask is None:
        return values.flatten(1).mean(1)
    weights = mask.to(values.dtype)
    if values.dim() == 4:
        weights = weights.unsqueeze(1).expand_as(values)
    return (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1)


def l1_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return _masked_mean((prediction - target.to(prediction.dtype)).abs(), mask)


def l2_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over valid entries: the original's L2 of vectors (room layout, vanishing points) and
    of curvature (mean_squared_error weighted by the depth mask)."""
    return _masked_mean((prediction - target.to(prediction.dtype)).pow(2), mask)


def soft_cross_entropy(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy against a soft label (the original's distilled class distributions)."""
    return -(target.to(prediction.dtype) * F.log_softmax(prediction, dim=1)).sum(1)


def cross_entropy(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(prediction, target.long(), reduction="none")


POSE_NUMBERS = 6


def pose_distance(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The siamese tasks' L2 (siamese_nets.py, cycle_siamese_nets.py): the Euclidean distance between predicted
    and true pose, not squared, summed over the poses of a tuple (one for a pair, three for egomotion). The tiny
    constant keeps the gradient finite at a perfect prediction."""
    difference = (prediction - target.to(prediction.dtype)).view(len(prediction), -1, POSE_NUMBERS)
    return (difference.pow(2).sum(2) + 1e-12).sqrt().sum(1)


@cache
def semantic_prior_factor() -> torch.Tensor:
    """Per-label weight of segment_semantic's pixels (index = stored label; uncertain weighs 0).

    The original's semseg_prior_factor.npy is 1 / ((1 - m) p + m / K) for class frequencies p and K classes,
    scaled so its mean under p is 1 (Zhang et al.'s colour rebalancing, reused): rare classes weigh more.
    """
    frequencies = torch.tensor(SEMANTIC_CLASS_FREQUENCIES, dtype=torch.float64)
    mix = SEMANTIC_PRIOR_UNIFORM_MIX
    factor = 1 / ((1 - mix) * frequencies + mix / len(frequencies))
    factor = factor / (frequencies * factor).sum()
    return torch.cat([torch.zeros(1, dtype=torch.float64), factor]).float()


def dense_cross_entropy(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """load_ops.semantic_segment_rebalanced with SoftmaxED's sparse softmax loss: per-pixel cross-entropy
    weighted by the class's prior factor, label 0 (uncertain) weighted 0, averaged over non-zero weights."""
    target = target.long()
    weights = semantic_prior_factor().to(prediction.dtype)[target]
    if mask is not None:
        weights = weights * mask.to(prediction.dtype)
    per_pixel = F.cross_entropy(prediction, target, reduction="none")
    counted = (weights > 0).flatten(1).sum(1).clamp_min(1)
    return (per_pixel * weights).flatten(1).sum(1) / counted


def segment_metric_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """encoder_decoder_segmentation.SegmentationED.get_losses on the pixels `mask` selects (the sampled ones;
    every pixel when None): for every ordered pair (i, j), diagonal included, d = |e_i - e_j|^2 clipped to
    [0, 80], sigma = 2 / (1 + exp(d)); the loss is the mean of -log(sigma) over pairs in one segment and of
    -log(1 - sigma) over pairs in different segments."""
    target = target.long()
    losses = []
    for embeddings, segments, chosen in zip(
        prediction.flatten(2), target.flatten(1), _rows(mask, prediction.shape[0]), strict=True
    ):
        if chosen is not None:
            embeddings, segments = embeddings[:, chosen], segments[chosen]
        if segments.numel() == 0:
            losses.append(prediction.sum() * 0)
            continue
        vectors = embeddings.T  # (pixels, channels)
        square = vectors.pow(2).sum(1)
        distance = (square[:, None] - 2 * vectors @ vectors.T + square[None, :]).clamp(0, SEGMENT_MAX_DISTANCE)
        sigma = (2 / (distance.exp() + 1)).clamp(SEGMENT_SIGMA_EPS, 1 - SEGMENT_SIGMA_EPS)
        same = segments[:, None] == segments[None, :]
        # One log of the chosen term, not two logs then a choice: the same floats and gradients, half the logs.
        losses.append(-torch.where(same, sigma, 1 - sigma).log().mean())
    return torch.stack(losses)


def _rows(mask: torch.Tensor | None, batch: int) -> list[torch.Tensor | None]:
    """Each image's selected flat pixel indices (None: all pixels)."""
    if mask is None:
        return [None] * batch
    return [row.nonzero().squeeze(1) for row in mask.flatten(1)]


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "l1": l1_loss,
    "l2": l2_loss,
    "soft_cross_entropy": soft_cross_entropy,
    "cross_entropy": cross_entropy,
    "dense_cross_entropy": dense_cross_entropy,
    "segment_metric": segment_metric_loss,
    "pose_distance": pose_distance,
}
