"""A teach-enabled server over a copy of the tiny trained model, and hand images per label."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def hand_jpeg(label: str, index: int, size: int = 96) -> bytes:
    """A rendered hand of `label`, a different pose for every index."""
    from training import synthetic

    image = synthetic.render(label, np.random.default_rng([501, index, len(label)]), size=size)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture
def teach_root(tmp_path: Path, trained_model_root: Path) -> Path:
    """A model root of its own holding version 1 of the tiny model (the shared one stays untouched)."""
    root = tmp_path / "models"
    shutil.copytree(trained_model_root / "rps" / "1", root / "rps" / "1")
    return root


def frame_jpeg(label: str, index: int, seed: int = 1) -> bytes:
    """Frame `index` of one person's `label` hand held up to a webcam (training.synthetic.held_still)."""
    from training.synthetic import held_still

    return held_still(label, index + 1, seed=seed)[index]


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    """A model root holding the shipped demo version as version 1 (compact network, none/paper/rock/scissors)."""
    from service.demo import install_demo

    root = tmp_path / "models"
    assert install_demo(root, "rps") is not None
    return root


@pytest.fixture
def demo_server(start_server: Callable[..., Any], demo_root: Path, tmp_path: Path) -> Any:
    return start_server(demo_root, teach=True, data_root=tmp_path / "data")


@pytest.fixture
def teach_server(start_server: Callable[..., Any], teach_root: Path, tmp_path: Path) -> Any:
    return start_server(teach_root, teach=True, data_root=tmp_path / "data", teach_epochs=5,
                        teach_max_examples_per_label=12)




@pytest.fixture
def pose_root(demo_root: Path, sample_pose: Any) -> Path:
    """The shipped demo version as version 1, carrying the samples' pose classifier."""
    import json

    from version_format.layout import POSE_FILE

    (demo_root / "rps" / "1" / POSE_FILE).write_text(json.dumps(sample_pose.to_dict()))
    return demo_root
