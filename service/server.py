"""One process, one event loop: uvicorn (REST) and grpc.aio (gRPC) over one ServingCore."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Iterator

import grpc
import uvicorn
from fastapi import FastAPI

from service import heap
from service.auth import KeyChecker
from service.backends.base import Backend
from service.core import ServingCore
from service.grpc.server import HealthServicer, create_server
from service.rest.admission import EarlyAdmission
from service.rest.app import create_app
from service.rest.protocol import guarded_protocol
from service.settings import ServeSettings
from service.teach.core import TeachCore
from service.tls import load_tls

log = logging.getLogger(__name__)


def in_use_message(what: str, host: str, port: int, env: str, flag: str) -> str:
    return f"{what} port {port} on {host} is already in use: set {env} (or {flag}) to a free port, or 0 for any"


def make_backend(settings: ServeSettings) -> Backend:
    if settings.backend == "tfserving":
        from service.backends.tfserving import TFServingBackend

        return TFServingBackend(settings)
    from service.backends.local import LocalBackend

    return LocalBackend(settings.model_root, runtime=settings.runtime,
                        int8_max_drop_points=settings.int8_max_drop_points,
                        litert_threads=settings.litert_threads,
                        litert_max_batch_size=settings.litert_max_batch_size)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ImgclfServer decides when both servers stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ImgclfServer:
    """Starts and stops both front ends around one core; ports may be 0 (tests)."""

    def __init__(self, settings: ServeSettings, backend: Backend | None = None):
        self.settings = settings
        self.core = ServingCore(settings, backend or make_backend(settings))
        self.teach: TeachCore | None = TeachCore(settings, self.core) if settings.teach else None
        self.app: FastAPI | None = None  # the REST app under the early-admission layer
        self.rest_port = 0
        self.grpc_port = 0
        self._uvicorn: _Uvicorn | None = None
        self._uvicorn_task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        # Model and decode calls release the GIL; getting it back waits for the thread holding it
        # (the event loop, under load) to reach the switch interval. At Python's 5 ms default each
        # ~1 ms int8 call can wait 5 ms more: a shorter interval keeps the threads moving.
        sys.setswitchinterval(s.gil_switch_interval_ms / 1000)
        specs = self.core.models_set.read_config()  # a bad models.config stops us before any bind
        s.check_exposure()  # so do open teach endpoints and unusable TLS files (StartupError)
        tls = load_tls(s)
        sock = socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit this: without it Nagle holds a response body back until
        # the client's delayed ACK of the headers (~40 ms per keep-alive request)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((s.host, s.rest_port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, in_use_message("REST", s.host, s.rest_port, "IMGCLF_REST_PORT", "--rest-port")
                          if exc.errno == errno.EADDRINUSE else f"cannot bind REST to {s.host}:{s.rest_port}: "
                          f"{exc.strerror}") from None
        self.rest_port = sock.getsockname()[1]
        # grpc before the model: a client sees NOT_SERVING instead of a refused connection
        self._grpc, self.grpc_port, self._health = create_server(
            self.core, f"{'[' + s.host + ']' if ':' in s.host else s.host}:{s.grpc_port}", tls)
        await self._grpc.start()
        await self._health.refresh()
        self.app = create_app(s, self.core, self.teach)
        app = EarlyAdmission(self.app, self.core, KeyChecker(s))
        client_ca = s.tls_client_ca_file
        # JSON logs: uvicorn's loggers go through ours instead of its own formatter
        config = uvicorn.Config(app, log_level=s.log_level, access_log=False, lifespan="off",
                                log_config=None if s.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
                                timeout_graceful_shutdown=int(s.shutdown_grace_s),
                                http=guarded_protocol(s.max_header_bytes, s.read_timeout_s, early=app),
                                ssl_certfile=s.tls_cert_file, ssl_keyfile=s.tls_key_file,
                                ssl_ca_certs=str(client_ca) if client_ca else None,
                                ssl_cert_reqs=ssl.CERT_REQUIRED if client_ca else ssl.CERT_NONE)
        self._uvicorn = _Uvicorn(config)
        self._uvicorn_task = asyncio.get_running_loop().create_task(
            self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started:
            if self._uvicorn_task.done():
                await self._uvicorn_task  # raises what went wrong
                raise RuntimeError("REST server stopped during start-up")
            await asyncio.sleep(0.01)
        if self.teach is not None:
            self.teach.recover([spec.name for spec in specs])
        await self.core.start(specs)  # first scan and load; not ready until a version is warm
        # before traffic: start-up garbage collected, the long-lived heap frozen (see service.heap;
        # p99 at c=8 on the int8 runtime 121-166 ms without, 47-52 ms with)
        heap.collect_and_freeze("before serving")
        self._health_task = asyncio.get_running_loop().create_task(self._follow_readiness())
        log.info("serving %s: REST on %s:%d, gRPC on %s:%d", self.core.models(), s.host, self.rest_port,
                 s.host, self.grpc_port)

    async def _follow_readiness(self) -> None:
        assert self._health is not None
        while True:
            await self._health.refresh()
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        """Graceful: stop taking work, let in-flight requests finish, then unload."""
        self.core.draining = True
        if self._health is not None:
            await self._health.refresh()
        if self._health_task:
            self._health_task.cancel()
        grace = self.settings.shutdown_grace_s
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._uvicorn_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._uvicorn_task
        if self.teach is not None:
            await self.teach.stop()  # a running fine-tune is cancelled: no version from a stopped server
        await self.core.stop()
        self._stopped.set()

    async def run_until_signal(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("signal received: finishing in-flight requests, then exiting")
        await self.stop()
