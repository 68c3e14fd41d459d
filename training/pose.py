"""A pose classifier on hand landmarks: extraction over class folders (cached), training, evaluation by hand.

- `extract_landmarks(folder)`: the hand stage over every picture of a folder of class folders, once: the
  result is cached as `<cache>/<sha256>.npz` (landmarks, labels, hand ids, found mask), the digest being
  that of the data (each file's name and bytes). The cache folder is `$IMGCLF_CACHE/landmarks`, by default
  `~/.cache/imgclf/landmarks`. `extract_images(...)` does the same for encoded pictures in memory (the
  embedded synthetic set).
- `train_pose(landmarks, targets, labels)`: multinomial logistic regression (numpy loss and gradient,
  scipy's L-BFGS) on `hands.pose` features of augmented landmarks; seeded, so the same inputs give the
  same weights. `PoseClassifier.to_dict()` is plain JSON.
- `evaluate_by_hand(data)`: every rendered hand held out in turn (never seen in training), with the
  hand-found rate and a confusion matrix.

`python -m training.pose --data ../shared/data/rps-train` prints the figures docs/hands.md quotes."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.optimize import minimize

from hands.classifier import FEATURES, PoseClassifier, featurise
from hands.stage import ATTEMPTS
from training.errors import DataError
from training.metrics import confusion
from version_format.exif import UPRIGHT, orientation

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
MAX_THREADS = 2  # the stage holds an interpreter pair per thread; this machine has two cores
# the stage's settings for extraction: every attempt whatever the time, so that what is found does not depend
# on the machine's load (serving keeps its time budget); recorded in the cache, which is redone if they change
EXTRACTION = f"budget=inf;attempts={ATTEMPTS!r}"

class Finder(Protocol):
    """What extraction needs of the hand stage (tests count its calls)."""

    def find(self, rgb: Image.Image) -> Any: ...


def cache_dir() -> Path:
    return Path(os.environ.get("IMGCLF_CACHE", "~/.cache/imgclf")).expanduser() / "landmarks"


def hand_id(name: str) -> str:
    """The rendered hand a file shows: its name without the frame number, `rock07-k03-005.jpg` -> `rock07-k03`."""
    stem = Path(name).stem
    return re.sub(r"-?\d+$", "", stem) if re.search(r"-\d+$", stem) else stem


@dataclass(frozen=True)
class LandmarkSet:
    """One hand per picture: `landmarks` float32 [n, 21, 3] (zeros where none was found), `targets` into
    `labels`, `hand_ids`, `found`, `names` (relative to the folder) and the data's `digest`."""

    landmarks: np.ndarray
    targets: np.ndarray
    labels: tuple[str, ...]
    hand_ids: np.ndarray
    found: np.ndarray
    names: tuple[str, ...]
    digest: str


