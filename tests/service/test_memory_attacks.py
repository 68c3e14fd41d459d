"""The costly attacks against `imgclf serve` in its own process: the memory each may cost is read
from the server's RSS (psutil), sampled every few milliseconds while the attack runs."""

from __future__ import annotations

import base64
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from PIL import Image

from tests.service.test_process import start_serve

MB = 1024 * 1024
BUDGET = 512 * MB  # the most one request (or a burst of them) may add to the server's RSS


class PeakRss:
    """Highest RSS of `pid` while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self.baseline = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.fixture(scope="module")
def server(trained_model_root, sample_jpeg) -> Iterator[tuple[int, str]]:
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(trained_model_root), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": "0", "IMGCLF_GRPC_PORT": "0"}
    proc, _, url = start_serve(env)
    # warm every path once, so the baseline includes what any first request allocates
    for _ in range(3):
        httpx.post(f"{url}/predict", content=_png(2000), headers={"content-type": "image/png"}, timeout=60)
        httpx.post(f"{url}/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"}, timeout=60)
    yield proc.pid, url
    proc.terminate()
    proc.wait(30)


def _png(side: int, colour: tuple[int, int, int] = (200, 120, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _animated_gif(side: int, frames: int) -> bytes:
    """`frames` alternating solid side x side frames; two are encoded, the rest are copies of their blocks."""
    buf = io.BytesIO()
    two = [Image.new("RGB", (side, side), c) for c in ((255, 0, 0), (0, 0, 255))]
    two[0].save(buf, format="GIF", save_all=True, append_images=two[1:], optimize=False)
    data = buf.getvalue()
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    header_end, start, blocks = pos, pos, []
    while data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            label, p = data[pos + 1], pos + 2
            while data[p]:
                p += data[p] + 1
            pos = p + 1
            if label == 0xFF and not blocks:  # the looping extension belongs to the header
                header_end = start = pos
        else:  # 0x2C image descriptor, local colour table, LZW data
            flags, p = data[pos + 9], pos + 10
            p += (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0) + 1
            while data[p]:
                p += data[p] + 1
            pos = p + 1
            blocks.append(data[start:pos])
            start = pos
    assert len(blocks) == 2
    return data[:header_end] + b"".join(blocks[i % 2] for i in range(frames)) + b";"


def test_animated_gif_costs_one_frame(server):
    pid, url = server
    gif = _animated_gif(4000, 60)  # 60 x 16 M pixels: decoding every frame would take 2.9 GB
    assert len(gif) < 2 * MB and Image.open(io.BytesIO(gif)).n_frames == 60
    with PeakRss(pid) as rss:
        r = httpx.post(f"{url}/predict", content=gif, headers={"content-type": "image/gif"}, timeout=60)
    print(f"animated GIF 60 x 4000x4000: {r.status_code}, RSS +{rss.growth / MB:.0f} MB")
    assert r.status_code == 200, r.text
    assert rss.growth < BUDGET


def test_largest_allowed_requests_at_once_stay_in_budget(server):
    """Three clients each send 4 images of 16 M pixels (64 M: the request limit) at once."""
    pid, url = server
    body = {"instances": [{"b64": base64.b64encode(_png(4000, (i * 60, 90, 200))).decode()} for i in range(4)]}
    with PeakRss(pid) as rss, ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: httpx.post(f"{url}/v1/models/rps:predict", json=body, timeout=120),
                                range(3)))
    print(f"3 x 4 x 16 MP at once: {[r.status_code for r in replies]}, RSS +{rss.growth / MB:.0f} MB")
    assert all(r.status_code == 200 for r in replies), [r.text[:200] for r in replies]
    assert rss.growth < BUDGET


def test_request_over_the_pixel_budget_is_refused_cheaply(server):
    pid, url = server
    body = {"instances": [{"b64": base64.b64encode(_png(4000)).decode()}] * 64}
    with PeakRss(pid) as rss:
        r = httpx.post(f"{url}/v1/models/rps:predict", json=body, timeout=120)
    print(f"64 x 16 MP: {r.status_code}, RSS +{rss.growth / MB:.0f} MB")
    assert r.status_code == 413
    assert rss.growth < BUDGET


def test_huge_header_costs_nothing(server):
    pid, url = server
    host, port = url.removeprefix("http://").split(":")
    with PeakRss(pid) as rss, socket.create_connection((host, int(port)), timeout=10) as s:
        started = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
        sent = 0
        try:
            while sent < 128 * MB:
                s.sendall(b"a" * MB)
                sent += MB
        except OSError:
            pass
        elapsed = time.monotonic() - started
    print(f"128 MB header: cut after {sent / MB:.0f} MB sent, {elapsed:.2f} s, RSS +{rss.growth / MB:.0f} MB")
    assert sent < 128 * MB and elapsed < 5
    assert rss.growth < 32 * MB
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
