"""Every REST route and gRPC method a server has, and which of them answer without an API key.

The REST routes come from the running app's own OpenAPI document plus the routes it leaves out of it (the
page, its files, the docs); the gRPC methods from the descriptors of the services create_server registers.
Used against in-process servers and against the image and compose stacks (tests/deploy).
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import httpx
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection

from service.grpc.server import SERVICE_NAMES

# The documented exemptions (docs/operations.md, "Locking it down"): health on both transports, and /metrics.
EXEMPT_REST = {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"}
EXEMPT_GRPC = {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady",
               "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/List"}
REFLECTION = f"/{reflection.SERVICE_NAME}/ServerReflectionInfo"
# Outside the OpenAPI document: the page, one of its files, the docs page and its script, the document
NOT_IN_SCHEMA = [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/docs"), ("GET", "/docs/init.js"),
                 ("GET", "/openapi.json")]


def rest_routes(openapi: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation in the document, plus the routes outside it."""
    fill = {"model": "rps", "name": "rps", "ver": "1", "version": "1", "label": "stable", "tail": "rps:predict"}
    out = []
    for path, ops in openapi["paths"].items():
        for method in ops:
            out.append((method.upper(), re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m[1], "x"), path)))
    return out + NOT_IN_SCHEMA


def grpc_methods() -> list[tuple[str, bool, bool]]:
    """(full method path, client streaming, server streaming) of every service the gRPC server registers."""
    names = [*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    methods = []
    for name in names:
        service = descriptor_pool.Default().FindServiceByName(name)
        methods.extend((f"/{name}/{m.name}", m.client_streaming, m.server_streaming) for m in service.methods)
    return methods


def open_rest_routes(base_url: str, openapi: dict[str, Any], **client: Any) -> list[tuple[str, str, int]]:
    """The routes that answer a request without a key with anything but 401."""
    opened = []
    with httpx.Client(base_url=base_url, timeout=30, **client) as http:
        for method, path in rest_routes(openapi):
            status = http.request(method, path).status_code
            if status != 401:
                opened.append((method, path, status))
    return opened


def open_grpc_methods(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """The methods that do not answer UNAUTHENTICATED to a call with `metadata` (empty bytes as the request)."""
    identity = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    kinds = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
             (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    opened = []
    for path, client_streaming, server_streaming in grpc_methods():
        call = kinds[(client_streaming, server_streaming)](path, **identity)
        request = iter([b""]) if client_streaming else b""
        try:
            result = call(request, metadata=metadata, timeout=10)
            if server_streaming:
                next(iter(result))  # Health/Watch streams forever: the first message is enough
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                continue
        opened.append(path)
    return opened
