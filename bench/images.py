"""The two images side by side: imgclf:serve (LiteRT, no TensorFlow) against imgclf:full, both on the litert
runtime in the same run.

Run `python bench/images.py` after building both targets with Podman (docs/containers.md; needs `wrk`):

    podman build --format docker --target serve -t imgclf:serve .
    podman build --format docker --target full -t imgclf:full .

For each image: its size (`podman image inspect`), then ROUNDS times (the images alternate, so that the
machine's other work falls on both alike) a container on the same two versions (the shipped demo as 1 and 2,
read-only, IMGCLF_VERSION_POLICY=all; the hand stage as served, or --hands off): seconds from `podman run`
to the first 200 of /readyz, and from the server process's own start (the container's StartedAt); the
first POST /predict; the server's RSS (VmRSS of the container's PID 1) after 20 warm-up requests, the
highest while wrk loads REST /predict at --concurrency connections, and its peak (VmHWM); and wrk's
requests/s. The best round of each image is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from runtimes import cpu_description, multipart, wrk  # bench/runtimes.py, beside this script
from serving import free_port, make_jpeg

BIN = Path(sys.executable).parent


def podman(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])}: {proc.stderr.strip()[-1000:]}")
    return proc.stdout.strip()


def status_mb(container: str, field: str) -> float:
    """VmRSS or VmHWM of the container's PID 1 (the server), MB."""
    for line in podman("exec", container, "cat", "/proc/1/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def started_at(container: str) -> float:
    """The container's StartedAt as a Unix time (Podman prints nanoseconds, which datetime does not take)."""
    text = podman("inspect", "-f", "{{.State.StartedAt}}", container)  # 2026-12-07 12:50:01.123456789 +0000 UTC
    day, clock, offset = text.split()[:3]
    whole, _, fraction = clock.partition(".")
    stamp = dt.datetime.strptime(f"{day} {whole} {offset}", "%Y-%m-%d %H:%M:%S %z").timestamp()
    return stamp + float(f"0.{fraction or 0}")


def one_round(image: str, models: Path, body: Path, jpeg: bytes, seconds: float, concurrency: int, hands: str
              ) -> dict[str, float | str]:
    container, port = f"imgclf-bench-{free_port()}", free_port()
    url = f"http://127.0.0.1:{port}"
    clicked = time.time()
    podman("run", "-d", "--name", container, "-p", f"127.0.0.1:{port}:8000", "-e", "IMGCLF_RUNTIME=litert",
           "-e", "IMGCLF_VERSION_POLICY=all", "-e", f"IMGCLF_HANDS={hands}", "-v", f"{models}:/models:ro", image)
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if podman("inspect", "-f", "{{.State.Status}}", container) != "running":
                logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True)
                return {"error": (logs.stdout + logs.stderr).strip().splitlines()[-1]}
            if time.time() - clicked > 300:
                return {"error": "not ready after 300 s"}
            time.sleep(0.02)
        ready = time.time()
        asked = time.time()
        first = httpx.post(f"{url}/predict", files={"file": ("hand.jpg", jpeg)}, timeout=60)
        first.raise_for_status()
        answered = time.time()
        for _ in range(20):
            httpx.post(f"{url}/predict", files={"file": ("hand.jpg", jpeg)}, timeout=60).raise_for_status()
        warm = status_mb(container, "VmRSS")
        peak = [warm]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak.append(status_mb(container, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cell = wrk(url, body, concurrency, seconds, warmup=2)
        done.set()
        sampler.join()
        return {"ready_s": ready - clicked, "ready_from_start_s": ready - started_at(container),
                "first_ms": (answered - asked) * 1000, "first_s": answered - clicked, "rss_warm_mb": warm,
                "rss_load_mb": max(peak), "hwm_mb": status_mb(container, "VmHWM"), "rps": cell.images_per_s,
                "errors": cell.errors, "p99_ms": cell.p99_ms}
    finally:
        podman("rm", "-f", container, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", default="localhost/imgclf:serve")
    parser.add_argument("--full", default="localhost/imgclf:full")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--hands", choices=("auto", "on", "off"), default="auto",
                        help="IMGCLF_HANDS: auto runs the hand stage, as the demo version (it has a pose "
                             "classifier) is served; off measures the CNN alone")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("podman") is None:
        print("needs wrk and podman (`apt-get install wrk`; podman: docs/containers.md)", file=sys.stderr)
        return 2
    images = {"serve": args.serve, "full": args.full}
    jpeg = make_jpeg()
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-images-") as tmp:
        models = Path(tmp) / "models"
        subprocess.run([str(BIN / "imgclf"), "demo", "--model-root", str(models), "--name", "rps"], check=True,
                       capture_output=True)
        shutil.copytree(models / "rps" / "1", models / "rps" / "2")
        for path in [models, *models.rglob("*")]:  # readable by the images' non-root user
            path.chmod(0o755 if path.is_dir() else 0o644)
        body = Path(tmp) / "body.bin"
        body.write_bytes(multipart(jpeg))
        rounds: dict[str, list[dict[str, float | str]]] = {name: [] for name in images}
        for _ in range(args.rounds):
            for name, image in images.items():
                rounds[name].append(one_round(image, models, body, jpeg, args.seconds, args.concurrency,
                                              args.hands))
    print(f"CPU: {cpu_description()}")
    print(f"two versions loaded (demo as 1 and 2), IMGCLF_RUNTIME=litert, IMGCLF_HANDS={args.hands}, "
          f"wrk c={args.concurrency} "
          f"{args.seconds:g} s, best of {args.rounds} rounds")
    print("| | serve | full |\n|---|---|---|")
    sizes = {name: int(podman("image", "inspect", "--format", "{{.Size}}", image)) / 1e6
             for name, image in images.items()}
    print(f"| image size (uncompressed) | {sizes['serve']:.0f} MB | {sizes['full']:.0f} MB |")
    best: dict[str, dict[str, float | str]] = {}
    for name, results in rounds.items():
        ok = [r for r in results if "error" not in r]
        best[name] = max(ok, key=lambda r: float(r["rps"])) if ok else results[0]
    rows = [("`podman run` to /readyz 200", "ready_s", "{:.2f} s"),
            ("server start to /readyz 200", "ready_from_start_s", "{:.2f} s"),
            ("`podman run` to the first answer", "first_s", "{:.2f} s"),
            ("first POST /predict", "first_ms", "{:.0f} ms"),
            ("RSS after warm-up", "rss_warm_mb", "{:.0f} MB"),
            ("RSS under load (highest sample)", "rss_load_mb", "{:.0f} MB"),
            ("RSS peak (VmHWM)", "hwm_mb", "{:.0f} MB"),
            (f"REST c={args.concurrency} requests/s", "rps", "{:.0f}"),
            ("p99 latency", "p99_ms", "{:.0f} ms"),
            ("errors", "errors", "{:.0f}")]
    for label, key, fmt in rows:
        cells = [fmt.format(best[n][key]) if key in best[n] else str(best[n].get("error", "-")) for n in images]
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    for name, results in rounds.items():
        print(f"{name} rounds, requests/s: {[round(float(r['rps'])) if 'rps' in r else r['error'] for r in results]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
