"""The hand stage's public entry: `HandStage(threads=1).find(rgb) -> Hand | None`.

The first attempt is MediaPipe's image path: the palm detector on the whole picture (letterboxed to
192x192), the best palm after suppression -> its rotated hand region -> the landmark model on a 224x224 crop
of it. The palm detector expects a hand inside a scene, so a close-up (a hand filling the picture) often
gives no palm. The first retry skips the detector: the landmark model on the whole picture, centred in a
square 1.8 times its long side (a close-up's hand then sits in the crop as a detected palm's region would
put it), kept when the model says a hand is present. It costs one landmark call instead of two calls, and
on close-ups of rendered hands it read more of them right than the palm retries (docs/hands.md). The later
attempts show the detector the picture padded with grey, and turned a quarter. Retries stop when the next
one would overrun the time budget (estimated from the latest palm and landmark calls).

Thread-safety: `find` may be called from any number of threads at once; each thread runs its own pair of
interpreters (created on its first call, which is the slower for it, and kept for the thread's life), never
shared; the cost estimates are shared under a lock."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hands import landmarks as lm
from hands import palm as pd
from hands.geometry import Region, crop
from hands.runtime import Models

GREY = 128


@dataclass(frozen=True)
class Attempt:
    """How the picture is shown to the palm detector: padded on every side to a square of (1 + pad) times
    its long side, turned by `quarter_turns` quarter turns (clockwise, as the detector sees it). With
    `whole` > 0 there is no palm detection: the landmark model reads the centred square of `whole` times the
    picture's long side."""

    pad: float = 0.0
    quarter_turns: int = 0
    whole: float = 0.0


# the plain picture first, then the landmark model on the whole picture (160 close-ups of 80 rendered hands:
# 57% read right after the plain attempt, against 49% with the three palm retries below, for 2.1 model calls
# a picture against 3.8), then the palm retries in the order of what they found on 134 close-ups: padding by
# the whole long side, by 1.5 times it, and a quarter turn (docs/hands.md)
WHOLE_SCALE = 1.8  # measured against 1.4 to 2.4: 1.6 misses more close-ups, 2.0 reads fewer of them right
ATTEMPTS = (Attempt(), Attempt(whole=WHOLE_SCALE), Attempt(pad=1.0), Attempt(pad=1.5),
            Attempt(pad=1.0, quarter_turns=1))
# per picture, retries included: a retry starts only if the estimate of its calls (the median of the latest
# ones) ends within it. On one core of this project's machine a palm call takes about 8.5 ms and a landmark
# call 8 ms: a hand found at once costs about 17 ms, a picture without a palm about 9 ms plus the whole-picture
# retry's 8 ms; the palm retries only start under a larger budget (docs/hands.md)
BUDGET_MS = 25.0
# above MediaPipe's 0.5: a face in the portrait sample scores 0.55, while the 1st percentile of presence on
# 83 rendered hands is 0.75 (docs/hands.md)
MIN_PRESENCE = 0.6
_RECENT = 15  # calls of each model the cost estimates are the median of


