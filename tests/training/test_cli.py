import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from version_format.layout import scan_versions

BIN = Path(sys.executable).parent
TINY = ["--epochs", "1", "--samples-per-class", "4", "--batch-size", "8"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _imgclf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([str(BIN / "imgclf"), "train", *args], cwd)


def test_python_m_training_help(tmp_path):
    proc = _run([sys.executable, "-m", "training", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--data", "--epochs", "--model-root", "--strategy", "--if-missing", "--tflite"):
        assert option in proc.stdout


def test_imgclf_train_help(tmp_path):
    proc = _imgclf("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--samples-per-class" in proc.stdout and "--val-dir" in proc.stdout


def test_zero_epochs_is_a_usage_error(tmp_path):
    proc = _imgclf("--epochs", "0", "--model-root", str(tmp_path / "models"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Invalid value for '--epochs'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_data_folder(tmp_path):
    assert not Path("/nonexistent").exists()
    proc = _imgclf("--data", "/nonexistent", *TINY, "--model-root", str(tmp_path / "models"),
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "wrote" not in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_unknown_strategy(tmp_path):
    proc = _imgclf("--strategy", "bogus", *TINY, "--model-root", str(tmp_path / "models"),
                   cwd=tmp_path)
    assert proc.returncode != 0
    assert "--strategy must be one of default, mirrored, multi-worker" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "models").exists()


def test_if_missing_does_nothing_when_a_version_exists(tmp_path):
    (tmp_path / "models" / "rps" / "3").mkdir(parents=True)
    proc = _imgclf("--if-missing", *TINY, "--model-root", str(tmp_path / "models"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to train" in proc.stderr
    assert "wrote" not in proc.stdout
    assert scan_versions(tmp_path / "models" / "rps") == [3]
    assert not (tmp_path / "models" / "rps" / "runs").exists()


@pytest.mark.slow
def test_tiny_runs_write_consecutive_versions(tmp_path):
    root = tmp_path / "models"
    first = _imgclf(*TINY, "--model-root", str(root), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith(f"wrote {root / 'rps' / '1'} (version 1, recipe rendered)")
    assert "val_accuracy=" in last and "best_epoch=1/1" in last
    assert "confusion matrix" in first.stderr
    assert scan_versions(root / "rps") == [1]

    second = _imgclf(*TINY, "--model-root", str(root), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1].startswith(f"wrote {root / 'rps' / '2'} (version 2,")
    assert scan_versions(root / "rps") == [1, 2]
    # run reports sit beside the versions, where the trainer can always write
    assert sorted(p.name for p in (root / "rps" / "runs").iterdir()) == ["1", "2"]
    # both runs saw the same data and seed: the cards agree on it

    cards = [json.loads((root / "rps" / v / "assets.extra" / "model_card.json").read_text())
             for v in ("1", "2")]
    assert cards[0]["data_sha256"] == cards[1]["data_sha256"]
    assert [c["version"] for c in cards] == [1, 2]

    again = _imgclf("--if-missing", *TINY, "--model-root", str(root), cwd=tmp_path)
    assert again.returncode == 0 and "wrote" not in again.stdout
    assert scan_versions(root / "rps") == [1, 2]
