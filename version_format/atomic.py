"""Writes a reader never sees half done: a file or a folder appears whole, under its final name, or not
at all, and survives a power cut once it has appeared (its contents are flushed before the rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from version_format.layout import TMP_PREFIX


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write beside the target under a `.tmp-` name, flush, and rename over it: a reader sees the old
    file or the whole new one (every reader of a model folder ignores `.tmp-` names)."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root` (a `.tmp-` folder) before a rename makes it visible."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
