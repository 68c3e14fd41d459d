"""Real servers for the service tests: ImgclfServer (uvicorn + grpc.aio) on port 0 in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import io
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


def rest_predictions(server: RunningServer, images: list[bytes]) -> list[dict[str, Any]]:
    """/predict's predictions for the images, one request."""
    import httpx

    files = [("file", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    r = httpx.post(f"{server.rest_url}/predict", files=files, timeout=60)
    assert r.status_code == 200, r.text
    return list(r.json()["predictions"])


def stage_runs(server: RunningServer) -> float:
    """How many pictures the hand stage has read (imgclf_hand_stage_seconds' count)."""
    import httpx

    return metric_value(httpx.get(f"{server.rest_url}/metrics").text, "imgclf_hand_stage_seconds_count")


SAMPLES = Path(__file__).resolve().parents[2] / "service" / "web" / "static" / "samples"
HANDS = ("paper", "rock", "scissors")


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    """The web page's sample photos: a hand per class, and a portrait without one (`no-hand`)."""
    return {p.stem: p.read_bytes() for p in SAMPLES.glob("*.jpg")}


def sample_jpeg(label: str, index: int) -> bytes:
    """The page's `label` sample (a rendered hand the hand stage finds), turned, mirrored and lit differently
    for every index, so each is a new example; `no-hand` is the portrait in which it finds none."""
    from PIL import Image, ImageEnhance, ImageOps

    picture = Image.open(SAMPLES / f"{label}.jpg").convert("RGB")
    if index:
        picture = ImageOps.mirror(picture) if index % 2 else picture
        picture = picture.rotate((index % 5 - 2) * 6, fillcolor=(255, 255, 255))
        picture = ImageEnhance.Brightness(picture).enhance(0.8 + 0.04 * (index % 8))
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def sample_pose() -> Any:
    """A pose classifier trained on the landmarks of the three sample hands and 7 varied copies of each (no
    external data): it reads each of them right. Its labels are the hands' only; a version's `none` gets 0."""
    import numpy as np
    from PIL import Image

    from hands import HandStage
    from training.pose import train_pose

    stage = HandStage(threads=1, budget_ms=float("inf"))
    marks, targets = [], []
    for target, label in enumerate(HANDS):
        for index in range(8):
            hand = stage.find(Image.open(io.BytesIO(sample_jpeg(label, index))).convert("RGB"))
            assert hand is not None, (label, index)
            marks.append(hand.landmarks)
            targets.append(target)
    return train_pose(np.stack(marks), np.array(targets), HANDS, seed=0)


def demo_version(root: Path, pose: Any = None) -> Path:
    """The shipped demo as `<root>/rps/1` (labels none, paper, rock, scissors), with `pose` (a
    PoseClassifier) as its pose classifier file, or without one when None (the demo ships its own, trained on
    rps-train: tests that must not depend on it bring theirs); returns the root."""
    import json

    from service.demo import install_demo
    from version_format.layout import POSE_FILE

    version = install_demo(root, "rps")
    assert version is not None
    if pose is not None:
        (version / POSE_FILE).write_text(json.dumps(pose.to_dict()) + "\n")
    else:
        (version / POSE_FILE).unlink(missing_ok=True)
    return root


@pytest.fixture(scope="session")
def hand_serving(tmp_path_factory: pytest.TempPathFactory, sample_pose: Any) -> Iterator[RunningServer]:
    """A server over the demo version with the samples' pose classifier (IMGCLF_HANDS=auto runs the hand
    stage for it), the stage's time budget wide enough that a loaded machine finds the same hands."""
    root = demo_version(tmp_path_factory.mktemp("hands"), sample_pose)
    server = RunningServer(test_settings(root, hands_budget_ms=1000)).start()
    yield server
    server.stop()
