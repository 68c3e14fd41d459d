"""Hand-stage benchmark: the stage's cost per picture at one thread (palm detection, landmarks, retries)
and MediaPipe's own HandLandmarker on the same pictures in the same run.

Run `python bench/hand_stage.py` (MediaPipe comes with the dev extra). The pictures: the shipped samples
(service/web/static/samples/{rock,paper,scissors}.jpg) and close-ups of them (square crops on the short
side of the hand's box, where the hand overflows: the retries' case), each timed `--repeat` times. With
`--data DIR` (a folder of class folders of pictures), also the hand-found rate on `--n` of them and on their
close-ups, against MediaPipe's, and how far the two place the landmarks.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtimes import cpu_description  # noqa: E402  (bench/runtimes.py, beside this script)

from hands import HandStage  # noqa: E402
from hands.geometry import tight_crop  # noqa: E402
from hands.runtime import write_task_bundle  # noqa: E402

SAMPLES = ROOT / "service" / "web" / "static" / "samples"
CLOSE_UP_SCALES = (1.0, 0.9)  # the square crop's side over the short side of the hand's box
FILLS_SCALE = 1.2  # the "fills the frame" crop's side over the long side of the hand's box


def close_ups(rgb: np.ndarray, box: tuple[float, float, float, float]) -> list[np.ndarray]:
    """Square crops centred on the hand, as large as the box's short side (and 10% smaller): the fingers
    overflow them."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    short = min(box[2] - box[0], box[3] - box[1])
    return [tight_crop(rgb, (cx - short * s / 2, cy - short * s / 2, cx + short * s / 2, cy + short * s / 2), 0.0)
            for s in CLOSE_UP_SCALES]


def fills(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A square crop centred on the hand, 1.2 times the box's long side: the whole hand fills the frame (the
    common phone photo)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * FILLS_SCALE / 2
    return tight_crop(rgb, (cx - half, cy - half, cx + half, cy + half), 0.0)


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


class Oracle:
    """MediaPipe's Tasks HandLandmarker (image mode, one hand) on the shipped model files."""

    def __init__(self, folder: Path, min_presence: float = 0.5):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        task = write_task_bundle(folder / "hand_landmarker.task")
        self.detector = vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(task)), num_hands=1,
            min_hand_presence_confidence=min_presence))

    def close(self) -> None:
        self.detector.close()

    def find(self, rgb: np.ndarray) -> np.ndarray | None:
        """[21, 2] landmarks in pixels, or None."""
        result = self.detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        if not result.hand_landmarks:
            return None
        h, w = rgb.shape[:2]
        return np.array([[p.x * w, p.y * h] for p in result.hand_landmarks[0]], np.float32)


