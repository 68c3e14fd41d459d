"""A fine-tune's pose classifier: the examples' hands, the base data's hands, a few seconds of training, and
the gate's figures for it.

- **The examples' hands** come from the records the server wrote beside them when they were stored
  (hands/record.py); an example without a record is read by the hand stage here. Examples without a hand
  train the image model only.
- **The base data's hands**: `extract_landmarks` (cached) of the fine-tune's base data, or else of what the
  base version was trained on (its card's `data_source`), when that is a folder of class folders. A fixed
  share of them (the reference set's size per label, drawn with its seed) is never trained on: the pose
  reference set; of the rest, at most `BASE_HANDS_PER_LABEL` per label are trained on.
- **Training**: on the base data's hands and the examples' (repeated so that they weigh about a fifth), or,
  with no base data to read, from the base version's classifier, held near it by l2 (`train_pose(prior=)`).
  With neither, a new classifier is trained only when every move has a hand among the examples.
- **The gate**: accuracy on the held-back examples with a hand, before (the base version's pose classifier,
  or its image model where it has none) and after; and on the pose reference set when there is one. Neither
  may drop by more than the tolerance."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hands.classifier import PoseClassifier, read_pose_classifier
from hands.record import read_record, record_path
from training.errors import DataError, FinetuneError
from training.pose import extract_landmarks, read_picture, train_pose
from version_format.layout import POSE_FILE
from version_format.model_io import NONE_LABEL

PRIOR_L2 = 0.05  # how hard a classifier fine-tuned without base hands is held near the base version's
EXAMPLE_SHARE = 0.2  # the examples' weight among the base data's hands (by repetition)
# base hands trained on, per label: seconds, not tens of them (rps-train has 840 a move; its 2,467 hands train
# in 4 s on a quiet core, 8 s under load)
BASE_HANDS_PER_LABEL = 400

Item = tuple[bytes, str]  # an example's bytes and label, as finetune.split_holdout gives them


@dataclass
class PoseGate:
    """The pose classifier's figures in the gate's verdict (`gate.pose` in the card)."""

    promoted: bool
    reason: str
    holdout_before: float | None = None
    holdout_after: float | None = None
    holdout_count: int = 0
    before_from: str = ""  # what answered those examples before: "pose classifier" or "image model"
    reference_before: float | None = None
    reference_after: float | None = None
    reference_count: int = 0
    tolerance_points: float = 0.0


@dataclass
class PoseResult:
    classifier: PoseClassifier | None  # what the new version carries (the base's, unchanged, when not retrained)
    gate: PoseGate
    card: dict[str, Any] = field(default_factory=dict)


def example_hands(folder: Path, examples: dict[str, list[tuple[str, bytes]]],
                  stage: Callable[[Path], np.ndarray | None] | None = None) -> dict[bytes, np.ndarray | None]:
    """Each example's landmarks (None: no hand), keyed by its bytes: its record, else the stage on the file."""
    out: dict[bytes, np.ndarray | None] = {}
    for label, items in examples.items():
        for file_name, data in items:
            record = read_record(record_path(folder, label, Path(file_name).stem))
            if record is None:
                stage = stage or _stage()
                out[data] = stage(Path(folder) / label / file_name)
            else:
                out[data] = record.landmarks
    return out


def _stage() -> Callable[[Path], np.ndarray | None]:
    """The hand stage as training runs it (every attempt, no time budget)."""
    from hands import HandStage

    hand_stage = HandStage(threads=1, budget_ms=math.inf)

    def landmarks(file: Path) -> np.ndarray | None:
        picture = read_picture(file)
        hand = hand_stage.find(picture) if picture is not None else None
        return None if hand is None else np.asarray(hand.landmarks, np.float32)

    return landmarks


