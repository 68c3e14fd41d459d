"""Write a trained model as `<root>/<name>/<version>/`: a self-contained, atomically published SavedModel with
its float LiteRT model beside it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hands.classifier import PoseClassifier
from training.errors import ExportError
from training.preprocessing import decode_and_resize
from version_format.atomic import fsync_tree
from version_format.layout import (
    CARD_FILE,
    INT8_FILE,
    LABELS_FILE,
    POSE_FILE,
    TFLITE_FILE,
    TMP_PREFIX,
    WARMUP_FILE,
    next_version,
    scan_versions,
)
from version_format.model_io import IMAGE_SIZE, POSE_SIGNATURE


class ServingModule(tf.Module):
    """The exported graph: image bytes in, scores and label out; preprocessing inside."""

    def __init__(self, model: keras.Model, labels: Sequence[str], image_size: int = IMAGE_SIZE):
        super().__init__()
        self.model = inference_copy(model)
        self.labels = tf.constant(list(labels))
        self.image_size = image_size

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.map_fn(
            lambda b: decode_and_resize(b, self.image_size), image_bytes,
            fn_output_signature=tf.TensorSpec([self.image_size, self.image_size, 3], tf.float32))
        scores = self.model(pixels, training=False)
        return {"scores": scores, "label": tf.gather(self.labels, tf.argmax(scores, axis=1))}

    @tf.function(input_signature=[])
    def serve_labels(self) -> dict[str, tf.Tensor]:
        """Label order, for clients (and TF Serving users) that only see signatures."""
        return {"labels": tf.identity(self.labels)}

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32,
                                                name="pixels")])
    def serve_pixels(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": self.model(pixels, training=False)}


def inference_copy(model: keras.Model) -> keras.Model:
    """The same layers and weights without the optimizer: a trained model tracks its optimizer's
    slots (two more copies of every weight with Adam), which serving never reads."""
    if getattr(model, "optimizer", None) is None:
        return model
    copy = model.__class__.from_config(model.get_config())  # never compiled: no optimizer at all
    copy.set_weights(model.get_weights())
    return copy


def attach_pose(module: tf.Module, pose: PoseClassifier, labels: Sequence[str]) -> Any:
    """Track the pose classifier's graph on `module` (saved with it) and return its `pose` signature."""
    from training.pose_graph import PoseModule

    try:
        module.pose_classifier = PoseModule(pose, labels)
    except ValueError as e:
        raise ExportError(str(e)) from None
    return module.pose_classifier.serve.get_concrete_function()


def write_pose_file(version_dir: Path, pose: PoseClassifier) -> None:
    (version_dir / POSE_FILE).write_text(json.dumps(pose.to_dict()) + "\n")


def _write_warmup(path: Path, name: str, images: Sequence[bytes]) -> None:
    """TF Serving replays these PredictionLog records on load (--enable_model_warmup)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=name, signature_name="serving_default"))
            request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def float_entry(module: ServingModule, images: Sequence[bytes]) -> tuple[bytes, dict[str, Any]]:
    """The float LiteRT model of `module` and its card entry, measured against the model on `images` (the
    warm-up ones: whoever exports without measuring on held-out images still learns whether they agree)."""
    from training.quantize import float_record, pixels_of, timed_float
    from version_format.litert import LiteRTScorer

    model, seconds = timed_float(lambda x: module.model(x, training=False))
    batches = pixels_of(list(images))
    targets = np.concatenate([np.asarray(module.model(b, training=False)).argmax(1) for b in batches]) if batches \
        else np.zeros(0, np.int64)
    record = float_record(model, lambda x: np.asarray(module.model(x, training=False)), LiteRTScorer(model),
                          {"warmup": (batches, targets)} if batches else {},
                          {"warmup": f"the {len(images)} warm-up images (truth: the SavedModel's own top class)"}
                          if batches else {}, seconds)
    return model, record


def export(model: keras.Model, labels: Sequence[str], model_root: str | Path, name: str, *,
           version: int | None = None, card: dict[str, Any] | None = None,
           warmup_images: Sequence[bytes] = (), float_model: tuple[bytes, dict[str, Any]] | None = None,
           int8_model: bytes | None = None, pose: PoseClassifier | None = None) -> Path:
    """Save to a temporary folder beside the versions, then rename it to the next integer.

    With a pose classifier, the version also carries it as POSE_FILE (for the server's numpy) and as the
    `pose` signature (for TF Serving); without one it has neither.

    Every version carries its float LiteRT model (TFLITE_FILE): `float_model` is the file and its card entry
    as training measured them on held-out images; without it, the model is converted here and checked on the
    warm-up images.

    A reader polling `<root>/<name>/` sees either nothing or a complete version; a run
    killed midway leaves only a `.tmp-*` folder, which every reader ignores.
    """
    if not name or "/" in name or name.startswith("."):
        raise ExportError(f"invalid model name {name!r}")
    base = Path(model_root) / name
    base.mkdir(parents=True, exist_ok=True)
    if version is not None and (version < 1 or (base / str(version)).exists()):
        raise ExportError(f"version {version} of {name!r} already exists or is not a positive "
                          f"integer; existing versions: {scan_versions(base)}")
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base))
    try:
        module = ServingModule(model, labels)
        signatures = {
            "serving_default": module.serve_bytes.get_concrete_function(),
            "serving_pixels": module.serve_pixels.get_concrete_function(),
            "labels": module.serve_labels.get_concrete_function(),
        }
        if pose is not None:
            signatures[POSE_SIGNATURE] = attach_pose(module, pose, labels)
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / LABELS_FILE).write_text("\n".join(labels) + "\n")
        (tmp / "assets.extra").mkdir(exist_ok=True)
        if pose is not None:
            write_pose_file(tmp, pose)
        if warmup_images:
            _write_warmup(tmp / WARMUP_FILE, name, warmup_images)
        float_bytes, float_card = float_model or float_entry(module, warmup_images)
        (tmp / TFLITE_FILE).write_bytes(float_bytes)
        if int8_model is not None:
            (tmp / INT8_FILE).write_bytes(int8_model)
        return publish(tmp, base, version, {**(card or {}), "float": float_card}, name, labels)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, base: Path, version: int | None, card: dict[str, Any], name: str,
            labels: Sequence[str]) -> Path:
    """Write the card into `tmp` and rename it to `base/<version>` (the next free one when None)."""
    for _ in range(100):  # another trainer may take the same number: try the next one
        chosen = version if version is not None else next_version(base)
        full_card = {
            "name": name, "version": chosen, "labels": list(labels),
            "input_size": [IMAGE_SIZE, IMAGE_SIZE, 3],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tensorflow_version": tf.__version__, "keras_version": keras.__version__,
            **card,
        }
        (tmp / CARD_FILE).write_text(json.dumps(full_card, indent=2) + "\n")
        fsync_tree(tmp)
        target = base / str(chosen)
        if target.exists():
            if version is not None:
                raise ExportError(f"version {version} of {name!r} already exists")
            continue
        try:
            # rename is atomic and refuses a non-empty target, so two trainers never share a number
            os.rename(tmp, target)
        except OSError:
            if version is not None:
                raise ExportError(f"version {version} of {name!r} already exists") from None
            continue
        return target
    raise ExportError(f"could not find a free version number under {base}")
