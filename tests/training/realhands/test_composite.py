import numpy as np
import pytest
from PIL import Image

from tests.training.conftest import cgi_like_hand
from training.realhands import backgrounds, composite


@pytest.fixture(scope="module")
def hand() -> np.ndarray:
    cut = composite.cutout(np.asarray(cgi_like_hand("paper", seed=3)))
    assert cut is not None
    return cut


def test_cutout_keeps_the_hand_and_drops_the_backdrop_and_its_shadow(hand):
    assert hand.shape[0] == composite.CUTOUT_HEIGHT and hand.shape[2] == 4
    alpha = hand[..., 3]
    opaque = hand[alpha == 255][:, :3].astype(int)
    # no white backdrop or grey shadow survives inside the mask
    assert (opaque.max(axis=1) - opaque.min(axis=1) > 20).mean() > 0.99
    assert (alpha == 0).mean() > 0.1  # the corners between fingers are see-through


def test_photos_are_not_mistaken_for_renders():
    rng = np.random.default_rng(0)
    photo = np.asarray(backgrounds.procedural(300, rng))
    assert not composite.has_white_background(photo)
    assert composite.has_white_background(np.asarray(cgi_like_hand("rock", 1)))


def test_scenes_are_deterministic_for_a_seed(hand):
    a = composite.hand_scene(hand, 150, np.random.default_rng([7, 1]))
    b = composite.hand_scene(hand, 150, np.random.default_rng([7, 1]))
    c = composite.hand_scene(hand, 150, np.random.default_rng([7, 2]))
    assert a.shape == (150, 150, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    e1 = composite.empty_scene(150, np.random.default_rng(5))
    assert np.array_equal(e1, composite.empty_scene(150, np.random.default_rng(5)))


def test_the_hand_always_stays_in_the_frame(hand):
    """The label survives augmentation: every hand scene shows a real part of the hand."""
    for seed in range(40):
        scene = Image.new("RGB", (150, 150), (0, 0, 0))
        placed = np.asarray(composite._place_hand(scene, hand, np.random.default_rng(seed)))
        covered = (placed.max(axis=2) > 0).mean()
        assert covered > 0.05, f"seed {seed}: the hand covers only {covered:.1%} of the frame"


def test_held_out_backgrounds_never_train():
    train = {p.name for p in backgrounds.TRAIN_PHOTOS}
    held = {p.name for p in backgrounds.HELD_OUT_PHOTOS}
    assert not train & held
    assert backgrounds.load_photos(False) and backgrounds.load_photos(True)
    for photo in (*backgrounds.TRAIN_PHOTOS, *backgrounds.HELD_OUT_PHOTOS):
        assert any(w in photo.licence for w in ("public domain", "CC0", "no known copyright"))


def test_retone_moves_the_skin_tone_across_the_scale_and_keeps_the_hand(hand):
    lightness = []
    for seed in range(40):
        out = composite.retone(hand, np.random.default_rng(seed))
        assert out.shape == hand.shape and out.dtype == np.uint8
        assert np.array_equal(out[..., 3], hand[..., 3])  # the mask, so the label, is untouched
        assert np.array_equal(out, composite.retone(hand, np.random.default_rng(seed)))
        lightness.append(out[hand[..., 3] > 127][:, :3].mean())
    # from near-black to pale skin, whatever the render's own tone
    assert min(lightness) < 60 and max(lightness) > 180
    assert np.std(lightness) > 30


def test_training_styles_are_off_unless_asked_and_then_change_the_scene(hand):
    """Validation and the real-like check render with the default Style: their scenes must not move."""
    plain = composite.hand_scene(hand, 150, np.random.default_rng(9))
    off = composite.Style(retone=0.0)
    assert np.array_equal(plain, composite.hand_scene(hand, 150, np.random.default_rng(9), style=off))
    retoned = composite.hand_scene(hand, 150, np.random.default_rng(9), style=composite.Style(retone=1.0))
    assert not np.array_equal(plain, retoned)
