"""MediaPipe's palm post-processing, ported: anchors, decoding, weighted NMS, the hand region, the crop and the
landmark projection, against hand-made tensors and boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from hands import landmarks as lm
from hands import palm as pd
from hands.anchors import anchor_centres
from hands.geometry import Region, crop


def test_anchor_count_and_known_centres():
    anchors = anchor_centres()
    assert anchors.shape == (2016, 2)
    # stride 8: a 24x24 grid, two anchors per cell (the aspect ratio's and the interpolated one)
    np.testing.assert_allclose(anchors[0], [0.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(anchors[48], [0.5 / 24, 1.5 / 24])
    np.testing.assert_allclose(anchors[1151], [23.5 / 24, 23.5 / 24])
    # the three stride-16 layers share a 12x12 grid: six anchors per cell
    np.testing.assert_allclose(anchors[1152:1158], [[0.5 / 12, 0.5 / 12]] * 6)
    np.testing.assert_allclose(anchors[1158], [1.5 / 12, 0.5 / 12])
    np.testing.assert_allclose(anchors[-1], [11.5 / 12, 11.5 / 12])


def raw_palm(index: int, logit: float, box_px: tuple[float, float, float, float],
             keypoints_px: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.zeros((2016, 18), np.float32)
    scores = np.full((2016, 1), -10.0, np.float32)
    boxes[index, :4] = box_px
    boxes[index, 4:] = np.array(keypoints_px, np.float32).ravel()
    scores[index] = logit
    return boxes, scores


def test_decode_a_hand_made_tensor():
    index = 1152 + 6 * (12 * 5 + 7) + 3  # a stride-16 anchor in row 5, column 7: centre (7.5/12, 5.5/12)
    keypoints = [(float(k), -float(k)) for k in range(7)]
    boxes, scores = raw_palm(index, 2.0, (19.2, -9.6, 38.4, 57.6), keypoints)
    palms = pd.decode(boxes, scores)
    assert len(palms) == 1
    palm = palms[0]
    cx, cy = 7.5 / 12 + 0.1, 5.5 / 12 - 0.05
    np.testing.assert_allclose(palm.box, (cx - 0.1, cy - 0.15, cx + 0.1, cy + 0.15), atol=1e-6)
    assert palm.score == pytest.approx(1 / (1 + math.exp(-2.0)))
    expected = np.array([(7.5 / 12 + k / 192, 5.5 / 12 - k / 192) for k in range(7)])
    np.testing.assert_allclose(palm.keypoints, expected, atol=1e-6)


def test_scores_are_clipped_and_thresholded():
    boxes, scores = raw_palm(10, 1e30, (0, 0, 20, 20), [(0, 0)] * 7)
    scores[11] = -1e30
    scores[12] = 0.0  # exactly 0.5: kept, as MediaPipe keeps scores >= the threshold
    scores[13] = -0.01
    with np.errstate(over="raise"):
        palms = pd.decode(boxes, scores)
    assert [p.score for p in palms] == pytest.approx([1.0, 0.5])
    assert pd.decode(boxes, scores, min_score=0.9)[0].score == pytest.approx(1.0)


def test_weighted_nms_merges_overlapping_boxes():
    points = np.zeros((7, 2), np.float32)
    strong = pd.Palm((0.10, 0.10, 0.30, 0.30), points, 0.9)
    weak = pd.Palm((0.12, 0.12, 0.32, 0.32), points + 0.3, 0.6)
    apart = pd.Palm((0.60, 0.60, 0.80, 0.80), points, 0.7)
    merged = pd.weighted_nms([weak, apart, strong])
    assert [p.score for p in merged] == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(merged[0].box, np.array([0.10, 0.10, 0.30, 0.30]) * 0.6 + np.array(
        [0.12, 0.12, 0.32, 0.32]) * 0.4, atol=1e-6)
    np.testing.assert_allclose(merged[0].keypoints, np.full((7, 2), 0.3 * 0.4), atol=1e-6)
    np.testing.assert_allclose(merged[1].box, apart.box)
    # an overlap at or below 0.3 IoU stays apart
    near = pd.Palm((0.20, 0.10, 0.40, 0.30), points, 0.5)  # IoU 1/3
    assert len(pd.weighted_nms([strong, near])) == 1
    beside = pd.Palm((0.25, 0.10, 0.45, 0.30), points, 0.5)  # IoU 1/7
    assert len(pd.weighted_nms([strong, beside])) == 2


def palm_with(wrist: tuple[float, float], middle: tuple[float, float]) -> pd.Palm:
    points = np.zeros((7, 2), np.float32)
    points[pd.WRIST], points[pd.MIDDLE_BASE] = wrist, middle
    return pd.Palm((0.4, 0.4, 0.6, 0.5), points, 0.9)  # 0.2 wide, 0.1 high


def test_hand_region_of_an_upright_palm():
    region = pd.hand_region(palm_with((0.5, 0.5), (0.5, 0.4)), 100)
    assert region.rotation == pytest.approx(0)
    assert (region.cx, region.cy) == pytest.approx((50, 45 - 0.5 * 10))  # moved up by half the box's height
    assert region.width == region.height == pytest.approx(20 * 2.6)  # square on the long side, times 2.6


def test_hand_region_of_a_palm_pointing_right():
    region = pd.hand_region(palm_with((0.4, 0.45), (0.6, 0.45)), 100)
    assert region.rotation == pytest.approx(math.pi / 2)
    # the shift follows the turned region's vertical axis: towards the fingers, on the right
    assert (region.cx, region.cy) == pytest.approx((50 + 0.5 * 10, 45))


def test_crop_follows_the_region():
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = np.arange(60)[None, :] * 4  # red grows to the right
    rgb[..., 1] = np.arange(40)[:, None] * 6  # green grows downwards
    picture = Image.fromarray(rgb)
    plain = crop(picture, Region(30, 20, 20, 20), 20) * 255
    # corners on the region's corners, pixel centres on integers: output pixel u samples x = 20 + u
    np.testing.assert_allclose(plain[0, 0, :2], [20 * 4, 10 * 6], atol=0.6)
    np.testing.assert_allclose(plain[5, 10, :2], [30 * 4, 15 * 6], atol=0.6)
    turned = crop(picture, Region(30, 20, 20, 20, math.pi / 2), 20) * 255
    # a quarter turn: the crop's x axis runs down the picture, its y axis leftwards
    np.testing.assert_allclose(turned[0, 5, :2], [40 * 4, 15 * 6], atol=0.6)
    outside = crop(picture, Region(-50, -50, 10, 10), 8, fill=128) * 255
    np.testing.assert_allclose(outside, 128, atol=0.6)


def test_landmarks_project_through_the_region():
    raw = np.zeros((21, 3), np.float32)
    raw[0] = (112, 112, 0)  # the crop's centre
    raw[1] = (224, 112, 22.4)  # the middle of its right edge
    region = Region(100, 80, 50, 50, math.pi / 2)
    found = lm.project(raw.ravel(), 0.9, 0.8, region)
    np.testing.assert_allclose(found.landmarks[0], (100, 80, 0), atol=1e-4)
    # turned a quarter: the crop's right edge is the region's lower edge
    np.testing.assert_allclose(found.landmarks[1], (100, 105, 22.4 / 224 / 0.4 * 50), atol=1e-4)
    assert (found.handedness, found.handedness_score) == ("Right", pytest.approx(0.8))
    assert lm.project(raw.ravel(), 0.9, 0.3, region).handedness == "Left"
