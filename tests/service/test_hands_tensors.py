"""The hand as named outputs of the tensor protocols, over real servers and clients: KServe V2 (REST, binary
REST, gRPC, tritonclient) and TF Serving's gRPC Predict (output_filter). Extra outputs only when asked for
by name; the default outputs, TF Serving's REST answers and the metadata's outputs stay as they were."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.grpc._generated.inference import grpc_predict_v2_pb2 as v2pb
from service.grpc._generated.inference import grpc_predict_v2_pb2_grpc as v2pb_grpc
from service.v2 import pack_bytes, unpack_bytes
from tests.service.conftest import SAMPLES, rest_predictions, stage_runs

HAND_OUTPUTS = ["path", "hand_box", "hand_landmarks", "hand_score", "handedness"]
SCRIPT = Path(__file__).with_name("standard_clients.py")


@pytest.fixture(scope="module")
def expected(hand_serving, samples) -> list[dict[str, Any]]:
    """/predict's answers for the rock sample and the portrait: what every protocol must carry."""
    rock, portrait = rest_predictions(hand_serving, [samples["rock"], samples["no-hand"]])
    assert rock["path"] == "pose" and rock["hand"] is not None and portrait["hand"] is None
    return [rock, portrait]


@pytest.fixture(scope="module")
def channel(hand_serving) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(hand_serving.grpc_target) as ch:
        yield ch


def check_tensors(got: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    """Hand outputs (name -> numpy array or list of str) for [rock, portrait] against /predict's answers."""
    hand = expected[0]["hand"]
    assert list(got["path"]) == ["pose", "cnn"]
    assert list(got["handedness"]) == [hand["handedness"], ""]
    np.testing.assert_allclose(got["hand_box"], [hand["box"], [0, 0, 0, 0]], atol=0.006)
    np.testing.assert_allclose(got["hand_landmarks"], [hand["landmarks"], np.zeros((21, 3))], atol=0.006)
    np.testing.assert_allclose(got["hand_score"], [hand["score"], 0], atol=6e-5)


def v2_body(images: list[bytes], outputs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": "image_bytes", "shape": [len(images)], "datatype": "BYTES",
                                        "data": [base64.b64encode(x).decode() for x in images]}], **extra}
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


def v2_infer(server: Any, body: dict[str, Any], status: int = 200) -> httpx.Response:
    r = httpx.post(f"{server.rest_url}/v2/models/rps/infer", json=body, timeout=60)
    assert r.status_code == status, r.text
    return r


SHAPES = {"path": [2], "hand_box": [2, 4], "hand_landmarks": [2, 21, 3], "hand_score": [2], "handedness": [2]}


def test_v2_rest_default_outputs_are_unchanged(hand_serving, samples):
    reply = v2_infer(hand_serving, v2_body([samples["rock"], samples["no-hand"]])).json()
    assert [(o["name"], o["datatype"], o["shape"]) for o in reply["outputs"]] == [
        ("scores", "FP32", [2, 4]), ("label", "BYTES", [2])]
    assert reply["outputs"][1]["data"] == ["rock", "none"]


def test_v2_rest_hand_outputs_by_name(hand_serving, samples, expected):
    reply = v2_infer(hand_serving, v2_body([samples["rock"], samples["no-hand"]], ["label", *HAND_OUTPUTS])).json()
    out = {o["name"]: o for o in reply["outputs"]}
    assert list(out) == ["label", *HAND_OUTPUTS]
    assert {name: (o["datatype"], o["shape"]) for name, o in out.items() if name != "label"} == {
        name: ("BYTES" if name in ("path", "handedness") else "FP32", shape) for name, shape in SHAPES.items()}
    check_tensors({name: np.array(o["data"]).reshape(o["shape"]) if o["datatype"] == "FP32" else o["data"]
                   for name, o in out.items()}, expected)


