"""Fixtures shared by the whole suite: one tiny trained model and a sample photo."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained_result(tmp_path_factory: pytest.TempPathFactory):
    """A real, tiny training run (1 epoch, 12 synthetic images per class), the CNN alone: the version the
serving tests use as a plain image classifier (the hand stage's tests bring versions with a pose classifier).

    The model root is `<tmp>/models`, so the run reports land in `<tmp>/models/rps/runs`.
    """
    from training.train import TrainConfig, train

    base = tmp_path_factory.mktemp("trained")
    return train(TrainConfig(data="synthetic", epochs=1, samples_per_class=12,
                             model_root=base / "models", name="rps", seed=0, pose=False))


@pytest.fixture(scope="session")
def trained_model_root(trained_result) -> Path:
    """The model root of the tiny trained model; version 1 is at root / "rps" / "1"."""
    return trained_result.path.parent.parent


@pytest.fixture(scope="session")
def sample_jpeg() -> bytes:
    """JPEG bytes of a rendered 300x300 rock hand."""
    import numpy as np
    from PIL import Image

    from training import synthetic

    image = synthetic.render("rock", np.random.default_rng(1234)).resize(
        (300, 300), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()
