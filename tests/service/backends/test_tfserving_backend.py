"""imgclf in front of TF Serving: a second imgclf server or a scriptable fake speaks its gRPC API."""

from __future__ import annotations

import base64
import io
import shutil
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from service.backends.base import ModelInfo
from service.backends.tfserving import RemoteModel, TFServingBackend
from service.errors import InvalidInputError, NotFoundError, UnavailableError
from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc
from service.settings import ServeSettings


def png(side: int, color: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buf, format="PNG")
    return buf.getvalue()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def predict(server: Any, *images: bytes, **params: Any) -> httpx.Response:
    files = [("file", (f"{i}.img", data)) for i, data in enumerate(images)]
    return httpx.post(f"{server.rest_url}/predict", files=files, params=params, timeout=30)


def classify(server: Any, *images: bytes, timeout: float = 30) -> classifier_pb2.ClassifyResponse:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = classifier_pb2_grpc.ImageClassifierStub(channel)
        return stub.Classify(classifier_pb2.ClassifyRequest(images=list(images)), timeout=timeout)


def ready(server: Any) -> bool:
    return httpx.get(f"{server.rest_url}/readyz", timeout=5).status_code == 200


def scores_of(body: dict[str, Any]) -> np.ndarray:
    return np.array([list(p["scores"].values()) for p in body["predictions"]])


def test_predictions_and_metadata_match_the_backend_server(serving, tfs_front_end, sample_jpeg):
    front = tfs_front_end(serving.grpc_target)
    images = (sample_jpeg, png(64, (200, 60, 60)))

    local, remote = predict(serving, *images), predict(front, *images)
    assert local.status_code == remote.status_code == 200, remote.text
    a, b = local.json(), remote.json()
    assert b["model_version"] == a["model_version"] == 1
    assert [p["label"] for p in b["predictions"]] == [p["label"] for p in a["predictions"]]
    assert [list(p["scores"]) for p in b["predictions"]] == [list(p["scores"]) for p in a["predictions"]]
    assert np.allclose(scores_of(b), scores_of(a), atol=1e-6)

    g_local, g_remote = classify(serving, *images), classify(front, *images)
    assert list(g_remote.labels) == list(g_local.labels) and g_remote.model_version == 1
    assert np.allclose([p.scores for p in g_remote.predictions], [p.scores for p in g_local.predictions],
                       atol=1e-6)
    assert np.allclose([p.scores for p in g_remote.predictions], scores_of(a), atol=1e-6)

    b64 = [{"b64": base64.b64encode(i).decode()} for i in images]
    v1 = httpx.post(f"{front.rest_url}/v1/models/rps:predict", json={"instances": b64}, timeout=30)
    assert v1.status_code == 200, v1.text
    assert np.allclose([p["scores"] for p in v1.json()["predictions"]], scores_of(a), atol=1e-6)
    v2 = httpx.post(f"{front.rest_url}/v2/models/rps/versions/1/infer", timeout=30, json={"inputs": [
        {"name": "image_bytes", "datatype": "BYTES", "shape": [2], "data": [x["b64"] for x in b64]}]})
    assert v2.status_code == 200, v2.text
    scores = next(o for o in v2.json()["outputs"] if o["name"] == "scores")
    assert np.allclose(np.reshape(scores["data"], scores["shape"]), scores_of(a), atol=1e-6)

    meta = [httpx.get(f"{s.rest_url}/v1/models/rps/metadata", timeout=10).json() for s in (serving, front)]
    sigs = meta[1]["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_pixels", "labels"} <= set(sigs)
    assert sigs == meta[0]["metadata"]["signature_def"]["signature_def"]
    status = httpx.get(f"{front.rest_url}/v1/models/rps", timeout=10).json()
    assert status["model_version_status"][0]["version"] == "1"
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    models = httpx.get(f"{front.rest_url}/models", timeout=10).json()
    assert models["versions"][0]["labels"] == list(g_local.labels)


def test_unknown_versions_are_not_found(serving, tfs_front_end, sample_jpeg):
    front = tfs_front_end(serving.grpc_target)
    assert predict(front, sample_jpeg, version=99).status_code == 404
    assert httpx.post(f"{front.rest_url}/v1/models/rps/versions/99:predict", timeout=10,
                      json={"instances": [{"b64": base64.b64encode(sample_jpeg).decode()}]}).status_code == 404

    # the backend's own mapping, straight against the backend server
    backend = TFServingBackend(ServeSettings(tfserving_target=serving.grpc_target, tfserving_timeout_s=5))
    try:
        assert backend.discover("no-such-model") == {}
        assert set(backend.discover("rps")) == {1}
        with pytest.raises(NotFoundError):
            backend.load("rps", 99)
        model = backend.load("rps", 1)
        assert model.info.labels == tuple(classify(serving, sample_jpeg).labels)
        with pytest.raises(UnavailableError, match="no longer serves version 99"):  # lost since it loaded
            RemoteModel(backend, ModelInfo("rps", 99, model.info.labels)).predict([sample_jpeg])
        with pytest.raises(InvalidInputError):
            model.predict([b"these bytes are no image"])
        model.close()  # a version's close leaves the shared channel open
        assert model.predict([sample_jpeg]).shape == (1, len(model.info.labels))
    finally:
        backend.close()


