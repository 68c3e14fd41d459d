"""Real servers for the service tests: ImgclfServer (uvicorn + grpc.aio) on port 0 in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.settings import ServeSettings


class RunningServer:
    """ImgclfServer on its own event loop in a background thread, so tests can use sync clients."""

    def __init__(self, settings: ServeSettings, backend: Any = None) -> None:
        self.settings = settings
        self.backend = backend
        self.server: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="imgclf-test-server")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from service.server import ImgclfServer

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.server = ImgclfServer(self.settings, self.backend)
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            if self.server is not None:  # half started: release its ports and threads
                with contextlib.suppress(Exception):
                    await self.server.stop()
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.stop()

    def start(self, timeout: float = 120) -> RunningServer:
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("server did not start")
        if self._error:
            raise self._error
        return self

    def stop(self, timeout: float = 60) -> None:
        if self.loop and self._stop and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop (e.g. registry.poll_once()) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def core(self) -> Any:
        return self.server.core

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.server.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"


def test_settings(model_root: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {"model_root": model_root, "host": "127.0.0.1", "rest_port": 0,
                              "grpc_port": 0, "poll_interval_s": 0.5, "shutdown_grace_s": 5}
    values.update(overrides)
    return ServeSettings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def metric_value(text: str, sample: str, **labels: str) -> float:
    """The sum of a /metrics sample (e.g. `imgclf_batch_size_count`) over the series whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and labels.items() <= s.labels.items())


@pytest.fixture(scope="session")
def serving(trained_model_root: Path) -> Iterator[RunningServer]:
    """One shared server over the tiny trained model (version 1); do not change its models."""
    server = RunningServer(test_settings(trained_model_root, version_labels="stable=1")).start()
    yield server
    server.stop()


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Start extra servers with their own settings; all are stopped after the test."""
    started: list[RunningServer] = []

    def start(model_root: Path, backend: Any = None, /, **overrides: Any) -> RunningServer:
        # positional-only backend object, so `backend="tfserving"` reaches the settings
        server = RunningServer(test_settings(model_root, **overrides), backend).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
