"""A grpc.aio interceptor: UNAUTHENTICATED without a valid key in the call's metadata."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.auth import KeyChecker
from service.errors import GRPC_CODE, Status

_CODE = GRPC_CODE[Status.UNAUTHENTICATED]
_MESSAGE = "missing or invalid API key: send metadata `authorization: Bearer <key>` or `x-api-key: <key>`"


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: KeyChecker) -> None:
        self.keys = keys

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ())}
        if handler is None or self.keys.allowed(handler_call_details.method,
                                                _bytes(metadata.get("authorization")),
                                                _bytes(metadata.get("x-api-key"))):
            return handler
        return _refusing(handler)


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind (unary or streaming) that only refuses."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(_CODE, _MESSAGE)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(_CODE, _MESSAGE)
        yield  # pragma: no cover  (makes this an async generator)

    kinds = {(False, False): grpc.unary_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler,
             (True, True): grpc.stream_stream_rpc_method_handler}
    make: Any = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(streaming if handler.response_streaming else unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