@dataclass(frozen=True)
class Hand:
    """A hand in the picture, in its pixels: `box` (x_min, y_min, x_max, y_max) around the landmarks,
    `landmarks` float32 [21, 3] (x, y, z; z on x's scale, 0 near the wrist, negative towards the camera),
    `handedness` "Left" or "Right" (as for a mirrored picture), `score` the landmark model's hand presence,
    `palm_score` the palm detector's score (0 for the whole-picture attempt), `attempt` the index in the
    stage's attempts that found it."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    handedness: str
    score: float
    palm_score: float
    attempt: int


class HandStage:
    """Palm detection + hand landmarks on LiteRT, `threads` threads per interpreter."""

    def __init__(self, threads: int = 1, budget_ms: float = BUDGET_MS, attempts: tuple[Attempt, ...] = ATTEMPTS,
                 min_palm_score: float = pd.MIN_SCORE, min_presence: float = MIN_PRESENCE):
        if not attempts:
            raise ValueError("at least one attempt is needed")
        self.models = Models.load(threads)
        self.budget_ms = budget_ms
        self.attempts = attempts
        self.min_palm_score = min_palm_score
        self.min_presence = min_presence
        # the latest durations of palm and landmark calls (any thread's), whose medians are the budget's
        # estimates: a median follows a lasting slow-down but not one slow call. The first calls also warm
        # up the interpreters (XNNPACK packs its weights on the first invocation).
        self._palm_ms: deque[float] = deque(maxlen=_RECENT)
        self._landmark_ms: deque[float] = deque(maxlen=_RECENT)
        self._costs = threading.Lock()
        for _ in range(3):
            start = time.perf_counter()
            self.models.palm(np.zeros((pd.INPUT_SIZE, pd.INPUT_SIZE, 3), np.float32))
            middle = time.perf_counter()
            self.models.landmarks(np.zeros((lm.INPUT_SIZE, lm.INPUT_SIZE, 3), np.float32))
            self._record(self._palm_ms, middle - start)
            self._record(self._landmark_ms, time.perf_counter() - middle)

    def _record(self, durations: deque[float], seconds: float) -> None:
        with self._costs:
            durations.append(seconds * 1000)

    def retry_cost_ms(self, attempt: Attempt = Attempt()) -> float:
        """The estimated duration of one more attempt: a landmark call, after a palm call unless it reads the
        whole picture."""
        with self._costs:
            palm, landmarks = list(self._palm_ms), list(self._landmark_ms)
        return (0.0 if attempt.whole else statistics.median(palm)) + statistics.median(landmarks)

    def find(self, rgb: np.ndarray | Image.Image) -> Hand | None:
        """uint8 [h, w, 3] RGB (or a Pillow image, which saves a copy of a large picture) -> the most confident
        hand, or None."""
        if isinstance(rgb, Image.Image):
            picture = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
        else:
            image = np.asarray(rgb)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
                raise ValueError(f"expected a uint8 [height, width, 3] RGB array, got {image.dtype} {image.shape}")
            picture = Image.fromarray(image, "RGB")
        start = time.perf_counter()
        for index, attempt in enumerate(self.attempts):
            spent = (time.perf_counter() - start) * 1000
            # a retry starts only if it can end, landmarks included, within the budget
            if index and spent + self.retry_cost_ms(attempt) > self.budget_ms:
                break
            hand = self._attempt(picture, attempt, index)
            if hand is not None:
                return hand
        return None

    def view(self, picture: Image.Image, attempt: Attempt) -> Region:
        """The square region of the picture the palm detector sees in this attempt."""
        w, h = picture.size
        side = max(w, h) * (1 + attempt.pad)
        return Region(w / 2, h / 2, side, side, attempt.quarter_turns * -math.pi / 2)

    def palms(self, picture: Image.Image, attempt: Attempt) -> tuple[Region, list[pd.Palm]]:
        """The detector's view for this attempt and its palms (in that view's unit square), best first."""
        view = self.view(picture, attempt)
        pixels = crop(picture, view, pd.INPUT_SIZE, fill=GREY if attempt.pad else 0)
        boxes, scores = self.models.palm(pixels)
        return view, pd.weighted_nms(pd.decode(boxes, scores, min_score=self.min_palm_score))

    def landmarks(self, picture: Image.Image, region: Region) -> lm.LandmarkResult:
        """The landmark model on the crop of `region` (image pixels)."""
        raw, presence, right, _world = self.models.landmarks(crop(picture, region, lm.INPUT_SIZE))
        return lm.project(raw, float(presence[0]), float(right[0]), region)

    def _attempt(self, picture: Image.Image, attempt: Attempt, index: int) -> Hand | None:
        if attempt.whole:
            return self._whole(picture, attempt.whole, index)
        began = time.perf_counter()
        view, palms = self.palms(picture, attempt)
        middle = time.perf_counter()
        self._record(self._palm_ms, middle - began)
        if not palms:
            return None
        best = palms[0]
        region = pd.hand_region(best, view.width).within(view)
        found = self.landmarks(picture, region)
        self._record(self._landmark_ms, time.perf_counter() - middle)
        return self._hand(found, best.score, index)

    def _whole(self, picture: Image.Image, scale: float, index: int) -> Hand | None:
        began = time.perf_counter()
        w, h = picture.size
        found = self.landmarks(picture, Region(w / 2, h / 2, max(w, h) * scale, max(w, h) * scale))
        self._record(self._landmark_ms, time.perf_counter() - began)
        return self._hand(found, 0.0, index)

    def _hand(self, found: lm.LandmarkResult, palm_score: float, index: int) -> Hand | None:
        if found.presence < self.min_presence:
            return None
        xy = found.landmarks[:, :2]
        box = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))
        return Hand(box, found.landmarks, found.handedness, found.presence, palm_score, index)
