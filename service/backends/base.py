"""The backend protocol the registry drives: discover versions, load one, predict on image bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


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


class LoadedModel(Protocol):
    info: ModelInfo

    def predict(self, images: Sequence[Any]) -> np.ndarray:
        """Blocking: encoded images (or what the model's optional `decode` made of them) ->
        float32 scores [len(images), len(labels)]."""
        ...

    def close(self) -> None:
        """Release the version's resources (called after its last in-flight call)."""
        ...


class Backend(Protocol):
    kind: str

    def discover(self, name: str) -> dict[int, str]:
        """Blocking: versions that exist now, each with a fingerprint that changes when rewritten."""
        ...

    def load(self, name: str, version: int) -> LoadedModel:
        """Blocking: load one version; raises on a broken one."""
        ...
