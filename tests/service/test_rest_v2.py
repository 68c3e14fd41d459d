"""KServe V2 / Open Inference Protocol REST routes (/v2/...) against the shared server."""

from __future__ import annotations

import base64
import io

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
    assert body["extensions"] == ["classification"]


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
        "parameters": {"labels": LABELS},
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
