"""The pose half of a fine-tune on its own: hands from the records or the stage, the base data's hands
(extracted and cached), the reference split, and the base version's classifier kept when nothing can judge
a new one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hands.record import HandRecord, record_path, write_record
from tests.service.conftest import HANDS as MOVES
from tests.service.conftest import SAMPLES, sample_jpeg
from training.finetune import read_examples, split_holdout
from training.finetune_pose import example_hands, finetune_pose
from version_format.layout import POSE_FILE

LABELS = ("none", *MOVES)


def _folder(root: Path, per_label: int, first: int) -> Path:
    for label in MOVES:
        (root / label).mkdir(parents=True)
        for index in range(first, first + per_label):
            (root / label / f"{label}{index:02d}-000.jpg").write_bytes(sample_jpeg(label, index))
    return root


@pytest.fixture
def base_version(tmp_path: Path) -> Path:
    """A version folder holding only a pose classifier, trained on a few sample copies (with the stage)."""
    from training.finetune_pose import _stage
    from training.pose import train_pose

    read = _stage()
    marks = [read(SAMPLES / f"{label}.jpg") for label in MOVES]
    assert all(m is not None for m in marks)
    version = tmp_path / "models" / "rps" / "1"
    (version / POSE_FILE).parent.mkdir(parents=True)
    classifier = train_pose(np.stack(marks), np.arange(3), MOVES, seed=0)  # type: ignore[arg-type]
    (version / POSE_FILE).write_text(json.dumps(classifier.to_dict()))
    return version


def _run(base_version: Path, examples_dir: Path, base_data: str = "synthetic", share: float = 0.34):
    examples = read_examples(examples_dir, LABELS)
    train, held = split_holdout(examples, share, seed=0)
    return finetune_pose(base_dir=base_version, card={"data_source": "synthetic(samples_per_class=3)"},
                         labels=LABELS, data=examples_dir, examples=examples, train_items=train, held_items=held,
                         image_model_right=np.zeros(len(held), bool), base_data=base_data, reference_per_label=2,
                         reference_seed=1, seed=0, tolerance_points=1.0)


def test_records_win_over_the_stage_and_base_hands_are_a_reference_set(tmp_path, base_version, monkeypatch):
    monkeypatch.setenv("IMGCLF_CACHE", str(tmp_path / "cache"))
    examples_dir = _folder(tmp_path / "examples", per_label=3, first=10)
    # a record says the stage found no hand in this one: it is believed, the picture is not read again
    write_record(record_path(examples_dir, "rock", "rock10-000"), HandRecord(None))
    hands = example_hands(examples_dir, read_examples(examples_dir, LABELS))
    assert sum(h is None for h in hands.values()) == 1 and len(hands) == 9

    base = _folder(tmp_path / "base", per_label=5, first=20)
    result = _run(base_version, examples_dir, base_data=str(base))
    assert result.card["trained"] and result.card["examples_without_hand"] == 1
    assert str(base) in result.card["trained_on"]
    gate = result.gate
    assert gate.before_from == "pose classifier" and gate.reference_count == 6  # 2 per label never trained on
    assert gate.holdout_count == 3 and gate.holdout_after == 1.0 and gate.promoted
    assert result.classifier is not None and result.classifier.labels == MOVES
    assert list((tmp_path / "cache" / "landmarks").glob("*.npz"))  # the base data's hands are cached


def test_the_base_classifier_is_kept_when_no_held_back_example_shows_a_hand(tmp_path, base_version):
    examples_dir = _folder(tmp_path / "examples", per_label=2, first=1)
    examples = read_examples(examples_dir, LABELS)
    _, held = split_holdout(examples, 0.34, seed=0)
    names = {data: (label, Path(name).stem) for label, items in examples.items() for name, data in items}
    for data, _ in held:  # the stage found no hand in any held-back example
        write_record(record_path(examples_dir, *names[data]), HandRecord(None))
    result = _run(base_version, examples_dir)
    assert not result.card["trained"] and "base version's is kept" in result.gate.reason
    assert result.gate.promoted and result.gate.holdout_count == 0 and result.gate.holdout_after is None
    assert result.classifier is not None
    assert (base_version / POSE_FILE).read_text() == json.dumps(result.classifier.to_dict())
