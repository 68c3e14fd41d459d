"""Named training recipes: the talk's exact one, the rendered-data one, and real-hands (the default for photos).

A recipe names the builder of its data pipelines, so a new recipe is one entry in RECIPES; fixed
choices are `Literal` types, which mypy checks where a recipe is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from training.data import Datasets, make_datasets
from training.model import Arch, Optimizer
from training.realhands.scenes_data import make_scene_datasets

RecipeName = Literal["talk", "rendered", "real-hands"]
RECIPE_NAMES: tuple[str, ...] = ("auto", *get_args(RecipeName))
# what varies the training images: the talk's Keras layers | nothing | scenes (composited, training/realhands/)
Augment = Literal["talk", "none", "scenes"]
Split = Literal["random", "by-hand"]  # by-hand: whole rendered hands held out
# what a fine-tune of a version trained this way does to the taught examples: the talk's Keras layers,
# or the light per-epoch variation of the scenes (training/realhands/scenes.py light_augment)
FinetuneAugment = Literal["talk", "light"]


@dataclass(frozen=True)
class DataRequest:
    """What a run asks of its data besides the recipe: the data options of `imgclf train` (TrainConfig)."""

    data: str
    val_split: float
    val_dir: str | None
    seed: int
    samples_per_class: int  # synthetic images per class
    reallike_per_class: int  # scenes per label of the real-like check (0: none)


DatasetBuilder = Callable[["Recipe", DataRequest], Datasets]


def image_datasets(recipe: Recipe, request: DataRequest) -> Datasets:
    """The images as they are, each augmented the talk's way or not at all (training/data.py)."""
    return make_datasets(request.data, batch_size=recipe.batch_size, val_split=request.val_split,
                         val_dir=request.val_dir, seed=request.seed, samples_per_class=request.samples_per_class,
                         augment=recipe.augment != "none", by_hand=recipe.split == "by-hand")


def scene_datasets(recipe: Recipe, request: DataRequest) -> Datasets:
    """The hands cut out and composited into scenes, with the real-like check (training/realhands/)."""
    return make_scene_datasets(request.data, batch_size=recipe.batch_size, epochs=recipe.epochs,
                               by_hand=recipe.split == "by-hand", none_label=recipe.none_label,
                               variants=recipe.variants, retone_share=recipe.retone_share,
                               val_split=request.val_split, val_dir=request.val_dir, seed=request.seed,
                               reallike_per_class=request.reallike_per_class)


@dataclass(frozen=True)
class Recipe:
    name: RecipeName
    arch: Arch
    optimizer: Optimizer
    learning_rate: float
    cosine: bool  # cosine-decay the learning rate over the run
    epochs: int
    batch_size: int
    augment: Augment
    split: Split
    none_label: bool  # add the `none` class (scenes without a hand)
    label_smoothing: float = 0.0
    variants: int = 0  # scenes rendered per hand (scene_datasets)
    warmup_epochs: int = 0  # rise linearly to learning_rate first (with cosine)
    retone_share: float = 0.0  # of training scenes whose hand gets another skin tone (scene_datasets)
    # wall-clock minutes for the whole job: after the warm-up, `epochs` becomes the most that fit
    # (training/budget.py); needs cosine and a warm-up. None: exactly `epochs`
    time_budget_minutes: float | None = None
    finetune_augment: FinetuneAugment = "light"
    # also train the pose classifier on the hand stage's landmarks of the data (training/pose_step.py), run
    # before the CNN so that a time budget counts it among the time already spent
    pose: bool = True
    # builds the training and validation pipelines (left out of the repr the log prints)
    datasets: DatasetBuilder = field(default=image_datasets, repr=False)


RECIPES: dict[str, Recipe] = {
    # The talk's notebook: RMSprop at its default rate, ImageDataGenerator-style augmentation,
    # batch 126, 15 epochs, a random split.
    "talk": Recipe("talk", arch="talk", optimizer="rmsprop", learning_rate=1e-3, cosine=False, epochs=15,
                   batch_size=126, augment="talk", split="random", none_label=False, finetune_augment="talk",
                   pose=False),
    # For the embedded rendered hands, which are drawn in random poses on clutter already.
    "rendered": Recipe("rendered", arch="talk", optimizer="adam", learning_rate=3e-4, cosine=True, epochs=15,
                       batch_size=32, augment="none", split="random", none_label=False),
    # CGI hands cut out and composited into scenes, a `none` class, validation on unseen hands.
    # 55 epochs over 6 scenes per hand: measured against 22 epochs over 2 (seed 0), validation
    # rose from 86.7% to 96.4% and the real-like check from 74.5% to 92.5% in less time, since
    # the network now works at 112 px. Re-toning half the hands (composite.retone): over seeds 0-5 the
    # minimum on plain renders of unseen hands rose from 92.5% to 97.2%, the real-like check's from 76.4% to 80.9%
    "real-hands": Recipe("real-hands", arch="compact", optimizer="adamw", learning_rate=2e-3, cosine=True,
                         epochs=55, batch_size=32, augment="scenes", split="by-hand", none_label=True,
                         label_smoothing=0.1, variants=6, warmup_epochs=2, retone_share=0.5,
                         # 15 minutes for `imgclf train`, less the start-up and a margin for a noisy host:
                         # all 55 epochs took 12 minutes on an AVX-512 host, 22 on an AVX2-only one
                         # (the pose step before the CNN, 57 s on rps-train with an empty landmark cache
                         # on a quiet host, is among the time the plan counts as spent)
                         time_budget_minutes=14.0, datasets=scene_datasets),
}


def resolve(name: str, data: str, **overrides: object) -> Recipe:
    """`auto` picks real-hands for photos and rendered for the embedded synthetic set; options
    given on the command line (not None) override the recipe's own."""
    if name not in RECIPE_NAMES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPE_NAMES)}")
    if name == "auto":
        name = "rendered" if data == "synthetic" else "real-hands"
    recipe = RECIPES[name]
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("augment") is True:  # --augment: the recipe's own augmentation, the talk's for one without
        given["augment"] = recipe.augment if recipe.augment != "none" else "talk"
    elif given.get("augment") is False:  # --no-augment: the images as they are, whatever the recipe renders
        given.update(augment="none", datasets=image_datasets)
    budget = given.pop("time_budget_minutes", None)
    if budget is None and "epochs" in given:
        budget = 0  # an explicit epoch count is exact, unless a budget is asked for too
    if budget is not None:
        given["time_budget_minutes"] = float(budget) if budget else None  # type: ignore[arg-type]
    resolved = replace(recipe, **given)  # type: ignore[arg-type]
    if resolved.time_budget_minutes is not None and not (resolved.cosine and resolved.warmup_epochs >= 1):
        raise ValueError(f"a time budget needs a recipe with a warm-up and cosine decay (real-hands); "
                         f"{resolved.name} trains exactly its epochs: pass --epochs instead")
    return resolved
