"""The hand stage's fixtures: one stage for the module (its interpreters load once), the shipped samples and
close-ups of them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hands import HandStage
from hands.geometry import tight_crop

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "service" / "web" / "static" / "samples"
HANDS = ("rock", "paper", "scissors")
RPS_TRAIN = ROOT.parent / "shared" / "data" / "rps-train"


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def close_up(rgb: np.ndarray, box: tuple[float, float, float, float], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A square crop centred on the hand, its side `scale` times the short side of the hand's box (the hand
    fills the picture and overflows it), and the crop's origin in the picture."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = min(box[2] - box[0], box[3] - box[1]) * scale / 2
    origin = np.array([max(0, int(cx - half)), max(0, int(cy - half))], np.float32)
    return tight_crop(rgb, (cx - half, cy - half, cx + half, cy + half), 0.0), origin


@pytest.fixture(scope="module")
def unbounded() -> HandStage:
    """Every attempt, whatever the time: what the stage finds does not depend on this machine's load."""
    return HandStage(threads=1, budget_ms=math.inf)


@pytest.fixture(scope="module")
def samples() -> dict[str, np.ndarray]:
    return {name: load(SAMPLES / f"{name}.jpg") for name in (*HANDS, "no-hand")}
