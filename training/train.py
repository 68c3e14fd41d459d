"""Fit the CNN, keep the best validation epoch (or the last, with nothing held out), report, export."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.budget import AdjustableCosineDecay, TimeBudget
from training.data import Datasets, ImageSet
from training.errors import DataError
from training.export import export
from training.metrics import confusion
from training.model import ARCHS, make_model
from training.pose_step import PoseOutcome, beside_the_cnn
from training.pose_step import run as run_pose
from training.realhands.reallike import PER_CLASS as REALLIKE_PER_CLASS
from training.recipes import DataRequest, Recipe, resolve
from version_format.card import POSE_KEY
from version_format.layout import next_version

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi-worker")


@dataclass
class TrainConfig:
    """What to train. Fields left None take the recipe's value (training/recipes.py)."""

    data: str = "synthetic"
    recipe: str = "auto"
    epochs: int | None = None
    batch_size: int | None = None
    model_root: Path = Path("models")
    name: str = "rps"
    seed: int = 0
    strategy: str = "default"
    val_split: float = 0.2
    val_dir: str | None = None
    samples_per_class: int = 1000
    learning_rate: float | None = None
    arch: str | None = None
    version: int | None = None
    int8: bool = True  # also export the full-integer LiteRT model, with its accuracy beside fp32's
    runs_root: Path | None = None  # default: MODEL_ROOT/NAME/runs/, beside the versions
    augment: bool | None = None  # None: the recipe's augmentation
    none_label: bool | None = None
    reallike_per_class: int = REALLIKE_PER_CLASS
    time_budget_minutes: float | None = None  # None: the recipe's (off when epochs is given); 0: off
    pose: bool | None = None  # train the pose classifier too; None: the recipe's (every recipe but talk)

    def validate(self) -> None:
        if not 0.0 <= self.val_split < 1.0:
            raise DataError(f"--val-split must be 0 (train on every image) or a share below 1, got {self.val_split}")
        if self.epochs is not None and self.epochs < 1:
            raise DataError(f"--epochs must be at least 1, got {self.epochs}")
        if self.strategy not in STRATEGIES:
            raise DataError(f"--strategy must be one of {', '.join(STRATEGIES)}")
        if self.time_budget_minutes is not None and self.time_budget_minutes < 0:
            raise DataError(f"--time-budget must be 0 (none) or a number of minutes, got {self.time_budget_minutes}")
        if self.time_budget_minutes and self.strategy == "multi-worker":
            raise DataError("--time-budget does not work with --strategy multi-worker (each worker would plan its "
                            "own epochs); pass --epochs")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise DataError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.arch is not None and self.arch not in ARCHS:
            raise DataError(f"--arch must be one of {', '.join(ARCHS)}")
        try:
            self._recipe()
        except ValueError as exc:
            raise DataError(str(exc)) from None

    def _recipe(self) -> Recipe:
        return resolve(self.recipe, self.data, arch=self.arch, epochs=self.epochs, batch_size=self.batch_size,
                       learning_rate=self.learning_rate, augment=self.augment, none_label=self.none_label,
                       time_budget_minutes=self.time_budget_minutes, pose=self.pose)

    def resolved(self) -> Recipe:
        recipe = self._recipe()
        if self.strategy == "multi-worker" and recipe.time_budget_minutes is not None:
            log.info("no time budget under --strategy multi-worker: training all %d epochs", recipe.epochs)
            recipe = replace(recipe, time_budget_minutes=None)
        return recipe


@dataclass
class TrainResult:
    version: int
    path: Path
    run_dir: Path
    val_accuracy: float | None  # None: nothing was held out (--val-split 0)
    train_accuracy: float
    best_epoch: int  # the exported epoch: the best validation epoch, or the last one
    confusion: list[list[int]] | None
    labels: tuple[str, ...]
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    recipe: str = ""
    reallike_accuracy: float | None = None
    reallike_confusion: list[list[int]] | None = None
    reallike_seen_hands: bool = False  # the check showed trained hands: nothing was held out
    int8: dict[str, Any] | None = None  # the card's int8 entry: accuracies, drops, what was measured
    float: dict[str, Any] | None = None  # the card's float entry: agreement with the Keras model, score difference
    pose: dict[str, Any] | None = None  # the card's pose section (None: the recipe trains no pose classifier)


