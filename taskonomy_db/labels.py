"""Label decoding: a stored label file's array (or camera JSON) -> (label, validity mask or None), as the
original taskbank's `lib/data/load_ops.py` computed its training targets.

Dense labels come back (C, H, W) float at the file's own resolution (data.py resizes them), segmentations (H, W)
integers, distributions and camera-file labels (K,) float.

Camera-file labels (room_layout, vanishing_point, and relative_camera_pose for a pair of views) read a view's
`point_info` file (`points/..._domain_fixatedpose.json` in the legacy form), use only the fields real camera
files have, and follow load_ops.py's conventions, which the generator writes to:
- `camera_rotation_final` is a Blender XYZ Euler rotation (transforms3d `sxyz`: R = Rz @ Ry @ Rx) taking the
  camera frame (x right, y up, looking down -z) to the world frame of `camera_location`.
- load_ops swaps world x and y before using the camera ("x and y are flipped in room layout"): the rows of the
  camera matrix become (y, -x, z). `bounding_box_ranges` is given in that swapped frame, with its y negated and
  reversed there; in world terms its x range is the world's y range and its y range the world's x range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from taskonomy_db import encodings

# load_ops.curvature_preprocess: the first two channels standardised by these fixed stored-unit statistics.
CURVATURE_MEAN = (123.572, 120.1)
CURVATURE_STD = (31.922, 21.658)

# load_ops.room_layout: (centre xyz in the camera frame, sxyz Euler of the canonical camera, box size xyz).
ROOM_LAYOUT_MEAN = (
    0.006072743318127848,
    0.010272365569691076,
    -3.135909774145468,
    1.5603802322235532,
    5.6228218371102496e-05,
    -1.5669352793761442,
    5.622875878174759,
    4.082800262277375,
    2.7713941642895956,
)
ROOM_LAYOUT_STD = (
    0.8669452525283652,
    0.687915294956501,
    2.080513632043758,
    0.19627420479282623,
    0.014680602791251812,
    0.4183827359302299,
    3.991778013006544,
    2.703495278378409,
    1.2269185938626304,
)

# load_ops.calculate_relative_camera_pose: the fixed standardisation of the 6 pose numbers (rotation as sxyz Euler
# angles, then translation), fixated (fix_pose, ego_motion) and nonfixated (non_fixated_pose).
FIXATED_POSE_MEAN = (-0.267375523, -0.0119147040, 0.0114497274, 0.00110903410, 0.0210509948, -4.02013549)
FIXATED_POSE_STD = (10.12015407, 8.1103528, 1.09171896, 1.21579016, 0.26040945, 10.05966329)
NONFIXATED_POSE_MEAN = (-0.00953197445, -0.00105196691, -0.0107545642, 0.0208785638, -0.0927858049, -2.58052205)
NONFIXATED_POSE_STD = (1.02316223, 0.66477511, 1.03806996, 5.75692889, 1.37604962, 7.43157247)

# edge3d/config.py: resize_rescale_image_gaussian_blur with blur_strength 4 at the 256 px target size.
EDGE_OCCLUSION_BLUR_SIGMA_AT_256 = 4.0

# load_ops.get_camera_matrix(flip_xy=True) as a left factor: rows (y, -x, z).
_SWAP_XY = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
# transforms3d.axangles.axangle2mat(z, k * pi / 2) for k = 0..3, written exactly.
_QUARTER_TURNS = tuple(
    np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1))
)


# ---------------------------------------------------------------- image labels


def _chw(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def decode_depth(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    metres, valid = encodings.decode_depth(stored)
    return _chw(encodings.depth_log_target(metres)), valid


def decode_normal(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    normals, valid = encodings.decode_normal(stored)
    return _chw(normals), valid


def decode_reshading(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return _chw(encodings.decode_reshading(stored)), None


def decode_curvature(stored: np.ndarray) -> tuple[np.ndarray, None]:
    """load_ops.curvature_preprocess: channels 0 and 1 in stored units, standardised per channel."""
    channels = np.asarray(stored, dtype=np.float32)[..., :2]
    standard = (channels - np.float32(CURVATURE_MEAN)) / np.float32(CURVATURE_STD)
    return _chw(standard.astype(np.float32)), None


def decode_response(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return _chw(encodings.decode_response(stored)), None


def decode_edge_occlusion(stored: np.ndarray) -> tuple[np.ndarray, None]:
    """load_ops.resize_rescale_image_gaussian_blur as edge3d/config.py calls it: the response's full scale
    rescaled to [-1, 1] without clipping, then a Gaussian blur of sigma 4 px at 256 px (scaled to the file's
    size, so the blur covers the same part of the image at any resolution; scipy's default reflect border)."""
    response = encodings.decode_response(stored).astype(np.float64) * 2.0 - 1.0
    sigma = EDGE_OCCLUSION_BLUR_SIGMA_AT_256 * response.shape[0] / 256
    return _chw(ndimage.gaussian_filter(response, sigma).astype(np.float32)), None


def decode_semantic(stored: np.ndarray) -> tuple[np.ndarray, None]:
    labels, _valid = encodings.decode_segment_semantic(stored)  # label 0 is masked by the loss itself
    return labels, None


def decode_unsup(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return encodings.decode_segment_unsup(stored), None


def decode_distribution(stored: np.ndarray) -> tuple[np.ndarray, None]:
    return encodings.decode_distribution(stored), None


# ---------------------------------------------------------------- camera-file labels


def euler_to_matrix(angles: list[float] | tuple[float, ...] | np.ndarray) -> np.ndarray:
    """transforms3d.euler.euler2mat(*angles, axes='sxyz'): Rz(az) @ Ry(ay) @ Rx(ax)."""
    ax, ay, az = (float(a) for a in angles)
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rot_x = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    rot_y = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rot_z = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return rot_z @ rot_y @ rot_x


def matrix_to_euler(m: np.ndarray) -> np.ndarray:
    """transforms3d.euler.mat2euler(m, axes='sxyz'), its gimbal-lock branch included."""
    cy = math.hypot(m[0, 0], m[1, 0])
    if cy > 4 * np.finfo(float).eps:
        return np.array([math.atan2(m[2, 1], m[2, 2]), math.atan2(-m[2, 0], cy), math.atan2(m[1, 0], m[0, 0])])
    return np.array([math.atan2(-m[1, 2], m[1, 1]), math.atan2(-m[2, 0], cy), 0.0])


def _swapped_camera(points: dict) -> tuple[np.ndarray, np.ndarray]:
    """load_ops.get_camera_matrix(flip_xy=True): the camera's rotation and location in the x/y-swapped frame."""
    rotation = _SWAP_XY @ euler_to_matrix(points["camera_rotation_final"])
    return rotation, _SWAP_XY @ np.asarray(points["camera_location"], dtype=np.float64)


def _angle_from_forward(rotation: np.ndarray, direction: np.ndarray) -> float:
    """Degrees between a world direction and the camera's viewing direction (-z), as load_ops measures it."""
    in_camera = rotation.T @ direction
    return math.degrees(math.acos(max(-1.0, min(1.0, -in_camera[2]))))


def _canonical_turn(rotation: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The inverse of the quarter turn about z that brings the given world axes closest (summed angle) to the
    camera's viewing direction: load_ops' make_world_x_major (axes x) and rotation_to_make_axes_well_defined
    (axes x and y). On an exact tie the first turn wins (load_ops' min() would compare matrices and fail)."""
    scores = [sum(_angle_from_forward(rotation, turn[:, a]) for a in axes) for turn in _QUARTER_TURNS]
    return _QUARTER_TURNS[int(np.argmin(scores))].T


def room_layout(points: dict) -> tuple[np.ndarray, None]:
    """load_ops.room_layout: the room box in the frame of a camera turned so its view is x-major, 9 numbers
    standardised by the fixed mean and std: box centre in the camera frame, sxyz Euler angles of the camera in
    the canonical world, box size along the canonical x, y, z."""
    rotation, location = _swapped_camera(points)
    ranges = points["bounding_box_ranges"]
    box = np.array([ranges["x"], (-np.asarray(ranges["y"], dtype=np.float64))[::-1], ranges["z"]], np.float64)
    turn = _canonical_turn(rotation, (0,))
    box = np.sort(turn @ box, axis=1)
    rotation, location = turn @ rotation, turn @ location
    centre = rotation.T @ (box.mean(axis=1) - location)
    vector = np.concatenate([centre, matrix_to_euler(rotation), box[:, 1] - box[:, 0]])
    return ((vector - ROOM_LAYOUT_MEAN) / ROOM_LAYOUT_STD).astype(np.float32), None


def vanishing_point(points: dict) -> tuple[np.ndarray, None]:
    """load_ops.vanishing_point_well_defined: the canonical world's x, y, z axes in the camera frame (x right,
    y up, z backward), world turned so the view lies between its +x and +y; 9 numbers, not standardised."""
    rotation, _ = _swapped_camera(points)
    rotation = _canonical_turn(rotation, (0, 1)) @ rotation
    return np.ascontiguousarray(rotation).reshape(-1).astype(np.float32), None


def relative_pose(
    first_rotation: Sequence[float],
    first_location: Sequence[float],
    second_rotation: Sequence[float],
    second_location: Sequence[float],
) -> np.ndarray:
    """The first camera in the second's frame, 6 numbers in float64: the sxyz Euler angles of R2^T R1, then
    R2^T (location1 - location2), each R from its camera's sxyz Euler angles."""
    rotation1, rotation2 = euler_to_matrix(first_rotation), euler_to_matrix(second_rotation)
    offset = np.asarray(first_location, np.float64) - np.asarray(second_location, np.float64)
    return np.concatenate([matrix_to_euler(rotation2.T @ rotation1), rotation2.T @ offset])


def standardise_pose(pose: np.ndarray, fixated: bool) -> np.ndarray:
    """A relative pose standardised by the original's fixed statistics of fixated or nonfixated pairs."""
    mean, std = (FIXATED_POSE_MEAN, FIXATED_POSE_STD) if fixated else (NONFIXATED_POSE_MEAN, NONFIXATED_POSE_STD)
    return (pose - np.asarray(mean)) / np.asarray(std)


def relative_camera_pose(first: dict, second: dict, fixated: bool = True, standardise: bool = True) -> np.ndarray:
    """load_ops.calculate_relative_camera_pose: the first view's camera in the second's frame (`relative_pose`),
    from `camera_rotation_final` and `camera_location` (no x/y swap here, unlike the room labels). Standardised
    by the fixed statistics of the fixated or nonfixated pairs unless `standardise` is False. A triplet's
    egomotion is the poses of (0, 1), (0, 2) and (1, 2) one after another."""
    pose = relative_pose(
        first["camera_rotation_final"],
        first["camera_location"],
        second["camera_rotation_final"],
        second["camera_location"],
    )
    if standardise:
        pose = standardise_pose(pose, fixated)
    return pose.astype(np.float32)
