"""TensorFlow Serving's own gRPC client code (as in its resnet/mnist examples) against this server."""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

LABELS = ["paper", "rock", "scissors"]


@pytest.fixture(scope="module")
def channel(serving) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(serving.grpc_target)
    yield channel
    channel.close()


@pytest.fixture(scope="module")
def stub(channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(images: list[bytes], name: str = "rps") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    return request


def _error(call, request, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, 10.0, *args)
    return info.value


def test_predict_as_in_the_tf_serving_example(serving, sample_jpeg):
    """resnet_client_grpc.py, step by step, but for the model and input names."""
    channel = grpc.insecure_channel(serving.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rps"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([sample_jpeg], dtype=tf.string))
    result = stub.Predict(request, 10.0)
    channel.close()

    assert result.model_spec.name == "rps" and result.model_spec.version.value == 1
    assert result.model_spec.signature_name == "serving_default"
    assert set(result.outputs) == {"scores", "label"}
    scores = tf.make_ndarray(result.outputs["scores"])
    assert scores.dtype == np.float32 and scores.shape == (1, 3)
    assert scores.sum() == pytest.approx(1, abs=1e-4)
    labels = tf.make_ndarray(result.outputs["label"])
    assert labels.shape == (1,) and labels[0].decode() == LABELS[int(np.argmax(scores[0]))]


def test_predict_several_images_in_order(stub, sample_jpeg):
    buf = io.BytesIO()
    Image.new("RGB", (80, 80), (10, 150, 240)).save(buf, format="PNG")
    other = buf.getvalue()
    a = tf.make_ndarray(stub.Predict(_request([sample_jpeg]), 10.0).outputs["scores"])[0]
    b = tf.make_ndarray(stub.Predict(_request([other]), 10.0).outputs["scores"])[0]
    assert not np.allclose(a, b)
    both = tf.make_ndarray(stub.Predict(_request([other, sample_jpeg]), 10.0).outputs["scores"])
    np.testing.assert_allclose(both, [b, a], atol=1e-5)


def test_version_and_label_in_model_spec(stub, sample_jpeg):
    request = _request([sample_jpeg])
    request.model_spec.version.value = 1
    assert stub.Predict(request, 10.0).model_spec.version.value == 1
    request = _request([sample_jpeg])
    request.model_spec.version_label = "stable"
    assert stub.Predict(request, 10.0).model_spec.version.value == 1
    request = _request([sample_jpeg])
    request.model_spec.signature_name = ""  # the default signature
    assert stub.Predict(request, 10.0).model_spec.version.value == 1


def test_output_filter(stub, sample_jpeg):
    request = _request([sample_jpeg])
    request.output_filter.append("label")
    assert set(stub.Predict(request, 10.0).outputs) == {"label"}
    request = _request([sample_jpeg])
    request.output_filter.append("logits")
    err = _error(stub.Predict, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "logits" in err.details()


def test_labels_signature(stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rps"
    request.model_spec.signature_name = "labels"
    result = stub.Predict(request, 10.0)
    assert [x.decode() for x in tf.make_ndarray(result.outputs["labels"])] == LABELS


def test_predict_errors(stub, sample_jpeg):
    err = _error(stub.Predict, _request([sample_jpeg], name="resnet"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "resnet" in err.details()

    request = _request([sample_jpeg])
    request.model_spec.version.value = 42
    assert _error(stub.Predict, request).code() == grpc.StatusCode.NOT_FOUND
    request = _request([sample_jpeg])
    request.model_spec.version_label = "canary"
    assert _error(stub.Predict, request).code() == grpc.StatusCode.NOT_FOUND

    err = _error(stub.Predict, _request([b"definitely not a jpeg"]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "image" in err.details()

    request = _request([sample_jpeg])
    request.model_spec.signature_name = "serving_pixels_typo"
    err = _error(stub.Predict, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "serving_pixels_typo" in err.details()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rps"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([sample_jpeg], dtype=tf.string))
    err = _error(stub.Predict, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "image_bytes" in err.details()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rps"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([0.5], dtype=tf.float32))
    err = _error(stub.Predict, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "DT_STRING" in err.details()


def test_get_model_metadata(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "rps"
    request.metadata_field.append("signature_def")
    result = stub.GetModelMetadata(request, 10.0)
    assert result.model_spec.name == "rps" and result.model_spec.version.value == 1

    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(sig_map)
    assert {"serving_default", "serving_pixels", "labels"} <= set(sig_map.signature_def)
    default = sig_map.signature_def["serving_default"]
    image = default.inputs["image_bytes"]
    assert image.dtype == types_pb2.DT_STRING
    assert [d.size for d in image.tensor_shape.dim] == [-1]
    assert default.outputs["scores"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in default.outputs["scores"].tensor_shape.dim] == [-1, 3]

    request.model_spec.version_label = "stable"
    assert stub.GetModelMetadata(request, 10.0).model_spec.version.value == 1

    bad = get_model_metadata_pb2.GetModelMetadataRequest()
    bad.model_spec.name = "rps"
    assert _error(stub.GetModelMetadata, bad).code() == grpc.StatusCode.INVALID_ARGUMENT
    bad.metadata_field.append("signature_def")
    bad.model_spec.name = "nope"
    assert _error(stub.GetModelMetadata, bad).code() == grpc.StatusCode.NOT_FOUND


def test_model_service_status(channel):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "rps"
    result = stub.GetModelStatus(request, 10.0)
    (status,) = result.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE == 30
    assert status.status.error_code == 0 and status.status.error_message == ""

    request.model_spec.version.value = 1
    assert stub.GetModelStatus(request, 10.0).model_version_status[0].version == 1
    request.model_spec.version.value = 3
    assert _error(stub.GetModelStatus, request).code() == grpc.StatusCode.NOT_FOUND

    unknown = get_model_status_pb2.GetModelStatusRequest()
    unknown.model_spec.name = "inception"
    err = _error(stub.GetModelStatus, unknown)
    assert err.code() == grpc.StatusCode.NOT_FOUND and "inception" in err.details()
