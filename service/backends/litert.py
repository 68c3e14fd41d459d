"""In-process LiteRT runtimes (XNNPACK), images decoded by Pillow: the version's full-integer model (`litert`), or
its float LiteRT model (`litert-float`): the file exported with it, or for an older version without one, its
SavedModel converted at load (the one path here that imports TensorFlow)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from service.backends.base import Decoder, ModelInfo
from service.images import decode_checked
from version_format.card import INT8_KEY, read_card, read_labels
from version_format.layout import INT8_FILE, TFLITE_FILE
from version_format.litert import LiteRTScorer
from version_format.model_io import IMAGE_SIZE

log = logging.getLogger(__name__)

Precision = Literal["int8", "float"]  # litert: the int8 file; litert-float: the float file (or conversion)

# the graph's own limits stay with the request checks; a warm-up image is trusted but still bounded
_WARMUP_MAX_PIXELS = 16_000_000


def int8_gate(card: dict[str, Any], present: bool, max_drop_points: float) -> tuple[bool, str]:
    """Whether `auto` may serve the int8 model, and why (shown with the version's runtime)."""
    if not present:
        return False, f"no {INT8_FILE} (add one with `imgclf quantize VERSION_DIR`)"
    drop = (card.get(INT8_KEY) or {}).get("max_drop_points")
    if drop is None:
        return False, "the card records no measured int8 accuracy"
    if drop > max_drop_points:
        return False, f"int8 top-1 drop {drop:g} points > {max_drop_points:g} allowed"
    return True, f"int8 top-1 drop {drop:g} points <= {max_drop_points:g} allowed"


def float_model(path: Path) -> tuple[bytes, str]:
    """The version's float LiteRT model and where it came from: its TFLITE_FILE, or for a version exported
    before every version carried one, its `serving_pixels` signature (pixels -> scores) converted now."""
    if (path / TFLITE_FILE).is_file():
        return (path / TFLITE_FILE).read_bytes(), f"float model from {TFLITE_FILE}"
    if importlib.util.find_spec("tensorflow") is None:  # the serve image
        raise ValueError(f"{path} has no {TFLITE_FILE}, and converting its SavedModel needs TensorFlow, which this "
                         f"install leaves out: add the file with `imgclf quantize {path}` (imgclf:full)")
    # imported here: only a version without the file brings TensorFlow into the serving process
    import tensorflow as tf

    from training.quantize import convert_float

    loaded = tf.saved_model.load(str(path))  # kept referenced while converting: the signature needs its variables
    if "serving_pixels" not in loaded.signatures:
        raise ValueError(f"{path} has no {TFLITE_FILE} and no serving_pixels signature (pixels -> scores) to "
                         "run on LiteRT; serve it with IMGCLF_RUNTIME=tensorflow")
    return (convert_float(loaded.signatures["serving_pixels"]),
            f"no {TFLITE_FILE}: its SavedModel converted to float at load (add the file with `imgclf quantize {path}`)")


class LiteRTRuntime:
    """One loaded version on LiteRT. `decode` (bytes -> uint8 pixels) may run in any thread; `predict`
    takes decoded pixels (or bytes, e.g. warm-up images) and must run off the event loop.

    `precision="int8"` runs the version's int8 file; `"float"` its float file (converting its SavedModel at load,
    about a second for the demo version, when it has none), which gives the SavedModel's scores to float
    rounding (no accuracy gate needed).
    On a CPU without 8-bit dot-product instructions (VNNI), float is the faster of the two.
    """

    def __init__(self, name: str, version: int, path: Path, *, threads: int = 1, max_batch_size: int | None = None,
                 reason: str = "", signature_defs: dict[str, Any] | None = None,
                 warmup_images: list[bytes] | None = None, precision: Precision = "int8"):
        self.path = path
        self.runtime = "litert" if precision == "int8" else "litert-float"
        labels = read_labels(path)
        model_file = path / INT8_FILE
        if precision == "int8" and not model_file.exists():
            raise ValueError(f"{path} has no int8 model ({INT8_FILE}); add one with `imgclf quantize {path}` "
                             "or serve it with IMGCLF_RUNTIME=tensorflow or litert-float")
        card = read_card(path)
        blob, source = (model_file.read_bytes(), f"int8 model from {INT8_FILE}") if precision == "int8" \
            else float_model(path)
        self._scorer: Any = LiteRTScorer(blob, threads=threads)
        probe = self._scorer(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32))
        if probe.shape != (1, len(labels)):
            raise ValueError(f"{path}'s {precision} model gives {probe.shape[1]} scores for {len(labels)} labels")
        self.xnnpack = bool(self._scorer.xnnpack)
        self.info = ModelInfo(name=name, version=version, labels=labels, card=card,
                              signature_defs=signature_defs or {}, warmup_images=warmup_images or [],
                              runtime=self.runtime, platform="tensorflow_tflite", max_batch_size=max_batch_size,
                              runtime_note=f"{reason}; {source}; XNNPACK {'on' if self.xnnpack else 'off'}, "
                                           f"{threads} thread(s) per interpreter".lstrip("; "))

    @staticmethod
    def decode(data: bytes, *, max_pixels: int, min_side: int, index: int = 0) -> tuple[np.ndarray, int]:
        return decode_checked(data, max_pixels=max_pixels, min_side=min_side, index=index, size=IMAGE_SIZE)

    @property
    def decoder(self) -> Decoder:
        return LiteRTRuntime.decode  # one function object for every version on LiteRT

    def predict(self, images: Sequence[bytes | np.ndarray]) -> np.ndarray:
        pixels = [self.decode(x, max_pixels=_WARMUP_MAX_PIXELS, min_side=1)[0] if isinstance(x, bytes) else x
                  for x in images]
        # uint8 -> [0, 1] float here, one image at a time, as the graph's convert_image_dtype does
        return np.asarray(self._scorer(np.multiply(p, np.float32(1 / 255), dtype=np.float32) for p in pixels))

    def close(self) -> None:
        self._scorer = None
