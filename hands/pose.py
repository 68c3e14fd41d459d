"""Pose features of one hand's 21 landmarks that a turn, a scale, a shift or a mirror leave unchanged.

`pose_features(landmarks) -> float32 [F]`, named by `FEATURE_NAMES`. Every feature is a cosine of an angle
between two 3D vectors or a ratio of two 3D distances, so a rotation in space (a 2D turn included), a
uniform scale, a translation and a reflection (a mirrored picture, a left hand for a right one) all leave
it unchanged. A classifier on them learns the pose, not where or how large the hand is in the picture nor
which way it faces: on real photos they carried over from renders where raw coordinates did not.

z is used. It is the landmark model's estimate of depth (on x's scale), not a measurement, but without it
a finger pointing at the camera looks folded (its projected segments shrink and turn) and the features
would change with the hand's tilt; with it, angles and lengths are those of the hand in space, which is
what makes a 3D rotation leave them unchanged. The classifier's training jitters z's scale instead
(training/pose.py) so that it does not lean on z being exact.

Landmark order (MediaPipe): 0 wrist; thumb 1-4 (CMC, MCP, IP, tip); index 5-8, middle 9-12, ring 13-16,
little 17-20 (each MCP, PIP, DIP, tip)."""

from __future__ import annotations

import numpy as np

WRIST = 0
FINGERS = {"thumb": 1, "index": 5, "middle": 9, "ring": 13, "little": 17}  # each finger's first landmark
_JOINTS = {"thumb": ("cmc", "mcp", "ip"), "index": ("mcp", "pip", "dip"), "middle": ("mcp", "pip", "dip"),
           "ring": ("mcp", "pip", "dip"), "little": ("mcp", "pip", "dip")}
# pairs of fingertips whose distance (over the wrist-to-middle-base length) tells the poses apart: the
# first three are the ones measured to carry over to photos, the rest add spread and a tucked thumb
_TIP_PAIRS = (("index", "middle"), ("middle", "ring"), ("thumb", "index"), ("ring", "little"),
              ("thumb", "middle"), ("thumb", "little"))
# adjacent fingers whose directions (base to tip) are compared: scissors' V spreads index and middle
_SPREADS = (("index", "middle"), ("middle", "ring"), ("ring", "little"))
_PALM = (0, 5, 9, 13, 17)  # the palm's centre: the wrist and the four finger bases

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{finger}_{joint}_cos" for finger, joints in _JOINTS.items() for joint in joints),
    *(f"{finger}_tip_wrist_over_{'mcp' if finger == 'thumb' else 'pip'}_wrist" for finger in FINGERS),
    *(f"{a}_{b}_tips_over_palm" for a, b in _TIP_PAIRS),
    *(f"{a}_{b}_spread_cos" for a, b in _SPREADS),
    *(f"{finger}_tip_palm_centre_over_palm" for finger in FINGERS),
    "thumb_tip_index_base_over_palm",
)
NUM_FEATURES = len(FEATURE_NAMES)

# below this fraction of the hand's size a length is taken as zero (its ratio and cosine are then 0):
# degenerate input (all points equal, a collapsed finger) gives finite features instead of NaN
_TINY = 1e-6


def _ratio(num: np.ndarray | np.floating | float, den: np.ndarray | np.floating | float) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.where(den > _TINY, num / np.maximum(den, _TINY), 0.0)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of the angle between vectors a and b (last axis); 0 when either is (nearly) zero."""
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    return _ratio(np.sum(a * b, axis=-1), na * nb)


def pose_features(landmarks: np.ndarray) -> np.ndarray:
    """float [21, 3] landmarks (x, y, z on one scale; pixels or normalised) -> float32 [NUM_FEATURES]."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (21, 3):
        raise ValueError(f"expected landmarks of shape (21, 3), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("landmarks must be finite")
    # the hand at the origin and of unit size, so that _TINY is relative to the hand, not the picture
    points = points - points.mean(axis=0)
    size = float(np.sqrt((points**2).sum(axis=1).mean()))
    if size <= _TINY:
        return np.zeros(NUM_FEATURES, np.float32)
    points /= size

    def dist(i: int | np.ndarray, j: int | np.ndarray) -> np.ndarray:
        return np.asarray(np.linalg.norm(points[i] - points[j], axis=-1))

    palm = dist(WRIST, FINGERS["middle"])
    tip = {finger: first + 3 for finger, first in FINGERS.items()}
    features: list[np.ndarray] = []
    for first in FINGERS.values():
        # a finger's chain: the wrist, then its four landmarks; a joint's cosine is that of the angle
        # between the segment into it and the one out of it (1 straight, -1 folded back)
        chain = points[[WRIST, first, first + 1, first + 2, first + 3]]
        segments = np.diff(chain, axis=0)
        features.append(_cos(segments[:-1], segments[1:]))
    features.append(np.array([_ratio(dist(first + 3, WRIST), dist(first + 1, WRIST)) for first in FINGERS.values()]))
    features.append(np.array([_ratio(dist(tip[a], tip[b]), palm) for a, b in _TIP_PAIRS]))
    features.append(np.array([_cos(points[tip[a]] - points[FINGERS[a]], points[tip[b]] - points[FINGERS[b]])
                              for a, b in _SPREADS]))
    centre = points[list(_PALM)].mean(axis=0)
    features.append(np.array([_ratio(np.linalg.norm(points[t] - centre), palm) for t in tip.values()]))
    features.append(np.atleast_1d(_ratio(dist(tip["thumb"], FINGERS["index"]), palm)))
    out = np.concatenate([np.atleast_1d(f) for f in features]).astype(np.float32)
    assert out.shape == (NUM_FEATURES,)
    return out


def normalised_coordinates(landmarks: np.ndarray) -> np.ndarray:
    """The baseline the pose features are compared with: the 63 coordinates with the wrist at the origin,
    divided by the wrist-to-middle-base length (so shift and scale drop out, but not turns or mirrors)."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (21, 3):
        raise ValueError(f"expected landmarks of shape (21, 3), got {points.shape}")
    points = points - points[WRIST]
    palm = float(np.linalg.norm(points[FINGERS["middle"]]))
    return (points / palm if palm > _TINY else np.zeros_like(points)).reshape(-1).astype(np.float32)


NORMALISED_NAMES: tuple[str, ...] = tuple(f"p{i}_{axis}" for i in range(21) for axis in "xyz")
