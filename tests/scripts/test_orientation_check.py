"""scripts/orientation_check.py stores pictures as cameras do: Pillow's own reading turns them back upright."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "orientation_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("orientation_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("tag", [1, 3, 6, 8])
def test_a_scene_is_stored_as_a_camera_would_store_it(tag):
    upright = Image.fromarray(np.kron(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20,
                                      np.ones((16, 16), np.uint8))).convert("RGB")
    buf = io.BytesIO()
    upright.save(buf, format="JPEG", quality=95)
    stored = Image.open(io.BytesIO(_script().as_phone_stores(buf.getvalue(), tag)))
    assert stored.getexif()[0x0112] == tag
    assert stored.size == (upright.size if tag in (1, 3) else upright.size[::-1])
    seen = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"), dtype=np.float32)
    assert np.abs(seen - np.asarray(upright, dtype=np.float32)).mean() < 2
