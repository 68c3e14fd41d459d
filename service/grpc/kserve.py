"""KServe V2 gRPC (`inference.GRPCInferenceService`) over the core, as tritonclient and the KServe SDK call it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from service import v2
from service.core import ServingCore
from service.errors import InvalidInputError, NotFoundError
from service.grpc._generated.inference import grpc_predict_v2_pb2 as pb
from service.grpc._generated.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from service.grpc.errors import deadline_of, grpc_errors


def _params(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, which) if which else None
    return out


def _images(request: pb.ModelInferRequest, limit: int) -> list[bytes]:
    if len(request.inputs) != 1:
        raise InvalidInputError(f"expected one BYTES input {v2.INPUT!r}, got {len(request.inputs)} inputs")
    tensor = request.inputs[0]
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InvalidInputError(f"{len(request.raw_input_contents)} raw_input_contents for one input")
        if tensor.HasField("contents"):
            raise InvalidInputError(f"input {tensor.name!r} has both contents and raw_input_contents")
        images = (v2.unpack_bytes(request.raw_input_contents[0], f"input {tensor.name!r}", limit)
                  if tensor.datatype == "BYTES" else [])
    else:
        images = list(tensor.contents.bytes_contents)
    v2.check_input(tensor.name, tensor.datatype, list(tensor.shape), len(images))
    return images


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: ServingCore):
        self.core = core

    @grpc_errors
    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.core.live())

    @grpc_errors
    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.core.ready())

    @grpc_errors
    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        version = v2.parse_version(request.version)
        try:
            return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, version))
        except NotFoundError:  # as Triton answers: an unknown model is simply not ready
            return pb.ModelReadyResponse(ready=False)

    @grpc_errors
    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        meta = v2.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"],
                                         extensions=meta["extensions"])

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        meta = v2.model_metadata(self.core, request.name, v2.parse_version(request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]])

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        version = v2.parse_version(request.model_version)
        images = _images(request, self.core.settings.max_images_per_request)
        wanted = [v2.requested(o.name, _params(o.parameters)) for o in request.outputs]
        result = await self.core.classify(
            request.model_name, images, version=version,
            deadline=deadline_of(context, self.core.settings.request_timeout_s))
        response = pb.ModelInferResponse(model_name=request.model_name,
                                         model_version=str(result.model_version), id=request.id)
        for t in v2.outputs(result, wanted):  # raw contents, as Triton answers
            response.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
            response.raw_output_contents.append(t.raw())
        return response

    @grpc_errors
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ModelStatisticsResponse:
        stats = v2.statistics(self.core, request.name or None, v2.parse_version(request.version))
        response = pb.ModelStatisticsResponse()
        for s in stats:
            entry = response.model_stats.add(name=s["name"], version=s["version"],
                                             last_inference=s["last_inference"],
                                             inference_count=s["inference_count"])
            for key, value in s["inference_stats"].items():
                getattr(entry.inference_stats, key).CopyFrom(pb.StatisticDuration(**value))
        return response

    @grpc_errors
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        return pb.RepositoryIndexResponse(models=[
            pb.RepositoryIndexResponse.ModelIndex(**m) for m in v2.repository_index(self.core, request.ready)])