def test_backend_down_then_back_on_the_same_port(start_server, tfs_front_end, trained_model_root, sample_jpeg):
    tfs = start_server(trained_model_root, poll_interval_s=0.3)
    front = tfs_front_end(tfs.grpc_target, tfserving_timeout_s=1.0, tfserving_retries=2)
    assert predict(front, sample_jpeg).status_code == 200
    port = tfs.server.grpc_port

    tfs.stop()
    started = time.monotonic()
    r = predict(front, sample_jpeg)
    # at worst: 3 attempts, each within the 1 s deadline, and 0.1 + 0.2 s of backoff
    assert time.monotonic() - started < 3 * 1.0 + 0.3 + 1.0
    assert r.status_code == 503
    message = r.json()["error"]
    assert f"TF Serving at 127.0.0.1:{port} is unavailable" in message or "no version loaded" in message
    with pytest.raises(grpc.RpcError) as err:
        classify(front, sample_jpeg)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    wait_until(lambda: not ready(front), 10, "readiness to follow TF Serving down")
    assert httpx.get(f"{front.rest_url}/healthz", timeout=5).status_code == 200  # alive throughout

    start_server(trained_model_root, poll_interval_s=0.3, grpc_port=port)
    wait_until(lambda: ready(front), 30, "the front end to recover")
    r = predict(front, sample_jpeg)
    assert r.status_code == 200 and r.json()["model_version"] == 1
    assert classify(front, sample_jpeg).model_version == 1


def test_slow_predict_gives_deadline_and_the_front_end_stays_healthy(fake_tfserving, tfs_front_end, sample_jpeg):
    fake = fake_tfserving()
    front = tfs_front_end(fake.target, tfserving_timeout_s=0.5)
    fake.delay_s = 1.5
    calls = fake.calls
    started = time.monotonic()
    r = predict(front, sample_jpeg)
    assert r.status_code == 504, r.text
    assert "did not answer Predict within 0.5 s" in r.json()["error"]
    assert time.monotonic() - started < 1.4  # one attempt: a deadline is not retried
    assert fake.calls == calls + 1
    with pytest.raises(grpc.RpcError) as err:
        classify(front, sample_jpeg)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    fake.delay_s = 0
    assert ready(front)
    r = predict(front, sample_jpeg)
    assert r.status_code == 200
    assert np.allclose(scores_of(r.json()), [fake.scores])


def test_unavailable_is_retried_with_backoff(fake_tfserving, tfs_front_end, sample_jpeg):
    fake = fake_tfserving()
    front = tfs_front_end(fake.target, tfserving_retries=3)

    calls, fake.fail_next = fake.calls, 2
    started = time.monotonic()
    r = predict(front, sample_jpeg)
    assert r.status_code == 200, r.text
    assert fake.calls - calls == 3  # two failures, then the answer
    assert time.monotonic() - started >= 0.1 + 0.2  # the backoff between the attempts

    calls, fake.fail_next = fake.calls, 10
    r = predict(front, sample_jpeg)
    assert r.status_code == 503
    assert f"TF Serving at {fake.target} is unavailable (Predict failed after 4 attempts)" in r.json()["error"]
    assert fake.calls - calls == 4  # the call and its 3 retries, no more
    fake.fail_next = 0
    assert predict(front, sample_jpeg).status_code == 200

    # retries stop at the request timeout: after 0.1 + 0.2 s of backoff, 0.4 s more would pass 0.5 s
    backend = TFServingBackend(ServeSettings(tfserving_target=fake.target, tfserving_retries=10,
                                             request_timeout_s=0.5))
    try:
        model = backend.load("rps", 1)
        calls, fake.fail_next = fake.calls, 100
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="Predict failed after 3 attempts"):
            model.predict([sample_jpeg])
        assert time.monotonic() - started < 0.5
        assert fake.calls - calls == 3
    finally:
        backend.close()


