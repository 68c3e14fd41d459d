"""A version's pose classifier as TensorFlow ops: the `pose` signature TF Serving answers with.

`PoseModule(classifier, labels).serve(landmarks)` takes float32 [n, 21, 3] landmarks (x, y, z in the
picture's pixels, as `hands.HandStage` gives them) and gives float32 scores [n, len(labels)] in the
version's label order: exactly `scores_in_order(classifier.predict_landmarks(landmarks), ...)` of
hands/classifier.py, in plain TF ops (no Python, no numpy at serving time). The features are
`hands.pose.pose_features` (or `normalised_coordinates`) written again over a batch, in float64 like the
numpy original, with the same centring, unit size and `_TINY` guards, so that degenerate input (every
point the same) gives finite scores; tests/training/test_pose_graph.py holds the two to 1e-4 apart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from hands.classifier import PoseClassifier
from hands.pose import _PALM, _SPREADS, _TINY, _TIP_PAIRS, FINGERS, WRIST
from version_format.model_io import LANDMARKS_INPUT, SCORES_OUTPUT

_TIP = {finger: first + 3 for finger, first in FINGERS.items()}


def _norm(v: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(tf.reduce_sum(v * v, axis=-1))


def _ratio(num: tf.Tensor, den: tf.Tensor) -> tf.Tensor:
    """num / den, or 0 where den is (nearly) zero: never inf or NaN."""
    return tf.where(den > _TINY, num / tf.maximum(den, _TINY), tf.zeros_like(num))


def _cos(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return _ratio(tf.reduce_sum(a * b, axis=-1), _norm(a) * _norm(b))


def pose_features(landmarks: tf.Tensor) -> tf.Tensor:
    """float64 [n, 21, 3] -> float64 [n, NUM_FEATURES]: hands.pose.pose_features, row by row."""
    points = landmarks - tf.reduce_mean(landmarks, axis=1, keepdims=True)
    size = tf.sqrt(tf.reduce_mean(tf.reduce_sum(points * points, axis=-1), axis=1))  # [n]
    points = points / tf.maximum(size, _TINY)[:, None, None]

    def at(i: int) -> tf.Tensor:
        return points[:, i]

    def dist(i: int, j: int) -> tf.Tensor:
        return _norm(at(i) - at(j))

    palm = dist(WRIST, FINGERS["middle"])
    columns: list[tf.Tensor] = []
    for first in FINGERS.values():
        chain = tf.gather(points, [WRIST, first, first + 1, first + 2, first + 3], axis=1)
        segments = chain[:, 1:] - chain[:, :-1]  # [n, 4, 3]
        joints = _cos(segments[:, :-1], segments[:, 1:])  # [n, 3]
        columns += [joints[:, k] for k in range(3)]
    columns += [_ratio(dist(first + 3, WRIST), dist(first + 1, WRIST)) for first in FINGERS.values()]
    columns += [_ratio(dist(_TIP[a], _TIP[b]), palm) for a, b in _TIP_PAIRS]
    columns += [_cos(at(_TIP[a]) - at(FINGERS[a]), at(_TIP[b]) - at(FINGERS[b])) for a, b in _SPREADS]
    centre = tf.reduce_mean(tf.gather(points, list(_PALM), axis=1), axis=1)
    columns += [_ratio(_norm(at(t) - centre), palm) for t in _TIP.values()]
    columns.append(_ratio(dist(_TIP["thumb"], FINGERS["index"]), palm))
    features = tf.stack(columns, axis=1)
    # a hand of (nearly) no size has every feature 0, as in numpy
    return tf.where((size > _TINY)[:, None], features, tf.zeros_like(features))


def normalised_coordinates(landmarks: tf.Tensor) -> tf.Tensor:
    """float64 [n, 21, 3] -> [n, 63]: hands.pose.normalised_coordinates, row by row."""
    points = landmarks - landmarks[:, WRIST:WRIST + 1]
    palm = _norm(points[:, FINGERS["middle"]])
    scaled = points / tf.maximum(palm, _TINY)[:, None, None]
    flat = tf.reshape(scaled, [-1, 63])
    return tf.where((palm > _TINY)[:, None], flat, tf.zeros_like(flat))


FEATURES = {"pose": pose_features, "normalised": normalised_coordinates}


def label_map(pose_labels: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """[len(pose_labels), len(labels)] 0/1: the classifier's probabilities times it are the version's scores
    (a version label the classifier lacks, `none`, gets 0)."""
    missing = [label for label in pose_labels if label not in labels]
    if missing:
        raise ValueError(f"the pose classifier's labels {missing} are not among the version's {list(labels)}")
    out = np.zeros((len(pose_labels), len(labels)))
    for i, label in enumerate(pose_labels):
        out[i, list(labels).index(label)] = 1.0
    return out


class PoseModule(tf.Module):
    """The classifier's numbers as constants of the graph, and the `pose` signature's function."""

    def __init__(self, classifier: PoseClassifier, labels: Sequence[str]) -> None:
        super().__init__()
        if classifier.features not in FEATURES:
            raise ValueError(f"no TensorFlow port of the {classifier.features!r} features")
        self.features = FEATURES[classifier.features]
        self.mean = tf.constant(classifier.mean, tf.float64)
        self.std = tf.constant(classifier.std, tf.float64)
        self.weights = tf.constant(classifier.weights, tf.float64)
        self.bias = tf.constant(classifier.bias, tf.float64)
        self.to_labels = tf.constant(label_map(classifier.labels, labels), tf.float64)

    @tf.function(input_signature=[tf.TensorSpec([None, 21, 3], tf.float32, name=LANDMARKS_INPUT)])
    def serve(self, landmarks: tf.Tensor) -> dict[str, tf.Tensor]:
        points = tf.debugging.assert_all_finite(tf.cast(landmarks, tf.float64), "landmarks must be finite")
        x = (self.features(points) - self.mean) / self.std
        probabilities = tf.nn.softmax(tf.matmul(x, self.weights) + self.bias, axis=-1)
        return {SCORES_OUTPUT: tf.cast(tf.matmul(probabilities, self.to_labels), tf.float32)}
