"""The contract between the registry and what answers a version: backends and their runtimes.

Two roles, each a protocol that mypy checks (strict) against every implementation:

- A **Backend** finds a model's versions and loads one: `local` (version folders on disk, each loaded on a
  runtime of its own: `tensorflow.py`, `litert.py`) and `tfserving` (a TensorFlow Serving it talks to).
- A **Runtime** is one loaded version: it scores images off the event loop and is closed after its last
  in-flight call. A runtime that decodes images itself (LiteRT, with Pillow) names its `decoder`; the
  core then checks and decodes each image in the decode pool, before the batcher, and `predict` gets pixels.
  One without a decoder (TensorFlow's graph, TF Serving) gets the encoded bytes.
- A **PoseScorer** is a version's pose classifier (landmarks -> scores), named in its `ModelInfo.pose` by the
  backend that loaded it: numpy on the version's POSE_FILE for local runtimes, the `pose` signature on TF
  Serving. The hand stage itself is the front end's, like decoding.

A new runtime is one module with a class that satisfies `Runtime`, and one branch in the backend that
chooses it; nothing above the registry changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class PoseScorer(Protocol):
    """A version's pose classifier: hand landmarks -> scores. Blocking (TF Serving's is a gRPC call), so it runs
    in the decode threads beside the hand stage; safe to call from several threads at once."""

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        """float32 [n, 21, 3] landmarks (picture pixels) -> float32 [n, len(labels)] scores in the version's
        label order (0 for a label the pose classifier does not know, such as `none`)."""
        ...


@dataclass
class ModelInfo:
    """What a loaded version tells about itself (labels, card, TF signature defs)."""

    name: str
    version: int
    labels: tuple[str, ...]
    card: dict[str, Any] = field(default_factory=dict)
    # tensorflow.SignatureDef protos by signature name, for TF Serving-style metadata
    signature_defs: dict[str, Any] = field(default_factory=dict)
    warmup_images: list[bytes] = field(default_factory=list)
    runtime: str = "tensorflow"  # what answers this version: tensorflow | litert | litert-float | tfserving
    platform: str = "tensorflow_savedmodel"  # the model format, in KServe V2 metadata's terms
    runtime_note: str = ""  # why that runtime (e.g. the int8 accuracy gate of IMGCLF_RUNTIME=auto)
    # the most images this runtime wants in one call (None: IMGCLF_MAX_BATCH_SIZE alone decides)
    max_batch_size: int | None = None
    # the version's pose classifier (it answers wherever the hand stage finds a hand), or None
    pose: PoseScorer | None = None


class Decoder(Protocol):
    """Checks and decodes one encoded image into the pixels the runtime's `predict` takes; raises
    InvalidInputError (or PayloadTooLargeError) for a bad image. Returns (pixels, bytes of pixels held)."""

    def __call__(self, data: bytes, *, max_pixels: int, min_side: int, index: int = 0) -> tuple[np.ndarray, int]:
        ...


class Runtime(Protocol):
    """One loaded version."""

    info: ModelInfo

    @property
    def decoder(self) -> Decoder | None:
        """The runtime's own image decoder, or None when `predict` takes encoded bytes. The same object on
        every access (the core compares it to notice a swap to another runtime)."""
        ...

    def predict(self, images: Sequence[Any]) -> np.ndarray:
        """Blocking: encoded images, or what `decoder` made of them -> float32 scores
        [len(images), len(labels)]. Warm-up images always come encoded."""
        ...

    def close(self) -> None:
        """Release the version's resources (called after its last in-flight call)."""
        ...


class Backend(Protocol):
    """Where a model's versions come from."""

    kind: str

    @property
    def unreachable(self) -> str | None:
        """Why the backend cannot be reached right now (shown while no version is loaded), or None."""
        ...

    def base_path(self, name: str) -> Path | None:
        """The folder holding the model's `<version>/` folders, or None when the backend keeps its own list
        (TF Serving): only a backend with a folder can take new versions written by teaching."""
        ...

    def set_base_path(self, name: str, path: Path) -> None:
        """Where models.config says the model lives (a backend without folders ignores it)."""
        ...

    def discover(self, name: str) -> dict[int, str]:
        """Blocking: versions that exist now, each with a fingerprint that changes when rewritten."""
        ...

    def load(self, name: str, version: int) -> Runtime:
        """Blocking: load one version; raises on a broken one."""
        ...

    def close(self) -> None:
        """Release what the backend holds (a channel); called once at shutdown."""
        ...
