"""ASGI middleware: a cap on request bodies (413) and per-route request metrics."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import request_log
from service.errors import PayloadTooLargeError
from service.metrics import Metrics
from service.rest.scope import send_json


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes: at once by Content-Length, else while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                await send_json(send, 413, f"request body of {int(value)} bytes is over the {self.limit} "
                                           "byte limit")
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # raised inside the route, so the app's ServiceError handler answers 413
                raise PayloadTooLargeError(f"request body is over the {self.limit} byte limit")
            return message

        await self.app(scope, limited, send)


class MetricsMiddleware:
    """Counts requests by route template, protocol and status, and times them; gives each request an id
    (the client's X-Request-ID or a new one), echoes it back, and writes the request's log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = request_log.request_id(given)
        protocol = protocol_of(scope["path"])
        entry = request_log.begin(rid, protocol, scope["path"])

        async def tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, protocol, str(status)).inc()
            self.metrics.latency.labels(path, protocol).observe(time.perf_counter() - started)
            entry["route"] = path
            request_log.end(entry, status)


def protocol_of(path: str) -> str:
    """The metrics' protocol label of a REST path."""
    if path.startswith("/v1/"):
        return "tfserving"
    if path.startswith("/v2"):
        return "v2"
    return "rest"

