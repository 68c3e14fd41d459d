"""TensorFlow Serving's own gRPC services (PredictionService, ModelService) over the core."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
from google.protobuf import wrappers_pb2

from service.core import VERSION_STATES, ServingCore
from service.errors import InvalidInputError, PayloadTooLargeError
from service.grpc._generated.tensorflow.core.framework import types_pb2
from service.grpc._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from service.grpc._generated.xla.tsl.protobuf import error_codes_pb2
from service.grpc.errors import deadline_of, grpc_errors
from service.hand_tensors import HAND_OUTPUTS, hand_tensor
from service.tensors import make_ndarray, make_tensor_proto
from version_format.model_io import LANDMARKS_INPUT, POSE_SIGNATURE, SCORES_OUTPUT

_INPUT = "image_bytes"
_OUTPUTS = ("scores", "label")  # what a request without an output_filter gets; the hand's outputs by name only
_STATE_CODES = {"LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}
assert set(_STATE_CODES) == set(VERSION_STATES)


def _version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None


def _check_shape(tensor: object) -> None:
    """As TF Serving: the shape must be [N] (the signature's) and hold exactly the N strings sent."""
    shape = tensor.tensor_shape  # type: ignore[attr-defined]
    dims = [d.size for d in shape.dim]
    n = len(tensor.string_val)  # type: ignore[attr-defined]
    if shape.unknown_rank or len(dims) != 1 or dims[0] != n:
        shown = "unknown rank" if shape.unknown_rank else str(dims)
        raise InvalidInputError(f"input '{_INPUT}' has tensor_shape {shown} but holds {n} strings; "
                                f"send shape [{n}] (one encoded image per element)")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore):
        self.core = core

    @grpc_errors
    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        if spec.signature_name == "labels":  # the exported label-order signature, no inputs
            return await self._labels(request)
        if spec.signature_name == POSE_SIGNATURE:
            return await self._pose(request)
        if spec.signature_name not in ("", "serving_default"):
            raise InvalidInputError(f"Serving signature name: \"{spec.signature_name}\" not found "
                                    "in signature def")
        if set(request.inputs) != {_INPUT}:
            raise InvalidInputError(f"expected exactly one input '{_INPUT}', got {sorted(request.inputs)}")
        tensor = request.inputs[_INPUT]
        if tensor.dtype != types_pb2.DT_STRING:
            raise InvalidInputError(f"input '{_INPUT}' must be DT_STRING (encoded images), got "
                                    f"{types_pb2.DataType.Name(tensor.dtype)}")
        _check_shape(tensor)
        unknown = set(request.output_filter) - set(_OUTPUTS) - set(HAND_OUTPUTS)
        if unknown:  # before any inference: a bad request costs no model call
            raise InvalidInputError(f"output_filter names unknown outputs {sorted(unknown)}; outputs are "
                                    f"{[*_OUTPUTS, *HAND_OUTPUTS]}")
        version, label = _version_choice(spec)
        result = await self.core.classify(
            spec.name, list(tensor.string_val), version=version, label=label,
            deadline=deadline_of(context, self.core.settings.request_timeout_s))
        wanted = set(request.output_filter) or set(_OUTPUTS)
        response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(
            name=result.model_name, signature_name="serving_default",
            version=wrappers_pb2.Int64Value(value=result.model_version)))
        if "scores" in wanted:
            response.outputs["scores"].CopyFrom(make_tensor_proto(result.scores.astype(np.float32)))
        if "label" in wanted:
            response.outputs["label"].CopyFrom(make_tensor_proto([p.label.encode() for p in result.predictions]))
        for name in HAND_OUTPUTS:
            if name in wanted:
                response.outputs[name].CopyFrom(make_tensor_proto(hand_tensor(result, name)))
        return response

    async def _labels(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        if request.inputs:
            raise InvalidInputError("signature 'labels' takes no inputs")
        version, label = _version_choice(request.model_spec)
        info = self.core.model_info(request.model_spec.name, version, label)
        response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(
            name=info.name, signature_name="labels", version=wrappers_pb2.Int64Value(value=info.version)))
        response.outputs["labels"].CopyFrom(make_tensor_proto([x.encode() for x in info.labels]))
        return response

    async def _pose(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """The exported `pose` signature, answered by the version's pose classifier: landmarks float32
        [n, 21, 3] -> scores [n, labels]. So an imgclf whose TF Serving is another imgclf scores hands there."""
        version, label = _version_choice(request.model_spec)
        info = self.core.model_info(request.model_spec.name, version, label)
        if info.pose is None:  # as TF Serving answers for a signature the version does not have
            raise InvalidInputError(f"Serving signature name: \"{POSE_SIGNATURE}\" not found in signature def")
        if set(request.inputs) != {LANDMARKS_INPUT}:
            raise InvalidInputError(f"expected exactly one input '{LANDMARKS_INPUT}', got {sorted(request.inputs)}")
        tensor = request.inputs[LANDMARKS_INPUT]
        if tensor.dtype != types_pb2.DT_FLOAT:
            raise InvalidInputError(f"input '{LANDMARKS_INPUT}' must be DT_FLOAT, got "
                                    f"{types_pb2.DataType.Name(tensor.dtype)}")
        try:
            landmarks = make_ndarray(tensor, max_elements=21 * 3 * self.core.settings.max_images_per_request)
        except (ValueError, TypeError) as exc:  # values that do not fill the shape, a bad tensor_content
            raise InvalidInputError(f"input '{LANDMARKS_INPUT}': {exc}") from None
        if landmarks.ndim != 3 or landmarks.shape[1:] != (21, 3) or not np.isfinite(landmarks).all():
            raise InvalidInputError(f"input '{LANDMARKS_INPUT}' must be finite, of shape [n, 21, 3]; got "
                                    f"{list(landmarks.shape)}")
        if len(landmarks) > self.core.settings.max_images_per_request:
            raise PayloadTooLargeError(f"{len(landmarks)} hands in one request; the limit is "
                                       f"{self.core.settings.max_images_per_request}")
        # off the event loop: on the tfserving backend the scorer is itself a blocking gRPC call
        scores = await asyncio.to_thread(info.pose, landmarks)
        response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(
            name=info.name, signature_name=POSE_SIGNATURE, version=wrappers_pb2.Int64Value(value=info.version)))
        response.outputs[SCORES_OUTPUT].CopyFrom(make_tensor_proto(np.asarray(scores, np.float32)))
        return response

    @grpc_errors
    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context: grpc.aio.ServicerContext
                               ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = set(request.metadata_field)
        if fields != {"signature_def"}:
            raise InvalidInputError("metadata_field must be ['signature_def'] (the only one "
                                    "supported)")
        version, label = _version_choice(request.model_spec)
        info = self.core.model_info(request.model_spec.name, version, label)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in info.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_pb2.ModelSpec(
            name=info.name, version=wrappers_pb2.Int64Value(value=info.version)))
        response.metadata["signature_def"].Pack(sig_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore):
        self.core = core

    @grpc_errors
    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                             context: grpc.aio.ServicerContext
                             ) -> get_model_status_pb2.GetModelStatusResponse:
        version, label = _version_choice(request.model_spec)
        statuses = self.core.statuses(request.model_spec.name, version, label)
        response = get_model_status_pb2.GetModelStatusResponse()
        for s in statuses:
            entry = response.model_version_status.add(version=s.version,
                                                      state=_STATE_CODES[s.state])
            entry.status.error_code = error_codes_pb2.UNKNOWN if s.error else error_codes_pb2.OK
            entry.status.error_message = s.error or ""
        return response

    # HandleReloadConfigRequest stays UNIMPLEMENTED (the base class): versions come from disk.
