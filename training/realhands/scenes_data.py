"""`make_scene_datasets`: the real-hands recipe's train/validation pipelines and its real-like check set.

It takes the recipe's settings one by one (training/recipes.py passes them), so this package needs
nothing from the recipes that use it."""

from __future__ import annotations

import logging

import numpy as np

from training.data import NO_VALIDATION, Datasets, ImageSet, load_source, train_and_validation
from training.errors import DataError
from training.realhands import backgrounds
from training.realhands.composite import Style
from training.realhands.reallike import PER_CLASS as REALLIKE_PER_CLASS
from training.realhands.scenes import (
    Hands,
    ScenePool,
    encode_jpeg,
    eval_dataset,
    steps_per_epoch,
    train_dataset,
    with_none,
)
from version_format.model_io import NONE_LABEL

log = logging.getLogger(__name__)


def make_scene_datasets(data: str, *, batch_size: int, epochs: int, by_hand: bool, none_label: bool, variants: int,
                        retone_share: float, val_split: float = 0.2, val_dir: str | None = None, seed: int = 0,
                        reallike_per_class: int = REALLIKE_PER_CLASS) -> Datasets:
    """Cut out, composite and render the pools; validation = unseen hands (plain and in scenes).

    `variants` scenes per hand, `retone_share` of training hands re-toned, a `none` class of empty
    scenes with `none_label`, whole hands held out for validation with `by_hand`."""
    if data == "synthetic":
        raise DataError("the real-hands recipe needs hand images on a white background (the talk's "
                        "dataset: --data rps or a folder); use --recipe rendered for --data synthetic")
    everything, source = load_source(data, seed=seed)
    if NONE_LABEL in everything.labels:
        raise DataError(f"{data} has a {NONE_LABEL!r} class folder; the recipe renders that class itself")
    train_set, val_set = train_and_validation(everything, val_split=val_split, val_dir=val_dir, seed=seed,
                                              by_hand=by_hand)
    final = len(val_set) == 0  # --val-split 0: every hand trains
    labels = with_none(everything.labels) if none_label else everything.labels

    train_hands = Hands(train_set)
    if not any(h is not None for h in train_hands.cutouts):
        log.warning("no image of %s has a white background: scenes use the photos as they are", data)
    train_pool = ScenePool(train_hands, labels, variants=variants, seed=seed,
                           none_count=_none_count(train_set, variants), style=Style(retone=retone_share))
    if final:  # nothing validates
        val_x = np.zeros((0, *train_pool.views.shape[2:]), dtype=np.uint8)
        val_y = np.zeros(0, dtype=np.int64)
    else:
        val_hands = Hands(val_set)
        val_pool = ScenePool(val_hands, labels, variants=1, seed=seed + 10_000, none_count=_none_count(val_set, 2))
        val_x, val_y = val_pool.flat()
    reallike = None
    if reallike_per_class > 0:
        from training.realhands.reallike import reallike_set

        # with no hand held out, the check's scenes (backgrounds never trained on) show trained hands:
        # the card files it apart from the unseen-hands figure
        reallike = reallike_set(train_hands if final else val_hands, labels, per_class=reallike_per_class)
    warmup = _warmup(train_pool) if final else tuple(
        encode_jpeg(val_x[int(np.flatnonzero(val_y == c)[0])]) for c in range(len(labels)) if (val_y == c).any())
    groups = sorted(set(val_set.groups())) if by_hand and not val_dir else []
    return Datasets(
        train=train_dataset(train_pool, batch_size, epochs, seed=seed),
        val=eval_dataset(val_x, val_y, len(labels), batch_size),
        labels=labels,
        train_set=ImageSet(train_set.images, train_set.targets, everything.labels),
        val_set=ImageSet(val_set.images, val_set.targets, everything.labels),
        source=source,
        source_hash=everything.content_hash(),
        augmented=True,
        train_targets=train_pool.epoch_targets(),
        steps_per_epoch=steps_per_epoch(train_pool, batch_size),
        val_pipeline_targets=val_y,
        warmup=warmup,
        reallike=reallike,
        validation_note=NO_VALIDATION if final else (
            "unseen rendered hands " + ", ".join(groups) if groups else "--val-dir" if val_dir
            else "a random split of the data") + ": each plain and in one scene, plus empty scenes",
        card={
            "validation_hands": groups,
            "reallike_hands": "seen in training (none held out)" if final else "the validation hands",
            "scenes": {"scenes_per_image": variants, "plain_share_per_epoch": 0.25,
                       "empty_scenes": len(train_pool.empty), "samples_per_epoch": train_pool.epoch_size(),
                       "retoned_share": retone_share},
            "backgrounds": {
                "train": [f"{p.name} ({p.package}, {p.licence})" for p in backgrounds.TRAIN_PHOTOS],
                "held_out_for_reallike_check": [f"{p.name} ({p.package}, {p.licence})"
                                                for p in backgrounds.HELD_OUT_PHOTOS],
                "procedural": "rooms, windows, clutter and people drawn by training/realhands/backgrounds.py",
            },
        },
    )


def _warmup(pool: ScenePool) -> tuple[bytes, ...]:
    """One training scene per label (an empty one for `none`): TF Serving's warm-up requests."""
    scenes = [pool.views[int(np.flatnonzero(pool.targets == c)[0]), min(1, pool.views.shape[1] - 1)]
              for c in range(len(pool.labels)) if (pool.targets == c).any()]
    return tuple(encode_jpeg(x) for x in [*scenes, *pool.empty[:1]])


def _none_count(images: ImageSet, views: int) -> int:
    """Empty scenes to render: a class's worth per view of a hand."""
    return max(1, round(len(images) * views / max(1, len(images.labels))))
