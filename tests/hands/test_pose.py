"""hands.pose: the features are those of the pose, not of where, how large or which way round the hand is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hands.pose import FEATURE_NAMES, NUM_FEATURES, normalised_coordinates, pose_features


def synthetic_hand(curl: float, spread: float = 0.15, thumb_curl: float | None = None) -> np.ndarray:
    """21 landmarks of a right hand in its own frame (y up the fingers, x across, z out of the palm): each
    finger from its base, every joint bent by `curl` radians towards the palm; `spread` fans the fingers."""
    points = np.zeros((21, 3))
    bases = {5: -0.35, 9: -0.1, 13: 0.12, 17: 0.32}  # x of the finger bases, the wrist at the origin
    lengths = (0.4, 0.25, 0.2)
    for first, x in bases.items():
        fan = spread * (x / 0.35)
        points[first] = (x, 1.0 - abs(x) * 0.2, 0.0)
        heading = np.array([math.sin(fan), math.cos(fan), 0.0])
        for j, length in enumerate(lengths):
            bend = curl * (j + 1)
            direction = np.array([heading[0] * math.cos(bend), heading[1] * math.cos(bend), -math.sin(bend)])
            points[first + j + 1] = points[first + j] + length * direction
    tc = curl if thumb_curl is None else thumb_curl
    points[1] = (-0.25, 0.25, 0.05)
    for j in range(3):
        angle = 0.9 - tc * (j + 1) * 0.8
        points[2 + j] = points[1 + j] + 0.3 * np.array([-math.cos(angle) * 0.6, math.sin(angle), -0.2 * j])
    return points


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


OPEN = synthetic_hand(0.05)
FIST = synthetic_hand(1.4, spread=0.0)


def test_names_match_the_features() -> None:
    assert len(FEATURE_NAMES) == NUM_FEATURES == len(set(FEATURE_NAMES))
    assert pose_features(OPEN).shape == (NUM_FEATURES,)
    assert pose_features(OPEN).dtype == np.float32


@pytest.mark.parametrize("name", ["3d rotation", "2d turn", "scale", "translation", "mirror", "all at once"])
def test_unchanged_by_similarity_transforms(name: str) -> None:
    rng = np.random.default_rng(7)
    hand = synthetic_hand(0.6, spread=0.3, thumb_curl=0.3) * 120 + np.array([200.0, 150.0, 0.0])
    turn = math.radians(73)
    in_plane = np.array([[math.cos(turn), -math.sin(turn), 0], [math.sin(turn), math.cos(turn), 0], [0, 0, 1]])
    mirror = np.diag([-1.0, 1.0, 1.0])
    transforms = {
        "3d rotation": lambda p: p @ random_rotation(rng).T,
        "2d turn": lambda p: p @ in_plane.T,
        "scale": lambda p: p * 3.7,
        "translation": lambda p: p + np.array([-512.0, 33.0, 7.5]),
        "mirror": lambda p: p @ mirror,
        "all at once": lambda p: (p @ random_rotation(rng).T @ mirror) * 0.02 + 40.0,
    }
    moved = transforms[name](hand)
    assert not np.allclose(moved, hand)  # the transform did move the landmarks
    np.testing.assert_allclose(pose_features(moved), pose_features(hand), atol=1e-6)


def test_the_baseline_coordinates_do_change_with_a_turn() -> None:
    """The point of the pose features: normalised coordinates keep the hand's orientation."""
    rng = np.random.default_rng(1)
    hand = synthetic_hand(0.3)
    assert not np.allclose(normalised_coordinates(hand @ random_rotation(rng).T), normalised_coordinates(hand),
                           atol=1e-2)


def test_a_fist_and_an_open_hand_differ() -> None:
    fist, open_hand = pose_features(FIST), pose_features(OPEN)
    features = dict(zip(FEATURE_NAMES, np.stack([fist, open_hand]).T, strict=True))
    assert np.abs(fist - open_hand).max() > 0.5
    # an open finger is straight at its PIP joint (cosine near 1), a fist's is bent well past 45 degrees
    assert features["index_pip_cos"][1] > 0.95 > 0.5 > features["index_pip_cos"][0]
    # and an open hand's fingertip is further from the wrist than its PIP joint, a fist's nearer
    assert features["middle_tip_wrist_over_pip_wrist"][1] > 1.2 > 1.0 > features["middle_tip_wrist_over_pip_wrist"][0]


@pytest.mark.parametrize("hand", [np.zeros((21, 3)), np.full((21, 3), 55.5),
                                  np.repeat([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [11, 10], axis=0)],
                         ids=["zeros", "all equal", "two points"])
def test_degenerate_input_gives_finite_features(hand: np.ndarray) -> None:
    assert np.all(np.isfinite(pose_features(hand)))
    assert np.all(np.isfinite(normalised_coordinates(hand)))


def test_all_points_equal_gives_zeros() -> None:
    np.testing.assert_array_equal(pose_features(np.full((21, 3), 9.0)), np.zeros(NUM_FEATURES, np.float32))


@pytest.mark.parametrize("bad", [np.zeros((20, 3)), np.zeros((21, 2)), np.full((21, 3), np.nan)],
                         ids=["20 points", "2d", "nan"])
def test_bad_shapes_and_values_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="landmarks"):
        pose_features(bad)
