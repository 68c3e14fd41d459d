"""The pose classifier's step of a training run: landmarks of the training pictures, a held-out figure, the
classifier on every hand found, and the model card's `pose` section (version_format.card.POSE_KEY).

`pose_step(landmarks)` decides whether a version gets a pose classifier: only when the hand stage found a hand
in at least `MIN_FOUND_RATE` of the pictures and in at least `MIN_FOUND_PER_CLASS` pictures of every class;
otherwise the card says why and the version is exported without one. The held-out figure is by hand where the
file names name the hands (`rock01-000.jpg`: hand `rock01`); where they do not, it is by picture over
`PICTURE_FOLDS` random folds, and the card says so (pictures of one hand may then sit on both sides)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hands.classifier import KIND, PoseClassifier
from training.data import ImageSet
from training.pose import (
    LandmarkSet,
    evaluate_by_hand,
    extract_images,
    extract_landmarks,
    hand_folds,
    train_pose,
)
from version_format.layout import POSE_FILE
from version_format.model_io import NONE_LABEL, POSE_SIGNATURE

MIN_FOUND_RATE = 0.5  # under this the pose classifier would answer for too few pictures to be worth carrying
MIN_FOUND_PER_CLASS = 3  # pictures with a hand found, per class: fewer gives no classifier for that class
PICTURE_FOLDS = 5
SEED = 0


@dataclass(frozen=True)
class PoseOutcome:
    """The classifier to export (None: the version gets none) and the card's `pose` section."""

    classifier: PoseClassifier | None
    card: dict[str, Any]


def landmarks_of(data: str, images: ImageSet | None = None, *, log: Callable[[str], None]) -> LandmarkSet:
    """The training pictures' landmarks (cached by their digest): a folder of class folders, the downloaded
    `rps` set, or `images` in memory (the embedded synthetic set, which has no files)."""
    if data == "rps":
        from training.download import fetch_rps

        return extract_landmarks(fetch_rps("train"), log=log)
    if data == "synthetic":
        if images is None:
            raise ValueError("the synthetic set's landmarks need its images")
        # no dash-number in the names: rendered one by one, they name no hand
        names = [f"{images.labels[t]}/{i:05d}.png" for i, t in enumerate(images.targets)]
        return extract_images(images.images, images.targets, images.labels, names, log=log)
    return extract_landmarks(data, log=log)


def without_none(data: LandmarkSet) -> LandmarkSet:
    """The set less a `none` class folder's pictures: the pose classifier answers only where a hand is found,
    and the CNN answers `none` for the rest."""
    if NONE_LABEL not in data.labels:
        return data
    drop = data.labels.index(NONE_LABEL)
    keep = data.targets != drop
    labels = tuple(label for label in data.labels if label != NONE_LABEL)
    targets = data.targets[keep] - (data.targets[keep] > drop)
    return replace(data, landmarks=data.landmarks[keep], targets=targets, labels=labels,
                   hand_ids=data.hand_ids[keep], found=data.found[keep],
                   names=tuple(n for n, k in zip(data.names, keep, strict=True) if k))


def names_give_hands(data: LandmarkSet) -> bool:
    """Whether every file name carries its hand and frame (`rock01-000.jpg`) and some class has two hands."""
    named = all(re.search(r"-\d+$", Path(name).stem) for name in data.names)
    return named and int(hand_folds(data).max()) >= 1


def too_few_hands(data: LandmarkSet) -> str | None:
    """Why no pose classifier can be trained on these landmarks, or None when enough hands were found."""
    n, found = len(data.found), int(data.found.sum())
    if found < MIN_FOUND_RATE * n:
        return (f"the hand stage found a hand in {found} of {n} pictures ({found / max(1, n):.1%}), under the "
                f"{MIN_FOUND_RATE:.0%} a pose classifier needs to answer for most pictures")
    short = {label: int(data.found[data.targets == c].sum()) for c, label in enumerate(data.labels)}
    short = {label: k for label, k in short.items() if k < MIN_FOUND_PER_CLASS}
    if short:
        return (f"a hand was found in too few pictures of {', '.join(f'{k} ({v})' for k, v in short.items())}; "
                f"a pose classifier needs at least {MIN_FOUND_PER_CLASS} per class")
    return None


