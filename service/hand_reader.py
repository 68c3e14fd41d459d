"""The hand stage as the server runs it: an encoded image -> the hand in it (or None), in the upright picture's
pixels. Runs in the decode threads, never on the event loop; a bad image is refused (InvalidInputError)
before the stage sees it, with the same checks as every other path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hands import Hand, HandStage
from service.images import upright_picture

# the stage's models see 192 (palm) and 224 (landmarks) pixels: a bigger picture only costs decoding time.
# At 1024 a hand a tenth of a photo's width still spans about 100 pixels before the landmark crop.
MAX_SIDE = 1024


@dataclass(frozen=True)
class HandOut:
    """A hand as answers carry it: `box` (x_min, y_min, x_max, y_max) and `landmarks` float32 [21, 3] (x, y, z;
    z on x's scale) in pixels of the picture as sent, turned upright by its EXIF orientation; `handedness`
    "Left" or "Right"; `score` the landmark model's hand presence."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    handedness: str
    score: float

    @classmethod
    def scaled(cls, hand: Hand, scale: float) -> HandOut:
        box = (hand.box[0] * scale, hand.box[1] * scale, hand.box[2] * scale, hand.box[3] * scale)
        return cls(box, (hand.landmarks * np.float32(scale)).astype(np.float32), hand.handedness, hand.score)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: pixels to a hundredth, the score to four places."""
        return {"box": [round(v, 2) for v in self.box],
                "landmarks": [[round(v, 2) + 0.0 for v in point] for point in self.landmarks.tolist()],
                "handedness": self.handedness, "score": round(self.score, 4)}


class HandReader:
    """One hand stage for the server (each decode thread runs its own interpreters, made on its first call)."""

    def __init__(self, budget_ms: float, max_side: int = MAX_SIDE):
        self.stage = HandStage(threads=1, budget_ms=budget_ms)
        self.max_side = max_side

    def read(self, data: bytes, *, max_pixels: int, min_side: int, index: int = 0
             ) -> tuple[HandOut | None, int, float]:
        """Blocking: (the most confident hand or None, the image's pixels, seconds the stage took)."""
        picture, scale, pixels = upright_picture(data, max_pixels=max_pixels, min_side=min_side,
                                                 max_side=self.max_side, index=index)
        start = time.perf_counter()
        hand = self.stage.find(picture)
        seconds = time.perf_counter() - start
        return (HandOut.scaled(hand, scale) if hand is not None else None), pixels, seconds