class BestEpoch(keras.callbacks.Callback):
    """Keep the weights of the best validation epoch in memory and restore them at the end.

    Validation accuracy on this data swings by several points between epochs, so the last
    epoch is a lottery ticket; ties go to the lower validation loss.
    """

    def __init__(self) -> None:
        super().__init__()
        self.best: tuple[float, float] = (-1.0, float("inf"))
        self.best_epoch = 0
        self.best_logs: dict[str, float] = {}
        self._weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        acc, loss = logs.get("val_accuracy", 0.0), logs.get("val_loss", float("inf"))
        if acc > self.best[0] or (acc == self.best[0] and loss < self.best[1]):
            self.best, self.best_epoch, self.best_logs = (acc, loss), epoch + 1, dict(logs)
            self._weights = [w.copy() for w in self.model.get_weights()]

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self._weights is not None:
            self.model.set_weights(self._weights)


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """default: one device; mirrored: all local GPUs; multi-worker: the cluster in TF_CONFIG."""
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise DataError("--strategy multi-worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _is_chief() -> bool:
    cfg = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = cfg.get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cfg.get("cluster", {}))


def confusion_matrix(model: keras.Model, datasets: Datasets) -> np.ndarray:
    n = len(datasets.labels)
    probs = model.predict(datasets.val, verbose=0)
    return confusion(datasets.val_targets(), probs.argmax(axis=1), n)


