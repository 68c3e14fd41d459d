"""A version's pose classifier on TF Serving: where its signature defs hold `pose`, the hands imgclf's hand
stage finds are scored by that signature (a Predict through the backend's retries), the rest by the CNN."""

from __future__ import annotations

import numpy as np
import pytest

from hands.classifier import scores_in_order
from service.backends.tfserving import TFServingBackend
from service.settings import ServeSettings
from tests.service.backends.conftest import pose_signature
from tests.service.conftest import rest_predictions
from version_format.model_io import LANDMARKS_INPUT, POSE_SIGNATURE


def test_a_hand_is_answered_by_the_pose_signature(fake_tfserving, tfs_front_end, sample_pose, samples):
    fake = fake_tfserving(pose=sample_pose)
    front = tfs_front_end(fake.target, hands_budget_ms=1000)
    images_before, hands_before = len(fake.batches), len(fake.pose_batches)
    rock, portrait = rest_predictions(front, [samples["rock"], samples["no-hand"]])
    assert (rock["label"], rock["path"]) == ("rock", "pose")
    labels = tuple(rock["scores"])
    expected = scores_in_order(sample_pose.predict_landmarks(np.array([rock["hand"]["landmarks"]], np.float32)),
                               sample_pose.labels, labels)[0]
    np.testing.assert_allclose(list(rock["scores"].values()), expected, atol=1e-3)
    assert (portrait["path"], portrait["hand"]) == ("cnn", None)
    assert list(portrait["scores"].values()) == pytest.approx(fake.scores)  # the fake's serving_default
    assert fake.pose_batches[hands_before:] == [1]  # the one hand, by the pose signature
    assert fake.batches[images_before:] == [1]  # only the portrait went to the CNN


def test_the_pose_call_is_retried_like_every_call(fake_tfserving, tfs_front_end, sample_pose, samples):
    fake = fake_tfserving(pose=sample_pose)
    front = tfs_front_end(fake.target, hands_budget_ms=1000)
    before = len(fake.pose_batches)
    fake.fail_pose = 1  # one UNAVAILABLE: the backend retries after its backoff
    (paper,) = rest_predictions(front, [samples["paper"]])
    assert (paper["label"], paper["path"]) == ("paper", "pose")
    assert fake.pose_batches[before:] == [1, 1]


def test_without_a_pose_signature_the_cnn_answers(fake_tfserving, tfs_front_end, samples):
    fake = fake_tfserving()
    front = tfs_front_end(fake.target, hands_budget_ms=1000)
    (rock,) = rest_predictions(front, [samples["rock"]])
    assert (rock["path"], rock["hand"]) == ("cnn", None)  # IMGCLF_HANDS=auto: no pose classifier, no stage
    assert fake.pose_batches == []


def test_a_pose_signature_without_landmarks_fails_the_version(fake_tfserving, tmp_path):
    fake = fake_tfserving()
    broken = pose_signature(len(fake.labels))
    del broken.inputs[LANDMARKS_INPUT]
    fake.signature_defs[POSE_SIGNATURE] = broken
    backend = TFServingBackend(ServeSettings(model_root=tmp_path, backend="tfserving", tfserving_target=fake.target))
    try:
        with pytest.raises(ValueError, match=r"'pose' signature .* does not take 'landmarks'"):
            backend.load("rps", 1)
        fake.signature_defs[POSE_SIGNATURE] = pose_signature(len(fake.labels))
        assert backend.load("rps", 1).info.pose is not None
        del fake.signature_defs[POSE_SIGNATURE]
        assert backend.load("rps", 1).info.pose is None
    finally:
        backend.close()
