"""Every per-view Taskonomy label the generator computes from a render rather than reads off the ray hits.

They follow the original algorithms with scikit-image: Canny on RGB, Sobel on depth with a threshold, a
determinant-of-Hessian response, a NARF-like response on the range image, Felzenszwalb superpixels on RGB and on
depth+normals+curvature.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage.feature import canny, hessian_matrix
from skimage.segmentation import felzenszwalb

from taskonomy_db.encodings import DEPTH_MAX_METRES, OBJECT_CLASSES, SCENE_CLASSES
from taskonomy_db.render import RenderedView
from taskonomy_db.scenes import Room

SCENE_LABEL_SMOOTHING = 0.1
OCCLUSION_THRESHOLD = 0.1  # Sobel of log depth, per pixel: a jump of ~20% in depth between neighbours


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2125, 0.7154, 0.0721])


def _log_depth(view: RenderedView) -> np.ndarray:
    return np.log(np.where(view.valid, np.maximum(view.depth_euclidean, 1e-3), DEPTH_MAX_METRES))


def edge_texture(view: RenderedView) -> np.ndarray:
    """Canny on the RGB image's luminance (binary), scale-adjusted so edges look alike at every resolution."""
    sigma = max(1.0, view.rgb.shape[0] / 128)
    return canny(_gray(view.rgb), sigma=sigma, low_threshold=0.04, high_threshold=0.1).astype(np.float64)


def occlusion_strength(view: RenderedView) -> np.ndarray:
    """Sobel magnitude of log depth per pixel (scale-free: a depth ratio, not metres)."""
    log_depth = _log_depth(view)
    gx = ndimage.sobel(log_depth, axis=1, mode="nearest") / 8
    gy = ndimage.sobel(log_depth, axis=0, mode="nearest") / 8
    return np.hypot(gx, gy)


def edge_occlusion(view: RenderedView) -> np.ndarray:
    """Depth discontinuities: the Sobel response where it passes the threshold, 0 elsewhere."""
    strength = occlusion_strength(view)
    return np.where(strength > OCCLUSION_THRESHOLD, np.clip(strength, 0, 1), 0.0)


def keypoints2d(view: RenderedView) -> np.ndarray:
    """Scale-normalised determinant-of-Hessian (SURF-like) response, squashed into [0, 1)."""
    sigma = max(1.0, view.rgb.shape[0] / 64)
    # What hessian_matrix_det(approximate=False) computes, with the 2x2 determinant written out: it builds an
    # (H, W, 2, 2) array for np.linalg.det, which costs more than the filtering.
    h_rr, h_rc, h_cc = hessian_matrix(_gray(view.rgb), sigma=sigma, use_gaussian_derivatives=False)
    response = np.abs(h_rr * h_cc - h_rc * h_rc) * sigma**4
    return 1 - np.exp(-response / 0.002)


def keypoints3d(view: RenderedView) -> np.ndarray:
    """A NARF-like interest on the range image: where the surface (normals, log depth) changes in two directions.

    The smaller eigenvalue of the structure tensor of the normal field and log depth, so straight borders and
    creases score low and corners and tips of 3D structure score high.
    """
    size = view.rgb.shape[0]
    # Channel-first, so sums over channels add whole planes (a reduction over a short last axis is slow).
    channels = np.concatenate([np.moveaxis(view.normal, 2, 0), 2 * _log_depth(view)[None]], axis=0)
    gy, gx = np.gradient(channels, axis=(1, 2))
    scale = (size / 64) ** 2  # gradients are per pixel: make the response resolution-independent
    sigma = max(1.0, size / 64)
    # The three structure-tensor entries smoothed in one call (no smoothing across the stacking axis).
    tensor = np.stack([(gx * gx).sum(axis=0), (gx * gy).sum(axis=0), (gy * gy).sum(axis=0)])
    a, b, c = ndimage.gaussian_filter(tensor, (0, sigma, sigma)) * scale
    smallest = (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)
    return 1 - np.exp(-np.maximum(smallest, 0) / 0.1)


def _min_size(size: int) -> int:
    return max(8, size * size // 256)


def segment_unsup2d(view: RenderedView) -> np.ndarray:
    return felzenszwalb(view.rgb, scale=200, sigma=0.5, min_size=_min_size(view.rgb.shape[0]), channel_axis=-1)


def segment_unsup25d(view: RenderedView) -> np.ndarray:
    """Felzenszwalb on depth + normals + curvature (the 2.5D superpixels)."""
    # Log depth is down-weighted: it varies smoothly across every plane, normals only change at creases.
    features = np.concatenate([0.3 * _log_depth(view)[..., None], view.normal, np.tanh(view.curvature / 4)], axis=2)
    with warnings.catch_warnings():  # skimage warns that 6 channels "may not be intended": they are
        warnings.simplefilter("ignore", RuntimeWarning)
        return felzenszwalb(features, scale=2.0, sigma=0.5, min_size=_min_size(view.rgb.shape[0]), channel_axis=-1)


def class_object(view: RenderedView) -> np.ndarray:
    """Distribution over OBJECT_CLASSES by visible area; uniform when no object is in view."""
    labels = view.segment_semantic.ravel()
    counts = np.bincount(labels[labels >= 2] - 2, minlength=len(OBJECT_CLASSES)).astype(np.float64)
    if counts.sum() == 0:
        return np.full(len(OBJECT_CLASSES), 1.0 / len(OBJECT_CLASSES))
    return counts / counts.sum()


def class_scene(room: Room) -> np.ndarray:
    """The room type, one-hot with label smoothing (soft labels, as the original distilled ones were)."""
    p = np.full(len(SCENE_CLASSES), SCENE_LABEL_SMOOTHING / (len(SCENE_CLASSES) - 1))
    p[room.scene_class] = 1 - SCENE_LABEL_SMOOTHING
    return p