def _files(root: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of class folders (e.g. rock/ paper/ scissors/)")
    labels = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(labels) < 2:
        raise DataError(f"{root} has {len(labels)} class folder(s); at least two are needed")
    files: list[Path] = []
    targets: list[int] = []
    for index, label in enumerate(labels):
        found = sorted(p for p in (root / label).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not found:
            raise DataError(f"class folder {root / label} has no images")
        files += found
        targets += [index] * len(found)
    return files, np.array(targets, np.int64), labels


def data_digest(root: Path, files: Sequence[Path]) -> str:
    """SHA-256 over each file's name (relative to the folder) and bytes, in order."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def read_picture(file: Path | BinaryIO) -> Image.Image | None:
    """The file as an upright RGB picture (EXIF orientation applied), or None when it is not a readable image."""
    try:
        with Image.open(file) as img:
            turn = orientation(img)
            rgb = img.convert("RGB")
        return rgb.transpose(UPRIGHT[turn]) if turn != 1 else rgb
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _load_cached(path: Path, names: tuple[str, ...]) -> LandmarkSet | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["extraction"]) != EXTRACTION or tuple(z["names"].tolist()) != names:
                return None
            return LandmarkSet(z["landmarks"], z["targets"], tuple(z["labels"].tolist()), z["hand_ids"],
                               z["found"], names, path.stem)
    except (OSError, KeyError, ValueError):
        return None  # unreadable or from an older layout: extracted again


def extract_landmarks(folder: str | Path, *, cache: Path | None = None, stage: Finder | None = None,
                      threads: int = MAX_THREADS, log: Callable[[str], None] | None = None) -> LandmarkSet:
    """The hand stage over every picture of `folder`'s class folders, or the cached result for the same data."""
    root = Path(folder).expanduser()
    files, targets, labels = _files(root)
    names = tuple(f.relative_to(root).as_posix() for f in files)
    return _extract(lambda i: read_picture(files[i]), targets, labels, names, data_digest(root, files), cache=cache,
                    stage=stage, threads=threads, log=log)


def extract_images(images: Sequence[bytes], targets: np.ndarray, labels: tuple[str, ...], names: Sequence[str], *,
                   cache: Path | None = None, stage: Finder | None = None, threads: int = MAX_THREADS,
                   log: Callable[[str], None] | None = None) -> LandmarkSet:
    """`extract_landmarks` for encoded pictures in memory (the embedded synthetic set), named `names`."""
    digest = hashlib.sha256()
    for name, data in zip(names, images, strict=True):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return _extract(lambda i: read_picture(io.BytesIO(images[i])), np.asarray(targets, np.int64), labels, tuple(names),
                    digest.hexdigest(), cache=cache, stage=stage, threads=threads, log=log)


def _extract(read: Callable[[int], Image.Image | None], targets: np.ndarray, labels: tuple[str, ...],
             names: tuple[str, ...], digest: str, *, cache: Path | None, stage: Finder | None, threads: int,
             log: Callable[[str], None] | None) -> LandmarkSet:
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    path = (cache or cache_dir()) / f"{digest}.npz"
    if path.exists() and (cached := _load_cached(path, names)) is not None:
        say(f"landmarks: {len(names)} pictures from the cache {path}")
        return cached
    if stage is None:
        from hands import HandStage

        stage = HandStage(threads=1, budget_ms=math.inf)
    finder = stage  # not Optional: the closure below sees the narrowed type
    landmarks = np.zeros((len(names), 21, 3), np.float32)
    found = np.zeros(len(names), bool)
    done = 0
    lock = threading.Lock()
    start = time.perf_counter()

    def one(index: int) -> None:
        nonlocal done
        picture = read(index)
        hand = finder.find(picture) if picture is not None else None
        with lock:
            if hand is not None:
                landmarks[index], found[index] = hand.landmarks, True
            done += 1
            if done % 250 == 0 or done == len(names):
                say(f"landmarks: {done}/{len(names)} pictures, hand found in {int(found.sum())}, "
                    f"{time.perf_counter() - start:.0f} s")

    # the stage may be called from several threads at once (each runs its own interpreters)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, MAX_THREADS))) as pool:
        list(pool.map(one, range(len(names))))
    hand_ids = np.array([hand_id(n) for n in names])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(partial, landmarks=landmarks, targets=targets, labels=np.array(labels), hand_ids=hand_ids,
                        found=found, names=np.array(names), extraction=np.array(EXTRACTION))
    partial.replace(path)  # whole or not at all: another process may read it
    say(f"landmarks: cached in {path}")
    return LandmarkSet(landmarks, targets, labels, hand_ids, found, names, digest)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


@dataclass(frozen=True)
class Augmentation:
    """`copies` augmented copies of every training hand (`augment`). Held out by hand on rps-train, twice
    this jitter and depth scale cost 0.25 points (99.51%, against 99.76%; docs/hands.md)."""

    copies: int = 4
    max_turn_deg: float = 30.0
    jitter: float = 0.015
    depth_scale: float = 0.15


def augment(landmarks: np.ndarray, rng: np.random.Generator, how: Augmentation = Augmentation()) -> np.ndarray:
    """A new [n, 21, 3] set: each hand's depth scaled by up to +-`depth_scale` (z is the model's estimate),
    every joint moved by Gaussian noise of `jitter` times the wrist-to-middle-base length, turned by up to
    `max_turn_deg` about a random axis, and mirrored half of the time."""
    out = np.array(landmarks, np.float64)
    wrist = out[:, :1]
    out -= wrist
    palm = np.linalg.norm(out[:, 9], axis=1)[:, None, None]
    out[..., 2] *= rng.uniform(1 - how.depth_scale, 1 + how.depth_scale, (len(out), 1))
    out += rng.normal(0, how.jitter, out.shape) * palm
    for i in range(len(out)):
        turn = _rotation(rng.normal(size=3), math.radians(rng.uniform(-how.max_turn_deg, how.max_turn_deg)))
        out[i] = out[i] @ turn.T
    out[rng.random(len(out)) < 0.5, :, 0] *= -1
    return (out + wrist).astype(np.float32)


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, *, l2: float = 1e-3,
                 max_iter: int = 500, start: tuple[np.ndarray, np.ndarray] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (mean cross-entropy + l2/2 |W|^2) from zero weights by L-BFGS:
    deterministic for the same inputs. -> (weights [F, C], bias [C]). With `start` (weights, bias) it starts
    there and l2 pulls towards those weights instead of zero (a fine-tune of an existing classifier)."""
    n, f = x.shape
    onehot = np.eye(num_classes)[y]
    w0 = np.zeros((f, num_classes)) if start is None else np.asarray(start[0], np.float64)
    b0 = np.zeros(num_classes) if start is None else np.asarray(start[1], np.float64)

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: f * num_classes].reshape(f, num_classes), theta[f * num_classes:]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -(onehot * log_probs).sum() / n + 0.5 * l2 * ((w - w0)**2).sum()
        d = (np.exp(log_probs) - onehot) / n
        return float(loss), np.concatenate([(x.T @ d + l2 * (w - w0)).ravel(), d.sum(axis=0)])

    result = minimize(loss_and_grad, np.concatenate([w0.ravel(), b0]), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter})
    return result.x[: f * num_classes].reshape(f, num_classes), result.x[f * num_classes:]


def train_pose(landmarks: np.ndarray, targets: np.ndarray, labels: Sequence[str], *, seed: int = 0,
               features: str = "pose", augmentation: Augmentation | None = Augmentation(), l2: float = 1e-3,
               prior: PoseClassifier | None = None) -> PoseClassifier:
    """A seeded pose classifier on [n, 21, 3] landmarks (hands found only) and their targets into `labels`:
    the landmarks plus augmented copies of them (none when `augmentation` is None), their features
    standardised. With a `prior` (same labels and features) it keeps the prior's standardisation and l2 pulls
    towards the prior's weights: a few hands adjust it where they disagree with it and leave the rest."""
    landmarks = np.asarray(landmarks, np.float32)
    targets = np.asarray(targets, np.int64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (21, 3) or len(landmarks) != len(targets):
        raise ValueError(f"expected [n, 21, 3] landmarks and n targets, got {landmarks.shape} and {targets.shape}")
    if len(targets) == 0 or targets.min() < 0 or targets.max() >= len(labels):
        raise ValueError(f"targets must index the {len(labels)} labels, and at least one hand is needed")
    rng = np.random.default_rng(seed)
    hands, ys = [landmarks], [targets]
    if augmentation is not None:
        for _ in range(augmentation.copies):
            hands.append(augment(landmarks, rng, augmentation))
            ys.append(targets)
    x = featurise(np.concatenate(hands), features).astype(np.float64)
    y = np.concatenate(ys)
    if prior is not None:
        if prior.labels != tuple(labels) or prior.features != features:
            raise ValueError(f"the prior's labels {prior.labels} and features {prior.features!r} differ")
        weights, bias = fit_logistic((x - prior.mean) / prior.std, y, len(labels), l2=l2,
                                     start=(prior.weights, prior.bias))
        return PoseClassifier(weights, bias, prior.mean, prior.std, tuple(labels), prior.feature_names, features)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # a constant feature stays 0 after standardising
    weights, bias = fit_logistic((x - mean) / std, y, len(labels), l2=l2)
    return PoseClassifier(weights, bias, mean, std, tuple(labels), FEATURES[features][1], features)


@dataclass(frozen=True)
class HandHoldout:
    """Held-out-by-hand figures: `accuracy` on the held-out pictures where a hand was found, `found_rate` of
    all pictures, `confusion` (rows true, columns predicted) and `fold_accuracy` per held-out fold."""

    accuracy: float
    end_to_end: float  # a picture without a hand counts as wrong
    found_rate: float
    confusion: np.ndarray
    fold_accuracy: tuple[float, ...]
    fold_hands: tuple[tuple[str, ...], ...]
    train_seconds: float  # mean per fold


def hand_folds(data: LandmarkSet) -> np.ndarray:
    """Fold per picture: the rank of its hand among its class's hands (sorted), so fold k holds out the k-th
    hand of every class and a fold's hands are never seen by the model trained for it."""
    folds = np.zeros(len(data.targets), np.int64)
    for c in range(len(data.labels)):
        in_class = data.targets == c
        for rank, hand in enumerate(sorted(set(data.hand_ids[in_class].tolist()))):
            folds[in_class & (data.hand_ids == hand)] = rank
    return folds


def evaluate_by_hand(data: LandmarkSet, *, seed: int = 0, features: str = "pose",
                     augmentation: Augmentation | None = Augmentation(), l2: float = 1e-3,
                     transform: Callable[[np.ndarray], np.ndarray] | None = None,
                     ) -> HandHoldout:
    """Each fold of `hand_folds` held out in turn, trained on the rest (hands found only)."""
    folds = hand_folds(data)
    if folds.max() < 1:
        raise DataError("evaluation by hand needs at least two hands in some class (file names like rock01-000.jpg)")
    landmarks = data.landmarks if transform is None else transform(data.landmarks)
    predicted = np.full(len(folds), -1)
    fold_acc, fold_hands, seconds = [], [], []
    for k in range(int(folds.max()) + 1):
        train, test = data.found & (folds != k), data.found & (folds == k)
        if not test.any() or not train.any():
            continue
        start = time.perf_counter()
        model = train_pose(landmarks[train], data.targets[train], data.labels, seed=seed, features=features,
                           augmentation=augmentation, l2=l2)
        seconds.append(time.perf_counter() - start)
        predicted[test] = model.predict_landmarks(landmarks[test]).argmax(axis=1)
        fold_acc.append(float((predicted[test] == data.targets[test]).mean()))
        fold_hands.append(tuple(sorted(set(data.hand_ids[folds == k].tolist()))))
    scored = predicted >= 0
    correct = predicted[scored] == data.targets[scored]
    return HandHoldout(float(correct.mean()), float(correct.sum() / len(folds)), float(data.found.mean()),
                       confusion(data.targets[scored], predicted[scored], len(data.labels)), tuple(fold_acc),
                       tuple(fold_hands), float(np.mean(seconds)))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _report(name: str, result: HandHoldout, labels: tuple[str, ...]) -> None:
    print(f"{name}: held-out-by-hand accuracy {result.accuracy:.2%} where a hand was found "
          f"({result.end_to_end:.2%} of all pictures), training {result.train_seconds:.1f} s per fold")
    print("  per fold: " + ", ".join(f"{'/'.join(h)} {a:.1%}" for h, a in
                                     zip(result.fold_hands, result.fold_accuracy, strict=True)))
    print("  confusion (rows true, columns predicted; " + " ".join(labels) + "): "
          + " | ".join(" ".join(str(v) for v in row) for row in result.confusion))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pose", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder of class folders (e.g. ../shared/data/rps-train)")
    parser.add_argument("--cache", type=Path, default=None, help=f"landmark cache folder (default {cache_dir()})")
    parser.add_argument("--threads", type=int, default=MAX_THREADS, help="extraction threads (at most 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, default=None, help="write the classifier trained on every hand as JSON")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        data = extract_landmarks(args.data, cache=args.cache, threads=args.threads)
        print(f"CPU: {cpu_name()}")
        print(f"data: {len(data.targets)} pictures, {len(set(data.hand_ids.tolist()))} hands, digest "
              f"{data.digest[:12]}; landmarks in {time.perf_counter() - start:.1f} s")
        print(f"hand found: {data.found.mean():.2%} ({int(data.found.sum())}/{len(data.found)}); per class "
              + ", ".join(f"{label} {data.found[data.targets == c].mean():.1%}" for c, label in enumerate(data.labels)))
        for name, kwargs in (("pose features", {}), ("normalised coordinates", {"features": "normalised"}),
                             ("pose features without z", {"transform": _flatten}),
                             ("pose features, no augmentation", {"augmentation": None})):
            _report(name, evaluate_by_hand(data, seed=args.seed, **kwargs), data.labels)
        start = time.perf_counter()
        model = train_pose(data.landmarks[data.found], data.targets[data.found], data.labels, seed=args.seed)
        print(f"the classifier on every hand found: trained in {time.perf_counter() - start:.1f} s")
        if args.save:
            args.save.write_text(json.dumps(model.to_dict()))
            print(f"saved to {args.save}")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _flatten(landmarks: np.ndarray) -> np.ndarray:
    flat = np.array(landmarks)
    flat[..., 2] = 0
    return flat


if __name__ == "__main__":
    raise SystemExit(main())
