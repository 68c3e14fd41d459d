"""Palm detection post-processing, as MediaPipe's palm graph does it: SSD decoding against the anchors,
sigmoid scores clipped at +-100, the score threshold, weighted non-max suppression, and the rotated hand
region (palm_detection_detection_to_roi.pbtxt) a palm leads to."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hands.anchors import anchor_centres
from hands.geometry import Region, normalize_angle

INPUT_SIZE = 192
MIN_SCORE = 0.5
NMS_MIN_IOU = 0.3
SCORE_CLIP = 100.0
KEYPOINTS = 7
WRIST, MIDDLE_BASE = 0, 2  # the keypoints that set the hand region's rotation
# the hand region around a palm: its box shifted by -0.5 of its height (towards the fingers), made
# square on its long side, then scaled by 2.6 to hold the whole hand
REGION_SHIFT_Y = -0.5
REGION_SCALE = 2.6
TARGET_ANGLE = math.pi / 2  # the wrist-to-middle-finger line points up in the landmark crop

_ANCHORS = anchor_centres()


@dataclass(frozen=True)
class Palm:
    """One palm in the detector's input frame, all coordinates in [0, 1]: box (x_min, y_min, x_max, y_max),
    7 keypoints [7, 2] (0 the wrist, 2 the middle finger's base) and the score."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray = _ANCHORS,
           min_score: float = MIN_SCORE) -> list[Palm]:
    """The model's [2016, 18] box regressions and [2016] or [2016, 1] logits -> the palms scoring
    >= min_score (before suppression), best first. Offsets are in input pixels, relative to each anchor."""
    # float64: exp(100) overflows float32
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(-1), -SCORE_CLIP, SCORE_CLIP)
    scores = 1 / (1 + np.exp(-logits))
    keep = np.flatnonzero(scores >= min_score)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    raw = np.asarray(raw_boxes, np.float32).reshape(len(anchors), -1)[keep] / INPUT_SIZE
    centres = anchors[keep]
    cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    points = raw[:, 4:4 + 2 * KEYPOINTS].reshape(-1, KEYPOINTS, 2) + centres[:, None, :]
    return [Palm((float(cx[i] - w[i] / 2), float(cy[i] - h[i] / 2), float(cx[i] + w[i] / 2),
                  float(cy[i] + h[i] / 2)), points[i], float(scores[k]))
            for i, k in enumerate(keep)]


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x_min, y_min, x_max, y_max) boxes; 0 when either is empty."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def weighted_nms(palms: list[Palm], min_iou: float = NMS_MIN_IOU) -> list[Palm]:
    """Weighted non-max suppression: the best remaining palm takes every other overlapping it by more than
    `min_iou`, and becomes their score-weighted mean box and keypoints, keeping its own score."""
    remaining = sorted(palms, key=lambda p: -p.score)
    merged: list[Palm] = []
    while remaining:
        best = remaining[0]
        group = [p for p in remaining if iou(best.box, p.box) > min_iou or p is best]
        remaining = [p for p in remaining if not any(p is g for g in group)]
        weights = np.array([p.score for p in group], np.float32)
        weights /= weights.sum()
        box = np.array([p.box for p in group], np.float32).T @ weights
        points = np.tensordot(weights, np.stack([p.keypoints for p in group]), axes=1)
        merged.append(Palm((float(box[0]), float(box[1]), float(box[2]), float(box[3])), points, best.score))
    return merged


def hand_region(palm: Palm, frame_size: float) -> Region:
    """The rotated square region (in the pixels of the detector's square frame of `frame_size` pixels) the
    landmark model is given for this palm."""
    x0, y0, x1, y1 = (v * frame_size for v in palm.box)
    wrist, middle = palm.keypoints[WRIST] * frame_size, palm.keypoints[MIDDLE_BASE] * frame_size
    rotation = normalize_angle(TARGET_ANGLE - math.atan2(-(middle[1] - wrist[1]), middle[0] - wrist[0]))
    width, height = x1 - x0, y1 - y0
    # the shift is along the region's own (turned) vertical axis
    cx = (x0 + x1) / 2 - REGION_SHIFT_Y * height * math.sin(rotation)
    cy = (y0 + y1) / 2 + REGION_SHIFT_Y * height * math.cos(rotation)
    side = max(width, height) * REGION_SCALE
    return Region(float(cx), float(cy), float(side), float(side), rotation)
