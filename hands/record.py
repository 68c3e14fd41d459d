"""What the hand stage found in a stored picture, kept beside it: `<folder>/.hands/<label>/<id>.json`.

A folder of class folders (the taught examples) keeps one record per picture it has read, in a dot folder
that no reader of class folders sees as a class (they all skip dot names). A record says whether a hand was
found and, when one was, its 21 landmarks (pixels of the upright picture), handedness and presence score.
The server writes a record when an example is stored; a fine-tune reads the records, and runs the stage
itself on a picture that has none."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from version_format.atomic import atomic_write

RECORDS = ".hands"


@dataclass(frozen=True)
class HandRecord:
    """`landmarks` float32 [21, 3], or None when the stage found no hand in the picture."""

    landmarks: np.ndarray | None
    handedness: str = ""
    score: float = 0.0

    @property
    def found(self) -> bool:
        return self.landmarks is not None


def record_path(folder: Path, label: str, picture_id: str) -> Path:
    """Where the record of `<folder>/<label>/<picture_id>.<ext>` lives."""
    return Path(folder) / RECORDS / label / f"{picture_id}.json"


def write_record(path: Path, record: HandRecord) -> None:
    """Atomically: a reader sees the whole record or none (then it reads the picture again)."""
    body: dict[str, Any] = {"hand": record.found}
    if record.landmarks is not None:
        body |= {"landmarks": [[round(v, 3) for v in point] for point in record.landmarks.tolist()],
                 "handedness": record.handedness, "score": round(record.score, 4)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(body))


def read_record(path: Path) -> HandRecord | None:
    """The record, or None when there is none or it is unreadable (the stage reads the picture again)."""
    try:
        body = json.loads(path.read_text())
        if not body["hand"]:
            return HandRecord(None)
        landmarks = np.array(body["landmarks"], np.float32)
        if landmarks.shape != (21, 3) or not np.isfinite(landmarks).all():
            return None
        return HandRecord(landmarks, str(body.get("handedness", "")), float(body.get("score", 0.0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
