"""Does int8 pay on this CPU? The version's int8 model against the same network as a float LiteRT model, one process.

    python bench/int8_vs_float.py [--version DIR] [--rounds 7] [--calls 200]

Both run on LiteRT with XNNPACK, one thread, batch 1, on the same pixels; the float model is converted
here from the version's `serving_pixels` signature (nothing is written). Rounds alternate between the two
models and the median round is kept, so a slow moment of the machine hits both. XNNPACK's int8 kernels
use 8-bit dot-product instructions (VNNI) where the CPU has them; without them int8 gains little or nothing,
which is what decides how far `IMGCLF_RUNTIME=litert` can run ahead of the fp32 runtime.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from runtimes import cpu_description  # bench/runtimes.py, beside this script


def invoke_ms(models: dict[str, bytes], pixels: np.ndarray, rounds: int, calls: int) -> dict[str, float]:
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for name, blob in models.items():
        interp = Interpreter(model_content=blob, num_threads=1)
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], pixels)
        for _ in range(20):  # XNNPACK packs its weights on the first calls
            interp.invoke()
        runners[name] = interp
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, interp in runners.items():
            started = time.perf_counter()
            for _ in range(calls):
                interp.invoke()
            times[name].append((time.perf_counter() - started) / calls * 1000)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=Path, help="a version folder (default: the shipped demo version)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="invokes per model per round")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from service.backends.litert import float_model  # what litert-float loads: the file, or a conversion
    from version_format.layout import INT8_FILE

    with tempfile.TemporaryDirectory(prefix="imgclf-int8-") as tmp:
        version = args.version
        if version is None:
            from service.demo import install_demo

            version = install_demo(Path(tmp), "rps")
            assert version is not None
        int8_file = version / INT8_FILE
        if not int8_file.is_file():
            print(f"{version} has no {INT8_FILE}: add one with `imgclf quantize {version}`", file=sys.stderr)
            return 2
        models = {"int8": int8_file.read_bytes(), "float": float_model(version)[0]}
        pixels = np.random.default_rng(0).random((1, 150, 150, 3), dtype=np.float32)
        ms = invoke_ms(models, pixels, args.rounds, args.calls)
    print(f"CPU: {cpu_description()}")
    print(f"LiteRT invoke, batch 1, one thread, median of {args.rounds} rounds of {args.calls} calls: "
          f"int8 {ms['int8']:.3f} ms, float {ms['float']:.3f} ms; int8 is {ms['float'] / ms['int8']:.2f}x "
          "as fast as float")
    return 0


if __name__ == "__main__":
    sys.exit(main())
