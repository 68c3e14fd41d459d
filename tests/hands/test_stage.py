"""The hand stage end to end on the shipped samples (renders of hands) and close-ups of them: found where a
hand is, not in the portrait, retries for close-ups within the time budget, safe from a thread pool."""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hands import Hand, HandStage
from hands.stage import Attempt
from tests.hands.conftest import HANDS, close_up


@pytest.mark.parametrize("name", HANDS)
def test_finds_the_hand_in_each_sample(unbounded, samples, name):
    rgb = samples[name]
    hand = unbounded.find(rgb)
    assert isinstance(hand, Hand)
    assert hand.attempt == 0 and hand.score >= 0.6 and hand.palm_score >= 0.5
    assert hand.landmarks.shape == (21, 3) and hand.landmarks.dtype == np.float32
    assert hand.handedness in ("Left", "Right")
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = hand.box
    # the renders show the whole hand well inside the picture, a third of it or more across
    assert -2 <= x0 < x1 <= w + 2 and -2 <= y0 < y1 <= h + 2
    assert (x1 - x0) > w / 3 and (y1 - y0) > h / 3
    np.testing.assert_allclose(hand.box, (*hand.landmarks[:, :2].min(0), *hand.landmarks[:, :2].max(0)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        hand.score = 0.0  # type: ignore[misc]


def test_takes_a_pillow_image_too(unbounded, samples):
    from PIL import Image

    from_array = unbounded.find(samples["paper"])
    for picture in (Image.fromarray(samples["paper"]), Image.fromarray(samples["paper"]).convert("RGBA")):
        hand = unbounded.find(picture)
        assert hand is not None and from_array is not None
        np.testing.assert_allclose(hand.landmarks, from_array.landmarks, atol=1e-3)


def test_no_hand_in_the_portrait(unbounded, samples):
    assert unbounded.find(samples["no-hand"]) is None
    assert HandStage().find(samples["no-hand"]) is None


@pytest.mark.parametrize("name", HANDS)
@pytest.mark.parametrize("scale", [1.0, 0.9])
def test_close_ups_need_and_get_the_retries(unbounded, samples, name, scale):
    whole = unbounded.find(samples[name])
    assert whole is not None
    rgb, origin = close_up(samples[name], whole.box, scale)
    assert rgb.shape[0] == pytest.approx(rgb.shape[1], abs=2)
    plain = HandStage(attempts=(Attempt(),), budget_ms=math.inf)
    assert plain.find(rgb) is None, "the plain attempt alone already finds this close-up"
    hand = unbounded.find(rgb)
    assert hand is not None and hand.attempt >= 1
    # the same hand: the wrist and the palm's centre land where the whole picture puts them (the fingers
    # may be cut off, and the landmark model then guesses them)
    palm = [0, 5, 9, 13, 17]
    moved = np.linalg.norm(hand.landmarks[palm, :2] + origin - whole.landmarks[palm, :2], axis=1)
    assert np.median(moved) < 0.2 * rgb.shape[0]


def test_the_budget_bounds_the_retries(samples):
    calls: list[str] = []
    stage = HandStage(budget_ms=0)
    palm, landmarks = stage.models.palm, stage.models.landmarks
    stage.models.palm = lambda image: calls.append("palm") or palm(image)  # type: ignore[assignment]
    stage.models.landmarks = lambda image: calls.append("landmarks") or landmarks(image)  # type: ignore[assignment]
    whole = stage.find(samples["rock"])
    assert whole is not None and calls == ["palm", "landmarks"]
    calls.clear()
    rgb, _ = close_up(samples["rock"], whole.box, 1.0)
    assert stage.find(rgb) is None
    assert calls == ["palm"]  # no time left for a retry
    calls.clear()
    stage.budget_ms = math.inf
    assert stage.find(rgb) is not None
    assert len(calls) >= 2


def test_the_whole_picture_retry_costs_one_landmark_call(samples):
    stage = HandStage(budget_ms=math.inf)
    assert stage.retry_cost_ms(Attempt(whole=1.8)) < stage.retry_cost_ms(Attempt(pad=1.0))
    calls: list[str] = []
    palm, landmarks = stage.models.palm, stage.models.landmarks
    stage.models.palm = lambda image: calls.append("palm") or palm(image)  # type: ignore[assignment]
    stage.models.landmarks = lambda image: calls.append("landmarks") or landmarks(image)  # type: ignore[assignment]
    rgb, _ = close_up(samples["paper"], stage.find(samples["paper"]).box, 1.0)  # type: ignore[union-attr]
    calls.clear()
    hand = stage.find(rgb)
    assert hand is not None and stage.attempts[hand.attempt].whole and hand.palm_score == 0
    assert calls == ["palm", "landmarks"]  # the plain attempt's palm call, then the whole picture's


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8)])
def test_rejects_what_is_not_an_rgb_picture(unbounded, bad):
    with pytest.raises(ValueError, match="uint8"):
        unbounded.find(bad)


def test_threads_get_their_own_interpreters_and_the_same_answers(unbounded, samples):
    pictures = [samples[name] for name in HANDS] * 4
    alone = [unbounded.find(rgb) for rgb in pictures]

    def work(rgb: np.ndarray) -> tuple[Hand | None, int, int]:
        return unbounded.find(rgb), id(unbounded.models.palm._interpreter()[0]), \
            id(unbounded.models.landmarks._interpreter()[0])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, pictures))
    for (hand, _, _), ref in zip(results, alone, strict=True):
        assert hand is not None and ref is not None
        np.testing.assert_allclose(hand.landmarks, ref.landmarks, atol=1e-3)
    main_thread = id(unbounded.models.palm._interpreter()[0])
    assert main_thread not in {palm for _, palm, _ in results}
    assert len({palm for _, palm, _ in results}) == len({lms for _, _, lms in results}) <= 4
