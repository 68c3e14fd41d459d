"""The real-like check: hands the model never trained on, in scenes it never saw, sized like webcam shots.

Real photos of hands stay out of this project, so this is the proxy reported with every run:
the validation hands (whole rendered hands held out of training) cut out and composited onto
the held-out background photos and procedural rooms, at random sizes from 96 to 632 px, JPEG
encoded, and scored through the same decode-and-resize the serving graph runs. `none` scenes
are included when the model knows `none`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import tensorflow as tf

from training.data import ImageSet
from training.metrics import confusion
from training.preprocessing import decode_and_resize
from training.realhands import composite
from training.realhands.scenes import Hands, encode_jpeg, render
from version_format.model_io import NONE_LABEL

MIN_SIZE, MAX_SIZE = 96, 632
# scenes per label: 1,200 with `none`, since one 400-scene draw moves by about 3 points
PER_CLASS = 300


def reallike_set(hands: Hands, labels: tuple[str, ...], per_class: int = PER_CLASS, seed: int = 12345) -> ImageSet:
    """`per_class` JPEG scenes per label (hands drawn evenly from `hands`), deterministic for `seed`.

    Each scene has its own generator, so the set is the same however many threads render it."""
    rng = np.random.default_rng(seed)
    jobs: list[Callable[[], bytes]] = []
    targets: list[int] = []
    for name in labels:
        if name == NONE_LABEL:
            jobs += [partial(_empty, seed, k) for k in range(per_class)]
            targets += [labels.index(name)] * per_class
            continue
        candidates = np.flatnonzero(np.array([hands.labels[t] for t in hands.targets]) == name)
        if len(candidates) == 0:
            continue
        picks = rng.choice(candidates, per_class, replace=len(candidates) < per_class)
        jobs += [partial(_hand, hands, seed, int(i), k) for k, i in enumerate(picks)]
        targets += [labels.index(name)] * per_class
    return ImageSet(render(jobs, "real-like scenes"), np.array(targets, dtype=np.int64), labels)


def _empty(seed: int, k: int) -> bytes:
    r = np.random.default_rng([seed, 2, k])
    size = int(r.integers(MIN_SIZE, MAX_SIZE + 1))
    return encode_jpeg(composite.empty_scene(size, r, held_out=True), int(r.integers(60, 95)))


def _hand(hands: Hands, seed: int, i: int, k: int) -> bytes:
    r = np.random.default_rng([seed, 1, i, k])
    size = int(r.integers(MIN_SIZE, MAX_SIZE + 1))
    return encode_jpeg(hands.scene(i, size, r, held_out=True), int(r.integers(60, 95)))


def score(predict: Callable[[tf.Tensor], np.ndarray], images: ImageSet, batch_size: int = 32,
          ) -> tuple[float, list[list[int]]]:
    """Accuracy and confusion matrix of `predict` (pixels -> scores) on encoded images."""
    n = len(images.labels)
    predicted = []
    for start in range(0, len(images), batch_size):
        chunk = tf.constant(images.images[start:start + batch_size])
        pixels = tf.map_fn(decode_and_resize, chunk, fn_output_signature=tf.float32)
        predicted.append(np.asarray(predict(pixels)).argmax(axis=1))
    pred = np.concatenate(predicted) if predicted else np.zeros(0, dtype=np.int64)
    matrix = confusion(images.targets, pred, n)
    return float(np.trace(matrix) / max(1, matrix.sum())), matrix.tolist()
