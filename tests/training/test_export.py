import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from training.errors import ExportError
from training.export import export
from training.model import make_model
from training.preprocessing import decode_and_resize
from version_format.layout import CARD_FILE, LABELS_FILE, TFLITE_FILE, WARMUP_FILE, next_version, scan_versions

LABELS = ("paper", "rock", "scissors")


def _peaky_model(seed: int = 0) -> keras.Model:
    """An untrained model whose scores differ clearly between images (not all ~1/3)."""
    keras.utils.set_random_seed(seed)
    model = make_model()
    scores = model.get_layer("scores")
    kernel, bias = scores.get_weights()
    scores.set_weights([kernel * 40, bias])
    return model


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def peaky_model():
    return _peaky_model()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sample_jpeg, peaky_model):
    root = tmp_path_factory.mktemp("export")
    path = export(peaky_model, LABELS, root, "rps", card={"epochs": 3, "note": "test card"},
                  warmup_images=[sample_jpeg, sample_jpeg])
    return path


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported))


def test_scan_versions_ignores_everything_but_integer_folders(tmp_path):
    for name in ("1", "3", "10", "01", "abc", "2a", ".tmp-abc123", "-4", "+5"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert scan_versions(tmp_path) == [1, 3, 10]
    assert next_version(tmp_path) == 11


def test_scan_versions_of_a_missing_folder(tmp_path):
    assert scan_versions(tmp_path / "missing") == []
    assert next_version(tmp_path / "missing") == 1
    (tmp_path / ".tmp-x").mkdir()
    assert next_version(tmp_path) == 1


def test_exports_take_the_next_free_version(tmp_path):
    model = make_model()
    first = export(model, LABELS, tmp_path, "rps")
    assert first == tmp_path / "rps" / "1"
    second = export(model, LABELS, tmp_path, "rps")
    assert second == tmp_path / "rps" / "2"
    (tmp_path / "rps" / "junk").mkdir()
    explicit = export(model, LABELS, tmp_path, "rps", version=7)
    assert explicit == tmp_path / "rps" / "7"
    assert scan_versions(tmp_path / "rps") == [1, 2, 7]
    assert json.loads((explicit / CARD_FILE).read_text())["version"] == 7
    assert not list((tmp_path / "rps").glob(".tmp-*"))
    for path in (first, second, explicit):
        assert (path / "saved_model.pb").is_file()
        assert (path / "variables").is_dir()
        assert not (path / WARMUP_FILE).exists()
        # every version carries its float model; with no image to check it on, the card says so
        entry = json.loads((path / CARD_FILE).read_text())["float"]
        assert (path / TFLITE_FILE).stat().st_size == entry["bytes"] and entry["file"] == TFLITE_FILE
        assert entry["images"] == {} and entry["max_score_difference"] is None

    with pytest.raises(ExportError, match=r"version 2 .*already exists"):
        export(model, LABELS, tmp_path, "rps", version=2)
    with pytest.raises(ExportError, match="positive"):
        export(model, LABELS, tmp_path, "rps", version=0)
    assert scan_versions(tmp_path / "rps") == [1, 2, 7]


@pytest.mark.parametrize("name", ["", "a/b", ".hidden"])
def test_invalid_names_are_refused(tmp_path, name):
    with pytest.raises(ExportError, match="invalid model name"):
        export(make_model(), LABELS, tmp_path, name)


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        Path(args[1], "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export(make_model(), LABELS, tmp_path, "rps")
    assert list((tmp_path / "rps").iterdir()) == []


def test_labels_file(exported):
    assert (exported / LABELS_FILE).read_text().splitlines() == list(LABELS)


def test_model_card(exported):
    card = json.loads((exported / CARD_FILE).read_text())
    assert card["name"] == "rps"
    assert card["version"] == 1
    assert card["labels"] == list(LABELS)
    assert card["input_size"] == [150, 150, 3]
    assert card["tensorflow_version"] == tf.__version__
    assert card["keras_version"] == keras.__version__
    assert card["epochs"] == 3 and card["note"] == "test card"
    assert card["created"].endswith("Z")


def test_warmup_requests_are_prediction_logs(exported, sample_jpeg):
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(str(exported / WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 2
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "rps"
        assert request.model_spec.signature_name == "serving_default"
        tensor = request.inputs["image_bytes"]
        assert tensor.dtype == tf.string.as_datatype_enum
        assert [d.size for d in tensor.tensor_shape.dim] == [1]
        assert tensor.string_val == [sample_jpeg]


@pytest.mark.filterwarnings("ignore:.*Interpreter is deprecated:UserWarning")
def test_tflite_matches_the_saved_model(exported, loaded, sample_jpeg):
    interpreter = tf.lite.Interpreter(model_path=str(exported / TFLITE_FILE))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    assert list(inp["shape"][1:]) == [150, 150, 3]
    rng = np.random.default_rng(0)
    batch = [decode_and_resize(tf.constant(sample_jpeg)).numpy(),
             rng.random((150, 150, 3), dtype=np.float32)]
    for pixels in [batch[0][None], np.stack(batch)]:
        pixels = pixels.astype(np.float32)
        interpreter.resize_tensor_input(inp["index"], pixels.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], pixels)
        interpreter.invoke()
        lite = interpreter.get_tensor(out["index"])
        full = loaded.signatures["serving_pixels"](pixels=tf.constant(pixels))["scores"].numpy()
        assert lite.shape == (len(pixels), 3)
        assert np.isfinite(lite).all()
        np.testing.assert_allclose(lite, full, atol=1e-4)
    # and the card's entry: checked on the two warm-up images, the same top class, rounding-sized differences
    entry = json.loads((exported / CARD_FILE).read_text())["float"]
    assert entry["images"] == {"warmup": 2} and entry["top1_agreement"] == {"warmup": 1.0}
    assert 0 <= entry["max_score_difference"] < 1e-4 and entry["bytes"] == (exported / TFLITE_FILE).stat().st_size


def test_serving_default_accepts_common_formats(loaded, sample_jpeg):
    photo = Image.open(io.BytesIO(sample_jpeg))
    inputs = [sample_jpeg, _encode(photo, "PNG"), _encode(photo.convert("L"), "PNG"),
              _encode(photo.convert("RGBA"), "PNG")]
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(inputs))
    scores, labels = out["scores"].numpy(), out["label"].numpy()
    assert scores.shape == (4, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert [lab.decode() for lab in labels] == [LABELS[i] for i in scores.argmax(axis=1)]
    # the colour versions are the same picture, so they score alike
    np.testing.assert_allclose(scores[1], scores[3], atol=1e-6)
    np.testing.assert_allclose(scores[0], scores[1], atol=0.05)


def test_bytes_and_pixels_signatures_agree(loaded, sample_jpeg):
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant([sample_jpeg]))
    pixels = decode_and_resize(tf.constant(sample_jpeg))[None]
    by_pixels = loaded.signatures["serving_pixels"](pixels=pixels)
    assert set(by_pixels) == {"scores"}
    np.testing.assert_allclose(by_bytes["scores"].numpy(), by_pixels["scores"].numpy(), atol=1e-5)
    assert by_bytes["scores"].numpy().max() > 0.5  # the peaky model really discriminates


def test_saved_model_reproduces_the_keras_model(loaded, peaky_model):
    pixels = np.random.default_rng(1).random((3, 150, 150, 3), dtype=np.float32)
    saved = loaded.signatures["serving_pixels"](pixels=tf.constant(pixels))["scores"].numpy()
    np.testing.assert_allclose(saved, peaky_model(pixels, training=False).numpy(), atol=1e-5)


def test_labels_signature_gives_the_label_order(loaded):
    out = loaded.signatures["labels"]()
    assert [lab.decode() for lab in out["labels"].numpy()] == list(LABELS)


def test_serving_default_rejects_garbage(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_default"](image_bytes=tf.constant([b"not an image"]))


def test_saved_model_cli_lists_both_signatures(exported):
    cli = Path(sys.executable).parent / "saved_model_cli"
    proc = subprocess.run([str(cli), "show", "--all", "--dir", str(exported)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "signature_def['serving_default']" in proc.stdout
    assert "signature_def['serving_pixels']" in proc.stdout
    assert "image_bytes" in proc.stdout
    assert "DT_STRING" in proc.stdout
