"""The two shipped model files on LiteRT (XNNPACK), one interpreter pair per calling thread: a LiteRT
interpreter holds its tensors and must not be invoked from two threads at once."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"
PALM_FILE = MODELS / "palm_detection_full.tflite"
LANDMARK_FILE = MODELS / "hand_landmark_full.tflite"
# the files as taken from the mediapipe==0.10.21 wheel (models/NOTICE)
SHA256 = {PALM_FILE.name: "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
          LANDMARK_FILE.name: "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Model:
    """One model file, invoked on a float32 [1, s, s, 3] image; each thread gets its own interpreter,
    created on its first call."""

    def __init__(self, path: Path, threads: int = 1):
        self.path = path
        self.threads = threads
        self.blob = path.read_bytes()
        self._local = threading.local()
        self.outputs = self._interpreter()[2]

    def _interpreter(self) -> tuple[Any, int, list[dict[str, Any]]]:
        found = getattr(self._local, "interpreter", None)
        if found is None:
            from ai_edge_litert.interpreter import Interpreter

            interp = Interpreter(model_content=self.blob, num_threads=self.threads)
            interp.allocate_tensors()
            # outputs in the order of their names (Identity, Identity_1, ...): the graph's own order
            outputs = sorted(interp.get_output_details(), key=lambda d: (len(d["name"]), d["name"]))
            found = (interp, interp.get_input_details()[0]["index"], outputs)
            self._local.interpreter = found
        return found

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """float32 [s, s, 3] in [0, 1] -> the model's outputs (copies, batch dimension dropped)."""
        interp, inp, outputs = self._interpreter()
        interp.set_tensor(inp, image[None])
        interp.invoke()
        return [interp.get_tensor(d["index"])[0].copy() for d in outputs]


@dataclass
class Models:
    palm: Model
    landmarks: Model

    @classmethod
    def load(cls, threads: int = 1) -> Models:
        return cls(Model(PALM_FILE, threads), Model(LANDMARK_FILE, threads))


def write_task_bundle(dest: Path) -> Path:
    """MediaPipe Tasks' `hand_landmarker.task` made of the shipped files (an uncompressed zip; Tasks refuses
    a compressed one), for comparing the stage with MediaPipe's own HandLandmarker."""
    import zipfile

    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as bundle:
        bundle.write(PALM_FILE, "hand_detector.tflite")
        bundle.write(LANDMARK_FILE, "hand_landmarks_detector.tflite")
    return dest
