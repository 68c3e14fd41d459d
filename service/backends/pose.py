"""A local version's pose classifier: its POSE_FILE read once, scored in numpy (microseconds a hand), whichever
runtime answers its images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hands.classifier import PoseClassifier, read_pose_classifier, scores_in_order
from version_format.layout import POSE_FILE


class LocalPose:
    """A PoseScorer on the version's own file."""

    def __init__(self, classifier: PoseClassifier, labels: tuple[str, ...]):
        self.classifier = classifier
        self.labels = labels
        scores_in_order(np.zeros((0, len(classifier.labels))), classifier.labels, labels)  # labels must fit

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        probabilities = self.classifier.predict_landmarks(np.asarray(landmarks, np.float32))
        return scores_in_order(probabilities, self.classifier.labels, self.labels)


def local_pose(path: Path, labels: tuple[str, ...]) -> LocalPose | None:
    """The version folder's pose classifier, or None when it has none; raises ValueError for a broken one (the
    version then fails to load, and the version served before it stays)."""
    classifier = read_pose_classifier(path / POSE_FILE)
    return None if classifier is None else LocalPose(classifier, labels)
