"""The hand stage as the server runs it: what it finds is in the pixels of the picture as sent, turned upright,
whatever its size or EXIF orientation, and a bad image is refused before the stage sees it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInputError
from service.hand_reader import HandReader
from service.images import upright_picture

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"
LIMITS = {"max_pixels": 40_000_000, "min_side": 8}
EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def reader() -> HandReader:
    return HandReader(budget_ms=float("inf"))  # every attempt: what is found does not depend on the load


def _jpeg(img: Image.Image, orientation: int = 1) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[EXIF_ORIENTATION] = orientation
    img.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _sample(name: str) -> Image.Image:
    with Image.open(SAMPLES / f"{name}.jpg") as im:
        return im.convert("RGB")


def test_a_sample_hand_is_found_with_its_box_around_its_landmarks(reader: HandReader) -> None:
    picture = _sample("rock")
    hand, pixels, seconds = reader.read(_jpeg(picture), **LIMITS)
    assert hand is not None and pixels == picture.width * picture.height and seconds > 0
    xy = hand.landmarks[:, :2]
    assert hand.landmarks.shape == (21, 3) and hand.landmarks.dtype == np.float32
    assert hand.box == pytest.approx((xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()), abs=1e-3)
    assert 0 <= hand.box[0] < hand.box[2] <= picture.width and 0 <= hand.box[1] < hand.box[3] <= picture.height
    assert hand.handedness in ("Left", "Right") and 0.6 <= hand.score <= 1
    out = hand.as_dict()
    assert len(out["landmarks"]) == 21 and all(len(p) == 3 for p in out["landmarks"]) and len(out["box"]) == 4


def test_the_portrait_has_no_hand(reader: HandReader) -> None:
    hand, _, _ = reader.read(_jpeg(_sample("no-hand")), **LIMITS)
    assert hand is None


def test_a_big_photo_is_read_shrunk_and_answered_in_its_own_pixels(reader: HandReader) -> None:
    picture = _sample("paper")
    scale = 8  # about 2,400 pixels a side: read at 1,024 at most
    big = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.BICUBIC)
    small, _, _ = reader.read(_jpeg(picture), **LIMITS)
    large, pixels, _ = reader.read(_jpeg(big), **LIMITS)
    assert small is not None and large is not None and pixels == big.width * big.height
    # the same hand, in pixels `scale` times larger: within 2% of the hand's size
    size = max(small.box[2] - small.box[0], small.box[3] - small.box[1])
    np.testing.assert_allclose(large.landmarks[:, :2] / scale, small.landmarks[:, :2], atol=0.02 * size)


@pytest.mark.parametrize(("orientation", "stored_as"), [(6, Image.Transpose.ROTATE_90),
                                                         (8, Image.Transpose.ROTATE_270),
                                                         (3, Image.Transpose.ROTATE_180)])
def test_a_photo_with_an_exif_orientation_is_answered_upright(reader: HandReader, orientation: int,
                                                              stored_as: Image.Transpose) -> None:
    # a phone stores the sensor's pixels turned and says how to turn them back: the answer is in the
    # pixels of the picture as shown upright, the same as for the upright picture itself
    picture = _sample("scissors")
    upright, _, _ = reader.read(_jpeg(picture), **LIMITS)
    turned, _, _ = reader.read(_jpeg(picture.transpose(stored_as), orientation), **LIMITS)
    assert upright is not None and turned is not None
    size = max(upright.box[2] - upright.box[0], upright.box[3] - upright.box[1])
    np.testing.assert_allclose(turned.landmarks[:, :2], upright.landmarks[:, :2], atol=0.03 * size)


def test_upright_picture_keeps_small_pictures_whole_and_shrinks_big_ones() -> None:
    picture = _sample("rock")
    same, scale, pixels = upright_picture(_jpeg(picture), max_side=1024, **LIMITS)
    assert same.size == picture.size and scale == 1 and pixels == picture.width * picture.height
    wide = picture.resize((3000, 1000))
    shrunk, scale, _ = upright_picture(_jpeg(wide, orientation=6), max_side=1024, **LIMITS)
    assert shrunk.size == (round(1000 / scale), round(3000 / scale)) and max(shrunk.size) <= 1024
    assert scale == pytest.approx(3000 / max(shrunk.size))


@pytest.mark.parametrize("data", [b"", b"not an image", _jpeg(Image.new("RGB", (64, 64)))[:300]])
def test_a_bad_image_is_refused_before_the_stage(reader: HandReader, data: bytes) -> None:
    calls: list[object] = []
    find = reader.stage.find
    reader.stage.find = lambda rgb: calls.append(rgb) or find(rgb)  # type: ignore[method-assign]
    try:
        with pytest.raises(InvalidInputError):
            reader.read(data, **LIMITS)
    finally:
        del reader.stage.find
    assert not calls
