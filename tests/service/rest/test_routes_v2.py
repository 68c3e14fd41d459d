"""KServe V2 / Open Inference Protocol REST routes (/v2/...) against the shared server."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

LABELS = ["paper", "rock", "scissors"]


@pytest.fixture(scope="module")
def images(sample_jpeg) -> list[str]:
    buf = io.BytesIO()
    Image.new("RGB", (100, 140), (40, 60, 220)).save(buf, format="PNG")
    return [base64.b64encode(sample_jpeg).decode(), base64.b64encode(buf.getvalue()).decode()]


def _infer_body(data: list[str], **extra) -> dict:
    return {"inputs": [{"name": "image_bytes", "shape": [len(data)], "datatype": "BYTES", "data": data}], **extra}


def _infer(serving, body: dict, path: str = "/v2/models/rps/infer") -> dict:
    r = httpx.post(f"{serving.rest_url}{path}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _outputs(reply: dict) -> dict[str, dict]:
    return {o["name"]: o for o in reply["outputs"]}


def test_server_metadata(serving):
    r = httpx.get(f"{serving.rest_url}/v2")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "imgclf" and isinstance(body["version"], str) and body["version"]
    assert body["extensions"] == ["classification", "binary_tensor_data", "model_repository", "statistics"]


def test_health(serving):
    live = httpx.get(f"{serving.rest_url}/v2/health/live")
    ready = httpx.get(f"{serving.rest_url}/v2/health/ready")
    assert (live.status_code, ready.status_code) == (200, 200)
    assert live.json() == {"live": True} and ready.json() == {"ready": True}


@pytest.mark.parametrize("path", ["/v2/models/rps", "/v2/models/rps/versions/1"])
def test_model_metadata(serving, path):
    r = httpx.get(f"{serving.rest_url}{path}")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "name": "rps", "versions": ["1"], "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]}],
        "parameters": {"labels": LABELS, "runtime": "tensorflow", "optional_outputs": [
            "path", "hand_box", "hand_landmarks", "hand_score", "handedness"]},
    }


def test_model_readiness(serving):
    for path in ["/v2/models/rps/ready", "/v2/models/rps/versions/1/ready"]:
        r = httpx.get(f"{serving.rest_url}{path}")
        assert r.status_code == 200 and r.json() == {"name": "rps", "ready": True}, path
    r = httpx.get(f"{serving.rest_url}/v2/models/rps/versions/5/ready")
    assert r.status_code == 404 and "5" in r.json()["error"]  # 4xx means "not ready" in V2
    r = httpx.get(f"{serving.rest_url}/v2/models/rps/versions/5")
    assert r.status_code == 404 and "5" in r.json()["error"]


def test_infer_two_images(serving, images):
    reply = _infer(serving, _infer_body(images, id="req-42"))
    assert reply["id"] == "req-42"
    assert reply["model_name"] == "rps" and reply["model_version"] == "1"
    out = _outputs(reply)
    assert set(out) == {"scores", "label"}
    assert out["scores"]["datatype"] == "FP32" and out["scores"]["shape"] == [2, 3]
    scores = np.array(out["scores"]["data"]).reshape(2, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-4)
    assert out["label"] == {"name": "label", "datatype": "BYTES", "shape": [2],
                            "data": [LABELS[i] for i in np.argmax(scores, axis=1)]}
    # each row is that image's own answer: order is kept
    for i, data in enumerate(images):
        alone = np.array(_outputs(_infer(serving, _infer_body([data])))["scores"]["data"])
        np.testing.assert_allclose(scores[i], alone, atol=1e-5)


def test_infer_without_id_has_no_id(serving, images):
    assert "id" not in _infer(serving, _infer_body(images[:1]))


def test_infer_pinned_version(serving, images):
    reply = _infer(serving, _infer_body(images[:1], id="v"), "/v2/models/rps/versions/1/infer")
    assert reply["model_version"] == "1" and reply["id"] == "v"


def test_nested_data_with_a_2d_shape(serving, images):
    body = {"inputs": [{"name": "image_bytes", "shape": [2, 1], "datatype": "BYTES",
                        "data": [[images[0]], [images[1]]]}]}
    assert _outputs(_infer(serving, body))["scores"]["shape"] == [2, 3]


def test_requested_output_subset(serving, images):
    reply = _infer(serving, _infer_body(images, outputs=[{"name": "label"}]))
    assert [o["name"] for o in reply["outputs"]] == ["label"]
    assert len(reply["outputs"][0]["data"]) == 2


def test_classification_extension(serving, images):
    full = np.array(_outputs(_infer(serving, _infer_body(images)))["scores"]["data"]).reshape(2, 3)
    body = _infer_body(images, outputs=[{"name": "scores", "parameters": {"classification": 2}}])
    (out,) = _infer(serving, body)["outputs"]
    assert out["name"] == "scores" and out["datatype"] == "BYTES" and out["shape"] == [2, 2]
    rows = [out["data"][0:2], out["data"][2:4]]
    for row, expected in zip(rows, full, strict=True):
        parsed = [entry.split(":") for entry in row]
        assert all(len(p) == 3 for p in parsed), row
        indices = [int(p[1]) for p in parsed]
        assert indices == list(np.argsort(-expected)[:2])  # best first
        for score, index, label in parsed:
            assert label == LABELS[int(index)]
            assert float(score) == pytest.approx(expected[int(index)], abs=1e-5)
    # k above the class count gives every class
    body = _infer_body(images[:1], outputs=[{"name": "scores", "parameters": {"classification": 10}}])
    (out,) = _infer(serving, body)["outputs"]
    assert out["shape"] == [1, 3] and len(out["data"]) == 3


def _binary_body(images_raw: list[bytes], **extra) -> tuple[bytes, dict]:
    from service.v2 import pack_bytes

    tail = pack_bytes(images_raw)
    head = json.dumps({"inputs": [{"name": "image_bytes", "shape": [len(images_raw)], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(tail)}}], **extra}).encode()
    return head + tail, {"Inference-Header-Content-Length": str(len(head)),
                         "Content-Type": "application/octet-stream"}


def test_binary_request_and_binary_outputs(serving, images):
    raw = [base64.b64decode(x) for x in images]
    json_scores = np.array(_outputs(_infer(serving, _infer_body(images)))["scores"]["data"]).reshape(2, 3)
    body, headers = _binary_body(raw, parameters={"binary_data_output": True},
                                 outputs=[{"name": "scores"}, {"name": "label", "parameters": {"binary_data": False}}])
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    scores_out, label_out = head["outputs"]
    assert scores_out["parameters"]["binary_data_size"] == 2 * 3 * 4 and "data" not in scores_out
    scores = np.frombuffer(r.content[n:], dtype="<f4").reshape(2, 3)
    np.testing.assert_allclose(scores, json_scores, atol=1e-6)
    assert label_out["data"] == [LABELS[i] for i in np.argmax(scores, axis=1)]


def test_binary_bytes_output_is_length_prefixed(serving, images):
    from service.v2 import unpack_bytes

    body, headers = _binary_body([base64.b64decode(images[0])],
                                 outputs=[{"name": "label", "parameters": {"binary_data": True}}])
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", content=body, headers=headers)
    n = int(r.headers["inference-header-content-length"])
    (label,) = unpack_bytes(r.content[n:], "reply")
    assert label.decode() in LABELS and json.loads(r.content[:n])["outputs"][0]["shape"] == [1]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda b, h: (b, {k: v for k, v in h.items() if k.startswith("Content")}), "Inference-Header-Content-Length"),
    (lambda b, h: (b[:-10], h), "binary_data_size"),
    (lambda b, h: (b + b"xx", h), "binary_data_size"),
    (lambda b, h: (b, {**h, "Inference-Header-Content-Length": "abc"}), "Inference-Header-Content-Length"),
    (lambda b, h: (b, {**h, "Inference-Header-Content-Length": str(len(b) + 5)}), "Inference-Header-Content-Length"),
])
def test_bad_binary_requests_are_400(serving, images, mutate, fragment):
    body, headers = mutate(*_binary_body([base64.b64decode(images[0])]))
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", content=body, headers=headers)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


def test_truncated_bytes_element_is_400(serving):
    head = json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": 8}}]}).encode()
    body = head + (100).to_bytes(4, "little") + b"abcd"
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", content=body,
                   headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "runs past the end" in r.json()["error"]


def test_statistics_and_repository_index(serving, images):
    _infer(serving, _infer_body(images[:1]))
    stats = httpx.get(f"{serving.rest_url}/v2/models/rps/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("rps", "1")]
    assert stats[0]["inference_count"] >= 1 and stats[0]["inference_stats"]["success"]["count"] >= 1
    assert httpx.get(f"{serving.rest_url}/v2/models/stats").json()["model_stats"][0]["name"] == "rps"
    index = httpx.post(f"{serving.rest_url}/v2/repository/index", json={"ready": True}).json()
    assert index == [{"name": "rps", "version": "1", "state": "READY", "reason": ""}]


def test_many_empty_bytes_elements_are_refused_early(serving):
    tail = b"\x00\x00\x00\x00" * 100_000
    head = json.dumps({"inputs": [{"name": "image_bytes", "shape": [100_000], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(tail)}}]}).encode()
    r = httpx.post(f"{serving.rest_url}/v2/models/rps/infer", content=head + tail,
                   headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 413 and "images per request" in r.json()["error"]
