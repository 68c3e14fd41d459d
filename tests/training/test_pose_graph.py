"""The `pose` signature: the exported graph gives the numpy classifier's scores, in the version's label order.

The classifier is trained on the hand stage's landmarks of the shipped samples; the signature is read back
from an exported SavedModel, as TF Serving would load it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from hands import HandStage
from hands.classifier import PoseClassifier, read_pose_classifier, scores_in_order
from training.errors import ExportError
from training.export import export
from training.model import make_model
from training.pose import Augmentation, train_pose
from version_format.layout import POSE_FILE
from version_format.model_io import LANDMARKS_INPUT, POSE_SIGNATURE, SCORES_OUTPUT

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"
POSE_LABELS = ("paper", "rock", "scissors")
VERSION_LABELS = ("none", "paper", "rock", "scissors")  # `none` first: the pose classifier lacks it


def random_similarity(rng: np.random.Generator, hand: np.ndarray) -> np.ndarray:
    """Turned in space, scaled, shifted, mirrored half of the time: what a picture may do to a hand."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if rng.random() < 0.5:
        q = q @ np.diag([-1.0, 1.0, 1.0])
    return (hand - hand.mean(axis=0)) @ q.T * rng.uniform(0.3, 3.0) + rng.uniform(0, 600, 3)


@pytest.fixture(scope="module")
def real_landmarks() -> np.ndarray:
    """The stage's landmarks of each sample, as it is and mirrored: [6, 21, 3] in the pictures' pixels."""
    stage = HandStage(threads=1, budget_ms=math.inf)
    found = []
    for label in POSE_LABELS:
        with Image.open(SAMPLES / f"{label}.jpg") as img:
            rgb = img.convert("RGB")
        for picture in (rgb, ImageOps.mirror(rgb)):
            hand = stage.find(picture)
            assert hand is not None, f"no hand found in {label}.jpg"
            found.append(hand.landmarks)
    return np.array(found, np.float32)


@pytest.fixture(scope="module")
def classifier(real_landmarks: np.ndarray) -> PoseClassifier:
    return train_pose(real_landmarks, np.repeat([0, 1, 2], 2), POSE_LABELS, seed=0,
                      augmentation=Augmentation(copies=8))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, classifier: PoseClassifier) -> Path:
    keras.utils.set_random_seed(0)
    model = make_model(num_classes=len(VERSION_LABELS), arch="compact")
    return export(model, VERSION_LABELS, tmp_path_factory.mktemp("pose-export"), "rps", pose=classifier)


@pytest.fixture(scope="module")
def signature(exported: Path) -> tf.types.experimental.ConcreteFunction:
    return tf.saved_model.load(str(exported)).signatures[POSE_SIGNATURE]


def expected(model: PoseClassifier, landmarks: np.ndarray) -> np.ndarray:
    return scores_in_order(model.predict_landmarks(landmarks), model.labels, VERSION_LABELS)


def served(signature: tf.types.experimental.ConcreteFunction, landmarks: np.ndarray) -> np.ndarray:
    out = signature(**{LANDMARKS_INPUT: tf.constant(landmarks, tf.float32)})
    assert set(out) == {SCORES_OUTPUT}
    scores = out[SCORES_OUTPUT].numpy()
    assert scores.dtype == np.float32 and scores.shape == (len(landmarks), len(VERSION_LABELS))
    return scores


def test_the_signature_names_and_shapes(signature: tf.types.experimental.ConcreteFunction) -> None:
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == [LANDMARKS_INPUT]
    assert inputs[LANDMARKS_INPUT].dtype == tf.float32
    assert inputs[LANDMARKS_INPUT].shape.as_list() == [None, 21, 3]
    assert signature.structured_outputs[SCORES_OUTPUT].shape.as_list() == [None, len(VERSION_LABELS)]


def test_real_landmarks_score_as_in_numpy(signature: tf.types.experimental.ConcreteFunction,
                                          classifier: PoseClassifier, real_landmarks: np.ndarray) -> None:
    scores = served(signature, real_landmarks)
    np.testing.assert_allclose(scores, expected(classifier, real_landmarks), atol=1e-4)
    assert np.all(scores[:, 0] == 0)  # `none` is not the pose classifier's to answer
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    # trained on them: each sample read as its own class, so the comparison is not between flat scores
    assert [VERSION_LABELS[i] for i in scores.argmax(axis=1)] == [x for x in POSE_LABELS for _ in range(2)]


def test_turned_mirrored_and_rescaled_landmarks_score_as_in_numpy(
        signature: tf.types.experimental.ConcreteFunction, classifier: PoseClassifier,
        real_landmarks: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    hands = np.array([random_similarity(rng, real_landmarks[i % 6]) + rng.normal(0, 2.0, (21, 3))
                      for i in range(60)], np.float32)
    np.testing.assert_allclose(served(signature, hands), expected(classifier, hands), atol=1e-4)
    # landmarks of no hand at all: still the same numbers
    noise = rng.normal(0, 100, (20, 21, 3)).astype(np.float32)
    np.testing.assert_allclose(served(signature, noise), expected(classifier, noise), atol=1e-4)


def test_degenerate_landmarks_give_finite_scores(signature: tf.types.experimental.ConcreteFunction,
                                                 classifier: PoseClassifier, real_landmarks: np.ndarray) -> None:
    same = np.full((1, 21, 3), 250.0, np.float32)
    collapsed = real_landmarks[:1].copy()
    collapsed[0, 5:9] = collapsed[0, 5]  # the index finger in one point: zero-length segments
    flat = real_landmarks[1:2].copy()
    flat[..., 2] = 0  # no depth
    zeros = np.zeros((1, 21, 3), np.float32)
    batch = np.concatenate([same, collapsed, flat, zeros])
    scores = served(signature, batch)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, expected(classifier, batch), atol=1e-4)
    assert served(signature, np.zeros((0, 21, 3), np.float32)).shape == (0, len(VERSION_LABELS))


def test_non_finite_landmarks_are_refused(signature: tf.types.experimental.ConcreteFunction) -> None:
    bad = np.zeros((1, 21, 3), np.float32)
    bad[0, 3, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="landmarks must be finite"):
        signature(**{LANDMARKS_INPUT: tf.constant(bad)})


def test_the_version_carries_the_classifier_as_json(exported: Path, classifier: PoseClassifier,
                                                    real_landmarks: np.ndarray) -> None:
    back = read_pose_classifier(exported / POSE_FILE)
    assert back is not None and back.labels == POSE_LABELS
    np.testing.assert_array_equal(back.predict_landmarks(real_landmarks), classifier.predict_landmarks(real_landmarks))
    assert json.loads((exported / POSE_FILE).read_text()) == classifier.to_dict()


def test_a_version_without_a_classifier_has_neither(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    path = export(make_model(num_classes=3, arch="compact"), POSE_LABELS, tmp_path, "rps")
    assert not (path / POSE_FILE).exists()
    assert set(tf.saved_model.load(str(path)).signatures) == {"serving_default", "serving_pixels", "labels"}


def test_a_classifier_with_labels_the_version_lacks_is_refused(tmp_path: Path, classifier: PoseClassifier) -> None:
    keras.utils.set_random_seed(0)
    with pytest.raises(ExportError, match=r"labels \['scissors'\] are not among"):
        export(make_model(num_classes=2, arch="compact"), ("paper", "rock"), tmp_path, "rps", pose=classifier)
    assert not [p for p in (tmp_path / "rps").iterdir() if not p.name.startswith(".")]