def test_v2_rest_binary_hand_outputs(hand_serving, samples, expected):
    body = v2_body([samples["rock"], samples["no-hand"]], HAND_OUTPUTS, parameters={"binary_data_output": True})
    r = v2_infer(hand_serving, body)
    head_length = int(r.headers["Inference-Header-Content-Length"])
    head, tail = json.loads(r.content[:head_length]), r.content[head_length:]
    got, offset = {}, 0
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        raw = tail[offset:offset + size]
        offset += size
        got[o["name"]] = (np.frombuffer(raw, "<f4").reshape(o["shape"]) if o["datatype"] == "FP32"
                          else [x.decode() for x in unpack_bytes(raw, o["name"])])
    assert offset == len(tail)
    check_tensors(got, expected)


def test_v2_rest_refuses_what_it_cannot_give(hand_serving, samples):
    r = v2_infer(hand_serving, v2_body([samples["rock"]], ["hand_pose"]), 400)
    assert "hand_landmarks" in r.json()["error"]  # the message lists the outputs there are
    body = v2_body([samples["rock"]])
    body["outputs"] = [{"name": "hand_score", "parameters": {"classification": 2}}]
    assert "classification" in v2_infer(hand_serving, body, 400).json()["error"]


def test_v2_metadata_lists_the_hand_outputs_as_optional(hand_serving, channel):
    meta = httpx.get(f"{hand_serving.rest_url}/v2/models/rps").json()
    assert [o["name"] for o in meta["outputs"]] == ["scores", "label"]
    assert meta["parameters"]["optional_outputs"] == HAND_OUTPUTS
    grpc_meta = v2pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(v2pb.ModelMetadataRequest(name="rps"))
    assert [o.name for o in grpc_meta.outputs] == ["scores", "label"]


def v2_grpc_request(images: list[bytes], outputs: list[str]) -> v2pb.ModelInferRequest:
    request = v2pb.ModelInferRequest(model_name="rps")
    request.inputs.add(name="image_bytes", datatype="BYTES", shape=[len(images)])
    request.raw_input_contents.append(pack_bytes(images))
    for name in outputs:
        request.outputs.add(name=name)
    return request


def test_v2_grpc_hand_outputs_by_name(channel, samples, expected):
    stub = v2pb_grpc.GRPCInferenceServiceStub(channel)
    images = [samples["rock"], samples["no-hand"]]
    assert [o.name for o in stub.ModelInfer(v2_grpc_request(images, [])).outputs] == ["scores", "label"]
    response = stub.ModelInfer(v2_grpc_request(images, HAND_OUTPUTS))
    got = {}
    for o, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        assert list(o.shape) == SHAPES[o.name]
        got[o.name] = (np.frombuffer(raw, "<f4").reshape(list(o.shape)) if o.datatype == "FP32"
                       else [x.decode() for x in unpack_bytes(raw, o.name)])
    assert list(got) == HAND_OUTPUTS
    check_tensors(got, expected)


def test_tfserving_grpc_output_filter(channel, samples, expected):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rps"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([samples["rock"], samples["no-hand"]]))
    assert set(stub.Predict(request, timeout=60).outputs) == {"scores", "label"}
    request.output_filter.extend(["label", *HAND_OUTPUTS])
    response = stub.Predict(request, timeout=60)
    assert set(response.outputs) == {"label", *HAND_OUTPUTS}
    dtypes = {name: response.outputs[name].dtype for name in HAND_OUTPUTS}
    assert dtypes == {name: types_pb2.DT_STRING if name in ("path", "handedness") else types_pb2.DT_FLOAT
                      for name in HAND_OUTPUTS}
    got = {name: tf.make_ndarray(response.outputs[name]) for name in HAND_OUTPUTS}
    check_tensors({name: [x.decode() for x in v] if v.dtype == object else v for name, v in got.items()},
                  expected)


def test_tfserving_rest_answers_are_unchanged(hand_serving, samples):
    """TF Serving's REST Predict has no way to name outputs (its JSON request holds only signature_name and
    instances or inputs): its answers keep the default outputs."""
    body = {"instances": [{"b64": base64.b64encode(samples["rock"]).decode()}]}
    r = httpx.post(f"{hand_serving.rest_url}/v1/models/rps:predict", json=body, timeout=60)
    assert r.status_code == 200, r.text
    (row,) = r.json()["predictions"]
    assert set(row) == {"scores", "label"} and row["label"] == "rock"


