"""The LiteRT models beside the SavedModel: its float conversion and its full-integer quantization, each
scored against the SavedModel (the int8 one with its accuracy gate)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from training.data import ImageSet, load_folder, load_synthetic
from training.errors import DataError
from training.metrics import confusion
from training.preprocessing import decode_and_resize
from version_format.atomic import atomic_write
from version_format.layout import CARD_FILE, INT8_FILE, LABELS_FILE, TFLITE_FILE
from version_format.litert import LiteRTScorer
from version_format.model_io import IMAGE_SIZE

REPRESENTATIVE_IMAGES = 200
# what the file takes and gives: float pixels as the SavedModel's serving_pixels, int8 inside
INT8_INTERFACE = ("float32 pixels [1, 150, 150, 3] in [0, 1] (the serving graph's decode and resize) -> "
                  "float32 scores; every operation int8 (TFLITE_BUILTINS_INT8)")
FLOAT_INTERFACE = ("float32 pixels [1, 150, 150, 3] in [0, 1] (the serving graph's decode and resize) -> "
                   "float32 scores; the SavedModel's serving_pixels operations in float32, nothing quantized")


def convert_int8(fn: Callable[..., Any], representative: np.ndarray) -> bytes:
    """Full-integer quantization of `fn` (pixels -> scores), calibrated on `representative` pixels."""
    converter = _converter(fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = lambda: ([p[None]] for p in representative)
    return bytes(converter.convert())


def convert_float(fn: Callable[..., Any]) -> bytes:
    """`fn` (pixels -> scores) as a float32 LiteRT model: the same operations as the SavedModel, nothing
    quantized, so its scores follow the SavedModel's to float rounding and need no accuracy gate."""
    return bytes(_converter(fn).convert())


def _converter(fn: Callable[..., Any]) -> Any:
    """A converter of `fn` frozen first: Keras 3 and restored SavedModel variables otherwise reach the
    converter as unread resource variables (READ_VARIABLE fails)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="pixels")
    concrete = fn if hasattr(fn, "structured_input_signature") else tf.function(fn).get_concrete_function(spec)
    return tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(concrete)])


def accuracy(predict: Callable[[np.ndarray], np.ndarray], pixels: Iterable[np.ndarray],
             targets: np.ndarray, n_labels: int) -> tuple[float, list[list[int]]]:
    """Accuracy and confusion matrix of `predict` over batches of pixels."""
    pred = np.concatenate([np.asarray(predict(np.asarray(b))).argmax(axis=1) for b in pixels])
    matrix = confusion(targets, pred, n_labels)
    return float(np.trace(matrix) / max(1, matrix.sum())), matrix.tolist()


def pixels_of(images: Sequence[bytes], batch_size: int = 32) -> list[np.ndarray]:
    """The serving graph's own decode and resize, in batches."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = tf.constant(list(images[start:start + batch_size]))
        out.append(tf.map_fn(decode_and_resize, chunk, fn_output_signature=tf.float32).numpy())
    return out


