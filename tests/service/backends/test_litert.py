"""The LiteRT runtimes: int8 and float models behind the same backend interface, chosen per version, on real
servers."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from service.backends.litert import LiteRTRuntime
from service.backends.local import LocalBackend
from service.backends.tensorflow_runtime import TensorFlowRuntime
from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc
from tests.service.conftest import metric_value
from version_format.layout import CARD_FILE, INT8_FILE, TFLITE_FILE


def _copy(trained_result, root: Path, *, drop: float | None = None, int8: bool = True, float_file: bool = True) -> Path:
    """Version 1 of `root`/rps: the tiny trained version, its int8 file and recorded drop, and its float file, as
    asked (without the float file: a version exported before every version carried one)."""
    version = root / "rps" / "1"
    shutil.copytree(trained_result.path, version)
    card = json.loads((version / CARD_FILE).read_text())
    if drop is not None:
        card["int8"]["max_drop_points"] = drop
    (version / CARD_FILE).write_text(json.dumps(card))
    if not int8:
        (version / INT8_FILE).unlink()
    if not float_file:
        (version / TFLITE_FILE).unlink()
    return root


@pytest.mark.parametrize(("runtime", "drop", "int8", "float_file", "expected", "source"), [
    ("auto", 0.0, True, True, "litert", INT8_FILE),
    ("auto", 3.0, True, True, "litert-float", TFLITE_FILE),  # measured drop above the 0.5-point tolerance
    ("auto", 0.0, False, True, "litert-float", TFLITE_FILE),  # no int8 file: the float one
    ("auto", 0.0, False, False, "litert-float", "converted to float at load"),  # neither: the SavedModel converted
    ("litert", 3.0, True, True, "litert", INT8_FILE),  # asked for explicitly: the gate does not apply
    ("litert-float", 3.0, False, True, "litert-float", TFLITE_FILE),  # no int8 file, no gate
    ("litert-float", 3.0, True, False, "litert-float", "converted to float at load"),  # an older version
    ("tensorflow", 0.0, True, True, "tensorflow", ""),
])
def test_runtime_is_chosen_per_version(trained_result, tmp_path, runtime, drop, int8, float_file, expected, source):
    backend = LocalBackend(_copy(trained_result, tmp_path, drop=drop, int8=int8, float_file=float_file),
                           runtime=runtime)
    model = backend.load("rps", 1)
    try:
        assert model.info.runtime == expected
        assert isinstance(model, LiteRTRuntime if expected.startswith("litert") else TensorFlowRuntime)
        assert f"IMGCLF_RUNTIME={runtime}" in model.info.runtime_note
        assert source in model.info.runtime_note
        if expected.startswith("litert"):
            assert model.xnnpack and "XNNPACK on" in model.info.runtime_note
    finally:
        model.close()


_NO_TENSORFLOW = """
import sys
from pathlib import Path

import numpy as np

from service.backends.litert import LiteRTRuntime

