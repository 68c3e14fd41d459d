"""inference.GRPCInferenceService (KServe V2 gRPC): typed and raw contents, metadata, health, errors."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from service.grpc._generated.inference import grpc_predict_v2_pb2 as pb
from service.grpc._generated.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from service.v2 import pack_bytes, unpack_bytes

LABELS = ["paper", "rock", "scissors"]


@pytest.fixture(scope="module")
def stub(serving) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(serving.grpc_target)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def _request(images: list[bytes], *, raw: bool, **kwargs) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="rps", **kwargs)
    tensor = request.inputs.add(name="image_bytes", datatype="BYTES", shape=[len(images)])
    if raw:
        request.raw_input_contents.append(pack_bytes(images))
    else:
        tensor.contents.bytes_contents.extend(images)
    return request


def _scores(response: pb.ModelInferResponse) -> np.ndarray:
    names = [o.name for o in response.outputs]
    out = response.outputs[names.index("scores")]
    return np.frombuffer(response.raw_output_contents[names.index("scores")], "<f4").reshape(list(out.shape))


def test_health_and_metadata(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="rps")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="rps", version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="rps", version="7")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="nope")).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "imgclf" and "binary_tensor_data" in meta.extensions
    model = stub.ModelMetadata(pb.ModelMetadataRequest(name="rps"))
    assert (model.name, list(model.versions), model.platform) == ("rps", ["1"], "tensorflow_savedmodel")
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [
        ("scores", "FP32", [-1, 3]), ("label", "BYTES", [-1])]


def test_typed_and_raw_contents_agree(stub, sample_jpeg):
    typed = stub.ModelInfer(_request([sample_jpeg, sample_jpeg], raw=False, id="t1"))
    raw = stub.ModelInfer(_request([sample_jpeg, sample_jpeg], raw=True))
    assert (typed.model_name, typed.model_version, typed.id) == ("rps", "1", "t1")
    np.testing.assert_allclose(_scores(typed), _scores(raw), atol=1e-6)
    assert _scores(typed).shape == (2, 3)
    labels = unpack_bytes(typed.raw_output_contents[1], "label")
    assert [x.decode() for x in labels] == [LABELS[i] for i in np.argmax(_scores(typed), axis=1)]


def test_classification_parameter(stub, sample_jpeg):
    request = _request([sample_jpeg], raw=True)
    request.outputs.add(name="scores").parameters["classification"].int64_param = 3
    response = stub.ModelInfer(request)
    assert list(response.outputs[0].shape) == [1, 3] and response.outputs[0].datatype == "BYTES"
    entries = [x.decode().split(":") for x in unpack_bytes(response.raw_output_contents[0], "scores")]
    assert sorted(label for _, _, label in entries) == LABELS


@pytest.mark.parametrize("change, code, fragment", [
    (lambda r: setattr(r, "model_name", "nope"), grpc.StatusCode.NOT_FOUND, "nope"),
    (lambda r: setattr(r, "model_version", "x1"), grpc.StatusCode.INVALID_ARGUMENT, "positive integer"),
    (lambda r: r.inputs[0].shape.__setitem__(0, 5), grpc.StatusCode.INVALID_ARGUMENT, "shape"),
    (lambda r: setattr(r.inputs[0], "datatype", "FP32"), grpc.StatusCode.INVALID_ARGUMENT, "BYTES"),
    (lambda r: r.raw_input_contents.__setitem__(0, b"\x09\x00\x00\x00abc"), grpc.StatusCode.INVALID_ARGUMENT,
     "runs past the end"),
    (lambda r: r.outputs.add(name="logits"), grpc.StatusCode.INVALID_ARGUMENT, "unknown output"),
])
def test_bad_requests(stub, sample_jpeg, change, code, fragment):
    request = _request([sample_jpeg], raw=True)
    change(request)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request)
    assert err.value.code() == code and fragment in err.value.details()


def test_not_an_image_is_invalid_argument(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(_request([b"not an image"], raw=True))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