def timed(fn: Callable[..., Any], log: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            log.append((time.perf_counter() - start) * 1000)
    return wrapper


def stats(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.1f} ms, p90 {float(np.percentile(values, 90)):.1f} ms"


def timing(stage: HandStage, oracle: Oracle, pictures: list[tuple[str, np.ndarray]], repeat: int) -> list[str]:
    palm_ms: list[float] = []
    landmark_ms: list[float] = []
    stage.models.palm = timed(stage.models.palm, palm_ms)  # type: ignore[assignment]
    stage.models.landmarks = timed(stage.models.landmarks, landmark_ms)  # type: ignore[assignment]
    groups = ("whole pictures", "close-ups")
    ours: dict[str, list[float]] = {g: [] for g in groups}
    theirs: dict[str, list[float]] = {g: [] for g in groups}
    lines = []
    for name, rgb in pictures:
        group = groups[1] if "close-up" in name else groups[0]
        attempts: list[int] = []
        for _ in range(repeat):
            start = time.perf_counter()
            hand = stage.find(rgb)
            ours[group].append((time.perf_counter() - start) * 1000)
            if hand is not None:
                attempts.append(hand.attempt)
            start = time.perf_counter()
            oracle.find(rgb)
            theirs[group].append((time.perf_counter() - start) * 1000)
        found = f"found {len(attempts)} of {repeat} times" + (
            f" (attempt {min(attempts)}-{max(attempts)})" if attempts else "")
        lines.append(f"  - {name} {rgb.shape[1]}x{rgb.shape[0]}: {found}")
    everything = ours[groups[0]] + ours[groups[1]]
    lines.append(f"- stage per picture, retries included: {stats(everything)} over {len(everything)} runs")
    for group in groups:
        lines.append(f"- {group}: stage {stats(ours[group])}; MediaPipe HandLandmarker {stats(theirs[group])}")
    return [
        *lines,
        f"- palm detection per call (crop + model + decoding): {stats(palm_ms)}",
        f"- landmarks per call (crop + model): {stats(landmark_ms)}",
    ]


def found_rates(oracle: Oracle, data: Path, n: int) -> list[str]:
    files = sorted(p for p in data.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    random.Random(0).shuffle(files)
    files = files[:n]
    stage, unbounded = HandStage(threads=1), HandStage(threads=1, budget_ms=math.inf)
    ours = first = theirs = 0
    errors: list[float] = []
    close = {"stage": 0, "unbounded": 0, "MediaPipe": 0}
    cu_total = 0
    filled = {"stage": 0, "unbounded": 0, "MediaPipe": 0}
    fill_total = 0
    for path in files:
        rgb = load(path)
        hand, ref = stage.find(rgb), oracle.find(rgb)
        ours += hand is not None
        first += hand is not None and hand.attempt == 0
        theirs += ref is not None
        if hand is not None and ref is not None:
            errors.append(float(np.linalg.norm(hand.landmarks[:, :2] - ref, axis=1).mean()))
        box = hand.box if hand is not None else None
        if box is None and ref is not None:
            box = (float(ref[:, 0].min()), float(ref[:, 1].min()), float(ref[:, 0].max()), float(ref[:, 1].max()))
        if box is not None:
            for crop in close_ups(rgb, box):
                cu_total += 1
                close["stage"] += stage.find(crop) is not None
                close["unbounded"] += unbounded.find(crop) is not None
                close["MediaPipe"] += oracle.find(crop) is not None
            crop = fills(rgb, box)
            fill_total += 1
            filled["stage"] += stage.find(crop) is not None
            filled["unbounded"] += unbounded.find(crop) is not None
            filled["MediaPipe"] += oracle.find(crop) is not None
    return [
        f"- {data}: {len(files)} pictures; hand found by the stage {ours} ({first} on the first attempt), "
        f"by MediaPipe {theirs}",
        f"- their close-ups ({cu_total}): stage {close['stage']}, stage without a time budget "
        f"{close['unbounded']}, MediaPipe {close['MediaPipe']}",
        f"- the hand filling the frame ({fill_total}, a square of 1.2 times the hand's long side): stage "
        f"{filled['stage']}, stage without a time budget {filled['unbounded']}, MediaPipe {filled['MediaPipe']}",
        f"- landmarks where both found one ({len(errors)}): mean distance per picture median "
        f"{statistics.median(errors):.2f} px, p90 {float(np.percentile(errors, 90)):.2f} px" if errors else "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per picture")
    parser.add_argument("--data", type=Path, help="a folder of class folders of pictures, for found rates")
    parser.add_argument("--n", type=int, default=300, help="pictures taken from --data")
    parser.add_argument("--cpu", type=int, default=0, help="the one CPU both run on (-1: all of them)")
    args = parser.parse_args(argv)
    if args.cpu >= 0:  # one core for the stage and MediaPipe alike (MediaPipe picks its own thread count)
        os.sched_setaffinity(0, {args.cpu})
    stage = HandStage(threads=1)
    pictures = []
    for name in ("rock", "paper", "scissors"):
        rgb = load(SAMPLES / f"{name}.jpg")
        pictures.append((name, rgb))
        hand = stage.find(rgb)
        if hand is not None:
            pictures += [(f"{name} close-up {s:g}", crop) for s, crop in zip(CLOSE_UP_SCALES, close_ups(rgb, hand.box),
                                                                                  strict=True)]
    pictures.append(("no-hand", load(SAMPLES / "no-hand.jpg")))
    with tempfile.TemporaryDirectory() as folder:
        oracle = Oracle(Path(folder))
        for _, rgb in pictures:  # warm both up
            stage.find(rgb)
            oracle.find(rgb)
        command = "python bench/hand_stage.py " + " ".join(argv if argv is not None else sys.argv[1:])
        lines = [f"`{command.strip()}`", "", f"- CPU: {cpu_description()}",
                 f"- stage: budget {stage.budget_ms:g} ms, attempts {len(stage.attempts)}; "
                 f"process pinned to {'CPU ' + str(args.cpu) if args.cpu >= 0 else 'no CPU'}"]
        lines += timing(stage, oracle, pictures, args.repeat)
        if args.data is not None:
            lines += found_rates(oracle, args.data, args.n)
        oracle.close()
    print("\n".join(line for line in lines if line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
