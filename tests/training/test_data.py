import io
import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from training.data import load_folder, make_datasets, split
from training.errors import DataError
from training.preprocessing import decode_and_resize


def _picture(seed: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _folder(root: Path, classes: dict[str, int], fmt: str = "PNG", seed: int = 0) -> Path:
    for c, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / name / f"{i:03d}.{fmt.lower()}").write_bytes(
                _encode(_picture(seed * 1000 + c * 100 + i), fmt))
    return root


def _decoded(data: bytes) -> np.ndarray:
    return decode_and_resize(tf.constant(data), 32).numpy()


def test_labels_are_sorted_folder_names(tmp_path):
    _folder(tmp_path, {"zebra": 2, "apple": 3, "mango": 1})
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.txt").write_text("not a class")
    images = load_folder(tmp_path)
    assert images.labels == ("apple", "mango", "zebra")
    assert images.counts() == {"apple": 3, "mango": 1, "zebra": 2}
    assert images.skipped == 0
    assert images.images[0] == (tmp_path / "apple" / "000.png").read_bytes()


def test_unreadable_files_are_skipped_counted_and_logged(tmp_path, caplog):
    _folder(tmp_path, {"a": 2, "b": 2})
    rng = np.random.default_rng(0)
    (tmp_path / "a" / "noise.jpg").write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    jpeg = _encode(_picture(9, 64), "JPEG")
    (tmp_path / "b" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "b" / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="training.data"):
        images = load_folder(tmp_path)
    assert images.skipped == 3
    assert images.counts() == {"a": 2, "b": 2}
    assert any(r.levelno == logging.WARNING and "skipped 3 unreadable" in r.getMessage()
               for r in caplog.records)


def test_no_warning_when_nothing_is_skipped(tmp_path, caplog):
    _folder(tmp_path, {"a": 1, "b": 1})
    with caplog.at_level(logging.WARNING, logger="training.data"):
        load_folder(tmp_path)
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


def test_common_formats_are_accepted_unchanged(tmp_path):
    base = _picture(1)
    files = {
        "p.png": _encode(base, "PNG"),
        "rgba.png": _encode(base.convert("RGBA"), "PNG"),
        "gray.png": _encode(base.convert("L"), "PNG"),
        "g.gif": _encode(base, "GIF"),
        "j.jpg": _encode(base, "JPEG"),
    }
    for name, data in files.items():
        (tmp_path / "a" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "a" / name).write_bytes(data)
    _folder(tmp_path, {"b": 1})
    images = load_folder(tmp_path)
    assert images.skipped == 0
    kept = images.images[: len(files)]
    assert sorted(kept) == sorted(files.values())
    for data in kept:
        assert _decoded(data).shape == (32, 32, 3)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1"])
def test_bmp_is_accepted_with_its_true_colours(tmp_path, mode):
    img = _picture(2).convert(mode)
    _folder(tmp_path, {"b": 1})
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bmp").write_bytes(_encode(img, "BMP"))
    images = load_folder(tmp_path)
    assert images.skipped == 0 and images.counts()["a"] == 1
    expected = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(_decoded(images.images[0]), expected, atol=1 / 255)


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF"])
def test_pillow_only_formats_are_reencoded(tmp_path, fmt):
    img = _picture(3)
    original = _encode(img, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    if fmt == "TIFF":  # TensorFlow cannot read it: only the re-encoding makes it usable
        with pytest.raises(tf.errors.InvalidArgumentError):
            _decoded(original)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f"x.{fmt.lower()}").write_bytes(original)
    _folder(tmp_path, {"b": 1})
    images = load_folder(tmp_path)
    assert images.skipped == 0 and images.counts() == {"a": 1, "b": 1}
    data = images.images[0]
    assert data.startswith(b"\x89PNG")
    np.testing.assert_allclose(_decoded(data), np.asarray(img, dtype=np.float32) / 255, atol=1e-6)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "f.png").write_bytes(_encode(_picture(0), "PNG"))
    with pytest.raises(DataError, match="not a folder of class folders"):
        load_folder(tmp_path / "f.png")


def test_single_class_is_a_data_error(tmp_path):
    _folder(tmp_path, {"only": 3})
    with pytest.raises(DataError, match=r"1 class folder.*at least two"):
        load_folder(tmp_path)


def test_no_class_folders_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"0 class folder"):
        load_folder(tmp_path)


