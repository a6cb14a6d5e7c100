"""Labels and losses against values worked out by hand, each by another route than the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taskonomy_db import labels
from taskonomy_db.losses import (
    SEGMENT_SAMPLED_PIXELS,
    SEMANTIC_CLASS_FREQUENCIES,
    dense_cross_entropy,
    l2_loss,
    segment_metric_loss,
    semantic_prior_factor,
)
from taskonomy_db.tasks import get_task

# A room spanning world x in [0, 4], y in [0, 6], z in [0, 3]; camera files give x and y swapped.
ROOM = {"x": [0.0, 6.0], "y": [0.0, 4.0], "z": [0.0, 3.0]}
CAMERA = [1.0, 2.0, 1.5]


def camera_file(yaw: float, pitch: float = 0.0) -> dict:
    """A real-format camera file (only the fields the labels read) of a level camera turned by `yaw`:
    Blender XYZ Euler (pi/2 + pitch, 0, yaw) looks along world (-sin yaw, cos yaw, 0) at pitch 0."""
    return {
        "camera_location": CAMERA,
        "camera_rotation_final": [math.pi / 2 + pitch, 0.0, yaw],
        "bounding_box_ranges": ROOM,
        "field_of_view_rads": 1.0,
        "resolution": 64,
    }


def layout_by_hand(yaw: float) -> np.ndarray:
    """Level camera: the room centre (2, 3, 1.5) is (1, 1, 0) away; in the camera frame that is its dot products
    with right (cos, sin, 0), up (0, 0, 1) and backward (sin, -cos, 0). The canonical yaw is the view's azimuth
    turned by quarter turns into [-pi/4, pi/4], minus pi/2; the canonical x is the horizontal axis nearest the
    view (the room's y extent 6 when the view runs along y)."""
    c, s = math.cos(yaw), math.sin(yaw)
    turned = (yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4
    along_y = abs(c) > abs(s)
    sizes = [6.0, 4.0, 3.0] if along_y else [4.0, 6.0, 3.0]
    vector = np.array([c + s, 0.0, s - c, math.pi / 2, 0.0, turned - math.pi / 2, *sizes])
    return (vector - labels.ROOM_LAYOUT_MEAN) / labels.ROOM_LAYOUT_STD


@pytest.mark.parametrize("yaw", [0.3, -0.3, 1.2, 2.0, math.pi - 0.01, -math.pi + 0.01, -2.5])
def test_room_layout_of_a_level_camera(yaw: float):
    label, mask = labels.room_layout(camera_file(yaw))
    assert mask is None and label.dtype == np.float32 and label.shape == (9,)
    np.testing.assert_allclose(label, layout_by_hand(yaw), atol=1e-5)


def test_room_layout_is_the_same_on_both_sides_of_the_yaw_wrap():
    # One rotation written with yaw pi + 0.01 and -pi + 0.01: one label.
    a, _ = labels.room_layout(camera_file(math.pi + 0.01))
    b, _ = labels.room_layout(camera_file(-math.pi + 0.01))
    np.testing.assert_array_equal(a, b)
    # Cameras either side of the wrap get nearby labels (only the canonical yaw moves, by 0.02 rad).
    c, _ = labels.room_layout(camera_file(math.pi - 0.01))
    difference = (a - c) * labels.ROOM_LAYOUT_STD
    assert abs(difference[5] - 0.02) < 1e-5 and np.abs(np.delete(difference, 5)).max() < 0.03


def test_vanishing_points_of_a_level_camera():
    # Yaw 0.3: the view (-sin .3, cos .3, 0) lies between world +y (0.3 rad away) and world -x; those are the
    # canonical x and y. In the camera frame (right, up, backward): +y = (sin .3, 0, -cos .3), -x = (-cos .3,
    # 0, -sin .3), up = (0, 1, 0).
    label, _ = labels.vanishing_point(camera_file(0.3))
    c, s = math.cos(0.3), math.sin(0.3)
    np.testing.assert_allclose(label, [s, 0, -c, -c, 0, -s, 0, 1, 0], atol=1e-6)
    # Yaw pi - 0.01, written either way round the wrap: the view (-0.01, -1, 0) lies between world -x and -y.
    for yaw in (math.pi - 0.01, -math.pi - 0.01):
        label, _ = labels.vanishing_point(camera_file(yaw))
        c, s = math.cos(yaw), math.sin(yaw)  # right (c, s, 0), backward (s, -c, 0)
        np.testing.assert_allclose(label, [-c, 0, -s, -s, 0, c, 0, 1, 0], atol=1e-6)


def test_vanishing_points_of_a_pitched_camera_are_the_rotated_axes():
    label, _ = labels.vanishing_point(camera_file(0.3, pitch=-0.4))
    axes = label.reshape(3, 3)
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-6)
    # Up in the camera frame of a camera pitched down by 0.4: (0, cos .4, sin .4) (up and toward the back).
    np.testing.assert_allclose(axes[2], [0, math.cos(0.4), math.sin(0.4)], atol=1e-6)


def test_relative_pose_of_a_camera_pitched_above_another():
    # B is A (yaw .3) pitched up by .2 about its own x axis and 1 m higher: A's rotation in B's frame is a pitch
    # of -.2; the offset (0, 0, -1) in B's frame (right, up, backward) is (0, -cos .2, sin .2): looking up, B's
    # "down" leans backward.
    below = camera_file(0.3)
    above = camera_file(0.3, pitch=0.2) | {"camera_location": [CAMERA[0], CAMERA[1], CAMERA[2] + 1.0]}
    raw = [-0.2, 0.0, 0.0, 0.0, -math.cos(0.2), math.sin(0.2)]
    np.testing.assert_allclose(labels.relative_camera_pose(below, above, standardise=False), raw, atol=1e-6)
    nonfixated = (np.array(raw) - labels.NONFIXATED_POSE_MEAN) / labels.NONFIXATED_POSE_STD
    np.testing.assert_allclose(labels.relative_camera_pose(below, above, fixated=False), nonfixated, atol=1e-5)


def test_curvature_label_and_masked_l2():
    stored = np.array([[[127, 127, 127], [200, 60, 127]], [[0, 255, 127], [123, 120, 127]]], np.uint8)
    label, _ = labels.decode_curvature(stored)
    expected = np.zeros((2, 2, 2))
    for row in range(2):
        for col in range(2):
            expected[0, row, col] = (float(stored[row, col, 0]) - 123.572) / 31.922
            expected[1, row, col] = (float(stored[row, col, 1]) - 120.1) / 21.658
    np.testing.assert_allclose(label, expected, atol=1e-6)
    spec = get_task("principal_curvature")
    assert spec.loss_name == "l2" and spec.masked_by_depth
    errors = np.array([[[[0.5, -1.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]]]])  # (1, 2 channels, 2, 2)
    prediction = torch.tensor(expected[None] + errors)
    mask = torch.tensor([[[True, False], [True, True]]])
    # Valid pixels (0,0), (1,0), (1,1), two channels each: errors 0.5, 2, 0 and 0, 0, 3.
    expected_loss = (0.25 + 4 + 0 + 0 + 0 + 9) / 6
    loss = spec.loss(prediction, torch.tensor(expected[None]), mask)
    assert loss.shape == (1,) and abs(loss.item() - expected_loss) < 1e-9
    assert abs(l2_loss(prediction, torch.tensor(expected[None]), None).item() - (0.25 + 1 + 4 + 9) / 8) < 1e-9


def test_semantic_prior_factor_and_rebalanced_cross_entropy():
    factor = semantic_prior_factor().double()
    p = np.array(SEMANTIC_CLASS_FREQUENCIES)
    k = len(p)
    raw = [1 / (0.5 * p[i] + 0.5 / k) for i in range(k)]
    scale = sum(p[i] * raw[i] for i in range(k))
    assert factor[0].item() == 0  # uncertain
    for i in range(k):
        assert abs(factor[i + 1].item() - raw[i] / scale) < 1e-5
    # Three pixels with labels uncertain, background, table: the first weighs 0 and is not counted.
    logits = torch.tensor([[0.2, 1.0, -0.5] + [0.0] * 9, [0.0, 0.3, 2.0] + [0.1] * 9, [1.0, 0.0, 0.5] + [0.2] * 9])
    target = torch.tensor([[[0, 1, 2]]])
    prediction = logits.T.reshape(1, 12, 1, 3).double()
    terms = []
    for pixel, label in ((1, 1), (2, 2)):
        row = logits[pixel].double().tolist()
        log_sum = math.log(sum(math.exp(v) for v in row))
        terms.append(factor[label].item() * (log_sum - row[label]))
    expected = sum(terms) / 2
    assert abs(dense_cross_entropy(prediction, target, None).item() - expected) < 1e-6
    # A mask leaves out pixels the same way.
    masked = dense_cross_entropy(prediction, target, torch.tensor([[[True, True, False]]]))
    assert abs(masked.item() - terms[0]) < 1e-6


def metric_loss_by_hand(vectors: list[list[float]], segments: list[int]) -> float:
    total = 0.0
    for i, a in enumerate(vectors):
        for j, b in enumerate(vectors):
            distance = min(max(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)), 0.0), 80.0)
            sigma = min(max(2 / (1 + math.exp(distance)), 1e-7), 1 - 1e-7)
            total -= math.log(sigma) if segments[i] == segments[j] else math.log(1 - sigma)
    return total / len(vectors) ** 2


