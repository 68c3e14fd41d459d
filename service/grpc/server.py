"""create_server(core, address) -> (server, port): the grpc.aio server with every service."""

from __future__ import annotations

import errno

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.auth import KeyChecker
from service.core import ServingCore
from service.grpc._generated.imgclf.v1 import classifier_pb2, classifier_pb2_grpc
from service.grpc._generated.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from service.grpc._generated.tensorflow_serving.apis import (
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from service.grpc.auth import ApiKeyInterceptor
from service.grpc.classifier import ImageClassifierServicer
from service.grpc.decode import DecodeErrorInterceptor
from service.grpc.kserve import InferenceServicer
from service.grpc.tfserving import ModelServicer, PredictionServicer
from service.grpc_options import channel_options
from service.tls import TLSFiles

# The *_pb2 modules, not just *_pb2_grpc, so the service descriptors are in the pool reflection reads.
SERVICE_NAMES = (
    classifier_pb2.DESCRIPTOR.services_by_name["ImageClassifier"].full_name,
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)


def server_credentials(tls: TLSFiles | None) -> grpc.ServerCredentials | None:
    """TLS from the checked PEM files; a client CA makes client certificates mandatory."""
    if tls is None:
        return None
    return grpc.ssl_server_credentials([(tls.key, tls.cert_chain)], root_certificates=tls.client_ca,
                                       require_client_auth=tls.client_ca is not None)


def create_server(core: ServingCore, address: str,
                  tls: TLSFiles | None = None) -> tuple[grpc.aio.Server, int, HealthServicer]:
    keys = KeyChecker(core.settings)
    # no SO_REUSEPORT: a second server on a taken port must fail, not share it silently
    server = grpc.aio.server(options=[*channel_options(core.settings.grpc_max_message_bytes),
                                      ("grpc.so_reuseport", 0)],
                             interceptors=[*([ApiKeyInterceptor(keys)] if keys.enabled else []),
                                           DecodeErrorInterceptor()])
    classifier_pb2_grpc.add_ImageClassifierServicer_to_server(ImageClassifierServicer(core), server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(core),
                                                                        server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), server)
    health_servicer = HealthServicer(core)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer.servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    credentials = server_credentials(tls)
    try:
        port = (server.add_secure_port(address, credentials) if credentials
                else server.add_insecure_port(address))
    except RuntimeError:  # grpc.aio reports a taken port this way
        port = 0
    if port == 0:
        raise OSError(errno.EADDRINUSE, f"gRPC port {address.rsplit(':', 1)[-1]} on {address.rsplit(':', 1)[0]} "
                      "is already in use (or not bindable): set IMGCLF_GRPC_PORT (or --grpc-port) to a free "
                      "port, or 0 for any")
    return server, port, health_servicer


class HealthServicer:
    """grpc.health.v1 whose status follows readiness ("" and every service name)."""

    def __init__(self, core: ServingCore):
        self.core = core
        self.servicer = health.aio.HealthServicer()
        self._last: bool | None = None

    async def refresh(self) -> None:
        ready = self.core.ready()
        if ready == self._last:
            return
        self._last = ready
        status = (health_pb2.HealthCheckResponse.SERVING if ready
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *SERVICE_NAMES):
            await self.servicer.set(name, status)
