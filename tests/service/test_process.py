"""`imgclf serve` as a real process: start-up, graceful SIGTERM, bad settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_finishes_in_flight_requests_then_exits(trained_model_root, sample_jpeg):
    rest, grpc_port = free_port(), free_port()
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(trained_model_root), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": str(rest), "IMGCLF_GRPC_PORT": str(grpc_port),
           # a long batch delay keeps requests in flight when the signal arrives
           "IMGCLF_MAX_BATCH_DELAY_MS": "800", "IMGCLF_MAX_BATCH_SIZE": "64"}
    proc = subprocess.Popen([str(BIN / "imgclf"), "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{rest}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("server never became ready")
        results: list[int] = []

        def call() -> None:
            r = httpx.post(f"{url}/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"},
                           timeout=30)
            results.append(r.status_code)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the requests are queued for their batch now
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        assert results == [200] * 6
        assert proc.wait(30) == 0
        # after the drain nothing listens any more
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            raise AssertionError("REST still answering after exit")
        except httpx.ConnectError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    assert "Traceback" not in output, output


def test_bad_setting_stops_with_one_line(tmp_path):
    env = {**os.environ, "IMGCLF_MAX_BATCH_SIZE": "0"}
    r = subprocess.run([str(BIN / "imgclf"), "serve", "--model-root", str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "IMGCLF_MAX_BATCH_SIZE" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
