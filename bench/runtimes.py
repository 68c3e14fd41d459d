"""Runtime benchmark: imgclf on TensorFlow (fp32) and on LiteRT (int8), REST (wrk) and gRPC, vs each model alone.

Run `python bench/runtimes.py` (or `make bench`; needs `wrk` and `h2load`, from Debian's wrk and
nghttp2-client). In one run: the shipped demo version (two copies, versions 1 and 2, both loaded;
it ships its int8 model, and an older one without gets it from `imgclf quantize`, calibrated on
`--data`; `--version DIR` measures another version instead), then for each runtime the model alone
is measured in a child process (decoding included: the limit no server can beat; measured again
after the server's cells, and the better of the two kept), then `imgclf serve` under load: REST
`POST /predict` (multipart) from wrk, an external C load generator with a small Lua script, and
gRPC `Classify` from h2load (gRPC's framing over HTTP/2; a grpc.aio client when h2load is
missing), at each concurrency. Every figure is printed as a ratio to the same runtime's
model-alone limit and to the fp32 runtime's figure for the same cell.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from serving import Cell, free_port, make_jpeg, run_cell, wait_ready  # bench/serving.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUNTIMES = ("tensorflow", "litert", "litert-float")  # tensorflow first: the fp32 baseline
BOUNDARY = "imgclfbench7d1f"
LUA = """-- POST /predict with one multipart 'file' field: the body comes from bench/runtimes.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=%s"
local f = io.open("%s", "rb")
wrk.body = f:read("*a")
f:close()
"""


@dataclass
class Run:
    runtime: str
    limit: dict[str, float]  # the better of the measurements before and after the cells (best_of)
    rss_mb: float
    cells: list[Cell]
    limits: list[float]  # each measurement's limit, images/s


def multipart(image: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hand.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def model_alone(runtime: str, version: Path, image: bytes, seconds: float, threads: int) -> dict[str, float]:
    """Child mode: the runtime without a server. Batch-1 time, the decode alone, and the best
    throughput on this machine (tensorflow: batch 32 on its inter-op pool; litert: one interpreter
    per core, each decoding and scoring its own images)."""
    import threading

    import numpy as np

    def timed(fn: Callable[[], object], n: int = 0) -> float:
        for _ in range(3):
            fn()
        times: list[float] = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds / 4 or len(times) < n:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))

    out: dict[str, float] = {}
    if runtime == "tensorflow":
        import tensorflow as tf

        fn = tf.saved_model.load(str(version)).signatures["serving_default"]
        for batch in (1, 32):
            x = tf.constant([image] * batch)
            out[f"batch{batch}_ms"] = timed(lambda: fn(image_bytes=x))  # noqa: B023 (called at once)
        out["limit_images_per_s"] = max(1000 / out["batch1_ms"], 32_000 / out["batch32_ms"])
        return out
    from service.backends.litert import LiteRTRuntime
    from service.backends.local import LocalBackend

    # loaded as the server loads it: the runtime's name picks the int8 file or the float conversion
    model = LocalBackend(version.parent.parent, runtime=runtime, litert_threads=threads).load(
        version.parent.name, int(version.name))
    assert isinstance(model, LiteRTRuntime)
    pixels = model.decode(image, max_pixels=16_000_000, min_side=8)[0]
    out["decode_ms"] = timed(lambda: model.decode(image, max_pixels=16_000_000, min_side=8))
    out["invoke_ms"] = timed(lambda: model.predict([pixels]))
    out["batch1_ms"] = timed(lambda: model.predict([model.decode(image, max_pixels=16_000_000, min_side=8)[0]]))
    count = [0, 0]
    stop = time.perf_counter() + seconds / 2

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            model.predict([model.decode(image, max_pixels=16_000_000, min_side=8)[0]])
            count[i] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out["limit_images_per_s"] = max(sum(count) / (time.perf_counter() - started), 1000 / out["batch1_ms"])
    return out


def best_of(*limits: dict[str, float]) -> dict[str, float]:
    """The model alone at its best over measurements before and after the server's cells: the higher
    limit and the shorter times, so a slow moment of this shared machine never makes a target easier."""
    return {k: (max if k == "limit_images_per_s" else min)(m[k] for m in limits) for k in limits[0]}


def thread_cpu_s(pid: int, tid: int = 0) -> float:
    """CPU seconds (user + system) one thread of a process (tid 0: the whole process) has used so far."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, body_file: Path, concurrency: int, seconds: float, warmup: float, pid: int = 0) -> Cell:
    script = body_file.with_suffix(".lua")
    script.write_text(LUA % (BOUNDARY, body_file))
    cmd = ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", "--latency", "-s", str(script)]
    if warmup:
        subprocess.run([*cmd, f"-d{max(1, round(warmup))}s", f"{url}/predict"], capture_output=True, check=True)
    before = answers(url, "rest")
    cpu = (children_cpu_s(), thread_cpu_s(pid, pid) if pid else 0.0, thread_cpu_s(pid) if pid else 0.0,
           time.monotonic())
    text = subprocess.run([*cmd, f"-d{round(seconds)}s", f"{url}/predict"], capture_output=True, text=True,
                          check=True).stdout
    elapsed = time.monotonic() - cpu[3]
    client_cores = (children_cpu_s() - cpu[0]) / elapsed
    loop_cores = (thread_cpu_s(pid, pid) - cpu[1]) / elapsed if pid else float("nan")
    server_cores = (thread_cpu_s(pid) - cpu[2]) / elapsed if pid else float("nan")
    answered = answers(url, "rest")

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return float("nan")
        return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m[2]]

    requests = int(re.search(r"(\d+) requests in", text)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = int(bad[1]) if bad else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    detail = []
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
        detail += [f"socket {kind} {n}" for kind, n in zip(("connect", "read", "write", "timeout"),
                                                         socket_errors.groups(), strict=True) if n != "0"]
    # the server's side of the same period: 499 is wrk dropping its connections at the end
    detail += [f"HTTP {status} x {n - before.get(status, 0)}" for status, n in sorted(answered.items())
               if status not in ("200", "499") and n > before.get(status, 0)]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    return Cell("rest-wrk", concurrency, requests, errors, rate * (requests - errors) / max(1, requests),
                ms("50"), ms("99"), ", ".join(detail) if errors else "", client_cores, loop_cores,
                server_cores)


def answers(url: str, protocol: str) -> dict[str, int]:
    """Requests answered so far over `protocol` (rest or grpc), by status, from the server's own metrics."""
    import httpx

    out: dict[str, int] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f'imgclf_requests_total{{protocol="{protocol}"'):
            status = re.search(r'status="([^"]+)"', line)
            if status:
                out[status[1]] = out.get(status[1], 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def grpc_body(image: bytes) -> bytes:
    """One Classify request as gRPC frames it on the wire: no compression, 4-byte length, message."""
    import struct

    from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb

    message = pb.ClassifyRequest(images=[image]).SerializeToString()
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_failures(url: str) -> int:
    """gRPC calls answered with an error so far (HTTP/2 says 200 for those too); CANCELLED is the load
    generator leaving at the end of its time, not the server failing."""
    return sum(n for status, n in answers(url, "grpc").items() if status not in ("OK", "CANCELLED"))


def h2load(target: str, body_file: Path, concurrency: int, seconds: float, warmup: float, url: str) -> Cell:
    """gRPC Classify from h2load (nghttp2's C load generator): gRPC's framing over HTTP/2, one stream per
    connection, so REST and gRPC are both driven by an external C client."""
    log_file = body_file.with_suffix(f".{concurrency}.tsv")
    failed = grpc_failures(url)
    text = subprocess.run(
        ["h2load", f"-t{min(2, concurrency)}", f"-c{concurrency}", "-m1", f"-D{round(seconds)}",
         f"--warm-up-time={max(1, round(warmup))}", "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-d", str(body_file), f"--log-file={log_file}", f"http://{target}/imgclf.v1.ImageClassifier/Classify"],
        capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)[1])  # type: ignore[index]
    # the log holds the measured period only (after --warm-up-time); status 0: still running at the end
    rows = [line.split("\t") for line in log_file.read_text().splitlines() if line]
    times = sorted(int(r[2]) / 1000 for r in rows if r[1] == "200")
    errors = sum(r[1] not in ("200", "0") for r in rows) + grpc_failures(url) - failed
    n = len(times)
    return Cell("grpc-h2load", concurrency, n, errors, rate * max(0, n - errors) / max(1, n),
                times[n // 2] if n else float("nan"), times[min(n - 1, int(0.99 * n))] if n else float("nan"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve(runtime: str, models: Path, threads: int) -> tuple[subprocess.Popen[bytes], str, str]:
    rest, grpc_port = free_port(), free_port()
    env = {**os.environ, "IMGCLF_MODEL_ROOT": str(models), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": str(rest), "IMGCLF_GRPC_PORT": str(grpc_port), "IMGCLF_LOG_LEVEL": "warning",
           "IMGCLF_RUNTIME": runtime, "IMGCLF_LITERT_THREADS": str(threads), "IMGCLF_LATEST_VERSIONS": "2",
           "IMGCLF_BOOTSTRAP": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([str(BIN / "imgclf"), "serve"], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest}"
    wait_ready(url, "/readyz", proc)
    deadline = time.monotonic() + 120  # both versions loaded, not just the first
    import httpx

    while time.monotonic() < deadline:
        versions = httpx.get(f"{url}/models").json()["versions"]
        if sum(v["state"] == "AVAILABLE" for v in versions) == 2:
            if any(v.get("runtime") != runtime for v in versions):
                raise RuntimeError(f"asked for {runtime}, got {[v.get('runtime') for v in versions]}")
            break
        time.sleep(0.3)
    return proc, url, f"127.0.0.1:{grpc_port}"


def cpu_description() -> str:
    """The CPU and its vector extensions: how much int8 gains over fp32 depends on them (XNNPACK's int8
    kernels use VNNI's 8-bit dot products when the CPU has them; without, int8 is not much faster)."""
    model, flags = "unknown CPU", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    has = {"AVX2": "avx2" in flags, "AVX-512": "avx512f" in flags,
           "VNNI": bool(flags & {"avx512_vnni", "avx_vnni"})}
    return f"{model}, {os.cpu_count()} cores; " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in has.items())


def report(runs: list[Run], levels: list[int], command: str) -> str:
    fp32 = {(c.target, c.concurrency): c.images_per_s for c in runs[0].cells}
    lines = [f"`{command}`", "", f"- CPU: {cpu_description()}"]
    for run in runs:
        lim = run.limit
        extra = (f"; decode {lim['decode_ms']:.2f} ms + invoke {lim['invoke_ms']:.2f} ms" if "decode_ms" in lim
                 else f"; batch 32 {lim['batch32_ms']:.0f} ms")
        lines.append(f"- {run.runtime}: model alone batch 1 {lim['batch1_ms']:.2f} ms{extra}; limit "
                     f"**{lim['limit_images_per_s']:.0f} images/s** (the best of "
                     f"{' and '.join(f'{x:.0f}' for x in run.limits)}, "
                     "before and after the server's cells; times the shorter of two); server RSS with 2 versions "
                     "loaded "
                     f"{run.rss_mb:.0f} MB")
    lines += ["", "| runtime | client | concurrency | images/s | p50 ms | p99 ms | x model-alone limit | "
              "x fp32 runtime | errors |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        for c in sorted(run.cells, key=lambda c: (not c.target.startswith("rest"), c.concurrency)):
            base = fp32.get((c.target, c.concurrency))
            lines.append(f"| {run.runtime} | {c.target} | {c.concurrency} | {c.images_per_s:.1f} | {c.p50_ms:.1f} | "
                         f"{c.p99_ms:.1f} | {c.images_per_s / run.limit['limit_images_per_s']:.2f} | "
                         f"{c.images_per_s / base if base else float('nan'):.2f} | {c.errors} |")
    lines.append("")
    lines += [f"- CPU during REST c={c.concurrency} on {run.runtime}: the server {c.server_cores:.2f} cores, its "
              f"event loop {c.loop_cores:.2f} of them; wrk {c.client_cores:.2f} cores (of {os.cpu_count()})"
              for run in runs for c in run.cells if c.target == "rest-wrk" and c.concurrency == 32]
    lines += [f"- errors, {run.runtime} {c.target} c={c.concurrency}: {c.error_detail}"
              for run in runs for c in run.cells if c.errors and c.error_detail]
    by_name = {r.runtime: r for r in runs}
    if "tensorflow" in by_name and "litert" in by_name and 32 in levels and 1 in levels:
        tf_run, lite = by_name["tensorflow"], by_name["litert"]
        get = {(r.runtime, c.target, c.concurrency): c for r in runs for c in r.cells}
        rest32, tf32 = get[("litert", "rest-wrk", 32)], get[("tensorflow", "rest-wrk", 32)]
        one = get[("litert", "rest-wrk", 1)]
        bound = 2 * lite.limit["invoke_ms"] + lite.limit["decode_ms"]
        checks = [
            (f"REST c=32 int8 {rest32.images_per_s / tf32.images_per_s:.2f}x the fp32 runtime", ">= 2.5x",
             rest32.images_per_s >= 2.5 * tf32.images_per_s),
            (f"REST c=32 int8 p99 {rest32.p99_ms:.1f} ms", "<= 100 ms", rest32.p99_ms <= 100),
            (f"REST c=1 int8 p50 {one.p50_ms:.2f} ms vs 2 x invoke + decode = {bound:.2f} ms", "<=",
             one.p50_ms <= bound),
            (f"fp32 REST c=32 at {tf32.images_per_s / tf_run.limit['limit_images_per_s']:.0%} of its limit", ">= 85%",
             tf32.images_per_s >= 0.85 * tf_run.limit["limit_images_per_s"]),
            (f"int8 server RSS with 2 versions {lite.rss_mb:.0f} MB", "<= 1024 MB", lite.rss_mb <= 1024),
        ]
        grpc_client = next(c.target for c in lite.cells if c.target.startswith("grpc"))
        for level in levels:
            g, r = get[("litert", grpc_client, level)], get[("litert", "rest-wrk", level)]
            checks.append((f"int8 gRPC c={level} {g.images_per_s:.0f} vs REST {r.images_per_s:.0f} images/s",
                           ">= REST", g.images_per_s >= r.images_per_s))
        lines += [f"- {what} (target {target}: {'met' if ok else 'NOT met'})" for what, target, ok in checks]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per cell")
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--runtimes", default="tensorflow,litert",
                        help=f"IMGCLF_RUNTIME values to measure, tensorflow (the baseline) first; any of {RUNTIMES}")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "rps-train"),
                        help="training images for the int8 calibration (class folders, or synthetic)")
    parser.add_argument("--version", type=Path, help="a version folder to measure instead of the shipped demo "
                        "(e.g. one trained with --arch talk); without an int8 model it is quantized on --data")
    parser.add_argument("--litert-threads", type=int, default=1, help="IMGCLF_LITERT_THREADS of the server")
    parser.add_argument("--alone", nargs=2, help=argparse.SUPPRESS)  # child mode: RUNTIME VERSION_DIR
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.alone:
        from training.cli import use_onednn

        use_onednn()  # the model alone runs with the kernels `imgclf serve` turns on, or its limit is not the server's
        print(json.dumps(model_alone(args.alone[0], Path(args.alone[1]), args.image.read_bytes(), args.seconds,
                                     args.litert_threads)))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: `apt-get install wrk` (or `BENCH=1 bash scripts/setup-system.sh`)", file=sys.stderr)
        return 2
    levels = [int(x) for x in args.concurrency.split(",")]
    runtimes = [x for x in RUNTIMES if x in args.runtimes.split(",")]  # the baseline first, whatever the order
    if not runtimes or runtimes[0] != "tensorflow" or len(runtimes) != len(args.runtimes.split(",")):
        print(f"--runtimes: tensorflow and any of {', '.join(RUNTIMES[1:])}, comma-separated", file=sys.stderr)
        return 2
    image = make_jpeg()
    command = "python bench/runtimes.py " + " ".join(sys.argv[1:])
    if args.version and not (args.version / "saved_model.pb").is_file():
        print(f"{args.version} is not a version folder (no saved_model.pb)", file=sys.stderr)
        return 2
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        work = Path(tmp)
        (work / "hand.jpg").write_bytes(image)
        (work / "body.bin").write_bytes(multipart(image))
        (work / "grpc.bin").write_bytes(grpc_body(image))
        models = work / "models"
        if args.version:
            first = models / "rps" / "1"
            shutil.copytree(args.version, first)
        else:
            from service.demo import install_demo

            installed = install_demo(models, "rps")
            assert installed is not None
            first = installed
        if not (first / "assets.extra" / "model_int8.tflite").is_file():  # from before int8 export
            data = args.data if args.data == "synthetic" or Path(args.data).is_dir() else "synthetic"
            print(f"quantizing {args.version or 'the demo version'} (calibration: {data}) ...", flush=True)
            subprocess.run([str(BIN / "imgclf"), "quantize", str(first), "--data", data], check=True,
                           stdout=subprocess.DEVNULL)
        shutil.copytree(first, models / "rps" / "2")
        def alone(runtime: str) -> dict[str, float]:
            out = subprocess.run([sys.executable, __file__, "--alone", runtime, str(first), "--image",
                                  str(work / "hand.jpg"), "--seconds", str(max(4.0, args.seconds)),
                                  "--litert-threads", str(args.litert_threads)],
                                 check=True, capture_output=True, text=True)
            limit: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {limit}", flush=True)
            return limit

        for runtime in runtimes:
            print(f"{runtime}: the model alone ...", flush=True)
            before = alone(runtime)
            proc, url, grpc_target = serve(runtime, models, args.litert_threads)
            cells: list[Cell] = []
            try:
                rss = rss_mb(proc.pid)
                # REST and gRPC alternate at each level, so a slow spell of the host weighs on both
                for c in levels:
                    cells.append(wrk(url, work / "body.bin", c, args.seconds, args.warmup, proc.pid))
                    print(f"  {asdict(cells[-1])}", flush=True)
                    if shutil.which("h2load"):
                        cells.append(h2load(grpc_target, work / "grpc.bin", c, args.seconds, args.warmup, url))
                    else:  # a Python client on the same cores: slower than the server it measures
                        cells.append(run_cell("grpc-python", grpc_target, image, c, args.seconds, args.warmup))
                    print(f"  {asdict(cells[-1])}", flush=True)
                rss = max(rss, rss_mb(proc.pid))
            finally:
                proc.terminate()
                proc.wait(60)
            print(f"{runtime}: the model alone again ...", flush=True)
            after = alone(runtime)
            runs.append(Run(runtime, best_of(before, after), rss, cells,
                            [m["limit_images_per_s"] for m in (before, after)]))
    text = report(runs, levels, command)
    print()
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"runtimes-{stamp}.json").write_text(json.dumps(
        {"runs": [asdict(r) for r in runs], "cpus": os.cpu_count(), "cpu": cpu_description(),
         "command": command}, indent=2))
    (results / f"runtimes-{stamp}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
