"""Memory across hot reloads: load, warm up, serve and unload one version N times; print RSS.

TF Serving and Triton users report memory that grows with every reload. This measures ours:
`python bench/reload_memory.py [--reloads 20]` prints the process's RSS after each cycle and
the growth per reload over the second half (the first cycles pay one-off allocations).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serving import make_jpeg, prepare

    from service.backends.local import LocalBackend

    image = make_jpeg()
    with tempfile.TemporaryDirectory(prefix="imgclf-reload-") as tmp:
        models, _ = prepare(Path(tmp), image)
        backend = LocalBackend(models)
        samples = []
        for i in range(args.reloads):
            model = backend.load("rps", 1)
            for _ in range(5):
                model.predict([image] * 8)
            model.close()
            del model
            gc.collect()
            samples.append(rss_mb())
            print(f"reload {i + 1:3d}: RSS {samples[-1]:.0f} MB", flush=True)
    half = samples[len(samples) // 2:]
    growth = (half[-1] - half[0]) / max(1, len(half) - 1)
    print(f"RSS after first reload {samples[0]:.0f} MB, after last {samples[-1]:.0f} MB; "
          f"growth over the second half: {growth:.1f} MB per reload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
