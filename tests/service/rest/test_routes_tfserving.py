"""TensorFlow Serving's REST API (/v1/models/...): request formats, routes and replies shaped as TF Serving's."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import requests
from PIL import Image

LABELS = ["paper", "rock", "scissors"]


@pytest.fixture(scope="module")
def b64(sample_jpeg) -> str:
    return base64.b64encode(sample_jpeg).decode()


@pytest.fixture(scope="module")
def other_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (120, 90), (30, 200, 60)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _post(serving, path: str, body: dict) -> dict:
    r = httpx.post(f"{serving.rest_url}{path}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _check_row(pred: dict) -> np.ndarray:
    assert set(pred) == {"scores", "label"}
    scores = np.array(pred["scores"])
    assert scores.shape == (3,) and scores.sum() == pytest.approx(1, abs=1e-4)
    assert pred["label"] == LABELS[int(np.argmax(scores))]
    return scores


def test_row_format_b64(serving, b64):
    reply = _post(serving, "/v1/models/rps:predict", {"instances": [{"b64": b64}]})
    assert set(reply) == {"predictions"}
    (pred,) = reply["predictions"]
    _check_row(pred)


def test_row_format_named_input_and_signature(serving, b64):
    plain = _check_row(_post(serving, "/v1/models/rps:predict", {"instances": [{"b64": b64}]})["predictions"][0])
    body = {"signature_name": "serving_default", "instances": [{"image_bytes": {"b64": b64}}]}
    named = _check_row(_post(serving, "/v1/models/rps:predict", body)["predictions"][0])
    np.testing.assert_allclose(named, plain, atol=1e-5)


def test_web_safe_base64_is_accepted(serving, sample_jpeg, b64):
    safe = base64.urlsafe_b64encode(sample_jpeg).decode().rstrip("=")
    assert safe != b64.rstrip("=")  # the test needs a '-' or '_' to mean anything
    a = _post(serving, "/v1/models/rps:predict", {"instances": [{"b64": safe}]})["predictions"][0]
    b = _post(serving, "/v1/models/rps:predict", {"instances": [{"b64": b64}]})["predictions"][0]
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)


def test_several_instances_keep_their_order(serving, b64, other_b64):
    one = _post(serving, "/v1/models/rps:predict", {"instances": [{"b64": b64}]})["predictions"][0]
    two = _post(serving, "/v1/models/rps:predict", {"instances": [{"b64": other_b64}]})["predictions"][0]
    assert not np.allclose(one["scores"], two["scores"])
    preds = _post(serving, "/v1/models/rps:predict",
                  {"instances": [{"b64": other_b64}, {"b64": b64}, {"b64": other_b64}]})["predictions"]
    for got, want in zip(preds, [two, one, two], strict=True):
        np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-5)
        assert got["label"] == want["label"]


def test_columnar_format(serving, b64, other_b64):
    reply = _post(serving, "/v1/models/rps:predict", {"inputs": {"image_bytes": [{"b64": b64}, {"b64": other_b64}]}})
    assert set(reply) == {"outputs"}
    out = reply["outputs"]
    assert set(out) == {"scores", "label"}
    scores = np.array(out["scores"])
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-4)
    assert out["label"] == [LABELS[i] for i in np.argmax(scores, axis=1)]
    # the single-input shorthand: a list without the input name
    short = _post(serving, "/v1/models/rps:predict", {"inputs": [{"b64": b64}, {"b64": other_b64}]})
    np.testing.assert_allclose(short["outputs"]["scores"], scores, atol=1e-5)


@pytest.mark.parametrize("path", ["/v1/models/rps/versions/1:predict", "/v1/models/rps/labels/stable:predict",
                                  "/v1/models/rps:PREDICT", "/v1/models/rps/VERSIONS/1:Predict",
                                  "/v1/models/rps/Labels/stable:predict"])
def test_version_label_and_case_insensitive_routes(serving, b64, path):
    (pred,) = _post(serving, path, {"instances": [{"b64": b64}]})["predictions"]
    _check_row(pred)


def test_client_as_in_tf_serving_docs(serving, sample_jpeg):
    """The REST half of TF Serving's resnet_client.py, unchanged but for the URL."""
    server_url = f"{serving.rest_url}/v1/models/rps:predict"
    jpeg_bytes = base64.b64encode(sample_jpeg).decode("utf-8")
    predict_request = '{"instances" : [{"b64": "%s"}]}' % jpeg_bytes  # noqa: UP031  # as in the example
    response = requests.post(server_url, data=predict_request, timeout=30)
    response.raise_for_status()
    prediction = response.json()["predictions"][0]
    assert prediction["label"] == LABELS[int(np.argmax(prediction["scores"]))]


def _status(serving, path: str) -> dict:
    r = httpx.get(f"{serving.rest_url}{path}")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("path", ["/v1/models/rps", "/v1/models/rps/versions/1", "/v1/models/rps/labels/stable"])
def test_model_status(serving, path):
    assert _status(serving, path) == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_model_status_of_unknown_version(serving):
    r = httpx.get(f"{serving.rest_url}/v1/models/rps/versions/7")
    assert r.status_code == 404 and "7" in r.json()["error"]


@pytest.mark.parametrize("path", ["/v1/models/rps/metadata", "/v1/models/rps/versions/1/metadata",
                                  "/v1/models/rps/labels/stable/metadata"])
def test_metadata_shaped_as_tf_serving(serving, path):
    meta = _status(serving, path)
    assert set(meta) == {"model_spec", "metadata"}
    assert meta["model_spec"] == {"name": "rps", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert "serving_default" in sigs and "serving_pixels" in sigs
    assert not any(k.startswith("__") for k in sigs)
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    image = default["inputs"]["image_bytes"]
    assert image["dtype"] == "DT_STRING"
    assert image["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert image["tensor_shape"]["unknown_rank"] is False
    assert image["name"].startswith("serving_default_image_bytes")
    assert default["outputs"]["scores"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in default["outputs"]["scores"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert default["outputs"]["label"]["dtype"] == "DT_STRING"
    pixels = sigs["serving_pixels"]["inputs"]["pixels"]
    assert pixels["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in pixels["tensor_shape"]["dim"]] == ["-1", "150", "150", "3"]


def test_unmatched_paths_are_404(serving):
    for path in ["/v1/models", "/v1/models/rps/versions/1/metadata/extra", "/v1/models/rps/versions/"]:
        r = httpx.get(f"{serving.rest_url}{path}", follow_redirects=True)
        assert r.status_code == 404 and "error" in r.json(), (path, r.text)
    r = httpx.post(f"{serving.rest_url}/v1/models/rps:explain", json={"instances": []})
    assert r.status_code == 404 and "error" in r.json()


def test_model_status_is_exactly_tf_servings_message(serving):
    """GET /v1/models/{name} is the JSON mapping of GetModelStatusResponse, parsed as strictly as TF Serving's
    clients do (protobuf's json_format rejects unknown fields): why it carries no KServe V1 `ready` field."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_status_pb2

    for path in ("/v1/models/rps", "/v1/models/rps/versions/1", "/v1/models/rps/labels/stable"):
        r = httpx.get(f"{serving.rest_url}{path}")
        assert r.status_code == 200, r.text
        status = json_format.Parse(r.text, get_model_status_pb2.GetModelStatusResponse())
        assert status.model_version_status[0].version == 1
        assert status.model_version_status[0].state == status.model_version_status[0].AVAILABLE
    with pytest.raises(json_format.ParseError, match="ready"):
        json_format.Parse('{"model_version_status": [], "ready": true}', get_model_status_pb2.GetModelStatusResponse())
