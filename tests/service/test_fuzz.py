"""Generated hostile requests on every API: never a 5xx, never a crash, always a JSON error.

The default run sends a few hundred requests; IMGCLF_FUZZ_LONG=1 sends over 10,000.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc
from tests.service.strategies import hostile_images, multipart_bodies, tf_serving_bodies, v2_bodies

LONG = os.environ.get("IMGCLF_FUZZ_LONG") == "1"
EXAMPLES = 2000 if LONG else 45  # per test; 8 tests
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
BAD_GRPC = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


@pytest.fixture(scope="module")
def client(serving) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serving.rest_url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def channel(serving) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(serving.grpc_target, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        yield ch


@pytest.fixture(autouse=True, scope="module")
def survives(serving) -> Iterator[None]:
    yield
    assert httpx.get(f"{serving.rest_url}/readyz").status_code == 200
    metrics = httpx.get(f"{serving.rest_url}/metrics").text
    assert 'status="500"' not in metrics and 'status="502"' not in metrics


def _ok(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.headers
        assert isinstance(r.json()["error"], str)


CTYPES = ["image/jpeg", "image/png", "application/octet-stream", "text/plain", "", "image/"]


@FUZZ
@given(image=hostile_images(), ctype=st.sampled_from(CTYPES))
def test_raw_bodies(client, image, ctype):
    _ok(client.post("/predict", content=image, headers={"content-type": ctype} if ctype else {}))


@FUZZ
@given(body=multipart_bodies())
def test_multipart_bodies(client, body):
    content, ctype = body
    _ok(client.post("/predict", content=content, headers={"content-type": ctype}))


@FUZZ
@given(body=tf_serving_bodies(), path=st.sampled_from([
    "rps:predict", "rps/versions/1:predict", "rps/labels/stable:predict", "rps/versions/99999999999999999999:predict"]))
def test_tf_serving_bodies(client, body, path):
    _ok(client.post(f"/v1/models/{path}", content=body))


@FUZZ
@given(body=v2_bodies(), path=st.sampled_from(["rps/infer", "rps/versions/1/infer", "other/infer"]))
def test_v2_bodies(client, body, path):
    _ok(client.post(f"/v2/models/{path}", content=body))


@st.composite
def predict_requests(draw: st.DrawFn) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from(["rps", "", "nope"]))
    request.model_spec.signature_name = draw(st.sampled_from(["", "serving_default", "labels", "x"]))
    pin = draw(st.sampled_from(["none", "version", "label"]))
    if pin == "version":
        request.model_spec.version.value = draw(st.integers(-(2**63), 2**63 - 1))
    elif pin == "label":
        request.model_spec.version_label = draw(st.sampled_from(["stable", "canary", ""]))
    for name in draw(st.lists(st.sampled_from(["image_bytes", "images", ""]), max_size=2, unique=True)):
        images = draw(st.lists(hostile_images(), max_size=3))
        dims = draw(st.one_of(st.just([len(images)]), st.lists(st.integers(-1, 2**40), max_size=3)))
        tensor = tensor_pb2.TensorProto(
            dtype=draw(st.sampled_from([types_pb2.DT_STRING, types_pb2.DT_STRING, types_pb2.DT_FLOAT])),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims],
                unknown_rank=draw(st.booleans()) and draw(st.booleans())),
            string_val=images, float_val=draw(st.lists(st.floats(allow_nan=True), max_size=3)))
        request.inputs[name].CopyFrom(tensor)
    request.output_filter.extend(draw(st.lists(st.sampled_from(["scores", "label", "x"]), max_size=2)))
    return request


@FUZZ
@given(request=predict_requests())
def test_grpc_tf_serving_predict(channel, request):
    try:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    except grpc.RpcError as err:
        assert err.code() not in BAD_GRPC, (err.code(), err.details())


@FUZZ
@given(images=st.lists(hostile_images(), max_size=3), name=st.sampled_from(["", "rps", "x"]),
       pin=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1), st.text(max_size=10)),
       request_id=st.text(max_size=20))
def test_grpc_classify(channel, images, name, pin, request_id):
    request = pb.ClassifyRequest(images=images, model_name=name, request_id=request_id)
    if isinstance(pin, int):
        request.version = pin
    elif isinstance(pin, str):
        request.version_label = pin
    try:
        classifier_pb2_grpc.ImageClassifierStub(channel).Classify(request, timeout=60)
    except grpc.RpcError as err:
        assert err.code() not in BAD_GRPC, (err.code(), err.details())


@st.composite
def model_infer_requests(draw: st.DrawFn) -> object:
    from service.grpc._generated.inference import grpc_predict_v2_pb2 as v2pb

    images = draw(st.lists(hostile_images(), max_size=3))
    request = v2pb.ModelInferRequest(model_name=draw(st.sampled_from(["rps", "", "x"])),
                                      model_version=draw(st.sampled_from(["", "1", "99", "-1", "9" * 30])),
                                      id=draw(st.text(max_size=10)))
    shape = draw(st.one_of(st.just([len(images)]), st.lists(st.integers(-2, 2**40), max_size=3)))
    tensor = request.inputs.add(name=draw(st.sampled_from(["image_bytes", "x"])),
                                datatype=draw(st.sampled_from(["BYTES", "FP32"])), shape=shape)
    if draw(st.booleans()):
        tensor.contents.bytes_contents.extend(images)
    else:  # Triton's raw form: each element behind a 4-byte little-endian length, or any bytes at all
        raw = b"".join(len(i).to_bytes(4, "little") + i for i in images)
        request.raw_input_contents.append(draw(st.one_of(st.just(raw), st.binary(max_size=64))))
    for name in draw(st.lists(st.sampled_from(["scores", "label", "y"]), max_size=2)):
        request.outputs.add(name=name)
    return request


@FUZZ
@given(request=model_infer_requests())
def test_grpc_kserve_model_infer(channel, request):
    from service.grpc._generated.inference import grpc_predict_v2_pb2_grpc

    try:
        grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    except grpc.RpcError as err:
        assert err.code() not in BAD_GRPC, (err.code(), err.details())


METHODS = ["/imgclf.v1.ImageClassifier/Classify", "/imgclf.v1.ImageClassifier/GetModelStatus",
           "/tensorflow.serving.PredictionService/Predict", "/tensorflow.serving.PredictionService/GetModelMetadata",
           "/tensorflow.serving.ModelService/GetModelStatus", "/inference.GRPCInferenceService/ModelInfer",
           "/inference.GRPCInferenceService/ModelMetadata", "/inference.GRPCInferenceService/ModelReady"]


@FUZZ
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=2048))
def test_grpc_undecodable_messages(channel, method, payload):
    call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        call(payload, timeout=60)
    except grpc.RpcError as err:
        assert err.code() not in BAD_GRPC, (err.code(), err.details())
