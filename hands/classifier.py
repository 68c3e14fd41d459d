"""A version's pose classifier at inference: hand landmarks -> pose features -> class probabilities.

`PoseClassifier` is plain numpy (standardised features, one linear layer, softmax) and round-trips through
`to_dict` / `from_dict` as the JSON a version carries (version_format.layout.POSE_FILE). Training writes it
(training/pose.py); the server reads it and answers with it wherever a hand is found."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hands.pose import FEATURE_NAMES, NORMALISED_NAMES, normalised_coordinates, pose_features

KIND = "pose-logistic-regression"

# name -> (landmarks [21, 3] -> features, feature names)
FEATURES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], tuple[str, ...]]] = {
    "pose": (pose_features, FEATURE_NAMES),
    "normalised": (normalised_coordinates, NORMALISED_NAMES),
}


def featurise(landmarks: np.ndarray, features: str = "pose") -> np.ndarray:
    """[n, 21, 3] landmarks -> float32 [n, F] features of the named kind (`FEATURES`)."""
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; known: {sorted(FEATURES)}")
    fn, names = FEATURES[features]
    return np.stack([fn(hand) for hand in landmarks]) if len(landmarks) else np.zeros((0, len(names)), np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class PoseClassifier:
    """Standardised features -> softmax(x @ weights + bias) over `labels`."""

    weights: np.ndarray  # [F, C]
    bias: np.ndarray  # [C]
    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]
    labels: tuple[str, ...]
    feature_names: tuple[str, ...]
    features: str = "pose"

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """[n, F] (or one [F]) features -> [n, C] (or [C]) class probabilities."""
        x = np.asarray(features, np.float64)
        one = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features, got {x.shape[1]}")
        probs = _softmax((x - self.mean) / self.std @ self.weights + self.bias)
        return probs[0] if one else probs

    def predict_landmarks(self, landmarks: np.ndarray) -> np.ndarray:
        """[n, 21, 3] landmarks -> [n, C] class probabilities."""
        return self.predict_proba(featurise(landmarks, self.features))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "features": self.features, "labels": list(self.labels),
                "feature_names": list(self.feature_names), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoseClassifier:
        try:
            labels, names = tuple(data["labels"]), tuple(data["feature_names"])
            features = str(data.get("features", "pose"))
            model = cls(np.array(data["weights"], np.float64), np.array(data["bias"], np.float64),
                        np.array(data["mean"], np.float64), np.array(data["std"], np.float64), labels, names, features)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a pose classifier: {e}") from e
        f, c = len(names), len(labels)
        if (model.weights.shape != (f, c) or model.bias.shape != (c,) or model.mean.shape != (f,)
                or model.std.shape != (f,)):
            raise ValueError(f"pose classifier shapes disagree with its {f} features and {c} labels")
        if features not in FEATURES:
            raise ValueError(f"unknown features {features!r}; known: {sorted(FEATURES)}")
        if FEATURES[features][1] != names:
            raise ValueError(f"the classifier's feature names are not those of the {features!r} features")
        return model


def read_pose_classifier(path: Path) -> PoseClassifier | None:
    """The classifier a version carries at `path` (its POSE_FILE), or None when it has none; a file that is
    there but not a pose classifier raises ValueError (the version is broken, not poseless)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a pose classifier")
    return PoseClassifier.from_dict(data)


def scores_in_order(probabilities: np.ndarray, pose_labels: tuple[str, ...], labels: tuple[str, ...]) -> np.ndarray:
    """[n, len(pose_labels)] -> float32 [n, len(labels)] in the version's label order: a label the pose
    classifier does not know (`none`: a hand was found) scores 0."""
    out = np.zeros((len(probabilities), len(labels)), np.float32)
    for i, label in enumerate(pose_labels):
        if label not in labels:
            raise ValueError(f"the pose classifier's label {label!r} is not one of the version's {labels}")
        out[:, labels.index(label)] = probabilities[:, i]
    return out
