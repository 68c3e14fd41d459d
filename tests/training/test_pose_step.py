"""The pose classifier in `imgclf train`: trained beside the CNN for every recipe but talk, exported with the
version when enough hands are found, and described in the card's `pose` section either way.

The small real data is the shipped sample photos as two hands per class (tests/training/conftest.py); the
last test runs the step on rps-train when that folder is there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hands.classifier import read_pose_classifier, scores_in_order
from training.pose import LandmarkSet, extract_landmarks
from training.pose_step import MIN_FOUND_RATE, PICTURE_FOLDS, run, without_none
from training.recipes import RECIPES
from training.train import TrainConfig, train
from version_format.card import POSE_KEY
from version_format.layout import CARD_FILE, POSE_FILE
from version_format.model_io import LANDMARKS_INPUT, POSE_SIGNATURE, SCORES_OUTPUT

RPS_TRAIN = Path(__file__).resolve().parents[3] / "shared" / "data" / "rps-train"
SECTION_KEYS = {"pictures", "hands", "pictures_with_a_hand", "hand_found_rate", "hand_found_rate_per_class",
                "landmarks_sha256", "landmarks_from_cache", "exported", "file", "signature", "classifier", "labels",
                "features", "feature_count", "held_out", "held_out_accuracy_where_found",
                "held_out_accuracy_end_to_end", "held_out_confusion_matrix", "trained_on", "seconds"}


def test_every_recipe_but_the_talks_trains_a_pose_classifier() -> None:
    assert {name: recipe.pose for name, recipe in RECIPES.items()} == {
        "talk": False, "rendered": True, "real-hands": True}


def test_a_none_class_folder_is_left_to_the_cnn() -> None:
    names = ("none/a.jpg", "paper/p01-000.jpg", "rock/r01-000.jpg", "none/b.jpg", "rock/r02-000.jpg")
    data = LandmarkSet(np.arange(5 * 63, dtype=np.float32).reshape(5, 21, 3), np.array([0, 1, 2, 0, 2]),
                       ("none", "paper", "rock"), np.array(["a", "p01", "r01", "b", "r02"]),
                       np.array([False, True, True, True, False]), names, "x")
    kept = without_none(data)
    assert kept.labels == ("paper", "rock") and kept.targets.tolist() == [0, 1, 1]
    assert kept.names == (names[1], names[2], names[4]) and kept.found.tolist() == [True, True, False]
    np.testing.assert_array_equal(kept.landmarks, data.landmarks[[1, 2, 4]])
    assert without_none(kept) is kept


def test_held_out_by_hand_where_names_give_hands(hands_folder: Path) -> None:
    outcome = run(str(hands_folder))
    card = outcome.card
    assert outcome.classifier is not None and set(card) == SECTION_KEYS
    assert card["exported"] and card["file"] == POSE_FILE and card["signature"] == POSE_SIGNATURE
    assert card["pictures"] == 18 and card["hands"] == 6
    assert card["held_out"].startswith("by hand: 2 folds")
    assert 0 <= card["held_out_accuracy_end_to_end"] <= card["held_out_accuracy_where_found"] <= 1
    assert sum(map(sum, card["held_out_confusion_matrix"])) == card["pictures_with_a_hand"]
    assert card["hand_found_rate"] == round(card["pictures_with_a_hand"] / 18, 4) >= 0.8
    assert not card["landmarks_from_cache"]
    assert card["seconds"]["total"] == pytest.approx(sum(v for k, v in card["seconds"].items() if k != "total"),
                                                     abs=0.15)
    assert run(str(hands_folder)).card["landmarks_from_cache"]  # the second time, from the cache


def test_held_out_by_picture_where_names_give_no_hands(hands_folder: Path, tmp_path: Path) -> None:
    for picture in hands_folder.rglob("*.jpg"):  # photo01.jpg: no hand and frame in the name
        (tmp_path / picture.parent.name).mkdir(exist_ok=True)
        shutil.copy(picture, tmp_path / picture.parent.name / picture.name.replace("-", ""))
    card = run(str(tmp_path)).card
    assert card["exported"] and card["hands"] is None
    assert card["held_out"].startswith(f"by picture, {PICTURE_FOLDS} random folds: the file names name no hand")


def test_too_few_hands_found_exports_none_and_says_why(cgi_folder: Path) -> None:
    """The drawn hands of the CGI-like fixture are too crude for the hand stage, mostly."""
    data = extract_landmarks(cgi_folder, log=lambda _: None)
    assert data.found.mean() < MIN_FOUND_RATE
    outcome = run(str(cgi_folder))
    assert outcome.classifier is None
    assert outcome.card["exported"] is False
    assert outcome.card["reason"].startswith(f"the hand stage found a hand in {int(data.found.sum())} of 36 pictures")


@pytest.mark.slow
def test_imgclf_train_exports_the_pose_classifier(hands_folder: Path, tmp_path: Path) -> None:
    """real-hands on real hands: the version carries the classifier (file and signature), the card its figures,
    and a time budget counts the pose step among the time spent before its plan."""
    result = train(TrainConfig(data=str(hands_folder), epochs=3, time_budget_minutes=30,
                               model_root=tmp_path / "models", reallike_per_class=2))
    card = json.loads((result.path / CARD_FILE).read_text())
    pose = card[POSE_KEY]
    assert result.pose == pose and set(pose) == SECTION_KEYS | {"beside_the_cnn"}
    assert pose["beside_the_cnn"].startswith(f"val_accuracy ({card['val_accuracy']}): the CNN")
    assert card["time_budget"]["spent_seconds"] >= pose["seconds"]["landmarks"]
    classifier = read_pose_classifier(result.path / POSE_FILE)
    assert classifier is not None and classifier.labels == ("paper", "rock", "scissors")
    data = extract_landmarks(hands_folder, log=lambda _: None)
    hands = data.landmarks[data.found]
    signature = tf.saved_model.load(str(result.path)).signatures[POSE_SIGNATURE]
    served = signature(**{LANDMARKS_INPUT: tf.constant(hands)})[SCORES_OUTPUT].numpy()
    np.testing.assert_allclose(served, scores_in_order(classifier.predict_landmarks(hands), classifier.labels,
                                                       result.labels), atol=1e-4)
    assert result.labels[0] == "none" and np.all(served[:, 0] == 0)


@pytest.mark.slow
def test_the_talk_recipe_stays_the_talks(hands_folder: Path, tmp_path: Path) -> None:
    result = train(TrainConfig(data=str(hands_folder), recipe="talk", epochs=1, model_root=tmp_path / "models"))
    card = json.loads((result.path / CARD_FILE).read_text())
    assert POSE_KEY not in card and result.pose is None
    assert not (result.path / POSE_FILE).exists()
    assert POSE_SIGNATURE not in tf.saved_model.load(str(result.path)).signatures


@pytest.mark.slow
def test_a_version_without_enough_hands_says_why_in_its_card(cgi_folder: Path, tmp_path: Path) -> None:
    result = train(TrainConfig(data=str(cgi_folder), epochs=1, model_root=tmp_path / "models", reallike_per_class=2))
    card = json.loads((result.path / CARD_FILE).read_text())
    assert card[POSE_KEY]["exported"] is False and "found a hand in" in card[POSE_KEY]["reason"]
    assert not (result.path / POSE_FILE).exists()
    assert POSE_SIGNATURE not in tf.saved_model.load(str(result.path)).signatures


@pytest.mark.slow
@pytest.mark.skipif(not RPS_TRAIN.is_dir(), reason=f"rps-train is not at {RPS_TRAIN} (shared data not laid out)")
def test_the_step_on_rps_train() -> None:
    """The figures `imgclf train --data ../shared/data/rps-train` records: 21 hands held out in turn."""
    card = run(str(RPS_TRAIN)).card
    assert card["exported"] and card["pictures"] == 2520 and card["hands"] == 21
    assert card["hand_found_rate"] >= 0.95
    assert card["held_out_accuracy_where_found"] >= 0.995
