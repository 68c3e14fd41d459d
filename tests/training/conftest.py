"""Fixtures for the training tests: small folders of CGI-like hands on a white backdrop and of real hands."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

FINGERS = {"rock": 0, "paper": 5, "scissors": 2}
SAMPLES = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"


def cgi_like_hand(label: str, seed: int, size: int = 300) -> Image.Image:
    """A skin-coloured palm, fingers by class and a wrist leaving at the bottom, on white with
    a soft grey shadow: the shape of the talk's renders, cheap enough for tests."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    tones = [(241, 194, 167), (224, 172, 138), (198, 134, 96), (161, 102, 70), (120, 75, 50), (89, 56, 38)]
    skin = tones[int(rng.integers(len(tones)))]
    cx = size // 2 + int(rng.integers(-20, 21))
    draw.ellipse((cx - 70, 150, cx + 80, 200), fill=(232, 232, 232))  # shadow on the backdrop
    draw.rectangle((cx - 35, 200, cx + 35, size), fill=skin)  # wrist to the bottom edge
    draw.ellipse((cx - 60, 110, cx + 60, 230), fill=skin)
    for k in range(FINGERS[label]):
        x = cx - 50 + k * (100 // max(1, FINGERS[label] - 1)) if FINGERS[label] > 1 else cx
        draw.rounded_rectangle((x - 9, 30 + 10 * (k % 2), x + 9, 140), radius=8, fill=skin)
    return img


@pytest.fixture(scope="session")
def cgi_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rock/paper/scissors folders; file names carry the hand id (`rock01-000.jpg`) like the dataset."""
    root = tmp_path_factory.mktemp("cgi")
    for label in FINGERS:
        (root / label).mkdir()
        for hand in (1, 2, 3):
            for frame in range(4):
                cgi_like_hand(label, seed=hand * 100 + frame).save(
                    root / label / f"{label}{hand:02d}-{frame:03d}.jpg", quality=92)
    return root


@pytest.fixture(scope="session", autouse=True)
def landmark_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The hand stage's landmarks are cached per test session, never in the user's cache."""
    path = tmp_path_factory.mktemp("imgclf-cache")
    before = os.environ.get("IMGCLF_CACHE")
    os.environ["IMGCLF_CACHE"] = str(path)
    yield path
    if before is None:
        del os.environ["IMGCLF_CACHE"]
    else:
        os.environ["IMGCLF_CACHE"] = before


@pytest.fixture(scope="session")
def hands_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real hands, small: each shipped sample photo as two hands per class (as it is: hand 01; mirrored: hand
    02), three frames each (as it is, turned, smaller), named like the dataset (`rock02-001.jpg`)."""
    root = tmp_path_factory.mktemp("hands")
    for label in FINGERS:
        (root / label).mkdir()
        with Image.open(SAMPLES / f"{label}.jpg") as img:
            photo = img.convert("RGB")
        for hand, picture in ((1, photo), (2, ImageOps.mirror(photo))):
            frames = (picture, picture.rotate(12, fillcolor=(128, 128, 128)),
                      picture.resize((picture.width * 3 // 4, picture.height * 3 // 4)))
            for frame, image in enumerate(frames):
                image.save(root / label / f"{label}{hand:02d}-{frame:03d}.jpg", quality=92)
    return root
