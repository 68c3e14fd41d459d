"""Training data from three sources (synthetic, class folders, the rps download) as tf.data pipelines."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from training import synthetic
from training.errors import DataError
from training.preprocessing import decode_and_resize
from version_format.exif import UPRIGHT, orientation
from version_format.model_io import IMAGE_SIZE

log = logging.getLogger(__name__)

# Formats tf.io.decode_image reads natively; anything else Pillow reads is re-encoded as PNG.
# Not BMP: TensorFlow fails on 1-bit BMPs and ignores the palette of 8-bit ones.
_TF_FORMATS = {"JPEG", "PNG", "GIF"}


NO_VALIDATION = "none: every image trained on (--val-split 0), and the last epoch exported"


@dataclass(frozen=True)
class ImageSet:
    """Encoded images with integer labels into `labels`."""

    images: list[bytes]
    targets: np.ndarray
    labels: tuple[str, ...]
    skipped: int = 0
    names: tuple[str, ...] = ()  # file names relative to the data folder, when read from one

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, int]:
        return {name: int((self.targets == i).sum()) for i, name in enumerate(self.labels)}

    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for label in self.labels:
            digest.update(label.encode())
        for data, target in zip(self.images, self.targets, strict=True):
            digest.update(int(target).to_bytes(2, "little"))
            digest.update(hashlib.sha256(data).digest())
        return digest.hexdigest()

    def subset(self, index: np.ndarray) -> ImageSet:
        names = tuple(self.names[i] for i in index) if self.names else ()
        return ImageSet([self.images[i] for i in index], self.targets[index], self.labels, names=names)

    def groups(self) -> list[str]:
        """The rendered hand each image shows: `rock03-017.jpg` -> `rock03` (an image is its own
        group when its name has no `-`). Validating on whole groups keeps a hand out of training."""
        if not self.names:
            return [str(i) for i in range(len(self))]
        return [Path(n).name.split("-")[0] if "-" in Path(n).name else n for n in self.names]


@dataclass(frozen=True)
class Datasets:
    """What a data builder returns: batched pipelines plus what the model card records."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    labels: tuple[str, ...]
    train_set: ImageSet
    val_set: ImageSet
    source: str
    source_hash: str
    augmented: bool = True
    # set by builders whose pipelines are not one image per ImageSet entry (training/realhands/scenes_data.py)
    train_targets: np.ndarray | None = None
    val_pipeline_targets: np.ndarray | None = None
    warmup: tuple[bytes, ...] = ()
    reallike: ImageSet | None = None
    validation_note: str = "a random split of the data"
    card: dict[str, object] = field(default_factory=dict)
    steps_per_epoch: int | None = None  # for a `train` stream that holds every epoch

    def val_targets(self) -> np.ndarray:
        """Targets in the order `val` yields them."""
        return self.val_set.targets if self.val_pipeline_targets is None else self.val_pipeline_targets

    def train_size(self) -> int:
        return len(self.train_set) if self.train_targets is None else len(self.train_targets)

    def _counts(self, targets: np.ndarray) -> dict[str, int]:
        return {name: int((targets == i).sum()) for i, name in enumerate(self.labels)}

    def train_counts(self) -> dict[str, int]:
        return self.train_set.counts() if self.train_targets is None else self._counts(self.train_targets)

    def val_counts(self) -> dict[str, int]:
        return self._counts(self.val_targets())


def load_synthetic(samples_per_class: int, seed: int = 0) -> ImageSet:
    """Render `samples_per_class` hands per class, deterministic for `seed`."""
    if samples_per_class < 1:
        raise DataError(f"--samples-per-class must be at least 1, got {samples_per_class}")
    images, targets = [], []
    for data, target in synthetic.generate(samples_per_class, seed=seed):
        images.append(data)
        targets.append(target)
    return ImageSet(images, np.array(targets, dtype=np.int64), synthetic.LABELS)


