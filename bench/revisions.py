"""`POST /predict` throughput of two revisions of imgclf, measured in one run on the same machine.

`python bench/revisions.py --baseline REV [--rev HEAD] [--rounds 3] [--seconds 10]` checks each revision out
into a temporary worktree, serves the shipped demo version from it with this environment's packages
(`PYTHONPATH` puts the worktree's code first), and loads each server with wrk at 32 connections, the
servers taking turns round after round so a busy moment of the machine does not land on one side only.
It prints each round and the medians, and the ratio of the revision to the baseline. Needs `wrk`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from runtimes import cpu_description, multipart, wrk  # bench/runtimes.py, beside this script
from serving import free_port, wait_ready  # bench/serving.py

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "service" / "web" / "static" / "samples" / "rock.jpg"


def start(tree: Path, models: Path, runtime: str) -> tuple[subprocess.Popen[bytes], str]:
    rest = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "IMGCLF_MODEL_ROOT": str(models), "IMGCLF_HOST": "127.0.0.1",
           "IMGCLF_REST_PORT": str(rest), "IMGCLF_GRPC_PORT": str(free_port()), "IMGCLF_LOG_LEVEL": "warning",
           "IMGCLF_RUNTIME": runtime, "IMGCLF_BOOTSTRAP": "true"}
    proc = subprocess.Popen([sys.executable, "-c", "from service.cli import main; main()", "serve"], cwd=tree,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest}"
    wait_ready(url, "/readyz", proc)
    return proc, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the revision to compare against")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runtime", default="litert", help="IMGCLF_RUNTIME of both servers")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: `apt-get install wrk` (or `BENCH=1 bash scripts/setup-system.sh`)", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_description()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="imgclf-revisions-"))
    body = work / "body.bin"
    body.write_bytes(multipart(SAMPLE.read_bytes()))
    revs = [args.baseline, args.rev]
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    rates: dict[str, list[float]] = {rev: [] for rev in revs}
    try:
        for i, rev in enumerate(revs):
            tree = work / f"tree{i}"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), rev],
                           check=True)
            servers[rev] = start(tree, work / f"models{i}", args.runtime)
        for round_ in range(args.rounds):
            for rev in revs if round_ % 2 == 0 else reversed(revs):
                proc, url = servers[rev]
                cell = wrk(url, body, args.concurrency, args.seconds, warmup=2, pid=proc.pid)
                rates[rev].append(cell.images_per_s)
                print(f"round {round_ + 1} {rev}: {cell.images_per_s:.0f} requests/s, p50 {cell.p50_ms:.1f} ms, "
                      f"p99 {cell.p99_ms:.1f} ms{', errors ' + str(cell.errors) if cell.errors else ''}",
                      flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(60)
        for i in range(len(revs)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / f"tree{i}")],
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    base, new = (statistics.median(rates[r]) for r in revs)
    print(f"POST /predict at c={args.concurrency} ({args.runtime}): {args.baseline} median {base:.0f} requests/s, "
          f"{args.rev} median {new:.0f} ({new / base:.3f}x; rounds {rates[args.baseline]} and {rates[args.rev]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
