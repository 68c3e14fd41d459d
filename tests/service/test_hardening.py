"""Each attack that once hurt the server, replayed: the answer is a clear 4xx, never a 500 or a hang."""

from __future__ import annotations

import base64
import io
import select
import socket
import time

import grpc
import httpx
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.service.conftest import RunningServer, test_settings


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _status_counts(url: str) -> dict[str, float]:
    """imgclf_requests_total summed by status."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("imgclf_requests_total{"):
            status = line.split('status="')[1].split('"')[0]
            out[status] = out.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return out


def _png(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 120, 90)).save(buf, format="PNG")
    return buf.getvalue()


def test_json_integer_over_python_limit_is_400(serving):
    body = b'{"instances": [' + b"9" * 5000 + b"]}"
    r = httpx.post(f"{serving.rest_url}/v1/models/rps:predict", content=body)
    assert r.status_code == 400 and "JSON Parse error" in r.json()["error"]
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", content=b'{"inputs": [], "id": ' + b"9" * 5000 + b"}")
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("path,ctype", [
    ("/predict", "image/jpeg"), ("/predict", "multipart/form-data; boundary=xyz"),
    ("/v1/models/rps:predict", "application/json"), ("/v2/models/rps/infer", "application/json")])
def test_client_leaving_mid_body_is_499_not_500(serving, path, ctype, caplog):
    before = _status_counts(serving.rest_url)
    with _raw(serving.rest_url) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {ctype}\r\n"
                  "content-length: 100000\r\n\r\n".encode() + b"x" * 1000)
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while _status_counts(serving.rest_url).get("499", 0) <= before.get("499", 0):
        assert time.monotonic() < deadline, "the disconnect was never counted"
        time.sleep(0.05)
    after = _status_counts(serving.rest_url)
    assert after.get("500", 0) == before.get("500", 0)
    assert "Traceback" not in caplog.text


def test_header_over_the_limit_is_431_and_costs_nothing(serving):
    started = time.monotonic()
    with _raw(serving.rest_url) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
        reply = b""
        try:
            for _ in range(2048):  # up to 128 MB; the server closes long before
                s.sendall(b"a" * 65536)
        except OSError:
            pass
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except OSError:
            pass
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert time.monotonic() - started < 5
    assert httpx.get(f"{serving.rest_url}/healthz").elapsed.total_seconds() < 0.5


@pytest.fixture(scope="module")
def strict(trained_model_root) -> RunningServer:
    server = RunningServer(test_settings(trained_model_root, read_timeout_s=0.5,
                                         request_timeout_s=1.5)).start()
    yield server
    server.stop()


def _read_all(s: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except OSError:
        pass
    return out


def test_silent_and_slow_headers_are_dropped(strict):
    started = time.monotonic()
    with _raw(strict.rest_url) as s:  # connects, never sends a byte
        assert _read_all(s).startswith(b"HTTP/1.1 408")
    with _raw(strict.rest_url) as s:  # one header byte every 0.2 s: each gap is short, the head is not
        try:
            for c in b"GET /healthz HTTP/1.1\r\nhost: xxxxxxxxxxxxxxxxxx":
                s.send(bytes([c]))
                time.sleep(0.2)
            raise AssertionError("a slow head was never dropped")
        except OSError:
            pass
    assert time.monotonic() - started < 5


def test_stalled_body_is_408(strict):
    with _raw(strict.rest_url) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 5000\r\n\r\nab")
        started = time.monotonic()
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - started < 3


def test_deadline_counts_from_the_first_byte(strict):
    """A body that trickles in within each read timeout still hits the request deadline: 504."""
    body = _png()
    with _raw(strict.rest_url) as s:
        s.sendall(f"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                  f"content-length: {len(body)}\r\n\r\n".encode())
        started = time.monotonic()
        for i in range(0, len(body), 10):  # 0.3 s pauses: under the read timeout, over the deadline
            s.sendall(body[i:i + 10])
            if select.select([s], [], [], 0.3)[0]:
                break
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 504"), reply[:200]
    assert time.monotonic() - started < 3


def test_stalled_upload_does_not_hold_shutdown(trained_model_root):
    server = RunningServer(test_settings(trained_model_root, shutdown_grace_s=20, read_timeout_s=30)).start()
    s = _raw(server.rest_url)
    s.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 5000\r\n\r\nab")
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    s.close()
    assert time.monotonic() - started < 5, "shutdown waited for a client that was still uploading"


def test_tensor_shape_must_match_the_strings(serving, sample_jpeg):
    channel = grpc.insecure_channel(serving.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rps"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([sample_jpeg], dtype=tf.string))
    del request.inputs["image_bytes"].tensor_shape.dim[:]
    for size in (2, 2):
        request.inputs["image_bytes"].tensor_shape.dim.add(size=size)
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "[2, 2]" in err.value.details()
    channel.close()


def test_second_server_cannot_share_the_grpc_port(serving, trained_model_root):
    port = int(serving.grpc_target.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        RunningServer(test_settings(trained_model_root, grpc_port=port)).start()


def test_multipart_without_closing_boundary(serving, sample_jpeg):
    body = (b"--xyz\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            b"content-type: image/jpeg\r\n\r\n" + sample_jpeg)
    r = httpx.post(f"{serving.rest_url}/predict", content=body,
                   headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 400 and "closing boundary" in r.json()["error"], r.text
    r = httpx.post(f"{serving.rest_url}/predict", content=body, headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.json()["error"], r.text


def test_request_pixel_budget_is_413(serving):
    big = _png((4000, 4000))  # 16 M pixels each; 5 of them are over the 64 M request budget
    r = httpx.post(f"{serving.rest_url}/v1/models/rps:predict", timeout=60,
                   json={"instances": [{"b64": base64.b64encode(big).decode()}] * 5})
    assert r.status_code == 413 and "64,000,000" in r.json()["error"], r.text


def test_animated_gif_is_classified_from_its_first_frame(serving):
    frames = [Image.new("RGB", (300, 300), c) for c in ((250, 10, 10), (10, 250, 10), (10, 10, 250))]
    gif, still = io.BytesIO(), io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], optimize=False)
    frames[0].save(still, format="GIF")
    scores = []
    for data in (gif.getvalue(), still.getvalue()):
        r = httpx.post(f"{serving.rest_url}/predict", content=data, headers={"content-type": "image/gif"})
        assert r.status_code == 200, r.text
        scores.append(r.json()["predictions"][0]["scores"])
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)


class _SlowModel:
    """The real model, slowed down, remembering every image it was given."""

    def __init__(self, model: object, seen: list[bytes]) -> None:
        self._model = model
        self.info = model.info  # type: ignore[attr-defined]
        self.decoder = model.decoder  # type: ignore[attr-defined]  (TensorFlow's: None, it takes bytes)
        self.seen = seen

    def predict(self, images):
        time.sleep(0.4)
        self.seen.extend(images)
        return self._model.predict(images)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._model.close()  # type: ignore[attr-defined]


def _slow_backend(root):
    """The local backend whose versions are _SlowModels."""
    from service.backends.local import LocalBackend

    class SlowBackend(LocalBackend):
        def __init__(self, model_root) -> None:
            super().__init__(model_root)
            self.seen: list[bytes] = []

        def load(self, name, version):
            return _SlowModel(super().load(name, version), self.seen)

    return SlowBackend(root)


def test_client_gone_while_queued_never_reaches_the_model(trained_model_root, sample_jpeg, start_server):
    backend = _slow_backend(trained_model_root)
    server = start_server(trained_model_root, backend, warmup_requests=0, inference_threads=1)
    busy, gone = _png((64, 64)), _png((65, 65))
    before = _status_counts(server.rest_url)

    def post(image: bytes) -> bytes:
        return (f"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\nconnection: close\r\n"
                f"content-length: {len(image)}\r\n\r\n").encode() + image

    with _raw(server.rest_url) as first:
        first.sendall(post(busy))  # the model is busy with this one for 0.4 s
        time.sleep(0.1)
        with _raw(server.rest_url) as second:
            second.sendall(post(gone))  # queued behind it ...
            time.sleep(0.1)
        # ... and its client leaves before the model is free
        assert _read_all(first).startswith(b"HTTP/1.1 200")  # the busy one is answered
    deadline = time.monotonic() + 5
    while _status_counts(server.rest_url).get("499", 0) <= before.get("499", 0):
        assert time.monotonic() < deadline, _status_counts(server.rest_url)
        time.sleep(0.05)
    time.sleep(0.6)  # time for the model to have taken it, had it stayed queued
    assert busy in backend.seen and gone not in backend.seen
