"""What the REST layers share without importing each other: the keys they leave in an ASGI request's scope,
the one JSON error body, and the contract between the HTTP protocol and early admission.

Layers, outermost first: the protocol (protocol.py: limits, the request's start time, early 429s), early
admission (admission.py), metrics, keys, the deadline, the body limit (middleware.py, guards.py), the
`/predict` fast path (fast_path.py), then FastAPI's routes. Each imports this module, none the others.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Scope, Send

from service.errors import OverloadedError

STARTED = "imgclf.started"  # time.monotonic() of the request's first byte (set by the protocol)
DEADLINE = "imgclf.deadline"  # time.monotonic() by which the answer is due (set by DeadlineMiddleware)
TICKET = "imgclf.admitted"  # the place an admitted classify request holds (its release), or None
CLIENT_CLOSED = 499  # nginx's status for "client closed request"; only ever seen in metrics

# The names of the routes that classify: the route modules name their routes with these, and early
# admission finds the routes by them (their paths and parameters stay written in one place).
PREDICT_ROUTE = "predict"
TFSERVING_ROUTE = "tfserving"
V2_INFER_ROUTE = "v2-infer"
V2_INFER_VERSION_ROUTE = "v2-infer-version"
CLASSIFY_ROUTES = (PREDICT_ROUTE, TFSERVING_ROUTE, V2_INFER_ROUTE, V2_INFER_VERSION_ROUTE)


def error_body(message: str) -> bytes:
    """Every error a REST client gets: {"error": "..."} (escaped: a message may quote the client's input)."""
    return json.dumps({"error": message}).encode()


def error_response(message: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """The error body as a Starlette response, for exception handlers and routes."""
    return Response(error_body(message), status_code=status, headers=headers, media_type="application/json")


async def send_json(send: Send, status: int, message: str,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """The error body straight to ASGI, for layers that answer before the app runs."""
    body = error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Refusal:
    """A classify request its version has no room for: the route it is counted under, and why."""

    route: str
    error: OverloadedError


class Admission(Protocol):
    """What the protocol asks at a request's head (service/rest/admission.py answers)."""

    def decide(self, scope: Scope) -> Refusal | None:
        """A Refusal to send now, or None with the request's place left in the scope under TICKET."""
        ...

    def refuse(self, scope: Scope, send: Send, refusal: Refusal) -> Coroutine[Any, Any, None]:
        """Send the 429 and count it."""
        ...
