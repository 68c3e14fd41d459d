"""The TensorFlow runtime: a version's SavedModel, its `serving_default` signature on encoded image bytes
(decoding and preprocessing run inside the graph). The only local runtime that imports TensorFlow, so
local.py imports it only for a version this runtime serves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from service.backends.base import Decoder, ModelInfo
from service.backends.version_files import read_signature_defs, read_warmup_images
from service.errors import InvalidInputError
from version_format.card import read_card, read_labels


class TensorFlowRuntime:
    """One loaded version; `predict` runs TensorFlow and must be called off the event loop."""

    runtime = "tensorflow"
    decoder: Decoder | None = None  # the graph decodes: predict takes the encoded bytes

    def __init__(self, name: str, version: int, path: Path, reason: str = ""):
        self.path = path
        labels, card = read_labels(path), read_card(path)
        self._loaded = tf.saved_model.load(str(path))
        if "serving_default" not in self._loaded.signatures:
            raise ValueError(f"{path} has no serving_default signature")
        self._fn = self._loaded.signatures["serving_default"]
        self.info = ModelInfo(name=name, version=version, labels=labels, card=card,
                              signature_defs=read_signature_defs(path),
                              warmup_images=read_warmup_images(path), runtime=self.runtime,
                              runtime_note=reason)

    def predict(self, images: Sequence[bytes]) -> np.ndarray:
        try:
            out = self._fn(image_bytes=tf.constant(list(images), dtype=tf.string))
        except tf.errors.InvalidArgumentError as exc:
            # a bad image the header checks let through (e.g. corrupt data mid-file)
            raise InvalidInputError(f"image could not be decoded: {exc.message.splitlines()[0]}") from None
        return out["scores"].numpy()

    def close(self) -> None:
        self._fn = None
        self._loaded = None