def test_segment_metric_loss_over_all_pairs_of_the_selected_pixels():
    embeddings = torch.tensor([[[0.0, 1.0], [0.5, 3.0]], [[0.2, 0.0], [-1.0, 9.0]]], dtype=torch.float64)[None]
    segments = torch.tensor([[[1, 1], [2, 2]]])
    pixels = [[embeddings[0, 0, r, c].item(), embeddings[0, 1, r, c].item()] for r in range(2) for c in range(2)]
    everything = segment_metric_loss(embeddings, segments, None)
    assert abs(everything.item() - metric_loss_by_hand(pixels, [1, 1, 2, 2])) < 1e-9
    mask = torch.tensor([[[True, False], [True, True]]])
    chosen = segment_metric_loss(embeddings, segments, mask)
    assert abs(chosen.item() - metric_loss_by_hand([pixels[0], pixels[2], pixels[3]], [1, 2, 2])) < 1e-9


def test_segment_pixels_are_sampled_per_image_at_test_and_from_the_generator_in_training():
    spec = get_task("segment_unsup25d")
    assert not spec.masked_by_depth and "depth_zbuffer" not in spec.domains
    rgb = torch.zeros(3, 3, 32, 32)
    segments = torch.zeros(3, 32, 32, dtype=torch.int32)
    ids = torch.tensor([5, 6, 7])
    first = spec.make_batch(rgb, segments, None, ids, train=False).masks
    assert first.shape == (3, 32, 32) and first.flatten(1).sum(1).tolist() == [SEGMENT_SAMPLED_PIXELS] * 3
    alone = spec.make_batch(rgb[1:2], segments[1:2], None, ids[1:2], train=False).masks
    assert torch.equal(alone[0], first[1])  # an image's pixels do not depend on its batch
    assert not torch.equal(first[0], first[1])
    drawn = [spec.make_batch(rgb, segments, None, ids, True, torch.Generator().manual_seed(s)).masks for s in (1, 1, 2)]
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], drawn[2])
    small = spec.make_batch(rgb[:1, :, :8, :8], segments[:1, :8, :8], None, ids[:1], train=False).masks
    assert bool(small.all())  # fewer pixels than the sample: every one


