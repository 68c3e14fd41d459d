"""Teach it your hand, end to end: 3 x 30 captured frames, Train, the gate, the swap, /predict latency meanwhile.

`python bench/teach.py [--frames 30] [--clients 2]` installs the shipped demo version in a fresh model root,
starts `imgclf serve` with IMGCLF_TEACH=true, stores 30 webcam-like frames per move (one person's hand: one
rendered hand per move with small shifts, turns, scale, light and noise, as a minute of holding a button gives),
then presses Train while clients keep calling /predict. It prints the seconds from Train to the new version
answering /predict, the p50/p99 of /predict before and during the job, the gate's figures, and the accuracy of
both versions on 30 fresh frames per move that neither the job nor the gate saw.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, wait_ready  # bench/serving.py, beside this script

MOVES = ("rock", "paper", "scissors")


class Load:
    """Closed-loop clients calling POST /predict; latencies are tagged with the phase they fell in."""

    def __init__(self, url: str, image: bytes, clients: int, rate: float) -> None:
        self.url, self.image = url, image
        self.interval = clients / rate if rate > 0 else 0.0  # per client; 0: back to back
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            next_at = time.perf_counter()
            while not self._stop.is_set():
                if self.interval:  # paced, like a game sending frames: wait for the next slot
                    next_at += self.interval
                    self._stop.wait(max(0.0, next_at - time.perf_counter()))
                phase = self.phase
                started = time.perf_counter()
                r = client.post(f"{self.url}/predict", files={"file": ("f.jpg", self.image, "image/jpeg")})
                if r.status_code == 200:
                    self.latencies[phase].append((time.perf_counter() - started) * 1000)
                else:
                    self.errors += 1

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms over {len(values)} requests"


def accuracy(client: httpx.Client, url: str, frames: dict[str, list[bytes]], version: int) -> float:
    right = total = 0
    for move, images in frames.items():
        for image in images:
            r = client.post(f"{url}/predict?version={version}", files={"file": ("f.jpg", image, "image/jpeg")})
            r.raise_for_status()
            right += r.json()["predictions"][0]["label"] == move
            total += 1
    return right / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="Frames captured per move")
    parser.add_argument("--clients", type=int, default=2, help="Concurrent /predict clients during the run")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="Requests per second over all clients (0: each client sends back to back)")
    parser.add_argument("--base-data", default="synthetic",
                        help="IMGCLF_TEACH_BASE_DATA: base data mixed in and sliced for the reference set")
    parser.add_argument("--baseline-s", type=float, default=10.0, help="Seconds of load before Train")
    args = parser.parse_args()
    from service.demo import install_demo
    from training.synthetic import held_still

    work = Path(tempfile.mkdtemp(prefix="imgclf-teach-bench-"))
    install_demo(work / "models", "rps")
    port = free_port()
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(work / "models"), "IMGCLF_DATA_ROOT": str(work / "data"),
           "IMGCLF_TEACH": "true",
           "IMGCLF_TEACH_BASE_DATA": args.base_data, "IMGCLF_HOST": "127.0.0.1", "IMGCLF_REST_PORT": str(port),
           "IMGCLF_GRPC_PORT": str(free_port()), "IMGCLF_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "imgclf"), "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, "/readyz", proc)
        client = httpx.Client(timeout=60)
        taught = {m: held_still(m, args.frames, seed=1) for m in MOVES}
        fresh = {m: held_still(m, 30, seed=2) for m in MOVES}  # never stored: the job and the gate never see them
        for move, images in taught.items():
            for image in images:
                client.post(f"{url}/v1/models/rps/examples", data={"label": move},
                            files={"file": ("f.jpg", image, "image/jpeg")}).raise_for_status()
        before_fresh = accuracy(client, url, fresh, 1)
        load = Load(url, fresh["rock"][0], args.clients, args.rate)
        load.start()
        time.sleep(args.baseline_s)
        load.phase = "during"
        pressed = time.monotonic()
        job = client.post(f"{url}/v1/models/rps/finetunes").json()
        while job["state"] == "running":
            time.sleep(0.1)
            job = client.get(f"{url}/v1/models/rps/finetunes/{job['id']}").json()
        version = job.get("result", {}).get("version")
        answered = None
        while version and time.monotonic() - pressed < 300:
            r = client.post(f"{url}/predict", files={"file": ("f.jpg", fresh["paper"][0], "image/jpeg")})
            if r.status_code == 200 and r.json()["model_version"] == version:
                answered = time.monotonic() - pressed
                break
            time.sleep(0.05)
        load.phase = "after"
        load.stop()
        print(f"job {job['id']}: {job['state']} in {job.get('result', {}).get('finished_in_s')} s "
              f"(job process {job.get('result', {}).get('seconds')} s); "
              f"Train -> version {version} answering /predict: "
              f"{f'{answered:.1f} s' if answered is not None else 'never'}")
        gate = job.get("result", {}).get("gate", {})
        if gate:
            print(f"gate: {'promoted' if gate['promoted'] else 'rejected'}: held-back frames "
                  f"{gate['holdout_before']:.1%} -> {gate['holdout_after']:.1%} ({gate['holdout_count']} frames); "
                  f"reference set {gate['reference_before']:.1%} -> {gate['reference_after']:.1%} "
                  f"({gate['reference_count']} images; change "
                  f"{100 * (gate['reference_after'] - gate['reference_before']):+.1f} points)")
        if version:
            print(f"fresh frames (30 per move, never stored): version 1 {before_fresh:.1%}, "
                  f"version {version} {accuracy(client, url, fresh, version):.1%}")
        pace = f"{args.rate:g} requests/s" if args.rate else "back to back"
        print(f"/predict before Train ({args.clients} clients, {pace}): {quantiles(load.latencies['before'])}")
        print(f"/predict from Train to the new version answering (the job, then the server loading and warming "
              f"the version): {quantiles(load.latencies['during'])}; errors: {load.errors}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
