"""Early admission: refuse a classify request from its head alone while its version's queue is full."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import request_log
from service.auth import KeyChecker
from service.core import ServingCore
from service.errors import OverloadedError, ServiceError
from service.rest.guards import send_json
from service.rest.middleware import protocol_of
from service.rest.protocol import STARTED

log = logging.getLogger(__name__)
TICKET = "imgclf.admitted"  # scope key: the place a request let in holds (its release), or None

# The classify routes and the route template each one is counted under in the metrics.
_TFSERVING = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(?:predict|classify)$")
_V2 = re.compile(r"^/v2/models/([^/]+)(?:/versions/(\d+))?/infer$")
_ROUTES = {"rest": "/predict", "tfserving": "/v1/models/{tail:path}", "v2": "/v2/models/{model}/infer",
           "v2-version": "/v2/models/{model}/versions/{ver}/infer"}


@dataclass(frozen=True)
class Refusal:
    """A classify request its version has no room for: the route it is counted under, and why."""

    route: str
    error: OverloadedError


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

    def __init__(self, app: ASGIApp, core: ServingCore, keys: KeyChecker) -> None:
        self.app = app
        self.core = core
        self.keys = keys
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
        path: str = scope["path"]
        version: int | None = None
        label: str | None = None
        if path == "/predict":
            query = parse_qs(scope["query_string"].decode("latin-1")) if scope["query_string"] else {}
            name = query.get("model", [self.core.default_model])[0]
            try:
                version = int(query["version"][0]) if "version" in query else None
            except ValueError:
                return None
            label = query.get("label", [None])[0]
            route = _ROUTES["rest"]
        elif (m := _TFSERVING.match(path)) is not None:
            name, label = m[1], m[3]
            version = int(m[2]) if m[2] else None
            route = _ROUTES["tfserving"]
        elif (m := _V2.match(path)) is not None:
            name = m[1]
            version = int(m[2]) if m[2] else None
            route = _ROUTES["v2-version" if m[2] else "v2"]
        else:
            return None
        if self.keys.enabled:
            headers = dict(scope["headers"])
            if not self.keys.allowed(path, headers.get(b"authorization"), headers.get(b"x-api-key")):
                return None  # the normal path answers 401: load is nobody's business without a key
        try:
            served = self.core.registry_for(name).resolve(version, label)
            if served.batcher is None:
                return None
            return served.batcher.admit()
        except OverloadedError as exc:
            return Refusal(route, exc)
        except ServiceError:
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
