"""A version's labels and model card (assets.extra/model_card.json): the keys both sides use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from version_format.layout import CARD_FILE, LABELS_FILE

GATE_KEY = "gate"  # the quality gate's verdict (written by fine-tuning and the registry's gate)
INT8_KEY = "int8"  # the int8 model's measured accuracy against fp32 (training/quantize.py)
POSE_KEY = "pose"  # the pose classifier's figures (training/pose.py), when the version has one
RECIPE_KEY = "recipe"  # the training recipe's name ("talk", "real-hands", ...)


def read_labels(version_dir: Path) -> tuple[str, ...]:
    """The version's labels, in score order; a version without its labels file is broken."""
    path = version_dir / LABELS_FILE
    if not path.exists():
        raise ValueError(f"{path} is missing")
    return tuple(x for x in path.read_text().splitlines() if x)


def read_card(version_dir: Path) -> dict[str, Any]:
    """The version's model card, or {} when it has none (a SavedModel exported elsewhere)."""
    path = version_dir / CARD_FILE
    if not path.exists():
        return {}
    card = json.loads(path.read_text())
    return card if isinstance(card, dict) else {}