def test_edge_occlusion_label_is_rescaled_and_blurred():
    stored = np.zeros((64, 64), np.uint16)
    stored[10, 20], stored[0, 0], stored[40, 63] = 65535, 32768, 6553
    label, mask = labels.decode_edge_occlusion(stored)
    assert mask is None and label.shape == (1, 64, 64)
    scaled = stored.astype(np.float64) / 65535 * 2 - 1
    # sigma 4 px at 256 px is 1 px at 64; scipy's kernel reaches int(4 * sigma + 0.5) = 4 px, borders reflect
    # (d c b a | a b c d).
    weights = [math.exp(-(x**2) / 2) for x in range(-4, 5)]
    weights = [w / sum(weights) for w in weights]

    def reflect(i: int) -> int:
        return -i - 1 if i < 0 else 2 * 64 - i - 1 if i >= 64 else i

    for row, col in ((10, 20), (11, 22), (0, 0), (2, 1), (40, 63), (38, 61), (30, 30)):
        value = sum(
            weights[a + 4] * weights[b + 4] * scaled[reflect(row + a), reflect(col + b)]
            for a in range(-4, 5)
            for b in range(-4, 5)
        )
        assert abs(label[0, row, col] - value) < 1e-6
    assert get_task("edge_occlusion").masked_by_depth


