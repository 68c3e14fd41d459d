"""A grpc.aio interceptor: a request that is not a valid protobuf gets INVALID_ARGUMENT, not UNKNOWN."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

_UNDECODABLE = object()  # what a request becomes when its bytes do not parse


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError and friends: the client's bytes, not a server fault
            return _UNDECODABLE
    return deserialize


async def _refuse(context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid protobuf message "
                        "for this method")


async def _checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    async for request in requests:
        if request is _UNDECODABLE:
            await _refuse(context)
        yield request


async def _replies(result: Any) -> AsyncIterator[Any]:
    """A streaming handler either yields its replies or is a coroutine that writes them itself
    (context.write, as grpc.health's Watch does)."""
    if inspect.isawaitable(result):
        await result
        return
    async for reply in result:
        yield reply


def _wrap(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    options = {"request_deserializer": _safe(handler.request_deserializer),
               "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request is _UNDECODABLE:
                await _refuse(context)
            return await inner_uu(request, context)
        return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if request is _UNDECODABLE:
                await _refuse(context)
            async for reply in _replies(inner_us(request, context)):
                yield reply
        return grpc.unary_stream_rpc_method_handler(unary_stream, **options)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            return await inner_su(_checked(requests, context), context)
        return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for reply in _replies(inner_ss(_checked(requests, context), context)):
            yield reply
    return grpc.stream_stream_rpc_method_handler(stream_stream, **options)


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return _wrap(handler)