def pose_step(data: LandmarkSet, *, landmark_seconds: float, from_cache: bool) -> PoseOutcome:
    """Held-out figure, then the classifier on every hand found, and the card section saying both."""
    n, found = len(data.found), int(data.found.sum())
    card: dict[str, Any] = {
        "pictures": n,
        "hands": len(set(data.hand_ids.tolist())) if names_give_hands(data) else None,
        "pictures_with_a_hand": found,
        "hand_found_rate": round(found / max(1, n), 4),
        "hand_found_rate_per_class": {label: round(float(data.found[data.targets == c].mean()), 4)
                                      for c, label in enumerate(data.labels)},
        "landmarks_sha256": data.digest,
        "landmarks_from_cache": from_cache,
    }
    seconds = {"landmarks": round(landmark_seconds, 1)}
    reason = too_few_hands(data)
    if reason is not None:
        card.update(exported=False, reason=reason, seconds=seconds)
        return PoseOutcome(None, card)
    start = time.perf_counter()
    if names_give_hands(data):
        held = evaluate_by_hand(data, seed=SEED)
        how = (f"by hand: {len(held.fold_accuracy)} folds, fold k holding out the k-th hand of every class "
               "(never seen by the classifier trained for it)")
    else:
        folds = np.random.default_rng(SEED).permutation(n) % PICTURE_FOLDS
        held = evaluate_by_hand(replace(data, hand_ids=np.array([f"fold{k}" for k in folds])), seed=SEED)
        how = (f"by picture, {PICTURE_FOLDS} random folds: the file names name no hand (like rock01-000.jpg), "
               "so there is no held-out-by-hand figure, and pictures of one hand may be on both sides")
    seconds["held_out_evaluation"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    classifier = train_pose(data.landmarks[data.found], data.targets[data.found], data.labels, seed=SEED)
    seconds["training"] = round(time.perf_counter() - start, 1)
    seconds["total"] = round(sum(seconds.values()), 1)
    card.update({
        "exported": True,
        "file": POSE_FILE,
        "signature": POSE_SIGNATURE,
        "classifier": KIND,
        "labels": list(classifier.labels),
        "features": classifier.features,
        "feature_count": len(classifier.feature_names),
        "held_out": how,
        "held_out_accuracy_where_found": round(held.accuracy, 4),
        "held_out_accuracy_end_to_end": round(held.end_to_end, 4),  # a picture without a hand counts as wrong
        "held_out_confusion_matrix": held.confusion.tolist(),
        "trained_on": f"every picture with a hand found ({found}), plus augmented copies",
        "seconds": seconds,
    })
    return PoseOutcome(classifier, card)


def beside_the_cnn(card: dict[str, Any]) -> str:
    """Where the card's CNN figure to set the pose figures against is, and how the two differ."""
    if card.get("val_accuracy") is None:
        return ("the CNN has no held-out figure in this card (val_accuracy is null: nothing was held out); "
                "the pose figures above are held out all the same, each fold's classifier trained without them")
    return (f"val_accuracy ({card['val_accuracy']}): the CNN on every validation picture ({card.get('validation')}), "
            "a hand found or not; against held_out_accuracy_end_to_end, which is measured over every hand in turn")


def run(data: str, images: ImageSet | None = None) -> PoseOutcome:
    """`landmarks_of` then `pose_step`, timed, with the extraction's progress lines on stderr."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line, file=sys.stderr, flush=True)

    start = time.perf_counter()
    landmarks = without_none(landmarks_of(data, images, log=say))
    return pose_step(landmarks, landmark_seconds=time.perf_counter() - start,
                     from_cache=any("from the cache" in line for line in lines))
