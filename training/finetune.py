"""Fine-tune a version on a few labelled examples: warm start, mixed base data, the quality gate, atomic export.

The image model's classifier layer is retrained here; the pose classifier (answering wherever the hand stage
finds a hand) is retrained beside it in training/finetune_pose.py, and the gate judges both."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.errors import FinetuneError
from version_format.card import GATE_KEY, POSE_KEY

if TYPE_CHECKING:
    from training.data import ImageSet

REFERENCE_SEED = 10_000  # the reference set's draw: the same for every job on the same base data
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class FinetuneConfig:
    init_from: Path  # the version directory whose weights start the run
    data: Path  # one sub-folder per label (the taught examples)
    model_root: Path
    name: str
    base_data: str = "synthetic"  # mixed in (and the reference set's source) so it does not forget
    base_per_label: int = 40  # base images mixed into training, per label
    reference_per_label: int = 30  # the fixed reference set, per label
    holdout_share: float = 0.2  # of each label's examples, never trained on: the gate scores them
    views: int = 4  # augmented views of each training example
    epochs: int = 40  # passes of the classifier layer over the features
    seed: int = 0
    tolerance_points: float = 1.0  # reference accuracy may drop by at most this much
    version: int | None = None


def finetune_config(init_from: Path | str, data: Path | str, model_root: Path | str, name: str, *,
                    base_data: str | None = None, base_per_label: int | None = None,
                    reference_per_label: int | None = None, views: int | None = None, epochs: int | None = None,
                    seed: int | None = None, tolerance_points: float | None = None, version: int | None = None,
                    ) -> FinetuneConfig:
    """A fine-tune's settings, FinetuneConfig's own default for every option left None.

    `imgclf train --init-from` and `python -m training.finetune` (what the server's jobs run) both
    build their settings here, so each default is written once, in FinetuneConfig."""
    given: dict[str, Any] = {"base_data": base_data, "base_per_label": base_per_label,
                             "reference_per_label": reference_per_label, "views": views, "epochs": epochs,
                             "seed": seed, "tolerance_points": tolerance_points, "version": version}
    return FinetuneConfig(init_from=Path(init_from), data=Path(data), model_root=Path(model_root), name=name,
                          **{key: value for key, value in given.items() if value is not None})


@dataclass
class GateVerdict:
    promoted: bool
    reason: str
    holdout_before: float
    holdout_after: float
    holdout_count: int
    reference_before: float
    reference_after: float
    reference_count: int
    tolerance_points: float
    details: dict[str, Any] = field(default_factory=dict)
    pose: dict[str, Any] | None = None  # the pose classifier's figures (training/finetune_pose.PoseGate)


def decide(holdout_before: float, holdout_after: float, reference_before: float, reference_after: float,
           tolerance_points: float) -> tuple[bool, str]:
    """Promote only when the reference set loses at most the tolerance and the held-back examples
    get better (or stay at 100%)."""
    drop = (reference_before - reference_after) * 100
    if drop > tolerance_points + 1e-9:
        return False, (f"reference accuracy would drop {drop:.1f} points ({reference_before:.1%} -> "
                       f"{reference_after:.1%}), over the {tolerance_points:g}-point tolerance")
    if not (holdout_after > holdout_before or holdout_after >= 1.0):
        return False, (f"held-back examples not improved ({holdout_before:.1%} -> {holdout_after:.1%})")
    return True, (f"held-back examples {holdout_before:.1%} -> {holdout_after:.1%}; reference "
                  f"{reference_before:.1%} -> {reference_after:.1%} (tolerance {tolerance_points:g} points)")


def read_examples(folder: Path, labels: tuple[str, ...]) -> dict[str, list[tuple[str, bytes]]]:
    """(file name, bytes) per label, sorted by name; a folder that is not a label is an error."""
    if not folder.is_dir():
        raise FinetuneError(f"examples folder {folder} does not exist")
    found: dict[str, list[tuple[str, bytes]]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name not in labels:
            raise FinetuneError(f"{sub} is not one of the model's labels {list(labels)}")
        files = sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith("."))
        if files:
            found[sub.name] = [(p.name, p.read_bytes()) for p in files]
    if not found:
        raise FinetuneError(f"{folder} holds no examples (one sub-folder per label)")
    return found


def split_holdout(examples: dict[str, list[tuple[str, bytes]]], share: float, seed: int
                  ) -> tuple[list[tuple[bytes, str]], list[tuple[bytes, str]]]:
    """Per label, a seeded share (at least one when a label has two or more) is held back."""
    train: list[tuple[bytes, str]] = []
    held: list[tuple[bytes, str]] = []
    for label, items in examples.items():
        if len(items) < 2:
            raise FinetuneError(f"label {label!r} has {len(items)} example; at least 2 are needed "
                                "(one is held back to check the result)")
        order = np.random.default_rng([seed, len(label), *list(label.encode())]).permutation(len(items))
        n_held = max(1, round(len(items) * share))
        for rank, i in enumerate(order):
            (held if rank < n_held else train).append((items[i][1], label))
    return train, held


def base_images(images: ImageSet, source: str, labels: tuple[str, ...], per_label: int, seed: int,
                exclude: frozenset[bytes] = frozenset()) -> list[tuple[bytes, str]]:
    """`per_label` images for each label from the base data (synthetic renders or class folders),
    none of `exclude`; `none` (no hand) comes from the empty scenes the real-hands recipe trains on."""
    from training.realhands.composite import empty_scene
    from training.realhands.scenes import encode_jpeg
    from version_format.model_io import NONE_LABEL

    hand_labels = [x for x in labels if x != NONE_LABEL]
    rng = np.random.default_rng(seed)
    out: list[tuple[bytes, str]] = []
    for label in hand_labels:
        if label not in images.labels:
            raise FinetuneError(f"base data {source!r} has no {label!r} images (it has {list(images.labels)})")
        index = np.array([i for i in np.flatnonzero(images.targets == images.labels.index(label))
                          if images.images[i] not in exclude], dtype=np.int64)
        chosen = rng.choice(index, size=min(per_label, len(index)), replace=False)
        out.extend((images.images[i], label) for i in sorted(chosen))
    if NONE_LABEL in labels:
        out.extend((encode_jpeg(empty_scene(150, np.random.default_rng([seed, 7, i]))), NONE_LABEL)
                   for i in range(per_label))
    return out


def _digest(items: list[tuple[bytes, str]]) -> str:
    h = hashlib.sha256()
    for data, label in items:
        h.update(label.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def run(config: FinetuneConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The whole job; `progress` gets one dict per step. Returns the result (version, gate verdict)."""
    import keras
    import tensorflow as tf

    from training.data import load_source, make_augmenter
    from training.export import ServingModule, export
    from training.finetune_pose import finetune_pose
    from training.model import make_model
    from training.preprocessing import decode_and_resize
    from training.realhands.scenes import light_augment
    from training.recipes import RECIPES
    from version_format.layout import CARD_FILE, LABELS_FILE
    from version_format.model_io import IMAGE_SIZE

    started = time.monotonic()
    emit = progress or (lambda event: None)
    base_dir = Path(config.init_from)
    if not (base_dir / "saved_model.pb").exists() or not (base_dir / CARD_FILE).exists():
        raise FinetuneError(f"{base_dir} is not a version directory with a model card")
    card = json.loads((base_dir / CARD_FILE).read_text())
    labels = tuple(x for x in (base_dir / LABELS_FILE).read_text().splitlines() if x)
    arch = str(card.get("arch") or "talk")
    keras.utils.set_random_seed(config.seed)

    emit({"event": "progress", "phase": "data", "fraction": 0.0})
    examples = read_examples(Path(config.data), labels)
    train_items, held_items = split_holdout(examples, config.holdout_share, config.seed)
    base, _ = load_source(config.base_data, seed=REFERENCE_SEED,
                          samples_per_class=config.base_per_label + config.reference_per_label)
    # the reference set is fixed (its own seed), so every candidate is scored on the same images;
    # the base images mixed into training are never among them
    reference = base_images(base, config.base_data, labels, config.reference_per_label, seed=REFERENCE_SEED)
    mix = base_images(base, config.base_data, labels, config.base_per_label, seed=config.seed + 1,
                      exclude=frozenset(data for data, _ in reference))
    emit({"event": "progress", "phase": "data", "fraction": 0.1, "examples": len(train_items),
          "held_back": len(held_items), "base": len(mix), "reference": len(reference)})

    # warm start: the serving graph's variables restored into the same network, rebuilt
    model = make_model(num_classes=len(labels), arch=arch)
    holder = ServingModule(model, labels)
    tf.train.Checkpoint(root=holder).restore(str(base_dir / "variables" / "variables")).expect_partial()
    model.set_weights(holder.model.get_weights())
    head = model.layers[-1]
    features = keras.Model(model.inputs, head.input)
    old_head = [w.copy() for w in head.get_weights()]

    def pixels(items: list[tuple[bytes, str]]) -> tf.Tensor:
        return tf.stack([decode_and_resize(tf.constant(data), IMAGE_SIZE) for data, _ in items])

    # the taught examples vary as the base recipe's training images did (a fine-tuned base: lightly)
    base_recipe = RECIPES.get(str(card.get("recipe")))
    talk_views = base_recipe is not None and base_recipe.finetune_augment == "talk"
    augmenter = make_augmenter(config.seed) if talk_views else None

    def augment(x: tf.Tensor, view: int) -> tf.Tensor:
        if augmenter is not None:
            return tf.clip_by_value(augmenter(x, training=True), 0.0, 1.0)
        return light_augment(tf.image.convert_image_dtype(x, tf.uint8), config.seed + view)

    def embed(x: tf.Tensor) -> np.ndarray:
        return np.concatenate([features(x[i:i + 16], training=False).numpy() for i in range(0, len(x), 16)])

    target = {label: i for i, label in enumerate(labels)}
    train_px = pixels(train_items)
    feats = [embed(train_px)]
    for view in range(config.views):
        feats.append(embed(augment(train_px, view)))
        emit({"event": "progress", "phase": "features", "fraction": 0.1 + 0.5 * (view + 1) / (config.views + 2)})
    y_train = np.array([target[label] for _, label in train_items] * (config.views + 1))
    mix_f = embed(pixels(mix))
    held_f = embed(pixels(held_items))
    ref_f = embed(pixels(reference))
    emit({"event": "progress", "phase": "features", "fraction": 0.6})
    x = np.concatenate([*feats, mix_f])
    y = np.concatenate([y_train, np.array([target[label] for _, label in mix])])
    y_held = np.array([target[label] for _, label in held_items])
    y_ref = np.array([target[label] for _, label in reference])
    # every class weighs the same, whatever the user captured
    counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
    weights = (len(y) / (len(labels) * np.maximum(counts, 1)))[y]

    clf = keras.Sequential([keras.Input(shape=(x.shape[1],)),
                            keras.layers.Dense(len(labels), activation="softmax")])
    clf.layers[-1].set_weights(old_head)

    def scored(feats_: np.ndarray, targets: np.ndarray) -> float:
        # the head is one affine map: numpy scores it in microseconds (clf.predict costs ~0.2 s a call)
        kernel, bias = clf.layers[-1].get_weights()
        return _accuracy(feats_ @ kernel + bias, targets)

    before_held, before_ref = scored(held_f, y_held), scored(ref_f, y_ref)
    image_model_right = np.argmax(held_f @ old_head[0] + old_head[1], axis=1) == y_held
    clf.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            emit({"event": "progress", "phase": "train", "epoch": epoch + 1, "epochs": config.epochs,
                  "fraction": 0.6 + 0.3 * (epoch + 1) / config.epochs,
                  "accuracy": round(float((logs or {}).get("accuracy", 0.0)), 4),
                  "holdout_accuracy": round(scored(held_f, y_held), 4)})

    clf.fit(x, y, sample_weight=weights, epochs=config.epochs, batch_size=32, shuffle=True, verbose=0,
            callbacks=[Report()])
    after_held, after_ref = scored(held_f, y_held), scored(ref_f, y_ref)
    head.set_weights(clf.layers[-1].get_weights())
    promoted, reason = decide(before_held, after_held, before_ref, after_ref, config.tolerance_points)
    emit({"event": "progress", "phase": "pose", "fraction": 0.9})
    pose = finetune_pose(base_dir=base_dir, card=card, labels=labels, data=Path(config.data), examples=examples,
                         train_items=train_items, held_items=held_items, image_model_right=image_model_right,
                         base_data=config.base_data, reference_per_label=config.reference_per_label,
                         reference_seed=REFERENCE_SEED, seed=config.seed, tolerance_points=config.tolerance_points)
    if promoted and not pose.gate.promoted:
        promoted, reason = False, f"pose classifier: {pose.gate.reason}"
    verdict = GateVerdict(promoted, reason, before_held, after_held, len(held_items), before_ref, after_ref,
                          len(reference), config.tolerance_points,
                          details={"held_back_per_label": {k: int((y_held == target[k]).sum()) for k in examples}},
                          pose=asdict(pose.gate))
    emit({"event": "progress", "phase": "export", "fraction": 0.92, "gate": asdict(verdict)})

    new_card = {
        "recipe": "finetune", "arch": arch, "base_recipe": card.get("recipe"),
        "finetuned_from": {"version": card.get("version"), "name": card.get("name")},
        "trained_on": f"{len(train_items)} taught examples (+{config.views} augmented views each) and "
                      f"{len(mix)} base images ({config.base_data})",
        "validation": f"{len(held_items)} taught examples held back",
        "val_accuracy": after_held, "reference_accuracy": after_ref,
        "examples": {k: len(v) for k, v in examples.items()},
        "reference_set": {"source": config.base_data, "seed": REFERENCE_SEED, "per_label": config.reference_per_label,
                          "count": len(reference), "sha256": _digest(reference)},
        "finetune": {"epochs": config.epochs, "views": config.views, "seed": config.seed,
                     "trained": "the classifier layer, on the frozen network's features",
                     "seconds": round(time.monotonic() - started, 1)},
        GATE_KEY: asdict(verdict),
        POSE_KEY: pose.card,
    }
    warmup = [data for data, _ in held_items[:4]]
    path = export(model, labels, config.model_root, config.name, version=config.version, card=new_card,
                  warmup_images=warmup, pose=pose.classifier)
    result = {"version": int(path.name), "path": str(path), "gate": asdict(verdict),
              "seconds": round(time.monotonic() - started, 1)}
    emit({"event": "done", "fraction": 1.0, **result})
    return result


def _accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return float((np.argmax(scores, axis=1) == targets).mean()) if len(targets) else 0.0


def _stop_on_term() -> None:
    # SIGTERM (a cancel, a server shutdown) unwinds the stack, so export's `finally` removes its
    # temporary folder; the rename that publishes a version is atomic, so no half version remains
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """The job process the server starts: JSON lines on stdout, one per progress step."""
    parser = argparse.ArgumentParser(prog="python -m training.finetune")
    parser.add_argument("--init-from", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model-root", type=Path, required=True)
    parser.add_argument("--name", required=True)
    # defaults: FinetuneConfig's, applied by finetune_config
    default = FinetuneConfig
    parser.add_argument("--base-data", help=f"default: {default.base_data}")
    parser.add_argument("--base-per-label", type=int, help=f"default: {default.base_per_label}")
    parser.add_argument("--reference-per-label", type=int, help=f"default: {default.reference_per_label}")
    parser.add_argument("--epochs", type=int, help=f"default: {default.epochs}")
    parser.add_argument("--views", type=int, help=f"default: {default.views}")
    parser.add_argument("--seed", type=int, help=f"default: {default.seed}")
    parser.add_argument("--tolerance-points", type=float, help=f"default: {default.tolerance_points:g}")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: one per core)")
    args = parser.parse_args(argv)
    _stop_on_term()
    if args.nice:
        os.nice(args.nice)  # below the server: serving keeps its latency while this trains
    if args.threads:
        import tensorflow as tf

        # fewer threads than cores leaves the server a core of its own, not just the scheduler's favour
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(event), flush=True)

    config = finetune_config(args.init_from, args.data, args.model_root, args.name, base_data=args.base_data,
                             base_per_label=args.base_per_label, reference_per_label=args.reference_per_label,
                             epochs=args.epochs, views=args.views, seed=args.seed,
                             tolerance_points=args.tolerance_points)
    try:
        run(config, emit)
    except FinetuneError as exc:
        emit({"event": "error", "error": str(exc)})
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
