"""A new user's first minute: `git clone`, `make run`, until `POST /predict` answers.

`python3 bench/fresh_install.py [--rev HEAD] [--baseline REV]` clones the repository at REV into a new
folder and times `make run` from the command to the first 200 of `POST /predict` twice: with an empty
package cache (everything downloaded) and again in another new clone with the cache the first run
filled. With `--baseline`, an older revision is timed the same way in the same run, so the two can be
compared (the machine and the registry's speed change from hour to hour). Needs only python3, make and
git; uses loopback ports only.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from runtimes import cpu_description  # bench/runtimes.py, beside this script (standard library only)

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "service" / "web" / "static" / "samples" / "rock.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def predict(url: str) -> int:
    """Status of a multipart POST of the rock sample (0 while nothing listens)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rock.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + SAMPLE.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/predict", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


def first_answer(rev: str, workdir: Path, cache: Path, log: Path) -> float:
    """Seconds from `make run` in a fresh clone of `rev` to the first answer of `POST /predict`."""
    clone = workdir / f"clone-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", rev], check=True)
    port = free_port()
    env = {**os.environ, "UV_CACHE_DIR": str(cache / "uv"), "PIP_CACHE_DIR": str(cache / "pip"),
           "IMGCLF_REST_PORT": str(port), "IMGCLF_GRPC_PORT": str(free_port()), "IMGCLF_HOST": "127.0.0.1"}
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while time.monotonic() - started < 900:
                if proc.poll() is not None:
                    raise SystemExit(f"`make run` exited with {proc.returncode}: see {log}")
                if predict(f"http://127.0.0.1:{port}") == 200:
                    return time.monotonic() - started
                time.sleep(0.2)
            raise SystemExit(f"no answer within 900 s: see {log}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


def measure(rev: str, workdir: Path) -> tuple[float, float]:
    cache = workdir / f"cache-{rev.replace('/', '_')}"
    cold = first_answer(rev, workdir, cache, workdir / f"{rev}-cold.log")
    print(f"{rev}: empty package cache, first answer after {cold:.1f} s", flush=True)
    warm = first_answer(rev, workdir, cache, workdir / f"{rev}-warm.log")
    print(f"{rev}: warm package cache, first answer after {warm:.1f} s", flush=True)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the revision to time (committed work only)")
    parser.add_argument("--baseline", help="an older revision timed in the same run, for comparison")
    parser.add_argument("--keep", action="store_true", help="keep the clones and logs (their folder is printed)")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="imgclf-fresh-"))
    results = {rev: measure(rev, workdir) for rev in [args.rev, *([args.baseline] if args.baseline else [])]}
    for rev, (cold, warm) in results.items():
        print(f"{rev}: cold {cold:.1f} s, warm {warm:.1f} s")
    if args.baseline:
        (c, w), (bc, bw) = results[args.rev], results[args.baseline]
        print(f"{args.rev} against {args.baseline}: cold {bc / c:.2f}x faster, warm {bw / w:.2f}x faster")
    if args.keep:
        print(f"clones and logs in {workdir}")
    else:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
