"""Turn ServiceError into a gRPC status: the one place the taxonomy meets gRPC."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from service.errors import ServiceError

log = logging.getLogger(__name__)
T = TypeVar("T")


def grpc_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except ServiceError as exc:
            if exc.retry_after is not None:
                context.set_trailing_metadata((("retry-after", str(max(1, round(exc.retry_after)))),))
            await context.abort(exc.grpc_code, exc.message)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception:
            log.exception("unhandled error in %s", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
        raise AssertionError("unreachable")  # abort() always raises

    return wrapper


def deadline_of(context: grpc.aio.ServicerContext, default: float) -> float:
    """The time.monotonic() deadline: the client's, capped by the server's own request timeout."""
    remaining = context.time_remaining()
    return time.monotonic() + (default if remaining is None else max(0.001, min(default, remaining)))