def _readable(data: bytes) -> bytes | None:
    """Bytes TensorFlow can decode, upright, or None when neither Pillow nor TensorFlow can read them.

    A picture with an EXIF orientation (TensorFlow's decoder ignores it) is turned upright, as
    serving turns it, and written again: a JPEG as a JPEG at quality 95 without chroma subsampling
    (a full-size PNG of a 12 MP photo takes over a second), anything else as a PNG."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = "JPEG" if img.format == "MPO" else img.format  # MPO: a JPEG carrying more pictures
            img.load()  # a full decode: truncated files fail here, not mid-training
            turn = orientation(img)
            if fmt in _TF_FORMATS and turn == 1:
                return data
            rgb = img.convert("RGB")
            if turn != 1:
                rgb = rgb.transpose(UPRIGHT[turn])
            buf = io.BytesIO()
            if fmt == "JPEG":
                rgb.save(buf, format="JPEG", quality=95, subsampling=0)
            else:
                rgb.save(buf, format="PNG")
            return buf.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        pass
    try:
        decode_and_resize(tf.constant(data))
        return data
    except (tf.errors.InvalidArgumentError, ValueError):
        return None


def load_folder(path: str | Path, labels: Iterable[str] | None = None) -> ImageSet:
    """One sub-folder per class; labels are the folder names in sorted order."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of class folders")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if labels is not None:
        wanted = tuple(labels)
        if tuple(found) != wanted:
            raise DataError(f"{root} has classes {found}, expected the training classes {list(wanted)}")
    if len(found) < 2:
        raise DataError(
            f"{root} has {len(found)} class folder(s) {found}; at least two are needed "
            "(one folder per class, e.g. paper/ rock/ scissors/)")
    images: list[bytes] = []
    targets: list[int] = []
    names: list[str] = []
    skipped = 0
    for index, name in enumerate(found):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        kept = 0
        for file in files:
            data = _readable(file.read_bytes())
            if data is None:
                skipped += 1
                continue
            images.append(data)
            targets.append(index)
            names.append(str(file.relative_to(root)))
            kept += 1
        if kept == 0:
            raise DataError(f"class folder {root / name} has no readable images")
    if skipped:
        log.warning("skipped %d unreadable file(s) under %s", skipped, root)
    return ImageSet(images, np.array(targets, dtype=np.int64), tuple(found), skipped, tuple(names))


def train_and_validation(everything: ImageSet, *, val_split: float, val_dir: str | None, seed: int,
                         by_hand: bool) -> tuple[ImageSet, ImageSet]:
    """--val-dir's folders, or every image and none (`--val-split 0`: the run exports its last epoch),
    or a split: by whole rendered hand, or at random."""
    if val_dir:
        return everything, load_folder(val_dir, labels=everything.labels)
    if val_split == 0:
        return everything, everything.subset(np.arange(0, dtype=np.int64))
    return (split_by_group if by_hand else split)(everything, val_split, seed)


def split(images: ImageSet, val_split: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """A seeded split, stratified so each class keeps its share in both parts."""
    if not 0.0 < val_split < 1.0:
        raise DataError(f"--val-split must be between 0 and 1 (exclusive), got {val_split}")
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c in range(len(images.labels)):
        idx = np.flatnonzero(images.targets == c)
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * val_split))
        if n_val >= len(idx):
            raise DataError(f"class {images.labels[c]!r} has {len(idx)} image(s): too few to split")
        val_idx.extend(idx[:n_val])
        train_idx.extend(idx[n_val:])
    return images.subset(np.sort(train_idx)), images.subset(np.sort(val_idx))