version = Path(sys.argv[1])
model = LiteRTRuntime("rps", 1, version, precision="float", reason="IMGCLF_RUNTIME=litert-float")
scores = model.predict([(version / "probe.png").read_bytes()])
np.save(sys.argv[2], scores)
print(model.info.runtime_note)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "training")))
"""


@pytest.mark.parametrize("float_file", [True, False])
def test_litert_float_serves_its_file_without_tensorflow(trained_result, tmp_path, float_file):
    import os
    import subprocess
    import sys

    import tensorflow as tf

    version = _copy(trained_result, tmp_path, float_file=float_file) / "rps" / "1"
    Image.new("RGB", (90, 120), (220, 40, 200)).save(version / "probe.png")
    out = tmp_path / "scores.npy"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, str(version), str(out)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    note, imported = done.stdout.splitlines()[-2:]
    if float_file:  # the file, and nothing of TensorFlow, Keras or the training code in the process
        assert f"float model from {TFLITE_FILE}" in note and imported == "[]"
    else:  # an older version: converted at load, which is where TensorFlow comes in
        assert "converted to float at load" in note and "'tensorflow'" in imported
    pixels = np.asarray(Image.new("RGB", (150, 150), (220, 40, 200)), np.float32)[None] / 255
    saved = tf.saved_model.load(str(trained_result.path)).signatures["serving_pixels"]
    np.testing.assert_allclose(np.load(out), saved(pixels=tf.constant(pixels))["scores"].numpy(), atol=1e-4)


def test_litert_without_an_int8_file_fails_to_load_with_the_fix(trained_result, tmp_path):
    backend = LocalBackend(_copy(trained_result, tmp_path, int8=False), runtime="litert")
    with pytest.raises(ValueError, match="imgclf quantize"):
        backend.load("rps", 1)


def test_an_added_int8_file_changes_the_fingerprint(trained_result, tmp_path):
    root = _copy(trained_result, tmp_path, int8=False)
    backend = LocalBackend(root, runtime="auto")
    before = backend.discover("rps")
    shutil.copy(trained_result.path / INT8_FILE, root / "rps" / "1" / INT8_FILE)
    assert backend.discover("rps") != before
    # the tensorflow runtime reads neither LiteRT file: its fingerprint is the SavedModel's alone
    assert LocalBackend(root, runtime="tensorflow").discover("rps") == {1: before[1].split("+")[0]}


def test_an_added_float_file_changes_the_fingerprint_where_it_is_read(trained_result, tmp_path):
    root = _copy(trained_result, tmp_path, int8=False)
    (root / "rps" / "1" / TFLITE_FILE).unlink(missing_ok=True)
    before = {runtime: LocalBackend(root, runtime=runtime).discover("rps")
              for runtime in ("litert-float", "auto", "litert", "tensorflow")}
    shutil.copy(trained_result.path / TFLITE_FILE, root / "rps" / "1" / TFLITE_FILE)
    after = {runtime: LocalBackend(root, runtime=runtime).discover("rps") for runtime in before}
    assert after["litert-float"] != before["litert-float"] and after["auto"] != before["auto"]
    assert after["litert"] == before["litert"] and after["tensorflow"] == before["tensorflow"]


def test_litert_scores_follow_tensorflow_on_the_same_bytes(trained_result, sample_jpeg):
    backend = LocalBackend(trained_result.path.parent.parent, runtime="litert")
    lite = backend.load("rps", 1)
    tf_model = LocalBackend(trained_result.path.parent.parent).load("rps", 1)
    png = io.BytesIO()
    Image.new("RGB", (90, 120), (220, 40, 200)).save(png, format="PNG")
    images = [sample_jpeg, png.getvalue()]
    got, expected = lite.predict(images), tf_model.predict(images)
    assert got.shape == expected.shape == (2, 3)
    assert np.abs(got - expected).max() < 0.08
    # decoded pixels in, as the core hands them over, give the same scores as bytes in
    pixels = [lite.decode(x, max_pixels=10**7, min_side=8)[0] for x in images]
    np.testing.assert_allclose(lite.predict(pixels), got, atol=1e-6)


def test_litert_float_gives_the_savedmodels_scores_on_the_same_pixels(trained_result, sample_jpeg):
    import tensorflow as tf

    root = trained_result.path.parent.parent
    lite = LocalBackend(root, runtime="litert-float").load("rps", 1)
    int8 = LocalBackend(root, runtime="litert").load("rps", 1)
    saved = tf.saved_model.load(str(trained_result.path)).signatures["serving_pixels"]
    png = io.BytesIO()
    Image.new("RGB", (90, 120), (220, 40, 200)).save(png, format="PNG")
    pixels = [lite.decode(x, max_pixels=10**7, min_side=8)[0] for x in (sample_jpeg, png.getvalue())]
    expected = saved(pixels=tf.constant(np.stack(pixels), tf.float32) / 255)["scores"].numpy()
    got = lite.predict(pixels)
    assert got.shape == expected.shape == (2, 3)
    # float against float: rounding only, where the int8 model is allowed its quantization error
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.abs(int8.predict(pixels) - expected).max() > 1e-4
    assert lite.info.runtime_note.startswith("IMGCLF_RUNTIME=litert-float") and "XNNPACK on" in lite.info.runtime_note


def test_litert_float_needs_the_pixels_signature(trained_result, tmp_path):
    import tensorflow as tf

    root = _copy(trained_result, tmp_path)
    version = root / "rps" / "1"
    loaded = tf.saved_model.load(str(version))
    shutil.rmtree(version)
    tf.saved_model.save(loaded, str(version), signatures={"serving_default": loaded.signatures["serving_default"]})
    shutil.copytree(trained_result.path / "assets", version / "assets", dirs_exist_ok=True)
    with pytest.raises(ValueError, match=r"no serving_pixels signature.*IMGCLF_RUNTIME=tensorflow"):
        LocalBackend(root, runtime="litert-float").load("rps", 1)
    # auto, with no int8 model to serve (this copy has none), falls back to TensorFlow for it, and says why
    model = LocalBackend(root, runtime="auto").load("rps", 1)
    try:
        assert isinstance(model, TensorFlowRuntime) and model.info.runtime == "tensorflow"
        note = model.info.runtime_note
        assert "imgclf quantize" in note and "not convertible to LiteRT (" in note and "serving_pixels" in note
    finally:
        model.close()


@pytest.fixture(scope="module")
def litert_server(trained_result, tmp_path_factory):
    from tests.service.conftest import RunningServer, test_settings

    root = _copy(trained_result, tmp_path_factory.mktemp("litert"), drop=0.0)
    server = RunningServer(test_settings(root, runtime="auto", decode_threads=2)).start()
    yield server
    server.stop()


def test_the_server_answers_and_says_which_runtime(litert_server, sample_jpeg):
    url = litert_server.rest_url
    r = httpx.post(f"{url}/predict", files=[("file", ("a.jpg", sample_jpeg)), ("file", ("b.jpg", sample_jpeg))])
    assert r.status_code == 200, r.text
    a, b = r.json()["predictions"]
    assert a == b and abs(sum(a["scores"].values()) - 1) < 0.02
    version = httpx.get(f"{url}/models").json()["versions"][0]
    assert version["runtime"] == "litert" and "drop 0 points" in version["runtime_note"]
    assert set(version["int8"]["int8_accuracy"]) == {"validation"}
    meta = httpx.get(f"{url}/v1/models/rps/metadata").json()["metadata"]
    assert meta["runtime"]["name"] == "litert"
    assert httpx.get(f"{url}/v2/models/rps").json()["platform"] == "tensorflow_tflite"
    assert 'imgclf_model_runtime{model="rps",runtime="litert",version="1"} 1.0' in httpx.get(f"{url}/metrics").text
    with grpc.insecure_channel(litert_server.grpc_target) as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            pb.ClassifyRequest(images=[sample_jpeg]), timeout=30)
    assert reply.model_version == 1
    np.testing.assert_allclose(list(reply.predictions[0].scores), list(a["scores"].values()), atol=1e-5)
    # one image on the idle model is decoded and scored in one hop; two went through the queue
    lone = httpx.post(f"{url}/predict", files=[("file", ("a.jpg", sample_jpeg))])
    assert lone.status_code == 200
    np.testing.assert_allclose(list(lone.json()["predictions"][0]["scores"].values()),
                               list(a["scores"].values()), atol=1e-6)


def test_bad_input_keeps_its_4xx_on_litert(litert_server, sample_jpeg):
    url = litert_server.rest_url

    def post(data: bytes) -> httpx.Response:
        return httpx.post(f"{url}/predict", content=data, headers={"content-type": "image/jpeg"})

    assert post(b"not an image").status_code == 400
    truncated = post(sample_jpeg[: len(sample_jpeg) // 2])
    assert truncated.status_code == 400 and "corrupt or truncated" in truncated.json()["error"]
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, format="PNG")
    assert post(tiny.getvalue()).status_code == 400
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # 400 MP from a few kB: refused from its header
    r = post(bomb.getvalue())
    assert r.status_code == 400 and "above the limit" in r.json()["error"]
    many = httpx.post(f"{url}/predict", files=[("file", ("a.jpg", sample_jpeg))] * 65)
    assert many.status_code == 413


def test_a_server_on_litert_float_answers_every_protocol_and_says_so(trained_result, tmp_path, start_server,
                                                                     sample_jpeg):
    server = start_server(_copy(trained_result, tmp_path, int8=False), runtime="litert-float")
    url = server.rest_url
    r = httpx.post(f"{url}/predict", files=[("file", ("a.jpg", sample_jpeg))])
    assert r.status_code == 200, r.text
    scores = list(r.json()["predictions"][0]["scores"].values())
    version = httpx.get(f"{url}/models").json()["versions"][0]
    assert version["runtime"] == "litert-float" and f"float model from {TFLITE_FILE}" in version["runtime_note"]
    assert httpx.get(f"{url}/v1/models/rps/metadata").json()["metadata"]["runtime"]["name"] == "litert-float"
    assert httpx.get(f"{url}/v2/models/rps").json()["platform"] == "tensorflow_tflite"
    assert metric_value(httpx.get(f"{url}/metrics").text, "imgclf_model_runtime", model="rps", version="1",
                        runtime="litert-float") == 1.0
    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            pb.ClassifyRequest(images=[sample_jpeg]), timeout=30)
    np.testing.assert_allclose(list(reply.predictions[0].scores), scores, atol=1e-5)
    bad = httpx.post(f"{url}/predict", files=[("file", ("a.txt", b"not an image"))])
    assert bad.status_code == 400 and "not a readable image" in bad.json()["error"]


def test_the_request_pixel_total_is_checked_before_decoding(trained_result, tmp_path, start_server, sample_jpeg):
    side = Image.open(io.BytesIO(sample_jpeg)).size
    server = start_server(_copy(trained_result, tmp_path, drop=0.0), runtime="litert",
                          max_request_pixels=2 * side[0] * side[1] - 1)
    url = f"{server.rest_url}/predict"
    assert httpx.post(url, files=[("file", ("a.jpg", sample_jpeg))]).status_code == 200
    r = httpx.post(url, files=[("file", ("a.jpg", sample_jpeg)), ("file", ("b.jpg", sample_jpeg))])
    assert r.status_code == 413 and "per request" in r.json()["error"]
    bad = httpx.post(url, files=[("file", ("a.jpg", sample_jpeg)), ("file", ("b.txt", b"text"))])
    assert bad.status_code == 400 and bad.json()["error"].startswith("image 2: ")


def test_a_lone_image_over_the_request_pixel_total_is_refused(trained_result, tmp_path, start_server, sample_jpeg):
    side = Image.open(io.BytesIO(sample_jpeg)).size
    server = start_server(_copy(trained_result, tmp_path, drop=0.0), runtime="litert",
                          max_request_pixels=side[0] * side[1] - 1)
    r = httpx.post(f"{server.rest_url}/predict", files=[("file", ("a.jpg", sample_jpeg))])
    assert r.status_code == 413 and "per request" in r.json()["error"]
    assert httpx.get(f"{server.rest_url}/readyz").status_code == 200  # and the version serves on


def test_a_bad_image_is_not_a_failed_inference_on_either_path(trained_result, tmp_path, start_server, sample_jpeg):
    """Triton's statistics count the same request the same way whether it came alone or queued."""
    url = start_server(_copy(trained_result, tmp_path, drop=0.0), runtime="litert").rest_url

    def stats() -> dict:
        return httpx.get(f"{url}/v2/models/rps/stats").json()["model_stats"][0]["inference_stats"]

    cut = sample_jpeg[: len(sample_jpeg) // 2]
    assert httpx.post(f"{url}/predict", files=[("file", ("a.jpg", cut))]).status_code == 400  # alone, one hop
    assert httpx.post(f"{url}/predict", files=[("file", ("a.jpg", sample_jpeg)),
                                               ("file", ("b.jpg", cut))]).status_code == 400  # queued path
    assert stats()["fail"]["count"] == 0
    assert httpx.post(f"{url}/predict", files=[("file", ("a.jpg", sample_jpeg))]).status_code == 200
    assert stats()["success"]["count"] == 1 and stats()["fail"]["count"] == 0


def test_litert_model_calls_hold_at_most_its_own_batch_size(trained_result, tmp_path, start_server, sample_jpeg):
    server = start_server(_copy(trained_result, tmp_path, drop=0.0), runtime="litert", max_batch_size=32,
                          litert_max_batch_size=4)
    r = httpx.post(f"{server.rest_url}/predict", files=[("file", (f"{i}.jpg", sample_jpeg)) for i in range(10)])
    assert r.status_code == 200 and len(r.json()["predictions"]) == 10
    metrics = httpx.get(f"{server.rest_url}/metrics").text
    series = {"model": "rps", "version": "1"}
    calls = metric_value(metrics, "imgclf_batch_size_count", **series)
    assert metric_value(metrics, "imgclf_batch_size_sum", **series) >= 10
    # every call (warm-up included) held at most 4 images: 10 images took at least 3 calls
    assert metric_value(metrics, "imgclf_batch_size_bucket", le="4.0", **series) == calls >= 3
