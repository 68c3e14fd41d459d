"""`python -m training.pose_version`: a pose classifier added to an existing version, as a new version; and the
shipped demo version, which was given its own that way."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hands import HandStage
from hands.classifier import read_pose_classifier, scores_in_order
from service.demo import install_demo
from training.errors import DataError
from training.export import export
from training.model import make_model
from training.pose_version import add_pose, main
from version_format.card import POSE_KEY, read_card
from version_format.layout import CARD_FILE, POSE_FILE, WARMUP_FILE
from version_format.model_io import LANDMARKS_INPUT, POSE_SIGNATURE, SCORES_OUTPUT

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"
LABELS = ("none", "paper", "rock", "scissors")


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def poseless(tmp_path: Path, sample_jpeg: bytes) -> Path:
    keras.utils.set_random_seed(0)
    return export(make_model(num_classes=len(LABELS), arch="compact"), LABELS, tmp_path / "models", "rps",
                  card={"recipe": "real-hands", "val_accuracy": 0.9}, warmup_images=[sample_jpeg])


@pytest.fixture(scope="module")
def sample_landmarks() -> np.ndarray:
    stage = HandStage(threads=1, budget_ms=math.inf)
    found = []
    for label in ("paper", "rock", "scissors"):
        with Image.open(SAMPLES / f"{label}.jpg") as img:
            hand = stage.find(img.convert("RGB"))
        assert hand is not None
        found.append(hand.landmarks)
    return np.array(found, np.float32)


def pose_scores(version: Path, landmarks: np.ndarray) -> np.ndarray:
    signature = tf.saved_model.load(str(version)).signatures[POSE_SIGNATURE]
    return signature(**{LANDMARKS_INPUT: tf.constant(landmarks)})[SCORES_OUTPUT].numpy()


def test_added_as_the_next_version_leaving_the_old_one_as_it_was(poseless: Path, hands_folder: Path,
                                                                  sample_jpeg: bytes,
                                                                  sample_landmarks: np.ndarray) -> None:
    before = digests(poseless)
    path, section = add_pose(poseless, str(hands_folder))
    assert path == poseless.parent / "2"
    assert digests(poseless) == before and not (poseless / POSE_FILE).exists()
    assert not [p for p in poseless.parent.iterdir() if p.name.startswith(".tmp")]
    # the old version's files and signatures, plus the classifier
    after = digests(path)
    assert after[WARMUP_FILE] == before[WARMUP_FILE] and POSE_FILE in after
    old, new = tf.saved_model.load(str(poseless)), tf.saved_model.load(str(path))
    assert set(new.signatures) == {*old.signatures, POSE_SIGNATURE}
    image = tf.constant([sample_jpeg])
    np.testing.assert_array_equal(new.signatures["serving_default"](image_bytes=image)["scores"].numpy(),
                                  old.signatures["serving_default"](image_bytes=image)["scores"].numpy())
    classifier = read_pose_classifier(path / POSE_FILE)
    assert classifier is not None
    np.testing.assert_allclose(pose_scores(path, sample_landmarks), scores_in_order(
        classifier.predict_landmarks(sample_landmarks), classifier.labels, LABELS), atol=1e-4)
    card = read_card(path)
    assert card["version"] == 2 and card["recipe"] == "real-hands" and card[POSE_KEY] == section
    assert section["exported"] and section["hands"] == 6 and section["held_out"].startswith("by hand")
    assert section["added"].startswith("by `python -m training.pose_version` to version 1 (created ")
    assert section["beside_the_cnn"].startswith("val_accuracy (0.9)")


def test_refused_without_enough_hands_and_nothing_written(poseless: Path, cgi_folder: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(poseless), "--data", str(cgi_folder)]) == 2
    assert "error: no pose classifier: the hand stage found a hand in" in capsys.readouterr().err
    assert sorted(p.name for p in poseless.parent.iterdir()) == ["1"]
    with pytest.raises(DataError, match="is not an exported version"):
        add_pose(poseless.parent, str(cgi_folder))
    with pytest.raises(DataError, match="rendered in memory"):
        add_pose(poseless, "synthetic")


def test_the_shipped_demo_has_its_pose_classifier(tmp_path: Path, sample_landmarks: np.ndarray) -> None:
    version = install_demo(tmp_path, "rps")
    assert version is not None
    card = json.loads((version / CARD_FILE).read_text())
    section = card[POSE_KEY]
    assert section["exported"] and section["pictures"] == 2520 and section["hands"] == 21
    assert section["held_out_accuracy_where_found"] >= 0.995
    classifier = read_pose_classifier(version / POSE_FILE)
    assert classifier is not None and set(classifier.labels) < set(card["labels"])
    expected = scores_in_order(classifier.predict_landmarks(sample_landmarks), classifier.labels,
                               tuple(card["labels"]))
    np.testing.assert_allclose(pose_scores(version, sample_landmarks), expected, atol=1e-4)
    assert [card["labels"][i] for i in expected.argmax(axis=1)] == ["paper", "rock", "scissors"]
