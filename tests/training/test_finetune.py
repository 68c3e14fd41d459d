"""The fine-tune's pieces: the gate's rule, the held-back split, the inputs it refuses, and the offline command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from training.errors import FinetuneError
from training.finetune import FinetuneConfig, decide, finetune_config, main, read_examples, split_holdout
from version_format.layout import CARD_FILE


@pytest.mark.parametrize(("held", "ref", "promoted"), [
    ((0.5, 0.9), (0.80, 0.80), True),     # better on the user's frames, same reference
    ((0.5, 0.9), (0.80, 0.79), True),     # a 1-point drop is within the default tolerance
    ((0.5, 0.9), (0.80, 0.785), False),   # 1.5 points is not
    ((0.9, 0.9), (0.80, 0.90), False),    # the user's frames must improve...
    ((1.0, 1.0), (0.80, 0.80), True),     # ...unless they are all right already
    ((0.9, 0.8), (0.50, 0.90), False),
])
def test_gate_rule(held, ref, promoted):
    ok, reason = decide(held[0], held[1], ref[0], ref[1], 1.0)
    assert ok is promoted and reason


def test_held_back_split_is_per_label_and_seeded():
    examples = {label: [(f"{i}.jpg", f"{label}{i}".encode()) for i in range(10)] for label in ("rock", "paper")}
    train, held = split_holdout(examples, 0.2, seed=3)
    assert sorted(label for _, label in held) == ["paper", "paper", "rock", "rock"]
    assert len(train) == 16 and not {d for d, _ in train} & {d for d, _ in held}
    assert split_holdout(examples, 0.2, seed=3) == (train, held)
    with pytest.raises(FinetuneError, match="at least 2"):
        split_holdout({"rock": [("a.jpg", b"a")]}, 0.2, seed=0)


def test_examples_folder_must_hold_model_labels(tmp_path):
    (tmp_path / "lizard").mkdir()
    (tmp_path / "lizard" / "a.jpg").write_bytes(b"x")
    with pytest.raises(FinetuneError, match="not one of the model's labels"):
        read_examples(tmp_path, ("paper", "rock"))
    with pytest.raises(FinetuneError, match="does not exist"):
        read_examples(tmp_path / "missing", ("paper",))


def test_one_function_fills_in_the_defaults_every_entry_point_leaves_out(tmp_path):
    config = finetune_config(str(tmp_path / "1"), tmp_path / "ex", tmp_path, "rps", epochs=None, base_data=None)
    assert config == FinetuneConfig(tmp_path / "1", tmp_path / "ex", tmp_path, "rps")
    assert (config.epochs, config.base_data, config.tolerance_points, config.views) == (40, "synthetic", 1.0, 4)
    given = finetune_config(tmp_path / "1", tmp_path / "ex", tmp_path, "rps", epochs=3, seed=0, tolerance_points=0.0,
                            base_data="folder", version=7)
    assert (given.epochs, given.seed, given.tolerance_points, given.base_data) == (3, 0, 0.0, "folder")
    assert given.version == 7


def test_the_job_process_builds_its_settings_there_too(tmp_path, capsys):
    # `python -m training.finetune` (what the server's jobs run) with only the required options
    on_term = signal.getsignal(signal.SIGTERM)  # the job installs its own handler
    try:
        code = main(["--init-from", str(tmp_path / "none"), "--data", str(tmp_path), "--model-root", str(tmp_path),
                     "--name", "rps", "--nice", "0"])
    finally:
        signal.signal(signal.SIGTERM, on_term)
    assert code == 2
    assert json.loads(capsys.readouterr().out) == {
        "event": "error", "error": f"{tmp_path / 'none'} is not a version directory with a model card"}


def test_imgclf_train_init_from(tmp_path, trained_model_root):
    from tests.service.teach.conftest import hand_jpeg

    root = tmp_path / "models"
    shutil.copytree(trained_model_root / "rps" / "1", root / "rps" / "1")
    for label in ("rock", "paper"):
        (tmp_path / "examples" / label).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "examples" / label / f"{i}.jpg").write_bytes(hand_jpeg(label, i))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "imgclf"), "train", "--init-from", str(root / "rps" / "1"),
                           "--data", str(tmp_path / "examples"), "--model-root", str(root), "--epochs", "3"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {root / 'rps' / '2'} (version 2, fine-tuned from {root / 'rps' / '1'}): gate " in proc.stdout
    card = json.loads((root / "rps" / "2" / CARD_FILE).read_text())
    assert card["finetuned_from"]["version"] == 1 and card["examples"] == {"paper": 5, "rock": 5}
    assert card["gate"]["holdout_count"] == 2 and card["reference_set"]["per_label"] == 30
    assert ("promoted" if card["gate"]["promoted"] else "rejected") in proc.stdout
    missing = subprocess.run([str(Path(sys.executable).parent / "imgclf"), "train", "--init-from",
                              str(root / "rps" / "1"), "--data", str(tmp_path / "nope"), "--model-root", str(root)],
                             capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 2 and "examples folder" in missing.stderr and "Traceback" not in missing.stderr
