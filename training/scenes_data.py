"""`make_scene_datasets`: the real-hands recipe's train/validation pipelines and its real-like check set."""

from __future__ import annotations

import logging

import numpy as np

from training import backgrounds
from training.composite import Style
from training.data import DataError, Datasets, ImageSet, load_folder, load_source, split, split_by_group
from training.reallike import PER_CLASS as REALLIKE_PER_CLASS
from training.recipes import Recipe
from training.scenes import (
    NONE_LABEL,
    Hands,
    ScenePool,
    encode_jpeg,
    eval_dataset,
    steps_per_epoch,
    train_dataset,
    with_none,
)

log = logging.getLogger(__name__)


def make_scene_datasets(data: str, recipe: Recipe, *, val_split: float = 0.2, val_dir: str | None = None,
                        seed: int = 0, reallike_per_class: int = REALLIKE_PER_CLASS) -> Datasets:
    """Cut out, composite and render the pools; validation = unseen hands (plain and in scenes)."""
    if data == "synthetic":
        raise DataError("the real-hands recipe needs hand images on a white background (the talk's "
                        "dataset: --data rps or a folder); use --recipe rendered for --data synthetic")
    everything, source = load_source(data, seed=seed)
    if NONE_LABEL in everything.labels:
        raise DataError(f"{data} has a {NONE_LABEL!r} class folder; the recipe renders that class itself")
    if val_dir:
        train_set, val_set = everything, load_folder(val_dir, labels=everything.labels)
    else:
        train_set, val_set = (split_by_group if recipe.split == "by-hand" else split)(everything, val_split, seed)
    labels = with_none(everything.labels) if recipe.none_label else everything.labels

    train_hands, val_hands = Hands(train_set), Hands(val_set)
    if not any(h is not None for h in train_hands.cutouts):
        log.warning("no image of %s has a white background: scenes use the photos as they are", data)
    train_pool = ScenePool(train_hands, labels, variants=recipe.variants, seed=seed,
                           none_count=_none_count(train_set, recipe.variants),
                           style=Style(retone=recipe.retone_share))
    val_pool = ScenePool(val_hands, labels, variants=1, seed=seed + 10_000, none_count=_none_count(val_set, 2))
    val_x, val_y = val_pool.flat()
    reallike = None
    if reallike_per_class > 0:
        from training.reallike import reallike_set

        reallike = reallike_set(val_hands, labels, per_class=reallike_per_class)
    warmup = tuple(encode_jpeg(val_x[int(np.flatnonzero(val_y == c)[0])]) for c in range(len(labels))
                   if (val_y == c).any())
    groups = sorted(set(val_set.groups())) if recipe.split == "by-hand" and not val_dir else []
    return Datasets(
        train=train_dataset(train_pool, recipe.batch_size, recipe.epochs, seed=seed),
        val=eval_dataset(val_x, val_y, len(labels), recipe.batch_size),
        labels=labels,
        train_set=ImageSet(train_set.images, train_set.targets, everything.labels),
        val_set=ImageSet(val_set.images, val_set.targets, everything.labels),
        source=source,
        source_hash=everything.content_hash(),
        augmented=True,
        train_targets=train_pool.epoch_targets(),
        steps_per_epoch=steps_per_epoch(train_pool, recipe.batch_size),
        val_pipeline_targets=val_y,
        warmup=warmup,
        reallike=reallike,
        validation_note=("unseen rendered hands " + ", ".join(groups) if groups else "--val-dir" if val_dir
                         else "a random split of the data") + ": each plain and in one scene, plus empty scenes",
        card={
            "validation_hands": groups,
            "scenes": {"scenes_per_image": recipe.variants, "plain_share_per_epoch": 0.25,
                       "empty_scenes": len(train_pool.empty), "samples_per_epoch": train_pool.epoch_size(),
                       "retoned_share": recipe.retone_share},
            "backgrounds": {
                "train": [f"{p.name} ({p.package}, {p.licence})" for p in backgrounds.TRAIN_PHOTOS],
                "held_out_for_reallike_check": [f"{p.name} ({p.package}, {p.licence})"
                                                for p in backgrounds.HELD_OUT_PHOTOS],
                "procedural": "rooms, windows, clutter and people drawn by training/backgrounds.py",
            },
        },
    )


def _none_count(images: ImageSet, views: int) -> int:
    """Empty scenes to render: a class's worth per view of a hand."""
    return max(1, round(len(images) * views / max(1, len(images.labels))))