def base_hands(sources: list[str], labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(landmarks [n, 21, 3], targets into `labels`, the folder) of the first source that is a folder of
    class folders holding hands of `labels`, or None."""
    for source in sources:
        if not source or not Path(source).expanduser().is_dir():
            continue
        try:
            data = extract_landmarks(source)
        except DataError:
            continue
        keep = data.found & np.isin(np.array(data.labels)[data.targets], labels)
        if keep.any():
            targets = np.array([labels.index(data.labels[t]) for t in data.targets[keep]], np.int64)
            return data.landmarks[keep], targets, str(Path(source).expanduser())
    return None


def _accuracy(classifier: PoseClassifier, landmarks: np.ndarray, targets: np.ndarray) -> float:
    return float((classifier.predict_landmarks(landmarks).argmax(axis=1) == targets).mean())


def _draw(targets: np.ndarray, among: np.ndarray, per_label: int, seed: int, *, half: bool = False) -> np.ndarray:
    """A mask of at most `per_label` of the `among` hands per label (at most half of them with `half`), drawn
    with `seed`."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(targets), bool)
    for c in np.unique(targets[among]):
        index = np.flatnonzero(among & (targets == c))
        mask[rng.choice(index, size=min(per_label, len(index) // 2 if half else len(index)), replace=False)] = True
    return mask


def finetune_pose(*, base_dir: Path, card: dict[str, Any], labels: tuple[str, ...], data: Path,
                  examples: dict[str, list[tuple[str, bytes]]], train_items: list[Item], held_items: list[Item],
                  image_model_right: np.ndarray, base_data: str, reference_per_label: int, reference_seed: int,
                  seed: int, tolerance_points: float) -> PoseResult:
    """The pose half of a fine-tune. `image_model_right` says, per held-back item, whether the base version's
    image model answered it right (the figure to beat where the base version has no pose classifier)."""
    started = time.monotonic()
    try:
        prior = read_pose_classifier(base_dir / POSE_FILE)
    except ValueError as exc:
        raise FinetuneError(f"the base version's pose classifier is broken: {exc}") from None
    pose_labels = prior.labels if prior is not None else tuple(x for x in labels if x != NONE_LABEL)
    features = prior.features if prior is not None else "pose"
    hands = example_hands(data, examples)
    target = {label: i for i, label in enumerate(pose_labels)}

    def with_hand(items: list[Item]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chosen = [i for i, (d, label) in enumerate(items) if hands[d] is not None and label in target]
        marks = np.array([hands[items[i][0]] for i in chosen], np.float32).reshape(-1, 21, 3)
        return marks, np.array([target[items[i][1]] for i in chosen], np.int64), np.array(chosen, np.int64)

    train_x, train_y, _ = with_hand(train_items)
    held_x, held_y, held_index = with_hand(held_items)
    counted = {"examples_with_hand": int(sum(h is not None for h in hands.values())),
               "examples_without_hand": int(sum(h is None for h in hands.values()))}
    gate = PoseGate(True, "", holdout_count=len(held_y), tolerance_points=tolerance_points)

    def kept(reason: str) -> PoseResult:
        gate.reason = reason
        return PoseResult(prior, gate, {"trained": False, "reason": reason, **counted})

    if not len(train_y) and not len(held_y):
        return kept("no example shows a hand: the pose classifier is the base version's" if prior is not None
                    else "no example shows a hand and the base version has no pose classifier")
    if not len(held_y):
        return kept("no held-back example shows a hand to judge a new pose classifier by: the base version's "
                    "is kept" if prior is not None else "no held-back example shows a hand to judge a pose "
                    "classifier by")
    base = base_hands([base_data, str(card.get("data_source") or "")], pose_labels)
    if base is None and prior is None and set(train_y.tolist()) != set(range(len(pose_labels))):
        return kept(f"the examples show hands of {sorted({pose_labels[t] for t in train_y})} only, and there is "
                    f"neither base data with hands nor a base pose classifier for {list(pose_labels)}")

    ref_x = ref_y = None
    if base is not None:
        marks, targets, source = base
        everything = np.ones(len(targets), bool)
        in_ref = _draw(targets, everything, reference_per_label, reference_seed, half=True)
        ref_x, ref_y = marks[in_ref], targets[in_ref]
        trained = _draw(targets, ~in_ref, BASE_HANDS_PER_LABEL, seed)
        repeat = max(1, round(EXAMPLE_SHARE * int(trained.sum()) / max(1, len(train_y)))) if len(train_y) else 0
        x = np.concatenate([marks[trained], *([train_x] * repeat)])
        y = np.concatenate([targets[trained], *([train_y] * repeat)])
        classifier = train_pose(x, y, pose_labels, seed=seed, features=features)
        how = f"{len(y) - repeat * len(train_y)} hands of {source} and {len(train_y)} examples x {repeat}"
    elif len(train_y):
        # l2 holds a prior near its weights (PRIOR_L2); without one, train_pose's own default applies
        classifier = train_pose(train_x, train_y, pose_labels, seed=seed, features=features, prior=prior,
                                l2=PRIOR_L2 if prior is not None else 1e-3)
        how = (f"{len(train_y)} examples, from the base version's pose classifier (l2 {PRIOR_L2:g} towards it)"
               if prior is not None else f"{len(train_y)} examples")
    else:  # every hand was held back: nothing to learn from
        return kept("every example with a hand was held back: the pose classifier is the base version's")

    if prior is not None:
        gate.before_from, before = "pose classifier", _accuracy(prior, held_x, held_y)
    else:
        gate.before_from, before = "image model", float(np.asarray(image_model_right)[held_index].mean())
    gate.holdout_before, gate.holdout_after = before, _accuracy(classifier, held_x, held_y)
    drop = (before - gate.holdout_after) * 100
    reasons = [f"held-back hands {before:.1%} ({gate.before_from}) -> {gate.holdout_after:.1%}"]
    gate.promoted = drop <= tolerance_points + 1e-9
    if ref_x is not None and ref_y is not None and len(ref_y):
        gate.reference_count = len(ref_y)
        gate.reference_after = _accuracy(classifier, ref_x, ref_y)
        gate.reference_before = _accuracy(prior, ref_x, ref_y) if prior is not None else None
        if gate.reference_before is not None:
            reasons.append(f"base hands {gate.reference_before:.1%} -> {gate.reference_after:.1%}")
            gate.promoted &= (gate.reference_before - gate.reference_after) * 100 <= tolerance_points + 1e-9
    gate.reason = ("; ".join(reasons) + f" (tolerance {tolerance_points:g} points)"
                   + ("" if gate.promoted else ": the pose classifier would get worse"))
    return PoseResult(classifier, gate, {"trained": True, "trained_on": how, "labels": list(pose_labels),
                                         "seconds": round(time.monotonic() - started, 1), **counted})
