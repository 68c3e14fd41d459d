"""`imgclf evaluate`: accuracy of an exported version through its own serving signature."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.errors import DataError
from training.evaluate import evaluate

BIN = Path(sys.executable).parent
REAL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "rps-train"


def write_folder(root: Path, per_class: int = 2, classes=("scissors", "paper", "rock")) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((40, 40, 3), 30 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_counts_agree_with_the_confusion_matrix(trained_model_root, tmp_path):
    version = trained_model_root / "rps" / "1"
    result = evaluate(version, str(write_folder(tmp_path / "held-out")))
    matrix = np.array(result.confusion)
    assert result.labels == ("paper", "rock", "scissors")
    assert matrix.sum() == result.images == 6
    assert matrix.sum(axis=1).tolist() == [2, 2, 2]  # folder order differs from label order: remapped
    assert result.accuracy == pytest.approx(np.trace(matrix) / 6)


def test_synthetic_evaluation_uses_a_fresh_set(trained_model_root):
    result = evaluate(trained_model_root / "rps" / "1", "synthetic", seed=99, samples_per_class=3)
    assert result.images == 9 and 0.0 <= result.accuracy <= 1.0


def test_wrong_classes_and_missing_model_are_clear_errors(trained_model_root, tmp_path):
    with pytest.raises(DataError, match="classes"):
        evaluate(trained_model_root / "rps" / "1", str(write_folder(tmp_path / "x", classes=("cat", "dog"))))
    with pytest.raises(DataError, match=r"saved_model\.pb"):
        evaluate(tmp_path, "synthetic")


def test_cli_prints_accuracy(trained_model_root, tmp_path):
    r = subprocess.run([str(BIN / "imgclf"), "evaluate", str(trained_model_root / "rps" / "1"), "--data",
                        str(write_folder(tmp_path / "d"))], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "accuracy=" in r.stdout and "on 6 images" in r.stdout


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"the real training split is not at {REAL_DATA}")
def test_real_training_split_loads_with_its_three_classes():
    from training.data import load_folder

    images = load_folder(REAL_DATA)
    assert images.labels == ("paper", "rock", "scissors")
    assert images.counts() == {"paper": 840, "rock": 840, "scissors": 840}
    assert images.skipped == 0