def test_a_label_version_is_part_of_the_result_keys():
    from dataclasses import replace

    from taskonomy_db import tasks
    from taskonomy_db.settings import TrainSettings, as_dict
    from taskonomy_db.training import settings_hash
    from taskonomy_db.transfer_settings import RESULT_SETTINGS, settings_digest

    defaults = as_dict(TrainSettings())
    assert settings_hash(defaults, "splits", 1) != settings_hash(defaults, "splits", 2)
    settings = dict.fromkeys(RESULT_SETTINGS, 1) | {"seed": 0}
    before_digest, before = tasks.label_versions_digest(), settings_digest(settings, "data", {})
    spec = tasks.get_task("normal")
    tasks._REGISTRY["normal"] = replace(spec, label_version=spec.label_version + 1)
    try:
        assert tasks.label_versions_digest() != before_digest
        assert settings_digest(settings, "data", {}) != before
    finally:
        tasks._REGISTRY["normal"] = spec


def test_l1_loss_averages_each_image_over_its_own_valid_pixels():
    spec = get_task("normal")
    assert spec.loss_name == "l1" and spec.masked_by_depth
    # Three images of 2 channels x 1 x 3 pixels; the mask covers both channels of a pixel.
    prediction = torch.tensor(
        [[[[1.0, -2.0, 4.0]], [[0.5, 0.0, -1.0]]], [[[3.0, 3.0, 3.0]], [[-3.0, -3.0, -3.0]]], [[[9.0, 9.0, 9.0]]] * 2],
        dtype=torch.float64,
    )
    target = torch.zeros_like(prediction)
    target[1, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    mask = torch.tensor([[[True, False, True]], [[False, False, True]], [[False, False, False]]])
    # Image 0: |1|, |4| and |.5|, |-1| over 4 valid entries. Image 1: the last pixel only, |3 - 3| and |-3 - 0|.
    # Image 2: nothing valid, loss 0 (not NaN, and not the errors of its invalid pixels).
    expected = [(1 + 4 + 0.5 + 1) / 4, (0 + 3) / 2, 0.0]
    loss = spec.loss(prediction, target, mask)
    assert loss.shape == (3,) and all(abs(a - b) < 1e-12 for a, b in zip(loss.tolist(), expected, strict=True))
    unmasked = spec.loss(prediction, target, None)
    assert abs(unmasked[0].item() - (1 + 2 + 4 + 0.5 + 0 + 1) / 6) < 1e-12


def prior_factor_by_hand(label: int) -> float:
    """semseg_prior_factor's formula (see test_semantic_prior_factor_and_rebalanced_cross_entropy); 0 for
    label 0, uncertain."""
    p = SEMANTIC_CLASS_FREQUENCIES
    raw = [1 / (0.5 * f + 0.5 / len(p)) for f in p]
    return 0.0 if label == 0 else raw[label - 1] / sum(f * r for f, r in zip(p, raw, strict=True))


def test_rebalanced_cross_entropy_counts_each_image_over_its_own_weighted_pixels():
    logits = [[0.3 * k - 1.0 for k in range(12)], [1.0 if k == 3 else 0.0 for k in range(12)], [0.5] * 12]
    prediction = torch.tensor(logits, dtype=torch.float64).T.reshape(1, 12, 1, 3).repeat(2, 1, 1, 1)
    # Image 0: uncertain, background, label 3 with the last pixel masked off: only the middle pixel counts.
    # Image 1: every pixel uncertain: no weight anywhere, loss 0.
    target = torch.tensor([[[0, 1, 3]], [[0, 0, 0]]])
    mask = torch.tensor([[[True, True, False]], [[True, True, True]]])
    middle = logits[1]
    cross_entropy = math.log(sum(math.exp(v) for v in middle)) - middle[1]
    loss = dense_cross_entropy(prediction, target, mask)
    # 1e-6: the factor table is float32 (a relative 6e-8), the rest float64.
    assert abs(loss[0].item() - prior_factor_by_hand(1) * cross_entropy) < 1e-6
    assert loss[1].item() == 0.0
    # Unmasked, the third pixel joins: the weighted sum is divided by the count of weighted pixels (2), not by
    # the sum of their weights.
    last = logits[2]
    third = prior_factor_by_hand(3) * (math.log(sum(math.exp(v) for v in last)) - last[3])
    expected = (prior_factor_by_hand(1) * cross_entropy + third) / 2
    assert abs(dense_cross_entropy(prediction, target, None)[0].item() - expected) < 1e-6


def test_segment_metric_loss_of_an_image_with_no_selected_pixel_is_zero_and_keeps_the_batch_finite():
    embeddings = torch.tensor([[[[0.0, 1.0], [0.5, 3.0]], [[0.2, 0.0], [-1.0, 9.0]]]] * 2, dtype=torch.float64)
    embeddings.requires_grad_(True)
    segments = torch.tensor([[[1, 1], [2, 2]]] * 2)
    mask = torch.tensor([[[False, True], [True, False]], [[False, False], [False, False]]])
    loss = segment_metric_loss(embeddings, segments, mask)
    pixels = [[0.0, 0.2], [1.0, 0.0], [0.5, -1.0], [3.0, 9.0]]  # (channel 0, channel 1) of each pixel, row-major
    assert abs(loss[0].item() - metric_loss_by_hand([pixels[1], pixels[2]], [1, 2])) < 1e-9
    assert loss[1].item() == 0.0
    loss.sum().backward()
    assert torch.isfinite(embeddings.grad).all() and not embeddings.grad[1].any()


@pytest.mark.parametrize("task", ["normal", "principal_curvature", "segment_semantic", "segment_unsup2d"])
def test_a_masked_loss_depends_on_the_prediction_exactly_where_the_mask_is_on(task: str):
    """One task per masked loss (l1, l2, dense_cross_entropy, segment_metric). The pixels that count are the
    mask's, less segment_semantic's label 0 (uncertain, weight 0)."""
    spec = get_task(task)
    generator = torch.Generator().manual_seed(19)
    shape = (2, spec.out_channels, 4, 4)
    prediction = 0.1 * torch.randn(shape, generator=generator, dtype=torch.float64)
    if spec.output_kind == "dense":
        target = torch.randn(shape, generator=generator, dtype=torch.float64)
    else:
        target = torch.randint(0, 3, (2, 4, 4), generator=generator)  # labels 0-2, or segment ids
    mask = torch.rand(2, 4, 4, generator=generator) < 0.5
    counts = mask & (target != 0) if task == "segment_semantic" else mask
    assert counts.flatten(1).any(1).all() and not counts.flatten(1).all(1).any()  # both kinds in each image
    before = spec.loss(prediction, target, mask)

    noise = 5 * torch.randn(shape, generator=generator, dtype=torch.float64)
    outside = spec.loss(prediction + noise * ~counts[:, None], target, mask)
    assert torch.equal(outside, before)

    row, col = counts[0].nonzero()[0].tolist()
    nudged = prediction.clone()
    nudged[0, :, row, col] += noise[0, :, row, col]  # not a uniform shift, which softmax would ignore
    inside = spec.loss(nudged, target, mask)
    assert abs(inside[0].item() - before[0].item()) > 1e-3
    assert inside[1].item() == before[1].item()  # per image: the other image is untouched


def test_the_registry_takes_behaviour_as_data_by_keyword():
    import dataclasses

    from taskonomy_db.tasks import TaskSpec, register_task

    with pytest.raises(TypeError):  # positional fields would hide which value is which
        TaskSpec("x", "2D", "rgb", "dense", 3, None, "l1")  # type: ignore[misc]
    underived = dataclasses.replace(get_task("autoencoding"), name="autoencoding_copy", derived_label=None)
    with pytest.raises(ValueError, match="a label without a file is derived"):
        register_task(underived)
    # colorization's target is the chroma of its image because its entry says so, not because of its name
    rgb = torch.rand(2, 3, 8, 8)
    batch = get_task("colorization").make_batch(rgb, None, None, torch.tensor([1, 2]), train=False)
    assert batch.targets.shape[1] == 2 and get_task("colorization").derived_label == "chroma"
    assert torch.equal(get_task("autoencoding").make_batch(rgb, None, None, torch.tensor([1, 2]), False).targets, rgb)
