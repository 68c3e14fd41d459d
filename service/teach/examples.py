"""Taught examples on disk: <data-root>/<name>/examples/<label>/<sha256>.<ext>, written atomically, one copy each,
and what the hand stage found in each: a record in <data-root>/<name>/examples/.hands/<label>/<sha256>.json
(hands/record.py; a dot folder, so neither this store nor training reads it as a label)."""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hands.record import RECORDS, HandRecord, read_record, record_path, write_record
from service.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError
from service.images import check_image
from version_format.atomic import atomic_write
from version_format.layout import TMP_PREFIX  # hidden: training/data.py and training/finetune.py skip dot files

_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}
ID_LENGTH = 32  # hex digits of the SHA-256 of the image bytes


@dataclass(frozen=True)
class Example:
    id: str
    label: str
    path: Path


class ExampleStore:
    """One folder per model; the layout is an `imgclf train --data PATH` folder (a sub-folder per label)."""

    def __init__(self, data_root: Path, *, max_bytes: int, max_per_label: int, max_pixels: int,
                 min_side: int) -> None:
        self.data_root = Path(data_root)
        self.max_bytes = max_bytes
        self.max_per_label = max_per_label
        self.max_pixels = max_pixels
        self.min_side = min_side
        self._lock = threading.Lock()  # count-then-write is one step for concurrent uploads
        self._found: dict[Path, bool] = {}  # record path -> hand found, so a listing reads each record once

    def folder(self, name: str) -> Path:
        return self.data_root / name / "examples"

    def clean(self, name: str) -> None:
        """Drop temporary files a crash left behind (they never count as examples), and hand records whose
        example is gone."""
        base = self.folder(name)
        if base.is_dir():
            for tmp in base.glob(TMP_PREFIX + "*"):
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        records = base / RECORDS
        if records.is_dir():
            for tmp in records.glob(f"*/{TMP_PREFIX}*"):
                tmp.unlink(missing_ok=True)
            kept = {(ex.label, ex.id) for ex in self.all(name)}
            for record in records.glob("*/*.json"):
                if (record.parent.name, record.stem) not in kept:
                    record.unlink(missing_ok=True)

    def all(self, name: str) -> list[Example]:
        base = self.folder(name)
        if not base.is_dir():
            return []
        return [Example(f.stem, d.name, f) for d in sorted(base.iterdir()) if d.is_dir() and not d.name.startswith(".")
                for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".")]

    def counts(self, name: str, labels: tuple[str, ...]) -> dict[str, int]:
        counts = dict.fromkeys(labels, 0)
        for ex in self.all(name):
            counts[ex.label] = counts.get(ex.label, 0) + 1
        return counts

    def add(self, name: str, labels: tuple[str, ...], label: str, data: bytes) -> tuple[Example, bool]:
        """Store one image under `label`; (example, created). The same bytes twice are stored once."""
        if label not in labels:
            raise InvalidInputError(f"label {label!r} is not one of the model's labels {list(labels)}")
        if len(data) > self.max_bytes:
            raise PayloadTooLargeError(f"example is {len(data):,} bytes, above the limit of {self.max_bytes:,} "
                                       "(IMGCLF_TEACH_MAX_EXAMPLE_BYTES)")
        checked, _ = check_image(data, max_pixels=self.max_pixels, min_side=self.min_side)
        digest = hashlib.sha256(checked).hexdigest()[:ID_LENGTH]
        ext = _EXT[_format(checked)]
        with self._lock:
            existing = self.find(name, digest)
            if existing is not None:
                if existing.label != label:
                    raise ConflictError(f"this image is already an example of {existing.label!r} "
                                            f"(id {digest}); delete it first to relabel it")
                return existing, False
            target_dir = self.folder(name) / label
            count = sum(1 for f in target_dir.iterdir() if not f.name.startswith(".")) if target_dir.is_dir() else 0
            if count >= self.max_per_label:
                raise PayloadTooLargeError(f"label {label!r} already has {count} examples, the limit "
                                           "(IMGCLF_TEACH_MAX_EXAMPLES_PER_LABEL); delete some first")
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / f"{digest}.{ext}"
            atomic_write(target, checked)  # a reader sees the whole file or none
            return Example(digest, label, target), True

    def find(self, name: str, example_id: str) -> Example | None:
        if len(example_id) != ID_LENGTH or any(c not in "0123456789abcdef" for c in example_id):
            return None  # also keeps path tricks out of the glob below
        for ex in self.folder(name).glob(f"*/{example_id}.*") if self.folder(name).is_dir() else ():
            if not ex.parent.name.startswith("."):
                return Example(example_id, ex.parent.name, ex)
        return None

    def get(self, name: str, example_id: str) -> Example:
        found = self.find(name, example_id)
        if found is None:
            raise NotFoundError(f"no example {example_id!r} for model {name!r}")
        return found

    def remove(self, name: str, example_id: str) -> Example:
        with self._lock:
            found = self.get(name, example_id)
            found.path.unlink(missing_ok=True)
            self._drop_record(name, found)
            return found

    def clear(self, name: str) -> int:
        with self._lock:
            removed = 0
            for ex in self.all(name):
                ex.path.unlink(missing_ok=True)
                self._drop_record(name, ex)
                removed += 1
            return removed

    # -- what the hand stage found ----------------------------------------------------------------------
    def record(self, name: str, example: Example) -> Path:
        return record_path(self.folder(name), example.label, example.id)

    def _drop_record(self, name: str, example: Example) -> None:
        path = self.record(name, example)
        path.unlink(missing_ok=True)
        self._found.pop(path, None)

    def keep_hand(self, name: str, example: Example, record: HandRecord) -> bool:
        """Store the example's hand record; False (and nothing written) when the example was deleted
        meanwhile, so no record outlives its example."""
        with self._lock:
            if not example.path.exists():
                return False
            path = self.record(name, example)
            write_record(path, record)
            self._found[path] = record.found
            return True

    def hand_found(self, name: str, example: Example) -> bool | None:
        """Whether the stage found a hand in the example; None when it has not read it."""
        path = self.record(name, example)
        if path not in self._found:
            record = read_record(path)
            if record is None:
                return None
            self._found[path] = record.found
        return self._found[path]

    def without_hand(self, name: str, labels: tuple[str, ...]) -> dict[str, int]:
        """Per label, the examples the stage read and found no hand in (they train the image model only)."""
        counts = dict.fromkeys(labels, 0)
        for ex in self.all(name):
            if self.hand_found(name, ex) is False:
                counts[ex.label] = counts.get(ex.label, 0) + 1
        return counts


def _format(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as img:
        return str(img.format)
