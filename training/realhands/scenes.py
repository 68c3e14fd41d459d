"""The real-hands recipe's data: CGI hands composited into scenes, plus a `none` class of empty scenes.

Scenes are rendered once per run into fixed uint8 pools (a pure function of the seed), then a
cheap per-epoch augmentation in tf.data varies them further; rendering every epoch would cost
more CPU than the network itself on a 2-core machine.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import numpy as np
import tensorflow as tf
from PIL import Image

from training.data import ImageSet, untuned
from training.realhands import composite
from version_format.model_io import NONE_LABEL

log = logging.getLogger(__name__)

SCENE_SIZE = 150
T = TypeVar("T")  # what a render job returns


def decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def with_none(labels: Sequence[str]) -> tuple[str, ...]:
    """The label order with `none` added, sorted as class folders sort."""
    return tuple(sorted({*labels, NONE_LABEL}))


class Hands:
    """Each image prepared once: a cut-out hand for white-background renders, else the photo."""

    def __init__(self, images: ImageSet) -> None:
        started = time.monotonic()
        self.cutouts: list[np.ndarray | None] = []
        self.photos: list[np.ndarray | None] = []
        for data in images.images:
            rgb = decode_rgb(data)
            hand = composite.cutout(rgb) if composite.has_white_background(rgb) else None
            self.cutouts.append(hand)
            self.photos.append(None if hand is not None else rgb)
        self.targets = images.targets
        self.labels = images.labels
        log.info("prepared %d hands (%d cut out of a white background, %d photos) in %.1fs",
                 len(self), sum(h is not None for h in self.cutouts),
                 sum(p is not None for p in self.photos), time.monotonic() - started)

    def __len__(self) -> int:
        return len(self.cutouts)

    def scene(self, index: int, size: int, rng: np.random.Generator, *, held_out: bool = False,
              style: composite.Style = composite.Style()) -> np.ndarray:
        hand = self.cutouts[index]
        if hand is not None:
            return composite.hand_scene(hand, size, rng, held_out=held_out, style=style)
        photo = self.photos[index]
        assert photo is not None
        return composite.photo_view(photo, size, rng)


def render(jobs: Sequence[Callable[[], T]], what: str, workers: int = 2) -> list[T]:
    """Run render jobs on a few threads (Pillow and numpy release the GIL), reporting progress."""
    started = time.monotonic()
    out: list[T] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, image in enumerate(pool.map(lambda job: job(), jobs)):
            out.append(image)
            if (i + 1) % 2000 == 0:
                log.info("rendered %d/%d %s", i + 1, len(jobs), what)
    log.info("rendered %d %s in %.1fs", len(out), what, time.monotonic() - started)
    return out


class ScenePool:
    """Rendered views of every hand (view 0 the plain render, then scenes) and empty scenes."""

    def __init__(self, hands: Hands, labels: tuple[str, ...], *, variants: int, none_count: int, seed: int,
                 size: int = SCENE_SIZE, held_out: bool = False, style: composite.Style = composite.Style()) -> None:
        remap = np.array([labels.index(name) for name in hands.labels])
        self.labels = labels
        self.targets = remap[hands.targets].astype(np.int64)
        jobs: list[Callable[[], np.ndarray]] = []
        for i in range(len(hands)):
            jobs.append(partial(_plain, hands, i, size))
            for v in range(variants):
                jobs.append(partial(_hand_scene, hands, i, size, [seed, 1, i, v], held_out, style))
        if NONE_LABEL in labels:
            for k in range(none_count):
                jobs.append(partial(_empty_scene, size, [seed, 2, k], held_out))
        images = np.stack(render(jobs, "scenes"))
        n_views = (variants + 1) * len(hands)
        self.views = images[:n_views].reshape(len(hands), variants + 1, size, size, 3)
        self.empty = images[n_views:]

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """Every view and every empty scene once, e.g. for validation."""
        n, v = self.views.shape[:2]
        images = np.concatenate([self.views.reshape(n * v, *self.views.shape[2:]), self.empty])
        targets = np.concatenate([np.repeat(self.targets, v),
                                  np.full(len(self.empty), self._none_index(), dtype=np.int64)])
        return images, targets

    def _none_index(self) -> int:
        return self.labels.index(NONE_LABEL) if NONE_LABEL in self.labels else -1

    def epoch_size(self) -> int:
        return len(self.views) + self._none_per_epoch()

    def _none_per_epoch(self) -> int:
        """Half a class's worth: `none` must be learnt, but a real hand answered `none` is an error,
        so the prior leans towards the hands."""
        if not len(self.empty):
            return 0
        return min(len(self.empty), round(len(self.views) / max(1, len(self.labels) - 1) / 2))

    def epoch_targets(self) -> np.ndarray:
        """The targets one epoch holds (in no particular order)."""
        return np.concatenate([self.targets, np.full(self._none_per_epoch(), self._none_index(), dtype=np.int64)])

    def epoch_indices(self, seed: int, epoch: int, plain_share: float = 0.25) -> np.ndarray:
        """One epoch as indices into `flat()`: every hand once, in a view drawn at random (the
        plain render with `plain_share`), plus a class's worth of empty scenes; shuffled."""
        rng = np.random.default_rng([seed, 3, epoch])
        n, v = self.views.shape[:2]
        probs = np.ones(1)
        if v > 1:
            probs = np.full(v, (1 - plain_share) / (v - 1))
            probs[0] = plain_share
        hands = np.arange(n) * v + rng.choice(v, size=n, p=probs)
        empty = n * v + rng.choice(len(self.empty), self._none_per_epoch(), replace=False)
        return rng.permutation(np.concatenate([hands, empty]))


