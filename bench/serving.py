"""Serving benchmark: imgclf REST and gRPC vs a naive FastAPI baseline vs the model's compute limit.

Run `python bench/serving.py` (or `make bench`). Everything is measured in the same run on this
machine: the model alone (batch 1 and batch 32, decoding included), `imgclf serve` over REST
(`POST /predict`) and gRPC (`Classify`), and the tutorial-style baseline (`bench/naive_app.py`),
each at concurrency 1, 8 and 32 with a 300x300 JPEG. Prints a Markdown table and writes JSON
to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Cell:
    target: str
    concurrency: int
    requests: int
    errors: int
    images_per_s: float
    p50_ms: float
    p99_ms: float
    error_detail: str = ""  # what the errors were, when there were any
    client_cores: float = float("nan")  # CPU the load generator used, in cores, while measuring
    loop_cores: float = float("nan")  # CPU of the server's event-loop thread, in cores
    server_cores: float = float("nan")  # CPU of the whole server process, in cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_jpeg() -> bytes:
    import numpy as np
    from PIL import Image

    from training import synthetic

    img = synthetic.render("paper", np.random.default_rng(7)).resize((300, 300), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def prepare(workdir: Path, image: bytes) -> tuple[Path, Path]:
    """A SavedModel written by the training code's export, and the same network as .keras."""
    import keras

    from training.export import export
    from training.model import make_model

    keras.utils.set_random_seed(0)
    model = make_model()
    export(model, ["paper", "rock", "scissors"], workdir / "models", "rps", warmup_images=[image])
    keras_file = workdir / "naive.keras"
    model.save(keras_file)
    return workdir / "models", keras_file


def compute_limit(model_dir: Path, image: bytes, seconds: float) -> dict[str, float]:
    """The model alone, in this process: what no server can beat on this machine."""
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    out: dict[str, float] = {}
    for batch in (1, 32):
        x = tf.constant([image] * batch)
        for _ in range(3):
            fn(image_bytes=x)
        times = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            fn(image_bytes=x)
            times.append(time.perf_counter() - t)
        out[f"batch{batch}_ms"] = 1000 * float(np.median(times))
        out[f"batch{batch}_images_per_s"] = batch / float(np.median(times))
    return out


async def _load(send, concurrency: int, seconds: float, warmup: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + warmup + seconds
    measure_from = time.perf_counter() + warmup

    async def worker() -> None:
        nonlocal errors
        while (t := time.perf_counter()) < stop_at:
            ok = await send()
            done = time.perf_counter()
            if t >= measure_from:
                if ok:
                    latencies.append(done - t)
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


async def _load_http(url: str, image: bytes, concurrency: int, seconds: float,
                     warmup: float) -> tuple[list[float], int]:
    """A minimal keep-alive HTTP/1.1 client: the load generator shares the 2 cores with the server,
    so it must cost as little CPU as possible (httpx costs several times more per request)."""
    host, port = url.removeprefix("http://").split(":")
    path = "/predict"
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
               f"Content-Length: {len(image)}\r\n\r\n").encode() + image
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(await asyncio.open_connection(host, int(port)))

    async def send() -> bool:
        reader, writer = await pool.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            await reader.readexactly(length)
            return status == 200
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
            reader, writer = await asyncio.open_connection(host, int(port))
            return False
        finally:
            pool.put_nowait((reader, writer))

    try:
        return await _load(send, concurrency, seconds, warmup)
    finally:
        while not pool.empty():
            pool.get_nowait()[1].close()


def run_cell(target: str, url: str, image: bytes, concurrency: int, seconds: float, warmup: float) -> Cell:
    async def main() -> tuple[list[float], int]:
        if target.endswith("grpc"):
            import grpc

            from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
            from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc

            async with grpc.aio.insecure_channel(url) as channel:
                stub = classifier_pb2_grpc.ImageClassifierStub(channel)
                request = pb.ClassifyRequest(images=[image])

                async def send_grpc() -> bool:
                    try:
                        await stub.Classify(request, timeout=30)
                        return True
                    except grpc.aio.AioRpcError:
                        return False

                return await _load(send_grpc, concurrency, seconds, warmup)
        return await _load_http(url, image, concurrency, seconds, warmup)

    latencies, errors = asyncio.run(main())
    latencies.sort()
    n = len(latencies)
    p99 = latencies[min(n - 1, int(0.99 * n))] if n else float("nan")
    return Cell(target, concurrency, n, errors, n / seconds, 1000 * statistics.median(latencies) if n else float("nan"),
                1000 * p99)


def wait_ready(url: str, path: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=1).status_code in (200, 405):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready")


