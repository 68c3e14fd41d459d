"""The native REST API (/predict, /models, health, metrics, OpenAPI) and one answer on every protocol."""

from __future__ import annotations

import base64
import io

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc
from training import synthetic

LABELS = ["paper", "rock", "scissors"]


def _render(kind: str, seed: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    synthetic.render(kind, np.random.default_rng(seed), size=200).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def hands() -> list[bytes]:
    """Three different photos (two JPEGs and a PNG), so the model gives each its own scores."""
    return [_render("paper", 1), _render("scissors", 2, "PNG"), _render("rock", 3)]


def _scores(prediction: dict) -> np.ndarray:
    assert list(prediction["scores"]) == LABELS
    return np.array([prediction["scores"][k] for k in LABELS])


def _check_prediction(p: dict) -> None:
    assert set(p) == {"label", "confidence", "scores", "path", "hand"}
    s = _scores(p)
    assert np.all((s >= 0) & (s <= 1))
    assert s.sum() == pytest.approx(1, abs=1e-4)
    assert p["label"] == LABELS[int(np.argmax(s))]
    assert p["confidence"] == pytest.approx(s.max())


def _predict(url: str, images: list[bytes], **params) -> dict:
    files = [("file", (f"img{i}", data, "application/octet-stream")) for i, data in enumerate(images)]
    r = httpx.post(f"{url}/predict", files=files, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_single_multipart_image(serving, sample_jpeg):
    body = _predict(serving.rest_url, [sample_jpeg])
    assert set(body) == {"model_name", "model_version", "predictions"}
    assert body["model_name"] == "rps"
    assert body["model_version"] == 1
    assert len(body["predictions"]) == 1
    _check_prediction(body["predictions"][0])


def test_several_file_fields_keep_their_order(serving, hands):
    singles = [_scores(_predict(serving.rest_url, [h])["predictions"][0]) for h in hands]
    # the order check can only fail if the three images score differently
    assert not np.allclose(singles[0], singles[1]) and not np.allclose(singles[1], singles[2])
    for order in ([0, 1, 2], [2, 0, 1], [1, 1, 0]):
        preds = _predict(serving.rest_url, [hands[i] for i in order])["predictions"]
        assert len(preds) == len(order)
        for i, p in zip(order, preds, strict=True):
            _check_prediction(p)
            np.testing.assert_allclose(_scores(p), singles[i], atol=1e-5)


@pytest.mark.parametrize("ctype", ["image/jpeg", "application/octet-stream", "IMAGE/JPEG; charset=binary"])
def test_raw_image_body(serving, sample_jpeg, ctype):
    r = httpx.post(f"{serving.rest_url}/predict", content=sample_jpeg, headers={"content-type": ctype})
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    _check_prediction(pred)
    multipart = _predict(serving.rest_url, [sample_jpeg])["predictions"][0]
    np.testing.assert_allclose(_scores(pred), _scores(multipart), atol=1e-5)


def test_version_and_label_pins(serving, sample_jpeg):
    assert _predict(serving.rest_url, [sample_jpeg], version=1)["model_version"] == 1
    assert _predict(serving.rest_url, [sample_jpeg], label="stable")["model_version"] == 1


def test_same_scores_on_every_protocol(serving, sample_jpeg):
    url, b64 = serving.rest_url, base64.b64encode(sample_jpeg).decode()
    native = _scores(_predict(url, [sample_jpeg])["predictions"][0])

    r = httpx.post(f"{url}/v1/models/rps:predict", json={"instances": [{"b64": b64}]})
    assert r.status_code == 200, r.text
    tfs_rest = np.array(r.json()["predictions"][0]["scores"])

    r = httpx.post(f"{url}/v2/models/rps/infer", json={"inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64]}]})
    assert r.status_code == 200, r.text
    (scores_out,) = [o for o in r.json()["outputs"] if o["name"] == "scores"]
    v2 = np.array(scores_out["data"]).reshape(scores_out["shape"])[0]

    with grpc.insecure_channel(serving.grpc_target) as channel:
        reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(
            classifier_pb2.ClassifyRequest(images=[sample_jpeg]), timeout=30)
        assert list(reply.labels) == LABELS
        native_grpc = np.array(reply.predictions[0].scores)

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "rps"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([sample_jpeg], dtype=tf.string))
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30.0)
        tfs_grpc = tf.make_ndarray(result.outputs["scores"])[0]

    for name, other in [("tfserving-rest", tfs_rest), ("v2", v2), ("grpc", native_grpc),
                        ("tfserving-grpc", tfs_grpc)]:
        assert np.allclose(native, other, atol=1e-5), (name, native, other)


def test_models_lists_the_version_with_its_label(serving):
    r = httpx.get(f"{serving.rest_url}/models")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "rps" and body["ready"] is True and body["default_version"] == 1
    assert body["version_labels"] == {"stable": 1}
    (v1,) = body["versions"]
    assert v1["version"] == 1 and v1["state"] == "AVAILABLE" and v1["labels"] == LABELS
    assert v1["error"] is None and 0 <= v1["val_accuracy"] <= 1


def test_health_and_readiness(serving):
    r = httpx.get(f"{serving.rest_url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(f"{serving.rest_url}/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True, "versions": [1]}


def test_metrics_count_requests_and_batches(serving, sample_jpeg):
    _predict(serving.rest_url, [sample_jpeg, sample_jpeg])
    httpx.post(f"{serving.rest_url}/v1/models/rps:predict", json={"instances": []})  # a 400
    r = httpx.get(f"{serving.rest_url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}

    requests = {(s.labels["route"], s.labels["protocol"], s.labels["status"]): s.value
                for s in families["imgclf_requests"].samples if s.name == "imgclf_requests_total"}
    assert requests[("/predict", "rest", "200")] >= 1
    assert requests[("/v1/models/{tail:path}", "tfserving", "400")] >= 1

    batches = {s.labels["version"]: s.value for s in families["imgclf_batch_size"].samples
               if s.name == "imgclf_batch_size_count"}
    assert batches["1"] >= 1
    sizes = {float(s.labels["le"]): s.value for s in families["imgclf_batch_size"].samples
             if s.name == "imgclf_batch_size_bucket" and s.labels["version"] == "1"}
    assert sizes[float("inf")] > sizes[1.0]  # the two-image request made a batch of at least two


def test_openapi_documents_predict(serving):
    r = httpx.get(f"{serving.rest_url}/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    op = spec["paths"]["/predict"]["post"]
    content = op["requestBody"]["content"]
    multipart = content["multipart/form-data"]["schema"]
    assert multipart["required"] == ["file"]
    assert multipart["properties"]["file"]["items"]["format"] == "binary"
    assert content["image/*"]["schema"]["format"] == "binary"
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"version", "label", "model"} and all(p["in"] == "query" for p in params.values())
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/PredictResponse")
    for code in ("400", "404", "413", "503"):
        assert op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    schemas = spec["components"]["schemas"]
    assert set(schemas["PredictResponse"]["properties"]) == {"model_name", "model_version", "predictions"}
    assert set(schemas["PredictionOut"]["properties"]) == {"label", "confidence", "scores", "path", "hand"}

    docs = httpx.get(f"{serving.rest_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower() and "/docs/init.js" in docs.text


def test_grayscale_jpeg_and_gif_and_bmp(serving):
    img = Image.open(io.BytesIO(_render("rock", 9, "PNG")))
    for mode, fmt in [("L", "JPEG"), ("P", "GIF"), ("RGB", "BMP")]:
        buf = io.BytesIO()
        img.convert(mode).save(buf, format=fmt)
        _check_prediction(_predict(serving.rest_url, [buf.getvalue()])["predictions"][0])


@pytest.mark.parametrize("case", ["multipart", "raw", "wrong-type", "empty", "not-an-image", "no-closing-boundary"])
def test_fast_path_answers_as_the_route_does(serving, sample_jpeg, case):
    """`POST /predict` without a query string skips FastAPI's routing (PredictFastPath); with one
    (`?model=rps`, the same model) it goes through the route. Clients see the same answer either way."""
    boundary = "b0undary"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
                 "Content-Type: image/jpeg\r\n\r\n").encode() + sample_jpeg + f"\r\n--{boundary}--\r\n".encode()
    content, ctype = {
        "multipart": (multipart, f"multipart/form-data; boundary={boundary}"),
        "raw": (sample_jpeg, "image/jpeg"),
        "wrong-type": (sample_jpeg, "text/plain"),
        "empty": (b"", "image/png"),
        "not-an-image": (b"hello, not an image", "image/jpeg"),
        "no-closing-boundary": (multipart[:-len(f"--{boundary}--\r\n")], f"multipart/form-data; boundary={boundary}"),
    }[case]
    def counted(status: int) -> float:
        text = httpx.get(f"{serving.rest_url}/metrics").text
        return sum(s.value for f in text_string_to_metric_families(text) if f.name == "imgclf_requests"
                   for s in f.samples if s.name == "imgclf_requests_total"
                   and s.labels["route"] == "/predict" and s.labels["status"] == str(status))

    answers = []
    for query in ("", "?model=rps"):
        r = httpx.post(f"{serving.rest_url}/predict{query}", content=content,
                       headers={"Content-Type": ctype, "X-Request-ID": f"fast-{case}{query and '-route'}"})
        assert r.headers["x-request-id"] == f"fast-{case}{query and '-route'}"
        answers.append((r.status_code, r.headers["content-type"], r.json()))
    assert answers[0] == answers[1]
    status, _, body = answers[0]
    if case in ("multipart", "raw"):
        assert status == 200 and body["predictions"][0]["label"] in LABELS
    else:
        assert status == 400 and body["error"]
    before = counted(status)
    for query in ("", "?model=rps"):  # both count under the route's template (metrics, request logs)
        httpx.post(f"{serving.rest_url}/predict{query}", content=content, headers={"Content-Type": ctype})
    assert counted(status) == before + 2
