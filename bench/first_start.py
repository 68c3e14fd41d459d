"""First start: `imgclf serve` on an empty model root until its first answer, no network, no training.

`python bench/first_start.py [--runs 3]` starts the real command on a fresh root each time and
prints the seconds from the process's start to its first 200 on `/readyz` and on `POST /predict`
(the demo version installed, loaded and warmed up on the way), with the baseline of the same
process on a root that already holds the version (so the demo's own cost shows as the difference).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SAMPLE = Path(__file__).resolve().parent.parent / "service" / "web" / "static" / "samples" / "rock.jpg"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_answer(root: Path) -> tuple[float, float]:
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(root), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": str(port), "IMGCLF_GRPC_PORT": str(grpc_port), "IMGCLF_LOG_LEVEL": "warning"}
    started = time.monotonic()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "imgclf"), "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    ready = answered = float("nan")
    try:
        while time.monotonic() - started < 120 and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    ready = time.monotonic() - started
                    r = httpx.post(f"{url}/predict", files={"file": ("rock.jpg", SAMPLE.read_bytes())}, timeout=30)
                    if r.status_code == 200:
                        answered = time.monotonic() - started
                        break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
    return ready, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        kept = Path(tmp) / "kept"
        # cold and warm runs alternate, so a busy moment of the machine does not land on one side only
        for i in range(args.runs):
            root = Path(tmp) / f"empty{i}"
            cold.append(first_answer(root))
            print(f"empty root, run {i + 1}: ready {cold[-1][0]:.1f} s, first /predict answered {cold[-1][1]:.1f} s",
                  flush=True)
            if i == 0:
                shutil.copytree(root, kept)
            warm.append(first_answer(kept))
            print(f"root with the version, run {i + 1}: first /predict answered {warm[-1][1]:.1f} s", flush=True)
    c, w = statistics.median(a for _, a in cold), statistics.median(a for _, a in warm)
    print(f"first answer from an empty root: median {c:.1f} s (max {max(a for _, a in cold):.1f} s); "
          f"with the version already there: {w:.1f} s; the demo's install costs {c - w:.1f} s "
          f"({c / w:.2f}x the baseline)")


if __name__ == "__main__":
    main()
