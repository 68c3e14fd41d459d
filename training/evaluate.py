"""Score an exported version on held-out class folders through its own serving signature."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data import DataError, load_folder, load_synthetic
from training.export import LABELS_FILE


@dataclass
class Evaluation:
    accuracy: float
    labels: tuple[str, ...]
    confusion: list[list[int]]
    images: int
    skipped: int


def evaluate(model_dir: str | Path, data: str, batch_size: int = 32, *, seed: int = 1,
             samples_per_class: int = 300) -> Evaluation:
    """Feed encoded images to `serving_default`, exactly what a client sends, and count."""
    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").exists():
        raise DataError(f"{model_dir} is not an exported version (no saved_model.pb)")
    labels = tuple(x for x in (model_dir / LABELS_FILE).read_text().splitlines() if x)
    if data == "rps-test":
        from training.download import fetch_rps

        data = str(fetch_rps("test"))
    # synthetic: a fresh set, rendered with another seed than training's, never seen in training
    images = load_synthetic(samples_per_class, seed) if data == "synthetic" else load_folder(data)
    if set(images.labels) != set(labels):
        raise DataError(f"{data} has classes {list(images.labels)}, the model knows {list(labels)}")
    # folder order may differ from the model's: map folder targets onto model label indices
    remap = np.array([labels.index(name) for name in images.labels])
    truth = remap[images.targets]
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    predicted = []
    for start in range(0, len(images), batch_size):
        chunk = images.images[start:start + batch_size]
        predicted.append(fn(image_bytes=tf.constant(chunk))["scores"].numpy().argmax(axis=1))
    pred = np.concatenate(predicted)
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        matrix[t, p] += 1
    return Evaluation(float((truth == pred).mean()), labels, matrix.tolist(), len(images), images.skipped)