def _plots(history: dict[str, list[float]], matrix: np.ndarray | None, labels: tuple[str, ...],
           run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["accuracy"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(epochs, history[key], "r", label=f"training {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "b", label=f"validation {key}")
        ax.set_title(f"Training and validation {key}")
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "history.png", dpi=100)
    plt.close(fig)
    if matrix is None:
        return

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > matrix.max() / 2 else "black")
    ax.set_title("Validation confusion matrix")
    fig.tight_layout()
    fig.savefig(run_dir / "confusion_matrix.png", dpi=100)
    plt.close(fig)


def _warmup_images(datasets: Datasets) -> list[bytes]:
    """One validation image per class (training images if none): real inputs for TF Serving's warm-up."""
    if datasets.warmup:
        return list(datasets.warmup)
    source = datasets.val_set if len(datasets.val_set) else datasets.train_set
    picks = []
    for c in range(len(datasets.labels)):
        idx = np.flatnonzero(source.targets == c)
        if len(idx):
            picks.append(source.images[int(idx[0])])
    return picks


def _litert_models(model: keras.Model, datasets: Datasets, int8: bool) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """The float LiteRT model (always) and the int8 one (quantized on training images), each with its card entry:
    top-1 of the Keras model and of the LiteRT model on the same validation and real-like pixels."""
    from training.quantize import (
        accuracy,
        convert_int8,
        float_record,
        gate_record,
        pixels_of,
        representative_pixels,
        timed_float,
    )
    from version_format.litert import LiteRTScorer

    n = len(datasets.labels)

    def fp32(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x, training=False))

    sets: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}
    measured_on: dict[str, str] = {}
    if len(datasets.val_targets()):
        sets["validation"] = ([np.asarray(x) for x, _ in datasets.val], datasets.val_targets())
        measured_on["validation"] = (f"the {len(datasets.val_targets())} validation images "
                                     f"({datasets.validation_note})")
    if datasets.reallike is not None and len(datasets.reallike):
        sets["reallike"] = (pixels_of(datasets.reallike.images), datasets.reallike.targets)
        measured_on["reallike"] = f"the real-like check's {len(datasets.reallike)} images" + (
            "" if len(datasets.val_targets()) else " (hands seen in training: nothing was held out)")
    if not sets:  # nothing held out and no real-like check: the drop on training images
        n_train = len(datasets.train_set)
        sample = datasets.train_set.subset(np.arange(0, n_train, max(1, n_train // 300)))
        remap = np.array([datasets.labels.index(name) for name in sample.labels])
        sets["training"] = (pixels_of(sample.images), remap[sample.targets])
        measured_on["training"] = f"{len(sample)} training images (nothing was held out)"
    float_model, seconds = timed_float(lambda x: model(x, training=False))
    found = {"float": (float_model, float_record(float_model, fp32, LiteRTScorer(float_model, threads=2), sets,
                                                 measured_on, seconds))}
    if int8:
        representative = representative_pixels(datasets.train_set)
        int8_model = convert_int8(lambda x: model(x, training=False), representative)
        scorer = LiteRTScorer(int8_model, threads=2)
        measured = {k: (accuracy(fp32, b, t, n)[0], accuracy(scorer, b, t, n)[0]) for k, (b, t) in sets.items()}
        found["int8"] = (int8_model, gate_record(measured, representative=len(representative), size=len(int8_model),
                                                 measured_on=measured_on))
    return found


def learning_rate(recipe: Recipe, steps_per_epoch: int) -> float | AdjustableCosineDecay:
    """The recipe's rate: constant, or cosine-decayed over the run after an optional linear warm-up
    (its end moved by a time budget, if the recipe has one)."""
    if not recipe.cosine:
        return recipe.learning_rate
    # cosine decay calms the late-epoch swings that a constant rate leaves; the warm-up matters
    # because at the full rate from step 0 (batch statistics still settling, strong augmentation)
    # the real-hands run stayed at chance for its first 4 epochs
    warmup = steps_per_epoch * min(recipe.warmup_epochs, recipe.epochs - 1)
    return AdjustableCosineDecay(
        recipe.learning_rate / 10 if warmup else recipe.learning_rate,
        decay_steps=steps_per_epoch * recipe.epochs - warmup, alpha=0.05,
        warmup_target=recipe.learning_rate if warmup else None, warmup_steps=warmup)


def _pose(config: TrainConfig, datasets: Datasets) -> PoseOutcome:
    """The pose classifier on the training pictures' landmarks, before the CNN: a time budget, planned after
    the CNN's warm-up, counts this step among the time spent (on rps-train, with an empty landmark cache on a
    quiet host: 28 s of extraction on two threads, 28 s of held-out evaluation and training)."""
    images = None
    if config.data == "synthetic":  # rendered in memory: the very pictures the CNN trains and validates on
        train_set, val_set = datasets.train_set, datasets.val_set
        images = train_set if config.val_dir or not len(val_set) else ImageSet(
            train_set.images + val_set.images, np.concatenate([train_set.targets, val_set.targets]), train_set.labels)
    outcome = run_pose(config.data, images)
    card = outcome.card
    if outcome.classifier is None:
        log.warning("no pose classifier: %s", card["reason"])
    else:
        log.info("pose classifier: hand found in %.1f%% of %d pictures; held out %s: %.2f%% where a hand was "
                 "found, %.2f%% end to end; %.0f s", 100 * card["hand_found_rate"], card["pictures"],
                 card["held_out"].split(":")[0], 100 * card["held_out_accuracy_where_found"],
                 100 * card["held_out_accuracy_end_to_end"], card["seconds"]["total"])
    return outcome


def train(config: TrainConfig) -> TrainResult:
    """Run the whole job: data, fit, best epoch, reports, export. Returns what was written."""
    config.validate()
    recipe = config.resolved()
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    log.info("recipe %s: %s", recipe.name, recipe)
    # data first: a bad --data or --val-dir must not leave an empty run folder behind
    datasets = recipe.datasets(recipe, DataRequest(config.data, val_split=config.val_split, val_dir=config.val_dir,
                                                   seed=config.seed, samples_per_class=config.samples_per_class,
                                                   reallike_per_class=config.reallike_per_class))
    model_dir = Path(config.model_root) / config.name
    runs_root = Path(config.runs_root) if config.runs_root else model_dir / "runs"
    planned = config.version or next_version(model_dir)
    run_dir = runs_root / str(planned)
    if run_dir.exists():  # a leftover of a run that never exported: keep it, but do not mix
        run_dir = runs_root / f"{planned}-{int(time.time())}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise DataError(f"cannot write run reports to {run_dir} ({exc.strerror}); "
                        "choose a writable place with --runs-root or IMGCLF_RUNS_ROOT") from None

    log.info("data: %s; train %s, validation %s; labels %s", datasets.source,
             datasets.train_counts(), datasets.val_counts(), list(datasets.labels))
    pose = _pose(config, datasets) if recipe.pose else None

    strategy = make_strategy(config.strategy)
    steps = datasets.steps_per_epoch or max(1, -(-datasets.train_size() // recipe.batch_size))
    with strategy.scope():
        rate = learning_rate(recipe, steps)
        model = make_model(num_classes=len(datasets.labels), learning_rate=rate,
                           arch=recipe.arch, optimizer=recipe.optimizer, label_smoothing=recipe.label_smoothing)
    budget = None
    # planned at the end of the warm-up, before the cosine starts (a run of one epoch has no warm-up)
    if recipe.time_budget_minutes is not None and isinstance(rate, AdjustableCosineDecay) and rate.warmup_steps:
        budget = TimeBudget(budget_s=recipe.time_budget_minutes * 60, started=started, max_epochs=recipe.epochs,
                            schedule=rate, steps_per_epoch=steps)
    # with nothing held out (--val-split 0) there is no epoch to choose: in the real-hands recipe's
    # held-out runs the best validation epoch beat the last (cosine-decayed) one by 0-1.4 points
    validating = len(datasets.val_targets()) > 0
    best = BestEpoch()
    fit = model.fit(
        datasets.train, validation_data=datasets.val if validating else None, epochs=recipe.epochs, verbose=2,
        steps_per_epoch=datasets.steps_per_epoch,
        callbacks=[*([best] if validating else []), *([budget] if budget else []),
                   keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"))])
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    log.info("trained %d epochs; %.0fs since the job started", len(history["accuracy"]), time.monotonic() - started)
    exported_epoch = best.best_epoch if validating else len(history["accuracy"])

    matrix = confusion_matrix(model, datasets) if validating else None
    val_accuracy = float(np.trace(matrix) / max(1, matrix.sum())) if matrix is not None else None
    train_accuracy = float(best.best_logs.get("accuracy", history["accuracy"][-1]))
    reallike_acc, reallike_matrix = None, None
    if datasets.reallike is not None and len(datasets.reallike):
        from training.realhands.reallike import score

        reallike_acc, reallike_matrix = score(lambda x: model(x, training=False), datasets.reallike)
        log.info("real-like check%s: accuracy %.4f on %d images", "" if validating else " (hands seen in training)",
                 reallike_acc, len(datasets.reallike))
    card: dict[str, Any] = {
        "recipe": recipe.name,
        "arch": recipe.arch,
        "parameters": int(model.count_params()),
        "data_source": datasets.source,
        "data_sha256": datasets.source_hash,
        "samples": {"train": datasets.train_size(), "validation": len(datasets.val_targets()),
                    "train_per_class": datasets.train_counts(),
                    "validation_per_class": datasets.val_counts()},
        "validation": datasets.validation_note,
        "epochs": len(history["accuracy"]),
        **({"time_budget": budget.plan.card()} if budget and budget.plan else {}),
        "best_epoch": exported_epoch,
        "batch_size": recipe.batch_size,
        "learning_rate": recipe.learning_rate,
        "optimizer": recipe.optimizer,
        "augmentation": recipe.augment if datasets.augmented else "none",
        "seed": config.seed,
        "train_accuracy": round(train_accuracy, 4),
        "val_accuracy": None if val_accuracy is None else round(val_accuracy, 4),
        "confusion_matrix": None if matrix is None else matrix.tolist(),
        **datasets.card,
    }
    if reallike_acc is not None:  # trained hands are not the unseen-hands figure the page shows
        prefix = "reallike" if validating else "reallike_seen_hands"
        card[f"{prefix}_accuracy"] = round(reallike_acc, 4)
        card[f"{prefix}_confusion_matrix"] = reallike_matrix
    litert = _litert_models(model, datasets, config.int8)
    log.info("float: %s", {k: litert["float"][1][k] for k in ("top1_agreement", "max_score_difference")})
    int8_model = None
    if "int8" in litert:
        int8_model, card["int8"] = litert["int8"]
        log.info("int8: %s", {k: card["int8"][k] for k in ("fp32_accuracy", "int8_accuracy", "drop_points")})
    if pose is not None:
        card[POSE_KEY] = {**pose.card, "beside_the_cnn": beside_the_cnn(card)}
    target_root = Path(config.model_root)
    if not _is_chief():  # every worker must save under MultiWorkerMirroredStrategy; only one publishes
        target_root = run_dir / "worker-export"
    path = export(model, datasets.labels, target_root, config.name, version=config.version,
                  card=card, warmup_images=_warmup_images(datasets), float_model=litert["float"],
                  int8_model=int8_model, pose=pose.classifier if pose else None)
    version = int(path.name)
    if version != planned and not (runs_root / str(version)).exists():
        run_dir = run_dir.rename(runs_root / str(version))

    (run_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    if matrix is not None:
        (run_dir / "confusion_matrix.json").write_text(
            json.dumps({"labels": list(datasets.labels), "matrix": matrix.tolist()}) + "\n")
    _plots(history, matrix, datasets.labels, run_dir)
    result = TrainResult(version=version, path=path, run_dir=run_dir, val_accuracy=val_accuracy,
                         train_accuracy=train_accuracy, best_epoch=exported_epoch,
                         confusion=None if matrix is None else matrix.tolist(), labels=datasets.labels,
                         seconds=time.monotonic() - started, history=history, recipe=recipe.name,
                         reallike_accuracy=reallike_acc, reallike_confusion=reallike_matrix,
                         reallike_seen_hands=not validating, int8=card.get("int8"), float=litert["float"][1],
                         pose=card.get(POSE_KEY))
    (run_dir / "result.json").write_text(json.dumps(
        {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()
         if k != "history"}, indent=2) + "\n")
    return result
