"""Score an exported version on held-out class folders through its own serving signature."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data import NO_VALIDATION, ImageSet, load_folder, load_synthetic
from training.errors import DataError
from training.metrics import confusion
from version_format.layout import CARD_FILE, LABELS_FILE

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    accuracy: float
    labels: tuple[str, ...]
    confusion: list[list[int]]
    images: int
    skipped: int


def reallike_images(model_dir: Path, labels: tuple[str, ...], hands_dir: str | None, per_class: int,
                    seed: int) -> ImageSet:
    """The real-like check for an exported version: its card's validation hands (never trained on)
    from `hands_dir` (default: the folder it was trained on), in held-out scenes. A folder without
    any of those hands is taken as hands the version never saw, and all of them are used."""
    from training.realhands.reallike import reallike_set
    from training.realhands.scenes import Hands

    card_path = model_dir / CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    folder = hands_dir or card.get("data_source")
    if not folder or not Path(folder).is_dir():
        raise DataError("the real-like check needs the CGI hands: pass --hands FOLDER (class folders, "
                        "e.g. the talk's training split)")
    images = load_folder(folder)
    held = set(card.get("validation_hands") or [])
    if held and held & set(images.groups()):
        keep = np.flatnonzero([g in held for g in images.groups()])
        images = images.subset(keep)
    elif held:  # e.g. a folder of hands kept out of its training data altogether
        log.info("%s holds none of %s's validation hands: scoring every hand in it", folder, model_dir)
    elif card.get("validation") == NO_VALIDATION:
        log.warning("%s trained on every hand (--val-split 0): the check shows hands it trained on", model_dir)
    else:
        log.warning("%s records no validation hands: the check may use hands it trained on", model_dir)
    return reallike_set(Hands(images), labels, per_class=per_class, seed=seed)


def evaluate(model_dir: str | Path, data: str, batch_size: int = 32, *, seed: int = 1,
             samples_per_class: int = 300, hands_dir: str | None = None) -> Evaluation:
    """Feed encoded images to `serving_default`, exactly what a client sends, and count."""
    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").exists():
        raise DataError(f"{model_dir} is not an exported version (no saved_model.pb)")
    labels = tuple(x for x in (model_dir / LABELS_FILE).read_text().splitlines() if x)
    if data == "real-like":
        return _score(model_dir, labels, reallike_images(model_dir, labels, hands_dir, samples_per_class,
                                                         seed=12345 + seed), batch_size)
    if data == "rps-test":
        from training.download import fetch_rps

        data = str(fetch_rps("test"))
    # synthetic: a fresh set, rendered with another seed than training's, never seen in training
    images = load_synthetic(samples_per_class, seed) if data == "synthetic" else load_folder(data)
    if not set(images.labels) <= set(labels):
        raise DataError(f"{data} has classes {list(images.labels)}, the model knows {list(labels)}")
    return _score(model_dir, labels, images, batch_size)


def _score(model_dir: Path, labels: tuple[str, ...], images: ImageSet, batch_size: int) -> Evaluation:
    # folder order may differ from the model's: map folder targets onto model label indices
    remap = np.array([labels.index(name) for name in images.labels])
    truth = remap[images.targets]
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    predicted = []
    for start in range(0, len(images), batch_size):
        chunk = images.images[start:start + batch_size]
        predicted.append(fn(image_bytes=tf.constant(chunk))["scores"].numpy().argmax(axis=1))
    pred = np.concatenate(predicted)
    matrix = confusion(truth, pred, len(labels))
    return Evaluation(float((truth == pred).mean()), labels, matrix.tolist(), len(images), images.skipped)
