"""imgclf.v1.ImageClassifier: Classify, ClassifyStream, GetModelStatus."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc

from service.core import Prediction, ServingCore
from service.errors import ServiceError
from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc
from service.grpc.errors import deadline_of, grpc_errors, grpc_stream_errors


def _prediction(p: Prediction) -> pb.Prediction:
    out = pb.Prediction(label=p.label, confidence=p.confidence, scores=list(p.scores.values()), path=p.path)
    if p.hand is not None:  # unset otherwise: `HasField("hand")` tells a hand from none
        out.hand.CopyFrom(pb.Hand(
            box=list(p.hand.box), handedness=p.hand.handedness, score=p.hand.score,
            landmarks=[pb.Landmark(x=x, y=y, z=z) for x, y, z in p.hand.landmarks.tolist()]))
    return out


class ImageClassifierServicer(classifier_pb2_grpc.ImageClassifierServicer):
    def __init__(self, core: ServingCore):
        self.core = core

    async def _classify(self, request: pb.ClassifyRequest, deadline: float) -> pb.ClassifyResponse:
        name = request.model_name or self.core.default_model
        which = request.WhichOneof("version_choice")
        result = await self.core.classify(
            name, list(request.images),
            version=request.version if which == "version" else None,
            label=request.version_label if which == "version_label" else None,
            deadline=deadline)
        return pb.ClassifyResponse(
            model_name=result.model_name, model_version=result.model_version,
            labels=list(result.labels), request_id=request.request_id,
            predictions=[_prediction(p) for p in result.predictions])

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest,
                       context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        return await self._classify(request, deadline_of(context, self.core.settings.request_timeout_s))

    @grpc_stream_errors
    async def ClassifyStream(self, request_iterator: AsyncIterator[pb.ClassifyRequest],
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ClassifyResponse]:
        timeout = self.core.settings.request_timeout_s
        async for request in request_iterator:
            try:  # each frame has its own deadline
                yield await self._classify(request, time.monotonic() + timeout)
            except ServiceError as exc:
                # one bad frame ends the stream with its status, like a unary call would
                exc.message = f"request {request.request_id!r}: {exc.message}"
                raise

    @grpc_errors
    async def GetModelStatus(self, request: pb.ModelStatusRequest,
                             context: grpc.aio.ServicerContext) -> pb.ModelStatusResponse:
        name = request.model_name or self.core.default_model
        return pb.ModelStatusResponse(
            model_name=name, ready=self.core.model_ready(name),
            versions=[pb.VersionStatus(version=s.version, state=s.state, error=s.error or "", labels=list(s.labels))
                      for s in self.core.statuses(name)])
