"""Runs a version's `.tflite` models (the int8 one, or a float conversion) on Google's LiteRT with XNNPACK."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np


def xnnpack_took(interpreter: Any) -> bool:
    """Whether XNNPACK runs the graph of an allocated LiteRT `interpreter`: it adds delegate nodes for
    the operations it takes.

    Checked against ai-edge-litert 2.3.0: its Interpreter lists nodes only through the private
    `_get_ops_details()` (the public methods give tensors, inputs, outputs and signatures, and the public
    `CompiledModel.is_fully_accelerated()` answers for another runtime, not this interpreter), so this is
    the one place that calls it; tests/training/test_quantize.py fails when it is gone or stops
    naming the delegate, instead of XNNPACK silently reading as off."""
    return any("DELEGATE" in str(op.get("op_name", "")) for op in interpreter._get_ops_details())


class LiteRTScorer:
    """One LiteRT interpreter per calling thread (an interpreter is not thread-safe), batch 1 each:
    on a CPU, XNNPACK's int8 kernels run a batch of 32 no faster per image than 32 single calls,
    and a fixed shape never reallocates tensors."""

    def __init__(self, model: bytes, threads: int = 1):
        self.model = model
        self.threads = threads
        self._local = threading.local()
        self.xnnpack = xnnpack_took(self._interpreter()[0])

    def _interpreter(self) -> tuple[Any, int, int]:
        found = getattr(self._local, "interpreter", None)
        if found is None:
            from ai_edge_litert.interpreter import Interpreter

            interp = Interpreter(model_content=self.model, num_threads=self.threads)
            interp.allocate_tensors()
            found = (interp, interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"])
            self._local.interpreter = found
        return found

    def __call__(self, pixels: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """float32 [n, 150, 150, 3] in [0, 1] (or n such images) -> float32 scores [n, labels]."""
        interp, inp, out = self._interpreter()
        rows = []
        for image in pixels:
            interp.set_tensor(inp, np.asarray(image, dtype=np.float32)[None])
            interp.invoke()
            rows.append(interp.get_tensor(out)[0].copy())
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
