"""The server's quality gate for every new version: scored on a fixed reference set against the serving one."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from service.backends.base import Runtime


class GateRejected(Exception):
    """The candidate loses more than the tolerance on the reference set; the message says by how much."""


class ReferenceGate:
    """IMGCLF_GATE_REFERENCE (a folder of label folders): a version that would become the default must not
    score more than IMGCLF_GATE_TOLERANCE_POINTS below the serving version on it. Labels are matched by name,
    so a version with its label order mixed up fails here instead of in front of clients."""

    def __init__(self, folder: Path, tolerance_points: float, batch: int = 32) -> None:
        self.folder = Path(folder)
        self.tolerance_points = tolerance_points
        self.batch = batch
        self._images: list[tuple[bytes, str]] | None = None
        self._lock = threading.Lock()

    def images(self) -> list[tuple[bytes, str]]:
        with self._lock:
            if self._images is None:
                found = [(f.read_bytes(), d.name) for d in sorted(self.folder.iterdir())
                         if d.is_dir() and not d.name.startswith(".")
                         for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".")]
                if not found:
                    raise GateRejected(f"the gate's reference set {self.folder} holds no images")
                self._images = found
            return self._images

    def accuracy(self, model: Runtime) -> float:
        images = self.images()
        labels = model.info.labels
        right = 0
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            scores = model.predict([data for data, _ in chunk])
            right += sum(labels[int(i)] == label for i, (_, label) in zip(np.argmax(scores, axis=1), chunk,
                                                                          strict=True))
        return right / len(images)

    def check(self, candidate: Runtime, serving: Runtime) -> str:
        """Blocking (model calls): raises GateRejected, or returns the figures that let it through."""
        before, after = self.accuracy(serving), self.accuracy(candidate)
        figures = (f"reference set {before:.1%} (version {serving.info.version}) -> {after:.1%} "
                   f"(version {candidate.info.version}) on {len(self.images())} images")
        if (before - after) * 100 > self.tolerance_points + 1e-9:
            raise GateRejected(f"rejected by the quality gate: {figures}, over the {self.tolerance_points:g}-point "
                               "tolerance")
        return figures