def _hand_scene(hands: Hands, index: int, size: int, seed: list[int], held_out: bool,
                style: composite.Style) -> np.ndarray:
    return hands.scene(index, size, np.random.default_rng(seed), held_out=held_out, style=style)


def _empty_scene(size: int, seed: list[int], held_out: bool) -> np.ndarray:
    return composite.empty_scene(size, np.random.default_rng(seed), held_out=held_out)


def _plain(hands: Hands, index: int, size: int) -> np.ndarray:
    """The render as the dataset shows it (white backdrop), at the network's size."""
    hand = hands.cutouts[index]
    if hand is None:
        photo = hands.photos[index]
        assert photo is not None
        return np.asarray(Image.fromarray(photo).resize((size, size), Image.Resampling.BILINEAR))
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    img = Image.fromarray(hand, "RGBA")
    scale = size * 0.9 / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.Resampling.BILINEAR)
    canvas.paste(img, ((size - img.width) // 2, size - img.height), img)
    return np.asarray(canvas)


def light_augment(images: tf.Tensor, seed: int) -> tf.Tensor:
    """Per-epoch variation on top of the pool: mirror, brightness, contrast. uint8 -> [0, 1].

    Cheap on purpose: the scenes carry the heavy variation, and hue or resize ops here cost a
    third of the training throughput on 2 cores (measured).
    """
    x = tf.image.convert_image_dtype(images, tf.float32)
    x = tf.image.random_flip_left_right(x, seed=seed)
    x = tf.image.random_brightness(x, 0.08, seed=seed + 1)
    x = tf.image.random_contrast(x, 0.85, 1.15, seed=seed + 2)
    return tf.clip_by_value(x, 0.0, 1.0)


def train_dataset(pool: ScenePool, batch_size: int, epochs: int, seed: int = 0) -> tf.data.Dataset:
    """A fresh draw from the pool every epoch, as one index stream gathered batch by batch.

    (One numpy gather per batch: tf.data's from_generator costs a GIL round trip per image,
    which halved training throughput here.)
    """
    images, targets = pool.flat()
    num_classes = len(pool.labels)
    size = images.shape[1]
    # one row per batch, and batches never straddle epochs, so keras' steps_per_epoch is exact;
    # an epoch smaller than a batch is one short batch
    steps = steps_per_epoch(pool, batch_size)
    per_batch = min(batch_size, pool.epoch_size())
    order = np.stack([pool.epoch_indices(seed, e)[: steps * per_batch].reshape(steps, per_batch)
                      for e in range(epochs)]).reshape(epochs * steps, per_batch)

    def gather(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images[index], targets[index]

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(gather, [index], (tf.uint8, tf.int64))
        x = tf.ensure_shape(x, [None, size, size, 3])
        return light_augment(x, seed), tf.one_hot(tf.ensure_shape(y, [None]), num_classes)

    # parallelism and buffer fixed: autotuning has nothing to tune here, and costs a pause (see untuned)
    return untuned(tf.data.Dataset.from_tensor_slices(order).map(load, num_parallel_calls=2).prefetch(4))


def steps_per_epoch(pool: ScenePool, batch_size: int) -> int:
    return max(1, pool.epoch_size() // batch_size)


def eval_dataset(images: np.ndarray, targets: np.ndarray, num_classes: int, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, tf.one_hot(targets, num_classes))).batch(batch_size)
    return untuned(ds.map(lambda x, y: (tf.image.convert_image_dtype(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE))


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