def test_empty_class_folder_is_a_data_error(tmp_path):
    _folder(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder .*b has no readable images"):
        load_folder(tmp_path)


def test_class_of_only_unreadable_files_is_a_data_error(tmp_path):
    _folder(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="no readable images"):
        load_folder(tmp_path)


def test_nested_files_and_hidden_files(tmp_path):
    _folder(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "deep.png").write_bytes(_encode(_picture(5), "PNG"))
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    images = load_folder(tmp_path)
    assert images.counts() == {"a": 2, "b": 1}
    assert images.skipped == 0


def test_val_dir_with_other_classes_is_an_error(tmp_path):
    train_dir = _folder(tmp_path / "train", {"paper": 2, "rock": 2, "scissors": 2})
    val_dir = _folder(tmp_path / "val", {"paper": 1, "rock": 1})
    with pytest.raises(DataError, match="expected the training classes"):
        make_datasets(str(train_dir), val_dir=str(val_dir), batch_size=2)


def test_val_dir_replaces_the_split(tmp_path):
    train_dir = _folder(tmp_path / "train", {"paper": 3, "rock": 3})
    val_dir = _folder(tmp_path / "val", {"paper": 1, "rock": 2}, seed=1)
    ds = make_datasets(str(train_dir), val_dir=str(val_dir), batch_size=4)
    assert len(ds.train_set) == 6
    assert ds.val_set.counts() == {"paper": 1, "rock": 2}
    assert ds.source == str(train_dir.resolve())


def test_split_is_stratified_and_seeded(tmp_path):
    images = load_folder(_folder(tmp_path, {"a": 10, "b": 20, "c": 30}))
    train, val = split(images, 0.2, seed=0)
    assert val.counts() == {"a": 2, "b": 4, "c": 6}
    assert train.counts() == {"a": 8, "b": 16, "c": 24}
    assert sorted(train.images + val.images) == sorted(images.images)
    assert not set(train.images) & set(val.images)

    again_train, again_val = split(images, 0.2, seed=0)
    assert again_val.images == val.images and again_train.images == train.images
    _, other_val = split(images, 0.2, seed=1)
    assert other_val.counts() == val.counts()
    assert other_val.images != val.images


def test_split_keeps_at_least_one_validation_image_per_class(tmp_path):
    images = load_folder(_folder(tmp_path, {"a": 2, "b": 5}))
    train, val = split(images, 0.1, seed=0)
    assert val.counts() == {"a": 1, "b": 1}
    assert train.counts() == {"a": 1, "b": 4}


@pytest.mark.parametrize("val_split", [0.0, 1.0, -0.2, 1.5])
def test_split_share_must_be_a_fraction(tmp_path, val_split):
    images = load_folder(_folder(tmp_path, {"a": 3, "b": 3}))
    with pytest.raises(DataError, match="val-split"):
        split(images, val_split, seed=0)


def test_split_refuses_a_class_too_small(tmp_path):
    images = load_folder(_folder(tmp_path, {"a": 1, "b": 3}))
    with pytest.raises(DataError, match="'a' has 1 image"):
        split(images, 0.2, seed=0)


def test_make_datasets_from_a_folder_gives_batched_pixels(tmp_path):
    root = _folder(tmp_path, {"paper": 5, "rock": 5, "scissors": 5})
    ds = make_datasets(str(root), batch_size=4, val_split=0.2, seed=0)
    assert ds.labels == ("paper", "rock", "scissors")
    assert len(ds.train_set) == 12 and len(ds.val_set) == 3
    x, y = next(iter(ds.train))
    assert x.shape == (4, 150, 150, 3) and x.dtype == tf.float32
    assert float(tf.reduce_min(x)) >= 0.0 and float(tf.reduce_max(x)) <= 1.0
    assert y.shape == (4, 3)
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0)
    val_targets = np.concatenate([yb.numpy().argmax(axis=1) for _, yb in ds.val])
    assert val_targets.tolist() == ds.val_set.targets.tolist()
    assert len(ds.source_hash) == 64


def test_make_datasets_rejects_a_zero_batch(tmp_path):
    with pytest.raises(DataError, match="batch-size"):
        make_datasets("synthetic", batch_size=0, samples_per_class=2)


def test_make_datasets_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        make_datasets(str(tmp_path / "missing"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_cameras_orientation_turns_training_pictures_upright_as_serving_does(tmp_path, fmt):
    """TensorFlow's decoder ignores EXIF orientation; serving applies it, so training must too, or a
    folder of portrait phone photos would teach the model hands lying on their side."""
    from PIL import ImageOps

    upright = Image.fromarray(np.kron(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, np.ones((16, 16), np.uint8)))
    upright = upright.convert("RGB")  # 64x48, every 16 px block its own grey: a turn cannot go unseen
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: the sensor's landscape pixels, and a quarter turn to apply
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = _encode(stored, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == upright.size  # Pillow's own reading agrees
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f"x.{fmt.lower()}").write_bytes(data)
    _folder(tmp_path, {"b": 1})
    images = load_folder(tmp_path)
    assert images.skipped == 0
    got = np.asarray(Image.open(io.BytesIO(images.images[0])).convert("RGB"), dtype=np.float32)
    assert got.shape == (48, 64, 3)
    assert np.abs(got - np.asarray(upright, dtype=np.float32)).max() <= (1 if fmt == "PNG" else 12)
    unchanged = _encode(upright, fmt)
    (tmp_path / "a" / f"x.{fmt.lower()}").write_bytes(unchanged)
    assert load_folder(tmp_path).images[0] == unchanged  # no orientation: the file's own bytes, as before


def test_a_jpeg_carrying_more_pictures_is_kept_as_a_jpeg(tmp_path):
    """Pillow calls a phone's JPEG with a preview or depth map (MPF) MPO; it is a JPEG TensorFlow reads."""
    buf = io.BytesIO()
    _picture(5, 48).save(buf, format="MPO", save_all=True, append_images=[_picture(6, 16)], quality=95)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(buf.getvalue())
    _folder(tmp_path, {"b": 1})
    images = load_folder(tmp_path)
    assert images.skipped == 0 and images.images[0] == buf.getvalue()
