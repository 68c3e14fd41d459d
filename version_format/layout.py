"""A model version's folder layout (TF Serving's `<root>/<name>/<version>/`), importable without TensorFlow."""

from __future__ import annotations

from pathlib import Path

LABELS_FILE = "assets/labels.txt"
CARD_FILE = "assets.extra/model_card.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
TFLITE_FILE = "assets.extra/model.tflite"
INT8_FILE = "assets.extra/model_int8.tflite"  # full-integer LiteRT model (training/quantize.py)
POSE_FILE = "assets.extra/pose_classifier.json"  # hand landmarks -> scores (hands/classifier.py)
TMP_PREFIX = ".tmp-"  # not an integer: TF Serving and our registry both ignore it


def scan_versions(base: str | Path) -> list[int]:
    """Integer version folders under `<root>/<name>/`, ascending; anything else is ignored."""
    path = Path(base)
    if not path.is_dir():
        return []
    return sorted(int(p.name) for p in path.iterdir()
                  if p.is_dir() and p.name.isdigit() and p.name == str(int(p.name)))


def next_version(base: str | Path) -> int:
    versions = scan_versions(base)
    return versions[-1] + 1 if versions else 1
