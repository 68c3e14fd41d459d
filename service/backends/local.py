"""In-process backend: each version on TensorFlow (the SavedModel's `serving_default` on image bytes) or
on LiteRT (its int8 model, or its SavedModel in float: service/backends/litert.py), as IMGCLF_RUNTIME chooses."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from service.backends.base import ModelInfo
from service.backends.litert import LiteRTModel, Precision, int8_gate
from service.errors import InvalidInputError
from training.layout import CARD_FILE, INT8_FILE, LABELS_FILE, WARMUP_FILE, scan_versions

log = logging.getLogger(__name__)


def read_signature_defs(path: Path) -> dict[str, Any]:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    defs = proto.meta_graphs[0].signature_def
    return {k: defs[k] for k in defs if not k.startswith("__")}


def read_warmup_images(path: Path, limit: int = 8) -> list[bytes]:
    from tensorflow_serving.apis import prediction_log_pb2

    file = path / WARMUP_FILE
    images: list[bytes] = []
    if not file.exists():
        return images
    for record in tf.data.TFRecordDataset(str(file)).take(limit):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        images.extend(entry.predict_log.request.inputs["image_bytes"].string_val)
    return images


class LocalModel:
    """One loaded version; `predict` runs TensorFlow and must be called off the event loop."""

    runtime = "tensorflow"

    def __init__(self, name: str, version: int, path: Path, reason: str = ""):
        self.path = path
        labels_file = path / LABELS_FILE
        if not labels_file.exists():
            raise ValueError(f"{labels_file} is missing")
        labels = tuple(x for x in labels_file.read_text().splitlines() if x)
        card_file = path / CARD_FILE
        card = json.loads(card_file.read_text()) if card_file.exists() else {}
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


class LocalBackend:
    """Reads `<base path>/<int>/` from the local file system; a model's base path defaults to
    `<model_root>/<name>` and comes from models.config when one is used."""

    kind = "local"

    def __init__(self, model_root: Path, *, runtime: str = "tensorflow", int8_max_drop_points: float = 0.5,
                 litert_threads: int = 1, litert_max_batch_size: int | None = None):
        self.model_root = Path(model_root)
        self.base_paths: dict[str, Path] = {}
        self.runtime = runtime
        self.int8_max_drop_points = int8_max_drop_points
        self.litert_threads = litert_threads
        # int8 on XNNPACK gains nothing from big batches; they only make the requests behind them wait
        # (c=32: p99 76 ms at 8 images a call against 90-99 ms at 32, for the same throughput)
        self.litert_max_batch_size = litert_max_batch_size

    def base_path(self, name: str) -> Path:
        return self.base_paths.get(name, self.model_root / name)

    def discover(self, name: str) -> dict[int, str]:
        base = self.base_path(name)
        found = {}
        for version in scan_versions(base):
            pb = base / str(version) / "saved_model.pb"
            try:
                st = pb.stat()
                found[version] = f"{st.st_mtime_ns}:{st.st_size}"
            except FileNotFoundError:
                found[version] = "missing saved_model.pb"
                continue
            if self.runtime in ("litert", "auto"):  # an int8 model added later (imgclf quantize) reloads it
                try:
                    st = (base / str(version) / INT8_FILE).stat()
                    found[version] += f"+int8:{st.st_mtime_ns}:{st.st_size}"
                except FileNotFoundError:
                    pass
        return found

    def load(self, name: str, version: int) -> LocalModel | LiteRTModel:
        path = self.base_path(name) / str(version)
        if self.runtime == "tensorflow":
            return LocalModel(name, version, path, "IMGCLF_RUNTIME=tensorflow")
        if self.runtime == "litert-float":
            return self._litert(name, version, path, "float", "the SavedModel converted to float at load")
        card_file = path / CARD_FILE
        card = json.loads(card_file.read_text()) if card_file.exists() else {}
        ok, why = int8_gate(card, (path / INT8_FILE).exists(), self.int8_max_drop_points)
        if self.runtime == "auto" and not ok:
            return self._auto_float(name, version, path, why)
        return self._litert(name, version, path, "int8", why)

    def _auto_float(self, name: str, version: int, path: Path, why: str) -> LocalModel | LiteRTModel:
        """`auto` without an int8 model it may serve: the SavedModel in float on LiteRT (its own accuracy,
        with LiteRT's calls and decoding beside the model), or on TensorFlow when it cannot be converted."""
        try:
            return self._litert(name, version, path, "float", f"{why}; the SavedModel converted to float at load")
        except Exception as exc:  # no serving_pixels signature, an op LiteRT lacks: TensorFlow still can
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.info("version %d of %s: not served on LiteRT (%s); TensorFlow answers", version, name, reason)
            return LocalModel(name, version, path, f"IMGCLF_RUNTIME=auto: {why}; not convertible to LiteRT "
                                                   f"({reason})")

    def _litert(self, name: str, version: int, path: Path, precision: Precision, why: str) -> LiteRTModel:
        if not (path / "saved_model.pb").exists():  # the same version layout, whichever runtime answers
            raise ValueError(f"{path} has no saved_model.pb")
        return LiteRTModel(name, version, path, threads=self.litert_threads, max_batch_size=self.litert_max_batch_size,
                           reason=f"IMGCLF_RUNTIME={self.runtime}: {why}", precision=precision,
                           signature_defs=read_signature_defs(path), warmup_images=read_warmup_images(path))
