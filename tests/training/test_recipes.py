"""The recipes: how a name and the command line's options resolve, and the builder each recipe names."""

from __future__ import annotations

import typing

import pytest

from training import synthetic
from training.errors import DataError
from training.recipes import RECIPE_NAMES, RECIPES, DataRequest, Recipe, image_datasets, resolve, scene_datasets


def test_recipes_resolve_by_data_and_flags():
    assert resolve("auto", "synthetic").name == "rendered"
    assert resolve("auto", "/data/rps").name == "real-hands"
    talk = resolve("talk", "rps")
    assert (talk.arch, talk.optimizer, talk.epochs, talk.augment) == ("talk", "rmsprop", 15, "talk")
    tuned = resolve("real-hands", "rps", epochs=2, arch="talk", augment=False)
    assert (tuned.epochs, tuned.arch, tuned.augment) == (2, "talk", "none")
    assert RECIPES["real-hands"].none_label and not RECIPES["talk"].none_label
    with pytest.raises(ValueError, match="unknown recipe"):
        resolve("best", "rps")


def test_every_recipe_names_its_data_builder_and_the_augment_switch_keeps_it_right():
    assert RECIPES["real-hands"].datasets is scene_datasets
    assert RECIPES["talk"].datasets is RECIPES["rendered"].datasets is image_datasets
    # --no-augment: the images as they are, even for the recipe that renders scenes
    plain = resolve("real-hands", "rps", augment=False)
    assert (plain.augment, plain.datasets, plain.split) == ("none", image_datasets, "by-hand")
    # --augment: the recipe's own augmentation, the talk's for a recipe without one
    assert (resolve("real-hands", "rps", augment=True).datasets, resolve("real-hands", "rps").augment) == (
        scene_datasets, "scenes")
    assert (resolve("rendered", "synthetic", augment=True).augment, resolve("talk", "rps", augment=False).augment) \
        == ("talk", "none")
    assert "datasets" not in repr(RECIPES["real-hands"])  # the log prints a recipe


def test_every_recipe_holds_only_the_choices_its_types_allow():
    hints = typing.get_type_hints(Recipe)
    fixed = {name: typing.get_args(hint) for name, hint in hints.items() if typing.get_origin(hint) is typing.Literal}
    assert {"name", "arch", "optimizer", "augment", "split", "finetune_augment"} <= set(fixed)
    for key, recipe in RECIPES.items():
        assert key == recipe.name and key in RECIPE_NAMES
        for name, allowed in fixed.items():
            assert getattr(recipe, name) in allowed, (key, name)
    # fine-tuning varies taught examples as the base recipe varied its images: Keras layers only for the talk's
    assert {k: r.finetune_augment for k, r in RECIPES.items()} == {"talk": "talk", "rendered": "light",
                                                                   "real-hands": "light"}


def test_the_named_builders_build_each_recipes_pipelines():
    request = DataRequest("synthetic", val_split=0.25, val_dir=None, seed=0, samples_per_class=4, reallike_per_class=0)
    rendered = resolve("rendered", "synthetic")
    datasets = rendered.datasets(rendered, request)
    assert datasets.labels == synthetic.LABELS and not datasets.augmented
    assert (datasets.train_size(), len(datasets.val_targets())) == (3 * 3, 3 * 1)
    scenes = RECIPES["real-hands"]
    with pytest.raises(DataError, match="needs hand images on a white background"):
        scenes.datasets(scenes, request)
