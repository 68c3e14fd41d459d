"""TensorFlow Serving backend: versions, metadata, labels and scores from TF Serving over gRPC."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import wrappers_pb2

from service.backends.base import Decoder, ModelInfo
from service.errors import (
    DeadlineError,
    InternalError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
    ServiceError,
    UnavailableError,
)
from service.grpc._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from service.grpc_options import channel_options
from service.settings import ServeSettings
from service.tensors import make_ndarray, make_tensor_proto
from version_format.model_io import LANDMARKS_INPUT, POSE_SIGNATURE, SCORES_OUTPUT

log = logging.getLogger(__name__)

_INPUT, _SCORES, _LABELS = "image_bytes", "scores", "labels"
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_FIRST_BACKOFF_S = 0.1  # then 0.2, 0.4, ... between retries on UNAVAILABLE
# gRPC's reconnect backoff grows to 120 s by default: after a long outage the channel would
# stay down for up to two minutes after TF Serving is back. One attempt a second is cheap.
_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]
_TRANSIENT = (UnavailableError, DeadlineError, OverloadedError)


class TFServingBackend:
    """Talks to one TF Serving (or anything exposing its gRPC API) over one long-lived channel.

    When TF Serving cannot be reached, `discover` reports no versions: the registry then
    unloads what it served, readiness turns false, and the versions load again once TF
    Serving answers. Any other failure of the status call raises (the poll loop logs it).
    """

    kind = "tfserving"

    def __init__(self, settings: ServeSettings):
        self.target = settings.tfserving_target
        self.timeout_s = settings.tfserving_timeout_s
        self.retries = settings.tfserving_retries
        self.budget_s = settings.request_timeout_s
        self._channel = grpc.insecure_channel(
            self.target, options=[*channel_options(settings.grpc_max_message_bytes), *_RECONNECT])
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.unreachable: str | None = None  # why the last status call failed, while it does
        self._lock = threading.Lock()
        # bumped when a version fails to load or warm up for a passing reason: the registry
        # keeps a failed version out until its fingerprint changes, and this changes it
        self._attempts: dict[tuple[str, int], int] = {}

    # -- calls -----------------------------------------------------------------------------
    def call(self, method: Callable[..., Any], request: Any, what: str) -> Any:
        """One unary call with the per-call deadline, retried with backoff on UNAVAILABLE only.

        All attempts together stay within the request timeout: past it no caller is waiting.
        """
        give_up = time.monotonic() + self.budget_s
        for attempt in range(self.retries + 1):
            timeout = max(0.001, min(self.timeout_s, give_up - time.monotonic()))
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as exc:
                code: grpc.StatusCode = exc.code()  # a sync call's RpcError is also a grpc.Call
                pause = _FIRST_BACKOFF_S * 2**attempt
                if (code != grpc.StatusCode.UNAVAILABLE or attempt == self.retries
                        or time.monotonic() + pause >= give_up):
                    raise self._error(code, exc.details() or "", what, attempt + 1, timeout) from None
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _error(self, code: grpc.StatusCode, details: str, what: str, attempts: int,
               timeout: float) -> ServiceError:
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidInputError(details)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFoundError(details)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return OverloadedError(f"TF Serving is overloaded: {details}", retry_after=1)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineError(f"TF Serving at {self.target} did not answer {what} within "
                                 f"{timeout:.3g} s")
        if code == grpc.StatusCode.UNAVAILABLE:
            tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
            return UnavailableError(f"TF Serving at {self.target} is unavailable ({what} failed after "
                                    f"{tries}): {details}", retry_after=1)
        return InternalError(f"TF Serving at {self.target} answered {what} with {code.name}: {details}")

    # -- the Backend protocol --------------------------------------------------------------
    def discover(self, name: str) -> dict[int, str]:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=name))
        try:
            response = self.call(self.models.GetModelStatus, request, "GetModelStatus")
        except NotFoundError:
            self._reached()
            return {}  # TF Serving is up but has no version of this model (yet)
        except (UnavailableError, DeadlineError) as exc:
            if self.unreachable is None:
                log.warning("%s; reporting no versions of %r until it answers again", exc.message, name)
            self.unreachable = exc.message
            return {}
        self._reached()
        with self._lock:
            return {s.version: f"tfs:AVAILABLE:{self._attempts.get((name, s.version), 0)}"
                    for s in response.model_version_status if s.state == _AVAILABLE}

    def load(self, name: str, version: int) -> RemoteModel:
        try:
            return self._load(name, version)
        except (*_TRANSIENT, NotFoundError):  # NOT_FOUND: unloaded since discover; it may return
            self.retry_later(name, version)
            raise

    def base_path(self, name: str) -> Path | None:
        return None  # TF Serving reads its own model folders

    def set_base_path(self, name: str, path: Path) -> None:
        """TF Serving's own config says where its models live."""

    def close(self) -> None:
        """Close the shared channel (the server's end of life, not a version's)."""
        self._channel.close()

    # -- helpers ---------------------------------------------------------------------------
    def retry_later(self, name: str, version: int) -> None:
        """Give the version a new fingerprint, so the registry loads it again on its next poll."""
        with self._lock:
            self._attempts[name, version] = self._attempts.get((name, version), 0) + 1

    def _reached(self) -> None:
        if self.unreachable is not None:
            log.info("TF Serving at %s answers again", self.target)
            self.unreachable = None

    def _load(self, name: str, version: int) -> RemoteModel:
        spec = model_pb2.ModelSpec(name=name, version=wrappers_pb2.Int64Value(value=version))
        meta = self.call(self.predictions.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]), "GetModelMetadata")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if not meta.metadata["signature_def"].Unpack(sig_map):
            raise ValueError(f"TF Serving sent no signature defs for version {version} of {name!r}")
        defs = {k: v for k, v in sig_map.signature_def.items() if not k.startswith("__")}
        default = defs.get("serving_default")
        if default is None or _INPUT not in default.inputs or _SCORES not in default.outputs:
            raise ValueError(f"version {version} of {name!r} on TF Serving has no serving_default "
                             f"signature taking '{_INPUT}' and giving '{_SCORES}'")
        if _LABELS not in defs:
            raise ValueError(f"version {version} of {name!r} on TF Serving has no '{_LABELS}' signature "
                             "(export it with training/export.py)")
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
            name=name, version=wrappers_pb2.Int64Value(value=version), signature_name=_LABELS))
        response = self.call(self.predictions.Predict, request, "Predict (labels)")
        labels = tuple(x.decode() for x in make_ndarray(response.outputs[_LABELS]).ravel())
        if not labels:
            raise ValueError(f"the '{_LABELS}' signature of version {version} of {name!r} is empty")
        info = ModelInfo(name=name, version=version, labels=labels, card={}, signature_defs=defs,
                         runtime="tfserving", runtime_note="TF Serving answers this version")
        model = RemoteModel(self, info)
        pose = defs.get(POSE_SIGNATURE)
        if pose is not None:  # the version's pose classifier, as a signature (training/export.py)
            if LANDMARKS_INPUT not in pose.inputs or SCORES_OUTPUT not in pose.outputs:
                raise ValueError(f"the '{POSE_SIGNATURE}' signature of version {version} of {name!r} on TF "
                                 f"Serving does not take '{LANDMARKS_INPUT}' and give '{SCORES_OUTPUT}'")
            info.pose = RemotePose(model)
        return model


