"""`POST /predict` without a query string, answered beside FastAPI rather than through it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Request, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core import ServingCore
from service.rest.routes_native import predict_reply

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class PredictFastPath:
    """`POST /predict` without a query string, answered without FastAPI's routing, dependency solving
    and exception layers: on the int8 runtime those cost the event loop about as much as the rest of the
    request, and the event loop is what bounds throughput. The same `predict_reply` as the route, the
    app's own exception handlers, and the route's template in the scope (metrics and request logs),
    so clients cannot tell the two apart; anything else goes on to the app."""

    def __init__(self, app: ASGIApp, core: ServingCore, handlers: Mapping[Any, Handler],
                 route: BaseRoute) -> None:
        self.app = app
        self.core = core
        self.handlers = handlers  # the app's dict: handlers registered after this is built count too
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["path"] == "/predict" and scope["method"] == "POST"
                and not scope["query_string"]):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        try:
            reply = await predict_reply(self.core, request)
        except Exception as exc:
            handler = next((self.handlers[c] for c in type(exc).__mro__ if c in self.handlers), None)
            if handler is None:
                raise
            answer = handler(request, exc)
            reply = await answer if inspect.isawaitable(answer) else answer
        await reply(scope, receive, send)
