"""Early admission: a full queue answers 429 from the request head, before the body is read."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import httpx

KEY = "admission-test-key-0123456789"


def _fill_queue(url: str, image: bytes) -> threading.Thread:
    """One request that sits in the queue (the queue holds one image) while the model is held."""
    thread = threading.Thread(target=lambda: httpx.post(f"{url}/predict", content=image,
                                                        headers={"content-type": "image/jpeg"}, timeout=30))
    thread.start()
    return thread


def _hold_model(server, name: str = "rps"):
    """Take the batcher's only inference slot (inference_threads=1): requests stay queued until released."""
    batcher = next(v.batcher for v in server.core.registry_for(name).versions.values() if v.batcher)
    server.call(batcher._slots.acquire())
    return lambda: server.loop.call_soon_threadsafe(batcher._slots.release)


def _wait_queued(server, name: str = "rps") -> None:
    registry = server.core.registry_for(name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(v.batcher and v.batcher.queued_images for v in registry.versions.values()):
            return
        time.sleep(0.01)
    raise AssertionError("the first request never reached the queue")


def _head_only(port: int, path: str, length: int) -> bytes:
    """Send a POST's head and no body; return whatever the server answers within 5 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_full_queue_refuses_from_the_head_on_every_protocol(trained_model_root: Path, start_server, sample_jpeg):
    server = start_server(trained_model_root, max_queue_size=1, inference_threads=1)
    image = sample_jpeg
    release = _hold_model(server)
    first = _fill_queue(server.rest_url, image)
    try:
        _check_refusals(server)
    finally:
        release()
    first.join(30)
    metrics = httpx.get(f"{server.rest_url}/metrics").text
    assert 'imgclf_requests_total{protocol="rest",route="/predict",status="429"} 2.0' in metrics, \
        [line for line in metrics.splitlines() if "429" in line]
    # the six refusals, each timed from its first byte in the server
    assert "imgclf_refused_seconds_count 6.0" in metrics, [x for x in metrics.splitlines() if "refused" in x]


def _check_refusals(server) -> None:
    _wait_queued(server)
    for path in ("/predict", "/predict?model=rps&version=1", "/v1/models/rps:predict",
                 "/v1/models/rps/versions/1:classify", "/v2/models/rps/infer", "/v2/models/rps/versions/1/infer"):
        answer = _head_only(server.server.rest_port, path, 10_000)  # the body never comes
        head = answer.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 429"), (path, answer[:200])
        assert b"retry-after: 1" in head and b"x-request-id:" in head, (path, head)
        assert b"queued" in answer, answer


def test_what_the_head_cannot_decide_takes_the_normal_path(trained_model_root: Path, start_server, sample_jpeg):
    server = start_server(trained_model_root, max_queue_size=1, inference_threads=1, api_keys=KEY)
    image = sample_jpeg
    release = _hold_model(server)
    first = threading.Thread(target=lambda: httpx.post(
        f"{server.rest_url}/predict", content=image, timeout=30,
        headers={"content-type": "image/jpeg", "x-api-key": KEY}))
    first.start()
    try:
        _check_normal_path(server, image)
    finally:
        release()
    first.join(30)
    # and once the queue has room, the same request is answered
    assert httpx.post(f"{server.rest_url}/predict", content=image, timeout=30,
                      headers={"x-api-key": KEY, "content-type": "image/jpeg"}).status_code == 200


def _check_normal_path(server, image: bytes) -> None:
    _wait_queued(server)
    client = httpx.Client(base_url=server.rest_url, timeout=30)
    # no key: 401, not a hint about the load; unknown model or version: 404 as always
    assert client.post("/predict", content=image).status_code == 401
    keyed = {"x-api-key": KEY, "content-type": "image/jpeg"}
    body = {"instances": [{"b64": base64.b64encode(image).decode()}]}
    assert client.post("/v1/models/nope:predict", json=body, headers={"x-api-key": KEY}).status_code == 404
    assert client.post("/predict?version=9", content=image, headers=keyed).status_code == 404
    refused = client.post("/predict", content=image, headers=keyed)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"


def test_as_many_connections_as_places_are_never_refused(trained_model_root: Path, start_server, sample_jpeg):
    """A place is free again before the answer's last bytes leave, so a client that sends its next
    request the moment it has an answer is never refused while it holds no more requests than the limit."""
    server = start_server(trained_model_root, max_queue_size=2, inference_threads=1)
    request = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
               f"Content-Length: {len(sample_jpeg)}\r\n\r\n").encode() + sample_jpeg
    statuses: list[bytes] = []

    def client() -> None:
        with socket.create_connection(("127.0.0.1", server.server.rest_port), timeout=30) as sock:
            for _ in range(60):
                sock.sendall(request)
                answer = b""
                while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
                    chunk = sock.recv(65536)
                    assert chunk, "the server closed the connection"
                    answer += chunk
                statuses.append(answer.split(b" ", 2)[1])

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(statuses) == 120 and set(statuses) == {b"200"}, sorted(set(statuses))



# Every POST operation the REST app documents, and whether it classifies (so admission must count
# it from its head) or not. A new operation fails this test until it is put in one of the two, and a
# classify path must then be matched in service/rest/admission.py. Example paths are concrete.
_CLASSIFY = {"/predict": "/predict", "/v1/models/{name}:predict": "/v1/models/rps:predict",
             "/v1/models/{name}/versions/{version}:predict": "/v1/models/rps/versions/1:predict",
             "/v1/models/{name}/labels/{label}:predict": "/v1/models/rps/labels/stable:predict",
             "/v2/models/{model}/infer": "/v2/models/rps/infer",
             "/v2/models/{model}/versions/{ver}/infer": "/v2/models/rps/versions/1/infer",
             "(undocumented :classify)": "/v1/models/rps/versions/1:classify"}
_NOT_CLASSIFY = {"/v2/repository/index": "/v2/repository/index",
                 "/v1/models/{name}/examples": "/v1/models/rps/examples",
                 "/v1/models/{name}/finetunes": "/v1/models/rps/finetunes",
                 "/v1/models/{name}/finetunes/{job_id}/cancel": "/v1/models/rps/finetunes/abc/cancel",
                 "/v1/models/{name}/rollback": "/v1/models/rps/rollback"}


def test_every_classify_route_is_admitted_from_its_head(serving):
    from service.auth import KeyChecker
    from service.rest.admission import EarlyAdmission

    assert serving.server.app is not None
    posts = {path for path, ops in serving.server.app.openapi()["paths"].items() if "post" in ops}
    assert posts <= set(_CLASSIFY) | set(_NOT_CLASSIFY), f"new POST operations, decide above: {posts}"
    assert {k for k in _CLASSIFY if k.startswith("/")} <= posts  # and the list is not stale
    admission = EarlyAdmission(serving.server.app, serving.core, KeyChecker(serving.settings))

    def admit(path: str):
        return admission.admit({"type": "http", "method": "POST", "path": path, "query_string": b"",
                                "headers": []})

    for template, path in _CLASSIFY.items():
        release = admit(path)
        assert callable(release), (template, path)  # a place in the version's queue ...
        release()  # ... given back at once
    for template, path in _NOT_CLASSIFY.items():
        assert admit(path) is None, (template, path)