def start_imgclf(models: Path, **settings: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """`imgclf serve` on loopback ports of its own, ready; `settings` are more IMGCLF_* values (runtime="auto")."""
    rest, grpc_port = free_port(), free_port()
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(models), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": str(rest), "IMGCLF_GRPC_PORT": str(grpc_port), "IMGCLF_LOG_LEVEL": "warning",
           "TF_CPP_MIN_LOG_LEVEL": "2", **{f"IMGCLF_{k.upper()}": v for k, v in settings.items()}}
    proc = subprocess.Popen([str(BIN / "imgclf"), "serve"], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest}"
    wait_ready(url, "/readyz", proc)
    return proc, url, f"127.0.0.1:{grpc_port}"


def start_naive(keras_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "IMGCLF_NAIVE_MODEL": str(keras_file), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.naive_app:app", "--port", str(port),
                             "--log-level", "warning"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, "/predict", proc)
    return proc, url


def report(limit: dict[str, float], cells: list[Cell]) -> str:
    naive = {c.concurrency: c.images_per_s for c in cells if c.target == "naive-rest"}
    lines = [
        f"Model alone (SavedModel `serving_default`, JPEG decoding included): batch 1 "
        f"{limit['batch1_ms']:.1f} ms; batch 32 {limit['batch32_ms']:.0f} ms = "
        f"**{limit['batch32_images_per_s']:.0f} images/s (compute limit)**",
        "",
        "| target | concurrency | images/s | p50 ms | p99 ms | x naive | % of compute limit | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        ratio = c.images_per_s / naive[c.concurrency] if naive.get(c.concurrency) else float("nan")
        pct = 100 * c.images_per_s / limit["batch32_images_per_s"]
        lines.append(f"| {c.target} | {c.concurrency} | {c.images_per_s:.1f} | {c.p50_ms:.1f} | {c.p99_ms:.1f} | "
                     f"{ratio:.1f} | {pct:.0f}% | {c.errors} |")
    lines.append("")
    for target in ("imgclf-rest", "imgclf-grpc"):
        c32 = next(c for c in cells if c.target == target and c.concurrency == 32)
        c1 = next(c for c in cells if c.target == target and c.concurrency == 1)
        share = c32.images_per_s / limit["batch32_images_per_s"]
        lines.append(
            f"- {target}: concurrency 32 at {100 * share:.0f}% of the compute limit (target >= 75%: "
            f"{'met' if share >= 0.75 else 'NOT met'}), p99 {c32.p99_ms:.0f} ms (target < 300: "
            f"{'met' if c32.p99_ms < 300 else 'NOT met'}); concurrency 1 p50 {c1.p50_ms:.1f} ms = "
            f"{c1.p50_ms / limit['batch1_ms']:.2f}x the batch-1 call (target <= 1.5x: "
            f"{'met' if c1.p50_ms <= 1.5 * limit['batch1_ms'] else 'NOT met'})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per cell")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--compute-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.cli import use_onednn

    use_onednn()  # the kernels `imgclf serve` turns on, for the model alone and the naive server (children) too
    if args.prepare:  # child mode: TensorFlow stays out of the load generator's process
        prepare(args.prepare, args.image.read_bytes())
        return 0
    if args.compute_only:  # child mode, as above
        print(json.dumps(compute_limit(args.compute_only, args.image.read_bytes(), args.seconds)))
        return 0
    levels = [int(x) for x in args.concurrency.split(",")]
    image = make_jpeg()
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        work = Path(tmp)
        image_file = work / "hand.jpg"
        image_file.write_bytes(image)
        print("preparing the model ...", flush=True)
        subprocess.run([sys.executable, __file__, "--prepare", str(work), "--image", str(image_file)],
                       check=True)
        models, keras_file = work / "models", work / "naive.keras"
        print("measuring the compute limit ...", flush=True)
        out = subprocess.run([sys.executable, __file__, "--compute-only", str(models / "rps" / "1"),
                              "--image", str(image_file), "--seconds", str(max(3.0, args.seconds / 2))],
                             check=True, capture_output=True, text=True)
        limit = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  batch 1: {limit['batch1_ms']:.1f} ms, batch 32: {limit['batch32_images_per_s']:.0f} images/s",
              flush=True)
        cells: list[Cell] = []
        proc, url, grpc_target = start_imgclf(models)
        try:
            for target, address in (("imgclf-rest", url), ("imgclf-grpc", grpc_target)):
                for c in levels:
                    cells.append(run_cell(target, address, image, c, args.seconds, args.warmup))
                    print(f"  {asdict(cells[-1])}", flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
        naive_proc, naive_url = start_naive(keras_file)
        try:
            for c in levels:
                cells.append(run_cell("naive-rest", naive_url, image, c, args.seconds, args.warmup))
                print(f"  {asdict(cells[-1])}", flush=True)
        finally:
            naive_proc.terminate()
            naive_proc.wait(60)
    text = report(limit, cells)
    print()
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"serving-{stamp}.json").write_text(json.dumps(
        {"compute_limit": limit, "cells": [asdict(c) for c in cells], "cpus": os.cpu_count()}, indent=2))
    (results / f"serving-{stamp}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