def test_bad_images_are_refused_before_the_hand_stage(hand_serving, channel, samples):
    bad = samples["rock"][:600]  # a truncated JPEG: its header reads, its pixels do not
    before = stage_runs(hand_serving)
    assert v2_infer(hand_serving, v2_body([bad], HAND_OUTPUTS), 400).json()["error"]
    r = httpx.post(f"{hand_serving.rest_url}/v1/models/rps:predict", timeout=30,
                   json={"instances": [{"b64": base64.b64encode(bad).decode()}]})
    assert r.status_code == 400, r.text
    with pytest.raises(grpc.RpcError) as info:
        v2pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(v2_grpc_request([bad], HAND_OUTPUTS))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = predict_pb2.PredictRequest(output_filter=HAND_OUTPUTS)
    request.model_spec.name = "rps"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([bad]))
    with pytest.raises(grpc.RpcError) as info:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.output_filter.append("hand_pose")  # an unknown output: refused before any image is read
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([samples["rock"]]))
    with pytest.raises(grpc.RpcError) as info:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "hand_pose" in info.value.details()
    assert stage_runs(hand_serving) == before


def test_without_the_hand_stage_the_outputs_say_cnn_and_no_hand(serving, sample_jpeg):
    """The shared server's version has no pose classifier: IMGCLF_HANDS=auto never runs the stage for it."""
    reply = v2_infer(serving, v2_body([sample_jpeg], HAND_OUTPUTS)).json()
    out = {o["name"]: o["data"] for o in reply["outputs"]}
    assert out == {"path": ["cnn"], "hand_box": [0.0] * 4, "hand_landmarks": [0.0] * 63, "hand_score": [0.0],
                   "handedness": [""]}


@pytest.mark.parametrize("which", ["http", "grpc"])
def test_tritonclient_asks_for_the_hand(hand_serving, expected, which):
    address = hand_serving.grpc_target if which == "grpc" else hand_serving.rest_url.removeprefix("http://")
    files = [SAMPLES / "rock.jpg", SAMPLES / "no-hand.jpg"]
    proc = subprocess.run([sys.executable, str(SCRIPT), f"triton-hands-{which}", address, "rps", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got.pop("default_outputs") == ["scores", "label"]
    assert got.pop("label") == ["rock", "none"]
    check_tensors(got, expected)


def pose_request(landmarks: Any) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "rps", "pose"
    request.inputs["landmarks"].CopyFrom(tf.make_tensor_proto(landmarks))
    return request


def test_tfserving_grpc_pose_signature(hand_serving, serving, channel, expected):
    """The `pose` signature an exported version carries for TF Serving, answered by the version's pose
    classifier: what an imgclf whose TF Serving is this server calls for each hand it finds."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    rock = expected[0]
    response = stub.Predict(pose_request(np.array([rock["hand"]["landmarks"]] * 2, np.float32)), timeout=30)
    assert response.model_spec.signature_name == "pose" and response.model_spec.version.value == 1
    scores = tf.make_ndarray(response.outputs["scores"])
    np.testing.assert_allclose(scores, [list(rock["scores"].values())] * 2, atol=1e-3)  # landmarks rounded
    for bad, what in [(np.zeros((1, 20, 3), np.float32), "[n, 21, 3]"),
                      (np.full((1, 21, 3), np.nan, np.float32), "finite"),
                      (np.zeros((1, 21, 3), np.float64), "DT_FLOAT")]:
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(pose_request(bad), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and what in info.value.details()
    # the shared server's version has no pose classifier
    with grpc.insecure_channel(serving.grpc_target) as plain, pytest.raises(grpc.RpcError) as info:
        prediction_service_pb2_grpc.PredictionServiceStub(plain).Predict(
            pose_request(np.zeros((1, 21, 3), np.float32)), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not found" in info.value.details()