def representative_pixels(images: ImageSet, count: int = REPRESENTATIVE_IMAGES, seed: int = 0) -> np.ndarray:
    """`count` training images spread evenly over the labels, decoded like the serving graph."""
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for c in range(len(images.labels)):
        idx = np.flatnonzero(images.targets == c)
        if len(idx):
            picks.extend(rng.choice(idx, min(len(idx), -(-count // len(images.labels))), replace=False).tolist())
    return np.concatenate(pixels_of([images.images[i] for i in sorted(picks)[:count]]))


def gate_record(measured: dict[str, tuple[float, float]], *, representative: int, size: int,
                measured_on: dict[str, str]) -> dict[str, Any]:
    """The card's `int8` entry: fp32 and int8 top-1 per set, the drop in points, what was used."""
    drops = {k: round((fp32 - int8) * 100, 2) for k, (fp32, int8) in measured.items()}
    return {
        "file": INT8_FILE, "bytes": size, "interface": INT8_INTERFACE,
        "representative_images": representative,
        "fp32_accuracy": {k: round(v[0], 4) for k, v in measured.items()},
        "int8_accuracy": {k: round(v[1], 4) for k, v in measured.items()},
        "drop_points": drops,
        # what `auto` compares with IMGCLF_INT8_MAX_DROP_POINTS: the worst set
        "max_drop_points": max(drops.values()) if drops else None,
        "measured_on": measured_on,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def float_record(model: bytes, fp32_predict: Callable[[np.ndarray], np.ndarray], scorer: LiteRTScorer,
                 sets: dict[str, tuple[list[np.ndarray], np.ndarray]], measured_on: dict[str, str],
                 seconds: float) -> dict[str, Any]:
    """The card's `float` entry: per set, the SavedModel's and the float model's top-1, how often their top
    classes agree, and the largest score difference over every image (float rounding only, if converted right)."""
    accuracy_of: dict[str, dict[str, float]] = {"savedmodel_accuracy": {}, "float_accuracy": {}, "top1_agreement": {}}
    images: dict[str, int] = {}
    max_diff = 0.0
    for key, (batches, truth) in sets.items():
        fp32 = np.concatenate([np.asarray(fp32_predict(np.asarray(b))) for b in batches])
        lite = np.concatenate([scorer(np.asarray(b)) for b in batches])
        accuracy_of["savedmodel_accuracy"][key] = round(float((fp32.argmax(1) == truth).mean()), 4)
        accuracy_of["float_accuracy"][key] = round(float((lite.argmax(1) == truth).mean()), 4)
        accuracy_of["top1_agreement"][key] = round(float((fp32.argmax(1) == lite.argmax(1)).mean()), 4)
        images[key] = len(truth)
        max_diff = max(max_diff, float(np.abs(fp32 - lite).max()) if len(truth) else 0.0)
    return {
        "file": TFLITE_FILE, "bytes": len(model), "interface": FLOAT_INTERFACE, **accuracy_of,
        "max_score_difference": float(f"{max_diff:.3g}") if sum(images.values()) else None,
        "images": images, "measured_on": measured_on,
        "convert_seconds": round(seconds, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def timed_float(fn: Callable[..., Any]) -> tuple[bytes, float]:
    """convert_float(fn) and the seconds it took (recorded in the card: the cost every export pays)."""
    started = time.monotonic()
    model = convert_float(fn)
    return model, time.monotonic() - started


def _sources(version_dir: Path, card: dict[str, Any], data: str | None) -> tuple[ImageSet, str]:
    source = data or card.get("data_source") or ""
    if source == "synthetic" or str(source).startswith("synthetic"):
        return load_synthetic(max(20, REPRESENTATIVE_IMAGES // 3), seed=card.get("seed", 0)), "synthetic"
    if not source or not Path(source).is_dir():
        raise DataError(f"{version_dir} needs its training images for calibration and the accuracy check: "
                        "pass --data FOLDER (class folders, e.g. ../shared/data/rps-train) or --data synthetic")
    return load_folder(source), str(source)


def quantize_version(version_dir: str | Path, *, data: str | None = None, per_class: int | None = None,
                     seed: int = 1, int8: bool = True) -> dict[str, Any]:
    """Add the float and the int8 LiteRT models to an existing version, each with its measured accuracy
    against the SavedModel in the card (`int8=False`: the float one only, an existing int8 model and its
    figures kept as they are).

    Calibration uses training images (the card's validation hands excluded); the drop is measured on
    the held-out hands as plain renders and on a real-like set of `per_class` scenes per label
    (synthetic versions: a fresh synthetic set; default: as many as training's check). Returns the
    card's new entries, {"float": ..., "int8": ...}.
    """
    from training.realhands.reallike import PER_CLASS

    per_class = per_class or PER_CLASS
    version_dir = Path(version_dir)
    if not (version_dir / "saved_model.pb").exists():
        raise DataError(f"{version_dir} is not an exported version (no saved_model.pb)")
    labels = tuple(x for x in (version_dir / LABELS_FILE).read_text().splitlines() if x)
    card_path = version_dir / CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    images, source = _sources(version_dir, card, data)
    held = set(card.get("validation_hands") or [])
    groups = images.groups()
    train_part = images.subset(np.flatnonzero([g not in held for g in groups]))
    remap = np.array([labels.index(n) if n in labels else -1 for n in images.labels])
    if (remap < 0).any():
        raise DataError(f"{source} has classes {list(images.labels)}, the model knows {list(labels)}")

    loaded = tf.saved_model.load(str(version_dir))  # kept: its signatures only reference its variables
    fp32 = loaded.signatures["serving_pixels"]
    threads = max(1, min(2, os.cpu_count() or 1))
    float_model, float_seconds = timed_float(fp32)
    float_scorer = LiteRTScorer(float_model, threads=threads)
    if int8:
        representative = representative_pixels(train_part, seed=seed)
        model = convert_int8(fp32, representative)
        scorer = LiteRTScorer(model, threads=threads)

    def fp32_predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(fp32(pixels=tf.constant(x))["scores"])

    sets: dict[str, tuple[list[bytes], np.ndarray]] = {}
    measured_on: dict[str, str] = {}
    if source == "synthetic":
        fresh = load_synthetic(per_class, seed=seed + 1000)
        sets["validation"] = (fresh.images, remap[fresh.targets])
        measured_on["validation"] = f"{len(fresh)} fresh synthetic renders (seed {seed + 1000})"
    else:
        plain = images.subset(np.flatnonzero([g in held for g in groups])) if held else images.subset(
            np.arange(0, len(images), max(1, len(images) // (per_class * len(images.labels)))))
        sets["validation"] = (plain.images, remap[plain.targets])
        measured_on["validation"] = (f"{len(plain)} plain renders of the held-out hands {sorted(held)}" if held
                                     else f"{len(plain)} training images (the card names no held-out hands)")
        from training.evaluate import reallike_images

        real = reallike_images(version_dir, labels, source, per_class, seed=12345 + seed)
        sets["reallike"] = (real.images, real.targets)
        measured_on["reallike"] = f"{len(real)} real-like scenes ({per_class} per label, seed {12345 + seed})"
    pixel_sets = {key: (pixels_of(encoded), truth) for key, (encoded, truth) in sets.items()}
    records = {"float": float_record(float_model, fp32_predict, float_scorer, pixel_sets, measured_on, float_seconds)}
    records["float"]["added"] = (f"by `imgclf quantize` to version {version_dir.name} "
                                 f"(created {card.get('created', '?')})")
    if int8:
        measured = {key: (accuracy(fp32_predict, batches, truth, len(labels))[0],
                          accuracy(scorer, batches, truth, len(labels))[0])
                    for key, (batches, truth) in pixel_sets.items()}
        records["int8"] = gate_record(measured, representative=len(representative), size=len(model),
                                      measured_on=measured_on)
    card.update(records)
    # the card first: a server reloads the version when the int8 file appears, and must read its gate;
    # the int8 file last, so that reload also finds the float model
    atomic_write(card_path, (json.dumps(card, indent=2) + "\n").encode())
    atomic_write(version_dir / TFLITE_FILE, float_model)
    if int8:
        atomic_write(version_dir / INT8_FILE, model)
    return records
