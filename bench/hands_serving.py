"""Serving with the hand stage: REST `POST /predict` at c=1 and c=32 with IMGCLF_HANDS on and off, against the
limit the hand stage and the model together allow, all in one run.

Run `python bench/hands_serving.py` (needs `wrk`). The version is the shipped demo (or `--version DIR`; it must
carry a pose classifier). The picture is the rock sample (a hand: the pose classifier answers) and, for the
CNN's path with the stage in front, the portrait sample (no hand: every retry, then the CNN).

The limit is measured without a server, in a child process, on both cores: two threads, each reading the
picture as the server's decode threads do (checks, decode, the hand stage with its retries) and scoring the
hand with the pose classifier, or the CNN where there is none. It is measured before and after the server's
cells; the higher is kept, so a slow spell of this shared machine never makes the ratio easier.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtimes import cpu_description, multipart, wrk  # noqa: E402  (bench/runtimes.py, beside this script)
from serving import start_imgclf  # noqa: E402  (bench/serving.py)

SAMPLES = ROOT / "service" / "web" / "static" / "samples"
PICTURES = {"hand": SAMPLES / "rock.jpg", "no hand": SAMPLES / "no-hand.jpg"}
LIMITS = {"max_pixels": 40_000_000, "min_side": 8}


def limit(version: Path, picture: Path, seconds: float, threads: int = 2) -> dict[str, float]:
    """Child mode: images/s of the hand stage plus what answers after it, on `threads` threads, and the
    median time of one picture on one thread."""
    from service.backends.local import LocalBackend
    from service.hand_reader import HandReader

    model = LocalBackend(version.parent.parent, runtime="auto").load(version.parent.name, int(version.name))
    pose = model.info.pose
    assert pose is not None, f"{version} has no pose classifier"
    reader = HandReader(budget_ms=30.0)
    data = picture.read_bytes()
    decode = model.decoder

    def one() -> None:
        hand, _, _ = reader.read(data, **LIMITS)
        if hand is not None:
            pose(hand.landmarks[None])
        elif decode is not None:
            model.predict([decode(data, **LIMITS)[0]])  # type: ignore[list-item]
        else:
            model.predict([data])

    for _ in range(5):
        one()
    times = []
    until = time.perf_counter() + seconds / 3
    while time.perf_counter() < until:
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    count = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            one()
            count[i] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    times.sort()
    return {"images_per_s": sum(count) / (time.perf_counter() - started),
            "one_thread_ms": 1000 * times[len(times) // 2], "runtime": model.info.runtime}  # type: ignore[dict-item]


def serve(models: Path, hands: str) -> tuple[subprocess.Popen[bytes], str]:
    proc, url, _ = start_imgclf(models, runtime="auto", hands=hands, bootstrap="false")
    return proc, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=Path, help="a version folder with a pose classifier (default: the demo)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--limit", nargs=2, help=argparse.SUPPRESS)  # child mode: VERSION_DIR PICTURE
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.limit:
        print(json.dumps(limit(Path(args.limit[0]), Path(args.limit[1]), args.seconds)))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: `apt-get install wrk` (or `BENCH=1 bash scripts/setup-system.sh`)", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_description()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="imgclf-hands-bench-") as tmp:
        work = Path(tmp)
        models = work / "models"
        if args.version:
            shutil.copytree(args.version, models / "rps" / "1")
        else:
            from service.demo import install_demo

            install_demo(models, "rps")
        version = models / "rps" / "1"

        def alone(picture: Path) -> dict[str, float]:
            out = subprocess.run([sys.executable, __file__, "--limit", str(version), str(picture), "--seconds",
                                  str(args.seconds)], check=True, capture_output=True, text=True)
            found: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
            return found

        limits = {name: [alone(path)] for name, path in PICTURES.items()}
        print(f"limits before: {limits}", flush=True)
        cells = {}
        for hands in ("off", "on"):
            proc, url = serve(models, hands)
            try:
                for name, path in PICTURES.items():
                    body = work / f"{name.replace(' ', '-')}.bin"
                    body.write_bytes(multipart(path.read_bytes()))
                    for c in (1, 32):
                        cell = wrk(url, body, c, args.seconds, warmup=2, pid=proc.pid)
                        cells[hands, name, c] = cell
                        print(f"  IMGCLF_HANDS={hands} {name} c={c}: {asdict(cell)}", flush=True)
            finally:
                proc.terminate()
                proc.wait(60)
        for name, path in PICTURES.items():
            limits[name].append(alone(path))
        print(f"limits after: {limits}", flush=True)
    print()
    print(f"CPU: {cpu_description()}; command: python bench/hands_serving.py {' '.join(sys.argv[1:])}")
    print("| picture | limit (stage + answer, 2 threads) | one picture, 1 thread | hands off c=1 | hands off c=32 "
          "| hands on c=1 | hands on c=32 | on c=32 / limit |")
    print("|---|---|---|---|---|---|---|---|")
    for name in PICTURES:
        best = max(m["images_per_s"] for m in limits[name])
        one = min(m["one_thread_ms"] for m in limits[name])
        row = [f"{cells[h, name, c].images_per_s:.0f}/s (p50 {cells[h, name, c].p50_ms:.1f} ms, p99 "
               f"{cells[h, name, c].p99_ms:.0f} ms)" for h in ("off", "on") for c in (1, 32)]
        print(f"| {name} | {best:.0f}/s | {one:.1f} ms | " + " | ".join(row)
              + f" | {cells['on', name, 32].images_per_s / best:.2f} |")
    errors = {k: c.error_detail for k, c in cells.items() if c.errors}
    if errors:
        print(f"errors: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
