"""Reliability under overload and faults: `imgclf serve` processes on loopback, measured from outside.

`python bench/reliability.py [--duration 300] [--only overload,swaps,sigterm,tfserving]`
- overload: capacity measured first, then an open-loop load at 3x capacity for --duration seconds:
  429 latency, accepted requests correct and within their deadline, RSS growth, recovery time;
- swaps: 50 versions published (atomic rename) under load: failed requests, RSS after each swap;
- sigterm: SIGTERM under load: in-flight requests that failed;
- tfserving: an imgclf front end on the TF Serving backend (a second imgclf process speaks TF
  Serving's gRPC API) while that backend is killed, stopped (hung) and loses its model mid-load.
Every loop is bounded in time; nothing leaves loopback. Prints Markdown and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, ROOT, free_port, make_jpeg, wait_ready

DEADLINE_S = 30.0  # IMGCLF_REQUEST_TIMEOUT_S, the server's default


def start(models: Path, **env: str) -> tuple[subprocess.Popen[bytes], str, str]:
    rest, grpc_port = free_port(), int(env.pop("IMGCLF_GRPC_PORT", 0)) or free_port()
    full = {**os.environ, "IMGCLF_MODEL_ROOT": str(models), "IMGCLF_HOST": "127.0.0.1",
            "IMGCLF_REST_PORT": str(rest), "IMGCLF_GRPC_PORT": str(grpc_port), "IMGCLF_LOG_LEVEL": "warning",
            "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    proc = subprocess.Popen([str(BIN / "imgclf"), "serve"], env=full, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest}"
    wait_ready(url, "/readyz", proc)
    return proc, url, f"127.0.0.1:{grpc_port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Conn:
    """One keep-alive HTTP/1.1 connection; as cheap per request as Python allows (the load
    generator shares the 2 cores with the server)."""

    def __init__(self, url: str) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.rw: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """(status, headers, body); status 0 when the connection failed. A kept-alive connection
        the server closed while idle is reopened once, as HTTP clients do."""
        reused = self.rw is not None
        status, headers, body = await self._request(raw)
        if status == 0 and reused:
            status, headers, body = await self._request(raw)
        return status, headers, body

    async def _request(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        try:
            if self.rw is None:
                self.rw = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.rw
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:] if x)}
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
            if headers.get(b"connection") == b"close":
                self.close()
            return int(lines[0].split(b" ", 2)[1]), headers, body
        except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError):
            self.close()
            return 0, {}, b""

    def close(self) -> None:
        if self.rw is not None:
            self.rw[1].close()
            self.rw = None


def post_image(image: bytes) -> bytes:
    return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(len(image)).encode() + b"\r\n\r\n" + image)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def correct(status: int, body: bytes, label: str) -> bool:
    return status == 200 and json.loads(body)["predictions"][0]["label"] == label


async def closed_loop(url: str, raw: bytes, concurrency: int, seconds: float, label: str,
                      results: list[tuple[float, int, float, bool]]) -> None:
    """`concurrency` clients back to back for `seconds`: (sent at, status, latency, correct)."""
    stop_at = time.monotonic() + seconds

    async def client() -> None:
        conn = Conn(url)
        while (t := time.monotonic()) < stop_at:
            status, _, body = await conn.request(raw)
            results.append((t, status, time.monotonic() - t, status == 200 and correct(status, body, label)))
            if status == 0:
                await asyncio.sleep(0.05)
        conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))


def expected_label(url: str, image: bytes) -> str:
    import httpx

    return str(httpx.post(f"{url}/predict", content=image, headers={"content-type": "image/jpeg"},
                          timeout=30).json()["predictions"][0]["label"])


# -- overload ------------------------------------------------------------------------------
WRK_THREADS = 2  # one per core (--wrk-threads): more threads add their own wake-ups to every latency measured
WRK_CONNECTIONS = 256  # enough that answers waited for do not starve the offered rate


def run_wrk(url: str, image_file: Path, label: str, seconds: float, threads: int, connections: int,
            rate_per_thread: float, prefix: Path) -> tuple[list[tuple[int, float, bool, bool]], str]:
    """wrk (C, a second process: it costs the server almost nothing) with bench/overload.lua:
    (status, latency s, has Retry-After, correct) per answer, and wrk's socket error line. An answer
    whose X-Request-ID did not come back has latency -1."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("the overload scenario needs wrk: apt-get install wrk (Debian's package)")
    out = subprocess.run([wrk, "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{seconds:g}s",
                    "--timeout", f"{DEADLINE_S + 5:g}s", "-s", str(ROOT / "bench" / "overload.lua"), url, "--",
                    str(image_file), f"{rate_per_thread:g}", label, str(prefix)],
                   check=True, stdout=subprocess.PIPE, text=True)
    errors = next((line.strip() for line in out.stdout.splitlines() if "Socket errors" in line), "none")
    answers = []
    for part in prefix.parent.glob(prefix.name + "-*.txt"):
        for line in part.read_text().splitlines():
            status, latency, retry, ok = line.split()[:4]
            answers.append((int(status), float(latency), retry == "1", ok == "1"))
        part.unlink()
    return answers, errors


async def overload(url: str, pid: int, image: bytes, label: str, seconds: float,
                   threads: int = WRK_THREADS) -> dict[str, Any]:
    raw = post_image(image)
    with tempfile.TemporaryDirectory(prefix="imgclf-wrk-") as tmp:
        image_file = Path(tmp) / "hand.jpg"
        image_file.write_bytes(image)
        probe, _ = await asyncio.to_thread(run_wrk, url, image_file, label, 8, threads, 32, 0,
                                          Path(tmp) / "probe")
        capacity = sum(1 for a in probe if a[0] == 200) / 8
        rate = 3 * capacity
        proc = psutil.Process(pid)
        rss: list[tuple[float, int]] = []
        started = time.monotonic()
        load = asyncio.create_task(asyncio.to_thread(run_wrk, url, image_file, label, seconds, threads,
                                                     WRK_CONNECTIONS, rate / threads, Path(tmp) / "load"))
        while not load.done():
            rss.append((time.monotonic() - started, proc.memory_info().rss))
            await asyncio.wait({load}, timeout=1.0)
        answers, socket_errors = load.result()
    load_stopped = time.monotonic()
    # recovery: how long after the load stops until a lone request is answered at normal speed
    conn = Conn(url)
    normal = pct([a[1] for a in probe if a[0] == 200], 0.5)
    recovered = float("nan")
    while time.monotonic() - load_stopped < 30:
        t = time.monotonic()
        status, _, _ = await conn.request(raw)
        if status == 200 and time.monotonic() - t < max(0.05, normal):
            recovered = time.monotonic() - load_stopped
            break
    conn.close()
    server_side = await asyncio.to_thread(refused_quantiles, url)
    accepted = [a[1] for a in answers if a[0] == 200 and a[1] >= 0]
    refused = [a[1] for a in answers if a[0] == 429 and a[1] >= 0]
    early = next(v for t, v in rss if t >= min(10.0, seconds / 3))
    return {
        "generator": f"wrk, {threads} threads, {WRK_CONNECTIONS} connections, open loop",
        "untimed_answers": sum(1 for a in answers if a[1] < 0), "seconds": seconds,
        "capacity_rps": capacity, "offered_rps": len(answers) / seconds, "target_rps": rate,
        "statuses": dict(Counter(a[0] for a in answers)), "socket_errors": socket_errors,
        "wrong_answers": sum(1 for a in answers if a[0] == 200 and not a[3]),
        "accepted_p50_ms": 1000 * pct(accepted, 0.5), "accepted_p99_ms": 1000 * pct(accepted, 0.99),
        "accepted_max_s": max(accepted, default=float("nan")), "deadline_s": DEADLINE_S,
        "refused_p50_ms": 1000 * pct(refused, 0.5), "refused_p99_ms": 1000 * pct(refused, 0.99),
        "refused_without_retry_after": sum(1 for a in answers if a[0] == 429 and not a[2]),
        "refused_server_side_ms": server_side,
        "rss_mb_after_warmup": early / 2**20, "rss_mb_end": rss[-1][1] / 2**20,
        "rss_growth_pct": 100 * (rss[-1][1] - early) / early, "recovered_after_s": recovered,
        "rss_mb_every_30s": [round(v / 2**20) for t, v in rss if int(t) % 30 == 0],
    }


def refused_quantiles(url: str) -> dict[str, float]:
    """The server's own view of its 429s (imgclf_refused_seconds: first byte to reply written), as
    the upper bound of the histogram bucket holding p50 and p99. What wrk sees on top of that is
    time spent in the kernel and in wrk itself, which shares these 2 cores."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    buckets = [(float(s.labels["le"]), s.value) for f in text_string_to_metric_families(text)
               if f.name == "imgclf_refused_seconds" for s in f.samples if s.name.endswith("_bucket")]
    total = buckets[-1][1] if buckets else 0.0
    out = {}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        out[name] = next((1000 * b for b, n in buckets if total and n >= q * total), float("nan"))
    return out


# -- hot swaps -----------------------------------------------------------------------------
async def swaps(models: Path, url: str, pid: int, image: bytes, label: str, count: int) -> dict[str, Any]:
    import httpx

    results: list[tuple[float, int, float, bool]] = []
    stop_load = asyncio.Event()

    async def load() -> None:
        while not stop_load.is_set():
            await closed_loop(url, post_image(image), 8, 2, label, results)

    loader = asyncio.get_running_loop().create_task(load())
    rss, switch_s = [], []
    base = models / "rps"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for i in range(count):
            current = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
            tmp = base / f".tmp-{current + 1}"
            shutil.copytree(base / str(current), tmp)
            published = time.monotonic()
            tmp.rename(base / str(current + 1))
            while (await client.get("/models")).json().get("default_version") != current + 1:
                assert time.monotonic() - published < 120, "a swap never happened"
                await asyncio.sleep(0.05)
            switch_s.append(time.monotonic() - published)
            shutil.rmtree(base / str(current))  # the old version leaves the disk too
            rss.append(psutil.Process(pid).memory_info().rss / 2**20)
            print(f"  swap {i + 1}: version {current + 1} in {switch_s[-1]:.2f} s, RSS {rss[-1]:.0f} MB",
                  flush=True)
    stop_load.set()
    await loader
    statuses = Counter(r[1] for r in results)
    return {"swaps": count, "requests": len(results), "statuses": dict(statuses),
            "failed": sum(1 for r in results if not r[3]), "switch_p50_s": pct(switch_s, 0.5),
            "switch_max_s": max(switch_s), "rss_mb_first": rss[0], "rss_mb_mid": rss[len(rss) // 2],
            "rss_mb_last": rss[-1]}


# -- SIGTERM -------------------------------------------------------------------------------
async def sigterm(models: Path, image: bytes) -> dict[str, Any]:
    proc, url, _ = start(models, IMGCLF_MAX_BATCH_DELAY_MS="50")
    label = expected_label(url, image)
    results: list[tuple[float, int, float, bool]] = []
    load = asyncio.get_running_loop().create_task(closed_loop(url, post_image(image), 32, 6, label, results))
    await asyncio.sleep(3)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    await load
    code = await asyncio.to_thread(proc.wait, 60)
    before = [r for r in results if r[0] < signalled]
    in_flight = [r for r in before if r[0] + r[2] > signalled]  # sent before, answered after the signal
    after = [r for r in results if r[0] >= signalled]
    return {"requests_before_signal": len(before), "in_flight_at_signal": len(in_flight),
            "failed_before_or_in_flight": sum(1 for r in before if not r[3]),
            "sent_after_signal": len(after), "answered_after_signal": sum(1 for r in after if r[1] == 200),
            "exit_code": code, "exit_s": time.monotonic() - signalled}


async def rounds(url: str, image: bytes, label: str, results: list[tuple[float, int, float, bool]],
                 done: asyncio.Event) -> None:
    while not done.is_set():  # 1 s rounds of 8 clients, so the load stops soon after `done`
        await closed_loop(url, post_image(image), 8, 1, label, results)


# -- TF Serving backend faults --------------------------------------------------------------
async def tfserving_faults(models: Path, image: bytes) -> dict[str, Any]:
    grpc_port = free_port()
    backend_env = {"IMGCLF_GRPC_PORT": str(grpc_port), "IMGCLF_POLL_INTERVAL_S": "0.5"}
    stand_in, _, target = start(models, **backend_env)
    front, url, _ = start(models, IMGCLF_BACKEND="tfserving", IMGCLF_TFSERVING_TARGET=target,
                          IMGCLF_TFSERVING_TIMEOUT_S="2", IMGCLF_POLL_INTERVAL_S="0.5")
    label = expected_label(url, image)
    out: dict[str, Any] = {}
    try:
        for fault in ("killed", "hung", "model removed"):
            results: list[tuple[float, int, float, bool]] = []
            done = asyncio.Event()

            loader = asyncio.get_running_loop().create_task(rounds(url, image, label, results, done))
            await asyncio.sleep(3)
            began = time.monotonic()
            if fault == "killed":
                stand_in.kill()
                stand_in.wait(10)
                await asyncio.sleep(4)
                stand_in, _, _ = await asyncio.to_thread(start, models, **backend_env)
            elif fault == "hung":
                os.kill(stand_in.pid, signal.SIGSTOP)
                await asyncio.sleep(4)
                os.kill(stand_in.pid, signal.SIGCONT)
            else:
                version = models / "rps" / "1"
                version.rename(models / "rps" / ".away")
                await asyncio.sleep(4)
                (models / "rps" / ".away").rename(version)
            ended = time.monotonic()
            while time.monotonic() - ended < 60 and not any(r[0] >= ended and r[3] for r in results):
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            done.set()
            await loader
            before = [r for r in results if r[0] < began]
            during = [r for r in results if began <= r[0] < ended]
            after_ok = [r[0] for r in results if r[0] >= ended and r[3]]
            out[fault] = {"fault_s": round(ended - began, 1),
                          "statuses_before": dict(Counter(r[1] for r in before)),
                          "statuses_during": dict(Counter(r[1] for r in during)),
                          "server_errors_500": sum(1 for r in results if r[1] == 500),
                          "max_latency_s": max(r[2] for r in results),
                          "recovered_after_s": (after_ok[0] - ended) if after_ok else float("nan"),
                          "after_recovery_ok": all(r[3] for r in results if after_ok and r[0] >= after_ok[0] + 1)}
            print(f"  {fault}: {out[fault]}", flush=True)
    finally:
        stop(front)
        stop(stand_in)
    return out


def report(res: dict[str, Any]) -> str:
    lines = []
    if o := res.get("overload"):
        lines += [f"Overload ({o['seconds']:.0f} s at 3x capacity: capacity {o['capacity_rps']:.0f} req/s, offered "
                  f"{o['offered_rps']:.0f} req/s answered of {o['target_rps']:.0f} offered; {o['generator']}):",
                  f"- statuses: {o['statuses']}; socket errors: {o['socket_errors']}; wrong answers: "
                  f"{o['wrong_answers']}; answers without their request id (untimed): {o['untimed_answers']}",
                  f"- 429: p50 {o['refused_p50_ms']:.1f} ms, p99 {o['refused_p99_ms']:.1f} ms (target < 10 ms); "
                  f"without Retry-After: {o['refused_without_retry_after']}; in the server (first byte to "
                  f"reply, histogram bucket bounds): p50 <= {o['refused_server_side_ms']['p50']:g} ms, "
                  f"p99 <= {o['refused_server_side_ms']['p99']:g} ms",
                  f"- accepted: p50 {o['accepted_p50_ms']:.0f} ms, p99 {o['accepted_p99_ms']:.0f} ms, max "
                  f"{o['accepted_max_s']:.2f} s (deadline {o['deadline_s']:.0f} s)",
                  f"- RSS {o['rss_mb_after_warmup']:.0f} -> {o['rss_mb_end']:.0f} MB ({o['rss_growth_pct']:+.1f}%, "
                  f"target < 10%); normal service {o['recovered_after_s']:.2f} s after the load stopped (target < 1 s)"]
    if s := res.get("swaps"):
        lines += [f"Hot swaps: {s['swaps']} versions under load, {s['requests']} requests, failed {s['failed']} "
                  f"({s['statuses']}); switch p50 {s['switch_p50_s']:.2f} s, max {s['switch_max_s']:.2f} s; RSS "
                  f"{s['rss_mb_first']:.0f} / {s['rss_mb_mid']:.0f} / {s['rss_mb_last']:.0f} MB "
                  "(after the first, middle and last swap)"]
    if t := res.get("sigterm"):
        lines += [f"SIGTERM under load: {t['in_flight_at_signal']} requests in flight, failed "
                  f"{t['failed_before_or_in_flight']}; {t['sent_after_signal']} sent after the signal "
                  f"({t['answered_after_signal']} still answered); exit code {t['exit_code']} after "
                  f"{t['exit_s']:.1f} s"]
    for fault, f in (res.get("tfserving") or {}).items():
        lines += [f"TF Serving backend {fault} for {f['fault_s']} s: statuses before {f['statuses_before']}, "
                  f"during {f['statuses_during']}, "
                  f"500s {f['server_errors_500']}, max latency {f['max_latency_s']:.2f} s, first good answer "
                  f"{f['recovered_after_s']:.2f} s after the fault ended"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of overload")
    parser.add_argument("--swaps", type=int, default=50)
    parser.add_argument("--only", default="overload,swaps,sigterm,tfserving")
    parser.add_argument("--wrk-threads", type=int, default=WRK_THREADS,
                        help="wrk's threads for the overload (its 256 connections are spread over them)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    image = make_jpeg()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="imgclf-reliability-") as tmp:
        work = Path(tmp)
        (work / "hand.jpg").write_bytes(image)
        subprocess.run([sys.executable, str(ROOT / "bench" / "serving.py"), "--prepare", str(work),
                        "--image", str(work / "hand.jpg")], check=True)
        models = work / "models"
        if only & {"overload", "swaps"}:
            swapped = work / "swapped"  # the swaps publish new versions here; the others keep version 1
            shutil.copytree(models, swapped)
            proc, url, _ = start(swapped, IMGCLF_POLL_INTERVAL_S="0.2")
            try:
                label = expected_label(url, image)
                if "overload" in only:
                    print(f"overload: {args.duration:.0f} s ...", flush=True)
                    res["overload"] = asyncio.run(overload(url, proc.pid, image, label, args.duration,
                                                                args.wrk_threads))
                if "swaps" in only:
                    print(f"hot swaps: {args.swaps} ...", flush=True)
                    res["swaps"] = asyncio.run(swaps(swapped, url, proc.pid, image, label, args.swaps))
            finally:
                stop(proc)
        if "sigterm" in only:
            print("SIGTERM under load ...", flush=True)
            res["sigterm"] = asyncio.run(sigterm(models, image))
        if "tfserving" in only:
            print("TF Serving backend faults ...", flush=True)
            res["tfserving"] = asyncio.run(tfserving_faults(models, image))
    text = report(res)
    print()
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"reliability-{stamp}.json").write_text(json.dumps(res, indent=2, default=str))
    (results / f"reliability-{stamp}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
