"""The on-disk encodings of every Taskonomy domain: encode to the stored arrays, decode to float32 in real units.

Both the generator (`tdb generate`) and every reader (task registry, training, evaluation) go through this
module, so the stored format is defined in exactly one place. Encodings are the real dataset's; where
the real dataset leaves a scale open, the constant below fixes it.

Decoders return float32 arrays in meaningful units (metres, unit vectors, 1/m, probabilities) and, where a
pixel can be invalid, a boolean validity mask alongside.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Depth: 16-bit, 1/512 m per unit, so the largest storable distance is 127.998 m; 65535 means "no surface".
DEPTH_UNITS_PER_METRE = 512.0
DEPTH_MISSING = 65535
DEPTH_MAX_METRES = (DEPTH_MISSING - 1) / DEPTH_UNITS_PER_METRE

# Principal curvature: channel = 127 + CURVATURE_UNITS_PER_INV_METRE * k (k in 1/m), clipped to 0..255, so
# curvatures of magnitude up to ~7.9 1/m (radius >= 0.127 m) are stored unclipped. Channel 0 holds the larger
# principal curvature k1, channel 1 the smaller k2 (k1 >= k2); positive = convex as seen from the camera side
# (the outside of a sphere), negative = concave. The third channel is constant 127 (unused).
CURVATURE_ZERO = 127
CURVATURE_UNITS_PER_INV_METRE = 16.0

# Dense response maps (edges, keypoints) are 16-bit: value = round(strength * 65535), strength in [0, 1].
RESPONSE_MAX = 65535

# segment_semantic: 0 = uncertain (mask it in losses), 1 = background (walls, floor, ceiling), then one label
# per object class: label = 2 + OBJECT_CLASSES.index(name).
SEMANTIC_UNCERTAIN = 0
SEMANTIC_BACKGROUND = 1
OBJECT_CLASSES: tuple[str, ...] = (
    "table",
    "chair",
    "bed",
    "shelf",
    "lamp",
    "sofa",
    "plant",
    "box",
    "cabinet",
    "screen",
)
SEMANTIC_CLASSES: tuple[str, ...] = ("uncertain", "background", *OBJECT_CLASSES)
SCENE_CLASSES: tuple[str, ...] = ("bedroom", "living_room", "office", "dining_room", "kitchen", "storage_room")

# Which file extension each domain is stored with (everything else is PNG).
DOMAIN_EXTENSIONS: dict[str, str] = {"class_object": "npy", "class_scene": "npy", "point_info": "json"}
DOMAIN_EXTENSIONS.update({"nonfixated_matches": "json"})

# zlib level of PNG writes: fixed, so the same array always gives the same bytes; level 1 is ~7% larger than 6
# at 64 px but much cheaper, and the generator writes 14 PNGs per view.
PNG_COMPRESS_LEVEL = 1


def extension(domain: str) -> str:
    """The file extension (without the dot) a domain is stored with."""
    return DOMAIN_EXTENSIONS.get(domain, "png")


# ---------------------------------------------------------------- PNG / npy / JSON files


def png_bytes(array: np.ndarray) -> bytes:
    """Byte-deterministic PNG of a uint8 (H,W), uint8 (H,W,3) or uint16 (H,W) array.

    Written directly (zlib, the "Sub" filter on every row) rather than through Pillow: an order of magnitude
    faster for the many small files the generator writes, and the bytes depend only on the array.
    """
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint16 and array.ndim == 2:
        bit_depth, colour_type, samples = 16, 0, array.astype(">u2")
    elif array.dtype == np.uint8 and array.ndim == 2:
        bit_depth, colour_type, samples = 8, 0, array
    elif array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        bit_depth, colour_type, samples = 8, 2, array
    else:
        raise ValueError(f"cannot write a PNG from a {array.dtype} array of shape {array.shape}")
    height, width = array.shape[:2]
    raw = samples.view(np.uint8).reshape(height, -1)
    step = raw.shape[1] // width  # bytes per pixel
    rows = np.empty((height, raw.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = 1  # filter type Sub: each byte minus the same byte of the pixel to its left
    rows[:, 1 : step + 1] = raw[:, :step]
    rows[:, step + 1 :] = raw[:, step:] - raw[:, :-step]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as stored: uint8 (H,W) or (H,W,3), or uint16 (H,W) for 16-bit files."""
    with Image.open(path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(image).astype(np.uint16)
        if image.mode in ("L", "RGB"):
            return np.asarray(image).copy()
        return np.asarray(image.convert("RGB")).copy()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def read_npy(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def json_bytes(data: Any, indent: int | None = 1) -> bytes:
    """Stable JSON (sorted keys, fixed float formatting) so identical data gives identical bytes.

    indent=None writes one line with the json module's C encoder (indented output always goes through its
    pure-Python encoder, several times slower): for the many small files the generator writes.
    """
    return (json.dumps(data, sort_keys=True, indent=indent) + "\n").encode()


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_domain(path: str | Path) -> Any:
    """The stored value of any domain file, dispatched on its extension (PNG array, npy array, JSON)."""
    suffix = Path(path).suffix
    if suffix == ".png":
        return read_png(path)
    if suffix == ".npy":
        return read_npy(path)
    if suffix == ".json":
        return read_json(path)
    raise ValueError(f"not a Taskonomy domain file: {path}")


# ---------------------------------------------------------------- depth


def encode_depth(metres: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Depth in metres -> uint16 (1/512 m); invalid, non-finite or out-of-range pixels -> 65535."""
    metres = np.asarray(metres, dtype=np.float64)
    ok = np.isfinite(metres) & (metres >= 0) & (metres <= DEPTH_MAX_METRES)
    if valid is not None:
        ok &= valid
    units = np.rint(np.where(ok, metres, 0.0) * DEPTH_UNITS_PER_METRE)
    return np.where(ok, units, DEPTH_MISSING).astype(np.uint16)


def decode_depth(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint16 depth -> (metres float32 with 0 where missing, valid mask)."""
    stored = np.asarray(stored)
    valid = stored != DEPTH_MISSING
    metres = np.where(valid, stored.astype(np.float32) / np.float32(DEPTH_UNITS_PER_METRE), np.float32(0))
    return metres.astype(np.float32), valid


# depth_zbuffer (distance along the optical axis) and depth_euclidean (distance along the ray) share the format.
encode_depth_zbuffer = encode_depth_euclidean = encode_depth
decode_depth_zbuffer = decode_depth_euclidean = decode_depth


def depth_log_target(metres: np.ndarray) -> np.ndarray:
    """The original taskbank's depth regression target log(1 + units) / log(2^16), in [0, 1]."""
    units = np.asarray(metres, dtype=np.float32) * np.float32(DEPTH_UNITS_PER_METRE)
    return (np.log1p(units) / np.float32(np.log(2.0**16))).astype(np.float32)


# ---------------------------------------------------------------- normals, reshading, curvature


def encode_normal(normals: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Camera-frame unit normals (+X right, +Y down, +Z toward the camera) -> uint8 RGB, 127-centred.

    Invalid pixels are stored as (127, 127, 127), which decodes to a near-zero vector.
    """
    normals = np.asarray(normals, dtype=np.float64)
    stored = np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if valid is not None:
        stored[~valid] = 127
    return stored


def decode_normal(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB -> (n = img/127.5 - 1 as float32 (H,W,3), valid mask where the vector is not ~zero)."""
    normals = np.asarray(stored, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
    valid = np.linalg.norm(normals, axis=-1) > 0.5
    return normals, valid


def encode_reshading(shading: np.ndarray) -> np.ndarray:
    """Shading in [0, 1] -> uint8 single channel."""
    return np.clip(np.rint(np.asarray(shading, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def decode_reshading(stored: np.ndarray) -> np.ndarray:
    stored = np.asarray(stored)
    if stored.ndim == 3:  # tolerate RGB-stored shading (all channels equal)
        stored = stored[..., 0]
    return stored.astype(np.float32) / np.float32(255.0)


def encode_curvature(k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """Principal curvatures k1 >= k2 in 1/m -> uint8 RGB (see CURVATURE_UNITS_PER_INV_METRE)."""
    k1 = np.asarray(k1, dtype=np.float64)
    channels = [k1, np.asarray(k2, dtype=np.float64)]
    stored = np.full((*k1.shape, 3), CURVATURE_ZERO, dtype=np.uint8)
    for index, k in enumerate(channels):
        stored[..., index] = np.clip(np.rint(CURVATURE_ZERO + k * CURVATURE_UNITS_PER_INV_METRE), 0, 255)
    return stored


def decode_curvature(stored: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 (H,W,2) principal curvatures in 1/m."""
    channels = np.asarray(stored, dtype=np.float32)[..., :2]
    return (channels - np.float32(CURVATURE_ZERO)) / np.float32(CURVATURE_UNITS_PER_INV_METRE)


encode_principal_curvature, decode_principal_curvature = encode_curvature, decode_curvature


# ---------------------------------------------------------------- edges and keypoints (16-bit responses)


def encode_response(strength: np.ndarray) -> np.ndarray:
    """A response map in [0, 1] -> uint16."""
    return np.clip(np.rint(np.asarray(strength, dtype=np.float64) * RESPONSE_MAX), 0, RESPONSE_MAX).astype(np.uint16)


def decode_response(stored: np.ndarray) -> np.ndarray:
    return np.asarray(stored).astype(np.float32) / np.float32(RESPONSE_MAX)


encode_edge_texture = encode_edge_occlusion = encode_keypoints2d = encode_keypoints3d = encode_response
decode_edge_texture = decode_edge_occlusion = decode_keypoints2d = decode_keypoints3d = decode_response


# ---------------------------------------------------------------- segmentations and masks


def encode_segment_semantic(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(SEMANTIC_CLASSES):
        raise ValueError("segment_semantic labels must be in 0..len(SEMANTIC_CLASSES)-1")
    return labels.astype(np.uint8)


def decode_segment_semantic(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 labels -> (int64 labels, valid mask = label != 0 uncertain)."""
    labels = np.asarray(stored).astype(np.int64)
    return labels, labels != SEMANTIC_UNCERTAIN


def encode_segment_unsup(labels: np.ndarray) -> np.ndarray:
    """Superpixel ids -> uint16 label image (ids above 65535 wrap; they never occur at Taskonomy sizes)."""
    return (np.asarray(labels).astype(np.int64) % 65536).astype(np.uint16)


def decode_segment_unsup(stored: np.ndarray) -> np.ndarray:
    """uint8 or uint16 label image -> int64 ids (only equality between ids is meaningful)."""
    return np.asarray(stored).astype(np.int64)


encode_segment_unsup2d = encode_segment_unsup25d = encode_segment_unsup
decode_segment_unsup2d = decode_segment_unsup25d = decode_segment_unsup


def encode_mask(valid: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(valid, dtype=bool), 255, 0).astype(np.uint8)


def decode_mask(stored: np.ndarray) -> np.ndarray:
    stored = np.asarray(stored)
    if stored.ndim == 3:
        stored = stored[..., 0]
    return stored > 127


encode_mask_valid, decode_mask_valid = encode_mask, decode_mask


# ---------------------------------------------------------------- rgb and class vectors


def encode_rgb(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8 (H,W,3)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def encode_distribution(probabilities: np.ndarray) -> np.ndarray:
    """A probability vector -> float32, renormalised to sum to 1."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0, None)
    total = p.sum()
    p = p / total if total > 0 else np.full(p.shape, 1.0 / p.size)
    return p.astype(np.float32)


def decode_distribution(stored: np.ndarray) -> np.ndarray:
    return np.asarray(stored, dtype=np.float32)


encode_class_object = encode_class_scene = encode_distribution
decode_class_object = decode_class_scene = decode_distribution
