"""Hand landmark post-processing, as MediaPipe's hand_landmark_cpu.pbtxt does it: 21 (x, y, z) in the
224x224 crop's pixels -> image pixels through the crop's region, presence and handedness scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hands.geometry import Region

INPUT_SIZE = 224
MIN_PRESENCE = 0.5
HANDEDNESS = ("Left", "Right")  # the model's score is that of "Right", for a mirrored (selfie) picture
Z_NORMALIZE = 0.4  # the landmark graph's extra z scale (the z distribution of its training data)


@dataclass(frozen=True)
class LandmarkResult:
    """21 landmarks [21, 3] in image pixels (z on the x scale, smaller nearer the camera, the wrist near 0),
    the hand-presence score and the handedness label with its score."""

    landmarks: np.ndarray
    presence: float
    handedness: str
    handedness_score: float


def project(raw: np.ndarray, presence: float, right: float, region: Region) -> LandmarkResult:
    """The model's [63] crop-pixel landmarks and its two scores -> image pixels for the crop of `region`."""
    points = np.asarray(raw, np.float32).reshape(21, 3) / INPUT_SIZE
    xy = region.to_image(points[:, :2].astype(np.float64))
    z = points[:, 2:3] / Z_NORMALIZE * region.width
    label = 1 if right > 0.5 else 0
    return LandmarkResult(np.concatenate([xy, z], axis=1).astype(np.float32), float(presence), HANDEDNESS[label],
                          float(right if label else 1 - right))
