"""Early admission: refuse a classify request from its head alone while its version's queue is full."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from service import request_log
from service.auth import KeyChecker
from service.core import ServingCore
from service.errors import OverloadedError, ServiceError
from service.rest.middleware import protocol_of
from service.rest.routes_tfserving import classify_target
from service.rest.scope import (
    CLASSIFY_ROUTES,
    PREDICT_ROUTE,
    STARTED,
    TFSERVING_ROUTE,
    TICKET,
    Refusal,
    send_json,
)

log = logging.getLogger(__name__)

class EarlyAdmission:
    """The outermost ASGI layer. At 3x capacity the event loop, not the model, is what runs out,
    so a request that is going to be refused must cost almost nothing: the queue is checked as
    soon as the request head is parsed, and a full queue answers 429 (with Retry-After) without
    reading the body and without the middleware and routing stack. Anything this check cannot
    decide cheaply (an unknown model, a bad version, a missing key) goes the normal way and gets
    the normal answer. A request let in holds a place (Batcher.admit) until it is over, so the
    decision is made once, at the head, and not again after its body was read. With imgclf's
    protocol (service/rest/protocol.py) the decision and the 429 happen in the callback that
    parsed the head; this layer then only releases the place.
    """

    def __init__(self, app: FastAPI, core: ServingCore, keys: KeyChecker) -> None:
        self.app = app
        self.core = core
        self.keys = keys
        # the classify routes as the app defines them, by name (service/rest/scope.py): their paths and
        # parameters are written once, in the route modules, and a moved route moves here too
        routes: dict[str, APIRoute] = app.state.classify_routes
        missing = set(CLASSIFY_ROUTES) - set(routes)
        if missing:
            raise RuntimeError(f"early admission: the app has no route named {sorted(missing)}")
        self._routes = [routes[name] for name in CLASSIFY_ROUTES]
        self._refused_since_log = 0
        self._last_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # usually decided already, by the protocol when it parsed the head (service/rest/protocol.py)
        if TICKET not in scope and (refusal := self.decide(scope)) is not None:
            await self.refuse(scope, send, refusal)
            return
        release = scope[TICKET]
        if release is None:
            await self.app(scope, receive, send)
            return

        async def releasing(message: Message) -> None:
            # the place is free before the answer's last bytes go out: a client that sends its next
            # request as soon as it has the answer must find it free (c connections, limit c: no 429)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            await self.app(scope, receive, releasing)
        finally:
            release()

    def decide(self, scope: Scope) -> Refusal | None:
        """The one decision per request, at its head: a Refusal to send, or None with the request's
        place (its release, or None when it needs none) left in the scope under TICKET."""
        decision = self.admit(scope)
        if isinstance(decision, Refusal):
            return decision
        scope[TICKET] = decision
        return None

    def admit(self, scope: Scope) -> Refusal | Callable[[], None] | None:
        """For a classify call: a Refusal when its version has no room, else the release of the
        place it now holds (call it when the request is over). None for the rest."""
        if scope["method"] != "POST":
            return None
        target = self._target(scope)
        if target is None:
            return None
        route, name, version, label = target
        path: str = scope["path"]
        if self.keys.enabled:
            headers = dict(scope["headers"])
            if not self.keys.allowed(path, headers.get(b"authorization"), headers.get(b"x-api-key")):
                return None  # the normal path answers 401: load is nobody's business without a key
        try:
            # the early-admission fast path: the one REST layer that reads the registry, for the batcher
            served = self.core.registry_for(name).resolve(version, label)
            if served.batcher is None:
                return None
            return served.batcher.admit()
        except OverloadedError as exc:
            return Refusal(route, exc)
        except ServiceError:
            return None

    def _target(self, scope: Scope) -> tuple[str, str, int | None, str | None] | None:
        """(route template, model, version, label) of a classify request, or None."""
        for route in self._routes:
            match, child = route.matches(scope)
            if match is not Match.FULL:
                continue
            params = child["path_params"]
            if route.name == PREDICT_ROUTE:
                query = parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {}
                try:
                    version = int(query["version"][0]) if "version" in query else None
                except ValueError:
                    return None
                return route.path, query.get("model", [self.core.default_model])[0], version, \
                    query.get("label", [None])[0]
            if route.name == TFSERVING_ROUTE:
                found = classify_target(scope["path"])
                return None if found is None else (route.path, *found)
            version_text = params.get("ver")
            if version_text is not None and not (str(version_text).isdigit() and len(str(version_text)) <= 18):
                return None
            return route.path, params["model"], int(version_text) if version_text is not None else None, None
        return None

    async def refuse(self, scope: Scope, send: Send, refusal: Refusal) -> None:
        """Send the 429 and count it, as the full stack would have; the body is never read."""
        route, error = refusal.route, refusal.error
        started = time.perf_counter()
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        await send_json(send, 429, error.message,
                        [(b"retry-after", str(max(1, round(error.retry_after or 1))).encode()),
                         (b"x-request-id", request_log.request_id(given).encode())])
        protocol = protocol_of(scope["path"])
        self.core.metrics.requests.labels(route, protocol, "429").inc()
        self.core.metrics.latency.labels(route, protocol).observe(time.perf_counter() - started)
        if (first_byte := scope.get(STARTED)) is not None:
            self.core.metrics.refused.observe(time.monotonic() - first_byte)
        self._note_refused()

    def _note_refused(self) -> None:
        # one line a second at most: a log line per refused request would cost what refusing saves
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= 1.0:
            log.warning("queue full: %d requests refused with 429 since the last report", self._refused_since_log)
            self._refused_since_log, self._last_log = 0, now