def split_by_group(images: ImageSet, val_split: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out whole groups (rendered hands) per class, about `val_split` of each class.

    A random split puts frames of the same rendered hand on both sides and overstates accuracy
    on hands never seen; this one measures exactly that. Falls back to `split` when a class has
    fewer than two groups.
    """
    if not 0.0 < val_split < 1.0:
        raise DataError(f"--val-split must be between 0 and 1 (exclusive), got {val_split}")
    groups = np.array(images.groups())
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(images), dtype=bool)
    for c in range(len(images.labels)):
        in_class = images.targets == c
        names = np.unique(groups[in_class])
        if len(names) < 2:
            return split(images, val_split, seed)
        rng.shuffle(names)
        n_val = min(len(names) - 1, max(1, round(len(names) * val_split)))
        val_mask |= in_class & np.isin(groups, names[:n_val])
    return images.subset(np.flatnonzero(~val_mask)), images.subset(np.flatnonzero(val_mask))


def make_augmenter(seed: int = 0) -> keras.Sequential:
    """The talk's augmentation (rotation 40 deg, shifts, shear, zoom 0.2, horizontal flip)."""
    layers = keras.layers
    return keras.Sequential(
        [
            layers.RandomRotation(40 / 360, fill_mode="nearest", seed=seed),
            layers.RandomTranslation(0.2, 0.2, fill_mode="nearest", seed=seed + 1),
            layers.RandomShear(x_factor=0.2, y_factor=0.2, fill_mode="nearest", seed=seed + 2),
            layers.RandomZoom(0.2, fill_mode="nearest", seed=seed + 3),
            layers.RandomFlip("horizontal", seed=seed + 4),
        ],
        name="augmentation",
    )


def to_dataset(images: ImageSet, batch_size: int, *, training: bool, seed: int = 0,
               augment: bool = True, image_size: int = IMAGE_SIZE) -> tf.data.Dataset:
    """Decode (the serving graph's own preprocessing), cache, shuffle, batch, augment, prefetch."""
    num_classes = len(images.labels)
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(images.images, dtype=tf.string), tf.constant(images.targets)))
    ds = ds.map(lambda b, y: (decode_and_resize(b, image_size), tf.one_hot(y, num_classes)),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augment:
        augmenter = make_augmenter(seed)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return untuned(ds.prefetch(tf.data.AUTOTUNE))


def untuned(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with tf.data's autotuning off, as every training and validation pipeline here runs.

    With it on, deleting the training iterator at the end of `fit` waited on a tf.data thread (py-spy: the
    main thread in `~IteratorResource`): 9-10 s in 3 of 4 short fits of the real-hands stream, 24-54 s in
    full runs, 29 s in 2 of 2 timed talk-recipe runs; 0 s with it off, epochs as fast. A validation pass over
    960 scenes took a mean of 2.19 s with it (7 of 12 passes about a second longer), 1.67 s without.
    `AUTOTUNE` in a pipeline then means TensorFlow's default (parallelism = the cores), untuned.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def load_source(data: str, *, samples_per_class: int = 1000, seed: int = 0) -> tuple[ImageSet, str]:
    """`synthetic`, `rps` (downloaded on request) or a folder path -> (images, description)."""
    if data == "synthetic":
        return load_synthetic(samples_per_class, seed), f"synthetic(samples_per_class={samples_per_class}, seed={seed})"
    if data == "rps":
        from training.download import fetch_rps

        folder = fetch_rps("train")
        return load_folder(folder), "rps (rps.zip, Rock Paper Scissors dataset, CC BY 2.0)"
    return load_folder(data), str(Path(data).expanduser().resolve())


def make_datasets(data: str = "synthetic", *, batch_size: int = 32, val_split: float = 0.2,
                  val_dir: str | None = None, seed: int = 0, samples_per_class: int = 1000,
                  augment: bool | None = None, image_size: int = IMAGE_SIZE, by_hand: bool = False,
                  ) -> Datasets:
    """Load a source, split off validation (or read --val-dir) and build both pipelines.

    `augment=None` (auto) augments photos as the talk does and leaves synthetic images alone:
    their renderer already draws every one with its own rotation, scale, position and flip, and
    augmenting them again mostly slows learning (measured: see the README's training guide).
    """
    if augment is None:
        augment = data != "synthetic"
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    everything, source = load_source(data, samples_per_class=samples_per_class, seed=seed)
    train_set, val_set = train_and_validation(everything, val_split=val_split, val_dir=val_dir, seed=seed,
                                              by_hand=by_hand)
    return Datasets(
        train=to_dataset(train_set, batch_size, training=True, seed=seed, augment=augment,
                         image_size=image_size),
        val=to_dataset(val_set, batch_size, training=False, image_size=image_size),
        labels=everything.labels,
        train_set=train_set,
        val_set=val_set,
        source=source,
        source_hash=everything.content_hash(),
        augmented=augment,
        validation_note=("--val-dir" if val_dir else NO_VALIDATION if val_split == 0
                         else "whole rendered hands held out" if by_hand else "a random split of the data"),
    )
