"""uvicorn's httptools protocol with the limits it lacks: header size, read timeouts, start time, early 429s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from service.rest.scope import STARTED, Admission, error_body

if TYPE_CHECKING:
    from starlette.types import Scope, Send

log = logging.getLogger(__name__)


def _reply(status: bytes, message: str) -> bytes:
    body = error_body(message)
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _run_now(coro: Coroutine[Any, Any, None]) -> bool:
    """Run a coroutine that has nothing to wait for to its end, here; False (and closed) if it waited."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


def guarded_protocol(max_header_bytes: int, read_timeout_s: float,
                     early: Admission | None = None) -> type[HttpToolsProtocol]:
    """A protocol class for uvicorn.Config(http=...) with these limits built in.

    With `early`, a classify request its version has no room for is refused inside the callback
    that parsed its head. As an ASGI task it would first wait its turn behind everything already
    queued on the loop, such as the replies of a batch of 32 that just finished: that wait, not
    the refusal, was the 429s' p99 at 3x capacity.
    """
    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._phase = "head"  # head -> body -> done, per request on the connection
            self._head_bytes = 0
            self._timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is dropped too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self._phase == "head":
                # counted per chunk, before the parser gathers a huge header in memory; a chunk
                # that also holds the end of a pipelined body may overcount (harmless: 431 + close)
                self._head_bytes += len(data)
                if self._head_bytes > max_header_bytes:
                    log.warning("request headers over %d bytes from %s: 431", max_header_bytes,
                                self.client)
                    self._refuse(b"431 Request Header Fields Too Large",
                                 f"request line and headers are over the {max_header_bytes} byte limit")
            elif self._phase == "body":
                self._arm()  # a pause longer than the read timeout drops the request

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope[STARTED] = time.monotonic()  # type: ignore[literal-required]
            if self._phase == "done":  # the next request on a kept-alive connection
                self._phase, self._head_bytes = "head", 0
                self._arm()  # its whole head must arrive within one read timeout

        def on_headers_complete(self) -> None:
            self._phase = "body"
            self._arm()
            super().on_headers_complete()

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            # the reply is written synchronously unless the transport is paused for writing (then
            # the ASGI path, where EarlyAdmission makes the same decision, can wait for it)
            if early is not None and not self.flow.write_paused:
                scope = cast("Scope", cycle.scope)
                # admitted: the place is in the scope, and the ASGI layer releases it when the request is over
                if (refusal := early.decide(scope)) is not None:
                    if not _run_now(early.refuse(scope, cast("Send", cycle.send), refusal)):
                        # writing the head filled the socket's buffer and the body had to wait: a
                        # half-sent 429 cannot be finished elsewhere, and this client reads nothing
                        self.transport.close()
                    return
            super()._start_asgi_task(cycle, app)

        def on_message_complete(self) -> None:
            self._phase = "done"
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._phase == "done":
                self._disarm()  # uvicorn's keep-alive timeout takes over between requests

        def _read_timed_out(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self.flow.read_paused:  # the server, not the client, is behind: wait for it
                self._arm()
                return
            log.info("read timeout (%.3g s) from %s: closing the connection", read_timeout_s, self.client)
            if self.cycle is None or not self.cycle.response_started:
                self._refuse(b"408 Request Timeout", f"request not received within {read_timeout_s:g} s")
            else:
                self.transport.close()

        def _refuse(self, status: bytes, message: str) -> None:
            self.transport.write(_reply(status, message))
            self.transport.close()

        def shutdown(self) -> None:
            # a request still sending its body is not in-flight work yet: do not wait for it
            if self._phase != "done" and self.cycle is not None and not self.cycle.response_started:
                self.transport.close()
                return
            super().shutdown()

    return GuardedHttpToolsProtocol