class RemoteModel:
    """One version on TF Serving: `predict` is a blocking, thread-safe gRPC call."""

    decoder: Decoder | None = None  # TF Serving decodes: predict sends the encoded bytes

    def __init__(self, backend: TFServingBackend, info: ModelInfo):
        self.backend = backend
        self.info = info
        self._spec = model_pb2.ModelSpec(name=info.name, signature_name="serving_default",
                                         version=wrappers_pb2.Int64Value(value=info.version))
        self._answered = False  # until the first success, a passing failure means "load again"

    def predict(self, images: Sequence[bytes]) -> np.ndarray:
        request = predict_pb2.PredictRequest(model_spec=self._spec, output_filter=[_SCORES])
        request.inputs[_INPUT].CopyFrom(make_tensor_proto(list(images)))
        return self.scores(request, "Predict")

    def scores(self, request: predict_pb2.PredictRequest, what: str) -> np.ndarray:
        """One Predict call through the backend's retries and error mapping -> its float32 `scores`."""
        try:
            response = self.backend.call(self.backend.predictions.Predict, request, what)
        except (*_TRANSIENT, NotFoundError) as exc:
            if not self._answered:  # the registry's warm-up: fail now, try again next poll (as load does)
                self.backend.retry_later(self.info.name, self.info.version)
            if isinstance(exc, NotFoundError):
                # this version was AVAILABLE when the registry last looked: TF Serving lost it since. Not
                # the client's mistake (a 404 would say it asked for something that does not exist): retry,
                # by then the next poll has withdrawn it or it is back
                raise UnavailableError(f"TF Serving no longer serves version {self.info.version} of "
                                       f"{self.info.name!r}; retry shortly", retry_after=1) from None
            raise
        self._answered = True
        if _SCORES not in response.outputs:
            raise InternalError(f"TF Serving's answer to {what} has no '{_SCORES}' output")
        return make_ndarray(response.outputs[_SCORES]).astype(np.float32, copy=False)

    def close(self) -> None:
        """Nothing to release: the channel is the backend's and outlives every version."""


class RemotePose:
    """A version's pose classifier on TF Serving (its `pose` signature): a PoseScorer making one blocking,
    thread-safe Predict call, with the same retries and error mapping as the version's images."""

    def __init__(self, model: RemoteModel):
        self.model = model
        self._spec = model_pb2.ModelSpec(name=model.info.name, signature_name=POSE_SIGNATURE,
                                         version=wrappers_pb2.Int64Value(value=model.info.version))

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        landmarks = np.asarray(landmarks, np.float32)
        request = predict_pb2.PredictRequest(model_spec=self._spec, output_filter=[SCORES_OUTPUT])
        request.inputs[LANDMARKS_INPUT].CopyFrom(make_tensor_proto(landmarks))
        scores = self.model.scores(request, "Predict (pose)")
        expected = (len(landmarks), len(self.model.info.labels))
        if scores.shape != expected:  # the batcher checks the images' rows; nothing else checks these
            raise InternalError(f"TF Serving's '{POSE_SIGNATURE}' signature answered scores of shape "
                                f"{list(scores.shape)} for {list(expected)}")
        return scores
