"""ASGI guards: API keys (401), and one deadline from the first byte to the answer (504/499)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import UNAUTHENTICATED_MESSAGE, KeyChecker
from service.errors import HTTP_STATUS, Status
from service.rest.scope import CLIENT_CLOSED, DEADLINE, STARTED, send_json

log = logging.getLogger(__name__)


class AuthMiddleware:
    """401 without a valid key (Authorization: Bearer or X-API-Key), except on exempt paths."""

    def __init__(self, app: ASGIApp, keys: KeyChecker) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys.enabled:
            headers = dict(scope["headers"])
            if not self.keys.allowed(scope["path"], headers.get(b"authorization"),
                                     headers.get(b"x-api-key")):
                await send_json(send, HTTP_STATUS[Status.UNAUTHENTICATED], UNAUTHENTICATED_MESSAGE,
                                [(b"www-authenticate", b'Bearer realm="imgclf"')])
                return
        await self.app(scope, receive, send)


class DeadlineMiddleware:
    """The request deadline starts at the first byte (reading the body counts); past it the
    client gets 504 and the work is cancelled. A client that leaves after sending its body
    cancels the work too (the model queue drops it) and is counted as 499, not as an error."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = scope.get(STARTED, time.monotonic()) + self.timeout_s
        scope[DEADLINE] = deadline
        body_done = asyncio.Event()
        started = False

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done.set()
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def client_left() -> None:
            await body_done.wait()
            # after the whole body the server only ever delivers http.disconnect, which also
            # comes once the response is complete; the app task is done by then
            await receive()

        work = asyncio.ensure_future(self.app(scope, receiving, sending))
        watch = asyncio.ensure_future(client_left())
        try:
            done, _ = await asyncio.wait({work, watch}, timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if work in done or (watch in done and started):
            await work  # re-raises what the app raised; a finished answer is not cut short
            return
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        if started:  # half a response went out: nothing more can be said on this connection
            return
        if watch in done:
            log.info("client closed %s %s before the answer: work cancelled", scope["method"], scope["path"])
            await send({"type": "http.response.start", "status": CLIENT_CLOSED, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            # connection: close, as the rest of a slow body may still be on its way
            await send_json(send, 504, f"no answer within the {self.timeout_s:g} s deadline (counted "
                            "from the request's first byte)", [(b"connection", b"close")])
