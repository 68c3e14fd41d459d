import io

import numpy as np
import pytest
from PIL import Image

from training import synthetic
from training.data import load_synthetic
from training.errors import DataError


def _mean_rgb(items):
    means = np.array([np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64).mean(axis=(0, 1))
                      for data, _ in items])
    return means, np.array([target for _, target in items])


def test_same_seed_gives_the_same_bytes():
    first = list(synthetic.generate(2, seed=7))
    second = list(synthetic.generate(2, seed=7))
    assert first == second


def test_another_seed_gives_other_images():
    a = [data for data, _ in synthetic.generate(2, seed=7)]
    b = [data for data, _ in synthetic.generate(2, seed=8)]
    assert all(x != y for x, y in zip(a, b, strict=True))


def test_sample_i_does_not_depend_on_the_count():
    small = list(synthetic.generate(1, seed=3))
    large = list(synthetic.generate(3, seed=3))
    assert large[:3] == small


def test_n_per_class_in_label_order():
    images = load_synthetic(5, seed=0)
    assert images.labels == ("paper", "rock", "scissors")
    assert synthetic.LABELS == ("paper", "rock", "scissors")
    assert len(images) == 15
    assert images.counts() == {"paper": 5, "rock": 5, "scissors": 5}
    assert images.targets.tolist()[:6] == [0, 1, 2, 0, 1, 2]
    assert len(set(images.images)) == 15


def test_load_synthetic_is_deterministic():
    assert load_synthetic(2, seed=4).content_hash() == load_synthetic(2, seed=4).content_hash()
    assert load_synthetic(2, seed=4).content_hash() != load_synthetic(2, seed=5).content_hash()


def test_images_are_150px_rgb_jpegs():
    for data, _ in synthetic.generate(2, seed=1):
        assert data[:3] == b"\xff\xd8\xff"
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG"
            assert img.mode == "RGB"
            assert img.size == (150, 150)


def test_render_size_and_unknown_kind():
    img = synthetic.render("paper", np.random.default_rng(0), size=64)
    assert img.size == (64, 64) and img.mode == "RGB"
    with pytest.raises(ValueError, match="unknown hand shape"):
        synthetic.render("lizard", np.random.default_rng(0))


def test_zero_samples_is_a_data_error():
    with pytest.raises(DataError, match="samples-per-class"):
        load_synthetic(0)


def test_classes_are_not_separable_by_mean_colour():
    means, targets = _mean_rgb(list(synthetic.generate(30, seed=0)))
    class_means = np.array([means[targets == c].mean(axis=0) for c in range(3)])
    within_std = np.array([means[targets == c].std(axis=0) for c in range(3)])
    # every class covers the same wide range of colours ...
    assert within_std.min() > 25
    # ... and the class centres sit close together relative to that spread
    spread = np.abs(class_means[:, None, :] - class_means[None, :, :]).max()
    assert spread < 0.5 * within_std.min()

    # a nearest-centroid classifier on mean colour stays near chance on other images
    test_means, test_targets = _mean_rgb(list(synthetic.generate(30, seed=1)))
    distances = np.linalg.norm(test_means[:, None, :] - class_means[None, :, :], axis=2)
    accuracy = (distances.argmin(axis=1) == test_targets).mean()
    assert accuracy < 0.55


def test_held_still_frames_are_one_hand_moving_a_little():
    import io

    from PIL import Image

    from training.synthetic import held_still

    frames = held_still("rock", 4, seed=1)
    assert frames == held_still("rock", 4, seed=1)  # deterministic for a seed
    assert len(set(frames)) == 4  # every frame differs, so each is its own example
    assert held_still("rock", 4, seed=2) != frames
    assert Image.open(io.BytesIO(frames[0])).size == (320, 240)
