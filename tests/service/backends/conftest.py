"""TF Serving stand-ins on loopback: a scriptable gRPC fake, and imgclf front ends that use them."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import wrappers_pb2
from PIL import Image
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from service.settings import ServeSettings
from version_format.model_io import LANDMARKS_INPUT, POSE_SIGNATURE, SCORES_OUTPUT


class FakeTFServing:
    """PredictionService + ModelService for model "rps" version 1, with knobs for failures.

    Label-order and metadata calls always answer; the knobs only touch serving_default Predict,
    except `fail_metadata`, which fails GetModelMetadata with UNAVAILABLE, and `fail_pose`, which fails the
    `pose` signature's Predict (answered when the fake is given a pose classifier).
    """

    scores = (0.2, 0.3, 0.5)  # every image's answer
    bad_side = 13  # a batch holding an image this wide fails with INVALID_ARGUMENT

    def __init__(self, labels: list[str], signature_defs: dict[str, Any], port: int = 0, pose: Any = None):
        self.labels = labels
        self.signature_defs = dict(signature_defs)
        # a PoseClassifier answering the `pose` signature, as an exported version's own signature does
        self.pose = pose
        if pose is not None:
            self.signature_defs[POSE_SIGNATURE] = pose_signature(len(labels))
        self.pose_batches: list[int] = []  # hands per `pose` Predict call, failed ones too
        self.fail_pose = 0  # `pose` Predict calls still to fail with UNAVAILABLE
        self.delay_s = 0.0
        self.fail_next = 0  # Predict calls still to fail with UNAVAILABLE
        self.fail_metadata = 0  # GetModelMetadata calls still to fail with UNAVAILABLE
        self.abort_code: grpc.StatusCode | None = None
        self.batches: list[int] = []  # images per serving_default Predict call, failed ones too
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Prediction(self), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Models(self), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def calls(self) -> int:
        return len(self.batches)

    def take(self, knob: str) -> bool:
        """Consume one scripted failure from a counter knob."""
        with self._lock:
            left = getattr(self, knob)
            if left > 0:
                setattr(self, knob, left - 1)
            return left > 0

    def stop(self) -> None:
        self.server.stop(0).wait()


class _Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, fake: FakeTFServing):
        self.fake = fake

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        fake, spec = self.fake, request.model_spec
        if spec.name != "rps" or spec.version.value not in (0, 1):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec.name}")
        out = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(
            name="rps", version=wrappers_pb2.Int64Value(value=1), signature_name=spec.signature_name))
        if spec.signature_name == "labels":
            out.outputs["labels"].CopyFrom(tf.make_tensor_proto([x.encode() for x in fake.labels]))
            return out
        if spec.signature_name == POSE_SIGNATURE and fake.pose is not None:
            return self._pose(request, context, out)
        images = list(request.inputs["image_bytes"].string_val)
        with fake._lock:
            fake.batches.append(len(images))
        if fake.take("fail_next"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "scripted outage")
        if fake.abort_code is not None:
            context.abort(fake.abort_code, f"scripted {fake.abort_code.name}")
        if any(Image.open(io.BytesIO(i)).width == fake.bad_side for i in images):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Invalid JPEG data or crop window")
        time.sleep(fake.delay_s)
        scores = np.tile(np.array(fake.scores, np.float32), (len(images), 1))
        out.outputs["scores"].CopyFrom(tf.make_tensor_proto(scores))
        return out

    def _pose(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext,
              out: predict_pb2.PredictResponse) -> Any:
        """The `pose` signature: landmarks float32 [n, 21, 3] -> scores [n, labels], in the labels' order."""
        from hands.classifier import scores_in_order

        fake = self.fake
        if set(request.inputs) != {LANDMARKS_INPUT}:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected one input {LANDMARKS_INPUT!r}")
        landmarks = tf.make_ndarray(request.inputs[LANDMARKS_INPUT])
        with fake._lock:
            fake.pose_batches.append(len(landmarks))
        if fake.take("fail_pose"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "scripted outage")
        if landmarks.dtype != np.float32 or landmarks.shape[1:] != (21, 3):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"landmarks of {landmarks.dtype} {landmarks.shape}")
        scores = scores_in_order(fake.pose.predict_landmarks(landmarks), fake.pose.labels, tuple(fake.labels))
        out.outputs[SCORES_OUTPUT].CopyFrom(tf.make_tensor_proto(scores.astype(np.float32)))
        return out

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> Any:
        if self.fake.take("fail_metadata"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "scripted outage")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.fake.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        out = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=request.model_spec)
        out.metadata["signature_def"].Pack(sig_map)
        return out


def pose_signature(labels: int) -> meta_graph_pb2.SignatureDef:
    """The `pose` signature as an exported version declares it (version_format.model_io)."""
    def info(name: str, *dims: int) -> meta_graph_pb2.TensorInfo:
        shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
        return meta_graph_pb2.TensorInfo(name=name, dtype=types_pb2.DT_FLOAT, tensor_shape=shape)

    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    sig.inputs[LANDMARKS_INPUT].CopyFrom(info("pose_landmarks:0", -1, 21, 3))
    sig.outputs[SCORES_OUTPUT].CopyFrom(info("StatefulPartitionedCall_2:0", -1, labels))
    return sig


class _Models(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, fake: FakeTFServing):
        self.fake = fake

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> Any:
        if request.model_spec.name != "rps":
            context.abort(grpc.StatusCode.NOT_FOUND, "Could not find any versions of model")
        out = get_model_status_pb2.GetModelStatusResponse()
        out.model_version_status.add(version=1, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        return out


@pytest.fixture
def fake_tfserving(trained_model_root: Path) -> Iterator[Callable[..., FakeTFServing]]:
    """Start fakes that answer with the trained model's real signature defs and labels."""
    from service.backends.version_files import read_signature_defs
    from version_format.layout import LABELS_FILE

    version_dir = trained_model_root / "rps" / "1"
    labels = (version_dir / LABELS_FILE).read_text().split()
    defs = read_signature_defs(version_dir)
    started: list[FakeTFServing] = []

    def start(port: int = 0, pose: Any = None) -> FakeTFServing:
        started.append(FakeTFServing(labels, defs, port, pose))
        return started[-1]

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def tfs_front_end(start_server: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start imgclf servers whose backend is TF Serving at `target` (built by make_backend)."""
    from service.server import make_backend

    started: list[Any] = []

    def start(target: str, **overrides: Any) -> Any:
        values: dict[str, Any] = {"tfserving_target": target, "poll_interval_s": 0.3,
                                  "tfserving_timeout_s": 2.0, "tfserving_retries": 3}
        values.update(overrides)
        # start_server's own `backend` parameter takes the backend object, so the setting is
        # given here and the object made from it
        backend = make_backend(ServeSettings(model_root=tmp_path, backend="tfserving", **values))
        started.append(start_server(tmp_path, backend, **values))
        return started[-1]

    yield start
    for server in started:  # stopped first, so no poll runs on a closed channel
        server.stop()
        server.backend.close()