def test_tf_serving_errors_map_to_statuses(fake_tfserving, tfs_front_end, sample_jpeg):
    fake = fake_tfserving()
    front = tfs_front_end(fake.target)
    # NOT_FOUND: TF Serving lost a version it listed as available, which the client cannot help: 503
    for code, status in [(grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.NOT_FOUND, 503),
                         (grpc.StatusCode.RESOURCE_EXHAUSTED, 429), (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
                         (grpc.StatusCode.INTERNAL, 500), (grpc.StatusCode.UNIMPLEMENTED, 500)]:
        fake.abort_code, calls = code, fake.calls
        r = predict(front, sample_jpeg)
        assert (r.status_code, fake.calls - calls) == (status, 1), (code, r.text)
        if status == 503:
            assert r.headers["retry-after"] == "1" and "no longer serves version 1" in r.json()["error"]
    fake.abort_code = None
    assert ready(front) and predict(front, sample_jpeg).status_code == 200


def test_a_version_lost_during_its_warm_up_is_loaded_again_later(fake_tfserving, sample_jpeg):
    """TF Serving answers NOT_FOUND for a version it listed: 503 for the caller, and, before the version
    ever answered (the registry's warm-up), a new fingerprint so the next poll loads it again, as a
    failed load gets."""
    fake = fake_tfserving()
    backend = TFServingBackend(ServeSettings(tfserving_target=fake.target))
    try:
        before = backend.discover("rps")[1]
        model = backend.load("rps", 1)
        fake.abort_code = grpc.StatusCode.NOT_FOUND
        with pytest.raises(UnavailableError, match="no longer serves version 1"):
            model.predict([sample_jpeg])
        assert backend.discover("rps")[1] != before
        fake.abort_code = None
        assert model.predict([sample_jpeg]).shape[0] == 1
    finally:
        backend.close()


def test_a_bad_image_fails_alone_in_a_shared_batch(fake_tfserving, tfs_front_end, sample_jpeg):
    fake = fake_tfserving()
    front = tfs_front_end(fake.target, inference_threads=1, max_batch_delay_ms=0)
    batcher = front.core.registry.resolve().batcher
    calls = fake.calls
    results: dict[str, int] = {}

    def send(key: str, image: bytes) -> None:
        results[key] = predict(front, image).status_code

    # a slow first call holds the only inference thread, so the next two requests queue up
    # and then go to TF Serving together
    fake.delay_s = 1.0
    threads = [threading.Thread(target=send, args=("first", sample_jpeg))]
    threads[0].start()
    wait_until(lambda: fake.calls > calls, 10, "the first call to reach TF Serving")
    threads += [threading.Thread(target=send, args=a) for a in (("good", sample_jpeg), ("bad", png(fake.bad_side)))]
    for t in threads[1:]:
        t.start()
    wait_until(lambda: batcher.queued_images == 2, 10, "two requests queued behind the first")
    fake.delay_s = 0
    for t in threads:
        t.join(30)
    assert results == {"first": 200, "good": 200, "bad": 400}
    assert fake.batches[calls:] == [1, 2, 1, 1]  # the shared call failed, then each went alone


def test_front_end_starts_before_tf_serving_and_retries_a_failed_load(fake_tfserving, tfs_front_end, sample_jpeg):
    with socket.socket() as s:  # a port with nothing listening yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    front = tfs_front_end(f"127.0.0.1:{port}", tfserving_retries=1)
    assert not ready(front)
    assert predict(front, sample_jpeg).status_code == 503

    fake = fake_tfserving(port)
    fake.fail_metadata = 10  # the first load attempts find TF Serving flaky
    models = wait_until(lambda: [v for v in httpx.get(f"{front.rest_url}/models").json()["versions"]
                                 if v["error"]], 10, "a failed load")
    assert "unavailable" in models[0]["error"]
    fake.fail_metadata = 0
    wait_until(lambda: ready(front), 10, "the version to load on a later poll")
    assert np.allclose(scores_of(predict(front, sample_jpeg).json()), [fake.scores])


def test_a_new_version_on_tf_serving_shows_up(start_server, tfs_front_end, trained_model_root, tmp_path, sample_jpeg):
    base = tmp_path / "tfs" / "rps"
    shutil.copytree(trained_model_root / "rps" / "1", base / "1")
    tfs = start_server(base.parent, poll_interval_s=0.3)
    front = tfs_front_end(tfs.grpc_target)
    assert predict(front, sample_jpeg).json()["model_version"] == 1

    shutil.copytree(base / "1", base / ".tmp-2")  # published whole, as training/export.py does
    (base / ".tmp-2").rename(base / "2")
    wait_until(lambda: httpx.get(f"{front.rest_url}/readyz").json()["versions"] == [2], 60,
               "version 2 to replace version 1 through the front end")
    r = predict(front, sample_jpeg)
    assert r.status_code == 200 and r.json()["model_version"] == 2
    status = httpx.get(f"{front.rest_url}/v1/models/rps/versions/2", timeout=10).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
